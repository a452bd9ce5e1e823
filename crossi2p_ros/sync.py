"""Approximate-time pairing of camera and LiDAR streams (pure Python, shared by the node and offline replay).

Each cloud is paired with the image whose stamp is nearest, within
``max_slop_s``; every message is used at most once. A cloud is decided as soon
as no later image can be nearer (an image at or after its stamp has arrived,
or images have moved past its slop), so pairs come out in stamp order with at
most one image period of delay, both live and when a bag is read in order.
Messages that can no longer be paired are dropped and counted. A stamp that
goes backwards by more than ``reset_jump_s`` (a bag played in a loop, a clock
reset) clears both queues and counts a reset: nothing from before the jump is
ever paired with anything after it.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

I = TypeVar("I")
C = TypeVar("C")


@dataclass(frozen=True)
class SyncConfig:
    max_slop_s: float = 0.05      # largest |image stamp - cloud stamp| of a pair
    queue_size: int = 20          # messages kept per stream while waiting for a partner
    reset_jump_s: float = 1.0     # a stamp this far behind its stream's last one resets the pairing


@dataclass
class Pair(Generic[I, C]):
    image_stamp_ns: int
    cloud_stamp_ns: int
    image: I
    cloud: C

    @property
    def offset_s(self) -> float:
        """Image stamp minus cloud stamp [s]."""
        return (self.image_stamp_ns - self.cloud_stamp_ns) * 1e-9


@dataclass
class SyncStats:
    pairs: int = 0
    dropped_images: int = 0
    dropped_clouds: int = 0
    resets: int = 0


class ApproximateTimeSync(Generic[I, C]):
    def __init__(self, cfg: SyncConfig = SyncConfig()):
        self.cfg = cfg
        self.stats = SyncStats()
        self._images: deque[tuple[int, I]] = deque()
        self._clouds: deque[tuple[int, C]] = deque()
        self._last = {"image": None, "cloud": None}

    def reset(self) -> None:
        """Forget everything queued (counts as dropped); statistics are kept."""
        self.stats.dropped_images += len(self._images)
        self.stats.dropped_clouds += len(self._clouds)
        self._images.clear()
        self._clouds.clear()
        self._last = {"image": None, "cloud": None}

    def flush(self) -> list[Pair[I, C]]:
        """End of stream: pair the clouds still waiting with the images there are (no later image will come)."""
        slop = int(self.cfg.max_slop_s * 1e9)
        out: list[Pair[I, C]] = []
        while self._clouds:
            t_cloud, cloud = self._clouds.popleft()
            if not self._images:
                self.stats.dropped_clouds += 1
                continue
            best = min(range(len(self._images)), key=lambda k: abs(self._images[k][0] - t_cloud))
            t_image, image = self._images[best]
            if abs(t_image - t_cloud) > slop:
                self.stats.dropped_clouds += 1
                continue
            for _ in range(best + 1):
                self._images.popleft()
            self.stats.dropped_images += best
            self.stats.pairs += 1
            out.append(Pair(t_image, t_cloud, image, cloud))
        self.stats.dropped_images += len(self._images)
        self._images.clear()
        return out

    def add_image(self, stamp_ns: int, image: I) -> list[Pair[I, C]]:
        return self._add("image", self._images, int(stamp_ns), image)

    def add_cloud(self, stamp_ns: int, cloud: C) -> list[Pair[I, C]]:
        return self._add("cloud", self._clouds, int(stamp_ns), cloud)

    def _add(self, stream: str, queue: deque, stamp_ns: int, item: Any) -> list[Pair[I, C]]:
        last = self._last[stream]
        if last is not None and stamp_ns < last - self.cfg.reset_jump_s * 1e9:
            self.reset()
            self.stats.resets += 1
            last = None   # the stream starts again from this stamp (not from the maximum before the jump)
        self._last[stream] = stamp_ns if last is None else max(last, stamp_ns)
        queue.append((stamp_ns, item))
        if len(queue) > 1 and queue[-1][0] < queue[-2][0]:
            ordered = sorted(queue, key=lambda e: e[0])
            queue.clear()
            queue.extend(ordered)
        while len(queue) > self.cfg.queue_size:
            queue.popleft()
            if stream == "image":
                self.stats.dropped_images += 1
            else:
                self.stats.dropped_clouds += 1
        return self._match()

    def _match(self) -> list[Pair[I, C]]:
        slop = int(self.cfg.max_slop_s * 1e9)
        out: list[Pair[I, C]] = []
        # the oldest cloud is decided once an image at or after its stamp exists: later images are farther
        while self._clouds and self._images and self._images[-1][0] >= self._clouds[0][0]:
            t_cloud, cloud = self._clouds.popleft()
            best = min(range(len(self._images)), key=lambda k: abs(self._images[k][0] - t_cloud))
            t_image, image = self._images[best]
            if abs(t_image - t_cloud) > slop:
                self.stats.dropped_clouds += 1
                continue
            for _ in range(best):  # older images are farther from every later cloud
                self._images.popleft()
                self.stats.dropped_images += 1
            self._images.popleft()
            self.stats.pairs += 1
            out.append(Pair(t_image, t_cloud, image, cloud))
        # images too old to pair with any queued or future cloud
        horizon = self._clouds[0][0] if self._clouds else self._last["cloud"]
        if horizon is not None:
            while self._images and self._images[0][0] < horizon - slop:
                self._images.popleft()
                self.stats.dropped_images += 1
        return out
