"""Where one training step's time goes: data, each network block, losses, GradNorm, backward, optimiser.

Builds the real :class:`~crossi2p_ros.training.trainer.Trainer` on a KITTI-layout
folder (or generates two small synthetic rigs), then runs the same operations
as ``Trainer.train_step``, one block at a time with a timer around each (the
network's blocks through forward hooks), and prints the median share of each.
The data time is that of building a batch in the main process, which the
trainer's DataLoader workers overlap with the step.

    .venv/bin/python benchmarks/train_step.py --json docs/results/train_step.json
    .venv/bin/python benchmarks/train_step.py --set model.num_layers=2 --set model.num_points=2048
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from crossi2p_ros.data.samples import PairDataset, SampleConfig, collate  # noqa: E402
from crossi2p_ros.evaluation import write_json  # noqa: E402
from crossi2p_ros.model.config import ModelConfig  # noqa: E402
from crossi2p_ros.model.point_encoder import group_points  # noqa: E402
from crossi2p_ros.training.config import build_train_config  # noqa: E402
from crossi2p_ros.training.trainer import LOSS_NAMES, Trainer  # noqa: E402

BLOCKS = ("image_encoder", "point_encoder", "pos3d", "transformer", "coarse_matcher", "fine_decoder", "point_fine")


def _set(overrides: list[str]) -> dict:
    """``a.b=value`` pairs (YAML values) -> a nested dict for :func:`build_train_config`."""
    out: dict = {}
    for item in overrides:
        key, _, value = item.partition("=")
        if not value:
            raise SystemExit(f"--set {item!r}: expected FIELD=VALUE, e.g. model.num_layers=2")
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    return out


class BlockTimer:
    """Wall time of named network blocks (forward hooks) and of code sections, per step."""

    def __init__(self, model: torch.nn.Module):
        self.times: dict[str, float] = defaultdict(float)
        self._start: dict[str, float] = {}
        for name in BLOCKS:
            module = getattr(model, name)
            module.register_forward_pre_hook(lambda m, a, n=name: self._begin(n))
            module.register_forward_hook(lambda m, a, o, n=name: self._end(n))

    def _begin(self, name: str) -> None:
        self._start[name] = time.perf_counter()

    def _end(self, name: str) -> None:
        self.times[name] += time.perf_counter() - self._start.pop(name)

    def section(self, name: str):
        timer = self

        class _Section:
            def __enter__(self):
                timer._begin(name)

            def __exit__(self, *exc):
                timer._end(name)

        return _Section()


def profile(trainer: Trainer, batches: list[dict], timer: BlockTimer) -> dict[str, float]:
    """The operations of ``Trainer.train_step`` on one batch, timed section by section [s]."""
    model, raw, cfg = trainer.model, trainer.raw_model, trainer.cfg
    timer.times.clear()
    batch = batches[0]
    model.train()
    start = time.perf_counter()
    with timer.section("group_points (FPS + kNN)"):
        groups = group_points(batch["points"][..., :3], cfg.model.num_superpoints, cfg.model.knn)
    with timer.section("forward (all)"):
        out = model(batch["image"], batch["points"], groups)
    with timer.section("losses"):
        result = trainer.loss_fn(raw, out, batch)
    losses = {k: result.losses[k].float() for k in LOSS_NAMES}
    with timer.section("gradnorm (per-loss grads)"):
        total = trainer.gradnorm.combine(losses, raw.shared_parameters())
    trainer.optimizer.zero_grad(set_to_none=True)
    with timer.section("backward"):
        total.backward()
    with timer.section("clip + optimiser"):
        torch.nn.utils.clip_grad_norm_(raw.parameters(), cfg.grad_clip)
        trainer.optimizer.step()
    times = dict(timer.times)
    times["step (all)"] = time.perf_counter() - start
    return times


def time_samples(data: list[Path], n: int) -> int:
    """Mean time [ms] to build one augmented training sample from ``data`` (main process)."""
    if not data:
        raise SystemExit("--data-only needs --data (KITTI folders or .npz caches)")
    ds = PairDataset(data, SampleConfig(), ModelConfig(num_points=4096))
    ds[0]   # warm-up: file handles, undistortion maps
    t = time.perf_counter()
    for i in range(n):
        ds[i % len(ds)]
    print(f"{1e3 * (time.perf_counter() - t) / n:.1f} ms per sample ({n} samples of {', '.join(p.name for p in data)})")
    return 0


def make_data(root: Path) -> list[Path]:
    dirs = []
    for style, seed in (("urban", 1), ("suburban", 2)):
        out = root / f"{style}-{seed}"
        if not (out / "sequences" / "00" / "calib.txt").is_file():
            subprocess.run([sys.executable, "-m", "crossi2p_ros.cli", "synth", "--out", str(out), "--style", style,
                            "--seed", str(seed), "--frames", "8"], cwd=REPO, check=True, capture_output=True,
                           env=dict(os.environ, PYTHONPATH=str(REPO)))
        dirs.append(out)
    return dirs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, nargs="*", default=None,
                    help="KITTI-layout folders or training caches (default: two generated synthetic rigs)")
    ap.add_argument("--config", type=Path, default=REPO / "config" / "train_default.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a TrainConfig field (nested with dots), e.g. model.num_layers=2")
    ap.add_argument("--steps", type=int, default=8, help="timed steps (default %(default)s)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed first steps (default %(default)s)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--torch-profile", action="store_true",
                    help="also print torch's profiler table (self CPU time per op) of the first timed step")
    ap.add_argument("--data-only", action="store_true",
                    help="only time building training samples from --data (folders against caches, say)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.data_only:
        return time_samples(args.data or [], args.steps * 4)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or make_data(Path(tmp))
        cfg = build_train_config(args.config, base=None, **_set(args.overrides + ["val_samples=0", "num_workers=0"]))
        trainer = Trainer(cfg, data, Path(tmp) / "run", device="cpu")
        ds = trainer.train_ds
        timer = BlockTimer(trainer.raw_model)
        rows: dict[str, list[float]] = defaultdict(list)
        for step in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            idx = [(step * cfg.batch_size + j) % len(ds) for j in range(cfg.batch_size)]
            batch = collate([ds[i] for i in idx])
            data_s = time.perf_counter() - t0
            if args.torch_profile and step == args.warmup:   # the first timed step, op by op
                with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                    times = profile(trainer, [batch], timer)
                print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
            else:
                times = profile(trainer, [batch], timer)
            if step >= args.warmup:
                rows["data (batch, main process)"].append(data_s)
                for k, v in times.items():
                    rows[k].append(v)
        trainer.close()

    median = {k: float(np.median(v)) for k, v in rows.items()}
    step_s = median["step (all)"]
    print(f"\none training step, batch {cfg.batch_size}, {cfg.model.num_points} points, "
          f"{cfg.model.image_height}x{cfg.model.image_width}, {args.threads} threads "
          f"(median of {args.steps}):\n")
    print(f"{'section':34s} {'ms':>8s} {'share':>7s}")
    for k, v in median.items():
        nested = k in BLOCKS
        share = f"{100 * v / step_s:6.1f}%" if k != "data (batch, main process)" else "   (overlapped)"
        print(f"{('  ' if nested else '') + k:34s} {1e3 * v:8.1f} {share}")
    print(f"\n{cfg.batch_size / step_s:.2f} samples/s without data; "
          f"{cfg.batch_size / (step_s + median['data (batch, main process)']):.2f} with data in the main process")
    if args.json:
        write_json(args.json, {
            "device": f"cpu ({platform.processor() or platform.machine()}, {args.threads} threads)",
            "batch_size": cfg.batch_size, "num_points": cfg.model.num_points,
            "image": [cfg.model.image_height, cfg.model.image_width], "overrides": args.overrides,
            "steps": args.steps, "median_ms": {k: 1e3 * v for k, v in median.items()},
            "samples_per_s": cfg.batch_size / step_s})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
