"""The camera's rotation in the LiDAR frame from the two sensors' own motion over a drive (no prior, no learning).

Between two keyframes i and j the LiDAR moves by ``B = T_lidari_lidarj`` (the
sweeps registered with open3d's generalized ICP) and the camera by
``A = T_cami_camj = X B X^-1``, ``X = T_camera_lidar``. So

* the camera's direction of travel ``t_A`` (the essential matrix of the two
  images, OpenCV; its scale is unknown) is ``R_X t_B``, up to the lever-arm
  term ``(I - R_A) t_X``, which stays small while the pair turns little;
* the axis of the camera's turn is ``R_X`` times the LiDAR's.

Every pair that travelled far enough gives one pair of directions; the
rotation that aligns them all (scipy's ``Rotation.align_vectors``, a weighted
Wahba problem) is a global proposal with no local minima: where the mount scan
ranks headings by an edge score that a texture-rich view can fool (real KITTI:
the forward heading ranked 5th, docs/benchmarks.md), the direction of travel
tells forward from backward outright. A straight drive pins where the travel
direction lies in the camera (the view's heading and tilt); the roll about it
comes from turns when there are any, else from the usual mount (the camera's x
axis level with the LiDAR's horizon, LiDAR z up: the mount scan's assumption),
given a small weight so that it only decides what the motion leaves free.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from ..geometry import invert


@dataclass(frozen=True)
class MotionConfig:
    """Settings of the motion proposal (distances [m], angles [deg], pixels of the pinhole image)."""

    enabled: bool = True              # keyframes keep motion features, and the no-prior solve uses them
    keypoints: int = 2000             # ORB features per image ...
    # ... found with the first FAST threshold that gives half of them: a synthetic road seen 20 deg down gave
    # 47 at OpenCV's default 20, 1,424 at 5 (real KITTI: 2,000 at 20)
    fast_thresholds: tuple[int, ...] = (20, 10, 5)
    voxel_m: float = 0.5              # sweeps downsampled to this for registration
    max_correspondence_m: float = 1.0
    min_fitness: float = 0.3          # registered overlap below this breaks the chain of LiDAR poses
    # a pair's travel: on real KITTI a 0.08 m pair gave a camera direction 169 deg off, 0.18-0.5 m pairs
    # 0.5-3.5 deg, 1.4 m pairs 0.9-2.2 deg; the rotation of a 20-frame window came 1.19 deg off with 0.5 m,
    # 0.94 deg with 1 m (docs/benchmarks.md, "Motion proposal")
    baseline_m: float = 1.0           # each keyframe is paired with the first later one this far away ...
    min_baseline_m: float = 0.2       # ... or the farthest one beyond this
    epipolar_px: float = 1.0          # RANSAC threshold of the essential matrix
    min_inliers: int = 60             # essential-matrix inliers for a pair to count
    max_lever_m: float = 1.0          # the camera may sit this far from the LiDAR: a pair whose turn times it
    max_lever_error_deg: float = 3.0  # would bend the travel direction by more than this gives no direction
    min_turn_deg: float = 1.0         # turns above this give their axes (weight grows to 1 at 3x this)
    level_weight: float = 0.1         # the usual mount's roll, against 1 per direction pair
    min_pairs: int = 3                # direction pairs that must agree ...
    outlier_deg: float = 10.0         # ... after dropping those farther than this from the first fit ...
    max_spread_deg: float = 5.0       # ... to this RMS, for the rotation to be a proposal


@dataclass
class MotionFeatures:
    """What a keyframe keeps to measure motion against another: ORB ``keypoints`` (n, 2) [px, pinhole
    image] with their ``descriptors`` (n, 32) uint8, and the sweep downsampled, ``cloud`` (m, 3) [m, LiDAR]."""

    keypoints: np.ndarray
    descriptors: np.ndarray
    cloud: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.keypoints.nbytes + self.descriptors.nbytes + self.cloud.nbytes)


@dataclass
class MotionProposal:
    """``R_camera_lidar`` (3, 3) aligning the pairs' travel directions; ``pairs`` direction pairs agreed to
    ``spread_deg`` RMS, ``turns`` pairs also gave their rotation axes; ``travel_m`` the longest pair's."""

    R_camera_lidar: np.ndarray
    pairs: int
    spread_deg: float
    turns: int
    travel_m: float

    @property
    def T_camera_lidar(self) -> np.ndarray:
        """The proposal as a pose at the LiDAR's origin (translation unknown: the search finds it)."""
        T = np.eye(4)
        T[:3, :3] = self.R_camera_lidar
        return T


def motion_features(grey: np.ndarray, points: np.ndarray, cfg: MotionConfig = MotionConfig()) -> MotionFeatures:
    """ORB features of an undistorted (H, W) uint8 image and the sweep ``points`` (N, >=3) [m, LiDAR]
    on a voxel grid of ``cfg.voxel_m`` (non-finite points dropped)."""
    for threshold in cfg.fast_thresholds:
        found, descriptors = cv2.ORB_create(cfg.keypoints, fastThreshold=threshold).detectAndCompute(grey, None)
        if len(found) >= cfg.keypoints // 2:
            break
    keypoints = np.float32([k.pt for k in found]).reshape(-1, 2)
    import open3d as o3d   # here, not at the top: the trainer imports this package on machines without open3d

    xyz = np.asarray(points, dtype=np.float64)[:, :3]
    xyz = xyz[np.isfinite(xyz).all(axis=1)]
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz)).voxel_down_sample(cfg.voxel_m)
    return MotionFeatures(keypoints, descriptors if descriptors is not None else np.zeros((0, 32), np.uint8),
                          np.asarray(cloud.points, dtype=np.float32))


def _registration_cloud(features: MotionFeatures):
    """The features' voxel cloud as open3d needs it for generalized ICP (with per-point covariances)."""
    import open3d as o3d   # see motion_features

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(features.cloud.astype(np.float64)))
    cloud.estimate_covariances(o3d.geometry.KDTreeSearchParamKNN(20))
    return cloud


def _register(cloud_a, cloud_b, cfg: MotionConfig, T_init: np.ndarray) -> tuple[np.ndarray, float]:
    """``T_lidara_lidarb`` (4x4, maps b's points into a's frame) by generalized ICP from ``T_init``, and its
    fitness (the share of b's points with a correspondence)."""
    import open3d as o3d   # see motion_features

    reg = o3d.pipelines.registration
    result = reg.registration_generalized_icp(cloud_b, cloud_a, cfg.max_correspondence_m, T_init,
                                              reg.TransformationEstimationForGeneralizedICP(),
                                              reg.ICPConvergenceCriteria(max_iteration=30))
    return np.asarray(result.transformation), float(result.fitness)


def camera_motion(a: MotionFeatures, b: MotionFeatures, K: np.ndarray, cfg: MotionConfig = MotionConfig()
                  ) -> tuple[np.ndarray, np.ndarray, int] | None:
    """``(R, t_dir, inliers)`` of ``T_cama_camb`` (points of b's camera frame into a's: ``x_a = R x_b + t``),
    its translation as a unit vector, from the essential matrix of matched ORB features; None without
    enough inliers."""
    if len(a.keypoints) < 8 or len(b.keypoints) < 8:
        return None
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(a.descriptors, b.descriptors)
    if len(matches) < cfg.min_inliers:
        return None
    pa = a.keypoints[[m.queryIdx for m in matches]].astype(np.float64)
    pb = b.keypoints[[m.trainIdx for m in matches]].astype(np.float64)
    E, mask = cv2.findEssentialMat(pb, pa, K, cv2.RANSAC, 0.999, cfg.epipolar_px)
    if E is None or E.shape != (3, 3):   # several solutions come stacked (3k, 3): too weak a pair
        return None
    inliers, R, t, _ = cv2.recoverPose(E, pb, pa, K, mask=mask)
    if inliers < cfg.min_inliers:
        return None
    return R, t.ravel() / np.linalg.norm(t), int(inliers)


def lidar_poses(features: Sequence[MotionFeatures], cfg: MotionConfig = MotionConfig()
                ) -> tuple[list[np.ndarray], list[int]]:
    """``T_lidarfirst_lidari`` of each keyframe by registering consecutive ones (each from the last step, a
    constant-velocity guess, then from identity), and the chain each belongs to: where two neighbours do
    not register (too little overlap) a new chain starts, and poses of different chains are never
    compared."""
    poses, chains = ([np.eye(4)], [0]) if len(features) else ([], [])
    clouds = [_registration_cloud(f) if len(f.cloud) >= 10 else None for f in features]
    step = np.eye(4)
    for i in range(1, len(features)):
        T, fitness = np.eye(4), 0.0
        if clouds[i - 1] is not None and clouds[i] is not None:
            T, fitness = _register(clouds[i - 1], clouds[i], cfg, step)
            if fitness < cfg.min_fitness:
                T, fitness = _register(clouds[i - 1], clouds[i], cfg, np.eye(4))
        if fitness < cfg.min_fitness:
            poses.append(np.eye(4))
            chains.append(chains[-1] + 1)
            step = np.eye(4)
        else:
            poses.append(poses[-1] @ T)
            chains.append(chains[-1])
            step = T
    return poses, chains


def rotation_from_motion(features: Sequence[MotionFeatures], K: np.ndarray, cfg: MotionConfig = MotionConfig()
                         ) -> MotionProposal | None:
    """``R_camera_lidar`` from the motion of keyframes in time order (their features and the pinhole
    camera matrix ``K``), or None when the window did not travel far enough, its images do not match,
    or its pairs disagree (a proposal must be right, not merely present)."""
    if not cfg.enabled or len(features) < 2:
        return None
    poses, chains = lidar_poses(features, cfg)
    a_dirs, b_dirs, weights, is_travel = [], [], [], []
    travel = 0.0
    for i, P_i in enumerate(poses):
        later = [(j, invert(P_i) @ poses[j]) for j in range(i + 1, len(poses)) if chains[j] == chains[i]]
        far = [(j, B) for j, B in later if np.linalg.norm(B[:3, 3]) >= cfg.min_baseline_m]
        if not far:
            continue
        # the partner baseline_m away (a longer baseline pins the direction better), else the nearest one
        # that travelled far enough: weak texture seen close (a road-facing camera) matches only over short
        # baselines
        first = next(((j, B) for j, B in far if np.linalg.norm(B[:3, 3]) >= cfg.baseline_m),
                     max(far, key=lambda f: np.linalg.norm(f[1][:3, 3])))
        for j, B in [first] if first[0] == far[0][0] else [first, far[0]]:
            cam = camera_motion(features[i], features[j], K, cfg)
            if cam is not None:
                break
        if cam is None:
            continue
        R_A, t_A, _ = cam
        t_B = B[:3, 3]
        turn_B = Rotation.from_matrix(B[:3, :3]).as_rotvec()
        turn = float(np.degrees(np.linalg.norm(turn_B)))
        if np.radians(turn) * cfg.max_lever_m <= np.tan(np.radians(cfg.max_lever_error_deg)) * np.linalg.norm(t_B):
            a_dirs.append(t_A)
            b_dirs.append(t_B / np.linalg.norm(t_B))
            weights.append(1.0)
            is_travel.append(True)
            travel = max(travel, float(np.linalg.norm(t_B)))
        turn_A = Rotation.from_matrix(R_A).as_rotvec()
        if turn >= cfg.min_turn_deg and np.degrees(np.linalg.norm(turn_A)) >= 0.5 * cfg.min_turn_deg:
            a_dirs.append(turn_A / np.linalg.norm(turn_A))
            b_dirs.append(turn_B / np.linalg.norm(turn_B))
            weights.append(min(turn / (3.0 * cfg.min_turn_deg), 1.0))
            is_travel.append(False)
    if sum(is_travel) < cfg.min_pairs:
        return None
    a, b, w, travelled = np.array(a_dirs), np.array(b_dirs), np.array(weights), np.array(is_travel)

    def fit(keep: np.ndarray) -> tuple[Rotation, np.ndarray]:
        # plus the usual mount's roll: the camera's "up" (-y of the optical frame) along LiDAR z
        R, _ = Rotation.align_vectors(np.vstack([a[keep], [0.0, -1.0, 0.0]]), np.vstack([b[keep], [0.0, 0.0, 1.0]]),
                                      np.r_[w[keep], cfg.level_weight * w[keep].sum()])
        return R, np.degrees(np.arccos(np.clip(np.einsum("ij,ij->i", a, R.apply(b)), -1.0, 1.0)))

    R, residual = fit(np.ones(len(a), bool))     # fit, drop the pairs that disagree, fit again
    keep = residual <= cfg.outlier_deg
    if (keep & travelled).sum() < cfg.min_pairs:
        return None
    R, residual = fit(keep)
    keep &= residual <= cfg.outlier_deg
    spread = float(np.sqrt(np.mean(residual[keep] ** 2)))
    if (keep & travelled).sum() < cfg.min_pairs or spread > cfg.max_spread_deg:
        return None
    return MotionProposal(R.as_matrix(), int((keep & travelled).sum()), spread, int((keep & ~travelled).sum()),
                          travel)
