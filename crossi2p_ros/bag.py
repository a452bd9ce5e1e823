"""ROS 2 bag writing, ROS 2 and ROS 1 bag reading with ``rosbags`` (no ROS install needed).

Bags are written as rosbag2 directories (``metadata.yaml`` plus one
``.mcap`` or ``.db3`` file), metadata version 9 as written by ``ros2 bag
record`` on Jazzy. Reading also accepts a bare ``.mcap`` or ``.db3`` file,
and a ROS 1 ``.bag`` file (compressed chunks included): its messages are
migrated to their ROS 2 Jazzy types as ``rosbags-convert`` does (field by
field, e.g. ``CameraInfo.K`` -> ``k``, ``Header.seq`` dropped), so every
reader downstream sees ROS 2 messages, and the player publishes them as such.

Units and frames: timestamps are integer nanoseconds; the bag timestamp of
every written message equals its ``header.stamp``. Transforms are 4x4
``T_parent_child`` (maps child-frame points into the parent frame, metres),
which is what a ``TransformStamped`` with ``header.frame_id = parent`` and
``child_frame_id = child`` carries. Images are RGB uint8 ``(H, W, 3)``;
points are ``(N, 4)`` float32 x, y, z [m], intensity in the cloud's frame.
"""
from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import cv2
import numpy as np
from rosbags.interfaces import (
    Connection,
    MessageDefinitionFormat,
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.convert.converter import migrate_message
from rosbags.rosbag1 import Reader as Rosbag1Reader
from rosbags.rosbag1 import ReaderError as Rosbag1ReaderError
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, TypesysError, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore
from scipy.spatial.transform import Rotation

from crossi2p_ros.errors import CrossI2PError
from crossi2p_ros.geometry import CameraModel
from crossi2p_ros.pointcloud import pack_xyzi

# One typestore for the whole process: building it parses every message
# definition of the distribution, which is too slow to repeat per bag.
TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
_T = TYPESTORE.types

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
TF_STATIC_TOPIC = "/tf_static"
TF_TOPIC = "/tf"

# rosbag2 metadata version 9 (Jazzy and later); rosbags writes only 8 or 9.
BAG_VERSION = 9
_STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}

# Offered QoS as `ros2 bag record` stores it: DDS discovery does not carry
# history/depth (hence unknown/0) and unset durations are "infinite". The
# player re-offers reliability and durability, so /tf_static must say
# transient_local to be republished latched.
_INFINITE = QosTime(9223372036, 854775807)


def _recorded_qos(durability: QosDurability) -> Qos:
    return Qos(
        history=QosHistory.UNKNOWN,
        depth=0,
        reliability=QosReliability.RELIABLE,
        durability=durability,
        deadline=_INFINITE,
        lifespan=_INFINITE,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=_INFINITE,
        avoid_ros_namespace_conventions=False,
    )


QOS_SENSOR = _recorded_qos(QosDurability.VOLATILE)
QOS_LATCHED = _recorded_qos(QosDurability.TRANSIENT_LOCAL)

# Everything rosbags (and the sqlite3 / mcap layers below it) raises for an
# unreadable bag; turned into CrossI2PError at the module boundary. MemoryError
# is among them because the mcap reader trusts record lengths: a corrupt length
# field makes it try to read exabytes.
_READ_ERRORS = (
    ReaderError, Rosbag1ReaderError, SerdeError, TypesysError, OSError, EOFError, MemoryError,
    struct.error, ValueError, KeyError, IndexError,
)
try:  # the sqlite3 backend of rosbags is apsw; its errors are not OSErrors
    import apsw

    _READ_ERRORS = (*_READ_ERRORS, apsw.Error)
except ImportError:  # pragma: no cover - apsw is a rosbags dependency
    pass


# --------------------------------------------------------------------------- writing


def _header(stamp_ns: int, frame_id: str) -> Any:
    stamp_ns = int(stamp_ns)
    if stamp_ns < 0:
        raise CrossI2PError(f"message stamp {stamp_ns} ns is negative; pass nanoseconds since the epoch (>= 0)")
    return _T["std_msgs/msg/Header"](
        stamp=_T["builtin_interfaces/msg/Time"](sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000),
        frame_id=str(frame_id),
    )


def _check_rgb(rgb: np.ndarray, topic: str) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise CrossI2PError(
            f"image for {topic} has shape {rgb.shape} and dtype {rgb.dtype}; pass an (H, W, 3) uint8 RGB array"
        )
    return np.ascontiguousarray(rgb)


def _check_rigid(T: np.ndarray, what: str) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.isfinite(T).all():
        raise CrossI2PError(f"{what} must be a finite 4x4 matrix, got shape {T.shape}")
    R = T[:3, :3]
    if not np.allclose(R.T @ R, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0 or not np.allclose(T[3], [0, 0, 0, 1]):
        raise CrossI2PError(f"{what} is not a rigid transform (rotation not orthonormal or last row not 0 0 0 1)")
    return T


class BagWriter:
    """Write a ROS 2 bag (``storage`` ``mcap`` or ``sqlite3``) at directory ``path``.

    Use as a context manager; the bag is finalised (metadata.yaml written)
    on exit. Topics are created on first use; messages may be added in any
    time order. ``stamp_ns`` is both the header stamp and the bag timestamp.
    """

    def __init__(self, path: Path, storage: Literal["mcap", "sqlite3"] = "mcap") -> None:
        self.path = Path(path)
        if storage not in _STORAGES:
            raise CrossI2PError(f"bag storage {storage!r} is not supported; use one of {sorted(_STORAGES)}")
        if self.path.exists():
            raise CrossI2PError(f"bag output {self.path} already exists; choose a new path or delete it first")
        self.storage = storage
        self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=_STORAGES[storage])
        self._connections: dict[str, Connection] = {}

    # ------------------------------------------------------------ lifecycle
    def open(self) -> "BagWriter":
        try:
            self._writer.open()
        except WriterError as exc:
            raise CrossI2PError(f"cannot create bag {self.path}: {exc}; choose a new output path") from None
        return self

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "BagWriter":
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        if exc_type is None:
            self.close()
        else:
            # Leave no half-written bag that looks complete (no metadata.yaml).
            self._writer.abort()
        return False

    # ------------------------------------------------------------ internals
    def _write(self, topic: str, msgtype: str, stamp_ns: int, msg: object, qos: Qos = QOS_SENSOR) -> None:
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=TYPESTORE, offered_qos_profiles=[qos])
            self._connections[topic] = conn
        elif conn.msgtype != msgtype:
            raise CrossI2PError(
                f"topic {topic} already holds {conn.msgtype} in {self.path}; write {msgtype} to another topic"
            )
        self._writer.write(conn, int(stamp_ns), TYPESTORE.serialize_cdr(msg, msgtype))

    # ------------------------------------------------------------ public
    def add_image(
        self, topic: str, stamp_ns: int, frame_id: str, rgb: np.ndarray, compressed: bool = False
    ) -> None:
        """Add an RGB uint8 (H, W, 3) image as ``Image`` (rgb8) or ``CompressedImage`` (jpeg)."""
        rgb = _check_rgb(rgb, topic)
        header = _header(stamp_ns, frame_id)
        if compressed:
            ok, buf = cv2.imencode(".jpg", rgb[..., ::-1])  # OpenCV encodes BGR
            if not ok:  # pragma: no cover - only on an OpenCV build without JPEG
                raise CrossI2PError(f"OpenCV could not JPEG-encode the image for {topic}")
            msg = _T[COMPRESSED_IMAGE](header=header, format="jpeg", data=buf.reshape(-1))
            self._write(topic, COMPRESSED_IMAGE, stamp_ns, msg)
            return
        h, w, _ = rgb.shape
        msg = _T[IMAGE](
            header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3, data=rgb.reshape(-1)
        )
        self._write(topic, IMAGE, stamp_ns, msg)

    def add_camera_info(self, topic: str, stamp_ns: int, frame_id: str, camera: CameraModel) -> None:
        """Add a ``CameraInfo`` for ``camera`` (unrectified: R = I, P = [K | 0])."""
        info = camera.to_camera_info_dict()
        msg = _T[CAMERA_INFO](
            header=_header(stamp_ns, frame_id),
            height=info["height"],
            width=info["width"],
            distortion_model=info["distortion_model"],
            d=np.asarray(info["d"], dtype=np.float64),
            k=np.asarray(info["k"], dtype=np.float64),
            r=np.asarray(info["r"], dtype=np.float64),
            p=np.asarray(info["p"], dtype=np.float64),
            binning_x=0,
            binning_y=0,
            roi=_T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
        )
        self._write(topic, CAMERA_INFO, stamp_ns, msg)

    def add_pointcloud(self, topic: str, stamp_ns: int, frame_id: str, points: np.ndarray,
                       ring: np.ndarray | None = None, times_s: np.ndarray | None = None) -> None:
        """Add points (N, 4) float32 x, y, z [m], intensity in ``frame_id`` as a ``PointCloud2`` (with a uint16
        ``ring`` field when each point's beam ``ring`` (N,) is given, a uint32 ``t`` [ns from the stamp] when
        each point's time ``times_s`` (N,) [s] is)."""
        cloud = pack_xyzi(points, ring, times_s)
        msg = _T[POINTCLOUD2](
            header=_header(stamp_ns, frame_id),
            height=cloud.height,
            width=cloud.width,
            fields=[
                _T["sensor_msgs/msg/PointField"](name=f.name, offset=f.offset, datatype=f.datatype, count=f.count)
                for f in cloud.fields
            ],
            is_bigendian=cloud.is_bigendian,
            point_step=cloud.point_step,
            row_step=cloud.row_step,
            data=np.frombuffer(cloud.data, dtype=np.uint8),
            is_dense=cloud.is_dense,
        )
        self._write(topic, POINTCLOUD2, stamp_ns, msg)

    def add_tf_static(self, stamp_ns: int, parent_frame: str, child_frame: str, T_parent_child: np.ndarray) -> None:
        """Add ``T_parent_child`` (4x4, metres) on ``/tf_static`` (offered transient local, as recorded)."""
        self._write(TF_STATIC_TOPIC, TF_MESSAGE, stamp_ns, _tf_message(stamp_ns, parent_frame, child_frame,
                                                                       T_parent_child), qos=QOS_LATCHED)

    def add_tf(self, stamp_ns: int, parent_frame: str, child_frame: str, T_parent_child: np.ndarray) -> None:
        """Add one sample of a moving transform ``T_parent_child`` (4x4, metres) at ``stamp_ns`` on ``/tf``
        (odometry, as ``odom -> base_link``)."""
        self._write(TF_TOPIC, TF_MESSAGE, stamp_ns, _tf_message(stamp_ns, parent_frame, child_frame, T_parent_child))


def _tf_message(stamp_ns: int, parent_frame: str, child_frame: str, T_parent_child: np.ndarray) -> Any:
    T = _check_rigid(T_parent_child, f"transform {parent_frame} <- {child_frame}")
    qx, qy, qz, qw = Rotation.from_matrix(T[:3, :3]).as_quat()  # scipy order is x, y, z, w
    tx, ty, tz = T[:3, 3]
    stamped = _T["geometry_msgs/msg/TransformStamped"](
        header=_header(stamp_ns, parent_frame),
        child_frame_id=str(child_frame),
        transform=_T["geometry_msgs/msg/Transform"](
            translation=_T["geometry_msgs/msg/Vector3"](x=float(tx), y=float(ty), z=float(tz)),
            rotation=_T["geometry_msgs/msg/Quaternion"](x=float(qx), y=float(qy), z=float(qz), w=float(qw)),
        ),
    )
    return _T[TF_MESSAGE](transforms=[stamped])


# --------------------------------------------------------------------------- reading

_NOT_A_BAG_HINT = "pass a rosbag2 directory (with metadata.yaml), a .mcap / .db3 file or a ROS 1 .bag file"
_ROS1_MAGIC = b"#ROSBAG V2.0\n"
_ros1_typestore: Typestore | None = None


def _ros1_types() -> Typestore:
    """The ROS 1 Noetic typestore, built on first use (parsing a distribution's definitions takes a while)."""
    global _ros1_typestore
    if _ros1_typestore is None:
        _ros1_typestore = get_typestore(Stores.ROS1_NOETIC)
    return _ros1_typestore


def is_ros1_bag(path: Path) -> bool:
    """Whether ``path`` is a ROS 1 bag file (by its magic line, whatever its name)."""
    path = Path(path)
    if not path.is_file():
        return False
    with path.open("rb") as f:
        return f.read(len(_ROS1_MAGIC)) == _ROS1_MAGIC


def _open_reader(path: Path) -> Reader | Rosbag1Reader:
    path = Path(path)
    if not path.exists():
        raise CrossI2PError(f"bag {path} does not exist; {_NOT_A_BAG_HINT}")
    try:
        reader = Rosbag1Reader(path) if is_ros1_bag(path) else Reader(path)
        reader.open()
    except FileNotFoundError:
        raise CrossI2PError(f"{path} is neither a ROS 2 bag (no metadata.yaml) nor a ROS 1 bag; "
                            f"{_NOT_A_BAG_HINT}") from None
    except _READ_ERRORS as exc:
        raise CrossI2PError(f"cannot read bag {path}: {exc}; the file is not a bag or is corrupt/truncated") from None
    return reader


def _ensure_type(conn: Connection, ros1: bool = False) -> None:
    """Register ``conn.msgtype`` from the definition embedded in the bag if the typestore lacks it (a ROS 1
    bag's in the ROS 1 typestore it is read with, and in the ROS 2 one its messages are migrated to)."""
    if ros1:
        for store in (_ros1_types(), TYPESTORE):
            if conn.msgtype not in store.types:
                try:
                    store.register(get_types_from_msg(conn.msgdef.data, conn.msgtype))
                except TypesysError as exc:
                    raise CrossI2PError(f"topic {conn.topic}: cannot parse the definition of {conn.msgtype}: "
                                        f"{exc}") from None
        return
    if conn.msgtype in TYPESTORE.types:
        return
    try:
        if conn.msgdef.format == MessageDefinitionFormat.MSG:
            TYPESTORE.register(get_types_from_msg(conn.msgdef.data, conn.msgtype))
            return
        if conn.msgdef.format == MessageDefinitionFormat.IDL:
            sep = "=" * 80 + "\n"
            parts = conn.msgdef.data.split(sep)[1:] if conn.msgdef.data.startswith(sep) else [conn.msgdef.data]
            for part in parts:
                TYPESTORE.register(get_types_from_idl(part.split("\n", 1)[1] if part.startswith("IDL: ") else part))
            return
    except TypesysError as exc:
        raise CrossI2PError(f"topic {conn.topic}: cannot parse the definition of {conn.msgtype}: {exc}") from None
    raise CrossI2PError(
        f"topic {conn.topic} has type {conn.msgtype}, unknown to ROS 2 Jazzy and not described in the bag; "
        "leave the topic out of the selection"
    )


def bag_topics(path: Path) -> dict[str, tuple[str, int]]:
    """Topics of the bag at ``path``: ``{topic: (msgtype, message count)}``."""
    reader = _open_reader(path)
    try:
        return {name: (info.msgtype or "", int(info.msgcount)) for name, info in reader.topics.items()}
    finally:
        reader.close()


def _select(reader: Reader | Rosbag1Reader, path: Path, topics: Iterable[str] | None) -> list[Connection]:
    wanted = None if topics is None else set(topics)
    if wanted is not None and (unknown := wanted - set(reader.topics)):
        raise CrossI2PError(f"bag {path} has no topic(s) {sorted(unknown)}; it has {sorted(reader.topics)}")
    conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
    for c in conns:
        _ensure_type(c, ros1=isinstance(reader, Rosbag1Reader))
    return conns


def iter_messages(path: Path, topics: Iterable[str] | None = None) -> Iterator[tuple[str, str, int, Any]]:
    """Yield ``(topic, msgtype, stamp_ns, msg)`` in bag-time order, ``msg`` deserialised.

    ``topics`` restricts the output (None = all). ``stamp_ns`` is the bag
    (record) timestamp in nanoseconds; bags written by :class:`BagWriter`
    use the header stamp. A missing or unreadable bag and unknown topics
    raise :class:`CrossI2PError` at call time, not at the first ``next()``.
    """
    return _messages(path, _validated(path, topics))


def iter_raw(path: Path, topics: Iterable[str] | None = None) -> Iterator[tuple[str, str, int, bytes]]:
    """Yield ``(topic, msgtype, stamp_ns, cdr_bytes)`` in bag-time order, not deserialised (for a player; a
    ROS 1 bag's messages are migrated to ROS 2 and serialised as CDR)."""
    return _messages(path, _validated(path, topics), raw_out=True)


def _validated(path: Path, topics: Iterable[str] | None) -> list[str] | None:
    # Validate now (cheap: metadata and index only) so errors surface at the call
    # site; the generator reopens the bag, so an unstarted generator leaks nothing.
    topics = None if topics is None else list(topics)
    reader = _open_reader(path)
    try:
        _select(reader, path, topics)
    finally:
        reader.close()
    return topics


def _messages(path: Path, topics: list[str] | None, raw_out: bool = False) -> Iterator[tuple[str, str, int, Any]]:
    reader = _open_reader(path)
    try:
        conns = _select(reader, path, topics)
        if not conns:
            return
        ros1 = isinstance(reader, Rosbag1Reader)
        migrations: dict[str, object] = {}   # rosbags' cache of field maps and default messages
        try:
            for conn, stamp_ns, raw in reader.messages(connections=conns):
                if not isinstance(raw, (bytes, bytearray, memoryview)):
                    # A damaged sqlite3 page can turn the BLOB column into TEXT.
                    raise ValueError(f"message data on {conn.topic} is {type(raw).__name__}, not bytes")
                if ros1:
                    msg = migrate_message(_ros1_types(), TYPESTORE, conn.msgtype, conn.msgtype, migrations,
                                          _ros1_types().deserialize_ros1(raw, conn.msgtype))
                    if raw_out:
                        msg = bytes(TYPESTORE.serialize_cdr(msg, conn.msgtype))
                else:
                    msg = bytes(raw) if raw_out else TYPESTORE.deserialize_cdr(raw, conn.msgtype)
                yield conn.topic, conn.msgtype, int(stamp_ns), msg
        except _READ_ERRORS as exc:
            raise CrossI2PError(f"cannot read bag {path}: {exc}; the file is corrupt or truncated") from None
    finally:
        reader.close()
