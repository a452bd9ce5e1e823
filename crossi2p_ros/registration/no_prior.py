"""Solving a window with no prior: where to start, when nothing says where the camera is.

The starts are the camera's rotation from the window's motion (:mod:`.motion`)
when it tells, with the network's proposals that agree with it; otherwise the
proposals and the usual mounts (a level camera at every heading). Each start
is scored over its rotation grid; the best few are solved by the global search
over a wide translation radius. Two headings that explain the window as well
are reported, not chosen between.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..geometry import pose_distance
from .estimate import Estimate
from .keyframe import Keyframe
from .motion import MotionProposal, rotation_from_motion
from .solver import confidence_from_covariance
from .window_config import WindowConfig

if TYPE_CHECKING:   # the estimator calls in here; its type only annotates
    from .window import WindowEstimator


def mount_hypotheses(cfg: WindowConfig) -> np.ndarray:
    """``T_camera_lidar`` (M, 4, 4) of a camera level with the LiDAR's x-y plane (LiDAR z up, camera y
    down) at every ``mount_yaw_step_deg`` of heading, at the LiDAR's origin: the starts without a prior."""
    yaw = np.radians(np.arange(0.0, 360.0, cfg.mount_yaw_step_deg))
    z_cam = np.stack([np.cos(yaw), np.sin(yaw), np.zeros_like(yaw)], -1)     # viewing direction, LiDAR frame
    y_cam = np.broadcast_to([0.0, 0.0, -1.0], z_cam.shape)
    x_cam = np.cross(y_cam, z_cam)
    R_lidar_camera = np.stack([x_cam, y_cam, z_cam], -1)                    # columns: camera axes
    T = np.tile(np.eye(4), (len(yaw), 1, 1))
    T[:, :3, :3] = np.swapaxes(R_lidar_camera, 1, 2)
    return T


def motion_hypothesis(keyframes: Sequence[Keyframe], cfg: WindowConfig) -> MotionProposal | None:
    """The camera's rotation from the window's motion (:func:`.motion.rotation_from_motion`), the
    keyframes taken in stamp order (as given when any lacks a stamp); None when they lack motion
    features or the motion does not tell."""
    if not keyframes or any(kf.motion is None for kf in keyframes):
        return None
    ordered = list(keyframes)
    if all(kf.stamp is not None for kf in ordered):
        ordered.sort(key=lambda kf: kf.stamp)
    return rotation_from_motion([kf.motion for kf in ordered], ordered[0].K, cfg.motion)


def solve_without_prior(estimator: WindowEstimator, keyframes: Sequence[Keyframe],
                        hypotheses: Sequence[np.ndarray] = (), mounts: bool = True, motion: bool = True
                        ) -> Estimate:
    """The window's ``T_camera_lidar`` with no prior.

    When ``motion`` and the window's motion gives the camera's rotation (:func:`motion_hypothesis`), that
    pose and the hypotheses (network proposals) within ``motion_gate_deg`` of it are the starts;
    otherwise (or when most keyframes see no LiDAR edges from the motion's pose) the hypotheses and, with
    ``mounts``, :func:`mount_hypotheses`. Each start is scored at the coarsest level over its rotation
    grid, and the best ``mount_finalists`` distinct ones (the motion's always first) are solved by
    :meth:`.window.WindowEstimator.solve` (global search around each)."""
    cfg = estimator.cfg
    t0 = time.perf_counter()
    proposals = [np.asarray(T, dtype=np.float64) for T in hypotheses]
    travelled = motion_hypothesis(keyframes, cfg) if motion else None
    motion_ms = 1e3 * (time.perf_counter() - t0)
    ranked: list[tuple[float, np.ndarray]] = []
    if travelled is not None:
        T_motion = travelled.T_camera_lidar
        ranked = _rank_starts(estimator, keyframes, [T_motion] + [
            T for T in proposals if pose_distance(T, T_motion).rot_deg <= cfg.motion_gate_deg])
        if not any(H is T_motion for _, H in ranked):   # no LiDAR edges in its view: not the mount after all
            travelled, ranked = None, []
    if travelled is None:
        starts = proposals + (list(mount_hypotheses(cfg)) if mounts else [])
        if not starts:
            return estimator.failure(np.eye(4), len(keyframes), "no prior, no proposals and the mount scan "
                                     "is off: nothing to start from", {})
        ranked = _rank_starts(estimator, keyframes, starts)
    if not ranked:
        return estimator.failure(np.eye(4), len(keyframes), "no mount hypothesis sees LiDAR depth edges in "
                                 "the image (no overlap, no structure, or no data)", {})
    ranked.sort(key=lambda r: -r[0])
    if travelled is not None:   # the direction of travel outranks any edge score
        ranked.sort(key=lambda r: r[1] is not T_motion)
    chosen: list[np.ndarray] = []
    for _, T in ranked:
        if all(pose_distance(T, C).rot_deg > cfg.search_rot_deg for C in chosen):
            chosen.append(T)
        if len(chosen) == cfg.mount_finalists:
            break
    scan_ms = 1e3 * (time.perf_counter() - t0)
    wide = type(estimator)(replace(cfg, search_trans_m=cfg.mount_search_trans_m,
                                   translation_stages=cfg.mount_translation_stages))
    results = [wide.solve(keyframes, T) for T in chosen]
    estimator.objective.evaluations = sum(r.evaluations for r in results)
    best = max(results, key=lambda r: (r.ok, r.score))
    best.timings_ms["mounts"] = scan_ms - motion_ms
    best.timings_ms["motion"] = motion_ms
    best.timings_ms["total"] = 1e3 * (time.perf_counter() - t0)
    if len(results) > 1 and best.ok:
        others = [r for r in results if r is not best and r.ok and r.score >= (1 - cfg.ambiguity) * best.score
                  and not estimator.search.same_optimum(r.T_camera_lidar, best.T_camera_lidar)]
        if others:   # two headings explain the window as well: say so, and do not claim convergence
            best.converged = False
            rival = "another mount" if travelled is None else "another start near the motion's rotation"
            best.message = f"{rival} explains the window almost as well; drive past more structure"
            best.covariance = best.covariance + np.diag(np.r_[[cfg.search_trans_m ** 2 / 5] * 3,
                                                              [np.radians(cfg.search_rot_deg) ** 2 / 5] * 3])
            best.confidence = confidence_from_covariance(best.covariance)
    return best


def _rank_starts(estimator: WindowEstimator, keyframes: Sequence[Keyframe], starts: Sequence[np.ndarray]
                 ) -> list[tuple[float, np.ndarray]]:
    """``(score, start)`` of the starts from which most keyframes see LiDAR depth edges, each scored by
    the best pose of its rotation grid at the coarsest level (a start stays its region's centre)."""
    cfg = estimator.cfg
    grid = estimator.search.rotation_grid()
    ranked = []
    for H in starts:
        view = [kf.subset(estimator.search.in_view_mask(kf, H)) for kf in keyframes]
        usable = [kf for kf in view if len(kf.edges) >= cfg.min_edge_points]
        if len(usable) * 2 < len(keyframes):   # most keyframes see nothing from here: not the mount
            continue
        scores = estimator.objective.score_many(usable, grid @ H, 0, cfg.search_points)
        ranked.append((float(scores.max()) * len(usable) / len(keyframes), H))
    return ranked
