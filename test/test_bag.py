"""Real rosbag2 files (mcap and sqlite3) written with BagWriter and read back."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from rosbags.interfaces import QosDurability
from rosbags.rosbag2 import Reader

from crossi2p_ros import bag, decode
from crossi2p_ros.errors import CrossI2PError
from crossi2p_ros.geometry import CameraModel, make_transform, so3_exp
from crossi2p_ros.pointcloud import unpack_xyzi

STORAGES = ["mcap", "sqlite3"]


def _image(h: int = 48, w: int = 64) -> np.ndarray:
    # Smooth content so JPEG stays close; raw must come back bit-exact anyway.
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 4, yy * 5, (xx + yy) * 2], axis=-1).astype(np.uint8)


def _scene() -> dict:
    rng = np.random.default_rng(1)
    pts = rng.uniform(-20, 20, size=(300, 4)).astype(np.float32)
    return {
        "rgb": _image(),
        "camera": CameraModel.from_intrinsics(64, 48, 55.5, 56.25, 31.75, 23.5,
                                              dist=[-0.12, 0.034, 0.001, -0.002, 0.0005], model="plumb_bob"),
        "points": pts,
        "T": make_transform(so3_exp(np.array([0.3, -1.2, 2.0])), [0.12, -0.34, 1.56]),
    }


def _write(path: Path, storage: str, s: dict) -> None:
    # Deliberately out of time order: the reader must return bag-time order.
    with bag.BagWriter(path, storage) as w:
        w.add_pointcloud("/lidar/points", 3_100_000_000, "lidar", s["points"])
        w.add_image("/camera/image_raw", 3_000_000_000, "camera_optical", s["rgb"])
        w.add_image("/camera/image_raw/compressed", 3_000_000_001, "camera_optical", s["rgb"], compressed=True)
        w.add_camera_info("/camera/camera_info", 2_999_999_999, "camera_optical", s["camera"])
        w.add_tf_static(1_000_000_000, "lidar", "camera_optical", s["T"])
        w.add_pointcloud("/lidar/points", 1_500_000_000, "lidar", s["points"][:10])


@pytest.mark.parametrize("storage", STORAGES)
def test_round_trip(tmp_path: Path, storage: str) -> None:
    s = _scene()
    path = tmp_path / "bag"
    _write(path, storage, s)

    assert bag.bag_topics(path) == {
        "/lidar/points": ("sensor_msgs/msg/PointCloud2", 2),
        "/camera/image_raw": ("sensor_msgs/msg/Image", 1),
        "/camera/image_raw/compressed": ("sensor_msgs/msg/CompressedImage", 1),
        "/camera/camera_info": ("sensor_msgs/msg/CameraInfo", 1),
        "/tf_static": ("tf2_msgs/msg/TFMessage", 1),
    }

    msgs = list(bag.iter_messages(path))
    stamps = [m[2] for m in msgs]
    assert stamps == sorted(stamps) == [1_000_000_000, 1_500_000_000, 2_999_999_999,
                                        3_000_000_000, 3_000_000_001, 3_100_000_000]
    for _, _, stamp, msg in msgs:  # bag time == header stamp
        header = msg.transforms[0].header if hasattr(msg, "transforms") else msg.header
        assert header.stamp.sec * 1_000_000_000 + header.stamp.nanosec == stamp
    by_topic = {t: m for t, _, _, m in msgs}

    raw = by_topic["/camera/image_raw"]
    assert raw.encoding == "rgb8" and raw.header.frame_id == "camera_optical"
    np.testing.assert_array_equal(decode.image_from_msg(raw), s["rgb"])

    jpeg = by_topic["/camera/image_raw/compressed"]
    assert jpeg.format == "jpeg"
    decoded = decode.image_from_msg(jpeg)
    assert decoded.shape == s["rgb"].shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - s["rgb"]).mean() < 3.0

    cam = decode.camera_from_msg(by_topic["/camera/camera_info"])
    assert (cam.width, cam.height, cam.model) == (64, 48, "plumb_bob")
    np.testing.assert_array_equal(cam.K, s["camera"].K)
    np.testing.assert_array_equal(cam.dist, s["camera"].dist)

    cloud = by_topic["/lidar/points"]  # the later stamp wins in the dict
    assert cloud.header.frame_id == "lidar"
    np.testing.assert_array_equal(unpack_xyzi(cloud), s["points"])

    [(parent, child, T)] = decode.transform_from_tf_msg(by_topic["/tf_static"])
    assert (parent, child) == ("lidar", "camera_optical")
    np.testing.assert_allclose(T, s["T"], atol=1e-9)


@pytest.mark.parametrize("storage", STORAGES)
def test_tf_static_offered_transient_local(tmp_path: Path, storage: str) -> None:
    s = _scene()
    path = tmp_path / "bag"
    _write(path, storage, s)
    # Read the storage file itself (mcap channel metadata / sqlite3 topics table),
    # which is what a player consults, and metadata.yaml through the directory.
    storage_file = next(p for p in path.iterdir() if p.suffix in (".mcap", ".db3"))
    for src in (path, storage_file):
        with Reader(src) as reader:
            qos = {c.topic: c.ext.offered_qos_profiles for c in reader.connections}
        assert [q.durability for q in qos["/tf_static"]] == [QosDurability.TRANSIENT_LOCAL]
        assert [q.durability for q in qos["/camera/image_raw"]] == [QosDurability.VOLATILE]


def test_topic_filter_and_bare_storage_file(tmp_path: Path) -> None:
    path = tmp_path / "bag"
    _write(path, "mcap", _scene())
    got = [(t, stamp) for t, _, stamp, _ in bag.iter_messages(path, ["/lidar/points"])]
    assert got == [("/lidar/points", 1_500_000_000), ("/lidar/points", 3_100_000_000)]
    assert bag.bag_topics(path / "bag.mcap")["/tf_static"] == ("tf2_msgs/msg/TFMessage", 1)
    with pytest.raises(CrossI2PError, match="/nope"):
        bag.iter_messages(path, ["/nope"])


def test_image_encodings() -> None:
    rgb = _image(6, 5)

    def msg(enc: str, img: np.ndarray, pad: int = 0) -> SimpleNamespace:
        h, w = img.shape[:2]
        rows = img.reshape(h, -1)
        data = np.concatenate([rows, np.zeros((h, pad), np.uint8)], axis=1)
        return SimpleNamespace(encoding=enc, height=h, width=w, step=rows.shape[1] + pad, data=data.tobytes())

    alpha = np.full((6, 5, 1), 200, np.uint8)
    np.testing.assert_array_equal(decode.image_from_msg(msg("rgb8", rgb, pad=3)), rgb)
    np.testing.assert_array_equal(decode.image_from_msg(msg("bgr8", rgb[..., ::-1].copy())), rgb)
    np.testing.assert_array_equal(decode.image_from_msg(msg("rgba8", np.concatenate([rgb, alpha], -1))), rgb)
    np.testing.assert_array_equal(decode.image_from_msg(msg("bgra8", np.concatenate([rgb[..., ::-1], alpha], -1))), rgb)
    gray = rgb[..., 0].copy()
    np.testing.assert_array_equal(decode.image_from_msg(msg("mono8", gray, pad=1)), np.repeat(gray[..., None], 3, -1))
    with pytest.raises(CrossI2PError, match=r"'16UC1'.*rgb8"):
        decode.image_from_msg(msg("16UC1", rgb))


def test_png_and_bad_compressed() -> None:
    import cv2

    rgb = _image(6, 5)
    ok, buf = cv2.imencode(".png", rgb[..., ::-1])
    assert ok
    np.testing.assert_array_equal(decode.image_from_msg(SimpleNamespace(format="bgr8; png compressed", data=buf)), rgb)
    with pytest.raises(CrossI2PError, match="not supported"):
        decode.image_from_msg(SimpleNamespace(format="16UC1; compressedDepth png", data=buf))
    with pytest.raises(CrossI2PError, match="could not be decoded"):
        decode.image_from_msg(SimpleNamespace(format="jpeg", data=b"\x00" * 20))


def test_writer_errors(tmp_path: Path) -> None:
    with pytest.raises(CrossI2PError, match="storage 'rosbag1'"):
        bag.BagWriter(tmp_path / "x", "rosbag1")  # type: ignore[arg-type]
    with pytest.raises(CrossI2PError, match="already exists"):
        bag.BagWriter(tmp_path)
    with bag.BagWriter(tmp_path / "b") as w:
        with pytest.raises(CrossI2PError, match="not a rigid"):
            w.add_tf_static(0, "a", "b", np.diag([1.0, 1.0, 2.0, 1.0]))
        with pytest.raises(CrossI2PError, match=r"\(H, W, 3\) uint8"):
            w.add_image("/img", 0, "cam", np.zeros((4, 4, 3), np.float32))
        w.add_image("/img", 0, "cam", np.zeros((4, 4, 3), np.uint8))
        with pytest.raises(CrossI2PError, match="already holds"):
            w.add_pointcloud("/img", 1, "lidar", np.zeros((3, 4), np.float32))


def test_missing_and_non_bag_paths(tmp_path: Path) -> None:
    with pytest.raises(CrossI2PError, match="does not exist"):
        bag.bag_topics(tmp_path / "missing")
    with pytest.raises(CrossI2PError, match=str(tmp_path)):
        bag.iter_messages(tmp_path)  # a directory without metadata.yaml
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CrossI2PError, match="notes.txt"):
        bag.bag_topics(text)
    fake = tmp_path / "fake.mcap"
    fake.write_bytes(b"not an mcap file at all" * 10)
    with pytest.raises(CrossI2PError, match="fake.mcap"):
        bag.bag_topics(fake)


@pytest.mark.parametrize("storage", STORAGES)
def test_truncated_bag(tmp_path: Path, storage: str) -> None:
    path = tmp_path / "bag"
    _write(path, storage, _scene())
    storage_file = next(p for p in path.iterdir() if p.suffix in (".mcap", ".db3"))
    data = storage_file.read_bytes()
    storage_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(CrossI2PError, match="bag"):
        for _ in bag.iter_messages(path):
            pass


@pytest.mark.parametrize("storage", STORAGES)
def test_type_unknown_to_jazzy_read_from_embedded_definition(tmp_path: Path, storage: str) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    typestore = get_typestore(Stores.ROS2_JAZZY)
    typestore.register(get_types_from_msg("int32 value\nstring note", "crossi2p_test_msgs/msg/Ping"))
    Ping = typestore.types["crossi2p_test_msgs/msg/Ping"]
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(tmp_path / "b", version=9, storage_plugin=plugin) as w:
        conn = w.add_connection("/ping", "crossi2p_test_msgs/msg/Ping", typestore=typestore)
        w.write(conn, 5, typestore.serialize_cdr(Ping(value=42, note="hi"), "crossi2p_test_msgs/msg/Ping"))
    [(topic, msgtype, stamp, msg)] = list(bag.iter_messages(tmp_path / "b"))
    assert (topic, msgtype, stamp, msg.value, msg.note) == ("/ping", "crossi2p_test_msgs/msg/Ping", 5, 42, "hi")


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_images_are_demosaiced_with_the_ros_pattern(pattern: str) -> None:
    # a flat orange scene seen through the colour filter array named by the ROS encoding
    colour = {"r": 220, "g": 120, "b": 30}
    h, w = 16, 20
    cfa = np.empty((h, w), np.uint8)
    for (dy, dx), ch in zip([(0, 0), (0, 1), (1, 0), (1, 1)], pattern):
        cfa[dy::2, dx::2] = colour[ch]
    msg = SimpleNamespace(encoding=f"bayer_{pattern}8", height=h, width=w, step=w, data=cfa.tobytes())
    rgb = decode.image_from_msg(msg)
    assert rgb.shape == (h, w, 3)
    np.testing.assert_allclose(rgb[4:-4, 4:-4].reshape(-1, 3).mean(0), [220, 120, 30], atol=3)


def _bt601_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """RGB from video-range BT.601 YUV (what cv_bridge, through OpenCV, gives for ROS's YUV 4:2:2 encodings)."""
    y, u, v = (np.asarray(a, np.float64) for a in (y, u, v))
    rgb = np.stack([1.164 * (y - 16) + 1.596 * (v - 128),
                    1.164 * (y - 16) - 0.813 * (v - 128) - 0.391 * (u - 128),
                    1.164 * (y - 16) + 2.018 * (u - 128)], -1)
    return np.clip(np.round(rgb), 0, 255)


@pytest.mark.parametrize("encoding", ["yuv422", "uyvy", "yuv422_yuy2", "yuyv"])
def test_yuv422_images_in_either_byte_order(encoding: str) -> None:
    rng = np.random.default_rng(2)
    h, w = 4, 6
    y = rng.integers(16, 236, (h, w))
    u, v = rng.integers(16, 241, (h, w // 2)), rng.integers(16, 241, (h, w // 2))
    quads = np.stack([u, y[:, 0::2], v, y[:, 1::2]], -1) if encoding in ("yuv422", "uyvy") else \
        np.stack([y[:, 0::2], u, y[:, 1::2], v], -1)
    data = np.concatenate([quads.reshape(h, 2 * w), np.zeros((h, 4), np.int64)], 1).astype(np.uint8)  # padded
    msg = SimpleNamespace(encoding=encoding, height=h, width=w, step=2 * w + 4, data=data.tobytes())
    want = _bt601_rgb(y, np.repeat(u, 2, 1), np.repeat(v, 2, 1))
    np.testing.assert_allclose(decode.image_from_msg(msg), want, atol=2)
    with pytest.raises(CrossI2PError, match="even width"):
        decode.image_from_msg(SimpleNamespace(encoding=encoding, height=h, width=w - 1, step=2 * w, data=data.tobytes()))


@pytest.mark.parametrize("bits", [10, 12, 16])
@pytest.mark.parametrize("bigendian", [False, True])
def test_16_bit_images_keep_the_bits_the_camera_filled(bits: int, bigendian: bool) -> None:
    """mono16 / rgb16 / bgr16 / bayer16 from a camera writing ``bits`` bits: the brightest value the image
    holds maps into the top of 8 bits (a 12-bit camera's 4095 -> 255), in either byte order."""
    rng = np.random.default_rng(bits)
    rgb8 = rng.integers(0, 256, (4, 6, 3)).astype(np.uint16)
    rgb8[0, 0] = 255                                       # the brightest value the camera can write
    high = rgb8 << (bits - 8) | rng.integers(0, 2 ** (bits - 8), rgb8.shape).astype(np.uint16)   # low bits noise
    order = ">u2" if bigendian else "<u2"

    def msg(encoding: str, img: np.ndarray) -> SimpleNamespace:
        h, w = img.shape[:2]
        return SimpleNamespace(encoding=encoding, height=h, width=w, step=img[0].size * 2, is_bigendian=bigendian,
                               data=img.astype(order).tobytes())

    np.testing.assert_array_equal(decode.image_from_msg(msg("rgb16", high)), rgb8)
    np.testing.assert_array_equal(decode.image_from_msg(msg("bgr16", high[..., ::-1])), rgb8)
    np.testing.assert_array_equal(decode.image_from_msg(msg("mono16", high[..., 1])), np.repeat(rgb8[..., 1:2], 3, -1))
    cfa = np.zeros((16, 20), np.uint16)                    # a flat orange scene through an RGGB filter, 16 bits
    for (dy, dx), level in zip([(0, 0), (0, 1), (1, 0), (1, 1)], [220, 120, 120, 30]):
        cfa[dy::2, dx::2] = level << (bits - 8)
    cfa[0, 0] = (2 ** bits) - 1
    demosaiced = decode.image_from_msg(msg("bayer_rggb16", cfa))
    np.testing.assert_allclose(demosaiced[4:-4, 4:-4].reshape(-1, 3).mean(0), [220, 120, 30], atol=3)
