"""``calibration_node``: the ROS 2 adapter over the ROS-free session loop (:mod:`crossi2p_ros.session`).

Messages -> :mod:`crossi2p_ros.sync` pairs -> decode -> :class:`~crossi2p_ros.session.Session`
(keyframe window, window solves, drift monitor) -> ``~/calibration``,
``/tf_static``, ``/diagnostics``, ``~/overlay`` as DESIGN.md's node interface states.

Threading: subscription callbacks only pair stamps and hand the newest pair to
the *preparer* through a one-slot, latest-wins mailbox (a pair still waiting
when a newer one arrives is dropped and counted), so the executor never blocks
and memory stays bounded whatever the sensor rate. The preparer decodes the
pair and offers it to the keyframe window (~0.15 s); the *solver* solves the
window whenever enough new keyframes have arrived (seconds for a global
search), so keyframes keep arriving while it works. Both are daemon threads
joined on shutdown.

Not a lifecycle node: it holds no device to configure or release between
states (weights load once, subscriptions are cheap) and ``~/start`` /
``autostart`` already give the "configured but idle" state; a managed node
would add transitions every user must drive for no behaviour they get.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Float64
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

from ..calib_io import Calibration, read_calibration, write_all
from ..decode import camera_from_msg, image_from_msg, transform_from_tf_msg
from ..errors import CrossI2PError
from ..geometry import invert, make_transform, pose_error
from ..overlay import draw_projection
from ..pointcloud import unpack_cloud
from ..registration.calibrator import Calibrator
from ..registration.estimate import time_offset_ms
from ..session import Frame, Session, Update
from ..sync import ApproximateTimeSync
from ..tf_tree import StaticTransforms
from .messages import diagnostic_array, image_message, pose_message, stamp_ns, tf_message, time_msg
from .params import DYNAMIC_GROUPS, configs_from, monitor_config, parameter_specs
from .qos import RELIABLE_QOS, SENSOR_QOS, STATIC_TF_QOS

# re-exported for callers that listen to the node (the demo, tests)
__all__ = ["CalibrationNode", "RELIABLE_QOS", "STATIC_TF_QOS", "main"]


def _keeps(session) -> str:
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


@dataclass
class _Mailbox:
    """One-slot, latest-wins hand-over from the executor to the preparer."""

    lock: threading.Condition = field(default_factory=threading.Condition)
    item: Any = None
    dropped: int = 0
    closed: bool = False

    def put_latest(self, items: list) -> None:
        """Offer ``items`` (oldest first); only the newest is kept, every other one counts as dropped."""
        with self.lock:
            self.dropped += len(items) - 1 + (self.item is not None)
            self.item = items[-1]
            self.lock.notify()

    def take(self, timeout: float) -> Any:
        with self.lock:
            if self.item is None and not self.closed:
                self.lock.wait(timeout)
            item, self.item = self.item, None
            return item

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.lock.notify_all()


class CalibrationNode(Node):
    def __init__(self, **kwargs: Any):
        super().__init__("crossi2p_calibration", **kwargs)
        self._specs = {spec.name: spec for spec in parameter_specs()}
        for spec in self._specs.values():
            self.declare_parameter(spec.name, spec.default, spec.descriptor())
        values = {name: self.get_parameter(name).value for name in self._specs}
        for spec in self._specs.values():
            problem = spec.check(values[spec.name])
            if problem:
                raise CrossI2PError(problem)
        configs = configs_from(values)
        self.cfg = configs["node"]
        self.mode: str = self.cfg.mode
        self.running = bool(self.cfg.autostart)
        self._camera = None
        self._image_size: tuple[int, int] | None = None
        self._handover_ms: deque[float] = deque(maxlen=100)
        self._static_tf = StaticTransforms()
        self._frames = (self.cfg.lidar_frame, self.cfg.camera_frame)
        self._prior_source = "none"
        self._received = {"image": 0, "cloud": 0, "camera_info": 0}
        self._bad = 0
        self._prepared = 0
        self._waiting_for_info = 0
        self._last_error, self._last_error_time = "", 0.0
        self._last_pair_time = 0.0
        self._last_offset_s = float("nan")
        self._last_success_time = time.monotonic()
        self._sync_resets, self._time_jumps = 0, 0
        self.sync: ApproximateTimeSync = ApproximateTimeSync(configs["sync"])
        self.mailbox = _Mailbox()
        self._wake_solver = threading.Event()
        self._closing = threading.Event()
        self.fatal = ""

        self.calibrator: Calibrator | None = None
        self.session: Session | None = None
        try:
            self.calibrator = Calibrator(configs["calibrator"])
            self.session = Session(self.calibrator, configs["session"])
            self.get_logger().info(f"weights {self.calibrator.weights_path} on {self.calibrator.device}; "
                                   f"{self.mode} with windows of {configs['session'].keyframes.size} keyframes")
        except CrossI2PError as exc:
            # keep running: diagnostics say what is wrong, so a fleet dashboard shows it
            self.fatal = str(exc)
            self.get_logger().error(f"cannot estimate: {exc}")
        self._load_prior_files()
        self.add_on_set_parameters_callback(self._on_set_parameters)

        qos = SENSOR_QOS if self.cfg.qos == "sensor_data" else RELIABLE_QOS
        if self.cfg.image_transport == "compressed":
            self.create_subscription(CompressedImage, self.cfg.image_topic.rstrip("/") + "/compressed",
                                     self._on_image, qos)
        else:
            self.create_subscription(Image, self.cfg.image_topic, self._on_image, qos)
        self.create_subscription(CameraInfo, self.cfg.camera_info_topic, self._on_camera_info, qos)
        self.create_subscription(PointCloud2, self.cfg.cloud_topic, self._on_cloud, qos)
        self.create_subscription(TFMessage, "/tf_static", self._on_tf_static, STATIC_TF_QOS)
        self.tf_pub = self.create_publisher(TFMessage, "/tf_static", STATIC_TF_QOS)
        self.calibration_pub = self.create_publisher(PoseWithCovarianceStamped, "~/calibration", RELIABLE_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE_QOS)
        self.overlay_pub = self.create_publisher(Image, "~/overlay", RELIABLE_QOS)
        # the camera's exposure minus its stamp [s], on each solve that claims it (a moving window: time_offset.py)
        self.time_offset_pub = self.create_publisher(Float64, "~/time_offset", RELIABLE_QOS)
        self.create_service(Trigger, "~/start", self._srv_start)
        self.create_service(Trigger, "~/reset", self._srv_reset)
        self.create_service(Trigger, "~/save", self._srv_save)
        # diagnostics run on the steady clock: with use_sim_time a paused or absent /clock must still
        # produce (STALE) diagnostics
        self.create_timer(1.0, self._publish_diagnostics, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._threads = [threading.Thread(target=self._prepare_loop, name="crossi2p-prepare", daemon=True),
                         threading.Thread(target=self._solve_loop, name="crossi2p-solve", daemon=True)]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ setup
    def _load_prior_files(self) -> None:
        c = self.cfg
        try:
            T = None
            if self.mode == "calibrate" and c.initial_calibration:
                T, self._prior_source = read_calibration(Path(c.initial_calibration)).T_camera_lidar, "file"
            elif self.mode == "monitor" and c.installed_calibration:
                T, self._prior_source = read_calibration(Path(c.installed_calibration)).T_camera_lidar, "file"
            elif self.mode == "monitor" and len(c.installed_transform) == 7:
                x, y, z, qx, qy, qz, qw = c.installed_transform
                T = invert(make_transform(Rotation.from_quat([qx, qy, qz, qw]).as_matrix(), [x, y, z]))
                self._prior_source = "parameter"
            if T is not None and self.session is not None:
                self.session.set_prior(T)
        except (CrossI2PError, ValueError) as exc:
            self.fatal = f"calibration file: {exc}"
            self.get_logger().error(self.fatal)

    def _on_set_parameters(self, params) -> SetParametersResult:
        """Run-time changes: the monitor thresholds (everything else is declared read-only)."""
        changed = {p.name: p.value for p in params}
        if not all(name.startswith(DYNAMIC_GROUPS) for name in changed) or self.session is None:
            return SetParametersResult(successful=True)   # read-only ones are refused by rclpy itself
        values = {name: self.get_parameter(name).value for name in self._specs if name.startswith("monitor.")}
        values.update(changed)
        self.session.set_monitor_config(monitor_config(values))
        self.get_logger().info(f"monitor thresholds changed: {changed}")
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ callbacks (cheap: no inference here)
    def _note_error(self, what: str, exc: Exception) -> None:
        self._bad += 1
        self._last_error = f"{what}: {exc}"
        self._last_error_time = time.monotonic()
        self.get_logger().warning(self._last_error, throttle_duration_sec=5.0)

    def _on_image(self, msg) -> None:
        self._received["image"] += 1
        self._hand_over(self.sync.add_image(stamp_ns(msg), msg))

    def _on_cloud(self, msg) -> None:
        self._received["cloud"] += 1
        self._hand_over(self.sync.add_cloud(stamp_ns(msg), msg))

    def _on_camera_info(self, msg) -> None:
        self._received["camera_info"] += 1
        try:
            self._camera = camera_from_msg(msg)
            size = (self._camera.width, self._camera.height)
            if self._image_size is not None and self._image_size != size:
                raise CrossI2PError(f"CameraInfo is {size[0]}x{size[1]} but the images on {self.cfg.image_topic} "
                                    f"are {self._image_size[0]}x{self._image_size[1]}; publish the CameraInfo "
                                    "that belongs to this camera (or its binning / ROI)")
        except CrossI2PError as exc:
            self._note_error("camera_info", exc)

    def _on_tf_static(self, msg) -> None:
        try:
            for parent, child, T in transform_from_tf_msg(msg):
                self._static_tf.add(parent, child, T)
        except CrossI2PError as exc:
            self._note_error("/tf_static", exc)

    def _hand_over(self, pairs) -> None:
        if self.sync.stats.resets != self._sync_resets:
            # stamps went back (a bag played in a loop, a clock reset): the sync restarted, so does the session
            self._sync_resets = self.sync.stats.resets
            self._time_jumps += 1
            self._restart()
            self.get_logger().warning("message stamps jumped backwards (bag loop or clock reset): pairing and "
                                      "the keyframe window restarted", throttle_duration_sec=5.0)
        if not pairs or not self.running or self.session is None or self.fatal:
            return
        if self._camera is None:
            # a pair can complete a few ms before the first CameraInfo: skip it (diagnostics show the count)
            self._waiting_for_info += len(pairs)
            return
        # the newest stamp's age on the wall clock at hand-over: DDS transport + this node's callbacks, for live
        # sensors whose clocks are synchronised with this machine (meaningless for a bag under use_sim_time)
        newest = max(max(p.image_stamp_ns, p.cloud_stamp_ns) for p in pairs)
        self._handover_ms.append(1e-6 * (time.time_ns() - newest))
        self.mailbox.put_latest(list(pairs))

    def _restart(self) -> None:
        if self.session is not None:
            self.session.reset()

    # ------------------------------------------------------------------ workers
    def _prepare_loop(self) -> None:
        while not self._closing.is_set():
            pair = self.mailbox.take(timeout=0.5)
            if pair is None:
                continue
            try:
                self._prepare(pair)
            except CrossI2PError as exc:
                self._note_error("pair", exc)
            except Exception as exc:  # noqa: BLE001 - the node must survive any single bad pair
                self._note_error("internal error on a pair", exc)
            finally:
                self._prepared += 1

    def _frame_ids(self, image_msg, cloud_msg) -> tuple[str, str]:
        lidar = self.cfg.lidar_frame or str(cloud_msg.header.frame_id)
        camera = self.cfg.camera_frame or str(image_msg.header.frame_id)
        return lidar, camera

    def tf_child_frame(self) -> str:
        return self.cfg.tf_child_frame or f"{self._frames[1] or 'camera'}_calibrated"

    def _find_prior(self, lidar: str, camera: str) -> None:
        """The prior / installed extrinsic from /tf_static, through any chain of frames, once it is there."""
        assert self.session is not None
        if self.session.T_prior is not None:
            return
        own = {(lidar, self.tf_child_frame())} if self.session.published is not None else set()
        T = self._static_tf.camera_lidar(lidar, camera, skip=own)
        if T is not None:
            self.session.set_prior(T)
            self._prior_source = "tf"
            self.get_logger().info(f"prior from /tf_static: {camera} <- {lidar}")

    def _prepare(self, pair) -> None:
        assert self.session is not None and self.calibrator is not None
        image_msg, cloud_msg = pair.image, pair.cloud
        lidar, camera = self._frame_ids(image_msg, cloud_msg)
        self._frames = (lidar, camera)
        self._last_pair_time = time.monotonic()
        self._last_offset_s = pair.offset_s
        self._find_prior(lidar, camera)
        image = image_from_msg(image_msg)
        self._image_size = (image.shape[1], image.shape[0])   # of the last image that decoded
        points, ring, times = unpack_cloud(cloud_msg)
        if len(points) < self.calibrator.cfg.inputs.min_points:
            raise CrossI2PError(f"point cloud on {self.cfg.cloud_topic} has {len(points)} finite points "
                                f"(need {self.calibrator.cfg.inputs.min_points})")
        frame = Frame(image, points, self._camera, stamp_ns(image_msg), stamp_ns(cloud_msg), camera, lidar, ring,
                      times)
        if self.session.offer(frame):
            self._wake_solver.set()
        if self.overlay_pub.get_subscription_count() > 0:
            T = self.current_extrinsic()
            if T is not None:
                self.overlay_pub.publish(image_message(draw_projection(image, points, T, self._camera),
                                                       camera, image_msg.header.stamp))

    def _solve_loop(self) -> None:
        while not self._closing.is_set():
            self._wake_solver.wait(timeout=0.5)
            self._wake_solver.clear()
            if self.session is None:
                continue
            # keyframes that arrived after the last solve are solved too once the data stops (a bag's end)
            idle = self.session.pending() > 0 and time.monotonic() - self._last_pair_time > 2.0 \
                and len(self.session.window) >= self.session.cfg.min_keyframes
            if not (self.session.due() or idle):
                continue
            try:
                update = self.session.solve()
                if update is not None:
                    self._publish(update)
            except CrossI2PError as exc:
                self._note_error("window solve", exc)
            except Exception as exc:  # noqa: BLE001 - a failed solve must not end the node
                self._note_error("internal error in a window solve", exc)

    def _publish(self, update: Update) -> None:
        if self._closing.is_set():
            return   # the node is being destroyed: its publishers may be gone
        est = update.estimate
        lidar, camera = self._frames
        stamp = time_msg(update.stamp_ns)
        # monitor mode counts a solve only when it checked the installed calibration (DriftStatus.checked): a
        # stretch that cannot reveal a decalibration is no evidence that there is none
        if est.ok and (self.mode != "monitor" or (update.drift is not None and update.drift.checked)):
            self._last_success_time = time.monotonic()
        self.calibration_pub.publish(pose_message(est.T_camera_lidar, est.covariance, lidar, stamp))
        if est.time_offset_s is not None:
            self.time_offset_pub.publish(Float64(data=float(est.time_offset_s)))
        if update.publish and self.mode == "calibrate":
            self.tf_pub.publish(tf_message(invert(est.T_camera_lidar), lidar, self.tf_child_frame(), stamp))
        sd_deg, sd_m = est.sigma_deg.max(), est.sigma_m.max()
        state = "converged" if est.converged else ("converging" if est.ok else "no pose")
        self.get_logger().info(f"window of {update.keyframes} keyframes ({'global search' if update.global_search else 'update'}"
                               f", {update.wall_s:.1f} s): {state}, sigma {sd_deg:.2f} deg / {100 * sd_m:.1f} cm"
                               + (" -> /tf_static" if update.publish else ""))

    def current_extrinsic(self) -> np.ndarray | None:
        """The converged calibration, else the latest solve, else the prior (T_camera_lidar)."""
        s = self.session
        if s is None:
            return None
        if s.calibration is not None and self.mode == "calibrate":
            return s.calibration.T_camera_lidar.copy()
        if s.last is not None and s.last.estimate.ok:
            return s.last.estimate.T_camera_lidar.copy()
        return None if s.T_prior is None else s.T_prior.copy()

    # ------------------------------------------------------------------ diagnostics
    def diagnostic_status(self) -> tuple[str, str, dict[str, Any]]:
        """(level, message, key-values) as published on /diagnostics."""
        s = self.session
        last = s.last if s is not None else None
        values: dict[str, Any] = {
            "mode": self.mode, "running": self.running,
            "device": str(self.calibrator.device) if self.calibrator else "none",
            "prior": self._prior_source if (s is not None and s.T_prior is not None) else "none",
            "pairs_received": self.sync.stats.pairs, "pairs_prepared": self._prepared,
            "pairs_dropped_busy": self.mailbox.dropped, "pairs_without_camera_info": self._waiting_for_info,
            "messages_unpaired": self.sync.stats.dropped_images + self.sync.stats.dropped_clouds,
            "time_jumps": self._time_jumps, "images_received": self._received["image"],
            "clouds_received": self._received["cloud"], "camera_infos_received": self._received["camera_info"],
            "bad_messages": self._bad, "stamp_offset_ms": f"{1e3 * self._last_offset_s:.1f}",
            "tf_child_frame": self.tf_child_frame(),
        }
        if self._handover_ms:
            values["pair_age_at_handover_ms"] = f"{np.median(self._handover_ms):.1f}"
        if s is not None:
            values.update(s.stats())
        if last is not None:
            est = last.estimate
            values.update({"converged": est.converged, "stage": est.stage,
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
                key = "installed" if self.mode == "monitor" else "prior"
                values.update({f"rotation_diff_to_{key}_deg": f"{e.rot_deg:.3f}",
                               f"translation_diff_to_{key}_m": f"{e.trans_m:.4f}"})
        now = time.monotonic()
        if self.fatal:
            return "ERROR", self.fatal, values
        if self._last_error and now - self._last_error_time < 5.0:
            values["last_error"] = self._last_error
            return "ERROR", f"bad input: {self._last_error}", values
        if not self.running:
            return "OK", "idle: call ~/start to begin", values
        if self._last_pair_time == 0.0 or now - self._last_pair_time > self.cfg.stale_after_s:
            return "STALE", (f"no camera/LiDAR pair in the last {self.cfg.stale_after_s:.0f} s "
                             f"(images {self._received['image']}, clouds {self._received['cloud']}, "
                             f"camera_info {self._received['camera_info']})"), values
        assert s is not None
        held = f"{len(s.window)} of {s.cfg.min_keyframes} keyframes"
        if self.mode == "monitor":
            if s.T_prior is None:
                return "ERROR", ("monitor mode needs the installed extrinsic: set installed_calibration or "
                                 f"installed_transform, or publish {self._frames[0]} -> {self._frames[1]} on "
                                 "/tf_static"), values
            drift = last.drift if last is not None else None
            if drift is not None and drift.level != "STALE":
                values.update({"drift_detectable_rot_deg": f"{drift.detectable_rot_deg:.3f}",
                               "drift_detectable_trans_m": f"{drift.detectable_trans_m:.4f}",
                               "checked": drift.checked})
            if now - self._last_success_time > self.cfg.no_estimate_warn_s:
                unchecked = drift is not None and drift.level == "OK" and not drift.checked
                return "WARN", (f"the installed calibration has not been checked for "
                                f"{now - self._last_success_time:.0f} s: "
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
        return "WARN", (f"converging: {sd} over {last.keyframes} keyframes"
                        + (f", unconstrained {', '.join(est.unconstrained)}" if est.unconstrained else "")
                        + f"; {_keeps(s)}"), values

    def status_name(self) -> str:
        lidar, camera = self._frames
        return f"crossi2p: {camera or 'camera'} <- {lidar or 'lidar'}"

    def _publish_diagnostics(self) -> None:
        level, message, values = self.diagnostic_status()
        self.diag_pub.publish(diagnostic_array(self.status_name(), self.get_name(), level, message, values,
                                               self.get_clock().now().to_msg()))

    # ------------------------------------------------------------------ services
    def _srv_start(self, request, response):
        self.running = True
        response.success, response.message = True, f"started ({self.mode})"
        return response

    def _srv_reset(self, request, response):
        self.sync.reset()
        self._sync_resets = self.sync.stats.resets
        self._restart()
        response.success, response.message = True, "reset: pairing and the keyframe window cleared"
        return response

    def _srv_save(self, request, response):
        s = self.session
        est = None if s is None else (s.calibration if self.mode == "calibrate" else
                                      (s.last.estimate if s.last is not None and s.last.estimate.converged else None))
        if est is None:
            last = s.last if s is not None else None
            response.success = False
            response.message = "not converged yet: nothing saved, " + _keeps(s) + (
                f" (last solve: sigma {last.estimate.sigma_deg.max():.2f} deg / "
                f"{100 * last.estimate.sigma_m.max():.1f} cm)" if last is not None else "")
            return response
        lidar, camera = self._frames
        try:
            paths = write_all(Calibration(est.T_camera_lidar, lidar or "lidar", camera or "camera_optical",
                                          est.covariance, {"node": self.get_fully_qualified_name(), "mode": self.mode,
                                                           "keyframes": est.keyframes, **_time_offset_metadata(est)}),
                              Path(self.cfg.output_dir))
        except (OSError, CrossI2PError) as exc:
            response.success, response.message = False, f"save failed: {exc}"
            return response
        response.success, response.message = True, str(paths["yaml"])
        return response

    def destroy_node(self) -> None:
        self._closing.set()
        self.mailbox.close()
        self._wake_solver.set()
        for t in self._threads:
            t.join(timeout=10.0)   # a solve in flight finishes its current level first
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run crossi2p_ros calibration_node`` and ``crossi2p node``; SIGINT/SIGTERM exit 0."""
    rclpy.init(args=args)
    try:
        node = CalibrationNode()
    except CrossI2PError as exc:
        print(f"calibration_node: error: {exc}")
        rclpy.try_shutdown()
        return 2
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass   # rclpy's signal handler shut the context down: a requested, clean exit
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv))
