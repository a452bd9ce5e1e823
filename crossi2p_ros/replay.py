"""Offline replay of a ROS 2 or ROS 1 bag, no ROS graph needed (``crossi2p replay``, ``crossi2p monitor``).

The same code as the node: :mod:`.sync` pairs camera and LiDAR by header
stamp, :mod:`.decode` turns messages into arrays, and :class:`.session.Session`
runs the keyframe window, the window solves and the drift monitor. Topics are
found by message type unless named; a bag without a camera, LiDAR or
CameraInfo topic is refused with a message naming what is missing (intrinsics
may come from a file instead).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import yaml
from tqdm import tqdm

from .bag import CAMERA_INFO, COMPRESSED_IMAGE, IMAGE, TF_MESSAGE, bag_topics, iter_messages
from .decode import camera_from_msg, image_from_msg, stamped_transforms_from_tf_msg, transform_from_tf_msg
from .errors import CrossI2PError
from .geometry import CameraModel
from .pointcloud import unpack_cloud
from .registration.estimate import time_offset_ms
from .registration.solver import axis_sigmas
from .session import Frame, Session, SessionConfig, Update
from .sync import ApproximateTimeSync, SyncConfig
from .tf_tree import StaticTransforms, TransformBuffer

if TYPE_CHECKING:  # the Calibrator pulls in torch; replay's readers do not need it
    from .registration.calibrator import Calibrator

POINT_CLOUD2 = "sensor_msgs/msg/PointCloud2"


@dataclass(frozen=True)
class BagTopics:
    image: str
    cloud: str
    camera_info: str | None      # None: intrinsics come from a file
    tf: list[str] = field(default_factory=list)


def is_static_tf_topic(name: str) -> bool:
    """``/tf_static`` (or a namespaced ``.../tf_static``): latched static transforms; other TF topics move."""
    return name.rstrip("/").endswith("tf_static")


def _pick(topics: dict[str, tuple[str, int]], types: tuple[str, ...], named: str | None, what: str,
          path: Path, required: bool = True, hint: str = "") -> str | None:
    if named is not None:
        if named not in topics:
            raise CrossI2PError(f"bag {path} has no topic {named!r} ({what}); it has {sorted(topics)}")
        if topics[named][0] not in types:
            raise CrossI2PError(f"topic {named!r} in {path} is {topics[named][0]}, not {' or '.join(types)} ({what})")
        return named
    found = [t for t, (ty, n) in sorted(topics.items()) if ty in types and n > 0]
    if not found:
        if not required:
            return None
        listing = ", ".join(f"{t} ({ty})" for t, (ty, _) in sorted(topics.items())) or "nothing"
        raise CrossI2PError(f"bag {path} has no {what} topic ({' or '.join(types)}); it has {listing}{hint}")
    # several candidates: prefer raw images over compressed ones, then the busiest topic
    found.sort(key=lambda t: (topics[t][0] != types[0], -topics[t][1]))
    return found[0]


def detect_topics(path: Path, image: str | None = None, cloud: str | None = None, camera_info: str | None = None,
                  intrinsics_from_file: bool = False) -> BagTopics:
    """Choose the camera, LiDAR and CameraInfo topics of a bag (by type unless named)."""
    topics = bag_topics(path)
    img = _pick(topics, (IMAGE, COMPRESSED_IMAGE), image, "camera image", path)
    pc = _pick(topics, (POINT_CLOUD2,), cloud, "LiDAR point cloud", path)
    info = None if intrinsics_from_file else _pick(
        topics, (CAMERA_INFO,), camera_info, "camera intrinsics", path,
        hint="; pass the intrinsics with --camera-info FILE (ROS camera_info YAML)")
    tf = [t for t, (ty, _) in topics.items() if ty == TF_MESSAGE]
    return BagTopics(img, pc, info, tf)  # type: ignore[arg-type]


def read_camera_info(path: Path) -> CameraModel:
    """A ROS ``camera_info`` YAML (as camera_calibration writes it) -> :class:`CameraModel`."""
    try:
        d = yaml.safe_load(Path(path).read_text())
        info = {"width": int(d["image_width"]), "height": int(d["image_height"]),
                "distortion_model": d.get("distortion_model", "plumb_bob"),
                "d": np.asarray(d.get("distortion_coefficients", {}).get("data", []), dtype=np.float64),
                "k": np.asarray(d["camera_matrix"]["data"], dtype=np.float64)}
        return CameraModel.from_camera_info_dict(info)
    except FileNotFoundError:
        raise CrossI2PError(f"{path}: camera_info file not found") from None
    except Exception as exc:  # noqa: BLE001
        raise CrossI2PError(f"{path}: not a ROS camera_info YAML (image_width, image_height, camera_matrix, "
                            f"distortion_model, distortion_coefficients): {exc}") from None


def _stamp_ns(msg: Any, fallback: int) -> int:
    h = getattr(msg, "header", None)
    if h is None:
        return fallback
    return int(h.stamp.sec) * 1_000_000_000 + int(h.stamp.nanosec)


@dataclass
class PairReader:
    """Iterates the synchronised pairs of a bag; counts what it skipped and why."""

    path: Path
    topics: BagTopics
    sync: SyncConfig = field(default_factory=SyncConfig)
    camera: CameraModel | None = None        # intrinsics from a file, else from CameraInfo
    start_s: float = 0.0                     # from the first message
    duration_s: float | None = None
    every: int = 1                           # keep every n-th pair
    bad_messages: int = 0
    last_error: str = ""
    static_tf: StaticTransforms = field(default_factory=StaticTransforms)
    odom_frame: str = "odom"                 # the fixed frame of the bag's /tf odometry ("" : not used)
    sync_stats: Any = None
    _count: int = 0

    def __post_init__(self) -> None:
        # the bag's moving transforms, read whole before the pairs (a sweep's twist needs /tf at the next sweep's
        # stamp, which a bag may hold after that sweep's message)
        self.tf = TransformBuffer(self.static_tf, history_s=None)

    def _read_moving_tf(self) -> None:
        moving = [name for name in self.topics.tf if not is_static_tf_topic(name)]
        if not moving or not self.odom_frame:
            return
        for _, _, _, msg in iter_messages(self.path, moving):
            try:
                for parent, child, T, stamp in stamped_transforms_from_tf_msg(msg):
                    self.tf.add(parent, child, T, stamp)
            except CrossI2PError as exc:
                self.bad_messages += 1
                self.last_error = f"/tf: {exc}"

    def lidar_pose(self, lidar_frame: str, stamp_ns: int) -> np.ndarray | None:
        """``T_odom_lidar`` at ``stamp_ns`` from the bag's /tf (a :class:`.session.Session`'s ``lidar_poses``)."""
        return self.tf.lookup(self.odom_frame, lidar_frame, stamp_ns) if self.odom_frame else None

    def __iter__(self) -> Iterator[Frame]:
        t = self.topics
        self._read_moving_tf()
        wanted = [t.image, t.cloud] + ([t.camera_info] if t.camera_info else []) + \
            [name for name in t.tf if is_static_tf_topic(name)]
        total = sum(n for name, (_, n) in bag_topics(self.path).items() if name in wanted)
        sync: ApproximateTimeSync = ApproximateTimeSync(self.sync)
        self.sync_stats = sync.stats
        camera = self.camera
        first_ns: int | None = None
        pending: list = []
        self._count = 0
        bar = tqdm(iter_messages(self.path, wanted), total=total, desc=f"replay {self.path.name}", unit="msg",
                   leave=False)
        for topic, msgtype, bag_ns, msg in bar:
            first_ns = bag_ns if first_ns is None else first_ns
            rel = (bag_ns - first_ns) * 1e-9
            if msgtype == TF_MESSAGE:
                if is_static_tf_topic(topic):   # the moving ones were read before (_read_moving_tf)
                    for parent, child, T in transform_from_tf_msg(msg):
                        self.static_tf.add(parent, child, T)
                continue
            if rel < self.start_s:
                continue
            if self.duration_s is not None and rel > self.start_s + self.duration_s:
                break
            try:
                if topic == t.camera_info:
                    camera = camera_from_msg(msg)
                    yield from self._emit(pending, camera)
                    pending = []
                    continue
                stamp = _stamp_ns(msg, bag_ns)
                if topic == t.image:
                    pairs = sync.add_image(stamp, (image_from_msg(msg), str(msg.header.frame_id)))
                else:
                    pairs = sync.add_cloud(stamp, (*unpack_cloud(msg), str(msg.header.frame_id)))
            except CrossI2PError as exc:
                self.bad_messages += 1
                self.last_error = f"{topic}: {exc}"
                continue
            if camera is None:  # CameraInfo may follow its image by a message or two: hold the pairs
                pending = (pending + pairs)[-self.sync.queue_size:]
                continue
            yield from self._emit(pairs, camera)
        yield from self._emit(pending + sync.flush(), camera)

    def _emit(self, pairs, camera: CameraModel | None) -> Iterator[Frame]:
        for p in pairs:
            if camera is None:
                raise CrossI2PError(f"bag {self.path}: no CameraInfo on {self.topics.camera_info} before the "
                                    "end; pass --camera-info FILE")
            self._count += 1
            if (self._count - 1) % self.every:
                continue
            (image, camera_frame), (points, ring, times, lidar_frame) = p.image, p.cloud
            yield Frame(image, points, camera, p.image_stamp_ns, p.cloud_stamp_ns, camera_frame, lidar_frame, ring,
                        times)

    def installed_extrinsic(self, lidar_frame: str, camera_frame: str) -> np.ndarray | None:
        """``T_camera_lidar`` from the bag's static TF (composed through frames such as ``base_link``), if recorded."""
        return self.static_tf.camera_lidar(lidar_frame, camera_frame)




# --------------------------------------------------------------------------- runs


@dataclass
class EstimateRecord:
    """One window solve (``T`` is T_camera_lidar) and, in monitor runs, the drift test after it."""

    time_s: float                 # newest keyframe's cloud stamp, from the first pair [s]
    T: np.ndarray
    ok: bool
    converged: bool
    stage: str
    keyframes: int
    global_search: bool
    sigma_rot_deg: float          # largest per-axis standard deviation
    sigma_trans_m: float
    unconstrained: list[str]
    timings_ms: dict[str, float]
    published: bool = False       # calibrate: the node would publish this one on /tf_static
    level: str | None = None      # monitor runs
    offset_rot_deg: float | None = None
    offset_trans_m: float | None = None
    axis: str | None = None
    checked: bool | None = None   # monitor runs: the test could have seen a decalibration (DriftStatus.checked)
    detectable_rot_deg: float | None = None
    detectable_trans_m: float | None = None
    # the camera's exposure minus its stamp [ms] where the window claimed it; its sigma where tried (None: not
    # tried; "unobservable": the window's motion does not show it)
    time_offset_ms: float | None = None
    time_offset_sigma_ms: float | str | None = None

    @property
    def unchecked(self) -> bool:
        """A monitor OK that could not have seen a decalibration (a raised drift is always checked)."""
        return self.checked is False

    @classmethod
    def of(cls, update: Update, t0_ns: int) -> "EstimateRecord":
        est = update.estimate
        sd_trans, sd_rot = axis_sigmas(est.covariance)
        rec = cls((update.stamp_ns - t0_ns) * 1e-9, est.T_camera_lidar, est.ok, est.converged, est.stage,
                  update.keyframes, update.global_search, float(sd_rot.max()), float(sd_trans.max()),
                  list(est.unconstrained), dict(est.timings_ms), update.publish)
        rec.time_offset_ms, rec.time_offset_sigma_ms = time_offset_ms(est)
        if update.drift is not None:
            d = update.drift
            rec.level, rec.offset_rot_deg, rec.offset_trans_m, rec.axis = d.level, d.rot_deg, d.trans_m, d.axis
            if d.level != "STALE":
                rec.checked, rec.detectable_rot_deg, rec.detectable_trans_m = \
                    d.checked, d.detectable_rot_deg, d.detectable_trans_m
        return rec

    def to_json(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if not isinstance(v, np.ndarray)}
        d["T_camera_lidar"] = np.round(self.T, 9).tolist()
        return d


@dataclass
class RunResult:
    records: list[EstimateRecord]
    T_initial: np.ndarray | None
    T_final: np.ndarray | None        # the converged calibration (calibrate runs), else None
    covariance: np.ndarray | None
    lidar_frame: str
    camera_frame: str
    last_pair: Frame | None
    pairs: int
    keyframes: dict[str, int]         # Session.stats() at the end
    bad_messages: int
    dropped: int
    offsets_s: list[float] = field(default_factory=list)   # camera - LiDAR stamp of every pair


def run_session(reader: PairReader, calibrator: Calibrator, cfg: SessionConfig, T_prior: np.ndarray | None = None,
                on_record: Callable[[EstimateRecord], None] | None = None) -> RunResult:
    """Every pair of the bag through one :class:`Session` (prior / installed extrinsic: ``T_prior``, else the
    bag's static TF; without either, calibrate searches globally and monitor refuses)."""
    session: Session | None = None
    records: list[EstimateRecord] = []
    offsets: list[float] = []
    t0, last = 0, None
    for pair in reader:
        if session is None:
            T_prior = T_prior if T_prior is not None else reader.installed_extrinsic(pair.lidar_frame,
                                                                                      pair.camera_frame)
            if cfg.mode == "monitor" and T_prior is None:
                raise CrossI2PError(f"no installed extrinsic: the bag has no TF between {pair.lidar_frame!r} and "
                                    f"{pair.camera_frame!r}; pass --installed CALIB_FILE")
            session = Session(calibrator, cfg, T_prior, lidar_poses=reader.lidar_pose)
            t0 = pair.cloud_stamp_ns
        last = pair
        offsets.append(pair.offset_s)
        update = session.step(pair)
        if update is not None:
            records.append(EstimateRecord.of(update, t0))
            if on_record is not None:
                on_record(records[-1])
    if last is None:
        raise CrossI2PError(f"bag {reader.path}: no camera/LiDAR pair within {reader.sync.max_slop_s * 1e3:.0f} ms "
                            f"(topics {reader.topics.image}, {reader.topics.cloud}); check the topics, --start/"
                            "--duration, or raise the sync slop" + (f"; last bad message: {reader.last_error}"
                                                                    if reader.last_error else ""))
    assert session is not None
    if session.pending():
        update = session.solve()   # the keyframes that arrived after the last solve count too
        if update is not None:
            records.append(EstimateRecord.of(update, t0))
            if on_record is not None:
                on_record(records[-1])
    calib = session.calibration
    stats = reader.sync_stats
    return RunResult(records, session.T_prior, None if calib is None else calib.T_camera_lidar,
                     None if calib is None else calib.covariance, last.lidar_frame, last.camera_frame, last,
                     len(offsets), session.stats(), reader.bad_messages,
                     stats.dropped_images + stats.dropped_clouds if stats else 0, offsets)
