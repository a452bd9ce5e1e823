"""The perturbation protocols of DESIGN.md, seeded (numpy only).

``calib`` — online calibration: the initial guess is the ground truth composed
with a bounded random perturbation, ``T_init = T_gt @ Delta``. Composing on the
right makes the initial error, scored as ``inv(T_init) @ T_gt = inv(Delta)``,
exactly the drawn perturbation: its angle is the drawn angle and its
translation error the drawn radius.

``i2p`` — image-to-point-cloud registration as DeepI2P/CorrI2P/CoFiI2P evaluate
it: no initial guess; the cloud is re-expressed in a frame that is a random yaw
(about the camera's vertical y axis) and a random horizontal shift (camera x
and z) away from the camera. The new ground truth is ``T_camera_new = inv(M)``.

Sample ``i`` of seed ``s`` draws from ``default_rng((s, i))``, so the first N
samples are the same whatever the total count.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import PoseError, invert, make_transform, random_perturbations, so3_exp, transform_points


@dataclass(frozen=True)
class CalibProtocol:
    """Online-calibration regime: bounded perturbation of the true extrinsic."""

    max_rot_deg: float = 10.0
    max_trans_m: float = 0.5
    success_rot_deg: float = 1.0
    success_trans_m: float = 0.05

    def perturbation(self, seed: int, index: int) -> np.ndarray:
        """``Delta`` (4x4) of sample ``index``; the initial guess is ``T_gt @ Delta``."""
        rng = np.random.default_rng((seed, index))
        return random_perturbations(rng, 1, self.max_rot_deg, self.max_trans_m)[0]

    def initial_guess(self, T_gt: np.ndarray, seed: int, index: int) -> np.ndarray:
        """Perturbed ``T_camera_lidar`` (4x4) for sample ``index``."""
        return np.asarray(T_gt, dtype=np.float64) @ self.perturbation(seed, index)

    def is_success(self, err: PoseError) -> bool:
        return err.rot_deg < self.success_rot_deg and err.trans_m < self.success_trans_m


@dataclass(frozen=True)
class I2PProtocol:
    """Image-to-point-cloud regime: large unknown yaw and horizontal shift, no prior."""

    max_yaw_deg: float = 180.0
    max_shift_m: float = 10.0
    image_height: int = 160
    image_width: int = 512
    num_points: int = 40960
    success_rte_m: float = 2.0
    success_rre_deg: float = 5.0

    def transform(self, seed: int, index: int) -> np.ndarray:
        """``M`` (4x4) in the camera frame: yaw about camera y, shift along camera x and z."""
        rng = np.random.default_rng((seed, index))
        yaw = np.radians(rng.uniform(-self.max_yaw_deg, self.max_yaw_deg))
        tx, tz = rng.uniform(-self.max_shift_m, self.max_shift_m, size=2)
        return make_transform(so3_exp(np.array([0.0, yaw, 0.0])), np.array([tx, 0.0, tz]))

    def apply(self, points_lidar: np.ndarray, T_camera_lidar: np.ndarray, seed: int, index: int
              ) -> tuple[np.ndarray, np.ndarray]:
        """Re-express a cloud (N, >=3) for sample ``index``.

        Returns ``(points_new, T_camera_new)``: the cloud in the perturbed frame
        (extra columns such as intensity kept) and the ground truth to recover.
        """
        M = self.transform(seed, index)
        pts = np.array(points_lidar, copy=True)
        pts[:, :3] = transform_points(M @ T_camera_lidar, points_lidar[:, :3])
        return pts, invert(M)

    def is_success(self, err: PoseError) -> bool:
        return err.rte_m < self.success_rte_m and err.rre_deg < self.success_rre_deg
