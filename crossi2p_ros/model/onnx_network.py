"""The CrossI2P network run by ONNX Runtime: the deployment backend of :class:`~crossi2p_ros.registration.calibrator.Calibrator`.

``OnnxNetwork(path, cfg)(image, points)`` returns the same
:class:`~.crossi2p.CrossI2POutput` as ``CrossI2P.forward``, as torch tensors,
so every registration stage runs unchanged on it. A file whose config or source
weights differ from the torch model beside it is refused: the fine matcher's
weights stay in torch, and a stale export would pair one model's embeddings
with another's matcher.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..errors import CrossI2PError
from .config import ModelConfig
from .crossi2p import CrossI2POutput
from .export import EXPORT_FORMAT_VERSION, INPUT_NAMES, OUTPUT_NAMES, output_from_tensors


class OnnxNetwork:
    """An ONNX Runtime session over an exported CrossI2P graph (see :mod:`.export`)."""

    def __init__(self, path: str | Path, cfg: ModelConfig, device: torch.device | str = "cpu",
                 expected_weights_sha256: str | None = None, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - onnxruntime is in requirements.txt
            raise CrossI2PError("the onnx backend needs onnxruntime: pip install onnxruntime "
                                "(onnxruntime-gpu for CUDA)") from exc
        path = Path(path)
        if not path.is_file():
            raise CrossI2PError(f"ONNX file {path} not found; create it with: crossi2p export --onnx {path}")
        self.device = torch.device(device)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3   # warnings about unused initialisers are noise for users
        providers = ["CPUExecutionProvider"]
        if self.device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise CrossI2PError("device cuda with the onnx backend needs onnxruntime-gpu "
                                    "(CUDAExecutionProvider is not available); use the torch backend or device cpu")
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": self.device.index or 0}))
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise CrossI2PError(f"ONNX file {path} cannot be loaded ({type(exc).__name__}: {exc}); "
                                "export it again with crossi2p export") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        self._check(path, meta, cfg, expected_weights_sha256)
        names = [o.name for o in self.session.get_outputs()]
        if tuple(names) != OUTPUT_NAMES or tuple(i.name for i in self.session.get_inputs()) != INPUT_NAMES:
            raise CrossI2PError(f"ONNX file {path} has inputs/outputs {names}, not a CrossI2P export")
        self.path = path
        self.cfg = cfg

    @staticmethod
    def _check(path: Path, meta: dict[str, str], cfg: ModelConfig, sha256: str | None) -> None:
        version = meta.get("crossi2p_export_format")
        if version != str(EXPORT_FORMAT_VERSION):
            raise CrossI2PError(f"ONNX file {path} is not a CrossI2P export of format {EXPORT_FORMAT_VERSION} "
                                f"(found {version!r}); export it again with crossi2p export")
        try:
            file_cfg = ModelConfig.from_dict(json.loads(meta.get("model_config", "")))
        except (ValueError, TypeError) as exc:
            raise CrossI2PError(f"ONNX file {path}: unreadable model_config metadata ({exc})") from exc
        if file_cfg != cfg:
            raise CrossI2PError(f"ONNX file {path} was exported from a network of another configuration than "
                                "the weights in use; export it again from these weights")
        if sha256 and meta.get("weights_sha256") and meta["weights_sha256"] != sha256:
            raise CrossI2PError(f"ONNX file {path} was exported from other weights (sha256 "
                                f"{meta['weights_sha256'][:12]}..., in use {sha256[:12]}...); export it again")

    def __call__(self, image: torch.Tensor, points: torch.Tensor) -> CrossI2POutput:
        """Same contract as ``CrossI2P.forward`` for one sample: image (1, 3, H, W), points (1, N, 4)."""
        feeds = {"image": _numpy(image), "points": _numpy(points)}
        out = [torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in self.session.run(None, feeds)]
        return output_from_tensors(out, points)


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float32).contiguous().numpy()
