"""The window objective: how well a pose puts a window's LiDAR depth edges on its image edges.

Per edge point the Geman-McClure score ``s^2 / (s^2 + d^2)`` of its distance
``d`` [px] to the nearest image edge, ``s`` the level's scale; each frame's
points averaged, frames summed. Points leaving the image score zero, so
pushing points out of view never pays. At the search's coarse levels the
score's local mean is subtracted (:mod:`.image_edges`, "Contrast"), so
landing on texture does not count as alignment. The sums run in the compiled
kernels of :mod:`.edge_kernels`; this module prepares their inputs and adds
up keyframes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..geometry import project_pinhole, transform_points
from .edge_kernels import (linearise_poses, linearise_poses_intervals, map_in_threads, score_poses,
                           score_poses_intervals)
from .image_edges import EdgeLevel
from .keyframe import Keyframe
from .window_config import WindowConfig


@dataclass(frozen=True)
class _LevelInput:
    """One keyframe's edge points at one level, as the compiled kernels (:mod:`.edge_kernels`) take them."""

    points: np.ndarray                # (N, 3) [m, LiDAR frame]
    second: np.ndarray                # (N,) bool: sampled from the stacked level's second (level-edge) field
    intrinsics: np.ndarray            # Keyframe.intrinsics
    last_pixel: np.ndarray            # Keyframe.last_pixel
    level: EdgeLevel
    sigma2: float                     # the level's robust scale squared [px^2]
    # each point's interval and its samples (WindowConfig.interval_spacing): the interval kernels; None (every
    # point at its bisector) the plain ones, which are faster
    spans: np.ndarray | None = None
    samples: np.ndarray | None = None

    def _common(self, R: np.ndarray, t: np.ndarray) -> tuple:
        lev = self.level
        return (self.points, self.second, self.intrinsics, self.last_pixel, R, t, lev.field, lev.scale,
                float(lev.second_row), self.sigma2)

    def score(self, R: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Summed score (C,) at poses (R (C, 3, 3), t (C, 3)); on contrast levels less its local mean."""
        contrast = self.level.field.shape[2] > 3
        if self.spans is None:
            return score_poses(*self._common(R, t), contrast)
        return score_poses_intervals(*self._common(R, t), self.spans, self.samples, contrast)

    def linearise(self, R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Summed IRLS normal equations H (C, 6, 6), g (C, 6) at poses (R, t)."""
        if self.spans is None:
            return linearise_poses(*self._common(R, t))
        return linearise_poses_intervals(*self._common(R, t), self.spans, self.samples)


class EdgeObjective:
    """Scores and IRLS normal equations of poses on a window; counts the poses it scored (``evaluations``)."""

    def __init__(self, cfg: WindowConfig = WindowConfig()):
        self.cfg = cfg
        self.evaluations = 0

    def sigma_px(self, kf: Keyframe, level: int) -> float:
        return kf.focal_px * np.radians(self.cfg.sigma_deg[level])

    def score(self, keyframes: Sequence[Keyframe], T: np.ndarray, level: int, count: int | None = None) -> float:
        """Mean over keyframes of the mean robust score of their edge points at pose ``T`` (T_camera_lidar),
        less its local mean on contrast levels."""
        return float(self.score_many(keyframes, T[None], level, count)[0])

    def score_many(self, keyframes: Sequence[Keyframe], Ts: np.ndarray, level: int, count: int | None = None
                   ) -> np.ndarray:
        """Scores (C,) of candidate poses ``Ts`` (C, 4, 4) (T_camera_lidar), each the mean over keyframes of
        the mean score of their first ``count`` edge points (all when None)."""
        return self.score_inputs(self.level_inputs(keyframes, level, count), Ts, len(keyframes))

    def level_inputs(self, keyframes: Sequence[Keyframe], level: int, count: int | None,
                     T_order: np.ndarray | None = None) -> list[_LevelInput]:
        """Per keyframe with edge points: the arguments of :mod:`.edge_kernels` at ``level`` for its first
        ``count`` points; prepared once per level of a refinement, used by every step.

        With ``T_order`` (a pose near those to be scored) the points are put in the order of the field
        pixels they project to there: a window's fields are tens of MB a keyframe at the finer levels, far
        more than the caches, and samples taken in memory order reuse some cache lines their neighbours
        loaded (10-20 % off the finer levels' kernel time, profiled; a sum does not depend on the order).
        """
        inputs = []
        for kf in keyframes:
            n = len(kf.edges) if count is None else count
            pts, along, spans = kf.edges[:n], kf.along[:n], kf.spans[:n]
            if len(pts) == 0:
                continue
            lev = kf.levels[level]
            if T_order is not None:
                uv, _ = project_pinhole(kf.K, transform_points(T_order, pts), 0.5)
                width = lev.field.shape[1]
                row = np.floor((uv[:, 1] + 0.5) * lev.scale) + np.where(along, 0, lev.second_row)
                order = np.argsort(row * width + np.clip((uv[:, 0] + 0.5) * lev.scale, 0, width), kind="stable")
                pts, along, spans = pts[order], along[order], spans[order]
            samples = self.interval_samples(kf, level, pts, spans)
            intervals = samples.max() > 1
            inputs.append(_LevelInput(pts, ~along, kf.intrinsics, kf.last_pixel, lev, self.sigma_px(kf, level) ** 2,
                                      np.ascontiguousarray(spans) if intervals else None,
                                      samples if intervals else None))
        return inputs

    def interval_samples(self, kf: Keyframe, level: int, pts: np.ndarray, spans: np.ndarray) -> np.ndarray:
        """Samples (N,) int64 over each point's interval at ``level``: enough that neighbours lie at most
        ``interval_spacing`` robust scales apart in the image (the interval's angle times the focal length)."""
        if self.cfg.interval_spacing <= 0 or len(pts) == 0:
            return np.ones(len(pts), np.int64)
        span_px = kf.focal_px * np.linalg.norm(spans, axis=1) / np.maximum(np.linalg.norm(pts, axis=1), 1e-6)
        n = np.ceil(span_px / (self.cfg.interval_spacing * self.sigma_px(kf, level)))
        return np.clip(n, 1, self.cfg.max_interval_samples).astype(np.int64)

    def score_inputs(self, inputs: list[_LevelInput], Ts: np.ndarray, n_keyframes: int) -> np.ndarray:
        """Scores (C,) of poses ``Ts`` (C, 4, 4) on prepared ``inputs`` of a window of ``n_keyframes``; on
        contrast levels (a field with a fourth channel) less the score's local mean."""
        self.evaluations += len(Ts)
        R, t = np.ascontiguousarray(Ts[:, :3, :3]), np.ascontiguousarray(Ts[:, :3, 3])
        total = np.zeros(len(Ts))
        sums = map_in_threads(lambda one: one.score(R, t), inputs, self.cfg.threads)
        for one, summed in zip(inputs, sums):
            total += summed / len(one.points)
        return total / max(n_keyframes, 1)

    def linearise(self, inputs: list[_LevelInput], Ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normal equations H (C, 6, 6), g (C, 6) of the IRLS step at each pose of ``Ts`` (C, 4, 4), each
        keyframe's points weighted by 1 / their count (as in the score)."""
        H, g = np.zeros((len(Ts), 6, 6)), np.zeros((len(Ts), 6))
        R, t = np.ascontiguousarray(Ts[:, :3, :3]), np.ascontiguousarray(Ts[:, :3, 3])
        normals = map_in_threads(lambda one: one.linearise(R, t), inputs, self.cfg.threads)
        for one, (H_k, g_k) in zip(inputs, normals):
            H += H_k / len(one.points)
            g += g_k / len(one.points)
        return H, g
