"""Training caches: a rig's frames prepared once near the network's resolution, in one compact file.

Why: where a long training run is worth its time (a lent GPU machine) the
generator cannot run (its ray caster, open3d, is ~300 MB and nothing can be
installed there) and the working tree that travels is capped at 64 MiB; and on
a GPU, decoding and undistorting full-size frames per sample would starve the
step. A cache keeps per frame

* the image undistorted to its pinhole camera and resized to ``width`` pixels
  (by default the network width times the largest augmentation scale, so
  training never upsamples), JPEG-encoded, with the K that follows it;
* up to ``max_points`` LiDAR points (a seeded random subset of the finite ones)
  as int16 centimetres and uint8 intensity;
* ``T_camera_lidar``.

:class:`CachedRig` reads a cache back as frames with the same fields as a
KITTI folder's, so :class:`~crossi2p_ros.data.samples.PairDataset` (through
``open_sources``) trains on either. One ``.npz`` per rig (one extrinsic):
``crossi2p cache --data DIR... --out FOLDER``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from tqdm import tqdm

from ..errors import CrossI2PError
from ..geometry import CameraModel, finite_rows
from .kitti import Frame, KittiDataset
from ..camera_views import Undistorter, scale_intrinsics

FORMAT_VERSION = 1
SUFFIX = ".npz"


def is_cache(path: str | Path) -> bool:
    return Path(path).suffix == SUFFIX and Path(path).is_file()


def write_cache(dataset: KittiDataset, path: str | Path, width: int, max_points: int = 8192,
                jpeg_quality: int = 92, seed: int = 0, progress: bool = False) -> Path:
    """Write every frame of ``dataset`` (one rig) to the cache file ``path`` (``.npz``); returns the path.

    ``width`` [px] of the stored images; ``max_points`` points kept per sweep.
    """
    path = Path(path)
    if path.suffix != SUFFIX:
        raise CrossI2PError(f"{path}: a training cache is a {SUFFIX} file")
    if len(dataset) == 0:
        raise CrossI2PError(f"{dataset.root}: no frames to cache")
    undistort = Undistorter(keep_field_of_view=False)   # the cache stores each frame's own K
    rng = np.random.default_rng(seed)
    jpegs, Ks, T, xyz_cm, intensity, counts, ids = [], [], [], [], [], [], []
    for i in tqdm(range(len(dataset)), desc=f"cache {Path(dataset.root).name}", unit="frame", disable=not progress):
        frame = dataset[i]
        image = undistort(frame.image, frame.camera)
        h, w = image.shape[:2]
        new_w, new_h = width, max(1, round(h * width / w))
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if new_w < w else cv2.INTER_LINEAR)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        if not ok:
            raise CrossI2PError(f"frame {frame.id}: JPEG encoding failed")
        jpegs.append(buf.ravel())
        Ks.append(scale_intrinsics(frame.camera.K, new_w / w, new_h / h))
        T.append(np.asarray(frame.T_camera_lidar, dtype=np.float64))
        pts = frame.points[finite_rows(frame.points)]
        if len(pts) > max_points:
            pts = pts[np.sort(rng.choice(len(pts), max_points, replace=False))]
        stored = np.zeros((max_points, 3), np.int16)
        stored[: len(pts)] = np.clip(np.round(pts[:, :3] * 100.0), -32767, 32767)
        inten = np.zeros(max_points, np.uint8)
        if pts.shape[1] > 3:
            inten[: len(pts)] = np.round(np.clip(pts[:, 3], 0.0, 1.0) * 255.0)
        xyz_cm.append(stored)
        intensity.append(inten)
        counts.append(len(pts))
        ids.append(frame.id)
    offsets = np.cumsum([0] + [len(j) for j in jpegs])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{SUFFIX}")
    np.savez(tmp, format_version=np.int64(FORMAT_VERSION), jpeg=np.concatenate(jpegs), jpeg_offsets=offsets,
             K=np.stack(Ks), T_camera_lidar=np.stack(T), xyz_cm=np.stack(xyz_cm), intensity=np.stack(intensity),
             counts=np.asarray(counts, np.int64), ids=np.asarray(ids))
    tmp.replace(path)
    return path


def cache_width(image_width: int, scale_max: float) -> int:
    """Stored width [px] so that the largest training scale never upsamples."""
    return int(math.ceil(image_width * max(1.0, scale_max)))


class CachedRig:
    """A cache file read as frames (``Frame`` with a pinhole camera); the whole file is loaded once."""

    def __init__(self, path: str | Path):
        self.root = Path(path)
        try:
            with np.load(self.root, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise CrossI2PError(f"{self.root}: not a readable training cache ({exc}); write it again with "
                                "crossi2p cache") from None
        if int(data.get("format_version", -1)) != FORMAT_VERSION:
            raise CrossI2PError(f"{self.root}: cache format {data.get('format_version')} is not {FORMAT_VERSION}; "
                                "write it again with this version's crossi2p cache")
        self._d = data

    def __len__(self) -> int:
        return len(self._d["counts"])

    def __getitem__(self, i: int) -> Frame:
        d = self._d
        if not 0 <= i < len(self):
            raise IndexError(i)
        buf = d["jpeg"][d["jpeg_offsets"][i]: d["jpeg_offsets"][i + 1]]
        image = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        n = int(d["counts"][i])
        points = np.concatenate([d["xyz_cm"][i, :n].astype(np.float32) / np.float32(100.0),
                                 d["intensity"][i, :n, None].astype(np.float32) / np.float32(255.0)], 1)
        camera = CameraModel(image.shape[1], image.shape[0], d["K"][i])
        return Frame(str(d["ids"][i]), image, points, camera, d["T_camera_lidar"][i])


def write_caches(sources: Sequence[KittiDataset], out: str | Path, width: int, max_points: int = 8192,
                 progress: bool = True) -> list[Path]:
    """One cache per source folder into ``out`` (named after the folder); returns their paths, in order."""
    out = Path(out)
    return [write_cache(ds, out / f"{Path(ds.root).name}{SUFFIX}", width, max_points, seed=k, progress=progress)
            for k, ds in enumerate(sources)]
