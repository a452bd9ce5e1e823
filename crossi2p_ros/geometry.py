"""Rigid-body geometry, camera models and pose-error metrics (numpy only).

Conventions (see DESIGN.md):

* ``T_a_b`` is a 4x4 homogeneous transform mapping points in frame ``b`` into
  frame ``a``: ``p_a = T_a_b @ p_b``. Translations are in metres.
* The camera frame is the REP-103 optical frame: x right, y down, z forward.
* A twist ``xi`` is ``(rho, phi)``: translation part first, rotation vector
  (axis * angle, radians) second, as in Sophus and Barfoot's book.
* Angles exposed to users are in degrees; internal Lie-algebra vectors are
  radians.

All functions broadcast over leading batch dimensions where that is natural.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.spatial.transform import Rotation

_EPS = 1e-9

# --------------------------------------------------------------------------- SO(3)


def skew(v: np.ndarray) -> np.ndarray:
    """Skew-symmetric matrices ``[v]_x`` of shape (..., 3, 3) for vectors (..., 3)."""
    v = np.asarray(v, dtype=np.float64)
    z = np.zeros(v.shape[:-1])
    return np.stack(
        [
            np.stack([z, -v[..., 2], v[..., 1]], -1),
            np.stack([v[..., 2], z, -v[..., 0]], -1),
            np.stack([-v[..., 1], v[..., 0], z], -1),
        ],
        -2,
    )


def so3_exp(phi: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) from rotation vectors (..., 3) in radians."""
    phi = np.asarray(phi, dtype=np.float64)
    theta = np.linalg.norm(phi, axis=-1)[..., None, None]
    K = skew(phi)
    small = theta < 1e-6
    safe = np.where(small, 1.0, theta)
    a = np.where(small, 1.0 - theta**2 / 6.0, np.sin(safe) / safe)
    b = np.where(small, 0.5 - theta**2 / 24.0, (1.0 - np.cos(safe)) / safe**2)
    return np.eye(3) + a * K + b * (K @ K)


def so3_log(R: np.ndarray) -> np.ndarray:
    """Rotation vectors (..., 3) in radians from rotation matrices (..., 3, 3).

    Uses scipy's quaternion path, which is accurate near 0 and near pi.
    """
    R = np.asarray(R, dtype=np.float64)
    flat = R.reshape(-1, 3, 3)
    return Rotation.from_matrix(flat).as_rotvec().reshape(R.shape[:-2] + (3,))


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Geodesic angle of rotation matrices (..., 3, 3), in degrees."""
    return np.degrees(np.linalg.norm(so3_log(R), axis=-1))


# --------------------------------------------------------------------------- SE(3)


def make_transform(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """4x4 transforms (..., 4, 4) from rotations (..., 3, 3) and translations (..., 3) [m]."""
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    T = np.zeros(np.broadcast_shapes(R.shape[:-2], t.shape[:-1]) + (4, 4))
    T[..., :3, :3] = R
    T[..., :3, 3] = t
    T[..., 3, 3] = 1.0
    return T


def invert(T: np.ndarray) -> np.ndarray:
    """Inverse of rigid transforms (..., 4, 4): ``T_b_a`` from ``T_a_b``."""
    T = np.asarray(T, dtype=np.float64)
    R_inv = np.swapaxes(T[..., :3, :3], -1, -2)
    return make_transform(R_inv, -(R_inv @ T[..., :3, 3:4])[..., 0])


def compose(*transforms: np.ndarray) -> np.ndarray:
    """Left-to-right product ``T_a_b @ T_b_c @ ...`` of 4x4 transforms."""
    out = np.asarray(transforms[0], dtype=np.float64)
    for T in transforms[1:]:
        out = out @ np.asarray(T, dtype=np.float64)
    return out


def finite_rows(a: np.ndarray) -> np.ndarray:
    """Mask (N,) of the rows of ``a`` (N, C) whose C values are all finite.

    Column by column on purpose: ``np.isfinite(a).all(axis=1)`` on a narrow
    array is a slow reduction (7 ms against 0.3 ms for a 120k-point sweep).
    """
    mask = np.isfinite(a[:, 0])
    for c in range(1, a.shape[1]):
        mask &= np.isfinite(a[:, c])
    return mask


def transform_points(T_a_b: np.ndarray, points_b: np.ndarray) -> np.ndarray:
    """Map points (N, 3) from frame b into frame a with ``T_a_b`` (4x4)."""
    points_b = np.asarray(points_b)
    R = T_a_b[:3, :3].astype(points_b.dtype, copy=False)
    t = T_a_b[:3, 3].astype(points_b.dtype, copy=False)
    return points_b[:, :3] @ R.T + t


def _so3_left_jacobian(phi: np.ndarray) -> np.ndarray:
    theta = np.linalg.norm(phi, axis=-1)[..., None, None]
    K = skew(phi)
    small = theta < 1e-6
    safe = np.where(small, 1.0, theta)
    b = np.where(small, 0.5 - theta**2 / 24.0, (1.0 - np.cos(safe)) / safe**2)
    c = np.where(small, 1.0 / 6.0 - theta**2 / 120.0, (safe - np.sin(safe)) / safe**3)
    return np.eye(3) + b * K + c * (K @ K)


def se3_exp(xi: np.ndarray) -> np.ndarray:
    """4x4 transforms (..., 4, 4) from twists (..., 6) = (rho [m], phi [rad])."""
    xi = np.asarray(xi, dtype=np.float64)
    rho, phi = xi[..., :3], xi[..., 3:]
    t = (_so3_left_jacobian(phi) @ rho[..., None])[..., 0]
    return make_transform(so3_exp(phi), t)


def se3_log(T: np.ndarray) -> np.ndarray:
    """Twists (..., 6) = (rho [m], phi [rad]) from 4x4 transforms (..., 4, 4)."""
    T = np.asarray(T, dtype=np.float64)
    phi = so3_log(T[..., :3, :3])
    rho = np.linalg.solve(_so3_left_jacobian(phi), T[..., :3, 3:4])[..., 0]
    return np.concatenate([rho, phi], axis=-1)


def ros_pose_covariance(T_camera_lidar: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    """The covariance of ``T_lidar_camera`` as ``geometry_msgs/PoseWithCovariance`` states it, from ours.

    Ours (:class:`~crossi2p_ros.registration.estimate.Estimate`) is over a
    left perturbation ``exp(xi) @ T_camera_lidar``, ``xi = (rho [m], phi
    [rad])`` in the camera frame. ROS's is over the published pose's position
    (x, y, z [m] in the parent, LiDAR, frame) and its rotation about the
    parent's fixed x, y, z axes [rad]. Since ``inv(exp(xi) T_cl) = exp(-Ad xi) T_lc``,
    to first order both blocks turn by ``R_lidar_camera`` (the sign drops out).
    """
    R_lc = np.asarray(T_camera_lidar, dtype=np.float64)[:3, :3].T
    B = np.zeros((6, 6))
    B[:3, :3] = B[3:, 3:] = R_lc
    cov = B @ np.asarray(covariance, dtype=np.float64) @ B.T
    return 0.5 * (cov + cov.T)


def random_unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` directions (n, 3) uniformly distributed on the unit sphere."""
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def random_perturbations(
    rng: np.random.Generator, n: int, max_rot_deg: float, max_trans_m: float
) -> np.ndarray:
    """``n`` random rigid transforms (n, 4, 4) of bounded size.

    Rotation: angle uniform in [0, max_rot_deg] about a uniformly random axis.
    Translation: uniform in the ball of radius ``max_trans_m`` metres.
    """
    angles = np.radians(rng.uniform(0.0, max_rot_deg, size=n))
    R = so3_exp(random_unit_vectors(rng, n) * angles[:, None])
    radii = max_trans_m * rng.uniform(0.0, 1.0, size=n) ** (1.0 / 3.0)
    t = random_unit_vectors(rng, n) * radii[:, None]
    return make_transform(R, t)


# --------------------------------------------------------------------------- pose errors


@dataclass(frozen=True)
class PoseError:
    """Error of a predicted pose against ground truth.

    ``rot_deg``: geodesic angle of ``R_err`` [deg]; ``trans_m``: ``||t_err||`` [m];
    ``rre_deg``: sum of |Euler angles| of ``R_err`` (scipy ``'xzy'``, as
    CorrI2P/CoFiI2P evaluate) [deg]; ``rte_m``: equals ``trans_m`` (the I2P name).
    """

    rot_deg: float
    trans_m: float
    rre_deg: float
    rte_m: float


def pose_error(T_pred: np.ndarray, T_gt: np.ndarray) -> PoseError:
    """Error of ``T_pred`` against ``T_gt`` with ``T_err = inv(T_pred) @ T_gt``."""
    T_err = invert(T_pred) @ np.asarray(T_gt, dtype=np.float64)
    rot = float(rotation_angle_deg(T_err[:3, :3]))
    trans = float(np.linalg.norm(T_err[:3, 3]))
    rre = float(np.abs(Rotation.from_matrix(T_err[:3, :3]).as_euler("xzy", degrees=True)).sum())
    return PoseError(rot_deg=rot, trans_m=trans, rre_deg=rre, rte_m=trans)


def pose_distance(T_pred: np.ndarray, T_gt: np.ndarray) -> PoseError:
    """:func:`pose_error` without its Euler decomposition (``rre_deg`` is NaN): the window search compares
    thousands of poses, and scipy's Euler angles cost ten times the rest."""
    rot, trans = pose_distances(np.asarray(T_pred, dtype=np.float64)[None], T_gt)
    return PoseError(rot_deg=float(rot[0]), trans_m=float(trans[0]), rre_deg=float("nan"), rte_m=float(trans[0]))


def pose_distances(Ts: np.ndarray, T_ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`pose_distance` of each pose of ``Ts`` (C, 4, 4) from ``T_ref``: rotation angles (C,) [deg] and
    translation distances (C,) [m], as arrays (one call for a batch of poses)."""
    Ts, T_ref = np.asarray(Ts, dtype=np.float64), np.asarray(T_ref, dtype=np.float64)
    # trace(R^T R_ref) without the products; |R^T (t_ref - t)| = |t_ref - t|
    cos = np.clip(0.5 * (np.einsum("cij,ij->c", Ts[:, :3, :3], T_ref[:3, :3]) - 1.0), -1.0, 1.0)
    return np.degrees(np.arccos(cos)), np.linalg.norm(T_ref[:3, 3] - Ts[:, :3, 3], axis=1)


def within_sigma(T_pred: np.ndarray, covariance: np.ndarray, T_gt: np.ndarray, k: float = 3.0) -> bool:
    """Whether ``T_gt`` lies within ``k`` sigma of ``T_pred`` on every axis.

    ``covariance`` (6, 6) is over the left perturbation (rho [m], phi [rad]) of
    ``T_pred``, the convention of the registration stages; the truth's
    perturbation is ``se3_log(T_gt @ inv(T_pred))``.
    """
    delta = se3_log(np.asarray(T_gt, dtype=np.float64) @ invert(T_pred))
    sd = np.sqrt(np.maximum(np.diag(covariance), 1e-30))
    return bool(np.all(np.abs(delta) <= k * sd))


# --------------------------------------------------------------------------- camera model

DistortionModel = Literal["pinhole", "plumb_bob", "rational_polynomial", "equidistant"]
_DIST_LEN = {"pinhole": 0, "plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}
_RADIAL_TANGENTIAL = ("plumb_bob", "rational_polynomial")
_UNDISTORT_ITERS = 20
_NEWTON_STEPS = 5


@dataclass(frozen=True)
class CameraModel:
    """A calibrated camera: intrinsics ``K`` [pixels] plus lens distortion.

    ``model`` follows ROS CameraInfo naming: ``plumb_bob`` is OpenCV's
    (k1, k2, p1, p2, k3) radial-tangential model, ``rational_polynomial`` its
    (k1, k2, p1, p2, k3, k4, k5, k6) one (the radial factor a ratio of two
    cubics in r^2, as wide lenses are calibrated), ``equidistant`` is OpenCV's
    fisheye (k1, k2, k3, k4) model, ``pinhole`` means no distortion.
    ``width`` and ``height`` are the image size in pixels.
    """

    width: int
    height: int
    K: np.ndarray
    dist: np.ndarray = field(default_factory=lambda: np.zeros(0))
    model: DistortionModel = "pinhole"

    def __post_init__(self) -> None:
        K = np.asarray(self.K, dtype=np.float64).reshape(3, 3)
        if self.model not in _DIST_LEN:
            raise ValueError(f"unknown distortion model {self.model!r}; use one of {sorted(_DIST_LEN)}")
        # CameraInfo arrives from the network: refuse what would give NaN or absurd projections downstream
        if not (0 < int(self.width) <= 65535 and 0 < int(self.height) <= 65535):
            raise ValueError(f"image size {self.width}x{self.height} is not a camera's (1..65535 pixels each)")
        if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], [0, 0, 1]):
            raise ValueError("K must be finite with positive focal lengths and last row (0, 0, 1)")
        n = _DIST_LEN[self.model]
        d = np.zeros(n)
        given = np.asarray(self.dist, dtype=np.float64).ravel()[:n]
        if not np.all(np.isfinite(given)):
            raise ValueError("distortion coefficients must be finite")
        d[: given.size] = given
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "dist", d)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_intrinsics(
        cls, width: int, height: int, fx: float, fy: float, cx: float, cy: float,
        dist: np.ndarray | None = None, model: DistortionModel = "pinhole",
    ) -> "CameraModel":
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        return cls(width, height, K, np.zeros(0) if dist is None else np.asarray(dist), model)

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    @property
    def is_distorted(self) -> bool:
        return self.model != "pinhole" and bool(np.any(self.dist != 0))

    def opencv_dist(self) -> np.ndarray:
        """Distortion coefficients in the layout OpenCV expects for this model."""
        return self.dist.copy()

    def scaled(self, sx: float, sy: float | None = None) -> "CameraModel":
        """The same camera after resizing the image by ``sx`` (and ``sy``)."""
        sy = sx if sy is None else sy
        K = self.K.copy()
        K[0] *= sx
        K[1] *= sy
        return CameraModel(round(self.width * sx), round(self.height * sy), K, self.dist, self.model)

    # ------------------------------------------------------------ projection
    def _radial(self, r2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The radial factor f(r^2) of the radial-tangential models and its derivative df/d(r^2)."""
        d = np.zeros(8)
        d[: len(self.dist)] = self.dist
        k1, k2, _, _, k3, k4, k5, k6 = d
        num, dnum = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3)), k1 + r2 * (2.0 * k2 + r2 * 3.0 * k3)
        den, dden = 1.0 + r2 * (k4 + r2 * (k5 + r2 * k6)), k4 + r2 * (2.0 * k5 + r2 * 3.0 * k6)
        return num / den, (dnum * den - num * dden) / (den * den)

    def distort_normalized(self, xy: np.ndarray) -> np.ndarray:
        """Apply lens distortion to normalised image coordinates (N, 2) = (x/z, y/z)."""
        x, y = xy[:, 0], xy[:, 1]
        if self.model in _RADIAL_TANGENTIAL:
            p1, p2 = self.dist[2], self.dist[3]
            r2 = x * x + y * y
            radial = self._radial(r2)[0]
            xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
            yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
            return np.stack([xd, yd], axis=1)
        if self.model == "equidistant":
            k1, k2, k3, k4 = self.dist
            r = np.sqrt(x * x + y * y)
            theta = np.arctan(r)
            t2 = theta * theta
            theta_d = theta * (1.0 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
            scale = np.where(r > _EPS, theta_d / np.maximum(r, _EPS), 1.0)
            return xy * scale[:, None]
        return xy

    def undistort_normalized(self, xy_d: np.ndarray) -> np.ndarray:
        """Invert :meth:`distort_normalized` (iteratively, as OpenCV does)."""
        xy_d = np.asarray(xy_d, dtype=np.float64)
        if self.model in _RADIAL_TANGENTIAL:
            p1, p2 = self.dist[2], self.dist[3]
            xy = xy_d.copy()
            for _ in range(_UNDISTORT_ITERS):
                x, y = xy[:, 0], xy[:, 1]
                r2 = x * x + y * y
                radial = self._radial(r2)[0]
                dx = 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
                dy = p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
                xy = np.stack([(xy_d[:, 0] - dx) / radial, (xy_d[:, 1] - dy) / radial], axis=1)
            # the fixed point above (OpenCV's) crawls where a strong lens bends most (a rational wide lens's
            # corners stayed 0.03 off after 20 steps): Newton steps on the 2x2 Jacobian finish it
            for _ in range(_NEWTON_STEPS):
                x, y = xy[:, 0], xy[:, 1]
                r2 = x * x + y * y
                f, df = self._radial(r2)
                res = self.distort_normalized(xy) - xy_d
                a = f + 2.0 * x * x * df + 2.0 * p1 * y + 6.0 * p2 * x
                b = 2.0 * x * y * df + 2.0 * p1 * x + 2.0 * p2 * y
                d = f + 2.0 * y * y * df + 6.0 * p1 * y + 2.0 * p2 * x
                det = a * d - b * b
                ok = np.abs(det) > 1e-12
                det = np.where(ok, det, 1.0)
                step = np.stack([(d * res[:, 0] - b * res[:, 1]) / det, (a * res[:, 1] - b * res[:, 0]) / det], 1)
                xy = xy - np.where(ok[:, None], step, 0.0)
            return xy
        if self.model == "equidistant":
            k1, k2, k3, k4 = self.dist
            theta_d = np.linalg.norm(xy_d, axis=1)
            theta = theta_d.copy()
            for _ in range(_UNDISTORT_ITERS):  # Newton on theta_d(theta) - theta_d = 0
                t2 = theta * theta
                f = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4)))) - theta_d
                df = 1 + t2 * (3 * k1 + t2 * (5 * k2 + t2 * (7 * k3 + t2 * 9 * k4)))
                theta = theta - f / df
            scale = np.where(theta_d > _EPS, np.tan(theta) / np.maximum(theta_d, _EPS), 1.0)
            return xy_d * scale[:, None]
        return xy_d

    def project(self, points_camera: np.ndarray, min_depth: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
        """Project points (N, 3) in the camera optical frame [m] to pixels.

        Returns ``(uv, valid)``: pixel coordinates (N, 2) (u right, v down; pixel
        centres at integer coordinates, as in OpenCV) and a mask of points in
        front of the camera (z > ``min_depth``) that land inside the image.
        Pixel coordinates of invalid points are finite but meaningless.
        """
        p = np.asarray(points_camera, dtype=np.float64)
        z = p[:, 2]
        in_front = z > min_depth
        xy = p[:, :2] / np.where(in_front, z, 1.0)[:, None]
        xy_d = self.distort_normalized(xy)
        uv = xy_d @ self.K[:2, :2].T + self.K[:2, 2]
        return uv, in_front & self._distortion_monotonic(xy) & self.in_image(uv)

    def _distortion_monotonic(self, xy: np.ndarray) -> np.ndarray:
        """Mask of normalised points where radial distortion is still monotonic.

        Beyond that radius a polynomial lens model folds back, and points far
        outside the field of view would land inside the image.
        """
        if self.model not in _RADIAL_TANGENTIAL:
            return np.ones(xy.shape[0], dtype=bool)
        r2 = np.einsum("ij,ij->i", xy, xy)
        f, df = self._radial(r2)
        return f + 2.0 * r2 * df > 0.0     # d(r f(r^2)) / dr

    def in_image(self, uv: np.ndarray) -> np.ndarray:
        """Mask of pixel coordinates (N, 2) inside the image bounds."""
        u, v = uv[:, 0], uv[:, 1]
        return (u >= -0.5) & (u < self.width - 0.5) & (v >= -0.5) & (v < self.height - 0.5)

    def unproject(self, uv: np.ndarray) -> np.ndarray:
        """Rays (N, 3) with z = 1 in the camera optical frame through pixels (N, 2)."""
        uv = np.asarray(uv, dtype=np.float64)
        xy_d = (uv - self.K[:2, 2]) @ np.linalg.inv(self.K[:2, :2]).T
        xy = self.undistort_normalized(xy_d)
        return np.concatenate([xy, np.ones((xy.shape[0], 1))], axis=1)

    # ------------------------------------------------------------ ROS interop
    def to_camera_info_dict(self) -> dict:
        """Fields of a ``sensor_msgs/CameraInfo`` (width, height, distortion_model, d, k, r, p)."""
        P = np.zeros((3, 4))
        P[:, :3] = self.K
        return {
            "width": self.width,
            "height": self.height,
            "distortion_model": "plumb_bob" if self.model == "pinhole" else self.model,
            "d": self.dist.tolist() if self.model != "pinhole" else [0.0] * 5,
            "k": self.K.ravel().tolist(),
            "r": np.eye(3).ravel().tolist(),
            "p": P.ravel().tolist(),
        }

    @classmethod
    def from_camera_info_dict(cls, info: dict) -> "CameraModel":
        """Inverse of :meth:`to_camera_info_dict`; accepts any mapping with those keys."""
        model = str(info.get("distortion_model") or "plumb_bob")
        d = np.asarray(info.get("d", []), dtype=np.float64)
        if model in _RADIAL_TANGENTIAL and not np.any(d != 0):
            model = "pinhole"
        return cls(int(info["width"]), int(info["height"]), np.asarray(info["k"], dtype=np.float64).reshape(3, 3), d, model)  # type: ignore[arg-type]


def project_lidar(
    points_lidar: np.ndarray, T_camera_lidar: np.ndarray, camera: CameraModel
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project LiDAR points (N, >=3) [m] into the image.

    Returns ``(uv, depth, valid)``: pixels (N, 2), depth along the optical axis
    (N,) [m], and the mask of points in front of the camera and inside the image.
    """
    p_cam = transform_points(T_camera_lidar, np.asarray(points_lidar, dtype=np.float64)[:, :3])
    uv, valid = camera.project(p_cam)
    return uv, p_cam[:, 2], valid


def project_pinhole(K: np.ndarray, points_camera: np.ndarray, min_depth: float = 1e-3
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (N, 2) of camera-frame points (N, >=3) [m] through pinhole ``K``, and the mask of points
    deeper than ``min_depth`` [m]; the pixels of the others are finite but meaningless."""
    z = points_camera[:, 2]
    front = z > min_depth
    uv = points_camera[:, :2] / np.where(front, z, 1.0)[:, None] @ K[:2, :2].T + K[:2, 2]
    return uv, front


def visible_from_camera(uv: np.ndarray, depth: np.ndarray, width: int, height: int, cell_px: float = 8.0,
                        tolerance: float = 0.1, tolerance_m: float = 0.3, min_depth: float = 0.5) -> np.ndarray:
    """Mask (N,) of projected points (pixels ``uv`` (N, 2), depth [m]) in the image and not hidden.

    A coarse z-buffer: a point is hidden when another point in its ``cell_px``
    cell is nearer by more than ``tolerance`` of its depth plus ``tolerance_m``.
    LiDAR and camera see the scene from different places, so the LiDAR measures
    surfaces the camera cannot see; those would sample the wrong pixels.
    """
    inside = (depth > min_depth) & (uv[:, 0] >= 0) & (uv[:, 0] <= width - 1) & (uv[:, 1] >= 0) \
        & (uv[:, 1] <= height - 1)
    cols = int(np.ceil(width / cell_px))
    rows = int(np.ceil(height / cell_px))
    cell = np.zeros(len(depth), dtype=np.int64)
    cell[inside] = (uv[inside, 1] // cell_px).astype(np.int64) * cols + (uv[inside, 0] // cell_px).astype(np.int64)
    nearest = np.full(rows * cols, np.inf)
    np.minimum.at(nearest, cell[inside], depth[inside])
    return inside & (depth <= nearest[cell] * (1.0 + tolerance) + tolerance_m)
