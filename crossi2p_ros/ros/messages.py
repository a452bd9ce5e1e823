"""numpy <-> ROS messages for the node (rclpy message classes; decoding shared with bag.py)."""
from __future__ import annotations

import importlib
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseWithCovarianceStamped, TransformStamped
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from tf2_msgs.msg import TFMessage

from ..geometry import CameraModel, invert, make_transform, ros_pose_covariance
from ..pointcloud import pack_xyzi

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


def pose_message(T_camera_lidar: np.ndarray, covariance: np.ndarray, lidar_frame: str,
                 stamp: Time) -> PoseWithCovarianceStamped:
    """``~/calibration``: the camera optical frame's pose in the LiDAR frame (T_lidar_camera) with its
    covariance, (x, y, z, rot x, rot y, rot z) row-major [m^2, rad^2] about the LiDAR frame's axes, as ROS defines
    it (:func:`~crossi2p_ros.geometry.ros_pose_covariance` converts ours)."""
    msg = PoseWithCovarianceStamped()
    msg.header.stamp, msg.header.frame_id = stamp, lidar_frame
    T = invert(T_camera_lidar)
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    p.x, p.y, p.z = (float(v) for v in T[:3, 3])
    q.x, q.y, q.z, q.w = (float(v) for v in Rotation.from_matrix(T[:3, :3]).as_quat())
    msg.pose.covariance = [float(v) for v in ros_pose_covariance(T_camera_lidar, covariance).ravel()]
    return msg


def calibration_from_message(msg: PoseWithCovarianceStamped) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of :func:`pose_message`: ``T_camera_lidar`` (4x4) and the ROS covariance (6, 6) as sent."""
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    T_lidar_camera = make_transform(Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix(), [p.x, p.y, p.z])
    return invert(T_lidar_camera), np.asarray(msg.pose.covariance, dtype=np.float64).reshape(6, 6)


def image_message(rgb: np.ndarray, frame_id: str, stamp: Time) -> Image:
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = "rgb8"
    msg.step = int(rgb.shape[1] * 3)
    msg.data = np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
    return msg


def camera_info_message(camera: CameraModel, frame_id: str, stamp: Time) -> CameraInfo:
    info = CameraInfo()
    info.header.stamp, info.header.frame_id = stamp, frame_id
    d = camera.to_camera_info_dict()
    info.width, info.height, info.distortion_model = d["width"], d["height"], d["distortion_model"]
    info.d = [float(v) for v in d["d"]]
    info.k = [float(v) for v in np.ravel(d["k"])]
    return info


def cloud_message(points: np.ndarray, frame_id: str, stamp: Time, ring: np.ndarray | None = None,
                  times_s: np.ndarray | None = None) -> PointCloud2:
    """An unorganised x y z intensity cloud (float32) from (N, 3|4) points [m], with a uint16 ``ring`` field
    when each point's beam ``ring`` (N,) is given and a uint32 ``t`` [ns from the stamp] (Ouster's) when each
    point's time ``times_s`` (N,) [s] is."""
    packed = pack_xyzi(points, ring, times_s)
    cloud = PointCloud2()
    cloud.header.stamp, cloud.header.frame_id = stamp, frame_id
    cloud.height, cloud.width = 1, len(points)
    cloud.fields = [PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count) for f in packed.fields]
    cloud.is_bigendian, cloud.point_step, cloud.row_step = False, packed.point_step, packed.row_step
    cloud.data, cloud.is_dense = bytes(packed.data), packed.is_dense
    return cloud


def sensor_messages(rgb: np.ndarray, camera: CameraModel, points: np.ndarray, stamp: Time,
                    camera_frame: str = "camera_optical", lidar_frame: str = "lidar",
                    ring: np.ndarray | None = None, times_s: np.ndarray | None = None,
                    camera_stamp: Time | None = None) -> tuple[Image, CameraInfo, PointCloud2]:
    """(Image, CameraInfo, PointCloud2) of one camera/LiDAR frame, as a driver would publish them (the cloud
    with each point's beam and time when ``ring`` / ``times_s`` are given; the camera's at ``camera_stamp``,
    default the cloud's)."""
    camera_stamp = stamp if camera_stamp is None else camera_stamp
    return (image_message(rgb, camera_frame, camera_stamp), camera_info_message(camera, camera_frame, camera_stamp),
            cloud_message(points, lidar_frame, stamp, ring, times_s))


def crossi2p_status(msg: DiagnosticArray) -> dict[str, Any] | None:
    """The key-values of the node's status in a ``/diagnostics`` array, with ``_level`` and ``_message``; None
    if the array holds no crossi2p status."""
    for st in msg.status:
        if st.name.startswith("crossi2p"):
            level = st.level[0] if isinstance(st.level, bytes) else int(st.level)
            return {**{kv.key: kv.value for kv in st.values}, "_level": level, "_message": st.message}
    return None


def diagnostic_array(statuses: list[tuple[str, str, str, dict[str, Any]]], hardware_id: str,
                     stamp: Time) -> DiagnosticArray:
    """One ``/diagnostics`` array of ``statuses`` ``(name, level, message, key-values)``."""
    arr = DiagnosticArray(status=[
        DiagnosticStatus(level=LEVELS[level], name=name, message=message, hardware_id=hardware_id,
                         values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        for name, level, message, values in statuses])
    arr.header.stamp = stamp
    return arr
