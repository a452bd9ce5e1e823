"""Image branch: a compact residual CNN with a feature pyramid.

The stride-8 map gives the superpixel tokens: each cell of it is one
superpixel. A regular grid (rather than SLIC) keeps the token count fixed,
batches without padding, is differentiable end to end and exports to ONNX;
CoFiI2P makes the same choice. Edge-aware grouping is left to the
learned features, which see a 3x3 neighbourhood at every stride.
The fine decoder fuses the transformer-refined coarse tokens back into the
stride-2 map, so point-level matching sees cross-modal context.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .config import ModelConfig


def _groups(channels: int) -> int:
    return 8 if channels % 8 == 0 else 1


class ConvNormAct(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, stride: int = 1, kernel: int = 3):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
            nn.GroupNorm(_groups(c_out), c_out),  # batch sizes are small: no BatchNorm
            nn.ReLU(inplace=True),
        )


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvNormAct(channels, channels)
        self.conv2 = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.GroupNorm(_groups(channels), channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv2(self.conv1(x)))


class ImageEncoder(nn.Module):
    """(B, 3, H, W) normalised RGB -> coarse tokens at stride 8 and skips at strides 2 and 4."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c1, c2, c3 = cfg.image_channels
        self.stage1 = nn.Sequential(ConvNormAct(3, c1, stride=2), ResidualBlock(c1))
        self.stage2 = nn.Sequential(ConvNormAct(c1, c2, stride=2), ResidualBlock(c2))
        self.stage3 = nn.Sequential(ConvNormAct(c2, c3, stride=2), ResidualBlock(c3), ResidualBlock(c3))
        self.to_tokens = nn.Conv2d(c3, cfg.d_model, 1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s2 = self.stage1(image)
        s4 = self.stage2(s2)
        coarse = self.to_tokens(self.stage3(s4))
        return coarse, s4, s2


class FineDecoder(nn.Module):
    """Refined coarse map + skips -> (B, fine_dim, H/2, W/2) point-level embeddings."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c1, c2, _ = cfg.image_channels
        self.up4 = ConvNormAct(cfg.d_model + c2, c2)
        self.up2 = ConvNormAct(c2 + c1, cfg.fine_dim)
        self.out = nn.Conv2d(cfg.fine_dim, cfg.fine_dim, 1)

    def forward(self, coarse: torch.Tensor, s4: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(coarse, size=s4.shape[-2:], mode="bilinear", align_corners=False)
        x = self.up4(torch.cat([x, s4], 1))
        x = F.interpolate(x, size=s2.shape[-2:], mode="bilinear", align_corners=False)
        return self.out(self.up2(torch.cat([x, s2], 1)))
