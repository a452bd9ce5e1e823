"""Time of one global window solve on real KITTI: 20 keyframes, starts of the calib protocol (+-10 deg / 0.5 m).

Prints per start the error reached and the solve's time split (grids, refinement, covariance). To compare two
versions of the estimator side by side, run this script from each checkout in turn (it imports the package of
the current directory; the machine's speed drifts, so alternate them), e.g. with
``git worktree add /tmp/before <commit>``:

    for tree in /tmp/before $PWD /tmp/before $PWD; do (cd $tree && $OLDPWD/.venv/bin/python \
        $OLDPWD/benchmarks/solve_time.py); done

To compare thread counts (``WindowConfig.threads``) give several: each start is solved with every count in
turn, the order alternating, in one process on the same keyframes, and the medians are printed side by side:

    .venv/bin/python benchmarks/solve_time.py --threads 1 2 --starts 3 --rounds 2 --json out.json

Keyframe preparation is done once, before timing.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path.cwd()))

from crossi2p_ros.data.kitti import open_dataset  # noqa: E402
from crossi2p_ros.data.perturb import CalibProtocol  # noqa: E402
from crossi2p_ros.geometry import pose_error  # noqa: E402
from crossi2p_ros.registration.calibrator import Calibrator, CalibratorConfig  # noqa: E402
from crossi2p_ros.registration.window import WindowEstimator  # noqa: E402

KITTI = Path(__file__).resolve().parents[2] / "shared" / "data" / "kitti_raw_0926"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=KITTI, help="a KITTI-layout drive (default: the shared KITTI raw)")
    ap.add_argument("--keyframes", type=int, default=20, help="keyframes, spread evenly over the drive")
    ap.add_argument("--starts", type=int, default=3, help="seeded starts of the calib protocol")
    ap.add_argument("--threads", type=int, nargs="+", default=None,
                    help="kernel thread counts to compare (default: the configured one)")
    ap.add_argument("--rounds", type=int, default=1, help="times every start is solved with each thread count")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data} is absent: pass --data with a KITTI-layout drive")
    ds = open_dataset(args.data)
    calibrator = Calibrator(CalibratorConfig(device="cpu"))
    step = max(len(ds) // args.keyframes, 1)
    frames = [ds[i] for i in range(0, len(ds), step)][: args.keyframes]
    keyframes = [calibrator.prepare(f.image, f.points, f.camera)[0] for f in frames]
    T_gt = frames[0].T_camera_lidar
    counts = args.threads or [calibrator.cfg.window.threads]
    estimators = {n: WindowEstimator(replace(calibrator.cfg.window, threads=n)) for n in counts}
    rows = []
    for k in range(args.rounds * args.starts):
        s = k % args.starts
        T0 = CalibProtocol().initial_guess(T_gt, s, 0)
        order = counts if k % 2 == 0 else counts[::-1]   # alternate, so a drift of the machine hits both
        for n in order:
            t = time.perf_counter()
            result = estimators[n].solve(keyframes, T0)
            seconds = time.perf_counter() - t
            e0, e = pose_error(T0, T_gt), pose_error(result.T_camera_lidar, T_gt)
            rows.append({"threads": n, "start": s, "start_deg": e0.rot_deg, "start_m": e0.trans_m,
                         "rot_deg": e.rot_deg, "trans_m": e.trans_m, "converged": result.converged,
                         "seconds": seconds, "timings_ms": result.timings_ms})
            print(f"threads {n}, start {e0.rot_deg:.1f} deg / {100 * e0.trans_m:.0f} cm -> {e.rot_deg:.3f} deg / "
                  f"{100 * e.trans_m:.2f} cm, converged {result.converged}: {seconds:.2f} s "
                  f"({', '.join(f'{k} {v / 1e3:.2f} s' for k, v in result.timings_ms.items() if k != 'total')})",
                  flush=True)
    medians = {n: float(np.median([r["seconds"] for r in rows if r["threads"] == n])) for n in counts}
    print("median a solve (" + f"{len(keyframes)} keyframes): "
          + ", ".join(f"{n} thread{'s' if n > 1 else ''} {m:.2f} s" for n, m in medians.items()))
    if args.json:
        args.json.write_text(json.dumps({"keyframes": len(keyframes), "median_s": medians, "solves": rows},
                                        indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
