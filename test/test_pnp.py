"""Robust PnP on 3-D/2-D matches."""
import numpy as np

from crossi2p_ros import geometry as g
from crossi2p_ros.registration.pnp import Matches, PnPConfig, solve_pnp_ransac


def test_pnp_recovers_known_poses_with_half_outliers():
    rng = np.random.default_rng(0)
    K = np.array([[300.0, 0, 255.5], [0, 300.0, 79.5], [0, 0, 1]])
    for trial in range(5):
        T_true = g.se3_exp(np.r_[rng.normal(scale=2.0, size=3), g.random_unit_vectors(rng, 1)[0] * rng.uniform(0, np.pi)])
        cam_pts = np.c_[rng.uniform(-8, 8, 400), rng.uniform(-2, 2, 400), rng.uniform(4, 40, 400)]
        X = g.transform_points(g.invert(T_true), cam_pts)
        uv = cam_pts[:, :2] / cam_pts[:, 2:] * 300 + [255.5, 79.5] + rng.normal(scale=0.5, size=(400, 2))
        outliers = rng.random(400) < 0.5
        uv[outliers] = rng.uniform([0, 0], [512, 160], size=(outliers.sum(), 2))
        result = solve_pnp_ransac(Matches(X, uv, np.ones(400)), K, PnPConfig(ransac_iterations=2000))
        err = g.pose_error(result.T, T_true)
        assert result.success and err.rot_deg < 0.5 and err.trans_m < 0.1, (trial, err)
        assert result.inliers >= 0.8 * (~outliers).sum()
        assert not result.inlier_mask[outliers].mean() > 0.05


def test_pnp_with_too_few_matches_fails_cleanly():
    result = solve_pnp_ransac(Matches(np.zeros((5, 3)), np.zeros((5, 2)), np.ones(5)), np.eye(3))
    assert not result.success and np.array_equal(result.T, np.eye(4))


def test_pnp_on_coincident_points_fails_cleanly_instead_of_raising():
    X = np.tile([[1.0, 2.0, 10.0]], (50, 1))
    result = solve_pnp_ransac(Matches(X, np.full((50, 2), 100.0), np.ones(50)), np.diag([300.0, 300.0, 1.0]))
    assert not result.success
