"""Temporal fusion of per-frame extrinsic estimates and decalibration detection (pure numpy, no ROS).

Both work on the Lie algebra: an estimate ``T`` with covariance ``S`` (6x6
over a left perturbation, translation [m] then rotation [rad], as
:class:`crossi2p_ros.registration.calibrator.Estimate` gives it) is the
residual ``xi = log(T @ inv(T_ref))`` about a reference pose.

* :class:`PoseFusion` keeps a sliding window of estimates and returns their
  information-weighted mean, re-linearised about the mean, after iteratively
  rejecting estimates whose Mahalanobis distance to the mean is improbable
  (chi-square, 6 dof). Each covariance gets a floor added first: per-frame
  covariances of registration are optimistic and frames are not independent.
* :class:`DriftMonitor` compares estimates with the installed extrinsic: a
  windowed generalised likelihood-ratio test on the rotation and translation
  blocks of the residual (a step of unknown size starting inside the window,
  its size estimated as the window's weighted mean), with physical WARN/ERROR
  thresholds on the estimated offset so statistically certain but harmless
  offsets do not alarm.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .geometry import invert, se3_exp, se3_log

Level = Literal["OK", "WARN", "ERROR", "STALE"]

# chi-square quantiles used below (scipy.stats.chi2.ppf), fixed so the module needs no scipy
CHI2_6DOF_99 = 16.812
CHI2_3DOF_999 = 16.266


def _floored(cov: np.ndarray, floor_rot_deg: float, floor_trans_m: float) -> np.ndarray:
    c = np.array(cov, dtype=np.float64)
    if c.shape != (6, 6) or not np.all(np.isfinite(c)):
        c = np.eye(6) * 1e6
    return 0.5 * (c + c.T) + np.diag([floor_trans_m ** 2] * 3 + [np.radians(floor_rot_deg) ** 2] * 3)


def _information(covs: np.ndarray) -> np.ndarray:
    return np.linalg.inv(covs)


@dataclass(frozen=True)
class FusionConfig:
    window: int = 50                  # estimates fused (sliding window)
    min_confidence: float = 0.0       # estimates below this confidence are ignored
    floor_rot_deg: float = 0.3        # added to every estimate's standard deviation (see module doc); the
    floor_trans_m: float = 0.03       # per-frame accuracy measured on synthetic drives (docs/benchmarks.md)
    outlier_chi2: float = CHI2_6DOF_99
    iterations: int = 5               # reject / re-estimate rounds
    converged_rot_deg: float = 0.1    # converged: fused standard deviations below these ...
    converged_trans_m: float = 0.01
    min_estimates: int = 5            # ... with at least this many inliers


@dataclass
class FusedPose:
    T: np.ndarray                 # fused T_camera_lidar
    covariance: np.ndarray        # (6, 6) of the fused pose
    used: int                     # inlier estimates in the window
    rejected: int                 # estimates of the window rejected as outliers
    converged: bool

    @property
    def rot_std_deg(self) -> float:
        return float(np.degrees(np.sqrt(max(np.trace(self.covariance[3:, 3:]), 0.0))))

    @property
    def trans_std_m(self) -> float:
        return float(np.sqrt(max(np.trace(self.covariance[:3, :3]), 0.0)))


def fuse(poses: np.ndarray, covariances: np.ndarray, cfg: FusionConfig = FusionConfig(),
         T_start: np.ndarray | None = None) -> FusedPose | None:
    """Robust information-weighted mean of poses (K, 4, 4) with covariances (K, 6, 6); None if K == 0."""
    K = len(poses)
    if K == 0:
        return None
    covs = np.stack([_floored(c, cfg.floor_rot_deg, cfg.floor_trans_m) for c in covariances])
    info = _information(covs)
    T_ref = np.asarray(poses[0] if T_start is None else T_start, dtype=np.float64)
    inlier = np.ones(K, dtype=bool)
    for _ in range(max(cfg.iterations, 1)):
        # information-weighted mean of the inliers about T_ref (twice: the log map is re-linearised at the mean)
        for _ in range(2):
            xi = se3_log(poses @ invert(T_ref))                            # (K, 6) about T_ref
            H = info[inlier].sum(0)
            T_ref = se3_exp(np.linalg.solve(H, np.einsum("kij,kj->i", info[inlier], xi[inlier]))) @ T_ref
        xi = se3_log(poses @ invert(T_ref))
        d2 = np.einsum("ki,kij,kj->k", xi, info, xi)
        new = d2 <= cfg.outlier_chi2
        if not new.any():
            new = d2 <= np.min(d2)   # keep the most consistent one rather than nothing
        if np.array_equal(new, inlier):
            break
        inlier = new
    else:  # the inlier set changed in the last round: give the mean one more pass with it
        xi = se3_log(poses @ invert(T_ref))
        T_ref = se3_exp(np.linalg.solve(info[inlier].sum(0), np.einsum("kij,kj->i", info[inlier], xi[inlier]))) @ T_ref
    cov = np.linalg.inv(info[inlier].sum(0))
    fused = FusedPose(T_ref, cov, int(inlier.sum()), int((~inlier).sum()), False)
    fused.converged = (fused.used >= cfg.min_estimates and fused.rot_std_deg <= cfg.converged_rot_deg
                       and fused.trans_std_m <= cfg.converged_trans_m)
    return fused


class PoseFusion:
    """Sliding-window robust fusion of a stream of estimates."""

    def __init__(self, cfg: FusionConfig = FusionConfig()):
        self.cfg = cfg
        self._poses: deque[np.ndarray] = deque(maxlen=cfg.window)
        self._covs: deque[np.ndarray] = deque(maxlen=cfg.window)
        self.result: FusedPose | None = None

    def reset(self) -> None:
        self._poses.clear()
        self._covs.clear()
        self.result = None

    def __len__(self) -> int:
        return len(self._poses)

    def add(self, T: np.ndarray, covariance: np.ndarray, confidence: float = 1.0) -> FusedPose | None:
        """Add one estimate (T_camera_lidar, its covariance); returns the fused pose so far."""
        if confidence >= self.cfg.min_confidence and np.all(np.isfinite(T)):
            self._poses.append(np.asarray(T, dtype=np.float64))
            self._covs.append(np.asarray(covariance, dtype=np.float64))
            start = self.result.T if self.result is not None else None
            self.result = fuse(np.stack(self._poses), np.stack(self._covs), self.cfg, start)
        return self.result


# --------------------------------------------------------------------------- drift


@dataclass(frozen=True)
class MonitorConfig:
    window: int = 30                  # estimates in the test window (3 s at 10 Hz)
    min_estimates: int = 5            # fewer in the window: no decision (level STALE)
    min_confidence: float = 0.0
    floor_rot_deg: float = 0.3
    floor_trans_m: float = 0.03
    chi2_threshold: float = CHI2_3DOF_999   # per block (rotation, translation)
    warn_rot_deg: float = 0.5         # a significant offset beyond these raises WARN ... (translation: above
    warn_trans_m: float = 0.05        # the ~3 cm bias measured on calm synthetic drives, docs/benchmarks.md)
    error_rot_deg: float = 2.0        # ... beyond these ERROR
    error_trans_m: float = 0.10
    persistence: int = 5              # consecutive updates a WARN/ERROR condition must hold before it is raised


@dataclass
class DriftStatus:
    level: Level
    message: str
    offset: np.ndarray            # estimated (rho [m], phi [rad]) of live vs installed (left perturbation)
    rot_deg: float                # its rotation angle
    trans_m: float                # its translation norm
    rot_statistic: float          # GLR (chi-square, 3 dof) of the rotation block
    trans_statistic: float
    estimates: int


class DriftMonitor:
    """Decides whether live estimates still agree with the installed extrinsic ``T_installed`` (T_camera_lidar)."""

    def __init__(self, T_installed: np.ndarray, cfg: MonitorConfig = MonitorConfig()):
        self.cfg = cfg
        self.T_installed = np.asarray(T_installed, dtype=np.float64)
        self._xi: deque[np.ndarray] = deque(maxlen=cfg.window)
        self._info: deque[np.ndarray] = deque(maxlen=cfg.window)
        self._streak = 0
        self.status = self._stale(0)

    def reset(self) -> None:
        self._xi.clear()
        self._info.clear()
        self._streak = 0
        self.status = self._stale(0)

    def _stale(self, n: int) -> DriftStatus:
        return DriftStatus("STALE", f"waiting for estimates ({n} of {self.cfg.min_estimates})", np.zeros(6),
                           0.0, 0.0, 0.0, 0.0, n)

    def add(self, T: np.ndarray, covariance: np.ndarray, confidence: float = 1.0) -> DriftStatus:
        cfg = self.cfg
        if confidence >= cfg.min_confidence and np.all(np.isfinite(T)):
            self._xi.append(se3_log(np.asarray(T, dtype=np.float64) @ invert(self.T_installed)))
            self._info.append(np.linalg.inv(_floored(covariance, cfg.floor_rot_deg, cfg.floor_trans_m)))
        n = len(self._xi)
        if n < cfg.min_estimates:
            self.status = self._stale(n)
            return self.status
        xi, info = np.stack(self._xi), np.stack(self._info)
        stats, offset = [], np.zeros(6)
        for block in (slice(3, 6), slice(0, 3)):
            I = info[:, block, block]
            H = I.sum(0)
            m = np.linalg.solve(H, np.einsum("kij,kj->i", I, xi[:, block]))
            offset[block] = m
            stats.append(float(m @ H @ m))     # GLR statistic of "mean offset m" against "no offset"
        rot_deg = float(np.degrees(np.linalg.norm(offset[3:])))
        trans_m = float(np.linalg.norm(offset[:3]))
        rot_sig, trans_sig = stats[0] > cfg.chi2_threshold, stats[1] > cfg.chi2_threshold
        level: Level = "OK"
        if (rot_sig and rot_deg > cfg.error_rot_deg) or (trans_sig and trans_m > cfg.error_trans_m):
            level = "ERROR"
        elif (rot_sig and rot_deg > cfg.warn_rot_deg) or (trans_sig and trans_m > cfg.warn_trans_m):
            level = "WARN"
        # the windows overlap, so one unlucky stretch would pass the test many times over: require persistence
        self._streak = self._streak + 1 if level != "OK" else 0
        if self._streak < cfg.persistence:
            level = "OK"
        what = f"live extrinsic differs from the installed one by {rot_deg:.2f} deg / {100 * trans_m:.1f} cm"
        message = {"OK": f"calibration OK ({what}, {n} estimates)",
                   "WARN": f"possible decalibration: {what}",
                   "ERROR": f"DECALIBRATED: {what}; recalibrate or check the sensor mounts"}[level]
        self.status = DriftStatus(level, message, offset, rot_deg, trans_m, stats[0], stats[1], n)
        return self.status
