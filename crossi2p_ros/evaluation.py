"""``crossi2p eval``: accuracy of the Calibrator on a KITTI-layout dataset under a DESIGN.md protocol.

Sample ``i`` of a run uses frame ``i * len(dataset) // n`` (spread over the
data; frames repeat when ``n`` exceeds it) and the protocol draw ``(seed, i)``,
so a run is reproducible and another tool can re-create any sample. The JSON
follows the eval contract of DESIGN.md exactly; a few extra keys (stage,
confidence, the initial error) are added beside the contract's keys.

Under the calib protocol each sample also scores the calibration a user keeps:
the estimate where it converged, else the prior (the node, ``crossi2p
replay`` and ``~/save`` publish and write nothing unconverged), so an
unconverged estimate that ends worse than its start shows in ``rot_deg`` /
``trans_m`` but costs the user nothing; only a false convergence can make the
kept calibration worse than the start.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
from tqdm import tqdm

from .data.kitti import CAMERA_TIMES, Frame, KittiDataset
from .data.perturb import CalibProtocol, I2PProtocol
from .errors import CrossI2PError
from .fileio import atomic_write_text
from .geometry import PoseError, invert, pose_error, transform_points, within_sigma
from .registration.calibrator import Calibrator
from .registration.deskew import OdometryConfig, SweepTiming, sweep_twist
from .registration.estimate import time_offset_ms
from .registration.inputs import T_LEVEL_CAMERA_LIDAR

Protocol = Literal["calib", "i2p"]


@dataclass(frozen=True)
class EvalConfig:
    protocol: Protocol = "calib"
    samples: int = 100
    seed: int = 0
    max_rot_deg: float = 10.0       # calib perturbation bounds (DESIGN.md defaults)
    max_trans_m: float = 0.5
    frames_per_estimate: int = 1    # frames of the same rig fused into one estimate (i2p: one transform for all)
    # motion: "on": the LiDAR's twist at each frame from its sweep and its sequence neighbour's (odometry), the
    # raw sweep motion-compensated with its per-point times (velodyne_times/) and the camera's time offset
    # estimated; "auto" (the default): on where the dataset has per-point times; "off": the sweeps as recorded
    motion: str = "auto"

    def __post_init__(self) -> None:
        if self.protocol not in ("calib", "i2p"):
            raise CrossI2PError(f"--protocol {self.protocol!r}: use calib or i2p")
        if self.samples < 1:
            raise CrossI2PError(f"--samples {self.samples}: need at least one sample")
        if self.frames_per_estimate < 1:
            raise CrossI2PError(f"--frames-per-estimate {self.frames_per_estimate}: need at least 1")
        if self.motion not in ("auto", "on", "off"):
            raise CrossI2PError(f"--motion {self.motion!r}: use auto, on or off")


@dataclass
class SampleRecord:
    """One scored sample; ``T_*`` are kept for plots, not written to JSON."""

    id: str
    frame_index: int
    rot_deg: float
    trans_m: float
    rre_deg: float
    rte_m: float
    time_ms: float
    solve_ms: float             # of which the window solve (the rest: preparing the frames' features)
    success: bool
    stage: str
    confidence: float
    init_rot_deg: float | None
    init_trans_m: float | None
    frames: int
    converged: bool             # the estimator claimed convergence (its covariance below its bounds)
    within_3sigma: bool         # the truth lies within 3 sigma of the estimate on every axis
    sigma_rot_deg: float        # the largest per-axis standard deviation the estimator reported
    sigma_trans_m: float
    kept_rot_deg: float | None  # calib: the error of the calibration kept (the estimate if converged, else the prior)
    kept_trans_m: float | None
    # the camera's exposure minus the sweep's stamp [ms] (KITTI layout records no camera stamp), where the window
    # claimed it; its sigma where tried ("unobservable": the window's motion does not show it), None where not
    time_offset_ms: float | None
    time_offset_sigma_ms: float | str | None
    T_pred: np.ndarray          # the estimate, in the protocol's frames (scored against T_gt)
    T_gt: np.ndarray
    T_init: np.ndarray | None
    T_pred_lidar: np.ndarray    # the estimate as T_camera_lidar of the dataset frame (for overlays)

    def to_json(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if not k.startswith("T_")}
        return d


def same_rig(a: Frame, b: Frame) -> bool:
    return np.allclose(a.T_camera_lidar, b.T_camera_lidar) and np.allclose(a.camera.K, b.camera.K) \
        and a.camera.width == b.camera.width and a.camera.height == b.camera.height


def _rig_frames(dataset: KittiDataset, start: int, k: int) -> list[Frame]:
    """Up to ``k`` consecutive frames from ``start`` that share frame ``start``'s rig (extrinsic and camera)."""
    first = dataset[start]
    frames = [first]
    for j in range(start + 1, min(start + k, len(dataset))):
        f = dataset[j]
        if not same_rig(first, f):
            break
        frames.append(f)
    return frames


def frame_timing(dataset: KittiDataset, index: int, frame: Frame, guess: np.ndarray | None = None,
                 following: np.ndarray | None = None) -> SweepTiming | None:
    """Frame ``index``'s sweep timing: each point's time (where the dataset has them) and the LiDAR's twist from
    its sweep registered to the next frame's (the last frame of a sequence: the previous one's to it). Where
    the two do not register, ``guess`` (a neighbour's twist: constant
    velocity) stands in; None without either. ``following``: the next frame's sweep where the caller has it
    loaded already (else it is read). The target is the image's stamp where ``times_image_2.txt``
    has it, else the sweep's (the offset is then the camera's exposure from the sweep's stamp)."""
    if frame.time_s is None:
        return None
    pair = None
    if (after := dataset.neighbour(index)) is not None:
        pair = (frame.points, dataset.sweep(after) if following is None else following,
                float(dataset.time_s(after)) - frame.time_s)
    elif index > 0 and dataset.neighbour(index - 1) == index:
        pair = (dataset.sweep(index - 1), frame.points, frame.time_s - float(dataset.time_s(index - 1)))
    twist = None if pair is None else sweep_twist(*pair, guess=guess)
    twist = guess if twist is None else twist
    target = 0.0 if frame.camera_time_s is None else frame.camera_time_s - frame.time_s
    return None if twist is None else SweepTiming(frame.point_times, twist, target, OdometryConfig().speed_sigma_rel)


def true_time_offset_s(dataset: KittiDataset) -> float | None:
    """The camera's true exposure offset [s] where the dataset says it (a synthetic drive's ``synth.json``): from
    its stamp where the images' stamps are written, else from the sweep's (the mid-sweep trigger added); else
    None."""
    path = dataset.sequence_dir(0) / "synth.json"
    if not path.is_file():
        return None
    cfg = json.loads(path.read_text()).get("config", {})
    if not cfg.get("sweep_s") and not cfg.get("camera_offset_s"):
        return None
    trigger = 0.0 if (dataset.sequence_dir(0) / CAMERA_TIMES).is_file() else 0.5 * float(cfg.get("sweep_s", 0.0))
    return trigger + float(cfg.get("camera_offset_s", 0.0))


def frame_index(i: int, n: int, num_frames: int) -> int:
    return (i * num_frames) // n if n <= num_frames else i % num_frames


def window_start(seed: int, i: int, num_frames: int, k: int) -> int:
    """DESIGN.md's window protocol: sample ``i`` starts its ``k`` consecutive frames at a seeded index."""
    return int(np.random.default_rng([seed, i, 7]).integers(0, max(num_frames - k, 0) + 1))


def i2p_clouds(frames: list[Frame], i2p: I2PProtocol, seed: int, i: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Sample ``i``'s clouds under the i2p protocol (one transform for the whole window) and ``T_camera_input``.

    The protocol's frame is camera-like (y down); the Calibrator takes a LiDAR's cloud, z up (REP 103), so
    the clouds are handed over rotated back by ``T_LEVEL_CAMERA_LIDAR``. A rotation of the input frame
    changes neither RRE nor RTE, so the figures are the protocol's.
    """
    clouds, T_gt = [], np.eye(4)
    for f in frames:
        points, T_gt = i2p.apply(f.points, f.T_camera_lidar, seed, i)
        points[:, :3] = transform_points(invert(T_LEVEL_CAMERA_LIDAR), points[:, :3])
        clouds.append(points)
    return clouds, T_gt @ T_LEVEL_CAMERA_LIDAR


def evaluate(dataset: KittiDataset, calibrator: Calibrator, cfg: EvalConfig, progress: bool = True,
             on_sample: Callable[[SampleRecord], None] | None = None) -> tuple[dict, list[SampleRecord]]:
    """Run the protocol; returns (contract JSON dict, records)."""
    if len(dataset) == 0:
        raise CrossI2PError(f"{dataset.root}: the dataset has no frames")
    calib = CalibProtocol(max_rot_deg=cfg.max_rot_deg, max_trans_m=cfg.max_trans_m)
    i2p = I2PProtocol()
    records: list[SampleRecord] = []
    bar = tqdm(range(cfg.samples), desc=f"eval {cfg.protocol}", unit="sample", disable=not progress)
    for i in bar:
        fi = frame_index(i, cfg.samples, len(dataset)) if cfg.frames_per_estimate == 1 \
            else window_start(cfg.seed, i, len(dataset), cfg.frames_per_estimate)
        frames = _rig_frames(dataset, fi, cfg.frames_per_estimate)
        if cfg.protocol == "calib":
            T_gt = np.asarray(frames[0].T_camera_lidar, dtype=np.float64)
            T_init = calib.initial_guess(T_gt, cfg.seed, i)
            to_lidar = np.eye(4)
            start = time.perf_counter()
            timings: list[SweepTiming | None] = []
            moving = cfg.motion == "on" or (cfg.motion == "auto" and frames[0].point_times is not None)
            for j, f in enumerate(frames):
                guess = timings[-1].twist if timings and timings[-1] is not None else None
                following = frames[j + 1].points if j + 1 < len(frames) else None   # read once, not twice
                timings.append(frame_timing(dataset, fi + j, f, guess, following) if moving else None)
            if len(timings) > 1 and timings[1] is not None:
                # the first frame had no guess: its neighbour's twist is one more start (sweep_twist keeps the
                # registration that matches more)
                timings[0] = frame_timing(dataset, fi, frames[0], timings[1].twist, frames[1].points)
            est = calibrator.estimate_many([(f.image, f.points, f.camera, None, t) for f, t in zip(frames, timings)],
                                           T_init)
            elapsed = 1e3 * (time.perf_counter() - start)
            init_err: PoseError | None = pose_error(T_init, T_gt)
            success = calib.is_success
        else:
            clouds, T_gt = i2p_clouds(frames, i2p, cfg.seed, i)
            T_init = None
            to_lidar = invert(T_gt) @ frames[0].T_camera_lidar   # T_input_lidar
            start = time.perf_counter()
            est = calibrator.estimate_many([(f.image, c, f.camera) for f, c in zip(frames, clouds)], None)
            elapsed = 1e3 * (time.perf_counter() - start)
            init_err = None
            success = i2p.is_success
        err = pose_error(est.T_camera_lidar, T_gt)
        kept = None if init_err is None else (err if est.converged else init_err)
        offset_ms, offset_sigma_ms = time_offset_ms(est)
        rec = SampleRecord(
            id=frames[0].id, frame_index=fi, rot_deg=err.rot_deg, trans_m=err.trans_m, rre_deg=err.rre_deg,
            rte_m=err.rte_m, time_ms=elapsed, solve_ms=float(est.timings_ms.get("window", 0.0)),
            success=bool(success(err)), stage=est.stage,
            confidence=est.confidence, init_rot_deg=None if init_err is None else init_err.rot_deg,
            init_trans_m=None if init_err is None else init_err.trans_m, frames=len(frames),
            converged=bool(est.converged), within_3sigma=within_sigma(est.T_camera_lidar, est.covariance, T_gt),
            sigma_rot_deg=float(np.max(est.sigma_deg)), sigma_trans_m=float(np.max(est.sigma_m)),
            kept_rot_deg=None if kept is None else kept.rot_deg, kept_trans_m=None if kept is None else kept.trans_m,
            time_offset_ms=offset_ms, time_offset_sigma_ms=offset_sigma_ms,
            T_pred=est.T_camera_lidar, T_gt=T_gt, T_init=T_init, T_pred_lidar=est.T_camera_lidar @ to_lidar)
        records.append(rec)
        if on_sample is not None:
            on_sample(rec)
        bar.set_postfix(rot=f"{err.rot_deg:.2f}deg", trans=f"{err.trans_m:.3f}m", stage=est.stage)
    data = report(cfg, records, calibrator)
    truth = true_time_offset_s(dataset)
    claimed = [r.time_offset_ms for r in records if r.time_offset_ms is not None]
    data["summary"]["time_offset_claimed"] = len(claimed)
    if truth is not None and claimed:
        data["summary"]["time_offset_error_ms_median"] = float(np.median(np.abs(np.array(claimed) - 1e3 * truth)))
    return data, records


def summarize(records: list[SampleRecord]) -> dict:
    rot = np.array([r.rot_deg for r in records])
    trans = np.array([r.trans_m for r in records])
    times = np.array([r.time_ms for r in records])
    stages: dict[str, int] = {}
    for r in records:
        stages[r.stage] = stages.get(r.stage, 0) + 1
    summary = {
        "rot_median_deg": float(np.median(rot)), "trans_median_m": float(np.median(trans)),
        "rot_mean_deg": float(np.mean(rot)), "trans_mean_m": float(np.mean(trans)),
        "rot_p95_deg": float(np.percentile(rot, 95)), "trans_p95_m": float(np.percentile(trans, 95)),
        "rre_mean_deg": float(np.mean([r.rre_deg for r in records])),
        "rte_mean_m": float(np.mean([r.rte_m for r in records])),
        "success_rate": float(np.mean([r.success for r in records])),
        "time_ms_median": float(np.median(times)),
        # beyond the contract
        "time_ms_p95": float(np.percentile(times, 95)),
        "solve_ms_median": float(np.median([r.solve_ms for r in records])),
        "stages": stages,
        "coverage_3sigma": float(np.mean([r.within_3sigma for r in records])),
        "converged_rate": float(np.mean([r.converged for r in records])),
        "false_convergences": int(sum(r.converged and not r.within_3sigma for r in records)),
    }
    if records and records[0].init_rot_deg is not None:
        summary["init_rot_median_deg"] = float(np.median([r.init_rot_deg for r in records]))
        summary["init_trans_median_m"] = float(np.median([r.init_trans_m for r in records]))
        summary["kept_rot_median_deg"] = float(np.median([r.kept_rot_deg for r in records]))
        summary["kept_trans_median_m"] = float(np.median([r.kept_trans_m for r in records]))
        summary["worse_than_start"] = sum(worse_than_start(r.rot_deg, r.trans_m, r) for r in records)
        summary["kept_worse_than_start"] = sum(worse_than_start(r.kept_rot_deg, r.kept_trans_m, r) for r in records)
    return summary


def worse_than_start(rot_deg: float, trans_m: float, record: SampleRecord) -> bool:
    """An error (rotation [deg], translation [m]) larger than ``record``'s start in rotation or in translation
    (a hair of rounding allowed: the kept prior is the start itself)."""
    return rot_deg > record.init_rot_deg + 1e-9 or trans_m > record.init_trans_m + 1e-12


def report(cfg: EvalConfig, records: list[SampleRecord], calibrator: Calibrator) -> dict:
    return {
        "protocol": cfg.protocol,
        "n": len(records),
        "per_sample": [r.to_json() for r in records],
        "summary": summarize(records),
        "config": {**asdict(cfg), "weights": str(calibrator.weights_path) if calibrator.weights_path else None,
                   "device": str(calibrator.device)},
    }


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def summary_table(data: dict) -> str:
    """The human-readable summary ``crossi2p eval`` prints."""
    s = data["summary"]
    rows = [
        ("samples", f"{data['n']} ({data['protocol']} protocol)"),
        ("rotation error [deg]", f"median {s['rot_median_deg']:.3f}  mean {s['rot_mean_deg']:.3f}  "
                                 f"p95 {s['rot_p95_deg']:.3f}"),
        ("translation error [m]", f"median {s['trans_median_m']:.4f}  mean {s['trans_mean_m']:.4f}  "
                                  f"p95 {s['trans_p95_m']:.4f}"),
        ("RRE / RTE mean", f"{s['rre_mean_deg']:.3f} deg / {s['rte_mean_m']:.4f} m"),
        ("success rate", f"{100 * s['success_rate']:.1f} %"),
        ("time per estimate [ms]", f"median {s['time_ms_median']:.0f}  p95 {s['time_ms_p95']:.0f} (the window "
                                   f"solve {s['solve_ms_median']:.0f}, the rest preparing frames)"),
        ("pose from stage", ", ".join(f"{k} {v}" for k, v in sorted(s["stages"].items()))),
        ("uncertainty", f"truth within 3 sigma {100 * s['coverage_3sigma']:.0f} %, converged "
                        f"{100 * s['converged_rate']:.0f} %, false convergences {s['false_convergences']}"),
    ]
    if "init_rot_median_deg" in s:
        rows.insert(1, ("initial error (median)", f"{s['init_rot_median_deg']:.3f} deg / "
                                                  f"{s['init_trans_median_m']:.4f} m"))
        rows.append(("worse than the start", f"estimate {s['worse_than_start']} of {data['n']}; calibration kept "
                                             f"(the prior unless converged) {s['kept_worse_than_start']}, median "
                                             f"{s['kept_rot_median_deg']:.3f} deg / {s['kept_trans_median_m']:.4f} m"))
    if s.get("time_offset_claimed"):
        offsets = [r["time_offset_ms"] for r in data["per_sample"] if r["time_offset_ms"] is not None]
        error = f", error median {s['time_offset_error_ms_median']:.1f} ms" if "time_offset_error_ms_median" in s else ""
        rows.append(("camera time offset", f"claimed in {s['time_offset_claimed']} of {data['n']}, median "
                                           f"{np.median(offsets):.1f} ms{error}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
