"""``calibration_node``: the ROS 2 adapter over the ROS-free session loop (:mod:`crossi2p_ros.session`).

Messages -> :mod:`crossi2p_ros.sync` pairs -> decode -> :class:`~crossi2p_ros.session.Session`
(keyframe window, window solves, drift monitor) -> ``~/calibration``,
``/tf_static``, ``/diagnostics``, ``~/overlay`` as DESIGN.md's node interface states.

Several cameras on one LiDAR (parameter ``cameras``): one node calibrates them
all, a :class:`~crossi2p_ros.ros.camera_channel.CameraChannel` each (its
topics, pairing, session, outputs and diagnostics status), and each sweep's
decoding, depth edges and odometry are done once for all of them (one
:class:`~crossi2p_ros.sweep_cache.SweepCache`).

Threading: subscription callbacks only pair stamps and hand the newest pair to
the *preparer* through a latest-wins mailbox with one slot per camera (a pair
still waiting when a newer one of its camera arrives is dropped and counted),
so the executor never blocks and memory stays bounded whatever the sensor
rate. The preparer takes the cameras' pairs in turn, decodes each and offers it
to that camera's keyframe window (~0.15 s); the *solver* solves a camera's
window whenever enough new keyframes have arrived (seconds for a global
search), the cameras in turn, so keyframes keep arriving while it works. Both
are daemon threads joined on shutdown.

Not a lifecycle node: it holds no device to configure or release between
states (weights load once, subscriptions are cheap) and ``~/start`` /
``autostart`` already give the "configured but idle" state; a managed node
would add transitions every user must drive for no behaviour they get.
"""
from __future__ import annotations

import threading
import time
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import PointCloud2
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

from ..decode import image_from_msg, stamped_transforms_from_tf_msg, transform_from_tf_msg
from ..errors import CrossI2PError
from ..overlay import draw_projection
from ..pointcloud import unpack_cloud
from ..registration.calibrator import Calibrator
from ..session import Frame, Session
from ..sweep_cache import SweepCache
from ..tf_tree import StaticTransforms, TransformBuffer
from .camera_channel import CameraChannel, camera_setups
from .messages import diagnostic_array, image_message, stamp_ns
from .params import DYNAMIC_GROUPS, configs_from, monitor_config, parameter_specs
from .qos import RELIABLE_QOS, SENSOR_QOS, STATIC_TF_QOS, TF_QOS

# re-exported for callers that listen to the node (the demo, tests)
__all__ = ["CalibrationNode", "RELIABLE_QOS", "STATIC_TF_QOS", "main"]


class _Mailbox:
    """Latest-wins hand-over from the executor to the preparer, one slot per camera, taken in turn."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self._items: dict[Any, Any] = {}        # camera -> its newest waiting pair, in the order they queued
        self._dropped: dict[Any, int] = {}
        self.closed = False

    def put_latest(self, key: Any, items: list) -> None:
        """Offer ``key``'s ``items`` (oldest first); only the newest is kept, every other one counts as dropped."""
        with self.lock:
            self._dropped[key] = self._dropped.get(key, 0) + len(items) - 1 + (key in self._items)
            self._items[key] = items[-1]        # a camera not waiting yet queues behind those that are
            self.lock.notify()

    def take(self, timeout: float) -> tuple[Any, Any] | None:
        """(camera, pair) of the camera that has waited longest, or None after ``timeout`` [s]."""
        with self.lock:
            if not self._items and not self.closed:
                self.lock.wait(timeout)
            if not self._items:
                return None
            key = next(iter(self._items))
            return key, self._items.pop(key)

    def dropped_of(self, key: Any) -> int:
        with self.lock:
            return self._dropped.get(key, 0)

    @property
    def dropped(self) -> int:
        with self.lock:
            return sum(self._dropped.values())

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.lock.notify_all()


# how long the preparer waits for /tf odometry to reach a sweep's stamp (the executor may take /tf's messages later
# than the clouds': measured 50-220 ms behind under a saturated CPU, benchmarks/node.py --tf-odometry)
ODOMETRY_WAIT_S = 0.3


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
        setups = camera_setups(self.cfg)
        self.mode: str = self.cfg.mode
        self.running = bool(self.cfg.autostart)
        self._static_tf = StaticTransforms()
        self._tf = TransformBuffer(self._static_tf)   # ... and /tf's moving edges: the vehicle's odometry
        self._clouds_received = 0
        self._bad = 0
        self._last_error = ""
        self.mailbox = _Mailbox()
        self._wake_solver = threading.Event()
        self._closing = threading.Event()
        self.fatal = ""
        # the LiDAR's per-sweep work (decoded cloud, depth edges, odometry) done once for all cameras
        self.sweeps = SweepCache(size=12 * len(setups))

        self.calibrator: Calibrator | None = None
        sessions: list[Session | None] = [None] * len(setups)
        try:
            self.calibrator = Calibrator(configs["calibrator"])
            sessions = [Session(self.calibrator, configs["session"], sweeps=self.sweeps, lidar_poses=self._lidar_pose)
                        for _ in setups]
            self.get_logger().info(f"weights {self.calibrator.weights_path} on {self.calibrator.device}; "
                                   f"{self.mode} with windows of {configs['session'].keyframes.size} keyframes, "
                                   f"camera{'s' if len(setups) > 1 else ''} {', '.join(s.name for s in setups)}")
        except CrossI2PError as exc:
            # keep running: diagnostics say what is wrong, so a fleet dashboard shows it
            self.fatal = str(exc)
            self.get_logger().error(f"cannot estimate: {exc}")
        self.add_on_set_parameters_callback(self._on_set_parameters)

        qos = SENSOR_QOS if self.cfg.qos == "sensor_data" else RELIABLE_QOS
        self.tf_pub = self.create_publisher(TFMessage, "/tf_static", STATIC_TF_QOS)
        self.channels = [CameraChannel(self, setup, session, configs["sync"], qos)
                         for setup, session in zip(setups, sessions)]
        self._load_prior_files()
        self.create_subscription(PointCloud2, self.cfg.cloud_topic, self._on_cloud, qos)
        self.create_subscription(TFMessage, "/tf_static", self._on_tf_static, STATIC_TF_QOS)
        if self.cfg.odom_frame:
            self.create_subscription(TFMessage, "/tf", self._on_tf, TF_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE_QOS)
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

    # the first camera's (the only one's on a single-camera node): what scripts and tests of one camera read
    @property
    def session(self) -> Session | None:
        return self.channels[0].session

    @property
    def calibration_pub(self):
        return self.channels[0].calibration_pub

    @property
    def overlay_pub(self):
        return self.channels[0].overlay_pub

    @property
    def time_offset_pub(self):
        return self.channels[0].time_offset_pub

    @property
    def _time_jumps(self) -> int:
        return sum(ch.time_jumps for ch in self.channels)

    # ------------------------------------------------------------------ setup
    def _load_prior_files(self) -> None:
        for ch in self.channels:
            try:
                ch.load_prior_file(self.mode, self.cfg.installed_transform)
            except (CrossI2PError, ValueError) as exc:
                self.fatal = f"calibration file: {exc}"
                self.get_logger().error(self.fatal)

    def _on_set_parameters(self, params) -> SetParametersResult:
        """Run-time changes: the monitor thresholds (everything else is declared read-only)."""
        changed = {p.name: p.value for p in params}
        if not all(name.startswith(DYNAMIC_GROUPS) for name in changed) or self.fatal:
            return SetParametersResult(successful=True)   # read-only ones are refused by rclpy itself
        values = {name: self.get_parameter(name).value for name in self._specs if name.startswith("monitor.")}
        values.update(changed)
        for ch in self.channels:
            if ch.session is not None:
                ch.session.set_monitor_config(monitor_config(values))
        self.get_logger().info(f"monitor thresholds changed: {changed}")
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ callbacks (cheap: no inference here)
    def note_error(self, what: str, exc: Exception, channel: CameraChannel | None = None) -> None:
        """A bad message or a failed step, shown in the diagnostics of ``channel`` (None: every camera's)."""
        self._bad += 1
        # decode's errors may name the message already ("camera_info: unknown distortion model ...")
        self._last_error = str(exc) if str(exc).startswith(what) else f"{what}: {exc}"
        for ch in self.channels if channel is None else [channel]:
            ch.note_error(self._last_error)
        self.get_logger().warning(self._last_error, throttle_duration_sec=5.0)

    def _on_cloud(self, msg) -> None:
        self._clouds_received += 1
        stamp = stamp_ns(msg)
        for ch in self.channels:   # each camera pairs the sweep with its own images
            self.hand_over(ch, ch.sync.add_cloud(stamp, msg))

    def _on_tf_static(self, msg) -> None:
        try:
            for parent, child, T in transform_from_tf_msg(msg):
                self._static_tf.add(parent, child, T)
        except CrossI2PError as exc:
            self.note_error("/tf_static", exc)

    def _on_tf(self, msg) -> None:
        try:
            for parent, child, T, stamp in stamped_transforms_from_tf_msg(msg):
                self._tf.add(parent, child, T, stamp)
        except CrossI2PError as exc:
            self.note_error("/tf", exc)

    def _lidar_pose(self, lidar_frame: str, stamp: int) -> np.ndarray | None:
        """``T_odom_lidar`` at ``stamp`` [ns] from /tf (:class:`..session.Session`'s ``lidar_poses``)."""
        return self._tf.lookup(self.cfg.odom_frame, lidar_frame, stamp, timeout_s=ODOMETRY_WAIT_S) \
            if self.cfg.odom_frame else None

    def hand_over(self, ch: CameraChannel, pairs) -> None:
        """Pairs of camera ``ch`` completed by a callback: the newest goes to the preparer."""
        if ch.sync.stats.resets != ch.sync_resets:
            # stamps went back (a bag played in a loop, a clock reset): the sync restarted, so does the session
            ch.sync_resets = ch.sync.stats.resets
            ch.time_jumps += 1
            self.sweeps.clear()
            self._tf.clear()
            if ch.session is not None:
                ch.session.reset()
            self.get_logger().warning("message stamps jumped backwards (bag loop or clock reset): pairing and "
                                      "the keyframe window restarted", throttle_duration_sec=5.0)
        if not pairs or not self.running or ch.session is None or self.fatal:
            return
        if ch.camera is None:
            # a pair can complete a few ms before the first CameraInfo: skip it (diagnostics show the count)
            ch.waiting_for_info += len(pairs)
            return
        # the newest stamp's age on the wall clock at hand-over: DDS transport + this node's callbacks, for live
        # sensors whose clocks are synchronised with this machine (meaningless for a bag under use_sim_time)
        newest = max(max(p.image_stamp_ns, p.cloud_stamp_ns) for p in pairs)
        ch.handover_ms.append(1e-6 * (time.time_ns() - newest))
        self.mailbox.put_latest(ch, list(pairs))

    # ------------------------------------------------------------------ workers
    def _prepare_loop(self) -> None:
        while not self._closing.is_set():
            taken = self.mailbox.take(timeout=0.5)
            if taken is None:
                continue
            ch, pair = taken
            try:
                self._prepare(ch, pair)
            except CrossI2PError as exc:
                self.note_error("pair", exc, ch)
            except Exception as exc:  # noqa: BLE001 - the node must survive any single bad pair
                self.note_error("internal error on a pair", exc, ch)
            finally:
                ch.prepared += 1

    def _prepare(self, ch: CameraChannel, pair) -> None:
        assert ch.session is not None and self.calibrator is not None
        image_msg, cloud_msg = pair.image, pair.cloud
        lidar, camera = ch.frame_ids(image_msg, cloud_msg)
        ch.frames = (lidar, camera)
        ch.last_pair_time = time.monotonic()
        ch.last_offset_s = pair.offset_s
        ch.find_prior(self._static_tf)
        image = image_from_msg(image_msg)
        ch.image_size = (image.shape[1], image.shape[0])   # of the last image that decoded
        cloud_stamp = stamp_ns(cloud_msg)
        points, ring, times = self.sweeps.get(("cloud", cloud_stamp), lambda: unpack_cloud(cloud_msg))
        if len(points) < self.calibrator.cfg.inputs.min_points:
            raise CrossI2PError(f"point cloud on {self.cfg.cloud_topic} has {len(points)} finite points "
                                f"(need {self.calibrator.cfg.inputs.min_points})")
        frame = Frame(image, points, ch.camera, stamp_ns(image_msg), cloud_stamp, camera, lidar, ring, times)
        if ch.session.offer(frame):
            self._wake_solver.set()
        if ch.overlay_pub.get_subscription_count() > 0:
            T = ch.current_extrinsic()
            if T is not None:
                ch.overlay_pub.publish(image_message(draw_projection(image, points, T, ch.camera),
                                                     camera, image_msg.header.stamp))

    def _solve_loop(self) -> None:
        turn = 0
        while not self._closing.is_set():
            self._wake_solver.wait(timeout=0.5)
            self._wake_solver.clear()
            # the cameras in turn, starting after the last one solved, so that none starves the others
            order = self.channels[turn:] + self.channels[:turn]
            for ch in order:
                if self._closing.is_set() or not self._solve_if_due(ch):
                    continue
                turn = (self.channels.index(ch) + 1) % len(self.channels)
                self._wake_solver.set()   # look at the others again before waiting
                break

    def _solve_if_due(self, ch: CameraChannel) -> bool:
        """Solve ``ch``'s window if it is due (or its keyframes wait after the data stopped); True if solved."""
        s = ch.session
        if s is None:
            return False
        # keyframes that arrived after the last solve are solved too once the data stops (a bag's end)
        idle = s.pending() > 0 and time.monotonic() - ch.last_pair_time > 2.0 and len(s.window) >= s.cfg.min_keyframes
        if not (s.due() or idle):
            return False
        try:
            update = s.solve()
            if update is not None and not self._closing.is_set():   # destroyed meanwhile: publishers may be gone
                ch.publish(update)
        except CrossI2PError as exc:
            self.note_error("window solve", exc, ch)
        except Exception as exc:  # noqa: BLE001 - a failed solve must not end the node
            self.note_error("internal error in a window solve", exc, ch)
        return True

    # ------------------------------------------------------------------ diagnostics
    def _shared_values(self) -> dict[str, Any]:
        return {"mode": self.mode, "running": self.running,
                "device": str(self.calibrator.device) if self.calibrator else "none",
                "clouds_received": self._clouds_received, "bad_messages": self._bad,
                "sweeps_shared": self.sweeps.hits}

    def _publish_diagnostics(self) -> None:
        shared = self._shared_values()
        statuses = [(ch.status_name(), *ch.diagnostic_status(shared)) for ch in self.channels]
        self.diag_pub.publish(diagnostic_array(statuses, self.get_name(), self.get_clock().now().to_msg()))

    # ------------------------------------------------------------------ services
    def _srv_start(self, request, response):
        self.running = True
        response.success, response.message = True, f"started ({self.mode})"
        return response

    def _srv_reset(self, request, response):
        self.sweeps.clear()
        for ch in self.channels:
            ch.sync.reset()
            ch.sync_resets = ch.sync.stats.resets
            if ch.session is not None:
                ch.session.reset()
        response.success, response.message = True, "reset: pairing and the keyframe window cleared"
        return response

    def _srv_save(self, request, response):
        """Each camera's converged calibration saved; success when every camera's was. A single camera's
        message is the YAML's path (or why nothing was saved); several say ``name: path-or-why`` each."""
        results = [(ch.setup.name, *ch.save(self.get_fully_qualified_name())) for ch in self.channels]
        response.success = all(saved for _, saved, _ in results)
        response.message = results[0][2] if len(results) == 1 else "; ".join(f"{n}: {m}" for n, _, m in results)
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
