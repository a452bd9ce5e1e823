"""KITTI dataset layouts: read and write (numpy + OpenCV, no torch).

Two layouts are understood, detected automatically by :func:`open_dataset`:

* **odometry**: ``ROOT/sequences/NN/{calib.txt, times.txt, image_2/, velodyne/}``
  (``ROOT`` may also be one sequence folder). ``calib.txt`` holds ``P0..P3``
  and ``Tr`` (velodyne -> rectified cam0).
* **object**: ``ROOT/{calib, image_2, velodyne}/NNNNNN.*`` (``ROOT`` may also
  hold a ``training/`` folder). Each calib file holds ``P0..P3``, ``R0_rect``
  and ``Tr_velo_to_cam``; other keys (``Tr_imu_to_velo``) are optional.

The extrinsic returned is ``T_camera_lidar`` for the rectified cam2 that
``image_2`` shows, derived as DESIGN.md states::

    T_cam2_velo = [I | K^-1 P2[:, 3]] @ R0_rect @ Tr_velo_to_cam,   K = P2[:, :3]

(odometry: ``R0_rect`` = I and ``Tr`` plays ``Tr_velo_to_cam`` for cam0).

Extension of ours, ignored by other KITTI readers: an optional ``D2:`` line
holds plumb_bob distortion ``k1 k2 p1 p2 k3`` of cam2, ``D2_rational_polynomial:``
its ``k1 k2 p1 p2 k3 k4 k5 k6``, or ``D2_equidistant:`` fisheye
``k1 k2 k3 k4``; the synthetic generator writes it because its
images are not rectified. Without it the camera is an ideal pinhole.

Points are (N, 4) float32 ``x y z intensity`` in the LiDAR frame [m].
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, NamedTuple

import cv2
import numpy as np

from ..errors import CrossI2PError
from ..geometry import CameraModel, invert

Layout = Literal["odometry", "object"]
TIMES_DIR = "velodyne_times"   # per-point times of raw sweeps, beside velodyne/ (the aiMotive set's layout)
CAMERA_TIMES = "times_image_2.txt"   # our extension: image_2's stamps [s], one per frame, beside times.txt
_POINT_BYTES = 16  # float32 x, y, z, intensity


@dataclass(frozen=True)
class Frame:
    """One camera image with the LiDAR sweep it pairs with.

    ``image`` is RGB uint8 (H, W, 3); ``points`` (N, 4) float32 in the LiDAR
    frame [m]; ``T_camera_lidar`` maps LiDAR points into the camera optical frame.
    Odometry layout only: ``time_s`` the sweep's stamp from ``times.txt`` [s] and,
    where ``velodyne_times/`` has it, ``point_times`` (N,) float32 each point's
    time from that stamp [s] (a raw sweep, as the aiMotive set and synthetic
    drives with ``sweep_s`` write it), and where ``times_image_2.txt`` has it,
    ``camera_time_s`` the image's stamp [s]; None where absent.
    """

    id: str
    image: np.ndarray
    points: np.ndarray
    camera: CameraModel
    T_camera_lidar: np.ndarray
    time_s: float | None = None
    point_times: np.ndarray | None = None
    camera_time_s: float | None = None


# --------------------------------------------------------------------------- calib parsing


def read_calib_file(path: Path) -> dict[str, np.ndarray]:
    """Parse a KITTI ``KEY: v1 v2 ...`` calibration file into float64 arrays."""
    path = Path(path)
    if not path.is_file():
        raise CrossI2PError(f"{path}: calibration file not found; every frame needs one")
    values: dict[str, np.ndarray] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        if not sep:
            raise CrossI2PError(f"{path}:{lineno}: expected 'KEY: numbers', got {line.strip()[:60]!r}")
        try:
            values[key.strip()] = np.array([float(x) for x in rest.split()], dtype=np.float64)
        except ValueError:
            raise CrossI2PError(f"{path}:{lineno}: {key.strip()} holds a value that is not a number") from None
    return values


def _matrix(calib: dict[str, np.ndarray], key: str, shape: tuple[int, int], path: Path) -> np.ndarray:
    if key not in calib:
        raise CrossI2PError(f"{path}: missing '{key}:' line; it is required to derive T_camera_lidar")
    v = calib[key]
    if v.size != shape[0] * shape[1]:
        raise CrossI2PError(f"{path}: '{key}' has {v.size} numbers, expected {shape[0] * shape[1]}")
    return v.reshape(shape)


def _as_4x4(M: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[: M.shape[0], : M.shape[1]] = M
    return T


def cam2_extrinsic(P2: np.ndarray, R0_rect: np.ndarray, Tr_velo_to_cam: np.ndarray) -> np.ndarray:
    """``T_cam2_velo`` from KITTI's ``P2`` (3x4), ``R0_rect`` (3x3) and ``Tr_velo_to_cam`` (3x4)."""
    K = P2[:, :3]
    offset = np.eye(4)
    offset[:3, 3] = np.linalg.solve(K, P2[:, 3])
    return offset @ _as_4x4(R0_rect) @ _as_4x4(Tr_velo_to_cam)


def _distortion(calib: dict[str, np.ndarray]) -> tuple[np.ndarray, str]:
    if "D2" in calib:
        return calib["D2"], "plumb_bob"
    if "D2_equidistant" in calib:
        return calib["D2_equidistant"], "equidistant"
    if "D2_rational_polynomial" in calib:
        return calib["D2_rational_polynomial"], "rational_polynomial"
    return np.zeros(0), "pinhole"


@dataclass(frozen=True)
class _Cam2Calib:
    K: np.ndarray
    dist: np.ndarray
    model: str
    T_camera_lidar: np.ndarray

    def camera(self, width: int, height: int) -> CameraModel:
        return CameraModel(width, height, self.K, self.dist, self.model)  # type: ignore[arg-type]


def _parse_cam2(path: Path, tr_key: str, with_rect: bool) -> _Cam2Calib:
    calib = read_calib_file(path)
    P2 = _matrix(calib, "P2", (3, 4), path)
    R0 = _matrix(calib, "R0_rect", (3, 3), path) if with_rect and "R0_rect" in calib else np.eye(3)
    Tr = _matrix(calib, tr_key, (3, 4), path)
    dist, model = _distortion(calib)
    return _Cam2Calib(P2[:, :3].copy(), dist, model, cam2_extrinsic(P2, R0, Tr))


# --------------------------------------------------------------------------- file readers


def read_velodyne(path: Path) -> np.ndarray:
    """Read a KITTI ``.bin`` sweep as (N, 4) float32 ``x y z intensity``."""
    path = Path(path)
    if not path.is_file():
        raise CrossI2PError(f"{path}: LiDAR sweep not found")
    size = path.stat().st_size
    if size % _POINT_BYTES:
        raise CrossI2PError(
            f"{path}: {size} bytes is not a multiple of {_POINT_BYTES}; "
            "KITTI sweeps are float32 x, y, z, intensity (the file is truncated or not a KITTI .bin)"
        )
    return np.fromfile(path, dtype="<f4").reshape(-1, 4)


def read_point_times(path: Path, count: int) -> np.ndarray:
    """Read ``velodyne_times/NNNNNN.bin``: float32 [s] per point of the sweep, from its stamp."""
    times = np.fromfile(path, dtype="<f4")
    if len(times) != count:
        raise CrossI2PError(f"{path}: {len(times)} point times for a sweep of {count} points; "
                            "velodyne_times/ must hold one float32 per point of velodyne/, same order")
    return times


def _read_times(seq: Path, name: str = "times.txt") -> list[float] | None:
    path = seq / name
    if not path.is_file():
        return None
    try:
        return [float(line.split()[0]) for line in path.read_text().splitlines() if line.strip()]
    except ValueError as exc:
        raise CrossI2PError(f"{path}: not one time [s] per line ({exc})") from None


def read_image(path: Path) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise CrossI2PError(f"{path}: image missing or unreadable (expected a PNG/JPEG file)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _frame_files(folder: Path, suffix: str) -> list[str]:
    return sorted(p.stem for p in folder.glob(f"*{suffix}")) if folder.is_dir() else []


# --------------------------------------------------------------------------- datasets


class _Entry(NamedTuple):
    id: str
    image: Path
    velodyne: Path
    calib: Path
    time_s: float | None = None
    camera_time_s: float | None = None


class KittiDataset:
    """Random access to the camera/LiDAR frames of a KITTI-layout folder.

    ``ids`` are ``"NNNNNN"`` (object layout) or ``"SEQ/NNNNNN"`` (odometry).
    Frames are loaded lazily; per-file calibrations are parsed once.
    """

    def __init__(self, root: Path, layout: Layout, entries: list[_Entry]):
        self.root = Path(root)
        self.layout: Layout = layout
        self._entries = entries
        self._calib_cache: dict[Path, _Cam2Calib] = {}

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self._entries]

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Frame]:
        return (self[i] for i in range(len(self)))

    def calibration(self, index: int) -> _Cam2Calib:
        calib_path = self._entries[index].calib
        if calib_path not in self._calib_cache:
            if self.layout == "odometry":
                self._calib_cache[calib_path] = _parse_cam2(calib_path, "Tr", with_rect=False)
            else:
                self._calib_cache[calib_path] = _parse_cam2(calib_path, "Tr_velo_to_cam", with_rect=True)
        return self._calib_cache[calib_path]

    def __getitem__(self, index: int) -> Frame:
        entry = self._entries[index]
        calib = self.calibration(index)
        image = read_image(entry.image)
        camera = calib.camera(image.shape[1], image.shape[0])
        points = read_velodyne(entry.velodyne)
        times_path = entry.velodyne.parent.parent / TIMES_DIR / entry.velodyne.name
        point_times = read_point_times(times_path, len(points)) if times_path.is_file() else None
        return Frame(entry.id, image, points, camera, calib.T_camera_lidar.copy(), entry.time_s, point_times,
                     entry.camera_time_s)

    def sweep(self, index: int) -> np.ndarray:
        """Frame ``index``'s sweep alone (N, 4) float32, without reading its image."""
        return read_velodyne(self._entries[index].velodyne)

    def time_s(self, index: int) -> float | None:
        """Frame ``index``'s sweep stamp from ``times.txt`` [s] (None: object layout, or no times)."""
        return self._entries[index].time_s

    def sequence_dir(self, index: int) -> Path:
        """The folder of frame ``index``'s sequence (odometry) or of the dataset (object)."""
        return self._entries[index].velodyne.parent.parent

    def neighbour(self, index: int) -> int | None:
        """The index of the frame after ``index`` in the same sequence, or None (the last, or object layout)."""
        if self.layout != "odometry" or index + 1 >= len(self._entries):
            return None
        here, there = self._entries[index], self._entries[index + 1]
        same = here.velodyne.parent == there.velodyne.parent and here.time_s is not None and there.time_s is not None
        return index + 1 if same else None


def _odometry_sequences(root: Path) -> list[Path]:
    if (root / "calib.txt").is_file() and (root / "velodyne").is_dir():
        return [root]
    seq_root = root / "sequences"
    return sorted(p for p in seq_root.iterdir() if (p / "calib.txt").is_file()) if seq_root.is_dir() else []


def _object_root(root: Path) -> Path | None:
    for candidate in (root, root / "training"):
        if (candidate / "calib").is_dir() and (candidate / "velodyne").is_dir():
            return candidate
    return None


def open_dataset(root: Path) -> KittiDataset:
    """Open a KITTI odometry or object folder; the layout is detected from its contents.

    Only frames that have both an ``image_2`` image and a ``velodyne`` sweep are
    listed. Raises :class:`CrossI2PError` when the folder is neither layout.
    """
    root = Path(root)
    if not root.is_dir():
        raise CrossI2PError(f"{root}: dataset folder not found")
    entries: list[_Entry] = []
    sequences = _odometry_sequences(root)
    if sequences:
        for seq in sequences:
            images = set(_frame_files(seq / "image_2", ".png"))
            times, camera_times = _read_times(seq), _read_times(seq, CAMERA_TIMES)

            def at(values: list[float] | None, stem: str) -> float | None:
                # one line per frame index (KITTI's convention); absent or short: no time
                return values[int(stem)] if values is not None and stem.isdigit() and int(stem) < len(values) else None

            for stem in _frame_files(seq / "velodyne", ".bin"):
                if stem in images:
                    entries.append(_Entry(f"{seq.name}/{stem}", seq / "image_2" / f"{stem}.png",
                                          seq / "velodyne" / f"{stem}.bin", seq / "calib.txt", at(times, stem),
                                          at(camera_times, stem)))
        layout: Layout = "odometry"
    elif (obj := _object_root(root)) is not None:
        images = {p.stem: p for p in (obj / "image_2").glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")}
        for stem in _frame_files(obj / "velodyne", ".bin"):
            if stem in images:
                entries.append(_Entry(stem, images[stem], obj / "velodyne" / f"{stem}.bin",
                                      obj / "calib" / f"{stem}.txt"))
        layout = "object"
    else:
        raise CrossI2PError(
            f"{root}: not a KITTI folder; expected sequences/NN/calib.txt (odometry) "
            "or calib/, image_2/, velodyne/ (object)"
        )
    if not entries:
        raise CrossI2PError(f"{root}: KITTI {layout} layout found, but no frame has both an image_2 image and a velodyne .bin")
    return KittiDataset(root, layout, entries)


# --------------------------------------------------------------------------- writers


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _fmt(values: np.ndarray) -> str:
    return " ".join(f"{v:.12e}" for v in np.asarray(values, dtype=np.float64).ravel())


def _distortion_line(camera: CameraModel) -> str:
    if camera.model == "plumb_bob":
        return f"D2: {_fmt(camera.dist)}\n"
    if camera.model in ("equidistant", "rational_polynomial"):
        return f"D2_{camera.model}: {_fmt(camera.dist)}\n"
    return ""


def write_velodyne(path: Path, points: np.ndarray) -> None:
    """Write (N, 4) points [m] as a KITTI float32 ``.bin``."""
    pts = np.ascontiguousarray(points, dtype="<f4")
    if pts.ndim != 2 or pts.shape[1] != 4:
        raise ValueError(f"points must be (N, 4) x y z intensity, got {pts.shape}")
    _atomic_write_bytes(Path(path), pts.tobytes())


def write_image(path: Path, image_rgb: np.ndarray) -> None:
    """Write an RGB uint8 image (PNG, deterministic bytes)."""
    ok, buf = cv2.imencode(Path(path).suffix or ".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise CrossI2PError(f"{path}: could not encode image")
    _atomic_write_bytes(Path(path), buf.tobytes())


def object_calib_text(camera: CameraModel, T_camera_lidar: np.ndarray) -> str:
    """KITTI object calib text with ``P0..P3 = [K | 0]``, ``R0_rect = I``, ``Tr_velo_to_cam``."""
    P = np.hstack([camera.K, np.zeros((3, 1))])
    lines = [f"P{i}: {_fmt(P)}\n" for i in range(4)]
    lines.append(f"R0_rect: {_fmt(np.eye(3))}\n")
    lines.append(f"Tr_velo_to_cam: {_fmt(np.asarray(T_camera_lidar)[:3, :4])}\n")
    return "".join(lines) + _distortion_line(camera)


def write_object_frame(root: Path, frame_id: str, image_rgb: np.ndarray, points: np.ndarray,
                       camera: CameraModel, T_camera_lidar: np.ndarray) -> None:
    """Write one frame in the KITTI object layout under ``root``."""
    root = Path(root)
    for sub in ("calib", "image_2", "velodyne"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    _atomic_write_bytes(root / "calib" / f"{frame_id}.txt", object_calib_text(camera, T_camera_lidar).encode())
    write_image(root / "image_2" / f"{frame_id}.png", image_rgb)
    write_velodyne(root / "velodyne" / f"{frame_id}.bin", points)


class OdometryWriter:
    """Writes one KITTI odometry sequence: ``root/sequences/SEQ/...`` and ``root/poses/SEQ.txt``.

    cam2 is written as the reference camera (``P0 = P2 = [K | 0]``) so that
    ``Tr`` is exactly ``T_camera_lidar``. Poses are ``T_world_camera`` rows
    relative to the first frame's camera, as KITTI's ground-truth poses are.
    """

    def __init__(self, root: Path, sequence: str, camera: CameraModel, T_camera_lidar: np.ndarray):
        self.root = Path(root)
        self.sequence_dir = self.root / "sequences" / sequence
        self.sequence = sequence
        self.camera = camera
        self.T_camera_lidar = np.asarray(T_camera_lidar, dtype=np.float64)
        for sub in ("image_2", "velodyne"):
            (self.sequence_dir / sub).mkdir(parents=True, exist_ok=True)
        self._times: list[float] = []
        self._camera_times: list[float] = []
        self._poses: list[np.ndarray] = []
        self._first_pose_inv: np.ndarray | None = None

    def add(self, image_rgb: np.ndarray, points: np.ndarray, time_s: float,
            T_world_camera: np.ndarray | None = None, point_times: np.ndarray | None = None,
            camera_time_s: float | None = None) -> int:
        """Write one frame (with ``point_times`` (N,) [s from ``time_s``] into ``velodyne_times/``, the image's
        stamp ``camera_time_s`` [s] into ``times_image_2.txt``); its index."""
        index = len(self._times)
        if camera_time_s is not None:
            self._camera_times.append(float(camera_time_s))
        write_image(self.sequence_dir / "image_2" / f"{index:06d}.png", image_rgb)
        write_velodyne(self.sequence_dir / "velodyne" / f"{index:06d}.bin", points)
        if point_times is not None:
            if np.shape(point_times) != (len(points),):
                raise ValueError(f"point_times of shape {np.shape(point_times)} for {len(points)} points")
            (self.sequence_dir / TIMES_DIR).mkdir(exist_ok=True)
            _atomic_write_bytes(self.sequence_dir / TIMES_DIR / f"{index:06d}.bin",
                                np.ascontiguousarray(point_times, dtype="<f4").tobytes())
        self._times.append(float(time_s))
        if T_world_camera is not None:
            if self._first_pose_inv is None:
                self._first_pose_inv = invert(T_world_camera)
            self._poses.append(self._first_pose_inv @ T_world_camera)
        return index

    def close(self) -> None:
        P = np.hstack([self.camera.K, np.zeros((3, 1))])
        calib = "".join(f"P{i}: {_fmt(P)}\n" for i in range(4))
        calib += f"Tr: {_fmt(self.T_camera_lidar[:3, :4])}\n" + _distortion_line(self.camera)
        _atomic_write_bytes(self.sequence_dir / "calib.txt", calib.encode())
        _atomic_write_bytes(self.sequence_dir / "times.txt", "".join(f"{t:.6e}\n" for t in self._times).encode())
        if self._camera_times:
            _atomic_write_bytes(self.sequence_dir / CAMERA_TIMES,
                                "".join(f"{t:.9e}\n" for t in self._camera_times).encode())
        if self._poses:
            (self.root / "poses").mkdir(exist_ok=True)
            text = "".join(_fmt(T[:3, :4]) + "\n" for T in self._poses)
            _atomic_write_bytes(self.root / "poses" / f"{self.sequence}.txt", text.encode())

    def __enter__(self) -> "OdometryWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
