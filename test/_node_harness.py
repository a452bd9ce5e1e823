"""The calibration node under test plus a tester node that feeds it over loopback DDS (shared by the ROS tests)."""
from __future__ import annotations

import time

def _messages(frame, stamp):
    """(Image, CameraInfo, PointCloud2) rclpy messages of a synthetic frame at ``stamp`` (builtin Time); the
    cloud with a ``ring`` field where the frame has one."""
    from crossi2p_ros.ros.messages import sensor_messages

    return sensor_messages(frame.image, frame.camera, frame.points, stamp, ring=getattr(frame, "ring", None))


def level(status) -> int:
    """DiagnosticStatus.level is a byte in rclpy; -1 before any status arrived."""
    if status is None:
        return -1
    return status.level[0] if isinstance(status.level, bytes) else int(status.level)


class Harness:
    """The node under test in its own context, plus a tester node that feeds it and records its outputs."""

    def __init__(self, ros_context_factory, parameters: dict):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.parameter import Parameter
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from tf2_msgs.msg import TFMessage

        from crossi2p_ros.ros.node import RELIABLE_QOS, STATIC_TF_QOS, CalibrationNode

        overrides = [Parameter(k, value=v) for k, v in {"device": "cpu", "qos": "reliable", **parameters}.items()]
        self.node = CalibrationNode(context=ros_context_factory(), parameter_overrides=overrides)
        self.tester = Node("tester", context=ros_context_factory())
        self.tf: list = []
        self.diag: list = []
        self.overlays: list = []
        self.tester.create_subscription(TFMessage, "/tf_static", self.tf.append, STATIC_TF_QOS)
        self.tester.create_subscription(DiagnosticArray, "/diagnostics",
                                        lambda m: self.diag.extend(s for s in m.status if s.name.startswith("crossi2p")),
                                        RELIABLE_QOS)
        self.pub_img = self.tester.create_publisher(Image, "/camera/image_raw", RELIABLE_QOS)
        self.pub_info = self.tester.create_publisher(CameraInfo, "/camera/camera_info", RELIABLE_QOS)
        self.pub_cloud = self.tester.create_publisher(PointCloud2, "/lidar/points", RELIABLE_QOS)
        self.executors = [SingleThreadedExecutor(context=self.node.context),
                          SingleThreadedExecutor(context=self.tester.context)]
        self.executors[0].add_node(self.node)
        self.executors[1].add_node(self.tester)

    def spin(self, seconds: float, until=None) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for ex in self.executors:
                ex.spin_once(timeout_sec=0.02)
            if until is not None and until():
                return True
        return until is None

    def publish(self, frame, stamp) -> None:
        img, info, cloud = _messages(frame, stamp)
        self.pub_info.publish(info)
        self.pub_cloud.publish(cloud)
        self.pub_img.publish(img)

    def feed(self, frames, seconds: float, until, period_s: float = 1.0) -> bool:
        """Publish the frames in a loop (one pair per ``period_s``) until ``until()`` or the time is up."""
        self.spin(5.0, self.matched)
        deadline, k = time.monotonic() + seconds, 0
        while time.monotonic() < deadline:
            self.publish(frames[k % len(frames)], self.tester.get_clock().now().to_msg())
            k += 1
            if self.spin(period_s, until):
                return True
        return False

    def matched(self) -> bool:
        return all(p.get_subscription_count() > 0 for p in (self.pub_img, self.pub_info, self.pub_cloud))

    def last_status(self):
        return self.diag[-1] if self.diag else None

    def values(self) -> dict:
        s = self.last_status()
        return {kv.key: kv.value for kv in s.values} if s else {}

    def close(self) -> None:
        for ex in self.executors:
            ex.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.tester.destroy_node()
