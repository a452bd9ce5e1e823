"""One LiDAR's per-sweep work, done once for every camera calibrated against it (no ROS).

A rig with several cameras on one LiDAR pairs each sweep with every camera's
image; each camera's :class:`~crossi2p_ros.session.Session` then needs the
same decoded cloud, the same depth edges (:mod:`.registration.sweep_edges`)
and the same odometry twist to the next sweep (:mod:`.registration.deskew`).
The sessions of one LiDAR share one cache, keyed by the sweeps' stamps, and
whichever camera comes first does the work.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable, TypeVar

T = TypeVar("T")


class SweepCache:
    """A small least-recently-used memo of per-sweep results, safe across threads.

    ``size`` entries are kept: enough for the sweeps still waiting to be paired with a slower camera (a few at
    10 Hz). A computation runs under the cache's lock, so two threads asking for one key compute it once; the
    node prepares on one thread, so nothing waits on it there."""

    def __init__(self, size: int = 16):
        self.size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The value of ``key``, from ``compute()`` the first time it is asked for (None results are kept too)."""
        with self._lock:
            if key in self._entries:
                self.hits += 1
                self._entries.move_to_end(key)
                return self._entries[key]
            self.misses += 1
            value = compute()
            self._entries[key] = value
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
            return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
