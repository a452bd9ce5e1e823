"""Process-group setup for DistributedDataParallel training under ``torchrun``.

``torchrun`` (c10d rendezvous) sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; without them training runs as a single process. The backend
is NCCL on CUDA and gloo on the CPU (tests, CPU-only machines).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..errors import CrossI2PError


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str) -> torch.device:
    """``cpu`` | ``cuda`` | ``auto`` (CUDA when available) -> a device; errors name the fix."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise CrossI2PError("--device cuda: no CUDA device is available; use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        raise CrossI2PError(f"--device {device}: use cpu, cuda or auto")
    return torch.device(device)


def setup(device: str = "auto") -> DistContext:
    """Join the process group when launched by torchrun; otherwise a single-process context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if world > 1:
        if dev.type == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise CrossI2PError(f"LOCAL_RANK {local_rank}: only {torch.cuda.device_count()} GPU(s) here; "
                                    "start at most one process per GPU (--nproc_per_node)")
            torch.cuda.set_device(local_rank)
            dev = torch.device("cuda", local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    elif dev.type == "cuda":
        dev = torch.device("cuda", torch.cuda.current_device())
    return DistContext(rank, world, local_rank, dev)


def teardown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        # Everyone gets here before anyone destroys the group: a rank tearing gloo down while a peer still
        # has work in flight aborted once in a CI run ("terminate called without an active exception").
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over ranks (a copy; identity when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / dist.get_world_size()


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (a one-element list when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
