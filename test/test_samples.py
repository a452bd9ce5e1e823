"""Training pairs: image geometry and intrinsics, protocol targets, sampling, determinism."""
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from crossi2p_ros import geometry as g
from crossi2p_ros.data import kitti
from crossi2p_ros.data.cache import CachedRig, cache_width, write_cache
from crossi2p_ros.data.perturb import CalibProtocol, I2PProtocol
from crossi2p_ros.data.samples import (PairDataset, SampleConfig, collate, place, scale_intrinsics,
                                       validation_split)
from crossi2p_ros.errors import CrossI2PError
from crossi2p_ros.model import ModelConfig

import _scenes

MODEL = ModelConfig(image_height=64, image_width=192, num_points=1024)
PLAIN = SampleConfig(augment=False)


@pytest.fixture(scope="module")
def corridor(tmp_path_factory):
    root = tmp_path_factory.mktemp("corridor")
    camera, T = _scenes.write_sequence(root, frames=3)
    return root, camera, T


def _tagged_frame(root, camera, n=3000, seed=0):
    """One object-layout frame whose point intensities are unique ids (to follow points through sampling)."""
    rng = np.random.default_rng(seed)
    T = _scenes.rig_extrinsic(seed)
    p_cam = np.c_[rng.uniform(-12, 12, n), rng.uniform(-3, 3, n), rng.uniform(4, 40, n)]
    p_lidar = g.transform_points(g.invert(T), p_cam)
    points = np.c_[p_lidar, np.arange(n) / n].astype(np.float32)
    image = rng.integers(0, 255, (camera.height, camera.width, 3), dtype=np.uint8)
    kitti.write_object_frame(root, "000000", image, points, camera, T)
    return points, T


def test_batch_shapes_and_types(corridor):
    root, _, _ = corridor
    ds = PairDataset([root], SampleConfig(), MODEL)
    batch = collate([ds[i] for i in range(len(ds))])
    assert batch["image"].shape == (3, 3, 64, 192) and batch["image"].dtype == torch.float32
    assert 0.0 <= float(batch["image"].min()) and float(batch["image"].max()) <= 1.0
    assert batch["points"].shape == (3, 1024, 4) and batch["points"].dtype == torch.float32
    assert batch["K"].shape == (3, 3, 3) and batch["T_gt"].shape == (3, 4, 4)
    assert batch["K"].dtype == torch.float32 and batch["T_gt"].dtype == torch.float32
    assert batch["id"] == ["00/000000", "00/000001", "00/000002"]
    assert set(batch["protocol"]) <= {"calib", "i2p"}
    loader = DataLoader(ds, batch_size=2, collate_fn=collate)
    assert next(iter(loader))["points"].shape == (2, 1024, 4)


def test_scale_intrinsics_uses_pixel_centres_at_integers():
    K = np.array([[100.0, 0, 49.5], [0, 90.0, 29.5], [0, 0, 1]])
    K2 = scale_intrinsics(K, 0.5, 0.25)
    # the principal point at the image centre stays at the centre of the resized image
    assert np.allclose(K2[:2, 2], [24.5, 7.0]) and np.allclose([K2[0, 0], K2[1, 1]], [50.0, 22.5])
    img = np.arange(12).reshape(3, 4)
    assert np.array_equal(place(img, 1, -1, 2, 4), [[0, 0], [1, 2], [5, 6], [9, 10]])


@pytest.mark.parametrize("augment", [False, True])
def test_adjusted_K_matches_mapping_original_projections(tmp_path, augment):
    """Projecting with the adjusted K equals projecting in the original image and mapping the pixels."""
    camera = g.CameraModel.from_intrinsics(400, 150, 210.0, 205.0, 203.2, 71.9)
    points, T = _tagged_frame(tmp_path, camera)
    ds = PairDataset([tmp_path], SampleConfig(augment=augment, point_dropout=0, intensity_noise=0), MODEL,
                     protocol="calib")
    for epoch in range(3):
        ds.set_epoch(epoch)
        item = ds[0]
        K, T_gt, pts = item["K"].double().numpy(), item["T_gt"].double().numpy(), item["points"].double().numpy()
        ids = np.rint(pts[:, 3] * len(points)).astype(int)
        uv_net = g.CameraModel(192, 64, K).project(g.transform_points(T_gt, pts[:, :3]))[0]
        uv_orig = camera.project(g.transform_points(T, points[ids, :3]))[0]
        # recover the resize factor and crop offset from K itself, then map original pixels
        s = K[0, 0] / camera.fx
        sy = K[1, 1] / camera.fy
        ox = s * (camera.cx + 0.5) - 0.5 - K[0, 2]
        oy = sy * (camera.cy + 0.5) - 0.5 - K[1, 2]
        mapped = np.c_[s * (uv_orig[:, 0] + 0.5) - 0.5 - ox, sy * (uv_orig[:, 1] + 0.5) - 0.5 - oy]
        assert np.allclose(uv_net, mapped, atol=1e-3)
        assert abs(ox - round(ox)) < 1e-4 and abs(oy - round(oy)) < 1e-4  # crops are whole pixels
        if not augment:
            assert s == pytest.approx(192 / 400) and abs(s - sy) < 0.01


def _blob_image(camera, uv, sigma=2.5):
    v, u = np.mgrid[0:camera.height, 0:camera.width]
    blob = np.exp(-((u - uv[0]) ** 2 + (v - uv[1]) ** 2) / (2 * sigma**2))
    return np.repeat((blob * 255).astype(np.uint8)[..., None], 3, axis=2)


def _centroid(image_chw):
    w = image_chw[0].numpy().astype(np.float64)
    w = np.where(w > 0.05, w, 0.0)
    v, u = np.mgrid[0:w.shape[0], 0:w.shape[1]]
    return np.array([(w * u).sum() / w.sum(), (w * v).sum() / w.sum()])


@pytest.mark.parametrize("model", ["pinhole", "plumb_bob", "equidistant"])
@pytest.mark.parametrize("augment", [False, True])
def test_image_content_lands_where_adjusted_K_projects(tmp_path, model, augment):
    """A bright blob rendered at a 3-D point's (distorted) pixel ends up where K_net projects the point."""
    dist = {"pinhole": None, "plumb_bob": [-0.2, 0.05, 1e-3, -1e-3, 0.0], "equidistant": [0.05, -0.02, 0.0, 0.0]}[model]
    camera = g.CameraModel.from_intrinsics(480, 180, 240.0, 238.0, 251.3, 84.6, dist, model)
    T = _scenes.rig_extrinsic(1)
    p_cam = np.array([[2.7, -0.9, 10.0]])
    uv = camera.project(p_cam)[0][0]
    points = np.c_[g.transform_points(g.invert(T), np.repeat(p_cam, 10, 0)), np.zeros(10)].astype(np.float32)
    kitti.write_object_frame(tmp_path, "000000", _blob_image(camera, uv), points, camera, T)
    cfg = SampleConfig(augment=augment, brightness=0, contrast=0, saturation=0, hue_deg=0)
    ds = PairDataset([tmp_path], cfg, ModelConfig(image_height=72, image_width=192, num_points=16), protocol="calib")
    for epoch in range(2):
        ds.set_epoch(epoch)
        item = ds[0]
        p = g.transform_points(item["T_gt"].double().numpy(), item["points"][:1, :3].double().numpy())
        uv_net = g.CameraModel(192, 72, item["K"].double().numpy()).project(p)[0][0]
        assert np.allclose(_centroid(item["image"]), uv_net, atol=0.15), (model, augment, epoch)


def test_calib_target_and_point_filter_use_only_the_prior(tmp_path):
    camera = g.CameraModel.from_intrinsics(400, 150, 210.0, 205.0, 199.5, 74.5)
    points, T = _tagged_frame(tmp_path, camera, n=4000)
    cfg = SampleConfig(augment=False, seed=5)
    ds = PairDataset([tmp_path], cfg, MODEL, protocol="calib")
    for epoch in range(3):
        ds.set_epoch(epoch)
        item = ds[0]
        T_init = cfg.calib.initial_guess(T, cfg.seed, (epoch << 32))
        T_gt = item["T_gt"].double().numpy()
        assert np.allclose(T_gt, T @ g.invert(T_init), atol=1e-5)
        ids = np.rint(item["points"][:, 3].numpy() * len(points)).astype(int)
        # input points are the LiDAR points moved by the prior, and T_gt takes them into the camera
        assert np.allclose(item["points"][:, :3].numpy(), g.transform_points(T_init, points[ids, :3]), atol=1e-4)
        assert np.allclose(g.transform_points(T_gt, item["points"][:, :3].double().numpy()),
                           g.transform_points(T, points[ids, :3]), atol=1e-3)
        # every kept point projects near the image under the prior (identity in the input frame)
        K = item["K"].double().numpy()
        uv, valid = g.CameraModel(192, 64, K).project(item["points"][:, :3].double().numpy())
        m = cfg.calib_margin_px
        assert (item["points"][:, 2].numpy() > cfg.min_depth_m).all()
        assert ((uv[:, 0] > -0.5 - m) & (uv[:, 0] < 191.5 + m) & (uv[:, 1] > -0.5 - m) & (uv[:, 1] < 63.5 + m)).all()
        # the error of the prior is the protocol's perturbation, within its bounds
        err = g.pose_error(np.eye(4), T_gt)
        assert err.rot_deg <= cfg.calib.max_rot_deg + 1e-3 and err.trans_m <= cfg.calib.max_trans_m + 1e-4
    # the filter keeps a field-of-view subset: fewer than all points, with replacement-free sampling
    assert len(np.unique(ids)) == 1024


def test_i2p_target_reprojects_and_keeps_the_whole_cloud(tmp_path):
    camera = g.CameraModel.from_intrinsics(400, 150, 210.0, 205.0, 199.5, 74.5)
    points, T = _tagged_frame(tmp_path, camera, n=800)
    cfg = SampleConfig(augment=False, seed=2, i2p=I2PProtocol(max_yaw_deg=180, max_shift_m=10))
    ds = PairDataset([tmp_path], cfg, MODEL, protocol="i2p")
    item = ds[0]
    pts_new, T_new = cfg.i2p.apply(points, T, cfg.seed, 0)
    assert np.allclose(item["T_gt"].double().numpy(), T_new, atol=1e-5)
    ids = np.rint(item["points"][:, 3].numpy() * len(points)).astype(int)
    assert np.allclose(item["points"][:, :3].numpy(), pts_new[ids, :3], atol=1e-4)
    assert np.allclose(g.transform_points(T_new, item["points"][:, :3].double().numpy()),
                       g.transform_points(T, points[ids, :3]), atol=1e-3)
    # fewer points than requested: every point appears, the rest are repeats
    assert len(np.unique(ids)) == 800 and item["points"].shape == (1024, 4)


def test_determinism_per_seed_epoch_index(corridor):
    root, _, _ = corridor
    a = PairDataset([root], SampleConfig(seed=3), MODEL)
    b = PairDataset([root], SampleConfig(seed=3), MODEL)

    def same(x, y):
        return all(torch.equal(x[k], y[k]) for k in ("image", "points", "K", "T_gt")) and x["protocol"] == y["protocol"]

    assert same(a[1], b[1])
    a.set_epoch(1)
    assert not same(a[1], b[1])
    b.set_epoch(1)
    assert same(a[1], b[1])
    # workers do not change the result: the item RNG depends on (seed, epoch, index) only
    loader = DataLoader(a, batch_size=3, num_workers=2, collate_fn=collate)
    assert torch.equal(next(iter(loader))["points"], collate([b[i] for i in range(3)])["points"])
    # an index past the end is the same frame with fresh draws
    assert a[4]["id"] == a[1]["id"] and not same(a[4], a[1])
    c = PairDataset([root], SampleConfig(seed=4), MODEL)
    c.set_epoch(1)
    assert not same(a[1], c[1])


def test_protocol_mix_follows_the_config(corridor):
    root, _, _ = corridor
    ds = PairDataset([root], SampleConfig(augment=False, calib_fraction=0.7), ModelConfig(num_points=64))
    drawn = []
    for epoch in range(60):
        ds.set_epoch(epoch)
        drawn += [ds.protocol_of(i) for i in range(len(ds))]
    assert 0.55 < np.mean([p == "calib" for p in drawn]) < 0.85
    only = PairDataset([root], SampleConfig(calib_fraction=0.0), ModelConfig(num_points=64))
    assert {only.protocol_of(i) for i in range(3)} == {"i2p"}


def test_augmentation_changes_image_and_points_within_bounds(corridor):
    root, _, _ = corridor
    plain = PairDataset([root], PLAIN, MODEL, protocol="i2p")[0]
    aug = PairDataset([root], SampleConfig(), MODEL, protocol="i2p")[0]
    assert not torch.equal(plain["image"], aug["image"])
    assert 0.0 <= float(aug["points"][:, 3].min()) and float(aug["points"][:, 3].max()) <= 1.0
    assert torch.allclose(plain["T_gt"], aug["T_gt"])  # augmentation never changes the target


def test_multiple_sources_validation_split_and_errors(tmp_path, corridor):
    root, _, _ = corridor
    _scenes.write_sequence(tmp_path / "b", frames=2, seed=1, sequence="05")
    ds = PairDataset([root, tmp_path / "b"], PLAIN, MODEL)
    assert ds.num_frames == 5 and len(ds) == 5
    assert [ds[i]["id"] for i in (0, 3, 4)] == ["00/000000", "05/000000", "05/000001"]
    train, val = validation_split(5, 2, gap=1)
    assert train == [0, 1] and val == [3, 4]
    sub = PairDataset([root, tmp_path / "b"], PLAIN, MODEL, frame_indices=val)
    assert [sub[i]["id"] for i in range(len(sub))] == ["05/000000", "05/000001"]
    with pytest.raises(CrossI2PError, match="val_samples"):
        validation_split(3, 3)
    with pytest.raises(CrossI2PError, match="no dataset folder"):
        PairDataset([], PLAIN, MODEL)
    with pytest.raises(CrossI2PError, match="calib_fraction"):
        SampleConfig(calib_fraction=1.5)
    # a wrong extrinsic that puts the whole cloud behind the camera is reported with the frame id
    camera = g.CameraModel.from_intrinsics(100, 50, 50.0, 50.0, 49.5, 24.5)
    pts = np.c_[np.random.default_rng(0).uniform(-5, 5, (100, 2)), np.full(100, -10.0), np.zeros(100)]
    kitti.write_object_frame(tmp_path / "bad", "000007", np.zeros((50, 100, 3), np.uint8),
                             pts.astype(np.float32), camera, np.eye(4))
    with pytest.raises(CrossI2PError, match="000007.*T_camera_lidar"):
        PairDataset([tmp_path / "bad"], replace(PLAIN, calib=CalibProtocol(max_rot_deg=1, max_trans_m=0.1)),
                    MODEL, protocol="calib")[0]


@pytest.mark.parametrize("model", ["plumb_bob", "equidistant"])
def test_a_training_cache_keeps_geometry_and_trains_like_its_folder(tmp_path, model):
    """Undistorted and shrunk once into the cache, a blob still lands where the pair's K_net projects its point."""
    dist = {"plumb_bob": [-0.2, 0.05, 1e-3, -1e-3, 0.0], "equidistant": [0.05, -0.02, 0.0, 0.0]}[model]
    camera = g.CameraModel.from_intrinsics(480, 180, 240.0, 238.0, 251.3, 84.6, dist, model)
    T = _scenes.rig_extrinsic(1)
    p_cam = np.array([[2.7, -0.9, 10.0]])
    uv = camera.project(p_cam)[0][0]
    rng = np.random.default_rng(0)
    points = np.c_[g.transform_points(g.invert(T), np.repeat(p_cam, 10, 0)), rng.uniform(0, 1, 10)].astype(np.float32)
    kitti.write_object_frame(tmp_path / "rig", "000000", _blob_image(camera, uv), points, camera, T)
    folder = kitti.open_dataset(tmp_path / "rig")
    path = write_cache(folder, tmp_path / "rig.npz", width=cache_width(192, 1.1), max_points=64)
    cached = CachedRig(path)
    frame = cached[0]
    assert frame.image.shape[1] == 212 and not frame.camera.is_distorted
    np.testing.assert_allclose(frame.points[:, :3], points[:, :3], atol=0.005)     # centimetres
    np.testing.assert_allclose(frame.points[:, 3], points[:, 3], atol=0.5 / 255 + 1e-6)
    np.testing.assert_allclose(frame.T_camera_lidar, T)
    cfg = SampleConfig(augment=True, brightness=0, contrast=0, saturation=0, hue_deg=0)
    mcfg = ModelConfig(image_height=72, image_width=192, num_points=16)
    ds = PairDataset([path], cfg, mcfg, protocol="calib")      # open_sources takes the .npz like a folder
    for epoch in range(2):
        ds.set_epoch(epoch)
        item = ds[0]
        p = g.transform_points(item["T_gt"].double().numpy(), item["points"][:1, :3].double().numpy())
        uv_net = g.CameraModel(192, 72, item["K"].double().numpy()).project(p)[0][0]
        assert np.allclose(_centroid(item["image"]), uv_net, atol=0.3), (model, epoch)
    with pytest.raises(CrossI2PError, match="not a readable training cache"):
        (tmp_path / "bad.npz").write_bytes(b"not a zip")
        CachedRig(tmp_path / "bad.npz")
