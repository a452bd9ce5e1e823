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

``--one-at-a-time`` adds, for each thread count, the estimator refining its candidates one pose at a time (as
before 2026-12-03's lockstep refinement, ``WindowEstimator.refine_many``), solved in the same alternation.
``--set FIELD=VALUE`` (repeatable, as ``benchmarks/window.py``) adds the estimator with those ``WindowConfig``
overrides of its solve (the keyframes stay prepared with the defaults), e.g.

    .venv/bin/python benchmarks/solve_time.py --set interval_spacing=2.0 --rounds 2

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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from crossi2p_ros.data.kitti import open_dataset  # noqa: E402
from crossi2p_ros.data.perturb import CalibProtocol  # noqa: E402
from crossi2p_ros.geometry import pose_error  # noqa: E402
from crossi2p_ros.registration.calibrator import Calibrator, CalibratorConfig  # noqa: E402
from crossi2p_ros.registration.window import WindowEstimator  # noqa: E402
from window import window_config  # noqa: E402  (benchmarks/window.py's --set)


class OneAtATime(WindowEstimator):
    """The estimator with every refinement of several poses done one pose at a time (the same steps, each
    pose with its own kernel calls): the comparison for the lockstep refinement."""

    def refine_many(self, keyframes, starts, levels, T_center):
        return [super(OneAtATime, self).refine_many(keyframes, [T], levels, T_center)[0] for T in starts]

KITTI = Path(__file__).resolve().parents[2] / "shared" / "data" / "kitti_raw_0926"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=KITTI, help="a KITTI-layout drive (default: the shared KITTI raw)")
    ap.add_argument("--keyframes", type=int, default=20, help="keyframes, spread evenly over the drive")
    ap.add_argument("--starts", type=int, default=3, help="seeded starts of the calib protocol")
    ap.add_argument("--threads", type=int, nargs="+", default=None,
                    help="kernel thread counts to compare (default: the configured one)")
    ap.add_argument("--one-at-a-time", action="store_true",
                    help="also solve with the candidates refined one pose at a time (the lockstep's comparison)")
    ap.add_argument("--rounds", type=int, default=1, help="times every start is solved with each variant")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="also solve with these WindowConfig overrides (as benchmarks/window.py)")
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
    estimators = {}
    for n in counts:
        name = f"{n} thread{'s' if n > 1 else ''}"
        estimators[name] = WindowEstimator(replace(calibrator.cfg.window, threads=n))
        if args.one_at_a_time:
            estimators[f"{name}, one at a time"] = OneAtATime(replace(calibrator.cfg.window, threads=n))
        if args.set:
            estimators[f"{name}, {' '.join(args.set)}"] = WindowEstimator(replace(window_config(args.set), threads=n))
    rows = []
    for k in range(args.rounds * args.starts):
        s = k % args.starts
        T0 = CalibProtocol().initial_guess(T_gt, s, 0)
        names = list(estimators)
        order = names if k % 2 == 0 else names[::-1]   # alternate, so a drift of the machine hits both
        for n in order:
            t = time.perf_counter()
            result = estimators[n].solve(keyframes, T0)
            seconds = time.perf_counter() - t
            e0, e = pose_error(T0, T_gt), pose_error(result.T_camera_lidar, T_gt)
            rows.append({"variant": n, "threads": estimators[n].cfg.threads, "start": s, "start_deg": e0.rot_deg, "start_m": e0.trans_m,
                         "rot_deg": e.rot_deg, "trans_m": e.trans_m, "converged": result.converged,
                         "seconds": seconds, "timings_ms": result.timings_ms})
            print(f"{n}, start {e0.rot_deg:.1f} deg / {100 * e0.trans_m:.0f} cm -> {e.rot_deg:.3f} deg / "
                  f"{100 * e.trans_m:.2f} cm, converged {result.converged}: {seconds:.2f} s "
                  f"({', '.join(f'{k} {v / 1e3:.2f} s' for k, v in result.timings_ms.items() if k != 'total')})",
                  flush=True)
    medians = {n: float(np.median([r["seconds"] for r in rows if r["variant"] == n])) for n in estimators}
    print("median a solve (" + f"{len(keyframes)} keyframes): "
          + ", ".join(f"{n} {m:.2f} s" for n, m in medians.items()))
    if args.json:
        args.json.write_text(json.dumps({"keyframes": len(keyframes), "median_s": medians, "solves": rows},
                                        indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
