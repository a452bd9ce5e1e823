"""The window estimator: one ``T_camera_lidar`` shared by a window of keyframes of one rig.

Every single-frame objective is ambiguous (docs/registration.md); summed over a
window of frames seen from different places, the wrong optima of one frame
disagree with those of the others while the truth is common to all. So the
unknown is solved jointly, by stages kept one to a module:

* **Keyframe** (:mod:`.keyframe`, once per frame): LiDAR depth
  discontinuities and the image's edge-distance pyramid.
* **Objective** (:mod:`.edge_objective`): the robust score of the edge points'
  distances to image edges, averaged per frame, summed over the window.
* **Refinement** (:mod:`.refinement`): Levenberg-Marquardt (IRLS with the same
  robust weights), coarse to fine, bounded to the search region.
* **Global search** (:mod:`.pose_search`): rotation grids around each start
  (the prior, the network's proposals), translation grids with
  depth-compensating rotations, the best distinct poses refined; the best
  final score wins, and other basins that score almost as well are rivals.
* **Uncertainty** (:mod:`.window_uncertainty`): a covariance from the
  information at the finest level, the spread over halves of the window and
  the rivals; "converged" only when every axis is below the configured bounds
  and the window has enough keyframes for its halves to disagree (short of
  it, no axis is tighter than the search region).
* **Time offset** (:mod:`.time_offset`): where the keyframes carry the
  LiDAR's twist (a moving window, edges motion-compensated to the camera's
  stamps), the camera's exposure offset from its stamp, refined with the pose
  and claimed only where the window's motion pins it.
* **No prior** (:mod:`.no_prior`): the starts when nothing says where the camera is.

:class:`WindowEstimator` runs them (:meth:`WindowEstimator.solve`); the
settings of every stage are one :class:`.window_config.WindowConfig`.

Poses are perturbed on the left in the camera frame, ``T <- exp(delta) T``
with ``delta = (rho [m], phi [rad])`` (:func:`..geometry.se3_exp`), and the
covariance is over that ``delta``.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from ..geometry import PoseError, invert, pose_distance, se3_log
from . import no_prior
from .edge_objective import EdgeObjective
from .estimate import Estimate
from .keyframe import Keyframe
from .motion import MotionProposal
from .pose_search import GlobalSearch
from .refinement import Refiner
from .solver import axis_sigmas, confidence_from_covariance
from .time_offset import TimeOffsetRefiner, speed_covariance, speed_share
from .window_config import AXES, WindowConfig
from .window_uncertainty import WindowUncertainty, covariance_within


class WindowEstimator:
    """Solves the window objective; stateless apart from its config, so one instance serves every window."""

    def __init__(self, cfg: WindowConfig = WindowConfig()):
        self.cfg = cfg
        self.objective = EdgeObjective(cfg)
        self.refiner = Refiner(cfg, self.objective)
        self.search = GlobalSearch(cfg, self.objective, self.refiner)
        self.uncertainty = WindowUncertainty(cfg, self.objective, self.refiner)
        self.offset = TimeOffsetRefiner(cfg, self.objective, self.refiner)

    # ------------------------------------------------------------------ the stages, for callers of one of them
    def score(self, keyframes: Sequence[Keyframe], T: np.ndarray, level: int, count: int | None = None) -> float:
        """:meth:`.edge_objective.EdgeObjective.score` of pose ``T`` (T_camera_lidar)."""
        return self.objective.score(keyframes, T, level, count)

    def score_many(self, keyframes: Sequence[Keyframe], Ts: np.ndarray, level: int, count: int | None = None
                   ) -> np.ndarray:
        """:meth:`.edge_objective.EdgeObjective.score_many` of poses ``Ts`` (C, 4, 4)."""
        return self.objective.score_many(keyframes, Ts, level, count)

    def refine(self, keyframes: Sequence[Keyframe], T: np.ndarray, levels: Sequence[int],
               T_center: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """:meth:`.refinement.Refiner.refine` of ``T`` over ``levels``."""
        return self.refiner.refine(keyframes, T, levels, T_center)

    def refine_many(self, keyframes: Sequence[Keyframe], starts: Sequence[np.ndarray], levels: Sequence[int],
                    T_center: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """:meth:`.refinement.Refiner.refine_many` of ``starts`` over ``levels``."""
        return self.refiner.refine_many(keyframes, starts, levels, T_center)

    def covariance(self, keyframes: Sequence[Keyframe], T: np.ndarray) -> np.ndarray:
        """:meth:`.window_uncertainty.WindowUncertainty.covariance` at ``T``."""
        return self.uncertainty.covariance(keyframes, T)

    def mount_hypotheses(self) -> np.ndarray:
        """:func:`.no_prior.mount_hypotheses` (M, 4, 4)."""
        return no_prior.mount_hypotheses(self.cfg)

    def motion_hypothesis(self, keyframes: Sequence[Keyframe]) -> MotionProposal | None:
        """:func:`.no_prior.motion_hypothesis` of the window."""
        return no_prior.motion_hypothesis(keyframes, self.cfg)

    # ------------------------------------------------------------------ solves
    def solve(self, keyframes: Sequence[Keyframe], T_start: np.ndarray, global_search: bool = True,
              extra_starts: Sequence[np.ndarray] = ()) -> Estimate:
        """``T_camera_lidar`` of the window from ``T_start`` (4x4) (:meth:`solve_global_shutter`).

        With a rolling shutter (``cfg.rolling_shutter_s``) each moving keyframe's edges are first moved to the
        time of the row the start projects them to (:meth:`.keyframe.Keyframe.rolled`); a solve that supports a pose
        is refined once more, locally, with the rows where it ended (a start 5 deg off puts an edge ~60 rows from
        its own), unless it had rivals (a local refinement would not see them again).
        """
        readout = self.cfg.rolling_shutter_s
        if readout <= 0 or all(kf.twist is None for kf in keyframes):
            return self.solve_global_shutter(keyframes, T_start, global_search, extra_starts)
        T_start = np.asarray(T_start, dtype=np.float64)
        first = self.solve_global_shutter([kf.rolled(T_start, readout) for kf in keyframes], T_start, global_search,
                                          extra_starts)
        if not first.ok or first.rivals:
            return first
        second = self.solve_global_shutter([kf.rolled(first.T_camera_lidar, readout) for kf in keyframes],
                                           first.T_camera_lidar, global_search=False)
        for stage, ms in first.timings_ms.items():
            second.timings_ms[stage] = second.timings_ms.get(stage, 0.0) + ms
        second.evaluations += first.evaluations
        return second

    def solve_global_shutter(self, keyframes: Sequence[Keyframe], T_start: np.ndarray, global_search: bool = True,
                             extra_starts: Sequence[np.ndarray] = ()) -> Estimate:
        """``T_camera_lidar`` of the window from ``T_start`` (4x4), each keyframe's edges taken as seen at one
        instant (the camera's exposure).

        With ``global_search`` (the calib regime: anywhere within
        ``search_rot_deg`` / ``search_trans_m`` of the start):

        1. a rotation grid around each start, scored at the coarsest level;
           the best distinct ones refined in rotation alone at the coarse levels;
        2. for the best of those, translation grids (``translation_stages``, coarse to fine, each around
           the best distinct poses of the one before; rotation alone cannot fix near points);
        3. the best distinct poses refined in all six parameters to the finest level;
        4. while the best pose is more than ``research_trans_m`` from where its pass started, another pass
           from it (at most ``search_passes``): a rotation grid scored with a translation that far off
           is judged by near points that no rotation can place (measured on real KITTI, ±10° / 0.5 m:
           3 of 4 falsely converged windows found the truth in a second pass).

        Without it (an update from the last solution), ``T_start`` and
        ``extra_starts`` are only refined locally. The best finest-level score wins.
        """
        cfg = self.cfg
        times: dict[str, float] = {}
        self.objective.evaluations = 0
        t0 = time.perf_counter()
        T_start = np.asarray(T_start, dtype=np.float64)
        # only the edges that can reach the image from anywhere in the search region (of a 360 deg sweep,
        # most cannot); the shuffled order is kept, so any prefix is still a fair subset
        in_view = [kf.subset(self.search.in_view_mask(kf, T_start)) for kf in keyframes]
        usable = [kf for kf in in_view if len(kf.edges) >= cfg.min_edge_points]
        skipped = len(keyframes) - len(usable)
        edge_points = int(sum(len(kf.edges) for kf in usable))
        if not usable:
            return self.failure(T_start, len(keyframes), "no keyframe has enough LiDAR depth edges in the "
                                "image (no overlap, no structure, or no data)", times)
        starts = [T_start] + [np.asarray(T, dtype=np.float64) for T in extra_starts]
        if global_search:
            finals = self.search.search_pass(usable, starts, T_start, times)
            T, score = max(finals, key=lambda f: f[1])
            # the start refined in place: where the window cannot tell it from the search's best, staying
            # is the answer (the covariance then spans both); a far pose must clearly win to be taken
            t1 = time.perf_counter()
            local = self.refiner.refine(usable, T_start, range(len(cfg.sigma_deg)), T_start)
            times["refine"] += 1e3 * (time.perf_counter() - t1)
            finals.append(local)
            prior = local[1] >= (1.0 - cfg.ambiguity) * score
            if prior:
                T, score = local
            passes, origin = 1, T_start
            while passes < cfg.search_passes and pose_distance(T, origin).trans_m > cfg.research_trans_m:
                more = self.search.search_pass(usable, [T], T_start, times)
                finals += more
                passes, origin = passes + 1, T
                T_more, score_more = max(more, key=lambda f: f[1])
                # the better score wins, except over the refined start, which a far pose must clearly beat
                # (as above). A margin between two searched poses would keep the first pass's answer
                # where the second found a better basin: on real KITTI +-10 deg it kept 2 of 10 windows
                # 15 cm off while the truth's basin, found by the second pass, scored 2-5 % higher
                if score_more > (1.0 + (cfg.ambiguity if prior else 0.0)) * score:
                    T, score, prior = T_more, score_more, False
        else:
            finals = self.search.refine_all(usable, starts, list(range(len(cfg.sigma_deg))), T_start)
            T, score = max(finals, key=lambda f: f[1])
            times["refine"] = 1e3 * (time.perf_counter() - t0)
        t1 = time.perf_counter()
        T, score, rivals = self.search.settle_rivals(usable, T, score, finals, T_start)
        t2 = time.perf_counter()
        times["refine"] = times.get("refine", 0.0) + 1e3 * (t2 - t1)
        T_rivals_from = T
        cov = None
        offset, offset_sigma = None, None
        if self.offset.usable(usable):
            T_joint, delta, score_joint = self.offset.solve(usable, T, T_start)
            shifted = [kf.shifted(delta) for kf in usable]
            cov_joint = self.uncertainty.covariance(shifted, T_joint, with_offset=True) \
                + self.offset.resampled_covariance(usable, T_joint, delta, T_start)
            offset_sigma = float(np.sqrt(cov_joint[6, 6]))
            c = cfg.time_offset
            if offset_sigma <= c.max_sigma_s and abs(delta) < c.max_offset_s - offset_sigma:
                # shown by the window's motion: the pose is the joint one, its uncertainty with the offset free,
                # and the bound's test works on the edges at the camera's exposure. Both are then as uncertain as
                # the keyframes' speeds make them too (a share of the offset, and of the shift it applies)
                T, score, usable, offset, cov = T_joint, score_joint, shifted, delta, cov_joint[:6, :6]
                cov = cov + speed_covariance(usable, T, delta)
                offset_sigma = float(np.hypot(offset_sigma, delta * speed_share(usable)))
            times["time_offset"] = 1e3 * (time.perf_counter() - t2)
        elif cfg.time_offset.enabled and usable and all(kf.twist is not None for kf in usable):
            # twists known, but the window barely moves or has too few keyframes: nothing shows the offset
            offset_sigma = float("inf")
        t3 = time.perf_counter()
        if cov is None:
            cov = self.uncertainty.covariance(usable, T) + self.uncertainty.resampled_covariance(usable, T, T_start)
        for T_other in rivals:   # the window cannot tell these apart: the uncertainty must cover them
            d = se3_log(T_other @ invert(T_rivals_from))    # (found before the offset: as far from its pose)
            cov = cov + np.outer(d, d)
        times["covariance"] = 1e3 * (time.perf_counter() - t3)
        moved = pose_distance(T, T_start)
        at_bound = (moved.rot_deg > cfg.search_rot_deg - cfg.grid_rot_step_deg / 2
                    or moved.trans_m > cfg.search_trans_m - cfg.grid_trans_step_m / 2) \
            and self.refiner.bound_active(usable, T)
        return self._result(T, cov, score, usable, skipped, edge_points, times, ambiguous=len(rivals),
                            at_bound=moved if at_bound else None, time_offset=(offset, offset_sigma))

    def solve_without_prior(self, keyframes: Sequence[Keyframe], hypotheses: Sequence[np.ndarray] = (),
                            mounts: bool = True, motion: bool = True) -> Estimate:
        """The window's ``T_camera_lidar`` with no prior (:func:`.no_prior.solve_without_prior`)."""
        return no_prior.solve_without_prior(self, keyframes, hypotheses, mounts, motion)

    def _result(self, T: np.ndarray, cov: np.ndarray, score: float, usable: Sequence[Keyframe], skipped: int,
                edge_points: int, times: dict[str, float], ambiguous: int = 0,
                at_bound: PoseError | None = None,
                time_offset: tuple[float | None, float | None] = (None, None)) -> Estimate:
        cfg = self.cfg
        sd_t, sd_r = axis_sigmas(cov)
        unconstrained = [AXES[k] for k in range(3) if sd_t[k] > cfg.unconstrained_trans_m] + \
                        [AXES[3 + k] for k in range(3) if sd_r[k] > cfg.unconstrained_rot_deg]
        ok = bool(np.all(np.isfinite(T)) and score >= cfg.min_score)
        # converged: no direction of either block more uncertain than the bounds (the largest eigenvalue, so the
        # test reads the same in any frame: a ROS listener can apply it to ~/calibration's covariance)
        converged = ok and covariance_within(cov, cfg.converged_rot_deg, cfg.converged_trans_m)
        message = "" if ok else f"edge alignment score {score:.2f} is below {cfg.min_score}: the window does " \
                                "not support a pose"
        if ok and ambiguous:
            message = f"{ambiguous} other pose(s) explain the window almost as well; the covariance spans them"
        if ok and converged and len(usable) < cfg.min_keyframes_converged:
            # a keyframe or two cannot show that they disagree: their curvature is no evidence of the right basin
            converged = False
            message = (f"{len(usable)} keyframe(s): convergence is claimed from {cfg.min_keyframes_converged} on "
                       "(a few frames can agree on a wrong pose)")
        if ok and at_bound is not None:
            # the bound, not the data, stopped the search: the optimum may lie outside the region
            converged = False
            message = (f"the best pose lies at the edge of the search region ({at_bound.rot_deg:.1f} deg / "
                       f"{at_bound.trans_m:.2f} m from the start); the extrinsic may be outside it")
        if not converged:
            # precision is claimed only on convergence: short of it the curvature describes the basin the
            # search ended in, not whether it is the right one, so no axis is reported tighter than the search
            # region itself (a uniform ball of radius R has a per-axis variance of R^2 / 5)
            region = np.r_[[cfg.search_trans_m ** 2 / 5] * 3, [np.radians(cfg.search_rot_deg) ** 2 / 5] * 3]
            cov = cov + np.diag(np.maximum(region - np.diag(cov), 0.0))
        times["total"] = sum(times.values())
        return Estimate(T, confidence_from_covariance(cov) if ok else 0.0, cov, edge_points, "window", ok, message,
                        times, converged, unconstrained, len(usable), score, skipped, self.objective.evaluations,
                        *time_offset, rivals=ambiguous)

    def failure(self, T: np.ndarray, skipped: int, message: str, times: dict[str, float]) -> Estimate:
        """A result that supports no pose (``T`` returned as given), with ``message`` saying why."""
        times["total"] = sum(times.values())
        return Estimate(T, 0.0, np.eye(6) * 1e6, 0, "none", False, message, times, False, list(AXES), 0, 0.0,
                        skipped, self.objective.evaluations)
