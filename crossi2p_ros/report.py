"""Replay and monitor reports: plots over time, overlays, and the text summary a user pastes into a ticket."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from .geometry import pose_error
from .overlay import draw_projection, side_by_side
from .replay import RunResult


def _errors(records, T_ref: np.ndarray, attr: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t, rot, trans = [], [], []
    for r in records:
        T = getattr(r, attr)
        if T is None or (attr == "T" and not r.ok):
            continue
        e = pose_error(T, T_ref)
        t.append(r.time_s)
        rot.append(e.rot_deg)
        trans.append(e.trans_m)
    return np.array(t), np.array(rot), np.array(trans)


def plot_run(result: RunResult, path: Path, reference: np.ndarray | None, title: str) -> Path:
    """Estimates over time: rotation/translation difference to ``reference`` (truth, or the final pose), confidence."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = reference if reference is not None else (result.T_final if result.T_final is not None else result.T_initial)
    against = "ground truth" if reference is not None else "final estimate"
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    if ref is not None:
        for attr, style, label in (("T", "o", "per frame"), ("T_fused", "-", "fused")):
            t, rot, trans = _errors(result.records, ref, attr)
            if len(t):
                axes[0].plot(t, rot, style, ms=3, label=label)
                axes[1].plot(t, 100 * trans, style, ms=3, label=label)
        if result.T_initial is not None:
            e0 = pose_error(result.T_initial, ref)
            axes[0].axhline(e0.rot_deg, color="grey", ls="--", label="initial guess")
            axes[1].axhline(100 * e0.trans_m, color="grey", ls="--", label="initial guess")
    axes[0].set_ylabel(f"rotation vs {against} [deg]")
    axes[1].set_ylabel(f"translation vs {against} [cm]")
    t = [r.time_s for r in result.records]
    axes[2].plot(t, [r.confidence for r in result.records], ".", label="confidence")
    levels = {"STALE": -0.1, "OK": 0.0, "WARN": 0.5, "ERROR": 1.0}
    if any(r.level for r in result.records):
        axes[2].step(t, [levels.get(r.level or "STALE", -0.1) for r in result.records], where="post",
                     label="monitor level (0 OK, 0.5 WARN, 1 ERROR)")
    axes[2].set_ylabel("confidence / level")
    axes[2].set_xlabel("time [s]")
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
    final = result.T_final if result.T_final is not None else result.records[-1].T
    panels.append(draw_projection(pair.image, pair.points, final, pair.camera))
    labels.append("final estimate" if result.T_final is not None else "last estimate")
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(side_by_side(panels, labels), cv2.COLOR_RGB2BGR))
    return path


def summary_text(result: RunResult, bag: Path, reference: np.ndarray | None = None) -> str:
    """Plain text for a ticket: what was run, the result, its uncertainty, the data quality."""
    ok = [r for r in result.records if r.ok]
    lines = [f"crossi2p on {bag.name}: {result.pairs} camera/LiDAR pairs "
             f"({result.camera_frame} <- {result.lidar_frame}), {len(ok)} with an estimate, "
             f"{result.bad_messages} unreadable messages, {result.dropped} unpaired messages dropped"]
    if result.records:
        offsets = np.abs([r.offset_s for r in result.records])
        lines.append(f"stamp offset camera-LiDAR: median {1e3 * np.median(offsets):.1f} ms, max {1e3 * offsets.max():.1f} ms")
        totals = [r.timings_ms.get("total", 0.0) for r in result.records]
        lines.append(f"time per estimate: median {np.median(totals):.0f} ms")
    if result.T_final is not None:
        last = next(r for r in reversed(result.records) if r.T_fused is not None)
        lines.append(f"fused T_camera_lidar (std {last.fused_rot_std_deg:.3f} deg, {100 * last.fused_trans_std_m:.2f} cm, "
                     f"{'converged' if last.converged else 'NOT converged'}):")
        lines.append(np.array2string(result.T_final, precision=6, suppress_small=True))
        if result.T_initial is not None:
            e = pose_error(result.T_final, result.T_initial)
            lines.append(f"change from the initial guess: {e.rot_deg:.3f} deg, {100 * e.trans_m:.2f} cm")
        if reference is not None:
            e = pose_error(result.T_final, reference)
            lines.append(f"error against the reference: {e.rot_deg:.3f} deg, {100 * e.trans_m:.2f} cm")
    levels = [r.level for r in result.records if r.level]
    if levels:
        alarms = [(r.time_s, r.level, r.offset_rot_deg, r.offset_trans_m) for r in result.records
                  if r.level in ("WARN", "ERROR")]
        if alarms:
            t, lv, rot, trans = alarms[0]
            lines.append(f"monitor: first {lv} at t = {t:.1f} s (offset {rot:.2f} deg, {100 * trans:.1f} cm); "
                         f"final level {levels[-1]}")
        else:
            lines.append(f"monitor: no alarm over {result.records[-1].time_s:.1f} s; final level {levels[-1]}")
    return "\n".join(lines) + "\n"


def write_log(result: RunResult, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"pairs": result.pairs, "lidar_frame": result.lidar_frame, "camera_frame": result.camera_frame,
           "T_initial": None if result.T_initial is None else result.T_initial.tolist(),
           "T_final": None if result.T_final is None else result.T_final.tolist(),
           "estimates": [r.to_json() for r in result.records]}
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path
