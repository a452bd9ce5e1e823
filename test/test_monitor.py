"""Temporal fusion and decalibration detection on streams of noisy SE(3) estimates with known statistics."""
import numpy as np
import pytest

from crossi2p_ros.geometry import make_transform, pose_error, se3_exp, so3_exp
from crossi2p_ros.monitor import DriftMonitor, FusionConfig, MonitorConfig, PoseFusion, fuse

T_TRUE = make_transform(so3_exp(np.array([1.2, -1.1, 1.3])), np.array([0.1, -0.3, -0.2]))
SIGMA = np.array([0.02, 0.02, 0.03, np.radians(0.3), np.radians(0.3), np.radians(0.5)])  # per-frame noise


def _noisy(rng, T, n, sigma=SIGMA):
    xi = rng.normal(size=(n, 6)) * sigma
    return se3_exp(xi) @ T, np.broadcast_to(np.diag(sigma ** 2), (n, 6, 6))


def test_fusion_converges_to_the_truth_faster_than_any_single_frame():
    rng = np.random.default_rng(0)
    poses, covs = _noisy(rng, T_TRUE, 50)
    fused = fuse(poses, covs, FusionConfig(floor_rot_deg=0.0, floor_trans_m=0.0))
    err = pose_error(fused.T, T_TRUE)
    single = [pose_error(T, T_TRUE) for T in poses]
    assert err.rot_deg < 0.15 and err.trans_m < 0.015
    assert err.rot_deg < min(e.rot_deg for e in single) * 3 and err.rot_deg < np.median([e.rot_deg for e in single]) / 3
    assert fused.used == 50 and fused.rejected == 0
    assert fused.rot_std_deg == pytest.approx(np.degrees(np.sqrt(np.sum(SIGMA[3:] ** 2) / 50)), rel=0.05)


def test_fusion_rejects_injected_outliers():
    rng = np.random.default_rng(1)
    poses, covs = _noisy(rng, T_TRUE, 40)
    poses = poses.copy()
    bad = rng.choice(40, 8, replace=False)
    poses[bad] = se3_exp(np.array([0.5, 0.0, 0.0, 0.0, np.radians(8.0), 0.0])) @ T_TRUE   # a wrong local optimum
    fused = fuse(poses, np.array(covs), FusionConfig(floor_rot_deg=0.0, floor_trans_m=0.0))
    assert fused.rejected == 8
    err = pose_error(fused.T, T_TRUE)
    assert err.rot_deg < 0.2 and err.trans_m < 0.025


def test_streaming_fusion_keeps_a_window_and_flags_convergence():
    rng = np.random.default_rng(2)
    fusion = PoseFusion(FusionConfig(window=20, converged_rot_deg=0.2, converged_trans_m=0.025))
    poses, covs = _noisy(rng, T_TRUE, 60)
    states = [fusion.add(T, c) for T, c in zip(poses, covs)]
    assert len(fusion) == 20
    assert not states[1].converged and states[-1].converged
    fusion.reset()
    assert fusion.result is None and len(fusion) == 0


def _stream(rng, n_before, n_after, step):
    before, c1 = _noisy(rng, T_TRUE, n_before)
    after, c2 = _noisy(rng, se3_exp(step) @ T_TRUE, n_after)
    return np.concatenate([before, after]), np.concatenate([c1, c2])


@pytest.mark.parametrize("step, what", [(np.array([0, 0, 0, 0, np.radians(1.0), 0]), "1 deg"),
                                        (np.array([0.02, 0, 0, 0, 0, 0]), "2 cm")])
def test_a_step_is_detected_within_50_estimates(step, what):
    rng = np.random.default_rng(3)
    poses, covs = _stream(rng, 100, 60, step)
    monitor = DriftMonitor(T_TRUE, MonitorConfig(window=50, floor_rot_deg=0.1, floor_trans_m=0.01, warn_trans_m=0.015))
    levels = [monitor.add(T, c).level for T, c in zip(poses, covs)]
    assert "WARN" not in levels[:100] and "ERROR" not in levels[:100], what
    first = next(i for i, lv in enumerate(levels) if lv in ("WARN", "ERROR"))
    assert 100 <= first < 150, (what, first)
    est = monitor.status.offset
    assert np.linalg.norm(est - step) < 0.5 * np.linalg.norm(step) + 1e-3, (what, est)


def test_no_false_alarm_over_a_long_calibrated_stream():
    rng = np.random.default_rng(4)
    poses, covs = _noisy(rng, T_TRUE, 6000)     # 10 minutes at 10 Hz
    monitor = DriftMonitor(T_TRUE, MonitorConfig(window=50, floor_rot_deg=0.1, floor_trans_m=0.01, warn_trans_m=0.015))
    levels = [monitor.add(T, c).level for T, c in zip(poses, covs)]
    assert levels.count("WARN") + levels.count("ERROR") == 0
    assert levels[0] == "STALE" and levels[-1] == "OK"


def test_big_offset_is_an_error_with_a_readable_message():
    rng = np.random.default_rng(5)
    poses, covs = _noisy(rng, se3_exp(np.array([0, 0, 0.1, 0, 0, np.radians(3.0)])) @ T_TRUE, 20)
    monitor = DriftMonitor(T_TRUE)
    for T, c in zip(poses, covs):
        status = monitor.add(T, c)
    assert status.level == "ERROR" and "DECALIBRATED" in status.message and "deg" in status.message
