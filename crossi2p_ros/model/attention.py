"""Superpoint/superpixel transformer: intra-modal self-attention and cross-modal attention.

Each layer updates both token sets from themselves (self-attention) and then
from each other (cross-attention, both directions at once), as LoFTR and
CoFiI2P interleave them. Positional encodings are added once at the input:
2-D sine encodings of superpixel centres (pixels) and a learned Fourier
encoding of superpoint centres (metres).
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from .config import ModelConfig


def sine_encoding_2d(height: int, width: int, dim: int, device=None) -> torch.Tensor:
    """(H*W, dim) sine/cosine encoding of cell centres, row-major like ``flatten``."""
    quarter = dim // 4
    freq = torch.exp(torch.arange(quarter, device=device) * (-math.log(1000.0) / max(quarter - 1, 1)))
    y, x = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float32),
                          torch.arange(width, device=device, dtype=torch.float32), indexing="ij")
    ex, ey = x.reshape(-1, 1) * freq, y.reshape(-1, 1) * freq
    return torch.cat([ex.sin(), ex.cos(), ey.sin(), ey.cos()], -1)


class FourierEncoding3d(nn.Module):
    """Learned Fourier features of 3-D positions [m] -> (…, dim)."""

    def __init__(self, dim: int, scale_m: float):
        super().__init__()
        self.register_buffer("basis", torch.randn(3, dim // 2, generator=torch.Generator().manual_seed(0)) / scale_m * 2 * math.pi)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim))

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        proj = xyz @ self.basis
        return self.mlp(torch.cat([proj.sin(), proj.cos()], -1))


class LinearAttention(nn.Module):
    """Multi-head linear attention (Katharopoulos et al. 2020, as LoFTR uses it): softmax(QK^T)V is
    replaced by phi(Q)(phi(K)^T V) with phi = elu + 1, so the cost grows with tokens x dim^2 rather
    than tokens^2 x dim. Same call as ``nn.MultiheadAttention(batch_first=True)`` with
    ``need_weights=False``; used for the superpixels' self-attention, the layer with the most tokens.
    """

    def __init__(self, dim: int, heads: int, eps: float = 1e-6):
        super().__init__()
        self.heads, self.eps = heads, eps
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                need_weights: bool = False) -> tuple[torch.Tensor, None]:
        B, L, D = query.shape
        h = self.heads
        q = F.elu(self.q(query).view(B, L, h, D // h)) + 1.0
        k = F.elu(self.k(key).view(B, key.shape[1], h, D // h)) + 1.0
        v = self.v(value).view(B, value.shape[1], h, D // h)
        kv = torch.einsum("bshd,bshe->bhde", k, v)                 # (B, h, d, d): summed over source tokens
        norm = 1.0 / (torch.einsum("blhd,bhd->blh", q, k.sum(1)) + self.eps)
        x = torch.einsum("blhd,bhde,blh->blhe", q, kv, norm).reshape(B, L, D)
        return self.out(x), None


class AttentionBlock(nn.Module):
    """Pre-norm multi-head attention of ``x`` over ``source`` plus a feed-forward layer.

    ``linear``: :class:`LinearAttention` instead of softmax attention.
    """

    def __init__(self, dim: int, heads: int, linear: bool = False):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = LinearAttention(dim, heads) if linear else nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ffn = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        kv = self.norm_kv(source)
        x = x + self.attn(self.norm_q(x), kv, kv, need_weights=False)[0]
        return x + self.ffn(x)


class CrossModalLayer(nn.Module):
    def __init__(self, dim: int, heads: int, linear_image_self_attention: bool = False):
        super().__init__()
        self.self_image = AttentionBlock(dim, heads, linear=linear_image_self_attention)
        self.self_points = AttentionBlock(dim, heads)
        self.cross_image = AttentionBlock(dim, heads)   # superpixels attend to superpoints
        self.cross_points = AttentionBlock(dim, heads)  # superpoints attend to superpixels

    def forward(self, img: torch.Tensor, pts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.self_image(img, img)
        pts = self.self_points(pts, pts)
        return self.cross_image(img, pts), self.cross_points(pts, img)


class CrossModalTransformer(nn.Module):
    """(B, P, d) superpixel and (B, M, d) superpoint tokens -> refined tokens of the same shapes."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        linear = cfg.image_self_attention == "linear"
        self.layers = nn.ModuleList(CrossModalLayer(cfg.d_model, cfg.num_heads, linear) for _ in range(cfg.num_layers))
        self.norm_image = nn.LayerNorm(cfg.d_model)
        self.norm_points = nn.LayerNorm(cfg.d_model)

    def forward(self, img: torch.Tensor, pts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for layer in self.layers:
            img, pts = layer(img, pts)
        return self.norm_image(img), self.norm_points(pts)
