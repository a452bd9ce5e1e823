"""``Calibrator``: the one entry point from a window of frames of one rig to ``T_camera_lidar``.

``estimate_many(frames, T_init)`` solves the window: every frame's features
are prepared once (:func:`.keyframe.prepare_keyframe`) and the window estimator
(:mod:`.window`) finds the one extrinsic they share. ``estimate`` is a window
of one frame.

* With a prior (``T_init``, the calib regime): a global search within
  ``window.search_rot_deg`` / ``window.search_trans_m`` of it, refined coarse
  to fine. The network's poses join as extra starts only when
  ``proposals_with_prior`` (off by default: measured, they do not help from a
  prior; docs/benchmarks.md).
* Without a prior (the i2p regime): the network's per-frame poses (coarse
  superpoint/superpixel matches -> RANSAC PnP -> geometry-constrained fine
  refinement) and the usual mounts (:meth:`.window.WindowEstimator.mount_hypotheses`:
  a camera level with the LiDAR's horizon, at any heading) are scored by the
  window objective; the best are searched and refined like a prior.
* ``use_mi``: optionally, the model-free mutual-information stage
  (:mod:`.mutual_info`) polishes the window's pose, kept only inside its basin.

Stages are timed in :attr:`Estimate.timings_ms`.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from ..errors import CrossI2PError
from ..geometry import CameraModel, pose_error
from ..model.crossi2p import CrossI2P
from ..model.onnx_network import OnnxNetwork
from ..model.weights import file_sha256, load_model
from .deskew import SweepTiming
from .estimate import Estimate
from .fine import FineConfig, FineRefiner, FineView
from .inputs import InputConfig, prepare_input, undistorted, valid_region
from .keyframe import Keyframe, prepare_keyframe
from .mutual_info import MIAligner, MIConfig, prepare_frame
from .pnp import PnPConfig, extract_matches, solve_pnp_ransac
from .sweep_edges import SweepEdges, sweep_edges
from .window import WindowEstimator
from .window_config import WindowConfig

DEFAULT_WEIGHTS_NAME = "crossi2p_default.pt"


def default_weights_path() -> Path:
    """The shipped weights: ``models/`` of a source checkout, else ``share/crossi2p_ros/models`` of an install."""
    here = Path(__file__).resolve()
    candidates = [here.parents[2] / "models" / DEFAULT_WEIGHTS_NAME]
    try:  # a colcon/ament install
        from ament_index_python.packages import get_package_share_directory  # type: ignore
        candidates.append(Path(get_package_share_directory("crossi2p_ros")) / "models" / DEFAULT_WEIGHTS_NAME)
    except Exception:  # noqa: BLE001 - ament_index absent or package not installed: only the checkout path
        pass
    for c in candidates:
        if c.is_file():
            return c
    return candidates[0]


def published_sha256(weights: Path) -> str | None:
    """The checksum published beside a weights file (``NAME.sha256``, ``sha256sum`` format), if there is one.

    The shipped model carries one (its model card states the same value), so a
    damaged or swapped file is refused at load instead of producing poses.
    """
    sidecar = weights.with_name(weights.name + ".sha256")
    if not sidecar.is_file():
        return None
    text = sidecar.read_text().split()
    if not text or len(text[0]) != 64:
        raise CrossI2PError(f"{sidecar}: not a sha256sum line ('<64 hex digits>  {weights.name}')")
    return text[0].lower()


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; an explicit ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CrossI2PError(f"device {device!r} requested but no CUDA GPU is available; use --device cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise CrossI2PError(f"device {device!r}: use cpu, cuda, cuda:N or auto")
    return torch.device(device)


@dataclass(frozen=True)
class CalibratorConfig:
    """Settings of the whole registration pipeline; sub-configs hold each stage's constants."""

    weights: str | None = None            # None: the shipped default model
    device: str = "auto"                  # cpu | cuda | cuda:N | auto
    backend: str = "torch"                # torch | onnx (the network in ONNX Runtime; see model/export.py)
    onnx: str | None = None               # backend onnx: the exported graph (crossi2p export --onnx FILE)
    window: WindowConfig = field(default_factory=WindowConfig)
    inputs: InputConfig = field(default_factory=InputConfig)
    pnp: PnPConfig = field(default_factory=PnPConfig)
    fine: FineConfig = field(default_factory=FineConfig)
    mi: MIConfig = field(default_factory=MIConfig)
    proposals_with_prior: bool = False    # run the network for extra starts even when a prior is given
    max_proposals: int = 3                # network poses (most inliers first) handed to the window search;
                                          # 0: the network is not run (it costs ~0.3 s a keyframe on our CPU)
    mount_scan: bool = True               # no prior: also score the usual mounts (off: the proposals alone)
    motion_proposal: bool = True          # no prior: start from the camera's rotation from the window's motion
                                          # when it travelled (registration/motion.py); the mounts only otherwise
    use_fine: bool = True                 # proposals: refine each PnP pose at the point level
    use_mi: bool = False                  # polish the window's pose by mutual information (see module doc)
    mi_min_gain: float = 0.01             # mutual information [nats] the MI stage must add to be kept
    mi_max_move_deg: float = 0.5          # ... and move the window's pose at most this far
    mi_max_move_m: float = 0.03


class _Timer:
    def __init__(self, device: torch.device):
        self.device = device
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.ms[name] = self.ms.get(name, 0.0) + 1e3 * (time.perf_counter() - start)


class Calibrator:
    """Loads the weights once and estimates ``T_camera_lidar`` for single frames or several frames of one rig."""

    def __init__(self, cfg: CalibratorConfig = CalibratorConfig(), model: CrossI2P | None = None):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        if cfg.backend not in ("torch", "onnx"):
            raise CrossI2PError(f"backend {cfg.backend!r}: use torch or onnx")
        sha256 = None
        if model is None:
            path = Path(cfg.weights) if cfg.weights else default_weights_path()
            sha256 = published_sha256(path)
            model, self.metadata = load_model(path, self.device, expected_sha256=sha256)
            self.weights_path: Path | None = path
        else:
            model = model.to(self.device).eval()
            self.metadata, self.weights_path = {}, None
        self.model = model
        # the network proper: torch, or the same graph in ONNX Runtime; matching and refinement stay in torch
        self.network: CrossI2P | OnnxNetwork = model
        if cfg.backend == "onnx":
            if not cfg.onnx:
                raise CrossI2PError("backend onnx needs the exported graph: set onnx to the file written by "
                                    "crossi2p export --onnx FILE")
            if self.weights_path is not None and sha256 is None:
                sha256 = file_sha256(self.weights_path)
            self.network = OnnxNetwork(cfg.onnx, model.cfg, self.device, expected_weights_sha256=sha256)
        self.fine = FineRefiner(model, cfg.fine)
        self.window = WindowEstimator(cfg.window)
        self.mi = MIAligner(cfg.mi)

    # ------------------------------------------------------------------ API
    def estimate(self, image: np.ndarray, points: np.ndarray, camera: CameraModel,
                 T_init: np.ndarray | None = None) -> Estimate:
        """``T_camera_lidar`` from one RGB image (H, W, 3) uint8, one sweep (N, 3|4) [m, LiDAR frame], its camera.

        ``T_init`` (4x4), when known, is the prior the online calibration starts
        from; without it the pose is found globally. A window of one frame.
        """
        return self.estimate_many([(image, points, camera)], T_init)

    def prepare(self, image: np.ndarray, points: np.ndarray, camera: CameraModel, ring: np.ndarray | None = None,
                stamp: float | None = None, without_prior: bool = True, timing: SweepTiming | None = None,
                sweep: SweepEdges | None = None) -> tuple[Keyframe, np.ndarray, CameraModel]:
        """One frame's window features, with its undistorted image and pinhole camera (for the network and MI).

        ``without_prior``: the keyframe may be solved without a prior, so it keeps the motion proposal's
        features (when ``motion_proposal``); False where a prior is known saves their cost. ``timing``: the
        sweep's per-point times and the LiDAR's twist, to motion-compensate its edges to the camera's stamp
        (:mod:`.deskew`). ``sweep``: the sweep's edges when already found (:meth:`sweep_edges`, once a sweep for
        every camera on the LiDAR)."""
        pinhole_image, pinhole = undistorted(image, camera)
        keyframe = prepare_keyframe(pinhole_image, points, pinhole, self.cfg.window, ring, stamp,
                                    motion=without_prior and self.cfg.motion_proposal, valid=valid_region(camera),
                                    timing=timing, sweep=sweep)
        return keyframe, pinhole_image, pinhole

    def sweep_edges(self, points: np.ndarray, ring: np.ndarray | None = None,
                    times_s: np.ndarray | None = None) -> SweepEdges:
        """The camera-independent half of :meth:`prepare`: a sweep's depth edges (points [m, LiDAR frame], each
        one's beam and time [s from the stamp] where known), to be shared by the cameras on that LiDAR."""
        return sweep_edges(points, ring, self.cfg.window, times_s)

    def estimate_many(self, frames: Sequence[tuple], T_init: np.ndarray | None = None) -> Estimate:
        """One ``T_camera_lidar`` from frames ``(image, points, camera[, ring[, timing]])`` of one rig, solved
        jointly (``timing``: :class:`.deskew.SweepTiming`, to motion-compensate a moving sweep)."""
        timer = _Timer(self.device)
        T_prior = self._checked_prior(T_init)
        if not frames:
            raise CrossI2PError("estimate_many needs at least one (image, points, camera) frame")
        with timer.stage("preprocess"):
            prepared = [self.prepare(f[0], f[1], f[2], f[3] if len(f) > 3 else None, without_prior=T_prior is None,
                                     timing=f[4] if len(f) > 4 else None) for f in frames]
        if len({p[2].K.tobytes() for p in prepared}) > 1 or len({(p[2].width, p[2].height) for p in prepared}) > 1:
            raise CrossI2PError("estimate_many: the frames' cameras differ; a window needs one camera of one rig")
        undistorted_frames = [(img, f[1], cam) for f, (_, img, cam) in zip(frames, prepared)]
        proposals: list[np.ndarray] = []
        if T_prior is None or self.cfg.proposals_with_prior:
            proposals = self.propose(undistorted_frames, T_prior, timer)
        return self.estimate_window([p[0] for p in prepared], T_prior, proposals,
                                    mi_frames=undistorted_frames if self.cfg.use_mi else None, timer=timer)

    def estimate_window(self, keyframes: Sequence[Keyframe], T_init: np.ndarray | None = None,
                        proposals: Sequence[np.ndarray] = (), global_search: bool = True,
                        mi_frames: Sequence[tuple[np.ndarray, np.ndarray, CameraModel]] | None = None,
                        timer: _Timer | None = None) -> Estimate:
        """The window's ``T_camera_lidar`` from keyframes already prepared (:meth:`prepare`).

        Starts: ``T_init`` (the prior, or the last solution for an update with
        ``global_search=False``) and ``proposals`` (network poses). With
        ``global_search`` the search region around them is searched first.
        ``mi_frames``: the keyframes' undistorted ``(image, points, camera)``
        for the optional MI polish (``use_mi``).
        """
        timer = timer or _Timer(self.device)
        T_prior = self._checked_prior(T_init)
        proposals = [np.asarray(T, dtype=np.float64) for T in proposals]
        fallback = np.eye(4) if T_prior is None else T_prior
        if not keyframes:
            timer.ms["total"] = sum(v for k, v in timer.ms.items() if "." not in k)
            return Estimate(fallback, 0.0, np.eye(6) * 1e6, 0, "none", False, "no keyframes; no pose", timer.ms)
        with timer.stage("window"):
            if T_prior is None:   # the global path: proposals and the usual mounts, scored by the window
                result = self.window.solve_without_prior(keyframes, proposals, mounts=self.cfg.mount_scan,
                                                         motion=self.cfg.motion_proposal)
            else:
                result = self.window.solve(keyframes, T_prior, global_search=global_search, extra_starts=proposals)
        for k, v in result.timings_ms.items():
            if k != "total":
                timer.ms[f"window.{k}"] = v
        T, stage = result.T_camera_lidar, "window" if result.ok else ("prior" if T_prior is not None else "none")
        if not result.ok:
            T = fallback
        covariance = result.covariance if result.ok else np.eye(6) * 1e6
        if self.cfg.use_mi and result.ok and mi_frames:
            with timer.stage("mi"):
                data = [prepare_frame(img, pts, cam, self.cfg.mi) for img, pts, cam in mi_frames]
                mi = self.mi.align(data, T)
                move = pose_error(mi.T, T)
                if mi.mi >= mi.start_mi + self.cfg.mi_min_gain and move.rot_deg <= self.cfg.mi_max_move_deg \
                        and move.trans_m <= self.cfg.mi_max_move_m:
                    T, stage = mi.T, "mi"
        timer.ms["total"] = sum(v for k, v in timer.ms.items() if "." not in k)
        if not np.all(np.isfinite(T)):  # never hand out a NaN pose
            return Estimate(fallback, 0.0, np.eye(6) * 1e6, 0, "none", False, "numerical failure", timer.ms)
        # the window's own confidence is of this covariance (0 when not ok): the MI polish moves the pose only
        return replace(result, T_camera_lidar=T, covariance=covariance,
                       inliers=result.inliers if result.ok else 0, stage=stage, timings_ms=timer.ms,
                       unconstrained=list(result.unconstrained))

    @staticmethod
    def _checked_prior(T_init: np.ndarray | None) -> np.ndarray | None:
        T_prior = None if T_init is None else np.asarray(T_init, dtype=np.float64)
        if T_prior is not None and (T_prior.shape != (4, 4) or not np.all(np.isfinite(T_prior))):
            raise CrossI2PError("T_init must be a finite 4x4 transform (T_camera_lidar)")
        return T_prior

    # ------------------------------------------------------------------ network proposals
    def propose(self, frames: Sequence[tuple[np.ndarray, np.ndarray, CameraModel]], T_prior: np.ndarray | None,
                timer: _Timer | None = None) -> list[np.ndarray]:
        """The best ``max_proposals`` network poses ``T_camera_lidar`` of the frames, most inliers first."""
        return [T for _, T in self.proposals(frames, T_prior, timer)[: self.cfg.max_proposals]]

    def proposals(self, frames: Sequence[tuple[np.ndarray, np.ndarray, CameraModel]], T_prior: np.ndarray | None,
                  timer: _Timer | None = None) -> list[tuple[int, np.ndarray]]:
        """Per-frame network poses ``(inliers, T_camera_lidar)`` (coarse matches -> RANSAC PnP -> fine),
        most inliers first.

        ``frames`` hold undistorted images with their pinhole cameras. With a
        prior, only poses within the window's search region of it are kept.
        """
        timer = timer or _Timer(self.device)
        found: list[tuple[int, np.ndarray]] = []
        if self.cfg.max_proposals <= 0:
            return found
        for image, points, camera in frames:
            with timer.stage("network"), torch.inference_mode():
                x = prepare_input(image, points, camera, self.model.cfg, self.cfg.inputs, T_prior, self.device)
                if x is None:
                    continue
                out = self.network(x.image, x.points)
            with timer.stage("coarse"):
                matches = extract_matches(self.model, out, 0, self.cfg.pnp, None)
                pnp = solve_pnp_ransac(matches, x.K, self.cfg.pnp)
            if not pnp.success:
                continue
            T_input, inliers = pnp.T, pnp.inliers
            if self.cfg.use_fine:
                with timer.stage("fine"):
                    fine = self.fine.refine([FineView(out, x.K, tuple(x.image.shape[-2:]))], T_input)
                    if fine.success:
                        T_input, inliers = fine.T, fine.inliers
            T = T_input @ x.T_prior
            if T_prior is None or self._within_search(T, T_prior):
                found.append((inliers, T))
        found.sort(key=lambda f: -f[0])
        return found

    def _within_search(self, T: np.ndarray, T_prior: np.ndarray) -> bool:
        err = pose_error(T, T_prior)
        w = self.cfg.window
        return err.rot_deg <= w.search_rot_deg and err.trans_m <= w.search_trans_m
