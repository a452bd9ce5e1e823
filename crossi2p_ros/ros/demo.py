"""``crossi2p demo``: a synthetic drive through the real calibration node, printing the calibration converging.

1. ray-cast a synthetic drive into a ROS 2 bag (ground truth known);
2. write an initial guess: the truth knocked by a few degrees and centimetres;
3. start ``calibration_node`` as its own process (``use_sim_time``, initial guess from the file);
4. play the bag into the ROS graph with ``/clock`` (slowed down: a CPU needs ~1-2 s per estimate);
5. print every fused extrinsic the node publishes on ``/tf_static`` with its error against the truth;
6. call ``~/save`` and draw the LiDAR on an image under the initial guess and the final estimate.
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


def _say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def run_demo(out: Path, frames: int = 20, seed: int = 7, style: str = "urban", rate: float = 0.1,
             knock_deg: float = 2.0, knock_m: float = 0.05, device: str = "auto", timeout_s: float = 240.0) -> int:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from std_srvs.srv import Trigger
    from tf2_msgs.msg import TFMessage

    from ..decode import transform_from_tf_msg
    from .node import STATIC_TF_QOS, RELIABLE_QOS
    from .player import play

    out = Path(out)
    for stale in ("kitti", "demo.mcap", "calibration", "initial"):
        shutil.rmtree(out / stale, ignore_errors=True)
    cfg = SynthConfig(frames=frames, seed=seed, style=style)
    _say(f"ray-casting a {frames}-frame {style} drive (seed {seed}): 64-beam LiDAR + 1241x376 camera")
    result = generate(cfg, out / "kitti", bag_path=out / "demo.mcap", progress=True)
    T_true = result.T_camera_lidar
    knock = se3_exp(np.array([knock_m, 0.0, 0.0, 0.0, np.radians(knock_deg), 0.0]))
    T_init = knock @ T_true
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
           "-p", "qos:=reliable"]
    _say("starting calibration_node: " + " ".join(cmd[1:4]) + " ...")
    node_proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    node_log: list[str] = []
    threading.Thread(target=lambda: [node_log.append(line) for line in node_proc.stdout], daemon=True).start()

    rclpy.init(domain_id=int(domain))
    demo = Node("crossi2p_demo")
    updates: list[tuple[float, np.ndarray]] = []
    diagnostics: dict = {}

    def on_tf(msg) -> None:
        for parent, child, T in transform_from_tf_msg(msg):
            if (parent, child) == ("lidar", "camera_optical"):
                T_cl = invert(T)
                updates.append((time.monotonic(), T_cl))
                e = pose_error(T_cl, T_true)
                _say(f"fused extrinsic #{len(updates):2d} on /tf_static: error {e.rot_deg:.2f} deg / "
                     f"{100 * e.trans_m:.1f} cm (initial {e0.rot_deg:.2f} deg / {100 * e0.trans_m:.1f} cm)")

    def on_diag(msg) -> None:
        for st in msg.status:
            if st.name.startswith("crossi2p:"):
                diagnostics.clear()
                diagnostics.update({kv.key: kv.value for kv in st.values})
                diagnostics["_level"] = st.level
                diagnostics["_message"] = st.message

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
        _say(f"played {n} messages; waiting for the node to finish the pairs it took")

        def idle() -> bool:
            d = dict(diagnostics)
            taken = int(d.get("pairs_received", 0)) - int(d.get("pairs_dropped_busy", 0)) \
                - int(d.get("pairs_without_camera_info", 0))
            return int(d.get("pairs_processed", 0)) >= taken

        # idle in two diagnostics periods in a row: the counts include the last pair and nothing is in flight
        settle, streak = time.monotonic() + timeout_s, 0
        while time.monotonic() < settle and streak < 2:
            time.sleep(1.1)
            streak = streak + 1 if idle() else 0
        if not save.wait_for_service(timeout_sec=10.0):
            raise CrossI2PError("the node's ~/save service did not appear")
        response = save.call_async(Trigger.Request())
        t_end = time.monotonic() + 20.0
        while not response.done() and time.monotonic() < t_end:
            time.sleep(0.1)
        reply = response.result()
        _say(f"~/save: {reply.message if reply else 'no answer'}")
        _say(f"node diagnostics: {diagnostics.get('_message', '?')} (pairs {diagnostics.get('pairs_received')}, "
             f"processed {diagnostics.get('pairs_processed')}, before any CameraInfo "
             f"{diagnostics.get('pairs_without_camera_info')}, dropped while busy "
             f"{diagnostics.get('pairs_dropped_busy')}, bad messages {diagnostics.get('bad_messages')}; received images "
             f"{diagnostics.get('images_received')}, clouds {diagnostics.get('clouds_received')}, unpaired "
             f"{diagnostics.get('messages_unpaired')})")
        if reply is not None and reply.success:
            final = read_calibration(Path(reply.message)).T_camera_lidar
            e = pose_error(final, T_true)
            _say(f"final: {e.rot_deg:.2f} deg / {100 * e.trans_m:.1f} cm off the truth "
                 f"(initial {e0.rot_deg:.2f} deg / {100 * e0.trans_m:.1f} cm)")
            frame = open_dataset(out / "kitti")[0]
            image = side_by_side([draw_projection(frame.image, frame.points, T_init, frame.camera),
                                  draw_projection(frame.image, frame.points, final, frame.camera)],
                                 [f"initial guess ({e0.rot_deg:.1f} deg, {100 * e0.trans_m:.0f} cm off)",
                                  f"after the node ({e.rot_deg:.2f} deg, {100 * e.trans_m:.1f} cm off)"])
            cv2.imwrite(str(out / "overlay.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            _say(f"overlay: {out / 'overlay.png'}; calibration files: {out / 'calibration'}")
        if not updates:
            _say("the node published no estimate; its log:\n" + "".join(node_log[-30:]))
        return 0 if updates else 1
    finally:
        executor.shutdown(timeout_sec=2.0)
        demo.destroy_node()
        rclpy.try_shutdown()
        if node_proc.poll() is None:
            node_proc.send_signal(signal.SIGINT)
            try:
                node_proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                node_proc.kill()
