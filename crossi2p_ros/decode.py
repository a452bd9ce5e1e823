"""Sensor messages -> numpy: images, camera intrinsics, transforms.

Works on rosbags' and rclpy's message objects alike (both expose the same
fields), so the bag reader, replay and the node decode with the same code.
Images come out RGB uint8 ``(H, W, 3)``; transforms as 4x4 ``T_parent_child``
(maps child-frame points into the parent frame, metres). Point clouds are
decoded by :func:`crossi2p_ros.pointcloud.unpack_xyzi`.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from crossi2p_ros.errors import CrossI2PError
from crossi2p_ros.geometry import CameraModel, make_transform
from crossi2p_ros.pointcloud import as_bytes_view

SUPPORTED_ENCODINGS = ("rgb8", "bgr8", "mono8", "rgba8", "bgra8",
                       "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8")
SUPPORTED_COMPRESSED = ("jpeg", "png")


_CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4,
             "bayer_rggb8": 1, "bayer_bggr8": 1, "bayer_gbrg8": 1, "bayer_grbg8": 1}
# OpenCV names Bayer patterns by the second row's second and third pixels, ROS by the first 2x2 block,
# hence ROS rggb = OpenCV BG (the same mapping cv_bridge uses).
_TO_RGB = {
    "rgb8": None,
    "bgr8": cv2.COLOR_BGR2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
    "bayer_rggb8": cv2.COLOR_BayerBG2RGB,
    "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGR2RGB,
    "bayer_grbg8": cv2.COLOR_BayerGB2RGB,
}


def image_from_msg(msg: Any) -> np.ndarray:
    """RGB uint8 (H, W, 3) from an ``Image`` or ``CompressedImage`` (rosbags or rclpy message)."""
    if not hasattr(msg, "encoding"):
        return _decode_compressed(msg)
    enc = str(msg.encoding).lower()
    if enc not in _CHANNELS:
        raise CrossI2PError(
            f"image encoding {msg.encoding!r} is not supported; use one of {list(SUPPORTED_ENCODINGS)} "
            "(or the compressed jpeg/png transport)"
        )
    h, w, c, step = int(msg.height), int(msg.width), _CHANNELS[enc], int(msg.step)
    raw = as_bytes_view(msg.data)
    if step < w * c or raw.size < h * step:
        raise CrossI2PError(
            f"image data has {raw.size} bytes, step {step}, for a {w}x{h} {enc} image; the message is truncated"
        )
    # Rows may be padded to `step` bytes; slicing drops the padding.
    img = raw[: h * step].reshape(h, step)[:, : w * c].reshape(h, w, c)
    if c == 1:
        img = img[..., 0]
    if _TO_RGB[enc] is None:
        return img.copy()  # own the memory: the message buffer may be read-only or reused
    return cv2.cvtColor(np.ascontiguousarray(img), _TO_RGB[enc])


def _decode_compressed(msg: Any) -> np.ndarray:
    fmt = str(getattr(msg, "format", "")).lower()
    if "compresseddepth" in fmt or not any(k in fmt for k in ("jpeg", "jpg", "png")):
        raise CrossI2PError(
            f"compressed image format {getattr(msg, 'format', '')!r} is not supported; "
            f"use one of {list(SUPPORTED_COMPRESSED)}"
        )
    bgr = cv2.imdecode(as_bytes_view(msg.data), cv2.IMREAD_COLOR)
    if bgr is None:
        raise CrossI2PError(f"compressed image ({fmt}) could not be decoded; the data is corrupt")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def camera_from_msg(msg: Any) -> CameraModel:
    """:class:`CameraModel` from a ``CameraInfo`` (intrinsics ``k`` [pixels], distortion ``d``)."""
    k = np.asarray(msg.k, dtype=np.float64)
    if k.size != 9 or not np.any(k):
        raise CrossI2PError(
            "camera_info has an empty K matrix (uncalibrated camera); calibrate the intrinsics "
            "and publish them in camera_info"
        )
    info = {
        "width": int(msg.width),
        "height": int(msg.height),
        "distortion_model": str(msg.distortion_model),
        "d": np.asarray(msg.d, dtype=np.float64),
        "k": k,
    }
    try:
        return CameraModel.from_camera_info_dict(info)
    except ValueError as exc:
        raise CrossI2PError(f"camera_info: {exc}") from None


def transform_from_tf_msg(msg: Any) -> list[tuple[str, str, np.ndarray]]:
    """``[(parent, child, T_parent_child 4x4)]`` from a ``tf2_msgs/TFMessage``; translations in metres."""
    out = []
    for ts in msg.transforms:
        q, t = ts.transform.rotation, ts.transform.translation
        quat = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
        if not np.isfinite(quat).all() or np.linalg.norm(quat) < 1e-12:
            raise CrossI2PError(
                f"transform {ts.header.frame_id} <- {ts.child_frame_id} has an invalid quaternion {quat.tolist()}"
            )
        R = Rotation.from_quat(quat).as_matrix()
        out.append((str(ts.header.frame_id), str(ts.child_frame_id), make_transform(R, [t.x, t.y, t.z])))
    return out
