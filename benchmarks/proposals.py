"""No prior at all: the network's global proposals against the learning-free starts (motion, mounts), side by side.

A node started without any TF has to find ``T_camera_lidar`` from scratch. The
window estimator can start from (see ``WindowEstimator.solve_without_prior``)

* **motion** (learning-free, the default): the camera's rotation from the
  window's own motion (``registration/motion.py``: the camera's direction of
  travel from the images' essential matrices against the LiDAR's from
  registered sweeps), solved with the global search;
* **mount scan** (learning-free, the fallback when the window does not
  travel): a camera level with the LiDAR's horizon at every 10 deg of
  heading, each scored over its rotation grid, the best two solved with the
  global search;
* **network + mounts** (motion off in this and the next two): the network's
  per-frame poses (``Calibrator.proposals``: coarse matches -> RANSAC PnP ->
  fine, the best ``max_proposals`` of the window) ranked with the mounts;
* **network only**: the proposals alone (``mount_scan`` off);
* **random poses** (control): as many random poses as there are proposals, alone.

Each window (K consecutive frames from a seeded start, DESIGN.md's window
protocol) is prepared once and solved by every variant from the same
keyframes; the time of a variant is its solve plus, where it uses them, the
network's proposals. Success: rotation < 1 deg and translation < 5 cm.
Data: held-out synthetic sequences (the window benchmark's seeds 9610 /
9620 / 9630, never trained on) and the real ``../shared/data/kitti_raw_0926``
when present.

    .venv/bin/python benchmarks/proposals.py --json docs/results/proposals.json
    .venv/bin/python benchmarks/proposals.py --weights runs/x/model.pt --json out.json
    .venv/bin/python benchmarks/proposals.py --variants motion "mount scan" --json out.json
    .venv/bin/python benchmarks/proposals.py --camera-pitch 20 --skip-real --json out.json   # a road-facing camera
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from crossi2p_ros.data.kitti import open_dataset  # noqa: E402
from crossi2p_ros.evaluation import window_start, within_sigma, write_json  # noqa: E402
from crossi2p_ros.geometry import make_transform, pose_error  # noqa: E402
from crossi2p_ros.model.weights import file_sha256  # noqa: E402
from crossi2p_ros.registration.calibrator import Calibrator, CalibratorConfig  # noqa: E402
# benchmarks/window.py: the held-out sequences
from window import SHARED, add_camera_options, synthetic  # noqa: E402

VARIANTS = {   # name: (starts from network proposals, scans the mounts, uses the window's motion)
    "motion": ("none", True, True),
    "mount scan": ("none", True, False),
    "network + mounts": ("network", True, False),
    "network only": ("network", False, False),
    "random poses": ("random", False, False),
}


def random_poses(n: int, rng: np.random.Generator, max_trans_m: float = 1.0) -> list[np.ndarray]:
    """Poses with uniformly random rotation and a translation within ``max_trans_m`` [m]."""
    R = Rotation.random(n, random_state=rng).as_matrix()
    t = rng.uniform(-1.0, 1.0, (n, 3))
    t *= max_trans_m * rng.uniform(0.0, 1.0, (n, 1)) ** (1 / 3) / np.linalg.norm(t, axis=1, keepdims=True)
    return [make_transform(R[i], t[i]) for i in range(n)]


def solve_window(calibrator: Calibrator, frames: list, T_gt: np.ndarray, rng: np.random.Generator,
                 variants: list[str]) -> dict:
    """The ``variants`` on one window of frames; returns {variant: record} plus the proposals' own errors."""
    prepared = [calibrator.prepare(f.image, f.points, f.camera) for f in frames]
    keyframes = [p[0] for p in prepared]
    t = time.perf_counter()
    found = calibrator.proposals([(img, f.points, cam) for f, (_, img, cam) in zip(frames, prepared)], None) \
        if any(VARIANTS[n][0] != "none" for n in variants) else []
    network_s = time.perf_counter() - t
    proposals = [T for _, T in found[: calibrator.cfg.max_proposals]]
    errors = [pose_error(T, T_gt) for _, T in found]
    out: dict = {"proposals": {
        "frames": len(frames), "found": len(found), "network_s": network_s,
        "best_rot_deg": min((e.rot_deg for e in errors), default=None),
        "best_trans_m": min((e.trans_m for e in errors), default=None),
        # the window search's basin: within its rotation / translation region (WindowConfig search bounds)
        "in_basin": int(sum(e.rot_deg <= calibrator.cfg.window.search_rot_deg
                            and e.trans_m <= calibrator.cfg.window.mount_search_trans_m for e in errors))}}
    for name in variants:
        starts, mounts, motion = VARIANTS[name]
        hyps = proposals if starts == "network" else \
            random_poses(max(len(proposals), calibrator.cfg.max_proposals), rng) if starts == "random" else []
        t = time.perf_counter()
        result = calibrator.window.solve_without_prior(keyframes, hyps, mounts=mounts, motion=motion)
        solve_s = time.perf_counter() - t
        err = pose_error(result.T_camera_lidar, T_gt)
        out[name] = {"rot_deg": err.rot_deg, "trans_m": err.trans_m, "ok": bool(result.ok),
                     "converged": bool(result.converged),
                     "within_3sigma": bool(within_sigma(result.T_camera_lidar, result.covariance, T_gt)),
                     "success": bool(err.rot_deg < 1.0 and err.trans_m < 0.05),
                     "time_s": solve_s + (network_s if starts == "network" else 0.0), "solve_s": solve_s,
                     "motion_s": result.timings_ms.get("motion", 0.0) / 1e3}
    return out


def summary(records: list[dict], name: str) -> dict:
    rs = [r[name] for r in records]
    rot, trans = np.array([r["rot_deg"] for r in rs]), np.array([r["trans_m"] for r in rs])
    return {"windows": len(rs), "rot_median_deg": float(np.median(rot)), "trans_median_m": float(np.median(trans)),
            "success_rate": float(np.mean([r["success"] for r in rs])),
            "converged_rate": float(np.mean([r["converged"] for r in rs])),
            "false_convergences": int(sum(r["converged"] and not r["within_3sigma"] for r in rs)),
            "coverage_3sigma": float(np.mean([r["within_3sigma"] for r in rs])),
            "time_s_median": float(np.median([r["time_s"] for r in rs]))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=None, help="network weights (default: the shipped model)")
    ap.add_argument("--windows", type=int, default=2, help="windows per sequence (default %(default)s)")
    ap.add_argument("--frames", type=int, default=20, help="frames per window, K (default %(default)s)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/crossi2p_window_bench"),
                    help="where the held-out synthetic sequences are generated (shared with window.py)")
    ap.add_argument("--skip-real", action="store_true", help="leave out ../shared/data/kitti_raw_0926")
    add_camera_options(ap)
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                    help="the starts to compare (default: all)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    calibrator = Calibrator(CalibratorConfig(weights=args.weights, device="cpu"))
    sets = [("synthetic", ds) for ds in synthetic(args.cache, 40, camera=(args.camera_heading, args.camera_pitch))]
    kitti = SHARED / "kitti_raw_0926"
    if not args.skip_real and kitti.is_dir():
        sets.append(("KITTI", open_dataset(kitti)))
    elif not args.skip_real:
        print(f"skipping real KITTI: {kitti.name} not found beside the project")
    rng = np.random.default_rng(0)
    records: dict[str, list[dict]] = {}
    for k, (group, ds) in enumerate(sets):
        for i in range(args.windows):
            start = window_start(1000 * k, i, len(ds), args.frames)
            frames = [ds[j] for j in range(start, min(start + args.frames, len(ds)))]
            rec = solve_window(calibrator, frames, np.asarray(frames[0].T_camera_lidar), rng, args.variants)
            rec["sequence"], rec["start"] = Path(ds.root).name, start
            records.setdefault(group, []).append(rec)
            p = rec["proposals"]
            best = "none" if p["best_rot_deg"] is None else \
                f"{p['best_rot_deg']:.1f} deg / {100 * p['best_trans_m']:.0f} cm"
            print(f"{group} {rec['sequence']} @{start}: {p['found']} proposals of {p['frames']} frames "
                  f"({p['network_s']:.1f} s), best {best}, {p['in_basin']} in the basin | " + " | ".join(
                      f"{n}: {rec[n]['rot_deg']:.2f} deg / {100 * rec[n]['trans_m']:.1f} cm"
                      f"{' conv' if rec[n]['converged'] else ''} {rec[n]['time_s']:.0f} s" for n in args.variants),
                  flush=True)
    table = {g: {n: summary(rs, n) for n in args.variants} for g, rs in records.items()}
    print()
    for g, rows in table.items():
        print(f"{g} ({rows[args.variants[0]]['windows']} windows of {args.frames}):")
        for n, s in rows.items():
            print(f"  {n:<18} rot med {s['rot_median_deg']:.2f} deg | trans med {100 * s['trans_median_m']:.1f} cm"
                  f" | success {100 * s['success_rate']:.0f} % | converged {100 * s['converged_rate']:.0f} % "
                  f"(false {s['false_convergences']}) | {s['time_s_median']:.1f} s/window")
    if args.json:
        write_json(args.json, {"device": f"cpu ({platform.processor() or platform.machine()})",
                               "weights": f"{calibrator.weights_path.name} sha256 "
                                          f"{file_sha256(calibrator.weights_path)[:16]}",
                               "frames_per_window": args.frames, "summary": table, "windows": records,
                               "synthetic_camera": {"heading_deg": args.camera_heading,
                                                    "pitch_deg": args.camera_pitch}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
