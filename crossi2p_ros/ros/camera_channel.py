"""One camera of the calibration node: its topics, pairing, session, outputs and diagnostics.

The node calibrates every camera in its ``cameras`` parameter against one
LiDAR: a :class:`CameraChannel` per camera holds what is that camera's own
(its image and CameraInfo subscriptions, its pairing with the shared cloud
stream, its :class:`~crossi2p_ros.session.Session`, its ``~/calibration``,
``~/time_offset`` and ``~/overlay``, its diagnostics status and prior), while
the node holds what they share (the cloud subscription, the calibrator, the
per-sweep work in one :class:`~crossi2p_ros.sweep_cache.SweepCache`, the
worker threads, ``/tf_static`` and the services).

Names: each ``{camera}`` in ``image_topic``, ``camera_info_topic``,
``camera_frame``, ``tf_child_frame``, ``initial_calibration`` and
``installed_calibration`` is the camera's name. A single camera publishes on
``~/calibration`` (DESIGN.md's interface); several publish on
``~/<name>/calibration`` and save to ``<output_dir>/<name>``.
"""
from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from geometry_msgs.msg import PoseWithCovarianceStamped
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Float64

from ..calib_io import Calibration, read_calibration, write_all
from ..decode import camera_from_msg
from ..errors import CrossI2PError
from ..geometry import invert, make_transform, pose_error
from ..registration.estimate import time_offset_ms
from ..session import Session, Update
from ..sync import ApproximateTimeSync, SyncConfig
from .messages import pose_message, stamp_ns, tf_message, time_msg
from .qos import RELIABLE_QOS

if TYPE_CHECKING:
    from .params import NodeConfig

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_PER_CAMERA = ("image_topic", "camera_info_topic", "camera_frame", "tf_child_frame", "initial_calibration",
               "installed_calibration")


@dataclass(frozen=True)
class CameraSetup:
    """One camera's topics, frames and files: the node's parameters with ``{camera}`` filled in."""

    name: str
    image_topic: str
    camera_info_topic: str
    camera_frame: str           # empty: the images' header.frame_id
    tf_child_frame: str         # empty: <camera_frame>_calibrated
    initial_calibration: str
    installed_calibration: str
    outputs: str                # the prefix of its topics: "~/" for a single camera, "~/<name>/" for several
    output_dir: str             # where ~/save writes its files


def camera_setups(cfg: NodeConfig) -> list[CameraSetup]:
    """The cameras the node calibrates, from its parameters; a :class:`CrossI2PError` says what to fix."""
    names = list(cfg.cameras)
    if not names:
        raise CrossI2PError("parameter cameras is empty: name at least one camera (default: [camera])")
    bad = [n for n in names if not _NAME.match(str(n))]
    if bad or len(set(names)) != len(names):
        raise CrossI2PError(f"parameter cameras={names}: each name must be unique and a ROS name token "
                            "(a letter, then letters, digits or _)")
    several = len(names) > 1
    if several and len(cfg.installed_transform) == 7:
        raise CrossI2PError("installed_transform is one camera's extrinsic; with several cameras give each its "
                            "file (installed_calibration with {camera} in it) or publish them on /tf_static")
    setups = []
    for name in names:
        filled = {key: getattr(cfg, key).replace("{camera}", name) for key in _PER_CAMERA}
        setups.append(CameraSetup(name=name, **filled, outputs=f"~/{name}/" if several else "~/",
                                  output_dir=str(Path(cfg.output_dir) / name) if several else cfg.output_dir))
    if several:
        for key in _PER_CAMERA:
            values = [getattr(s, key) for s in setups]
            if any(values) and len(set(values)) != len(values):
                raise CrossI2PError(f"parameter {key}={getattr(cfg, key)!r} is the same for every camera of "
                                    f"{names}: put {{camera}} in it (e.g. /{{camera}}/image_raw), or leave it empty "
                                    "where an empty value means 'from the messages'")
    return setups


class CameraChannel:
    """One camera's state in the node (see the module docstring). Callbacks run on the executor and only pair;
    :meth:`prepare` runs on the node's preparer, :meth:`publish` after a solve on its solver."""

    def __init__(self, node: Any, setup: CameraSetup, session: Session | None, sync_cfg: SyncConfig, qos: Any):
        self.node = node
        self.setup = setup
        self.session = session
        self.sync = ApproximateTimeSync(sync_cfg)
        self.camera = None                      # the CameraModel of the last good CameraInfo
        self.image_size: tuple[int, int] | None = None
        self.frames = (node.cfg.lidar_frame, setup.camera_frame)   # (lidar, camera) as last seen
        self.prior_source = "none"
        self.received = {"image": 0, "camera_info": 0}
        self.prepared = 0
        self.waiting_for_info = 0
        self.last_error, self.last_error_time = "", 0.0
        self.last_pair_time = 0.0
        self.last_offset_s = float("nan")
        self.last_success_time = time.monotonic()
        self.sync_resets, self.time_jumps = 0, 0
        self.handover_ms: deque[float] = deque(maxlen=100)

        if node.cfg.image_transport == "compressed":
            node.create_subscription(CompressedImage, setup.image_topic.rstrip("/") + "/compressed",
                                     self._on_image, qos)
        else:
            node.create_subscription(Image, setup.image_topic, self._on_image, qos)
        node.create_subscription(CameraInfo, setup.camera_info_topic, self._on_camera_info, qos)
        self.calibration_pub = node.create_publisher(PoseWithCovarianceStamped, setup.outputs + "calibration",
                                                     RELIABLE_QOS)
        self.overlay_pub = node.create_publisher(Image, setup.outputs + "overlay", RELIABLE_QOS)
        # the camera's exposure minus its stamp [s], on each solve that claims it (a moving window: time_offset.py)
        self.time_offset_pub = node.create_publisher(Float64, setup.outputs + "time_offset", RELIABLE_QOS)

    # ------------------------------------------------------------------ inputs
    def load_prior_file(self, mode: str, installed_transform: tuple) -> None:
        """The prior (calibrate) or installed extrinsic (monitor) from this camera's file or the parameter."""
        T = None
        if mode == "calibrate" and self.setup.initial_calibration:
            T = read_calibration(Path(self.setup.initial_calibration)).T_camera_lidar
            self.prior_source = "file"
        elif mode == "monitor" and self.setup.installed_calibration:
            T = read_calibration(Path(self.setup.installed_calibration)).T_camera_lidar
            self.prior_source = "file"
        elif mode == "monitor" and len(installed_transform) == 7:
            x, y, z, qx, qy, qz, qw = installed_transform
            T = invert(make_transform(Rotation.from_quat([qx, qy, qz, qw]).as_matrix(), [x, y, z]))
            self.prior_source = "parameter"
        if T is not None and self.session is not None:
            self.session.set_prior(T)

    def note_error(self, message: str) -> None:
        self.last_error, self.last_error_time = message, time.monotonic()

    def _on_image(self, msg) -> None:
        self.received["image"] += 1
        self.node.hand_over(self, self.sync.add_image(stamp_ns(msg), msg))

    def _on_camera_info(self, msg) -> None:
        self.received["camera_info"] += 1
        try:
            self.camera = camera_from_msg(msg)
            size = (self.camera.width, self.camera.height)
            if self.image_size is not None and self.image_size != size:
                raise CrossI2PError(f"CameraInfo is {size[0]}x{size[1]} but the images on {self.setup.image_topic} "
                                    f"are {self.image_size[0]}x{self.image_size[1]}; publish the CameraInfo "
                                    "that belongs to this camera (or its binning / ROI)")
        except CrossI2PError as exc:
            self.node.note_error("camera_info", exc, self)

    def frame_ids(self, image_msg, cloud_msg) -> tuple[str, str]:
        lidar = self.node.cfg.lidar_frame or str(cloud_msg.header.frame_id)
        camera = self.setup.camera_frame or str(image_msg.header.frame_id)
        return lidar, camera

    def tf_child_frame(self) -> str:
        return self.setup.tf_child_frame or f"{self.frames[1] or 'camera'}_calibrated"

    def find_prior(self, static_tf) -> None:
        """The prior / installed extrinsic from /tf_static, through any chain of frames, once it is there."""
        assert self.session is not None
        if self.session.T_prior is not None:
            return
        lidar, camera = self.frames
        own = {(lidar, self.tf_child_frame())} if self.session.published is not None else set()
        T = static_tf.camera_lidar(lidar, camera, skip=own)
        if T is not None:
            self.session.set_prior(T)
            self.prior_source = "tf"
            self.node.get_logger().info(f"prior from /tf_static: {camera} <- {lidar}")

    # ------------------------------------------------------------------ outputs
    def publish(self, update: Update) -> None:
        """A window solve's outputs: ~/calibration, ~/time_offset, and /tf_static for a calibration to publish."""
        est = update.estimate
        lidar, camera = self.frames
        stamp = time_msg(update.stamp_ns)
        # monitor mode counts a solve only when it checked the installed calibration (DriftStatus.checked): a
        # stretch that cannot reveal a decalibration is no evidence that there is none
        if est.ok and (self.node.mode != "monitor" or (update.drift is not None and update.drift.checked)):
            self.last_success_time = time.monotonic()
        self.calibration_pub.publish(pose_message(est.T_camera_lidar, est.covariance, lidar, stamp))
        if est.time_offset_s is not None:
            self.time_offset_pub.publish(Float64(data=float(est.time_offset_s)))
        if update.publish and self.node.mode == "calibrate":
            self.node.tf_pub.publish(tf_message(invert(est.T_camera_lidar), lidar, self.tf_child_frame(), stamp))
        sd_deg, sd_m = est.sigma_deg.max(), est.sigma_m.max()
        state = "converged" if est.converged else ("converging" if est.ok else "no pose")
        self.node.get_logger().info(
            f"{camera} <- {lidar}: window of {update.keyframes} keyframes "
            f"({'global search' if update.global_search else 'update'}, {update.wall_s:.1f} s): {state}, sigma "
            f"{sd_deg:.2f} deg / {100 * sd_m:.1f} cm" + (" -> /tf_static" if update.publish else ""))

    def current_extrinsic(self) -> np.ndarray | None:
        """The converged calibration, else the latest solve, else the prior (T_camera_lidar)."""
        s = self.session
        if s is None:
            return None
        if s.calibration is not None and self.node.mode == "calibrate":
            return s.calibration.T_camera_lidar.copy()
        if s.last is not None and s.last.estimate.ok:
            return s.last.estimate.T_camera_lidar.copy()
        return None if s.T_prior is None else s.T_prior.copy()

    def save(self, node_name: str) -> tuple[bool, str]:
        """~/save for this camera: (saved, the YAML's path or why nothing was saved)."""
        s, mode = self.session, self.node.mode
        est = None if s is None else (s.calibration if mode == "calibrate" else
                                      (s.last.estimate if s.last is not None and s.last.estimate.converged else None))
        if est is None:
            last = s.last if s is not None else None
            return False, ("not converged yet: nothing saved, " + keeps(s) + (
                f" (last solve: sigma {last.estimate.sigma_deg.max():.2f} deg / "
                f"{100 * last.estimate.sigma_m.max():.1f} cm)" if last is not None else ""))
        lidar, camera = self.frames
        try:
            paths = write_all(Calibration(est.T_camera_lidar, lidar or "lidar", camera or "camera_optical",
                                          est.covariance, {"node": node_name, "mode": mode, "camera": self.setup.name,
                                                           "keyframes": est.keyframes, **_time_offset_metadata(est)}),
                              Path(self.setup.output_dir))
        except (OSError, CrossI2PError) as exc:
            return False, f"save failed: {exc}"
        return True, str(paths["yaml"])

    # ------------------------------------------------------------------ diagnostics
    def status_name(self) -> str:
        lidar, camera = self.frames
        return f"crossi2p: {camera or self.setup.name} <- {lidar or 'lidar'}"

    def diagnostic_status(self, shared: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
        """(level, message, key-values) of this camera's status on /diagnostics; ``shared``: the node's values
        (device, cloud counts, ...), listed first."""
        node, s = self.node, self.session
        last = s.last if s is not None else None
        values: dict[str, Any] = {
            **shared, "camera": self.setup.name,
            "prior": self.prior_source if (s is not None and s.T_prior is not None) else "none",
            "pairs_received": self.sync.stats.pairs, "pairs_prepared": self.prepared,
            "pairs_dropped_busy": node.mailbox.dropped_of(self), "pairs_without_camera_info": self.waiting_for_info,
            "messages_unpaired": self.sync.stats.dropped_images + self.sync.stats.dropped_clouds,
            "time_jumps": self.time_jumps, "images_received": self.received["image"],
            "camera_infos_received": self.received["camera_info"],
            "stamp_offset_ms": f"{1e3 * self.last_offset_s:.1f}", "tf_child_frame": self.tf_child_frame(),
        }
        if self.handover_ms:
            values["pair_age_at_handover_ms"] = f"{np.median(self.handover_ms):.1f}"
        if s is not None:
            values.update(s.stats())
        if last is not None:
            est = last.estimate
            values.update({"converged": est.converged, "stage": est.stage, "solve_message": est.message or "-",
                           "sigma_rot_deg": " ".join(f"{v:.3f}" for v in est.sigma_deg),
                           "sigma_trans_m": " ".join(f"{v:.4f}" for v in est.sigma_m),
                           "unconstrained": ", ".join(est.unconstrained) or "none",
                           "window_keyframes": last.keyframes, "solve_s": f"{last.wall_s:.2f}",
                           "global_search": last.global_search})
            offset, sigma = time_offset_ms(est)
            values.update({"time_offset_ms": "not estimated" if offset is None else f"{offset:.1f}",
                           "time_offset_sigma_ms": "-" if sigma is None else sigma if isinstance(sigma, str)
                           else f"{sigma:.1f}"})
            values.update({f"latency_{k}_ms": f"{v:.1f}" for k, v in est.timings_ms.items()})
            if s.T_prior is not None and est.ok:
                e = pose_error(est.T_camera_lidar, s.T_prior)
                key = "installed" if node.mode == "monitor" else "prior"
                values.update({f"rotation_diff_to_{key}_deg": f"{e.rot_deg:.3f}",
                               f"translation_diff_to_{key}_m": f"{e.trans_m:.4f}"})
        now = time.monotonic()
        if node.fatal:
            return "ERROR", node.fatal, values
        if self.last_error and now - self.last_error_time < 5.0:
            values["last_error"] = self.last_error
            return "ERROR", f"bad input: {self.last_error}", values
        if not node.running:
            return "OK", "idle: call ~/start to begin", values
        stale_after = node.cfg.stale_after_s
        if self.last_pair_time == 0.0 or now - self.last_pair_time > stale_after:
            return "STALE", (f"no camera/LiDAR pair in the last {stale_after:.0f} s "
                             f"(images {self.received['image']}, clouds {shared['clouds_received']}, "
                             f"camera_info {self.received['camera_info']})"), values
        assert s is not None
        held = f"{len(s.window)} of {s.cfg.min_keyframes} keyframes"
        if node.mode == "monitor":
            if s.T_prior is None:
                return "ERROR", ("monitor mode needs the installed extrinsic: set installed_calibration or "
                                 f"installed_transform, or publish {self.frames[0]} -> {self.frames[1]} on "
                                 "/tf_static"), values
            drift = last.drift if last is not None else None
            if drift is not None and drift.level != "STALE":
                values.update({"drift_detectable_rot_deg": f"{drift.detectable_rot_deg:.3f}",
                               "drift_detectable_trans_m": f"{drift.detectable_trans_m:.4f}",
                               "checked": drift.checked})
            if now - self.last_success_time > node.cfg.no_estimate_warn_s:
                unchecked = drift is not None and drift.level == "OK" and not drift.checked
                return "WARN", (f"the installed calibration has not been checked for "
                                f"{now - self.last_success_time:.0f} s: "
                                + (drift.message if unchecked else
                                   f"no window solve succeeded ({last.estimate.message if last else held})")), values
            if drift is None or drift.level == "STALE":
                return "OK", f"warming up: {held} (installed calibration assumed until checked)", values
            values.update({"offset_rot_deg": f"{drift.rot_deg:.3f}", "offset_trans_m": f"{drift.trans_m:.4f}",
                           "offset_axis": drift.axis})
            return drift.level, drift.message, values
        if last is None:
            return "WARN", f"collecting keyframes: {held}", values
        est = last.estimate
        sd = f"sigma {est.sigma_deg.max():.2f} deg / {100 * est.sigma_m.max():.1f} cm"
        if s.calibration is not None:
            again = "" if est.converged else f"; the last solve did not converge ({sd}), searching again"
            return "OK", (f"calibration converged over {s.calibration.keyframes} keyframes (sigma "
                          f"{s.calibration.sigma_deg.max():.2f} deg / {100 * s.calibration.sigma_m.max():.1f} cm)"
                          f"{again}"), values
        if not est.ok:
            return "WARN", f"no pose yet ({est.message})", values
        # why it is not converged yet where the window says (another pose as good, the search region's edge)
        return "WARN", (f"converging: {sd} over {last.keyframes} keyframes"
                        + (f", unconstrained {', '.join(est.unconstrained)}" if est.unconstrained else "")
                        + (f"; {est.message}" if est.message else "") + f"; {keeps(s)}"), values


def keeps(session: Session | None) -> str:
    """What stands as the calibration while none has converged: said in diagnostics and by ~/save, so that a
    user never mistakes an unconverged solve (on ~/calibration, with its sigma) for a result."""
    if session is not None and session.T_prior is not None:
        return "the prior stays the calibration (nothing on /tf_static from this node)"
    return "no calibration yet (no prior)"


def _time_offset_metadata(est) -> dict[str, float]:
    """The camera's time offset and its sigma [s] for a saved calibration, where the window claimed it."""
    if est.time_offset_s is None:
        return {}
    return {"time_offset_s": float(est.time_offset_s), "time_offset_sigma_s": float(est.time_offset_sigma_s)}
