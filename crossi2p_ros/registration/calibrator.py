"""``Calibrator``: the one entry point from (image, point cloud, camera[, initial guess]) to ``T_camera_lidar``.

Stages (each timed, each optional in the sense that a failed stage hands the
previous pose on and says so in :attr:`Estimate.stage`):

1. ``network``: CrossI2P on the prepared pair (see :mod:`.inputs`).
2. ``coarse``: superpoint/superpixel matches -> fine matches -> RANSAC PnP
   (SQPnP + LM), a global pose that needs no initial guess. With an initial
   guess, matches further from the prior's projection than the prior allows are
   dropped first, and a PnP pose outside the prior's bounds is rejected.
3. ``fine``: geometry-constrained point-level refinement (:mod:`.fine`).
4. ``mi`` (only with an initial guess, ``use_mi``): model-free refinement that
   maximises the mutual information of LiDAR intensity and image brightness
   (:mod:`.mutual_info`), over all frames jointly, inside a trust region around
   the pose it starts from; kept when it raises the MI by at least
   ``mi_min_gain``, moves the pose by no more than its basin
   (``mi_max_move_deg`` / ``mi_max_move_m``) and stays inside the prior's
   bounds. On data unlike the
   training set this is the stage that does not depend on the network.

Frames of one rig can be estimated jointly (:meth:`Calibrator.estimate_many`):
their matches share one PnP, one fine refinement and one MI histogram.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from ..errors import CrossI2PError
from ..geometry import CameraModel, PoseError, invert, pose_error, project_pinhole
from ..model.crossi2p import CrossI2P
from ..model.onnx_network import OnnxNetwork
from ..model.weights import file_sha256, load_model
from .mutual_info import MIAligner, MIConfig, prepare_frame
from .fine import FineConfig, FineRefiner, FineView
from .solver import confidence_from_covariance
from .inputs import InputConfig, NetworkInput, prepare_input, undistorted
from .pnp import Matches, PnPConfig, extract_matches, solve_pnp_ransac

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
    inputs: InputConfig = field(default_factory=InputConfig)
    pnp: PnPConfig = field(default_factory=PnPConfig)
    fine: FineConfig = field(default_factory=FineConfig)
    mi: MIConfig = field(default_factory=MIConfig)
    use_fine: bool = True
    use_mi: bool = True
    mi_min_gain: float = 0.01             # mutual information [nats] the model-free stage must add to be kept
    mi_max_move_deg: float = 2.0          # ... and move the pose it starts from at most this far: its basin
    mi_max_move_m: float = 0.10           # (docs/registration.md); farther, it has found a wrong maximum
    prior_max_rot_deg: float = 15.0       # with a prior: farther PnP poses are rejected ...
    prior_max_trans_m: float = 1.0        # ... and matches beyond this reach of the prior are dropped


@dataclass
class Estimate:
    """Result of one estimate.

    ``T_camera_lidar`` maps LiDAR points into the camera optical frame (4x4,
    metres); with no usable result it is the initial guess (or identity) and
    ``ok`` is False. ``covariance`` (6x6) is over a left perturbation
    (translation [m], rotation [rad]) of ``T_camera_lidar``, from the last
    stage that refined the pose (10^6 I when none did). ``confidence`` in [0, 1]
    is :func:`.solver.confidence_from_covariance` of it (0 when not ``ok``).
    ``inliers`` counts the matches (fine, coarse) or points (mi) behind the
    pose. ``stage`` names that stage (``fine``, ``coarse``, ``mi``, ``prior``
    or ``none``); ``timings_ms`` has one entry per stage run, plus ``total``.
    """

    T_camera_lidar: np.ndarray
    confidence: float
    covariance: np.ndarray
    inliers: int
    stage: str
    ok: bool
    message: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)

    def error_to(self, T_gt: np.ndarray) -> PoseError:
        """Pose error of this estimate against ``T_gt`` (DESIGN.md metrics)."""
        return pose_error(self.T_camera_lidar, T_gt)


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


@dataclass
class _Pair:
    image: np.ndarray          # undistorted
    camera: CameraModel        # pinhole, same K
    points: np.ndarray


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
        self.mi = MIAligner(cfg.mi)

    # ------------------------------------------------------------------ API
    def estimate(self, image: np.ndarray, points: np.ndarray, camera: CameraModel,
                 T_init: np.ndarray | None = None) -> Estimate:
        """``T_camera_lidar`` from one RGB image (H, W, 3) uint8, one sweep (N, 3|4) [m, LiDAR frame], its camera.

        ``T_init`` (4x4), when known, is the prior the online calibration starts
        from; without it the pose is found globally.
        """
        return self.estimate_many([(image, points, camera)], T_init)

    def estimate_many(self, frames: Sequence[tuple[np.ndarray, np.ndarray, CameraModel]],
                      T_init: np.ndarray | None = None) -> Estimate:
        """One ``T_camera_lidar`` from several frames ``(image, points, camera)`` of one rig, estimated jointly."""
        timer = _Timer(self.device)
        T_prior = None if T_init is None else np.asarray(T_init, dtype=np.float64)
        fallback = np.eye(4) if T_prior is None else T_prior
        if T_prior is not None and (T_prior.shape != (4, 4) or not np.all(np.isfinite(T_prior))):
            raise CrossI2PError("T_init must be a finite 4x4 transform (T_camera_lidar)")
        if not frames:
            raise CrossI2PError("estimate_many needs at least one (image, points, camera) frame")
        with timer.stage("preprocess"):
            # undistort once: the network input and the MI stage both use the pinhole image
            pairs = [_Pair(*undistorted(image, camera), points) for image, points, camera in frames]
            inputs = [prepare_input(p.image, p.points, p.camera, self.model.cfg, self.cfg.inputs, T_prior, self.device)
                      for p in pairs]
        usable = [(p, x) for p, x in zip(pairs, inputs) if x is not None]
        if not usable:
            return Estimate(fallback, 0.0, np.eye(6) * 1e6, 0, "none", False,
                            f"fewer than {self.cfg.inputs.min_points} finite LiDAR points in view", timer.ms)
        if len({x.K.tobytes() for _, x in usable}) > 1:
            raise CrossI2PError("estimate_many: the frames' cameras differ; joint estimation needs one camera of one rig")
        with timer.stage("network"), torch.inference_mode():
            outs = [self.network(x.image, x.points) for _, x in usable]
        K = usable[0][1].K

        # coarse: T_camera_input from the matches of every frame together
        with timer.stage("coarse"):
            matches = self._gated_matches(outs, [x for _, x in usable], T_prior is not None)
            pnp = solve_pnp_ransac(matches, K, self.cfg.pnp)
            coarse_ok = pnp.success and (T_prior is None or self._within_prior(pnp.T))
        T_input = pnp.T if coarse_ok else np.eye(4)
        stage = "coarse" if coarse_ok else ("prior" if T_prior is not None else "none")
        inliers = pnp.inliers if coarse_ok else 0
        covariance = np.eye(6) * 1e6

        if self.cfg.use_fine and (coarse_ok or T_prior is not None):
            with timer.stage("fine"):
                views = [FineView(o, x.K, tuple(x.image.shape[-2:])) for o, (_, x) in zip(outs, usable)]
                fine = self.fine.refine(views, T_input)
                if fine.success and (T_prior is None or self._within_prior(fine.T)):
                    T_input, stage, inliers, covariance = fine.T, "fine", fine.inliers, fine.covariance

        T = T_input @ (np.eye(4) if T_prior is None else T_prior)
        ok = stage in ("coarse", "fine")
        message = "" if ok else "no reliable network matches; the pose is the initial guess" \
            if T_prior is not None else "no reliable network matches; no pose"

        if self.cfg.use_mi and T_prior is not None:
            with timer.stage("mi"):
                data = [prepare_frame(p.image, p.points, p.camera, self.cfg.mi) for p, _ in usable]
                result = self.mi.align(data, T)
                move = pose_error(result.T, T)
                if result.mi >= result.start_mi + self.cfg.mi_min_gain \
                        and move.rot_deg <= self.cfg.mi_max_move_deg and move.trans_m <= self.cfg.mi_max_move_m \
                        and self._within_prior(result.T @ invert(T_prior)):
                    T, stage, ok, message = result.T, "mi", True, ""
                    inliers, covariance = result.points, result.covariance
        timer.ms["total"] = sum(timer.ms.values())
        confidence = confidence_from_covariance(covariance) if ok else 0.0
        if not np.all(np.isfinite(T)):  # never hand out a NaN pose
            return Estimate(fallback, 0.0, np.eye(6) * 1e6, 0, "none", False, "numerical failure", timer.ms)
        return Estimate(T, float(confidence), covariance, int(inliers), stage, ok, message, timer.ms)

    # ------------------------------------------------------------------ helpers
    def _within_prior(self, T_input: np.ndarray) -> bool:
        err = pose_error(T_input, np.eye(4))
        return err.rot_deg <= self.cfg.prior_max_rot_deg and err.trans_m <= self.cfg.prior_max_trans_m

    def _reach_px(self, K: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """How far (pixels) the prior's bounds can move a point at ``depth`` [m] in the network image."""
        return K[0, 0] * (np.tan(np.radians(self.cfg.prior_max_rot_deg))
                          + self.cfg.prior_max_trans_m / np.maximum(depth, 1e-3))

    def _prior_window(self, out, x: NetworkInput) -> torch.Tensor:
        """(M, P) superpixels within the prior's reach of each superpoint centre's projection under the prior."""
        centers = out.groups.centers[0].double().cpu().numpy()
        z = centers[:, 2]
        uv, front = project_pinhole(x.K, centers, self.cfg.inputs.min_depth_m)
        s = self.model.cfg.coarse_stride
        H, W = x.image.shape[-2:]
        cy, cx = np.meshgrid(np.arange(H // s), np.arange(W // s), indexing="ij")
        cell_uv = np.stack([cx.ravel() * s + (s - 1) / 2, cy.ravel() * s + (s - 1) / 2], 1)
        dist = np.linalg.norm(uv[:, None, :] - cell_uv[None], axis=-1)
        allowed = (dist <= self._reach_px(x.K, z)[:, None] + s) & front[:, None]
        return torch.from_numpy(allowed).to(out.coarse.sim.device)

    def _gated_matches(self, outs, inputs: list[NetworkInput], have_prior: bool) -> Matches:
        """Fine matches of all frames; with a prior, only those the prior's bounds can explain."""
        found = [extract_matches(self.model, o, 0, self.cfg.pnp,
                                 self._prior_window(o, x) if have_prior else None) for o, x in zip(outs, inputs)]
        pts = np.concatenate([m.points for m in found])
        pix = np.concatenate([m.pixels for m in found])
        w = np.concatenate([m.weights for m in found])
        if have_prior and len(pts):
            K = inputs[0].K
            z = pts[:, 2]
            uv, front = project_pinhole(K, pts, self.cfg.inputs.min_depth_m)
            reach = self._reach_px(K, z)
            keep = front & (np.linalg.norm(uv - pix, axis=1) <= reach)
            pts, pix, w = pts[keep], pix[keep], w[keep]
        return Matches(pts, pix, w)
