"""Plots for ``crossi2p eval --plots DIR``: error histograms and CDFs, before/after overlays."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .data.kitti import KittiDataset
from .evaluation import SampleRecord
from .overlay import draw_projection, side_by_side


def error_plots(records: list[SampleRecord], out_dir: Path, protocol: str) -> list[Path]:
    """``errors.png``: histograms and CDFs of rotation and translation error (with the initial error in calib)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    rot = np.array([r.rot_deg for r in records])
    trans = np.array([r.trans_m for r in records])
    init_rot = np.array([r.init_rot_deg for r in records if r.init_rot_deg is not None])
    init_trans = np.array([r.init_trans_m for r in records if r.init_trans_m is not None])
    thresholds = (1.0, 0.05) if protocol == "calib" else (5.0, 2.0)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for col, (vals, init, unit, thr, name) in enumerate([
            (rot, init_rot, "deg", thresholds[0], "rotation error"),
            (trans, init_trans, "m", thresholds[1], "translation error")]):
        ax = axes[0, col]
        bins = np.linspace(0, max(vals.max(), init.max() if init.size else 0, thr) * 1.05, 30)
        if init.size:
            ax.hist(init, bins=bins, alpha=0.4, label="initial guess", color="tab:grey")
        ax.hist(vals, bins=bins, alpha=0.8, label="estimate", color="tab:blue")
        ax.axvline(thr, color="tab:red", ls="--", label=f"success < {thr:g} {unit}")
        ax.set_xlabel(f"{name} [{unit}]")
        ax.set_ylabel("samples")
        ax.legend()
        ax = axes[1, col]
        for v, label, color in ((vals, "estimate", "tab:blue"), (init, "initial guess", "tab:grey")):
            if v.size:
                s = np.sort(v)
                ax.plot(s, np.arange(1, len(s) + 1) / len(s), label=label, color=color)
        ax.axvline(thr, color="tab:red", ls="--")
        ax.set_xlabel(f"{name} [{unit}]")
        ax.set_ylabel("fraction of samples")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(f"crossi2p eval, {protocol} protocol, {len(records)} samples")
    fig.tight_layout()
    path = out_dir / "errors.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def overlay_examples(dataset: KittiDataset, records: list[SampleRecord], out_dir: Path, count: int = 4
                     ) -> list[Path]:
    """Before/after overlays (calib) or estimate/truth overlays (i2p) for the best, median and worst samples."""
    out_dir.mkdir(parents=True, exist_ok=True)
    order = np.argsort([r.rot_deg + 10 * r.trans_m for r in records])
    picks = sorted({int(order[0]), int(order[len(order) // 2]), int(order[-1]), int(order[len(order) // 4])})[:count]
    paths = []
    for k in picks:
        r = records[k]
        frame = dataset[r.frame_index]
        if r.T_init is not None:
            panels = [draw_projection(frame.image, frame.points, r.T_init, frame.camera),
                      draw_projection(frame.image, frame.points, r.T_pred, frame.camera)]
            labels = [f"initial guess ({r.init_rot_deg:.2f} deg, {r.init_trans_m:.3f} m)",
                      f"estimate ({r.rot_deg:.2f} deg, {r.trans_m:.3f} m, {r.stage})"]
        else:
            panels = [draw_projection(frame.image, frame.points, frame.T_camera_lidar, frame.camera),
                      draw_projection(frame.image, frame.points, r.T_pred_lidar, frame.camera)]
            labels = ["ground truth", f"estimate ({r.rot_deg:.1f} deg, {r.trans_m:.2f} m, {r.stage})"]
        image = side_by_side(panels, labels)
        path = out_dir / f"overlay_{k:04d}_{r.id.replace('/', '_')}.png"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths
