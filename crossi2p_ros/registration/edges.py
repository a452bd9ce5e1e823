"""Model-free refinement: align LiDAR discontinuities with image edges (multi-frame chamfer alignment).

Used only when an initial guess exists (the online-calibration case). LiDAR
*edge points* are the near side of range jumps and the points at intensity
jumps along each beam of the sweep (found in the LiDAR's own spherical
ordering, so they do not depend on the pose being estimated). The image side is
a pyramid of truncated distance transforms of Canny edges. The pose minimises
the robust sum of distance-transform values at the projected edge points
(Levenberg-Marquardt on SE(3), coarse-to-fine, several frames jointly).

Why this shape (see DESIGN.md, "Known pitfalls"): a single-frame, derivative-free
edge score has its optimum degrees away on real data. Here the residuals are
truncated and Cauchy-weighted, the coarse levels widen the basin, a small grid
of rotation starts avoids the nearest wrong edge, several frames can be stacked,
and :class:`crossi2p_ros.registration.calibrator.Calibrator` only keeps the
result when it raises the edge-inlier fraction over its start.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product

import cv2
import numpy as np

from ..geometry import CameraModel, invert, make_transform, se3_log, so3_exp
from ..data.samples import Undistorter, scale_intrinsics
from .solver import (apply_step, cauchy_weights, covariance_from_hessian, damped_step, normal_equations,
                     project_with_jacobian)


@dataclass(frozen=True)
class EdgeConfig:
    """Model-free alignment settings; pixel values refer to each pyramid level's own pixels."""

    # LiDAR edges
    beam_bin_deg: float = 0.05          # elevation histogram bin used to split the sweep into beams
    max_azimuth_gap_deg: float = 1.5    # neighbours further apart along a beam are not compared
    depth_jump_m: float = 0.5           # a range jump counts when larger than this ...
    depth_jump_ratio: float = 0.1       # ... and than this fraction of the nearer range
    intensity_jump: float = 0.3         # intensity step (intensity in [0, 1]) that makes an edge point
    min_range_m: float = 1.5
    max_range_m: float = 80.0
    max_edge_points: int = 6000         # per frame, deterministic subsample
    # image edges
    levels: int = 4                     # pyramid levels, full resolution / 2**k
    max_width_px: int = 1280            # images wider than this are reduced first
    canny_percentile: float = 92.0      # high Canny threshold = this percentile of the gradient magnitude
    truncation_px: float = 6.0          # distance transforms saturate here
    # optimisation
    iterations: int = 12                # LM iterations per level
    start_grid_deg: float = 4.0         # rotation grid spacing tried at the coarsest level (0: off) ...
    start_grid_steps: int = 1           # ... with this many steps each way per axis: (2n + 1)^3 starts
    start_iterations: int = 4
    inlier_px: float = 2.0              # full-resolution distance that counts as "on an edge"
    view_margin: float = 0.1            # edge points used: those within this image fraction of the view at the start
    prior_trans_m: float = 0.5          # Gaussian prior on the translation change from the start ...
    prior_rot_deg: float = 10.0         # ... and on the rotation change; keeps unobservable directions put
    prior_weight_px2: float = 1.0       # a one-sigma change costs this much mean squared residual [px^2]
    min_depth_m: float = 0.5
    seed: int = 0


@dataclass
class LidarEdges:
    """Edge points (E, 3) in the LiDAR frame [m]."""

    xyz: np.ndarray


@dataclass
class EdgeLevel:
    K: np.ndarray           # pinhole intrinsics of this level [px]
    field: np.ndarray       # (H, W, 3) float32: truncated distance [px], d/du, d/dv


@dataclass
class ImageEdges:
    levels: list[EdgeLevel]   # levels[0] is the finest


@dataclass
class EdgeAlignResult:
    T: np.ndarray                 # refined T_camera_lidar
    inlier_fraction: float        # of visible edge points within ``inlier_px`` of an image edge, at the end
    start_inlier_fraction: float  # the same at the start pose
    visible: int                  # edge points projecting into the images at the end
    covariance: np.ndarray        # (6, 6) over (rho [m], phi [rad]), from the finest level


# --------------------------------------------------------------------------- LiDAR side


def lidar_edges(points: np.ndarray, cfg: EdgeConfig = EdgeConfig()) -> LidarEdges:
    """Edge points of one sweep ``points`` (N, >=3, intensity in column 3 if present) in the LiDAR frame.

    Beams are recovered from the elevation histogram (runs of occupied bins), the
    points of each beam are ordered by azimuth, and neighbours are compared.
    """
    pts = np.asarray(points, dtype=np.float64)
    pts = pts[np.isfinite(pts[:, :3]).all(1)]
    rng_m = np.linalg.norm(pts[:, :3], axis=1)
    pts, rng_m = pts[(rng_m > cfg.min_range_m) & (rng_m < cfg.max_range_m)], rng_m[
        (rng_m > cfg.min_range_m) & (rng_m < cfg.max_range_m)]
    if len(pts) < 3:
        return LidarEdges(np.zeros((0, 3)))
    x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
    elev = np.degrees(np.arctan2(z, np.hypot(x, y)))
    az = np.degrees(np.arctan2(y, x))
    bins = ((elev - elev.min()) / cfg.beam_bin_deg).astype(np.int64)
    occupied = np.bincount(bins) > 0
    starts = occupied & ~np.concatenate([[False], occupied[:-1]])
    beam = np.cumsum(starts)[bins]
    order = np.lexsort((az, beam))
    r, b, a = rng_m[order], beam[order], az[order]
    same = (b[1:] == b[:-1]) & (a[1:] - a[:-1] < cfg.max_azimuth_gap_deg)
    dr = r[1:] - r[:-1]
    jump = same & (np.abs(dr) > np.maximum(cfg.depth_jump_m, cfg.depth_jump_ratio * np.minimum(r[1:], r[:-1])))
    steps = [jump]
    if pts.shape[1] > 3:
        inten = pts[order, 3]
        steps.append(same & (np.abs(inten[1:] - inten[:-1]) > cfg.intensity_jump))
    i = np.nonzero(np.logical_or.reduce(steps))[0]
    if len(i) > cfg.max_edge_points:
        i = np.sort(np.random.default_rng(cfg.seed).choice(i, cfg.max_edge_points, replace=False))
    # The true boundary lies between the two neighbours: take the mid direction at the nearer range
    # (the occluding side is where the image edge is), which removes a half-column bias.
    xyz = pts[order, :3]
    a, b_ = xyz[i], xyz[i + 1]
    mid = a / r[i, None] + b_ / r[i + 1, None]
    mid /= np.linalg.norm(mid, axis=1, keepdims=True)
    return LidarEdges(mid * np.minimum(r[i], r[i + 1])[:, None])


# --------------------------------------------------------------------------- image side

_undistort = Undistorter()


def image_edges(image_rgb: np.ndarray, camera: CameraModel, cfg: EdgeConfig = EdgeConfig()) -> ImageEdges:
    """Distance-transform pyramid of the image's edges, in the undistorted (pinhole, same K) image."""
    image = _undistort(np.asarray(image_rgb), camera)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    K = camera.K
    h, w = grey.shape
    if w > cfg.max_width_px:
        s = cfg.max_width_px / w
        nw, nh = cfg.max_width_px, max(1, round(h * s))
        grey = cv2.resize(grey, (nw, nh), interpolation=cv2.INTER_AREA)
        K = scale_intrinsics(K, nw / w, nh / h)
    levels = []
    for k in range(cfg.levels):
        if k > 0:
            ph, pw = grey.shape
            nw, nh = max(1, pw // 2), max(1, ph // 2)
            grey = cv2.resize(grey, (nw, nh), interpolation=cv2.INTER_AREA)
            K = scale_intrinsics(K, nw / pw, nh / ph)
        levels.append(EdgeLevel(K.copy(), _distance_field(grey, cfg)))
    return ImageEdges(levels)


def _distance_field(grey: np.ndarray, cfg: EdgeConfig) -> np.ndarray:
    blurred = cv2.GaussianBlur(grey, (5, 5), 1.0)
    gx = cv2.Sobel(blurred, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(blurred, cv2.CV_32F, 0, 1)
    high = float(np.percentile(np.abs(gx) + np.abs(gy), cfg.canny_percentile))
    high = max(high, 1.0)
    edges = cv2.Canny(blurred, 0.4 * high, high)
    dist = cv2.distanceTransform((edges == 0).astype(np.uint8), cv2.DIST_L2, 5)
    dist = np.minimum(dist, cfg.truncation_px).astype(np.float32)
    dv, du = np.gradient(dist)
    return np.dstack([dist, du, dv]).astype(np.float32)


def _sample(field: np.ndarray, uv: np.ndarray, outside: float) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear (N, C) samples of ``field`` at pixels uv (N, 2) and the in-image mask."""
    H, W = field.shape[:2]
    u, v = uv[:, 0], uv[:, 1]
    inside = (u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1)
    u, v = np.clip(u, 0, W - 1.001), np.clip(v, 0, H - 1.001)
    x0, y0 = u.astype(np.int64), v.astype(np.int64)
    fx, fy = (u - x0)[:, None], (v - y0)[:, None]
    out = (field[y0, x0] * (1 - fx) * (1 - fy) + field[y0, x0 + 1] * fx * (1 - fy)
           + field[y0 + 1, x0] * (1 - fx) * fy + field[y0 + 1, x0 + 1] * fx * fy)
    out[~inside] = 0.0
    out[~inside, 0] = outside
    return out, inside


# --------------------------------------------------------------------------- alignment


class EdgeAligner:
    """Multi-frame coarse-to-fine chamfer alignment of LiDAR edges to image edges."""

    def __init__(self, cfg: EdgeConfig = EdgeConfig()):
        self.cfg = cfg

    def _terms(self, frames: list[tuple[LidarEdges, ImageEdges]], T: np.ndarray, level: int
               ) -> tuple[np.ndarray, np.ndarray, float, int]:
        """(H, g, cost, visible) summed over frames at one level; cost = mean truncated r^2 over the edge points."""
        cfg = self.cfg
        tau = cfg.truncation_px
        H, g = np.zeros((6, 6)), np.zeros(6)
        cost, count, visible = 0.0, 0, 0
        for lidar, img in frames:
            if len(lidar.xyz) == 0:
                continue
            lv = img.levels[level]
            p = lidar.xyz @ T[:3, :3].T + T[:3, 3]
            front = p[:, 2] > cfg.min_depth_m
            uv, J = project_with_jacobian(lv.K, p[front])
            s, inside = _sample(lv.field, uv, tau)
            r = s[:, 0]
            Jr = np.einsum("nk,nkj->nj", s[:, 1:3], J)[:, None, :]
            w = cauchy_weights(r, tau / 2) * inside
            Hf, gf = normal_equations(Jr, r[:, None], w)
            H += Hf
            g += gf
            cost += float(np.sum(r ** 2)) + tau ** 2 * float(np.sum(~front))
            count += len(p)
            visible += int(inside.sum())
        # normalised by the point count, so the prior and all levels share one scale
        return H / max(count, 1), g / max(count, 1), cost / max(count, 1), visible

    def _total(self, frames, T: np.ndarray, T_ref: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray, float]:
        H, g, cost, _ = self._terms(frames, T, level)
        Hp, gp, cp = self._prior(T, T_ref, 1)
        return H + Hp, g + gp, cost + cp

    def _optimise(self, frames, T: np.ndarray, T_ref: np.ndarray, level: int, iterations: int
                  ) -> tuple[np.ndarray, float]:
        H, g, cost = self._total(frames, T, T_ref, level)
        damping = 1e-3
        for _ in range(iterations):
            delta = damped_step(H, g, damping)
            if not np.any(delta):
                break
            T_new = apply_step(T, delta)
            H_new, g_new, cost_new = self._total(frames, T_new, T_ref, level)
            if cost_new < cost:
                T, H, g, cost = T_new, H_new, g_new, cost_new
                damping = max(damping / 3, 1e-6)
                if np.linalg.norm(delta) < 1e-6:
                    break
            else:
                damping *= 10
                if damping > 1e4:
                    break
        return T, cost

    def inlier_fraction(self, frames, T: np.ndarray) -> tuple[float, int]:
        """Fraction of visible edge points within ``inlier_px`` of an image edge (finest level)."""
        hits, visible = 0, 0
        for lidar, img in frames:
            if len(lidar.xyz) == 0:
                continue
            lv = img.levels[0]
            p = lidar.xyz @ T[:3, :3].T + T[:3, 3]
            p = p[p[:, 2] > self.cfg.min_depth_m]
            uv = p[:, :2] / p[:, 2:3] @ lv.K[:2, :2].T + lv.K[:2, 2]
            s, inside = _sample(lv.field, uv, self.cfg.truncation_px)
            hits += int(np.sum(inside & (s[:, 0] < self.cfg.inlier_px)))
            visible += int(inside.sum())
        return hits / max(visible, 1), visible

    def _in_view(self, lidar: LidarEdges, img: ImageEdges, T: np.ndarray) -> LidarEdges:
        """The edge points in front of the camera and within the (margin-grown) image at pose T.

        Fixing this set at the start keeps the cost comparable between poses: a
        point that leaves the image later costs the full truncation, so moving
        points out of view never pays.
        """
        lv = img.levels[0]
        H, W = lv.field.shape[:2]
        p = lidar.xyz @ T[:3, :3].T + T[:3, 3]
        front = p[:, 2] > self.cfg.min_depth_m
        uv = p[:, :2] / np.where(front, p[:, 2], 1.0)[:, None] @ lv.K[:2, :2].T + lv.K[:2, 2]
        m = self.cfg.view_margin
        keep = front & (uv[:, 0] > -m * W) & (uv[:, 0] < (1 + m) * W) & (uv[:, 1] > -m * H) & (uv[:, 1] < (1 + m) * H)
        return LidarEdges(lidar.xyz[keep])

    def _prior(self, T: np.ndarray, T_ref: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray, float]:
        """Gaussian prior on the change from ``T_ref``: (H, g, cost) in the units of the mean cost."""
        cfg = self.cfg
        xi = se3_log(T @ invert(T_ref))
        sigma = np.array([cfg.prior_trans_m] * 3 + [np.radians(cfg.prior_rot_deg)] * 3)
        L = np.diag(cfg.prior_weight_px2 / sigma ** 2) * count
        return L, L @ xi, float(xi @ L @ xi) / max(count, 1)

    def _starts(self, T_init: np.ndarray) -> list[np.ndarray]:
        s = np.radians(self.cfg.start_grid_deg)
        if s <= 0:
            return [T_init]
        n = self.cfg.start_grid_steps
        grid = [np.array(a) * s for a in product(range(-n, n + 1), repeat=3)]
        # rotate about the camera centre, so the start only turns the view
        t_c = T_init[:3, 3]
        out = []
        for phi in grid:
            R = so3_exp(phi)
            out.append(make_transform(R @ T_init[:3, :3], R @ t_c))
        return out

    def align(self, frames: list[tuple[LidarEdges, ImageEdges]], T_init: np.ndarray) -> EdgeAlignResult:
        """Refine ``T_init`` (T_camera_lidar, 4x4) so that LiDAR edges land on image edges in every frame."""
        cfg = self.cfg
        T_init = np.asarray(T_init, dtype=np.float64)
        frames = [(self._in_view(lidar, img, T_init), img) for lidar, img in frames]
        start_fraction, _ = self.inlier_fraction(frames, T_init)
        n_levels = min(len(img.levels) for _, img in frames) if frames else 0
        if n_levels == 0:
            return EdgeAlignResult(T_init, start_fraction, start_fraction, 0, np.eye(6) * 1e6)
        top = n_levels - 1
        candidates = [self._optimise(frames, T0, T_init, top, cfg.start_iterations) for T0 in self._starts(T_init)]
        T = min(candidates, key=lambda c: c[1])[0]
        for level in range(top, -1, -1):
            T, _ = self._optimise(frames, T, T_init, level, cfg.iterations)
        H, _, cost, visible = self._terms(frames, T, 0)
        fraction, _ = self.inlier_fraction(frames, T)
        sigma2 = cost * max(visible, 1) / max(visible - 6, 1)
        return EdgeAlignResult(T, fraction, start_fraction, visible, covariance_from_hessian(H, sigma2))
