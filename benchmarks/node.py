"""The calibration node as a vehicle runs it: a drive published at 10 Hz over loopback DDS, the node in its own process.

For each case a tester node publishes Image + CameraInfo + PointCloud2 at
``--rate`` Hz (stamped with the wall clock, as live drivers do; the frames of
the drive looped with increasing stamps for ``--seconds``) to
``calibration_node`` started as ``python -m crossi2p_ros.ros.node`` with the
shipped weights on the CPU, and records every ``~/calibration`` message:

* the error against the truth over time, and the time of data after which it
  stays below the case's target;
* the fraction of ``~/calibration`` messages after the first 10 s whose 3-sigma
  box (the published ROS covariance) holds the truth;
* the node's ``pair_age_at_handover_ms`` (newest stamp -> pair handed to the
  preparer: DDS transport and the callbacks) from its diagnostics, and the drops.

Cases: ``prior`` (5 deg / 20 cm off, the demo's knock, as ``initial_calibration``),
``no_prior`` (the global path), ``kitti`` (``../shared/data/kitti_raw_0926``
from 3 deg / 10 cm, if present) and ``driving`` (a drive at 10-20 m/s whose sweeps
are cast over 100 ms while it moves, published with Ouster's per-point ``t``
field, the camera stamped mid-sweep and exposed 20 ms after its stamp; from the
demo's knock: the node motion-compensates and estimates the offset). With
``--tf-odometry`` the tester also publishes the vehicle's motion as a robot
does, ``odom -> base_link`` on ``/tf`` at 100 Hz (continuous across the loops
of the drive) and ``base_link -> lidar`` on ``/tf_static``, and stamps the
drive's messages at their planned times so that the odometry matches them:
the node takes each sweep's twist from ``/tf`` instead of registering sweeps.

``--cameras N`` (case ``prior``): N cameras on the one LiDAR (``synth.camera_rig``:
ahead, then turned 60 deg left, right, 120 deg left, right, and behind), one
node with ``cameras: [...]``, every camera's images at ``--rate``; each
camera's time to target, and the node process's CPU time per second of data
(``/proc``), from which the CPU time an added camera costs. ``--separate-nodes``
runs the same cameras with a node each too (what one would do without the
``cameras`` parameter), for comparison.

    .venv/bin/python benchmarks/node.py --json docs/results/node.json
    .venv/bin/python benchmarks/node.py --cases prior --cameras 1 2 6 --seconds 60 --json docs/results/node_cameras.json
    .venv/bin/python benchmarks/node.py --cases driving --tf-odometry --json docs/results/node_driving_tf.json
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crossi2p_ros.calib_io import Calibration, write_all  # noqa: E402
from crossi2p_ros.evaluation import write_json  # noqa: E402
from crossi2p_ros.geometry import invert, pose_error  # noqa: E402
from crossi2p_ros.ros.demo import demo_knock  # noqa: E402

KITTI_RAW = ROOT.parent / "shared" / "data" / "kitti_raw_0926"
TARGETS = {"prior": (0.2, 0.02), "no_prior": (0.5, 0.05), "kitti": (0.3, 0.03), "driving": (0.2, 0.02)}
# --cameras N: the first N of these, turned this far left of ahead [deg]
CAMERA_HEADINGS = {"front": 0.0, "front_left": 60.0, "front_right": -60.0, "rear_left": 120.0, "rear_right": -120.0,
                   "rear": 180.0}


def _frames(case: str, seed: int, n: int, cameras: int = 1) -> tuple[list[tuple[str, list]], object]:
    """(camera name, frames) of each camera, a single camera named ``camera`` (the node's default), and the first
    camera's synthetic sequence (None for real data)."""
    if case == "kitti":
        from crossi2p_ros.data.kitti import open_dataset

        ds = open_dataset(KITTI_RAW)
        return [("camera", [ds[i] for i in range(len(ds))])], None
    from crossi2p_ros.data.synth import SynthConfig, camera_rig

    timed = {"speed_mps": (15.0, 15.0), "speed_change_mps": 5.0, "speed_change_period_s": 6.0, "sweep_s": 0.1,
             "camera_offset_s": 0.02} if case == "driving" else {}
    names = ["camera"] if cameras == 1 else list(CAMERA_HEADINGS)[:cameras]
    rig = camera_rig(SynthConfig(frames=n, seed=seed, style="urban", **timed),
                     [CAMERA_HEADINGS.get(name, 0.0) for name in names])
    return [(name, list(seq)) for name, seq in zip(names, rig)], rig[0]


class _Odometry:
    """The drive's vehicle pose ``T_odom_base_link`` at any time of the looped drive, continuous across loops
    (each loop starts where the last one ended), as a robot's odometry would be."""

    def __init__(self, seq, frames: int, rate: float):
        self.pose = lambda t: seq.trajectory.T_world_vehicle(seq.scene, t)   # noqa: E731
        self.period = frames / rate
        self.T_loop = self.pose(self.period) @ invert(self.pose(0.0))
        self.T_base_lidar = seq.rig.T_vehicle_lidar

    def at(self, t: float) -> np.ndarray:
        loops = int(t // self.period)
        return np.linalg.matrix_power(self.T_loop, loops) @ self.pose(t - loops * self.period)


def _converged(msg) -> bool:
    """The node's convergence test on a ~/calibration message: the largest eigenvalue of the covariance's
    translation block below (2 cm)^2 and of its rotation block below (0.2 deg)^2 (window.converged_*)."""
    from crossi2p_ros.registration.window_config import WindowConfig
    from crossi2p_ros.registration.window_uncertainty import covariance_within

    cfg = WindowConfig()   # ROS orders the covariance (x, y, z, rot): translation block first, as ours
    return covariance_within(np.asarray(msg.pose.covariance).reshape(6, 6), cfg.converged_rot_deg,
                             cfg.converged_trans_m)


def _cpu_s(pid: int) -> float:
    """User + system CPU time [s] of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _covers(msg, T_true: np.ndarray, T_cl: np.ndarray) -> bool:
    from scipy.spatial.transform import Rotation

    T_lc, T_lc_true = invert(T_cl), invert(T_true)
    d = np.r_[T_lc_true[:3, 3] - T_lc[:3, 3], Rotation.from_matrix(T_lc_true[:3, :3] @ T_lc[:3, :3].T).as_rotvec()]
    sd = np.sqrt(np.maximum(np.diag(np.asarray(msg.pose.covariance).reshape(6, 6)), 0.0))
    return bool(np.all(np.abs(d) <= 3.0 * sd))


def run_case(case: str, rig: list[tuple[str, list]], seconds: float, rate: float, tmp: Path, domain: int,
             extra: tuple[str, ...] = (), separate: bool = False, odometry: _Odometry | None = None) -> dict:
    """One run; ``separate``: a node per camera (each in its own namespace, ``/<name>/crossi2p_calibration``)
    instead of one node for all, to compare the two; ``odometry``: the vehicle's motion also on /tf."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from tf2_msgs.msg import TFMessage

    from crossi2p_ros.ros.messages import calibration_from_message, sensor_messages, tf_message, time_msg
    from crossi2p_ros.ros.qos import RELIABLE_QOS, STATIC_TF_QOS, TF_QOS

    names = [name for name, _ in rig]
    several = len(names) > 1
    truth = {name: frames[0].T_camera_lidar for name, frames in rig}
    params = ["-p", "device:=cpu", "-p", "qos:=reliable", "-p", "stale_after_s:=30.0"]
    params += [arg for p in extra for arg in ("-p", p)]
    T_init: dict[str, np.ndarray] = {}
    if case in ("prior", "kitti", "driving"):
        for name in names:
            T_init[name] = (demo_knock(3.0, 0.1) if case == "kitti" else demo_knock(5.0, 0.2)) @ truth[name]
            write_all(Calibration(T_init[name]), tmp / f"{case}_{name}")
        params += ["-p", f"initial_calibration:={tmp / (case + '_{camera}') / 'calibration.yaml'}"]
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
           "ROS_LOCALHOST_ONLY": "1"}
    groups = [[name] for name in names] if separate else [names]
    procs = [subprocess.Popen([sys.executable, "-m", "crossi2p_ros.ros.node", "--ros-args", *params,
                               "-p", f"cameras:=[{', '.join(group)}]"] + (["-r", f"__ns:=/{group[0]}"] if separate else []),
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for group in groups]
    log: list[str] = []
    for proc in procs:
        threading.Thread(target=lambda proc=proc: [log.append(line) for line in proc.stdout], daemon=True).start()
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    tester = Node("crossi2p_node_benchmark", context=context)
    got: dict[str, list[tuple[float, object]]] = {name: [] for name in names}
    diag: dict[str, dict] = {}
    for name in names:
        topic = f"/{name}/crossi2p_calibration/calibration" if separate else \
            f"/crossi2p_calibration/{name + '/' if several else ''}calibration"
        tester.create_subscription(PoseWithCovarianceStamped, topic,
                                   lambda m, name=name: got[name].append((time.monotonic(), m)), RELIABLE_QOS)

    def on_diag(msg) -> None:
        for st in msg.status:
            if st.name.startswith("crossi2p"):
                values = {kv.key: kv.value for kv in st.values}
                diag[values.get("camera", "camera")] = {**values, "_message": st.message}

    tester.create_subscription(DiagnosticArray, "/diagnostics", on_diag, RELIABLE_QOS)
    pubs = {name: [tester.create_publisher(t, topic, RELIABLE_QOS) for t, topic in
                   ((Image, f"/{name}/image_raw"), (CameraInfo, f"/{name}/camera_info"))] for name in names}
    cloud_pub = tester.create_publisher(PointCloud2, "/lidar/points", RELIABLE_QOS)
    tf_pub = tester.create_publisher(TFMessage, "/tf", TF_QOS) if odometry else None
    static_pub = tester.create_publisher(TFMessage, "/tf_static", STATIC_TF_QOS) if odometry else None
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(tester)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        deadline = time.monotonic() + 120
        while not (len(diag) == len(names) and cloud_pub.get_subscription_count() > 0
                   and all(p.get_subscription_count() > 0 for pair in pubs.values() for p in pair)):
            if time.monotonic() > deadline or any(proc.poll() is not None for proc in procs):
                raise RuntimeError("calibration_node did not come up:\n" + "".join(log[-20:]))
            time.sleep(0.2)
        # messages prepared once (the publisher's own cost is not the node's)
        # (a timed drive's clouds with each point's time, its camera stamped its own offset from the cloud)
        msgs = {name: [sensor_messages(f.image, f.camera, f.points, time_msg(0), camera_frame=f"{name}_optical",
                                       times_s=getattr(f, "point_times_s", None) if case == "driving" else None)
                       for f in frames] for name, frames in rig}
        first = rig[0][1]
        camera_ns = [round(getattr(f, "camera_time_offset_s", 0.0) * 1e9) if case == "driving" else 0 for f in first]
        cpu0, start = sum(_cpu_s(proc.pid) for proc in procs), time.monotonic()
        start_ns = time.time_ns()
        if odometry is not None:
            static_pub.publish(tf_message(odometry.T_base_lidar, "base_link", "lidar", time_msg(start_ns)))
        k = 0
        while time.monotonic() - start < seconds:
            target = start + k / rate
            if time.monotonic() < target:
                time.sleep(target - time.monotonic())
            now_ns = time.time_ns()
            i = k % len(first)
            if odometry is not None:
                # stamps on a 100 Hz grid the odometry shares. A live sweep is published a sweep after its stamp
                # (drivers stamp its start), when odometry has passed the next sweep's stamp; here each frame is
                # published at its stamp, so the odometry goes out a frame ahead (through the next-but-one stamp)
                step_ns = round(1e9 / rate / 10)
                now_ns = start_ns + 10 * k * step_ns
                for j in range(0 if k == 0 else 11, 21):
                    t_ns = (10 * k + j) * step_ns
                    tf_pub.publish(tf_message(odometry.at(t_ns * 1e-9), "odom", "base_link",
                                              time_msg(start_ns + t_ns)))
            for name in names:
                img, info, cloud = msgs[name][i]
                img.header.stamp = info.header.stamp = time_msg(now_ns + camera_ns[i])
                pubs[name][1].publish(info)
                pubs[name][0].publish(img)
            cloud = msgs[names[0]][i][2]
            cloud.header.stamp = time_msg(now_ns)
            cloud_pub.publish(cloud)
            k += 1
        cpu_per_s = (sum(_cpu_s(proc.pid) for proc in procs) - cpu0) / (time.monotonic() - start)
        time.sleep(3.0)
    finally:
        rc = []
        for proc in procs:
            proc.send_signal(2)
        for proc in procs:
            try:
                rc.append(proc.wait(timeout=30))
            except subprocess.TimeoutExpired:
                proc.kill()
                rc.append(None)
        rc = rc[0] if len(rc) == 1 else rc
        executor.shutdown(timeout_sec=2.0)
        tester.destroy_node()
        rclpy.try_shutdown(context=context)

    rot_target, trans_target = TARGETS[case]
    per_camera = {}
    for name in names:
        rows = []
        for arrival, m in got[name]:
            T_cl, _ = calibration_from_message(m)
            e = pose_error(T_cl, truth[name])
            rows.append({"t_s": arrival - start, "rot_deg": e.rot_deg, "trans_m": e.trans_m,
                         "covers_3sigma": _covers(m, truth[name], T_cl), "converged": _converged(m)})
        ok = [r["rot_deg"] < rot_target and r["trans_m"] < trans_target for r in rows]
        # the data time after which every published solve stays within the target
        reached = next((rows[i]["t_s"] for i in range(len(rows)) if all(ok[i:])), None)
        late = [r for r in rows if r["t_s"] > 10.0]
        converged_at = next((r["t_s"] for r in rows if r["converged"]), None)
        false_convergences = sum(r["converged"] and not r["covers_3sigma"] for r in rows)
        d = diag.get(name, {})
        init = T_init.get(name)
        per_camera[name] = {
            "initial_error": None if init is None else {"rot_deg": pose_error(init, truth[name]).rot_deg,
                                                        "trans_m": pose_error(init, truth[name]).trans_m},
            "solves": len(rows), "time_to_target_s": reached, "time_to_converged_s": converged_at,
            "false_convergences": false_convergences, "final": rows[-1] if rows else None,
            "coverage_3sigma_after_10s": (float(np.mean([r["covers_3sigma"] for r in late])) if late else None),
            "pair_age_at_handover_ms": d.get("pair_age_at_handover_ms"), "pairs_received": d.get("pairs_received"),
            "pairs_prepared": d.get("pairs_prepared"), "pairs_dropped_busy": d.get("pairs_dropped_busy"),
            "keyframes": d.get("keyframes"), "node_message": d.get("_message"),
            "time_offset_ms": d.get("time_offset_ms"), "time_offset_sigma_ms": d.get("time_offset_sigma_ms"),
            "sweeps_shared": d.get("sweeps_shared"), "twists_from_tf": d.get("twists_from_tf"),
            "twists_from_lidar": d.get("twists_from_lidar"), "solve_log": rows,
        }
        c, f = per_camera[name], per_camera[name]["final"]
        print(f"{case:9s} {name:11s} {k} pairs in {seconds:.0f} s: {len(rows)} solves; target {rot_target} deg / "
              f"{100 * trans_target:.0f} cm reached after {reached if reached is None else round(reached, 1)} s; "
              f"converged after {converged_at if converged_at is None else round(converged_at, 1)} s "
              f"({false_convergences} false); "
              f"final {f['rot_deg']:.2f} deg / {100 * f['trans_m']:.1f} cm; 3-sigma coverage after 10 s "
              f"{c['coverage_3sigma_after_10s']}; pair age at hand-over {c['pair_age_at_handover_ms']} ms; "
              f"prepared {c['pairs_prepared']}, dropped {c['pairs_dropped_busy']}; time offset {c['time_offset_ms']} "
              f"ms (sigma {c['time_offset_sigma_ms']}); twists from /tf {c['twists_from_tf']}, from registration "
              f"{c['twists_from_lidar']}" if f else f"{case} {name}: no solve", flush=True)
    print(f"{case:9s} {len(names)} camera(s), {'a node each' if separate else 'one node'}: node CPU {cpu_per_s:.2f} s "
          f"per s of data; exit {rc}", flush=True)
    result = {"case": case, "cameras": names, "nodes": len(procs), "published_pairs": k, "seconds": seconds,
              "rate_hz": rate,
              "target": {"rot_deg": rot_target, "trans_m": trans_target}, "node_cpu_s_per_s": cpu_per_s,
              "node_exit_status": rc, "per_camera": per_camera}
    if not several:   # the single-camera fields at the top level, as before
        result.update({k: v for k, v in per_camera[names[0]].items()})
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=["prior", "no_prior", "kitti"], choices=list(TARGETS))
    ap.add_argument("--seconds", type=float, default=None, help="data per case (default: 30 prior, 60 others)")
    ap.add_argument("--rate", type=float, default=10.0, help="pairs per second (default %(default)s)")
    ap.add_argument("--frames", type=int, default=60, help="frames of the synthetic drive, looped")
    ap.add_argument("--seed", type=int, default=9950)
    ap.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                    help="a node parameter for every case, e.g. motion_proposal:=false (repeatable)")
    ap.add_argument("--cameras", type=int, nargs="+", default=[1], choices=range(1, len(CAMERA_HEADINGS) + 1),
                    metavar="N", help="cameras on the LiDAR, one run per count (1-6; default 1)")
    ap.add_argument("--separate-nodes", action="store_true",
                    help="with --cameras N > 1 also run a node per camera, to compare with one node for all")
    ap.add_argument("--tf-odometry", action="store_true",
                    help="case driving: also publish the vehicle's odometry on /tf (odom -> base_link, 100 Hz)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    results = {"device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
               "params": list(args.param), "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for i, case in enumerate(args.cases):
            if case == "kitti" and not KITTI_RAW.is_dir():
                print(f"kitti: skipped ({KITTI_RAW} not present)")
                continue
            for j, cameras in enumerate(args.cameras if case != "kitti" else [1]):
                rig, seq = _frames(case, args.seed, args.frames, cameras)
                seconds = args.seconds or (30.0 if case == "prior" else 60.0)
                key = case if cameras == 1 else f"{case}_{cameras}_cameras"
                odometry = _Odometry(seq, len(rig[0][1]), args.rate) if args.tf_odometry and case == "driving" \
                    else None
                key += "_tf_odometry" if odometry else ""
                results["cases"][key] = run_case(case, rig, seconds, args.rate, Path(tmp), 225 + 10 * i + j,
                                                 tuple(args.param), odometry=odometry)
                if args.separate_nodes and cameras > 1:
                    results["cases"][key + "_a_node_each"] = run_case(case, rig, seconds, args.rate, Path(tmp),
                                                                       180 + 10 * i + j, tuple(args.param), True)
        cpu = {len(r["cameras"]): r["node_cpu_s_per_s"] for r in results["cases"].values()
               if r["case"] == "prior" and r["nodes"] == 1}
        if 1 in cpu and len(cpu) > 1:
            results["cpu_s_per_s_per_added_camera"] = {n: (c - cpu[1]) / (n - 1) for n, c in cpu.items() if n > 1}
            print("node CPU per added camera [s per s of data]:", results["cpu_s_per_s_per_added_camera"])
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
