"""Accuracy of a weights file on freshly generated, held-out synthetic rigs (both protocols).

Generates one sequence per style with seeds never used in training
(``scripts/train_default.sh`` trains on seeds < 2000 and holds out 9000),
then scores the network's matches and its PnP pose under the ``calib`` and
``i2p`` protocols of DESIGN.md, as the trainer's validation does:

    .venv/bin/python benchmarks/validate_weights.py --weights models/crossi2p_default.pt --json val.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crossi2p_ros.data.perturb import CalibProtocol, I2PProtocol  # noqa: E402
from crossi2p_ros.data.samples import PairDataset, SampleConfig  # noqa: E402
from crossi2p_ros.data.synth import SynthConfig, generate  # noqa: E402
from crossi2p_ros.model.weights import load_model  # noqa: E402
from crossi2p_ros.registration.pnp import PnPConfig  # noqa: E402
from crossi2p_ros.training.losses import CrossI2PLoss  # noqa: E402
from crossi2p_ros.training.validation import validate  # noqa: E402

HELD_OUT = (("urban", 9100), ("suburban", 9200), ("highway", 9300))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=Path("models/crossi2p_default.pt"))
    ap.add_argument("--frames", type=int, default=8, help="frames per held-out rig")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    model, meta = load_model(args.weights)
    with tempfile.TemporaryDirectory() as tmp:
        dirs = [generate(SynthConfig(frames=args.frames, seed=seed, style=style), Path(tmp) / f"{style}-{seed}",
                         progress=False).sequence_dir for style, seed in HELD_OUT]
        sample_cfg = SampleConfig(augment=False)
        datasets = {p: PairDataset(dirs, sample_cfg, model.cfg, protocol=p, augment=False) for p in ("calib", "i2p")}
        start = time.perf_counter()
        summary = validate(model, datasets, torch.device("cpu"), PnPConfig(), CalibProtocol(), I2PProtocol(),
                           loss_fn=CrossI2PLoss(model.cfg))
        elapsed = time.perf_counter() - start
    result = {"weights": str(args.weights), "held_out": [f"{s}-{seed}" for s, seed in HELD_OUT],
              "frames_per_rig": args.frames, "summary": summary, "seconds": elapsed,
              "device": f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"}
    for k in sorted(summary):
        print(f"{k:40s} {summary[k]:.4f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
