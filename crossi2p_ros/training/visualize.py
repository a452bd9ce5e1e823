"""Training pictures for TensorBoard: which LiDAR points the network currently matches correctly.

Top panel: the points that truly land in the image (under ``T_gt``), drawn at
their true pixel and coloured by their superpoint's coarse match: green if the
best superpixel is one its points really land in, red if it is another one,
orange if the network puts the superpoint in the dustbin (out of view).
Bottom panel: the same image with the points coloured by depth under the
ground truth (``overlay.draw_projection``), i.e. what a perfect match looks like.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from ..data.samples import scale_intrinsics
from ..geometry import CameraModel
from ..model.config import ModelConfig
from ..model.crossi2p import CrossI2POutput
from ..overlay import draw_projection, paint_dots, side_by_side
from .losses import coarse_overlap, project_ground_truth

GREEN = np.array([40, 220, 60], dtype=np.uint8)
RED = np.array([235, 40, 40], dtype=np.uint8)
ORANGE = np.array([255, 165, 0], dtype=np.uint8)
_MIN_WIDTH_PX = 640


@torch.no_grad()
def coarse_correctness(out: CrossI2POutput, batch: dict, cfg: ModelConfig, b: int, min_depth_m: float = 0.5
                       ) -> tuple[np.ndarray, np.ndarray]:
    """For sample ``b``: true pixels (V, 2) of the visible points and a code per point
    (0 correct superpixel, 1 wrong superpixel, 2 put in the dustbin)."""
    gt = project_ground_truth(batch["points"][b:b + 1].float(), batch["T_gt"][b:b + 1].float(),
                              batch["K"][b:b + 1].float(), cfg, min_depth_m)
    log_p2i = out.coarse.point_to_image[b:b + 1].float()
    M, P = log_p2i.shape[1], log_p2i.shape[2] - 1
    assign = out.groups.assign[b:b + 1]
    overlap = coarse_overlap(gt, assign, M, P)[0]                    # (M, P)
    best = log_p2i[0, :, :-1].argmax(-1)                             # (M,)
    in_view = log_p2i[0].argmax(-1) != P
    right = overlap.gather(1, best[:, None])[:, 0] > 0
    code_sp = torch.where(~in_view, 2, torch.where(right, 0, 1))     # per superpoint
    visible = gt.visible[0]
    codes = code_sp[assign[0]][visible]
    return gt.uv[0][visible].cpu().numpy(), codes.cpu().numpy()


def match_image(out: CrossI2POutput, batch: dict, cfg: ModelConfig, b: int = 0) -> np.ndarray:
    """RGB uint8 picture of sample ``b``'s coarse matches (top) and its ground truth (bottom).

    Small training images are enlarged (nearest neighbour) to at least 640 px
    wide first, and the dots drawn at the enlarged resolution, so they stay readable.
    """
    image = (batch["image"][b].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
    zoom = max(1, -(-_MIN_WIDTH_PX // image.shape[1]))
    image = cv2.resize(image, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
    uv, codes = coarse_correctness(out, batch, cfg, b)
    colors = np.stack([GREEN, RED, ORANGE])[codes]
    top = paint_dots((image.astype(np.float32) * 0.6).astype(np.uint8), zoom * (uv + 0.5) - 0.5, colors, radius_px=2)
    K = scale_intrinsics(batch["K"][b].detach().double().cpu().numpy(), zoom, zoom)
    camera = CameraModel(image.shape[1], image.shape[0], K)
    bottom = draw_projection(image, batch["points"][b].detach().double().cpu().numpy(),
                             batch["T_gt"][b].detach().double().cpu().numpy(), camera)
    share = float((codes == 0).mean()) if codes.size else 0.0
    protocol = batch["protocol"][b] if "protocol" in batch else ""
    return side_by_side([top, bottom], [f"{batch['id'][b]} {protocol}: coarse correct {share:.0%}",
                                        "ground truth"])
