"""Where the window objective's optimum lies relative to the truth (issue: the window estimator, "Bias").

Each window of K consecutive frames is refined locally from the *true*
``T_camera_lidar`` (``global_search=False``), so what it ends on is the
objective's own optimum next to the truth, free of search failures. Its
offset is the left perturbation ``log(T_est T_true^-1)`` in the camera's
optical axes (x right, y down, z forward; pitch, yaw, roll about them): the
mean over windows is the objective's bias on that drive, the spread its noise.

Variants, side by side on the same windows:

* ``depth``: the estimator as shipped (LiDAR depth discontinuities on
  oriented image-edge fields);
* ``depth+intensity``: the same keyframes plus, per frame, the LiDAR's
  *intensity* edges (along-ring reflectivity steps on a smooth surface: lane
  paint, kerbs, road edges) scored on the image's unoriented edge field as an
  extra keyframe. The objective's second term that the issue asks to measure,
  in its cheapest form; it is not in the estimator (docs/benchmarks.md says
  why).

Drives: the development sequences (urban 9400, suburban 9401, highway 9402;
generated into the cache on first use; never the held-out benchmark seeds)
and the real ``../shared/data/kitti_raw_0926`` when present.

    .venv/bin/python benchmarks/window_bias.py --json docs/results/window_bias.json
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from crossi2p_ros.data.kitti import open_dataset  # noqa: E402
from crossi2p_ros.evaluation import write_json  # noqa: E402
from crossi2p_ros.geometry import invert, se3_log  # noqa: E402
from crossi2p_ros.registration.calibrator import Calibrator, CalibratorConfig  # noqa: E402
from crossi2p_ros.registration.image_edges import detect_edges, distance_levels  # noqa: E402
from crossi2p_ros.registration.lidar_edges import ring_indices, ring_neighbours  # noqa: E402
from crossi2p_ros.registration.keyframe import Keyframe  # noqa: E402
from crossi2p_ros.registration.window_config import AXES, WindowConfig  # noqa: E402
# benchmarks/window.py's helpers
from window import add_lidar_options, sensor_name, synthetic_drive, window_config  # noqa: E402

DEVELOPMENT = (("urban", 9400), ("suburban", 9401), ("highway", 9402))
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def intensity_edges(points: np.ndarray, min_ratio: float = 2.0, min_step: float = 0.08, smooth: float = 0.3,
                    max_range_m: float = 60.0) -> np.ndarray:
    """Reflectivity steps (M, 3) [m, LiDAR frame] of one sweep ``points`` (N, 4: x, y, z, intensity).

    Along each ring, a pair of neighbours on one smooth surface (range step at most max(5 cm, 1 %)) whose
    intensities differ by ``min_step`` and a factor ``min_ratio``, each side continued by its other
    neighbour (within ``smooth`` of the step: a step, not a speckle); the edge is the pair's midpoint.
    """
    xyz = points[:, :3].astype(np.float64)
    intensity = points[:, 3].astype(np.float64)
    ok = np.isfinite(xyz).all(axis=1) & np.isfinite(intensity)
    xyz, intensity = xyz[ok], intensity[ok]
    rng = np.linalg.norm(xyz, axis=1)
    keep = (rng > 1.0) & (rng < max_range_m)
    xyz, intensity, rng = xyz[keep], intensity[keep], rng[keep]
    if len(xyz) < 4:
        return np.zeros((0, 3))
    rings, _ = ring_indices(xyz)
    order, linked, _ = ring_neighbours(np.arctan2(xyz[:, 1], xyz[:, 0]), rings, max_gap_steps=2.5)
    i_o, r_o = intensity[order], rng[order]
    flat = linked & (np.abs(np.diff(r_o)) <= np.maximum(0.05, 0.01 * r_o[:-1]))
    k = np.flatnonzero(flat[1:-1]) + 1                # pair (k, k+1), k-1 -> k and k+1 -> k+2 flat too
    k = k[flat[k - 1] & flat[k + 1]]
    a, b = i_o[k], i_o[k + 1]
    jump = np.abs(b - a)
    step_ok = (jump >= min_step) & (np.maximum(a, b) >= min_ratio * np.maximum(np.minimum(a, b), 1e-3))
    continued = (np.abs(i_o[k - 1] - a) <= smooth * jump) & (np.abs(i_o[k + 2] - b) <= smooth * jump)
    k = k[step_ok & continued]
    return 0.5 * (xyz[order[k]] + xyz[order[k + 1]])


def intensity_keyframe(depth_kf: Keyframe, pinhole_image: np.ndarray, points: np.ndarray,
                       cfg: WindowConfig) -> Keyframe:
    """A keyframe of the frame's intensity edges on its unoriented image-edge field (same camera)."""
    grey = cv2.cvtColor(pinhole_image, cv2.COLOR_RGB2GRAY) if pinhole_image.ndim == 3 else pinhole_image
    found = detect_edges(np.ascontiguousarray(grey), replace(cfg.image, oriented=False))
    sigmas = [depth_kf.focal_px * np.radians(s) for s in cfg.sigma_deg]
    levels = distance_levels(found.upright, sigmas, cfg.image, cfg.contrast_levels, found.position)
    xyz = intensity_edges(points)
    xyz = xyz[np.random.default_rng(cfg.seed).permutation(len(xyz))]
    return Keyframe(xyz, np.ones(len(xyz), bool), levels, depth_kf.K, depth_kf.width, depth_kf.height,
                    depth_kf.focal_px, "intensity")


def offsets(calibrator: Calibrator, ds, window: int, starts: list[int], with_intensity: bool = True
            ) -> tuple[dict, dict]:
    """Per variant, the offsets (W, 6) [cm, deg] of each window's optimum from the truth; edge counts."""
    cfg = calibrator.window.cfg
    depth, intensity = [], []
    for i in range(len(ds)):
        f = ds[i]
        kf, image, _ = calibrator.prepare(f.image, f.points, f.camera)
        depth.append(kf)
        if with_intensity:
            intensity.append(intensity_keyframe(kf, image, f.points, cfg))
    T_true = ds[0].T_camera_lidar
    out: dict[str, list] = {"depth": [], "depth+intensity": []} if with_intensity else {"depth": []}
    for s in starts:
        variants = [("depth", depth[s:s + window])]
        if with_intensity:
            variants.append(("depth+intensity", depth[s:s + window] + intensity[s:s + window]))
        for name, kfs in variants:
            r = calibrator.window.solve(kfs, T_true, global_search=False)
            d = se3_log(r.T_camera_lidar @ invert(T_true))
            out[name].append(np.r_[100 * d[:3], np.degrees(d[3:])])
    counts = {"depth": float(np.mean([len(k.edges) for k in depth])),
              "intensity": float(np.mean([len(k.edges) for k in intensity])) if intensity else 0.0}
    return {k: np.array(v) for k, v in out.items()}, counts


def summary(rows: np.ndarray) -> dict:
    t, r = np.linalg.norm(rows[:, :3], axis=1), np.linalg.norm(rows[:, 3:], axis=1)
    return {"mean": dict(zip(AXES, rows.mean(0).round(4).tolist())),
            "std": dict(zip(AXES, rows.std(0).round(4).tolist())),
            "trans_median_cm": float(np.median(t)), "trans_max_cm": float(t.max()),
            "rot_median_deg": float(np.median(r)), "rot_max_deg": float(r.max()),
            "per_window": rows.round(4).tolist()}


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    drives = list(results["drives"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    width = 0.38
    variants = [v for v in ("depth", "depth+intensity") if v in results["drives"][drives[0]]]
    for ax, block, unit in ((axes[0], AXES[:3], "cm"), (axes[1], AXES[3:], "deg")):
        x = np.arange(len(drives) * 3)
        for j, variant in enumerate(variants):
            means = [results["drives"][d][variant]["mean"][a] for d in drives for a in block]
            stds = [results["drives"][d][variant]["std"][a] for d in drives for a in block]
            ax.bar(x + (j - 0.5) * width, means, width, yerr=stds, capsize=2, label=variant)
        ax.set_xticks(x, [a for _ in drives for a in block], fontsize=7)
        for g, d in enumerate(drives):
            ax.text(3 * g + 1, -0.13, d, transform=ax.get_xaxis_transform(), ha="center", va="top", fontsize=8)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_ylabel(f"offset of the optimum from the truth [{unit}]")
    axes[0].legend(fontsize=8)
    fig.suptitle("window optimum next to the truth: mean and spread over windows")
    fig.tight_layout()
    fig.subplots_adjust(bottom=0.2)
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None, help="bar chart of the per-axis offsets (PNG)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/crossi2p_window_bench"))
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--frames", type=int, default=40, help="frames per synthetic drive")
    ap.add_argument("--starts", type=int, nargs="+", default=[0, 5, 10, 15, 20])
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a WindowConfig field (as benchmarks/window.py)")
    ap.add_argument("--depth-only", action="store_true", help="skip the intensity-edge variant")
    ap.add_argument("--drives", nargs="+", default=None, help="only these drives, by any word of their name (e.g. highway kitti)")
    add_lidar_options(ap)
    args = ap.parse_args()
    sensor = sensor_name(args.beams, args.columns, args.elevations, args.foliage_free_path)
    calibrator = Calibrator(CalibratorConfig(device="cpu", window=window_config(args.set)))
    drives = []
    for style, seed in DEVELOPMENT:
        drives.append((f"{style} {seed} {sensor}".rstrip(),
                       synthetic_drive(args.cache, style, seed, args.frames, args.beams, args.columns,
                                       args.elevations, foliage_free_path_m=args.foliage_free_path)))
    kitti = SHARED / "kitti_raw_0926"
    if kitti.is_dir():
        drives.append(("real KITTI", open_dataset(kitti)))
    else:
        print(f"skipped real KITTI: {kitti} is absent")
    if args.drives:
        wanted = {w.lower() for w in args.drives}
        drives = [(n, ds) for n, ds in drives if wanted & set(n.lower().split())]
    results: dict = {"host": platform.node(), "window": args.window, "starts": args.starts, "overrides": args.set,
                     "lidar": {"beams": args.beams, "columns": args.columns, "elevations": args.elevations,
                               "foliage_free_path_m": args.foliage_free_path}, "drives": {}}
    for name, ds in drives:
        t = time.perf_counter()
        starts = [s for s in args.starts if s + args.window <= len(ds)]
        rows, counts = offsets(calibrator, ds, args.window, starts, not args.depth_only)
        results["drives"][name] = {"edge_points_per_frame": counts, **{k: summary(v) for k, v in rows.items()}}
        for variant, s in ((k, results["drives"][name][k]) for k in rows):
            mean = " ".join(f"{a} {s['mean'][a]:+.2f}" for a in AXES)
            print(f"{name:<15} {variant:<16} mean [cm | deg] {mean} | |t| median {s['trans_median_cm']:.2f} "
                  f"max {s['trans_max_cm']:.2f} cm | rot median {s['rot_median_deg']:.3f} max "
                  f"{s['rot_max_deg']:.3f} deg", flush=True)
        print(f"{name:<15} edge points per frame: {counts['depth']:.0f} depth, {counts['intensity']:.0f} intensity "
              f"({time.perf_counter() - t:.0f} s)", flush=True)
        if args.json:
            write_json(args.json, results)
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
