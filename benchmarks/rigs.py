"""Any rig: the window protocol over the synthetic sensor zoo and every real set in ../shared/data.

For each zoo LiDAR (``crossi2p synth --lidar``), a held-out drive (``--style``: the
urban street, or the indoor hall) with its points shuffled (seed 9950 + the kind's index, generated into a cache folder
on first use) is calibrated under ``crossi2p eval``'s window protocol (windows
of ``--window`` frames from +-10 deg / 0.5 m), with the generator's default
camera (plumb_bob, 1241x376) and, for the kinds of ``--fisheye``, a fisheye
(``--camera fisheye``, 960x600, seed 9960 + index); then each real set present:

* KITTI raw (HDL-64, scan order), +-5 deg / 0.2 m, windows of ``--window``;
* the city vehicle's front and left cameras (Pandar40, reordered points,
  2048x1536), windows of their 3 frames, +-5 deg / 0.2 m;
* the motorway drive (Pandar64 backwards, raw sweeps at 30 m/s), windows of
  its 13 frames, +-5 deg / 0.2 m;
* nuScenes single frames (HDL-32E), +-5 deg / 0.2 m.

Per run it prints the LiDAR features (where the neighbours came from: rings
and their source, or the angular grid; edges per sweep; the time to find them),
median / p95 errors, success, 3-sigma coverage, false convergences and how many
windows ended worse than their start: the estimate, and the calibration a user
keeps (the prior unless the window converged). ``--json`` writes it all.

    .venv/bin/python benchmarks/rigs.py --samples 3 --skip-real --json docs/results/rigs_zoo.json
    .venv/bin/python benchmarks/rigs.py --style indoor --samples 3 --skip-real --json docs/results/rigs_indoor.json
"""
from __future__ import annotations

import argparse
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from window import SHARED, line, run, window_config  # noqa: E402

from crossi2p_ros.data.kitti import open_dataset  # noqa: E402
from crossi2p_ros.data.lidar_models import LIDAR_MODELS  # noqa: E402
from crossi2p_ros.data.scene import STYLES  # noqa: E402
from crossi2p_ros.data.synth import SynthConfig, generate  # noqa: E402
from crossi2p_ros.evaluation import EvalConfig, write_json  # noqa: E402
from crossi2p_ros.registration.calibrator import Calibrator, CalibratorConfig  # noqa: E402
from crossi2p_ros.registration.lidar_edges import depth_edges  # noqa: E402

ZOO_SEED = 9950
FISHEYE_SIZE = (960, 600)


def zoo_drive(cache: Path, lidar: str, frames: int, style: str = "urban", fisheye: bool = False):
    """The held-out drive of zoo kind ``lidar`` (points shuffled; with ``fisheye`` a fisheye camera of
    ``FISHEYE_SIZE``, else the default camera), generated into ``cache`` on first use."""
    seed = ZOO_SEED + (10 if fisheye else 0) + list(LIDAR_MODELS).index(lidar)
    root = cache / (f"{style}_{seed}_{frames}_{lidar}_shuffled" + ("_fisheye" if fisheye else ""))
    camera = dict(camera_model="fisheye", image_width=FISHEYE_SIZE[0], image_height=FISHEYE_SIZE[1]) \
        if fisheye else {}
    if not root.is_dir():   # written aside and renamed when whole, so a cut run leaves no half drive behind
        partial = root.with_name(root.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        generate(SynthConfig(frames=frames, seed=seed, style=style, lidar_model=lidar, point_order="shuffled",
                             **camera), partial, progress=False)
        partial.rename(root)
    return open_dataset(root)


def feature_summary(ds, calibrator: Calibrator, frames: int = 3) -> dict:
    """How the LiDAR features came out on the first ``frames`` sweeps of ``ds``, and what a whole keyframe
    (:meth:`Calibrator.prepare` with a prior) costs: its time [ms], its size [MB] and its working image."""
    rows = []
    for i in range(min(frames, len(ds))):
        f = ds[i]
        t = time.perf_counter()
        e = depth_edges(f.points, cfg=calibrator.cfg.window.lidar)
        lidar_ms = 1e3 * (time.perf_counter() - t)
        t = time.perf_counter()
        kf, _, _ = calibrator.prepare(f.image, f.points, f.camera, without_prior=False)
        rows.append((e.ring_source, e.rings, e.ring_gap_deg, len(e.xyz), int(e.along.sum()), lidar_ms,
                     len(f.points), 1e3 * (time.perf_counter() - t), kf.nbytes / 1e6, f"{kf.width}x{kf.height}"))
    return {"neighbours": rows[0][0], "rings": rows[0][1], "gap_deg": float(np.median([r[2] for r in rows])),
            "edges": float(np.median([r[3] for r in rows])), "upright": float(np.median([r[4] for r in rows])),
            "ms": float(np.median([r[5] for r in rows])), "points": float(np.median([r[6] for r in rows])),
            "keyframe_ms": float(np.median([r[7] for r in rows])),
            "keyframe_mb": float(np.median([r[8] for r in rows])), "working_image": rows[0][9]}


def feature_line(f: dict) -> str:
    rings = f"{f['rings']} rings" if f["rings"] else "no rings"
    return (f"    features: {f['neighbours']} ({rings}, gap {f['gap_deg']:.2f} deg), {f['points']:.0f} points, "
            f"{f['edges']:.0f} edges ({f['upright']:.0f} upright), {f['ms']:.0f} ms a sweep; a keyframe "
            f"{f['keyframe_ms']:.0f} ms, {f['keyframe_mb']:.1f} MB, image worked at {f['working_image']}")


def real_sets(window: int) -> list[tuple[str, Path, int]]:
    """(name, folder, frames a window) of the real sets present in ``SHARED`` (each absent one is reported as
    skipped); the city vehicle's cameras as ``folder / "front"`` and ``"left"`` (:func:`open_real`), whose
    presence is their parent's."""
    sets = [("KITTI raw, HDL-64", SHARED / "kitti_raw_0926", window),
            ("city vehicle front, Pandar40", SHARED / "sustech_points_pandar40" / "front", 3),
            ("city vehicle left, Pandar40", SHARED / "sustech_points_pandar40" / "left", 3),
            ("motorway 30 m/s, Pandar64", SHARED / "aimotive_pandar64_night", 13),
            ("nuScenes, HDL-32E", SHARED / "nuscenes_demo", 1)]
    present = []
    for name, path, k in sets:
        folder = path.parent if path.parent.name == "sustech_points_pandar40" else path
        if folder.is_dir():
            present.append((name, path, k))
        else:
            print(f"skipped {name}: {folder} is absent")
    return present


def open_real(path: Path, cache: Path):
    """A real set; the city vehicle's two cameras (one folder, two sequences) as two datasets, each through a
    folder of symbolic links to its own sequence, so a window never mixes the two extrinsics."""
    if path.parent.name == "sustech_points_pandar40":
        seq = {"front": "00", "left": "01"}[path.name]
        root = cache / f"sustech_{path.name}"
        link = root / "sequences" / "00"
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to((path.parent / "sequences" / seq).resolve())
        return open_dataset(root)
    return open_dataset(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/crossi2p_rigs_bench"))
    ap.add_argument("--samples", type=int, default=5, help="windows per zoo kind and per real set")
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--lidar", nargs="*", default=list(LIDAR_MODELS), choices=list(LIDAR_MODELS),
                    help="zoo kinds to run (default: all)")
    ap.add_argument("--fisheye", nargs="*", default=["vlp16", "avia"], choices=list(LIDAR_MODELS),
                    help="zoo kinds also run with a fisheye camera (default: %(default)s)")
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--style", default="urban", choices=list(STYLES),
                    help="the zoo drives' scene (default %(default)s; indoor: a hall at walking pace)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a WindowConfig field (an ablation), as benchmarks/window.py")
    args = ap.parse_args()
    wcfg = window_config(args.set)
    calibrator = Calibrator(CalibratorConfig(device="cpu", window=wcfg))
    results: dict = {"host": platform.node(), "window": args.window, "style": args.style, "overrides": args.set,
                     "runs": {}}

    def record(name: str, summary: dict, recs: list, features: dict) -> None:
        print(line(name, summary), flush=True)
        print(feature_line(features) + f"; worse than start: {summary['worse_than_start']} of {len(recs)} "
              f"(the calibration kept: {summary['kept_worse_than_start']})", flush=True)
        results["runs"][name] = {"summary": summary, "features": features,
                                 "per_sample": [r.to_json() for r in recs]}
        if args.json:
            write_json(args.json, results)

    zoo = [(lidar, False) for lidar in args.lidar] + [(lidar, True) for lidar in args.fisheye]
    for lidar, fisheye in zoo:
        ds = zoo_drive(args.cache, lidar, max(args.window + 10, 30), style=args.style, fisheye=fisheye)
        cfg = EvalConfig(samples=args.samples, seed=0, max_rot_deg=10.0, max_trans_m=0.5,
                         frames_per_estimate=args.window)
        camera = " + fisheye" if fisheye else ""
        scene = "" if args.style == "urban" else f" {args.style}"
        record(f"zoo{scene} {lidar}{camera} (shuffled) +-10 deg / 0.5 m, K={args.window}", *run([ds], calibrator, cfg),
               feature_summary(ds, calibrator))
    if not args.skip_real:
        for name, path, k in real_sets(args.window):
            ds = open_real(path, args.cache)
            samples = len(ds) if k == 1 else args.samples
            cfg = EvalConfig(samples=samples, seed=0, max_rot_deg=5.0, max_trans_m=0.2, frames_per_estimate=k)
            record(f"{name} +-5 deg / 0.2 m, K={k}", *run([ds], calibrator, cfg), feature_summary(ds, calibrator))
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
