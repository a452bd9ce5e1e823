"""Differentiable pose layer: weighted Gauss-Newton on reprojection errors.

Used in training (the pose loss back-propagates through it into the match
locations and confidences) and as the point-level refinement at inference.
Updates are left-multiplied: ``T <- exp(delta) @ T``.
"""
from __future__ import annotations

import torch

from . import lie


def reprojection_jacobian(p_cam: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """d(pixel)/d(delta) (B, N, 2, 6) for left perturbations of the pose at camera points (B, N, 3)."""
    x, y, z = p_cam.unbind(-1)
    z = z.clamp_min(1e-3)
    fx, fy = K[:, 0, 0, None], K[:, 1, 1, None]
    zeros = torch.zeros_like(x)
    du_dp = torch.stack([
        torch.stack([fx / z, zeros, -fx * x / z**2], -1),
        torch.stack([zeros, fy / z, -fy * y / z**2], -1),
    ], -2)  # (B, N, 2, 3)
    dp_dxi = torch.cat([torch.eye(3, dtype=p_cam.dtype, device=p_cam.device).expand(*p_cam.shape[:2], 3, 3),
                        -lie.skew(p_cam)], -1)  # (B, N, 3, 6)
    return du_dp @ dp_dxi


def gauss_newton_pose(points: torch.Tensor, uv: torch.Tensor, weights: torch.Tensor, K: torch.Tensor,
                      T_init: torch.Tensor, iterations: int = 4, damping: float = 1e-4) -> torch.Tensor:
    """Refine ``T_camera_points`` (B, 4, 4) so that points (B, N, 3) project onto uv (B, N, 2) [px].

    ``weights`` (B, N) >= 0 weight each residual (0 drops it). Levenberg-style
    damping keeps the 6x6 system solvable when few matches carry weight.
    """
    T = T_init
    eye = torch.eye(6, dtype=points.dtype, device=points.device)
    for _ in range(iterations):
        p_cam = lie.transform(T, points)
        r = lie.project(K, p_cam) - uv                          # (B, N, 2)
        valid = (p_cam[..., 2] > 1e-2).to(points.dtype)
        w = (weights * valid)[..., None, None]
        J = reprojection_jacobian(p_cam, K)                      # (B, N, 2, 6)
        H = (J.transpose(-1, -2) @ (w * J)).sum(1)               # (B, 6, 6)
        g = (J.transpose(-1, -2) @ (w * r[..., None])).sum(1)   # (B, 6, 1)
        H = H + damping * (H.diagonal(dim1=-2, dim2=-1).mean(-1)[:, None, None] + 1.0) * eye
        delta = -torch.linalg.solve(H, g)[..., 0]
        T = lie.se3_exp(delta) @ T
    return T
