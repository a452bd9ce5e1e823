"""QoS profiles of the package's publishers and subscribers, chosen once (rclpy only, no torch).

* ``STATIC_TF_QOS``: what tf2's static broadcaster offers (reliable, transient
  local, depth 1), so late joiners receive the calibration.
* ``TF_QOS``: what tf2's listener asks of ``/tf`` (reliable, volatile, depth
  100): odometry arrives at 50-200 Hz in bursts, and a sample lost is a gap
  the buffer cannot interpolate across.
* ``RELIABLE_QOS``: diagnostics, the calibration estimate, the overlay: few,
  small-rate messages that must not be lost.
* ``PLAY_QOS``: the bag player; reliable, which best-effort sensor
  subscribers also accept, with room for a burst.
"""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

STATIC_TF_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)
TF_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)
RELIABLE_QOS = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
PLAY_QOS = QoSProfile(depth=50, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
SENSOR_QOS = qos_profile_sensor_data

__all__ = ["PLAY_QOS", "RELIABLE_QOS", "SENSOR_QOS", "STATIC_TF_QOS", "TF_QOS"]
