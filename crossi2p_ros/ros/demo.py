"""``crossi2p demo``: a synthetic drive through the real calibration node, printing the calibration converging.

1. ray-cast a synthetic drive into a ROS 2 bag (ground truth known);
2. write an initial guess: the truth knocked by 5 degrees and 20 centimetres;
3. start ``calibration_node`` as its own process (``use_sim_time``, initial guess from the file);
4. play the bag into the ROS graph with ``/clock`` (slowed down so the node's CPU keeps up);
5. print every window solve the node publishes on ``~/calibration`` (error against the truth, sigma) and every
   converged calibration it publishes on ``/tf_static``;
6. call ``~/save`` and draw the LiDAR on an image under the initial guess and the final calibration.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from ..calib_io import Calibration, read_calibration, write_all
from ..data.kitti import open_dataset
from ..data.synth import SynthConfig, generate
from ..errors import CrossI2PError
from ..geometry import invert, pose_error, se3_exp
from ..overlay import draw_projection, side_by_side


_PRINT = threading.Lock()   # the demo and the node's relayed log print from two threads


def _say(text: str) -> None:
    with _PRINT:
        print(f"[demo] {text}", flush=True)


def demo_knock(rot_deg: float, trans_m: float) -> np.ndarray:
    """A fixed knock of ``rot_deg`` about a tilted axis and ``trans_m`` along a diagonal (camera frame)."""
    axis = np.array([0.3, 0.9, 0.3]) / np.linalg.norm([0.3, 0.9, 0.3])
    shift = np.array([0.6, -0.6, 0.5]) / np.linalg.norm([0.6, -0.6, 0.5])
    return se3_exp(np.r_[trans_m * shift, np.radians(rot_deg) * axis])


def run_demo(out: Path, frames: int = 40, seed: int = 7, style: str = "urban", rate: float = 0.25,
             knock_deg: float = 5.0, knock_m: float = 0.2, device: str = "auto", timeout_s: float = 240.0) -> int:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from std_srvs.srv import Trigger
    from tf2_msgs.msg import TFMessage

    from ..decode import transform_from_tf_msg
    from ..registration.window_config import WindowConfig
    from ..registration.window_uncertainty import covariance_within
    from .messages import calibration_from_message, crossi2p_status
    from .player import play
    from .qos import RELIABLE_QOS, STATIC_TF_QOS

    out = Path(out)
    for stale in ("kitti", "demo.mcap", "calibration", "initial"):
        shutil.rmtree(out / stale, ignore_errors=True)
    cfg = SynthConfig(frames=frames, seed=seed, style=style)
    _say(f"ray-casting a {frames}-frame {style} drive (seed {seed}): 64-beam LiDAR + 1241x376 camera")
    result = generate(cfg, out / "kitti", bag_path=out / "demo.mcap", progress=True)
    T_true = result.T_camera_lidar
    T_init = demo_knock(knock_deg, knock_m) @ T_true
    initial = write_all(Calibration(T_init), out / "initial")["yaml"]
    e0 = pose_error(T_init, T_true)
    _say(f"initial guess {initial}: {e0.rot_deg:.2f} deg / {100 * e0.trans_m:.1f} cm off the truth")

    # The demo publishes a made-up /tf_static: keep it on this machine and off the user's ROS domain.
    # Domains 215-232 are off the usual 0-101 and their DDS ports (7400 + 250 * domain + ...) lie above Linux's
    # ephemeral range (32768-60999), where an outgoing socket can hold a port discovery needs (ROS 2 docs,
    # "About Domain ID"). A test run of the demo on domain 204 (old range 150-230) once ended without an estimate.
    domain = os.environ.get("CROSSI2P_DEMO_DOMAIN_ID") or str(random.SystemRandom().randint(215, 232))
    isolation = {"ROS_DOMAIN_ID": domain, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_LOCALHOST_ONLY": "1",
                 "ROS_STATIC_PEERS": ""}
    os.environ.update(isolation)
    env = dict(os.environ)
    _say(f"ROS graph: domain {domain}, localhost only (set CROSSI2P_DEMO_DOMAIN_ID to watch it with ros2 topic echo)")
    cmd = [sys.executable, "-m", "crossi2p_ros.ros.node", "--ros-args",
           "-p", f"initial_calibration:={initial}", "-p", f"output_dir:={out / 'calibration'}",
           "-p", f"device:={device}", "-p", "use_sim_time:=true", "-p", "stale_after_s:=30.0",
           # reliable: megabyte images and clouds over best-effort loopback DDS lose fragments under load
           "-p", "qos:=reliable",
           # solve from the 4th keyframe on, every 3 new ones: the first windows are too small to converge,
           # which shows what the covariance does until they are not
           "-p", "session.min_keyframes:=4", "-p", "session.solve_every:=3",
           # the bag is a 4 s drive played at half speed, so the node can take keyframes closer than its live
           # default (0.25 s) and still fill a window of 20
           "-p", "keyframes.min_interval_s:=0.05"]
    _say("starting calibration_node: " + " ".join(cmd[1:4]) + " ...")
    node_proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    node_log: list[str] = []

    def relay() -> None:   # the node's own account of each solve, interleaved with the demo's check of it
        for line in node_proc.stdout:  # type: ignore[union-attr]
            node_log.append(line)
            if "window of" in line:
                _say("node: " + line.split("]: ", 1)[-1].rstrip())

    threading.Thread(target=relay, daemon=True).start()

    rclpy.init(domain_id=int(domain))
    demo = Node("crossi2p_demo")
    solves: list[tuple[float, np.ndarray, bool]] = []     # (arrival, T_camera_lidar, converged)
    bounds = WindowConfig()                                # the node's convergence bounds (its defaults)
    published: list[np.ndarray] = []
    diagnostics: dict = {}

    def on_calibration(msg) -> None:
        T_cl, cov = calibration_from_message(msg)
        sd = np.sqrt(np.diag(cov))
        converged = covariance_within(cov, bounds.converged_rot_deg, bounds.converged_trans_m)
        solves.append((time.monotonic(), T_cl, converged))
        e = pose_error(T_cl, T_true)
        _say(f"window solve #{len(solves):2d} on ~/calibration: error {e.rot_deg:5.2f} deg / {100 * e.trans_m:5.1f} cm,"
             f" sigma {np.degrees(sd[3:].max()):.2f} deg / {100 * sd[:3].max():.1f} cm"
             f" ({'converged' if converged else 'converging'})")

    def on_tf(msg) -> None:
        for parent, child, T in transform_from_tf_msg(msg):
            if parent == "lidar" and child.endswith("_calibrated"):
                published.append(invert(T))
                e = pose_error(published[-1], T_true)
                _say(f"  -> /tf_static {parent} -> {child}: error {e.rot_deg:.2f} deg / {100 * e.trans_m:.1f} cm")

    def on_diag(msg) -> None:
        status = crossi2p_status(msg)
        if status is not None:
            diagnostics.clear()
            diagnostics.update(status)

    demo.create_subscription(PoseWithCovarianceStamped, "/crossi2p_calibration/calibration", on_calibration,
                             RELIABLE_QOS)
    demo.create_subscription(TFMessage, "/tf_static", on_tf, STATIC_TF_QOS)
    demo.create_subscription(DiagnosticArray, "/diagnostics", on_diag, RELIABLE_QOS)
    save = demo.create_client(Trigger, "/crossi2p_calibration/save")
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(demo)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        deadline = time.monotonic() + 120.0
        while "_message" not in diagnostics:
            if node_proc.poll() is not None or time.monotonic() > deadline:
                raise CrossI2PError("calibration_node did not come up:\n" + "".join(node_log[-20:]))
            time.sleep(0.2)
        _say(f"node up ({diagnostics.get('device')}): {diagnostics['_message']}")
        _say(f"playing {out / 'demo.mcap'} at {rate}x with /clock (the truth on /tf_static is not played)")
        n = play(demo, out / "demo.mcap", rate=rate, exclude=["/tf_static"], wait_for_subscribers_s=5.0)
        _say(f"played {n} messages; waiting for the node to solve the keyframes it took")

        def settled() -> bool:
            """Every pair taken is prepared, and no solve came for 2 diagnostics periods after a converged one."""
            d = dict(diagnostics)
            taken = int(d.get("pairs_received", 0)) - int(d.get("pairs_dropped_busy", 0)) \
                - int(d.get("pairs_without_camera_info", 0))
            quiet = bool(solves) and time.monotonic() - solves[-1][0] > 6.0
            return int(d.get("pairs_prepared", 0)) >= taken and quiet and (solves[-1][2] or
                                                                             time.monotonic() - solves[-1][0] > 30)

        settle = time.monotonic() + timeout_s
        while time.monotonic() < settle and not settled():
            time.sleep(0.5)
        if not save.wait_for_service(timeout_sec=10.0):
            raise CrossI2PError("the node's ~/save service did not appear")
        response = save.call_async(Trigger.Request())
        t_end = time.monotonic() + 20.0
        while not response.done() and time.monotonic() < t_end:
            time.sleep(0.1)
        reply = response.result()
        _say(f"~/save: {reply.message if reply else 'no answer'}")
        _say(f"node diagnostics: {diagnostics.get('_message', '?')} (pairs {diagnostics.get('pairs_received')}, "
             f"prepared {diagnostics.get('pairs_prepared')}, keyframes {diagnostics.get('keyframes')}, skipped "
             f"without change {diagnostics.get('skipped_no_change')} / too soon {diagnostics.get('skipped_too_soon')}, "
             f"dropped while busy "
             f"{diagnostics.get('pairs_dropped_busy')}, bad messages {diagnostics.get('bad_messages')})")
        ok = False
        if reply is not None and reply.success:
            final = read_calibration(Path(reply.message)).T_camera_lidar
            e = pose_error(final, T_true)
            ok = e.rot_deg < e0.rot_deg and e.trans_m < e0.trans_m
            _say(f"final: {e.rot_deg:.2f} deg / {100 * e.trans_m:.1f} cm off the truth "
                 f"(initial {e0.rot_deg:.2f} deg / {100 * e0.trans_m:.1f} cm)")
            frame = open_dataset(out / "kitti")[0]
            image = side_by_side([draw_projection(frame.image, frame.points, T_init, frame.camera),
                                  draw_projection(frame.image, frame.points, final, frame.camera)],
                                 [f"initial guess ({e0.rot_deg:.1f} deg, {100 * e0.trans_m:.0f} cm off)",
                                  f"after the node ({e.rot_deg:.2f} deg, {100 * e.trans_m:.1f} cm off)"])
            cv2.imwrite(str(out / "overlay.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            _say(f"overlay: {out / 'overlay.png'}; calibration files: {out / 'calibration'}")
        else:
            _say("the node did not converge; its log:\n" + "".join(node_log[-30:]))
        return 0 if ok else 1
    finally:
        executor.shutdown(timeout_sec=2.0)
        demo.destroy_node()
        rclpy.try_shutdown()
        if node_proc.poll() is None:
            node_proc.send_signal(signal.SIGINT)
            try:
                node_proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                node_proc.kill()
