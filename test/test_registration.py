"""Registration pipeline: solver maths, LiDAR/image edges, the edge aligner, and the Calibrator end to end.

The Calibrator tests run the real shipped weights on freshly ray-cast synthetic
frames. They check what any weights must guarantee (finite poses inside the
prior's bounds, per-stage timings, clean handling of hostile inputs); the
accuracy of the shipped weights is measured by benchmarks/accuracy.py and
recorded in docs/benchmarks.md, not asserted here.
"""
from pathlib import Path

import cv2
import numpy as np
import pytest

from crossi2p_ros.data.kitti import open_dataset
from crossi2p_ros.data.perturb import CalibProtocol
from crossi2p_ros.data.synth import SynthConfig, generate
from crossi2p_ros.errors import CrossI2PError
from crossi2p_ros.geometry import CameraModel, make_transform, pose_error, se3_exp, so3_exp
from crossi2p_ros.registration.calibrator import Calibrator, CalibratorConfig, default_weights_path
from crossi2p_ros.registration.edges import EdgeAligner, EdgeConfig, LidarEdges, image_edges, lidar_edges
from crossi2p_ros.registration.fine import FineConfig, visible_mask
from crossi2p_ros.registration.solver import apply_step, damped_step, normal_equations, project_with_jacobian


# --------------------------------------------------------------------------- solver


def test_projection_jacobian_matches_finite_differences():
    rng = np.random.default_rng(0)
    K = np.array([[500.0, 0, 320], [0, 480.0, 200], [0, 0, 1]])
    p = rng.uniform([-3, -2, 4], [3, 2, 30], size=(50, 3))
    uv, J = project_with_jacobian(K, p)
    eps = 1e-6
    for k in range(6):
        d = np.zeros(6)
        d[k] = eps
        T = se3_exp(d)
        uv2, _ = project_with_jacobian(K, p @ T[:3, :3].T + T[:3, 3])
        np.testing.assert_allclose((uv2 - uv) / eps, J[:, :, k], rtol=1e-4, atol=1e-3)


def test_gauss_newton_on_exact_correspondences_recovers_the_pose():
    rng = np.random.default_rng(1)
    K = np.array([[400.0, 0, 256], [0, 400.0, 80], [0, 0, 1]])
    p = rng.uniform([-8, -2, 5], [8, 2, 40], size=(200, 3))
    T_true = se3_exp(np.array([0.2, -0.1, 0.3, 0.05, -0.08, 0.04]))
    q = p @ T_true[:3, :3].T + T_true[:3, 3]
    target = q[:, :2] / q[:, 2:] @ K[:2, :2].T + K[:2, 2]
    T = np.eye(4)
    for _ in range(10):
        uv, J = project_with_jacobian(K, p @ T[:3, :3].T + T[:3, 3])
        H, g = normal_equations(J, uv - target, np.ones(len(p)))
        T = apply_step(T, damped_step(H, g, 1e-9))
    err = pose_error(T, T_true)
    assert err.rot_deg < 1e-6 and err.trans_m < 1e-6


def test_zbuffer_keeps_the_nearest_point_of_a_cell():
    uv = np.array([[10.0, 10.0], [11.0, 10.5], [50.0, 20.0], [-5.0, 3.0]])
    depth = np.array([5.0, 20.0, 7.0, 3.0])
    vis = visible_mask(uv, depth, (96, 320), FineConfig(zbuffer_cell_px=4))
    assert vis.tolist() == [True, False, True, False]


# --------------------------------------------------------------------------- edges


def _box_in_front_of_wall(columns: int = 3600) -> np.ndarray:
    """One beam at 0 deg elevation: a wall 20 m ahead, a box 5 m ahead spanning azimuth -10..10 deg."""
    az = np.radians(np.linspace(-45, 45, columns // 4, endpoint=False))
    r = np.where(np.abs(np.degrees(az)) < 10, 5.0, 20.0)
    return np.stack([r * np.cos(az), r * np.sin(az), np.zeros_like(az), np.full_like(az, 0.5)], 1)


def test_lidar_edges_sit_on_the_occluding_side_of_range_jumps():
    edges = lidar_edges(_box_in_front_of_wall()).xyz
    assert len(edges) == 2
    rng_m = np.linalg.norm(edges, axis=1)
    az = np.degrees(np.arctan2(edges[:, 1], edges[:, 0]))
    np.testing.assert_allclose(rng_m, 5.0, atol=1e-6)                 # the near (occluding) range
    np.testing.assert_allclose(np.sort(np.abs(az)), [10.0, 10.0], atol=0.1)  # between the two neighbours


def test_lidar_edges_of_empty_or_nan_sweeps_are_empty():
    assert len(lidar_edges(np.zeros((0, 4))).xyz) == 0
    assert len(lidar_edges(np.full((100, 4), np.nan)).xyz) == 0


def _wireframe_scene(rng: np.random.Generator) -> np.ndarray:
    """3-D points densely sampled along the edges of boxes 4-15 m in front of a camera (camera frame)."""
    segments = []
    for _ in range(14):
        c = rng.uniform([-6, -1.5, 4], [6, 1.5, 15])
        s = rng.uniform(0.3, 1.5, 3)
        corners = c + s * np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1], indexing="ij")).reshape(3, -1).T
        for a in range(8):
            for b in range(a + 1, 8):
                if np.sum(corners[a] != corners[b]) == 1:
                    segments.append((corners[a], corners[b]))
    t = np.linspace(0, 1, 40)[:, None]
    return np.concatenate([a + t * (b - a) for a, b in segments])


def test_edge_aligner_recovers_a_small_error_on_a_clean_wireframe_scene():
    rng = np.random.default_rng(3)
    camera = CameraModel.from_intrinsics(960, 540, 600, 600, 480, 270)
    pts_cam = _wireframe_scene(rng)
    T_gt = make_transform(so3_exp(np.array([-np.pi / 2, 0, 0])) @ so3_exp(np.array([0, 0, -np.pi / 2])).T,
                          np.array([0.1, -0.2, 0.05]))  # any rig transform
    pts_lidar = (pts_cam - T_gt[:3, 3]) @ T_gt[:3, :3]
    image = np.zeros((540, 960, 3), np.uint8)
    uv = pts_cam[:, :2] / pts_cam[:, 2:] @ camera.K[:2, :2].T + camera.K[:2, 2]
    for a, b in zip(uv[:-1], uv[1:]):
        if np.linalg.norm(a - b) < 30:
            cv2.line(image, tuple(np.rint(a).astype(int)), tuple(np.rint(b).astype(int)), (255, 255, 255), 1)
    T_init = T_gt @ se3_exp(np.array([0.03, -0.02, 0.02, np.radians(1.0), np.radians(-0.8), np.radians(0.5)]))
    cfg = EdgeConfig(start_grid_deg=0.0, levels=3)
    result = EdgeAligner(cfg).align([(LidarEdges(pts_lidar[::3]), image_edges(image, camera, cfg))], T_init)
    before, after = pose_error(T_init, T_gt), pose_error(result.T, T_gt)
    assert after.rot_deg < 0.3 and after.trans_m < 0.025, (before, after)
    assert after.rot_deg < before.rot_deg / 4, (before, after)
    assert result.inlier_fraction > result.start_inlier_fraction + 0.3
    assert np.all(np.isfinite(result.covariance))


# --------------------------------------------------------------------------- Calibrator


@pytest.fixture(scope="module")
def synth_frames(tmp_path_factory):
    root = tmp_path_factory.mktemp("reg")
    generate(SynthConfig(frames=3, seed=9500, style="urban"), root, progress=False)
    return open_dataset(root)


@pytest.fixture(scope="module")
def calibrator():
    return Calibrator(CalibratorConfig(device="cpu"))


def test_shipped_weights_are_the_default(calibrator):
    assert calibrator.weights_path == default_weights_path() and default_weights_path().is_file()


def test_estimate_on_a_fresh_synthetic_frame_is_finite_bounded_and_timed(calibrator, synth_frames):
    frame = synth_frames[0]
    T_init = CalibProtocol().initial_guess(frame.T_camera_lidar, 0, 5)
    est = calibrator.estimate(frame.image, frame.points, frame.camera, T_init)
    assert est.T_camera_lidar.shape == (4, 4) and np.all(np.isfinite(est.T_camera_lidar))
    assert est.stage in {"coarse", "fine", "edges", "prior"}
    moved = pose_error(est.T_camera_lidar, T_init)
    cfg = calibrator.cfg
    assert moved.rot_deg <= cfg.prior_max_rot_deg + 1e-6 and moved.trans_m <= cfg.prior_max_trans_m + 1e-6
    assert {"preprocess", "network", "coarse", "total"} <= set(est.timings_ms)
    assert 0.0 <= est.confidence <= 1.0 and est.covariance.shape == (6, 6)


def test_estimate_many_uses_all_frames_of_the_rig(calibrator, synth_frames):
    frames = [synth_frames[i] for i in range(3)]
    T_init = CalibProtocol().initial_guess(frames[0].T_camera_lidar, 0, 1)
    est = calibrator.estimate_many([(f.image, f.points, f.camera) for f in frames], T_init)
    assert np.all(np.isfinite(est.T_camera_lidar))
    with pytest.raises(CrossI2PError, match="at least one"):
        calibrator.estimate_many([], T_init)


def test_estimate_without_prior_runs_the_global_path(calibrator, synth_frames):
    frame = synth_frames[1]
    est = calibrator.estimate(frame.image, frame.points, frame.camera)
    assert np.all(np.isfinite(est.T_camera_lidar)) and "edges" not in est.timings_ms


@pytest.mark.parametrize("case", ["no_overlap", "ten_points", "all_nan", "empty"])
def test_degenerate_inputs_give_a_clean_low_confidence_result(calibrator, synth_frames, case):
    frame = synth_frames[0]
    pts = frame.points.copy()
    if case == "no_overlap":
        pts[:, :3] = -pts[:, :3] @ frame.T_camera_lidar[:3, :3]  # everything behind the camera
        pts[:, 2] = np.abs(pts[:, 2])
        T = frame.T_camera_lidar.copy()
        pts_cam = pts[:, :3] @ T[:3, :3].T + T[:3, 3]
        pts = pts[pts_cam[:, 2] < -1.0]
    elif case == "ten_points":
        pts = pts[:10]
    elif case == "all_nan":
        pts[:] = np.nan
    else:
        pts = np.zeros((0, 4), np.float32)
    T_init = frame.T_camera_lidar
    est = calibrator.estimate(frame.image, pts, frame.camera, T_init)
    assert not est.ok and est.confidence == 0.0 and est.message
    np.testing.assert_allclose(est.T_camera_lidar, T_init)


def test_mismatched_camera_and_bad_prior_are_clear_errors(calibrator, synth_frames):
    frame = synth_frames[0]
    small = CameraModel(frame.camera.width // 2, frame.camera.height // 2, frame.camera.K)
    with pytest.raises(CrossI2PError, match="CameraInfo"):
        calibrator.estimate(frame.image, frame.points, small, frame.T_camera_lidar)
    with pytest.raises(CrossI2PError, match="T_init"):
        calibrator.estimate(frame.image, frame.points, frame.camera, np.full((4, 4), np.nan))


def test_cuda_request_without_gpu_is_a_clear_error():
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the error path cannot be exercised")
    with pytest.raises(CrossI2PError, match="no CUDA GPU"):
        Calibrator(CalibratorConfig(device="cuda"))
