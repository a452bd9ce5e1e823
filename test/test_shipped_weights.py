"""The shipped default weights: integrity against the model card, and real learned matching.

The accuracy claims live in models/README.md and docs/benchmarks.md; this test
guards what must hold for any weights we ship: the file is the one the card
names, it loads safely, and on a freshly generated rig never seen in training
its coarse matches beat an untrained network of the same shape by far.
"""
import re
from pathlib import Path

import pytest
import torch

from crossi2p_ros.data.samples import PairDataset, SampleConfig, collate
from crossi2p_ros.data.synth import SynthConfig, generate
from crossi2p_ros.model import CrossI2P
from crossi2p_ros.model.weights import file_sha256, load_model
from crossi2p_ros.training.losses import CrossI2PLoss

MODELS = Path(__file__).resolve().parents[1] / "models"
WEIGHTS = MODELS / "crossi2p_default.pt"


def _card_sha256() -> str:
    match = re.search(r"sha256[^0-9a-f]*([0-9a-f]{64})", (MODELS / "README.md").read_text())
    assert match, "models/README.md must state the weights' sha256"
    return match.group(1)


def test_shipped_weights_match_the_model_card_and_load_safely():
    assert WEIGHTS.is_file(), "models/crossi2p_default.pt is missing"
    assert WEIGHTS.stat().st_size < 50 * 2**20
    assert file_sha256(WEIGHTS) == _card_sha256()
    model, meta = load_model(WEIGHTS, expected_sha256=_card_sha256())
    assert not model.training and isinstance(meta, dict)


def _coarse_precision(model, batch) -> float:
    torch.manual_seed(0)
    with torch.no_grad():
        out = model(batch["image"], batch["points"])
        return CrossI2PLoss(model.cfg)(model, out, batch).metrics["coarse_precision"]


def test_shipped_weights_match_a_held_out_synthetic_rig_far_better_than_untrained(tmp_path):
    model, _ = load_model(WEIGHTS)
    seq = generate(SynthConfig(frames=2, seed=9400, style="urban"), tmp_path, progress=False).sequence_dir
    ds = PairDataset([seq], SampleConfig(augment=False), model.cfg, protocol="calib", augment=False)
    batch = collate([ds[0], ds[1]])
    trained = _coarse_precision(model, batch)
    torch.manual_seed(0)
    untrained = _coarse_precision(CrossI2P(model.cfg).eval(), batch)
    print(f"coarse precision: shipped {trained:.3f}, untrained {untrained:.3f}")
    assert trained > 0.1 and trained > 5 * untrained, (trained, untrained)


def test_the_calibrator_verifies_the_published_checksum_beside_the_weights(tmp_path):
    from crossi2p_ros.errors import CrossI2PError
    from crossi2p_ros.registration.calibrator import Calibrator, CalibratorConfig, published_sha256

    assert published_sha256(WEIGHTS) == _card_sha256()   # the sidecar and the model card agree
    copy = tmp_path / WEIGHTS.name
    copy.write_bytes(WEIGHTS.read_bytes())
    (tmp_path / (WEIGHTS.name + ".sha256")).write_text(f"{'0' * 64}  {WEIGHTS.name}\n")
    with pytest.raises(CrossI2PError, match="does not match the expected"):
        Calibrator(CalibratorConfig(weights=str(copy), device="cpu"))
    (tmp_path / (WEIGHTS.name + ".sha256")).write_text(f"{_card_sha256()}  {WEIGHTS.name}\n")
    assert Calibrator(CalibratorConfig(weights=str(copy), device="cpu")).weights_path == copy
