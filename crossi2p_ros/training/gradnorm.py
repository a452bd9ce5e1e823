"""Dynamic gradient normalisation (GradNorm, Chen et al., ICML 2018).

Balances the ``align``, ``corr`` and ``pose`` losses with learnable weights
``w_i`` (kept summing to the number of losses). At every step, on a layer all
losses reach (``CrossI2P.shared_parameters``):

* ``G_i = w_i * ||d L_i / d W||`` is each weighted loss's gradient norm;
* ``r_i = (L_i / L_i(0)) / mean_j(L_j / L_j(0))`` is its relative inverse
  training rate: above 1 for a loss that has fallen *less* than the others;
* the weights descend ``sum_i |G_i - mean(G) * r_i^alpha|`` (targets held
  constant), so **a loss that trains more slowly, or whose gradients are
  smaller, gets a larger weight**, and a loss that dominates the shared layer
  gets a smaller one.

Because ``G_i`` is linear in ``w_i``, the gradient of that objective is
``sign(G_i - target_i) * ||d L_i / d W||``: no second-order autograd is needed.
Under DDP, pass ``all_reduce`` (a mean over ranks) so every replica updates
the weights identically.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class GradNorm(nn.Module):
    def __init__(self, names: list[str], alpha: float = 1.5, lr: float = 0.025, min_weight: float = 0.05):
        super().__init__()
        self.names = list(names)
        self.alpha = alpha
        self.lr = lr
        self.min_weight = min_weight
        self.weights = nn.Parameter(torch.ones(len(names)), requires_grad=False)
        self.register_buffer("initial_losses", torch.zeros(len(names)))
        self.register_buffer("initialised", torch.tensor(False))
        self.last_stats: dict[str, float] = {}

    def combine(self, losses: dict[str, torch.Tensor], shared_params: list[nn.Parameter],
                all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Weighted total loss for ``backward()``; updates the weights as a side effect."""
        values = [losses[n] for n in self.names]
        norms = []
        for value in values:
            grads = torch.autograd.grad(value, shared_params, retain_graph=True, allow_unused=True)
            sq = sum((g.float() ** 2).sum() for g in grads if g is not None)
            norms.append(torch.as_tensor(sq, dtype=torch.float32, device=self.weights.device).sqrt())
        grad_norms = torch.stack(norms).detach()
        loss_now = torch.stack([v.detach().float() for v in values]).to(self.weights.device)
        if all_reduce is not None:
            grad_norms = all_reduce(grad_norms)
            loss_now = all_reduce(loss_now)
        # a non-finite loss or gradient (the trainer skips that step's update) would make the weights and
        # the initial losses NaN for the rest of the run: such a step leaves the balance as it is
        if bool(torch.isfinite(grad_norms).all() and torch.isfinite(loss_now).all()):
            self._update(grad_norms, loss_now)
        w = self.weights.detach().to(values[0].device)
        return sum(w[i] * values[i] for i in range(len(values)))

    @torch.no_grad()
    def _update(self, grad_norms: torch.Tensor, loss_now: torch.Tensor) -> None:
        if not bool(self.initialised):
            self.initial_losses.copy_(loss_now.clamp_min(1e-8))
            self.initialised.fill_(True)
        G = self.weights * grad_norms
        ratio = loss_now / self.initial_losses
        r = ratio / ratio.mean().clamp_min(1e-12)
        target = G.mean() * r.pow(self.alpha)
        step = torch.sign(G - target) * grad_norms
        # Normalise the step by the mean gradient norm so ``lr`` is scale-free.
        new = (self.weights - self.lr * step / grad_norms.mean().clamp_min(1e-12)).clamp_min(self.min_weight)
        self.weights.copy_(new * len(self.names) / new.sum())
        self.last_stats = {f"weight/{n}": float(self.weights[i]) for i, n in enumerate(self.names)}
        self.last_stats.update({f"grad_norm/{n}": float(grad_norms[i]) for i, n in enumerate(self.names)})
        self.last_stats.update({f"train_rate/{n}": float(r[i]) for i, n in enumerate(self.names)})
