"""The window estimator: one ``T_camera_lidar`` shared by a window of keyframes of one rig.

Every single-frame objective is ambiguous (docs/registration.md); summed over a
window of frames seen from different places, the wrong optima of one frame
disagree with those of the others while the truth is common to all. So the
unknown is solved jointly:

* **Keyframe** (:func:`prepare_keyframe`, once per frame): LiDAR depth
  discontinuities (:mod:`.lidar_edges`) and the image's edge-distance pyramid
  (:mod:`.image_edges`).
* **Objective**: per edge point the Geman-McClure score ``s^2 / (s^2 + d^2)``
  of its distance ``d`` [px] to the nearest image edge, ``s`` the level's
  scale; each frame's points averaged, frames summed. Points leaving the
  image score zero, so pushing points out of view never pays. At the search's
  coarse levels the score's local mean is subtracted (:mod:`.image_edges`,
  "Contrast"), so landing on texture does not count as alignment.
* **Global search** (:meth:`WindowEstimator.solve`): a rotation grid around
  each start (the prior, the network's proposals) scored at the coarsest
  level, the best refined in rotation alone; then a translation grid with
  depth-compensating rotations; the best distinct poses refined coarse to fine
  by Levenberg-Marquardt (IRLS with the same robust weights), bounded to the
  search region; the best final score wins. A pose found far (in
  translation) from its start gets a second pass from itself.
* **Uncertainty** (:meth:`WindowEstimator.covariance`): the information
  (J^T W J from one-sided slopes) of the edge distances at the finest level, scaled by the
  residual variance and by the number of edge points that count as one
  independent sample, plus the spread over random halves of the window, rival
  optima and a floor for the edge model's bias; measured against the truth in
  benchmarks/window.py. Axes with too little information are reported as
  unconstrained, and "converged" is claimed only when every axis is below the
  configured bounds and the window has enough keyframes for its halves to
  disagree (short of it, no axis is tighter than the search region).

Poses are perturbed on the left in the camera frame, ``T <- exp(delta) T``
with ``delta = (rho [m], phi [rad])`` (:func:`..geometry.se3_exp`), and the
covariance is over that ``delta``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Sequence

import cv2
import numpy as np

from ..geometry import (CameraModel, PoseError, invert, pose_distance, pose_distances, project_pinhole, se3_exp,
                        se3_log, transform_points)
from .edge_kernels import (linearise_poses, linearise_poses_intervals, map_in_threads, score_poses,
                           score_poses_intervals)
from .image_edges import (EdgeLevel, ImageEdgeConfig, detect_edges, distance_levels, robust_score, sample_level,
                          stack_levels)
from .lidar_edges import LidarEdgeConfig, depth_edges
from .motion import MotionConfig, MotionFeatures, MotionProposal, motion_features, rotation_from_motion
from .solver import axis_sigmas, covariance_from_hessian, damped_step

# of delta: translation along, and rotation about, the camera optical frame's x (right), y (down), z (forward)
# axes; for a forward-looking camera, rotation about x tilts it (pitch), about y pans it (yaw), about z rolls it
AXES = ("x", "y", "z", "pitch", "yaw", "roll")


@dataclass(frozen=True)
class WindowConfig:
    """Settings of the window estimator (angles [deg], distances [m], pixels of the full-resolution image)."""

    lidar: LidarEdgeConfig = field(default_factory=LidarEdgeConfig)
    image: ImageEdgeConfig = field(default_factory=ImageEdgeConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    # coarse to fine: the robust scale of each level as an angle (times the focal length gives pixels). The
    # finest is about the LiDAR edges' own localisation (a silhouette lies anywhere within half a beam step,
    # 0.1-0.2 deg, of its edge point): a narrower kernel only counts lucky hits. From the truth
    # (benchmarks/window_bias.py) a finest 0.06 deg left the optimum 2.3 / 3.4 / 2.7 cm off (urban, suburban,
    # real KITTI median), 0.16 deg 0.75 / 2.7 / 2.35 cm (docs/benchmarks.md, "Bias")
    sigma_deg: tuple[float, ...] = (1.0, 0.5, 0.25, 0.16)
    points_per_level: tuple[int, ...] = (600, 800, 1200, 2000)   # edge points per frame and level
    iterations_per_level: int = 8
    contrast_levels: int = 3           # the coarsest levels (the search's) score against their local mean
    rotation_only_levels: int = 2      # the coarsest levels solve for rotation alone (translation barely
                                       # moves far points, and freed it drifts to shrink the projection)
    min_edge_points: int = 30          # keyframes with fewer edge points in the image are skipped
    # across-ring edges only from sensors whose rings are this close (lidar_edges.ring_gap_deg): the
    # silhouette lies anywhere within one gap of its point, and from a 32-beam sensor's 1.3 deg they pull the
    # pose off (from the truth, synthetic 32-beam drives end 0.5-0.7 deg off with them, 0.04 deg without;
    # real nuScenes single frames 3.5 deg median against 1.3 deg), while from a 64-beam's 0.33-0.43 deg they
    # pin the vertical (real KITTI without them: 0.22 deg / 3.1 cm against 0.15 deg / 2.1 cm). Set between the
    # two measured sensors; docs/benchmarks.md, "Coarse rings"
    max_across_ring_gap_deg: float = 0.8
    # an edge point may stand for the interval between its pair's two beams (LidarEdges.spans), where the
    # silhouette may lie anywhere: it then scores at the best of samples spread over it at most this many robust
    # scales apart (only where the interval is longer than the level's kernel). 0, the default: at its bisector
    # alone. Measured at 2.0 (docs/benchmarks.md, "Edge intervals"): synthetic +-10 deg 1.28 -> 0.92 cm, real
    # nuScenes frames 33 -> 18 cm, but real KITTI windows 0.66 -> 1.53 cm and solves 1.56x as long; off until a
    # second real drive says which way it goes
    interval_spacing: float = 0.0
    max_interval_samples: int = 8      # ... and at most this many
    # global search around the start: the calib protocol's bounds (DESIGN.md)
    search_rot_deg: float = 10.0
    search_trans_m: float = 0.5
    grid_rot_step_deg: float = 2.0
    grid_trans_step_m: float = 0.1     # the bound's slack (one step); the grids' own steps are below
    # translation grids, coarse to fine: (level scored at, step [m], radius [m]) around the best so far
    translation_stages: tuple[tuple[int, float, float], ...] = ((2, 0.1, 0.5),)   # one stage measured best
    compensation_depths: tuple[float, ...] = (0.5, 1.0, 2.0)   # of the median depth (see translation_grid)
    search_points: int = 100           # per frame, for scoring the grids
    candidates: int = 12               # distinct rotations refined at the coarse levels ...
    finalists: int = 5                 # ... of which this many get a translation grid, keeping this many each
                                       # (4: real KITTI +-10 deg 80 % success, 1 false convergence; 5: 90 %, 0)
    search_passes: int = 2             # passes of the global search (solve, step 4) ...
    research_trans_m: float = 0.1      # ... another one while the best pose lies farther than this from the last
    distinct_deg: float = 1.5          # candidates closer than this are the same basin
    middle_levels: int = 2             # all searched poses are refined this many levels past the rotation-only ones ...
    finals: int = 3                    # ... and the best this many of them on to the finest level
    duplicate_rot_deg: float = 0.05    # poses refined to within this of a better one are the same optimum
    duplicate_trans_m: float = 0.005
    # uncertainty
    resamples: int = 6                 # random halves of the window refined from its pose (resampled_covariance)
    resample_levels: int = 2           # ... at this many of the finest levels
    correlated_points: float = 8.0     # edge points that count as one independent sample
    floor_rot_deg: float = 0.08        # added in quadrature: the edge model's own bias (converged held-out
    floor_trans_m: float = 0.015       # synthetic windows end 0.02-0.11 deg / 0.5-3.8 cm off, docs/benchmarks.md)
    converged_rot_deg: float = 0.2     # "converged": no rotation direction with more sigma than this ...
    converged_trans_m: float = 0.02    # ... and no translation direction with more than this
    min_keyframes_converged: int = 4   # ... and at least this many keyframes: the halves of the window must be
                                       # able to disagree (resampled_covariance); 1-2 keyframes can agree on a
                                       # wrong pose with a tight curvature (benchmarks/window_convergence.py)
    unconstrained_rot_deg: float = 2.0  # an axis with more sigma than this is reported as unconstrained
    unconstrained_trans_m: float = 0.2
    min_score: float = 0.1             # mean per-frame score at the finest level for a result to count
    ambiguity: float = 0.05            # a distinct pose scoring within this fraction of the best: ambiguous
    rival_rounds: int = 4              # ... once refined this many more rounds at the finest level (_settle_rivals)
    # without any prior: the usual mounts (camera level with the LiDAR's horizon, any heading), one per
    # this many degrees of yaw (each one's search region, search_rot_deg, covers the gaps and the tilt)
    mount_yaw_step_deg: float = 10.0
    mount_finalists: int = 2           # best-scoring mounts solved with the global search ...
    mount_search_trans_m: float = 1.0  # ... over this translation radius (a camera can sit a metre from the LiDAR)
    mount_translation_stages: tuple[tuple[int, float, float], ...] = ((2, 0.2, 1.0), (2, 0.1, 0.3))
    # ... unless the window's motion gives the camera's rotation (:mod:`.motion`): then that one is solved,
    # with the network's proposals within this of it (the mounts, and proposals that contradict the
    # direction of travel, are not)
    motion_gate_deg: float = 20.0
    seed: int = 0
    # threads a solve splits its keyframes over (the compiled kernels release the GIL); the result is the same
    # for any number. On our 2-core CPU two take 0.70-0.80 of one's time (9.3 -> 6.5 and 8.5 -> 6.8 s medians,
    # real KITTI, 20 keyframes from +-10 deg; refinement gains less than the grids: between kernel calls it is
    # Python; docs/benchmarks.md, "Two threads a solve")
    threads: int = 2


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

    def in_image(self, uv: np.ndarray, front: np.ndarray) -> np.ndarray:
        """Mask of projections ``uv`` (N, 2) in front of the camera (``front``) and inside the image."""
        return front & (uv[:, 0] >= 0) & (uv[:, 0] <= self.width - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= self.height - 1)

    def sample(self, level: int, uv: np.ndarray, along: np.ndarray, outside: float) -> np.ndarray:
        """(N, C) edge distance [px], its derivatives (and on contrast levels the score's local mean) at
        pixels ``uv`` (N, 2), each point from its field."""
        return sample_level(self.levels[level], uv, outside, ~along)


def prepare_keyframe(image_pinhole: np.ndarray, points: np.ndarray, camera: CameraModel,
                     cfg: WindowConfig = WindowConfig(), ring: np.ndarray | None = None,
                     stamp: float | None = None, motion: bool = True, valid: np.ndarray | None = None) -> Keyframe:
    """Features of one frame: ``image_pinhole`` (H, W[, 3]) uint8 already undistorted to pinhole ``camera``,
    ``points`` (N, >=3) [m, LiDAR frame] in any order, ``ring`` (N,) the beam of each point if known,
    ``valid`` (H, W) bool the pixels the lens saw (:func:`.inputs.valid_region`; None: all).

    With ``motion`` (and ``cfg.motion.enabled``) the keyframe keeps the motion proposal's features too; only
    a solve without a prior uses them (about 45 ms and 170 KB a KITTI-size keyframe)."""
    grey = cv2.cvtColor(image_pinhole, cv2.COLOR_RGB2GRAY) if image_pinhole.ndim == 3 else image_pinhole
    focal = float(0.5 * (camera.K[0, 0] + camera.K[1, 1]))
    sigmas = [focal * np.radians(s) for s in cfg.sigma_deg]
    edges = detect_edges(np.ascontiguousarray(grey), cfg.image, valid)
    found = depth_edges(points, ring, cfg.lidar)
    if found.ring_gap_deg > cfg.max_across_ring_gap_deg:   # no across-ring edges: no field for them either
        # ... and with along-ring edges alone nothing else outweighs a crown's clutter: left out there. Porous
        # synthetic crowns, 32 beams, +-10 deg: success 33 -> 73 %; real nuScenes frames 1.28 -> 0.94 deg median
        # (mixed per camera). On real KITTI (64 beams, across-ring edges kept) leaving them out cost 100 -> 70 %
        # from +-10 deg with 2 false convergences (docs/benchmarks.md, "Porous foliage")
        found = found.subset(found.along & ~found.cluttered)
    upright = distance_levels(edges.upright, sigmas, cfg.image, cfg.contrast_levels, edges.position)
    flat = upright if edges.level is edges.upright or found.along.all() else \
        distance_levels(edges.level, sigmas, cfg.image, cfg.contrast_levels, edges.position)
    order = np.random.default_rng(cfg.seed).permutation(len(found.xyz))
    features = motion_features(grey, points, cfg.motion) if motion and cfg.motion.enabled else None
    return Keyframe(np.ascontiguousarray(found.xyz[order], np.float64), found.along[order],
                    stack_levels(upright, flat), camera.K.astype(np.float64),
                    camera.width, camera.height, focal, found.ring_source, stamp, features,
                    np.ascontiguousarray(found.spans[order], np.float64))


@dataclass
class WindowResult:
    """A window solve. ``T_camera_lidar`` (4x4, metres); ``covariance`` (6, 6) over a left perturbation
    (rho [m], phi [rad]) in the camera frame; ``sigma_deg`` / ``sigma_m`` the per-axis standard deviations."""

    T_camera_lidar: np.ndarray
    covariance: np.ndarray
    score: float                       # mean per-frame score at the finest level, in [0, 1]
    ok: bool                           # the objective supports the pose (score, enough keyframes)
    converged: bool                    # ok, and the covariance is below the convergence bounds
    unconstrained: list[str]           # axes (AXES) the window does not constrain
    keyframes_used: int
    keyframes_skipped: int
    edge_points: int
    evaluations: int
    message: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def sigma_m(self) -> np.ndarray:
        return axis_sigmas(self.covariance)[0]

    @property
    def sigma_deg(self) -> np.ndarray:
        return axis_sigmas(self.covariance)[1]


def _ball_grid(step: float, radius: float, slack: float) -> np.ndarray:
    """Points (C, 3) of the cubic grid of ``step`` through 0 that lie within ``radius + slack`` of it."""
    r = np.arange(0.0, radius + 1e-9, step)
    r = np.concatenate([-r[:0:-1], r])
    g = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    return g[np.linalg.norm(g, axis=1) <= radius + slack]


@dataclass(frozen=True)
class _LevelInput:
    """One keyframe's edge points at one level, as the compiled kernels (:mod:`.edge_kernels`) take them."""

    points: np.ndarray                # (N, 3) [m, LiDAR frame]
    second: np.ndarray                # (N,) bool: sampled from the stacked level's second (level-edge) field
    intrinsics: np.ndarray            # Keyframe.intrinsics
    last_pixel: np.ndarray            # Keyframe.last_pixel
    level: EdgeLevel
    sigma2: float                     # the level's robust scale squared [px^2]
    # each point's interval and its samples (WindowConfig.interval_spacing): the interval kernels; None (every
    # point at its bisector) the plain ones, which are faster
    spans: np.ndarray | None = None
    samples: np.ndarray | None = None

    def _common(self, R: np.ndarray, t: np.ndarray) -> tuple:
        lev = self.level
        return (self.points, self.second, self.intrinsics, self.last_pixel, R, t, lev.field, lev.scale,
                float(lev.second_row), self.sigma2)

    def score(self, R: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Summed score (C,) at poses (R (C, 3, 3), t (C, 3)); on contrast levels less its local mean."""
        contrast = self.level.field.shape[2] > 3
        if self.spans is None:
            return score_poses(*self._common(R, t), contrast)
        return score_poses_intervals(*self._common(R, t), self.spans, self.samples, contrast)

    def linearise(self, R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Summed IRLS normal equations H (C, 6, 6), g (C, 6) at poses (R, t)."""
        if self.spans is None:
            return linearise_poses(*self._common(R, t))
        return linearise_poses_intervals(*self._common(R, t), self.spans, self.samples)


def covariance_within(cov: np.ndarray, rot_deg: float, trans_m: float) -> bool:
    """Every direction of the (rho [m], phi [rad]) covariance's translation block within ``trans_m`` and of its
    rotation block within ``rot_deg`` (one sigma): the largest eigenvalues, invariant to the frame."""
    cov = np.asarray(cov, dtype=np.float64)
    return bool(np.linalg.eigvalsh(cov[:3, :3]).max() <= trans_m ** 2
                and np.linalg.eigvalsh(cov[3:, 3:]).max() <= np.radians(rot_deg) ** 2)


class WindowEstimator:
    """Solves the window objective; stateless apart from its config, so one instance serves every window."""

    def __init__(self, cfg: WindowConfig = WindowConfig()):
        self.cfg = cfg
        self.evaluations = 0

    # ------------------------------------------------------------------ objective
    def _sigma_px(self, kf: Keyframe, level: int) -> float:
        return kf.focal_px * np.radians(self.cfg.sigma_deg[level])

    def score(self, keyframes: Sequence[Keyframe], T: np.ndarray, level: int, count: int | None = None) -> float:
        """Mean over keyframes of the mean robust score of their edge points at pose ``T`` (T_camera_lidar),
        less its local mean on contrast levels."""
        return float(self.score_many(keyframes, T[None], level, count)[0])

    def score_many(self, keyframes: Sequence[Keyframe], Ts: np.ndarray, level: int, count: int | None = None
                   ) -> np.ndarray:
        """Scores (C,) of candidate poses ``Ts`` (C, 4, 4) (T_camera_lidar), each the mean over keyframes of
        the mean score of their first ``count`` edge points (all when None)."""
        return self._score(self._level_inputs(keyframes, level, count), Ts, len(keyframes))

    def _level_inputs(self, keyframes: Sequence[Keyframe], level: int, count: int | None,
                      T_order: np.ndarray | None = None) -> list[_LevelInput]:
        """Per keyframe with edge points: the arguments of :mod:`.edge_kernels` at ``level`` for its first
        ``count`` points; prepared once per level of a refinement, used by every step.

        With ``T_order`` (a pose near those to be scored) the points are put in the order of the field
        pixels they project to there: a window's fields are tens of MB a keyframe at the finer levels, far
        more than the caches, and samples taken in memory order reuse some cache lines their neighbours
        loaded (10-20 % off the finer levels' kernel time, profiled; a sum does not depend on the order).
        """
        inputs = []
        for kf in keyframes:
            n = len(kf.edges) if count is None else count
            pts, along, spans = kf.edges[:n], kf.along[:n], kf.spans[:n]
            if len(pts) == 0:
                continue
            lev = kf.levels[level]
            if T_order is not None:
                uv, _ = project_pinhole(kf.K, transform_points(T_order, pts), 0.5)
                width = lev.field.shape[1]
                row = np.floor((uv[:, 1] + 0.5) * lev.scale) + np.where(along, 0, lev.second_row)
                order = np.argsort(row * width + np.clip((uv[:, 0] + 0.5) * lev.scale, 0, width), kind="stable")
                pts, along, spans = pts[order], along[order], spans[order]
            samples = self._interval_samples(kf, level, pts, spans)
            intervals = samples.max() > 1
            inputs.append(_LevelInput(pts, ~along, kf.intrinsics, kf.last_pixel, lev, self._sigma_px(kf, level) ** 2,
                                      np.ascontiguousarray(spans) if intervals else None,
                                      samples if intervals else None))
        return inputs

    def _interval_samples(self, kf: Keyframe, level: int, pts: np.ndarray, spans: np.ndarray) -> np.ndarray:
        """Samples (N,) int64 over each point's interval at ``level``: enough that neighbours lie at most
        ``interval_spacing`` robust scales apart in the image (the interval's angle times the focal length)."""
        if self.cfg.interval_spacing <= 0 or len(pts) == 0:
            return np.ones(len(pts), np.int64)
        span_px = kf.focal_px * np.linalg.norm(spans, axis=1) / np.maximum(np.linalg.norm(pts, axis=1), 1e-6)
        n = np.ceil(span_px / (self.cfg.interval_spacing * self._sigma_px(kf, level)))
        return np.clip(n, 1, self.cfg.max_interval_samples).astype(np.int64)

    def _score(self, inputs: list[_LevelInput], Ts: np.ndarray, n_keyframes: int) -> np.ndarray:
        """Scores (C,) of poses ``Ts`` (C, 4, 4) on prepared ``inputs`` of a window of ``n_keyframes``; on
        contrast levels (a field with a fourth channel) less the score's local mean."""
        self.evaluations += len(Ts)
        R, t = np.ascontiguousarray(Ts[:, :3, :3]), np.ascontiguousarray(Ts[:, :3, 3])
        total = np.zeros(len(Ts))
        sums = map_in_threads(lambda one: one.score(R, t), inputs, self.cfg.threads)
        for one, summed in zip(inputs, sums):
            total += summed / len(one.points)
        return total / max(n_keyframes, 1)

    def _linearise(self, inputs: list[_LevelInput], Ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normal equations H (C, 6, 6), g (C, 6) of the IRLS step at each pose of ``Ts`` (C, 4, 4), each
        keyframe's points weighted by 1 / their count (as in the score)."""
        H, g = np.zeros((len(Ts), 6, 6)), np.zeros((len(Ts), 6))
        R, t = np.ascontiguousarray(Ts[:, :3, :3]), np.ascontiguousarray(Ts[:, :3, 3])
        normals = map_in_threads(lambda one: one.linearise(R, t), inputs, self.cfg.threads)
        for one, (H_k, g_k) in zip(inputs, normals):
            H += H_k / len(one.points)
            g += g_k / len(one.points)
        return H, g

    def _inside_bounds(self, Ts: np.ndarray, T_center: np.ndarray) -> np.ndarray:
        """Whether each pose of ``Ts`` (C, 4, 4) lies within the search region around ``T_center`` (plus one
        grid step of slack): (C,) bool.

        Unbounded, a step can shrink the whole projection into the image's
        most edge-dense corner (the camera backing away by metres scores well
        at coarse levels): the bound is what keeps the objective honest.
        """
        cfg = self.cfg
        rot_deg, trans_m = pose_distances(Ts, T_center)
        return (rot_deg <= cfg.search_rot_deg + cfg.grid_rot_step_deg) \
            & (trans_m <= cfg.search_trans_m + cfg.grid_trans_step_m)

    def refine(self, keyframes: Sequence[Keyframe], T: np.ndarray, levels: Sequence[int],
               T_center: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """Levenberg-Marquardt from T over ``levels`` (coarse to fine), staying inside the search region
        around ``T_center`` (default: T); returns the pose and its last level's score."""
        return self.refine_many(keyframes, [T], levels, T if T_center is None else T_center)[0]

    def refine_many(self, keyframes: Sequence[Keyframe], starts: Sequence[np.ndarray], levels: Sequence[int],
                    T_center: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """:meth:`refine` of every pose of ``starts`` (T_camera_lidar) inside the region around ``T_center``:
        (pose, last level's score) each, in their order.

        The poses take their Levenberg-Marquardt steps in lockstep, each with
        its own damping and stopping rule, so each ends where it would alone
        (to rounding: a pose's sums run over the points in the same order either
        way, which only the cache-friendly point order, set by the first pose,
        changes). One kernel call per keyframe and step serves all of them:
        refining the search's candidates one at a time spent more in Python and
        in cache misses than in the samples (a pose's samples cost 136-175 ns
        alone and ~57 ns among a grid's, profiled on real KITTI).
        """
        cfg = self.cfg
        if len(starts) == 0:
            return []
        T = np.array(starts, dtype=np.float64).reshape(-1, 4, 4)
        score = np.full(len(T), -1.0)
        for level in levels:
            inputs = self._level_inputs(keyframes, level, cfg.points_per_level[level], T[0])
            score = self._score(inputs, T, len(keyframes))
            H, g = np.zeros((len(T), 6, 6)), np.zeros((len(T), 6))
            stale = np.ones(len(T), dtype=bool)   # linearised once per accepted pose: a rejected step keeps H, g
            damping = np.full(len(T), 1e-3)
            active = np.ones(len(T), dtype=bool)
            free = slice(3, 6) if level < cfg.rotation_only_levels else slice(0, 6)
            for _ in range(cfg.iterations_per_level):
                relinearise = active & stale
                if relinearise.any():
                    H[relinearise], g[relinearise] = self._linearise(inputs, T[relinearise])
                    stale[relinearise] = False
                active &= H.any(axis=(1, 2))
                if not active.any():
                    break
                idx = np.flatnonzero(active)
                delta = np.zeros((len(idx), 6))
                for k, c in enumerate(idx):
                    delta[k, free] = damped_step(H[c, free, free], g[c, free], damping[c])
                T_new = se3_exp(delta) @ T[idx]
                new = np.full(len(idx), -1.0)
                inside = self._inside_bounds(T_new, T_center)
                if inside.any():
                    new[inside] = self._score(inputs, T_new[inside], len(keyframes))
                better = new > score[idx]
                won, lost = idx[better], idx[~better]
                T[won], score[won], stale[won] = T_new[better], new[better], True
                damping[won] = np.maximum(damping[won] / 3.0, 1e-6)
                small = (np.linalg.norm(delta[better, :3], axis=1) < 1e-4) \
                    & (np.linalg.norm(delta[better, 3:], axis=1) < 1e-5)
                active[won[small]] = False
                damping[lost] *= 8.0
                active[lost[damping[lost] > 1e3]] = False
                if not active.any():
                    break
        return [(T[c], float(score[c])) for c in range(len(T))]

    # ------------------------------------------------------------------ search
    def rotation_grid(self) -> np.ndarray:
        """Left rotations (C, 4, 4) on a cubic grid of ``grid_rot_step_deg`` covering ``search_rot_deg``."""
        cfg = self.cfg
        rot = np.radians(_ball_grid(cfg.grid_rot_step_deg, cfg.search_rot_deg, cfg.grid_rot_step_deg))
        return se3_exp(np.c_[np.zeros_like(rot), rot])

    def translation_grid(self, depth_m: float, step_m: float, radius_m: float) -> np.ndarray:
        """Left steps (C, 4, 4): translations on a cubic grid of ``step_m`` covering a ball of ``radius_m``,
        each with the rotation that keeps points at a depth on the optical axis where they were, for each
        depth ``compensation_depths`` times ``depth_m`` (the scene's median depth).

        A rotation fitted before translation is known has absorbed the
        translation error at some depth of the scene; moving the camera
        sideways without undoing that would misalign the far field that the
        rotation got right, and the grid would judge translation by it. Which
        depth absorbed it depends on where the structure is, so several are
        tried (with the median alone, 3 of 3 suburban windows from 0.5 m
        stayed 0.35-0.45 m off; with 0.5, 1 and 2 times it all three converged).
        """
        t = _ball_grid(step_m, radius_m, 0.5 * step_m)
        # a left step moves p to p + phi x p + rho: phi = (rho_y, -rho_x, 0) / depth cancels rho at (0, 0, depth)
        steps = [np.c_[t, np.c_[t[:, 1], -t[:, 0], np.zeros(len(t))] / max(f * depth_m, 1.0)]
                 for f in self.cfg.compensation_depths]
        return se3_exp(np.concatenate(steps))

    def _median_depth(self, keyframes: Sequence[Keyframe], T: np.ndarray) -> float:
        z = np.concatenate([transform_points(T, kf.edges[: self.cfg.search_points])[:, 2] for kf in keyframes])
        z = z[z > 0.5]
        return float(np.median(z)) if len(z) else 10.0

    def _distinct(self, Ts: np.ndarray, order: np.ndarray, n: int, step_m: float = 0.1,
                  rot_deg: float | None = None, trans_m: float | None = None) -> list[int]:
        """The first ``n`` of ``order`` that are pairwise farther apart than ``rot_deg`` or ``trans_m``
        (default: ``distinct_deg``, and 0.9 of the grid's ``step_m``)."""
        rot_deg = self.cfg.distinct_deg if rot_deg is None else rot_deg
        trans_m = 0.9 * step_m if trans_m is None else trans_m
        chosen: list[int] = []
        for i in order:
            if all(e.rot_deg > rot_deg or e.trans_m > trans_m
                   for e in (pose_distance(Ts[i], Ts[j]) for j in chosen)):
                chosen.append(int(i))
            if len(chosen) == n:
                break
        return chosen

    def _best(self, keyframes: Sequence[Keyframe], Ts: np.ndarray, level: int, n: int, step_m: float = 0.1
              ) -> list[np.ndarray]:
        scores = self.score_many(keyframes, Ts, level, self.cfg.search_points)
        return [Ts[i] for i in self._distinct(Ts, np.argsort(-scores), n, step_m)]

    def _search(self, usable: Sequence[Keyframe], starts: list[np.ndarray], T_center: np.ndarray,
                times: dict[str, float]) -> list[tuple[np.ndarray, float]]:
        """One pass of the global search from ``starts`` within the region around ``T_center``: rotation
        grids, translation grids, then the best distinct poses refined through the middle levels and the
        best few to the finest; returns those finals (pose, finest-level score). Adds its time [ms] to
        ``times["search"]`` (the grids) and ``times["refine"]``."""
        cfg = self.cfg
        t0 = time.perf_counter()
        rotation_levels = list(range(min(cfg.rotation_only_levels, len(cfg.sigma_deg))))
        rotations = self.rotation_grid()
        starts = self._best(usable, np.concatenate([rotations @ T for T in starts]), 0, cfg.candidates)
        starts = [T for T, _ in self.refine_many(usable, starts, rotation_levels, T_center)]
        level = min(cfg.translation_stages[0][0], len(cfg.sigma_deg) - 1) if cfg.translation_stages else 0
        scores = self.score_many(usable, np.asarray(starts), level, cfg.search_points)   # one call for all
        starts = [starts[i] for i in np.argsort(-scores, kind="stable")[: cfg.finalists]]
        for k, (level, step, radius) in enumerate(cfg.translation_stages):
            level = min(level, len(cfg.sigma_deg) - 1)
            if k:   # a finer stage starts from the best distinct poses of the one before
                scores = self.score_many(usable, np.asarray(starts), level, cfg.search_points)
                starts = [starts[i] for i in self._distinct(np.asarray(starts), np.argsort(-scores),
                                                            cfg.finalists, step)]
            starts = [T for best in starts for T in self._best(
                usable, self.translation_grid(self._median_depth(usable, best), step, radius) @ best, level,
                cfg.finalists, step)]
        first = rotation_levels[-1] if rotation_levels else 0
        t1 = time.perf_counter()
        finals = self._refine_all(usable, starts, list(range(first, len(cfg.sigma_deg))), T_center)
        times["search"] = times.get("search", 0.0) + 1e3 * (t1 - t0)
        times["refine"] = times.get("refine", 0.0) + 1e3 * (time.perf_counter() - t1)
        return finals

    def _refine_all(self, usable: Sequence[Keyframe], starts: list[np.ndarray], levels: list[int],
                    T_center: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Every start through the middle levels, only the best few on to the finest (most of the cost).

        After each middle level, poses that reached the same place as a better-scoring one (within
        ``duplicate_rot_deg`` / ``duplicate_trans_m``) are dropped: from there they would only be refined
        to the same optimum again (the translation grid's neighbouring cells often converge together).
        """
        cfg = self.cfg
        if len(starts) > cfg.finals:
            staged = [(T, 0.0) for T in starts]
            for level in levels[: cfg.middle_levels]:
                staged = self._unique(sorted(self.refine_many(usable, [T for T, _ in staged], [level], T_center),
                                             key=lambda f: -f[1]))
            starts, levels = [T for T, _ in staged[: cfg.finals]], levels[cfg.middle_levels:]
        return self.refine_many(usable, starts, levels, T_center)

    def _unique(self, ranked: list[tuple[np.ndarray, float]]) -> list[tuple[np.ndarray, float]]:
        """``ranked`` (best first) without the poses within the duplicate bounds of a better one."""
        keep = self._distinct(np.array([T for T, _ in ranked]), np.arange(len(ranked)), len(ranked),
                              rot_deg=self.cfg.duplicate_rot_deg, trans_m=self.cfg.duplicate_trans_m)
        return [ranked[i] for i in keep]

    def solve(self, keyframes: Sequence[Keyframe], T_start: np.ndarray, global_search: bool = True,
              extra_starts: Sequence[np.ndarray] = ()) -> WindowResult:
        """``T_camera_lidar`` of the window from ``T_start`` (4x4).

        With ``global_search`` (the calib regime: anywhere within
        ``search_rot_deg`` / ``search_trans_m`` of the start):

        1. a rotation grid around each start, scored at the coarsest level;
           the best distinct ones refined in rotation alone at the coarse levels;
        2. for the best of those, translation grids (``translation_stages``, coarse to fine, each around
           the best distinct poses of the one before; rotation alone cannot fix near points);
        3. the best distinct poses refined in all six parameters to the finest level;
        4. while the best pose is more than ``research_trans_m`` from where its pass started, another pass
           from it (at most ``search_passes``): a rotation grid scored with a translation that far off
           is judged by near points that no rotation can place (measured on real KITTI, ±10° / 0.5 m:
           3 of 4 falsely converged windows found the truth in a second pass).

        Without it (an update from the last solution), ``T_start`` and
        ``extra_starts`` are only refined locally. The best finest-level score wins.
        """
        cfg = self.cfg
        times: dict[str, float] = {}
        self.evaluations = 0
        t0 = time.perf_counter()
        T_start = np.asarray(T_start, dtype=np.float64)
        # only the edges that can reach the image from anywhere in the search region (of a 360 deg sweep,
        # most cannot); the shuffled order is kept, so any prefix is still a fair subset
        in_view = [kf.subset(self._in_view_mask(kf, T_start)) for kf in keyframes]
        usable = [kf for kf in in_view if len(kf.edges) >= cfg.min_edge_points]
        skipped = len(keyframes) - len(usable)
        edge_points = int(sum(len(kf.edges) for kf in usable))
        if not usable:
            return self._failure(T_start, len(keyframes), "no keyframe has enough LiDAR depth edges in the "
                                 "image (no overlap, no structure, or no data)", times)
        starts = [T_start] + [np.asarray(T, dtype=np.float64) for T in extra_starts]
        if global_search:
            finals = self._search(usable, starts, T_start, times)
            T, score = max(finals, key=lambda f: f[1])
            # the start refined in place: where the window cannot tell it from the search's best, staying
            # is the answer (the covariance then spans both); a far pose must clearly win to be taken
            t1 = time.perf_counter()
            local = self.refine(usable, T_start, range(len(cfg.sigma_deg)), T_start)
            times["refine"] += 1e3 * (time.perf_counter() - t1)
            finals.append(local)
            prior = local[1] >= (1.0 - cfg.ambiguity) * score
            if prior:
                T, score = local
            passes, origin = 1, T_start
            while passes < cfg.search_passes and pose_distance(T, origin).trans_m > cfg.research_trans_m:
                more = self._search(usable, [T], T_start, times)
                finals += more
                passes, origin = passes + 1, T
                T_more, score_more = max(more, key=lambda f: f[1])
                # the better score wins, except over the refined start, which a far pose must clearly beat
                # (as above). A margin between two searched poses would keep the first pass's answer
                # where the second found a better basin: on real KITTI +-10 deg it kept 2 of 10 windows
                # 15 cm off while the truth's basin, found by the second pass, scored 2-5 % higher
                if score_more > (1.0 + (cfg.ambiguity if prior else 0.0)) * score:
                    T, score, prior = T_more, score_more, False
        else:
            finals = self._refine_all(usable, starts, list(range(len(cfg.sigma_deg))), T_start)
            T, score = max(finals, key=lambda f: f[1])
            times["refine"] = 1e3 * (time.perf_counter() - t0)
        t1 = time.perf_counter()
        T, score, rivals = self._settle_rivals(usable, T, score, finals, T_start)
        t2 = time.perf_counter()
        times["refine"] = times.get("refine", 0.0) + 1e3 * (t2 - t1)
        cov = self.covariance(usable, T) + self.resampled_covariance(usable, T, T_start)
        for T_other in rivals:   # the window cannot tell these apart: the uncertainty must cover them
            d = se3_log(T_other @ invert(T))
            cov = cov + np.outer(d, d)
        times["covariance"] = 1e3 * (time.perf_counter() - t2)
        moved = pose_distance(T, T_start)
        at_bound = (moved.rot_deg > cfg.search_rot_deg - cfg.grid_rot_step_deg / 2
                    or moved.trans_m > cfg.search_trans_m - cfg.grid_trans_step_m / 2) \
            and self._bound_active(usable, T)
        return self._result(T, cov, score, usable, skipped, edge_points, times, ambiguous=len(rivals),
                            at_bound=moved if at_bound else None)

    def _bound_active(self, keyframes: Sequence[Keyframe], T: np.ndarray) -> bool:
        """Whether the search region's bound, not the data, stopped a pose near its edge: refined again with
        the region centred on the pose itself (no bound within reach), it moves on by more than the
        convergence bounds. The protocol puts the truth anywhere within the region, so a pose near its edge
        is often simply the answer; only one the objective still pulls outward is suspect."""
        cfg = self.cfg
        levels = list(range(min(cfg.rotation_only_levels, len(cfg.sigma_deg) - 1), len(cfg.sigma_deg)))
        free, _ = self.refine(keyframes, T, levels, T)
        step = pose_distance(free, T)
        return step.rot_deg > cfg.converged_rot_deg or step.trans_m > cfg.converged_trans_m

    def mount_hypotheses(self) -> np.ndarray:
        """``T_camera_lidar`` (M, 4, 4) of a camera level with the LiDAR's x-y plane (LiDAR z up, camera y
        down) at every ``mount_yaw_step_deg`` of heading, at the LiDAR's origin: the starts without a prior."""
        yaw = np.radians(np.arange(0.0, 360.0, self.cfg.mount_yaw_step_deg))
        z_cam = np.stack([np.cos(yaw), np.sin(yaw), np.zeros_like(yaw)], -1)     # viewing direction, LiDAR frame
        y_cam = np.broadcast_to([0.0, 0.0, -1.0], z_cam.shape)
        x_cam = np.cross(y_cam, z_cam)
        R_lidar_camera = np.stack([x_cam, y_cam, z_cam], -1)                    # columns: camera axes
        T = np.tile(np.eye(4), (len(yaw), 1, 1))
        T[:, :3, :3] = np.swapaxes(R_lidar_camera, 1, 2)
        return T

    def motion_hypothesis(self, keyframes: Sequence[Keyframe]) -> MotionProposal | None:
        """The camera's rotation from the window's motion (:func:`.motion.rotation_from_motion`), the
        keyframes taken in stamp order (as given when any lacks a stamp); None when they lack motion
        features or the motion does not tell."""
        if not keyframes or any(kf.motion is None for kf in keyframes):
            return None
        ordered = list(keyframes)
        if all(kf.stamp is not None for kf in ordered):
            ordered.sort(key=lambda kf: kf.stamp)
        return rotation_from_motion([kf.motion for kf in ordered], ordered[0].K, self.cfg.motion)

    def solve_without_prior(self, keyframes: Sequence[Keyframe], hypotheses: Sequence[np.ndarray] = (),
                            mounts: bool = True, motion: bool = True) -> WindowResult:
        """The window's ``T_camera_lidar`` with no prior.

        When ``motion`` and the window's motion gives the camera's rotation (:meth:`motion_hypothesis`), that
        pose and the hypotheses (network proposals) within ``motion_gate_deg`` of it are the starts;
        otherwise (or when most keyframes see no LiDAR edges from the motion's pose) the hypotheses and, with
        ``mounts``, :meth:`mount_hypotheses`. Each start is scored at the coarsest level over its rotation
        grid, and the best ``mount_finalists`` distinct ones (the motion's always first) are solved by
        :meth:`solve` (global search around each)."""
        cfg = self.cfg
        t0 = time.perf_counter()
        proposals = [np.asarray(T, dtype=np.float64) for T in hypotheses]
        travelled = self.motion_hypothesis(keyframes) if motion else None
        motion_ms = 1e3 * (time.perf_counter() - t0)
        ranked: list[tuple[float, np.ndarray]] = []
        if travelled is not None:
            T_motion = travelled.T_camera_lidar
            ranked = self._rank_starts(keyframes, [T_motion] + [
                T for T in proposals if pose_distance(T, T_motion).rot_deg <= cfg.motion_gate_deg])
            if not any(H is T_motion for _, H in ranked):   # no LiDAR edges in its view: not the mount after all
                travelled, ranked = None, []
        if travelled is None:
            starts = proposals + (list(self.mount_hypotheses()) if mounts else [])
            if not starts:
                return self._failure(np.eye(4), len(keyframes), "no prior, no proposals and the mount scan is "
                                     "off: nothing to start from", {})
            ranked = self._rank_starts(keyframes, starts)
        if not ranked:
            return self._failure(np.eye(4), len(keyframes), "no mount hypothesis sees LiDAR depth edges in the "
                                 "image (no overlap, no structure, or no data)", {})
        ranked.sort(key=lambda r: -r[0])
        if travelled is not None:   # the direction of travel outranks any edge score
            ranked.sort(key=lambda r: r[1] is not T_motion)
        chosen: list[np.ndarray] = []
        for _, T in ranked:
            if all(pose_distance(T, C).rot_deg > cfg.search_rot_deg for C in chosen):
                chosen.append(T)
            if len(chosen) == cfg.mount_finalists:
                break
        scan_ms = 1e3 * (time.perf_counter() - t0)
        wide = WindowEstimator(replace(cfg, search_trans_m=cfg.mount_search_trans_m,
                                       translation_stages=cfg.mount_translation_stages))
        results = [wide.solve(keyframes, T) for T in chosen]
        self.evaluations = sum(r.evaluations for r in results)
        best = max(results, key=lambda r: (r.ok, r.score))
        best.timings_ms["mounts"] = scan_ms - motion_ms
        best.timings_ms["motion"] = motion_ms
        best.timings_ms["total"] = 1e3 * (time.perf_counter() - t0)
        if len(results) > 1 and best.ok:
            others = [r for r in results if r is not best and r.ok and r.score >= (1 - cfg.ambiguity) * best.score
                      and not self._same_optimum(r.T_camera_lidar, best.T_camera_lidar)]
            if others:   # two headings explain the window as well: say so, and do not claim convergence
                best.converged = False
                rival = "another mount" if travelled is None else "another start near the motion's rotation"
                best.message = f"{rival} explains the window almost as well; drive past more structure"
                best.covariance = best.covariance + np.diag(np.r_[[cfg.search_trans_m ** 2 / 5] * 3,
                                                                  [np.radians(cfg.search_rot_deg) ** 2 / 5] * 3])
        return best

    def _rank_starts(self, keyframes: Sequence[Keyframe], starts: Sequence[np.ndarray]
                     ) -> list[tuple[float, np.ndarray]]:
        """``(score, start)`` of the starts from which most keyframes see LiDAR depth edges, each scored by
        the best pose of its rotation grid at the coarsest level (a start stays its region's centre)."""
        cfg = self.cfg
        grid = self.rotation_grid()
        ranked = []
        for H in starts:
            view = [kf.subset(self._in_view_mask(kf, H)) for kf in keyframes]
            usable = [kf for kf in view if len(kf.edges) >= cfg.min_edge_points]
            if len(usable) * 2 < len(keyframes):   # most keyframes see nothing from here: not the mount
                continue
            scores = self.score_many(usable, grid @ H, 0, cfg.search_points)
            ranked.append((float(scores.max()) * len(usable) / len(keyframes), H))
        return ranked

    def _same_optimum(self, T: np.ndarray, T_other: np.ndarray) -> bool:
        """Within the convergence bounds of each other: two searches that ended in one basin."""
        err = pose_distance(T, T_other)
        return err.rot_deg <= self.cfg.converged_rot_deg and err.trans_m <= self.cfg.converged_trans_m

    def resampled_covariance(self, keyframes: Sequence[Keyframe], T: np.ndarray, T_center: np.ndarray
                             ) -> np.ndarray:
        """Spread (6, 6) of the pose over halves of the window, each refined from T at the finer levels.

        The curvature says how sharply the whole window pins the pose; it
        cannot see that some keyframes pull one way and the rest another
        (a moved object, a stamp offset, an edge model that fits one scene
        type worse). Halves that disagree do. A half has half the data, so its
        spread is about sqrt(2) times the window's: the covariance is half theirs.
        """
        cfg = self.cfg
        if len(keyframes) < max(cfg.min_keyframes_converged, 2) or cfg.resamples < 2:
            return np.zeros((6, 6))
        rng = np.random.default_rng(cfg.seed)
        levels = list(range(max(len(cfg.sigma_deg) - cfg.resample_levels, 0), len(cfg.sigma_deg)))
        deltas = []
        for _ in range(cfg.resamples):
            half = rng.permutation(len(keyframes))[: len(keyframes) // 2]
            T_half, _ = self.refine([keyframes[i] for i in half], T, levels, T_center)
            deltas.append(se3_log(T_half @ invert(T)))
        d = np.asarray(deltas)
        return 0.5 * (d.T @ d) / len(d)     # about T itself (the full window's estimate), not the halves' mean

    def _settle_rivals(self, keyframes: Sequence[Keyframe], T: np.ndarray, score: float,
                       finals: Sequence[tuple[np.ndarray, float]], T_center: np.ndarray
                       ) -> tuple[np.ndarray, float, list[np.ndarray]]:
        """The best pose, its score and its rivals (:meth:`_rivals`), each rival first refined on at the
        finest level for ``rival_rounds`` more rounds of ``iterations_per_level``.

        A pose the search left on the slope of the best one's basin, short of its iterations, is not a
        second optimum: on real KITTI +-5 deg, once duplicate poses stopped filling the finest level's
        places (:meth:`_refine_all`), 5 of 10 windows were called ambiguous over such poses 7 cm from the
        best, which 40 more iterations brought to within 1 mm of it. A rival that ends better becomes
        the best.
        """
        rivals = self._rivals(T, score, finals)
        if not rivals or self.cfg.rival_rounds < 1:
            return T, score, rivals
        finest = len(self.cfg.sigma_deg) - 1
        settled = self.refine_many(keyframes, rivals, [finest] * self.cfg.rival_rounds, T_center)
        others = [f for f in finals if not any(f[0] is R for R in rivals)] + settled
        T, score = max([(T, score)] + settled, key=lambda f: f[1])
        return T, score, self._rivals(T, score, others)

    def _rivals(self, T: np.ndarray, score: float, finals: Sequence[tuple[np.ndarray, float]]) -> list[np.ndarray]:
        """Other optima (farther than a basin) whose finest-level score comes within ``ambiguity`` of the best."""
        cfg = self.cfg
        out = []
        for T_other, s in finals:
            if s >= (1.0 - cfg.ambiguity) * score and not self._same_optimum(T_other, T):
                out.append(T_other)
        return out

    def _in_view_mask(self, kf: Keyframe, T: np.ndarray) -> np.ndarray:
        """Edge points that project into the image under T, grown by the search region's reach."""
        if len(kf.edges) == 0:
            return np.zeros(0, bool)
        uv, front = project_pinhole(kf.K, transform_points(T, kf.edges), 0.5)
        m = kf.focal_px * np.tan(np.radians(self.cfg.search_rot_deg))
        return front & (uv[:, 0] > -m) & (uv[:, 0] < kf.width + m) & (uv[:, 1] > -m) & (uv[:, 1] < kf.height + m)

    # ------------------------------------------------------------------ uncertainty
    def _edge_distances(self, kf: Keyframe, level: int, Ts: np.ndarray) -> np.ndarray:
        """Edge distance [px] (C, M) of each of the keyframe's points at each pose ``Ts`` (C, 4, 4), as the
        kernels score it: at the sample of its interval nearest an image edge (``interval_spacing``);
        NaN where no sample lies in front of the camera and inside the image."""
        n = self._interval_samples(kf, level, kf.edges, kf.spans)
        best = np.full((len(Ts), len(kf.edges)), np.nan)
        for k in range(int(n.max(initial=1))):
            todo = np.flatnonzero(k < n)                          # the points with a k-th sample
            f = (k + 0.5) / n[todo] - 0.5                         # its place in each interval
            x = kf.edges[todo] + f[:, None] * kf.spans[todo]
            p = np.matmul(x, Ts[:, :3, :3].transpose(0, 2, 1)) + Ts[:, None, :3, 3]
            uv, front = project_pinhole(kf.K, p.reshape(-1, 3), 0.5)
            inside = kf.in_image(uv, front) & np.isfinite(uv).all(axis=1)
            d = np.full(len(uv), np.nan)
            d[inside] = np.abs(kf.sample(level, uv[inside], np.tile(kf.along[todo], len(Ts))[inside], 0.0)[:, 0])
            best[:, todo] = np.fmin(best[:, todo], d.reshape(len(Ts), len(todo)))
        return best

    def covariance(self, keyframes: Sequence[Keyframe], T: np.ndarray) -> np.ndarray:
        """Covariance (6, 6) of delta at T: ``sigma_r^2 * c * H^-1`` at the finest level, plus the floor.

        H is ``J^T W J`` of the edge distances with the IRLS weights, J taken
        from one-sided differences (steps of ~1.5 px of image motion), the
        outer products of the forward and backward slopes averaged. Not the
        analytic gradient: at convergence the points sit on the minimum of the
        distance field, V-shaped across an edge, where the sampled gradient
        vanishes and J^T J would report information missing exactly where it
        is best. Not the numerical Hessian of the cost either (as until
        2026-12-02): its mixed differences are not positive semi-definite,
        and a slightly negative eigenvalue reads as an unconstrained axis
        (seen on drawn bars half a pixel off their field's minimum); this H
        is positive semi-definite by construction and needs 13 poses, not 73.
        Points that leave the image on a step are left out: leaving the image
        is not information about the pose.
        """
        cfg = self.cfg
        level = len(cfg.sigma_deg) - 1
        frames = []
        for kf in keyframes:
            d = self._edge_distances(kf, level, T[None])[0]
            inside = np.isfinite(d)
            if inside.sum() < 3:
                continue
            p = transform_points(T, kf.edges[inside])
            d = d[inside]
            w = robust_score(d, self._sigma_px(kf, level)) ** 2
            frames.append((kf.subset(inside), w, d, float(np.median(p[:, 2]))))
        if not frames:
            return np.eye(6) * 1e6
        w_all = np.concatenate([f[1] for f in frames])
        d_all = np.concatenate([f[2] for f in frames])
        if w_all.sum() < 1.0:
            return np.eye(6) * 1e6
        var = float((w_all * d_all ** 2).sum() / w_all.sum())
        focal = float(np.median([f[0].focal_px for f in frames]))
        depth = float(np.median([f[3] for f in frames]))
        h = np.r_[[1.5 * depth / focal] * 3, [1.5 / focal] * 3]      # ~1.5 px of image motion per step
        steps = np.concatenate([np.zeros((1, 6)), np.diag(h), -np.diag(h)])
        Ts = se3_exp(steps) @ T
        H = np.zeros((6, 6))
        for kf, w, _, _ in frames:
            d = self._edge_distances(kf, level, Ts)
            # a point that leaves the image on a step says nothing about the pose: left out
            stays = np.isfinite(d).all(axis=0)
            d, w_in = d[:, stays], w[stays]
            # one-sided slopes (6, n) of each point's distance: across an edge the distance is V-shaped, so its
            # central difference vanishes where the point is best placed, while both one-sided ones do not
            ahead = (d[1:7] - d[0]) / h[:, None]
            behind = (d[0] - d[7:]) / h[:, None]
            H += 0.5 * ((ahead * w_in) @ ahead.T + (behind * w_in) @ behind.T)
        # a flat direction is "no information": the inverse floors H's eigenvalues (covariance_from_hessian),
        # so those axes come out huge
        cov = covariance_from_hessian(H, var * cfg.correlated_points)
        floor = np.r_[[cfg.floor_trans_m ** 2] * 3, [np.radians(cfg.floor_rot_deg) ** 2] * 3]
        return cov + np.diag(floor)

    def _result(self, T: np.ndarray, cov: np.ndarray, score: float, usable: Sequence[Keyframe], skipped: int,
                edge_points: int, times: dict[str, float], ambiguous: int = 0,
                at_bound: PoseError | None = None) -> WindowResult:
        cfg = self.cfg
        sd_t, sd_r = axis_sigmas(cov)
        unconstrained = [AXES[k] for k in range(3) if sd_t[k] > cfg.unconstrained_trans_m] + \
                        [AXES[3 + k] for k in range(3) if sd_r[k] > cfg.unconstrained_rot_deg]
        ok = bool(np.all(np.isfinite(T)) and score >= cfg.min_score)
        # converged: no direction of either block more uncertain than the bounds (the largest eigenvalue, so the
        # test reads the same in any frame: a ROS listener can apply it to ~/calibration's covariance)
        converged = ok and covariance_within(cov, cfg.converged_rot_deg, cfg.converged_trans_m)
        message = "" if ok else f"edge alignment score {score:.2f} is below {cfg.min_score}: the window does " \
                                "not support a pose"
        if ok and ambiguous:
            message = f"{ambiguous} other pose(s) explain the window almost as well; the covariance spans them"
        if ok and converged and len(usable) < cfg.min_keyframes_converged:
            # a keyframe or two cannot show that they disagree: their curvature is no evidence of the right basin
            converged = False
            message = (f"{len(usable)} keyframe(s): convergence is claimed from {cfg.min_keyframes_converged} on "
                       "(a few frames can agree on a wrong pose)")
        if ok and at_bound is not None:
            # the bound, not the data, stopped the search: the optimum may lie outside the region
            converged = False
            message = (f"the best pose lies at the edge of the search region ({at_bound.rot_deg:.1f} deg / "
                       f"{at_bound.trans_m:.2f} m from the start); the extrinsic may be outside it")
        if not converged:
            # precision is claimed only on convergence: short of it the curvature describes the basin the
            # search ended in, not whether it is the right one, so no axis is reported tighter than the search
            # region itself (a uniform ball of radius R has a per-axis variance of R^2 / 5)
            region = np.r_[[cfg.search_trans_m ** 2 / 5] * 3, [np.radians(cfg.search_rot_deg) ** 2 / 5] * 3]
            cov = cov + np.diag(np.maximum(region - np.diag(cov), 0.0))
        times["total"] = sum(times.values())
        return WindowResult(T, cov, score, ok, converged, unconstrained, len(usable), skipped, edge_points,
                            self.evaluations, message, times)

    def _failure(self, T: np.ndarray, skipped: int, message: str, times: dict[str, float]) -> WindowResult:
        times["total"] = sum(times.values())
        return WindowResult(T, np.eye(6) * 1e6, 0.0, False, False, list(AXES), 0, skipped, 0, self.evaluations,
                            message, times)
