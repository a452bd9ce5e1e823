"""A LiDAR sweep's half of a keyframe: its depth edges, found once and shared by every camera on that LiDAR.

Nothing here depends on a camera: the edges are found in the sweep as measured
(:func:`.lidar_edges.depth_edges`), and each edge keeps the time of its nearest
measured point so that each camera's keyframe can move it to that camera's own
stamp (:func:`.keyframe.prepare_keyframe`). A rig with several cameras on one
LiDAR therefore prepares each sweep once (:class:`crossi2p_ros.sweep_cache.SweepCache`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from .lidar_edges import LidarEdges, depth_edges
from .window_config import WindowConfig


@dataclass(frozen=True)
class SweepEdges:
    """A sweep's depth edges (``edges.xyz`` (M, 3) [m, LiDAR frame], as measured) and each edge's time
    ``times_s`` (M,) [s from the cloud's stamp] (its nearest measured point's; None without per-point times)."""

    edges: LidarEdges
    times_s: np.ndarray | None = None


def sweep_edges(points: np.ndarray, ring: np.ndarray | None = None, cfg: WindowConfig = WindowConfig(),
                times_s: np.ndarray | None = None) -> SweepEdges:
    """The depth edges of ``points`` (N, >=3) [m, LiDAR frame] in any order, ``ring`` (N,) each point's beam if
    known, ``times_s`` (N,) each point's time [s from the stamp] if the driver gives them.

    A sensor whose beams are too far apart for across-ring edges (``cfg.max_across_ring_gap_deg``) keeps its
    along-ring edges only, and of those the ones outside clutter."""
    found = depth_edges(points, ring, cfg.lidar)
    if found.ring_gap_deg > cfg.max_across_ring_gap_deg:   # no across-ring edges: no field for them either
        # ... and with along-ring edges alone nothing else outweighs a crown's clutter: left out there. Porous
        # synthetic crowns, 32 beams, +-10 deg: success 33 -> 73 %; real nuScenes frames 1.28 -> 0.94 deg median
        # (mixed per camera). On real KITTI (64 beams, across-ring edges kept) leaving them out cost 100 -> 70 %
        # from +-10 deg with 2 false convergences (git history of docs/benchmarks.md, "Porous foliage")
        found = found.subset(found.along & ~found.cluttered)
    edge_times = None
    if times_s is not None and len(found.xyz):
        nearest = cKDTree(np.asarray(points, dtype=np.float64)[:, :3]).query(found.xyz)[1]
        edge_times = np.asarray(times_s, dtype=np.float64)[nearest]
    return SweepEdges(found, edge_times)
