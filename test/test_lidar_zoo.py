"""Any rig: every LiDAR kind of the synthetic zoo, its points shuffled, gives edges where the scene has depth
discontinuities, and a window of it recovers the extrinsic.

The reference is the scene itself: rays cast with open3d around each edge's direction from the LiDAR's pose,
independent of the edge detector. Seeds 9960-9979 are used nowhere else.
"""
from dataclasses import replace

import numpy as np
import pytest

from crossi2p_ros.data.lidar_models import LIDAR_MODELS
from crossi2p_ros.data.perturb import CalibProtocol
from crossi2p_ros.data.synth import SynthConfig, SynthSequence
from crossi2p_ros.geometry import pose_error, se3_exp
from crossi2p_ros.registration.inputs import undistorted, valid_region
from crossi2p_ros.registration.lidar_edges import depth_edges
from crossi2p_ros.registration.keyframe import prepare_keyframe
from crossi2p_ros.registration.window import WindowEstimator
from crossi2p_ros.registration.window_config import WindowConfig

KINDS = list(LIDAR_MODELS)
SPINNING = [k for k in KINDS if LIDAR_MODELS[k].pattern == "spinning"]


def _sequence(kind: str, frames: int = 1, order: str = "shuffled", **camera) -> SynthSequence:
    return SynthSequence(SynthConfig(frames=frames, seed=9960 + KINDS.index(kind), style="urban", lidar_model=kind,
                                     point_order=order, **camera))


def _discontinuity_nearby(seq: SynthSequence, index: int, xyz: np.ndarray, radius_deg: float | np.ndarray = 0.6,
                          grid: int = 7, direction: str = "any") -> np.ndarray:
    """Whether the scene's range, cast from the LiDAR at frame ``index`` over a grid of directions within
    ``radius_deg`` (scalar or (N,)) of each point of ``xyz`` (N, 3) [m, LiDAR frame], jumps by at least
    max(0.3 m, 10 %): the scene's own depth discontinuities, (N,) bool. ``direction`` "horizontal" or
    "vertical" searches along that line alone (an upright silhouette is crossed horizontally)."""
    T_world_lidar, _ = seq.poses(index)
    d = xyz / np.linalg.norm(xyz, axis=1, keepdims=True)
    east = np.stack([-d[:, 1], d[:, 0], np.zeros(len(d))], 1)
    east /= np.linalg.norm(east, axis=1, keepdims=True)
    north = np.cross(d, east)
    a = np.linspace(-1.0, 1.0, grid)
    da, db = [g.ravel() for g in np.meshgrid(a, a)]
    if direction != "any":
        da, db = (a, np.zeros(grid)) if direction == "horizontal" else (np.zeros(grid), a)
    r = np.radians(np.broadcast_to(radius_deg, (len(xyz),)))[:, None, None]
    dirs = d[:, None] + r * (east[:, None] * da[None, :, None] + north[:, None] * db[None, :, None])
    dirs = (dirs / np.linalg.norm(dirs, axis=2, keepdims=True)).reshape(-1, 3) @ T_world_lidar[:3, :3].T
    rays = np.concatenate([np.broadcast_to(T_world_lidar[:3, 3], dirs.shape), dirs], 1).astype(np.float32)
    t = np.minimum(seq.scene.cast(rays)["t_hit"].reshape(len(xyz), -1), 200.0)
    near, far = t.min(1), t.max(1)
    return far - near >= np.maximum(0.3, 0.1 * near)


@pytest.mark.parametrize("kind", KINDS)
def test_edges_of_every_zoo_lidar_lie_on_the_scenes_depth_discontinuities_in_any_point_order(kind):
    seq = _sequence(kind)
    points = seq.frame(0).points
    edges = depth_edges(points)
    assert len(edges.xyz) >= 150, f"{kind}: {len(edges.xyz)} edges"
    # the discontinuity lies between the edge's pair of beams: search as far as its interval reaches (a level
    # edge of a 16-beam head spans the 2 deg between two beams), across an upright edge horizontally and
    # across a level one vertically: the label decides which image edges it is scored against
    span_deg = np.degrees(np.linalg.norm(edges.spans, axis=1) / np.linalg.norm(edges.xyz, axis=1))
    radius = np.clip(0.75 * span_deg, 0.6, 2.0)
    up, level = edges.along, ~edges.along
    assert up.sum() >= 50 and level.sum() >= 50, f"{kind}: {up.sum()} upright, {level.sum()} level edges"
    upright_ok = _discontinuity_nearby(seq, 0, edges.xyz[up], radius[up], direction="horizontal").mean()
    level_ok = _discontinuity_nearby(seq, 0, edges.xyz[level], radius[level], direction="vertical").mean()
    # the control: sweep points at random, searched as far, cross a discontinuity far less often
    rng = np.random.default_rng(0)
    control = _discontinuity_nearby(seq, 0, points[rng.choice(len(points), 1000, replace=False), :3].astype(float),
                                    rng.choice(radius, 1000), direction="horizontal").mean()
    assert upright_ok >= 0.85 and level_ok >= 0.7, f"{kind}: upright {upright_ok:.2f}, level {level_ok:.2f}"
    assert control <= 0.3, f"{kind}: control {control:.2f}"


@pytest.mark.parametrize("kind", SPINNING)
def test_a_shuffled_spinning_sweep_finds_its_beams_and_a_ringless_one_is_not_given_invented_rings(kind):
    model = LIDAR_MODELS[kind]
    edges = depth_edges(_sequence(kind).frame(0).points)
    assert edges.ring_source == "elevation"
    # Pandar64's beams 0.167 deg apart with each unit's 0.05 deg beam jitter: a pair may merge
    assert model.beams - 3 <= edges.rings <= model.beams, f"{kind}: {edges.rings} rings of {model.beams}"


@pytest.mark.parametrize("kind", ["avia", "raster"])
def test_sensors_without_rings_take_their_neighbours_from_the_angular_grid(kind):
    edges = depth_edges(_sequence(kind).frame(0).points)
    assert edges.ring_source == "angular" and edges.rings == 0


def _keyframes(seq: SynthSequence, indices: range, cfg: WindowConfig) -> list:
    keyframes = []
    for f in (seq.frame(i) for i in indices):
        image, pinhole = undistorted(f.image, f.camera)
        keyframes.append(prepare_keyframe(image, f.points, pinhole, cfg, motion=False, valid=valid_region(f.camera)))
    return keyframes


def _window_error(seq: SynthSequence, step: int = 3) -> tuple[float, float]:
    """Error (deg, m) of a window of 8 keyframes ``step`` frames apart solved from 5 deg / 0.2 m off."""
    cfg = WindowConfig()
    keyframes = _keyframes(seq, range(0, 8 * step, step), cfg)
    T_gt = seq.T_camera_lidar
    T0 = se3_exp(np.r_[np.array([0.0, 0.6, 0.8]) * 0.2, np.array([0.6, -0.64, 0.48]) * np.radians(5.0)]) @ T_gt
    err = pose_error(WindowEstimator(replace(cfg, seed=0)).solve(keyframes, T0).T_camera_lidar, T_gt)
    return err.rot_deg, err.trans_m


@pytest.mark.parametrize("kind", KINDS)
def test_a_window_of_every_zoo_lidar_recovers_the_extrinsic(kind):
    rot, trans = _window_error(_sequence(kind, frames=24))
    assert rot < 0.3 and trans < 0.03, f"{kind}: {rot:.3f} deg / {100 * trans:.2f} cm"


def test_a_sixteen_beam_head_with_a_fisheye_recovers_the_extrinsic_through_its_wide_pinhole_view():
    seq = _sequence("vlp16", frames=24, camera_model="fisheye", image_width=960, image_height=600)
    assert seq.camera.model == "equidistant"
    rot, trans = _window_error(seq)
    assert rot < 0.3 and trans < 0.03, f"{rot:.3f} deg / {100 * trans:.2f} cm"


def test_in_a_hall_the_search_also_tries_translation_before_the_rotation_settles():
    """Indoors every structure is near (walls 3.5-5 m away): a 0.4 m translation error moves the projection by
    degrees, and rotation refined alone at the coarse levels absorbs it into a wrong basin. The search also runs
    with translation free from the first level (``search_rotation_only_levels``), the finals competing on their
    score: the window recovers the extrinsic, where the rotation-first search alone ends ~10 cm off (the fixture
    shows the effect it guards). Seed 9945 (a 128-beam head in the hall) is used nowhere else."""
    seq = SynthSequence(SynthConfig(frames=20, seed=9945, style="indoor", lidar_model="os128",
                                    point_order="shuffled"))
    cfg = WindowConfig()
    keyframes = _keyframes(seq, range(20), cfg)
    T_gt = seq.T_camera_lidar
    T0 = CalibProtocol().initial_guess(T_gt, 9945, 0)       # 4.4 deg / 41 cm off
    both = pose_error(WindowEstimator(cfg).solve(keyframes, T0).T_camera_lidar, T_gt)
    rotation_first = pose_error(WindowEstimator(replace(cfg, search_rotation_only_levels=(2,)))
                                .solve(keyframes, T0).T_camera_lidar, T_gt)
    assert both.rot_deg < 0.3 and both.trans_m < 0.03, (both, rotation_first)
    assert rotation_first.trans_m > 0.05, (both, rotation_first)
