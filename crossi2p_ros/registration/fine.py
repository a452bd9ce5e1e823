"""Geometry-constrained point-level refinement of a pose with the network's fine matches.

Starting from a pose (the coarse PnP result, or the prior), each round

1. projects the input points with the current pose and keeps those in view that
   are not hidden behind nearer points (a coarse z-buffer: LiDAR and camera see
   the scene from different places, so a point may be visible to one only);
2. searches each point's fine match in the window around *where the pose puts
   it* (not around the coarse argmax), so the matches obey the geometry;
3. keeps matches whose reprojection error lies within the round's gate, which
   shrinks round by round with the pose's uncertainty;
4. solves a confidence-weighted, Cauchy-robust Gauss-Newton on the reprojection
   residuals.

Several frames of one rig are refined jointly by summing their normal equations.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..geometry import project_pinhole, visible_from_camera
from ..model.crossi2p import CrossI2P, CrossI2POutput
from .solver import (apply_step, cauchy_weights, covariance_from_hessian, damped_step, normal_equations,
                     project_with_jacobian)


@dataclass(frozen=True)
class FineConfig:
    gates_px: tuple[float, ...] = (16.0, 8.0, 4.0)  # reprojection gate per round [network px]
    iterations: int = 5             # Gauss-Newton iterations per round
    cauchy_px: float = 2.0          # robust loss scale [network px]
    zbuffer_cell_px: int = 4        # occlusion test granularity [network px]
    zbuffer_tolerance: float = 0.1  # a point hides behind one more than this fraction nearer in its cell
    min_depth_m: float = 0.5
    min_matches: int = 20           # fewer gated matches: the stage gives up
    correlated_matches: float = 50.0  # matches that count as one independent observation (covariance)


@dataclass
class FineView:
    """What the refinement needs from one frame: the network output and the network image's K."""

    out: CrossI2POutput
    K: np.ndarray
    image_hw: tuple[int, int]


@dataclass
class FineResult:
    T: np.ndarray            # refined T_camera_input
    inliers: int             # gated matches in the last round
    inlier_ratio: float      # of the visible points, how many matched within the last gate
    covariance: np.ndarray   # (6, 6) over (rho [m], phi [rad])
    success: bool


def visible_mask(uv: np.ndarray, depth: np.ndarray, hw: tuple[int, int], cfg: FineConfig) -> np.ndarray:
    """Points (N,) that are in the image and not hidden behind nearer points (z-buffer cells)."""
    return visible_from_camera(uv, depth, hw[1], hw[0], cfg.zbuffer_cell_px, cfg.zbuffer_tolerance, 0.0,
                               cfg.min_depth_m)


class FineRefiner:
    def __init__(self, model: CrossI2P, cfg: FineConfig = FineConfig()):
        self.model = model
        self.cfg = cfg

    @torch.no_grad()
    def _matches(self, view: FineView, T: np.ndarray, gate: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(points (F, 3), matched pixels (F, 2), weights (F,), visible count) for one view at pose T."""
        cfg, mcfg = self.cfg, self.model.cfg
        xyz = view.out.points[0, :, :3].double().cpu().numpy()
        p = xyz @ T[:3, :3].T + T[:3, 3]
        z = p[:, 2]
        uv, _ = project_pinhole(view.K, p, cfg.min_depth_m)
        vis = visible_mask(uv, z, view.image_hw, cfg)
        idx = np.nonzero(vis)[0]
        if len(idx) == 0:
            return np.zeros((0, 3)), np.zeros((0, 2)), np.zeros(0), 0
        s = mcfg.coarse_stride
        Hc, Wc = view.image_hw[0] // s, view.image_hw[1] // s
        cx = np.clip(((uv[idx, 0] + 0.5) // s).astype(np.int64), 0, Wc - 1)
        cy = np.clip(((uv[idx, 1] + 0.5) // s).astype(np.int64), 0, Hc - 1)
        device = view.out.point_embed.device
        idx_t = torch.from_numpy(idx).to(device)
        cell = torch.from_numpy(cy * Wc + cx).to(device)
        fine = self.model.fine_matcher(view.out.point_embed[0, idx_t][None], view.out.fine_map[:1], cell[None])
        matched = fine.uv[0].double().cpu().numpy()
        conf = fine.confidence[0].double().cpu().numpy()
        ok = np.linalg.norm(matched - uv[idx], axis=1) < gate
        return xyz[idx[ok]], matched[ok], conf[ok], len(idx)

    def _normal_equations(self, data, T: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, int]:
        H, g, cost, n = np.zeros((6, 6)), np.zeros(6), 0.0, 0
        for xyz, pix, conf, K in data:
            p = xyz @ T[:3, :3].T + T[:3, 3]
            uv, J = project_with_jacobian(K, p)
            r = uv - pix
            norm = np.linalg.norm(r, axis=1)
            w = conf * cauchy_weights(norm, self.cfg.cauchy_px) * (p[:, 2] > self.cfg.min_depth_m)
            Hf, gf = normal_equations(J, r, w)
            H += Hf
            g += gf
            cost += float(np.sum(w * norm ** 2))
            n += len(xyz)
        return H, g, cost, n

    def refine(self, views: list[FineView], T_start: np.ndarray) -> FineResult:
        """Refine ``T_start`` (T_camera_input, shared by all views) with the views' fine matches."""
        cfg = self.cfg
        T = np.asarray(T_start, dtype=np.float64)
        inliers, visible, H, cost = 0, 0, np.zeros((6, 6)), 0.0
        for gate in cfg.gates_px:
            found = [self._matches(v, T, gate) for v in views]
            data = [(x, u, c, v.K) for (x, u, c, _), v in zip(found, views)]
            inliers, visible = sum(len(d[0]) for d in data), sum(f[3] for f in found)
            if inliers < cfg.min_matches:
                return FineResult(np.asarray(T_start, dtype=np.float64), inliers, inliers / max(visible, 1),
                                  np.eye(6) * 1e6, False)
            H, g, cost, _ = self._normal_equations(data, T)
            damping = 1e-4
            for _ in range(cfg.iterations):
                delta = damped_step(H, g, damping)
                if not np.any(delta):
                    break
                T_new = apply_step(T, delta)
                H_new, g_new, cost_new, _ = self._normal_equations(data, T_new)
                if cost_new <= cost:
                    T, H, g, cost = T_new, H_new, g_new, cost_new
                    damping = max(damping / 3, 1e-7)
                else:
                    damping *= 10
        # neighbouring matches share features and errors: sigma^2 H^-1 would be far too confident
        sigma2 = cost / max(inliers - 6, 1) * cfg.correlated_matches
        ok = bool(np.all(np.isfinite(T)))
        return FineResult(T if ok else np.asarray(T_start, dtype=np.float64), inliers, inliers / max(visible, 1),
                          covariance_from_hessian(H, max(sigma2, 1e-6)), ok)
