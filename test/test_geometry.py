"""Property tests for SE(3) helpers, camera models (against OpenCV) and pose errors."""
import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from crossi2p_ros import geometry as g

RNG_SEEDS = range(5)


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_so3_exp_log_round_trip_including_near_pi(seed):
    rng = np.random.default_rng(seed)
    axes = g.random_unit_vectors(rng, 200)
    angles = np.concatenate([rng.uniform(0, np.pi - 1e-3, 190), np.full(5, 1e-9), np.full(5, np.pi - 1e-6)])
    phi = axes * angles[:, None]
    R = g.so3_exp(phi)
    assert np.allclose(R @ np.swapaxes(R, -1, -2), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(R), 1.0)
    assert np.allclose(R, Rotation.from_rotvec(phi).as_matrix(), atol=1e-12)
    assert np.allclose(g.so3_exp(g.so3_log(R)), R, atol=1e-9)


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_se3_exp_log_round_trip_and_inverse(seed):
    rng = np.random.default_rng(seed)
    xi = np.concatenate([rng.normal(size=(100, 3)) * 3, g.random_unit_vectors(rng, 100) * rng.uniform(0, 3, (100, 1))], 1)
    T = g.se3_exp(xi)
    assert np.allclose(g.se3_log(T), xi, atol=1e-9)
    assert np.allclose(T @ g.invert(T), np.eye(4), atol=1e-12)
    assert np.allclose(g.compose(T[0], T[1], T[2]), T[0] @ T[1] @ T[2])


def test_se3_exp_of_pure_translation_is_translation():
    T = g.se3_exp(np.array([1.0, -2.0, 3.0, 0, 0, 0]))
    assert np.allclose(T[:3, 3], [1, -2, 3]) and np.allclose(T[:3, :3], np.eye(3))


def test_transform_points_matches_homogeneous_product():
    rng = np.random.default_rng(0)
    T = g.se3_exp(rng.normal(size=6))
    p = rng.normal(size=(50, 3))
    expected = (T @ np.c_[p, np.ones(50)].T).T[:, :3]
    assert np.allclose(g.transform_points(T, p), expected)


def test_random_perturbations_respect_bounds_and_fill_them():
    rng = np.random.default_rng(1)
    T = g.random_perturbations(rng, 4000, max_rot_deg=10.0, max_trans_m=0.5)
    angles = g.rotation_angle_deg(T[:, :3, :3])
    radii = np.linalg.norm(T[:, :3, 3], axis=1)
    assert angles.max() <= 10.0 + 1e-9 and radii.max() <= 0.5 + 1e-12
    assert abs(np.median(angles) - 5.0) < 0.3  # angle uniform in [0, 10]
    assert abs(np.median(radii) - 0.5 * 0.5 ** (1 / 3)) < 0.02  # uniform in the ball


def test_pose_error_definitions():
    rng = np.random.default_rng(2)
    T_gt = g.se3_exp(rng.normal(size=6))
    delta = g.make_transform(g.so3_exp(np.array([0, 0, np.radians(3.0)])), np.array([0.1, 0.0, 0.0]))
    err = g.pose_error(T_gt @ delta, T_gt)  # T_err = inv(delta)
    assert err.rot_deg == pytest.approx(3.0)
    assert err.trans_m == pytest.approx(0.1) and err.rte_m == err.trans_m
    assert err.rre_deg == pytest.approx(3.0)  # a single-axis rotation: Euler sum = angle
    two_axis = g.make_transform(Rotation.from_euler("xzy", [2.0, 0.0, 3.0], degrees=True).as_matrix(), np.zeros(3))
    e2 = g.pose_error(g.invert(two_axis), np.eye(4))
    assert e2.rre_deg == pytest.approx(5.0) and e2.rot_deg < 5.0


def _points_in_view(rng, n=500):
    return np.c_[rng.uniform(-1.0, 1.0, (n, 2)), rng.uniform(1.5, 30.0, n)] * [[1, 0.6, 1]]


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_plumb_bob_projection_matches_opencv_and_unprojects(seed):
    rng = np.random.default_rng(seed)
    dist = [rng.uniform(-0.3, 0.05), rng.uniform(-0.05, 0.1), rng.uniform(-2e-3, 2e-3), rng.uniform(-2e-3, 2e-3), rng.uniform(-0.01, 0.01)]
    cam = g.CameraModel.from_intrinsics(1241, 376, 720, 715, 620, 190, dist, "plumb_bob")
    p = _points_in_view(rng)
    uv, _ = cam.project(p)
    uv_cv, _ = cv2.projectPoints(p, np.zeros(3), np.zeros(3), cam.K, cam.opencv_dist())
    assert np.abs(uv - uv_cv[:, 0]).max() < 1e-6
    rays = cam.unproject(uv)
    assert np.abs(rays[:, :2] - p[:, :2] / p[:, 2:]).max() < 1e-8
    und_cv = cv2.undistortPoints(uv[:, None], cam.K, cam.opencv_dist(), criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-12))[:, 0]
    assert np.abs(rays[:, :2] - und_cv).max() < 1e-6


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_equidistant_projection_matches_opencv_fisheye(seed):
    rng = np.random.default_rng(seed)
    dist = rng.uniform(-0.05, 0.05, 4)
    cam = g.CameraModel.from_intrinsics(1280, 960, 400, 400, 640, 480, dist, "equidistant")
    p = _points_in_view(rng)
    uv, _ = cam.project(p)
    uv_cv, _ = cv2.fisheye.projectPoints(p[:, None], np.zeros(3), np.zeros(3), cam.K, cam.opencv_dist())
    assert np.abs(uv - uv_cv[:, 0]).max() < 1e-6
    assert np.abs(cam.unproject(uv)[:, :2] - p[:, :2] / p[:, 2:]).max() < 1e-8


def test_projection_masks_points_behind_outside_and_beyond_lens_fold():
    cam = g.CameraModel.from_intrinsics(100, 50, 50, 50, 49.5, 24.5, [-0.5, 0, 0, 0, 0], "plumb_bob")
    p = np.array([[0, 0, 5.0], [0, 0, -5.0], [100.0, 0, 1.0], [0.1, 0.0, 1.0]])
    _, valid = cam.project(p)
    assert valid.tolist() == [True, False, False, True]


def test_camera_info_round_trip_and_scaling():
    cam = g.CameraModel.from_intrinsics(640, 480, 500, 501, 320, 240, [0.1, -0.01, 0.001, 0.002, 0.0], "plumb_bob")
    again = g.CameraModel.from_camera_info_dict(cam.to_camera_info_dict())
    assert again.model == "plumb_bob" and np.allclose(again.K, cam.K) and np.allclose(again.dist, cam.dist)
    half = cam.scaled(0.5)
    assert (half.width, half.height) == (320, 240) and half.fx == pytest.approx(250)
    pinhole = g.CameraModel.from_camera_info_dict(g.CameraModel.from_intrinsics(10, 10, 5, 5, 5, 5).to_camera_info_dict())
    assert pinhole.model == "pinhole"
