"""Static transforms as a tree: look up ``T_target_source`` composed through intermediate frames (pure numpy).

A robot's ``/tf_static`` rarely holds the LiDAR -> camera edge itself: a URDF
publishes ``base_link -> lidar`` and ``base_link -> camera_link ->
camera_optical``. :class:`StaticTransforms` keeps every edge it is given and
answers a lookup by walking the (undirected) graph from the source frame to
the target frame, inverting edges walked child -> parent, like tf2 does for
static frames. tf2 itself is not used: its Python buffer needs a running
rclpy node, and replay reads TF from bags without one.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from .geometry import invert


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
