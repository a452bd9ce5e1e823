"""The calibration session: paired frames -> keyframe window -> window solves -> calibration or drift (no ROS).

One loop for every way of running the calibrator on a stream: the node
(live, or a bag played into the graph), ``crossi2p replay`` and ``crossi2p
monitor`` (a bag read directly). Each paired frame is prepared once
(:meth:`Calibrator.prepare`) and offered to the :class:`KeyframeWindow`;
when enough new keyframes have arrived the window is solved
(:meth:`Calibrator.estimate_window`):

* ``calibrate``: a global search from the prior (and, without one, over the
  usual mounts and the network's proposals gathered from the keyframes, then
  around the best pose found) until a solve converges;
  from then on each solve is a cheap local update from the last converged
  pose, and a failed or unconverged update (the calibration stays the last
  converged solve meanwhile) sends the next solve back to the
  global search. The calibration is *published* (``Update.publish``) when a
  solve first converges and again when it moves by more than
  ``republish_sigma`` of its own uncertainty.
* ``monitor``: every solve is a local update from the installed extrinsic;
  :class:`DriftMonitor` tests the solution against it.

:meth:`offer` and :meth:`solve` may run on different threads (the node
prepares on one worker and solves on another); :meth:`step` does both in
turn, as offline replay does.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Literal

import numpy as np

from .errors import CrossI2PError
from .geometry import CameraModel, invert, se3_log
from .monitor import DriftMonitor, DriftStatus, MonitorConfig
from .registration.deskew import (TF_SPEED_SIGMA_REL, OdometryConfig, SweepTiming, azimuth_times,
                                  plausible_twist, sweep_twist, twist_between)
from .registration.estimate import Estimate
from .registration.keyframe_window import KeyframeConfig, KeyframeWindow, thumbnail
from .sweep_cache import SweepCache

if TYPE_CHECKING:  # the Calibrator pulls in torch; readers of this module's types do not need it
    from .registration.calibrator import Calibrator

Mode = Literal["calibrate", "monitor"]
# the pose ``T_fixed_lidar`` (4x4, metres) of a LiDAR frame (its name) at an instant [ns] in a fixed frame, from the
# vehicle's own odometry (``/tf``: :meth:`.tf_tree.TransformBuffer.lookup`); None where it does not know it
LidarPoses = Callable[[str, int], "np.ndarray | None"]


@dataclass
class Frame:
    """One paired capture: RGB image (H, W, 3) uint8, cloud (N, 3|4) [m, LiDAR frame], its camera, stamps [ns],
    each point's beam and time where the driver publishes them."""

    image: np.ndarray
    points: np.ndarray
    camera: CameraModel
    image_stamp_ns: int
    cloud_stamp_ns: int
    camera_frame: str
    lidar_frame: str
    ring: np.ndarray | None = None
    point_times: np.ndarray | None = None   # (N,) [s] each point's time from the cloud's stamp (a driver's field)

    @property
    def offset_s(self) -> float:
        return (self.image_stamp_ns - self.cloud_stamp_ns) * 1e-9


@dataclass(frozen=True)
class SessionConfig:
    mode: Mode = "calibrate"      # calibrate: estimate and publish; monitor: compare with the installed extrinsic
    keyframes: KeyframeConfig = field(default_factory=KeyframeConfig)
    min_keyframes: int = 10       # the first solve waits for this many keyframes (fewer rarely converge)
    solve_every: int = 4          # new keyframes between solves (a busy live solver takes what accumulated)
    republish_sigma: float = 3.0  # a converged calibration is published again when it moves this many sigma
    mount_search_every: int = 3   # no prior: unconverged solves search around the last supported pose, and every
                                  # this many-th one scans all mounts again (in case that pose is a wrong mount)
    # on: each keyframe's LiDAR twist from its sweep and the next (odometry, registration/deskew.py) moves
    # its edges to the camera's stamp (with the clouds' per-point times where they have them) and lets the window
    # estimate the camera's time offset; auto: on for clouds with per-point times; off: the sweeps as published
    motion: str = "auto"
    # a spinning head whose clouds carry no per-point time (drivers or filters that drop the field): "cw" or "ccw",
    # the way it turns seen from above, gives each point its time from its azimuth (registration/deskew.py,
    # azimuth_times), the sweep starting at seam_azimuth_deg [deg, left of the LiDAR's +x] and lasting
    # spin_period_s; "off": no times from azimuth
    azimuth_times: str = "off"
    seam_azimuth_deg: float = 180.0
    spin_period_s: float = 0.1
    monitor: MonitorConfig = field(default_factory=MonitorConfig)

    def validate(self) -> None:
        if self.mode not in ("calibrate", "monitor"):
            raise CrossI2PError(f"mode {self.mode!r}: use calibrate or monitor")
        if not 1 <= self.min_keyframes <= self.keyframes.size:
            raise CrossI2PError(f"min_keyframes={self.min_keyframes}: must be between 1 and the window size "
                                f"{self.keyframes.size}")
        if self.motion not in ("auto", "on", "off"):
            raise CrossI2PError(f"motion={self.motion!r}: use auto, on or off")
        if self.azimuth_times not in ("off", "cw", "ccw") or self.spin_period_s <= 0:
            raise CrossI2PError(f"azimuth_times={self.azimuth_times!r}, spin_period_s={self.spin_period_s}: use off, "
                                "cw or ccw, and a positive period")
        if self.solve_every < 1 or self.mount_search_every < 1:
            raise CrossI2PError(f"solve_every={self.solve_every}, mount_search_every={self.mount_search_every}: "
                                "each must be at least 1")


@dataclass
class Update:
    """One window solve. ``estimate.T_camera_lidar`` maps LiDAR points into the camera frame (metres)."""

    estimate: Estimate
    stamp_ns: int                 # the newest keyframe's cloud stamp
    keyframes: int
    global_search: bool
    publish: bool                 # calibrate: a converged calibration to publish (first, or moved)
    drift: DriftStatus | None     # monitor mode
    wall_s: float                 # time the solve took


class Session:
    """The state of one calibration or monitoring run on one camera/LiDAR pair of a rig."""

    def __init__(self, calibrator: Calibrator, cfg: SessionConfig = SessionConfig(),
                 T_prior: np.ndarray | None = None, sweeps: SweepCache | None = None,
                 lidar_poses: LidarPoses | None = None):
        """``sweeps``: the LiDAR's per-sweep work shared with the sessions of the other cameras on it (each
        sweep's depth edges and twist found once for all of them); None: this session's own.
        ``lidar_poses``: the vehicle's odometry (``/tf``); where it knows the LiDAR's pose at both sweeps' stamps,
        a moving keyframe's twist comes from it instead of registering the sweeps (LiDAR odometry, the fallback)."""
        cfg.validate()
        self.calibrator = calibrator
        self.cfg = cfg
        self.sweeps = SweepCache() if sweeps is None else sweeps
        self._lock = threading.Lock()
        self.window = KeyframeWindow(cfg.keyframes)
        self._stamps: dict[int, int] = {}          # id(keyframe) -> cloud stamp [ns]
        self._mi: dict[int, tuple] = {}            # id(keyframe) -> undistorted (image, points, camera)
        self._proposals: list[tuple[int, np.ndarray]] = []
        self._new = 0
        self._generation = 0                       # bumped by reset(): a solve in flight then belongs to the past
        self._lead: np.ndarray | None = None       # no prior: the last pose the window supported
        self._unconverged = 0                      # consecutive solves that did not converge
        self.T_prior: np.ndarray | None = None
        self.monitor: DriftMonitor | None = None
        self.set_prior(T_prior)
        self.last: Update | None = None
        self.converged: Estimate | None = None     # the converged solve updates start from (None: search)
        self._calibration: Estimate | None = None  # the newest converged solve, kept when an update fails
        self.published: Estimate | None = None     # the calibration last flagged for publishing
        self.solves = 0
        self.frames_offered = 0
        self._waiting: Frame | None = None       # moving: the frame offered next, once its next sweep is here
        self._twist: np.ndarray | None = None    # the last twist found (odometry's next guess)
        self.lidar_poses = lidar_poses
        self.twists_from = {"tf": 0, "lidar": 0}   # where the keyframes' twists came from

    # ------------------------------------------------------------------ inputs
    def set_prior(self, T_camera_lidar: np.ndarray | None) -> None:
        """The prior (calibrate) or the installed extrinsic (monitor), e.g. once found on TF."""
        with self._lock:
            self.T_prior = None if T_camera_lidar is None else np.asarray(T_camera_lidar, dtype=np.float64).copy()
            if self.cfg.mode == "monitor" and self.T_prior is not None:
                self.monitor = DriftMonitor(self.T_prior, self.cfg.monitor)

    def set_monitor_config(self, cfg: MonitorConfig) -> None:
        """New drift thresholds (node parameters changed at run time); the test's history restarts."""
        with self._lock:
            self.cfg = SessionConfig(**{**self.cfg.__dict__, "monitor": cfg})
            if self.T_prior is not None and self.cfg.mode == "monitor":
                self.monitor = DriftMonitor(self.T_prior, cfg)

    def reset(self) -> None:
        """Forget keyframes, proposals and results (the prior stays)."""
        with self._lock:
            self.window.clear()
            self._stamps.clear()
            self._mi.clear()
            self._proposals.clear()
            self._new = 0
            self._generation += 1
            self._lead, self._unconverged = None, 0
            self._waiting, self._twist = None, None
            self.last = self.converged = self.published = self._calibration = None
            if self.monitor is not None:
                self.monitor.reset()

    def offer(self, frame: Frame) -> bool:
        """Prepare ``frame`` and keep it as a keyframe if it adds to the window; True if kept.

        Moving (``SessionConfig.motion``), a frame waits for the next sweep: its twist is the motion from its
        sweep to the next, which at a steady acceleration is the motion during its own sweep (the sweep
        before it lags by a frame: at 9 m/s^2 0.9 m/s off, which biased a 20 ms offset by 4 ms). So the
        frame offered is the one before ``frame`` (one frame of latency), and a stream's last frame is not."""
        if self.cfg.mode == "monitor" and self.T_prior is None:
            raise CrossI2PError(f"monitor mode needs the installed extrinsic {frame.lidar_frame} -> "
                                f"{frame.camera_frame} (a calibration file, parameters or /tf_static)")
        timed = frame.point_times is not None or self.cfg.azimuth_times != "off"
        moving = self.cfg.motion == "on" or (self.cfg.motion == "auto" and timed)
        following = None
        if moving:
            with self._lock:
                frame, following, self._waiting = self._waiting, frame, frame
            if frame is None:
                return False
            if frame.point_times is None and self.cfg.azimuth_times != "off":
                frame = replace(frame, point_times=azimuth_times(frame.points, self.cfg.spin_period_s,
                                                                 self.cfg.seam_azimuth_deg,
                                                                 self.cfg.azimuth_times == "cw"))
        stamp_s = frame.cloud_stamp_ns * 1e-9
        look = thumbnail(frame.image)
        with self._lock:
            self.frames_offered += 1
            if self.window.skip_reason(look, stamp_s) is not None:   # decided before the costly features
                return False
        timing = self._timing(frame, following) if moving else None
        if moving and timing is None:   # neither registered nor a twist to carry on: it cannot be compensated
            return False
        times = frame.point_times if moving else None
        sweep = self.sweeps.get(("edges", frame.cloud_stamp_ns, times is not None),
                                lambda: self.calibrator.sweep_edges(frame.points, frame.ring, times))
        # the motion proposal's features only serve a solve without a prior
        keyframe, image, camera = self.calibrator.prepare(frame.image, frame.points, frame.camera, frame.ring, stamp_s,
                                                          without_prior=self.cfg.mode == "calibrate"
                                                          and self.T_prior is None, timing=timing, sweep=sweep)
        with self._lock:
            newest = self.window.keyframes[-1] if self.window.keyframes else None
            if newest is not None and (keyframe.width, keyframe.height) != (newest.width, newest.height):
                raise CrossI2PError(f"camera size changed to {camera.width}x{camera.height} mid-run; a window "
                                    "needs one camera: reset the session")
            held = {id(kf) for kf in self.window.keyframes}
            kept = self.window.offer(keyframe, look)
            if not kept:
                return False
            self._new += 1
            self._stamps[id(keyframe)] = frame.cloud_stamp_ns
            if self.calibrator.cfg.use_mi:
                self._mi[id(keyframe)] = (image, frame.points, camera)
            for gone in held - {id(kf) for kf in self.window.keyframes}:   # pushed out of the window
                self._stamps.pop(gone, None)
                self._mi.pop(gone, None)
            wants_proposals = self.cfg.mode == "calibrate" and self.T_prior is None and self.converged is None
        if wants_proposals:   # no prior: the network's poses of each keyframe are the global starts
            found = self.calibrator.proposals([(image, frame.points, camera)], None)
            with self._lock:
                self._proposals = sorted(self._proposals + found, key=lambda f: -f[0])[
                    : self.calibrator.cfg.max_proposals]
        return True

    def _timing(self, frame: Frame, following: Frame) -> SweepTiming | None:
        """``frame``'s sweep timing: its per-point times and the LiDAR's twist from its sweep to ``following``'s,
        the camera's stamp the target. The twist comes from the vehicle's odometry where it knows both stamps
        (``lidar_poses``), else from registering the two sweeps; where neither gives one the last twist found
        stands in (constant velocity); None before any."""
        dt = (following.cloud_stamp_ns - frame.cloud_stamp_ns) * 1e-9
        twist, source = self._odometry_twist(frame, following, dt), "tf"   # (a vehicle's odometry, when it has it)
        if twist is None:
            twist, source = self.sweeps.get(("twist", frame.cloud_stamp_ns, following.cloud_stamp_ns),
                                            lambda: sweep_twist(frame.points, following.points, dt,
                                                                guess=self._twist)), "lidar"
            if twist is not None and not plausible_twist(twist):
                twist = None
        if twist is None:
            twist, source = self._twist, ""
        if twist is None:
            return None
        self._twist = twist
        if source:
            with self._lock:
                self.twists_from[source] += 1
        return SweepTiming(frame.point_times, twist, frame.offset_s,
                           TF_SPEED_SIGMA_REL if source == "tf" else OdometryConfig().speed_sigma_rel)

    def _odometry_twist(self, frame: Frame, following: Frame, dt: float) -> np.ndarray | None:
        """The LiDAR's twist (v [m/s], w [rad/s], its own frame) between the two sweeps' stamps from
        ``lidar_poses``; None without odometry at either stamp, or where it jumped between them."""
        if self.lidar_poses is None or dt <= 0:
            return None
        T0 = self.lidar_poses(frame.lidar_frame, frame.cloud_stamp_ns)
        T1 = self.lidar_poses(frame.lidar_frame, following.cloud_stamp_ns)
        if T0 is None or T1 is None:
            return None
        twist = twist_between(invert(T0) @ T1, dt)
        return twist if plausible_twist(twist) else None   # an odometry frame that jumped: not this motion

    def due(self) -> bool:
        """Enough keyframes, and enough new ones since the last solve."""
        with self._lock:
            if len(self.window) < self.cfg.min_keyframes or self._new == 0:
                return False
            return self.last is None or self._new >= self.cfg.solve_every

    def pending(self) -> int:
        """Keyframes kept since the last solve."""
        with self._lock:
            return self._new

    # ------------------------------------------------------------------ solving
    def solve(self) -> Update | None:
        """Solve the window as it is now; None without keyframes, or if :meth:`reset` ran meanwhile."""
        with self._lock:
            keyframes = self.window.keyframes
            if not keyframes:
                return None
            self._new = 0
            generation = self._generation
            stamp = max(self._stamps.get(id(kf), 0) for kf in keyframes)
            mi_frames = [self._mi[id(kf)] for kf in keyframes if id(kf) in self._mi] or None
            proposals = [T for _, T in self._proposals]
            T_prior = None if self.T_prior is None else self.T_prior.copy()
            locked = None if self.converged is None else self.converged.T_camera_lidar.copy()
            lead, unconverged = self._lead, self._unconverged
        t0 = time.perf_counter()
        if self.cfg.mode == "monitor":
            assert T_prior is not None   # offer() refuses frames without it
            global_search = False
            est = self.calibrator.estimate_window(keyframes, T_prior, global_search=False, mi_frames=mi_frames)
        elif locked is not None:
            global_search = False
            est = self.calibrator.estimate_window(keyframes, locked, global_search=False, mi_frames=mi_frames)
        else:
            global_search = True
            T_start = T_prior
            if T_prior is None and lead is not None and unconverged % self.cfg.mount_search_every:
                # no prior: search around the last supported pose (a fraction of the cost of scoring every
                # mount again); every mount_search_every-th unconverged solve scans the mounts afresh
                T_start = lead
            est = self.calibrator.estimate_window(keyframes, T_start, proposals if T_start is None else (),
                                                  mi_frames=mi_frames)
        wall = time.perf_counter() - t0
        with self._lock:
            if generation != self._generation:
                return None
            self.solves += 1
            drift, publish = None, False
            if self.cfg.mode == "monitor":
                if self.monitor is not None:
                    drift = self.monitor.add(est.T_camera_lidar, est.covariance) if est.ok else self.monitor.status
            elif est.converged:
                publish = self.published is None or self._moved(est, self.published)
                self.converged = self._calibration = est
                self._unconverged = 0
                if publish:
                    self.published = est
            else:
                if locked is not None:
                    self.converged = None   # the update lost the pose: search globally again
                self._unconverged += 1
            if self.cfg.mode == "calibrate" and est.ok:
                self._lead = est.T_camera_lidar.copy()
            update = Update(est, stamp, len(keyframes), global_search, publish, drift, wall)
            self.last = update
        return update

    def _moved(self, new: Estimate, old: Estimate) -> bool:
        """``new`` differs from ``old`` by more than ``republish_sigma`` of new's uncertainty on some axis."""
        d = se3_log(new.T_camera_lidar @ invert(old.T_camera_lidar))
        sigma = np.sqrt(np.maximum(np.diag(new.covariance), 1e-18))
        return bool(np.any(np.abs(d) > self.cfg.republish_sigma * sigma))

    def step(self, frame: Frame) -> Update | None:
        """Offer ``frame`` and solve if a solve is due (the offline loop); the solve's update, else None."""
        self.offer(frame)
        return self.solve() if self.due() else None

    # ------------------------------------------------------------------ state
    @property
    def calibration(self) -> Estimate | None:
        """The newest converged solve (calibrate mode), else None: it stays the calibration while a later
        solve fails to converge (the next solve then searches again and may replace it)."""
        return self._calibration

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"frames_offered": self.frames_offered, "keyframes": len(self.window), "solves": self.solves,
                    "skipped_no_structure": self.window.skipped["no structure"],
                    "skipped_no_change": self.window.skipped["no change"],
                    "skipped_too_soon": self.window.skipped["too soon"], "proposals": len(self._proposals),
                    "twists_from_tf": self.twists_from["tf"], "twists_from_lidar": self.twists_from["lidar"]}
