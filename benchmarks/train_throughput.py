"""Training throughput of ``crossi2p train``: one process against two DDP processes (torchrun, gloo/nccl).

Generates a small synthetic training set, then runs the real trainer twice with
the same global batch: once as one process with all the threads, once under
``torchrun --nproc_per_node 2`` with the threads split between the ranks. The
speed is read from the trainer's own ``metrics.jsonl`` (wall-clock stamp of every
step), leaving out the first steps (start-up, allocator warm-up).

    .venv/bin/python benchmarks/train_throughput.py --json docs/results/train_throughput.json

On a 2-core CPU the two ranks share the same cores, so this measures DDP's
overhead rather than a speed-up; on a multi-GPU machine run it with
``--device cuda`` for the real figure.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from crossi2p_ros.data.synth import SynthConfig, generate  # noqa: E402
from crossi2p_ros.evaluation import write_json  # noqa: E402


def _config(path: Path, steps: int, batch: int, num_points: int) -> Path:
    path.write_text(f"model:\n  num_points: {num_points}\nepochs: 1\nsteps_per_epoch: {steps}\nbatch_size: {batch}\n"
                    "val_samples: 0\nlog_every: 1\nvis_every: 100000\ncheckpoint_every_steps: 100000\n"
                    "num_workers: 1\nseed: 0\n")
    return path


def _step_seconds(run: Path, skip: int) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    stamps = [r["time"] for r in rows if r.get("split") == "train"]
    return list(np.diff(stamps)[skip:])


def train(data: list[Path], run: Path, cfg: Path, device: str, world: int, threads: int) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(REPO))
    cli = ["-m", "crossi2p_ros.cli", "train", "--data", *map(str, data), "--out", str(run), "--config", str(cfg),
           "--device", device]
    if world == 1:
        cmd = [sys.executable, *cli]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(world), "--rdzv-backend",
               "c10d", "--rdzv-endpoint", "localhost:0", *cli]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"training failed ({' '.join(cmd[:6])} ...):\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--steps", type=int, default=24, help="training steps per run (default %(default)s)")
    ap.add_argument("--skip", type=int, default=4, help="first steps left out of the timing (default %(default)s)")
    ap.add_argument("--batch", type=int, default=4, help="global batch (split across ranks) (default %(default)s)")
    ap.add_argument("--points", type=int, default=4096, help="model.num_points (default %(default)s)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="CPU threads in all (default: cores)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    results: dict = {"device": f"{args.device} ({platform.processor() or platform.machine()}, {args.threads} threads)",
                     "global_batch": args.batch, "num_points": args.points, "steps": args.steps, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print("generating training data (2 rigs x 8 frames) ...", flush=True)
        data = [generate(SynthConfig(frames=8, seed=seed, style=style), root / f"{style}-{seed}",
                         progress=False).sequence_dir.parents[1] for style, seed in (("urban", 31), ("suburban", 32))]
        for world in (1, 2):
            cfg = _config(root / f"train-{world}.yaml", args.steps, args.batch // world, args.points)
            run = root / f"run-{world}"
            wall = train(data, run, cfg, args.device, world, max(1, args.threads // world))
            steps = _step_seconds(run, args.skip)
            step_s = float(np.median(steps))
            results["runs"][f"{world}_process"] = {"step_s_median": step_s, "samples_per_s": args.batch / step_s,
                                                   "wall_s": wall, "timed_steps": len(steps)}
            print(f"{world} process(es): {step_s:.2f} s/step, {args.batch / step_s:.2f} samples/s "
                  f"(global batch {args.batch}, {len(steps)} timed steps, {wall:.0f} s wall)", flush=True)
    one, two = results["runs"]["1_process"], results["runs"]["2_process"]
    results["ddp_speedup"] = two["samples_per_s"] / one["samples_per_s"]
    print(f"2-process DDP speed-up: {results['ddp_speedup']:.2f}x")
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
