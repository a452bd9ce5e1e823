"""Tiny ray-cast scenes in KITTI layout for the data and training tests (numpy only, fast).

A corridor of textured planes (ground, two side walls, a far wall) seen by a
camera and a spinning LiDAR that share one rig extrinsic. Both sensors cast
rays against the same planes, and the LiDAR intensity is the texture the
camera sees, so image and cloud agree the way real data does.
The LiDAR frame is x forward, y left, z up; the rig drives forward 1 m per frame.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from crossi2p_ros import geometry as g
from crossi2p_ros.data import kitti

# planes n . p = d in the world (= LiDAR frame of frame 0), with a base colour each
_PLANES = [
    (np.array([0.0, 0.0, 1.0]), -1.7, (0.45, 0.45, 0.45)),   # ground
    (np.array([0.0, 1.0, 0.0]), 6.0, (0.8, 0.3, 0.2)),       # left wall
    (np.array([0.0, 1.0, 0.0]), -5.0, (0.2, 0.5, 0.8)),      # right wall
    (np.array([1.0, 0.0, 0.0]), 45.0, (0.3, 0.8, 0.3)),      # far wall
]
LIDAR_TO_OPTICAL = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])


def rig_extrinsic(seed: int = 0) -> np.ndarray:
    """A plausible ``T_camera_lidar``: axes swap plus a small random rotation and offset."""
    rng = np.random.default_rng(seed)
    R = g.so3_exp(rng.normal(scale=0.03, size=3)) @ LIDAR_TO_OPTICAL
    return g.make_transform(R, np.array([0.05, -0.08, -0.27]) + rng.normal(scale=0.02, size=3))


def _texture(p: np.ndarray, plane: np.ndarray) -> np.ndarray:
    """Texture value in [0, 1] at world points (N, 3): checker plus stripes, different per plane."""
    a = np.floor(p[:, 0] / 1.5) + np.floor(p[:, 1] / 1.0) + np.floor(p[:, 2] / 0.7)
    checker = np.mod(a, 2.0)
    stripes = 0.5 + 0.5 * np.sin(p[:, 0] * 2.3 + p[:, 1] * 1.7 + p[:, 2] * 3.1 + plane)
    return 0.25 + 0.5 * checker + 0.25 * stripes * (1 - checker)


def ray_cast(origins: np.ndarray, dirs: np.ndarray, max_range: float = 80.0
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cast rays (N, 3) from one origin (3,) against the planes: hit points, plane ids, hit mask."""
    n = np.stack([pl[0] for pl in _PLANES])              # (P, 3)
    d = np.array([pl[1] for pl in _PLANES])               # (P,)
    denom = dirs @ n.T                                    # (N, P)
    t = (d - origins @ n.T) / np.where(np.abs(denom) > 1e-9, denom, np.nan)
    t = np.where(t > 1e-3, t, np.inf)
    plane = np.argmin(t, axis=1)
    t_hit = t[np.arange(len(t)), plane]
    hit = np.isfinite(t_hit) & (t_hit * np.linalg.norm(dirs, axis=1) < max_range)
    return origins + dirs * np.where(hit, t_hit, 0.0)[:, None], plane, hit


def render(camera: g.CameraModel, T_world_camera: np.ndarray) -> np.ndarray:
    """RGB uint8 image of the scene through ``camera`` (with its distortion) at pose ``T_world_camera``."""
    v, u = np.mgrid[0:camera.height, 0:camera.width]
    rays = camera.unproject(np.stack([u.ravel(), v.ravel()], 1).astype(np.float64))
    dirs = rays @ T_world_camera[:3, :3].T
    p, plane, hit = ray_cast(T_world_camera[:3, 3], dirs)
    base = np.array([pl[2] for pl in _PLANES])[plane]
    rgb = np.where(hit[:, None], base * _texture(p, plane)[:, None], np.array([0.6, 0.75, 0.95]))
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8).reshape(camera.height, camera.width, 3)


def lidar_sweep(T_world_lidar: np.ndarray, beams: int = 16, columns: int = 360) -> np.ndarray:
    """(N, 4) float32 points x y z intensity in the LiDAR frame [m]; intensity = texture."""
    el = np.radians(np.linspace(-24.0, 2.0, beams))
    az = np.linspace(-np.pi, np.pi, columns, endpoint=False)
    E, A = np.meshgrid(el, az, indexing="ij")
    dirs_l = np.stack([np.cos(E) * np.cos(A), np.cos(E) * np.sin(A), np.sin(E)], -1).reshape(-1, 3)
    p, plane, hit = ray_cast(T_world_lidar[:3, 3], dirs_l @ T_world_lidar[:3, :3].T)
    pts_l = g.transform_points(g.invert(T_world_lidar), p[hit])
    return np.c_[pts_l, _texture(p[hit], plane[hit])].astype(np.float32)


def default_camera(width: int = 320, height: int = 96, model: str = "pinhole") -> g.CameraModel:
    dist = {"pinhole": None, "plumb_bob": [-0.12, 0.02, 1e-3, -5e-4, 0.0],
            "equidistant": [0.02, -0.01, 0.0, 0.0]}[model]
    return g.CameraModel.from_intrinsics(width, height, 0.5 * width, 0.5 * width, width / 2 - 0.5 + 3.0,
                                         height / 2 - 0.5 - 2.0, dist, model)  # type: ignore[arg-type]


def write_sequence(root: Path, frames: int = 4, camera: g.CameraModel | None = None, seed: int = 0,
                   sequence: str = "00", beams: int = 16, columns: int = 360) -> tuple[g.CameraModel, np.ndarray]:
    """Write a KITTI odometry sequence of the corridor; returns (camera, T_camera_lidar)."""
    camera = camera or default_camera()
    T_cl = rig_extrinsic(seed)
    with kitti.OdometryWriter(root, sequence, camera, T_cl) as w:
        for i in range(frames):
            yaw = g.so3_exp(np.array([0.0, 0.0, 0.02 * i]))
            T_world_lidar = g.make_transform(yaw, np.array([1.0 * i, 0.3 * i, 0.0]))
            T_world_camera = T_world_lidar @ g.invert(T_cl)
            w.add(render(camera, T_world_camera), lidar_sweep(T_world_lidar, beams, columns), 0.1 * i, T_world_camera)
    return camera, T_cl
