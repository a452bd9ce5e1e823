"""numpy <-> ROS messages for the node (rclpy message classes; decoding shared with bag.py)."""
from __future__ import annotations

import importlib
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import TransformStamped
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import Image
from tf2_msgs.msg import TFMessage

LEVELS = {"OK": DiagnosticStatus.OK, "WARN": DiagnosticStatus.WARN, "ERROR": DiagnosticStatus.ERROR,
          "STALE": DiagnosticStatus.STALE}


def message_class(msgtype: str) -> Any:
    """``sensor_msgs/msg/Image`` -> the rclpy class."""
    pkg, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def stamp_ns(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def time_msg(ns: int) -> Time:
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def tf_message(T_parent_child: np.ndarray, parent: str, child: str, stamp: Time) -> TFMessage:
    t = TransformStamped()
    t.header.stamp = stamp
    t.header.frame_id = parent
    t.child_frame_id = child
    x, y, z = (float(v) for v in T_parent_child[:3, 3])
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = x, y, z
    qx, qy, qz, qw = (float(v) for v in Rotation.from_matrix(T_parent_child[:3, :3]).as_quat())
    r = t.transform.rotation
    r.x, r.y, r.z, r.w = qx, qy, qz, qw
    return TFMessage(transforms=[t])


def image_message(rgb: np.ndarray, frame_id: str, stamp: Time) -> Image:
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = "rgb8"
    msg.step = int(rgb.shape[1] * 3)
    msg.data = np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
    return msg


def diagnostic_array(name: str, hardware_id: str, level: str, message: str, values: dict[str, Any],
                     stamp: Time) -> DiagnosticArray:
    status = DiagnosticStatus(level=LEVELS[level], name=name, message=message, hardware_id=hardware_id,
                              values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
    arr = DiagnosticArray(status=[status])
    arr.header.stamp = stamp
    return arr
