"""Motion compensation of a LiDAR sweep: every point moved to one instant, the camera's.

A spinning head takes ~100 ms a sweep; at 15-30 m/s the vehicle moves 1.5-3 m
between its first and last point, so a raw sweep is no snapshot of the scene
(``../shared/data/aimotive_pandar64_night``: 25-30 px off on near objects).
Each point ``p_i``, measured in the sensor frame at its own time ``t_i``, is
expressed in the sensor frame at the target time ``tau`` under a constant
body twist ``xi`` (the sensor's velocity in its own frame):

    p_tau = exp((t_i - tau) xi) p_i,   where exp(s xi) = T_lidar(0)_lidar(s)

Times are seconds from the cloud's stamp; the twist is ``(v [m/s], w [rad/s])``
in the LiDAR frame, the ordering of :func:`..geometry.se3_exp`. The twist comes
from LiDAR odometry (:func:`sweep_twist`: two consecutive sweeps registered
with open3d's generalized ICP) or the vehicle's (``/tf``, :class:`..tf_tree.TransformBuffer`); the times from
the driver's field, else, for a spinning head, from each point's azimuth (:func:`azimuth_times`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import se3_exp, se3_log

# Points are moved with one transform per time bin rather than one per point: 0.1 ms moves a point at most
# 3 mm at 30 m/s, under any LiDAR's range noise, and a sweep then needs ~1,000 transforms instead of 10^5.
_TIME_BIN_S = 1e-4


@dataclass(frozen=True)
class SweepTiming:
    """When a sweep's points were measured and how the sensor moved meanwhile.

    ``times_s`` (N,) [s] each point's time from the cloud's stamp (None: all at the stamp);
    ``twist`` (6,) the LiDAR's body twist (v [m/s], w [rad/s]) in its own frame (None: unknown);
    ``target_s`` [s] the instant to express the sweep at, from the cloud's stamp (the camera's stamp);
    ``speed_sigma_rel`` the twist's speed uncertainty as a share of the speed (its source's:
    :data:`TF_SPEED_SIGMA_REL`, :attr:`OdometryConfig.speed_sigma_rel`; 0: exact).
    """

    times_s: np.ndarray | None
    twist: np.ndarray | None
    target_s: float = 0.0
    speed_sigma_rel: float = 0.0


# a vehicle's own odometry (wheel encoders, an INS) on /tf knows its speed to about a percent
TF_SPEED_SIGMA_REL = 0.01


def deskew(points: np.ndarray, times_s: np.ndarray | None, twist: np.ndarray, target_s: float) -> np.ndarray:
    """``points`` (N, >=3) [m], each measured in the LiDAR frame at ``times_s`` (N,) [s] (None: at 0), expressed
    in the LiDAR frame at ``target_s`` [s] under the constant body ``twist`` (6,) (v [m/s], w [rad/s]).
    Columns past the third (intensity) are kept; the result has ``points``' dtype."""
    points = np.asarray(points)
    out = points.copy()
    if len(points) == 0:
        return out
    times = np.zeros(len(points)) if times_s is None else np.asarray(times_s, dtype=np.float64)
    if times.shape != (len(points),):
        raise ValueError(f"times of shape {times.shape} for {len(points)} points")
    dt = np.nan_to_num(times, nan=0.0) - float(target_s)
    bins = np.round(dt / _TIME_BIN_S).astype(np.int64)
    unique, which = np.unique(bins, return_inverse=True)
    T = se3_exp(unique[:, None] * _TIME_BIN_S * np.asarray(twist, dtype=np.float64)[None, :])   # (B, 4, 4)
    xyz = points[:, :3].astype(np.float64)
    moved = np.einsum("nij,nj->ni", T[which, :3, :3], xyz) + T[which, :3, 3]
    out[:, :3] = moved.astype(points.dtype, copy=False)
    return out


def azimuth_times(points: np.ndarray, period_s: float, seam_azimuth_deg: float = 180.0, clockwise: bool = True
                  ) -> np.ndarray:
    """Each point's time (N,) [s] from the sweep's start, from its azimuth, for a spinning head whose driver
    publishes no time field: the sweep starts at ``seam_azimuth_deg`` [deg, left of the LiDAR's +x] and turns
    ``clockwise`` (seen from above; azimuth falling, as Velodyne, Ouster and Hesai heads turn) once in
    ``period_s`` [s]. ``points`` (N, >=3) [m, LiDAR frame]; the order of the points is not used."""
    xyz = np.asarray(points)[:, :3].astype(np.float64)
    azimuth = np.arctan2(xyz[:, 1], xyz[:, 0])
    turned = (np.radians(seam_azimuth_deg) - azimuth) if clockwise else (azimuth - np.radians(seam_azimuth_deg))
    return (np.mod(turned, 2.0 * np.pi) / (2.0 * np.pi) * float(period_s)).astype(np.float32)


def twist_between(T_lidar0_lidar1: np.ndarray, dt_s: float) -> np.ndarray:
    """The constant body twist (6,) (v [m/s], w [rad/s]) that moves the LiDAR by ``T_lidar0_lidar1`` (the pose
    at ``dt_s`` [s] later, in the frame at 0) in ``dt_s``."""
    if dt_s <= 0:
        raise ValueError(f"dt_s={dt_s}: the second sweep must come later")
    return se3_log(np.asarray(T_lidar0_lidar1, dtype=np.float64)) / dt_s


@dataclass(frozen=True)
class OdometryConfig:
    """LiDAR odometry between two consecutive sweeps (open3d generalized ICP), coarse to fine."""

    # each stage's downsampling and match distance: the coarse one reaches a 3 m step (30 m/s over 0.1 s) from
    # a standing start; the fine one settles it, and alone does where a guess (the last twist) is given. Along
    # a street the travel is what registration pins worst: synthetic urban drives, speed error median / max
    # 0.60 / - m/s at 0.5 m voxels, 0.27 at 0.4, 0.18 / 1.46 at 0.3 (85 ms, 52 ms from a guess)
    # (the coarsest reaches the real motorway drive's 9 m between frames 0.27 s apart)
    voxels_m: tuple[float, ...] = (3.0, 1.0, 0.3)
    max_correspondence_m: tuple[float, ...] = (12.0, 3.0, 1.0)
    max_iterations: int = 30
    min_fitness: float = 0.5      # the share of the later sweep matched at the last stage, below which no twist
    max_gap_s: float = 0.35       # sweeps further apart than this are not registered (odometry would guess)
    # from a guess, the coarsest stage is also run from rest; where it lands further than this [m] from the guess's
    # result, the two compete (the finer stages from the coarse one, the match share at the fine stage decides)
    basin_m: float = 2.0
    # the speed's uncertainty, as a share of it, of a twist found by registering two sweeps: along a street whose
    # surfaces mostly face across the travel, registration misjudges the speed by p95 2.3 m/s at 10-20 m/s
    # (15 %), several frames in a row (synthetic seed 9950; benchmarks/driving.py reports each drive's error)
    speed_sigma_rel: float = 0.15
    # a twist beyond these is no vehicle's motion between two sweeps (an odometry frame that jumped: a filter
    # reset, a bag's clock): it is not used
    max_speed_mps: float = 90.0
    max_turn_rate_dps: float = 180.0


def plausible_twist(twist: np.ndarray, cfg: OdometryConfig = OdometryConfig()) -> bool:
    """Whether a body twist (v [m/s], w [rad/s]) is one a vehicle can have (:attr:`OdometryConfig.max_speed_mps`,
    :attr:`OdometryConfig.max_turn_rate_dps`)."""
    twist = np.asarray(twist, dtype=np.float64)
    return bool(np.all(np.isfinite(twist)) and np.linalg.norm(twist[:3]) <= cfg.max_speed_mps
                and np.degrees(np.linalg.norm(twist[3:])) <= cfg.max_turn_rate_dps)


def sweep_twist(earlier: np.ndarray, later: np.ndarray, dt_s: float, cfg: OdometryConfig = OdometryConfig(),
                guess: np.ndarray | None = None) -> np.ndarray | None:
    """The LiDAR's body twist (6,) (v [m/s], w [rad/s]) from two sweeps (N, >=3) [m, LiDAR frame] ``dt_s`` [s]
    apart (their stamps), registered with open3d's generalized ICP from the constant-velocity ``guess`` (a
    twist, default at rest); None where they are too far apart in time or do not register.

    From a guess only the fine stage runs, which stays in the guess's basin, so a wrong guess (a twist found
    wrongly before) would be carried from frame to frame. The coarsest stage therefore also runs from rest
    (~11 ms a synthetic sweep pair), and where it lands elsewhere (``cfg.basin_m``) the two results compete
    on the share of the later sweep they match. On the real motorway drive (frames 9 m apart) the fine stage
    from a wrong 3.6 m/s kept every later pair at 2-7 m/s; registered from rest 9 of 12 pairs find ~33 m/s,
    and the right twist always matched the larger share (0.75-0.85 against 0.56-0.65).

    Raw sweeps are each distorted by the motion during them; with constant velocity both are distorted alike,
    so registering one to the other still gives the motion between their stamps (registering them once more
    after motion-compensating both moved the synthetic drives' twists by less than their error, at twice
    the cost: benchmarks/driving.py).
    """
    if not 0 < dt_s <= cfg.max_gap_s:
        return None
    import open3d as o3d   # here, not at the top: the trainer imports this package on machines without open3d

    reg = o3d.pipelines.registration

    def cloud(points: np.ndarray, voxel: float):
        xyz = np.asarray(points, dtype=np.float64)[:, :3]
        c = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz[np.isfinite(xyz).all(axis=1)]))
        c = c.voxel_down_sample(voxel)
        c.estimate_covariances(o3d.geometry.KDTreeSearchParamKNN(20))
        return c

    def register(a_points: np.ndarray, b_points: np.ndarray, stages: list[tuple[float, float]], T: np.ndarray
                 ) -> tuple[np.ndarray, float] | None:
        fitness = 0.0
        for voxel, reach in stages:
            a, b = cloud(a_points, voxel), cloud(b_points, voxel)
            if len(a.points) < 20 or len(b.points) < 20:
                return None
            result = reg.registration_generalized_icp(b, a, reach, T, reg.TransformationEstimationForGeneralizedICP(),
                                                      reg.ICPConvergenceCriteria(max_iteration=cfg.max_iterations))
            T, fitness = np.asarray(result.transformation), float(result.fitness)
        return T, fitness

    stages = list(zip(cfg.voxels_m, cfg.max_correspondence_m))
    if guess is None:
        found = register(earlier, later, stages, np.eye(4))
    else:
        found = register(earlier, later, stages[-1:], se3_exp(dt_s * np.asarray(guess, dtype=np.float64)))
        coarse = register(earlier, later, stages[:1], np.eye(4)) if len(stages) > 1 else None
        if coarse is not None and (found is None or
                                   np.linalg.norm(coarse[0][:3, 3] - found[0][:3, 3]) > cfg.basin_m):
            other = register(earlier, later, stages[1:], coarse[0])
            if other is not None and (found is None or other[1] > found[1]):
                found = other
    if found is None or found[1] < cfg.min_fitness:
        return None
    # to 1 um/s and 1 urad/s: open3d's registration runs in threads and differs from run to run in the last
    # bits, which would make a seeded evaluation differ in its last digits
    return np.round(twist_between(found[0], dt_s), 6)
