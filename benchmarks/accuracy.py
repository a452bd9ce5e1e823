"""Accuracy and latency of the full Calibrator on held-out synthetic rigs (issue: registration benchmarks).

One sequence per scene style with seeds never used in training (training uses
seeds < 2000 and 9000; these are 9100/9200/9300). It records, in one table:

* calib protocol (+-10 deg / 0.5 m), single frame: median/mean/p95 rotation and
  translation error and the success rate (< 1 deg and < 5 cm);
* the same with ``--fused`` consecutive frames of the rig estimated jointly;
* i2p protocol (no prior): RTE, RRE, Acc (RTE < 2 m and RRE < 5 deg);
* the same calib run without the model-free MI stage (what the network alone gives);
* the refinement regime (+-2 deg / 0.1 m, the size of a knocked sensor or an
  installed calibration gone stale), single frame and with ``--fused`` frames;
* per-stage latency (median / p95, ms) of the single-frame calib runs.

    .venv/bin/python benchmarks/accuracy.py --json docs/results/accuracy.json
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crossi2p_ros.data.kitti import open_dataset  # noqa: E402
from crossi2p_ros.data.synth import SynthConfig, generate  # noqa: E402
from crossi2p_ros.evaluation import EvalConfig, evaluate, summarize, write_json  # noqa: E402
from crossi2p_ros.registration.calibrator import Calibrator, CalibratorConfig  # noqa: E402

HELD_OUT = (("urban", 9100), ("suburban", 9200), ("highway", 9300))


class StageTimes:
    """Collects ``Estimate.timings_ms`` by wrapping the calibrator's estimate_many."""

    def __init__(self, calibrator: Calibrator):
        self.samples: list[dict[str, float]] = []
        inner = calibrator.estimate_many

        def wrapped(frames, T_init=None):
            est = inner(frames, T_init)
            self.samples.append(est.timings_ms)
            return est

        calibrator.estimate_many = wrapped  # type: ignore[method-assign]

    def table(self) -> dict[str, dict[str, float]]:
        keys = sorted({k for s in self.samples for k in s})
        return {k: {"median_ms": float(np.median([s[k] for s in self.samples if k in s])),
                    "p95_ms": float(np.percentile([s[k] for s in self.samples if k in s], 95))} for k in keys}


def run(datasets, calibrator: Calibrator, cfg: EvalConfig) -> tuple[dict, list]:
    records = []
    for ds in datasets:
        records += evaluate(ds, calibrator, cfg, progress=False)[1]
    return summarize(records), records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=None, help="default: the shipped model")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--frames", type=int, default=20, help="frames per held-out rig")
    ap.add_argument("--samples", type=int, default=20, help="single-frame samples per rig and protocol")
    ap.add_argument("--fused", type=int, default=20, help="frames per fused estimate")
    ap.add_argument("--fused-samples", type=int, default=2, help="fused samples per rig")
    ap.add_argument("--small-fused", type=int, default=5, help="frames per fused estimate, refinement regime")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    calibrator = Calibrator(CalibratorConfig(weights=str(args.weights) if args.weights else None, device=args.device))
    results: dict = {"weights": str(calibrator.weights_path), "held_out": [f"{s}-{seed}" for s, seed in HELD_OUT],
                     "frames_per_rig": args.frames,
                     "device": f"{calibrator.device} ({platform.processor() or platform.machine()}, "
                               f"{torch.get_num_threads()} threads)"}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        datasets = [open_dataset(generate(SynthConfig(frames=args.frames, seed=seed, style=style),
                                          Path(tmp) / f"{style}-{seed}", progress=False).sequence_dir.parents[1])
                    for style, seed in HELD_OUT]
        timer = StageTimes(calibrator)
        calib = EvalConfig(protocol="calib", samples=args.samples, seed=0)
        results["calib_single"], _ = run(datasets, calibrator, calib)
        results["latency_calib_single"] = timer.table()
        fused = replace(calib, samples=args.fused_samples, frames_per_estimate=args.fused)
        results[f"calib_fused_{args.fused}"], _ = run(datasets, calibrator, fused)
        results["i2p"], records = run(datasets, calibrator, EvalConfig(protocol="i2p", samples=args.samples, seed=0))
        results["i2p"]["acc"] = results["i2p"]["success_rate"]
        network_only = Calibrator(replace(calibrator.cfg, use_mi=False), model=calibrator.model)
        results["calib_single_network_only"], _ = run(datasets, network_only, calib)
        small = replace(calib, max_rot_deg=2.0, max_trans_m=0.1)
        results["refine_single"], _ = run(datasets, calibrator, small)
        results["refine_single_network_only"], _ = run(datasets, network_only, small)
        results[f"refine_fused_{args.small_fused}"], _ = run(
            datasets, calibrator, replace(small, samples=args.fused_samples, frames_per_estimate=args.small_fused))
    results["seconds"] = time.perf_counter() - start

    print(f"{'run':32s} {'rot med/mean/p95 [deg]':>26s} {'trans med/mean/p95 [m]':>26s} {'success':>8s}")
    for name in ("calib_single", "calib_single_network_only", f"calib_fused_{args.fused}", "refine_single",
                 "refine_single_network_only", f"refine_fused_{args.small_fused}", "i2p"):
        s = results[name]
        print(f"{name:32s} {s['rot_median_deg']:8.3f} {s['rot_mean_deg']:8.3f} {s['rot_p95_deg']:8.3f} "
              f"{s['trans_median_m']:8.4f} {s['trans_mean_m']:8.4f} {s['trans_p95_m']:8.4f} "
              f"{100 * s['success_rate']:7.1f}%  stages {s['stages']}")
    print(f"i2p: RTE mean {results['i2p']['rte_mean_m']:.3f} m, RRE mean {results['i2p']['rre_mean_deg']:.2f} deg, "
          f"Acc {100 * results['i2p']['acc']:.1f} %")
    print("latency per stage (calib, single frame):")
    for k, v in results["latency_calib_single"].items():
        print(f"  {k:12s} median {v['median_ms']:7.1f} ms   p95 {v['p95_ms']:7.1f} ms")
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
