"""Local refinement: Levenberg-Marquardt on the window objective, bounded to the search region.

IRLS with the objective's robust weights, coarse to fine; many poses step in
lockstep so that one kernel call per keyframe and step serves them all. The
search region's bound (around the start) keeps the objective honest: a pose
that the bound, not the data, stopped is reported (:meth:`Refiner.bound_active`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..geometry import pose_distance, pose_distances, se3_exp
from .edge_objective import EdgeObjective
from .keyframe import Keyframe
from .solver import damped_step
from .window_config import WindowConfig


class Refiner:
    """Levenberg-Marquardt refinement of poses (T_camera_lidar) on :class:`.edge_objective.EdgeObjective`."""

    def __init__(self, cfg: WindowConfig, objective: EdgeObjective):
        self.cfg = cfg
        self.objective = objective

    def inside_bounds(self, Ts: np.ndarray, T_center: np.ndarray) -> np.ndarray:
        """Whether each pose of ``Ts`` (C, 4, 4) lies within the search region around ``T_center`` (plus one
        grid step of slack): (C,) bool.

        Unbounded, a step can shrink the whole projection into the image's
        most edge-dense corner (the camera backing away by metres scores well
        at coarse levels): the bound is what keeps the objective honest.
        """
        cfg = self.cfg
        rot_deg, trans_m = pose_distances(Ts, T_center)
        return (rot_deg <= cfg.search_rot_deg + cfg.grid_rot_step_deg) \
            & (trans_m <= cfg.search_trans_m + cfg.grid_trans_step_m)

    def refine(self, keyframes: Sequence[Keyframe], T: np.ndarray, levels: Sequence[int],
               T_center: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """Levenberg-Marquardt from T over ``levels`` (coarse to fine), staying inside the search region
        around ``T_center`` (default: T); returns the pose and its last level's score."""
        return self.refine_many(keyframes, [T], levels, T if T_center is None else T_center)[0]

    def refine_many(self, keyframes: Sequence[Keyframe], starts: Sequence[np.ndarray], levels: Sequence[int],
                    T_center: np.ndarray, rotation_only_levels: int | None = None) -> list[tuple[np.ndarray, float]]:
        """:meth:`refine` of every pose of ``starts`` (T_camera_lidar) inside the region around ``T_center``:
        (pose, last level's score) each, in their order. The coarsest ``rotation_only_levels`` levels (default
        ``cfg.rotation_only_levels``) move the rotation alone.

        The poses take their Levenberg-Marquardt steps in lockstep, each with
        its own damping and stopping rule, so each ends where it would alone
        (to rounding: a pose's sums run over the points in the same order either
        way, which only the cache-friendly point order, set by the first pose,
        changes). One kernel call per keyframe and step serves all of them:
        refining the search's candidates one at a time spent more in Python and
        in cache misses than in the samples (a pose's samples cost 136-175 ns
        alone and ~57 ns among a grid's, profiled on real KITTI).
        """
        cfg = self.cfg
        if len(starts) == 0:
            return []
        rotation_only = cfg.rotation_only_levels if rotation_only_levels is None else rotation_only_levels
        T = np.array(starts, dtype=np.float64).reshape(-1, 4, 4)
        score = np.full(len(T), -1.0)
        for level in levels:
            inputs = self.objective.level_inputs(keyframes, level, cfg.points_per_level[level], T[0])
            score = self.objective.score_inputs(inputs, T, len(keyframes))
            H, g = np.zeros((len(T), 6, 6)), np.zeros((len(T), 6))
            stale = np.ones(len(T), dtype=bool)   # linearised once per accepted pose: a rejected step keeps H, g
            damping = np.full(len(T), 1e-3)
            active = np.ones(len(T), dtype=bool)
            free = slice(3, 6) if level < rotation_only else slice(0, 6)
            for _ in range(cfg.iterations_per_level):
                relinearise = active & stale
                if relinearise.any():
                    H[relinearise], g[relinearise] = self.objective.linearise(inputs, T[relinearise])
                    stale[relinearise] = False
                active &= H.any(axis=(1, 2))
                if not active.any():
                    break
                idx = np.flatnonzero(active)
                delta = np.zeros((len(idx), 6))
                for k, c in enumerate(idx):
                    delta[k, free] = damped_step(H[c, free, free], g[c, free], damping[c])
                T_new = se3_exp(delta) @ T[idx]
                new = np.full(len(idx), -1.0)
                inside = self.inside_bounds(T_new, T_center)
                if inside.any():
                    new[inside] = self.objective.score_inputs(inputs, T_new[inside], len(keyframes))
                better = new > score[idx]
                won, lost = idx[better], idx[~better]
                T[won], score[won], stale[won] = T_new[better], new[better], True
                damping[won] = np.maximum(damping[won] / 3.0, 1e-6)
                small = (np.linalg.norm(delta[better, :3], axis=1) < 1e-4) \
                    & (np.linalg.norm(delta[better, 3:], axis=1) < 1e-5)
                active[won[small]] = False
                damping[lost] *= 8.0
                active[lost[damping[lost] > 1e3]] = False
                if not active.any():
                    break
        return [(T[c], float(score[c])) for c in range(len(T))]

    def bound_active(self, keyframes: Sequence[Keyframe], T: np.ndarray) -> bool:
        """Whether the search region's bound, not the data, stopped a pose near its edge: refined again with
        the region centred on the pose itself (no bound within reach), it moves on by more than the
        convergence bounds. The protocol puts the truth anywhere within the region, so a pose near its edge
        is often simply the answer; only one the objective still pulls outward is suspect."""
        cfg = self.cfg
        levels = list(range(min(cfg.rotation_only_levels, len(cfg.sigma_deg) - 1), len(cfg.sigma_deg)))
        free, _ = self.refine(keyframes, T, levels, T)
        step = pose_distance(free, T)
        return step.rot_deg > cfg.converged_rot_deg or step.trans_m > cfg.converged_trans_m
