"""Accuracy, uncertainty and speed of the window estimator (issue: the window estimator).

Runs ``crossi2p eval``'s own code (:func:`crossi2p_ros.evaluation.evaluate`)
with windows of K consecutive frames (DESIGN.md's window protocol) on

* held-out synthetic sequences, one per style, seeds never used elsewhere
  (9610 urban, 9620 suburban, 9630 highway; 40 frames each, generated into a
  cache folder on first use): calib +-10 deg / 0.5 m and +-2 deg / 0.1 m;
* the real ``../shared/data/kitti_raw_0926`` (40 frames) when present:
  +-5 deg / 0.2 m and +-10 deg / 0.5 m;
* the real nuScenes frames (``../shared/data/nuscenes_demo``), single frame per
  camera (six extrinsics, so no window), +-5 deg / 0.2 m;

and prints, per run, median / p95 errors, success, truth-within-3-sigma
coverage, false convergences and time per window; ``--json`` writes it all.
It also times one incremental update (one keyframe added, local refinement
from the last solution) and states the memory per keyframe.

    .venv/bin/python benchmarks/window.py --json docs/results/window.json

``--set FIELD=VALUE`` (repeatable) overrides a ``WindowConfig`` field for an
ablation, e.g. ``--set contrast_levels=0 --set image.subpixel=False``.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crossi2p_ros.data.kitti import open_dataset  # noqa: E402
from crossi2p_ros.data.perturb import CalibProtocol  # noqa: E402
from crossi2p_ros.data.lidar_models import LIDAR_ELEVATIONS_DEG  # noqa: E402
from crossi2p_ros.data.synth import SynthConfig, generate  # noqa: E402
from crossi2p_ros.evaluation import EvalConfig, evaluate, summarize, write_json  # noqa: E402
from crossi2p_ros.geometry import pose_error  # noqa: E402
from crossi2p_ros.registration.calibrator import Calibrator, CalibratorConfig  # noqa: E402
from crossi2p_ros.registration.window_config import WindowConfig  # noqa: E402

HELD_OUT = (("urban", 9610), ("suburban", 9620), ("highway", 9630))
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def sensor_name(beams: int, columns: int, elevations: str | None, foliage_free_path_m: float = 0.0) -> str:
    """The LiDAR of a synthetic drive in words ("" for the default sensor)."""
    porous = f"foliage{foliage_free_path_m:g}" if foliage_free_path_m else ""
    if (beams, columns, elevations) == (SynthConfig.lidar_beams, SynthConfig.lidar_columns, None):
        return porous
    return "_".join(p for p in (f"{elevations or beams}x{columns}", porous) if p)


def synthetic_drive(cache: Path, style: str, seed: int, frames: int, beams: int = SynthConfig.lidar_beams,
                    columns: int = SynthConfig.lidar_columns, elevations: str | None = None,
                    camera: tuple[float, float] = (0.0, 0.0), foliage_free_path_m: float = 0.0):
    """A synthetic drive generated into ``cache`` on first use (the LiDAR and the camera's mount in its
    folder name unless the defaults; ``elevations`` a named beam layout of ``lidar_models.LIDAR_ELEVATIONS_DEG``;
    ``camera`` its heading and downward pitch [deg], SynthConfig.camera_heading_deg / camera_pitch_deg;
    ``foliage_free_path_m`` porous crowns, SynthConfig.foliage_free_path_m), opened as a dataset."""
    sensor = sensor_name(beams, columns, elevations, foliage_free_path_m)
    mount = f"cam{camera[0]:g}h{camera[1]:g}p" if any(camera) else ""
    root = cache / "_".join(p for p in (f"{style}_{seed}_{frames}", sensor, mount) if p)
    if not (root / "sequences").is_dir():
        layout = None if elevations is None else LIDAR_ELEVATIONS_DEG[elevations]
        generate(SynthConfig(frames=frames, seed=seed, style=style, lidar_beams=len(layout) if layout else beams,
                             lidar_columns=columns, lidar_elevations_deg=layout, camera_heading_deg=camera[0],
                             camera_pitch_deg=camera[1], foliage_free_path_m=foliage_free_path_m), root,
                 progress=False)
    return open_dataset(root)


def synthetic(cache: Path, frames: int, beams: int = SynthConfig.lidar_beams,
              columns: int = SynthConfig.lidar_columns, elevations: str | None = None,
              camera: tuple[float, float] = (0.0, 0.0), foliage_free_path_m: float = 0.0) -> list:
    return [synthetic_drive(cache, style, seed, frames, beams, columns, elevations, camera, foliage_free_path_m)
            for style, seed in HELD_OUT]


def add_camera_options(ap: argparse.ArgumentParser) -> None:
    """The synthetic drives' camera mount: --camera-heading, --camera-pitch."""
    ap.add_argument("--camera-heading", type=float, default=0.0,
                    help="the synthetic camera's view about the LiDAR's z from its +x [deg] (90: left, 180: rear)")
    ap.add_argument("--camera-pitch", type=float, default=0.0,
                    help="the synthetic camera tilted down by this [deg]")


def add_lidar_options(ap: argparse.ArgumentParser) -> None:
    """The synthetic drives' LiDAR: --beams, --columns, --elevations, --foliage-free-path."""
    ap.add_argument("--beams", type=int, default=SynthConfig.lidar_beams,
                    help="the synthetic drives' LiDAR beams (16, 32, 64 or 128: the usual sensor's field of view)")
    ap.add_argument("--columns", type=int, default=SynthConfig.lidar_columns,
                    help="the synthetic drives' LiDAR columns (points per ring and sweep)")
    ap.add_argument("--elevations", choices=sorted(LIDAR_ELEVATIONS_DEG), default=None,
                    help="a named, unevenly spaced beam layout instead of --beams evenly spread")
    ap.add_argument("--foliage-free-path", type=float, default=0.0, metavar="M",
                    help="porous crowns and hedges: beams return from inside them with this mean free path [m] "
                         "or pass through (default 0: solid foliage)")


def run(datasets: list, calibrator: Calibrator, cfg: EvalConfig) -> tuple[dict, list]:
    """The same protocol over several datasets (sample seeds differ per dataset), pooled."""
    records = []
    for k, ds in enumerate(datasets):
        _, recs = evaluate(ds, calibrator, EvalConfig(**{**cfg.__dict__, "seed": cfg.seed + 1000 * k}),
                           progress=False)
        records += recs
    return summarize(records), records


def line(name: str, s: dict) -> str:
    return (f"{name:<34} rot med {s['rot_median_deg']:.3f} p95 {s['rot_p95_deg']:.3f} deg | trans med "
            f"{100 * s['trans_median_m']:.2f} p95 {100 * s['trans_p95_m']:.2f} cm | success "
            f"{100 * s['success_rate']:.0f} % | 3-sigma {100 * s['coverage_3sigma']:.0f} % | converged "
            f"{100 * s['converged_rate']:.0f} % (false {s['false_convergences']}) | "
            f"{s['time_ms_median'] / 1e3:.1f} s/window (solve {s['solve_ms_median'] / 1e3:.1f})")


def update_timing(calibrator: Calibrator, ds, k: int) -> dict:
    """Solve a window of k, then add one keyframe and refine from the last solution (the node's update)."""
    frames = [ds[i] for i in range(k + 1)]
    T_gt = frames[0].T_camera_lidar
    T0 = CalibProtocol().initial_guess(T_gt, 0, 0)
    kfs = [calibrator.prepare(f.image, f.points, f.camera)[0] for f in frames]
    t = time.perf_counter()
    first = calibrator.window.solve(kfs[:k], T0)
    full_s = time.perf_counter() - t
    t = time.perf_counter()
    prep = calibrator.prepare(frames[k].image, frames[k].points, frames[k].camera)[0]
    prep_s = time.perf_counter() - t
    t = time.perf_counter()
    second = calibrator.window.solve(kfs[1:k] + [prep], first.T_camera_lidar, global_search=False)
    update_s = time.perf_counter() - t
    return {"window": k, "global_solve_s": full_s, "keyframe_prepare_s": prep_s, "update_solve_s": update_s,
            "update_error_deg": pose_error(second.T_camera_lidar, T_gt).rot_deg,
            "update_error_m": pose_error(second.T_camera_lidar, T_gt).trans_m,
            "memory_per_keyframe_mb": float(np.mean([kf.nbytes for kf in kfs]) / 1e6)}


def real(calibrator: Calibrator, args: argparse.Namespace, record) -> None:
    """The real-data runs: KITTI raw windows and nuScenes single frames, each skipped when absent."""
    kitti = SHARED / "kitti_raw_0926"
    if kitti.is_dir():
        ds = open_dataset(kitti)
        for rot, trans in ((5.0, 0.2), (10.0, 0.5)):
            cfg = EvalConfig(samples=args.samples, seed=0, max_rot_deg=rot, max_trans_m=trans,
                             frames_per_estimate=args.window)
            record(f"KITTI raw +-{rot:g} deg / {trans:g} m, K={args.window}", *run([ds], calibrator, cfg))
    else:
        print(f"skipped real KITTI: {kitti} is absent")
    nus = SHARED / "nuscenes_demo"
    if nus.is_dir():
        ds = open_dataset(nus)
        cfg = EvalConfig(samples=len(ds), seed=0, max_rot_deg=5.0, max_trans_m=0.2, frames_per_estimate=1)
        summary, recs = run([ds], calibrator, cfg)
        record("nuScenes +-5 deg / 0.2 m, 1 frame", summary, recs)
        for r in recs:
            print(f"  {r.id}: {r.init_rot_deg:.2f} deg / {100 * r.init_trans_m:.1f} cm -> {r.rot_deg:.3f} deg / "
                  f"{100 * r.trans_m:.2f} cm, converged {r.converged}, within 3 sigma {r.within_3sigma}")
    else:
        print(f"skipped nuScenes: {nus} is absent")


def window_config(overrides: list[str]) -> WindowConfig:
    """``WindowConfig`` with ``FIELD=VALUE`` overrides (VALUE a Python literal; ``image.FIELD`` and
    ``lidar.FIELD`` reach the edge detectors' configs)."""
    cfg = WindowConfig()
    for item in overrides:
        key, sep, value = item.partition("=")
        path = key.split(".")
        owner = cfg if len(path) == 1 else getattr(cfg, path[0], None)
        names = {f.name for f in dataclasses.fields(owner)} if dataclasses.is_dataclass(owner) else set()
        if not sep or len(path) > 2 or path[-1] not in names:
            raise SystemExit(f"--set {item!r}: expected FIELD=VALUE, FIELD a WindowConfig field "
                             f"({', '.join(f.name for f in dataclasses.fields(WindowConfig))}) or image.F / lidar.F")
        value = ast.literal_eval(value)
        if len(path) == 1:
            cfg = dataclasses.replace(cfg, **{key: value})
        else:
            cfg = dataclasses.replace(cfg, **{path[0]: dataclasses.replace(owner, **{path[1]: value})})
    return cfg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/crossi2p_window_bench"))
    ap.add_argument("--samples", type=int, default=10, help="windows per synthetic sequence and regime")
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a WindowConfig field (an ablation)")
    ap.add_argument("--mi", action="store_true", help="with the mutual-information polish of the window's pose")
    add_lidar_options(ap)
    args = ap.parse_args()
    calibrator = Calibrator(CalibratorConfig(device="cpu", window=window_config(args.set), use_mi=args.mi))
    results: dict = {"host": platform.node(), "cpu": platform.processor() or platform.machine(),
                     "window": args.window, "overrides": args.set, "mi": args.mi,
                     "lidar": {"beams": args.beams, "columns": args.columns, "elevations": args.elevations,
                               "foliage_free_path_m": args.foliage_free_path},
                     "runs": {}}

    def record(name: str, summary: dict, recs: list) -> None:
        print(line(name, summary), flush=True)
        results["runs"][name] = {"summary": summary, "per_sample": [r.to_json() for r in recs]}
        if args.json:
            write_json(args.json, results)

    if not args.skip_synthetic:
        synth = synthetic(args.cache, 40, args.beams, args.columns, args.elevations,
                          foliage_free_path_m=args.foliage_free_path)
        for rot, trans in ((10.0, 0.5), (2.0, 0.1)):
            cfg = EvalConfig(samples=args.samples, seed=0, max_rot_deg=rot, max_trans_m=trans,
                             frames_per_estimate=args.window)
            record(f"synthetic +-{rot:g} deg / {trans:g} m, K={args.window}", *run(synth, calibrator, cfg))
        results["update"] = update_timing(calibrator, synth[0], args.window)
        print("update:", results["update"], flush=True)
    if not args.skip_real:
        real(calibrator, args, record)
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
