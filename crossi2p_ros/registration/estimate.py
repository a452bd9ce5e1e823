"""The result of a window solve, one type from the window estimator through the Calibrator to the session.

Torch-free, so the session, replay and the node's readers take it without the
network.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..geometry import PoseError, pose_error
from .solver import axis_sigmas


@dataclass
class Estimate:
    """Result of one window.

    ``T_camera_lidar`` maps LiDAR points into the camera optical frame (4x4,
    metres); with no usable result it is the initial guess (or identity) and
    ``ok`` is False. ``covariance`` (6x6) is over a left perturbation
    (translation [m], rotation [rad]) of ``T_camera_lidar`` in the camera
    frame (10^6 I when nothing supports the pose). ``converged``: ``ok`` and
    every axis' sigma below the window's convergence bounds; ``unconstrained``
    names the axes (:data:`.window_config.AXES`) the window does not pin.
    ``confidence`` in [0, 1] is :func:`.solver.confidence_from_covariance` (0
    when not ``ok``). ``inliers`` counts the edge points behind the pose,
    ``keyframes`` the frames used, ``keyframes_skipped`` those with too few
    edge points in view. ``stage``: ``window``, ``mi`` (polished), ``prior``
    (nothing better than the initial guess) or ``none``; ``score`` the mean
    per-frame score at the finest level, in [0, 1]; ``evaluations`` the poses
    scored; ``timings_ms`` has one entry per stage run, plus ``total``.

    ``time_offset_s``: the camera's exposure minus its stamp [s], estimated with
    the pose where the window's motion shows it (:mod:`.time_offset`), else
    None; ``time_offset_sigma_s`` its standard deviation, also where it was
    found unobservable (too large to claim; inf where the window barely
    moves or has too few keyframes to show it); None where nothing could
    show it (no twists: no odometry).
    """

    T_camera_lidar: np.ndarray
    confidence: float
    covariance: np.ndarray
    inliers: int
    stage: str
    ok: bool
    message: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)
    converged: bool = False
    unconstrained: list[str] = field(default_factory=list)
    keyframes: int = 0
    score: float = 0.0
    keyframes_skipped: int = 0
    evaluations: int = 0
    time_offset_s: float | None = None
    time_offset_sigma_s: float | None = None
    rivals: int = 0               # other optima the window could not tell from this one (the covariance spans them)

    def error_to(self, T_gt: np.ndarray) -> PoseError:
        """Pose error of this estimate against ``T_gt`` (DESIGN.md metrics)."""
        return pose_error(self.T_camera_lidar, T_gt)

    @property
    def sigma_deg(self) -> np.ndarray:
        """Per-axis rotation standard deviation about the camera's x, y, z (pitch, yaw, roll) [deg]."""
        return axis_sigmas(self.covariance)[1]

    @property
    def sigma_m(self) -> np.ndarray:
        """Per-axis translation standard deviation (camera x, y, z) [m]."""
        return axis_sigmas(self.covariance)[0]


def time_offset_ms(est: Estimate) -> tuple[float | None, float | str | None]:
    """An estimate's time offset as reports write it: ``(offset [ms] or None, sigma [ms], "unobservable" or None)``."""
    sigma = est.time_offset_sigma_s
    return (None if est.time_offset_s is None else 1e3 * est.time_offset_s,
            None if sigma is None else ("unobservable" if not np.isfinite(sigma) else 1e3 * sigma))
