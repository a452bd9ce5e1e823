"""Safe reading and writing of CrossI2P weight files.

A weights file is ``torch.save`` of a plain dict::

    {"format_version": 1, "model_config": ModelConfig.to_dict(),
     "state_dict": {name: tensor}, "metadata": {...}}

holding only tensors and plain Python values (dict, list, tuple, str, int,
float, bool, None), so ``torch.load(weights_only=True)`` reads it. Loading
*always* uses ``weights_only=True``: a file that would execute code when
unpickled is refused, never run. Weights come from users and downloads, so
every failure (missing, truncated, hostile, wrong version, mismatched config,
NaN weights, wrong checksum) is a :class:`CrossI2PError` naming the file.
"""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Any

import torch

from ..errors import CrossI2PError
from ..fileio import atomic_write
from .config import ModelConfig
from .crossi2p import CrossI2P

FORMAT_VERSION = 1
_KEYS = ("format_version", "model_config", "state_dict", "metadata")
_PLAIN = (str, int, float, bool, type(None))


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_plain(value: Any, where: str) -> None:
    """Raise TypeError unless ``value`` is tensors and plain Python values only."""
    if isinstance(value, (torch.Tensor,) + _PLAIN):
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} must be str or int")
            _check_plain(v, f"{where}.{k}")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(f"{where}: {type(value).__name__} is not a tensor or plain Python value; "
                    "convert it (e.g. numpy -> .tolist()) so weights_only loading can read it")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the target folder, fsync, then ``os.replace``.

    A crash mid-write leaves the previous file intact, never a truncated one.
    """
    atomic_write(path, lambda f: torch.save(obj, f), binary=True)


def save_weights(path: str | Path, model: CrossI2P, metadata: dict | None = None) -> Path:
    """Write ``model``'s weights, config and ``metadata`` (plain values only) to ``path`` atomically.

    Tensors are stored on the CPU so the file loads on any machine.
    """
    metadata = dict(metadata or {})
    _check_plain(metadata, "metadata")
    model = getattr(model, "module", model)  # DistributedDataParallel wraps the model
    payload = {
        "format_version": FORMAT_VERSION,
        "model_config": model.cfg.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "metadata": metadata,
    }
    atomic_torch_save(payload, path)
    return Path(path)


def safe_torch_load(path: str | Path, what: str = "weights file", map_location: Any = "cpu") -> Any:
    """``torch.load(weights_only=True)`` with every failure turned into a :class:`CrossI2PError`."""
    path = Path(path)
    if not path.is_file():
        raise CrossI2PError(f"{path}: {what} not found; check the path")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "weights only load failed" in text.lower():
            # torch's message also suggests weights_only=False; name only the refused object
            detail = next((ln.strip() for ln in text.splitlines() if "GLOBAL" in ln or "unsupported" in ln.lower()),
                          "a non-tensor object")
            raise CrossI2PError(
                f"{path}: refused to load: the {what} holds Python objects other than tensors and plain "
                f"data, which could run code when unpickled ({detail}); only use files written by crossi2p "
                "from a source you trust") from None
        reason = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise CrossI2PError(f"{path}: {what} is corrupt or truncated ({reason}); download or export it again") from None
    except Exception as exc:  # zip errors, EOF, bad magic: the file is damaged or not a torch file
        reason = str(exc).strip().split(". ")[0] if str(exc).strip() else type(exc).__name__
        raise CrossI2PError(
            f"{path}: not a readable {what} (corrupt, truncated or not written by torch.save: {reason}); "
            "download or export it again") from None


def load_model(path: str | Path, device: str | torch.device = "cpu",
               expected_sha256: str | None = None) -> tuple[CrossI2P, dict]:
    """Load a weights file written by :func:`save_weights`; returns ``(model in eval mode, metadata)``.

    With ``expected_sha256`` the file's checksum is verified *before* it is
    unpickled. Raises :class:`CrossI2PError` for any problem with the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CrossI2PError(f"{path}: weights file not found; check the path or train/export one with `crossi2p train`")
    if expected_sha256 is not None:
        actual = file_sha256(path)
        if actual.lower() != expected_sha256.strip().lower():
            raise CrossI2PError(f"{path}: SHA-256 {actual} does not match the expected {expected_sha256.strip()}; "
                                "the file is damaged or not the published weights, download it again")
    payload = safe_torch_load(path, "weights file", map_location="cpu")
    if not isinstance(payload, dict) or any(k not in payload for k in _KEYS):
        raise CrossI2PError(f"{path}: not a crossi2p weights file (expected keys {list(_KEYS)}); "
                            "a training checkpoint is exported to weights with `crossi2p train`")
    version = payload["format_version"]
    if version != FORMAT_VERSION:
        raise CrossI2PError(f"{path}: weights format_version {version!r} is not supported (this crossi2p reads "
                            f"version {FORMAT_VERSION}); use a matching crossi2p release or re-export the weights")
    try:
        cfg = ModelConfig.from_dict(payload["model_config"])
    except (TypeError, ValueError) as exc:
        raise CrossI2PError(f"{path}: model_config is invalid ({exc}); the file was written by another "
                            "version, export it again with this one") from None
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CrossI2PError(f"{path}: state_dict is not a mapping of tensors; the file is damaged")
    model = CrossI2P(cfg)
    _check_state_matches(path, model, state)
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CrossI2PError(f"{path}: weights contain NaN or Inf in {len(bad)} tensor(s) ({', '.join(bad[:3])}); "
                            "the training run diverged, use an earlier checkpoint")
    model.load_state_dict(state, strict=True)
    metadata = payload["metadata"] if isinstance(payload["metadata"], dict) else {}
    return model.to(device).eval(), metadata


def _check_state_matches(path: Path, model: CrossI2P, state: dict[str, torch.Tensor]) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} ({', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} ({', '.join(unexpected[:3])})")
    if shapes:
        problems.append(f"shape mismatch {len(shapes)} ({'; '.join(shapes[:3])})")
    if problems:
        raise CrossI2PError(f"{path}: weights do not fit the model_config stored with them: {'; '.join(problems)}; "
                            "the file is damaged or was edited, export it again")
