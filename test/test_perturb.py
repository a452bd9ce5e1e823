"""The seeded perturbation protocols of DESIGN.md."""
import numpy as np

from crossi2p_ros import geometry as g
from crossi2p_ros.data.perturb import CalibProtocol, I2PProtocol


def test_calib_initial_error_equals_the_drawn_perturbation_and_is_seeded():
    proto = CalibProtocol()
    T_gt = g.se3_exp(np.array([0.1, -0.2, 0.3, 1.0, -1.2, 1.1]))
    errs = [g.pose_error(proto.initial_guess(T_gt, seed=3, index=i), T_gt) for i in range(2000)]
    rot = np.array([e.rot_deg for e in errs])
    trans = np.array([e.trans_m for e in errs])
    assert rot.max() <= 10 + 1e-9 and trans.max() <= 0.5 + 1e-9
    assert abs(np.mean(rot) - 5.0) < 0.3  # uniform angle in [0, 10]
    assert abs(np.mean(trans ** 3) - 0.5 ** 3 / 2) < 0.01  # uniform in the ball: r^3 ~ U(0, R^3)
    assert np.array_equal(proto.initial_guess(T_gt, 3, 17), proto.initial_guess(T_gt, 3, 17))
    assert not np.allclose(proto.initial_guess(T_gt, 3, 17), proto.initial_guess(T_gt, 4, 17))
    small = CalibProtocol(max_rot_deg=5, max_trans_m=0.2)
    assert max(g.pose_error(small.initial_guess(T_gt, 0, i), T_gt).rot_deg for i in range(200)) <= 5


def test_calib_success_thresholds():
    proto = CalibProtocol()
    assert proto.is_success(g.PoseError(0.9, 0.04, 1.0, 0.04))
    assert not proto.is_success(g.PoseError(1.1, 0.01, 1.0, 0.01))
    assert not proto.is_success(g.PoseError(0.1, 0.06, 0.1, 0.06))


def test_i2p_transform_is_yaw_and_horizontal_shift_and_ground_truth_reprojects():
    proto = I2PProtocol()
    rng = np.random.default_rng(0)
    T_gt = g.se3_exp(np.array([0.05, -0.1, -0.2, 1.2, -1.2, 1.2]))
    pts = np.c_[rng.normal(size=(100, 3)) * 10, rng.uniform(size=100)].astype(np.float32)
    yaws, shifts = [], []
    for i in range(500):
        M = proto.transform(seed=1, index=i)
        rotvec = g.so3_log(M[:3, :3])
        assert abs(rotvec[0]) < 1e-12 and abs(rotvec[2]) < 1e-12 and M[1, 3] == 0.0
        yaws.append(np.degrees(rotvec[1]))
        shifts.append(M[[0, 2], 3])
    assert min(yaws) < -170 and max(yaws) > 170
    assert np.abs(shifts).max() <= 10 and np.abs(shifts).max() > 9.5
    new_pts, T_new = proto.apply(pts, T_gt, seed=1, index=5)
    assert np.allclose(g.transform_points(T_new, new_pts[:, :3].astype(np.float64)), g.transform_points(T_gt, pts[:, :3].astype(np.float64)), atol=1e-4)
    assert np.array_equal(new_pts[:, 3], pts[:, 3])


def test_i2p_success_uses_rte_and_rre():
    proto = I2PProtocol()
    assert proto.is_success(g.PoseError(rot_deg=4, trans_m=1.9, rre_deg=4.9, rte_m=1.9))
    assert not proto.is_success(g.PoseError(rot_deg=4, trans_m=1.0, rre_deg=5.1, rte_m=1.0))
