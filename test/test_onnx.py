"""ONNX export of the shipped network and the onnxruntime backend of the Calibrator.

One real export of the shipped weights (through ``crossi2p export``) serves
every test here; it traces the whole network, which takes about a minute on
our CPU.
"""
from dataclasses import replace

import numpy as np
import pytest
import torch

from crossi2p_ros.cli import main
from crossi2p_ros.data.kitti import open_dataset
from crossi2p_ros.errors import CrossI2PError
from crossi2p_ros.geometry import pose_error, se3_exp
from crossi2p_ros.model.export import INDEX_OUTPUTS, OUTPUT_NAMES, parity
from crossi2p_ros.model.onnx_network import OnnxNetwork
from crossi2p_ros.registration.calibrator import Calibrator, CalibratorConfig
from crossi2p_ros.registration.inputs import prepare_input

from _scenes import write_sequence


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "crossi2p.onnx"
    assert main(["export", "--onnx", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def torch_calibrator():
    return Calibrator(CalibratorConfig(device="cpu"))


def test_export_writes_a_graph_that_matches_torch_on_other_shapes(exported, torch_calibrator):
    assert exported.is_file() and exported.stat().st_size > 1e6
    diffs = parity(torch_calibrator.model, exported, shapes=((96, 2048), (320, 6000)))
    assert set(diffs) == set(OUTPUT_NAMES)
    for name, d in diffs.items():
        if name in INDEX_OUTPUTS:
            assert d <= 0.01, name      # fraction of neighbour indices that differ
        else:
            assert d < 1e-3, (name, d)  # float32 round-off, not another function


def test_onnx_backend_runs_the_calibrator_on_the_same_network_outputs(exported, torch_calibrator, tmp_path):
    write_sequence(tmp_path / "seq", frames=1, seed=3)
    frame = open_dataset(tmp_path / "seq")[0]
    T_init = se3_exp(np.array([0.04, -0.02, 0.0, 0.0, np.radians(1.5), np.radians(-0.5)])) @ frame.T_camera_lidar
    onnx = Calibrator(CalibratorConfig(device="cpu", backend="onnx", onnx=str(exported)))
    x = prepare_input(frame.image, frame.points, frame.camera, onnx.model.cfg, onnx.cfg.inputs, T_init)
    with torch.inference_mode():
        ref = torch_calibrator.network(x.image, x.points)
    got = onnx.network(x.image, x.points)
    # on a real prepared frame, not only random inputs: the same best superpixel per superpoint and scores
    # that agree far below their spread (logits of magnitude ~5). Not to round-off everywhere: cdist's
    # |a|^2 + |b|^2 - 2ab form rounds differently in each runtime, so a near-tie at the kNN cut gives a few
    # superpoints another neighbour (10 of 256 on this frame), and attention spreads that small change
    d = (ref.coarse.sim - got.coarse.sim).abs().flatten()
    assert d.median() < 5e-3 and torch.quantile(d, 0.99) < 0.05, (d.median(), torch.quantile(d, 0.99))
    assert (ref.fine_map - got.fine_map).abs().max() < 1e-3
    same_best = (ref.coarse.sim.argmax(-1) == got.coarse.sim.argmax(-1)).double().mean()
    assert same_best > 0.98
    # the network runs for proposals: with no prior, or with one when proposals_with_prior is set
    est = onnx.estimate(frame.image, frame.points, frame.camera, None)
    assert np.all(np.isfinite(est.T_camera_lidar)) and "network" in est.timings_ms
    with_prior = Calibrator(replace(onnx.cfg, proposals_with_prior=True), model=onnx.model)
    est = with_prior.estimate(frame.image, frame.points, frame.camera, T_init)
    assert np.all(np.isfinite(est.T_camera_lidar)) and "network" in est.timings_ms
    moved = pose_error(est.T_camera_lidar, T_init)
    w = onnx.cfg.window
    assert moved.rot_deg <= w.search_rot_deg + w.grid_rot_step_deg and moved.trans_m <= w.search_trans_m + w.grid_trans_step_m


def test_a_stale_or_damaged_export_is_refused(exported, torch_calibrator, tmp_path):
    cfg = torch_calibrator.model.cfg
    with pytest.raises(CrossI2PError, match="other weights"):
        OnnxNetwork(exported, cfg, expected_weights_sha256="0" * 64)
    with pytest.raises(CrossI2PError, match="another configuration"):
        OnnxNetwork(exported, replace(cfg, knn=cfg.knn // 2))
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(exported.read_bytes()[: 100_000])
    with pytest.raises(CrossI2PError, match="cannot be loaded"):
        OnnxNetwork(truncated, cfg)
    with pytest.raises(CrossI2PError, match="crossi2p export --onnx"):
        OnnxNetwork(tmp_path / "missing.onnx", cfg)
    with pytest.raises(CrossI2PError, match="needs the exported graph"):
        Calibrator(CalibratorConfig(device="cpu", backend="onnx"))
    with pytest.raises(CrossI2PError, match="backend"):
        Calibrator(CalibratorConfig(device="cpu", backend="tensorrt"))
