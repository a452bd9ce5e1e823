"""The training loop: data, optimisation, logging, validation, checkpoints, DDP.

Run layout (``RUN_DIR``)::

    config.yaml             the resolved TrainConfig the run uses
    metrics.jsonl           one JSON object per line: {"split": "train"|"val", "step", "epoch", ...}
    tensorboard/            SummaryWriter events (scalars + match pictures)
    checkpoints/last.pt     resumable state, written atomically every N steps and each epoch end
    checkpoints/best.pt     the checkpoint with the best validation ``best_metric``
    model.pt                final weights (``model.weights.save_weights``)
    replica_sha256.json     per-rank hash of the final parameters (DDP consistency check)

Determinism: the model is initialised from ``seed``; each pair's data comes
from ``(seed, epoch, index)`` (see ``data.samples``); the epoch's order from
``(seed, epoch)``; the losses' random draws from the torch RNG, whose state
(per rank) is in every checkpoint. ``resume`` therefore continues with the
same batches and the same losses as an uninterrupted run (on the CPU; CUDA
kernels and AMP are not bit-reproducible).

DDP: under ``torchrun`` each process trains on its shard of every epoch's
order; gradients are averaged by DistributedDataParallel and GradNorm's
gradient norms and losses by ``all_reduce_mean``, so the loss weights, like
the parameters, stay identical on all replicas. Only rank 0 writes files;
its logged training scalars are its own batch's (validation runs on rank 0).
The epoch order is sharded by :func:`epoch_indices` rather than
``DistributedSampler``: it interleaves ranks the same way, but can also start
mid-epoch (exact resume) and make epochs longer than the data (``steps_per_epoch``).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data.samples import PairDataset, collate, open_sources, validation_split
from ..errors import CrossI2PError
from ..model.crossi2p import CrossI2P
from ..model.weights import file_sha256, load_model, save_weights
from . import distributed as dist_utils
from .checkpoint import Position, capture_rng, load_checkpoint, restore_rng, save_checkpoint
from .config import TrainConfig, dump_train_config
from .gradnorm import GradNorm
from .losses import CrossI2PLoss
from .validation import validate
from .visualize import match_image

LOSS_NAMES = ["align", "corr", "pose"]
# ModelConfig fields that no weight depends on: a warm start may change them
WEIGHT_FREE_FIELDS = ("num_points", "image_height", "image_width")
# Fields that may change when resuming: they do not alter what the next step computes
# (``epochs`` extends or shortens the run; the cosine schedule follows the new length).
RESUMABLE_OVERRIDES = ("epochs", "num_workers", "log_every", "vis_every", "checkpoint_every_steps", "val_batch_size")


def epoch_indices(num_items: int, epoch: int, seed: int, steps: int, batch_size: int, rank: int, world: int
                  ) -> np.ndarray:
    """This rank's item indices for one epoch: ``steps * batch_size`` of them, from ``(seed, epoch)``.

    Successive permutations of the items are concatenated until every rank
    has its share; a repeat ``r`` of item ``i`` is index ``i + r * num_items``,
    which ``PairDataset`` wraps to the same frame with fresh random draws.
    Ranks take interleaved slices, so each sees different pairs.
    """
    need = steps * batch_size * world
    rng = np.random.default_rng((seed, 0x7EA1, epoch))
    reps = -(-need // num_items)
    order = np.concatenate([rng.permutation(num_items) + r * num_items for r in range(reps)])[:need]
    return order[rank::world]


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """LR multiplier: linear warm-up over ``warmup`` steps, then cosine from 1 to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    # Decay only weight matrices and kernels; biases, norms, temperatures and the dustbin stay free.
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    free = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": free, "weight_decay": 0.0}]


def _worker_init(_: int) -> None:
    import cv2

    cv2.setNumThreads(1)  # workers are the parallelism; nested thread pools only oversubscribe
    torch.set_num_threads(1)


def state_sha256(model: torch.nn.Module, gradnorm: GradNorm) -> str:
    """Hash of parameters, buffers and GradNorm weights: equal on every replica when DDP is in sync."""
    h = hashlib.sha256()
    for name, t in list(model.state_dict().items()) + [("gradnorm." + k, v) for k, v in gradnorm.state_dict().items()]:
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass
class StepOutput:
    losses: dict[str, float]
    total: float
    metrics: dict[str, float]
    gradnorm: dict[str, float]
    lr: float
    grad_norm: float
    skipped: bool
    out: object = None       # the network output (for pictures)
    batch: dict = field(default_factory=dict)


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    epoch: int
    weights: Path | None
    best: float | None
    last_val: dict[str, float]


class Trainer:
    """Trains CrossI2P on KITTI-layout folders into ``run_dir``.

    ``cfg`` may be None when resuming (the run's own config is used). A given
    config must match the checkpoint's except for ``RESUMABLE_OVERRIDES``.
    """

    def __init__(self, cfg: TrainConfig | None, data: Sequence[str | Path], run_dir: str | Path,
                 device: str = "auto", resume: bool = False):
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.ctx = dist_utils.setup(device)
        try:
            self._build(cfg, data, resume)
        except BaseException:
            dist_utils.teardown(self.ctx)  # a rank that fails here must not leave the others waiting
            raise

    def _build(self, cfg: TrainConfig | None, data: Sequence[str | Path], resume: bool) -> None:
        if not resume and (self.ckpt_dir / "last.pt").is_file():
            raise CrossI2PError(f"{self.run_dir}: already holds a training run; pass --resume to continue it "
                                "or choose another --out")
        ckpt = self._load_resume_checkpoint() if resume else None
        if ckpt is not None:
            saved = TrainConfig.from_dict(ckpt["config"], "checkpoint config")
            cfg = self._resume_config(saved, cfg)
        elif cfg is None:
            cfg = TrainConfig()
        self.cfg = cfg
        self.device = self.ctx.device
        self.amp_enabled = cfg.amp != "off" and self.device.type == "cuda"
        self.amp_dtype = torch.float16 if cfg.amp == "fp16" else torch.bfloat16

        # data
        sources = open_sources(data)
        self.data_names = [Path(s.root).name for s in sources]  # names only: no local paths in outputs
        num_frames = sum(len(s) for s in sources)
        train_idx, val_idx = validation_split(num_frames, cfg.val_samples, cfg.val_gap)
        self.num_frames = num_frames
        self.train_ds = PairDataset(sources, cfg.samples, cfg.model, frame_indices=train_idx)
        self.val_ds = {p: PairDataset(sources, cfg.samples, cfg.model, frame_indices=val_idx, protocol=p, augment=False)
                       for p in ("calib", "i2p")} if val_idx else {}
        per_step = cfg.batch_size * self.ctx.world_size
        self.steps_per_epoch = cfg.steps_per_epoch or max(1, len(train_idx) // per_step)
        self.total_steps = cfg.epochs * self.steps_per_epoch

        # model and optimisation; the same init on every rank (DDP also broadcasts rank 0's)
        torch.manual_seed(cfg.seed)
        self.raw_model = CrossI2P(cfg.model).to(self.device)
        # the warm start's checksum, for the final weights' metadata (a resumed run does not reload it)
        self.init_sha256 = file_sha256(cfg.init_weights) if cfg.init_weights and Path(cfg.init_weights).is_file() \
            else None
        if ckpt is None and cfg.init_weights:
            self._initialise(Path(cfg.init_weights), cfg)
        self.loss_fn = CrossI2PLoss(cfg.model, cfg.loss).to(self.device)
        self.gradnorm = GradNorm(LOSS_NAMES, cfg.gradnorm_alpha, cfg.gradnorm_lr).to(self.device)
        self.optimizer = torch.optim.AdamW(_param_groups(self.raw_model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas)
        warmup, total, min_ratio = cfg.warmup_steps, self.total_steps, cfg.min_lr_ratio
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: warmup_cosine(s, warmup, total, min_ratio))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_enabled and cfg.amp == "fp16")
        self.position = Position()
        self.best: float | None = None
        self.last_val: dict[str, float] = {}
        # the loss draws (point samples, pose-layer start) differ per rank, reproducibly
        torch.manual_seed(cfg.seed + 100_003 * (self.ctx.rank + 1))
        if ckpt is not None:
            self._restore(ckpt)
        self.model: torch.nn.Module = self.raw_model
        if self.ctx.distributed:
            self.model = DistributedDataParallel(
                self.raw_model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.writer = None
        if self.ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            dump_train_config(cfg, self.run_dir / "config.yaml")
            self._prepare_logs(resumed=ckpt is not None)

    def _initialise(self, path: Path, cfg: TrainConfig) -> None:
        """Load the weights ``path`` into the fresh model (a warm start)."""
        model, _ = load_model(path, "cpu")
        a, b = model.cfg.to_dict(), cfg.model.to_dict()
        diff = ", ".join(f"{k} {a[k]!r} (weights) vs {b[k]!r} (config)" for k in a
                         if a[k] != b[k] and k not in WEIGHT_FREE_FIELDS)
        if diff:
            raise CrossI2PError(f"init_weights {path}: the weights' network differs from the config's model: {diff}; "
                                "set model: to match the weights or drop init_weights")
        self.raw_model.load_state_dict(model.state_dict())

    # ------------------------------------------------------------------ resume
    def _load_resume_checkpoint(self) -> dict:
        path = self.ckpt_dir / "last.pt"
        if not path.is_file():
            raise CrossI2PError(f"{path}: no checkpoint to resume from; "
                                f"drop --resume to start a new run in {self.run_dir}")
        return load_checkpoint(path)

    @staticmethod
    def _resume_config(saved: TrainConfig, given: TrainConfig | None) -> TrainConfig:
        if given is None:
            return saved
        a, b = saved.to_dict(), given.to_dict()
        changed = sorted(k for k in a if a[k] != b[k] and k not in RESUMABLE_OVERRIDES)
        if changed:
            raise CrossI2PError(f"--resume: the config differs from the run's in {', '.join(changed)}; "
                                f"only {', '.join(RESUMABLE_OVERRIDES)} may change, start a new run for the rest")
        return replace(saved, **{k: getattr(given, k) for k in RESUMABLE_OVERRIDES})

    def _restore(self, ckpt: dict) -> None:
        if ckpt["num_frames"] != self.num_frames:
            raise CrossI2PError(f"--resume: the run trained on {ckpt['num_frames']} frames, the given --data has "
                                f"{self.num_frames}; pass the same data folders to continue the run")
        self.raw_model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.gradnorm.load_state_dict(ckpt["gradnorm"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.position = Position(ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"])
        self.best = ckpt["best"]
        rng = ckpt["rng"]
        if len(rng) == self.ctx.world_size:
            restore_rng(rng[self.ctx.rank])
        elif self.ctx.is_main:
            tqdm.write(f"resume: the run used {len(rng)} process(es), now {self.ctx.world_size}: "
                       "training continues, but not bit-identically to an uninterrupted run")

    # ------------------------------------------------------------------ logging
    def _prepare_logs(self, resumed: bool) -> None:
        from torch.utils.tensorboard import SummaryWriter

        pos = self.position
        metrics = self.run_dir / "metrics.jsonl"
        if not resumed:
            metrics.unlink(missing_ok=True)  # left by a run that stopped before its first checkpoint
        elif metrics.is_file():
            # Drop what a crashed run logged after its last checkpoint: those steps run again.
            # (A validation record at the checkpoint's step is kept only if the checkpoint followed it.)
            def before(r: dict) -> bool:
                return r["step"] < pos.step or (r["step"] == pos.step and r["epoch"] <= pos.epoch)

            lines = [ln for ln in metrics.read_text().splitlines() if ln.strip() and before(json.loads(ln))]
            tmp = metrics.with_name(".metrics.jsonl.tmp")
            tmp.write_text("".join(ln + "\n" for ln in lines))
            os.replace(tmp, metrics)
        # purge_step hides TensorBoard events a crashed run wrote past its checkpoint
        self.writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=pos.step)

    def _append_metrics(self, record: dict) -> None:
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def _log_train(self, window: list[StepOutput]) -> None:
        pos, last = self.position, window[-1]
        mean = lambda key, attr: float(np.mean([getattr(s, attr)[key] for s in window]))  # noqa: E731
        losses = {k: mean(k, "losses") for k in LOSS_NAMES}
        metrics = {k: float(np.nanmean([s.metrics.get(k, np.nan) for s in window])) for k in last.metrics}
        total = float(np.mean([s.total for s in window]))
        w = self.writer
        for k, v in losses.items():
            w.add_scalar(f"loss/{k}", v, pos.step)
        w.add_scalar("loss/total", total, pos.step)
        w.add_scalar("lr", last.lr, pos.step)
        w.add_scalar("grad_norm/global", last.grad_norm, pos.step)
        for k, v in last.gradnorm.items():
            w.add_scalar(f"gradnorm/{k}", v, pos.step)
        for k, v in metrics.items():
            w.add_scalar(f"train/{k}", v, pos.step)
        self._append_metrics({"split": "train", "step": pos.step, "epoch": pos.epoch, "time": time.time(),
                              "lr": last.lr, "loss": losses, "total": total, "gradnorm": last.gradnorm,
                              "metrics": metrics, "skipped_steps": sum(s.skipped for s in window)})

    # ------------------------------------------------------------------ one step
    def _to_device(self, batch: dict) -> dict:
        nb = self.device.type == "cuda"
        return {k: v.to(self.device, non_blocking=nb) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def train_step(self, batch: dict) -> StepOutput:
        """One optimiser update on ``batch`` (as ``collate`` makes it)."""
        cfg = self.cfg
        self.model.train()
        batch = self._to_device(batch)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_enabled):
            out = self.model(batch["image"], batch["points"])
            result = self.loss_fn(self.raw_model, out, batch)
        losses = {k: result.losses[k].float() for k in LOSS_NAMES}
        all_reduce = dist_utils.all_reduce_mean if self.ctx.distributed else None
        total = self.gradnorm.combine(losses, self.raw_model.shared_parameters(), all_reduce=all_reduce)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), max_norm)
        # DDP averaged the gradients first, so every rank takes the same decision here
        skipped = not bool(torch.isfinite(grad_norm))
        if skipped:
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.scaler.step(self.optimizer)
        self.scaler.update()
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        return StepOutput({k: float(v.detach()) for k, v in losses.items()}, float(total.detach()),
                          dict(result.metrics), dict(self.gradnorm.last_stats), lr, float(grad_norm), skipped,
                          out, batch)

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint(self, best: bool = False) -> None:
        """Save ``last.pt`` (collective: gathers every rank's RNG state); rank 0 writes."""
        rng = dist_utils.all_gather_object(capture_rng())
        if self.ctx.is_main:
            path = self.ckpt_dir / "last.pt"
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            save_checkpoint(path, model_state=self.raw_model.state_dict(), optimizer=self.optimizer.state_dict(),
                            scheduler=self.scheduler.state_dict(), gradnorm=self.gradnorm.state_dict(),
                            scaler=self.scaler.state_dict(), position=self.position, best=self.best,
                            config=self.cfg.to_dict(), num_frames=self.num_frames, rng_per_rank=rng)
            if best:
                tmp = self.ckpt_dir / ".best.pt.tmp"
                shutil.copyfile(path, tmp)
                os.replace(tmp, self.ckpt_dir / "best.pt")
        dist_utils.barrier()

    # ------------------------------------------------------------------ epoch end
    def _validate(self) -> bool:
        """Validate on rank 0, log, and return whether the best metric improved (same answer on all ranks)."""
        improved = False
        if self.ctx.is_main and self.val_ds:
            cfg = self.cfg
            val = validate(self.raw_model, self.val_ds, self.device, cfg.pnp, cfg.samples.calib, cfg.samples.i2p,
                           self.loss_fn, cfg.val_batch_size, num_workers=0)
            self.last_val = val
            for k, v in val.items():
                self.writer.add_scalar(f"val/{k}", v, self.position.step)
            score = val.get(cfg.best_metric)
            if score is not None and np.isfinite(score) and (self.best is None or score < self.best):
                self.best, improved = float(score), True
            self._append_metrics({"split": "val", "step": self.position.step, "epoch": self.position.epoch,
                                  "time": time.time(), "val": val, "best": self.best})
            self.writer.flush()
        return bool(dist_utils.broadcast_object(improved))

    # ------------------------------------------------------------------ loop
    def _loader(self, epoch: int, skip_batches: int) -> DataLoader:
        cfg = self.cfg
        indices = epoch_indices(len(self.train_ds), epoch, cfg.seed, self.steps_per_epoch, cfg.batch_size,
                                self.ctx.rank, self.ctx.world_size)
        self.train_ds.set_epoch(epoch)
        # A generator of its own: DataLoader draws worker base seeds from it, which would otherwise
        # consume the global torch RNG whenever an iterator starts and shift the losses' draws on resume.
        generator = torch.Generator().manual_seed(cfg.seed + epoch)
        sampler = indices[skip_batches * cfg.batch_size:].tolist()  # resuming mid-epoch skips done batches
        return DataLoader(self.train_ds, batch_size=cfg.batch_size, sampler=sampler,
                          collate_fn=collate, num_workers=cfg.num_workers, pin_memory=self.device.type == "cuda",
                          worker_init_fn=_worker_init if cfg.num_workers else None, generator=generator,
                          # Workers are re-created every epoch, after the main process has run torch and
                          # OpenCV thread pools: a forked child can inherit a held lock and hang for ever
                          # (seen here after the first validation). Spawned workers start clean.
                          multiprocessing_context="spawn" if cfg.num_workers else None)

    def fit(self, stop_at_step: int | None = None) -> TrainResult:
        """Train to the end (or until ``stop_at_step``, saving a checkpoint there, e.g. to test resuming)."""
        cfg, pos = self.cfg, self.position
        bar = tqdm(total=self.total_steps, initial=pos.step, desc="train", unit="step", dynamic_ncols=True,
                   disable=not self.ctx.is_main)
        window: list[StepOutput] = []
        try:
            while pos.epoch < cfg.epochs:
                for batch in self._loader(pos.epoch, pos.batch_in_epoch):
                    step = self.train_step(batch)
                    pos.step += 1
                    pos.batch_in_epoch += 1
                    window.append(step)
                    bar.update(1)
                    if self.ctx.is_main:
                        bar.set_postfix(loss=f"{step.total:.3f}", epoch=pos.epoch, refresh=False)
                        if pos.step % cfg.log_every == 0:
                            self._log_train(window)
                        if cfg.vis_every and pos.step % cfg.vis_every == 0:
                            self.writer.add_image("matches", match_image(step.out, step.batch, cfg.model), pos.step,
                                                  dataformats="HWC")
                    if pos.step % cfg.log_every == 0:
                        window = []
                    step.out = step.batch = None  # free the graph's tensors before the next step
                    if pos.step % cfg.checkpoint_every_steps == 0 or pos.step == stop_at_step:
                        self._checkpoint()
                    if stop_at_step is not None and pos.step >= stop_at_step:
                        return self._result(None)
                pos.epoch += 1
                pos.batch_in_epoch = 0
                improved = self._validate()
                self._checkpoint(best=improved)
        finally:
            bar.close()
            if self.writer is not None:
                self.writer.flush()
        return self._finish()

    def _finish(self) -> TrainResult:
        hashes = dist_utils.all_gather_object(state_sha256(self.raw_model, self.gradnorm))
        weights = None
        if self.ctx.is_main:
            replicas = {str(r): h for r, h in enumerate(hashes)}
            (self.run_dir / "replica_sha256.json").write_text(json.dumps(replicas, indent=1))
            if len(set(hashes)) > 1:
                tqdm.write("warning: DDP replicas ended with different parameters; see replica_sha256.json")
            weights = save_weights(self.run_dir / "model.pt", self.raw_model, {
                "step": self.position.step, "epoch": self.position.epoch, "data": self.data_names,
                "num_frames": self.num_frames, "train_config": self.cfg.to_dict(), "validation": self.last_val,
                "init_weights_sha256": self.init_sha256,
                "best_metric": self.cfg.best_metric, "best": self.best,
                "note": "final weights; checkpoints/best.pt holds the best validation checkpoint"})
            self.writer.close()
        dist_utils.barrier()
        return self._result(weights)

    def _result(self, weights: Path | None) -> TrainResult:
        return TrainResult(self.run_dir, self.position.step, self.position.epoch, weights, self.best, self.last_val)

    def close(self) -> None:
        """Leave the process group (when this trainer joined one)."""
        dist_utils.teardown(self.ctx)
