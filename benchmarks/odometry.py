"""LiDAR odometry (``registration/deskew.sweep_twist``): its cost from the last twist, and the twists of a real drive.

1. Cost, side by side on consecutive pairs of a held-out synthetic drive at 10-20 m/s (seed 9700, sweeps cast
   over 100 ms): the fine stage alone from the last twist (what ran before 2026-12-07) against the default,
   whose coarsest stage also runs from rest and competes where it lands elsewhere; medians, alternated.
2. With ``--motorway`` (``../shared/data/aimotive_pandar64_night`` present): each consecutive pair's speed
   registered in sequence, each from the last twist (the first from rest), both ways.

    .venv/bin/python benchmarks/odometry.py --motorway --json docs/results/odometry.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crossi2p_ros.data.synth import SynthConfig, SynthSequence  # noqa: E402
from crossi2p_ros.evaluation import write_json  # noqa: E402
from crossi2p_ros.registration.deskew import OdometryConfig, sweep_twist  # noqa: E402

MOTORWAY = Path(__file__).resolve().parents[2] / "shared" / "data" / "aimotive_pandar64_night"
# the fine stage alone from a guess: the odometry before the coarse stage from rest competed with it
FINE_ONLY = OdometryConfig(voxels_m=OdometryConfig().voxels_m[-1:],
                           max_correspondence_m=OdometryConfig().max_correspondence_m[-1:])


def chained_speeds(sweeps: list[np.ndarray], stamps: list[float], cfg: OdometryConfig) -> list[float | None]:
    """|v| [m/s] of each consecutive pair, each registered from the last twist found (the first from rest)."""
    speeds, guess = [], None
    for i in range(len(sweeps) - 1):
        # the first pair has no guess: the full coarse-to-fine schedule from rest (FINE_ONLY has one stage)
        twist = sweep_twist(sweeps[i], sweeps[i + 1], stamps[i + 1] - stamps[i],
                            OdometryConfig() if guess is None else cfg, guess=guess)
        guess = twist if twist is not None else guess
        speeds.append(None if twist is None else float(np.linalg.norm(twist[:3])))
    return speeds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--motorway", action="store_true", help="also the real motorway drive's twists")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    seq = SynthSequence(SynthConfig(frames=args.pairs + 2, seed=9700, style="urban", speed_mps=(15.0, 15.0),
                                    speed_change_mps=5.0, sweep_s=0.1, camera_offset_s=0.02))
    sweeps = [seq.sweep(i)[0] for i in range(args.pairs + 2)]
    guess = sweep_twist(sweeps[0], sweeps[1], 0.1)
    ms: dict[str, list[float]] = {"fine_only": [], "default": []}
    for i in range(1, args.pairs + 1):
        for name, cfg in (("default", OdometryConfig()), ("fine_only", FINE_ONLY)):
            t = time.perf_counter()
            twist = sweep_twist(sweeps[i], sweeps[i + 1], 0.1, cfg, guess=guess)
            ms[name].append(1e3 * (time.perf_counter() - t))
        guess = twist if twist is not None else guess
    result = {"synthetic_ms_median": {k: float(np.median(v)) for k, v in ms.items()}, "pairs": args.pairs}
    print(f"from the last twist: fine stage alone {result['synthetic_ms_median']['fine_only']:.0f} ms, default "
          f"{result['synthetic_ms_median']['default']:.0f} ms a pair (medians of {args.pairs}, alternated)")
    if args.motorway and MOTORWAY.is_dir():
        from crossi2p_ros.data.kitti import open_dataset

        ds = open_dataset(MOTORWAY)
        real = [ds.sweep(i) for i in range(len(ds))]
        stamps = [float(ds.time_s(i)) for i in range(len(ds))]
        result["motorway_speeds_mps"] = {"fine_only": chained_speeds(real, stamps, FINE_ONLY),
                                         "default": chained_speeds(real, stamps, OdometryConfig())}
        for name, speeds in result["motorway_speeds_mps"].items():
            print(f"motorway, {name:9s}: " + " ".join("-" if v is None else f"{v:.1f}" for v in speeds) + " m/s")
    elif args.motorway:
        print(f"motorway: skipped ({MOTORWAY} not present)")
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
