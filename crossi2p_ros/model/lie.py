"""Batched SE(3) operations in torch, differentiable (for the pose layer and losses).

Twists are ``(rho, phi)``: translation first, rotation vector [rad] second, as
in ``crossi2p_ros.geometry``.
"""
from __future__ import annotations

import torch


def skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) skew-symmetric matrices."""
    z = torch.zeros_like(v[..., 0])
    return torch.stack([
        torch.stack([z, -v[..., 2], v[..., 1]], -1),
        torch.stack([v[..., 2], z, -v[..., 0]], -1),
        torch.stack([-v[..., 1], v[..., 0], z], -1),
    ], -2)


def se3_exp(xi: torch.Tensor) -> torch.Tensor:
    """(..., 6) twists -> (..., 4, 4) transforms; smooth at zero (Taylor branch)."""
    rho, phi = xi[..., :3], xi[..., 3:]
    theta2 = (phi * phi).sum(-1, keepdim=True).unsqueeze(-1)
    theta = theta2.clamp_min(1e-12).sqrt()
    small = theta2 < 1e-8
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    c = torch.where(small, 1.0 / 6 - theta2 / 120, (theta - torch.sin(theta)) / (theta2 * theta).clamp_min(1e-18))
    K = skew(phi)
    K2 = K @ K
    eye = torch.eye(3, dtype=xi.dtype, device=xi.device).expand_as(K)
    R = eye + a * K + b * K2
    V = eye + b * K + c * K2
    T = torch.zeros(xi.shape[:-1] + (4, 4), dtype=xi.dtype, device=xi.device)
    T[..., :3, :3] = R
    T[..., :3, 3] = (V @ rho.unsqueeze(-1)).squeeze(-1)
    T[..., 3, 3] = 1
    return T


def transform(T: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Apply (B, 4, 4) transforms to (B, N, 3) points."""
    return p @ T[:, :3, :3].transpose(1, 2) + T[:, None, :3, 3]


def project(K: torch.Tensor, p_cam: torch.Tensor, min_depth: float = 1e-3) -> torch.Tensor:
    """Pinhole projection of (B, N, 3) camera-frame points with (B, 3, 3) K -> (B, N, 2) pixels."""
    z = p_cam[..., 2:3].clamp_min(min_depth)
    xy = p_cam[..., :2] / z
    return xy @ K[:, :2, :2].transpose(1, 2) + K[:, None, :2, 2]
