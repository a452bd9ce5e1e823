"""The window objective's inner loop, compiled: project, sample the edge field, score, in one pass.

Every step of every search and refinement scores each keyframe's edge
points: project them (pinhole, T_camera_lidar), look up the distance field
bilinearly, apply the Geman-McClure score, sum. Written as numpy calls over
(poses x points) arrays this was a dozen temporaries per keyframe per step
plus one ``cv2.remap`` each, and most of a 20-keyframe solve's 14 s on our
2-core CPU went there (benchmarks/solve_time.py). No library fuses a
projection, a bilinear lookup and a reduction, so this module does, with
numba: one loop over poses and points, nothing stored per sample. A grid of
2,200 poses on 100 points scores 5x faster than in the numpy form; a whole
solve takes about 0.55 of the time (docs/benchmarks.md, "Window estimator").

Conventions (shared with :mod:`.image_edges`): points [m, LiDAR frame];
pixels of the keyframe's full-resolution pinhole image; a point is counted
when in front of the camera (z > 0.5 m) and inside [0, W-1] x [0, H-1];
level pixel centres sit at ``(u + 0.5) * scale - 0.5``, points of the second
(stacked) field ``second_row`` rows lower; bilinear with the field's border
replicated, like ``cv2.remap(..., BORDER_REPLICATE)`` (which quantises the
sample position to 1/32 pixel; this does not).

Kernels are single-threaded and release the GIL (``nogil``), so solves in
several threads (the node's worker, tests) run side by side safely, and one
solve can split its keyframes over threads (:func:`map_in_threads`): since
the compiler options below the samples are compute-bound, and a translation
grid on 20 keyframes takes about half its time on two threads of our 2-core CPU
(before them a split gained at most 10 %). Compiled code is cached beside this
file (or in numba's user-wide cache where that is not writable) after the
first call, which takes a few seconds.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence, TypeVar

import numpy as np
from numba import njit

_In = TypeVar("_In")
_Out = TypeVar("_Out")
_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def map_in_threads(fn: Callable[[_In], _Out], items: Sequence[_In], threads: int) -> list[_Out]:
    """``[fn(item) for item in items]``, the items split into ``threads`` contiguous runs done side by side.

    Meant for calls into this module's kernels, which release the GIL. The results come back in the
    items' order, so a sum over them is bit-identical to the serial one. The worker threads are shared by
    every caller (one pool per thread count and process: a forked child makes its own).
    """
    n = min(int(threads), len(items))
    if n <= 1:
        return [fn(item) for item in items]
    key = (os.getpid(), n)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = ThreadPoolExecutor(n, thread_name_prefix="crossi2p-kernels")
    bounds = [len(items) * k // n for k in range(n + 1)]
    runs = [pool.submit(lambda a, b: [fn(item) for item in items[a:b]], a, b)
            for a, b in zip(bounds[:-1], bounds[1:])]
    return [out for run in runs for out in run.result()]


_MIN_DEPTH_M = 0.5
# compiler options of every kernel: division without Python's zero check (a zero depth is refused before it
# divides) and floating-point contraction and reciprocals, but no 'nnan' / 'ninf': a NaN point must still fail
# both the depth and the in-image test (test_nan_edge_points_never_count_in_the_compiled_objective). With the
# floor in _cell, one pose's samples (refinement) take 0.55 of the time and its normal equations 0.65 on our
# CPU; a grid's (many poses) 0.94; results agree to 1e-14 (docs/benchmarks.md, "Window estimator")
_JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract", "arcp", "nsz", "afn"})


@njit(inline="always", **_JIT)
def _bilinear(field, ch, j0, j1, i0, i1, ax, ay):
    return ((1.0 - ay) * ((1.0 - ax) * field[j0, i0, ch] + ax * field[j0, i1, ch])
            + ay * ((1.0 - ax) * field[j1, i0, ch] + ax * field[j1, i1, ch]))


@njit(inline="always", **_JIT)
def _cell(u, v, scale, row, h, w):
    """Bilinear cell (j0, j1, i0, i1) and weights (ax, ay) of full-resolution pixel (u, v) in a level."""
    mx = (u + 0.5) * scale - 0.5
    my = (v + 0.5) * scale - 0.5 + row
    # floor by truncation: u, v >= 0 (in the image) and row >= 0 keep mx, my above -1, and int() of a
    # positive float is its floor; np.floor here was a third of a sample's time
    ix = int(mx + 1.0) - 1
    iy = int(my + 1.0) - 1
    i0 = min(max(ix, 0), w - 1)
    i1 = min(max(ix + 1, 0), w - 1)
    j0 = min(max(iy, 0), h - 1)
    j1 = min(max(iy + 1, 0), h - 1)
    return j0, j1, i0, i1, mx - ix, my - iy


@njit(inline="always", **_JIT)
def _project(R, t, c, X, Y, Z, K, size):
    """Point (X, Y, Z) [m, LiDAR frame] under pose c of ``R`` (C, 3, 3), ``t`` (C, 3): whether it counts
    (in front, inside the image; NaN never counts), its camera-frame coordinates [m], 1 / depth, pixel (u, v)."""
    pz = R[c, 2, 0] * X + R[c, 2, 1] * Y + R[c, 2, 2] * Z + t[c, 2]
    if not pz > _MIN_DEPTH_M:   # written so that NaN is left out too
        return False, 0.0, 0.0, pz, 0.0, 0.0, 0.0
    px = R[c, 0, 0] * X + R[c, 0, 1] * Y + R[c, 0, 2] * Z + t[c, 0]
    py = R[c, 1, 0] * X + R[c, 1, 1] * Y + R[c, 1, 2] * Z + t[c, 1]
    iz = 1.0 / pz
    x, y = px * iz, py * iz
    u = K[0] * x + K[1] * y + K[2]
    v = K[3] * y + K[4]
    return (0.0 <= u <= size[0] and 0.0 <= v <= size[1]), px, py, pz, iz, u, v


@njit(**_JIT)
def score_poses(points, second, K, size, R, t, field, scale, second_row, sigma2, contrast):
    """Summed scores (C,) of ``points`` (N, 3) at each pose ``R`` (C, 3, 3), ``t`` (C, 3) (T_camera_lidar).

    ``second`` (N,) bool: points sampled from the stacked level's second field; ``K`` (5,) fx, skew, cx,
    fy, cy [px]; ``size`` (2,) the last valid u and v [px]; ``field`` (h, w, C>=3) float32 the level
    (:class:`.image_edges.EdgeLevel`); ``sigma2`` the robust scale squared [px^2]; with ``contrast`` the
    field's fourth channel (the score's local mean) is subtracted. Points not in the image score 0.
    """
    h, w = field.shape[0], field.shape[1]
    out = np.zeros(R.shape[0])
    # points outer, poses inner: one point under nearby poses reads one neighbourhood of the field, which
    # stays in cache (a window's fields do not: tens of MB a keyframe at the finer levels)
    for i in range(points.shape[0]):
        X, Y, Z = points[i, 0], points[i, 1], points[i, 2]
        row = second_row if second[i] else 0.0
        for c in range(R.shape[0]):
            counts, _, _, _, _, u, v = _project(R, t, c, X, Y, Z, K, size)
            if not counts:
                continue
            j0, j1, i0, i1, ax, ay = _cell(u, v, scale, row, h, w)
            d = _bilinear(field, 0, j0, j1, i0, i1, ax, ay)
            s = sigma2 / (sigma2 + d * d)
            if contrast:
                s -= _bilinear(field, 3, j0, j1, i0, i1, ax, ay)
            out[c] += s
    return out


@njit(inline="always", **_JIT)
def _rows(C, n):
    """Room for C poses' rows of n points: Jacobians (C, n, 6), residuals and weights (C, n), rows filled (C,)."""
    return np.empty((C, n, 6)), np.empty((C, n)), np.empty((C, n)), np.zeros(C, dtype=np.int64)


@njit(inline="always", **_JIT)
def _add_row(J, r, wt, m, c, field, j0, j1, i0, i1, ax, ay, d, px, py, pz, iz, K, sigma2):
    """Pose c's next row of the normal equations' inputs: the point's Jacobian J (6,) of its distance ``d`` [px]
    (at camera point p = (px, py, pz), 1 / pz = iz, the field cell of :func:`_cell`), the residual and its
    Geman-McClure IRLS weight. The one reprojection Jacobian of both linearise kernels."""
    du = _bilinear(field, 1, j0, j1, i0, i1, ax, ay) * K[0] * iz
    dv = _bilinear(field, 2, j0, j1, i0, i1, ax, ay) * K[3] * iz
    dz = -(du * px + dv * py) * iz
    k = m[c]
    # [w, p x w]: a left step moves p by rho + phi x p
    J[c, k, 0], J[c, k, 1], J[c, k, 2] = du, dv, dz
    J[c, k, 3], J[c, k, 4], J[c, k, 5] = py * dz - pz * dv, pz * du - px * dz, px * dv - py * du
    s = sigma2 / (sigma2 + d * d)
    r[c, k] = d
    wt[c, k] = s * s
    m[c] = k + 1


@njit(**_JIT)
def linearise_poses(points, second, K, size, R, t, field, scale, second_row, sigma2):
    """Gauss-Newton normal equations of the edge distances at each pose ``R`` (C, 3, 3), ``t`` (C, 3):
    ``H`` (C, 6, 6) = sum w J^T J and ``g`` (C, 6) = sum w J^T d over the points in the image, with the
    Geman-McClure IRLS weight ``w = (sigma2 / (sigma2 + d^2))^2``.

    J (6,) is the derivative of a point's distance ``d`` [px] with respect to a left perturbation
    (rho [m], phi [rad]) in the camera frame, through the field's stored derivatives and the pinhole
    (the skew term is left out, as in :func:`.solver.pullback_to_pose`). Other arguments as
    :func:`score_poses`. Each pose's sums run over the points in their order, so a pose's equations do
    not depend on which other poses share the call (a refinement linearises all its poses in one call).
    """
    h, w = field.shape[0], field.shape[1]
    n, C = points.shape[0], R.shape[0]
    J, r, wt, m = _rows(C, n)
    # points outer, poses inner, as in score_poses: nearby poses read one neighbourhood of the field
    for i in range(n):
        X, Y, Z = points[i, 0], points[i, 1], points[i, 2]
        row = second_row if second[i] else 0.0
        for c in range(C):
            counts, px, py, pz, iz, u, v = _project(R, t, c, X, Y, Z, K, size)
            if not counts:
                continue
            j0, j1, i0, i1, ax, ay = _cell(u, v, scale, row, h, w)
            d = _bilinear(field, 0, j0, j1, i0, i1, ax, ay)
            _add_row(J, r, wt, m, c, field, j0, j1, i0, i1, ax, ay, d, px, py, pz, iz, K, sigma2)
    return _normal_equations(J, r, wt, m)


@njit(**_JIT)
def _normal_equations(J, r, wt, m):
    """H (C, 6, 6) = sum w J^T J and g (C, 6) = sum w J^T r over each pose's first ``m[c]`` rows of J (C, n, 6),
    r, wt (C, n)."""
    C = J.shape[0]
    H = np.zeros((C, 6, 6))
    g = np.zeros((C, 6))
    for c in range(C):
        # the 6 x 6 products in one BLAS call a pose (accumulated per point they cost more than the sampling)
        Jc = J[c, : m[c]]
        Jw = Jc * wt[c, : m[c]].reshape(-1, 1)
        H[c] = Jw.T @ Jc
        g[c] = Jw.T @ r[c, : m[c]]
    return H, g


@njit(inline="always", **_JIT)
def _nearest_sample(R, t, c, points, spans, samples, i, K, size, field, scale, row, h, w):
    """Point ``i`` under pose c: of its ``samples[i]`` positions spread evenly over its interval (``points[i]``
    plus -1/2 to +1/2 of ``spans[i]``, [m]; one sample: the point itself), the one nearest an image edge.
    Returns whether any counts, its distance [px], cell, and projection (as :func:`_project`)."""
    S = samples[i]
    best = np.inf
    found = False
    bj0, bj1, bi0, bi1, bax, bay = 0, 0, 0, 0, 0.0, 0.0
    bpx, bpy, bpz, biz = 0.0, 0.0, 0.0, 0.0
    for k in range(S):
        f = (k + 0.5) / S - 0.5
        X = points[i, 0] + f * spans[i, 0]
        Y = points[i, 1] + f * spans[i, 1]
        Z = points[i, 2] + f * spans[i, 2]
        counts, px, py, pz, iz, u, v = _project(R, t, c, X, Y, Z, K, size)
        if not counts:
            continue
        j0, j1, i0, i1, ax, ay = _cell(u, v, scale, row, h, w)
        d = _bilinear(field, 0, j0, j1, i0, i1, ax, ay)
        if not found or d * d < best * best:
            found = True
            best = d
            bj0, bj1, bi0, bi1, bax, bay = j0, j1, i0, i1, ax, ay
            bpx, bpy, bpz, biz = px, py, pz, iz
    return found, best, bj0, bj1, bi0, bi1, bax, bay, bpx, bpy, bpz, biz


@njit(**_JIT)
def score_poses_intervals(points, second, K, size, R, t, field, scale, second_row, sigma2, spans, samples,
                          contrast):
    """:func:`score_poses` of points that stand for intervals: ``spans`` (N, 3) [m] and ``samples`` (N,) int,
    point i scoring at the best of its ``samples[i]`` positions over ``points[i] +- spans[i] / 2`` (where its
    silhouette may lie; ``WindowConfig.interval_spacing``).

    A kernel of its own, not a branch in :func:`score_poses`: with the extra arguments and a per-point branch
    there, default solves (one sample a point) took 1.5x their time (benchmarks/solve_time.py, 3.2 s -> 4.9 s).
    """
    h, w = field.shape[0], field.shape[1]
    out = np.zeros(R.shape[0])
    for i in range(points.shape[0]):   # points outer, poses inner, as in score_poses
        row = second_row if second[i] else 0.0
        for c in range(R.shape[0]):
            if samples[i] == 1:   # written out: through _nearest_sample's loop a solve took 8.6 s, not 4.5
                counts, _, _, _, _, u, v = _project(R, t, c, points[i, 0], points[i, 1], points[i, 2], K, size)
                if not counts:
                    continue
                j0, j1, i0, i1, ax, ay = _cell(u, v, scale, row, h, w)
                d = _bilinear(field, 0, j0, j1, i0, i1, ax, ay)
            else:
                counts, d, j0, j1, i0, i1, ax, ay, _, _, _, _ = _nearest_sample(
                    R, t, c, points, spans, samples, i, K, size, field, scale, row, h, w)
                if not counts:
                    continue
            s = sigma2 / (sigma2 + d * d)
            if contrast:
                s -= _bilinear(field, 3, j0, j1, i0, i1, ax, ay)
            out[c] += s
    return out


@njit(**_JIT)
def linearise_poses_intervals(points, second, K, size, R, t, field, scale, second_row, sigma2, spans, samples):
    """:func:`linearise_poses` of points that stand for intervals (as :func:`score_poses_intervals`), each
    linearised at its sample nearest an image edge."""
    h, w = field.shape[0], field.shape[1]
    n, C = points.shape[0], R.shape[0]
    J, r, wt, m = _rows(C, n)
    for i in range(n):
        row = second_row if second[i] else 0.0
        for c in range(C):
            if samples[i] == 1:   # as in score_poses_intervals
                counts, px, py, pz, iz, u, v = _project(R, t, c, points[i, 0], points[i, 1], points[i, 2], K, size)
                if not counts:
                    continue
                j0, j1, i0, i1, ax, ay = _cell(u, v, scale, row, h, w)
                d = _bilinear(field, 0, j0, j1, i0, i1, ax, ay)
            else:
                counts, d, j0, j1, i0, i1, ax, ay, px, py, pz, iz = _nearest_sample(
                    R, t, c, points, spans, samples, i, K, size, field, scale, row, h, w)
                if not counts:
                    continue
            _add_row(J, r, wt, m, c, field, j0, j1, i0, i1, ax, ay, d, px, py, pz, iz, K, sigma2)
    return _normal_equations(J, r, wt, m)
