"""Robust Gauss-Newton on SE(3) for reprojection-type residuals, shared by the refinement stages.

Poses are updated on the left, ``T <- exp(delta) @ T`` with ``delta = (rho [m],
phi [rad])`` as in :mod:`crossi2p_ros.geometry`, so the Jacobian of a camera-frame
point ``p`` is ``[I | -[p]x]``.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..geometry import se3_exp


def project_with_jacobian(K: np.ndarray, points_camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pinhole pixels (N, 2) of camera-frame points (N, 3) [m] and d(uv)/d(delta) (N, 2, 6).

    Callers mask points with non-positive depth; their rows are meaningless.
    """
    x, y, z = points_camera[:, 0], points_camera[:, 1], points_camera[:, 2]
    z = np.where(np.abs(z) < 1e-9, 1e-9, z)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    uv = np.stack([fx * x / z + cx, fy * y / z + cy], -1)
    iz, iz2 = 1.0 / z, 1.0 / (z * z)
    d_uv_d_p = np.zeros((len(z), 2, 3))
    d_uv_d_p[:, 0, 0] = fx * iz
    d_uv_d_p[:, 0, 2] = -fx * x * iz2
    d_uv_d_p[:, 1, 1] = fy * iz
    d_uv_d_p[:, 1, 2] = -fy * y * iz2
    d_p_d_delta = np.zeros((len(z), 3, 6))
    d_p_d_delta[:, :, :3] = np.eye(3)
    # -[p]x
    d_p_d_delta[:, 0, 4], d_p_d_delta[:, 0, 5] = points_camera[:, 2], -points_camera[:, 1]
    d_p_d_delta[:, 1, 3], d_p_d_delta[:, 1, 5] = -points_camera[:, 2], points_camera[:, 0]
    d_p_d_delta[:, 2, 3], d_p_d_delta[:, 2, 4] = points_camera[:, 1], -points_camera[:, 0]
    return uv, d_uv_d_p @ d_p_d_delta


def pullback_to_pose(K: np.ndarray, points_camera: np.ndarray, d_uv: np.ndarray) -> np.ndarray:
    """Per-point derivatives (N, 6) with respect to the left perturbation (rho, phi) of a scalar whose
    derivatives with respect to the pixel are ``d_uv`` (N, 2), at camera-frame points (N, 3) [m].

    The same chain rule as :func:`project_with_jacobian` contracted with ``d_uv``
    without building the (N, 2, 6) Jacobian: w = d/dp (N, 3) through the
    pinhole, and a left step moves p by rho + phi x p, so d/drho = w and
    d/dphi = p x w. Used where only a scalar per point matters (edge
    distance, image brightness; the window objective's compiled form is
    :func:`.edge_kernels.linearise_poses`).
    """
    fx, fy = K[0, 0], K[1, 1]
    x, y, z = points_camera[:, 0], points_camera[:, 1], points_camera[:, 2]
    iz = 1.0 / np.where(np.abs(z) < 1e-9, 1e-9, z)
    du, dv = d_uv[:, 0] * fx * iz, d_uv[:, 1] * fy * iz
    dz = -(du * x + dv * y) * iz
    # [w, p x w], the cross product written out (np.cross's axis handling cost more than the arithmetic)
    return np.stack([du, dv, dz, y * dz - z * dv, z * du - x * dz, x * dv - y * du], -1)


def cauchy_weights(residual_norm: np.ndarray, scale: float) -> np.ndarray:
    """IRLS weights of the Cauchy loss: 1 / (1 + (r / c)^2)."""
    return 1.0 / (1.0 + (residual_norm / scale) ** 2)


def normal_equations(J: np.ndarray, r: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """H = sum w J^T J (6, 6) and g = sum w J^T r (6,) for residuals r (N, k), Jacobians J (N, k, 6)."""
    Jw = (J * w[:, None, None]).reshape(-1, J.shape[2])     # one BLAS product (einsum here was 5x slower)
    return Jw.T @ J.reshape(-1, J.shape[2]), Jw.T @ r.reshape(-1)


def damped_step(H: np.ndarray, g: np.ndarray, damping: float) -> np.ndarray:
    """Levenberg-Marquardt step solving (H + lambda diag(H)) delta = -g (any size); zeros if singular."""
    A = H + damping * np.diag(np.maximum(np.diag(H), 1e-9))
    try:
        delta = -np.linalg.solve(A, g)
    except np.linalg.LinAlgError:
        return np.zeros_like(g)
    return delta if np.all(np.isfinite(delta)) else np.zeros_like(g)


def apply_step(T: np.ndarray, delta: np.ndarray) -> np.ndarray:
    return se3_exp(delta) @ T


def covariance_from_hessian(H: np.ndarray, sigma2: float) -> np.ndarray:
    """Pose covariance (6, 6) over (rho [m], phi [rad]) = sigma^2 H^-1 (any size: H's); huge where H is singular.

    Inverted through the eigen-decomposition of the symmetric part, with eigenvalues floored at 1e-12
    of the largest (and at 1e-12): always symmetric positive definite. A plain inverse of a (nearly)
    singular H returns huge entries of either sign, and a negative variance reads as sigma 0, i.e. as
    the best-constrained axis (seen: the unconstrained axis of a window of vertical bars).
    """
    H = 0.5 * (np.asarray(H, dtype=np.float64) + np.asarray(H, dtype=np.float64).T)
    huge = np.eye(len(H)) * 1e6
    if not np.all(np.isfinite(H)):
        return huge
    try:
        vals, vecs = np.linalg.eigh(H)
    except np.linalg.LinAlgError:
        return huge
    floor = max(1e-12, 1e-12 * float(vals.max()))
    cov = sigma2 * (vecs / np.maximum(vals, floor)) @ vecs.T
    if not np.all(np.isfinite(cov)):
        return huge
    return 0.5 * (cov + cov.T)


def axis_sigmas(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-axis standard deviations of a (rho, phi) covariance (6, 6): translation (3,) [m], rotation (3,) [deg]."""
    sd = np.sqrt(np.maximum(np.diag(np.asarray(cov, dtype=np.float64)), 0.0))
    return sd[:3], np.degrees(sd[3:])


def confidence_from_covariance(cov: np.ndarray, rot_ref_deg: float = 0.5, trans_ref_m: float = 0.05) -> float:
    """1 / (1 + (sigma_rot / rot_ref)^2 + (sigma_trans / trans_ref)^2) from a (rho, phi) covariance.

    Near 1 when the pose is pinned well inside the calib protocol's success
    bounds (1 deg, 5 cm; the references are half of them), near 0 when it is not.
    """
    c = np.asarray(cov, dtype=np.float64)
    rot_sd = np.degrees(np.sqrt(max(float(np.trace(c[3:, 3:])), 0.0)))
    trans_sd = np.sqrt(max(float(np.trace(c[:3, :3])), 0.0))
    value = 1.0 / (1.0 + (rot_sd / rot_ref_deg) ** 2 + (trans_sd / trans_ref_m) ** 2)
    return float(value) if np.isfinite(value) else 0.0


def spread_over_halves(keyframes: Sequence, refine_half: Callable[[list], np.ndarray], size: int,
                       resamples: int, seed: int, min_keyframes: int) -> np.ndarray:
    """Spread (size, size) over ``resamples`` random halves of a window's ``keyframes`` of what ``refine_half``
    (a half -> its estimate's offset (size,) from the whole window's) returns, about the window's own estimate.

    A half has half the data, so its spread is about sqrt(2) times the window's: the covariance is half their
    second moment. Zeros where the window has fewer than ``min_keyframes`` (or 2) keyframes or ``resamples`` < 2.
    """
    if len(keyframes) < max(min_keyframes, 2) or resamples < 2:
        return np.zeros((size, size))
    rng = np.random.default_rng(seed)
    d = np.asarray([refine_half([keyframes[i] for i in rng.permutation(len(keyframes))[: len(keyframes) // 2]])
                    for _ in range(resamples)])
    return 0.5 * (d.T @ d) / len(d)
