"""Decalibration detection on streams of noisy SE(3) estimates with known statistics."""
import numpy as np
import pytest

from crossi2p_ros.geometry import make_transform, se3_exp, so3_exp
from crossi2p_ros.monitor import DriftMonitor, MonitorConfig, dominant_axis

T_TRUE = make_transform(so3_exp(np.array([1.2, -1.1, 1.3])), np.array([0.1, -0.3, -0.2]))
SIGMA = np.array([0.02, 0.02, 0.03, np.radians(0.3), np.radians(0.3), np.radians(0.5)])  # per-frame noise


def _noisy(rng, T, n, sigma=SIGMA):
    xi = rng.normal(size=(n, 6)) * sigma
    return se3_exp(xi) @ T, np.broadcast_to(np.diag(sigma ** 2), (n, 6, 6))


def _stream(rng, n_before, n_after, step):
    before, c1 = _noisy(rng, T_TRUE, n_before)
    after, c2 = _noisy(rng, se3_exp(step) @ T_TRUE, n_after)
    return np.concatenate([before, after]), np.concatenate([c1, c2])


@pytest.mark.parametrize("step, what", [(np.array([0, 0, 0, 0, np.radians(1.0), 0]), "1 deg"),
                                        (np.array([0.02, 0, 0, 0, 0, 0]), "2 cm")])
def test_a_step_is_detected_within_50_estimates(step, what):
    rng = np.random.default_rng(3)
    poses, covs = _stream(rng, 100, 60, step)
    monitor = DriftMonitor(T_TRUE, MonitorConfig(window=50, min_estimates=5, persistence=5, floor_rot_deg=0.1, floor_trans_m=0.01,
                                                 warn_trans_m=0.015))
    levels = [monitor.add(T, c).level for T, c in zip(poses, covs)]
    assert "WARN" not in levels[:100] and "ERROR" not in levels[:100], what
    first = next(i for i, lv in enumerate(levels) if lv in ("WARN", "ERROR"))
    assert 100 <= first < 150, (what, first)
    est = monitor.status.offset
    assert np.linalg.norm(est - step) < 0.5 * np.linalg.norm(step) + 1e-3, (what, est)


def test_no_false_alarm_over_a_long_calibrated_stream():
    rng = np.random.default_rng(4)
    poses, covs = _noisy(rng, T_TRUE, 6000)     # 10 minutes at 10 Hz
    monitor = DriftMonitor(T_TRUE, MonitorConfig(window=50, min_estimates=5, persistence=5, floor_rot_deg=0.1, floor_trans_m=0.01,
                                                 warn_trans_m=0.015))
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


@pytest.mark.parametrize("offset, axis", [
    (np.array([0, 0, 0, 0, np.radians(1.5), 0]), "yaw, about camera y (+1.50 deg)"),
    (np.array([0, 0, 0, np.radians(-0.8), 0, 0.0]), "pitch, about camera x (-0.80 deg)"),
    (np.array([0.0, 0.0, 0.0, 0.0, 0.0, np.radians(2.0)]), "roll, about camera z (+2.00 deg)"),
    (np.array([0.0, -0.04, 0.0, 0.0, 0.0, np.radians(0.3)]), "along camera y (-4.0 cm)")])
def test_the_drift_names_its_axis(offset, axis):
    assert dominant_axis(offset) == axis
    monitor = DriftMonitor(T_TRUE, MonitorConfig(warn_trans_m=0.02))
    cov = np.diag([0.005 ** 2] * 3 + [np.radians(0.05) ** 2] * 3)
    for _ in range(3):
        status = monitor.add(se3_exp(offset) @ T_TRUE, cov)
    assert status.level in ("WARN", "ERROR") and axis in status.message and status.axis == axis


def test_an_ok_needs_estimates_that_could_have_shown_a_decalibration():
    # the same calibrated pose twice: tight estimates check it; estimates that leave roll free (a highway's
    # guard rails and few upright structures) pass the test too, but must say that they could not see a drift
    tight = np.diag([0.01 ** 2] * 3 + [np.radians(0.1) ** 2] * 3)
    loose_roll = tight.copy()
    loose_roll[5, 5] = np.radians(3.0) ** 2
    for cov, checked in ((tight, True), (loose_roll, False)):
        monitor = DriftMonitor(T_TRUE)
        status = monitor.add(T_TRUE, cov)
        assert status.level == "OK" and status.checked is checked, status.message
        assert ("unchecked" in status.message) is not checked, status.message
    # the threshold of the chi-square test (16.27 for 3 dof) along the weakest axis: 4.03 sigma
    assert status.detectable_rot_deg == pytest.approx(np.sqrt(16.266) * 3.0, rel=1e-3)
    assert status.detectable_trans_m == pytest.approx(np.sqrt(16.266) * 0.01, rel=1e-3)


def test_a_raised_drift_counts_as_checked_even_where_another_axis_is_free():
    cov = np.diag([0.005 ** 2] * 3 + [np.radians(0.05) ** 2, np.radians(0.05) ** 2, np.radians(5.0) ** 2])
    monitor = DriftMonitor(T_TRUE, MonitorConfig(persistence=1))
    status = monitor.add(se3_exp(np.array([0, 0, 0, 0, np.radians(3.0), 0])) @ T_TRUE, cov)
    assert status.level == "ERROR" and status.checked
    assert status.detectable_rot_deg > 2.0       # roll alone could not have been checked
