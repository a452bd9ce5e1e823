"""Depth discontinuities of a sweep without rings: neighbours in the sensor's own angular grid.

Rosettes (Livox-type) and raster scanners (Luminar-type) have no rings, and a
reordered sweep of a spinning head whose beams cannot be told apart has none
that can be trusted (:func:`.lidar_edges.ring_crispness` checks). Every LiDAR
still samples directions: seen from its origin, a point's neighbours are the
points nearest in angle, whatever order they came in. This module finds them
with a k-d tree on the unit directions (the chord is the angle to 1e-7 at
these scales; no wrap-around at +-180 deg), the sweep's angular resolution
from the data (the median angle to the nearest neighbour), and applies the
ring path's test to every neighbour pair: the far point at least
``max(min_jump_m, min_jump_ratio * range)`` farther, the near point's
neighbour on the opposite side continuing its surface.

Upright or level follows the pair's direction, not a ring: a pair side by side
(more horizontal than vertical in the tangent plane) brackets an upright
silhouette, one above the other a level one. Level edges keep the ring path's
rule of upper silhouettes only (the far point above the near one), unless
``across_bottoms``.

Cost: one k-d tree query of 14 neighbours per point: 0.12 s a 17.6 k-point
rosette sweep, 0.34 s a 66 k-point raster one on our CPU (benchmarks/rigs.py
prints it per sensor; the ring path takes 25-125 ms).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class AngularEdges:
    """Edge pairs found among angular neighbours: indices into the sweep's points."""

    near: np.ndarray          # (M,) int64: the edge point (the near side)
    far: np.ndarray           # (M,) int64: its far neighbour
    upright: np.ndarray       # (M,) bool: side by side (an upright silhouette); else one above the other
    cluttered: np.ndarray     # (M,) bool: among many discontinuities (see find_angular_edges)
    step_deg: float           # the sweep's angular resolution: median angle to the nearest neighbour
    vertical_gap_deg: float   # median angle to the nearest neighbour above or below (a lower bound where the
                              # query found none: then level edges are out of reach anyway)


def _tangent_offsets(u: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets of the neighbours ``idx`` (N, k) of unit directions ``u`` (N, 3) in each point's tangent plane:
    horizontal (towards growing azimuth, left) and vertical (up) components [rad], each (N, k)."""
    east = np.stack([-u[:, 1], u[:, 0], np.zeros(len(u))], 1)
    east /= np.maximum(np.linalg.norm(east, axis=1, keepdims=True), 1e-12)
    north = np.cross(u, east)
    d = u[idx] - u[:, None, :]
    return np.einsum("nkd,nd->nk", d, east), np.einsum("nkd,nd->nk", d, north)


def find_angular_edges(xyz: np.ndarray, rng: np.ndarray, is_jump: Callable[[np.ndarray, np.ndarray], np.ndarray],
                       smooth_fraction: float, max_gap_steps: float,
                       neighbours: int = 8, clutter_window: int = 6, clutter_max: int = 2,
                       across_bottoms: bool = False, opposite_cos: float = 0.7) -> AngularEdges:
    """Edge pairs of a sweep ``xyz`` (N, 3) [m, LiDAR frame] at ranges ``rng`` (N,) [m], in any point order.

    ``is_jump(r_near, r_far)`` is the ring path's discontinuity test; ``smooth_fraction``, ``max_gap_steps``
    (neighbours farther than this many resolution steps are not neighbours), ``clutter_window`` /
    ``clutter_max`` and ``across_bottoms`` mean what they mean in :class:`.lidar_edges.LidarEdgeConfig`. A
    point is the near end of at most one upright and one level pair, its nearest such neighbour.

    Cluttered: an upright pair whose near point has more than ``clutter_max`` other side-by-side
    discontinuities among its neighbours within ``clutter_window`` steps (porous foliage, as on rings).
    """
    n = len(xyz)
    empty = np.zeros(0, np.int64)
    k_query = max(neighbours, 2 * clutter_window + 2)
    if n <= k_query:
        return AngularEdges(empty, empty, np.zeros(0, bool), np.zeros(0, bool), 0.0, 0.0)
    u = xyz / rng[:, None]
    dist, idx = cKDTree(u).query(u, k=k_query + 1)
    dist, idx = dist[:, 1:], idx[:, 1:]                      # the first is the point itself
    step = float(np.median(dist[:, 0]))
    dh, dv = _tangent_offsets(u, idx)
    side = np.abs(dh) >= np.abs(dv)                          # side by side: an upright silhouette between them

    near_set = np.arange(neighbours)
    d_e, i_e, dh_e, dv_e, side_e = dist[:, near_set], idx[:, near_set], dh[:, near_set], dv[:, near_set], \
        side[:, near_set]
    linked = d_e <= max_gap_steps * max(step, 1e-9)
    r_i, r_j = rng[:, None], rng[i_e]
    jump = linked & is_jump(np.broadcast_to(r_i, r_j.shape), r_j)
    # the near point's other neighbour: the nearest linked one on the opposite side of the pair's direction
    off = np.stack([dh_e, dv_e], -1)
    off /= np.maximum(np.linalg.norm(off, axis=-1, keepdims=True), 1e-12)
    cos_ab = np.einsum("nad,nbd->nab", off, off)
    opposite = (cos_ab < -opposite_cos) & linked[:, None, :]
    # a pair counts only when nothing lies between: no nearer linked neighbour in the same direction (else a
    # silhouette two steps away would make this point an edge too)
    nearer = np.tri(neighbours, k=-1, dtype=bool)[None]      # [a, b]: b sorted before a
    shadowed = ((cos_ab > opposite_cos) & nearer & linked[:, None, :]).any(2)
    jump &= ~shadowed
    has_opposite = opposite.any(2)
    first = np.argmax(opposite, axis=2)                      # neighbours are sorted by angle: the nearest
    r_other = rng[np.take_along_axis(i_e, first, 1)]
    other_step = np.where(has_opposite, np.abs(r_other - r_i), np.inf)
    edge = jump & (r_i < r_j) & (other_step <= smooth_fraction * np.abs(r_j - r_i))
    level_ok = across_bottoms | (dv_e > 0)                   # upper silhouettes: the far point above

    # side-by-side discontinuities around each point, for the clutter rule
    window = dist <= clutter_window * max(step, 1e-9)
    jumpy = (jump & side_e).any(1)
    nearby_jumpy = (jumpy[idx] & side & window).sum(1)

    near_out, far_out, upright_out, clutter_out = [], [], [], []
    for upright, mask in ((True, edge & side_e), (False, edge & ~side_e & level_ok)):
        rows = np.flatnonzero(mask.any(1))
        col = np.argmax(mask[rows], axis=1)                  # the nearest such neighbour
        near_out.append(rows)
        far_out.append(i_e[rows, col])
        upright_out.append(np.full(len(rows), upright))
        clutter_out.append(nearby_jumpy[rows] > clutter_max + 1 if upright else np.zeros(len(rows), bool))
    gap = np.where(~side, dist, np.inf).min(1)
    gap = np.where(np.isfinite(gap), gap, dist[:, -1])       # none among the neighbours: at least that far
    return AngularEdges(np.concatenate(near_out), np.concatenate(far_out), np.concatenate(upright_out),
                        np.concatenate(clutter_out), float(np.degrees(step)), float(np.degrees(np.median(gap))))
