"""LiDAR-on-image overlays: the first picture a calibration user looks at.

Points are projected with a candidate ``T_camera_lidar`` and painted on the
image coloured by depth (near = red, far = blue, the usual turbo map), so a
misaligned extrinsic shows up as depth edges that miss the image edges.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .geometry import CameraModel, project_lidar


@dataclass(frozen=True)
class OverlayStyle:
    """How points are drawn: dot radius [pixels], depth range of the colour map [m]."""

    radius_px: int = 1
    min_depth_m: float = 1.0
    max_depth_m: float = 40.0
    dim_image: float = 0.7  # darken the photo so the dots stand out


def _disc_offsets(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    dx, dy = np.meshgrid(r, r)
    keep = dx**2 + dy**2 <= radius**2 + radius  # a rounder disc than the strict circle for small r
    return np.stack([dx[keep], dy[keep]], axis=1)


def depth_colors(depth_m: np.ndarray, style: OverlayStyle = OverlayStyle()) -> np.ndarray:
    """RGB uint8 colours (N, 3) for depths [m]: turbo map, near red, far blue."""
    scaled = (np.clip((depth_m - style.min_depth_m) / (style.max_depth_m - style.min_depth_m), 0, 1) * 255)
    lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_TURBO)[:, 0, ::-1]
    return lut[255 - scaled.astype(np.uint8)]


def draw_projection(image_rgb: np.ndarray, points_lidar: np.ndarray, T_camera_lidar: np.ndarray,
                    camera: CameraModel, style: OverlayStyle = OverlayStyle()) -> np.ndarray:
    """Return a copy of ``image_rgb`` (H, W, 3 uint8) with LiDAR points drawn on it.

    ``points_lidar`` (N, >=3) [m] in the LiDAR frame; ``T_camera_lidar`` maps
    them into the camera optical frame. Nearer points are drawn over farther ones.
    """
    out = (image_rgb.astype(np.float32) * style.dim_image).astype(np.uint8)
    uv, depth, valid = project_lidar(points_lidar, T_camera_lidar, camera)
    uv, depth = uv[valid], depth[valid]
    order = np.argsort(-depth, kind="stable")  # far first, so near points overwrite them
    return paint_dots(out, uv[order], depth_colors(depth[order], style), style.radius_px)


def paint_dots(image_rgb: np.ndarray, uv: np.ndarray, colors: np.ndarray, radius_px: int = 2) -> np.ndarray:
    """Paint discs of ``colors`` (N, 3) uint8 at pixels ``uv`` (N, 2) onto ``image_rgb`` in place; returns it.

    Later points are drawn over earlier ones; parts outside the image are clipped.
    """
    uv = np.rint(np.asarray(uv)).astype(np.int64)
    h, w = image_rgb.shape[:2]
    for dx, dy in _disc_offsets(radius_px):  # loop over the few disc offsets, vectorised over points
        u, v = uv[:, 0] + dx, uv[:, 1] + dy
        inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
        image_rgb[v[inside], u[inside]] = colors[inside]
    return image_rgb


def side_by_side(images: list[np.ndarray], labels: list[str] | None = None) -> np.ndarray:
    """Stack RGB images vertically (resized to the first one's width), with optional captions."""
    width = images[0].shape[1]
    rows = []
    for i, img in enumerate(images):
        if img.shape[1] != width:
            img = cv2.resize(img, (width, round(img.shape[0] * width / img.shape[1])), interpolation=cv2.INTER_AREA)
        img = np.ascontiguousarray(img)
        if labels:
            cv2.putText(img, labels[i], (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 4, cv2.LINE_AA)
            cv2.putText(img, labels[i], (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2, cv2.LINE_AA)
        rows.append(img)
    return np.vstack(rows)
