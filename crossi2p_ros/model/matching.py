"""Matching heads: superpoint-superpixel scores with dustbins, and point-to-pixel fine matching.

Coarse: cosine similarities scaled by a learned inverse temperature, with a
learned dustbin logit on each side (a superpoint outside the camera frustum,
a superpixel no LiDAR point reaches, e.g. sky). Soft-maxing the rows gives the
point->image path, the columns the image->point path; their product is the
dual-softmax match probability used at inference.

Fine: each point is compared with the fine embeddings in a window centred on
its coarse cell; a soft-argmax gives a sub-pixel location and its spread.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F

from .config import ModelConfig


@dataclass
class CoarseScores:
    """``sim`` (B, M, P) scaled similarities; log-probabilities with the dustbin last:
    ``point_to_image`` (B, M, P+1), ``image_to_point`` (B, P, M+1)."""

    sim: torch.Tensor
    point_to_image: torch.Tensor
    image_to_point: torch.Tensor

    def match_probability(self) -> torch.Tensor:
        """Dual-softmax probability (B, M, P) that superpoint m and superpixel p match."""
        return self.point_to_image[..., :-1].exp() * self.image_to_point[..., :-1].exp().transpose(1, 2)


class CoarseMatcher(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.proj_points = nn.Linear(cfg.d_model, cfg.d_model)
        self.proj_image = nn.Linear(cfg.d_model, cfg.d_model)
        self.log_inv_temperature = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))
        self.dustbin = nn.Parameter(torch.tensor(0.5))  # a cosine similarity threshold, learned

    def forward(self, pts: torch.Tensor, img: torch.Tensor) -> CoarseScores:
        p = F.normalize(self.proj_points(pts), dim=-1)
        q = F.normalize(self.proj_image(img), dim=-1)
        scale = self.log_inv_temperature.exp().clamp(max=100.0)
        sim = scale * p @ q.transpose(1, 2)  # (B, M, P)
        B, M, P = sim.shape
        bin_logit = scale * self.dustbin
        rows = torch.cat([sim, bin_logit.expand(B, M, 1)], 2)
        cols = torch.cat([sim.transpose(1, 2), bin_logit.expand(B, P, 1)], 2)
        return CoarseScores(sim, rows.log_softmax(-1), cols.log_softmax(-1))


@dataclass
class FineMatches:
    """Fine matching of F points per sample.

    ``logits`` (B, F, W*W) over the window (-inf outside the image);
    ``uv`` (B, F, 2) soft-argmax location [input-image pixels];
    ``std_px`` (B, F) spatial spread of the match distribution [pixels];
    ``window_origin`` (B, F, 2) fine-map (x, y) of the window's top-left cell.
    """

    logits: torch.Tensor
    uv: torch.Tensor
    std_px: torch.Tensor
    window_origin: torch.Tensor

    @property
    def confidence(self) -> torch.Tensor:
        return self.logits.softmax(-1).amax(-1)


def fine_pixel_centers(index_xy: torch.Tensor, stride: int) -> torch.Tensor:
    """Input-image pixel centres of fine/coarse map cells (x, y) at ``stride``."""
    return index_xy.to(torch.float32) * stride + (stride - 1) / 2.0


class FineMatcher(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.log_inv_temperature = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))
        w = cfg.fine_window
        dy, dx = torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")
        self.register_buffer("offsets", torch.stack([dx.reshape(-1), dy.reshape(-1)], -1), persistent=False)

    def window_origin(self, cell: torch.Tensor) -> torch.Tensor:
        """Top-left fine cell (x, y) of the window around flat coarse cell indices (B, F)."""
        cfg = self.cfg
        wc = cfg.coarse_shape[1]
        ratio = cfg.coarse_stride // cfg.fine_stride
        cx, cy = cell % wc, torch.div(cell, wc, rounding_mode="floor")
        pad = (cfg.fine_window - ratio) // 2
        return torch.stack([cx * ratio - pad, cy * ratio - pad], -1)

    def forward(self, point_embed: torch.Tensor, fine_map: torch.Tensor, cell: torch.Tensor) -> FineMatches:
        """``point_embed`` (B, F, D) unit vectors, ``fine_map`` (B, D, Hf, Wf), ``cell`` (B, F) coarse index."""
        B, D, Hf, Wf = fine_map.shape
        origin = self.window_origin(cell)                       # (B, F, 2)
        xy = origin[:, :, None, :] + self.offsets               # (B, F, W*W, 2)
        inside = (xy[..., 0] >= 0) & (xy[..., 0] < Wf) & (xy[..., 1] >= 0) & (xy[..., 1] < Hf)
        flat = (xy[..., 1].clamp(0, Hf - 1) * Wf + xy[..., 0].clamp(0, Wf - 1)).reshape(B, -1)
        feats = torch.gather(fine_map.flatten(2), 2, flat[:, None].expand(-1, D, -1))  # (B, D, F*W*W)
        feats = feats.reshape(B, D, *xy.shape[1:3])
        scale = self.log_inv_temperature.exp().clamp(max=100.0)
        logits = scale * torch.einsum("bfd,bdfw->bfw", point_embed, feats)
        logits = logits.masked_fill(~inside, float("-inf"))
        prob = logits.softmax(-1)
        centers = fine_pixel_centers(xy, self.cfg.fine_stride)  # (B, F, W*W, 2)
        uv = (prob[..., None] * centers).sum(2)
        var = (prob * ((centers - uv[:, :, None]) ** 2).sum(-1)).sum(-1)
        return FineMatches(logits, uv, var.clamp_min(1e-6).sqrt(), origin)
