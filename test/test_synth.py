"""Synthetic driving scenes: real ray casting with open3d at small sizes.

The key property: LiDAR points mapped with the ground-truth ``T_camera_lidar``
land on the surfaces the camera sees (same depth), and stop doing so when the
extrinsic is rotated by 2 degrees.
"""
import filecmp

import cv2
import numpy as np
import pytest

from crossi2p_ros.data.sensors import _porous_foliage
from crossi2p_ros.data.synth import SynthConfig, SynthSequence, generate, iter_frames
from crossi2p_ros.data.textures import Mat
from crossi2p_ros.errors import CrossI2PError
from crossi2p_ros.geometry import invert, make_transform, project_lidar, random_unit_vectors, rotation_angle_deg, so3_exp

SMALL = dict(image_width=320, image_height=96, lidar_beams=32, lidar_columns=512, frames=2)
STYLES = ("urban", "suburban", "highway", "indoor")


def small(**overrides) -> SynthConfig:
    return SynthConfig(**{**SMALL, **overrides})


@pytest.fixture(scope="module")
def sequences():
    return {style: SynthSequence(small(style=style, seed=3)) for style in STYLES}


@pytest.fixture(scope="module")
def frames(sequences):
    return {style: seq.frame(1) for style, seq in sequences.items()}


def median_relative_depth_error(frame, T_camera_lidar) -> tuple[float, int]:
    """Median |z_lidar - z_camera| / z_lidar over LiDAR points projected into the image.

    The camera depth is read at the projected (sub-pixel) position by bilinear
    interpolation of inverse depth, which is exact on planes; sky counts as a
    full miss.
    """
    uv, z, valid = project_lidar(frame.points, T_camera_lidar, frame.camera)
    inv = 1.0 / frame.depth  # 0 where the camera sees sky
    h, w = inv.shape
    u, v, z = uv[valid, 0], uv[valid, 1], z[valid]
    u0 = np.clip(np.floor(u).astype(int), 0, w - 2)
    v0 = np.clip(np.floor(v).astype(int), 0, h - 2)
    a = np.clip(u - u0, 0, 1)
    b = np.clip(v - v0, 0, 1)
    i = (inv[v0, u0] * (1 - a) * (1 - b) + inv[v0, u0 + 1] * a * (1 - b)
         + inv[v0 + 1, u0] * (1 - a) * b + inv[v0 + 1, u0 + 1] * a * b)
    err = np.where(i > 0, np.abs(1.0 / np.maximum(i, 1e-9) - z) / z, 1.0)
    return float(np.median(err)), int(valid.sum())


# --------------------------------------------------------------------------- determinism


def _assert_frames_equal(fa, fb):
    assert np.array_equal(fa.image, fb.image)
    assert np.array_equal(fa.points, fb.points)
    assert np.array_equal(fa.depth, fb.depth)
    assert np.array_equal(fa.T_world_lidar, fb.T_world_lidar)
    assert fa.camera_time_offset_s == fb.camera_time_offset_s


def test_same_seed_gives_identical_frames(frames):
    again = list(iter_frames(small(style="urban", seed=3)))
    _assert_frames_equal(again[1], frames["urban"])
    assert np.array_equal(again[0].T_camera_lidar, frames["urban"].T_camera_lidar)


def test_different_seeds_differ(frames):
    other = SynthSequence(small(style="urban", seed=4)).frame(1)
    assert not np.array_equal(other.image, frames["urban"].image)
    assert not np.allclose(other.T_camera_lidar, frames["urban"].T_camera_lidar)
    assert other.points.shape != frames["urban"].points.shape or not np.array_equal(other.points, frames["urban"].points)


def test_frame_does_not_depend_on_sequence_length(frames):
    longer = SynthSequence(small(style="urban", seed=3, frames=6))
    _assert_frames_equal(longer.frame(1), frames["urban"])


# --------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("style", STYLES)
def test_lidar_points_land_on_surfaces_the_camera_sees(frames, style):
    frame = frames[style]
    err, n = median_relative_depth_error(frame, frame.T_camera_lidar)
    assert n > 500, f"only {n} LiDAR points project into the image"
    assert err < 0.01, f"median relative depth difference {err:.4f} with the true extrinsic"


def test_extrinsic_perturbed_by_two_degrees_breaks_consistency(frames):
    frame = frames["urban"]
    truth, _ = median_relative_depth_error(frame, frame.T_camera_lidar)
    axes = np.concatenate([np.eye(3), random_unit_vectors(np.random.default_rng(0), 3)])
    for axis in axes:
        delta = make_transform(so3_exp(axis * np.radians(2.0)), np.zeros(3))
        err, _ = median_relative_depth_error(frame, delta @ frame.T_camera_lidar)
        assert err > 0.01, f"a 2 deg rotation about {axis.round(2)} still gives {err:.4f}"
        assert err > 5 * truth


def test_rig_is_a_forward_looking_camera_below_the_lidar(sequences):
    for seq in sequences.values():
        T_lidar_camera = invert(seq.T_camera_lidar)
        optical_axis = T_lidar_camera[:3, 2]  # camera z in the LiDAR frame
        assert np.degrees(np.arccos(optical_axis @ [1.0, 0.0, 0.0])) < 8.0
        assert np.all(np.abs(T_lidar_camera[:2, 3]) <= 0.5)
        assert -0.4 <= T_lidar_camera[2, 3] <= -0.05
        cam = seq.camera
        assert 0.55 * cam.width <= cam.fx <= 0.75 * cam.width
        assert abs(cam.cx - cam.width / 2) < 0.03 * cam.width and abs(cam.cy - cam.height / 2) < 0.04 * cam.height
        assert cam.model == "plumb_bob" and cam.is_distorted
        # projecting the camera's own pixel rays gives the pixels back: the lens model is consistent
        uv = np.array([[0.0, 0.0], [cam.width - 1.0, cam.height - 1.0], [cam.cx, cam.cy]])
        back, ok = cam.project(cam.unproject(uv))
        assert ok.all() and np.allclose(back, uv, atol=1e-3)


def test_poses_follow_the_road_at_driving_speed(sequences):
    seq = sequences["urban"]
    T0, _ = seq.poses(0)
    T1, _ = seq.poses(1)
    speed = np.linalg.norm(T1[:3, 3] - T0[:3, 3]) * seq.cfg.rate_hz
    assert 4.0 < speed < 11.0
    assert 1.5 < T0[2, 3] < 2.1  # LiDAR height above the road
    assert rotation_angle_deg(T0[:3, :3].T @ T1[:3, :3]) < 3.0


def test_an_indoor_hall_is_closed_by_a_ceiling_and_walked_through(sequences, frames):
    """The indoor style: the camera sees no sky anywhere, a ray cast straight up from the LiDAR meets a ceiling
    3-5 m above the floor, and the rig moves at walking pace."""
    seq, frame = sequences["indoor"], frames["indoor"]
    assert np.isfinite(frame.depth).all(), "the camera sees past the hall"
    T0, _ = seq.poses(0)
    up = np.r_[T0[:3, 3], 0.0, 0.0, 1.0][None].astype(np.float32)
    hit = seq.scene.cast(up)
    ceiling = float(T0[2, 3] + hit["t_hit"][0])
    assert 3.0 <= ceiling <= 5.0, ceiling
    T1, _ = seq.poses(1)
    assert 0.5 < np.linalg.norm(T1[:3, 3] - T0[:3, 3]) * seq.cfg.rate_hz < 1.7


# --------------------------------------------------------------------------- sensor outputs


@pytest.mark.parametrize("style", STYLES)
def test_points_and_image_are_plausible(frames, style):
    frame = frames[style]
    pts = frame.points
    beams, cols = SMALL["lidar_beams"], SMALL["lidar_columns"]
    assert pts.dtype == np.float32 and pts.ndim == 2 and pts.shape[1] == 4
    assert 0.3 * beams * cols < len(pts) <= beams * cols
    assert np.isfinite(pts).all()
    assert pts[:, 3].min() >= 0.0 and pts[:, 3].max() <= 1.0 and pts[:, 3].std() > 0.02
    r = np.linalg.norm(pts[:, :3], axis=1)
    assert r.min() > 1.8 and r.max() < 100.2
    elevation = np.degrees(np.arcsin(pts[:, 2] / r))  # 32 beams: the HDL-32E's +10 .. -30 deg
    assert elevation.max() < 10.5 and elevation.min() > -30.5 and elevation.max() - elevation.min() > 25
    assert frame.image.shape == (96, 320, 3) and frame.image.dtype == np.uint8
    assert frame.depth.shape == (96, 320)
    assert np.isfinite(frame.depth).mean() > 0.4  # mostly scene, some sky
    gray = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY)
    assert cv2.Laplacian(gray, cv2.CV_64F).std() > 8.0, "image has no texture"
    assert gray.std() > (10.0 if style == "indoor" else 20.0)   # lamps light a hall more evenly than the sun


def test_lidar_intensity_follows_reflectivity(frames):
    """Lane paint and signs return brighter than asphalt, as on a real road."""
    pts = frames["urban"].points
    road = pts[(np.abs(pts[:, 2] + 1.8) < 0.3) & (np.linalg.norm(pts[:, :2], axis=1) < 20)]
    assert len(road) > 100
    assert np.percentile(road[:, 3], 99) > 3 * np.median(road[:, 3])


def test_porous_foliage_returns_from_inside_crowns_or_beyond_them(sequences):
    # real crowns scatter LiDAR returns over their depth and let beams through their gaps
    seq = sequences["suburban"]
    T_world_lidar, _ = seq.poses(1)
    dirs = seq.lidar.directions()
    rays = np.concatenate([np.broadcast_to(T_world_lidar[:3, 3], dirs.shape), dirs @ T_world_lidar[:3, :3].T],
                          1).astype(np.float32)
    solid = seq.scene.cast(rays)
    porous = _porous_foliage(seq.scene, rays, solid, 0.5, np.random.default_rng(0))
    hit = np.isfinite(solid["t_hit"])
    crown = np.zeros(len(rays), bool)
    crown[hit] = seq.scene.mesh.tri_material[solid["primitive_ids"][hit]] == Mat.FOLIAGE
    assert crown.sum() > 100, crown.sum()
    assert np.array_equal(porous["t_hit"][~crown], solid["t_hit"][~crown])      # nothing else moves
    t0, t1 = solid["t_hit"][crown], porous["t_hit"][crown]
    assert (t1 >= t0).all()                                                         # never nearer
    inside = porous["primitive_ids"][crown] == solid["primitive_ids"][crown]
    assert 0.2 < inside.mean() < 0.95, inside.mean()                                # some stop inside ...
    assert 0.1 < float(np.median(t1[inside] - t0[inside])) < 0.5                    # ... over the crown's depth
    assert (~inside).mean() > 0.05                                                  # ... and some pass through
    assert small(style="suburban", seed=3, foliage_free_path_m=0.5).lidar_spec().foliage_free_path_m == 0.5


def test_bad_config_is_rejected():
    with pytest.raises(CrossI2PError, match="style"):
        SynthSequence(small(style="rural"))
    with pytest.raises(CrossI2PError, match="lidar_beams"):
        SynthSequence(small(lidar_beams=40))


# --------------------------------------------------------------------------- files


def test_generate_writes_kitti_odometry_deterministically(tmp_path):
    from crossi2p_ros.data.kitti import open_dataset

    cfg = small(style="suburban", seed=5)
    result = generate(cfg, tmp_path / "a", progress=False)
    seq_dir = result.sequence_dir
    assert seq_dir == tmp_path / "a" / "sequences" / "00"
    for name in ("calib.txt", "times.txt", "image_2/000000.png", "image_2/000001.png",
                 "velodyne/000000.bin", "velodyne/000001.bin", "synth.json"):
        assert (seq_dir / name).is_file(), name
    assert (tmp_path / "a" / "poses" / "00.txt").is_file()
    ds = open_dataset(tmp_path / "a")
    assert len(ds) == 2
    f1 = ds[1]
    mem = SynthSequence(cfg).frame(1)
    assert np.array_equal(f1.image, mem.image)
    assert np.array_equal(f1.points, mem.points)
    assert np.allclose(f1.T_camera_lidar, result.T_camera_lidar, atol=1e-9)
    assert np.allclose(f1.camera.K, result.camera.K) and np.allclose(f1.camera.dist, result.camera.dist)
    generate(cfg, tmp_path / "b", progress=False)
    cmp = filecmp.dircmp(tmp_path / "a", tmp_path / "b")
    files = [p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()]
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", [str(p) for p in files], shallow=False)
    assert not mismatch and not errors and not cmp.left_only and not cmp.right_only


def test_generate_writes_bag_with_ground_truth_tf(tmp_path):
    pytest.importorskip("rosbags")
    from crossi2p_ros.bag import bag_topics, iter_messages
    from crossi2p_ros.decode import transform_from_tf_msg

    cfg = small(style="highway", seed=2, compressed_images=True)
    result = generate(cfg, tmp_path / "kitti", bag_path=tmp_path / "bag", progress=False)
    (tmp_path / "again").mkdir()
    generate(cfg, tmp_path / "again" / "kitti", bag_path=tmp_path / "again" / "bag", progress=False)
    for f in (tmp_path / "bag").iterdir():  # the bag is reproducible byte for byte too
        assert f.read_bytes() == (tmp_path / "again" / "bag" / f.name).read_bytes(), f.name
    topics = bag_topics(tmp_path / "bag")
    assert topics["/camera/image_raw/compressed"] == ("sensor_msgs/msg/CompressedImage", 2)
    assert topics["/camera/camera_info"] == ("sensor_msgs/msg/CameraInfo", 2)
    assert topics["/lidar/points"] == ("sensor_msgs/msg/PointCloud2", 2)
    assert topics["/tf_static"][1] == 1
    stamps: dict[str, list[int]] = {}
    for topic, _, stamp_ns, msg in iter_messages(tmp_path / "bag"):
        stamps.setdefault(topic, []).append(stamp_ns)
        if topic == "/tf_static":
            (parent, child, T), = transform_from_tf_msg(msg)
            assert (parent, child) == ("lidar", "camera_optical")
            assert np.allclose(T, invert(result.T_camera_lidar), atol=1e-6)
    jitter = np.array(stamps["/camera/camera_info"]) - np.array(stamps["/lidar/points"])
    assert np.all(np.abs(jitter) <= 5_000_000) and np.any(jitter != 0)
    assert np.diff(stamps["/lidar/points"]).tolist() == [100_000_000]


def test_decalibration_knocks_the_camera_from_the_given_time_on():
    import numpy as np

    from crossi2p_ros.data.synth import SynthConfig, SynthSequence
    from crossi2p_ros.geometry import pose_error

    seq = SynthSequence(SynthConfig(frames=6, seed=5, decalibrate_at_s=0.3, step_rot_deg=1.5, step_trans_m=0.02))
    before, after = seq.true_T_camera_lidar(2), seq.true_T_camera_lidar(3)
    np.testing.assert_allclose(before, seq.T_camera_lidar)          # what calib.txt and /tf_static keep
    step = after @ np.linalg.inv(before)                             # the knock, in the camera frame
    np.testing.assert_allclose(step, seq.cfg.decalibration(), atol=1e-12)
    assert abs(pose_error(after, before).rot_deg - 1.5) < 1e-9
    np.testing.assert_allclose(step[:3, 3], [0.02, 0.0, 0.0], atol=1e-12)
    T_world_lidar, T_world_camera = seq.poses(4)                    # the rendering follows the knocked camera
    np.testing.assert_allclose(np.linalg.inv(T_world_camera) @ T_world_lidar, after, atol=1e-9)
