"""Offline replay and monitoring of real bag files with the shipped weights, and the errors for broken bags."""
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from crossi2p_ros import bag
from crossi2p_ros.calib_io import Calibration, read_calibration, write_all
from crossi2p_ros.cli import main
from crossi2p_ros.data.synth import SynthConfig, generate
from crossi2p_ros.errors import CrossI2PError
from crossi2p_ros.geometry import CameraModel, pose_error, se3_exp
from crossi2p_ros.replay import detect_topics, read_camera_info


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    root = tmp_path_factory.mktemp("replay")
    result = generate(SynthConfig(frames=30, seed=9800, style="urban"), root / "kitti", bag_path=root / "drive.bag",
                      progress=False)
    return result


def _tiny_bag(path: Path, with_image=True, with_cloud=True, with_info=True) -> Path:
    cam = CameraModel.from_intrinsics(64, 48, 50, 50, 32, 24)
    with bag.BagWriter(path) as w:
        if with_image:
            w.add_image("/cam/image", 1_000_000_000, "cam", np.zeros((48, 64, 3), np.uint8))
        if with_cloud:
            w.add_pointcloud("/velodyne_points", 1_000_000_000, "velodyne", np.ones((10, 4), np.float32))
        if with_info:
            w.add_camera_info("/cam/camera_info", 1_000_000_000, "cam", cam)
    return path


def test_topics_are_found_by_type_and_missing_ones_are_named(tmp_path):
    t = detect_topics(_tiny_bag(tmp_path / "ok.bag"))
    assert (t.image, t.cloud, t.camera_info) == ("/cam/image", "/velodyne_points", "/cam/camera_info")
    with pytest.raises(CrossI2PError, match="no camera image topic.*velodyne_points"):
        detect_topics(_tiny_bag(tmp_path / "a.bag", with_image=False))
    with pytest.raises(CrossI2PError, match="no LiDAR point cloud topic"):
        detect_topics(_tiny_bag(tmp_path / "b.bag", with_cloud=False))
    with pytest.raises(CrossI2PError, match="no camera intrinsics topic.*--camera-info"):
        detect_topics(_tiny_bag(tmp_path / "c.bag", with_info=False))
    assert detect_topics(tmp_path / "c.bag", intrinsics_from_file=True).camera_info is None
    with pytest.raises(CrossI2PError, match="no topic '/nope'"):
        detect_topics(tmp_path / "ok.bag", image="/nope")


def test_camera_info_yaml_is_read(tmp_path):
    path = tmp_path / "cam.yaml"
    path.write_text(yaml.safe_dump({
        "image_width": 640, "image_height": 480, "distortion_model": "plumb_bob",
        "camera_matrix": {"rows": 3, "cols": 3, "data": [500, 0, 320, 0, 505, 240, 0, 0, 1]},
        "distortion_coefficients": {"rows": 1, "cols": 5, "data": [-0.1, 0.01, 0, 0, 0]}}))
    cam = read_camera_info(path)
    assert (cam.width, cam.height, cam.fx, cam.fy, cam.model) == (640, 480, 500, 505, "plumb_bob")
    path.write_text("image_width: 3\n")
    with pytest.raises(CrossI2PError, match="camera_info YAML"):
        read_camera_info(path)


def test_replay_calibrates_from_a_knocked_prior_and_writes_calibration_log_and_report(drive, tmp_path, capsys):
    T_gt = drive.T_camera_lidar
    initial = se3_exp(np.array([0.08, -0.06, 0.05, 0.0, np.radians(3.0), np.radians(-1.5)])) @ T_gt
    write_all(Calibration(initial), tmp_path / "initial")
    write_all(Calibration(T_gt), tmp_path / "truth")
    out = tmp_path / "out"
    assert main(["replay", str(drive.bag_path), "--out", str(out), "--device", "cpu", "--min-keyframes", "6",
                 "--initial", str(tmp_path / "initial" / "calibration.yaml"),
                 "--reference", str(tmp_path / "truth" / "calibration.json")]) == 0
    for name in ("calibration.yaml", "calibration.json", "calib_kitti.txt", "calibration.urdf",
                 "static_transform_publisher.sh", "estimates.json", "summary.txt", "report/estimates.png",
                 "report/overlay.png"):
        assert (out / name).is_file(), name
    log = json.loads((out / "estimates.json").read_text())
    assert log["pairs"] == 30 and log["solves"] and log["solves"][0]["global_search"]
    assert log["keyframes"]["frames_offered"] == 30
    final = read_calibration(out / "calibration.json")
    e0, e = pose_error(initial, T_gt), pose_error(final.T_camera_lidar, T_gt)
    assert e.rot_deg < 0.5 and e.trans_m < 0.05 and e.rot_deg < e0.rot_deg / 5, (e0, e)
    assert final.covariance is not None and np.all(np.diag(final.covariance) > 0)
    text = capsys.readouterr().out
    assert "30 camera/LiDAR pairs" in text and "calibration T_camera_lidar (converged" in text
    assert "global" in text and "error against the reference" in text


def test_replay_takes_the_initial_guess_from_the_bags_tf_and_honours_start_and_every(drive, tmp_path):
    out = tmp_path / "out"
    assert main(["replay", str(drive.bag_path), "--out", str(out), "--device", "cpu", "--min-keyframes", "3",
                 "--start", "0.15", "--every", "2"]) == 0
    log = json.loads((out / "estimates.json").read_text())
    assert log["pairs"] == 14                               # frames 2..29 remain, every second one
    np.testing.assert_allclose(np.array(log["T_initial"]), drive.T_camera_lidar, atol=1e-9)


@pytest.mark.parametrize("knock_deg", [0.0, 1.5])
def test_monitor_alarms_on_a_wrong_installed_extrinsic_with_its_axis(drive, tmp_path, capsys, knock_deg):
    """The bag's own TF is the truth: installed as recorded, no alarm; rotated 1.5 deg about the camera's
    y axis (a yaw knock), WARN or ERROR naming yaw."""
    installed = se3_exp(np.array([0, 0, 0, 0, np.radians(knock_deg), 0])) @ drive.T_camera_lidar
    write_all(Calibration(installed), tmp_path / "installed")
    out = tmp_path / "mon"
    assert main(["monitor", str(drive.bag_path), "--out", str(out), "--device", "cpu", "--min-keyframes", "4",
                 "--solve-every", "1",
                 "--installed", str(tmp_path / "installed" / "calibration.yaml")]) == 0
    log = json.loads((out / "monitor.json").read_text())
    levels = [e["level"] for e in log["solves"]]
    assert levels and (out / "monitor.png").is_file()
    text = capsys.readouterr().out
    if knock_deg == 0.0:
        assert not {"WARN", "ERROR"} & set(levels), levels
        assert "no alarm" in text
        # ... and the OK rests on windows that would have shown a decalibration at the ERROR thresholds
        tested = [e for e in log["solves"] if e["checked"] is not None]
        assert tested and tested[-1]["checked"] and tested[-1]["detectable_rot_deg"] < 2.0, tested[-1]
        unchecked = sum(not e["checked"] for e in tested)    # the first, small windows (2 of 7 when written)
        assert (f"{unchecked} of {len(tested)} solves could not check" in text) is (unchecked > 0), text
        assert ("(unchecked: a drift up to" in text) is (unchecked > 0), text
    else:
        assert {"WARN", "ERROR"} & set(levels), levels
        alarm = next(e for e in log["solves"] if e["level"] in ("WARN", "ERROR"))
        assert alarm["axis"].startswith("yaw") and abs(alarm["offset_rot_deg"] - knock_deg) < 0.5, alarm
        assert "mostly yaw" in text


def test_replay_errors_are_one_line(tmp_path, capsys):
    assert main(["replay", str(tmp_path / "missing.bag"), "--out", str(tmp_path / "o")]) == 2
    assert "crossi2p replay: error:" in capsys.readouterr().err
    _tiny_bag(tmp_path / "c.bag", with_info=False)
    assert main(["replay", str(tmp_path / "c.bag"), "--out", str(tmp_path / "o")]) == 2
    assert "--camera-info" in capsys.readouterr().err


def _ros1_bag_written_directly(src: Path, dst: Path) -> Path:
    """A ROS 1 bag as a ROS 1 recorder writes it: Noetic definitions and md5 sums (``CameraInfo.K``, a
    ``Header.seq``), bz2-compressed chunks; the messages are ``src``'s, moved to their ROS 1 types."""
    from rosbags.convert.converter import migrate_message
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    ros1 = get_typestore(Stores.ROS1_NOETIC)
    # Noetic's tf2_msgs as the ROS 1 package defines it (rosbags' Noetic store leaves tf2_msgs out)
    ros1.register(get_types_from_msg("geometry_msgs/TransformStamped[] transforms", "tf2_msgs/msg/TFMessage"))
    cache: dict = {}
    writer = Writer(dst)
    writer.set_compression(Writer.CompressionFormat.BZ2)
    with writer:
        conns = {}
        for topic, msgtype, stamp, msg in bag.iter_messages(src):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=ros1)
            writer.write(conns[topic], stamp, ros1.serialize_ros1(
                migrate_message(bag.TYPESTORE, ros1, msgtype, msgtype, cache, msg), msgtype))
    return dst


def test_ros1_bags_replay_to_the_same_calibration_as_their_ros2_original(drive, tmp_path):
    """ROS 1 bags, one converted by ``rosbags-convert`` and one written with Noetic's own definitions, read
    as the same ROS 2 messages (bit-identical CDR, as the player publishes them) and replay to the same
    calibration, estimate for estimate, as the ROS 2 bag they came from."""
    import subprocess
    import sys

    ros2 = tmp_path / "drive_ros2"          # rosbags-convert tells the formats apart by the name
    ros2.symlink_to(drive.bag_path)
    converted = tmp_path / "converted.bag"
    subprocess.run([str(Path(sys.executable).parent / "rosbags-convert"), "--src", str(ros2), "--dst",
                    str(converted)], check=True, capture_output=True)
    direct = _ros1_bag_written_directly(drive.bag_path, tmp_path / "direct.bag")
    original = sorted((t, s, raw) for t, _, s, raw in bag.iter_raw(drive.bag_path))
    for ros1 in (converted, direct):
        assert bag.is_ros1_bag(ros1) and not bag.is_ros1_bag(drive.bag_path)
        assert bag.bag_topics(ros1) == bag.bag_topics(drive.bag_path)
        assert sorted((t, s, raw) for t, _, s, raw in bag.iter_raw(ros1)) == original
    logs = {}
    for name, path in (("ros2", drive.bag_path), ("converted", converted), ("direct", direct)):
        out = tmp_path / name
        assert main(["replay", str(path), "--out", str(out), "--device", "cpu", "--min-keyframes", "4",
                     "--every", "3"]) == 0
        logs[name] = json.loads((out / "estimates.json").read_text())
    assert logs["ros2"]["pairs"] == 10 and logs["ros2"]["solves"]
    for name in ("converted", "direct"):
        assert logs[name]["pairs"] == logs["ros2"]["pairs"]
        assert [s["T_camera_lidar"] for s in logs[name]["solves"]] == \
            [s["T_camera_lidar"] for s in logs["ros2"]["solves"]]


def test_a_clouds_ring_field_reaches_the_frames_aligned_with_their_points(tmp_path):
    """A bag whose clouds carry a uint16 ``ring`` (as Velodyne's driver publishes it), some points NaN: the
    replay's frames hold each kept point's beam, so the LiDAR features can use the driver's rings."""
    from crossi2p_ros.replay import PairReader

    cam = CameraModel.from_intrinsics(64, 48, 50, 50, 32, 24)
    rng = np.random.default_rng(0)
    points = rng.uniform(-20, 20, (200, 4)).astype(np.float32)
    ring = np.arange(200) % 16
    points[::7, :3] = np.nan
    path = tmp_path / "ring.bag"
    with bag.BagWriter(path) as w:
        w.add_camera_info("/cam/camera_info", 1_000_000_000, "cam", cam)
        w.add_image("/cam/image", 1_000_000_000, "cam", np.zeros((48, 64, 3), np.uint8))
        w.add_pointcloud("/lidar/points", 1_000_000_000, "lidar", points, ring)
    frames = list(PairReader(path, detect_topics(path)))
    kept = np.isfinite(points[:, 0])
    assert len(frames) == 1 and len(frames[0].points) == kept.sum()
    np.testing.assert_array_equal(frames[0].points, points[kept])
    np.testing.assert_array_equal(frames[0].ring, ring[kept])


def test_replay_motion_option_compensates_and_estimates_the_cameras_time_offset_or_not(tmp_path):
    """A moving drive's bag (sweeps cast over 100 ms with Ouster's ``t`` field, the camera exposed 20 ms after its
    stamp): ``--motion auto`` (the default; the clouds have times) estimates the offset near 20 ms, ``--motion off``
    replays the sweeps as recorded and estimates none."""
    result = generate(SynthConfig(frames=31, seed=9986, style="urban", speed_mps=(15.0, 15.0), speed_change_mps=6.0,
                                  speed_change_period_s=3.0, sweep_s=0.1, camera_offset_s=0.02),
                      tmp_path / "kitti", bag_path=tmp_path / "moving.bag", progress=False)
    initial = se3_exp(np.array([0.04, -0.03, 0.03, 0.0, np.radians(1.5), np.radians(-1.0)])) @ result.T_camera_lidar
    write_all(Calibration(initial), tmp_path / "initial")
    offsets = {}
    for motion in ("auto", "off"):
        out = tmp_path / motion
        assert main(["replay", str(result.bag_path), "--out", str(out), "--device", "cpu", "--motion", motion,
                     "--min-keyframes", "8", "--solve-every", "4",
                     "--initial", str(tmp_path / "initial" / "calibration.yaml")]) == 0
        solves = json.loads((out / "estimates.json").read_text())["solves"]
        assert solves, motion
        offsets[motion] = [s["time_offset_ms"] for s in solves]
    claimed = [v for v in offsets["auto"] if v is not None]
    assert claimed and abs(claimed[-1] - 20.0) < 3.0, offsets["auto"]
    assert all(v is None for v in offsets["off"]), offsets["off"]


def test_a_bags_tf_odometry_gives_each_moving_keyframe_the_vehicles_twist(tmp_path):
    """A moving drive's bag with the vehicle's odometry on /tf (odom -> base_link, 100 Hz) and the LiDAR's mount on
    /tf_static (base_link -> lidar): each keyframe's twist comes from /tf composed through the mount, and is the
    generator's true LiDAR twist to 0.01 m/s; registering the sweeps instead (``odom_frame`` empty) misses by
    more (0.1-0.2 m/s on these drives), so the test fails if /tf is not what gave the twist."""
    from crossi2p_ros.registration.calibrator import Calibrator, CalibratorConfig
    from crossi2p_ros.replay import PairReader
    from crossi2p_ros.session import Session, SessionConfig
    from crossi2p_ros.sync import SyncConfig
    from crossi2p_ros.data.synth import SynthSequence

    cfg = SynthConfig(frames=8, seed=9987, style="urban", speed_mps=(15.0, 15.0), speed_change_mps=10.0,
                      speed_change_period_s=2.0, sweep_s=0.1, camera_offset_s=0.02, image_width=480, image_height=146,
                      odometry_rate_hz=100.0)
    result = generate(cfg, tmp_path / "kitti", bag_path=tmp_path / "odom.bag", progress=False)
    seq = SynthSequence(cfg)
    true_twists = [seq.lidar_twist(i / cfg.rate_hz, 1.0 / cfg.rate_hz) for i in range(cfg.frames - 1)]
    calibrator = Calibrator(CalibratorConfig(device="cpu"))
    errors = {}
    for odom_frame in ("odom", ""):
        reader = PairReader(result.bag_path, detect_topics(result.bag_path), SyncConfig(max_slop_s=0.06),
                            odom_frame=odom_frame)
        session = Session(calibrator, SessionConfig(motion="on", keyframes=replace(SessionConfig().keyframes,
                                                                                    min_interval_s=0.0,
                                                                                    min_change=0.0)),
                          result.T_camera_lidar, lidar_poses=reader.lidar_pose)
        errors[odom_frame] = []
        for i, frame in enumerate(reader):
            if session.offer(frame):   # a moving frame is prepared once the next sweep is here: frame i - 1
                twist = session.window.keyframes[-1].twist
                errors[odom_frame].append(float(np.linalg.norm(twist[:3] - true_twists[i - 1][:3])))
        stats = session.stats()
        assert stats["twists_from_tf" if odom_frame else "twists_from_lidar"] == len(errors[odom_frame]) >= 5, stats
    assert max(errors["odom"]) < 0.01, errors
    assert max(errors[""]) > 0.01, errors   # the fixture shows what /tf adds
