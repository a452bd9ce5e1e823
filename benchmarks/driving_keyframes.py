"""Which keyframes while driving: the newest ones against the ones whose speeds differ (``diverse_speeds``).

With the camera's time offset free, only speed changes tell it from a lever arm along the travel
(``registration/time_offset.py``), so a window of the newest keyframes of a steady stretch cannot pin it.
A synthetic drive with time in it (as ``benchmarks/driving.py``: 10-20 m/s over ``--period`` s, sweeps cast
over 100 ms, the camera 20 ms after its stamp) is streamed into two ``KeyframeWindow`` s of ``--window``, one
keyframe offered every ``--every`` frames (the node's ``min_interval_s``), the same prepared keyframes into
both; at each ``--checkpoints`` time both windows are solved from the same +-5 deg / 0.2 m start.

    .venv/bin/python benchmarks/driving_keyframes.py --json docs/results/driving_keyframes.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crossi2p_ros.data.perturb import CalibProtocol  # noqa: E402
from crossi2p_ros.data.synth import SynthConfig, SynthSequence  # noqa: E402
from crossi2p_ros.evaluation import write_json  # noqa: E402
from crossi2p_ros.geometry import pose_error, within_sigma  # noqa: E402
from crossi2p_ros.registration.deskew import SweepTiming, sweep_twist  # noqa: E402
from crossi2p_ros.registration.inputs import undistorted, valid_region  # noqa: E402
from crossi2p_ros.registration.keyframe import prepare_keyframe  # noqa: E402
from crossi2p_ros.registration.keyframe_window import KeyframeConfig, KeyframeWindow  # noqa: E402
from crossi2p_ros.registration.window import WindowEstimator  # noqa: E402
from crossi2p_ros.registration.window_config import WindowConfig  # noqa: E402

SEED = 9720   # held out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--drives", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=12.0, help="drive length (default %(default)s)")
    ap.add_argument("--period", type=float, default=8.0, help="period of the speed swing [s] (default %(default)s)")
    ap.add_argument("--every", type=int, default=3, help="frames between keyframes offered (default %(default)s)")
    ap.add_argument("--window", type=int, default=20, help="keyframes held (default %(default)s)")
    ap.add_argument("--checkpoints", type=float, nargs="+", default=[6.0, 9.0, 12.0])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    protocol = CalibProtocol(max_rot_deg=5.0, max_trans_m=0.2)
    estimator = WindowEstimator()
    rows = []
    for d in range(args.drives):
        seed = SEED + d
        frames = int(round(args.seconds * 10)) + 2
        seq = SynthSequence(SynthConfig(frames=frames, seed=seed, style="urban", speed_mps=(15.0, 15.0),
                                        speed_change_mps=5.0, speed_change_period_s=args.period, sweep_s=0.1,
                                        camera_offset_s=0.02))
        windows = {name: KeyframeWindow(KeyframeConfig(size=args.window, min_interval_s=0.0, min_change=0.0,
                                                       diverse_speeds=name == "diverse"))
                   for name in ("newest", "diverse")}
        valid, twist = valid_region(seq.camera), None
        T_gt = seq.T_camera_lidar
        T_init = protocol.initial_guess(T_gt, seed, 0)
        checkpoints = sorted(args.checkpoints)
        look = np.zeros((8, 8), np.float32)
        for i in tqdm(range(0, frames - 1, args.every), desc=f"drive {seed}", unit="keyframe"):
            f = seq.frame(i)
            found = sweep_twist(f.points, seq.sweep(i + 1)[0], 0.1, guess=twist)
            twist = twist if found is None else found
            img, cam = undistorted(f.image, f.camera)
            kf = prepare_keyframe(img, f.points, cam, WindowConfig(), valid=valid, motion=False, stamp=f.time_s,
                                  timing=SweepTiming(f.point_times_s, twist, f.camera_time_offset_s))
            for w in windows.values():
                w.offer(kf, look)
            while checkpoints and f.time_s + 1e-9 >= checkpoints[0] - 0.1 * args.every:
                t_check = checkpoints.pop(0)
                for name, w in windows.items():
                    t0 = time.perf_counter()
                    e = estimator.solve(w.keyframes, T_init)
                    err = pose_error(e.T_camera_lidar, T_gt)
                    speeds = [float(np.linalg.norm(k.twist[:3])) for k in w.keyframes]
                    row = {"seed": seed, "t_s": t_check, "selection": name, "rot_deg": err.rot_deg,
                           "trans_m": err.trans_m, "converged": bool(e.converged),
                           "within_3sigma": within_sigma(e.T_camera_lidar, e.covariance, T_gt),
                           "sigma_trans_m": float(np.max(e.sigma_m)),
                           "time_offset_ms": None if e.time_offset_s is None else 1e3 * e.time_offset_s,
                           "time_offset_sigma_ms": None if e.time_offset_sigma_s is None
                           or not np.isfinite(e.time_offset_sigma_s) else 1e3 * e.time_offset_sigma_s,
                           "speed_range_mps": [min(speeds), max(speeds)], "solve_ms": 1e3 * (time.perf_counter() - t0)}
                    rows.append(row)
                    off = "-" if row["time_offset_ms"] is None else f"{row['time_offset_ms']:.1f}"
                    sig = "-" if row["time_offset_sigma_ms"] is None else f"{row['time_offset_sigma_ms']:.1f}"
                    print(f"seed {seed} t {t_check:4.1f} s {name:7s} speeds {min(speeds):4.1f}-{max(speeds):4.1f} "
                          f"m/s: {err.rot_deg:.3f} deg {100 * err.trans_m:5.2f} cm conv={int(e.converged)} "
                          f"3sigma={int(row['within_3sigma'])} offset {off} ms (sigma {sig})", flush=True)
    summary = {}
    for name in ("newest", "diverse"):
        sel = [r for r in rows if r["selection"] == name]
        summary[name] = {"solves": len(sel), "trans_m_median": float(np.median([r["trans_m"] for r in sel])),
                         "rot_deg_median": float(np.median([r["rot_deg"] for r in sel])),
                         "converged": int(sum(r["converged"] for r in sel)),
                         "false_convergences": int(sum(r["converged"] and not r["within_3sigma"] for r in sel)),
                         "offset_sigma_ms_median": float(np.median([r["time_offset_sigma_ms"] for r in sel
                                                                    if r["time_offset_sigma_ms"] is not None] or [np.nan]))}
        s = summary[name]
        print(f"{name:7s} median {s['rot_deg_median']:.3f} deg / {100 * s['trans_m_median']:.2f} cm, converged "
              f"{s['converged']}/{s['solves']}, false {s['false_convergences']}, offset sigma median "
              f"{s['offset_sigma_ms_median']:.1f} ms")
    if args.json:
        write_json(args.json, {"args": {k: v for k, v in vars(args).items() if k != "json"}, "summary": summary,
                               "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
