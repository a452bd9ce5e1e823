"""Self-supervised CrossI2P losses. The only supervision is the rig's extrinsic.

Projecting the LiDAR points with the known ``T_camera_input`` and ``K`` tells
which pixel each point lands on; from that alone come

* ``align`` — the **dual-path contrastive** loss: InfoNCE point->image and
  image->point, at the coarse level (superpoints vs superpixels, soft targets
  from the fraction of a superpoint's points that land in each superpixel,
  dustbin for the rest) and at the fine level (sampled points vs the pixel
  embeddings where they land, both directions, CLIP-style);
* ``corr`` — the fine correspondence loss: cross-entropy over the search
  window plus the sub-pixel error of the soft-argmax location;
* ``pose`` — the reprojection error of the pose that the differentiable
  Gauss-Newton layer computes from the fine matches, started from a noisy
  copy of the truth, so matches learn to be good *for pose*.

Occlusion is ignored (as in DeepI2P/CorrI2P): a point hidden behind a closer
surface still counts as landing on the pixel in front of it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
import torch.nn.functional as F

from ..model import lie
from ..model.config import ModelConfig
from ..model.crossi2p import CrossI2P, CrossI2POutput
from ..model.pose import gauss_newton_pose
from ..model.point_encoder import gather_points


@dataclass(frozen=True)
class LossConfig:
    fine_points: int = 256            # points per sample for the fine and pose losses
    min_depth_m: float = 0.5          # points nearer than this to the camera are not supervised
    fine_position_weight: float = 0.2  # weight of the sub-pixel L1 term inside ``corr``
    fine_level_weight: float = 0.5     # weight of the fine-level InfoNCE inside ``align``
    pose_noise_rot_deg: float = 3.0    # start of the pose layer: truth perturbed by up to this
    pose_noise_trans_m: float = 0.2
    pose_huber_px: float = 4.0
    pose_max_px: float = 100.0


@dataclass
class GroundTruth:
    """Where each input point lands under the true pose (network-image pixels)."""

    uv: torch.Tensor        # (B, N, 2)
    visible: torch.Tensor   # (B, N) in front of the camera and inside the image
    cell: torch.Tensor      # (B, N) flat superpixel index (0 where not visible)


@dataclass
class LossOutput:
    losses: dict[str, torch.Tensor]
    metrics: dict[str, float] = field(default_factory=dict)


def project_ground_truth(points: torch.Tensor, T: torch.Tensor, K: torch.Tensor, cfg: ModelConfig,
                         min_depth: float) -> GroundTruth:
    p_cam = lie.transform(T, points[..., :3])
    uv = lie.project(K, p_cam)
    H, W = cfg.image_height, cfg.image_width
    visible = (p_cam[..., 2] > min_depth) & (uv[..., 0] >= -0.5) & (uv[..., 0] < W - 0.5) \
        & (uv[..., 1] >= -0.5) & (uv[..., 1] < H - 0.5)
    s = cfg.coarse_stride
    Hc, Wc = cfg.coarse_shape
    cx = torch.div(uv[..., 0] + 0.5, s, rounding_mode="floor").clamp(0, Wc - 1).long()
    cy = torch.div(uv[..., 1] + 0.5, s, rounding_mode="floor").clamp(0, Hc - 1).long()
    return GroundTruth(uv, visible, torch.where(visible, cy * Wc + cx, torch.zeros_like(cx)))


def coarse_overlap(gt: GroundTruth, assign: torch.Tensor, M: int, P: int) -> torch.Tensor:
    """(B, M, P) count of superpoint m's points that land in superpixel p."""
    B = assign.shape[0]
    flat = (assign * P + gt.cell).reshape(B, -1)
    counts = torch.zeros(B, M * P, device=assign.device)
    counts.scatter_add_(1, flat, gt.visible.reshape(B, -1).float())
    return counts.view(B, M, P)


def soft_cross_entropy(log_prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * log_prob.clamp_min(-1e4)).sum(-1)


def sample_visible(gt: GroundTruth, count: int, generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (B, count) of random visible points and a validity mask (fewer visible than count)."""
    scores = torch.rand(gt.visible.shape, device=gt.visible.device, generator=generator)
    scores = scores.masked_fill(~gt.visible, -1.0)
    top = scores.topk(min(count, scores.shape[1]), dim=1)
    return top.indices, top.values >= 0


def fine_map_coordinates(uv: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """Input-image pixels -> continuous fine-map coordinates (pixel centres at integers)."""
    s = cfg.fine_stride
    return (uv - (s - 1) / 2.0) / s


def sample_fine_map(fine_map: torch.Tensor, uv: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """Bilinear pixel embeddings (B, F, D) at input-image pixels uv (B, F, 2)."""
    Hf, Wf = fine_map.shape[-2:]
    f = fine_map_coordinates(uv, cfg)
    grid = torch.stack([(2 * f[..., 0] + 1) / Wf - 1, (2 * f[..., 1] + 1) / Hf - 1], -1)
    out = F.grid_sample(fine_map, grid[:, :, None], mode="bilinear", align_corners=False)
    return F.normalize(out[..., 0].transpose(1, 2), dim=-1)


def random_pose_noise(T: torch.Tensor, max_rot_deg: float, max_trans_m: float) -> torch.Tensor:
    B = T.shape[0]
    axis = F.normalize(torch.randn(B, 3, device=T.device, dtype=T.dtype), dim=-1)
    angle = torch.rand(B, 1, device=T.device, dtype=T.dtype) * math.radians(max_rot_deg)
    trans = F.normalize(torch.randn(B, 3, device=T.device, dtype=T.dtype), dim=-1) \
        * torch.rand(B, 1, device=T.device, dtype=T.dtype) * max_trans_m
    return lie.se3_exp(torch.cat([trans, axis * angle], -1)) @ T


class CrossI2PLoss(nn.Module):
    def __init__(self, model_cfg: ModelConfig, loss_cfg: LossConfig = LossConfig()):
        super().__init__()
        self.model_cfg = model_cfg
        self.cfg = loss_cfg

    def forward(self, model: CrossI2P, out: CrossI2POutput, batch: dict) -> LossOutput:
        mcfg, cfg = self.model_cfg, self.cfg
        points, T_gt, K = batch["points"], batch["T_gt"].float(), batch["K"].float()
        gt = project_ground_truth(points.float(), T_gt, K, mcfg, cfg.min_depth_m)
        metrics: dict[str, float] = {}

        align_coarse = self._coarse_dual_infonce(out, gt, metrics)
        idx, valid = sample_visible(gt, cfg.fine_points)
        align_fine = self._fine_dual_infonce(model, out, gt, idx, valid)
        corr, fine = self._fine_correspondence(model, out, gt, idx, valid, metrics)
        pose = self._pose(points, fine, gt, idx, valid, T_gt, K, metrics)
        losses = {"align": align_coarse + cfg.fine_level_weight * align_fine, "corr": corr, "pose": pose}
        metrics.update({f"loss_{k}": float(v.detach()) for k, v in losses.items()})
        metrics["visible_fraction"] = float(gt.visible.float().mean())
        return LossOutput(losses, metrics)

    # ------------------------------------------------------------------ align
    def _coarse_dual_infonce(self, out: CrossI2POutput, gt: GroundTruth, metrics: dict) -> torch.Tensor:
        log_p2i, log_i2p = out.coarse.point_to_image, out.coarse.image_to_point
        B, M, P1 = log_p2i.shape
        P = P1 - 1
        overlap = coarse_overlap(gt, out.groups.assign, M, P)
        points_per_sp = torch.zeros(B, M, device=overlap.device).scatter_add_(
            1, out.groups.assign, torch.ones_like(out.groups.assign, dtype=torch.float32))
        # point -> image: where do my points land? (the rest falls outside: dustbin)
        t_p2i = overlap / points_per_sp.clamp_min(1)[..., None]
        t_p2i = torch.cat([t_p2i, (1 - t_p2i.sum(-1, keepdim=True)).clamp_min(0)], -1)
        # image -> point: which superpoints do the points in my cell belong to? (none: dustbin)
        per_cell = overlap.sum(1)                       # (B, P)
        t_i2p = overlap.transpose(1, 2) / per_cell.clamp_min(1)[..., None]
        t_i2p = torch.cat([t_i2p, (per_cell == 0).float()[..., None]], -1)
        loss = soft_cross_entropy(log_p2i, t_p2i).mean() + soft_cross_entropy(log_i2p, t_i2p).mean()

        with torch.no_grad():
            seen = t_p2i[..., -1] < 0.5
            best = log_p2i[..., :-1].argmax(-1)
            hit = torch.gather(overlap, 2, best[..., None])[..., 0] > 0
            predicted_seen = log_p2i.argmax(-1) != P
            metrics["coarse_precision"] = float((hit & seen).sum() / seen.sum().clamp_min(1))
            metrics["frustum_accuracy"] = float((predicted_seen == seen).float().mean())
        return loss

    def _fine_dual_infonce(self, model: CrossI2P, out: CrossI2POutput, gt: GroundTruth,
                           idx: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        e_pt = gather_points(out.point_embed, idx)                       # (B, F, D)
        uv = gather_points(gt.uv, idx)
        e_px = sample_fine_map(out.fine_map, uv, self.model_cfg)        # (B, F, D)
        scale = model.fine_matcher.log_inv_temperature.exp().clamp(max=100.0)
        logits = scale * e_pt @ e_px.transpose(1, 2)                    # (B, F, F)
        # Points landing on (almost) the same pixel are not negatives of each other.
        near = torch.cdist(uv, uv) < self.model_cfg.fine_stride
        eye = torch.eye(idx.shape[1], dtype=torch.bool, device=idx.device)
        pair_ok = valid[:, :, None] & valid[:, None, :] & (~near | eye)
        logits = logits.masked_fill(~pair_ok, -1e4)
        target = torch.arange(idx.shape[1], device=idx.device).expand(idx.shape[0], -1)
        ce_p2i = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
        ce_i2p = F.cross_entropy(logits.transpose(1, 2).flatten(0, 1), target.flatten(), reduction="none")
        w = valid.flatten().float()
        return ((ce_p2i + ce_i2p) * w).sum() / w.sum().clamp_min(1)

    # ------------------------------------------------------------------ corr
    def _fine_correspondence(self, model: CrossI2P, out: CrossI2POutput, gt: GroundTruth,
                             idx: torch.Tensor, valid: torch.Tensor, metrics: dict):
        cell = torch.gather(gt.cell, 1, idx)
        fine = model.match_fine(out, idx, cell)
        uv = gather_points(gt.uv, idx)
        f = torch.round(fine_map_coordinates(uv, self.model_cfg)).long()
        w = self.model_cfg.fine_window
        local = (f - fine.window_origin).clamp(0, w - 1)
        target = local[..., 1] * w + local[..., 0]
        # only the valid points' rows: a padded (invisible) point's window may lie wholly outside the image,
        # its logits all -inf and its loss infinite, which a 0 weight would turn into NaN, not 0
        ce = F.cross_entropy(fine.logits[valid], target[valid], reduction="sum")
        l1 = F.smooth_l1_loss(fine.uv[valid], uv[valid], reduction="sum", beta=1.0) / self.model_cfg.fine_stride
        loss = (ce + self.cfg.fine_position_weight * l1) / valid.sum().clamp_min(1)
        with torch.no_grad():
            err = (fine.uv[valid] - uv[valid]).norm(dim=-1)
            metrics["fine_error_px"] = float(err.median()) if valid.any() else float("nan")
        return loss, fine

    # ------------------------------------------------------------------ pose
    def _pose(self, points, fine, gt, idx, valid, T_gt, K, metrics) -> torch.Tensor:
        cfg = self.cfg
        X = gather_points(points[..., :3].float(), idx)
        with torch.autocast(device_type=X.device.type, enabled=False):
            T0 = random_pose_noise(T_gt, cfg.pose_noise_rot_deg, cfg.pose_noise_trans_m)
            weight = valid.float() * fine.confidence.float() / (1.0 + fine.std_px.float() ** 2 / 4.0)
            T = gauss_newton_pose(X, fine.uv.float(), weight, K, T0, self.model_cfg.pose_iterations)
            uv_pred = lie.project(K, lie.transform(T, X))
            err = (uv_pred - gather_points(gt.uv, idx)).norm(dim=-1).clamp(max=cfg.pose_max_px)
            err = torch.nan_to_num(err, nan=cfg.pose_max_px)
            d = cfg.pose_huber_px
            huber = torch.where(err < d, 0.5 * err**2 / d, err - 0.5 * d)
            vf = valid.float()
            loss = (huber * vf).sum() / vf.sum().clamp_min(1)
        with torch.no_grad():
            metrics["pose_reproj_px"] = float((err * vf).sum() / vf.sum().clamp_min(1))
        return loss
