"""ONNX export of the CrossI2P network, and the parity check against torch.

The exported graph is the network's forward pass, from the prepared inputs
(``image`` (1, 3, H, W) RGB in [0, 1], ``points`` (1, N, 4) x y z [m]
intensity in the input frame) to the tensors the registration stages read
(:data:`OUTPUT_NAMES`, the fields of :class:`~.crossi2p.CrossI2POutput`).
Height H (a multiple of the coarse stride) and point count N are dynamic, so
one file serves every camera; the width is the config's ``image_width``.

What stays in torch: the fine matcher's window search (a gather of a few
thousand windows, run by the registration stages around poses only they know)
and everything after it.

The file carries its own provenance in ONNX metadata: the model config and the
SHA-256 of the weights it came from, so :mod:`.onnx_network` refuses a stale
export instead of running it beside other weights.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import nn

from ..errors import CrossI2PError
from .crossi2p import CrossI2P, CrossI2POutput
from .matching import CoarseScores
from .point_encoder import PointGroups

EXPORT_FORMAT_VERSION = 1
INPUT_NAMES = ("image", "points")
OUTPUT_NAMES = ("centers", "knn", "assign", "sim", "point_to_image", "image_to_point", "fine_map", "point_embed",
                "superpixel_embed", "superpoint_embed")
INDEX_OUTPUTS = ("knn", "assign")   # integer outputs: parity is the fraction of differing entries
DEFAULT_OPSET = 18


def output_tensors(out: CrossI2POutput) -> tuple[torch.Tensor, ...]:
    """The network output as the flat tuple the ONNX graph returns (order of :data:`OUTPUT_NAMES`)."""
    return (out.groups.centers, out.groups.knn, out.groups.assign, out.coarse.sim, out.coarse.point_to_image,
            out.coarse.image_to_point, out.fine_map, out.point_embed, out.superpixel_embed, out.superpoint_embed)


def output_from_tensors(tensors: Sequence[torch.Tensor], points: torch.Tensor) -> CrossI2POutput:
    """Inverse of :func:`output_tensors`; ``points`` is the network input the output belongs to."""
    centers, knn, assign, sim, p2i, i2p, fine_map, point_embed, superpixels, superpoints = tensors
    return CrossI2POutput(PointGroups(centers, knn, assign), CoarseScores(sim, p2i, i2p), fine_map, point_embed,
                          superpixels, superpoints, points)


class _FlatGraph(nn.Module):
    """The network with tensor-tuple outputs (exporters take no dataclasses)."""

    def __init__(self, model: CrossI2P):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return output_tensors(self.model(image, points))


def example_inputs(model: CrossI2P, height: int | None = None, num_points: int | None = None, seed: int = 0
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Plausible inputs for tracing and parity: a random image and a cloud spread over a driving scene [m]."""
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed)
    h = height or cfg.image_height
    n = num_points or cfg.num_points
    image = torch.rand(1, 3, h, cfg.image_width, generator=g)
    xyz = torch.rand(1, n, 3, generator=g) * torch.tensor([40.0, 6.0, 60.0]) - torch.tensor([20.0, 3.0, -2.0])
    points = torch.cat([xyz, torch.rand(1, n, 1, generator=g)], -1)
    return image, points


@dataclass
class ExportReport:
    path: Path
    opset: int
    size_mb: float
    max_abs_diff: dict[str, float]    # per output, ONNX Runtime vs torch on other shapes (see parity)

    @property
    def worst(self) -> float:
        """Largest |difference| of the float outputs."""
        return max((v for k, v in self.max_abs_diff.items() if k not in INDEX_OUTPUTS), default=float("nan"))

    @property
    def index_mismatch(self) -> float:
        """Largest fraction of differing entries of the index outputs (kNN lists, point assignment)."""
        return max((v for k, v in self.max_abs_diff.items() if k in INDEX_OUTPUTS), default=float("nan"))


@contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """The exporter's optimiser logs one line per skipped fold (hundreds): keep errors only."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_onnx(model: CrossI2P, path: str | Path, weights_sha256: str = "", opset: int = DEFAULT_OPSET,
                verify: bool = True, tolerance: float = 1e-3, max_index_mismatch: float = 0.01) -> ExportReport:
    """Write ``model`` as an ONNX graph to ``path``; with ``verify``, only once it matches torch in ONNX Runtime.

    Parity is measured on the written graph before it is moved onto ``path``: a
    graph whose float outputs differ by more than ``tolerance`` or whose index
    outputs differ in more than ``max_index_mismatch`` of entries raises
    :class:`CrossI2PError` and leaves ``path`` as it was. ``weights_sha256`` (of
    the weights file the model came from) is stored in the file's metadata;
    :class:`.onnx_network.OnnxNetwork` checks it. The model is moved to the CPU
    (tracing and the parity reference run there).
    """
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - onnx is in requirements.txt
        raise CrossI2PError("ONNX export needs the onnx and onnxscript packages: pip install onnx onnxscript") from exc
    model = model.cpu().eval()
    cfg = model.cfg
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = torch.export.Dim("coarse_rows", min=1, max=1024 // cfg.coarse_stride)
    n = torch.export.Dim("points", min=max(cfg.num_superpoints, cfg.knn), max=1 << 20)
    dynamic = {"image": {2: cfg.coarse_stride * rows}, "points": {1: n}}
    # fileio.atomic_write renames at once; here the parity check must read the new file before it replaces
    # the old one, so the temporary file is handled by hand
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad(), _quiet_loggers("onnxscript", "onnx_ir", "torch.onnx"):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(_FlatGraph(model), example_inputs(model), dynamo=True, opset_version=opset,
                                        input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                                        dynamic_shapes=dynamic, verbose=False, external_data=False)
        proto = program.model_proto
        meta = {"crossi2p_export_format": str(EXPORT_FORMAT_VERSION), "model_config": json.dumps(cfg.to_dict()),
                "weights_sha256": weights_sha256, "torch_version": torch.__version__}
        del proto.metadata_props[:]
        for k, v in meta.items():
            proto.metadata_props.add(key=k, value=v)
        onnx.save_model(proto, tmp)
        report = ExportReport(path, opset, Path(tmp).stat().st_size / 1e6, parity(model, tmp) if verify else {})
        if verify and not (report.worst <= tolerance and report.index_mismatch <= max_index_mismatch):
            raise CrossI2PError(f"the exported graph differs from torch by {report.worst:.2e} (tolerance "
                                f"{tolerance:g}) and in {100 * report.index_mismatch:.2f} % of neighbour indices "
                                f"(tolerance {100 * max_index_mismatch:g} %); {path} was not written")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return report


def parity(model: CrossI2P, path: str | Path, shapes: tuple[tuple[int, int], ...] | None = None) -> dict[str, float]:
    """Largest |ONNX Runtime - torch| per output over example inputs of several shapes ((height, points) pairs).

    For the index outputs (``knn``, ``assign``) it is the fraction of entries
    that differ instead: distances computed in another order can break a
    near-tie the other way, which moves no pose.

    The shapes differ from the one traced at export, so a graph that baked in a
    shape fails here rather than on a vehicle.
    """
    from .onnx_network import OnnxNetwork

    model = model.cpu().eval()
    cfg = model.cfg
    shapes = shapes or ((cfg.image_height - 2 * cfg.coarse_stride, cfg.num_points),
                        (cfg.image_height + 4 * cfg.coarse_stride, max(cfg.num_superpoints, cfg.num_points // 2)))
    network = OnnxNetwork(path, model.cfg)
    worst = {name: 0.0 for name in OUTPUT_NAMES}
    for k, (h, n) in enumerate(shapes):
        image, points = example_inputs(model, h, n, seed=k + 1)
        with torch.inference_mode():
            ref = output_tensors(model(image, points))
        got = output_tensors(network(image, points))
        for name, r, o in zip(OUTPUT_NAMES, ref, got):
            if r.shape != o.shape:
                raise CrossI2PError(f"ONNX output {name} has shape {tuple(o.shape)}, torch {tuple(r.shape)} "
                                    f"(input {h}x{cfg.image_width}, {n} points)")
            worst[name] = max(worst[name], _difference(r, o))
    return worst


def _difference(ref: torch.Tensor, got: torch.Tensor) -> float:
    """Max |difference| of float outputs (matching infinities count as equal); for index outputs the fraction
    of entries that differ, neighbour lists compared as sets (near-equal distances may swap places)."""
    if not ref.is_floating_point():
        a, b = ref.sort(-1).values, got.sort(-1).values
        return float((a != b).double().mean())
    r, o = ref.double(), got.double()
    finite = torch.isfinite(r)
    if not bool((torch.isfinite(o) == finite).all()) or not bool((r[~finite] == o[~finite]).all()):
        return float("inf")
    return float((r - o)[finite].abs().max()) if finite.any() else 0.0
