"""Training / evaluation pairs for the network: a torch ``Dataset`` over KITTI-layout folders.

Each item is one camera image with one LiDAR sweep, prepared as the network
consumes it (see ``crossi2p_ros.model.crossi2p``):

* the image is undistorted to a pinhole camera with the *same* K (if the
  camera has lens distortion), resized so that its width equals
  ``ModelConfig.image_width`` and cropped or padded to ``image_height``;
* the intrinsics ``K`` follow the image exactly. Pixel-centre convention:
  OpenCV's, pixel centres at integer coordinates, so resizing by ``s`` maps
  ``u -> s * (u + 0.5) - 0.5`` (which is what ``cv2.resize`` does), and a crop
  starting at column ``ox`` maps ``u -> u - ox``;
* the points are expressed in the *input frame* of the protocol and
  ``T_gt = T_camera_input`` is the transform the network has to recover:

  - ``calib``: the input frame is the camera frame under the initial guess
    ``T_init = CalibProtocol.initial_guess(T_gt, ...)``: ``p_input = T_init @
    p_lidar``, so ``T_camera_input = T_camera_lidar @ inv(T_init)`` and the
    prior is the identity. Only points that project into the image (within a
    margin) under ``T_init`` are kept: that uses the prior only, never the truth.
  - ``i2p``: ``I2PProtocol.apply`` re-expresses the whole sweep in a frame a
    random yaw and horizontal shift away from the camera; no prior.

Every random choice of item ``index`` in epoch ``epoch`` (protocol, crop,
jitter, dropout, point sample) comes from ``default_rng((seed, epoch, index))``
and the protocol draws use index ``(epoch << 32) + index`` (just ``index`` in
epoch 0, as ``crossi2p eval`` numbers its samples), so a run is reproducible
whatever the worker count, and resuming reproduces the data. Indices past
``len(dataset)`` wrap around to the frames again with fresh random draws, so an
epoch may be longer than the data without repeating a pair exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..camera_views import Undistorter, scale_intrinsics
from ..errors import CrossI2PError
from ..geometry import finite_rows, invert, project_pinhole, transform_points
from ..model.config import ModelConfig
from .kitti import Frame, KittiDataset, open_dataset
from .perturb import CalibProtocol, I2PProtocol

Protocol = Literal["calib", "i2p"]
PROTOCOLS: tuple[Protocol, Protocol] = ("calib", "i2p")


@dataclass(frozen=True)
class SampleConfig:
    """How pairs are drawn and augmented. Pixel quantities refer to the network-sized image.

    ``calib`` / ``i2p`` hold the protocol settings (the image size and point
    count fields of ``I2PProtocol`` are not used here: ``ModelConfig`` sets them).
    ``augment`` is the master switch; the other augmentation fields set strengths
    (0 disables one).
    """

    calib_fraction: float = 0.7          # share of calib pairs; the rest are i2p
    calib: CalibProtocol = field(default_factory=CalibProtocol)
    i2p: I2PProtocol = field(default_factory=I2PProtocol)
    calib_margin_px: float = 32.0        # calib: keep points projecting this far outside the image too
    min_depth_m: float = 0.5             # calib: keep points at least this far in front under T_init
    seed: int = 0
    augment: bool = True
    scale_range: tuple[float, float] = (0.9, 1.1)  # intrinsics variation: extra resize factor before cropping
    brightness: float = 0.3              # multiplicative factor drawn from [1 - b, 1 + b]
    contrast: float = 0.3                # factor drawn from [1 - c, 1 + c] about the mean grey
    saturation: float = 0.3              # factor drawn from [1 - s, 1 + s] about the pixel's grey
    hue_deg: float = 10.0                # chroma rotation (YIQ space) drawn from [-h, h] degrees
    point_dropout: float = 0.2           # drop a fraction drawn from [0, p] of the points
    intensity_noise: float = 0.02        # std of Gaussian noise added to intensity (clipped to [0, 1])

    def __post_init__(self) -> None:
        if not 0.0 <= self.calib_fraction <= 1.0:
            raise CrossI2PError(f"calib_fraction {self.calib_fraction}: must lie in [0, 1] (share of calib pairs)")
        lo, hi = self.scale_range
        if not 0.0 < lo <= hi:
            raise CrossI2PError(f"scale_range {self.scale_range}: need 0 < low <= high, e.g. [0.9, 1.1]")
        if not 0.0 <= self.point_dropout < 1.0:
            raise CrossI2PError(f"point_dropout {self.point_dropout}: must lie in [0, 1)")


# --------------------------------------------------------------------------- image geometry


def place(image: np.ndarray, ox: int, oy: int, width: int, height: int) -> np.ndarray:
    """Window (height, width) of ``image`` whose top-left is source pixel (ox, oy); zeros outside.

    Negative offsets or a window larger than the image pad with black, so one
    call crops or pads; pixel u of the source lands at ``u - ox``.
    """
    out = np.zeros((height, width) + image.shape[2:], dtype=image.dtype)
    h, w = image.shape[:2]
    x0, y0 = max(ox, 0), max(oy, 0)
    x1, y1 = min(ox + width, w), min(oy + height, h)
    if x1 > x0 and y1 > y0:
        out[y0 - oy:y1 - oy, x0 - ox:x1 - ox] = image[y0:y1, x0:x1]
    return out


def _offset(rng: np.random.Generator | None, source: int, target: int) -> int:
    """Crop (positive) or pad (negative) offset: random when ``rng`` is given, centred otherwise."""
    lo, hi = min(0, source - target), max(0, source - target)
    if rng is None:
        return (source - target) // 2
    return int(rng.integers(lo, hi + 1))


# --------------------------------------------------------------------------- photometric


def _rgb_to_yiq() -> np.ndarray:
    return np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def color_jitter(image: np.ndarray, rng: np.random.Generator, cfg: SampleConfig) -> np.ndarray:
    """Brightness, contrast, saturation and hue jitter of an RGB float image in [0, 1] (H, W, 3).

    Saturation and hue are one linear map in YIQ space (scale and rotate the
    chroma plane), so the whole jitter is two affine operations per pixel.
    """
    b = rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
    c = rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)
    s = rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)
    h = np.radians(rng.uniform(-cfg.hue_deg, cfg.hue_deg))
    to_yiq = _rgb_to_yiq()
    chroma = np.array([[1.0, 0.0, 0.0], [0.0, s * np.cos(h), -s * np.sin(h)], [0.0, s * np.sin(h), s * np.cos(h)]])
    M = (np.linalg.inv(to_yiq) @ chroma @ to_yiq).astype(np.float32)
    out = image @ M.T * np.float32(b)
    grey = np.float32((out @ to_yiq[0].astype(np.float32)).mean())
    return np.clip((out - grey) * np.float32(c) + grey, 0.0, 1.0)


# --------------------------------------------------------------------------- points


def sample_points(points: np.ndarray, num: int, rng: np.random.Generator) -> np.ndarray:
    """Exactly ``num`` rows of ``points`` (N, C): without replacement if N >= num, else all + repeats."""
    n = points.shape[0]
    if n >= num:
        return points[rng.choice(n, num, replace=False)]
    idx = np.concatenate([np.arange(n), rng.choice(n, num - n, replace=True)])
    return points[rng.permutation(idx)]


def in_view(points_cam: np.ndarray, K: np.ndarray, width: int, height: int, margin: float,
             min_depth: float) -> np.ndarray:
    """Mask of camera-frame points (N, 3) in front and projecting within ``margin`` px of a pinhole image."""
    uv, front = project_pinhole(K, points_cam, min_depth)
    return (front & (uv[:, 0] >= -0.5 - margin) & (uv[:, 0] < width - 0.5 + margin)
            & (uv[:, 1] >= -0.5 - margin) & (uv[:, 1] < height - 0.5 + margin))


# --------------------------------------------------------------------------- dataset


def open_sources(roots: Sequence) -> list:
    """Open KITTI-layout folders and training caches (``.npz``, :mod:`.cache`); opened ones pass through."""
    from .cache import CachedRig, is_cache   # cache builds on this module

    if not roots:
        raise CrossI2PError("no dataset folder given; pass at least one KITTI odometry or object folder")
    return [r if isinstance(r, (KittiDataset, CachedRig)) else CachedRig(r) if is_cache(r) else open_dataset(Path(r))
            for r in roots]


def validation_split(num_frames: int, val_frames: int, gap: int = 0) -> tuple[list[int], list[int]]:
    """Fixed (train, val) frame indices: the last ``val_frames`` frames are held out.

    A contiguous tail (not a random subset) keeps neighbouring, near-identical
    frames of a sequence out of the training set; ``gap`` frames before the
    held-out block are dropped from training as well for the same reason.
    """
    if val_frames <= 0:
        return list(range(num_frames)), []
    if val_frames + gap >= num_frames:
        raise CrossI2PError(
            f"val_samples {val_frames} (+ gap {gap}) leaves no training frame out of {num_frames}; "
            "lower val_samples or add data")
    return list(range(num_frames - val_frames - gap)), list(range(num_frames - val_frames, num_frames))


class PairDataset(Dataset):
    """Image/point-cloud pairs from one or more KITTI-layout folders (concatenated in order).

    ``frame_indices`` selects frames by global index (default: all);
    ``protocol`` fixes the protocol of every item (default: the config's mix);
    ``augment`` overrides ``cfg.augment`` (validation passes False).
    Items are dicts: ``image`` (3, H, W) float32 in [0, 1], ``points`` (N, 4)
    float32 in the input frame [m], ``K`` (3, 3) float32 of the network image,
    ``T_gt`` (4, 4) float32 = ``T_camera_input``, ``id`` str, ``protocol`` str.
    """

    def __init__(self, sources: Sequence[str | Path | KittiDataset], cfg: SampleConfig = SampleConfig(),
                 model_cfg: ModelConfig = ModelConfig(), frame_indices: Sequence[int] | None = None,
                 protocol: Protocol | None = None, augment: bool | None = None):
        self.sources = open_sources(sources)
        self.cfg = cfg if augment is None else replace(cfg, augment=augment)
        self.model_cfg = model_cfg
        self._offsets = np.cumsum([0] + [len(s) for s in self.sources])
        total = int(self._offsets[-1])
        self.frame_indices = np.arange(total) if frame_indices is None else np.asarray(frame_indices, dtype=np.int64)
        if self.frame_indices.size and (self.frame_indices.min() < 0 or self.frame_indices.max() >= total):
            raise ValueError(f"frame_indices out of range for {total} frames")
        if protocol is not None and protocol not in PROTOCOLS:
            raise CrossI2PError(f"protocol {protocol!r}: use one of {PROTOCOLS}")
        self.protocol = protocol
        self.epoch = 0
        self._undistort = Undistorter(keep_field_of_view=False)   # training keeps each frame's K

    @property
    def num_frames(self) -> int:
        return int(self._offsets[-1])

    def __len__(self) -> int:
        return int(self.frame_indices.size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws items use (call before iterating, as for DistributedSampler)."""
        self.epoch = int(epoch)

    def frame(self, index: int) -> Frame:
        """The raw frame behind item ``index`` (indices past the end wrap around)."""
        g = int(self.frame_indices[index % len(self)])
        s = int(np.searchsorted(self._offsets, g, side="right") - 1)
        return self.sources[s][g - int(self._offsets[s])]

    # ------------------------------------------------------------ item
    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng((self.cfg.seed, self.epoch, index))

    def _draw_protocol(self, rng: np.random.Generator) -> Protocol:
        # always drawn, so the stream that follows does not depend on a fixed protocol
        drawn: Protocol = "calib" if rng.random() < self.cfg.calib_fraction else "i2p"
        return self.protocol or drawn

    def protocol_of(self, index: int) -> Protocol:
        """The protocol item ``index`` uses in the current epoch (without loading the frame)."""
        return self._draw_protocol(self._rng(index))

    def __getitem__(self, index: int) -> dict:
        if index < 0 or len(self) == 0:
            raise IndexError(index)
        cfg, mcfg = self.cfg, self.model_cfg
        rng = self._rng(index)
        frame = self.frame(index)
        protocol = self._draw_protocol(rng)
        image, K = self._prepare_image(frame, rng if cfg.augment else None)

        points = frame.points[finite_rows(frame.points)]
        if points.shape[0] == 0:
            raise CrossI2PError(f"frame {frame.id}: the LiDAR sweep has no finite point; check its velodyne .bin")
        key = (self.epoch << 32) + index  # protocol draw index: new perturbations every epoch
        T_gt = np.asarray(frame.T_camera_lidar, dtype=np.float64)
        if protocol == "calib":
            T_init = cfg.calib.initial_guess(T_gt, cfg.seed, key)
            xyz = transform_points(T_init, points[:, :3].astype(np.float64))
            keep = in_view(xyz, K, mcfg.image_width, mcfg.image_height, cfg.calib_margin_px, cfg.min_depth_m)
            if not keep.any():
                raise CrossI2PError(
                    f"frame {frame.id}: no LiDAR point projects into the image even under the perturbed "
                    "extrinsic; check T_camera_lidar (Tr) in its calibration file")
            points = np.concatenate([xyz[keep], points[keep, 3:4]], 1).astype(np.float32)
            T_target = T_gt @ invert(T_init)
        else:
            points, T_target = cfg.i2p.apply(points, T_gt, cfg.seed, key)
            points = points.astype(np.float32)

        if cfg.augment and cfg.point_dropout > 0 and points.shape[0] > 1:
            keep = rng.random(points.shape[0]) >= rng.uniform(0.0, cfg.point_dropout)
            points = points[keep] if keep.any() else points
        points = sample_points(points, mcfg.num_points, rng)
        if cfg.augment and cfg.intensity_noise > 0:
            noise = rng.normal(0.0, cfg.intensity_noise, points.shape[0]).astype(np.float32)
            points[:, 3] = np.clip(points[:, 3] + noise, 0.0, 1.0)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "points": torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)),
            "K": torch.from_numpy(K.astype(np.float32)),
            "T_gt": torch.from_numpy(T_target.astype(np.float32)),
            "id": frame.id,
            "protocol": protocol,
        }

    def _prepare_image(self, frame: Frame, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
        """Undistort, resize, crop/pad and (with ``rng``) jitter: float32 (H, W, 3) in [0, 1] and its K."""
        mcfg, cfg = self.model_cfg, self.cfg
        image = self._undistort(frame.image, frame.camera)
        h, w = image.shape[:2]
        scale = mcfg.image_width / w
        if rng is not None:
            scale *= rng.uniform(*cfg.scale_range)
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        sx, sy = new_w / w, new_h / h  # the exact factors cv2.resize applies after rounding
        interp = cv2.INTER_AREA if sx < 1.0 else cv2.INTER_LINEAR  # area averaging avoids aliasing when shrinking
        image = cv2.resize(image, (new_w, new_h), interpolation=interp)
        K = scale_intrinsics(frame.camera.K, sx, sy)
        ox = _offset(rng, new_w, mcfg.image_width)
        oy = _offset(rng, new_h, mcfg.image_height)
        image = image.astype(np.float32) / np.float32(255.0)
        if rng is not None:
            image = color_jitter(image, rng, cfg)  # before padding, so padded borders stay black
        image = place(image, ox, oy, mcfg.image_width, mcfg.image_height)
        K[0, 2] -= ox
        K[1, 2] -= oy
        return image, K


def collate(items: list[dict]) -> dict:
    """Stack items into a batch: tensors gain a leading B dimension; ``id`` and ``protocol`` become lists."""
    batch = {k: torch.stack([it[k] for it in items]) for k in ("image", "points", "K", "T_gt")}
    batch["id"] = [it["id"] for it in items]
    batch["protocol"] = [it["protocol"] for it in items]
    return batch
