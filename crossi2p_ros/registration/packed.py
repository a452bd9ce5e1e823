"""A window's edge points packed across its keyframes, so one pose is scored in one pass.

The window objective visits every keyframe at every step of every
refinement. Looping over keyframes made each step a few dozen small numpy
calls per keyframe, and for a 20-keyframe window that call overhead, not the
arithmetic, was most of a solve (profiled: 5.7 ms to score one pose on 26,000
points, of which 0.8 ms is the projection done once for all). Here the points
of all keyframes are one array with per-point intrinsics, image size and
weight; only the distance-field lookup stays per keyframe (each has its own
image), and it is one ``cv2.remap`` each.

Frames: points [m, LiDAR frame]; pixels of each keyframe's full-resolution
pinhole image.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np

from .image_edges import field_coordinates

if TYPE_CHECKING:
    from .window import Keyframe

# remap's maps are images, each side below 32767: a keyframe's samples go in rows of at most this many
_ROW = 8192


@dataclass
class PackedEdges:
    """The first ``count`` edge points of each keyframe, one after another.

    ``offsets`` (F + 1,) delimit keyframe f's points ``[offsets[f], offsets[f + 1])``; ``weight`` (N,) is
    1 / (the keyframe's number of points), so ``score @ weight`` sums the keyframes' mean scores.
    """

    keyframes: list["Keyframe"]
    xyz: np.ndarray                    # (N, 3) [m, LiDAR frame]
    along: np.ndarray                  # (N,) bool: along-ring points (sampled from the upright-edge field)
    offsets: np.ndarray                # (F + 1,)
    frame: np.ndarray                  # (N,) keyframe index of each point
    weight: np.ndarray                 # (N,)
    K: np.ndarray                      # (N, 5): fx, skew, cx, fy, cy of each point's keyframe
    size: np.ndarray                   # (N, 2): the last valid u and v, width - 1 and height - 1 [px]
    focal: np.ndarray                  # (N,) mean focal length [px]
    _levels: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    def project(self, T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Camera-frame points (N, 3) [m], pixels (N, 2) and the mask of points in front of the camera
        (> 0.5 m) and inside their image, at ``T`` (T_camera_lidar, 4x4)."""
        p = self.xyz @ T[:3, :3].T + T[:3, 3]
        z = p[:, 2]
        front = z > 0.5
        iz = 1.0 / np.where(front, z, 1.0)
        x, y = p[:, 0] * iz, p[:, 1] * iz
        K = self.K
        uv = np.stack([K[:, 0] * x + K[:, 1] * y + K[:, 2], K[:, 3] * y + K[:, 4]], -1)
        inside = front & (uv[:, 0] >= 0) & (uv[:, 0] <= self.size[:, 0]) & (uv[:, 1] >= 0) & \
            (uv[:, 1] <= self.size[:, 1])
        return p, uv, inside

    def _level(self, level: int) -> tuple[np.ndarray, np.ndarray]:
        """Per point: the level's scale (full-resolution to level pixels) and the row offset of its field."""
        if level not in self._levels:
            scale = np.array([kf.levels[level].scale for kf in self.keyframes])[self.frame]
            second = np.array([kf.levels[level].second_row for kf in self.keyframes], np.float64)[self.frame]
            self._levels[level] = scale, np.where(self.along, 0.0, second)
        return self._levels[level]

    def sample(self, level: int, uv: np.ndarray) -> np.ndarray:
        """(N, C) distance [px], d/du, d/dv (and on contrast levels the score's local mean) at pixels ``uv``
        (N, 2), each point from its keyframe's field (:func:`.image_edges.sample_level` for points inside
        the image; points outside get meaningless values, which callers mask)."""
        scale, row = self._level(level)
        mx, my = field_coordinates(uv[:, 0], uv[:, 1], scale, row)
        channels = self.keyframes[0].levels[level].field.shape[2] if self.keyframes else 3
        out = np.empty((len(uv), channels), np.float32)
        for f, kf in enumerate(self.keyframes):
            for a in range(int(self.offsets[f]), int(self.offsets[f + 1]), _ROW):
                b = min(a + _ROW, int(self.offsets[f + 1]))
                out[a:b] = cv2.remap(kf.levels[level].field, mx[None, a:b], my[None, a:b], cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REPLICATE).reshape(b - a, -1)
        return out.astype(np.float64)


def pack_edges(keyframes: Sequence["Keyframe"], count: int | None = None) -> PackedEdges:
    """The first ``count`` (all when None) edge points of every keyframe in ``keyframes``, packed."""
    kfs = list(keyframes)
    chosen = [(kf.edges, kf.along) if count is None else (kf.edges[:count], kf.along[:count]) for kf in kfs]
    n = np.array([len(e) for e, _ in chosen], np.int64)
    offsets = np.r_[0, np.cumsum(n)]
    frame = np.repeat(np.arange(len(kfs)), n)
    xyz = np.concatenate([e for e, _ in chosen]) if kfs else np.zeros((0, 3))
    along = np.concatenate([a for _, a in chosen]) if kfs else np.zeros(0, bool)
    per_frame_K = np.array([[kf.K[0, 0], kf.K[0, 1], kf.K[0, 2], kf.K[1, 1], kf.K[1, 2]] for kf in kfs]).reshape(-1, 5)
    per_frame_size = np.array([[kf.width - 1, kf.height - 1] for kf in kfs], np.float64).reshape(-1, 2)
    focal = np.array([kf.focal_px for kf in kfs], np.float64)
    weight = (1.0 / np.maximum(n, 1))[frame]
    return PackedEdges(kfs, xyz, along, offsets, frame, weight, per_frame_K[frame], per_frame_size[frame],
                       focal[frame])
