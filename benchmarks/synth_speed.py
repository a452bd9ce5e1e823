"""Speed of the synthetic scene generator (frames per second), on a given number of threads.

Measures, for one style and seed: scene build time, in-memory frame rate
(LiDAR sweep + camera render, ``SynthSequence.frame``) and the frame rate of
``generate`` writing KITTI odometry files. Embree gets ``--threads`` threads;
set ``OMP_NUM_THREADS`` to the same number for numpy/BLAS and OpenCV:

    OMP_NUM_THREADS=1 python benchmarks/synth_speed.py --threads 1 --json synth_speed.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crossi2p_ros.data.scene import STYLES  # noqa: E402
from crossi2p_ros.data.synth import SynthConfig, SynthSequence, generate  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--style", choices=STYLES, default="urban")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frames", type=int, default=20, help="frames timed (after one warm-up frame)")
    ap.add_argument("--beams", type=int, default=64)
    ap.add_argument("--columns", type=int, default=1024)
    ap.add_argument("--width", type=int, default=1241)
    ap.add_argument("--height", type=int, default=376)
    ap.add_argument("--threads", type=int, default=1, help="Embree threads (0: all cores)")
    ap.add_argument("--no-write", action="store_true", help="skip timing generate() with file output")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    if args.threads > 0:
        cv2.setNumThreads(args.threads)

    cfg = SynthConfig(frames=args.frames + 1, seed=args.seed, style=args.style, lidar_beams=args.beams,
                      lidar_columns=args.columns, image_width=args.width, image_height=args.height,
                      threads=args.threads)
    t0 = time.perf_counter()
    seq = SynthSequence(cfg)
    build_s = time.perf_counter() - t0
    seq.frame(0)  # warm-up: first-touch allocations
    times = []
    points = []
    for i in range(1, cfg.frames):
        t = time.perf_counter()
        frame = seq.frame(i)
        times.append(time.perf_counter() - t)
        points.append(len(frame.points))
    per_frame = np.array(times)
    result = {
        "benchmark": "synth_speed",
        "config": {k: v for k, v in asdict(cfg).items() if k in (
            "style", "seed", "lidar_beams", "lidar_columns", "image_width", "image_height", "threads")},
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "scene_build_s": round(build_s, 4),
        "scene_triangles": int(len(seq.scene.mesh.faces)),
        "frames_timed": len(times),
        "frame_s_median": round(float(np.median(per_frame)), 4),
        "frame_s_mean": round(float(per_frame.mean()), 4),
        "frames_per_s": round(float(1.0 / per_frame.mean()), 3),
        "points_per_frame_mean": round(float(np.mean(points)), 1),
    }
    if not args.no_write:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            generate(cfg, Path(tmp), progress=False)
            total = time.perf_counter() - t
        result["generate_total_s"] = round(total, 3)
        result["generate_frames_per_s"] = round(cfg.frames / total, 3)  # includes the scene build
    print(f"synth {args.style}: {result['frames_per_s']:.2f} frames/s in memory "
          f"({1000 * result['frame_s_median']:.0f} ms median per frame; {args.beams}x{args.columns} LiDAR, "
          f"{args.height}x{args.width} image, {args.threads or 'all'} Embree thread(s)); "
          f"scene build {result['scene_build_s']:.2f} s")
    if "generate_frames_per_s" in result:
        print(f"generate() with KITTI files: {result['generate_frames_per_s']:.2f} frames/s "
              f"({cfg.frames} frames incl. scene build)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
