"""Synthetic camera + LiDAR sequences with an exact ground-truth extrinsic.

A rig (a spinning LiDAR and a forward-looking camera with lens distortion)
drives along the road of a procedural scene (:mod:`.scene`) and both sensors
are ray-cast with open3d/Embree (:mod:`.sensors`) at the same rig pose, as a
hardware-triggered camera would be, so ``T_camera_lidar`` is exact.

Per rig (per seed) the camera intrinsics, lens distortion and the mount are
drawn at random within realistic limits: the optical axis roughly along the
LiDAR's +x (or along ``camera_heading_deg`` and ``camera_pitch_deg``: a side,
rear or road-facing camera), a few degrees of yaw/pitch/roll, a lever arm of
up to ~0.5 m horizontally, the camera 0.05-0.4 m below the LiDAR.

Everything is seeded from :class:`SynthConfig`: the same config gives the
same arrays and the same files, byte for byte. Frame ``i`` of a sequence does
not depend on how many frames are generated.

Use :func:`generate` to write KITTI odometry layout (and optionally a ROS 2
bag), or :class:`SynthSequence` / :func:`iter_frames` to generate in memory.
"""
from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from tqdm import tqdm

from ..errors import CrossI2PError
from ..geometry import CameraModel, invert, make_transform, se3_log
from .kitti import OdometryWriter
from .meshes import rot_x, rot_y, rot_z
from .scene import STYLE_PARAMS, STYLES, Scene, build_scene
from .lidar_models import LIDAR_MODELS
from .sensors import LIDAR_VFOV_DEG, CameraRenderer, Lidar, LidarSpec

POINT_ORDERS = ("scan", "shuffled")
CAMERA_MODELS = ("pinhole", "plumb_bob", "fisheye")
# a fisheye's image corners this far off its optical axis [deg] (a z = 1 ray, which the renderer casts, holds
# no angle of 90 or more)
_FISHEYE_CORNER_DEG = 85.0

LIDAR_FRAME = "lidar"
ODOM_FRAME = "odom"          # REP-105 names of the bag's odometry (SynthConfig.odometry_rate_hz)
BASE_FRAME = "base_link"
CAMERA_FRAME = "camera_optical"
TOPIC_IMAGE = "/camera/image_raw"
TOPIC_CAMERA_INFO = "/camera/camera_info"
TOPIC_POINTS = "/lidar/points"

# Optical frame (x right, y down, z forward) expressed in the LiDAR frame (x forward, y left, z up).
R_LIDAR_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])

_START_MARGIN_M = 130.0   # road behind the first pose: more than the LiDAR's range
_AHEAD_MARGIN_M = 250.0   # road ahead of the last pose: the camera sees far
_LENGTH_QUANTUM_M = 250.0  # scene length is rounded up to this, so short runs share one scene


@dataclass
class SynthConfig:
    """Everything that defines a synthetic sequence (all randomness derives from ``seed``).

    Units: metres, degrees, pixels, seconds. Ranges are ``(low, high)`` of a
    uniform draw per rig (per seed).
    """

    frames: int = 20
    seed: int = 0
    style: str = "urban"                    # urban | suburban | highway | indoor
    # LiDAR: a named kind of the sensor zoo (lidar_models.LIDAR_MODELS: hdl64, vlp16, vlp32c, os128, pandar64,
    # avia, raster), whose geometry then replaces lidar_beams / lidar_columns / lidar_vfov_deg /
    # lidar_elevations_deg; "" (the default): the spinning sensor those fields describe (64 beams: hdl64's)
    lidar_model: str = ""
    # scan: the points in the order the sensor's driver publishes them; shuffled: in random order, as after a
    # filter or a bag tool that reorders them (nothing may assume scan order, DESIGN.md)
    point_order: str = "scan"
    lidar_beams: int = 64
    lidar_columns: int = 1024
    lidar_vfov_deg: tuple[float, float] | None = None  # (top, bottom); None: the usual sensor for the beam count
    lidar_elevations_deg: tuple[float, ...] | None = None  # each beam's elevation, when not evenly spread
                                                           # (e.g. lidar_models.LIDAR_ELEVATIONS_DEG)
    lidar_max_range_m: float = 100.0
    lidar_min_range_m: float = 2.0           # closer returns (the ego vehicle's roof) are dropped
    range_noise_m: float = 0.02
    dropout_prob: float = 0.02
    intensity_noise: float = 0.03
    # > 0: crowns and hedges are porous to the LiDAR, returning from inside them with this mean free path [m]
    # or letting the beam through (sensors.LidarSpec); 0, the default: solid, as every dataset before it
    foliage_free_path_m: float = 0.0
    lidar_height_m: tuple[float, float] = (1.6, 2.0)  # above the road
    # camera: the lens, pinhole | plumb_bob (radial-tangential, the k1 / k2 / tangential ranges below) | fisheye
    # (equidistant, a ~150-170 deg field: see synth._other_lens)
    camera_model: str = "plumb_bob"
    image_width: int = 1241
    image_height: int = 376
    fx_over_width: tuple[float, float] = (0.55, 0.75)
    principal_point_jitter: float = 0.02     # of the image size, around the centre
    k1: tuple[float, float] = (-0.12, 0.02)  # plumb_bob radial terms
    k2: tuple[float, float] = (-0.02, 0.05)
    tangential_max: float = 5e-4             # |p1|, |p2|
    # camera mount relative to the LiDAR
    mount_rot_jitter_deg: float = 3.0        # yaw, pitch, roll each uniform in +-this
    camera_heading_deg: float = 0.0          # the view turned about the LiDAR's z from its +x (90: left, 180: rear)
    camera_pitch_deg: float = 0.0            # ... and tilted down by this (a camera watching the road ahead)
    lever_arm_xy_m: float = 0.5              # |x|, |y| offset of the camera from the LiDAR
    camera_below_lidar_m: tuple[float, float] = (0.05, 0.4)
    # motion and timing
    rate_hz: float = 10.0
    speed_mps: tuple[float, float] | None = None  # None: the style's usual speeds
    stamp_jitter_s: float = 0.005            # camera stamp = LiDAR stamp (+ sweep_s / 2) + U(-j, j) in the bag
    # the speed swings by +-this around its mean over speed_change_period_s (accelerating and braking, which
    # tells a time offset from a lever arm); 0, the default: constant speed
    speed_change_mps: float = 0.0
    speed_change_period_s: float = 6.0
    # > 0: the LiDAR's sweep is cast over this long [s] while the rig moves (a raw, not motion-compensated
    # sweep, as drivers publish it; per-point times written), stamped at its start as Ouster's and Hesai's
    # drivers do, and the camera stamped (triggered) at its middle, when a spinning head faces forward.
    # 0, the default: the sweep at one instant, the camera at the LiDAR's stamp
    sweep_s: float = 0.0
    # the camera's exposure (its middle) minus its stamp [s]: fixed, plus U(-j, j) per frame; in the truth
    # only (synth.json), as a real driver's stamps do not say it
    camera_offset_s: float = 0.0
    camera_offset_jitter_s: float = 0.0
    # > 0: a rolling shutter, the image's rows exposed top to bottom over this long [s] (the exposure time above is
    # the middle row's), each rendered from where the camera was then; 0, the default: a global shutter
    rolling_shutter_s: float = 0.0
    # > 0: the bag also carries the vehicle's odometry as a robot publishes it, ``odom -> base_link`` on /tf at this
    # rate [Hz] and ``base_link -> lidar`` on /tf_static (the true poses, no drift); 0, the default: no odometry
    odometry_rate_hz: float = 0.0
    # decalibration: from this time on the camera is knocked by a rotation about its own y axis (yaw,
    # positive = turning right) and a shift along its x axis; calib.txt and /tf_static keep the old extrinsic
    decalibrate_at_s: float | None = None
    step_rot_deg: float = 0.0
    step_trans_m: float = 0.0
    bag_start_ns: int = 1_700_000_000_000_000_000
    # output
    sequence: str = "00"
    compressed_images: bool = False
    bag_storage: str = "mcap"                # mcap | sqlite3
    threads: int = 0                         # Embree threads (0: all cores)

    def validate(self) -> None:
        """Raise :class:`CrossI2PError` naming the bad field."""
        if self.style not in STYLES:
            raise CrossI2PError(f"style {self.style!r} is not a synthetic scene style; use one of {', '.join(STYLES)}")
        if self.frames < 1:
            raise CrossI2PError(f"frames={self.frames}: generate at least one frame")
        if self.lidar_model and self.lidar_model not in LIDAR_MODELS:
            raise CrossI2PError(f"lidar_model {self.lidar_model!r} is not in the sensor zoo; use one of "
                                f"{', '.join(LIDAR_MODELS)}")
        if self.camera_model not in CAMERA_MODELS:
            raise CrossI2PError(f"camera_model {self.camera_model!r}: use one of {', '.join(CAMERA_MODELS)}")
        if self.point_order not in POINT_ORDERS:
            raise CrossI2PError(f"point_order {self.point_order!r}: use one of {', '.join(POINT_ORDERS)}")
        if self.lidar_elevations_deg is not None and len(self.lidar_elevations_deg) != self.lidar_beams:
            raise CrossI2PError(f"lidar_elevations_deg has {len(self.lidar_elevations_deg)} beams, "
                                f"lidar_beams={self.lidar_beams}")
        if self.lidar_vfov_deg is None and self.lidar_elevations_deg is None \
                and self.lidar_beams not in LIDAR_VFOV_DEG:
            raise CrossI2PError(f"lidar_beams={self.lidar_beams} has no default field of view; "
                                f"use one of {sorted(LIDAR_VFOV_DEG)} or set lidar_vfov_deg")
        if self.lidar_beams < 1 or self.lidar_columns < 8:
            raise CrossI2PError("the LiDAR needs at least 1 beam and 8 columns")
        if self.image_width < 8 or self.image_height < 8:
            raise CrossI2PError(f"image size {self.image_width}x{self.image_height} is too small")
        if self.rate_hz <= 0:
            raise CrossI2PError(f"rate_hz={self.rate_hz} must be positive")
        if self.bag_storage not in ("mcap", "sqlite3"):
            raise CrossI2PError(f"bag_storage={self.bag_storage!r}: use mcap or sqlite3")
        if self.foliage_free_path_m < 0:
            raise CrossI2PError(f"foliage_free_path_m={self.foliage_free_path_m}: must be >= 0 metres")
        if self.sweep_s < 0 or self.sweep_s > 1.0 / self.rate_hz:
            raise CrossI2PError(f"sweep_s={self.sweep_s}: must be between 0 and the frame period "
                                f"{1.0 / self.rate_hz:g} s")
        lo_speed = (self.speed_mps or STYLE_PARAMS[self.style].speed_mps)[0]
        if not 0 <= self.speed_change_mps < max(lo_speed, 1e-9) or self.speed_change_period_s <= 0:
            raise CrossI2PError(f"speed_change_mps={self.speed_change_mps}: must be >= 0 and below the slowest "
                                f"speed {lo_speed} m/s (the rig never reverses), with a positive period")
        if not 0 <= self.rolling_shutter_s <= 1.0 / self.rate_hz:
            raise CrossI2PError(f"rolling_shutter_s={self.rolling_shutter_s}: must be between 0 and the frame period "
                                f"{1.0 / self.rate_hz:g} s")
        if self.odometry_rate_hz < 0:
            raise CrossI2PError(f"odometry_rate_hz={self.odometry_rate_hz}: must be >= 0 (0: no /tf odometry)")
        if self.decalibrate_at_s is not None and self.decalibrate_at_s < 0:
            raise CrossI2PError(f"decalibrate_at_s={self.decalibrate_at_s}: must be >= 0 seconds")

    def decalibration(self) -> np.ndarray:
        """The step ``Delta`` (4x4, camera frame): after the event the extrinsic is ``Delta @ T_camera_lidar``."""
        return make_transform(rot_y(np.radians(self.step_rot_deg)), [self.step_trans_m, 0.0, 0.0])

    def lidar_spec(self) -> LidarSpec:
        common = dict(max_range_m=self.lidar_max_range_m, min_range_m=self.lidar_min_range_m,
                      range_noise_m=self.range_noise_m, dropout_prob=self.dropout_prob,
                      intensity_noise=self.intensity_noise, foliage_free_path_m=self.foliage_free_path_m)
        if self.lidar_model:
            m = LIDAR_MODELS[self.lidar_model]
            vfov = (max(m.elevations_deg), min(m.elevations_deg)) if m.elevations_deg else m.vfov_deg
            # a rosette has no columns; the spinning geometry Lidar keeps beside its pattern needs some
            return LidarSpec(beams=m.beams, columns=max(m.columns, 8), vfov_deg=vfov, elevations_deg=m.elevations_deg,
                             pattern=m.pattern, order=m.order, model=m, **common)
        elevations = None if self.lidar_elevations_deg is None else tuple(self.lidar_elevations_deg)
        if self.lidar_vfov_deg:
            vfov = tuple(self.lidar_vfov_deg)
        elif elevations:
            vfov = (max(elevations), min(elevations))
        else:
            vfov = LIDAR_VFOV_DEG[self.lidar_beams]
        return LidarSpec(
            beams=self.lidar_beams, columns=self.lidar_columns, vfov_deg=vfov,  # type: ignore[arg-type]
            elevations_deg=elevations, **common)


# --------------------------------------------------------------------------- rig and motion


@dataclass(frozen=True)
class Rig:
    """The sensor rig: camera model, the extrinsic, and the LiDAR's mount on the vehicle.

    Vehicle frame: x forward, y left, z up, origin on the road below the LiDAR.
    """

    camera: CameraModel
    T_camera_lidar: np.ndarray
    T_vehicle_lidar: np.ndarray


def _other_lens(model: str, drawn: CameraModel, rng: np.random.Generator) -> CameraModel:
    """The camera of ``drawn``'s size, pixel aspect and principal point with another lens: ``pinhole`` (no
    distortion, ``drawn``'s K) or ``fisheye`` (equidistant / Kannala-Brandt: the focal length puts the image
    corner farthest from the principal point at ``_FISHEYE_CORNER_DEG`` off the optical axis, k1..k4 small
    and random)."""
    if model == "pinhole":
        return CameraModel(drawn.width, drawn.height, drawn.K)
    corners = np.array([[-0.5, -0.5], [drawn.width - 0.5, drawn.height - 0.5], [-0.5, drawn.height - 0.5],
                        [drawn.width - 0.5, -0.5]]) - [drawn.cx, drawn.cy]
    f = float(np.linalg.norm(corners / [1.0, drawn.fy / drawn.fx], axis=1).max()) / np.radians(_FISHEYE_CORNER_DEG)
    k = rng.uniform(-1, 1, 4) * np.array([0.02, 0.005, 0.001, 0.0002])
    return CameraModel.from_intrinsics(drawn.width, drawn.height, f, f * drawn.fy / drawn.fx, drawn.cx, drawn.cy, k,
                                       "equidistant")


def random_rig(cfg: SynthConfig, rng: np.random.Generator) -> Rig:
    """Draw intrinsics, distortion and mount of one rig within ``cfg``'s limits."""
    w, h = cfg.image_width, cfg.image_height
    fx = w * rng.uniform(*cfg.fx_over_width)
    fy = fx * (1.0 + rng.uniform(-0.003, 0.003))
    j = cfg.principal_point_jitter
    cx = (w - 1) / 2 + rng.uniform(-j, j) * w
    cy = (h - 1) / 2 + rng.uniform(-j, j) * h
    dist = [rng.uniform(*cfg.k1), rng.uniform(*cfg.k2), rng.uniform(-1, 1) * cfg.tangential_max,
            rng.uniform(-1, 1) * cfg.tangential_max, 0.0]
    camera = CameraModel.from_intrinsics(w, h, fx, fy, cx, cy, np.array(dist), "plumb_bob")
    if cfg.camera_model != "plumb_bob":
        camera = _other_lens(cfg.camera_model, camera, np.random.default_rng(rng.integers(2 ** 32)))
    yaw, pitch, roll = np.radians(rng.uniform(-1, 1, 3) * cfg.mount_rot_jitter_deg)
    # jitter about the camera's own axes: yaw about y (down), pitch about x (right), roll about z (forward)
    R_lidar_camera = rot_z(np.radians(cfg.camera_heading_deg)) @ R_LIDAR_OPTICAL \
        @ rot_x(-np.radians(cfg.camera_pitch_deg)) @ rot_y(yaw) @ rot_x(pitch) @ rot_z(roll)
    t_lidar_camera = np.array([rng.uniform(-1, 1) * cfg.lever_arm_xy_m, rng.uniform(-1, 1) * cfg.lever_arm_xy_m,
                               -rng.uniform(*cfg.camera_below_lidar_m)])
    T_lidar_camera = make_transform(R_lidar_camera, t_lidar_camera)
    tilt = np.radians(rng.uniform(-0.5, 0.5, 2))  # a LiDAR is levelled by eye on its mount
    T_vehicle_lidar = make_transform(rot_x(tilt[0]) @ rot_y(tilt[1]), [0.0, 0.0, rng.uniform(*cfg.lidar_height_m)])
    return Rig(camera, invert(T_lidar_camera), T_vehicle_lidar)


@dataclass(frozen=True)
class Trajectory:
    """Smooth drive along the rig's lane: a mean speed (swinging by ``speed_change`` [m/s] over
    ``speed_change_period`` [s] where set), a slight weave, body pitch and roll."""

    s_start: float
    speed: float
    lane_d: float
    weave_amp: float
    weave_period: float
    weave_phase: float
    sway_amp_rad: np.ndarray   # pitch, roll amplitudes
    sway_freq_hz: np.ndarray
    sway_phase: np.ndarray
    speed_change: float = 0.0
    speed_change_period: float = 6.0

    @classmethod
    def random(cls, cfg: SynthConfig, lane_d: float, rng: np.random.Generator) -> "Trajectory":
        lo, hi = cfg.speed_mps or STYLE_PARAMS[cfg.style].speed_mps
        return cls(
            s_start=_START_MARGIN_M, speed=rng.uniform(lo, hi), lane_d=lane_d,
            weave_amp=rng.uniform(0.05, 0.25), weave_period=rng.uniform(5.0, 12.0),
            weave_phase=rng.uniform(0, 2 * np.pi), sway_amp_rad=np.radians(rng.uniform(0.1, 0.5, 2)),
            sway_freq_hz=rng.uniform(0.5, 1.5, 2), sway_phase=rng.uniform(0, 2 * np.pi, 2),
            speed_change=cfg.speed_change_mps, speed_change_period=cfg.speed_change_period_s,
        )

    def length(self, duration_s: float) -> float:
        return self.speed * duration_s + 2 * self.speed_change * self.speed_change_period / (2 * np.pi)

    def T_world_vehicle(self, scene: Scene, time_s: float) -> np.ndarray:
        # speed + speed_change * sin(2 pi t / P), integrated from 0
        a = 2 * np.pi / self.speed_change_period
        s = self.s_start + self.speed * time_s + self.speed_change * (1.0 - np.cos(a * time_s)) / a
        speed = self.speed + self.speed_change * np.sin(a * time_s)
        w = 2 * np.pi / self.weave_period
        d = self.lane_d + self.weave_amp * np.sin(w * time_s + self.weave_phase)
        dd_ds = self.weave_amp * w * np.cos(w * time_s + self.weave_phase) / speed
        xy = scene.road.point(s, d)
        _, heading = scene.road.frame(s)
        pitch, roll = self.sway_amp_rad * np.sin(2 * np.pi * self.sway_freq_hz * time_s + self.sway_phase)
        R = rot_z(float(heading) + np.arctan(dd_ds)) @ rot_y(pitch) @ rot_x(roll)
        return make_transform(R, [xy[0], xy[1], 0.0])


# --------------------------------------------------------------------------- frames


@dataclass
class SynthFrame:
    """One synchronized capture.

    ``image``: RGB uint8 (H, W, 3). ``points``: (N, 4) float32 x, y, z [m],
    intensity [0, 1] in the LiDAR frame. ``depth``: the camera's own ray-cast
    depth along the optical axis [m] (H, W), inf where it sees sky.
    ``time_s``: the LiDAR's stamp (its sweep's start) from the sequence start;
    ``camera_time_offset_s``: the camera header stamp minus the LiDAR's in the
    bag (trigger and jitter); ``exposure_offset_s``: the camera's true exposure
    minus its stamp (truth only); ``point_times_s`` (N,) float32 each point's
    time from the LiDAR's stamp [s] (zeros for a sweep at one instant).
    ``T_world_lidar`` is the LiDAR's pose at its stamp, ``T_world_camera`` the
    camera's at its exposure; poses map the sensor frames into the world frame.
    """

    index: int
    time_s: float
    image: np.ndarray
    points: np.ndarray
    depth: np.ndarray
    T_world_lidar: np.ndarray
    T_world_camera: np.ndarray
    camera: CameraModel
    T_camera_lidar: np.ndarray
    camera_time_offset_s: float
    exposure_offset_s: float = 0.0
    point_times_s: np.ndarray | None = None


class SynthSequence:
    """A synthetic sequence generated on demand: ``len()``, iteration and random access by index."""

    def __init__(self, cfg: SynthConfig, scene: Scene | None = None):
        """``scene``: the one another sequence of the same style, seed and length built (:func:`camera_rig`);
        None: built here."""
        cfg.validate()
        self.cfg = cfg
        style_id = STYLES.index(cfg.style)
        self._seed_key = (cfg.seed, style_id)
        rig_rng = np.random.default_rng([cfg.seed, style_id, 3])
        self.rig = random_rig(cfg, rig_rng)
        lidar_rng = np.random.default_rng([cfg.seed, style_id, 4])
        self.lidar = Lidar(cfg.lidar_spec(), lidar_rng)
        self.renderer = CameraRenderer(self.rig.camera, noise_seed=[cfg.seed, style_id, 7])
        # the lane comes from the scene, so draw the rest of the motion before building it
        motion_rng = np.random.default_rng([cfg.seed, style_id, 5])
        probe = Trajectory.random(cfg, 0.0, motion_rng)
        duration = (cfg.frames - 1) / cfg.rate_hz
        needed = probe.length(duration) + _AHEAD_MARGIN_M
        length = _START_MARGIN_M + np.ceil(needed / _LENGTH_QUANTUM_M) * _LENGTH_QUANTUM_M
        self.scene = build_scene(cfg.style, cfg.seed, float(length), cfg.threads) if scene is None else scene
        self.trajectory = Trajectory(**{**probe.__dict__, "lane_d": self.scene.layout.ego_d})

    @property
    def camera(self) -> CameraModel:
        return self.rig.camera

    @property
    def T_camera_lidar(self) -> np.ndarray:
        return self.rig.T_camera_lidar.copy()

    def __len__(self) -> int:
        return self.cfg.frames

    def __iter__(self) -> Iterator[SynthFrame]:
        return (self.frame(i) for i in range(len(self)))

    def true_T_camera_lidar(self, index: int) -> np.ndarray:
        """The extrinsic at frame ``index``: the rig's, or after ``decalibrate_at_s`` the knocked one."""
        cfg = self.cfg
        if cfg.decalibrate_at_s is not None and index / cfg.rate_hz >= cfg.decalibrate_at_s:
            return cfg.decalibration() @ self.rig.T_camera_lidar
        return self.rig.T_camera_lidar.copy()

    def pose_at(self, time_s: float) -> np.ndarray:
        """``T_world_lidar`` at ``time_s`` [s] from the sequence start."""
        return self.trajectory.T_world_vehicle(self.scene, time_s) @ self.rig.T_vehicle_lidar

    def lidar_twist(self, time_s: float, span_s: float) -> np.ndarray:
        """The LiDAR's true body twist (6,) (v [m/s], w [rad/s], its own frame): the constant one that takes it from
        its pose at ``time_s`` [s] to its pose ``span_s`` [s] later (what a driving test or benchmark compares
        odometry with)."""
        return se3_log(invert(self.pose_at(time_s)) @ self.pose_at(time_s + span_s)) / span_s

    def poses(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(T_world_lidar, T_world_camera)`` of frame ``index``, both at the LiDAR's stamp."""
        T_world_lidar = self.pose_at(index / self.cfg.rate_hz)
        return T_world_lidar, T_world_lidar @ invert(self.true_T_camera_lidar(index))

    def _scan(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.cfg
        t_lidar = index / cfg.rate_hz
        points, times = self.lidar.scan(self.scene, self.pose_at(t_lidar), rng,
                                        lambda dt: self.pose_at(t_lidar + dt), cfg.sweep_s)
        if cfg.point_order == "shuffled":   # a stream of its own: the rest of the frame stays the same
            order = np.random.default_rng([*self._seed_key, 8, index]).permutation(len(points))
            points, times = points[order], times[order]
        return points, times

    def sweep(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame ``index``'s LiDAR sweep alone (as :meth:`frame` has it, without rendering the image): points
        (N, 4) float32 and their times (N,) float32 [s] from its stamp."""
        if not 0 <= index < len(self):
            raise IndexError(f"frame {index} out of range 0..{len(self) - 1}")
        return self._scan(index, np.random.default_rng([*self._seed_key, 6, index]))

    def frame(self, index: int) -> SynthFrame:
        """Render frame ``index`` (its randomness depends only on the config and the index)."""
        if not 0 <= index < len(self):
            raise IndexError(f"frame {index} out of range 0..{len(self) - 1}")
        cfg = self.cfg
        rng = np.random.default_rng([*self._seed_key, 6, index])
        t_lidar = index / cfg.rate_hz
        T_world_lidar, T_world_camera = self.poses(index)
        points, times = self._scan(index, rng)
        if cfg.sweep_s > 0 or cfg.camera_offset_s or cfg.camera_offset_jitter_s or cfg.rolling_shutter_s:
            # timed: the camera triggered at the sweep's middle, stamped with jitter, exposed at its offset from
            # the stamp, and rendered then (its own stream, so the defaults stay as they were)
            timing = np.random.default_rng([*self._seed_key, 9, index])
            offset = float(0.5 * cfg.sweep_s + timing.uniform(-1, 1) * cfg.stamp_jitter_s)
            exposure = float(cfg.camera_offset_s + timing.uniform(-1, 1) * cfg.camera_offset_jitter_s)
            T_camera_lidar = self.true_T_camera_lidar(index)
            T_world_camera = self.pose_at(t_lidar + offset + exposure) @ invert(T_camera_lidar)
            poses = T_world_camera
            if cfg.rolling_shutter_s > 0:   # row v exposed at (v + 0.5) / H - 1/2 of the readout from the middle
                rows = ((np.arange(self.camera.height) + 0.5) / self.camera.height - 0.5) * cfg.rolling_shutter_s
                poses = np.stack([self.pose_at(t_lidar + offset + exposure + dt) for dt in rows]) \
                    @ invert(T_camera_lidar)
            image, depth = self.renderer.render(self.scene, poses, rng)
        else:   # both sensors at one instant, the camera's stamp off it by the jitter
            image, depth = self.renderer.render(self.scene, T_world_camera, rng)
            offset = float(rng.uniform(-1, 1) * cfg.stamp_jitter_s)
            exposure = -offset
        return SynthFrame(index=index, time_s=t_lidar, image=image, points=points, depth=depth,
                          T_world_lidar=T_world_lidar, T_world_camera=T_world_camera, camera=self.camera,
                          T_camera_lidar=self.true_T_camera_lidar(index), camera_time_offset_s=offset,
                          exposure_offset_s=exposure, point_times_s=times)


def iter_frames(cfg: SynthConfig) -> Iterator[SynthFrame]:
    """Generate the frames of ``cfg`` in memory (each carries the rig's camera and extrinsic)."""
    return iter(SynthSequence(cfg))


def camera_rig(cfg: SynthConfig, headings_deg: Sequence[float]) -> list[SynthSequence]:
    """Several cameras on one LiDAR: a sequence per camera, its view turned ``headings_deg`` [deg] about the
    LiDAR's z (0: ahead, 90: left), on one drive through one scene. Every random draw but the heading is the
    same, so frame i's LiDAR points are identical in each sequence; the cameras share their lens and mount
    jitter draws and their lever arm (co-located, looking different ways)."""
    if not headings_deg:
        raise CrossI2PError("camera_rig needs at least one camera heading")
    first = SynthSequence(replace(cfg, camera_heading_deg=float(headings_deg[0])))
    return [first] + [SynthSequence(replace(cfg, camera_heading_deg=float(h)), scene=first.scene)
                      for h in headings_deg[1:]]


# --------------------------------------------------------------------------- files


@dataclass
class SynthResult:
    """What :func:`generate` wrote: the sequence folder, the rig, and the bag if asked for."""

    sequence_dir: Path
    camera: CameraModel
    T_camera_lidar: np.ndarray
    frames: int
    bag_path: Path | None = None
    config: SynthConfig = field(default_factory=SynthConfig)


def _config_json(cfg: SynthConfig, camera: CameraModel, T_camera_lidar: np.ndarray) -> str:
    doc = {"generator": "crossi2p_ros.data.synth", "config": asdict(cfg),
           "camera": camera.to_camera_info_dict(), "T_camera_lidar": np.asarray(T_camera_lidar).tolist()}
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def generate(cfg: SynthConfig, out_dir: Path, bag_path: Path | None = None, progress: bool = True) -> SynthResult:
    """Generate ``cfg`` into ``out_dir`` in KITTI odometry layout (sequence ``cfg.sequence``).

    Writes ``out_dir/sequences/<seq>/{calib.txt, times.txt, image_2/, velodyne/}``,
    ``out_dir/poses/<seq>.txt`` and ``synth.json`` (the config and the true
    extrinsic) in the sequence folder. With ``bag_path``, also a ROS 2 bag:
    images on ``/camera/image_raw`` (``.../compressed`` if
    ``cfg.compressed_images``), ``/camera/camera_info``, clouds on
    ``/lidar/points`` in frame ``lidar``, and the true extrinsic once on
    ``/tf_static`` (parent ``lidar``, child ``camera_optical``). With ``cfg.sweep_s`` the per-point times
    go into ``velodyne_times/`` and the clouds' uint32 ``t`` field [ns from the stamp, the sweep's start], and
    the images' stamps into ``times_image_2.txt``. With ``cfg.odometry_rate_hz`` the bag also has the
    vehicle's true motion on ``/tf`` (``odom -> base_link``) and the LiDAR's mount on ``/tf_static``
    (``base_link -> lidar``), from the first sweep's stamp to a sweep past the last.
    """
    if bag_path is not None and Path(bag_path).exists():  # fail before anything is written
        raise CrossI2PError(f"bag output {bag_path} already exists; choose a new path or delete it first")
    seq = SynthSequence(cfg)
    out_dir = Path(out_dir)
    with ExitStack() as stack:
        writer = stack.enter_context(OdometryWriter(out_dir, cfg.sequence, seq.camera, seq.T_camera_lidar))
        bag = None
        if bag_path is not None:
            from ..bag import BagWriter  # rosbags is only needed when a bag is asked for

            bag_path = Path(bag_path)
            bag = stack.enter_context(BagWriter(bag_path, storage=cfg.bag_storage))  # type: ignore[arg-type]
            bag.add_tf_static(cfg.bag_start_ns, LIDAR_FRAME, CAMERA_FRAME, invert(seq.T_camera_lidar))
            if cfg.odometry_rate_hz > 0:
                bag.add_tf_static(cfg.bag_start_ns, BASE_FRAME, LIDAR_FRAME, seq.rig.T_vehicle_lidar)
        # the odometry's sample times [s from the first sweep], written as the frames pass them
        odometry_s = list(np.arange(0.0, len(seq) / cfg.rate_hz + 1e-9, 1.0 / cfg.odometry_rate_hz)) \
            if bag is not None and cfg.odometry_rate_hz > 0 else []
        image_topic = TOPIC_IMAGE + ("/compressed" if cfg.compressed_images else "")
        frames = tqdm(seq, total=len(seq), desc=f"synth {cfg.style} seed {cfg.seed}", unit="frame",
                      disable=not progress)
        for frame in frames:
            timed = cfg.sweep_s > 0
            writer.add(frame.image, frame.points, frame.time_s, frame.T_world_camera,
                       frame.point_times_s if timed else None,
                       frame.time_s + frame.camera_time_offset_s if timed else None)
            if bag is not None:
                while odometry_s and odometry_s[0] <= frame.time_s:
                    t = odometry_s.pop(0)
                    bag.add_tf(cfg.bag_start_ns + round(t * 1e9), ODOM_FRAME, BASE_FRAME,
                               seq.trajectory.T_world_vehicle(seq.scene, t))
                lidar_ns = cfg.bag_start_ns + round(frame.index * 1e9 / cfg.rate_hz)
                camera_ns = lidar_ns + round(frame.camera_time_offset_s * 1e9)
                bag.add_pointcloud(TOPIC_POINTS, lidar_ns, LIDAR_FRAME, frame.points,
                                   times_s=frame.point_times_s if cfg.sweep_s > 0 else None)
                bag.add_image(image_topic, camera_ns, CAMERA_FRAME, frame.image, compressed=cfg.compressed_images)
                bag.add_camera_info(TOPIC_CAMERA_INFO, camera_ns, CAMERA_FRAME, seq.camera)
        for t in odometry_s:   # past the last sweep: its motion is known up to the next one's stamp
            bag.add_tf(cfg.bag_start_ns + round(t * 1e9), ODOM_FRAME, BASE_FRAME,
                       seq.trajectory.T_world_vehicle(seq.scene, t))
        (writer.sequence_dir / "synth.json").write_text(_config_json(cfg, seq.camera, seq.T_camera_lidar))
    return SynthResult(sequence_dir=writer.sequence_dir, camera=seq.camera, T_camera_lidar=seq.T_camera_lidar,
                       frames=len(seq), bag_path=bag_path, config=cfg)
