"""Replay and monitor reports: plots over time, overlays, and the text summary a user pastes into a ticket."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from .geometry import pose_error
from .overlay import draw_projection, side_by_side
from .replay import RunResult


def _errors(records, T_ref: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    kept = [r for r in records if r.ok]
    errors = [pose_error(r.T, T_ref) for r in kept]
    return (np.array([r.time_s for r in kept]), np.array([e.rot_deg for e in errors]),
            np.array([e.trans_m for e in errors]))


def plot_run(result: RunResult, path: Path, reference: np.ndarray | None, title: str) -> Path:
    """Window solves over time: rotation / translation difference to ``reference`` (the truth, or the final
    pose) with the solve's largest 3-sigma, and the monitor level."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = reference if reference is not None else (result.T_final if result.T_final is not None else result.T_initial)
    against = "ground truth" if reference is not None else ("final calibration" if result.T_final is not None
                                                           else "installed extrinsic")
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    ok = [r for r in result.records if r.ok]
    if ref is not None and ok:
        t, rot, trans = _errors(result.records, ref)
        conv = np.array([r.converged for r in ok])
        for ax, err, sd, unit in ((axes[0], rot, [3 * r.sigma_rot_deg for r in ok], 1.0),
                                  (axes[1], trans, [3 * r.sigma_trans_m for r in ok], 100.0)):
            ax.plot(t, unit * err, "-", color="C0", alpha=0.5)
            ax.plot(t[conv], unit * err[conv], "o", color="C2", ms=4, label="converged solve")
            ax.plot(t[~conv], unit * err[~conv], "x", color="C3", ms=5, label="not converged")
            ax.plot(t, unit * np.minimum(sd, 1e3 if unit == 1.0 else 10.0), ":", color="grey", label="3 sigma (largest axis)")
        if result.T_initial is not None and result.T_final is not None:
            e0 = pose_error(result.T_initial, ref)
            axes[0].axhline(e0.rot_deg, color="grey", ls="--", label="initial guess")
            axes[1].axhline(100 * e0.trans_m, color="grey", ls="--", label="initial guess")
        axes[0].set_yscale("symlog", linthresh=0.1)
        axes[1].set_yscale("symlog", linthresh=1.0)
    axes[0].set_ylabel(f"rotation vs {against} [deg]")
    axes[1].set_ylabel(f"translation vs {against} [cm]")
    t_all = [r.time_s for r in result.records]
    axes[2].plot(t_all, [r.keyframes for r in result.records], ".-", label="keyframes in the window")
    if any(r.level for r in result.records):
        levels = {"STALE": -1, "OK": 0, "WARN": 5, "ERROR": 10}
        axes[2].step(t_all, [levels.get(r.level or "STALE", -1) for r in result.records], where="post",
                     label="monitor level (0 OK, 5 WARN, 10 ERROR)")
        unchecked = [r.time_s for r in result.records if r.unchecked]
        if unchecked:
            axes[2].plot(unchecked, [0.0] * len(unchecked), "s", mfc="none", color="C3", ms=7,
                         label="OK, unchecked: could not have seen a drift")
    axes[2].set_ylabel("keyframes / level")
    axes[2].set_xlabel("time [s] (newest keyframe of each solve)")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def overlay_before_after(result: RunResult, path: Path) -> Path | None:
    """The last pair's image with the LiDAR drawn under the initial guess and under the final estimate."""
    pair = result.last_pair
    if pair is None:
        return None
    panels, labels = [], []
    if result.T_initial is not None:
        panels.append(draw_projection(pair.image, pair.points, result.T_initial, pair.camera))
        labels.append("initial guess")
    if result.T_final is None and not result.records:
        return None
    final = result.T_final if result.T_final is not None else result.records[-1].T
    panels.append(draw_projection(pair.image, pair.points, final, pair.camera))
    labels.append("calibration" if result.T_final is not None else "last solve (not converged)")
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(side_by_side(panels, labels), cv2.COLOR_RGB2BGR))
    return path


def summary_text(result: RunResult, bag: Path, reference: np.ndarray | None = None) -> str:
    """Plain text for a ticket: what was run, the result, its uncertainty, the data quality."""
    k = result.keyframes
    lines = [f"crossi2p on {bag.name}: {result.pairs} camera/LiDAR pairs ({result.camera_frame} <- "
             f"{result.lidar_frame}), {result.bad_messages} unreadable messages, {result.dropped} unpaired "
             f"messages dropped",
             f"keyframes: {k.get('keyframes', 0)} in the final window; skipped {k.get('skipped_no_structure', 0)} "
             f"without structure, {k.get('skipped_no_change', 0)} without change; {len(result.records)} window solves"]
    tf, lidar = k.get("twists_from_tf", 0), k.get("twists_from_lidar", 0)
    if tf or lidar:
        lines.append(f"motion of the sweeps: {tf} from /tf odometry, {lidar} from registering consecutive sweeps")
    if result.offsets_s:
        offsets = np.abs(result.offsets_s)
        lines.append(f"stamp offset camera-LiDAR: median {1e3 * np.median(offsets):.1f} ms, max {1e3 * offsets.max():.1f} ms")
    if result.records:
        g = [r.timings_ms.get("total", 0.0) for r in result.records if r.global_search]
        u = [r.timings_ms.get("total", 0.0) for r in result.records if not r.global_search]
        lines.append("time per solve: " + ", ".join(
            f"{what} median {np.median(v) / 1e3:.1f} s ({len(v)})" for what, v in (("global", g), ("update", u)) if v))
    if result.T_final is not None:
        last = next(r for r in reversed(result.records) if r.converged)
        lines.append(f"calibration T_camera_lidar (converged; largest sigma {last.sigma_rot_deg:.3f} deg, "
                     f"{100 * last.sigma_trans_m:.2f} cm):")
        lines.append(np.array2string(result.T_final, precision=6, suppress_small=True))
        if result.T_initial is not None:
            e = pose_error(result.T_final, result.T_initial)
            lines.append(f"change from the initial guess: {e.rot_deg:.3f} deg, {100 * e.trans_m:.2f} cm")
        if reference is not None:
            e = pose_error(result.T_final, reference)
            lines.append(f"error against the reference: {e.rot_deg:.3f} deg, {100 * e.trans_m:.2f} cm")
        if last.time_offset_ms is not None:
            lines.append(f"camera time offset (exposure minus stamp): {last.time_offset_ms:.1f} ms, sigma "
                         f"{last.time_offset_sigma_ms:.1f} ms")
        elif last.time_offset_sigma_ms is not None:
            lines.append("camera time offset: not shown by this drive's motion (the calibration takes the stamps "
                         "as true)")
    elif not any(r.level for r in result.records):
        last = result.records[-1] if result.records else None
        why = (f"the last solve's largest sigma is {last.sigma_rot_deg:.2f} deg / {100 * last.sigma_trans_m:.1f} cm"
               + (f", unconstrained: {', '.join(last.unconstrained)}" if last.unconstrained else "")) if last else \
            "no solve ran"
        lines.append(f"NOT converged: {why}; a longer drive with more varied structure helps")
    levels = [r.level for r in result.records if r.level]
    if levels:
        alarms = [r for r in result.records if r.level in ("WARN", "ERROR")]
        if alarms:
            r = alarms[0]
            lines.append(f"monitor: first {r.level} at t = {r.time_s:.1f} s (offset {r.offset_rot_deg:.2f} deg, "
                         f"{100 * r.offset_trans_m:.1f} cm, mostly {r.axis}); final level {levels[-1]}")
        else:
            lines.append(f"monitor: no alarm over {result.records[-1].time_s:.1f} s; final level {levels[-1]}")
        tested = [r for r in result.records if r.checked is not None]
        unchecked = [r for r in tested if r.unchecked]
        if unchecked:
            rot = max(r.detectable_rot_deg for r in unchecked)
            trans = max(r.detectable_trans_m for r in unchecked)
            lines.append(f"monitor: {len(unchecked)} of {len(tested)} solves could not check the calibration (they "
                         f"could hide a drift of up to {rot:.2f} deg / {100 * trans:.1f} cm): this stretch "
                         f"constrains it too little")
    return "\n".join(lines) + "\n"


def write_log(result: RunResult, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"pairs": result.pairs, "lidar_frame": result.lidar_frame, "camera_frame": result.camera_frame,
           "keyframes": result.keyframes,
           "T_initial": None if result.T_initial is None else result.T_initial.tolist(),
           "T_final": None if result.T_final is None else result.T_final.tolist(),
           "solves": [r.to_json() for r in result.records]}
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path
