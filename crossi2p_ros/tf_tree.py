"""Transforms as a tree: look up ``T_target_source`` composed through intermediate frames (pure numpy).

A robot's ``/tf_static`` rarely holds the LiDAR -> camera edge itself: a URDF
publishes ``base_link -> lidar`` and ``base_link -> camera_link ->
camera_optical``. :class:`StaticTransforms` keeps every edge it is given and
answers a lookup by walking the (undirected) graph from the source frame to
the target frame, inverting edges walked child -> parent, like tf2 does for
static frames. tf2 itself is not used: its Python buffer needs a running
rclpy node, and replay reads TF from bags without one.

:class:`TransformBuffer` adds the moving edges of ``/tf`` (odometry such as
``odom -> base_link``), each kept over a recent history and interpolated at
the instant asked for, as tf2's buffer does; the LiDAR's motion between two
sweeps then comes from the vehicle's own odometry instead of registering
the sweeps (:meth:`TransformBuffer.lookup` at both stamps).
"""
from __future__ import annotations

import bisect
import threading
import time
from collections import deque

import numpy as np
from scipy.spatial.transform import Rotation

from .geometry import invert, make_transform


class StaticTransforms:
    """Edges ``parent -> child`` with ``T_parent_child`` (4x4, maps child-frame points into the parent, metres)."""

    def __init__(self) -> None:
        self._edges: dict[tuple[str, str], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._edges)

    def __contains__(self, edge: tuple[str, str]) -> bool:
        return edge in self._edges

    def add(self, parent: str, child: str, T_parent_child: np.ndarray) -> None:
        """Set the edge (a frame has one parent in TF: a new parent replaces the old edge)."""
        for edge in [e for e in self._edges if e[1] == child and e[0] != parent]:
            del self._edges[edge]
        self._edges[(parent, child)] = np.asarray(T_parent_child, dtype=np.float64)

    def clear(self) -> None:
        self._edges.clear()

    def copy(self) -> "StaticTransforms":
        """A tree of the same edges (one dict copy: safe against an add on another thread meanwhile)."""
        tree = StaticTransforms()
        tree._edges = dict(self._edges)
        return tree

    def frames(self) -> set[str]:
        return {f for edge in self._edges for f in edge}

    def lookup(self, target: str, source: str, skip: set[tuple[str, str]] | None = None) -> np.ndarray | None:
        """``T_target_source`` (maps ``source``-frame points into ``target``), or None if not connected.

        ``skip`` lists edges to ignore (e.g. the one the caller itself publishes).
        """
        if target == source:
            return np.eye(4)
        neighbours: dict[str, list[tuple[str, np.ndarray]]] = {}
        for (parent, child), T in self._edges.items():
            if skip and (parent, child) in skip:
                continue
            neighbours.setdefault(parent, []).append((child, T))           # T_parent_child
            neighbours.setdefault(child, []).append((parent, invert(T)))   # T_child_parent
        # breadth first from the target: T_target_frame for every frame reached
        reached = {target: np.eye(4)}
        queue = deque([target])
        while queue:
            frame = queue.popleft()
            for other, T_frame_other in neighbours.get(frame, []):
                if other not in reached:
                    reached[other] = reached[frame] @ T_frame_other
                    if other == source:
                        return reached[other]
                    queue.append(other)
        return None

    def camera_lidar(self, lidar_frame: str, camera_frame: str,
                     skip: set[tuple[str, str]] | None = None) -> np.ndarray | None:
        """``T_camera_lidar`` (LiDAR points into the camera frame) through any chain of static frames."""
        return self.lookup(camera_frame, lidar_frame, skip)


class TransformBuffer:
    """The static tree plus the recent history of moving edges (``/tf``), looked up at an instant.

    A moving edge is interpolated between the two samples around the instant (translation linearly, rotation
    along the shortest arc), never extrapolated: like tf2, an instant outside an edge's samples, or between
    two samples more than ``max_gap_s`` apart (odometry that dropped out), has no transform. Thread-safe: the
    node adds from its executor and looks up from its preparer.
    """

    def __init__(self, static: StaticTransforms | None = None, history_s: float | None = 10.0,
                 max_gap_s: float = 0.5):
        """``static``: the tree of static edges, shared (edges added to it later count); ``history_s``: how
        long each moving edge's samples are kept (None: all, for a bag read whole)."""
        self.static = StaticTransforms() if static is None else static
        self.history_ns = None if history_s is None else int(history_s * 1e9)
        self.max_gap_ns = int(max_gap_s * 1e9)
        self._lock = threading.Lock()
        self._added = threading.Condition(self._lock)
        self._newest_ns: int | None = None   # the newest sample of any moving edge
        # (parent, child) -> sorted stamps [ns] and, per stamp, (rotation as a quaternion x y z w, translation)
        self._moving: dict[tuple[str, str], tuple[list[int], list[tuple[np.ndarray, np.ndarray]]]] = {}

    def add(self, parent: str, child: str, T_parent_child: np.ndarray, stamp_ns: int) -> None:
        """One sample of the moving edge ``parent -> child`` at ``stamp_ns``; samples older than the history
        kept (from the edge's newest) are dropped. A sample at a stamp already held replaces it."""
        T = np.asarray(T_parent_child, dtype=np.float64)
        sample = (Rotation.from_matrix(T[:3, :3]).as_quat(), T[:3, 3].copy())
        with self._lock:
            stamps, samples = self._moving.setdefault((parent, child), ([], []))
            at = bisect.bisect_left(stamps, stamp_ns)
            if at < len(stamps) and stamps[at] == stamp_ns:
                samples[at] = sample
            else:
                stamps.insert(at, stamp_ns)
                samples.insert(at, sample)
            if self.history_ns is not None:
                old = bisect.bisect_left(stamps, stamps[-1] - self.history_ns)
                del stamps[:old], samples[:old]
            self._newest_ns = stamp_ns if self._newest_ns is None else max(self._newest_ns, stamp_ns)
            self._added.notify_all()

    def clear(self) -> None:
        """Forget the moving edges (a clock that jumped back); the static tree stays."""
        with self._lock:
            self._moving.clear()
            self._newest_ns = None

    def moving_edges(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._moving)

    def _interpolated(self, edge: tuple[str, str], stamp_ns: int) -> np.ndarray | None:
        stamps, samples = self._moving[edge]
        at = bisect.bisect_left(stamps, stamp_ns)
        if at < len(stamps) and stamps[at] == stamp_ns:
            q, t = samples[at]
            return make_transform(Rotation.from_quat(q).as_matrix(), t)
        if at == 0 or at == len(stamps) or stamps[at] - stamps[at - 1] > self.max_gap_ns:
            return None
        f = (stamp_ns - stamps[at - 1]) / (stamps[at] - stamps[at - 1])
        (qa, ta), (qb, tb) = samples[at - 1], samples[at]
        ra, rb = Rotation.from_quat(qa), Rotation.from_quat(qb)
        rotation = ra * Rotation.from_rotvec(f * (ra.inv() * rb).as_rotvec())
        return make_transform(rotation.as_matrix(), (1.0 - f) * ta + f * tb)

    def lookup(self, target: str, source: str, stamp_ns: int, timeout_s: float = 0.0) -> np.ndarray | None:
        """``T_target_source`` at ``stamp_ns`` through static and moving edges (each moving one interpolated at
        that instant), or None where the frames are not connected then.

        ``timeout_s``: while no moving edge has a sample at or after ``stamp_ns`` yet (odometry still on its way:
        a busy executor takes /tf's messages a few hundred ms late), wait up to this long for one, as tf2's
        lookup with a timeout does. Without any moving edge there is nothing to wait for."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._newest_ns is not None and self._newest_ns < stamp_ns:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._added.wait(remaining):
                    break
            moving = [(edge, self._interpolated(edge, stamp_ns)) for edge in self._moving]
        tree = self.static.copy()
        for edge, T in moving:
            if T is not None:
                tree.add(*edge, T)
        return tree.lookup(target, source)
