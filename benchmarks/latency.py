"""Per-stage latency of one calibration step as the node runs it (issue: speed, deployment and hardening).

For each camera size (KITTI 1241x376, 1080p 1920x1080) a synthetic frame with a
~130k-point sweep (128 beams) is turned into the ROS messages a driver
publishes, and each repeat times what the node does with one pair:

* ``convert``: Image + PointCloud2 + CameraInfo messages -> numpy (the node's decoders);
* ``sync``: pairing the two messages (``ApproximateTimeSync``);
* ``preprocess``, ``window.*``, ``mi``: the Calibrator's own stage timings
  (``Estimate.timings_ms``) of a window of this one frame, from a prior 2 deg / 5 cm off;
* ``node_overhead`` = convert + sync, ``total`` = everything.

The node solves windows of keyframes (benchmarks/window.py, benchmarks/node.py
measure those); this is the cost of one pair through the same code.

Backends: torch and, unless ``--no-onnx``, the ONNX Runtime graph (exported to
a temporary file first, or taken from ``--onnx``). Median and p95 per stage
are printed and written as JSON.

    .venv/bin/python benchmarks/latency.py --json docs/results/latency.json
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crossi2p_ros.decode import camera_from_msg, image_from_msg  # noqa: E402
from crossi2p_ros.data.synth import SynthConfig, iter_frames  # noqa: E402
from crossi2p_ros.evaluation import write_json  # noqa: E402
from crossi2p_ros.geometry import se3_exp  # noqa: E402
from crossi2p_ros.model.export import export_onnx  # noqa: E402
from crossi2p_ros.model.weights import file_sha256  # noqa: E402
from crossi2p_ros.pointcloud import unpack_xyzi  # noqa: E402
from crossi2p_ros.registration.calibrator import Calibrator, CalibratorConfig  # noqa: E402
from crossi2p_ros.ros.messages import sensor_messages, time_msg  # noqa: E402
from crossi2p_ros.sync import ApproximateTimeSync  # noqa: E402

SIZES = {"kitti": (1241, 376), "1080p": (1920, 1080)}


def _ms(start: float) -> float:
    return 1e3 * (time.perf_counter() - start)


def time_pairs(calibrator: Calibrator, frame, repeats: int) -> list[dict[str, float]]:
    """Stage timings [ms] of ``repeats`` node steps on one frame's messages."""
    T_init = se3_exp(np.array([0.05, 0.0, 0.0, 0.0, np.radians(2.0), 0.0])) @ frame.T_camera_lidar
    sync = ApproximateTimeSync()
    rows = []
    for k in range(repeats + 1):   # the first step warms caches and allocators; it is not counted
        stamp = 1_000_000_000 * (k + 1)
        img_msg, info_msg, cloud_msg = sensor_messages(frame.image, frame.camera, frame.points, time_msg(stamp))
        t = time.perf_counter()
        image, points, camera = image_from_msg(img_msg), unpack_xyzi(cloud_msg), camera_from_msg(info_msg)
        row = {"convert": _ms(t)}
        t = time.perf_counter()
        pairs = sync.add_cloud(stamp, cloud_msg) + sync.add_image(stamp, img_msg)
        row["sync"] = _ms(t)
        assert len(pairs) == 1
        est = calibrator.estimate(image, points, camera, T_init)
        row.update({k: v for k, v in est.timings_ms.items() if k != "total"})
        row["node_overhead"] = row["convert"] + row["sync"]
        row["total"] = row["node_overhead"] + est.timings_ms["total"]
        if k:
            rows.append(row)
    return rows


def summarise(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {k: {"median_ms": float(np.median([r[k] for r in rows])),
                "p95_ms": float(np.percentile([r[k] for r in rows], 95))} for k in rows[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto (default %(default)s)")
    ap.add_argument("--repeats", type=int, default=10, help="timed steps per size and backend (default %(default)s)")
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--beams", type=int, default=128, help="LiDAR beams (128 x 1024 columns ~ 130k points)")
    ap.add_argument("--onnx", type=Path, default=None, help="exported graph (default: export one to a temp file)")
    ap.add_argument("--no-onnx", action="store_true", help="torch backend only")
    ap.add_argument("--no-mi", action="store_true", help="leave out the model-free MI stage")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    base = Calibrator(CalibratorConfig(device=args.device, use_mi=not args.no_mi))
    calibrators = {"torch": base}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_onnx:
            path = args.onnx
            if path is None:
                path = Path(tmp) / "crossi2p.onnx"
                print("exporting the network to ONNX (about a minute) ...", flush=True)
                export_onnx(base.model, path, file_sha256(base.weights_path), verify=False)
            calibrators["onnx"] = Calibrator(replace(base.cfg, backend="onnx", onnx=str(path)))
        results: dict = {"device": f"{base.device} ({platform.processor() or platform.machine()}, "
                                   f"{torch.get_num_threads()} threads)", "repeats": args.repeats, "runs": {}}
        for size in args.sizes:
            w, h = SIZES[size]
            frame = next(iter_frames(SynthConfig(frames=1, seed=9700, style="urban", image_width=w, image_height=h,
                                                 lidar_beams=args.beams)))
            for name, calibrator in calibrators.items():
                key = f"{size}/{name}"
                print(f"{key}: {w}x{h} image, {len(frame.points)} points, {args.repeats} steps ...", flush=True)
                rows = time_pairs(calibrator, frame, args.repeats)
                results["runs"][key] = {"image": [w, h], "points": int(len(frame.points)), "stages": summarise(rows)}

    order = ["convert", "sync", "preprocess", "network", "coarse", "fine", "mi", "fusion", "node_overhead", "total"]
    keys = list(results["runs"])
    print(f"\ndevice: {results['device']}; median / p95 [ms] over {args.repeats} steps")
    print(f"{'stage':14s}" + "".join(f"{k:>22s}" for k in keys))
    for stage in order:
        cells = []
        for k in keys:
            s = results["runs"][k]["stages"].get(stage)
            cells.append(f"{s['median_ms']:9.1f} / {s['p95_ms']:8.1f}" if s else f"{'-':>20s}")
        print(f"{stage:14s}" + "".join(f"{c:>22s}" for c in cells))
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
