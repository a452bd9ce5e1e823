"""The global search over the calibration regime (one pass of :meth:`.window.WindowEstimator.solve`).

A rotation grid around each start scored at the coarsest level, the best
refined in rotation alone; then translation grids with depth-compensating
rotations; the best distinct poses refined coarse to fine (:mod:`.refinement`),
only the best few to the finest level. Poses that end in other basins and
score within ``ambiguity`` of the best are the window's rivals.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from ..geometry import pose_distance, project_pinhole, se3_exp, transform_points
from .edge_objective import EdgeObjective
from .keyframe import Keyframe
from .refinement import Refiner
from .window_config import WindowConfig


def _ball_grid(step: float, radius: float, slack: float) -> np.ndarray:
    """Points (C, 3) of the cubic grid of ``step`` through 0 that lie within ``radius + slack`` of it."""
    r = np.arange(0.0, radius + 1e-9, step)
    r = np.concatenate([-r[:0:-1], r])
    g = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    return g[np.linalg.norm(g, axis=1) <= radius + slack]


class GlobalSearch:
    """Grids, staged refinement and rivals of the window's search (:meth:`search_pass`)."""

    def __init__(self, cfg: WindowConfig, objective: EdgeObjective, refiner: Refiner):
        self.cfg = cfg
        self.objective = objective
        self.refiner = refiner

    def rotation_grid(self) -> np.ndarray:
        """Left rotations (C, 4, 4) on a cubic grid of ``grid_rot_step_deg`` covering ``search_rot_deg``."""
        cfg = self.cfg
        rot = np.radians(_ball_grid(cfg.grid_rot_step_deg, cfg.search_rot_deg, cfg.grid_rot_step_deg))
        return se3_exp(np.c_[np.zeros_like(rot), rot])

    def translation_grid(self, depth_m: float, step_m: float, radius_m: float) -> np.ndarray:
        """Left steps (C, 4, 4): translations on a cubic grid of ``step_m`` covering a ball of ``radius_m``,
        each with the rotation that keeps points at a depth on the optical axis where they were, for each
        depth ``compensation_depths`` times ``depth_m`` (the scene's median depth).

        A rotation fitted before translation is known has absorbed the
        translation error at some depth of the scene; moving the camera
        sideways without undoing that would misalign the far field that the
        rotation got right, and the grid would judge translation by it. Which
        depth absorbed it depends on where the structure is, so several are
        tried (with the median alone, 3 of 3 suburban windows from 0.5 m
        stayed 0.35-0.45 m off; with 0.5, 1 and 2 times it all three converged).
        """
        t = _ball_grid(step_m, radius_m, 0.5 * step_m)
        # a left step moves p to p + phi x p + rho: phi = (rho_y, -rho_x, 0) / depth cancels rho at (0, 0, depth)
        steps = [np.c_[t, np.c_[t[:, 1], -t[:, 0], np.zeros(len(t))] / max(f * depth_m, 1.0)]
                 for f in self.cfg.compensation_depths]
        return se3_exp(np.concatenate(steps))

    def _median_depth(self, keyframes: Sequence[Keyframe], T: np.ndarray) -> float:
        z = np.concatenate([transform_points(T, kf.edges[: self.cfg.search_points])[:, 2] for kf in keyframes])
        z = z[z > 0.5]
        return float(np.median(z)) if len(z) else 10.0

    def distinct(self, Ts: np.ndarray, order: np.ndarray, n: int, step_m: float = 0.1,
                 rot_deg: float | None = None, trans_m: float | None = None) -> list[int]:
        """The first ``n`` of ``order`` that are pairwise farther apart than ``rot_deg`` or ``trans_m``
        (default: ``distinct_deg``, and 0.9 of the grid's ``step_m``)."""
        rot_deg = self.cfg.distinct_deg if rot_deg is None else rot_deg
        trans_m = 0.9 * step_m if trans_m is None else trans_m
        chosen: list[int] = []
        for i in order:
            if all(e.rot_deg > rot_deg or e.trans_m > trans_m
                   for e in (pose_distance(Ts[i], Ts[j]) for j in chosen)):
                chosen.append(int(i))
            if len(chosen) == n:
                break
        return chosen

    def _best(self, keyframes: Sequence[Keyframe], Ts: np.ndarray, level: int, n: int, step_m: float = 0.1
              ) -> list[np.ndarray]:
        scores = self.objective.score_many(keyframes, Ts, level, self.cfg.search_points)
        return [Ts[i] for i in self.distinct(Ts, np.argsort(-scores), n, step_m)]

    def search_pass(self, usable: Sequence[Keyframe], starts: list[np.ndarray], T_center: np.ndarray,
                    times: dict[str, float]) -> list[tuple[np.ndarray, float]]:
        """One pass of the global search from ``starts`` within the region around ``T_center``, once per entry
        of ``cfg.search_rotation_only_levels`` (:meth:`search_strategy`); returns the finals of all of them
        (pose, finest-level score), to compete on that score."""
        t0 = time.perf_counter()
        rotations = self.rotation_grid()
        candidates = self._best(usable, np.concatenate([rotations @ T for T in starts]), 0, self.cfg.candidates)
        times["search"] = times.get("search", 0.0) + 1e3 * (time.perf_counter() - t0)
        return [final for rotation_only in self.cfg.search_rotation_only_levels
                for final in self.search_strategy(usable, candidates, T_center, times, rotation_only)]

    def search_strategy(self, usable: Sequence[Keyframe], candidates: list[np.ndarray], T_center: np.ndarray,
                        times: dict[str, float], rotation_only: int) -> list[tuple[np.ndarray, float]]:
        """The rotation grid's best ``candidates`` refined in rotation alone at the first ``rotation_only``
        levels (with 0, not at all: the translation grids take them as they are), translation grids, then the
        best distinct poses refined from there through the middle levels and the best few to the finest;
        returns those finals (pose, finest-level score). Adds its time [ms] to ``times["search"]`` (the grids)
        and ``times["refine"]``."""
        cfg = self.cfg
        t0 = time.perf_counter()
        rotation_levels = list(range(min(rotation_only, len(cfg.sigma_deg))))
        starts = [T for T, _ in self.refiner.refine_many(usable, candidates, rotation_levels, T_center, rotation_only)]
        level = min(cfg.translation_stages[0][0], len(cfg.sigma_deg) - 1) if cfg.translation_stages else 0
        scores = self.objective.score_many(usable, np.asarray(starts), level, cfg.search_points)   # one call for all
        starts = [starts[i] for i in np.argsort(-scores, kind="stable")[: cfg.finalists]]
        for k, (level, step, radius) in enumerate(cfg.translation_stages):
            level = min(level, len(cfg.sigma_deg) - 1)
            if k:   # a finer stage starts from the best distinct poses of the one before
                scores = self.objective.score_many(usable, np.asarray(starts), level, cfg.search_points)
                starts = [starts[i] for i in self.distinct(np.asarray(starts), np.argsort(-scores),
                                                           cfg.finalists, step)]
            starts = [T for best in starts for T in self._best(
                usable, self.translation_grid(self._median_depth(usable, best), step, radius) @ best, level,
                cfg.finalists, step)]
        first = rotation_levels[-1] if rotation_levels else 0
        t1 = time.perf_counter()
        finals = self.refine_all(usable, starts, list(range(first, len(cfg.sigma_deg))), T_center, rotation_only)
        times["search"] = times.get("search", 0.0) + 1e3 * (t1 - t0)
        times["refine"] = times.get("refine", 0.0) + 1e3 * (time.perf_counter() - t1)
        return finals

    def refine_all(self, usable: Sequence[Keyframe], starts: list[np.ndarray], levels: list[int],
                   T_center: np.ndarray, rotation_only: int | None = None) -> list[tuple[np.ndarray, float]]:
        """Every start through the middle levels, only the best few on to the finest (most of the cost).

        After each middle level, poses that reached the same place as a better-scoring one (within
        ``duplicate_rot_deg`` / ``duplicate_trans_m``) are dropped: from there they would only be refined
        to the same optimum again (the translation grid's neighbouring cells often converge together).
        """
        cfg = self.cfg
        if len(starts) > cfg.finals:
            staged = [(T, 0.0) for T in starts]
            for level in levels[: cfg.middle_levels]:
                refined = self.refiner.refine_many(usable, [T for T, _ in staged], [level], T_center, rotation_only)
                staged = self._unique(sorted(refined, key=lambda f: -f[1]))
            starts, levels = [T for T, _ in staged[: cfg.finals]], levels[cfg.middle_levels:]
        return self.refiner.refine_many(usable, starts, levels, T_center, rotation_only)

    def _unique(self, ranked: list[tuple[np.ndarray, float]]) -> list[tuple[np.ndarray, float]]:
        """``ranked`` (best first) without the poses within the duplicate bounds of a better one."""
        keep = self.distinct(np.array([T for T, _ in ranked]), np.arange(len(ranked)), len(ranked),
                             rot_deg=self.cfg.duplicate_rot_deg, trans_m=self.cfg.duplicate_trans_m)
        return [ranked[i] for i in keep]

    def same_optimum(self, T: np.ndarray, T_other: np.ndarray) -> bool:
        """Within the convergence bounds of each other: two searches that ended in one basin."""
        err = pose_distance(T, T_other)
        return err.rot_deg <= self.cfg.converged_rot_deg and err.trans_m <= self.cfg.converged_trans_m

    def settle_rivals(self, keyframes: Sequence[Keyframe], T: np.ndarray, score: float,
                      finals: Sequence[tuple[np.ndarray, float]], T_center: np.ndarray
                      ) -> tuple[np.ndarray, float, list[np.ndarray]]:
        """The best pose, its score and its rivals (:meth:`_rivals`), each rival first refined on at the
        finest level for ``rival_rounds`` more rounds of ``iterations_per_level``.

        A pose the search left on the slope of the best one's basin, short of its iterations, is not a
        second optimum: on real KITTI +-5 deg, once duplicate poses stopped filling the finest level's
        places (:meth:`refine_all`), 5 of 10 windows were called ambiguous over such poses 7 cm from the
        best, which 40 more iterations brought to within 1 mm of it. A rival that ends better becomes
        the best.
        """
        rivals = self._rivals(T, score, finals)
        if not rivals or self.cfg.rival_rounds < 1:
            return T, score, rivals
        finest = len(self.cfg.sigma_deg) - 1
        settled = self.refiner.refine_many(keyframes, rivals, [finest] * self.cfg.rival_rounds, T_center)
        others = [f for f in finals if not any(f[0] is R for R in rivals)] + settled
        T, score = max([(T, score)] + settled, key=lambda f: f[1])
        return T, score, self._rivals(T, score, others)

    def _rivals(self, T: np.ndarray, score: float, finals: Sequence[tuple[np.ndarray, float]]) -> list[np.ndarray]:
        """Other optima (farther than a basin) whose finest-level score comes within ``ambiguity`` of the best."""
        cfg = self.cfg
        out = []
        for T_other, s in finals:
            if s >= (1.0 - cfg.ambiguity) * score and not self.same_optimum(T_other, T):
                out.append(T_other)
        return out

    def in_view_mask(self, kf: Keyframe, T: np.ndarray) -> np.ndarray:
        """Edge points that project into the image under T, grown by the search region's reach."""
        if len(kf.edges) == 0:
            return np.zeros(0, bool)
        uv, front = project_pinhole(kf.K, transform_points(T, kf.edges), 0.5)
        m = kf.focal_px * np.tan(np.radians(self.cfg.search_rot_deg))
        return front & (uv[:, 0] > -m) & (uv[:, 0] < kf.width + m) & (uv[:, 1] > -m) & (uv[:, 1] < kf.height + m)
