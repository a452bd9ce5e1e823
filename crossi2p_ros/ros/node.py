"""``calibration_node``: the ROS 2 adapter over the ROS-free core.

Messages -> :mod:`crossi2p_ros.sync` pairs -> a worker thread running
:class:`crossi2p_ros.registration.calibrator.Calibrator` -> :mod:`crossi2p_ros.monitor`
(fusion in ``calibrate`` mode, drift detection in ``monitor`` mode) -> ``/tf_static``,
``/diagnostics``, ``~/overlay``.

Threading: subscription callbacks only pair stamps and hand the newest pair to
the worker through a one-slot, latest-wins mailbox (a pair still waiting when a
newer one arrives is dropped and counted), so the executor never blocks on
inference and memory stays bounded whatever the sensor rate. Message
conversion, inference, fusion and publishing happen on the worker.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

from ..bag import camera_from_msg, camera_lidar_from_tf, image_from_msg, transform_from_tf_msg
from ..calib_io import Calibration, read_calibration, write_all
from ..errors import CrossI2PError
from ..geometry import invert, make_transform, pose_error
from ..monitor import DriftMonitor, FusionConfig, MonitorConfig, PoseFusion
from ..overlay import draw_projection
from ..pointcloud import unpack_xyzi
from ..registration.calibrator import Calibrator, CalibratorConfig
from ..sync import ApproximateTimeSync, SyncConfig
from .messages import diagnostic_array, image_message, stamp_ns, tf_message

STATIC_TF_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)
RELIABLE_QOS = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)

# name: (default, description, range or choices); the one place the node's parameters are defined
PARAMETERS: dict[str, tuple[Any, str, Any]] = {
    "mode": ("calibrate", "calibrate: estimate, fuse, publish /tf_static; monitor: compare with the installed "
                          "extrinsic, publish no TF", ("calibrate", "monitor")),
    "image_topic": ("/camera/image_raw", "camera image topic (base name for compressed transport)", None),
    "image_transport": ("raw", "raw (sensor_msgs/Image) or compressed (<image_topic>/compressed)",
                        ("raw", "compressed")),
    "camera_info_topic": ("/camera/camera_info", "sensor_msgs/CameraInfo topic", None),
    "cloud_topic": ("/lidar/points", "sensor_msgs/PointCloud2 topic", None),
    "qos": ("sensor_data", "subscription QoS: sensor_data (best effort) or reliable", ("sensor_data", "reliable")),
    "lidar_frame": ("", "TF parent frame; empty: the cloud's header.frame_id", None),
    "camera_frame": ("", "TF child frame; empty: the image's header.frame_id", None),
    "device": ("auto", "inference device: auto, cpu, cuda, cuda:N", None),
    "weights": ("", "weights file; empty: the shipped default model", None),
    "backend": ("torch", "network runtime: torch, or onnx (ONNX Runtime on the file of crossi2p export)",
                ("torch", "onnx")),
    "onnx": ("", "backend onnx: the exported network (crossi2p export --onnx FILE)", None),
    "use_mi": (False, "polish each window's pose by mutual information", None),
    "sync_slop_s": (0.05, "largest camera/LiDAR stamp difference of a pair [s]", (0.001, 1.0)),
    "fusion_window": (50, "estimates fused (sliding window)", (1, 1000)),
    "initial_calibration": ("", "calibrate mode: initial guess file (any calib_io format); empty: /tf_static, "
                                "else none", None),
    "installed_calibration": ("", "monitor mode: installed extrinsic file; empty: installed_transform, "
                                  "else /tf_static", None),
    "installed_transform": ([0.0], "monitor mode: installed TF lidar->camera as [x, y, z, qx, qy, qz, qw]; "
                                   "[0.0] = unset", None),
    "monitor_window": (30, "estimates per drift test window", (5, 1000)),
    "warn_rot_deg": (0.5, "monitor: WARN beyond this significant rotation offset [deg]", (0.0, 90.0)),
    "warn_trans_m": (0.05, "monitor: WARN beyond this significant translation offset [m]", (0.0, 10.0)),
    "error_rot_deg": (2.0, "monitor: ERROR beyond this rotation offset [deg]", (0.0, 90.0)),
    "error_trans_m": (0.10, "monitor: ERROR beyond this translation offset [m]", (0.0, 10.0)),
    "output_dir": ("crossi2p_calibration", "where ~/save writes the calibration files", None),
    "autostart": (True, "start estimating at once; false: wait for ~/start", None),
    "stale_after_s": (5.0, "diagnostics turn STALE after this long without a pair [s]", (0.1, 3600.0)),
}


def _descriptor(name: str, description: str, spec: Any, default: Any) -> ParameterDescriptor:
    d = ParameterDescriptor(name=name, description=description)
    if isinstance(spec, tuple) and len(spec) == 2 and all(isinstance(v, (int, float)) for v in spec) \
            and not isinstance(default, bool):
        if isinstance(default, int):
            d.integer_range = [IntegerRange(from_value=int(spec[0]), to_value=int(spec[1]), step=1)]
        else:
            d.floating_point_range = [FloatingPointRange(from_value=float(spec[0]), to_value=float(spec[1]))]
    elif isinstance(spec, tuple):
        d.additional_constraints = "one of: " + ", ".join(spec)
    return d


@dataclass
class _Mailbox:
    """One-slot, latest-wins hand-over from the executor to the worker."""

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
        for name, (default, description, spec) in PARAMETERS.items():
            self.declare_parameter(name, default, _descriptor(name, description, spec, default))
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        for name, (_, _, spec) in PARAMETERS.items():
            if isinstance(spec, tuple) and isinstance(spec[0], str) and p[name] not in spec:
                raise CrossI2PError(f"parameter {name}={p[name]!r}: use one of {', '.join(spec)}")
        self.p = p
        self.mode: str = p["mode"]
        self.running = bool(p["autostart"])
        self._state_lock = threading.Lock()
        self._camera = None
        self._static_tf: dict[tuple[str, str], np.ndarray] = {}
        self._frames = (p["lidar_frame"], p["camera_frame"])
        self._T_prior: np.ndarray | None = None
        self._T_latest: np.ndarray | None = None
        self._last_estimate = None
        self._last_pair_time = 0.0
        self._last_offset_s = float("nan")
        self._received = {"image": 0, "cloud": 0, "camera_info": 0}
        self._bad = 0
        self._processed = 0
        self._waiting_for_info = 0
        self._last_error = ""
        self._last_error_time = 0.0
        self._published_T: np.ndarray | None = None
        self.fusion = PoseFusion(FusionConfig(window=int(p["fusion_window"])))
        self.monitor: DriftMonitor | None = None
        self.sync: ApproximateTimeSync = ApproximateTimeSync(SyncConfig(max_slop_s=float(p["sync_slop_s"])))
        self.mailbox = _Mailbox()
        self.fatal = ""
        # bumped whenever pairing and fusion restart (~/reset, time jumping back): results of pairs
        # taken before that are discarded, so a bag loop never mixes into the restarted fusion
        self._generation = 0
        self._sync_resets = 0
        self._time_jumps = 0

        self.calibrator: Calibrator | None = None
        try:
            self.calibrator = Calibrator(CalibratorConfig(weights=p["weights"] or None, device=p["device"],
                                                          use_mi=bool(p["use_mi"]), backend=p["backend"],
                                                          onnx=p["onnx"] or None))
            self.get_logger().info(f"weights {self.calibrator.weights_path} on {self.calibrator.device}")
        except CrossI2PError as exc:
            # keep running: diagnostics say what is wrong, so a fleet dashboard shows it
            self.fatal = str(exc)
            self.get_logger().error(f"cannot estimate: {exc}")
        self._load_files()

        qos = qos_profile_sensor_data if p["qos"] == "sensor_data" else RELIABLE_QOS
        if p["image_transport"] == "compressed":
            self.create_subscription(CompressedImage, p["image_topic"].rstrip("/") + "/compressed", self._on_image, qos)
        else:
            self.create_subscription(Image, p["image_topic"], self._on_image, qos)
        self.create_subscription(CameraInfo, p["camera_info_topic"], self._on_camera_info, qos)
        self.create_subscription(PointCloud2, p["cloud_topic"], self._on_cloud, qos)
        self.create_subscription(TFMessage, "/tf_static", self._on_tf_static, STATIC_TF_QOS)
        self.tf_pub = self.create_publisher(TFMessage, "/tf_static", STATIC_TF_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE_QOS)
        self.overlay_pub = self.create_publisher(Image, "~/overlay", RELIABLE_QOS)
        self.create_service(Trigger, "~/start", self._srv_start)
        self.create_service(Trigger, "~/reset", self._srv_reset)
        self.create_service(Trigger, "~/save", self._srv_save)
        # diagnostics run on the steady clock: with use_sim_time a paused or absent /clock must still
        # produce (STALE) diagnostics
        self.create_timer(1.0, self._publish_diagnostics, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._worker = threading.Thread(target=self._work, name="crossi2p-worker", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ setup
    def _load_files(self) -> None:
        p = self.p
        try:
            if self.mode == "calibrate" and p["initial_calibration"]:
                self._T_prior = read_calibration(Path(p["initial_calibration"])).T_camera_lidar
            if self.mode == "monitor":
                if p["installed_calibration"]:
                    self._T_prior = read_calibration(Path(p["installed_calibration"])).T_camera_lidar
                elif len(p["installed_transform"]) == 7:
                    x, y, z, qx, qy, qz, qw = p["installed_transform"]
                    T_lidar_camera = make_transform(Rotation.from_quat([qx, qy, qz, qw]).as_matrix(), [x, y, z])
                    self._T_prior = invert(T_lidar_camera)
        except (CrossI2PError, ValueError) as exc:
            self.fatal = f"calibration file: {exc}"
            self.get_logger().error(self.fatal)

    # ------------------------------------------------------------------ callbacks (cheap: no inference here)
    def _note_error(self, what: str, exc: Exception) -> None:
        self._bad += 1
        self._last_error = f"{what}: {exc}"
        self._last_error_time = time.monotonic()
        self.get_logger().warning(self._last_error, throttle_duration_sec=5.0)

    def _on_image(self, msg) -> None:
        self._received["image"] += 1
        pairs = self.sync.add_image(stamp_ns(msg), msg)
        self._check_time_jump()
        self._hand_over(pairs)

    def _on_cloud(self, msg) -> None:
        self._received["cloud"] += 1
        pairs = self.sync.add_cloud(stamp_ns(msg), msg)
        self._check_time_jump()
        self._hand_over(pairs)

    def _check_time_jump(self) -> None:
        """Stamps went back (a bag played in a loop, a clock reset): the sync restarted, so does fusion."""
        if self.sync.stats.resets == self._sync_resets:
            return
        self._sync_resets = self.sync.stats.resets
        self._time_jumps += 1
        self._restart()
        self.get_logger().warning("message stamps jumped backwards (bag loop or clock reset): pairing, fusion "
                                  "and the drift monitor restarted", throttle_duration_sec=5.0)

    def _restart(self) -> None:
        """Forget fused estimates and drift statistics; pairs already in flight are discarded."""
        with self._state_lock:
            self._generation += 1
            self.fusion.reset()
            if self.monitor is not None:
                self.monitor.reset()
            self._T_latest, self._last_estimate, self._published_T = None, None, None

    def _on_camera_info(self, msg) -> None:
        self._received["camera_info"] += 1
        try:
            self._camera = camera_from_msg(msg)
        except CrossI2PError as exc:
            self._note_error("camera_info", exc)

    def _on_tf_static(self, msg) -> None:
        if msg.transforms and self._published_T is not None and any(
                t.header.frame_id == self._frames[0] and t.child_frame_id == self._frames[1] for t in msg.transforms):
            return  # our own result echoed back
        try:
            for parent, child, T in transform_from_tf_msg(msg):
                self._static_tf[(parent, child)] = T
        except CrossI2PError as exc:
            self._note_error("/tf_static", exc)

    def _hand_over(self, pairs) -> None:
        if not pairs or not self.running or self.calibrator is None or self.fatal:
            return
        if self._camera is None:
            # a pair can complete a few ms before the first CameraInfo: skip it (diagnostics show the count)
            self._waiting_for_info += len(pairs)
            return
        self.mailbox.put_latest([(self._generation, p) for p in pairs])

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while not self.mailbox.closed:
            item = self.mailbox.take(timeout=0.5)
            if item is None:
                continue
            try:
                self._process(*item)
            except CrossI2PError as exc:
                self._note_error("pair", exc)
            except Exception as exc:  # noqa: BLE001 - the node must survive any single bad pair
                self._note_error("internal error on a pair", exc)
            finally:
                self._processed += 1

    def _frames_of(self, image_msg, cloud_msg) -> tuple[str, str]:
        lidar = self._frames[0] or str(cloud_msg.header.frame_id)
        camera = self._frames[1] or str(image_msg.header.frame_id)
        return lidar, camera

    def _prior(self, lidar: str, camera: str) -> np.ndarray | None:
        if self._T_prior is None:
            self._T_prior = camera_lidar_from_tf(self._static_tf, lidar, camera)
        return self._T_prior

    def _process(self, generation: int, pair) -> None:
        image_msg, cloud_msg = pair.image, pair.cloud
        if self._camera is None:
            raise CrossI2PError(f"no CameraInfo received on {self.p['camera_info_topic']} yet")
        image = image_from_msg(image_msg)
        points = unpack_xyzi(cloud_msg)
        if len(points) < self.calibrator.cfg.inputs.min_points:
            raise CrossI2PError(f"point cloud on {self.p['cloud_topic']} has {len(points)} finite points "
                                f"(need {self.calibrator.cfg.inputs.min_points})")
        lidar, camera_frame = self._frames_of(image_msg, cloud_msg)
        prior = self._prior(lidar, camera_frame)
        if self.mode == "monitor" and prior is None:
            raise CrossI2PError("monitor mode needs the installed extrinsic: set installed_calibration or "
                                f"installed_transform, or publish {lidar} -> {camera_frame} on /tf_static")
        est = self.calibrator.estimate(image, points, self._camera, prior)
        with self._state_lock:
            if generation != self._generation:
                return   # taken before a reset or a time jump: belongs to the old run
            self._frames = (lidar, camera_frame)
            self._last_estimate = est
            self._last_pair_time = time.monotonic()
            self._last_offset_s = pair.offset_s
            if est.ok:
                self._T_latest = est.T_camera_lidar
                if self.mode == "calibrate":
                    self.fusion.add(est.T_camera_lidar, est.covariance, est.confidence)
                else:
                    if self.monitor is None:
                        self.monitor = DriftMonitor(prior, MonitorConfig(
                            window=int(self.p["monitor_window"]), warn_rot_deg=self.p["warn_rot_deg"],
                            warn_trans_m=self.p["warn_trans_m"], error_rot_deg=self.p["error_rot_deg"],
                            error_trans_m=self.p["error_trans_m"]))
                    self.monitor.add(est.T_camera_lidar, est.covariance, est.confidence)
        if self.mode == "calibrate" and self.fusion.result is not None:
            self._publish_tf(self.fusion.result.T, lidar, camera_frame)
        if self.overlay_pub.get_subscription_count() > 0:
            T = self.current_extrinsic()
            if T is not None:
                self.overlay_pub.publish(image_message(draw_projection(image, points, T, self._camera),
                                                       camera_frame, image_msg.header.stamp))
        if not est.ok:
            self.get_logger().info(f"pair without estimate: {est.message}", throttle_duration_sec=10.0)

    def _publish_tf(self, T_camera_lidar: np.ndarray, lidar: str, camera: str) -> None:
        if self._published_T is not None and pose_error(T_camera_lidar, self._published_T).rot_deg < 1e-4 \
                and np.allclose(T_camera_lidar[:3, 3], self._published_T[:3, 3], atol=1e-6):
            return
        self._published_T = T_camera_lidar.copy()
        self.tf_pub.publish(tf_message(invert(T_camera_lidar), lidar, camera, self.get_clock().now().to_msg()))

    def current_extrinsic(self) -> np.ndarray | None:
        """The fused estimate (calibrate) or the latest live one (monitor)."""
        with self._state_lock:
            if self.mode == "calibrate" and self.fusion.result is not None:
                return self.fusion.result.T.copy()
            return None if self._T_latest is None else self._T_latest.copy()

    # ------------------------------------------------------------------ diagnostics
    def diagnostic_status(self) -> tuple[str, str, dict[str, Any]]:
        """(level, message, key-values) as published on /diagnostics."""
        with self._state_lock:
            est = self._last_estimate
            values: dict[str, Any] = {
                "mode": self.mode, "running": self.running,
                "device": str(self.calibrator.device) if self.calibrator else "none",
                "pairs_received": self.sync.stats.pairs, "pairs_processed": self._processed,
                "pairs_dropped_busy": self.mailbox.dropped, "pairs_without_camera_info": self._waiting_for_info,
                "messages_unpaired": self.sync.stats.dropped_images + self.sync.stats.dropped_clouds,
                "time_jumps": self._time_jumps,
                "images_received": self._received["image"], "clouds_received": self._received["cloud"],
                "camera_infos_received": self._received["camera_info"], "bad_messages": self._bad,
                "stamp_offset_ms": f"{1e3 * self._last_offset_s:.1f}",
            }
            if est is not None:
                values.update({"confidence": f"{est.confidence:.3f}", "stage": est.stage})
                values.update({f"latency_{k}_ms": f"{v:.1f}" for k, v in est.timings_ms.items()})
            fused = self.fusion.result
            if fused is not None:
                values.update({"frames_fused": fused.used, "frames_rejected": fused.rejected,
                               "fused_rot_std_deg": f"{fused.rot_std_deg:.3f}",
                               "fused_trans_std_m": f"{fused.trans_std_m:.4f}", "converged": fused.converged})
            installed = self._T_prior if self.mode == "monitor" else None
            current = fused.T if (self.mode == "calibrate" and fused is not None) else self._T_latest
            if installed is not None and current is not None:
                e = pose_error(current, installed)
                values.update({"rotation_diff_to_installed_deg": f"{e.rot_deg:.3f}",
                               "translation_diff_to_installed_m": f"{e.trans_m:.4f}"})
            recent_error = self._last_error and time.monotonic() - self._last_error_time < 5.0
            if self.fatal:
                return "ERROR", self.fatal, values
            if recent_error:
                values["last_error"] = self._last_error
                return "ERROR", f"bad input: {self._last_error}", values
            if not self.running:
                return "OK", "idle: call ~/start to begin", values
            if est is None or time.monotonic() - self._last_pair_time > float(self.p["stale_after_s"]):
                return "STALE", (f"no camera/LiDAR pair in the last {self.p['stale_after_s']:.0f} s "
                                 f"(images {self._received['image']}, clouds {self._received['cloud']}, "
                                 f"camera_info {self._received['camera_info']})"), values
            if self.mode == "monitor":
                status = self.monitor.status if self.monitor else None
                if status is None:
                    return "STALE", "waiting for estimates", values
                values.update({"offset_rot_deg": f"{status.rot_deg:.3f}", "offset_trans_m": f"{status.trans_m:.4f}"})
                return status.level, status.message, values
            if fused is None:
                return "WARN", f"no estimate yet ({est.message or est.stage})", values
            state = "converged" if fused.converged else "converging"
            return "OK", (f"calibration {state}: {fused.used} frames, +-{fused.rot_std_deg:.2f} deg / "
                          f"{100 * fused.trans_std_m:.1f} cm"), values

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
        self._restart()
        response.success, response.message = True, "reset: pairing, fusion and monitor cleared"
        return response

    def _srv_save(self, request, response):
        T = self.current_extrinsic()
        if T is None:
            response.success, response.message = False, "no estimate yet: nothing to save"
            return response
        with self._state_lock:
            cov = self.fusion.result.covariance if self.fusion.result is not None else None
            lidar, camera = self._frames
        try:
            paths = write_all(Calibration(T, lidar or "lidar", camera or "camera_optical", cov,
                                          {"node": self.get_fully_qualified_name(), "mode": self.mode}),
                              Path(self.p["output_dir"]))
        except (OSError, CrossI2PError) as exc:
            response.success, response.message = False, f"save failed: {exc}"
            return response
        response.success, response.message = True, str(paths["yaml"])
        return response

    def destroy_node(self) -> None:
        self.mailbox.close()
        self._worker.join(timeout=5.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run crossi2p_ros calibration_node`` and ``crossi2p node``."""
    rclpy.init(args=args)
    try:
        node = CalibrationNode()
    except CrossI2PError as exc:
        print(f"calibration_node: error: {exc}")
        rclpy.try_shutdown()
        return 2
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv))
