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
    from crossi2p_ros.data.synth import SynthConfig, iter_frames

    return list(iter_frames(SynthConfig(frames=2, seed=9850, style="urban")))





def _write_initial(tmp_path, T):
    from crossi2p_ros.calib_io import Calibration, write_all

    return str(write_all(Calibration(T), tmp_path / "initial")["yaml"])


def test_parameter_file_matches_the_node_declarations():
    from crossi2p_ros.ros.node import PARAMETERS

    doc = yaml.safe_load((ROOT / "config" / "calibration.yaml").read_text())["crossi2p_calibration"]["ros__parameters"]
    assert set(doc) == set(PARAMETERS)
    for name, (default, _, _) in PARAMETERS.items():
        assert doc[name] == default, name


def test_launch_file_declares_its_arguments():
    try:
        import launch_ros  # noqa: F401 - present only on a full ROS 2 install
    except ImportError:
        print("launch/launch_ros are not installed (no PyPI wheels): checking calibrate.launch.py statically")
        tree = ast.parse((ROOT / "launch" / "calibrate.launch.py").read_text())
        names = {c.args[0].value for c in ast.walk(tree) if isinstance(c, ast.Call)
                 and getattr(c.func, "id", "") == "DeclareLaunchArgument"}
        assert {"config", "namespace", "mode", "device", "use_sim_time", "image_topic", "camera_info_topic",
                "cloud_topic"} <= names
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


def test_calibrate_mode_publishes_tf_diagnostics_overlay_and_answers_services(harness, frames, tmp_path):
    from sensor_msgs.msg import Image
    from std_srvs.srv import Trigger

    from crossi2p_ros.calib_io import read_calibration
    from crossi2p_ros.geometry import invert, pose_error, se3_exp
    from crossi2p_ros.decode import transform_from_tf_msg

    T_true = frames[0].T_camera_lidar
    T_init = se3_exp(np.array([0.03, 0.0, 0.0, 0.0, math.radians(1.5), 0.0])) @ T_true
    h = harness(initial_calibration=_write_initial(tmp_path, T_init), output_dir=str(tmp_path / "saved"))
    # nothing yet: diagnostics say STALE with a reason
    assert h.spin(3.0, lambda: h.last_status() is not None)
    assert level(h.last_status()) == 3 and "no camera/LiDAR pair" in h.last_status().message   # STALE
    assert h.last_status().name == "crossi2p: camera <- lidar"

    assert h.feed(frames, 90.0, lambda: len(h.tf) >= 2), "no fused extrinsic on /tf_static"
    parent, child, T = transform_from_tf_msg(h.tf[-1])[0]
    assert (parent, child) == ("lidar", "camera_optical")
    published = invert(T)
    # the node keeps the estimate inside the prior's reach and does not walk away from the truth
    assert pose_error(published, T_true).rot_deg < pose_error(T_init, T_true).rot_deg + 0.5
    assert h.spin(3.0, lambda: level(h.last_status()) == 0 and "frames_fused" in h.values())
    values = h.values()
    for key in ("confidence", "frames_fused", "latency_total_ms", "pairs_received", "pairs_dropped_busy",
                "stamp_offset_ms", "device", "fused_rot_std_deg"):
        assert key in values, key
    assert h.last_status().name == "crossi2p: camera_optical <- lidar"

    # overlay only while someone listens
    assert h.node.overlay_pub.get_subscription_count() == 0
    h.tester.create_subscription(Image, "/crossi2p_calibration/overlay", h.overlays.append, 10)
    assert h.feed(frames, 30.0, lambda: len(h.overlays) >= 1)
    assert h.overlays[0].encoding == "rgb8" and h.overlays[0].width == frames[0].image.shape[1]

    def call(name):
        client = h.tester.create_client(Trigger, f"/crossi2p_calibration/{name}")
        assert client.wait_for_service(timeout_sec=5.0)
        future = client.call_async(Trigger.Request())
        assert h.spin(10.0, future.done)
        return future.result()

    saved = call("save")
    assert saved.success and Path(saved.message).is_file()
    np.testing.assert_allclose(read_calibration(Path(saved.message)).T_camera_lidar, h.node.current_extrinsic(),
                               atol=1e-6)
    assert call("reset").success and h.node.current_extrinsic() is None
    assert not call("save").success
    assert call("start").success


def test_monitor_mode_warns_on_a_2_degree_error_and_stays_ok_on_the_right_one(harness, frames, tmp_path):
    T_true = frames[0].T_camera_lidar
    from crossi2p_ros.geometry import se3_exp

    wrong = se3_exp(np.array([0.0, 0.0, 0.0, 0.0, math.radians(2.0), 0.0])) @ T_true
    bad = harness(mode="monitor", installed_calibration=_write_initial(tmp_path / "bad", wrong), monitor_window=10)
    assert bad.feed(frames, 150.0, lambda: bad.last_status() is not None and level(bad.last_status()) in (1, 2)), \
        f"no WARN/ERROR: {bad.last_status().message if bad.last_status() else None}"
    assert "deg" in bad.last_status().message
    assert not bad.tf, "monitor mode must not publish TF"
    bad.close()

    good = harness(mode="monitor", installed_calibration=_write_initial(tmp_path / "good", T_true), monitor_window=10)
    assert good.feed(frames, 150.0, lambda: int(good.values().get("pairs_received", 0)) >= 12
                     and good.node.monitor is not None and good.node.monitor.status.estimates >= 10)
    assert good.spin(2.0, lambda: level(good.last_status()) == 0), good.last_status().message


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
    # still alive and calibrating: a good pair gives an estimate again
    before = h.node._last_estimate
    assert h.feed(frames, 60.0, lambda: h.node._last_estimate is not None and h.node._last_estimate is not before)


def test_use_sim_time_follows_clock(harness, frames, tmp_path):
    from rosgraph_msgs.msg import Clock

    from crossi2p_ros.ros.messages import time_msg

    h = harness(use_sim_time=True, initial_calibration=_write_initial(tmp_path, frames[0].T_camera_lidar),
                use_mi=False)
    clock = h.tester.create_publisher(Clock, "/clock", 10)
    sim_ns = 1_700_000_123_000_000_000
    assert h.spin(5.0, lambda: (clock.publish(Clock(clock=time_msg(sim_ns))) or True)
                  and h.node.get_clock().now().nanoseconds == sim_ns)
    assert h.feed(frames, 60.0, lambda: bool(h.tf))
    stamp = h.tf[-1].transforms[0].header.stamp
    assert stamp.sec * 1_000_000_000 + stamp.nanosec == sim_ns     # TF stamped with the simulated clock
