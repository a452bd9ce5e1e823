"""Weights files: round trip, and refusal of hostile, damaged or mismatched files."""
import os
import pickle
from pathlib import Path

import pytest
import torch

from crossi2p_ros.errors import CrossI2PError
from crossi2p_ros.model import CrossI2P, ModelConfig
from crossi2p_ros.model.weights import FORMAT_VERSION, file_sha256, load_model, save_weights

TINY = ModelConfig(image_height=32, image_width=64, num_points=128, num_superpoints=16, knn=8, d_model=32,
                   num_layers=1, image_channels=(8, 16, 32), point_feat=16, fine_dim=16)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return CrossI2P(TINY)


def test_round_trip_keeps_weights_config_and_metadata(tmp_path, model):
    meta = {"step": 12, "data": ["a", "b"], "metrics": {"rot_median_deg": 0.5}, "note": None, "ok": True}
    path = save_weights(tmp_path / "model.pt", model, meta)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # the temp file was renamed
    loaded, metadata = load_model(path, expected_sha256=file_sha256(path))
    assert metadata == meta and loaded.cfg == TINY and not loaded.training
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    # the file is plain data: the restricted unpickler reads it without any allow-listing
    payload = torch.load(path, weights_only=True)
    assert payload["format_version"] == FORMAT_VERSION and payload["model_config"] == TINY.to_dict()
    with pytest.raises(TypeError, match="metadata.when"):
        save_weights(tmp_path / "x.pt", model, {"when": object()})


class _Hostile:
    """Unpickling this creates a marker file: what a malicious checkpoint would do instead."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


@pytest.mark.parametrize("container", ["torch_zip", "raw_pickle"])
def test_hostile_pickle_is_refused_and_not_executed(tmp_path, model, container):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"format_version": FORMAT_VERSION, "model_config": TINY.to_dict(),
               "state_dict": model.state_dict(), "metadata": {"x": _Hostile(marker)}}
    if container == "torch_zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    # sanity: the payload really is hostile when unpickled without restrictions
    if container == "raw_pickle":
        pickle.loads(path.read_bytes())
        assert marker.exists()
        marker.unlink()
    with pytest.raises(CrossI2PError, match="refused to load.*GLOBAL") as info:
        load_model(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_missing_and_truncated_files(tmp_path, model):
    with pytest.raises(CrossI2PError, match="not found"):
        load_model(tmp_path / "nope.pt")
    path = save_weights(tmp_path / "model.pt", model, {})
    data = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CrossI2PError, match="trunc.pt.*(corrupt|truncated)"):
        load_model(tmp_path / "trunc.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CrossI2PError, match="junk.pt"):
        load_model(tmp_path / "junk.pt")


def test_nan_weights_are_refused(tmp_path, model):
    with torch.no_grad():
        next(model.parameters())[0].fill_(float("nan"))
    path = save_weights(tmp_path / "nan.pt", model, {})
    with pytest.raises(CrossI2PError, match="NaN or Inf"):
        load_model(path)


def _edit(path: Path, fn) -> None:
    payload = torch.load(path, weights_only=True)
    fn(payload)
    torch.save(payload, path)


def test_wrong_version_config_mismatch_and_sha(tmp_path, model):
    path = save_weights(tmp_path / "m.pt", model, {})
    good_sha = file_sha256(path)
    with pytest.raises(CrossI2PError, match="SHA-256"):
        load_model(path, expected_sha256="0" * 64)
    load_model(path, expected_sha256=good_sha.upper())  # hex case does not matter

    _edit(path, lambda p: p.update(format_version=99))
    with pytest.raises(CrossI2PError, match="format_version 99"):
        load_model(path)

    path = save_weights(tmp_path / "m.pt", model, {})
    _edit(path, lambda p: p["model_config"].update(d_model=64))
    with pytest.raises(CrossI2PError, match="shape mismatch"):
        load_model(path)

    path = save_weights(tmp_path / "m.pt", model, {})
    _edit(path, lambda p: p["state_dict"].pop("coarse_matcher.dustbin"))
    with pytest.raises(CrossI2PError, match="missing 1 .*dustbin"):
        load_model(path)

    path = save_weights(tmp_path / "m.pt", model, {})
    _edit(path, lambda p: p["model_config"].update(bogus=1))
    with pytest.raises(CrossI2PError, match="model_config is invalid.*bogus"):
        load_model(path)

    torch.save({"model": model.state_dict()}, tmp_path / "other.pt")
    with pytest.raises(CrossI2PError, match="not a crossi2p weights file"):
        load_model(tmp_path / "other.pt")
