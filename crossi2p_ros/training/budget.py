"""Training inside a fixed time budget (a lent GPU for a few minutes: scripts/gpu_train.sh).

The cosine schedule must end inside the budget, so its length is chosen from a
short probe run of the same configuration on the same machine: its
``metrics.jsonl`` gives the time of a step, of an epoch's fixed costs
(validation, the DataLoader workers' start) and of the start-up.
A run the time limit stops anyway still leaves its last checkpoint, which
:func:`checkpoint_to_weights` turns into a weights file.

    python -m crossi2p_ros.training.budget fit --minutes 8 --started T0 --configs CFG [...] --probes PROBE_RUN [...]
    python -m crossi2p_ros.training.budget weights CHECKPOINT OUT.pt [NOTE]
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import CrossI2PError
from .config import TrainConfig, load_train_config


@dataclass(frozen=True)
class ProbeTiming:
    """Seconds of one probe run: a step, an epoch's fixed costs, and the start-up before its first step."""

    step_s: float
    epoch_overhead_s: float
    startup_s: float


def probe_timing(run_dir: str | Path, started: float) -> ProbeTiming:
    """Timing of a finished probe run (one epoch, logged at least twice, then validated) begun at ``started``
    [s since the epoch]. The step time is that between its train logs, the slowest stretch's; what the epoch's
    end took beyond its steps counts as every epoch's fixed cost, and what came before its first step as
    start-up (the DataLoader workers' start is in both: counted twice, which errs on the short side)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise CrossI2PError(f"{run_dir}: no metrics.jsonl; the probe run failed (see its log)")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    train = [r for r in records if r["split"] == "train"]
    val = [r for r in records if r["split"] == "val"]
    if len(train) < 2 or not val:
        raise CrossI2PError(f"{path}: a probe needs two train logs and a validation; give it more steps "
                            "(at least twice log_every)")
    step_s = max((b["time"] - a["time"]) / (b["step"] - a["step"]) for a, b in zip(train, train[1:]))
    first = train[0]
    return ProbeTiming(step_s=step_s,
                       epoch_overhead_s=max(0.0, val[-1]["time"] - train[-1]["time"]
                                            - (val[-1]["step"] - train[-1]["step"]) * step_s),
                       startup_s=max(0.0, first["time"] - started - first["step"] * step_s))


def fit_epochs(timings: list[ProbeTiming], steps_per_epoch: int, seconds_left: float, margin: float = 0.9) -> int:
    """Epochs of ``steps_per_epoch`` steps that runs side by side (timed by ``timings`` while they shared the
    machine the same way) finish in ``seconds_left``, with ``margin`` of it to spare; at least 1."""
    slowest = max(timings, key=lambda t: t.step_s * steps_per_epoch + t.epoch_overhead_s)
    usable = seconds_left * margin - max(t.startup_s for t in timings)
    return max(1, math.floor(usable / (slowest.step_s * steps_per_epoch + slowest.epoch_overhead_s)))


def checkpoint_to_weights(checkpoint: str | Path, out: str | Path, note: str) -> Path:
    """The model of a training checkpoint (``checkpoints/last.pt``) as a weights file, with its step."""
    from ..model.crossi2p import CrossI2P
    from ..model.weights import save_weights
    from .checkpoint import load_checkpoint

    ckpt = load_checkpoint(Path(checkpoint))
    cfg = TrainConfig.from_dict(ckpt["config"])
    model = CrossI2P(cfg.model)
    model.load_state_dict(ckpt["model"])
    return save_weights(out, model, {"step": ckpt["step"], "epoch": ckpt["epoch"], "num_frames": ckpt["num_frames"],
                                     "train_config": cfg.to_dict(), "note": note})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m crossi2p_ros.training.budget",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="print the epochs that the probed runs finish in the budget")
    fit.add_argument("--probes", nargs="+", required=True, help="finished probe run folders (metrics.jsonl)")
    fit.add_argument("--minutes", type=float, required=True, help="the whole budget, counted from --started")
    fit.add_argument("--started", type=float, required=True, help="when the budget began [s since the epoch]")
    fit.add_argument("--configs", nargs="+", required=True, help="the runs' training configs (YAML), for their "
                     "steps per epoch (the probes ran shorter epochs)")
    fit.add_argument("--json", help="write the timings and the choice here")
    weights = sub.add_parser("weights", help="write a checkpoint's model as a weights file")
    weights.add_argument("checkpoint")
    weights.add_argument("out")
    weights.add_argument("note", nargs="?", default="last checkpoint of a time-limited run")
    args = parser.parse_args(argv)
    if args.command == "weights":
        print(f"weights: {checkpoint_to_weights(args.checkpoint, args.out, args.note)}")
        return
    timings = [probe_timing(p, args.started) for p in args.probes]
    steps_per_epoch = max(load_train_config(c).steps_per_epoch for c in args.configs)
    if steps_per_epoch < 1:
        raise SystemExit("budget: the configs must set steps_per_epoch (one pass over the data has no fixed length)")
    left = args.minutes * 60 - (time.time() - args.started)
    epochs = fit_epochs(timings, steps_per_epoch, left)
    for p, t in zip(args.probes, timings):
        print(f"{Path(p).name}: {t.step_s:.3f} s a step, {t.epoch_overhead_s:.1f} s an epoch's end, "
              f"{t.startup_s:.1f} s start-up")
    print(f"{left:.0f} s left: {epochs} epochs of {steps_per_epoch} steps")
    if args.json:
        probes = {Path(p).name: asdict(t) for p, t in zip(args.probes, timings)}
        Path(args.json).write_text(json.dumps({"probes": probes, "seconds_left": left,
                                               "steps_per_epoch": steps_per_epoch, "epochs": epochs}, indent=1))
    print(epochs)


if __name__ == "__main__":
    main()
