"""Point branch: superpoints by farthest-point sampling + kNN pooling (PointNet++ set abstraction).

Each LiDAR point joins its nearest superpoint centre; superpoint features pool
the k nearest points' local geometry (coordinates relative to the centre) and
intensity. Absolute coordinates enter only through the positional encoding in
the transformer, so the local descriptors do not change when the cloud is
shifted, as it is in the i2p protocol.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import ModelConfig


def farthest_point_sample(xyz: torch.Tensor, m: int) -> torch.Tensor:
    """Indices (B, m) of ``m`` farthest-point samples of (B, N, 3) points.

    Starts from the point farthest from the centroid, so the result is
    deterministic. The loop runs over the ``m`` samples; each step is vectorised
    over points and batch.
    """
    B, N, _ = xyz.shape
    idx = torch.empty(B, m, dtype=torch.long, device=xyz.device)
    centroid = xyz.mean(1, keepdim=True)
    farthest = ((xyz - centroid) ** 2).sum(-1).argmax(1)
    dist = torch.full((B, N), float("inf"), device=xyz.device, dtype=xyz.dtype)
    batch = torch.arange(B, device=xyz.device)
    for i in range(m):
        idx[:, i] = farthest
        d = ((xyz - xyz[batch, farthest][:, None]) ** 2).sum(-1)
        dist = torch.minimum(dist, d)
        farthest = dist.argmax(1)
    return idx


def gather_points(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (B, N, C) gathered at idx (B, ...) -> (B, ..., C)."""
    B = x.shape[0]
    flat = idx.reshape(B, -1)
    out = torch.gather(x, 1, flat[..., None].expand(-1, -1, x.shape[-1]))
    return out.reshape(*idx.shape, x.shape[-1])


@dataclass
class PointGroups:
    """How points relate to superpoints: centres (B, M, 3), kNN (B, M, k), nearest centre per point (B, N)."""

    centers: torch.Tensor
    knn: torch.Tensor
    assign: torch.Tensor


def group_points(xyz: torch.Tensor, num_superpoints: int, k: int) -> PointGroups:
    """FPS centres, their k nearest points, and each point's nearest centre (no gradients)."""
    with torch.no_grad():
        centers_idx = farthest_point_sample(xyz, num_superpoints)
        centers = gather_points(xyz, centers_idx)
        d = torch.cdist(centers, xyz)  # (B, M, N)
        knn = d.topk(min(k, xyz.shape[1]), dim=2, largest=False).indices
        assign = d.argmin(1)
    return PointGroups(centers, knn, assign)


def _mlp(*widths: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.LayerNorm(b), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class PointEncoder(nn.Module):
    """(B, N, 4) points -> superpoint tokens (B, M, d_model) and per-point features (B, N, point_feat)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.local_scale = 2.0  # metres: typical kNN neighbourhood radius, keeps inputs O(1)
        self.point_mlp = _mlp(4, 32, cfg.point_feat)  # relative xyz to own centre + intensity
        self.group_mlp = _mlp(3 + cfg.point_feat, 128, 128)
        self.to_tokens = nn.Linear(128 + 1, cfg.d_model)  # + log group spread

    def forward(self, points: torch.Tensor, groups: PointGroups) -> tuple[torch.Tensor, torch.Tensor]:
        xyz, intensity = points[..., :3], points[..., 3:4]
        own_center = gather_points(groups.centers, groups.assign)
        rel_own = (xyz - own_center) / self.local_scale
        point_feat = self.point_mlp(torch.cat([rel_own, intensity], -1))
        nb_xyz = gather_points(xyz, groups.knn)  # (B, M, k, 3)
        rel = (nb_xyz - groups.centers[:, :, None]) / self.local_scale
        pooled = self.group_mlp(torch.cat([rel, gather_points(point_feat, groups.knn)], -1)).amax(2)
        spread = torch.log1p(rel.norm(dim=-1).mean(-1, keepdim=True))
        return self.to_tokens(torch.cat([pooled, spread], -1)), point_feat
