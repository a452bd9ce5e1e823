"""The ROS-free session loop on real ray-cast frames with the shipped weights: keyframes, solves, the TF policy."""
import numpy as np
import pytest

from crossi2p_ros.geometry import pose_error, se3_exp, within_sigma
from crossi2p_ros.registration.calibrator import Calibrator, CalibratorConfig
from crossi2p_ros.registration.keyframe_window import KeyframeConfig
from crossi2p_ros.session import Frame, Session, SessionConfig


@pytest.fixture(scope="module")
def drive():
    from crossi2p_ros.data.synth import SynthConfig, iter_frames

    return list(iter_frames(SynthConfig(frames=12, seed=9870, style="urban")))


@pytest.fixture(scope="module")
def calibrator():
    return Calibrator(CalibratorConfig(device="cpu"))


def _frame(f, blank=False, t_offset_s=0.0):
    image = np.zeros_like(f.image) if blank else f.image
    stamp = int((f.time_s + t_offset_s) * 1e9)
    return Frame(image, f.points, f.camera, stamp, stamp, "camera_optical", "lidar")


def test_only_converged_solves_are_published_and_updates_follow_a_converged_one(drive, calibrator):
    T_true = drive[0].T_camera_lidar
    T_prior = se3_exp(np.array([0.1, -0.05, 0.08, np.radians(2.0), np.radians(-3.0), np.radians(1.0)])) @ T_true
    # every frame a keyframe, a solve after each: the blank-image frames first (no image edges: no pose)
    session = Session(calibrator, SessionConfig(keyframes=KeyframeConfig(size=8, min_change=0.0, min_interval_s=0.0), min_keyframes=1,
                                                solve_every=1), T_prior)
    blank = [session.step(_frame(f, blank=True)) for f in drive[:2]]
    assert all(u is not None and not u.estimate.converged and not u.publish for u in blank)
    assert session.calibration is None and session.published is None
    session.reset()
    updates = [u for u in (session.step(_frame(f, t_offset_s=10.0)) for f in drive) if u is not None]
    published = [u for u in updates if u.publish]
    assert published and all(u.estimate.converged for u in published)
    # a converged solve is followed by a cheap update from it; a solve that is not converged, by a global search
    assert updates[0].global_search
    assert all(u.global_search == (not prev.estimate.converged) for prev, u in zip(updates, updates[1:]))
    assert not all(u.global_search for u in updates)
    # the newest converged solve is the calibration; what was published covers the truth within its 3 sigma
    e0, e = pose_error(T_prior, T_true), pose_error(session.calibration.T_camera_lidar, T_true)
    assert e.rot_deg < 0.5 and e.trans_m < 0.05 and e.rot_deg < e0.rot_deg / 4, (e0, e)
    assert all(within_sigma(u.estimate.T_camera_lidar, u.estimate.covariance, T_true) for u in published)
    # republished only when it moved by more than 3 sigma: consecutive published poses differ by that much
    for a, b in zip(published, published[1:]):
        assert session._moved(b.estimate, a.estimate)


def test_keyframes_leave_the_window_with_their_stamps(drive, calibrator):
    session = Session(calibrator, SessionConfig(keyframes=KeyframeConfig(size=3, min_change=0.0, min_interval_s=0.0), min_keyframes=3),
                      drive[0].T_camera_lidar)
    for f in drive[:5]:
        session.offer(_frame(f))
    assert len(session.window) == 3 and len(session._stamps) == 3
    assert session.due() and session.solve().stamp_ns == int(drive[4].time_s * 1e9)
    assert not session.due()


def test_monitor_mode_needs_the_installed_extrinsic(drive, calibrator):
    from crossi2p_ros.errors import CrossI2PError

    session = Session(calibrator, SessionConfig(mode="monitor"))
    with pytest.raises(CrossI2PError, match="installed extrinsic"):
        session.offer(_frame(drive[0]))
    with pytest.raises(CrossI2PError, match="min_keyframes"):
        Session(calibrator, SessionConfig(min_keyframes=50))


def test_keyframes_keep_the_motion_features_only_where_a_solve_may_have_no_prior(drive, calibrator):
    # the motion proposal (registration/motion.py) serves only a solve without a prior: with one, or in
    # monitor mode, a keyframe is prepared without its ORB features and voxel cloud (~45 ms, 170 KB each)
    keyframes = KeyframeConfig(size=3, min_change=0.0, min_interval_s=0.0)
    kept = {}
    for name, mode, prior in (("calibrate, no prior", "calibrate", None),
                              ("calibrate, prior", "calibrate", drive[0].T_camera_lidar),
                              ("monitor", "monitor", drive[0].T_camera_lidar)):
        session = Session(calibrator, SessionConfig(mode=mode, keyframes=keyframes, min_keyframes=1), prior)
        for f in drive[:2]:
            session.offer(_frame(f))
        kept[name] = [kf.motion is not None for kf in session.window.keyframes]
    assert kept == {"calibrate, no prior": [True, True], "calibrate, prior": [False, False],
                    "monitor": [False, False]}
    # a prior found later: the keyframes kept before it still have them, the new ones not
    session = Session(calibrator, SessionConfig(keyframes=keyframes, min_keyframes=1))
    session.offer(_frame(drive[0]))
    session.set_prior(drive[0].T_camera_lidar)
    session.offer(_frame(drive[1]))
    assert [kf.motion is not None for kf in session.window.keyframes] == [True, False]


def test_a_session_works_on_downscaled_images_and_recovers_the_extrinsic(drive):
    """``window.max_focal_px`` below the camera's focal length: keyframes are worked on downscaled (their
    own K and size), the session keeps them as one camera, and the window still finds the extrinsic."""
    from dataclasses import replace

    base = CalibratorConfig(device="cpu")
    small = Calibrator(replace(base, window=replace(base.window, max_focal_px=400.0)))
    T_true = drive[0].T_camera_lidar
    T_prior = se3_exp(np.array([0.05, -0.04, 0.05, np.radians(1.5), np.radians(-1.0), np.radians(1.0)])) @ T_true
    session = Session(small, SessionConfig(keyframes=KeyframeConfig(size=8, min_change=0.0, min_interval_s=0.0),
                                           min_keyframes=8, solve_every=8), T_prior)
    updates = [u for u in (session.step(_frame(f)) for f in drive[:8]) if u is not None]
    kf = session.window.keyframes[0]
    assert 0.5 * (kf.K[0, 0] + kf.K[1, 1]) <= 400.5 and kf.width < drive[0].camera.width
    e0, e = pose_error(T_prior, T_true), pose_error(updates[-1].estimate.T_camera_lidar, T_true)
    assert e.rot_deg < 0.3 and e.trans_m < 0.03 and e.rot_deg < e0.rot_deg / 4, (e0, e)


def test_cameras_on_one_lidar_share_each_sweeps_work_and_each_recovers_its_own_extrinsic(calibrator):
    """Two cameras on one LiDAR (ahead, and turned 70 deg left), a session each and one SweepCache: every
    sweep's depth edges are found once (by the first camera), the second camera's keyframes are the ones a
    session of its own would make, and each camera converges to its own extrinsic from a prior 2.5 deg / 9 cm
    off."""
    from crossi2p_ros.data.synth import SynthConfig, camera_rig
    from crossi2p_ros.sweep_cache import SweepCache

    rig = camera_rig(SynthConfig(frames=12, seed=9870, style="urban"), [0.0, 70.0])
    frames = [[seq.frame(i) for i in range(12)] for seq in rig]
    assert all(np.array_equal(a.points, b.points) for a, b in zip(*frames))   # the fixture: one LiDAR
    assert pose_error(frames[0][0].T_camera_lidar, frames[1][0].T_camera_lidar).rot_deg > 60
    cfg = SessionConfig(keyframes=KeyframeConfig(size=8, min_change=0.0, min_interval_s=0.0), min_keyframes=6,
                        solve_every=3)
    knock = se3_exp(np.array([0.06, -0.04, 0.05, np.radians(2.0), np.radians(-1.5), np.radians(1.0)]))
    sweeps = SweepCache()
    sessions = [Session(calibrator, cfg, knock @ f[0].T_camera_lidar, sweeps=sweeps) for f in frames]
    alone = Session(calibrator, cfg, knock @ frames[1][0].T_camera_lidar)       # the second camera by itself
    for i in range(12):
        for k, session in enumerate(sessions):
            f = frames[k][i]
            session.step(Frame(f.image, f.points, f.camera, int(f.time_s * 1e9), int(f.time_s * 1e9), f"cam{k}", "lidar"))
        if i >= 9:   # the window's newest three
            f = frames[1][i]
            alone.offer(Frame(f.image, f.points, f.camera, int(f.time_s * 1e9), int(f.time_s * 1e9), "cam1", "lidar"))
    assert (sweeps.misses, sweeps.hits) == (12, 12)          # each sweep's edges found once, used twice
    for shared, own in zip(sessions[1].window.keyframes[-3:], alone.window.keyframes, strict=True):
        np.testing.assert_array_equal(shared.edges, own.edges)
        np.testing.assert_array_equal(shared.levels[0].field, own.levels[0].field)
    for k, session in enumerate(sessions):
        T_true = frames[k][0].T_camera_lidar
        e0, e = pose_error(knock @ T_true, T_true), pose_error(session.calibration.T_camera_lidar, T_true)
        assert e.rot_deg < 0.3 and e.trans_m < 0.03 and e.rot_deg < e0.rot_deg / 4, (k, e0, e)


def test_a_spinning_sweep_without_times_is_deskewed_with_times_from_its_azimuth(calibrator):
    """A moving drive's raw sweeps (cast over 100 ms, the head turning clockwise from behind) offered without
    their per-point times: with ``azimuth_times: cw`` the session's keyframes are the ones the true times give
    (to a few mm: a column's azimuth is its time); with none the sweep is taken at its stamp and its late
    points stay 1-2 m off. Twists from the generator's poses (``lidar_poses``), so only the times differ."""
    from dataclasses import replace

    from crossi2p_ros.data.synth import SynthConfig, SynthSequence

    seq = SynthSequence(SynthConfig(frames=5, seed=9871, style="urban", speed_mps=(15.0, 15.0), sweep_s=0.1,
                                    image_width=480, image_height=146))
    frames = [seq.frame(i) for i in range(5)]
    poses = lambda _frame, stamp_ns: seq.pose_at(stamp_ns * 1e-9)   # noqa: E731
    keyframes = {}
    for name, times, azimuth in (("true", True, "off"), ("azimuth", False, "cw"), ("stamp", False, "off")):
        cfg = SessionConfig(keyframes=KeyframeConfig(min_change=0.0, min_interval_s=0.0), motion="on",
                            azimuth_times=azimuth)
        session = Session(calibrator, cfg, frames[0].T_camera_lidar, lidar_poses=poses)
        for f in frames:
            stamp = round(f.time_s * 1e9)
            session.offer(Frame(f.image, f.points, f.camera, stamp, stamp + round(f.camera_time_offset_s * 1e9),
                                "camera_optical", "lidar", point_times=f.point_times_s if times else None))
        keyframes[name] = session.window.keyframes
    assert len(keyframes["true"]) == 4
    for a, b, c in zip(keyframes["true"], keyframes["azimuth"], keyframes["stamp"]):
        assert a.edges.shape == b.edges.shape == c.edges.shape
        assert np.median(np.linalg.norm(a.edges - b.edges, axis=1)) < 0.005
        assert np.percentile(np.linalg.norm(a.edges - c.edges, axis=1), 90) > 0.5


def test_odometry_that_jumps_is_not_taken_for_the_motion(calibrator):
    """A vehicle's odometry frame that jumps between two sweeps (a filter reset: 50 m in 0.1 s) gives no twist;
    that keyframe's motion comes from registering its sweeps instead, and the others' from the odometry."""
    from crossi2p_ros.data.synth import SynthConfig, SynthSequence
    from crossi2p_ros.geometry import make_transform

    seq = SynthSequence(SynthConfig(frames=5, seed=9872, style="urban", speed_mps=(15.0, 15.0), sweep_s=0.1,
                                    image_width=480, image_height=146))
    frames = [seq.frame(i) for i in range(5)]
    jump = make_transform(np.eye(3), [50.0, 0.0, 0.0])

    def poses(_frame, stamp_ns):   # the odometry jumps 50 m at the third sweep and stays there
        return (jump if stamp_ns >= 200_000_000 else np.eye(4)) @ seq.pose_at(stamp_ns * 1e-9)

    session = Session(calibrator, SessionConfig(keyframes=KeyframeConfig(min_change=0.0, min_interval_s=0.0),
                                                motion="on"), frames[0].T_camera_lidar, lidar_poses=poses)
    for f in frames:
        stamp = round(f.time_s * 1e9)
        session.offer(Frame(f.image, f.points, f.camera, stamp, stamp, "camera_optical", "lidar",
                            point_times=f.point_times_s))
    speeds = [float(np.linalg.norm(kf.twist[:3])) for kf in session.window.keyframes]
    assert session.stats()["twists_from_lidar"] == 1 and session.stats()["twists_from_tf"] == 3, session.stats()
    assert len(speeds) == 4 and all(10.0 < v < 20.0 for v in speeds), speeds
