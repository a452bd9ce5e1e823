"""Validation on held-out pairs: pose accuracy per protocol, as ``crossi2p eval`` scores it.

Each pair is registered from scratch with the coarse-to-fine PnP solver
(:func:`~crossi2p_ros.registration.pnp.estimate_pose_pnp`) and scored with
``geometry.pose_error``. When the solver fails the pose stays at the prior
(the identity in the input frame): for ``calib`` that is the initial guess,
for ``i2p`` an arbitrary pose, which is how a failed estimate behaves in use;
either way a failed solve never counts as a success.
The losses of the pairs are averaged as well, for comparison with training.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data.perturb import CalibProtocol, I2PProtocol
from ..data.samples import PairDataset, collate
from ..geometry import pose_error
from ..model.crossi2p import CrossI2P
from ..registration.pnp import PnPConfig, estimate_pose_pnp
from .losses import CrossI2PLoss


def summarize(rot: np.ndarray, trans: np.ndarray, rre: np.ndarray, success: np.ndarray) -> dict[str, float]:
    """Summary statistics of per-sample errors (degrees, metres), named as DESIGN.md's eval contract."""
    if rot.size == 0:
        return {"n": 0}
    return {
        "n": int(rot.size),
        "rot_median_deg": float(np.median(rot)), "trans_median_m": float(np.median(trans)),
        "rot_mean_deg": float(np.mean(rot)), "trans_mean_m": float(np.mean(trans)),
        "rot_p95_deg": float(np.percentile(rot, 95)), "trans_p95_m": float(np.percentile(trans, 95)),
        "rre_mean_deg": float(np.mean(rre)), "rte_mean_m": float(np.mean(trans)),
        "success_rate": float(np.mean(success)),
    }


@torch.no_grad()
def validate(model: CrossI2P, datasets: Mapping[str, PairDataset], device: torch.device, pnp_cfg: PnPConfig,
             calib: CalibProtocol, i2p: I2PProtocol, loss_fn: CrossI2PLoss | None = None,
             batch_size: int = 4, num_workers: int = 0) -> dict[str, float]:
    """Flat summary ``{"<protocol>/<stat>": value}`` over each protocol's dataset.

    Runs under a forked RNG so validation never changes the training run's random stream.
    """
    was_training = model.training
    model.eval()
    summary: dict[str, float] = {}
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(0)  # the losses sample points at random: same draws every validation
        for protocol, ds in datasets.items():
            rot, trans, rre, success, pnp_ok = [], [], [], [], []
            sums: dict[str, float] = {}
            batches = 0
            loader = DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=num_workers)
            for batch in loader:
                batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
                out = model(batch["image"], batch["points"])
                if loss_fn is not None:
                    result = loss_fn(model, out, batch)
                    for k, v in result.metrics.items():
                        sums[k] = sums.get(k, 0.0) + float(v)
                    batches += 1
                K = batch["K"].double().cpu().numpy()
                T_gt = batch["T_gt"].double().cpu().numpy()
                for b in range(len(batch["id"])):  # PnP is per sample (RANSAC on the CPU)
                    res = estimate_pose_pnp(model, out, b, K[b], pnp_cfg)
                    err = pose_error(res.T, T_gt[b])
                    proto = calib if protocol == "calib" else i2p
                    rot.append(err.rot_deg)
                    trans.append(err.trans_m)
                    rre.append(err.rre_deg)
                    success.append(res.success and proto.is_success(err))
                    pnp_ok.append(res.success)
            stats = summarize(np.array(rot), np.array(trans), np.array(rre), np.array(success, dtype=bool))
            if pnp_ok:
                stats["pnp_success_rate"] = float(np.mean(pnp_ok))
            stats.update({k: v / max(batches, 1) for k, v in sums.items()})
            summary.update({f"{protocol}/{k}": v for k, v in stats.items()})
    model.train(was_training)
    return summary
