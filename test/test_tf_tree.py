"""Static TF lookups composed through intermediate frames, and the ROS pose covariance of an estimate."""
import numpy as np

from crossi2p_ros.geometry import invert, make_transform, ros_pose_covariance, se3_exp, so3_exp
from crossi2p_ros.tf_tree import StaticTransforms
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
