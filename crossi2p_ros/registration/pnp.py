"""Robust PnP on CrossI2P matches: the coarse global pose, needing no initial guess.

Superpoints are matched to superpixels by dual-softmax probability; every
point of a matched superpoint is then matched at the fine level inside its
superpixel's window, and OpenCV's RANSAC PnP (SQPnP minimal solver) followed
by Levenberg-Marquardt on the inliers gives ``T_camera_input``.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..geometry import make_transform, so3_exp
from ..model.crossi2p import CrossI2P, CrossI2POutput


@dataclass(frozen=True)
class PnPConfig:
    min_match_probability: float = 0.02   # dual-softmax floor for a superpoint-superpixel match
    max_points: int = 2048                # fine matches fed to RANSAC
    ransac_reprojection_px: float = 3.0   # in network-image pixels
    ransac_iterations: int = 500
    ransac_confidence: float = 0.999
    min_inliers: int = 12
    seed: int = 0


@dataclass
class Matches:
    """Fine 3-D/2-D matches of one sample: points (F, 3) in the input frame [m], pixels (F, 2), weights (F,)."""

    points: np.ndarray
    pixels: np.ndarray
    weights: np.ndarray


@dataclass
class PnPResult:
    T: np.ndarray          # T_camera_input (4x4); identity when not successful
    inliers: int
    num_matches: int
    success: bool
    inlier_mask: np.ndarray | None = None


@torch.no_grad()
def extract_matches(model: CrossI2P, out: CrossI2POutput, b: int, cfg: PnPConfig = PnPConfig(),
                    allowed: torch.Tensor | None = None) -> Matches:
    """Coarse-to-fine 3-D/2-D matches of sample ``b`` of a batch.

    ``allowed`` (M, P) bool, optional: the superpixels each superpoint may match
    (an initial guess limits them to a window around its projection).
    """
    log_p2i = out.coarse.point_to_image[b]
    prob = out.coarse.match_probability()[b]                    # (M, P)
    if allowed is not None:
        prob = prob.masked_fill(~allowed, 0.0)
    best_prob, best_cell = prob.max(-1)
    in_view = log_p2i[:, :-1].exp().sum(-1) > log_p2i[:, -1].exp()
    good = in_view & (best_prob > cfg.min_match_probability)
    point_ok = good[out.groups.assign[b]]
    idx = torch.nonzero(point_ok)[:, 0]
    if idx.numel() > cfg.max_points:
        g = torch.Generator(device="cpu").manual_seed(cfg.seed)
        idx = idx[torch.randperm(idx.numel(), generator=g)[: cfg.max_points].to(idx.device)]
    if idx.numel() == 0:
        empty = np.zeros((0, 3))
        return Matches(empty, np.zeros((0, 2)), np.zeros(0))
    cell = best_cell[out.groups.assign[b, idx]]
    # Only sample b's fine map and point embeddings are needed: call the matcher on those directly.
    fine = model.fine_matcher(out.point_embed[b, idx][None], out.fine_map[b:b + 1], cell[None])
    weight = fine.confidence[0] * best_prob[out.groups.assign[b, idx]]
    return Matches(out.points[b, idx, :3].double().cpu().numpy(), fine.uv[0].double().cpu().numpy(),
                   weight.double().cpu().numpy())


def solve_pnp_ransac(matches: Matches, K: np.ndarray, cfg: PnPConfig = PnPConfig()) -> PnPResult:
    """RANSAC (SQPnP) + LM refinement on inliers; ``K`` is the pinhole matrix of the pixels."""
    n = len(matches.points)
    failure = PnPResult(np.eye(4), 0, n, False)
    if n < max(cfg.min_inliers, 6):
        return failure
    obj = np.ascontiguousarray(matches.points, dtype=np.float64)
    img = np.ascontiguousarray(matches.pixels, dtype=np.float64)
    cv2.setRNGSeed(cfg.seed)
    try:
        ok, rvec, tvec, inliers = cv2.solvePnPRansac(
            obj, img, K.astype(np.float64), None, iterationsCount=cfg.ransac_iterations,
            reprojectionError=cfg.ransac_reprojection_px, confidence=cfg.ransac_confidence, flags=cv2.SOLVEPNP_SQPNP)
    except cv2.error:
        # SQPnP asserts on degenerate minimal sets (3-D points nearly coincident): no pose from these matches.
        return failure
    if not ok or inliers is None or len(inliers) < cfg.min_inliers:
        return PnPResult(np.eye(4), 0 if inliers is None else len(inliers), n, False)
    inl = inliers[:, 0]
    rvec, tvec = cv2.solvePnPRefineLM(obj[inl], img[inl], K.astype(np.float64), None, rvec, tvec)
    T = make_transform(so3_exp(rvec.ravel()), tvec.ravel())
    mask = np.zeros(n, dtype=bool)
    mask[inl] = True
    return PnPResult(T, len(inl), n, bool(np.all(np.isfinite(T))), mask)


def estimate_pose_pnp(model: CrossI2P, out: CrossI2POutput, batch_index: int, K: np.ndarray,
                      cfg: PnPConfig = PnPConfig()) -> PnPResult:
    """Global pose ``T_camera_input`` of sample ``batch_index`` from its matches (no initial guess)."""
    return solve_pnp_ransac(extract_matches(model, out, batch_index, cfg), K, cfg)
