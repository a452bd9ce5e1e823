"""Decalibration monitoring end to end: synthetic bags with an injected step, ``crossi2p monitor``'s pipeline.

For each case a bag is generated with ``crossi2p synth`` (``--decalibrate-at``),
replayed through :func:`crossi2p_ros.replay.run_session` in monitor mode (the
node's session loop: keyframe window, window solves from the installed
extrinsic, drift test) with the shipped weights and the installed extrinsic
from the bag's ``/tf_static`` (the one before the step), and scored:

* detection delay: from the step to the newest keyframe of the first solve that alarms (data time);
* false alarms: solves raising WARN/ERROR before the step (or at all, in the calm case).

Offline, every solve completes before the next frame: the delay is that of a
solver that keeps up (the node at 10 Hz on our CPU drops pairs while it solves;
benchmarks/node.py measures the live node).

    .venv/bin/python benchmarks/monitor.py --frames 80 --step-at 3.0 --json docs/results/monitor.json
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crossi2p_ros.data.synth import SynthConfig, generate  # noqa: E402
from crossi2p_ros.evaluation import write_json  # noqa: E402
from crossi2p_ros.geometry import pose_error  # noqa: E402
from crossi2p_ros.registration.calibrator import Calibrator, CalibratorConfig  # noqa: E402
from crossi2p_ros.replay import PairReader, detect_topics, run_session  # noqa: E402
from crossi2p_ros.session import SessionConfig  # noqa: E402

CASES = {"calm": (0.0, 0.0), "rot_1deg": (1.0, 0.0), "trans_2cm": (0.0, 0.02)}


def _median(values) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.median(v)) if v else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=60, help="frames per bag (10 Hz)")
    ap.add_argument("--step-at", type=float, default=2.0, help="time of the step [s]")
    ap.add_argument("--seed", type=int, default=9900)
    ap.add_argument("--style", default="urban")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    calibrator = Calibrator(CalibratorConfig(device=args.device))
    results: dict = {"frames": args.frames, "rate_hz": 10.0, "step_at_s": args.step_at,
                     "device": f"{calibrator.device} ({platform.processor() or platform.machine()}, "
                               f"{torch.get_num_threads()} threads)", "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases:
            rot, trans = CASES[name]
            cfg = SynthConfig(frames=args.frames, seed=args.seed, style=args.style,
                              decalibrate_at_s=None if name == "calm" else args.step_at,
                              step_rot_deg=rot, step_trans_m=trans)
            bag = Path(tmp) / f"{name}.bag"
            generate(cfg, Path(tmp) / name, bag_path=bag, progress=False)
            reader = PairReader(bag, detect_topics(bag))
            start = time.perf_counter()
            result = run_session(reader, calibrator, SessionConfig(mode="monitor"))
            elapsed = time.perf_counter() - start
            step_t = None if name == "calm" else args.step_at
            alarms = [r for r in result.records if r.level in ("WARN", "ERROR")]
            before = [r for r in alarms if step_t is None or r.time_s < step_t - 1e-6]
            after = [r for r in alarms if step_t is not None and r.time_s >= step_t - 1e-6]
            errors = [pose_error(r.T, result.T_initial) for r in result.records
                      if r.ok and (step_t is None or r.time_s < step_t)]
            results["cases"][name] = {
                "step_rot_deg": rot, "step_trans_m": trans, "solves": len(result.records),
                "false_alarm_estimates": len(before),
                "detection_delay_s": None if not after else after[0].time_s - step_t,
                "final_level": result.records[-1].level,
                "final_offset_rot_deg": result.records[-1].offset_rot_deg,
                "final_offset_trans_m": result.records[-1].offset_trans_m,
                "calibrated_estimate_rot_sd_deg": float(np.sqrt(np.mean([e.rot_deg ** 2 for e in errors]))) if errors else None,
                "calibrated_estimate_trans_sd_m": float(np.sqrt(np.mean([e.trans_m ** 2 for e in errors]))) if errors else None,
                # OK solves whose test could have seen a drift at the ERROR thresholds (DriftStatus.checked)
                "ok_solves": sum(r.level == "OK" for r in result.records),
                "ok_solves_checked": sum(r.level == "OK" and bool(r.checked) for r in result.records),
                "detectable_rot_deg_median": _median(r.detectable_rot_deg for r in result.records),
                "detectable_trans_m_median": _median(r.detectable_trans_m for r in result.records),
                "seconds": elapsed,
            }
            c = results["cases"][name]
            print(f"{name:10s} solves {c['solves']:3d}  false alarms {c['false_alarm_estimates']:3d}  "
                  f"delay {c['detection_delay_s'] if c['detection_delay_s'] is not None else '-'}  "
                  f"final {c['final_level']} ({c['final_offset_rot_deg']:.2f} deg, {100 * c['final_offset_trans_m']:.1f} cm)  "
                  f"solve error before the step {c['calibrated_estimate_rot_sd_deg']:.2f} deg / "
                  f"{100 * c['calibrated_estimate_trans_sd_m']:.1f} cm  OK and checked {c['ok_solves_checked']} of "
                  f"{c['ok_solves']}  ({elapsed:.0f} s)", flush=True)
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
