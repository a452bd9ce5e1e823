"""Point clouds laid out byte for byte as the common LiDAR drivers publish them (test fixtures).

Each builder takes the same sweep (points (N, 4) x, y, z [m], intensity; each point's ``ring`` and time
``times_s`` [s from the stamp]) and returns the PointCloud2's fields as a namespace, as the driver would
write them:

- ``ouster``: ouster-ros' default point (x y z, 4 bytes of padding, float32 intensity at 16, uint32 ``t`` [ns
  from the stamp], uint16 reflectivity, uint16 ring, uint16 ambient, uint32 range; 48 bytes), organised
  beams x columns, a pixel without a return all zeros;
- ``velodyne``: velodyne_pointcloud's organised XYZIRT cloud (float32 x y z intensity, uint16 ring, float32
  ``time`` [s from the stamp]; packed, 22 bytes), a firing without a return NaN;
- ``hesai``: HesaiLidar_ROS_2.0's cloud (float32 x y z intensity, uint16 ring, float64 ``timestamp``
  [absolute s]; packed, 26 bytes, the float64 unaligned), returns only;
- ``livox``: livox_ros_driver2's PointCloud2 (float32 x y z intensity, uint8 tag, uint8 line, float64
  ``timestamp`` [absolute ns]; 26 bytes), returns only, no ring.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from crossi2p_ros import pointcloud as pc

DRIVERS = ("ouster", "velodyne", "hesai", "livox")
_CODE = {"u1": pc.UINT8, "u2": pc.UINT16, "u4": pc.UINT32, "f4": pc.FLOAT32, "f8": pc.FLOAT64}


def _layout(fields: list[tuple[str, str, int]], itemsize: int) -> np.dtype:
    return np.dtype({"names": [f[0] for f in fields], "formats": ["<" + f[1] for f in fields],
                     "offsets": [f[2] for f in fields], "itemsize": itemsize})


_LAYOUTS = {
    "ouster": _layout([("x", "f4", 0), ("y", "f4", 4), ("z", "f4", 8), ("intensity", "f4", 16), ("t", "u4", 20),
                       ("reflectivity", "u2", 24), ("ring", "u2", 26), ("ambient", "u2", 28), ("range", "u4", 32)],
                      48),
    "velodyne": _layout([("x", "f4", 0), ("y", "f4", 4), ("z", "f4", 8), ("intensity", "f4", 12),
                         ("ring", "u2", 16), ("time", "f4", 18)], 22),
    "hesai": _layout([("x", "f4", 0), ("y", "f4", 4), ("z", "f4", 8), ("intensity", "f4", 12), ("ring", "u2", 16),
                      ("timestamp", "f8", 18)], 26),
    "livox": _layout([("x", "f4", 0), ("y", "f4", 4), ("z", "f4", 8), ("intensity", "f4", 12), ("tag", "u1", 16),
                      ("line", "u1", 17), ("timestamp", "f8", 18)], 26),
}


def spinning_grid(points: np.ndarray, ring: np.ndarray, columns: int) -> np.ndarray:
    """Each point's column (N,) in a spinning head's azimuth grid of ``columns`` firings a turn, counted
    clockwise from behind (the synthetic sensors' firing order). Every column of a sweep is at its nominal
    azimuth plus one phase under a column's width, so rounding recovers it."""
    azimuth = np.arctan2(points[:, 1].astype(np.float64), points[:, 0].astype(np.float64))
    column = np.round((np.pi - azimuth) * columns / (2 * np.pi)).astype(np.int64) % columns
    cells = np.asarray(ring, np.int64) * columns + column
    assert len(np.unique(cells)) == len(cells), "two points fell in one cell: not a spinning grid"
    return column


def driver_cloud(driver: str, points: np.ndarray, ring: np.ndarray, times_s: np.ndarray, stamp_ns: int,
                 column: np.ndarray | None = None, columns: int = 0) -> SimpleNamespace:
    """The cloud ``driver`` publishes for this sweep (a PointCloud2's fields and header, as a namespace).
    The organised drivers (ouster, velodyne) place point i at row ``ring[i]``, column ``column[i]`` of a
    ``max(ring) + 1`` x ``columns`` grid; the kept points then come back in ring-major, column order."""
    dtype = _LAYOUTS[driver]
    n = len(points)
    if driver in ("ouster", "velodyne"):
        height = int(np.max(ring)) + 1
        cell = np.asarray(ring, np.int64) * columns + np.asarray(column, np.int64)
        rec = np.zeros(height * columns, dtype)                       # Ouster: no return = zeros
        if driver == "velodyne":
            for name in "xyz":
                rec[name] = np.nan                                    # Velodyne: no return = NaN
        rec["ring"] = np.repeat(np.arange(height), columns)
    else:
        height, columns, cell = 1, n, np.arange(n)
        rec = np.zeros(n, dtype)
    for i, name in enumerate("xyz"):
        rec[name][cell] = points[:, i]
    rec["intensity"][cell] = points[:, 3]
    if "ring" in dtype.names:
        rec["ring"][cell] = ring
    t = np.asarray(times_s, np.float64)
    if driver == "ouster":
        rec["t"][cell] = np.round(t * 1e9)
        rec["range"][cell] = np.round(np.linalg.norm(points[:, :3], axis=1) * 1000)   # mm
        rec["reflectivity"][cell] = np.clip(points[:, 3] * 255, 0, 255)
    elif driver == "velodyne":
        rec["time"][cell] = t
    elif driver == "hesai":
        rec["timestamp"][cell] = stamp_ns * 1e-9 + t
    else:
        rec["timestamp"][cell] = stamp_ns + t * 1e9
        rec["line"][cell] = np.asarray(ring) % 6                      # a scan line, not a ring
    fields = [SimpleNamespace(name=name, offset=off, datatype=_CODE[sub.str[1:]], count=1)
              for name, (sub, off) in dtype.fields.items()]
    return SimpleNamespace(
        header=SimpleNamespace(stamp=SimpleNamespace(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)),
        fields=fields, point_step=dtype.itemsize, row_step=dtype.itemsize * columns, width=columns,
        height=height, is_bigendian=False, is_dense=driver in ("hesai", "livox"), data=rec.tobytes())


def ros_cloud(cloud: SimpleNamespace, frame_id: str, stamp) -> object:
    """``cloud`` as an rclpy ``sensor_msgs/PointCloud2`` stamped ``stamp`` (builtin Time)."""
    from sensor_msgs.msg import PointCloud2, PointField

    msg = PointCloud2()
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.height, msg.width = cloud.height, cloud.width
    msg.fields = [PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count) for f in cloud.fields]
    msg.is_bigendian, msg.point_step, msg.row_step = cloud.is_bigendian, cloud.point_step, cloud.row_step
    msg.data, msg.is_dense = cloud.data, cloud.is_dense
    return msg
