"""``sensor_msgs/PointCloud2`` packing and unpacking with numpy only.

Shared by the bag reader (rosbags message dataclasses) and the live node
(rclpy messages): :func:`unpack_xyzi` accepts any object with the
PointCloud2 attributes ``fields`` (each with ``name``, ``offset``,
``datatype``, ``count``), ``point_step``, ``row_step``, ``width``,
``height``, ``is_bigendian`` and ``data``.

Points are ``(N, 4)`` float32 ``x, y, z, intensity`` in the cloud's own
frame (``header.frame_id``); x, y, z in metres, intensity in whatever unit
the driver reports.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from crossi2p_ros.errors import CrossI2PError
from crossi2p_ros.geometry import finite_rows

# sensor_msgs/PointField datatype constants.
INT8 = 1
UINT8 = 2
INT16 = 3
UINT16 = 4
INT32 = 5
UINT32 = 6
FLOAT32 = 7
FLOAT64 = 8

_NUMPY_TYPE = {
    INT8: "i1", UINT8: "u1", INT16: "i2", UINT16: "u2", INT32: "i4", UINT32: "u4", FLOAT32: "f4", FLOAT64: "f8",
}
_FLOAT_TYPES = (FLOAT32, FLOAT64)
_INT_TYPES = (INT8, UINT8, INT16, UINT16, INT32, UINT32)
# Drivers disagree on the intensity field's name; the first one present wins.
INTENSITY_NAMES = ("intensity", "i", "reflectivity")
# Each point's beam: Velodyne, Ouster and Hesai drivers publish ``ring`` (uint16 or uint8); Livox's ``line``
# is its scan line, not a ring of constant elevation, and is not taken.
RING_NAME = "ring"
# Each point's time, the first one present: Livox's ``offset_time`` (uint32 ns from the stamp), Ouster's ``t``
# (uint32 ns from the stamp), Velodyne's ``time`` (float32 s from the stamp), Hesai's and Livox's ``timestamp``
# (float64, absolute: s, or ns). Read as seconds from the header stamp (:func:`point_times_s`).
TIME_NAMES = ("offset_time", "t", "time", "timestamp")


class PointFieldSpec(NamedTuple):
    """One ``sensor_msgs/PointField``: byte ``offset`` within a point, ``datatype`` constant, element ``count``."""

    name: str
    offset: int
    datatype: int
    count: int


@dataclass(frozen=True)
class PackedCloud:
    """The fields of a ``sensor_msgs/PointCloud2`` (everything except the header).

    Attribute names match the message, so :func:`unpack_xyzi` reads it back
    and the bag writer / node copy it field by field into a real message.
    """

    fields: list[PointFieldSpec]
    point_step: int
    row_step: int
    width: int
    height: int
    data: bytes
    is_bigendian: bool = False
    is_dense: bool = True


XYZI_FIELDS = [
    PointFieldSpec("x", 0, FLOAT32, 1),
    PointFieldSpec("y", 4, FLOAT32, 1),
    PointFieldSpec("z", 8, FLOAT32, 1),
    PointFieldSpec("intensity", 12, FLOAT32, 1),
]


def pack_xyzi(points: np.ndarray, ring: np.ndarray | None = None, times_s: np.ndarray | None = None) -> PackedCloud:
    """Pack points ``(N, 4)`` float32 (x, y, z [m], intensity) as an unorganised little-endian cloud, with
    each point's beam ``ring`` (N,) as a uint16 ``ring`` field (as Velodyne's driver) and its time ``times_s``
    (N,) [s from the stamp, >= 0] as a uint32 ``t`` field in nanoseconds (as Ouster's) after them when given.

    ``(N, 3)`` input is accepted too; intensity is then 0.
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] not in (3, 4):
        raise CrossI2PError(f"points to pack have shape {pts.shape}; pass an (N, 4) array of x, y, z, intensity")
    if pts.shape[1] == 3:
        pts = np.concatenate([pts, np.zeros((pts.shape[0], 1), dtype=pts.dtype)], axis=1)
    # '<f4' fixes the byte order so the packed cloud matches is_bigendian=False on any host.
    packed = np.ascontiguousarray(pts, dtype="<f4")
    n = packed.shape[0]
    fields, step, data = list(XYZI_FIELDS), 16, packed.tobytes()
    extra = [(RING_NAME, ring, "<u2", UINT16, 2), ("t", times_s, "<u4", UINT32, 4)]
    extra = [e for e in extra if e[1] is not None]
    if extra:
        names, formats, offsets, step = ["xyzi"], [("<f4", 4)], [0], 16
        for name, values, fmt, datatype, size in extra:
            if np.shape(values) != (n,):
                raise CrossI2PError(f"{name} has shape {np.shape(values)}; pass one value per point ({n})")
            names.append(name)
            formats.append(fmt)
            offsets.append(step)
            fields.append(PointFieldSpec(name, step, datatype, 1))
            step += size
        rec = np.zeros(n, dtype=np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": step}))
        rec["xyzi"] = packed
        if ring is not None:
            rec[RING_NAME] = ring
        if times_s is not None:
            rec["t"] = np.round(np.clip(np.asarray(times_s, dtype=np.float64), 0.0, 4.29) * 1e9).astype(np.uint32)
        data = rec.tobytes()
    return PackedCloud(
        fields=fields,
        point_step=step,
        row_step=step * n,
        width=n,
        height=1,
        data=data,
        is_bigendian=False,
        is_dense=bool(np.isfinite(packed[:, :3]).all()),
    )


def as_bytes_view(data: Any) -> np.ndarray:
    """A message payload (PointCloud2 or Image ``data``) as a flat uint8 array without copying when possible."""
    try:
        return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    except TypeError:  # e.g. a plain list of ints
        return np.asarray(data, dtype=np.uint8).ravel()


def _fields_by_name(msg: Any) -> dict[str, PointFieldSpec]:
    out: dict[str, PointFieldSpec] = {}
    for f in msg.fields:
        # The first definition wins, as in sensor_msgs' point_cloud2 helpers.
        out.setdefault(str(f.name), PointFieldSpec(str(f.name), int(f.offset), int(f.datatype), int(f.count)))
    return out


def _field_dtype(f: PointFieldSpec, byte_order: str) -> np.dtype:
    if f.datatype not in _NUMPY_TYPE:
        raise CrossI2PError(
            f"PointCloud2 field {f.name!r} has unsupported datatype {f.datatype}; "
            f"supported are the sensor_msgs/PointField constants 1..8 (INT8..FLOAT64)"
        )
    return np.dtype(byte_order + _NUMPY_TYPE[f.datatype])


def unpack_xyzi(msg: Any, keep_invalid: bool = False) -> np.ndarray:
    """Points ``(N, 4)`` float32 (x, y, z [m], intensity) from a PointCloud2-like message.

    Handles any field layout (padding, extra fields, float64 coordinates, any
    numeric intensity type), organised clouds with row padding and big-endian
    payloads. Intensity is taken from ``intensity``, else ``i``, else
    ``reflectivity``, else 0. Points with a non-finite x, y or z, or at exactly
    (0, 0, 0) (the no-return pixels of organised clouds), are dropped unless
    ``keep_invalid``; organised clouds come back flattened row-major.
    """
    return unpack_xyzi_ring(msg, keep_invalid)[0]


def unpack_xyzi_ring(msg: Any, keep_invalid: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`unpack_xyzi`'s points and, where the cloud has an integer ``ring`` field, each kept point's
    ring (N,) int64 (None without one)."""
    cloud = unpack_cloud(msg, keep_invalid)
    return cloud.points, cloud.ring


class UnpackedCloud(NamedTuple):
    """A cloud's kept points (N, 4) float32, their ``ring`` (N,) int64 and ``times`` (N,) float64 [s from the
    header stamp], each None where the cloud has no such field."""

    points: np.ndarray
    ring: np.ndarray | None
    times: np.ndarray | None


def point_times_s(values: np.ndarray, datatype: int, stamp_ns: int) -> np.ndarray:
    """A driver's per-point time field (``TIME_NAMES``) as seconds from the header stamp ``stamp_ns``.

    Integers are nanoseconds (Ouster ``t``, Livox ``offset_time``); float32 is seconds from the stamp
    (Velodyne ``time``); float64 is seconds from the stamp too unless its values are absolute, told by their
    size: beyond 10^15 nanoseconds since the epoch (Livox ``timestamp``), beyond 10^6 seconds (Hesai's)."""
    v = np.asarray(values, dtype=np.float64)
    if datatype in _INT_TYPES:
        v = v * 1e-9
        if len(v) and np.nanmedian(v) > 1e6:          # absolute nanoseconds in an integer field
            v = v - stamp_ns * 1e-9
        return v
    if datatype == FLOAT64 and len(v):
        middle = float(np.nanmedian(v))
        if middle > 1e15:
            return (v - stamp_ns) * 1e-9
        if middle > 1e6:
            return v - stamp_ns * 1e-9
    return v


def _stamp_ns(msg: Any) -> int:
    stamp = getattr(getattr(msg, "header", None), "stamp", None)
    return 0 if stamp is None else int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def unpack_cloud(msg: Any, keep_invalid: bool = False) -> UnpackedCloud:
    """:func:`unpack_xyzi`'s points with each kept point's ``ring`` (an integer ``ring`` field) and time
    (a ``TIME_NAMES`` field, seconds from the header stamp: :func:`point_times_s`), each None without one."""
    fields = _fields_by_name(msg)
    missing = [c for c in "xyz" if c not in fields]
    if missing:
        raise CrossI2PError(
            f"PointCloud2 has no field(s) {missing} (fields: {sorted(fields)}); "
            "point the LiDAR topic at a cloud with float x, y, z coordinates"
        )
    width, height = int(msg.width), int(msg.height)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    byte_order = ">" if bool(msg.is_bigendian) else "<"

    used = [fields[c] for c in "xyz"]
    for c in used:
        if c.datatype not in _FLOAT_TYPES:
            raise CrossI2PError(
                f"PointCloud2 field {c.name!r} has datatype {c.datatype}; x, y, z must be FLOAT32 (7) or FLOAT64 (8)"
            )
    intensity = next((fields[n] for n in INTENSITY_NAMES if n in fields), None)
    names = ["x", "y", "z"]
    if intensity is not None:
        used.append(intensity)
        names.append("intensity")
    ring = fields.get(RING_NAME)
    if ring is not None and ring.datatype in _INT_TYPES:
        used.append(ring)
        names.append("ring")
    else:
        ring = None
    time_field = next((fields[n] for n in TIME_NAMES if n in fields and fields[n].count <= 1), None)
    if time_field is not None:
        used.append(time_field)
        names.append("time")

    formats, offsets = [], []
    for f in used:
        dt = _field_dtype(f, byte_order)
        end = f.offset + dt.itemsize * max(f.count, 1)
        if f.offset < 0 or end > point_step:
            raise CrossI2PError(
                f"PointCloud2 field {f.name!r} spans bytes {f.offset}..{end} but point_step is {point_step}; "
                "the message header is inconsistent, fix the publisher's fields/point_step"
            )
        formats.append(dt)
        offsets.append(f.offset)
    if width * height == 0:
        return UnpackedCloud(np.zeros((0, 4), dtype=np.float32), None if ring is None else np.zeros(0, np.int64),
                             None if time_field is None else np.zeros(0))
    if row_step < width * point_step:
        raise CrossI2PError(
            f"PointCloud2 row_step {row_step} is smaller than width*point_step = {width}*{point_step}; "
            "fix the publisher's row_step"
        )

    raw = as_bytes_view(msg.data)
    if raw.size < height * row_step:
        raise CrossI2PError(
            f"PointCloud2 data has {raw.size} bytes but height*row_step = {height}*{row_step} = {height * row_step}; "
            "the message is truncated, check the recording or the driver"
        )
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step})
    if row_step == width * point_step:
        records = np.frombuffer(raw[: height * row_step], dtype=dtype)
    else:
        # Row padding: cut each row to its points, then reinterpret; one copy of the payload.
        rows = raw[: height * row_step].reshape(height, row_step)[:, : width * point_step]
        records = np.ascontiguousarray(rows).view(dtype).reshape(-1)

    out = np.empty((records.shape[0], 4), dtype=np.float32)
    out[:, 0] = records["x"]
    out[:, 1] = records["y"]
    out[:, 2] = records["z"]
    out[:, 3] = records["intensity"] if intensity is not None else 0.0
    rings = None if ring is None else records["ring"].astype(np.int64)
    times = None if time_field is None else point_times_s(records["time"], time_field.datatype, _stamp_ns(msg))
    if keep_invalid:
        return UnpackedCloud(out, rings, times)
    # a return at exactly (0, 0, 0) is no return: organised clouds (Ouster's, a Velodyne's with its cloud
    # organised) fill the pixels without one with zeros, others with NaN
    valid = finite_rows(out[:, :3]) & np.any(out[:, :3] != 0.0, axis=1)
    if valid.all():
        return UnpackedCloud(out, rings, times)
    return UnpackedCloud(out[valid], None if rings is None else rings[valid],
                         None if times is None else times[valid])
