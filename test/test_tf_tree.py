"""TF lookups composed through intermediate frames (static, and /tf's moving edges at an instant), and the ROS
pose covariance of an estimate."""
import numpy as np

from crossi2p_ros.geometry import invert, make_transform, ros_pose_covariance, se3_exp, so3_exp
from crossi2p_ros.registration.deskew import twist_between
from crossi2p_ros.tf_tree import StaticTransforms, TransformBuffer
from scipy.spatial.transform import Rotation


def _T(seed):
    rng = np.random.default_rng(seed)
    return make_transform(so3_exp(rng.normal(size=3)), rng.normal(size=3))


def test_camera_lidar_is_composed_through_base_link_either_way_round():
    T_base_lidar, T_base_link, T_link_optical = _T(1), _T(2), _T(3)
    tf = StaticTransforms()
    tf.add("base_link", "lidar", T_base_lidar)
    tf.add("base_link", "camera_link", T_base_link)
    tf.add("camera_link", "camera_optical", T_link_optical)
    expected = invert(T_base_link @ T_link_optical) @ T_base_lidar      # T_optical_lidar
    np.testing.assert_allclose(tf.camera_lidar("lidar", "camera_optical"), expected, atol=1e-12)
    np.testing.assert_allclose(tf.lookup("lidar", "camera_optical"), invert(expected), atol=1e-12)
    assert tf.camera_lidar("lidar", "radar") is None
    # an edge the caller publishes itself is not its own prior
    tf.add("lidar", "camera_optical_calibrated", _T(4))
    assert tf.camera_lidar("lidar", "camera_optical_calibrated", skip={("lidar", "camera_optical_calibrated")}) \
        is None


def test_a_new_parent_replaces_the_old_edge():
    tf = StaticTransforms()
    tf.add("a", "c", _T(1))
    tf.add("b", "c", _T(2))
    assert ("a", "c") not in tf and tf.lookup("a", "c") is None
    np.testing.assert_allclose(tf.lookup("b", "c"), _T(2))


def _odometry(rate_hz=100.0, seconds=1.0, history_s=10.0):
    """A vehicle turning at a constant body twist (15 m/s, 0.3 rad/s yaw, a little pitch) sampled on /tf as
    odom -> base_link, the LiDAR mounted base_link -> lidar; returns the buffer, the exact T_odom_lidar(t) and
    the base's twist."""
    xi_base = np.array([15.0, 0.2, 0.1, 0.01, 0.02, 0.3])
    T_odom_base0, T_base_lidar = _T(5), _T(6)
    exact = lambda t: T_odom_base0 @ se3_exp(t * xi_base) @ T_base_lidar   # noqa: E731
    buffer = TransformBuffer(history_s=history_s)
    buffer.static.add("base_link", "lidar", T_base_lidar)
    for k in range(int(seconds * rate_hz) + 1):
        t = k / rate_hz
        buffer.add("odom", "base_link", T_odom_base0 @ se3_exp(t * xi_base), round(t * 1e9))
    return buffer, exact, xi_base, T_base_lidar


def test_a_moving_edge_is_interpolated_at_the_instant_and_composed_with_the_static_mount():
    buffer, exact, _, _ = _odometry()
    for t in (0.0, 0.1234, 0.5, 0.999):
        T = buffer.lookup("odom", "lidar", round(t * 1e9))
        R_err = T[:3, :3].T @ exact(t)[:3, :3]
        # between samples 10 ms apart the chord of a 50 m radius turn is within 0.1 mm of the arc
        assert np.linalg.norm(T[:3, 3] - exact(t)[:3, 3]) < 1e-3, t
        assert np.degrees(np.arccos(np.clip((np.trace(R_err) - 1) / 2, -1, 1))) < 1e-3, t


def test_the_lidars_twist_from_two_lookups_is_the_base_twist_moved_to_the_lidar():
    """Reference by hand: a body twist (v, w) of base_link seen from a LiDAR mounted at T_base_lidar is
    Ad(T_lidar_base) (v, w) = (R v + p x (R w), R w) with (R, p) of T_lidar_base."""
    buffer, _, xi_base, T_base_lidar = _odometry()
    T_lidar_base = invert(T_base_lidar)
    R, p = T_lidar_base[:3, :3], T_lidar_base[:3, 3]
    w = R @ xi_base[3:]
    expected = np.r_[R @ xi_base[:3] + np.cross(p, w), w]
    T0 = buffer.lookup("odom", "lidar", 300_000_000)
    T1 = buffer.lookup("odom", "lidar", 400_000_000)
    np.testing.assert_allclose(twist_between(invert(T0) @ T1, 0.1), expected, atol=2e-3)


def test_no_transform_outside_the_samples_across_a_gap_or_past_the_history():
    buffer, _, _, _ = _odometry(seconds=1.0, history_s=0.5)
    assert buffer.lookup("odom", "lidar", 1_001_000_000) is None        # not extrapolated
    assert buffer.lookup("odom", "lidar", 400_000_000) is None          # older than the history kept
    assert buffer.lookup("odom", "lidar", 600_000_000) is not None
    buffer, _, _, _ = _odometry(seconds=1.0, history_s=None)
    buffer.add("odom", "base_link", _T(7), 2_000_000_000)               # a second later: odometry dropped out
    assert buffer.lookup("odom", "lidar", 1_500_000_000) is None
    assert buffer.lookup("odom", "lidar", 2_000_000_000) is not None and buffer.lookup("odom", "lidar", 0) is not None
    buffer.clear()
    assert buffer.lookup("odom", "lidar", 2_000_000_000) is None and buffer.lookup("base_link", "lidar", 0) is not None


def test_ros_covariance_is_the_spread_of_the_published_pose():
    """Sample perturbations of T_camera_lidar with the estimate's covariance: the published T_lidar_camera's
    position (x, y, z in the LiDAR frame) and rotation (about the LiDAR frame's axes) spread as stated."""
    rng = np.random.default_rng(0)
    T_cl = _T(5)
    A = rng.normal(size=(6, 6)) * np.array([0.01] * 3 + [0.004] * 3)
    cov = A @ A.T
    xi = rng.multivariate_normal(np.zeros(6), cov, size=20000)
    T_lc = invert(T_cl)
    samples = invert(se3_exp(xi) @ T_cl)                                  # (n, 4, 4) T_lidar_camera
    d_pos = samples[:, :3, 3] - T_lc[:3, 3]
    d_rot = Rotation.from_matrix(samples[:, :3, :3] @ T_lc[:3, :3].T).as_rotvec()   # about the parent's axes
    empirical = np.cov(np.concatenate([d_pos, d_rot], 1).T)
    ros = ros_pose_covariance(T_cl, cov)
    np.testing.assert_allclose(ros, empirical, atol=0.05 * np.abs(ros).max())
    assert ros.shape == (6, 6) and np.allclose(ros, ros.T)


def test_a_lookup_waits_for_odometry_still_on_its_way_and_only_then():
    """A sweep can reach the preparer before the /tf samples at its stamp (the executor takes them later): with a
    timeout the lookup waits for them; with no moving edge at all it does not wait."""
    import threading
    import time

    buffer, exact, _, _ = _odometry(seconds=0.5)
    later = threading.Timer(0.05, lambda: buffer.add("odom", "base_link", exact(0.51) @ invert(_T(6)), 510_000_000))
    later.start()
    assert buffer.lookup("odom", "lidar", 505_000_000) is None                  # not yet
    T = buffer.lookup("odom", "lidar", 505_000_000, timeout_s=2.0)
    later.join()
    assert T is not None and np.linalg.norm(T[:3, 3] - exact(0.505)[:3, 3]) < 1e-3
    static_only = TransformBuffer()
    static_only.static.add("base_link", "lidar", _T(6))
    t0 = time.monotonic()
    assert static_only.lookup("odom", "lidar", 0, timeout_s=2.0) is None and time.monotonic() - t0 < 0.5
