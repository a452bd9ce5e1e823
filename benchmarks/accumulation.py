"""Would dense keyframes help? Short windows of sparse zoo kinds, with and without neighbouring sweeps.

Each keyframe's sweep is joined by its ``--neighbours`` sweeps either side,
moved into its LiDAR frame with the generator's *true* ego poses (an upper
bound for what LiDAR odometry could give) and z-buffered in the keyframe
sensor's angular grid (per ``--cell-deg`` cell, only points within
``--depth-tolerance`` of the nearest range are kept, so background seen past
an occluder from another viewpoint does not make false depth edges). Windows of
``--window`` keyframes drawn from a held-out urban drive (points shuffled), from
+-5 deg / 0.2 m, solved by the Calibrator with and without the neighbours, side
by side on the same windows and starts.

    .venv/bin/python benchmarks/accumulation.py --json docs/results/accumulation.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crossi2p_ros.data.lidar_models import LIDAR_MODELS  # noqa: E402
from crossi2p_ros.data.perturb import CalibProtocol  # noqa: E402
from crossi2p_ros.data.synth import SynthConfig, SynthFrame, SynthSequence  # noqa: E402
from crossi2p_ros.evaluation import write_json  # noqa: E402
from crossi2p_ros.geometry import invert, pose_error, transform_points  # noqa: E402
from crossi2p_ros.registration.calibrator import Calibrator, CalibratorConfig  # noqa: E402

SEED = 9950   # benchmarks/rigs.py's held-out zoo drives: seed 9950 + the kind's index


def zbuffered(points: np.ndarray, cell_deg: float, tolerance: float) -> np.ndarray:
    """The points (N, 4) [m, LiDAR frame] within ``tolerance`` (a fraction of the range) of the nearest one in
    their ``cell_deg`` azimuth x elevation cell: what the sensor at the origin sees of them."""
    rng = np.linalg.norm(points[:, :3], axis=1)
    az = np.degrees(np.arctan2(points[:, 1], points[:, 0]))
    el = np.degrees(np.arcsin(np.clip(points[:, 2] / np.maximum(rng, 1e-6), -1.0, 1.0)))
    cell = np.floor(az / cell_deg).astype(np.int64) * 100_000 + np.floor(el / cell_deg).astype(np.int64)
    order = np.lexsort((rng, cell))
    first = np.r_[True, cell[order][1:] != cell[order][:-1]]
    nearest = rng[order][first][np.cumsum(first) - 1]
    keep = np.zeros(len(points), bool)
    keep[order] = rng[order] <= nearest * (1.0 + tolerance)
    return points[keep]


def dense_sweep(frames: dict[int, SynthFrame], i: int, neighbours: int, cell_deg: float, tolerance: float
                ) -> np.ndarray:
    """Sweep ``i`` joined by its neighbours' (true ego poses), z-buffered from sweep ``i``'s sensor."""
    here = frames[i]
    moved = [here.points] + [
        np.c_[transform_points(invert(here.T_world_lidar) @ frames[j].T_world_lidar, frames[j].points[:, :3]),
              frames[j].points[:, 3:]]
        for j in range(i - neighbours, i + neighbours + 1) if j != i]
    return zbuffered(np.concatenate(moved).astype(np.float32), cell_deg, tolerance)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lidar", nargs="*", default=["vlp16", "avia"], choices=list(LIDAR_MODELS))
    ap.add_argument("--window", type=int, default=3, help="keyframes a window (default %(default)s)")
    ap.add_argument("--neighbours", type=int, default=2, help="sweeps joined either side of a keyframe")
    ap.add_argument("--samples", type=int, default=6)
    ap.add_argument("--frames", type=int, default=40, help="length of each drive [frames at 10 Hz]")
    ap.add_argument("--cell-deg", type=float, default=0.2)
    ap.add_argument("--depth-tolerance", type=float, default=0.05)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    calibrator = Calibrator(CalibratorConfig(device="cpu"))
    protocol = CalibProtocol(max_rot_deg=5.0, max_trans_m=0.2)
    results: dict = {"args": {k: v for k, v in vars(args).items() if k != "json"}, "runs": {}}
    for lidar in args.lidar:
        seq = SynthSequence(SynthConfig(frames=args.frames, seed=SEED + list(LIDAR_MODELS).index(lidar),
                                        style="urban", lidar_model=lidar, point_order="shuffled"))
        rng = np.random.default_rng(0)
        windows = [np.sort(rng.choice(np.arange(args.neighbours, args.frames - args.neighbours), args.window,
                                      replace=False)) for _ in range(args.samples)]
        needed = sorted({int(j) for w in windows for i in w
                         for j in range(i - args.neighbours, i + args.neighbours + 1)})
        frames = {j: seq.frame(j) for j in needed}
        for mode in ("single sweep", f"+-{args.neighbours} sweeps, z-buffered"):
            rows = []
            for s, window in enumerate(windows):
                inputs = [(frames[int(i)].image,
                           frames[int(i)].points if mode == "single sweep" else
                           dense_sweep(frames, int(i), args.neighbours, args.cell_deg, args.depth_tolerance),
                           frames[int(i)].camera) for i in window]
                T_true = frames[int(window[0])].T_camera_lidar
                T_init = protocol.initial_guess(T_true, 0, s)
                t = time.perf_counter()
                est = calibrator.estimate_many(inputs, T_init)
                e = pose_error(est.T_camera_lidar, T_true)
                rows.append((e.rot_deg, e.trans_m, protocol.is_success(e), est.converged, time.perf_counter() - t,
                             float(np.mean([len(p) for _, p, _ in inputs]))))
            a = np.array(rows, dtype=np.float64)
            summary = {"rot_median_deg": float(np.median(a[:, 0])), "trans_median_m": float(np.median(a[:, 1])),
                       "success_rate": float(np.mean(a[:, 2])), "converged_rate": float(np.mean(a[:, 3])),
                       "s_per_window": float(np.median(a[:, 4])), "points_per_keyframe": float(np.median(a[:, 5]))}
            name = f"{lidar}, K={args.window}, {mode}"
            results["runs"][name] = summary
            print(f"{name:<40} rot med {summary['rot_median_deg']:.3f} deg | trans med "
                  f"{100 * summary['trans_median_m']:.2f} cm | success {100 * summary['success_rate']:.0f} % | "
                  f"converged {100 * summary['converged_rate']:.0f} % | {summary['points_per_keyframe']:.0f} "
                  f"points a keyframe | {summary['s_per_window']:.1f} s/window", flush=True)
            if args.json:
                write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
