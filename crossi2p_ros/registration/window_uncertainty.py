"""The window's uncertainty: a covariance of its pose, and the test that calls it converged.

The information (J^T W J from one-sided slopes) of the edge distances at the
finest level, scaled by the residual variance and by the number of edge points
that count as one independent sample, plus the spread over random halves of
the window and a floor for the edge model's bias (:class:`WindowUncertainty`);
:meth:`.window.WindowEstimator.solve` adds the rival optima. Measured against
the truth in benchmarks/window.py.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..geometry import invert, project_pinhole, se3_exp, se3_log, transform_points
from .edge_objective import EdgeObjective
from .image_edges import robust_score
from .keyframe import Keyframe
from .refinement import Refiner
from .solver import covariance_from_hessian, spread_over_halves
from .time_offset import window_speed
from .window_config import WindowConfig


def covariance_within(cov: np.ndarray, rot_deg: float, trans_m: float) -> bool:
    """Every direction of the (rho [m], phi [rad]) covariance's translation block within ``trans_m`` and of its
    rotation block within ``rot_deg`` (one sigma): the largest eigenvalues, invariant to the frame."""
    cov = np.asarray(cov, dtype=np.float64)
    return bool(np.linalg.eigvalsh(cov[:3, :3]).max() <= trans_m ** 2
                and np.linalg.eigvalsh(cov[3:, 3:]).max() <= np.radians(rot_deg) ** 2)


class WindowUncertainty:
    """Covariance (6, 6) over a left perturbation (rho [m], phi [rad]) of a window's pose, camera frame."""

    def __init__(self, cfg: WindowConfig, objective: EdgeObjective, refiner: Refiner):
        self.cfg = cfg
        self.objective = objective
        self.refiner = refiner

    def edge_distances(self, kf: Keyframe, level: int, Ts: np.ndarray) -> np.ndarray:
        """Edge distance [px] (C, M) of each of the keyframe's points at each pose ``Ts`` (C, 4, 4), as the
        kernels score it: at the sample of its interval nearest an image edge (``interval_spacing``);
        NaN where no sample lies in front of the camera and inside the image."""
        n = self.objective.interval_samples(kf, level, kf.edges, kf.spans)
        best = np.full((len(Ts), len(kf.edges)), np.nan)
        for k in range(int(n.max(initial=1))):
            todo = np.flatnonzero(k < n)                          # the points with a k-th sample
            f = (k + 0.5) / n[todo] - 0.5                         # its place in each interval
            x = kf.edges[todo] + f[:, None] * kf.spans[todo]
            p = np.matmul(x, Ts[:, :3, :3].transpose(0, 2, 1)) + Ts[:, None, :3, 3]
            uv, front = project_pinhole(kf.K, p.reshape(-1, 3), 0.5)
            inside = kf.in_image(uv, front) & np.isfinite(uv).all(axis=1)
            d = np.full(len(uv), np.nan)
            d[inside] = np.abs(kf.sample(level, uv[inside], np.tile(kf.along[todo], len(Ts))[inside], 0.0)[:, 0])
            best[:, todo] = np.fmin(best[:, todo], d.reshape(len(Ts), len(todo)))
        return best

    def covariance(self, keyframes: Sequence[Keyframe], T: np.ndarray, with_offset: bool = False) -> np.ndarray:
        """Covariance (6, 6) of delta at T: ``sigma_r^2 * c * H^-1`` at the finest level, plus the floor.

        ``with_offset``: (7, 7), the camera's time offset [s] the seventh parameter (:mod:`.time_offset`;
        every keyframe has a twist, its edges already at the offset): the pose block is then the pose's
        uncertainty with the offset free, the two estimated together.

        H is ``J^T W J`` of the edge distances with the IRLS weights, J taken
        from one-sided differences (steps of ~1.5 px of image motion), the
        outer products of the forward and backward slopes averaged. Not the
        analytic gradient: at convergence the points sit on the minimum of the
        distance field, V-shaped across an edge, where the sampled gradient
        vanishes and J^T J would report information missing exactly where it
        is best. Not the numerical Hessian of the cost either (as until
        2026-12-02): its mixed differences are not positive semi-definite,
        and a slightly negative eigenvalue reads as an unconstrained axis
        (seen on drawn bars half a pixel off their field's minimum); this H
        is positive semi-definite by construction and needs 13 poses, not 73.
        Points that leave the image on a step are left out: leaving the image
        is not information about the pose.
        """
        cfg = self.cfg
        level = len(cfg.sigma_deg) - 1
        frames = []
        for kf in keyframes:
            d = self.edge_distances(kf, level, T[None])[0]
            inside = np.isfinite(d)
            if inside.sum() < 3:
                continue
            p = transform_points(T, kf.edges[inside])
            d = d[inside]
            w = robust_score(d, self.objective.sigma_px(kf, level)) ** 2
            frames.append((kf.subset(inside), w, d, float(np.median(p[:, 2]))))
        n = 7 if with_offset else 6
        if not frames:
            return np.eye(n) * 1e6
        w_all = np.concatenate([f[1] for f in frames])
        d_all = np.concatenate([f[2] for f in frames])
        if w_all.sum() < 1.0:
            return np.eye(n) * 1e6
        var = float((w_all * d_all ** 2).sum() / w_all.sum())
        focal = float(np.median([f[0].focal_px for f in frames]))
        depth = float(np.median([f[3] for f in frames]))
        h = np.r_[[1.5 * depth / focal] * 3, [1.5 / focal] * 3]      # ~1.5 px of image motion per step
        if with_offset:   # ... and the time it takes the window's mean speed to move a point that far
            speed = max(window_speed([f[0] for f in frames]), 1e-3)
            h = np.r_[h, 1.5 * depth / focal / speed]
        steps = np.concatenate([np.zeros((1, 6)), np.diag(h[:6]), -np.diag(h[:6])])
        pose_steps = se3_exp(steps) @ T
        H = np.zeros((n, n))
        for kf, w, _, _ in frames:
            Ts = pose_steps
            if with_offset:   # the offset's steps move the keyframe's edges along its own twist
                moved = T[None] @ se3_exp(np.outer([-h[6], h[6]], kf.twist))
                Ts = np.concatenate([pose_steps[:7], moved[:1], pose_steps[7:], moved[1:]])
            d = self.edge_distances(kf, level, Ts)
            # a point that leaves the image on a step says nothing about the pose: left out
            stays = np.isfinite(d).all(axis=0)
            d, w_in = d[:, stays], w[stays]
            # one-sided slopes (n, m) of each point's distance: across an edge the distance is V-shaped, so its
            # central difference vanishes where the point is best placed, while both one-sided ones do not
            ahead = (d[1:n + 1] - d[0]) / h[:, None]
            behind = (d[0] - d[n + 1:]) / h[:, None]
            H += 0.5 * ((ahead * w_in) @ ahead.T + (behind * w_in) @ behind.T)
        # a flat direction is "no information": the inverse floors H's eigenvalues (covariance_from_hessian),
        # so those axes come out huge
        cov = covariance_from_hessian(H, var * cfg.correlated_points)
        floor = np.r_[[cfg.floor_trans_m ** 2] * 3, [np.radians(cfg.floor_rot_deg) ** 2] * 3,
                      [cfg.time_offset.floor_s ** 2] * (n - 6)]
        return cov + np.diag(floor)

    def resampled_covariance(self, keyframes: Sequence[Keyframe], T: np.ndarray, T_center: np.ndarray
                             ) -> np.ndarray:
        """Spread (6, 6) of the pose over halves of the window, each refined from T at the finer levels.

        The curvature says how sharply the whole window pins the pose; it
        cannot see that some keyframes pull one way and the rest another
        (a moved object, a stamp offset, an edge model that fits one scene
        type worse). Halves that disagree do. A half has half the data, so its
        spread is about sqrt(2) times the window's: the covariance is half theirs.
        """
        cfg = self.cfg
        levels = list(range(max(len(cfg.sigma_deg) - cfg.resample_levels, 0), len(cfg.sigma_deg)))
        return spread_over_halves(keyframes, lambda half: se3_log(self.refiner.refine(half, T, levels, T_center)[0]
                                                                  @ invert(T)),
                                  6, cfg.resamples, cfg.seed, cfg.min_keyframes_converged)
