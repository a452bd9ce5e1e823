"""PointCloud2 packing/unpacking on real byte layouts built with numpy structured arrays."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from _driver_layouts import DRIVERS, driver_cloud
from crossi2p_ros import pointcloud as pc
from crossi2p_ros.errors import CrossI2PError

_CODE = {"i1": pc.INT8, "u1": pc.UINT8, "i2": pc.INT16, "u2": pc.UINT16, "i4": pc.INT32, "u4": pc.UINT32,
         "f4": pc.FLOAT32, "f8": pc.FLOAT64}


def _points(n: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pts = rng.uniform(-50, 50, size=(n, 4)).astype(np.float32)
    pts[:, 3] = rng.uniform(0, 255, size=n)
    return pts


def _msg(records: np.ndarray, *, height: int = 1, row_pad: int = 0, bigendian: bool = False,
         skip: tuple[str, ...] = ()) -> SimpleNamespace:
    """A PointCloud2-like message whose layout is exactly ``records.dtype`` (offsets, padding, itemsize)."""
    dt = records.dtype
    fields = [
        SimpleNamespace(name=name, offset=off, datatype=_CODE[sub.base.str[1:]], count=1)
        for name, (sub, off) in dt.fields.items() if not name.startswith("_") and name not in skip
    ]
    width = records.size // height
    rows = records.reshape(height, width).view(np.uint8).reshape(height, width * dt.itemsize)
    data = np.concatenate([rows, np.full((height, row_pad), 0xAB, np.uint8)], axis=1)
    return SimpleNamespace(fields=fields, point_step=dt.itemsize, row_step=width * dt.itemsize + row_pad,
                           width=width, height=height, is_bigendian=bigendian, is_dense=False,
                           data=data.tobytes())


def _records(pts: np.ndarray, dtype: np.dtype) -> np.ndarray:
    rec = np.zeros(pts.shape[0], dtype=dtype)
    for i, name in enumerate(("x", "y", "z")):
        rec[name] = pts[:, i]
    for name in ("intensity", "i", "reflectivity"):
        if name in dtype.names:
            rec[name] = pts[:, 3]
    return rec


def test_pack_unpack_round_trip() -> None:
    pts = _points()
    cloud = pc.pack_xyzi(pts)
    assert cloud.point_step == 16 and cloud.width == 50 and cloud.height == 1
    assert cloud.row_step == 16 * 50 and len(cloud.data) == 16 * 50
    assert not cloud.is_bigendian and cloud.is_dense
    assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == [
        ("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("intensity", 12, 7, 1)]
    np.testing.assert_array_equal(pc.unpack_xyzi(cloud), pts)


def test_pack_empty_and_nan_flags_not_dense() -> None:
    assert pc.unpack_xyzi(pc.pack_xyzi(np.zeros((0, 4), np.float32))).shape == (0, 4)
    pts = _points(5)
    pts[2, 1] = np.nan
    assert not pc.pack_xyzi(pts).is_dense
    with pytest.raises(CrossI2PError, match=r"\(N, 4\)"):
        pc.pack_xyzi(np.zeros((5, 2)))


def test_padding_extra_fields_float64_uint16_intensity() -> None:
    pts = _points()
    pts[:, 3] = np.round(pts[:, 3])  # uint16 intensity holds integers
    dtype = np.dtype({
        "names": ["ring", "x", "y", "z", "intensity", "t"],
        "formats": ["<u2", "<f8", "<f8", "<f8", "<u2", "<u4"],
        "offsets": [0, 8, 16, 24, 36, 40],  # gaps at 2..8 and 32..36, trailing pad to 48
        "itemsize": 48,
    })
    out = pc.unpack_xyzi(_msg(_records(pts, dtype)))
    np.testing.assert_array_equal(out, pts)


@pytest.mark.parametrize("name", ["i", "reflectivity"])
def test_intensity_aliases(name: str) -> None:
    pts = _points()
    dtype = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), (name, "<f4")])
    np.testing.assert_array_equal(pc.unpack_xyzi(_msg(_records(pts, dtype))), pts)


def test_intensity_preferred_and_missing() -> None:
    pts = _points()
    dtype = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("reflectivity", "u1"), ("intensity", "<f4")])
    rec = _records(pts, dtype)
    rec["reflectivity"] = 7
    np.testing.assert_array_equal(pc.unpack_xyzi(_msg(rec)), pts)
    no_i = pc.unpack_xyzi(_msg(rec, skip=("intensity", "reflectivity")))
    np.testing.assert_array_equal(no_i[:, :3], pts[:, :3])
    assert not no_i[:, 3].any()


def test_organised_cloud_with_row_padding() -> None:
    pts = _points(4 * 6)
    dtype = np.dtype({"names": ["x", "y", "z", "intensity"], "formats": ["<f4"] * 4,
                      "offsets": [0, 4, 8, 16], "itemsize": 32})
    msg = _msg(_records(pts, dtype), height=4, row_pad=24)
    assert msg.row_step > msg.width * msg.point_step
    np.testing.assert_array_equal(pc.unpack_xyzi(msg), pts)  # row-major flattening


def test_big_endian() -> None:
    pts = _points()
    dtype = np.dtype([("x", ">f8"), ("y", ">f8"), ("z", ">f8"), ("intensity", ">i2"), ("_pad", "V6")])
    pts[:, 3] = np.round(pts[:, 3])
    out = pc.unpack_xyzi(_msg(_records(pts, dtype), bigendian=True))
    np.testing.assert_array_equal(out, pts)


def test_non_finite_points_dropped_unless_kept() -> None:
    pts = _points(10)
    pts[3, 0] = np.nan
    pts[7, 2] = np.inf
    pts[5, 3] = np.nan  # a NaN intensity alone keeps the point
    cloud = pc.pack_xyzi(pts)
    out = pc.unpack_xyzi(cloud)
    assert out.shape == (8, 4)
    np.testing.assert_array_equal(out[:, :3], np.delete(pts, [3, 7], axis=0)[:, :3])
    assert pc.unpack_xyzi(cloud, keep_invalid=True).shape == (10, 4)


def test_accepts_numpy_and_array_payloads() -> None:
    import array

    pts = _points(8)
    cloud = pc.pack_xyzi(pts)
    for data in (np.frombuffer(cloud.data, np.uint8), array.array("B", cloud.data), list(cloud.data)):
        msg = SimpleNamespace(**{**cloud.__dict__, "data": data})
        np.testing.assert_array_equal(pc.unpack_xyzi(msg), pts)


def test_missing_xyz_field() -> None:
    dtype = np.dtype([("x", "<f4"), ("y", "<f4"), ("intensity", "<f4")])
    with pytest.raises(CrossI2PError, match=r"no field\(s\) \['z'\]"):
        pc.unpack_xyzi(_msg(np.zeros(3, dtype)))


def test_short_data() -> None:
    cloud = pc.pack_xyzi(_points(10))
    msg = SimpleNamespace(**{**cloud.__dict__, "data": cloud.data[:-1]})
    with pytest.raises(CrossI2PError, match="truncated"):
        pc.unpack_xyzi(msg)


def test_point_step_smaller_than_fields() -> None:
    cloud = pc.pack_xyzi(_points(10))
    msg = SimpleNamespace(**{**cloud.__dict__, "point_step": 12})
    with pytest.raises(CrossI2PError, match="point_step is 12"):
        pc.unpack_xyzi(msg)


def test_unsupported_datatypes() -> None:
    cloud = pc.pack_xyzi(_points(4))
    bad_i = [*cloud.fields[:3], pc.PointFieldSpec("intensity", 12, 9, 1)]
    with pytest.raises(CrossI2PError, match="unsupported datatype 9"):
        pc.unpack_xyzi(SimpleNamespace(**{**cloud.__dict__, "fields": bad_i}))
    int_x = [pc.PointFieldSpec("x", 0, pc.INT32, 1), *cloud.fields[1:]]
    with pytest.raises(CrossI2PError, match="FLOAT32"):
        pc.unpack_xyzi(SimpleNamespace(**{**cloud.__dict__, "fields": int_x}))


def test_rclpy_message() -> None:
    """The live node hands over rclpy messages, whose uint8[] payload is an array.array."""
    msgs = pytest.importorskip("sensor_msgs.msg")
    pts = _points(20)
    cloud = pc.pack_xyzi(pts)
    msg = msgs.PointCloud2(
        height=cloud.height, width=cloud.width, is_bigendian=cloud.is_bigendian,
        point_step=cloud.point_step, row_step=cloud.row_step, data=cloud.data, is_dense=cloud.is_dense,
        fields=[msgs.PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count)
                for f in cloud.fields],
    )
    np.testing.assert_array_equal(pc.unpack_xyzi(msg), pts)


def test_an_organised_cloud_with_a_ring_field_gives_each_kept_point_its_beam() -> None:
    """An Ouster-like organised cloud (a row per beam; x, y, z, intensity, t, reflectivity, uint16 ring,
    range with padding; no-return pixels as zeros or NaN): the ring of every kept point is its row."""
    beams, columns = 8, 32
    dtype = np.dtype({"names": ["x", "y", "z", "intensity", "t", "reflectivity", "ring", "range"],
                      "formats": ["<f4", "<f4", "<f4", "<f4", "<u4", "<u2", "<u2", "<u4"],
                      "offsets": [0, 4, 8, 16, 20, 24, 26, 32], "itemsize": 48})
    rec = np.zeros(beams * columns, dtype=dtype)
    pts = _points(beams * columns, seed=3)
    for name, col in zip("xyz", pts[:, :3].T):
        rec[name] = col
    rec["intensity"] = pts[:, 3]
    rec["ring"] = np.repeat(np.arange(beams), columns)         # row r is beam r
    nan = np.arange(5, beams * columns, 11)
    for name in "xyz":
        rec[name][nan] = np.nan
    msg = _msg(rec, height=beams)
    points, ring = pc.unpack_xyzi_ring(msg)
    kept = np.setdiff1d(np.arange(beams * columns), nan)
    np.testing.assert_array_equal(points[:, :3], pts[kept, :3])
    np.testing.assert_array_equal(ring, kept // columns)
    np.testing.assert_array_equal(pc.unpack_xyzi(msg), points)
    # no ring field, or a Livox-like scan ``line`` (not a ring of constant elevation): no rings
    assert pc.unpack_xyzi_ring(_msg(rec, height=beams, skip=("ring",)))[1] is None
    livox = np.dtype({"names": ["x", "y", "z", "intensity", "tag", "line"],
                      "formats": ["<f4", "<f4", "<f4", "<f4", "u1", "u1"], "offsets": [0, 4, 8, 12, 16, 17],
                      "itemsize": 18})
    assert pc.unpack_xyzi_ring(_msg(_records(_points(20), livox)))[1] is None


# Each driver's per-point time as it writes it: (field, numpy type, value of a point 0.0425 s after a header
# stamp of 1,700,000,000.5 s). Ouster: uint32 ns from the stamp; Velodyne: float32 s from the stamp; Hesai:
# float64 absolute s; Livox (livox_ros_driver2 PointXYZRTLT): float64 absolute ns, and CustomMsg's offset_time
# uint32 ns from the stamp.
_STAMP_NS = 1_700_000_000_500_000_000
_DRIVER_TIMES = {
    "ouster t": ("t", "<u4", lambda s: np.round(s * 1e9)),
    "velodyne time": ("time", "<f4", lambda s: s),
    "hesai timestamp": ("timestamp", "<f8", lambda s: _STAMP_NS * 1e-9 + s),
    "livox timestamp": ("timestamp", "<f8", lambda s: _STAMP_NS + s * 1e9),
    "livox offset_time": ("offset_time", "<u4", lambda s: np.round(s * 1e9)),
}


@pytest.mark.parametrize("driver", list(_DRIVER_TIMES))
def test_each_drivers_point_time_field_reads_as_seconds_from_the_stamp(driver) -> None:
    name, fmt, encode = _DRIVER_TIMES[driver]
    pts = _points(40)
    pts[3] = np.nan                                                  # an invalid return, dropped with its time
    seconds = np.linspace(0.0, 0.0999, 40)
    rec = _records(pts, np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4"), (name, fmt)]))
    rec[name] = encode(seconds)
    msg = _msg(rec)
    msg.header = SimpleNamespace(stamp=SimpleNamespace(sec=_STAMP_NS // 10**9, nanosec=_STAMP_NS % 10**9))
    cloud = pc.unpack_cloud(msg)
    keep = np.arange(40) != 3
    assert len(cloud.points) == 39 and cloud.times is not None
    np.testing.assert_allclose(cloud.times, seconds[keep], atol=2e-6)   # float64 absolute s: ~0.2 us rounding


def test_packed_times_round_trip_as_ousters_t_field() -> None:
    pts, ring, times = _points(30), np.arange(30) % 16, np.linspace(0.0, 0.1, 30)
    cloud = pc.pack_xyzi(pts, ring, times)
    assert [(f.name, f.datatype) for f in cloud.fields][-2:] == [("ring", pc.UINT16), ("t", pc.UINT32)]
    back = pc.unpack_cloud(SimpleNamespace(**cloud.__dict__))
    np.testing.assert_array_equal(back.ring, ring)
    np.testing.assert_allclose(back.times, times, atol=1e-9)
    assert pc.unpack_cloud(SimpleNamespace(**pc.pack_xyzi(pts).__dict__)).times is None


@pytest.mark.parametrize("driver", DRIVERS)
def test_each_drivers_cloud_decodes_to_the_points_of_our_plain_layout(driver) -> None:
    """A sweep published as each driver publishes it (test/_driver_layouts.py: organised with zeros or NaN for
    missing returns, padding, unaligned float64 times, absolute or relative stamps) gives the same points,
    rings and times as the same sweep in our plain layout; so the calibration downstream is the same."""
    beams, columns = 8, 40
    rng = np.random.default_rng(11)
    cells = np.sort(rng.choice(beams * columns, 200, replace=False))     # 120 grid cells without a return
    ring, column = cells // columns, cells % columns
    pts = _points(200, seed=4)
    times = column * (0.1 / columns) + 1e-4 * ring
    cloud = driver_cloud(driver, pts, ring, times, _STAMP_NS, column, columns)
    plain = SimpleNamespace(**pc.pack_xyzi(pts, ring, times).__dict__,
                            header=SimpleNamespace(stamp=SimpleNamespace(sec=_STAMP_NS // 10**9,
                                                                         nanosec=_STAMP_NS % 10**9)))
    want, got = pc.unpack_cloud(plain), pc.unpack_cloud(cloud)
    np.testing.assert_array_equal(got.points, want.points)
    if driver == "livox":
        assert got.ring is None                     # its ``line`` is a scan line, not a beam
    else:
        np.testing.assert_array_equal(got.ring, want.ring)
    np.testing.assert_allclose(got.times, want.times, atol=1e-6)   # float64 absolute s: ~0.2 us rounding
