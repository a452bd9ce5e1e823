"""Shapes and masking of every CrossI2P block, and the differentiable pose layer."""

import numpy as np
import pytest
import torch

from crossi2p_ros import geometry as g
from crossi2p_ros.model import CrossI2P, ModelConfig, lie
from crossi2p_ros.model.attention import LinearAttention, sine_encoding_2d
from crossi2p_ros.model.image_encoder import FineDecoder, ImageEncoder
from crossi2p_ros.model.matching import fine_pixel_centers
from crossi2p_ros.model.point_encoder import PointEncoder, farthest_point_sample, group_points
from crossi2p_ros.model.pose import gauss_newton_pose

TINY = ModelConfig(image_height=64, image_width=192, num_points=1024, num_superpoints=64, knn=16, d_model=32,
                   num_layers=1, image_channels=(16, 16, 32), fine_dim=32, point_feat=32)


def _inputs(cfg=TINY, B=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    xyz = torch.cat([torch.rand(B, cfg.num_points, 2, generator=gen) * 20 - 10,
                     torch.rand(B, cfg.num_points, 1, generator=gen) * 20 + 5], -1)
    pts = torch.cat([xyz, torch.rand(B, cfg.num_points, 1, generator=gen)], -1)
    return torch.rand(B, 3, cfg.image_height, cfg.image_width, generator=gen), pts


def test_image_encoder_and_decoder_shapes():
    enc, dec = ImageEncoder(TINY), FineDecoder(TINY)
    coarse, s4, s2 = enc(torch.rand(2, 3, 64, 192))
    assert coarse.shape == (2, 32, 8, 24) and s4.shape[-2:] == (16, 48) and s2.shape[-2:] == (32, 96)
    assert dec(coarse, s4, s2).shape == (2, TINY.fine_dim, 32, 96)


def test_farthest_point_sampling_spreads_and_grouping_is_consistent():
    _, pts = _inputs()
    idx = farthest_point_sample(pts[..., :3], 64)
    assert idx.shape == (2, 64) and all(len(set(row.tolist())) == 64 for row in idx)
    groups = group_points(pts[..., :3], 64, 16)
    assert groups.centers.shape == (2, 64, 3) and groups.knn.shape == (2, 64, 16) and groups.assign.shape == (2, 1024)
    # every point's assigned centre is its nearest one
    d = torch.cdist(pts[..., :3], groups.centers)
    assert torch.equal(groups.assign, d.argmin(-1))
    # FPS centres are spread: the minimum pairwise distance beats a random subset's
    rand = pts[:, :64, :3]
    off = ~torch.eye(64, dtype=torch.bool)
    assert torch.cdist(groups.centers, groups.centers)[:, off].min() > torch.cdist(rand, rand)[:, off].min()


def test_point_encoder_is_translation_invariant_apart_from_position_encoding():
    enc = PointEncoder(TINY).eval()
    _, pts = _inputs()
    shifted = pts.clone()
    shifted[..., :3] += torch.tensor([5.0, -3.0, 2.0])
    a = enc(pts, group_points(pts[..., :3], 64, 16))
    b = enc(shifted, group_points(shifted[..., :3], 64, 16))
    assert torch.allclose(a[0], b[0], atol=1e-4) and torch.allclose(a[1], b[1], atol=1e-4)


def test_sine_encoding_is_distinct_per_cell():
    pe = sine_encoding_2d(8, 24, 32)
    assert pe.shape == (192, 32)
    assert torch.cdist(pe, pe)[~torch.eye(192, dtype=torch.bool)].min() > 1e-3


def test_full_model_shapes_dustbins_and_normalised_embeddings():
    model = CrossI2P(TINY).eval()
    img, pts = _inputs()
    out = model(img, pts)
    P = 8 * 24
    assert out.coarse.sim.shape == (2, 64, P)
    assert out.coarse.point_to_image.shape == (2, 64, P + 1) and out.coarse.image_to_point.shape == (2, P, 65)
    assert torch.allclose(out.coarse.point_to_image.exp().sum(-1), torch.ones(2, 64), atol=1e-5)
    assert torch.allclose(out.coarse.image_to_point.exp().sum(-1), torch.ones(2, P), atol=1e-5)
    assert out.coarse.match_probability().shape == (2, 64, P)
    assert torch.allclose(out.fine_map.norm(dim=1), torch.ones(1), atol=1e-4)
    assert out.point_embed.shape == (2, 1024, TINY.fine_dim)
    assert torch.allclose(out.point_embed.norm(dim=-1), torch.ones(1), atol=1e-4)


def test_fine_windows_mask_outside_image_and_soft_argmax_stays_in_window():
    model = CrossI2P(TINY).eval()
    img, pts = _inputs()
    out = model(img, pts)
    idx = torch.arange(8).expand(2, -1)
    cells = torch.tensor([0, 23, 8 * 24 - 1, 100, 50, 60, 70, 80]).expand(2, -1)  # corners included
    fine = model.match_fine(out, idx, cells)
    W = TINY.fine_window
    assert fine.logits.shape == (2, 8, W * W)
    corner = fine.logits[0, 0].view(W, W)
    assert torch.isinf(corner[0, 0]) and torch.isfinite(corner[-1, -1])  # top-left window hangs off the image
    lo = fine_pixel_centers(fine.window_origin, TINY.fine_stride)
    hi = fine_pixel_centers(fine.window_origin + W - 1, TINY.fine_stride)
    assert torch.all(fine.uv >= lo - 1e-4) and torch.all(fine.uv <= hi + 1e-4)
    assert torch.all(fine.std_px > 0) and torch.all((fine.confidence > 0) & (fine.confidence <= 1))


def test_se3_exp_matches_numpy_and_is_differentiable_at_zero():
    xi = torch.tensor(np.random.default_rng(0).normal(size=(5, 6)), dtype=torch.float64)
    assert np.allclose(lie.se3_exp(xi).numpy(), g.se3_exp(xi.numpy()), atol=1e-12)
    z = torch.zeros(1, 6, dtype=torch.float64, requires_grad=True)
    lie.se3_exp(z).sum().backward()
    assert torch.isfinite(z.grad).all()


def test_gauss_newton_recovers_pose_from_exact_matches_and_ignores_zero_weights():
    gen = torch.Generator().manual_seed(1)
    X = torch.cat([torch.rand(1, 200, 2, generator=gen) * 10 - 5, torch.rand(1, 200, 1, generator=gen) * 20 + 5], -1).double()
    K = torch.tensor([[[300.0, 0, 160], [0, 300, 120], [0, 0, 1]]], dtype=torch.float64)
    T_true = lie.se3_exp(torch.tensor([[0.1, -0.05, 0.2, 0.02, -0.03, 0.01]], dtype=torch.float64))
    uv = lie.project(K, lie.transform(T_true, X))
    w = torch.ones(1, 200, dtype=torch.float64)
    uv_bad = uv.clone()
    uv_bad[:, :50] += 80.0  # gross outliers, weighted out
    w[:, :50] = 0
    T = gauss_newton_pose(X, uv_bad, w, K, torch.eye(4, dtype=torch.float64)[None], iterations=8)
    err = g.pose_error(T[0].numpy(), T_true[0].numpy())
    assert err.rot_deg < 1e-4 and err.trans_m < 1e-5


def test_config_round_trip_rejects_unknown_keys():
    assert ModelConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({"nope": 1})


def test_linear_attention_is_normalised_kernel_attention_and_trains():
    torch.manual_seed(0)
    attn = LinearAttention(32, heads=4)
    q, kv = torch.randn(2, 50, 32), torch.randn(2, 30, 32)
    out, _ = attn(q, kv, kv)
    # the same thing written out: attention weights phi(q_i).phi(k_j), normalised over j
    phi = lambda x: torch.nn.functional.elu(x.view(*x.shape[:2], 4, 8)) + 1  # noqa: E731
    A = torch.einsum("blhd,bshd->bhls", phi(attn.q(q)), phi(attn.k(kv)))
    A = A / A.sum(-1, keepdim=True)
    ref = attn.out(torch.einsum("bhls,bshe->blhe", A, attn.v(kv).view(2, 30, 4, 8)).reshape(2, 50, 32))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    cfg = ModelConfig(image_height=64, image_width=128, num_points=512, num_superpoints=32, knn=8, d_model=32,
                      num_layers=1, image_self_attention="linear")
    model = CrossI2P(cfg)
    assert isinstance(model.transformer.layers[0].self_image.attn, LinearAttention)
    assert isinstance(model.transformer.layers[0].cross_image.attn, torch.nn.MultiheadAttention)
    res = model(torch.rand(1, 3, 64, 128), torch.randn(1, 512, 4))
    res.coarse.point_to_image.logsumexp(-1).mean().backward()
    assert model.transformer.layers[0].self_image.attn.q.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="softmax or linear"):
        ModelConfig(image_self_attention="performer")
