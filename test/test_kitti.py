"""KITTI read/write round trips, the cam2 derivation, layout detection and errors."""
from pathlib import Path

import numpy as np
import pytest

from crossi2p_ros import geometry as g
from crossi2p_ros.data import kitti
from crossi2p_ros.errors import CrossI2PError

SHARED_DEMO = Path(__file__).resolve().parents[2] / "shared" / "data" / "nuscenes_demo"


def _frame(rng, h=40, w=60, n=300):
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    points = rng.normal(size=(n, 4)).astype(np.float32)
    return image, points


def _camera(w=60, h=40, model="plumb_bob"):
    dist = {"plumb_bob": [-0.1, 0.01, 1e-3, -1e-3, 0.0], "equidistant": [0.01, -0.02, 0.003, 0.0], "pinhole": None}[model]
    return g.CameraModel.from_intrinsics(w, h, 50.0, 51.0, 29.5, 19.5, dist, model)


@pytest.mark.parametrize("model", ["plumb_bob", "equidistant", "pinhole"])
def test_odometry_round_trip(tmp_path, model):
    rng = np.random.default_rng(0)
    cam = _camera(model=model)
    T = g.se3_exp(rng.normal(size=6))
    frames = [_frame(rng) for _ in range(3)]
    poses = [g.se3_exp(rng.normal(size=6)) for _ in range(3)]
    with kitti.OdometryWriter(tmp_path, "07", cam, T) as w:
        for i, (img, pts) in enumerate(frames):
            assert w.add(img, pts, 0.1 * i, poses[i]) == i
    ds = kitti.open_dataset(tmp_path)
    assert ds.layout == "odometry" and ds.ids == ["07/000000", "07/000001", "07/000002"]
    for (img, pts), f in zip(frames, ds):
        assert np.array_equal(f.image, img) and np.array_equal(f.points, pts)
        assert np.allclose(f.T_camera_lidar, T, atol=1e-10)
        assert f.camera.model == model and np.allclose(f.camera.K, cam.K) and np.allclose(f.camera.dist, cam.dist)
    assert (tmp_path / "sequences/07/times.txt").read_text().split() == [f"{0.1 * i:.6e}" for i in range(3)]
    kitti_poses = np.loadtxt(tmp_path / "poses/07.txt").reshape(-1, 3, 4)
    assert np.allclose(kitti_poses[0], np.eye(4)[:3]) and np.allclose(kitti_poses[2], (g.invert(poses[0]) @ poses[2])[:3], atol=1e-9)
    # a single sequence folder opens too
    assert len(kitti.open_dataset(tmp_path / "sequences" / "07")) == 3


def test_object_round_trip_and_training_subfolder(tmp_path):
    rng = np.random.default_rng(1)
    cam, T = _camera(), g.se3_exp(rng.normal(size=6))
    img, pts = _frame(rng)
    kitti.write_object_frame(tmp_path / "training", "000042", img, pts, cam, T)
    ds = kitti.open_dataset(tmp_path)
    assert ds.layout == "object" and ds.ids == ["000042"]
    f = ds[0]
    assert np.array_equal(f.image, img) and np.array_equal(f.points, pts) and np.allclose(f.T_camera_lidar, T)


def test_cam2_derivation_with_p2_offset_and_r0_rect(tmp_path):
    """T_cam2_velo = [I | K^-1 P2[:,3]] @ R0_rect @ Tr_velo_to_cam, checked by projection."""
    rng = np.random.default_rng(2)
    K = np.array([[721.5, 0, 609.6], [0, 721.5, 172.9], [0, 0, 1.0]])
    P2 = np.hstack([K, K @ np.array([[0.06], [-0.0003], [0.0027]])])  # KITTI-like cam2 baseline
    R0 = g.so3_exp(np.array([0.004, -0.01, 0.002]))
    Tr = g.se3_exp(np.array([-0.01, -0.07, -0.27, 1.2, -1.2, 1.2]))[:3]
    text = "".join(f"P{i}: " + " ".join(map(str, P2.ravel())) + "\n" for i in range(4))
    text += "R0_rect: " + " ".join(map(str, R0.ravel())) + "\n"
    text += "Tr_velo_to_cam: " + " ".join(map(str, Tr.ravel())) + "\n"
    for sub in ("calib", "image_2", "velodyne"):
        (tmp_path / sub).mkdir()
    (tmp_path / "calib/000000.txt").write_text(text)  # no Tr_imu_to_velo: must not be required
    kitti.write_image(tmp_path / "image_2/000000.png", np.zeros((375, 1242, 3), np.uint8))
    pts = np.c_[rng.uniform(5, 40, 200), rng.uniform(-10, 10, 200), rng.uniform(-1.5, 2, 200), np.zeros(200)].astype(np.float32)
    kitti.write_velodyne(tmp_path / "velodyne/000000.bin", pts)
    f = kitti.open_dataset(tmp_path)[0]
    # KITTI's own projection: P2 @ R0_rect @ Tr_velo_to_cam
    ph = P2 @ g.make_transform(R0, np.zeros(3)) @ np.vstack([Tr, [0, 0, 0, 1]]) @ np.c_[pts[:, :3], np.ones(200)].T
    uv_kitti = (ph[:2] / ph[2]).T
    uv, _ = f.camera.project(g.transform_points(f.T_camera_lidar, pts[:, :3].astype(np.float64)))
    assert np.abs(uv - uv_kitti).max() < 1e-6
    assert not np.allclose(f.T_camera_lidar[:3, 3], Tr[:, 3])  # the offset really moved it


def test_errors_name_the_file(tmp_path):
    for sub in ("calib", "image_2", "velodyne"):
        (tmp_path / sub).mkdir()
    kitti.write_image(tmp_path / "image_2/000000.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "velodyne/000000.bin").write_bytes(b"\0" * 20)
    ds = kitti.open_dataset(tmp_path)
    with pytest.raises(CrossI2PError, match="000000.txt: calibration file not found"):
        ds[0]
    (tmp_path / "calib/000000.txt").write_text("P2: 1 2 three\n")
    with pytest.raises(CrossI2PError, match=r"000000.txt:1: P2 holds a value that is not a number"):
        kitti.open_dataset(tmp_path)[0]
    (tmp_path / "calib/000000.txt").write_text("P2: 1 0 0 0 0 1 0 0 0 0 1 0\n")
    with pytest.raises(CrossI2PError, match="missing 'Tr_velo_to_cam:'"):
        kitti.open_dataset(tmp_path)[0]
    (tmp_path / "calib/000000.txt").write_text("P2: 1 0 0 0 0 1 0 0 0 0 1 0\nTr_velo_to_cam: 1 0 0 0 0 1 0 0 0 0 1 0\n")
    with pytest.raises(CrossI2PError, match="20 bytes is not a multiple of 16"):
        kitti.open_dataset(tmp_path)[0]
    with pytest.raises(CrossI2PError, match="not a KITTI folder"):
        kitti.open_dataset(tmp_path / "calib")
    with pytest.raises(CrossI2PError, match="dataset folder not found"):
        kitti.open_dataset(tmp_path / "nope")


@pytest.mark.skipif(not SHARED_DEMO.is_dir(), reason="../shared/data/nuscenes_demo is not present beside the checkout")
def test_real_nuscenes_frames_load_and_project():
    ds = kitti.open_dataset(SHARED_DEMO)
    assert ds.layout == "object" and len(ds) == 6
    for f in ds:
        assert f.image.shape == (900, 1600, 3) and f.points.shape == (34688, 4)
        uv, depth, valid = g.project_lidar(f.points, f.T_camera_lidar, f.camera)
        assert 1000 < valid.sum() < 20000  # one of six cameras sees a slice of the sweep
        assert np.all(depth[valid] > 0)
