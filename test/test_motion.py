"""The camera's rotation from the window's own motion: a fresh synthetic drive, a window that does not move, real
KITTI. (The no-prior solve that starts from it is tested in test_window.py.)

Synthetic frames are ray-cast fresh from seeds used nowhere else (9741, 9742).
"""
from pathlib import Path

import cv2
import numpy as np
import pytest

from crossi2p_ros.data.kitti import open_dataset
from crossi2p_ros.data.synth import SynthConfig, SynthSequence
from crossi2p_ros.geometry import pose_error
from crossi2p_ros.registration.inputs import undistorted
from crossi2p_ros.registration.motion import MotionConfig, lidar_poses, motion_features, rotation_from_motion
from crossi2p_ros.registration.window import WindowEstimator
from crossi2p_ros.registration.window_config import WindowConfig

KITTI_RAW = Path(__file__).resolve().parents[2] / "shared" / "data" / "kitti_raw_0926"


def _features(frames):
    out = []
    for f in frames:
        image, pinhole = undistorted(f.image, f.camera)
        out.append(motion_features(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), f.points))
    return out, pinhole.K


@pytest.fixture(scope="module")
def suburban():
    seq = SynthSequence(SynthConfig(frames=30, seed=9741, style="suburban"))
    return [seq.frame(i) for i in range(0, 30, 3)]   # 10 keyframes, 0.3 s apart


def test_the_motion_of_a_fresh_synthetic_drive_gives_the_cameras_rotation(suburban):
    features, K = _features(suburban)
    poses, chains = lidar_poses(features)
    assert chains == [0] * len(suburban)          # every neighbour registered
    truth = np.linalg.inv(suburban[0].T_world_lidar) @ suburban[-1].T_world_lidar
    assert np.linalg.norm(truth[:3, 3]) > 3.0                                   # the drive travelled ...
    assert np.linalg.norm(poses[-1][:3, 3] - truth[:3, 3]) < 0.1                # ... and registration followed it
    proposal = rotation_from_motion(features, K)
    assert proposal is not None and proposal.pairs >= 5
    err = pose_error(proposal.T_camera_lidar, suburban[0].T_camera_lidar)
    # measured 0.5-3 deg on synthetic and real windows (docs/benchmarks.md, "Motion proposal"); the window
    # search around it covers 10 deg. Backwards (a sign error) or sideways it would be 90-180 deg off
    assert err.rot_deg < 3.0, err


def test_a_camera_tilted_to_the_road_is_proposed_where_no_usual_mount_reaches():
    # 20 deg down: every mount hypothesis (level, any heading) is farther than the search region around it;
    # the direction of travel pins the tilt. Weak road texture: ORB needs its lower FAST thresholds here, and
    # pairs only match over short baselines (MotionConfig.fast_thresholds, the nearer partner)
    seq = SynthSequence(SynthConfig(frames=15, seed=9742, style="urban", camera_pitch_deg=20.0))
    frames = [seq.frame(i) for i in range(15)]
    T_gt = frames[0].T_camera_lidar
    nearest_mount = min(pose_error(T, T_gt).rot_deg for T in WindowEstimator().mount_hypotheses())
    assert nearest_mount > WindowConfig().search_rot_deg, nearest_mount
    features, K = _features(frames)
    proposal = rotation_from_motion(features, K)
    assert proposal is not None and proposal.pairs >= 10
    assert pose_error(proposal.T_camera_lidar, T_gt).rot_deg < 4.0     # measured 2.4 deg


def test_a_window_that_does_not_travel_gives_no_motion_proposal(suburban):
    features, K = _features(suburban[:1])
    assert rotation_from_motion(features * 6, K) is None                         # standing still
    features, K = _features(suburban[:2])
    assert rotation_from_motion(features, K, MotionConfig(min_pairs=3)) is None  # one pair cannot agree
    assert rotation_from_motion(_features(suburban)[0], K, MotionConfig(enabled=False)) is None


@pytest.mark.skipif(not KITTI_RAW.is_dir(), reason="../shared/data/kitti_raw_0926 (real KITTI raw) is absent")
def test_real_kitti_motion_gives_the_forward_heading():
    # where the mount scan ranks the forward heading only 5th by its edge score (docs/benchmarks.md)
    ds = open_dataset(KITTI_RAW)
    frames = [ds[i] for i in range(20, 40)]
    features, K = _features(frames)
    proposal = rotation_from_motion(features, K)
    assert proposal is not None
    err = pose_error(proposal.T_camera_lidar, frames[0].T_camera_lidar)
    assert err.rot_deg < 3.0, err
