"""The camera's time offset, solved with the extrinsic over a moving window.

A camera is exposed ``delta`` after its stamp says (trigger latency, exposure,
a clock offset): by then the LiDAR has moved on by ``exp(delta xi_k)`` along
keyframe ``k``'s twist ``xi_k``, so its edges (motion-compensated to the
camera's *stamp*, :mod:`.deskew`) project with

    P_k(T, delta) = T_camera_lidar @ exp(-delta xi_k)

Each keyframe is then scored at its own pose ``P_k`` by the unchanged kernels
(:mod:`.edge_objective`), whose normal equations are over a left perturbation
``eta`` of ``P_k``. With ``T <- exp(eps) T`` and ``delta <- delta + d``,
``eta = eps - d Ad(P_k) xi_k``: the 7-parameter normal equations are the
kernels' pulled back through ``J_k = [I | -Ad(P_k) xi_k]``.

What tells ``delta`` from the extrinsic is change in the motion: at a constant
velocity ``xi``, ``delta`` shifts every keyframe by the same ``delta v`` and
a lever arm does too. Speed changes and turns separate them; where the window
has none, the offset's sigma (from the same covariance as the pose's,
:meth:`.window_uncertainty.WindowUncertainty.covariance`) says so, and the
offset is reported unobservable and not applied.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..geometry import invert, se3_exp, se3_log
from .edge_kernels import map_in_threads
from .solver import damped_step, spread_over_halves

if TYPE_CHECKING:
    from .edge_objective import EdgeObjective
    from .keyframe import Keyframe
    from .refinement import Refiner
    from .window_config import WindowConfig


@dataclass(frozen=True)
class TimeOffsetConfig:
    """Settings of the time-offset estimate (seconds, metres per second)."""

    enabled: bool = True          # estimate it where every keyframe has a twist (per-point times or odometry)
    max_offset_s: float = 0.1     # |delta| is searched within this (a camera rarely lags a sweep by more)
    # delta is claimed (and applied) only with a sigma below this: a 15 m/s drive moves 7.5 cm in 5 ms
    max_sigma_s: float = 0.005
    min_speed_mps: float = 1.0    # windows slower than this on average (near-static) are not tried
    levels: int = 3               # the finest levels of the window objective the joint refinement runs at ...
    iterations_per_level: int = 20   # ... with this many steps each: the offset and the translation along the
    # travel share a long, shallow valley (they differ only where the speed changes) that short runs stop in
    floor_s: float = 0.0005       # added in quadrature to its sigma: the twists' own error (odometry)
    # starts of the offset [s]: the keyframes moved by each and refined locally from the search's start, the best
    # refined jointly beside the search's own pose. The search holds the offset at 0, where a pose can absorb
    # only what lies inside its region: 30 m/s x 30 ms is 0.9 m, beyond the usual 0.5 m
    scan_s: tuple[float, ...] = (-0.06, -0.03, 0.03, 0.06)


def speed_share(keyframes: Sequence[Keyframe]) -> float:
    """The moving keyframes' mean speed uncertainty as a share of their speed (``Keyframe.twist_sigma_rel``). The
    offset found is as uncertain as that share of itself: a speed misjudged by that share everywhere is
    absorbed by an offset off by the same share."""
    shares = [kf.twist_sigma_rel for kf in keyframes if kf.twist is not None]
    return float(np.mean(shares)) if shares else 0.0


def speed_covariance(keyframes: Sequence[Keyframe], T_camera_lidar: np.ndarray, offset_s: float) -> np.ndarray:
    """What the keyframes' uncertain speeds add to the pose's covariance (6, 6) once an offset is applied: the
    offset moves each keyframe's edges by ``offset_s`` [s] times its twist, so a speed known to a share
    ``twist_sigma_rel`` moves them by that share of ``|offset| x speed`` along the travel. Errors that scale every
    speed alike are absorbed by the offset itself; errors that differ from keyframe to keyframe (registration
    misjudging the speed along some stretches) are not, and the halves of a window share them, so nothing else
    in the covariance sees them (through the node they gave converged solves 24 cm off). Taken at the window's
    mean speed and share, along its mean direction of travel in the camera frame [m^2]."""
    moving = [kf for kf in keyframes if kf.twist is not None]
    cov = np.zeros((6, 6))
    if not moving or offset_s == 0.0:
        return cov
    velocity = np.mean([kf.twist[:3] for kf in moving], axis=0)
    speed = float(np.mean([np.linalg.norm(kf.twist[:3]) for kf in moving]))
    share = speed_share(moving)
    if speed <= 0.0 or share <= 0.0 or np.linalg.norm(velocity) <= 0.0:
        return cov
    along = T_camera_lidar[:3, :3] @ (velocity / np.linalg.norm(velocity))
    cov[:3, :3] = (abs(offset_s) * speed * share) ** 2 * np.outer(along, along)
    return cov


def adjoint(T: np.ndarray) -> np.ndarray:
    """Adjoint (6, 6) of ``T`` (4x4) for twists ordered (rho, phi): ``exp(Ad xi) = T exp(xi) T^-1``."""
    R, t = T[:3, :3], T[:3, 3]
    tx = np.array([[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]])
    A = np.zeros((6, 6))
    A[:3, :3], A[:3, 3:], A[3:, 3:] = R, tx @ R, R
    return A


def offset_poses(T: np.ndarray, delta_s: float, twists: np.ndarray) -> np.ndarray:
    """Per-keyframe poses (K, 4, 4) ``T @ exp(-delta twist_k)``: T_camera_lidar for edges at the camera's stamp
    (``twists`` (K, 6) [m/s, rad/s])."""
    return T[None] @ se3_exp(-float(delta_s) * np.asarray(twists, dtype=np.float64))


def window_speed(keyframes: Sequence[Keyframe]) -> float:
    """Mean speed [m/s] of the keyframes' twists (0 where any has none)."""
    if not keyframes or any(kf.twist is None for kf in keyframes):
        return 0.0
    return float(np.mean([np.linalg.norm(kf.twist[:3]) for kf in keyframes]))


class TimeOffsetRefiner:
    """Levenberg-Marquardt over (``T_camera_lidar``, delta) on :class:`.edge_objective.EdgeObjective`."""

    def __init__(self, cfg: WindowConfig, objective: EdgeObjective, refiner: Refiner):
        self.cfg = cfg
        self.objective = objective
        self.refiner = refiner

    def usable(self, keyframes: Sequence[Keyframe]) -> bool:
        """Whether the window can be tried: enabled, enough keyframes, every one with a twist, moving fast enough."""
        c = self.cfg.time_offset
        # a few keyframes cannot show the offset apart from the lever arm (one speed, one shift): as for convergence
        return c.enabled and len(keyframes) >= self.cfg.min_keyframes_converged \
            and window_speed(keyframes) >= c.min_speed_mps

    def _score(self, inputs: list, twists: np.ndarray, T: np.ndarray, delta: float) -> float:
        self.objective.evaluations += 1
        P = offset_poses(T, delta, twists)
        sums = map_in_threads(lambda k: inputs[k].score(np.ascontiguousarray(P[k:k + 1, :3, :3]),
                                                        np.ascontiguousarray(P[k:k + 1, :3, 3]))[0],
                              list(range(len(inputs))), self.cfg.threads)
        return float(sum(s / len(one.points) for s, one in zip(sums, inputs)) / len(inputs))

    def _normal_equations(self, inputs: list, twists: np.ndarray, T: np.ndarray, delta: float
                          ) -> tuple[np.ndarray, np.ndarray]:
        P = offset_poses(T, delta, twists)
        found = map_in_threads(lambda k: inputs[k].linearise(np.ascontiguousarray(P[k:k + 1, :3, :3]),
                                                             np.ascontiguousarray(P[k:k + 1, :3, 3])),
                               list(range(len(inputs))), self.cfg.threads)
        H, g = np.zeros((7, 7)), np.zeros(7)
        for k, (one, (H_k, g_k)) in enumerate(zip(inputs, found)):
            J = np.zeros((6, 7))
            J[:, :6] = np.eye(6)
            J[:, 6] = -adjoint(P[k]) @ twists[k]
            H += J.T @ H_k[0] @ J / len(one.points)
            g += J.T @ g_k[0] / len(one.points)
        return H, g

    def refine(self, keyframes: Sequence[Keyframe], T: np.ndarray, T_center: np.ndarray, delta: float = 0.0,
               levels: int | None = None) -> tuple[np.ndarray, float, float]:
        """``(T_camera_lidar, delta [s], last level's score)`` refined jointly from ``(T, delta)`` at the finest
        ``levels`` levels (default ``time_offset.levels``), inside the search region around ``T_center`` and
        within ``max_offset_s``. ``keyframes`` must have twists."""
        cfg, c = self.cfg, self.cfg.time_offset
        kfs = [kf for kf in keyframes if len(kf.edges)]
        twists = np.array([kf.twist for kf in kfs], dtype=np.float64)
        T = np.asarray(T, dtype=np.float64).copy()
        score = -1.0
        for level in range(max(len(cfg.sigma_deg) - (levels or c.levels), 0), len(cfg.sigma_deg)):
            inputs = self.objective.level_inputs(kfs, level, cfg.points_per_level[level], T)
            score = self._score(inputs, twists, T, delta)
            damping, stale = 1e-3, True
            H = g = None
            for _ in range(c.iterations_per_level):
                if stale:
                    H, g = self._normal_equations(inputs, twists, T, delta)
                    stale = False
                if not H.any():
                    break
                step = damped_step(H, g, damping)
                T_new, delta_new = se3_exp(step[:6]) @ T, delta + float(step[6])
                new = -1.0
                if abs(delta_new) <= c.max_offset_s and self.refiner.inside_bounds(T_new[None], T_center)[0]:
                    new = self._score(inputs, twists, T_new, delta_new)
                if new > score:
                    T, delta, score, stale = T_new, delta_new, new, True
                    damping = max(damping / 3.0, 1e-6)
                    if np.linalg.norm(step[:3]) < 1e-4 and np.linalg.norm(step[3:6]) < 1e-5 and abs(step[6]) < 1e-5:
                        break
                else:
                    damping *= 8.0
                    if damping > 1e3:
                        break
        return T, delta, score

    def solve(self, keyframes: Sequence[Keyframe], T: np.ndarray, T_start: np.ndarray
              ) -> tuple[np.ndarray, float, float]:
        """``(T_camera_lidar, delta [s], score)``: the joint refinement from the search's pose ``T`` (found with
        the offset at 0) and from the best of ``scan_s`` (each a local refinement of the keyframes moved by that
        offset, from the search's start ``T_start``), whichever scores best at the finest level."""
        cfg, c = self.cfg, self.cfg.time_offset
        best = self.refine(keyframes, T, T_start)
        if c.scan_s:
            levels = list(range(min(cfg.rotation_only_levels, len(cfg.sigma_deg) - 1), len(cfg.sigma_deg)))
            scanned = [(self.refiner.refine([kf.shifted(d) for kf in keyframes], T_start, levels, T_start), d)
                       for d in c.scan_s]
            (T_scan, _), delta_scan = max(scanned, key=lambda s: s[0][1])
            other = self.refine(keyframes, T_scan, T_start, delta_scan)
            if other[2] > best[2]:
                best = other
        return best

    def resampled_covariance(self, keyframes: Sequence[Keyframe], T: np.ndarray, delta: float, T_center: np.ndarray
                             ) -> np.ndarray:
        """Spread (7, 7) of (pose, offset) over halves of the window, each refined jointly from ``(T, delta)``
        at the finer levels (as :meth:`.window_uncertainty.WindowUncertainty.resampled_covariance` does for the
        pose alone). The curvature of the whole window cannot show that the offset and the translation along
        the travel trade off within a shallow valley that one half tilts one way and the other half the other:
        halves that disagree do (a 20-keyframe synthetic drive claimed 14.7 +- 0.7 ms of a true 20 ms from
        the curvature alone)."""
        cfg = self.cfg

        def offset_of(half: list) -> np.ndarray:
            T_half, delta_half, _ = self.refine(half, T, T_center, delta, levels=cfg.resample_levels)
            return np.r_[se3_log(T_half @ invert(T)), delta_half - delta]

        return spread_over_halves(keyframes, offset_of, 7, cfg.resamples, cfg.seed, cfg.min_keyframes_converged)
