"""Resumable training checkpoints (``RUN_DIR/checkpoints/last.pt``, ``best.pt``).

A checkpoint is a plain dict of tensors and Python values, written atomically
(temp file + ``os.replace``) and read back with ``weights_only=True`` like
weights files. It holds everything the next step depends on: model,
optimiser, LR schedule, GradNorm, GradScaler, the step/epoch/batch position,
the config, and every rank's RNG states, so a resumed run draws the same
random numbers as an uninterrupted one.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CrossI2PError
from ..model.weights import atomic_torch_save, safe_torch_load

CHECKPOINT_VERSION = 1


def capture_rng() -> dict:
    """This process's RNG states (torch CPU/CUDA, numpy, Python) as plain values."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        "python": _plain_python_state(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _plain_python_state(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Position:
    """Where training stands: optimiser steps done, current epoch, batches of it already consumed."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


def save_checkpoint(path: Path, *, model_state: dict, optimizer: dict, scheduler: dict, gradnorm: dict,
                    scaler: dict, position: Position, best: float | None, config: dict, num_frames: int,
                    rng_per_rank: list[dict]) -> None:
    atomic_torch_save({
        "format_version": CHECKPOINT_VERSION,
        "model": {k: v.detach().cpu() for k, v in model_state.items()},
        "optimizer": optimizer,
        "scheduler": scheduler,
        "gradnorm": gradnorm,
        "scaler": scaler,
        "step": position.step,
        "epoch": position.epoch,
        "batch_in_epoch": position.batch_in_epoch,
        "best": best,
        "config": config,
        "num_frames": num_frames,
        "rng": rng_per_rank,
    }, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (never executes code from the file)."""
    ckpt = safe_torch_load(path, "training checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format_version") != CHECKPOINT_VERSION:
        raise CrossI2PError(f"{path}: not a crossi2p training checkpoint of version {CHECKPOINT_VERSION}; "
                            "start a new run in another folder, or drop --resume")
    return ckpt
