"""Which image edges the objective can trust: image-edge variants side by side on the real sets.

The window objective scores LiDAR depth discontinuities against image edges;
an image edge no depth edge explains (sensor noise at night, foliage, road
markings, shadows) is clutter: it flattens the objective around the truth and
lends wrong poses a score. For each real set in ``../shared/data`` and each
variant of the image-edge detector (``--variant NAME:image.FIELD=VALUE,...``;
the shipped detector is ``shipped``), with the set's stated extrinsic as the
truth, this prints:

* ``edges``: the share of the image's pixels that are edges;
* ``lift near`` / ``lift far``: the finest level's window score at the truth
  over its mean at poses 0.5 deg / 5 cm and 2 deg / 20 cm from it (12
  random directions each, one fixed draw): how much the truth stands out;
* ``optimum``: where a local refinement from the truth ends (the objective's
  own optimum next to the truth, :mod:`window_bias`), median over windows;
* the time to prepare a keyframe (both halves, the image's with the variant).

A variant that keeps the edges depth makes has a higher lift and an optimum
nearer the truth. Neither is enough to change a default: the search's coarse
levels need edges too, so a variant goes on to the window protocol
(``benchmarks/rigs.py --set ...``) side by side with the shipped detector. The
stated extrinsics are not perfect (the city vehicle's windows end 25-29 cm from
them under every detector tried), so read the columns side by side, not as
absolute errors.

    .venv/bin/python benchmarks/image_edges.py --json docs/results/image_edges.json
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rigs import open_real, real_sets  # noqa: E402
from window import window_config  # noqa: E402

from crossi2p_ros.camera_views import working_view  # noqa: E402
from crossi2p_ros.evaluation import write_json  # noqa: E402
from crossi2p_ros.geometry import invert, se3_exp, se3_log  # noqa: E402
from crossi2p_ros.registration.calibrator import Calibrator, CalibratorConfig  # noqa: E402
from crossi2p_ros.registration.image_edges import detect_edges  # noqa: E402

DEFAULT_VARIANTS = ("shipped:",)
RADII = (("near", 0.5, 0.05), ("far", 2.0, 0.20))   # (name, rotation [deg], translation [m])


def perturbations(count: int, rot_deg: float, trans_m: float, seed: int = 0) -> np.ndarray:
    """(count, 4, 4) left perturbations, each ``rot_deg`` and ``trans_m`` along random directions."""
    rng = np.random.default_rng(seed)
    rot = rng.normal(size=(count, 3))
    trans = rng.normal(size=(count, 3))
    rot *= np.radians(rot_deg) / np.linalg.norm(rot, axis=1, keepdims=True)
    trans *= trans_m / np.linalg.norm(trans, axis=1, keepdims=True)
    return np.stack([se3_exp(np.r_[t, r]) for t, r in zip(trans, rot)])


def windows(n: int, k: int, count: int) -> list[range]:
    """Up to ``count`` windows of ``k`` consecutive frames of ``n``, spread evenly (single frames: all)."""
    if k == 1:
        return [range(i, i + 1) for i in range(n)]
    starts = np.unique(np.linspace(0, max(n - k, 0), count).round().astype(int))
    return [range(s, min(s + k, n)) for s in starts]


def measure(calibrator: Calibrator, ds, k: int, count: int) -> dict:
    """The columns of the module docstring for one set under ``calibrator``'s detector."""
    t0 = time.perf_counter()
    keyframes, edge_share = [], []
    for i in range(len(ds)):
        f = ds[i]
        kf, image, pinhole = calibrator.prepare(f.image, f.points, f.camera, without_prior=False)
        keyframes.append(kf)
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        found = detect_edges(working_view(grey, pinhole, calibrator.cfg.window.max_focal_px)[0],
                             calibrator.cfg.window.image)
        edge_share.append(float((found.upright | found.level).mean()))
    prepare_ms = 1e3 * (time.perf_counter() - t0) / len(ds)
    T_true = ds[0].T_camera_lidar
    window = calibrator.window
    lifts = {name: [] for name, _, _ in RADII}
    optimum = []
    for w in windows(len(ds), k, count):
        kfs = [keyframes[i] for i in w]
        at_truth = window.score(kfs, T_true, -1)
        for name, rot, trans in RADII:
            off = window.score_many(kfs, perturbations(12, rot, trans) @ T_true, -1)
            lifts[name].append(at_truth / max(float(off.mean()), 1e-9))
        r = window.solve(kfs, T_true, global_search=False)
        d = se3_log(r.T_camera_lidar @ invert(T_true))
        optimum.append((100 * float(np.linalg.norm(d[:3])), float(np.degrees(np.linalg.norm(d[3:])))))
    optimum = np.array(optimum)
    return {"edge_share": float(np.median(edge_share)),
            **{f"lift_{name}": float(np.median(v)) for name, v in lifts.items()},
            "optimum_trans_cm": float(np.median(optimum[:, 0])), "optimum_rot_deg": float(np.median(optimum[:, 1])),
            "optimum_per_window": optimum.round(4).tolist(), "keyframe_ms": prepare_ms,
            "windows": len(optimum), "frames_per_window": k}


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, overrides = text.partition(":")
    return name, [o for o in overrides.split(",") if o]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/crossi2p_rigs_bench"))
    ap.add_argument("--variant", action="append", default=None, metavar="NAME:FIELD=VALUE,...",
                    help="a detector variant: WindowConfig overrides as benchmarks/window.py's --set "
                         "(repeatable; default: the shipped detector alone)")
    ap.add_argument("--windows", type=int, default=3, help="windows per set (single-frame sets: every frame)")
    ap.add_argument("--window", type=int, default=20, help="frames a window on KITTI (the others: all their frames)")
    ap.add_argument("--sets", nargs="+", default=None, help="only these sets, by any word of their name")
    args = ap.parse_args()
    variants = [parse_variant(v) for v in (args.variant or DEFAULT_VARIANTS)]
    results: dict = {"host": platform.node(), "variants": dict(variants), "sets": {}}
    for set_name, path, k in real_sets(args.window):
        if args.sets and not {w.lower() for w in args.sets} & set(set_name.lower().replace(",", "").split()):
            continue
        ds = open_real(path, args.cache)
        for name, overrides in variants:
            calibrator = Calibrator(CalibratorConfig(device="cpu", window=window_config(overrides)))
            m = measure(calibrator, ds, min(k, len(ds)), args.windows)
            results["sets"].setdefault(set_name, {})[name] = m
            print(f"{set_name[:28]:<28} {name:<14} edges {100 * m['edge_share']:5.1f} % | lift near "
                  f"{m['lift_near']:.3f} far {m['lift_far']:.3f} | optimum {m['optimum_trans_cm']:5.1f} cm "
                  f"{m['optimum_rot_deg']:.3f} deg ({m['windows']} windows of {k}) | {m['keyframe_ms']:.0f} ms a "
                  f"keyframe", flush=True)
            if args.json:
                write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
