"""Where the image puts the LiDAR's horizontal silhouettes: across-ring edge points, upper against lower ones.

At the reference extrinsic, each across-ring depth-edge point (``registration/lidar_edges.py``) is projected
into its frame, and the nearest level (horizontal) image edge pixel is looked up along the point's image
column, within ``--reach`` pixels. Printed per drive and kind of silhouette:

- ``upper``: the beam above passes over the object (roof lines, the tops of cars and walls);
- ``lower``: the beam below passes underneath (``LidarEdgeConfig.across_bottoms``: the undersides of cars,
  trailers, rails);

the share of points with an image edge within 2 px, and the signed offset [px] of that edge (positive: the
image edge lies below the point). A kind of edge the image does not show where the LiDAR puts it pulls the
window's optimum off the truth; on real data this is what decides ``across_bottoms``
(docs/benchmarks.md, "Lower silhouettes").

    .venv/bin/python benchmarks/edge_offsets.py --json docs/results/edge_offsets.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path.cwd()))

from crossi2p_ros.data.kitti import open_dataset  # noqa: E402
from crossi2p_ros.data.synth import SynthConfig, SynthSequence  # noqa: E402
from crossi2p_ros.geometry import project_pinhole, transform_points  # noqa: E402
from crossi2p_ros.registration.image_edges import ImageEdgeConfig, detect_edges  # noqa: E402
from crossi2p_ros.registration.inputs import undistorted  # noqa: E402
from crossi2p_ros.registration.lidar_edges import LidarEdgeConfig, depth_edges  # noqa: E402

KITTI = Path(__file__).resolve().parents[2] / "shared" / "data" / "kitti_raw_0926"
SYNTHETIC = (("urban", 9400), ("suburban", 9401), ("highway", 9402))   # the development drives


def lower_silhouettes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Across-ring edge points (M, 3) [m, LiDAR frame] of a sweep and whether each is a lower silhouette
    (M,) bool: the points that only ``across_bottoms`` adds."""
    every = depth_edges(points, None, LidarEdgeConfig(across_bottoms=True))
    upper = depth_edges(points, None, LidarEdgeConfig(across_bottoms=False))
    across = every.xyz[~every.along]
    kept = upper.xyz[~upper.along]
    # the same extraction with and without the lower pairs: a point is lower when it is not among the upper ones
    view = np.dtype((np.void, 3 * across.dtype.itemsize))
    lower = ~np.isin(np.ascontiguousarray(across).view(view).ravel(), np.ascontiguousarray(kept).view(view).ravel())
    return across, lower


def offsets(frames, reach_px: int) -> dict[str, np.ndarray]:
    """Signed offsets [px] (image edge row minus point row) of the upper and lower silhouettes of ``frames``
    that have a level image edge within ``reach_px`` along their column; NaN where none is."""
    out: dict[str, list[np.ndarray]] = {"upper": [], "lower": []}
    for f in frames:
        image, camera = undistorted(f.image, f.camera)
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        level = detect_edges(np.ascontiguousarray(grey), ImageEdgeConfig()).level > 0
        across, lower = lower_silhouettes(f.points)
        uv, front = project_pinhole(camera.K, transform_points(f.T_camera_lidar, across), 0.5)
        h, w = level.shape
        ok = front & (uv[:, 0] >= 0) & (uv[:, 0] <= w - 1) & (uv[:, 1] >= reach_px) & (uv[:, 1] < h - 1 - reach_px)
        cols, rows = np.round(uv[ok, 0]).astype(int), np.round(uv[ok, 1]).astype(int)
        steps = np.arange(-reach_px, reach_px + 1)
        hit = level[rows[:, None] + steps[None], cols[:, None]]
        distance = np.where(hit, np.abs(steps)[None], np.inf)
        nearest = steps[np.argmin(distance, axis=1)] - (uv[ok, 1] - rows)
        signed = np.where(np.isfinite(distance.min(axis=1)), nearest, np.nan)
        out["upper"].append(signed[~lower[ok]])
        out["lower"].append(signed[lower[ok]])
    return {k: np.concatenate(v) for k, v in out.items()}


def summary(signed: np.ndarray) -> dict[str, float]:
    found = signed[np.isfinite(signed)]
    return {"points": int(len(signed)), "within_2px": float(np.mean(np.abs(np.nan_to_num(signed, nan=99)) <= 2)),
            "mean_px": float(found.mean()) if len(found) else float("nan"),
            "median_px": float(np.median(found)) if len(found) else float("nan")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=KITTI, help="a KITTI-layout drive (default: the shared KITTI raw)")
    ap.add_argument("--frames", type=int, default=10, help="frames per drive, spread evenly over its 40")
    ap.add_argument("--reach", type=int, default=10, help="image rows searched either side of a point [px]")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    step = max(40 // args.frames, 1)
    drives = []
    if args.data.is_dir():
        ds = open_dataset(args.data)
        drives.append(("real KITTI", [ds[i] for i in range(0, len(ds), max(len(ds) // args.frames, 1))]))
    else:
        print(f"{args.data} is absent: synthetic drives only", file=sys.stderr)
    for style, seed in SYNTHETIC:
        seq = SynthSequence(SynthConfig(frames=40, seed=seed, style=style))
        drives.append((f"{style} {seed}", [seq.frame(i) for i in range(0, 40, step)]))
    results = {}
    for name, frames in drives:
        results[name] = {kind: summary(v) for kind, v in offsets(frames, args.reach).items()}
        for kind, s in results[name].items():
            print(f"{name:16s} {kind:6s} {s['points']:6d} points, image edge within 2 px: {100 * s['within_2px']:3.0f} %,"
                  f" offset mean {s['mean_px']:+.2f} px, median {s['median_px']:+.2f} px", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"frames": args.frames, "reach_px": args.reach, "drives": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
