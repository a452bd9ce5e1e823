"""What a keyframe costs at camera sizes from HD to 4 K: preparation time [ms] and size [MB], side by side
at each ``--max-focal-px`` (the working focal length; 0: the camera's own).

Synthetic urban frames (HDL-64, the generator's plumb_bob lens) at each size with the same ~90 deg
horizontal field, so only the pixel count changes; the median of ``--repeats`` preparations of one frame
with a prior (no motion-proposal features), after one warm-up.

    .venv/bin/python benchmarks/keyframe_cost.py --json docs/results/keyframe_cost.json
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crossi2p_ros.data.synth import SynthConfig, SynthSequence  # noqa: E402
from crossi2p_ros.evaluation import write_json  # noqa: E402
from crossi2p_ros.registration.calibrator import Calibrator, CalibratorConfig  # noqa: E402

SIZES = ((1280, 720), (1920, 1200), (2048, 1536), (3840, 2160))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-focal-px", type=float, nargs="*", default=[0.0, 1000.0, 700.0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    base = CalibratorConfig(device="cpu")
    calibrators = {cap: Calibrator(replace(base, window=replace(base.window, max_focal_px=cap)))
                   for cap in args.max_focal_px}
    rows = []
    for width, height in SIZES:
        frame = SynthSequence(SynthConfig(frames=1, seed=9700, style="urban", image_width=width,
                                          image_height=height, fx_over_width=(0.5, 0.5))).frame(0)
        for cap, calibrator in calibrators.items():
            calibrator.prepare(frame.image, frame.points, frame.camera, without_prior=False)   # warm-up
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                kf, _, _ = calibrator.prepare(frame.image, frame.points, frame.camera, without_prior=False)
                times.append(1e3 * (time.perf_counter() - t))
            row = {"camera": f"{width}x{height}", "focal_px": float(frame.camera.K[0, 0]), "max_focal_px": cap,
                   "working_image": f"{kf.width}x{kf.height}", "ms": float(np.median(times)),
                   "mb": kf.nbytes / 1e6, "edges": int(len(kf.edges))}
            rows.append(row)
            print(f"{row['camera']:>9} f {row['focal_px']:6.0f} px | max_focal_px {cap:6.0f} | worked at "
                  f"{row['working_image']:>9} | {row['ms']:6.0f} ms | {row['mb']:5.1f} MB | {row['edges']} edges",
                  flush=True)
            if args.json:
                write_json(args.json, {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
