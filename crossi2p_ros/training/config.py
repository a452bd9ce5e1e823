"""Training configuration: one dataclass composed of the model, loss and sample configs.

Defaults live here and in the component configs; a YAML file overrides any
subset, nested like the dataclasses::

    epochs: 40
    batch_size: 8
    model: {num_points: 16384, num_layers: 4}
    samples: {calib_fraction: 0.8, calib: {max_rot_deg: 15}}

Unknown keys are rejected by their full name (``samples.calib.max_rot`` ...),
so a typo never silently trains with a default.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..data.samples import SampleConfig
from ..errors import CrossI2PError
from ..model.config import ModelConfig
from ..registration.pnp import PnPConfig
from .losses import LossConfig

AmpMode = Literal["off", "bf16", "fp16"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on. Steps count optimiser updates; ``batch_size`` is per process."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    samples: SampleConfig = field(default_factory=SampleConfig)
    pnp: PnPConfig = field(default_factory=PnPConfig)   # solver used to score validation pairs
    epochs: int = 20
    steps_per_epoch: int = 0            # 0: one pass over the training frames per epoch
    batch_size: int = 4                 # per process (per GPU under DDP)
    lr: float = 3e-4                    # peak AdamW learning rate
    weight_decay: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 200             # linear warm-up from 0, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.02
    grad_clip: float = 5.0              # max global gradient norm (0 disables)
    gradnorm_alpha: float = 1.5         # GradNorm restoring force
    gradnorm_lr: float = 0.025          # GradNorm weight step size
    val_samples: int = 16               # held-out frames (the tail of the data); each is scored under both protocols
    val_gap: int = 0                    # frames before the held-out block also kept out of training
    val_batch_size: int = 4
    best_metric: str = "calib/rot_median_deg"  # validation summary key selecting best.pt (lower is better)
    num_workers: int = 2
    seed: int = 0
    init_weights: str | None = None     # start from this weights file (e.g. the shipped model), not a random init
    amp: AmpMode = "bf16"               # autocast dtype on CUDA; ignored on CPU
    checkpoint_every_steps: int = 500   # also at every epoch end
    log_every: int = 10                 # steps between scalar logs
    vis_every: int = 200                # steps between match visualisations (0 disables)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "val_batch_size", "log_every", "checkpoint_every_steps"):
            if getattr(self, name) < 1:
                raise CrossI2PError(f"{name} = {getattr(self, name)}: must be at least 1")
        for name in ("steps_per_epoch", "val_samples", "val_gap", "num_workers", "warmup_steps", "vis_every"):
            if getattr(self, name) < 0:
                raise CrossI2PError(f"{name} = {getattr(self, name)}: must not be negative")
        if self.amp not in typing.get_args(AmpMode):
            raise CrossI2PError(f"amp = {self.amp!r}: use one of {typing.get_args(AmpMode)}")
        if self.lr <= 0:
            raise CrossI2PError(f"lr = {self.lr}: must be positive")

    def to_dict(self) -> dict:
        """Plain nested dict (tuples become lists), as YAML and weights metadata store it."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "TrainConfig":
        return from_dict(cls, d, source)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check/convert one YAML value against a field's type hint; raise CrossI2PError naming the key."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise CrossI2PError(f"{where}: expected a mapping of {hint.__name__} fields, got {value!r}")
        return from_dict(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), where)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise CrossI2PError(f"{where}: {value!r} is not one of {list(typing.get_args(hint))}")
        return value
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)) or (Ellipsis not in args and len(value) != len(args)):
            raise CrossI2PError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        item_hints = [args[0]] * len(value) if Ellipsis in args else list(args)
        return tuple(_coerce(v, h, f"{where}[{i}]") for i, (v, h) in enumerate(zip(value, item_hints)))
    if hint is bool:
        if not isinstance(value, bool):
            raise CrossI2PError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise CrossI2PError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CrossI2PError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise CrossI2PError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type, d: dict, where: str = "config") -> Any:
    """Build dataclass ``cls`` from a (nested) dict; unknown keys and wrong types raise CrossI2PError."""
    if not isinstance(d, dict):
        raise CrossI2PError(f"{where}: expected a mapping, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(d) - names)
    if unknown:
        raise CrossI2PError(f"{where}: unknown key(s) {', '.join(f'{where}.{k}' for k in unknown)}; "
                            f"known keys are {', '.join(sorted(names))}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in d.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise CrossI2PError(f"{where}: {exc}") from None


def load_train_config(path: str | Path) -> TrainConfig:
    """Read a YAML training config (any subset of :class:`TrainConfig`; defaults fill the rest)."""
    path = Path(path)
    if not path.is_file():
        raise CrossI2PError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise CrossI2PError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the syntax") from None
    return from_dict(TrainConfig, data, where=path.name)


def dump_train_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the full, resolved config as YAML (what the run actually used)."""
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def merge_dicts(base: dict, override: dict) -> dict:
    """Recursive merge: ``override``'s values win; nested mappings are merged key by key."""
    out = dict(base)
    for k, v in override.items():
        out[k] = merge_dicts(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def build_train_config(config_file: str | Path | None = None, base: dict | None = None,
                       **overrides: Any) -> TrainConfig:
    """Defaults <- ``base`` (e.g. a resumed run's config) <- YAML file <- non-None ``overrides``."""
    d = dict(base or {})
    if config_file is not None:
        path = Path(config_file)
        load_train_config(path)  # validates the file on its own, so errors name it
        d = merge_dicts(d, yaml.safe_load(path.read_text()) or {})
    d = merge_dicts(d, {k: v for k, v in overrides.items() if v is not None})
    return from_dict(TrainConfig, d)
