"""Convergence with window size: the error of the window estimate against the number of keyframes.

For each held-out synthetic sequence (benchmarks/window.py's seeds) and the
real ``../shared/data/kitti_raw_0926`` when present, windows of k keyframes
spread evenly over the 40 frames (k = 1, 2, 5, 10, 20) are solved from the
same seeded ±5° / 0.2 m starts; it prints the median error per k, plots
error against k (``--plot``) and writes the figures (``--json``).

    .venv/bin/python benchmarks/window_convergence.py --plot docs/results/window_convergence.png \
        --json docs/results/window_convergence.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from crossi2p_ros.data.kitti import open_dataset  # noqa: E402
from crossi2p_ros.data.perturb import CalibProtocol  # noqa: E402
from crossi2p_ros.evaluation import write_json  # noqa: E402
from crossi2p_ros.geometry import pose_error  # noqa: E402
from crossi2p_ros.registration.calibrator import Calibrator, CalibratorConfig  # noqa: E402
from window import HELD_OUT, SHARED, synthetic  # noqa: E402

SIZES = (1, 2, 5, 10, 20)


def curve(calibrator: Calibrator, ds, starts: int) -> dict:
    T_gt = ds[0].T_camera_lidar
    keyframes = [calibrator.prepare(f.image, f.points, f.camera)[0] for f in ds]
    proto = CalibProtocol(max_rot_deg=5.0, max_trans_m=0.2)
    out = {}
    for k in SIZES:
        chosen = [keyframes[i] for i in np.linspace(0, len(keyframes) - 1, k).round().astype(int)]
        errs = []
        for s in range(starts):
            result = calibrator.window.solve(chosen, proto.initial_guess(T_gt, 5, s))
            e = pose_error(result.T_camera_lidar, T_gt)
            errs.append((e.rot_deg, e.trans_m, bool(result.converged)))
        out[k] = {"rot_deg": [e[0] for e in errs], "trans_m": [e[1] for e in errs],
                  "converged": [e[2] for e in errs]}
        print(f"  k={k:>2}: rotation median {np.median(out[k]['rot_deg']):.3f} deg, translation median "
              f"{100 * np.median(out[k]['trans_m']):.2f} cm, converged {sum(out[k]['converged'])}/{starts}",
              flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/crossi2p_window_bench"))
    ap.add_argument("--starts", type=int, default=3)
    args = ap.parse_args()
    calibrator = Calibrator(CalibratorConfig(device="cpu"))
    curves = {}
    for (style, seed), ds in zip(HELD_OUT, synthetic(args.cache, 40)):
        print(f"synthetic {style} {seed}", flush=True)
        curves[f"synthetic {style}"] = curve(calibrator, ds, args.starts)
    kitti = SHARED / "kitti_raw_0926"
    if kitti.is_dir():
        print("real KITTI raw", flush=True)
        curves["KITTI raw (real)"] = curve(calibrator, open_dataset(kitti), args.starts)
    else:
        print(f"skipped real KITTI: {kitti} is absent")
    if args.json:
        write_json(args.json, {"sizes": list(SIZES), "start": "calib +-5 deg / 0.2 m", "curves": curves})
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for name, c in curves.items():
            axes[0].plot(SIZES, [np.median(c[k]["rot_deg"]) for k in SIZES], "o-", label=name)
            axes[1].plot(SIZES, [100 * np.median(c[k]["trans_m"]) for k in SIZES], "o-", label=name)
        for ax, label in zip(axes, ("rotation error [deg] (median)", "translation error [cm] (median)")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks(SIZES, [str(k) for k in SIZES])
            ax.set_xlabel("keyframes in the window")
            ax.set_ylabel(label)
            ax.grid(True, which="both", alpha=0.3)
        axes[0].axhline(0.1, color="r", lw=0.8)
        axes[1].axhline(1.0, color="r", lw=0.8)
        axes[1].legend(fontsize=8)
        fig.suptitle("window estimator from +-5 deg / 0.2 m starts")
        fig.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=110)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
