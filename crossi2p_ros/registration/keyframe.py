"""A keyframe: one frame's features for the window objective, prepared once.

LiDAR depth discontinuities (:mod:`.lidar_edges`) and the image's edge-distance
pyramid (:mod:`.image_edges`); with them, for a solve without a prior, the
motion proposal's features (:mod:`.motion`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from ..camera_views import working_view
from ..geometry import CameraModel, project_pinhole, se3_exp, transform_points
from .deskew import SweepTiming, deskew
from .image_edges import EdgeLevel, detect_edges, distance_levels, sample_level, stack_levels
from .motion import MotionFeatures, motion_features
from .sweep_edges import SweepEdges, sweep_edges
from .window_config import WindowConfig


@dataclass
class Keyframe:
    """One frame prepared for the window objective.

    ``edges`` (M, 3) [m, LiDAR frame] are shuffled once, so the first n of
    them are a fair subset for any n; ``along`` marks the along-ring ones; ``spans`` (M, 3) [m] the
    interval where each one's silhouette may lie (``WindowConfig.interval_spacing``).
    ``levels`` follow ``WindowConfig.sigma_deg``, each the upright image
    edges' field (for the along-ring points) stacked on the level edges' one
    (for the across-ring points), :func:`.image_edges.stack_levels`.
    """

    edges: np.ndarray
    along: np.ndarray
    levels: list[EdgeLevel]
    K: np.ndarray
    width: int
    height: int
    focal_px: float
    ring_source: str
    stamp: float | None = None
    motion: MotionFeatures | None = None    # for the motion proposal without a prior (:mod:`.motion`)
    spans: np.ndarray | None = None         # (M, 3) [m]: each edge's interval (LidarEdges.spans); None: zeros
    # (6,) the LiDAR's body twist (v [m/s], w [rad/s]) while the frame was taken (:mod:`.deskew`); the edges
    # are then motion-compensated to the camera's stamp, and the window can estimate the camera's time offset
    twist: np.ndarray | None = None
    twist_sigma_rel: float = 0.0            # the twist's speed uncertainty, a share of the speed (SweepTiming)
    intrinsics: np.ndarray = field(init=False, repr=False)   # (5,) fx, skew, cx, fy, cy [px]
    last_pixel: np.ndarray = field(init=False, repr=False)   # (2,) W - 1, H - 1 [px]

    def __post_init__(self) -> None:
        K = self.K
        self.intrinsics = np.array([K[0, 0], K[0, 1], K[0, 2], K[1, 1], K[1, 2]], np.float64)
        self.last_pixel = np.array([self.width - 1, self.height - 1], np.float64)
        if self.spans is None or len(self.spans) != len(self.edges):
            self.spans = np.zeros_like(self.edges)

    @property
    def nbytes(self) -> int:
        return int(self.edges.nbytes + self.spans.nbytes + sum(level.field.nbytes for level in self.levels)
                   + (self.motion.nbytes if self.motion is not None else 0))

    def subset(self, keep: np.ndarray | slice) -> "Keyframe":
        """The same keyframe with only the edge points ``keep`` (a mask or a slice), order kept."""
        return replace(self, edges=self.edges[keep], along=self.along[keep], spans=self.spans[keep])

    def shifted(self, dt_s: float) -> "Keyframe":
        """The keyframe with its edges moved ``dt_s`` [s] on along its twist (the LiDAR frame ``dt_s`` later:
        a camera exposed that long after its stamp sees them there); itself without a twist."""
        if self.twist is None or dt_s == 0.0:
            return self
        T = se3_exp(-float(dt_s) * self.twist)
        return replace(self, edges=self.edges @ T[:3, :3].T + T[:3, 3], spans=self.spans @ T[:3, :3].T)

    def rolled(self, T_camera_lidar: np.ndarray, readout_s: float) -> "Keyframe":
        """The keyframe with each edge moved on along its twist by when a rolling shutter exposed the row it
        projects to under ``T_camera_lidar``: rows are read out top to bottom over ``readout_s`` [s], the middle
        row at the camera's exposure time (where the edges are). Itself without a twist or a readout.

        The row is that of the working (undistorted) image, taken for the sensor's: a lens's distortion moves
        a point's row by a few percent of the image, a few percent of the readout. The spans are not re-timed
        (they turn by the yaw rate times a few ms)."""
        if self.twist is None or readout_s <= 0 or len(self.edges) == 0:
            return self
        uv, front = project_pinhole(self.K, transform_points(T_camera_lidar, self.edges), 0.5)
        row = np.clip(np.nan_to_num(uv[:, 1], nan=0.5 * self.height), 0.0, self.height - 1.0)
        row = np.where(front, row, 0.5 * self.height)
        later = ((row + 0.5) / self.height - 0.5) * readout_s
        # seen from the LiDAR frame that much later (deskew's exp((t - tau) xi) p with t = -later, tau = 0)
        return replace(self, edges=deskew(self.edges, -later, self.twist, 0.0))

    def in_image(self, uv: np.ndarray, front: np.ndarray) -> np.ndarray:
        """Mask of projections ``uv`` (N, 2) in front of the camera (``front``) and inside the image."""
        return front & (uv[:, 0] >= 0) & (uv[:, 0] <= self.width - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= self.height - 1)

    def sample(self, level: int, uv: np.ndarray, along: np.ndarray, outside: float) -> np.ndarray:
        """(N, C) edge distance [px], its derivatives (and on contrast levels the score's local mean) at
        pixels ``uv`` (N, 2), each point from its field."""
        return sample_level(self.levels[level], uv, outside, ~along)


def prepare_keyframe(image_pinhole: np.ndarray, points: np.ndarray, camera: CameraModel,
                     cfg: WindowConfig = WindowConfig(), ring: np.ndarray | None = None,
                     stamp: float | None = None, motion: bool = True, valid: np.ndarray | None = None,
                     timing: SweepTiming | None = None, sweep: SweepEdges | None = None) -> Keyframe:
    """Features of one frame: ``image_pinhole`` (H, W[, 3]) uint8 already undistorted to pinhole ``camera``,
    ``points`` (N, >=3) [m, LiDAR frame] in any order, ``ring`` (N,) the beam of each point if known,
    ``valid`` (H, W) bool the pixels the lens saw (:func:`.inputs.valid_region`; None: all). Images whose
    focal length exceeds ``cfg.max_focal_px`` are worked on downscaled to it (the keyframe's ``K``, ``width``
    and ``height`` are then the downscaled camera's).

    With ``motion`` (and ``cfg.motion.enabled``) the keyframe keeps the motion proposal's features too; only
    a solve without a prior uses them (about 45 ms and 170 KB a KITTI-size keyframe).

    With ``timing`` (each point's time and the LiDAR's twist) the edges, found in the sweep as measured, are
    moved to the camera's stamp (:func:`.deskew.deskew`), each at the time of its nearest measured point, and
    the keyframe keeps the twist for the window's time offset.

    ``sweep``: the sweep's edges already found (:func:`.sweep_edges.sweep_edges` of these ``points``, ``ring``
    and ``timing.times_s``), e.g. by another camera on the same LiDAR; found here when None."""
    grey = cv2.cvtColor(image_pinhole, cv2.COLOR_RGB2GRAY) if image_pinhole.ndim == 3 else image_pinhole
    grey, camera, valid = working_view(grey, camera, cfg.max_focal_px, valid)
    focal = float(0.5 * (camera.K[0, 0] + camera.K[1, 1]))
    sigmas = [focal * np.radians(s) for s in cfg.sigma_deg]
    edges = detect_edges(np.ascontiguousarray(grey), cfg.image, valid)
    if sweep is None:
        sweep = sweep_edges(points, ring, cfg, None if timing is None else timing.times_s)
    found = sweep.edges
    upright = distance_levels(edges.upright, sigmas, cfg.image, cfg.contrast_levels, edges.position)
    flat = upright if edges.level is edges.upright or found.along.all() else \
        distance_levels(edges.level, sigmas, cfg.image, cfg.contrast_levels, edges.position)
    xyz, spans, twist = found.xyz, found.spans, None
    if timing is not None and timing.twist is not None:
        twist = np.asarray(timing.twist, dtype=np.float64)
        # spans: directions, turned by < 0.1 deg; kept
        xyz = deskew(xyz, sweep.times_s, twist, timing.target_s)
    order = np.random.default_rng(cfg.seed).permutation(len(xyz))
    features = motion_features(grey, points, cfg.motion) if motion and cfg.motion.enabled else None
    return Keyframe(np.ascontiguousarray(xyz[order], np.float64), found.along[order],
                    stack_levels(upright, flat), camera.K.astype(np.float64),
                    camera.width, camera.height, focal, found.ring_source, stamp, features,
                    np.ascontiguousarray(spans[order], np.float64), twist,
                    timing.speed_sigma_rel if twist is not None else 0.0)
