"""Self-supervised losses and GradNorm balancing."""
import pytest
import torch
import torch.nn.functional as F

from crossi2p_ros.model import CrossI2P
from crossi2p_ros.model.crossi2p import CrossI2POutput
from crossi2p_ros.model.matching import CoarseScores
from crossi2p_ros.model.point_encoder import group_points
from crossi2p_ros.training.gradnorm import GradNorm
from crossi2p_ros.training.losses import (CrossI2PLoss, coarse_overlap, project_ground_truth, sample_fine_map)
from test_model import TINY, _inputs


def _batch(seed=0):
    img, pts = _inputs(seed=seed)
    B = pts.shape[0]
    K = torch.tensor([[100.0, 0, 95.5], [0, 100.0, 31.5], [0, 0, 1]]).expand(B, 3, 3)
    return dict(image=img, points=pts, K=K, T_gt=torch.eye(4).expand(B, 4, 4).clone())


def _handmade_output(batch, aligned: bool) -> CrossI2POutput:
    """Embeddings that agree with the extrinsic (aligned) or are shuffled against it."""
    pts, cfg = batch["points"], TINY
    groups = group_points(pts[..., :3], cfg.num_superpoints, cfg.knn)
    gt = project_ground_truth(pts, batch["T_gt"], batch["K"], cfg, 0.5)
    P = cfg.coarse_shape[0] * cfg.coarse_shape[1]
    overlap = coarse_overlap(gt, groups.assign, cfg.num_superpoints, P)
    if not aligned:
        overlap = overlap[:, :, torch.randperm(P, generator=torch.Generator().manual_seed(0))]
    sim = 8.0 * (overlap > 0).float()
    B, M, _ = sim.shape
    rows = torch.cat([sim, torch.full((B, M, 1), 4.0)], 2).log_softmax(-1)
    cols = torch.cat([sim.transpose(1, 2), torch.full((B, P, 1), 4.0)], 2).log_softmax(-1)
    fine_map = F.normalize(torch.randn(B, cfg.fine_dim, *cfg.fine_shape, generator=torch.Generator().manual_seed(1)), dim=1)
    point_embed = sample_fine_map(fine_map, gt.uv, cfg)
    if not aligned:
        point_embed = point_embed[:, torch.randperm(pts.shape[1], generator=torch.Generator().manual_seed(2))]
    return CrossI2POutput(groups, CoarseScores(sim, rows, cols), fine_map, point_embed,
                          torch.zeros(B, P, cfg.d_model), torch.zeros(B, M, cfg.d_model), pts)


def test_dual_path_contrastive_loss_is_lower_for_aligned_than_shuffled_pairs():
    batch = _batch()
    model = CrossI2P(TINY)
    loss_fn = CrossI2PLoss(TINY)
    torch.manual_seed(0)
    aligned = loss_fn(model, _handmade_output(batch, True), batch)
    torch.manual_seed(0)
    shuffled = loss_fn(model, _handmade_output(batch, False), batch)
    assert aligned.losses["align"] < 0.5 * shuffled.losses["align"]
    assert aligned.losses["corr"] < shuffled.losses["corr"]
    assert aligned.metrics["coarse_precision"] > 0.9 > shuffled.metrics["coarse_precision"]


def test_losses_are_finite_and_reach_every_part_of_the_network():
    batch = _batch()
    model = CrossI2P(TINY)
    out = model(batch["image"], batch["points"])
    result = CrossI2PLoss(TINY)(model, out, batch)
    assert set(result.losses) == {"align", "corr", "pose"}
    total = sum(result.losses.values())
    assert torch.isfinite(total)
    total.backward()
    for name in ("image_encoder", "point_encoder", "transformer", "fine_decoder", "point_fine", "coarse_matcher"):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(name) and p.grad is not None]
        assert grads and sum(float(g.abs().sum()) for g in grads) > 0, name
    for name in ("align", "corr", "pose"):
        out = model(batch["image"], batch["points"])
        value = CrossI2PLoss(TINY)(model, out, batch).losses[name]
        grads = torch.autograd.grad(value, model.shared_parameters(), allow_unused=True)
        assert any(g is not None and g.abs().sum() > 0 for g in grads), f"{name} does not reach the shared layer"


def test_a_sample_with_fewer_visible_points_than_the_fine_losses_sample_keeps_every_loss_finite():
    # an i2p sample shifted metres away can leave a handful of points in the image: the fine losses then pad
    # with invisible points, whose windows lie outside the image (all logits -inf); left in the sums they
    # made `corr` NaN (0 * inf) and with it the GradNorm statistics of the whole run
    batch = _batch()
    pts = batch["points"].clone()
    pts[1, 40:, 2] = -5.0                                  # behind the camera: 40 points left to see
    batch["points"] = pts
    model = CrossI2P(TINY)
    out = model(batch["image"], batch["points"])
    loss_fn = CrossI2PLoss(TINY)
    assert loss_fn.cfg.fine_points > 40
    result = loss_fn(model, out, batch)
    for name, value in result.losses.items():
        assert torch.isfinite(value), (name, value)
    sum(result.losses.values()).backward()
    for name, param in model.named_parameters():
        assert param.grad is None or torch.isfinite(param.grad).all(), name


def _toy_problem(scale_a: float, scale_b: float, steps: int, rate_b: float = 1.0):
    """Two losses on one shared parameter vector; returns the final GradNorm weights."""
    torch.manual_seed(0)
    x = torch.nn.Parameter(torch.randn(8))
    target_a, target_b = torch.randn(8), torch.randn(8)
    gn = GradNorm(["a", "b"], alpha=1.5, lr=0.05)
    opt = torch.optim.SGD([x], lr=1e-3)
    for _ in range(steps):
        la = scale_a * ((x - target_a) ** 2).mean()
        lb = scale_b * ((x - target_b) ** 2).mean() * rate_b
        total = gn.combine({"a": la, "b": lb}, [x])
        opt.zero_grad()
        total.backward()
        opt.step()
    return gn


def test_gradnorm_lowers_the_weight_of_the_loss_with_larger_gradients():
    gn = _toy_problem(scale_a=10.0, scale_b=1.0, steps=60)
    w = dict(zip(gn.names, gn.weights.tolist()))
    assert w["a"] < 1.0 < w["b"], w
    assert abs(sum(w.values()) - 2.0) < 1e-5  # weights renormalised to the number of losses
    g = gn.last_stats
    # weighted gradient norms are pulled together
    assert abs(w["a"] * g["grad_norm/a"] - w["b"] * g["grad_norm/b"]) < abs(g["grad_norm/a"] - g["grad_norm/b"])


def test_gradnorm_raises_the_weight_of_the_loss_that_trains_slower():
    torch.manual_seed(0)
    gn = GradNorm(["fast", "slow"], alpha=1.5, lr=0.05)
    shared = torch.nn.Parameter(torch.ones(4))
    for step in range(40):
        # same gradient norms, but "fast" has fallen to a tenth of its start while "slow" has not moved
        slow = (shared ** 2).sum()
        fast = slow - (0.0 if step == 0 else 0.9 * float(slow.detach()))  # same gradient, value down to 10 %
        gn.combine({"fast": fast, "slow": slow}, [shared])
    w = dict(zip(gn.names, gn.weights.tolist()))
    assert w["slow"] > 1.0 > w["fast"], w
    assert gn.last_stats["train_rate/slow"] > 1.0 > gn.last_stats["train_rate/fast"]


def test_a_step_with_a_non_finite_loss_leaves_the_gradnorm_balance_as_it_is():
    x = torch.nn.Parameter(torch.randn(8, generator=torch.Generator().manual_seed(0)))
    gn = GradNorm(["a", "b"], alpha=1.5, lr=0.05)
    for broken in (True, False, True, False):
        la = ((x - 1) ** 2).mean()
        lb = (x ** 2).mean() * (float("nan") if broken else 3.0)
        before = gn.weights.clone()
        gn.combine({"a": la, "b": lb}, [x])
        assert torch.isfinite(gn.weights).all() and torch.isfinite(gn.initial_losses).all()
        assert torch.equal(gn.weights, before) == broken     # a finite step still moves the balance
    assert gn.initial_losses[1] == pytest.approx(float((x.detach() ** 2).mean() * 3.0), rel=1e-6)
