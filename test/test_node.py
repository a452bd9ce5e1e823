"""The calibration node, started for real, fed real messages over FastDDS on loopback (no mocks).

A tester node publishes ray-cast synthetic camera/LiDAR/CameraInfo messages
(the same the demo bag holds) and listens to /tf_static, /diagnostics and the
overlay; the node runs the shipped weights on the CPU.
"""
from __future__ import annotations

import ast
import math
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from _node_harness import _messages, level

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """20 frames of a synthetic urban drive at 10 Hz (enough distinct keyframes for a window)."""
    from crossi2p_ros.data.synth import SynthConfig, iter_frames

    return list(iter_frames(SynthConfig(frames=20, seed=9850, style="urban")))


def _write_initial(tmp_path, T):
    from crossi2p_ros.calib_io import Calibration, write_all

    return str(write_all(Calibration(T), tmp_path / "initial")["yaml"])


def _calibrations(h):
    """Record ~/calibration messages on the harness' tester."""
    from geometry_msgs.msg import PoseWithCovarianceStamped

    from crossi2p_ros.ros.qos import RELIABLE_QOS

    got: list = []
    h.tester.create_subscription(PoseWithCovarianceStamped, "/crossi2p_calibration/calibration", got.append,
                                 RELIABLE_QOS)
    assert h.spin(10.0, lambda: h.node.calibration_pub.get_subscription_count() > 0)
    return got


def _T_camera_lidar(msg) -> np.ndarray:
    from crossi2p_ros.ros.messages import calibration_from_message

    return calibration_from_message(msg)[0]


def _calibrated_tf(h) -> list:
    """(parent, child, T_parent_child) of every transform the node put on /tf_static (child ``*_calibrated``)."""
    from crossi2p_ros.decode import transform_from_tf_msg

    return [t for m in h.tf for t in transform_from_tf_msg(m) if t[1].endswith("_calibrated")]


def _covers(msg, T_true, k=3.0) -> bool:
    """The truth lies within k sigma of the published pose on every axis of the ROS covariance."""
    from crossi2p_ros.geometry import invert

    T_lc, T_lc_true = invert(_T_camera_lidar(msg)), invert(T_true)
    from scipy.spatial.transform import Rotation

    d = np.r_[T_lc_true[:3, 3] - T_lc[:3, 3], Rotation.from_matrix(T_lc_true[:3, :3] @ T_lc[:3, :3].T).as_rotvec()]
    sd = np.sqrt(np.diag(np.asarray(msg.pose.covariance).reshape(6, 6)))
    return bool(np.all(np.abs(d) <= k * sd))


def test_parameter_file_is_the_one_the_dataclasses_define():
    from crossi2p_ros.ros.params import parameter_file, parameter_specs
    from crossi2p_ros.session import SessionConfig

    assert (ROOT / "config" / "calibration.yaml").read_text() == parameter_file(), \
        "regenerate: python -m crossi2p_ros.ros.params > config/calibration.yaml"
    doc = yaml.safe_load(parameter_file())["crossi2p_calibration"]["ros__parameters"]
    specs = {s.name: s for s in parameter_specs()}
    assert doc["keyframes"]["size"] == SessionConfig().keyframes.size == specs["keyframes.size"].default
    assert doc["session"]["min_keyframes"] == SessionConfig().min_keyframes
    assert specs["keyframes.size"].read_only and not specs["monitor.warn_rot_deg"].read_only
    # a nested group reaches its config: window.* is the calibrator's WindowConfig
    from crossi2p_ros.ros.params import configs_from
    values = {name: spec.default for name, spec in specs.items()} | {"window.threads": 1}
    assert configs_from(values)["calibrator"].window.threads == 1 != specs["window.threads"].default


def test_launch_file_declares_its_arguments():
    try:
        import launch_ros  # noqa: F401 - present only on a full ROS 2 install
    except ImportError:
        print("launch/launch_ros are not installed (no PyPI wheels): checking calibrate.launch.py statically")
        from crossi2p_ros.ros.params import parameter_specs

        from _launch_args import launch_arguments

        names, overrides = launch_arguments()
        tree = ast.parse((ROOT / "launch" / "calibrate.launch.py").read_text())
        assert {"config", "namespace"} <= names
        assert {"mode", "device", "use_sim_time", "cameras", "image_topic", "camera_info_topic", "cloud_topic",
                "initial_calibration", "installed_calibration", "output_dir"} <= set(overrides)
        # each override is a node parameter (use_sim_time: every ROS node's), so a typo cannot pass unnoticed
        assert set(overrides) - {"use_sim_time"} <= {spec.name for spec in parameter_specs()}
        calls = [c for c in ast.walk(tree) if isinstance(c, ast.Call) and getattr(c.func, "id", "") == "Node"]
        kw = {k.arg: k.value for k in calls[0].keywords}
        assert kw["executable"].value == "calibration_node" and kw["package"].value == "crossi2p_ros"
        return
    from launch import LaunchDescription
    import importlib.util

    spec = importlib.util.spec_from_file_location("calibrate_launch", ROOT / "launch" / "calibrate.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert isinstance(module.generate_launch_description(), LaunchDescription)


def test_calibrate_with_a_prior_through_base_link_converges_and_publishes_only_the_converged_calibration(
        harness, frames, tmp_path):
    from sensor_msgs.msg import Image
    from std_srvs.srv import Trigger
    from tf2_msgs.msg import TFMessage

    from crossi2p_ros.calib_io import read_calibration
    from crossi2p_ros.geometry import invert, make_transform, pose_error, se3_exp, so3_exp
    from crossi2p_ros.ros.messages import tf_message
    from crossi2p_ros.ros.qos import STATIC_TF_QOS

    T_true = frames[0].T_camera_lidar
    T_init = se3_exp(np.array([0.1, -0.08, 0.06, math.radians(-2.0), math.radians(3.0), math.radians(1.5)])) @ T_true
    h = harness(output_dir=str(tmp_path / "saved"), **{"session.min_keyframes": 4, "session.solve_every": 2})
    calibrations = _calibrations(h)
    # nothing yet: diagnostics say STALE with a reason
    assert h.spin(3.0, lambda: h.last_status() is not None)
    assert level(h.last_status()) == 3 and "no camera/LiDAR pair" in h.last_status().message   # STALE
    # the robot's static TF: base_link -> lidar and base_link -> camera_optical (no direct LiDAR-camera edge)
    T_base_lidar = make_transform(so3_exp(np.array([0.0, 0.0, 0.3])), [1.2, 0.0, 1.8])
    T_base_camera = T_base_lidar @ invert(T_init)
    tf_pub = h.tester.create_publisher(TFMessage, "/tf_static", STATIC_TF_QOS)
    msg = tf_message(T_base_lidar, "base_link", "lidar", h.tester.get_clock().now().to_msg())
    msg.transforms += tf_message(T_base_camera, "base_link", "camera_optical",
                                 h.tester.get_clock().now().to_msg()).transforms
    tf_pub.publish(msg)
    assert h.spin(5.0, lambda: len(h.node._static_tf) == 2)

    ours = lambda: _calibrated_tf(h)  # noqa: E731  (polled by h.feed / h.spin)
    assert h.feed(frames, 150.0, lambda: bool(ours()), period_s=0.15), \
        f"no calibration on /tf_static: {h.last_status().message if h.last_status() else None}"
    assert h.values()["prior"] == "tf"
    parent, child, T = ours()[-1]
    assert (parent, child) == ("lidar", "camera_optical_calibrated")
    published = invert(T)
    e0, e = pose_error(T_init, T_true), pose_error(published, T_true)
    assert e.rot_deg < 0.5 and e.trans_m < 0.05 and e.rot_deg < e0.rot_deg / 4 and e.trans_m < e0.trans_m / 2, (e0, e)
    # ~/calibration after every solve: the LiDAR frame, the camera's pose in it, a covariance that holds the truth
    # (published just before the TF, it may reach the tester's executor just after it)
    assert h.spin(10.0, lambda: any(np.allclose(invert(T), _T_camera_lidar(c), atol=1e-6) for c in calibrations))
    assert calibrations and all(c.header.frame_id == "lidar" for c in calibrations)
    final = calibrations[-1]
    assert pose_error(_T_camera_lidar(final), T_true).rot_deg < 0.5 and _covers(final, T_true)
    # every /tf_static publication is a converged ~/calibration (sigma below the 0.2 deg / 2 cm bounds), and
    # converging estimates (the first solves of a window) were published on ~/calibration only
    from crossi2p_ros.registration.window_config import WindowConfig
    from crossi2p_ros.registration.window_uncertainty import covariance_within

    def converged(c):
        bounds = WindowConfig()
        return covariance_within(np.asarray(c.pose.covariance).reshape(6, 6), bounds.converged_rot_deg,
                                 bounds.converged_trans_m)
    for _, _, T in ours():
        assert any(np.allclose(invert(T), _T_camera_lidar(c), atol=1e-6) and converged(c) for c in calibrations)
    assert h.spin(3.0, lambda: level(h.last_status()) == 0 and "converged" in h.last_status().message)
    values = h.values()
    for key in ("sigma_rot_deg", "sigma_trans_m", "window_keyframes", "keyframes", "pairs_received",
                "pairs_dropped_busy", "stamp_offset_ms", "device", "latency_total_ms", "tf_child_frame"):
        assert key in values, key
    assert h.last_status().name == "crossi2p: camera_optical <- lidar"

    # overlay only while someone listens
    assert h.node.overlay_pub.get_subscription_count() == 0
    h.tester.create_subscription(Image, "/crossi2p_calibration/overlay", h.overlays.append, 10)
    assert h.feed(frames, 30.0, lambda: len(h.overlays) >= 1, period_s=0.3)
    assert h.overlays[0].encoding == "rgb8" and h.overlays[0].width == frames[0].image.shape[1]

    def call(name):
        client = h.tester.create_client(Trigger, f"/crossi2p_calibration/{name}")
        assert client.wait_for_service(timeout_sec=5.0)
        future = client.call_async(Trigger.Request())
        assert h.spin(10.0, future.done)
        return future.result()

    saved = call("save")
    assert saved.success and Path(saved.message).is_file()
    saved_calib = read_calibration(Path(saved.message))
    # the file holds the latest converged estimate, one the node published on ~/calibration (the solver thread
    # may solve again between the save and any read of the node's state, so compare with what it published)
    assert h.spin(10.0, lambda: any(np.allclose(saved_calib.T_camera_lidar, _T_camera_lidar(c), atol=1e-6)
                                    and converged(c) for c in calibrations)), \
        "the saved calibration is no converged ~/calibration the node published"
    assert saved_calib.covariance is not None
    assert call("reset").success and h.node.session.calibration is None
    refused = call("save")
    assert not refused.success and "the prior stays the calibration" in refused.message, refused.message
    assert call("start").success


def test_calibrate_without_any_prior_reaches_the_pose_by_the_global_path(harness, frames):
    from crossi2p_ros.geometry import pose_error

    h = harness(**{"session.min_keyframes": 8})
    calibrations = _calibrations(h)
    assert h.feed(frames, 200.0, lambda: bool(calibrations) and h.node.session.calibration is not None,
                  period_s=0.15), f"no converged pose: {h.last_status().message if h.last_status() else None}"
    assert h.values()["prior"] == "none"
    e = pose_error(h.node.session.calibration.T_camera_lidar, frames[0].T_camera_lidar)
    assert e.rot_deg < 0.5 and e.trans_m < 0.05, e


def test_read_only_parameters_refuse_changes_and_monitor_thresholds_apply_at_run_time(harness, frames, tmp_path):
    from rclpy.parameter import Parameter

    h = harness(mode="monitor", installed_calibration=_write_initial(tmp_path, frames[0].T_camera_lidar))
    assert not h.node.set_parameters([Parameter("keyframes.size", value=5)])[0].successful
    assert h.node.set_parameters([Parameter("monitor.warn_rot_deg", value=0.8)])[0].successful
    assert h.node.session.cfg.monitor.warn_rot_deg == 0.8 and h.node.session.monitor.cfg.warn_rot_deg == 0.8


@pytest.mark.parametrize("knock_deg", [0.0, 1.5])
def test_monitor_mode_alarms_on_a_wrong_installed_extrinsic_with_its_axis(harness, frames, tmp_path, knock_deg):
    from crossi2p_ros.geometry import se3_exp

    installed = se3_exp(np.array([0.0, 0.0, 0.0, 0.0, math.radians(knock_deg), 0.0])) @ frames[0].T_camera_lidar
    h = harness(mode="monitor", installed_calibration=_write_initial(tmp_path, installed),
                **{"session.min_keyframes": 8})
    levels: list[int] = []
    h.spin(1.0)
    checked = lambda: h.node.session.last is not None and h.node.session.last.drift is not None \
        and h.node.session.solves >= 3  # noqa: E731
    assert h.feed(frames, 150.0, lambda: levels.append(level(h.last_status())) or checked(), period_s=0.15)
    assert h.spin(3.0, lambda: levels.append(level(h.last_status())) or False) is False
    assert not h.tf, "monitor mode must not publish TF"
    if knock_deg == 0.0:
        assert not {1, 2} & set(levels), h.last_status().message
        assert level(h.last_status()) == 0
    else:
        assert level(h.last_status()) in (1, 2), h.last_status().message
        assert "yaw" in h.last_status().message and "deg" in h.last_status().message


def test_malformed_messages_are_answered_by_diagnostics_error_and_the_node_lives_on(harness, frames, tmp_path):
    h = harness(initial_calibration=_write_initial(tmp_path, frames[0].T_camera_lidar), use_mi=False)
    assert h.spin(5.0, h.matched)
    stamp = h.tester.get_clock().now().to_msg

    def nan_cloud(c):
        arr = np.frombuffer(bytes(c.data), np.uint8).copy().view(np.float32)
        arr[:] = np.nan
        c.data = arr.view(np.uint8).tobytes()

    def empty_cloud(c):
        c.width, c.row_step, c.data = 0, 0, b""

    def short_cloud(c):
        c.data = bytes(c.data)[:1000]

    def bad_encoding(img):
        img.height, img.width, img.encoding, img.step, img.data = 4, 4, "32FC1", 16, bytes(64)

    def wrong_size(img):
        img.data = bytes(img.data)[: len(img.data) // 2]

    cases = [("NaN points", nan_cloud, None), ("empty cloud", empty_cloud, None), ("truncated cloud", short_cloud, None),
             ("unsupported encoding", None, bad_encoding), ("truncated image", None, wrong_size)]
    for name, spoil_cloud, spoil_image in cases:
        img, info, cloud = _messages(frames[0], stamp())
        if spoil_cloud:
            spoil_cloud(cloud)
        if spoil_image:
            spoil_image(img)
        before = h.node._bad
        h.pub_info.publish(info)
        h.pub_cloud.publish(cloud)
        h.pub_img.publish(img)
        assert h.spin(30.0, lambda: h.node._bad > before), f"{name}: not reported"
        if spoil_image is bad_encoding:
            assert "32FC1" in h.node._last_error, h.node._last_error
        assert h.spin(3.0, lambda: level(h.last_status()) == 2 and "bad input" in h.last_status().message), name
        assert int(h.values()["bad_messages"]) >= 1
    # still alive: good pairs become keyframes again
    before = h.node.session.stats()["frames_offered"]
    assert h.feed(frames, 60.0, lambda: h.node.session.stats()["frames_offered"] > before + 2, period_s=0.3)


def test_use_sim_time_follows_clock(harness, frames, tmp_path):
    from rosgraph_msgs.msg import Clock

    from crossi2p_ros.ros.messages import time_msg

    h = harness(use_sim_time=True, initial_calibration=_write_initial(tmp_path, frames[0].T_camera_lidar),
                use_mi=False)
    clock = h.tester.create_publisher(Clock, "/clock", 10)
    sim_ns = 1_700_000_123_000_000_000
    assert h.spin(5.0, lambda: (clock.publish(Clock(clock=time_msg(sim_ns))) or True)
                  and h.node.get_clock().now().nanoseconds == sim_ns)
    from diagnostic_msgs.msg import DiagnosticArray

    from crossi2p_ros.ros.qos import RELIABLE_QOS

    arrays: list = []
    h.tester.create_subscription(DiagnosticArray, "/diagnostics", arrays.append, RELIABLE_QOS)
    assert h.spin(5.0, lambda: bool(arrays))
    stamp = arrays[-1].header.stamp
    assert stamp.sec * 1_000_000_000 + stamp.nanosec == sim_ns     # stamped with the simulated clock


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_ends_the_node_cleanly(tmp_path, ros_environment, sig):
    import os
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "crossi2p_ros.ros.node", "--ros-args", "-p", "device:=cpu"],
                            env={**os.environ, **ros_environment}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines: list[str] = []
    import threading

    threading.Thread(target=lambda: [lines.append(line) for line in proc.stdout], daemon=True).start()
    deadline = time.monotonic() + 60
    while not any("weights" in line for line in lines) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert any("weights" in line for line in lines), "".join(lines)
    time.sleep(1.0)
    proc.send_signal(getattr(signal, sig))
    assert proc.wait(timeout=30) == 0, "".join(lines)
    time.sleep(0.2)
    log = "".join(lines)
    assert "Traceback" not in log and "Exception" not in log, log


def test_monitor_mode_warns_when_its_windows_cannot_check_the_calibration(harness, frames, tmp_path):
    """Windows of two keyframes never constrain the extrinsic (min_keyframes_converged): their OK is no evidence,
    so after ``no_estimate_warn_s`` the node says the installed calibration has not been checked."""
    h = harness(mode="monitor", installed_calibration=_write_initial(tmp_path, frames[0].T_camera_lidar),
                no_estimate_warn_s=3.0, **{"keyframes.size": 2, "session.min_keyframes": 2, "session.solve_every": 1})
    h.spin(1.0)
    solved = lambda: h.node.session.last is not None and h.node.session.last.drift is not None  # noqa: E731
    assert h.feed(frames, 150.0, solved, period_s=0.15)
    drift = h.node.session.last.drift
    assert drift.level == "OK" and not drift.checked, drift.message
    unchecked = lambda: level(h.last_status()) == 1 and "not been checked" in h.last_status().message  # noqa: E731
    assert h.feed(frames, 20.0, unchecked, period_s=0.15), h.last_status().message
    # solves keep coming (one a keyframe) and succeed, yet none checks: the warning stays
    n = h.node.session.solves
    assert h.feed(frames, 30.0, lambda: h.node.session.solves >= n + 3, period_s=0.15)
    assert h.node.session.last.estimate.ok
    h.spin(1.5)                                            # the next diagnostics after those solves
    assert unchecked(), h.last_status().message
    assert "could hide a drift" in h.last_status().message and h.values()["checked"] == "False"


def test_a_ringless_scanner_with_a_fisheye_camera_calibrates_through_the_node(harness, tmp_path):
    """Any rig end to end: a raster LiDAR (no rings, no ring field, points shuffled) and an equidistant
    CameraInfo, from a prior 3 deg / 8 cm off, over loopback.

    The drive is one where the raster's windows are well posed (seed 9966: from 5 keyframe choices the
    session converged within 0.14 deg / 0.9 cm each time). Seed 9981's first 20 frames were not: a
    straight stretch whose windows have rival poses 1-7 cm apart, so whether and where the node converged
    depended on which frames the live stream made keyframes (CI saw it never converge)."""
    from crossi2p_ros.data.synth import SynthConfig, iter_frames
    from crossi2p_ros.geometry import invert, pose_error, se3_exp

    rig = list(iter_frames(SynthConfig(frames=20, seed=9966, style="urban", lidar_model="raster",
                                       point_order="shuffled", camera_model="fisheye", image_width=960,
                                       image_height=600)))
    assert rig[0].camera.model == "equidistant"
    T_true = rig[0].T_camera_lidar
    T_init = se3_exp(np.array([0.05, -0.04, 0.05, math.radians(2.0), math.radians(-1.5), math.radians(1.2)])) @ T_true
    h = harness(initial_calibration=_write_initial(tmp_path, T_init),
                **{"session.min_keyframes": 4, "session.solve_every": 2})
    ours = lambda: _calibrated_tf(h)  # noqa: E731  (polled by h.feed / h.spin)
    assert h.feed(rig, 150.0, lambda: bool(ours()), period_s=0.15), \
        f"no calibration on /tf_static: {h.last_status().message if h.last_status() else None}"
    e0, e = pose_error(T_init, T_true), pose_error(invert(ours()[-1][2]), T_true)
    assert e.rot_deg < 0.3 and e.trans_m < 0.03 and e.rot_deg < e0.rot_deg / 4, (e0, e)


def test_a_drivers_ring_field_is_what_the_node_takes_its_rings_from(harness, frames, tmp_path):
    """Clouds published as a Velodyne driver does, with a uint16 ``ring`` per point, but their points out of
    scan order: the node's keyframes take their rings from the field (the beams of the synthetic HDL-64's
    scan order, found by :func:`rings_from_scan_order` before shuffling). Without the field the shuffled
    sweeps' rings would come from their elevations."""
    from types import SimpleNamespace

    from crossi2p_ros.registration.lidar_edges import rings_from_scan_order

    rng = np.random.default_rng(5)
    published = []
    for f in frames[:6]:
        ring = rings_from_scan_order(f.points[:, :3])
        order = rng.permutation(len(f.points))
        published.append(SimpleNamespace(image=f.image, camera=f.camera, points=f.points[order], ring=ring[order]))
    h = harness(initial_calibration=_write_initial(tmp_path, frames[0].T_camera_lidar),
                **{"session.min_keyframes": 10})
    keyframes = lambda: h.node.session.window.keyframes  # noqa: E731  (polled by h.feed)
    assert h.feed(published, 60.0, lambda: len(keyframes()) >= 2, period_s=0.3)
    assert [kf.ring_source for kf in keyframes()] == ["field"] * len(keyframes())


def test_a_moving_drive_gives_the_cameras_time_offset_on_the_nodes_outputs_and_in_its_saved_files(harness,
                                                                                                    tmp_path):
    """Driving over loopback: sweeps cast over 100 ms while the rig moves at 5-25 m/s, published with a uint32
    ``t`` per point (Ouster's field) and stamped at their start, the camera stamped mid-sweep and exposed 20 ms
    after its stamp, the vehicle's odometry on /tf. The node motion-compensates (motion: auto, the clouds have
    times), estimates the offset and puts it on ~/time_offset, in its diagnostics and in ~/save's files. (With
    twists from registering the sweeps instead, a 20 ms offset at 15 m/s leaves the translation along the travel
    4.5 cm uncertain, time_offset.speed_covariance, and the window would not converge against 4 cm.)"""
    import json

    from std_msgs.msg import Float64
    from std_srvs.srv import Trigger

    from crossi2p_ros.data.synth import SynthConfig, SynthSequence
    from crossi2p_ros.calib_io import read_calibration
    from crossi2p_ros.geometry import pose_error, se3_exp
    from crossi2p_ros.ros.node import RELIABLE_QOS

    seq = SynthSequence(SynthConfig(frames=80, seed=9985, style="urban", speed_mps=(15.0, 15.0), speed_change_mps=10.0,
                                    speed_change_period_s=3.0, sweep_s=0.1, camera_offset_s=0.02, image_width=800,
                                    image_height=242))
    drive = list(seq)
    T_true = seq.T_camera_lidar
    T_init = se3_exp(np.array([0.03, -0.02, 0.03, math.radians(1.0), math.radians(-1.0), math.radians(0.5)])) @ T_true
    h = harness(initial_calibration=_write_initial(tmp_path, T_init), output_dir=str(tmp_path / "saved"),
                # with the offset free, 25 keyframes over 8 s pin the translation along the travel to ~2.5 cm
                # (the truth lies within it: 20 ms x 15 m/s = 30 cm of bias removed); the 2 cm bound would wait
                # for more
                **{"session.min_keyframes": 12, "session.solve_every": 4, "keyframes.size": 30,
                   "keyframes.min_interval_s": 0.25, "keyframes.min_change": 0.0, "window.converged_trans_m": 0.04,
                   # the images are stamped 45-55 ms after their sweep: within 60 ms every one pairs (with its
                   # own sweep or the next, either consistent), so which frames make the window does not depend
                   # on timing; at the default 50 ms a fourth went unpaired, and once (CI) the window that was
                   # left stayed ambiguous
                   "sync.max_slop_s": 0.06})
    offsets: list[float] = []
    h.tester.create_subscription(Float64, "/crossi2p_calibration/time_offset", lambda m: offsets.append(m.data),
                                 RELIABLE_QOS)
    start, odometry = _odometry(h, seq)
    for i, f in enumerate(drive):   # stamps in the drive's own time: a twist is distance over stamp difference
        # the odometry a frame ahead of the sweeps (a live sweep arrives a sweep after its stamp), at 100 Hz
        for k in range(0 if i == 0 else 10 * i + 11, 10 * i + 21):
            odometry(k * 10_000_000)
        _publish_timed(h, f, start)
        h.spin(0.3)   # the preparer keeps up (a moving frame waits for the next sweep and registers them)
    assert h.spin(90.0, lambda: bool(offsets) and h.node.session.calibration is not None), \
        f"no converged offset: {offsets}, {h.last_status().message if h.last_status() else None}, {h.values()}"
    assert abs(offsets[-1] - 0.020) < 0.003, offsets
    assert int(h.values()["twists_from_tf"]) > 0, h.values()
    assert h.spin(5.0, lambda: h.values().get("time_offset_ms", "-") not in ("-", "not estimated"))
    values = h.values()
    assert abs(float(values["time_offset_ms"]) - 20.0) < 3.0 and float(values["time_offset_sigma_ms"]) < 5.0, values
    client = h.tester.create_client(Trigger, "/crossi2p_calibration/save")
    assert client.wait_for_service(timeout_sec=5.0)
    future = client.call_async(Trigger.Request())
    assert h.spin(10.0, future.done)
    saved = future.result()
    assert saved.success, saved.message
    saved_json = json.loads((Path(saved.message).parent / "calibration.json").read_text())
    metadata = saved_json["metadata"]
    assert abs(metadata["time_offset_s"] - 0.020) < 0.003 and 0 < metadata["time_offset_sigma_s"] < 0.005
    e = pose_error(read_calibration(Path(saved.message)).T_camera_lidar, T_true)
    assert e.rot_deg < 0.3 and e.trans_m < 0.04, e


def test_the_node_takes_a_moving_sweeps_twist_from_tf_odometry(harness, tmp_path):
    """The vehicle's odometry on /tf (odom -> base_link at 100 Hz) and the LiDAR's mount on /tf_static
    (base_link -> lidar), as a robot publishes them, with a moving drive's sweeps: the node's keyframes take their
    twists from /tf (diagnostics ``twists_from_tf``, none from registering sweeps), each the generator's true LiDAR
    twist to 0.01 m/s (registration misses by 0.1-0.2 m/s)."""
    from crossi2p_ros.data.synth import SynthConfig, SynthSequence

    seq = SynthSequence(SynthConfig(frames=8, seed=9988, style="urban", speed_mps=(15.0, 15.0), speed_change_mps=10.0,
                                    speed_change_period_s=2.0, sweep_s=0.1, camera_offset_s=0.02, image_width=480,
                                    image_height=146))
    drive = list(seq)
    rate = seq.cfg.rate_hz
    true_twists = [seq.lidar_twist(i / rate, 1.0 / rate) for i in range(len(drive) - 1)]
    h = harness(initial_calibration=_write_initial(tmp_path, seq.T_camera_lidar),
                **{"session.min_keyframes": 20, "keyframes.min_interval_s": 0.0, "keyframes.min_change": 0.0,
                   "sync.max_slop_s": 0.06})
    start, odometry = _odometry(h, seq)
    for k in range(len(drive) * 10 + 1):   # the whole drive's odometry first: the node buffers 10 s of it
        odometry(k * 10_000_000)
        h.spin(0.005)
    h.spin(0.5)
    for f in drive:
        _publish_timed(h, f, start)
        h.spin(0.4)   # each pair prepared before the next arrives
    assert h.spin(20.0, lambda: int(h.values().get("twists_from_tf", 0)) >= 5), h.values()
    assert int(h.values()["twists_from_lidar"]) == 0, h.values()
    twists = [kf.twist for kf in h.node.session.window.keyframes]
    assert len(twists) >= 5 and all(min(np.linalg.norm(t[:3] - true[:3]) for true in true_twists) < 0.01
                                    for t in twists), (twists, true_twists)


def _odometry(h, seq):
    """The tester as a robot's odometry for the synthetic drive ``seq``: once /tf is matched, the LiDAR's mount
    (base_link -> lidar) on /tf_static; returns the drive's start [ns, tester clock] and a function publishing
    the vehicle's pose (odom -> base_link) on /tf at a time [ns] from that start."""
    from tf2_msgs.msg import TFMessage

    from crossi2p_ros.ros.messages import tf_message
    from crossi2p_ros.ros.node import STATIC_TF_QOS, TF_QOS

    pub_tf = h.tester.create_publisher(TFMessage, "/tf", TF_QOS)
    pub_static = h.tester.create_publisher(TFMessage, "/tf_static", STATIC_TF_QOS)
    assert h.spin(5.0, lambda: h.matched() and pub_tf.get_subscription_count() > 0)
    start = h.tester.get_clock().now().nanoseconds
    pub_static.publish(tf_message(seq.rig.T_vehicle_lidar, "base_link", "lidar", _time(start)))

    def publish(t_ns: int) -> None:
        pub_tf.publish(tf_message(seq.trajectory.T_world_vehicle(seq.scene, t_ns * 1e-9), "odom", "base_link",
                                  _time(start + t_ns)))

    return start, publish


def _publish_timed(h, f, start: int) -> None:
    """A timed synthetic frame ``f`` on the harness' topics: its cloud with per-point times stamped at ``start``
    [ns] plus its time, its image and CameraInfo stamped at the camera's own offset from it."""
    from crossi2p_ros.ros.messages import sensor_messages

    cloud_ns = start + round(f.time_s * 1e9)
    img, info, cloud = sensor_messages(f.image, f.camera, f.points, _time(cloud_ns), times_s=f.point_times_s,
                                       camera_stamp=_time(cloud_ns + round(f.camera_time_offset_s * 1e9)))
    h.pub_info.publish(info)
    h.pub_cloud.publish(cloud)
    h.pub_img.publish(img)


def _time(ns: int):
    from builtin_interfaces.msg import Time

    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def test_organised_driver_clouds_with_zeros_and_nans_calibrate_through_the_node(harness, frames, tmp_path):
    """Real drivers' layouts over loopback (test/_driver_layouts.py): the drive's sweeps published in turn as
    ouster-ros' organised cloud (64 x 1024, no-return pixels all zeros, 48-byte padded points) and as
    velodyne_pointcloud's organised cloud (no-return firings NaN), with their ring and time fields. The node
    takes its rings from the field and converges from a prior 3 deg / 10 cm off, as with our plain clouds.
    ``session.motion`` is off: the fixture's sweeps are cast at one instant (times 0) and published at wall-clock
    stamps, so the odometry between them would be the drive's motion over the wrong interval."""
    from _driver_layouts import driver_cloud, ros_cloud, spinning_grid

    from crossi2p_ros.data.lidar_models import LIDAR_MODELS
    from crossi2p_ros.geometry import invert, pose_error, se3_exp
    from crossi2p_ros.registration.lidar_edges import rings_from_scan_order

    columns = LIDAR_MODELS["hdl64"].columns
    sweeps = []
    for f in frames:
        ring = rings_from_scan_order(f.points[:, :3])
        sweeps.append((f, ring, spinning_grid(f.points, ring, columns)))
    T_true = frames[0].T_camera_lidar
    T_init = se3_exp(np.array([0.06, -0.05, 0.05, math.radians(2.0), math.radians(-1.5), math.radians(1.2)])) @ T_true
    h = harness(initial_calibration=_write_initial(tmp_path, T_init),
                **{"session.min_keyframes": 4, "session.solve_every": 2, "session.motion": "off"})
    ours = lambda: _calibrated_tf(h)  # noqa: E731  (polled by h.spin)
    assert h.spin(5.0, h.matched)
    deadline, k = time.monotonic() + 150.0, 0
    while time.monotonic() < deadline and not ours():
        f, ring, column = sweeps[k % len(sweeps)]
        stamp = h.tester.get_clock().now()
        img, info, _ = _messages(f, stamp.to_msg())
        cloud = driver_cloud(("ouster", "velodyne")[k % 2], f.points, ring, np.zeros(len(f.points)),
                             stamp.nanoseconds, column, columns)
        assert cloud.height == ring.max() + 1 and cloud.width == columns and cloud.width * cloud.height > len(f.points)
        h.pub_info.publish(info)
        h.pub_cloud.publish(ros_cloud(cloud, "lidar", stamp.to_msg()))
        h.pub_img.publish(img)
        k += 1
        h.spin(0.15)
    assert ours(), f"no calibration on /tf_static: {h.last_status().message if h.last_status() else None}"
    assert {kf.ring_source for kf in h.node.session.window.keyframes} == {"field"}
    e0, e = pose_error(T_init, T_true), pose_error(invert(ours()[-1][2]), T_true)
    assert e.rot_deg < 0.3 and e.trans_m < 0.03 and e.rot_deg < e0.rot_deg / 4, (e0, e)


def test_two_cameras_on_one_lidar_give_two_calibrations_and_two_tf_child_frames(harness, tmp_path):
    """One node, ``cameras: [front, left]``: each camera's images and CameraInfo on ``/{camera}/...``, one cloud
    stream, each camera's prior from its own file (``{camera}`` in ``initial_calibration``). Each camera
    converges to its own extrinsic and publishes it on ``~/<name>/calibration`` and as its own TF child frame,
    each has its diagnostics status, the sweeps' LiDAR work is shared, and ~/save writes both."""
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from sensor_msgs.msg import CameraInfo, Image
    from std_srvs.srv import Trigger

    from crossi2p_ros.calib_io import Calibration, read_calibration, write_all
    from crossi2p_ros.data.synth import SynthConfig, camera_rig
    from crossi2p_ros.geometry import invert, pose_error, se3_exp
    from crossi2p_ros.ros.messages import sensor_messages
    from crossi2p_ros.ros.node import RELIABLE_QOS

    names = ("front", "left")
    rig = camera_rig(SynthConfig(frames=12, seed=9850, style="urban"), [0.0, 70.0])
    frames = {name: [seq.frame(i) for i in range(12)] for name, seq in zip(names, rig)}
    truth = {name: seq.T_camera_lidar for name, seq in zip(names, rig)}
    knock = se3_exp(np.array([0.06, -0.04, 0.05, math.radians(2.0), math.radians(-1.5), math.radians(1.0)]))
    for name in names:
        write_all(Calibration(knock @ truth[name], "lidar", f"{name}_optical"), tmp_path / f"initial_{name}")
    # 8 keyframes before the first solve, and seed 9850's drive: on seed 9870 the front camera converged 4.2 cm
    # off (sigma 1.8 cm), on its own as beside the left one
    h = harness(cameras=list(names), initial_calibration=str(tmp_path / "initial_{camera}" / "calibration.yaml"),
                output_dir=str(tmp_path / "saved"), **{"session.min_keyframes": 8, "session.solve_every": 2})
    pubs = {name: (h.tester.create_publisher(Image, f"/{name}/image_raw", RELIABLE_QOS),
                   h.tester.create_publisher(CameraInfo, f"/{name}/camera_info", RELIABLE_QOS)) for name in names}
    got = {name: [] for name in names}
    for name in names:
        h.tester.create_subscription(PoseWithCovarianceStamped, f"/crossi2p_calibration/{name}/calibration",
                                     got[name].append, RELIABLE_QOS)
    # both ways matched before the first pair: a camera may converge on its first solve, and a ~/calibration
    # published before this tester's subscription matched is lost (volatile)
    assert h.spin(10.0, lambda: all(p.get_subscription_count() > 0 for pair in pubs.values() for p in pair)
                  and h.pub_cloud.get_subscription_count() > 0
                  and all(ch.calibration_pub.get_subscription_count() > 0 for ch in h.node.channels))
    children = lambda: {child: T for _, child, T in _calibrated_tf(h)}  # noqa: E731
    both = lambda: {f"{n}_optical_calibrated" for n in names} <= set(children())  # noqa: E731
    deadline, k = time.monotonic() + 240.0, 0
    while time.monotonic() < deadline and not both():
        stamp = h.tester.get_clock().now().to_msg()
        for name in names:
            f = frames[name][k % 12]
            img, info, cloud = sensor_messages(f.image, f.camera, f.points, stamp, camera_frame=f"{name}_optical")
            pubs[name][1].publish(info)
            pubs[name][0].publish(img)
        h.pub_cloud.publish(cloud)
        k += 1
        h.spin(0.3)
    assert both(), f"calibrated frames: {sorted(children())}; statuses: {[(s.name, s.message) for s in h.diag[-2:]]}"
    # a solve's ~/calibration and its /tf_static arrive on two topics, in either order
    assert h.spin(10.0, lambda: all(got[n] for n in names)), {n: len(got[n]) for n in names}
    for name in names:
        assert got[name], f"nothing on ~/{name}/calibration"
        e0 = pose_error(knock @ truth[name], truth[name])
        e = pose_error(invert(children()[f"{name}_optical_calibrated"]), truth[name])
        assert e.rot_deg < 0.3 and e.trans_m < 0.03 and e.rot_deg < e0.rot_deg / 4, (name, e0, e)
    statuses = {s.name: {kv.key: kv.value for kv in s.values} for s in h.diag}
    assert {f"crossi2p: {n}_optical <- lidar" for n in names} <= set(statuses)
    assert int(statuses["crossi2p: left_optical <- lidar"]["sweeps_shared"]) > 0
    client = h.tester.create_client(Trigger, "/crossi2p_calibration/save")
    assert client.wait_for_service(timeout_sec=5.0)
    future = client.call_async(Trigger.Request())
    assert h.spin(10.0, future.done) and future.result().success, future.result().message
    for name in names:
        saved = read_calibration(tmp_path / "saved" / name / "calibration.yaml")
        assert saved.camera_frame == f"{name}_optical" and pose_error(saved.T_camera_lidar, truth[name]).rot_deg < 0.3


def test_several_cameras_need_topics_of_their_own():
    """camera_setups: {camera} filled in per camera, outputs under ~/<name>/ with several; topics shared by
    every camera, bad names and one installed_transform for several cameras are refused with what to fix."""
    import dataclasses

    from crossi2p_ros.errors import CrossI2PError
    from crossi2p_ros.ros.camera_channel import camera_setups
    from crossi2p_ros.ros.params import NodeConfig

    one = camera_setups(NodeConfig())
    assert [(s.image_topic, s.camera_info_topic, s.outputs) for s in one] == \
        [("/camera/image_raw", "/camera/camera_info", "~/")]
    two = camera_setups(NodeConfig(cameras=("front", "left"), initial_calibration="/cal/{camera}.yaml",
                                   output_dir="out"))
    assert [(s.image_topic, s.initial_calibration, s.outputs, s.output_dir) for s in two] == \
        [("/front/image_raw", "/cal/front.yaml", "~/front/", "out/front"),
         ("/left/image_raw", "/cal/left.yaml", "~/left/", "out/left")]
    for bad, match in [({"image_topic": "/cam/image"}, "image_topic.*put {camera} in it"),
                       ({"initial_calibration": "prior.yaml"}, "initial_calibration"),
                       ({"cameras": ("front", "front")}, "unique"), ({"cameras": ("front", "2nd")}, "ROS name"),
                       ({"installed_transform": (0.0,) * 6 + (1.0,)}, "installed_transform"), ({"cameras": ()}, "empty")]:
        with pytest.raises(CrossI2PError, match=match):
            camera_setups(dataclasses.replace(NodeConfig(cameras=("front", "left")), **bad))
