"""Image edges as distance-transform pyramids: the window objective's camera half.

Canny edges of the undistorted image are thinned where they are dense
(foliage, gravel and fine texture produce edges everywhere, so a LiDAR point
would find one wherever it lands), then turned into the distance to the
nearest edge, in pixels, measured to each edge's sub-pixel position. Coarse
levels are the same distance field at a lower resolution and blurred, so a
coarse level has a wide, smooth basin and costs little memory; each level
stores the distance and its two derivatives, ready
for bilinear sampling with :func:`cv2.remap`.

Sub-pixel. Canny marks one pixel of each edge, and for a step between two
pixels it marks the lower index in u and in v whatever the polarity (the two
gradient maxima tie and non-maximum suppression keeps the first), so pixel
edges sit half a pixel up and left of the true boundary: a systematic 0.04°
on a KITTI-size camera. Each edge pixel is therefore moved along its gradient
to the peak of a parabola through the gradient magnitude there and one pixel
either side, and distances are measured to those positions.

Contrast. At a coarse level a textured region (foliage, a fence, gravel that
survived the density filter) has small distances everywhere, so any point
landing in it scores as if aligned; over a ±10° search those regions attract
the projection more than the true alignment does (measured on real KITTI:
poses 10-15° off outscored the truth's neighbourhood at σ = 1°). The coarse
levels therefore also store the local mean of their robust score (the score a
point would get for landing anywhere near there): the window's search levels
score ``s - mean(s)``, which is zero on uniform texture and positive only
where the point sits on an edge that stands out from its surroundings.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


_ROW = 4096


@dataclass(frozen=True)
class ImageEdgeConfig:
    pre_blur_px: float = 1.0          # Gaussian blur before Canny
    high_percentile: float = 90.0     # Canny's high threshold: this percentile of the gradient magnitude
    low_ratio: float = 0.4            # Canny's low threshold, relative to the high one
    min_high: float = 20.0            # never below this gradient (flat, noisy images would be all edges)
    density_window_px: int = 21       # edge density is measured in boxes of this size ...
    max_density: float = 0.25         # ... and edges where it is higher (texture, foliage) are removed
    max_distance_px: float = 100.0    # the distance field saturates here (nothing beyond pulls)
    oriented: bool = True             # separate fields for upright and level edges (see detect_edges)
    orientation_band_deg: float = 60.0
    subpixel: bool = True             # distances to each edge's sub-pixel position (module docstring)
    contrast_radius: float = 3.0      # the local mean of a level's score is taken over this many of its sigmas


@dataclass
class EdgeLevel:
    """One pyramid level: ``field`` (h, w, 3) float32 = distance [full-resolution px] and its derivatives
    with respect to full-resolution u and v, sampled at level pixel ``scale * (u, v)``. Contrast levels
    have a fourth channel: the local mean of the level's robust score (module docstring)."""

    field: np.ndarray
    scale: float
    image_size: tuple[int, int]   # (W, H) of the full-resolution image [px]
    second_row: int = 0           # stacked levels (:func:`stack_levels`): the row where the second field starts


@dataclass
class ImageEdges:
    """Edges of one image: ``upright`` and ``level`` masks (H, W) and ``position`` (H, W, 2) float32, the
    sub-pixel (u, v) [px] of every edge pixel (its own pixel centre where ``subpixel`` is off)."""

    upright: np.ndarray
    level: np.ndarray
    position: np.ndarray


def _bilinear(image: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``image`` (H, W) sampled bilinearly at (u, v), clamped to the image (one gather, for the few edge
    pixels of one image; :func:`sample_level`'s row layout is for the many samples of the objective)."""
    H, W = image.shape
    u, v = np.clip(u, 0, W - 1.001), np.clip(v, 0, H - 1.001)
    u0, v0 = u.astype(np.int64), v.astype(np.int64)
    a, b = u - u0, v - v0
    return ((1 - a) * (1 - b) * image[v0, u0] + a * (1 - b) * image[v0, u0 + 1]
            + (1 - a) * b * image[v0 + 1, u0] + a * b * image[v0 + 1, u0 + 1])


def pixel_positions(shape: tuple[int, int]) -> np.ndarray:
    """(H, W, 2) float32 (u, v) of every pixel centre."""
    v, u = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    return np.stack([u, v], -1)


def _subpixel_positions(edges: np.ndarray, gx: np.ndarray, gy: np.ndarray, mag: np.ndarray) -> np.ndarray:
    """(H, W, 2) (u, v) of each edge pixel moved along its gradient to the parabolic peak of ``mag``."""
    position = pixel_positions(edges.shape)
    ev, eu = np.nonzero(edges)
    if not len(ev):
        return position
    g = np.c_[gx[ev, eu], gy[ev, eu]]
    n = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-6)
    ahead = _bilinear(mag, eu + n[:, 0], ev + n[:, 1])
    behind = _bilinear(mag, eu - n[:, 0], ev - n[:, 1])
    curvature = ahead - 2.0 * mag[ev, eu] + behind
    peak = curvature < 0
    offset = np.where(peak, 0.5 * (behind - ahead) / np.where(peak, curvature, -1.0), 0.0)
    position[ev, eu] += np.clip(offset, -0.5, 0.5)[:, None] * n
    return position


def detect_edges(grey: np.ndarray, cfg: ImageEdgeConfig = ImageEdgeConfig(), valid: np.ndarray | None = None
                 ) -> ImageEdges:
    """Edges of a uint8 grey image (H, W), dense texture removed, split by orientation, with positions.

    ``valid`` (H, W) bool, where given, marks the pixels the lens saw (:meth:`..camera_views.Undistorter.
    valid_region`): the thresholds come from them alone and no edge is kept outside them.

    ``upright``: edges whose gradient is within ``orientation_band_deg`` of
    horizontal (what a silhouette crossing a LiDAR ring looks like);
    ``level``: within it of vertical (a silhouette between two beams). The
    bands overlap, so an oblique edge serves both. With ``oriented`` off both
    masks are all edges.
    """
    g = cv2.GaussianBlur(grey, (0, 0), cfg.pre_blur_px) if cfg.pre_blur_px > 0 else grey
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.sqrt(gx * gx + gy * gy)   # not cv2.magnitude: its last bits depend on the buffer's alignment
    high = max(float(np.percentile(mag if valid is None else mag[valid], cfg.high_percentile)), cfg.min_high)
    edges = cv2.Canny(g, cfg.low_ratio * high, high, L2gradient=True) > 0   # the same 3x3 Sobel magnitude
    if valid is not None:
        edges &= valid
    if cfg.max_density < 1.0:
        density = cv2.boxFilter(edges.astype(np.float32), -1, (cfg.density_window_px,) * 2)
        edges &= density <= cfg.max_density
    position = _subpixel_positions(edges, gx, gy, mag) if cfg.subpixel else pixel_positions(edges.shape)
    if not cfg.oriented:
        return ImageEdges(edges, edges, position)
    slope = np.tan(np.radians(cfg.orientation_band_deg))
    ax, ay = np.abs(gx), np.abs(gy)
    return ImageEdges(edges & (ay <= slope * ax), edges & (ax <= slope * ay), position)


def robust_score(d: np.ndarray, sigma_px: float) -> np.ndarray:
    """Geman-McClure score ``s^2 / (s^2 + d^2)`` of edge distances ``d`` [px] at scale ``sigma_px``: 1 on
    an edge, 1/2 at one sigma, falling off as 1/d^2."""
    s2 = sigma_px * sigma_px
    return s2 / (s2 + d * d)


def edge_distance(edges: np.ndarray, position: np.ndarray | None = None) -> np.ndarray:
    """(H, W) float32 distance [px] from each pixel to the nearest edge pixel of ``edges``, measured to that
    edge's ``position`` (H, W, 2) when given (sub-pixel), else to its pixel centre."""
    background = (~edges).astype(np.uint8)
    if position is None:
        return cv2.distanceTransform(background, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    # the nearest edge pixel of every pixel, then the exact distance to where that edge really is
    _, labels = cv2.distanceTransformWithLabels(background, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    ev, eu = np.nonzero(edges)
    where = np.zeros((labels.max() + 1, 2), np.float32)
    where[labels[ev, eu]] = position[ev, eu]
    offset = where[labels] - pixel_positions(edges.shape)
    return np.hypot(offset[..., 0], offset[..., 1])


def distance_levels(edges: np.ndarray, sigmas_px: list[float], cfg: ImageEdgeConfig = ImageEdgeConfig(),
                    contrast_levels: int = 0, position: np.ndarray | None = None) -> list[EdgeLevel]:
    """One :class:`EdgeLevel` per smoothing scale ``sigmas_px`` [full-resolution px].

    Distances are to the edges' sub-pixel ``position`` (:class:`ImageEdges`) when given. Level k is
    stored at ``scale = min(1, 2 / sigma)`` of the full resolution (a field blurred by sigma needs no more)
    and blurred by sigma / 2. The first ``contrast_levels`` levels also get their score's local mean.
    """
    H, W = edges.shape
    if edges.any():
        dist = edge_distance(edges, position)
    else:
        dist = np.full((H, W), cfg.max_distance_px, np.float32)
    dist = np.minimum(dist, cfg.max_distance_px).astype(np.float32)
    levels = []
    for sigma in sigmas_px:
        scale = min(1.0, 2.0 / max(sigma, 1e-6))
        w, h = max(int(round(W * scale)), 2), max(int(round(H * scale)), 2)
        d = dist if scale == 1.0 else cv2.resize(dist, (w, h), interpolation=cv2.INTER_AREA)
        blur = 0.5 * sigma * scale
        if blur >= 0.3:
            d = cv2.GaussianBlur(d, (0, 0), blur)
        sx, sy = w / W, h / H
        contrast = len(levels) < contrast_levels
        field = np.empty((h, w, 4 if contrast else 3), np.float32)
        field[..., 0] = d
        # central differences, converted from per-level pixel to per-full-resolution pixel
        field[..., 1] = cv2.Sobel(d, cv2.CV_32F, 1, 0, ksize=1, scale=0.5 * sx)
        field[..., 2] = cv2.Sobel(d, cv2.CV_32F, 0, 1, ksize=1, scale=0.5 * sy)
        if contrast:
            score = robust_score(d, sigma).astype(np.float32)
            field[..., 3] = cv2.GaussianBlur(score, (0, 0), cfg.contrast_radius * sigma * scale)
        levels.append(EdgeLevel(field, scale, (W, H)))
    return levels


def stack_levels(first: list[EdgeLevel], second: list[EdgeLevel]) -> list[EdgeLevel]:
    """Two pyramids of one image (upright and level edges) as one, each level's fields one above the other.

    One :func:`sample_level` call then serves points of either kind (``second`` marks those of the second
    field) instead of two calls and a split by mask: the window objective samples every keyframe at every
    step, and that split was a fifth of a global search. A row repeating each field's edge row separates
    them, so bilinear samples near the seam never mix the two.
    """
    if first is second:
        return first
    out = []
    for a, b in zip(first, second):
        field = np.concatenate([a.field, a.field[-1:], b.field[:1], b.field], axis=0)
        out.append(EdgeLevel(field, a.scale, a.image_size, a.field.shape[0] + 2))
    return out


def field_coordinates(u: np.ndarray, v: np.ndarray, scale: float, row: float | np.ndarray = 0.0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` coordinates (float32) in a level's field of full-resolution pixels ``u``, ``v`` [px].

    Level pixel centres sit at ``(u + 0.5) * scale - 0.5``; ``row`` (a scalar or one per point) is the
    row where the point's field starts on a stacked level (:func:`stack_levels`). Computed in the inputs'
    precision, then clipped: pixels far outside the image (points behind the camera) would overflow
    remap's fixed-point coordinates.
    """
    mx = ((u + 0.5) * scale - 0.5).astype(np.float32, copy=False)
    my = ((v + 0.5) * scale - 0.5 + row).astype(np.float32, copy=False)
    np.clip(mx, -2.0, 32000.0, out=mx)
    np.clip(my, -2.0, 32000.0, out=my)
    return mx, my


def sample_level(level: EdgeLevel, uv: np.ndarray, outside: float, second: np.ndarray | None = None
                 ) -> np.ndarray:
    """(N, C) distance [px], d/du, d/dv (and on contrast levels the score's local mean) at full-resolution
    pixels ``uv`` (N, 2); beyond the image the distance is ``outside`` and the other channels 0. On a
    stacked level, points marked ``second`` (N,) bool are sampled from its second field.

    Inside the image the field is clamped at its edge (a coarse level's outer half pixel would otherwise
    blend with the ``outside`` value, scoring points near the border as far from every edge).
    """
    n = len(uv)
    s = level.scale
    W, H = level.image_size
    # remap's maps are images (each side < 32767): lay the samples out in rows of at most _ROW
    cols = min(max(n, 1), _ROW)
    rows = -(-max(n, 1) // cols)
    mx = np.full(rows * cols, -10.0, np.float32)
    my = np.full(rows * cols, -10.0, np.float32)
    row = np.where(second, level.second_row, 0) if level.second_row and second is not None else 0.0
    mx[:n], my[:n] = field_coordinates(uv[:, 0], uv[:, 1], s, row)
    off = (uv[:, 0] < -0.5) | (uv[:, 0] > W - 0.5) | (uv[:, 1] < -0.5) | (uv[:, 1] > H - 0.5)
    out = cv2.remap(level.field, mx.reshape(rows, cols), my.reshape(rows, cols), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    out = out.reshape(rows * cols, -1)[:n].astype(np.float64)
    if off.any():
        out[off] = 0.0
        out[off, 0] = outside
    return out
