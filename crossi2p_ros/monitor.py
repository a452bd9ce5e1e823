"""Decalibration detection: is the live window estimate still the installed extrinsic? (pure numpy, no ROS)

An estimate ``T`` with covariance ``S`` (6x6 over a left perturbation,
translation [m] then rotation [rad], as
:class:`crossi2p_ros.registration.estimate.Estimate` gives it) is the
residual ``xi = log(T @ inv(T_installed))`` about the installed pose.
:class:`DriftMonitor` runs a generalised likelihood-ratio test on the
rotation and translation blocks of the residuals of its last ``window``
estimates (a step of unknown size, estimated as their weighted mean), with
physical WARN/ERROR thresholds on the estimated offset so statistically
certain but harmless offsets do not alarm, and a persistence count so one
unlucky solve does not either.

Window solves share keyframes, so they are not independent: the default
tests each solve alone (``window = 1``), whose covariance already covers the
window's data, and asks for ``persistence`` consecutive solves.

"OK" needs evidence. A stretch of road that constrains the extrinsic poorly
(a highway with guard rails and few upright structures) gives estimates with
large covariances, against which no offset is significant: the test would
pass while blind. Each status therefore states the smallest offset the test
could have flagged along its worst direction (``detectable_rot_deg`` /
``detectable_trans_m``), and calls the calibration *checked* only when a
decalibration at the ERROR thresholds would have shown.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .geometry import invert, se3_log

Level = Literal["OK", "WARN", "ERROR", "STALE"]

# chi-square quantiles used below (scipy.stats.chi2.ppf), fixed so the module needs no scipy
CHI2_3DOF_999 = 16.266


def _floored(cov: np.ndarray, floor_rot_deg: float, floor_trans_m: float) -> np.ndarray:
    c = np.array(cov, dtype=np.float64)
    if c.shape != (6, 6) or not np.all(np.isfinite(c)):
        c = np.eye(6) * 1e6
    return 0.5 * (c + c.T) + np.diag([floor_trans_m ** 2] * 3 + [np.radians(floor_rot_deg) ** 2] * 3)


# rotation about the camera optical frame's x, y, z axes, as a forward-looking camera moves
_ROTATION_AXES = ("pitch, about camera x", "yaw, about camera y", "roll, about camera z")


def dominant_axis(offset: np.ndarray) -> str:
    """The largest component of an offset (rho [m], phi [rad]), rotation and translation compared as
    1 deg ~ 2 cm (the pixel shift each gives at 1 m over a typical camera; a knock is usually one or the other)."""
    rot = np.degrees(np.abs(offset[3:]))
    trans = np.abs(offset[:3]) / 0.02
    if rot.max() >= trans.max():
        k = int(np.argmax(rot))
        return f"{_ROTATION_AXES[k]} ({np.degrees(offset[3 + k]):+.2f} deg)"
    k = int(np.argmax(trans))
    return f"along camera {'xyz'[k]} ({100 * offset[k]:+.1f} cm)"



@dataclass(frozen=True)
class MonitorConfig:
    window: int = 1                   # estimates pooled per test (1: window solves already pool keyframes)
    min_estimates: int = 1            # fewer: no decision (level STALE)
    min_confidence: float = 0.0
    floor_rot_deg: float = 0.0        # added to each estimate's standard deviation (window covariances are
    floor_trans_m: float = 0.0        # floored by the window estimator already)
    chi2_threshold: float = CHI2_3DOF_999   # per block (rotation, translation)
    warn_rot_deg: float = 0.5         # a significant offset beyond these raises WARN ... (translation: above
    warn_trans_m: float = 0.03        # the 1-3 cm edge-model offsets measured on synthetic windows)
    error_rot_deg: float = 2.0        # ... beyond these ERROR
    error_trans_m: float = 0.10
    persistence: int = 2              # consecutive updates a WARN/ERROR condition must hold before it is raised


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
    axis: str = ""                # the dominant component of the offset (e.g. "yaw, about camera y")
    # the smallest offset the test flags along its least constrained direction [deg, m] (inf: unconstrained) ...
    detectable_rot_deg: float = float("inf")
    detectable_trans_m: float = float("inf")
    checked: bool = False         # ... both within the ERROR thresholds (a decalibration that size would show),
                                  # or a drift raised: the status rests on evidence


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
        stats, detectable, offset = [], [], np.zeros(6)
        for block in (slice(3, 6), slice(0, 3)):
            I = info[:, block, block]
            H = I.sum(0)
            m = np.linalg.solve(H, np.einsum("kij,kj->i", I, xi[:, block]))
            offset[block] = m
            stats.append(float(m @ H @ m))     # GLR statistic of "mean offset m" against "no offset"
            # an offset d along H's weakest eigenvector has statistic d^2 * lambda_min: flagged from this size on
            weakest = float(np.linalg.eigvalsh(0.5 * (H + H.T))[0])
            detectable.append(float(np.sqrt(cfg.chi2_threshold / weakest)) if weakest > 0 else float("inf"))
        detectable_rot_deg, detectable_trans_m = float(np.degrees(detectable[0])), detectable[1]
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
        # a raised drift is evidence itself; an OK needs the power to have seen one at the ERROR thresholds
        checked = level != "OK" or (detectable_rot_deg <= cfg.error_rot_deg
                                    and detectable_trans_m <= cfg.error_trans_m)
        axis = dominant_axis(offset)
        what = (f"live extrinsic differs from the installed one by {rot_deg:.2f} deg / {100 * trans_m:.1f} cm"
                + (f", mostly {axis}" if level != "OK" else ""))
        hidden = f"{detectable_rot_deg:.2f} deg / {100 * detectable_trans_m:.1f} cm"
        message = {"OK": (f"calibration OK ({what}; a drift of {hidden} or more would show, {n} estimates)" if checked
                          else f"calibration unchecked: these windows could hide a drift of up to {hidden} (too few "
                               f"constraints on this stretch, e.g. a straight road); installed calibration assumed "
                               f"({what})"),
                   "WARN": f"possible decalibration: {what}",
                   "ERROR": f"DECALIBRATED: {what}; recalibrate or check the sensor mounts"}[level]
        self.status = DriftStatus(level, message, offset, rot_deg, trans_m, stats[0], stats[1], n, axis,
                                  detectable_rot_deg, detectable_trans_m, checked)
        return self.status
