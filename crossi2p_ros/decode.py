"""Sensor messages -> numpy: images, camera intrinsics, transforms.

Works on rosbags' and rclpy's message objects alike (both expose the same
fields), so the bag reader, replay and the node decode with the same code.
Images come out RGB uint8 ``(H, W, 3)``; transforms as 4x4 ``T_parent_child``
(maps child-frame points into the parent frame, metres). Point clouds are
decoded by :func:`crossi2p_ros.pointcloud.unpack_xyzi`.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from crossi2p_ros.errors import CrossI2PError
from crossi2p_ros.geometry import CameraModel, make_transform
from crossi2p_ros.pointcloud import as_bytes_view

SUPPORTED_COMPRESSED = ("jpeg", "png")


class _Encoding(NamedTuple):
    """How a raw ``sensor_msgs/Image`` encoding is laid out and turned into RGB."""

    channels: int          # values per pixel
    dtype: str             # numpy type of one value ("u1" or "u2"; the byte order comes from is_bigendian)
    to_rgb: int | None     # the OpenCV conversion to RGB (None: already RGB)
    shared_chroma: bool = False    # YUV 4:2:2: each two pixels share one chroma pair (an even width)


# OpenCV names Bayer patterns by the second row's second and third pixels, ROS by the first 2x2 block,
# hence ROS rggb = OpenCV BG (the same mapping cv_bridge uses). ROS's yuv422 is UYVY byte order, yuv422_yuy2
# YUYV; newer ROS 2 releases also call them uyvy and yuyv.
_ENCODINGS = {
    "rgb8": _Encoding(3, "u1", None),
    "bgr8": _Encoding(3, "u1", cv2.COLOR_BGR2RGB),
    "mono8": _Encoding(1, "u1", cv2.COLOR_GRAY2RGB),
    "rgba8": _Encoding(4, "u1", cv2.COLOR_RGBA2RGB),
    "bgra8": _Encoding(4, "u1", cv2.COLOR_BGRA2RGB),
    "rgb16": _Encoding(3, "u2", None),
    "bgr16": _Encoding(3, "u2", cv2.COLOR_BGR2RGB),
    "mono16": _Encoding(1, "u2", cv2.COLOR_GRAY2RGB),
    "rgba16": _Encoding(4, "u2", cv2.COLOR_RGBA2RGB),
    "bgra16": _Encoding(4, "u2", cv2.COLOR_BGRA2RGB),
    "yuv422": _Encoding(2, "u1", cv2.COLOR_YUV2RGB_UYVY, True),
    "uyvy": _Encoding(2, "u1", cv2.COLOR_YUV2RGB_UYVY, True),
    "yuv422_yuy2": _Encoding(2, "u1", cv2.COLOR_YUV2RGB_YUYV, True),
    "yuyv": _Encoding(2, "u1", cv2.COLOR_YUV2RGB_YUYV, True),
    **{f"bayer_{ros}{bits}": _Encoding(1, dtype, code)
       for ros, code in (("rggb", cv2.COLOR_BayerBG2RGB), ("bggr", cv2.COLOR_BayerRG2RGB),
                         ("gbrg", cv2.COLOR_BayerGR2RGB), ("grbg", cv2.COLOR_BayerGB2RGB))
       for bits, dtype in (("8", "u1"), ("16", "u2"))},
}
SUPPORTED_ENCODINGS = tuple(_ENCODINGS)


def image_from_msg(msg: Any) -> np.ndarray:
    """RGB uint8 (H, W, 3) from an ``Image`` or ``CompressedImage`` (rosbags or rclpy message).

    16-bit encodings (``mono16``, ``rgb16``, ``bayer_*16``, ...) keep the bits the camera filled: a 12-bit
    camera's values (at most 4095) are shifted right by 4, a full 16-bit one's by 8, so that a sensor writing
    fewer than 16 bits is not crushed into the darkest 8 levels."""
    if not hasattr(msg, "encoding"):
        return _decode_compressed(msg)
    enc = str(msg.encoding).lower()
    layout = _ENCODINGS.get(enc)
    if layout is None:
        raise CrossI2PError(
            f"image encoding {msg.encoding!r} is not supported; use one of {list(SUPPORTED_ENCODINGS)} "
            "(or the compressed jpeg/png transport)"
        )
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    value = np.dtype((">" if bool(getattr(msg, "is_bigendian", False)) else "<") + layout.dtype)
    row_bytes = w * layout.channels * value.itemsize
    raw = as_bytes_view(msg.data)
    if layout.shared_chroma and w % 2:
        raise CrossI2PError(f"a {enc} image must have an even width (two pixels share their chroma); it has {w}")
    if step < row_bytes or raw.size < h * step:
        raise CrossI2PError(
            f"image data has {raw.size} bytes, step {step}, for a {w}x{h} {enc} image; the message is truncated"
        )
    # Rows may be padded to `step` bytes; slicing drops the padding.
    rows = raw[: h * step].reshape(h, step)[:, :row_bytes]
    img = np.ascontiguousarray(rows).view(value).reshape(h, w, layout.channels)
    if layout.channels == 1:
        img = img[..., 0]
    if value.itemsize == 2:
        img = _to_8_bits(img.astype(np.uint16, copy=False))
    if layout.to_rgb is None:
        return img.copy()  # own the memory: the message buffer may be read-only or reused
    return cv2.cvtColor(np.ascontiguousarray(img), layout.to_rgb)


def _to_8_bits(img: np.ndarray) -> np.ndarray:
    """A 16-bit image as uint8, shifted right by the bits its brightest value uses beyond 8."""
    used_bits = int(img.max()).bit_length() if img.size else 0
    return (img >> max(used_bits - 8, 0)).astype(np.uint8)


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
    return [(parent, child, T) for parent, child, T, _ in stamped_transforms_from_tf_msg(msg)]


def stamped_transforms_from_tf_msg(msg: Any) -> list[tuple[str, str, np.ndarray, int]]:
    """``[(parent, child, T_parent_child 4x4, stamp [ns])]`` from a ``tf2_msgs/TFMessage`` (``/tf``'s moving
    edges are samples at their stamps)."""
    out = []
    for ts in msg.transforms:
        q, t = ts.transform.rotation, ts.transform.translation
        quat = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
        if not np.isfinite(quat).all() or np.linalg.norm(quat) < 1e-12:
            raise CrossI2PError(
                f"transform {ts.header.frame_id} <- {ts.child_frame_id} has an invalid quaternion {quat.tolist()}"
            )
        R = Rotation.from_quat(quat).as_matrix()
        stamp = int(ts.header.stamp.sec) * 1_000_000_000 + int(ts.header.stamp.nanosec)
        out.append((str(ts.header.frame_id), str(ts.child_frame_id), make_transform(R, [t.x, t.y, t.z]), stamp))
    return out
