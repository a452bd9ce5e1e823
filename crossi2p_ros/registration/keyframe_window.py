"""Choosing keyframes from a stream: frames with structure, different from the ones already held.

A window of near-identical frames (a car waiting at a light) adds cost but no
information: its wrong optima coincide as much as its right one does. A
stream therefore offers every prepared frame to :class:`KeyframeWindow`,
which keeps a frame when

* it has structure: at least ``min_edge_points`` LiDAR depth edges, and
* it differs from the newest keyframe: its image thumbnail changed by at
  least ``min_change`` (mean absolute difference of a 64-px-wide grey
  thumbnail, in [0, 1]: the scene moved in view), or ``max_interval_s`` has
  passed since (lighting and traffic change even when the ego does not),
* and at least ``min_interval_s`` has passed since the newest keyframe (a
  live stream offers more frames than a CPU can prepare; spacing them also
  spreads the window over more of the drive),

and holds the newest ``size`` of them (or, with ``diverse_speeds`` while moving, the
``size`` whose speeds differ most). Refused frames are counted by reason.
The look and the interval are checked by :meth:`KeyframeWindow.skip_reason`
*before* a frame is prepared (thumbnails cost a millisecond, features ~0.15 s).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from .keyframe import Keyframe

THUMB_WIDTH = 64


def thumbnail(image: np.ndarray) -> np.ndarray:
    """A small grey float32 version of an (H, W[, 3]) uint8 image, in [0, 1]: the keyframe's look."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    h = max(int(round(grey.shape[0] * THUMB_WIDTH / grey.shape[1])), 1)
    return cv2.resize(grey, (THUMB_WIDTH, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


@dataclass(frozen=True)
class KeyframeConfig:
    size: int = 20                # keyframes held (the window); 20 measured (docs/benchmarks.md)
    min_edge_points: int = 100    # fewer LiDAR depth edges: no structure to align
    min_change: float = 0.04      # thumbnail change that makes a frame new
    max_interval_s: float = 5.0   # ... or this long since the newest keyframe
    min_interval_s: float = 0.25  # never closer than this to the newest keyframe [s] (stamps)
    # full window, moving (keyframes with twists): drop the keyframe whose speed the others repeat most closely
    # instead of the oldest, so the window keeps the speed changes that tell the camera's time offset from its
    # lever arm (registration/time_offset.py); off: the newest keyframes (what a drift monitor needs)
    diverse_speeds: bool = False


@dataclass
class KeyframeWindow:
    """The newest ``cfg.size`` distinct, structured keyframes of a stream."""

    cfg: KeyframeConfig = field(default_factory=KeyframeConfig)
    skipped: dict[str, int] = field(default_factory=lambda: {"no structure": 0, "no change": 0, "too soon": 0})

    def __post_init__(self) -> None:
        self._frames: deque[tuple[Keyframe, np.ndarray]] = deque(maxlen=self.cfg.size)

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def keyframes(self) -> list[Keyframe]:
        return [kf for kf, _ in self._frames]

    def skip_reason(self, look: np.ndarray, stamp: float | None) -> str | None:
        """Why a frame with this :func:`thumbnail` and stamp [s] would not add to the window ("too soon",
        "no change"), or None; checked before the frame's features are prepared, and counted."""
        if not self._frames:
            return None
        newest, newest_look = self._frames[-1]
        waited = None if stamp is None or newest.stamp is None else stamp - newest.stamp
        reason = None
        if waited is not None and 0.0 <= waited < self.cfg.min_interval_s - 1e-3:   # 1 ms: stamps as float s
            reason = "too soon"
        else:
            change = float(np.mean(np.abs(look - newest_look))) if look.shape == newest_look.shape else 1.0
            if change < self.cfg.min_change and (waited is None or waited < self.cfg.max_interval_s):
                reason = "no change"
        if reason is not None:
            self.skipped[reason] += 1
        return reason

    def offer(self, keyframe: Keyframe, look: np.ndarray) -> bool:
        """Keep ``keyframe`` (with ``look``, its :func:`thumbnail`) if it adds to the window; True if kept."""
        if len(keyframe.edges) < self.cfg.min_edge_points:
            self.skipped["no structure"] += 1
            return False
        if self.skip_reason(look, keyframe.stamp) is not None:
            return False
        if self.cfg.diverse_speeds and len(self._frames) == self.cfg.size and self.cfg.size > 2:
            self._drop_most_repeated_speed(keyframe)
        self._frames.append((keyframe, look))
        return True

    def _drop_most_repeated_speed(self, incoming: Keyframe) -> None:
        """Make room for ``incoming`` by dropping the held keyframe (not the newest) whose speed lies nearest
        another's, counting ``incoming``'s; the oldest where any has no twist."""
        held = [kf for kf, _ in self._frames]
        if incoming.twist is None or any(kf.twist is None for kf in held):
            return                                             # the deque drops the oldest
        speeds = np.array([np.linalg.norm(kf.twist[:3]) for kf in held + [incoming]])
        gap = np.abs(speeds[:, None] - speeds[None, :])
        np.fill_diagonal(gap, np.inf)
        nearest = gap.min(axis=1)[:-2]                         # neither the newest held nor the incoming one
        drop = int(np.argmin(nearest))                         # the first (oldest) of equals
        del self._frames[drop]

    def clear(self) -> None:
        self._frames.clear()
