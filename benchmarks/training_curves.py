"""Train against held-out coarse precision over steps, for training runs side by side (from metrics.jsonl).

Each ``LABEL=RUN_DIR`` is a ``crossi2p train`` run folder. The training curve
is the logged training-batch coarse precision (smoothed over ``--smooth``
logs), the held-out one the trainer's validation on its validation tail (both
protocols), with the GradNorm weights beneath.

    .venv/bin/python benchmarks/training_curves.py "480 frames=runs/continue-8" \\
        "960 frames=runs/continue-16" --png docs/results/training_curves.png --json docs/results/training_curves.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crossi2p_ros.evaluation import write_json  # noqa: E402


def read_run(run: Path, smooth: int) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in rows if r["split"] == "train"]
    val = [r for r in rows if r["split"] == "val"]
    precision = np.array([r["metrics"].get("coarse_precision", np.nan) for r in train])
    kernel = np.ones(smooth) / smooth
    smoothed = np.convolve(precision, kernel, mode="valid") if len(precision) >= smooth else precision
    return {
        "train_step": [r["step"] for r in train][len(train) - len(smoothed):],
        "train_coarse_precision": smoothed.tolist(),
        "val_step": [r["step"] for r in val],
        "val_calib_coarse_precision": [r["val"].get("calib/coarse_precision") for r in val],
        "val_i2p_coarse_precision": [r["val"].get("i2p/coarse_precision") for r in val],
        "val_calib_pnp_success": [r["val"].get("calib/pnp_success_rate") for r in val],
        "gradnorm_step": [r["step"] for r in train],
        "gradnorm_weights": {k.split("/")[1]: [r["gradnorm"].get(k) for r in train]
                             for k in train[-1]["gradnorm"] if k.startswith("weight/")} if train else {},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR")
    ap.add_argument("--smooth", type=int, default=5, help="training logs averaged per point (default %(default)s)")
    ap.add_argument("--png", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    runs = {}
    for item in args.runs:
        label, _, path = item.partition("=")
        if not path or not (Path(path) / "metrics.jsonl").is_file():
            raise SystemExit(f"{item!r}: expected LABEL=RUN_DIR with a metrics.jsonl in RUN_DIR")
        runs[label] = read_run(Path(path), args.smooth)
    for label, r in runs.items():
        print(f"{label}: training coarse precision {r['train_coarse_precision'][-1]:.3f} at step "
              f"{r['train_step'][-1]}; held-out calib " + ", ".join(
                  f"{p:.3f}@{s}" for s, p in zip(r["val_step"], r["val_calib_coarse_precision"])) +
              "; held-out i2p " + ", ".join(f"{p:.3f}" for p in r["val_i2p_coarse_precision"]))
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax, aw) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
        for k, (label, r) in enumerate(runs.items()):
            c = f"C{k}"
            ax.plot(r["train_step"], r["train_coarse_precision"], color=c, alpha=0.5, label=f"{label}: training batches")
            ax.plot(r["val_step"], r["val_calib_coarse_precision"], "o-", color=c, label=f"{label}: held-out calib")
            ax.plot(r["val_step"], r["val_i2p_coarse_precision"], "s--", color=c, label=f"{label}: held-out i2p")
            for j, (name, w) in enumerate(r["gradnorm_weights"].items()):
                aw.plot(r["gradnorm_step"], w, color=c,
                        linestyle=["-", "--", ":"][j % 3], label=f"{label}: {name}")
        ax.set_ylabel("coarse precision")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        aw.set_ylabel("GradNorm weight")
        aw.set_xlabel("step of the run")
        aw.grid(alpha=0.3)
        aw.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        args.png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.png, dpi=110)
        print(f"wrote {args.png}")
    if args.json:
        write_json(args.json, runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
