"""CrossI2P: the whole network, wiring encoders, transformer and matching heads.

Inputs (one batch of B samples, already resized and undistorted by
``crossi2p_ros.data.samples``):

* ``image`` (B, 3, H, W) float RGB in [0, 1], pinhole camera;
* ``points`` (B, N, 4) float x y z intensity in the *input frame* [m]: the
  LiDAR frame moved by the initial guess (calib protocol) or by a random
  yaw and shift (i2p protocol). The task is ``T_camera_input``.

Outputs (:class:`CrossI2POutput`): superpoint groups, coarse scores, and the
unit-norm fine embeddings of pixels and points that :meth:`CrossI2P.match_fine`
compares inside windows.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F

from .attention import CrossModalTransformer, FourierEncoding3d, sine_encoding_2d
from .config import ModelConfig
from .image_encoder import FineDecoder, ImageEncoder
from .matching import CoarseMatcher, CoarseScores, FineMatcher, FineMatches
from .point_encoder import PointEncoder, PointGroups, gather_points, group_points


@dataclass
class CrossI2POutput:
    groups: PointGroups          # superpoint centres (B, M, 3), kNN, nearest centre per point
    coarse: CoarseScores         # (B, M, P[+1]) scores, P = superpixels (row-major stride-8 cells)
    fine_map: torch.Tensor       # (B, Df, H/2, W/2) unit-norm pixel embeddings
    point_embed: torch.Tensor    # (B, N, Df) unit-norm point embeddings
    superpixel_embed: torch.Tensor  # (B, P, d) refined superpixel tokens
    superpoint_embed: torch.Tensor  # (B, M, d) refined superpoint tokens
    points: torch.Tensor            # (B, N, 4) the network input, for turning matches into 3-D/2-D pairs


class CrossI2P(nn.Module):
    def __init__(self, cfg: ModelConfig = ModelConfig()):
        super().__init__()
        self.cfg = cfg
        self.image_encoder = ImageEncoder(cfg)
        self.point_encoder = PointEncoder(cfg)
        self.pos3d = FourierEncoding3d(cfg.d_model, cfg.pos_scale_m)
        self.transformer = CrossModalTransformer(cfg)
        self.coarse_matcher = CoarseMatcher(cfg)
        self.fine_decoder = FineDecoder(cfg)
        self.point_fine = nn.Sequential(
            nn.Linear(cfg.point_feat + cfg.d_model, 128), nn.LayerNorm(128), nn.ReLU(inplace=True),
            nn.Linear(128, cfg.fine_dim),
        )
        self.fine_matcher = FineMatcher(cfg)
        self.register_buffer("rgb_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("rgb_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def shared_parameters(self) -> list[nn.Parameter]:
        """The layer every loss reaches: GradNorm measures per-loss gradient norms here."""
        return list(self.transformer.layers[-1].cross_points.ffn[-1].parameters())

    def forward(self, image: torch.Tensor, points: torch.Tensor, groups: PointGroups | None = None) -> CrossI2POutput:
        cfg = self.cfg
        if groups is None:
            groups = group_points(points[..., :3], cfg.num_superpoints, cfg.knn)
        coarse, s4, s2 = self.image_encoder((image - self.rgb_mean) / self.rgb_std)
        B, D, Hc, Wc = coarse.shape
        img_tokens = coarse.flatten(2).transpose(1, 2) + sine_encoding_2d(Hc, Wc, D, image.device).to(coarse.dtype)
        pt_tokens, point_feat = self.point_encoder(points, groups)
        pt_tokens = pt_tokens + self.pos3d(groups.centers)
        img_tokens, pt_tokens = self.transformer(img_tokens, pt_tokens)
        scores = self.coarse_matcher(pt_tokens, img_tokens)
        fine_map = self.fine_decoder(img_tokens.transpose(1, 2).reshape(B, D, Hc, Wc), s4, s2)
        point_embed = self.point_fine(torch.cat([point_feat, gather_points(pt_tokens, groups.assign)], -1))
        return CrossI2POutput(groups, scores, F.normalize(fine_map, dim=1), F.normalize(point_embed, dim=-1),
                              img_tokens, pt_tokens, points)

    def match_fine(self, out: CrossI2POutput, point_index: torch.Tensor, cell: torch.Tensor) -> FineMatches:
        """Fine matches of points ``point_index`` (B, F) searched around coarse cells ``cell`` (B, F)."""
        embed = gather_points(out.point_embed, point_index)
        return self.fine_matcher(embed, out.fine_map, cell)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
