"""The ``crossi2p`` command line.

Each sub-command is a small function over the ROS-free core. User errors
(:class:`CrossI2PError`) become one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .errors import CrossI2PError


# --------------------------------------------------------------------------- synth


def _add_synth_args(p: argparse.ArgumentParser) -> None:
    from .data.lidar_models import LIDAR_MODELS
    from .data.scene import STYLES
    from .data.synth import CAMERA_MODELS, POINT_ORDERS, SynthConfig

    defaults = SynthConfig()
    p.add_argument("--out", type=Path, required=True, help="output folder (KITTI odometry layout)")
    p.add_argument("--frames", type=int, default=defaults.frames, help="number of frames (default %(default)s)")
    p.add_argument("--seed", type=int, default=defaults.seed, help="scene/rig seed; same seed -> identical files")
    p.add_argument("--style", default=defaults.style, choices=list(STYLES),
                   help="scene style (default %(default)s)")
    p.add_argument("--bag", type=Path, default=None, help="also write a ROS 2 bag here")
    p.add_argument("--bag-storage", default=defaults.bag_storage, choices=["mcap", "sqlite3"],
                   help="bag storage plugin (default %(default)s)")
    p.add_argument("--compressed", action="store_true", help="store images as sensor_msgs/CompressedImage (jpeg)")
    p.add_argument("--lidar", choices=list(LIDAR_MODELS), default=None,
                   help="a LiDAR of the sensor zoo (spinning hdl64 vlp16 vlp32c os128 pandar64, rosette avia, "
                        "raster: a non-spinning scanner without rings); replaces --lidar-beams/--lidar-columns "
                        "(default: a spinning sensor of --lidar-beams beams, 64: hdl64)")
    p.add_argument("--point-order", choices=POINT_ORDERS, default=defaults.point_order,
                   help="scan: the points as the sensor's driver publishes them; shuffled: in random order "
                        "(default %(default)s)")
    p.add_argument("--camera", choices=CAMERA_MODELS, default=defaults.camera_model,
                   help="the lens: pinhole, plumb_bob (radial-tangential) or fisheye (equidistant, ~150-170 deg; "
                        "its image corners 85 deg off axis) (default %(default)s)")
    p.add_argument("--lidar-beams", type=int, default=defaults.lidar_beams, help="LiDAR beams (default %(default)s)")
    p.add_argument("--lidar-columns", type=int, default=defaults.lidar_columns,
                   help="LiDAR columns per revolution (default %(default)s)")
    p.add_argument("--foliage-free-path", type=float, default=defaults.foliage_free_path_m, metavar="M",
                   help="porous trees and hedges: LiDAR beams return from inside them with this mean free path "
                        "[m] or pass through, as real crowns scatter returns (default %(default)s: solid)")
    p.add_argument("--width", type=int, default=defaults.image_width, help="image width [px] (default %(default)s)")
    p.add_argument("--decalibrate-at", type=float, default=None, metavar="T",
                   help="knock the camera at T seconds: from then on the true extrinsic differs from the one in "
                        "calib.txt and /tf_static (for testing drift monitoring)")
    p.add_argument("--step-deg", type=float, default=1.0, help="with --decalibrate-at: yaw step [deg] (default %(default)s)")
    p.add_argument("--step-m", type=float, default=0.0,
                   help="with --decalibrate-at: shift along the camera x axis [m] (default %(default)s)")
    p.add_argument("--height", type=int, default=defaults.image_height, help="image height [px] (default %(default)s)")
    p.add_argument("--speed", type=float, default=None, metavar="M_PER_S",
                   help="mean speed [m/s] (default: the style's usual speeds, drawn per seed)")
    p.add_argument("--speed-change", type=float, default=defaults.speed_change_mps, metavar="M_PER_S",
                   help="the speed swings by +-this over --speed-change-period (default %(default)s: constant)")
    p.add_argument("--speed-change-period", type=float, default=defaults.speed_change_period_s, metavar="S",
                   help="period of the speed swing [s] (default %(default)s)")
    p.add_argument("--sweep-ms", type=float, default=1e3 * defaults.sweep_s, metavar="MS",
                   help="cast each sweep over this long while the rig moves (a raw sweep; per-point times in "
                        "velodyne_times/ and the bag's uint32 't' field; stamped at its start, the camera "
                        "triggered at its middle); 100 for a 10 Hz spinning head (default %(default)s: at one "
                        "instant)")
    p.add_argument("--camera-offset-ms", type=float, default=1e3 * defaults.camera_offset_s, metavar="MS",
                   help="the camera is exposed this long after its stamp says (in synth.json only, as a real "
                        "driver's stamps do not say it) (default %(default)s)")
    p.add_argument("--camera-offset-jitter-ms", type=float, default=1e3 * defaults.camera_offset_jitter_s,
                   metavar="MS", help="... plus U(-j, j) per frame (default %(default)s)")
    p.add_argument("--rolling-shutter-ms", type=float, default=1e3 * defaults.rolling_shutter_s, metavar="MS",
                   help="a rolling shutter: the rows exposed top to bottom over this long, the middle row at the "
                        "exposure time (default %(default)s: a global shutter)")
    p.add_argument("--odom-rate", type=float, default=defaults.odometry_rate_hz, metavar="HZ",
                   help="with --bag: the vehicle's true motion on /tf (odom -> base_link) at this rate and the "
                        "LiDAR's mount on /tf_static (base_link -> lidar), as a robot's odometry (default "
                        "%(default)s: none)")


def _synth_config(args: argparse.Namespace):
    from .data.synth import SynthConfig

    return SynthConfig(
        frames=args.frames, seed=args.seed, style=args.style, lidar_model=args.lidar or "",
        point_order=args.point_order, camera_model=args.camera, lidar_beams=args.lidar_beams,
        lidar_columns=args.lidar_columns, foliage_free_path_m=args.foliage_free_path, image_width=args.width,
        image_height=args.height, compressed_images=args.compressed, bag_storage=args.bag_storage,
        decalibrate_at_s=args.decalibrate_at, step_rot_deg=args.step_deg if args.decalibrate_at is not None else 0.0,
        step_trans_m=args.step_m if args.decalibrate_at is not None else 0.0,
        speed_mps=None if args.speed is None else (args.speed, args.speed), speed_change_mps=args.speed_change,
        speed_change_period_s=args.speed_change_period, sweep_s=1e-3 * args.sweep_ms,
        camera_offset_s=1e-3 * args.camera_offset_ms, camera_offset_jitter_s=1e-3 * args.camera_offset_jitter_ms,
        rolling_shutter_s=1e-3 * args.rolling_shutter_ms, odometry_rate_hz=args.odom_rate,
    )


def _cmd_synth(args: argparse.Namespace) -> int:
    from .data.synth import generate

    if args.frames < 1:
        raise CrossI2PError(f"--frames {args.frames}: need at least one frame")
    start = time.perf_counter()
    result = generate(_synth_config(args), args.out, bag_path=args.bag, progress=True)
    elapsed = time.perf_counter() - start
    print(f"wrote {result.frames} frames to {result.sequence_dir} in {elapsed:.1f} s "
          f"({result.frames / elapsed:.1f} frames/s)")
    if args.bag:
        print(f"wrote bag {args.bag} ({args.bag_storage})")
    print("ground-truth T_camera_lidar:\n" + np.array2string(result.T_camera_lidar, precision=4, suppress_small=True))
    return 0


# --------------------------------------------------------------------------- overlay


def _select_frame(dataset, frame: str) -> int:
    if frame in dataset.ids:
        return dataset.ids.index(frame)
    try:
        index = int(frame)
    except ValueError:
        raise CrossI2PError(f"--frame {frame}: no such frame id; ids look like {dataset.ids[0]!r}") from None
    if not 0 <= index < len(dataset):
        raise CrossI2PError(f"--frame {frame}: index out of range; the dataset has {len(dataset)} frames")
    return index


def _perturbed(T: np.ndarray, rot_deg: float, trans_m: float) -> np.ndarray:
    from .geometry import make_transform, so3_exp

    # A fixed, visible offset: rotation about the camera's vertical axis, shift to the right.
    delta = make_transform(so3_exp(np.array([0.0, np.radians(rot_deg), 0.0])), np.array([trans_m, 0.0, 0.0]))
    return delta @ T


def write_overlay(data: Path, frame: str, out: Path, rot_deg: float = 0.0, trans_m: float = 0.0) -> Path:
    """Write a PNG with the LiDAR drawn on one frame's image with the dataset's extrinsic.

    With a non-zero ``rot_deg`` / ``trans_m`` a second panel shows the same
    frame with that calibration error, to make misalignment recognisable.
    """
    import cv2

    from .data.kitti import open_dataset
    from .overlay import draw_projection, side_by_side

    dataset = open_dataset(data)
    f = dataset[_select_frame(dataset, frame)]
    panels = [draw_projection(f.image, f.points, f.T_camera_lidar, f.camera)]
    labels = [f"{f.id}: ground-truth extrinsic"]
    if rot_deg or trans_m:
        panels.append(draw_projection(f.image, f.points, _perturbed(f.T_camera_lidar, rot_deg, trans_m), f.camera))
        labels.append(f"{f.id}: extrinsic off by {rot_deg:g} deg / {trans_m:g} m")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), cv2.cvtColor(side_by_side(panels, labels), cv2.COLOR_RGB2BGR)):
        raise CrossI2PError(f"{out}: could not write the PNG (check the folder is writable and the name ends in .png)")
    return out


def _cmd_overlay(args: argparse.Namespace) -> int:
    out = write_overlay(args.data, args.frame, args.out, args.rot_deg, args.trans_m)
    print(f"wrote {out}")
    return 0


# --------------------------------------------------------------------------- demo


def _cmd_demo(args: argparse.Namespace) -> int:
    from .ros.demo import run_demo

    return run_demo(args.out, frames=args.frames, seed=args.seed, style=args.style, rate=args.rate,
                    knock_deg=args.knock_deg, knock_m=args.knock_m, device=args.device)


def _cmd_node(args: argparse.Namespace) -> int:
    from .ros.node import main as node_main

    return node_main(["crossi2p"] + list(args.ros_args))


def _cmd_play(args: argparse.Namespace) -> int:
    from .ros.player import main as play_main

    return play_main(args.bag, rate=args.rate, topics=args.topics, exclude=args.exclude, clock=not args.no_clock,
                     loop=args.loop)


# --------------------------------------------------------------------------- train


def _cmd_cache(args: argparse.Namespace) -> int:
    from .data.cache import cache_width, write_caches
    from .data.samples import SampleConfig, open_sources
    from .model.config import ModelConfig

    width = args.width or cache_width(ModelConfig().image_width, SampleConfig().scale_range[1])
    paths = write_caches(open_sources(args.data), args.out, width, args.points)
    size = sum(p.stat().st_size for p in paths) / 2**20
    print(f"{len(paths)} training cache(s) in {args.out}, {size:.1f} MiB, images {width} px wide; "
          f"train on them with crossi2p train --data {args.out}/*.npz")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .training import Trainer, build_train_config

    out: Path = args.out
    base = None
    if args.resume:
        import yaml

        saved = out / "config.yaml"
        if not saved.is_file():
            raise CrossI2PError(f"{saved}: not found; --resume continues a run in --out, start one without --resume")
        base = yaml.safe_load(saved.read_text())
    cfg = build_train_config(args.config, base=base, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                             batch_size=args.batch_size,
                             init_weights=str(args.init_weights) if args.init_weights else None)
    trainer = Trainer(cfg, args.data, out, device=args.device, resume=args.resume)
    try:
        result = trainer.fit()
    finally:
        trainer.close()
    if trainer.ctx.is_main:
        print(f"trained {result.step} steps ({result.epoch} epochs); weights: {result.weights}")
        if result.last_val:
            keys = ("calib/rot_median_deg", "calib/trans_median_m", "calib/success_rate", "i2p/success_rate")
            print("validation: " + ", ".join(f"{k} {result.last_val[k]:.3g}" for k in keys if k in result.last_val))
    return 0


# --------------------------------------------------------------------------- eval


def _cmd_eval(args: argparse.Namespace) -> int:
    from .data.kitti import open_dataset
    from .eval_plots import error_plots, overlay_examples
    from .evaluation import EvalConfig, evaluate, summary_table, write_json

    cfg = EvalConfig(protocol=args.protocol, samples=args.samples, seed=args.seed, max_rot_deg=args.max_rot_deg,
                     max_trans_m=args.max_trans_m, frames_per_estimate=args.frames_per_estimate,
                     motion=args.motion)
    dataset = open_dataset(args.data)
    calibrator = _calibrator(args)
    data, records = evaluate(dataset, calibrator, cfg, progress=not args.quiet)
    write_json(args.json, data)
    print(summary_table(data))
    print(f"per-sample results: {args.json}")
    if args.plots is not None:
        paths = error_plots(records, args.plots, cfg.protocol) + overlay_examples(dataset, records, args.plots)
        print(f"plots: {', '.join(str(p) for p in paths)}")
    return 0


# --------------------------------------------------------------------------- export


def _cmd_export(args: argparse.Namespace) -> int:
    from .model.export import INDEX_OUTPUTS, export_onnx
    from .model.weights import file_sha256
    from .registration.calibrator import Calibrator, CalibratorConfig

    calibrator = Calibrator(CalibratorConfig(weights=str(args.weights) if args.weights else None, device="cpu"))
    print(f"exporting {calibrator.weights_path} to ONNX (opset {args.opset}); this traces the network and takes "
          "about a minute on a CPU", flush=True)
    start = time.perf_counter()
    report = export_onnx(calibrator.model, args.onnx, file_sha256(calibrator.weights_path), args.opset,
                         verify=not args.no_verify, tolerance=args.tolerance)
    print(f"wrote {report.path} ({report.size_mb:.1f} MB) in {time.perf_counter() - start:.0f} s")
    if report.max_abs_diff:
        print("parity with torch (ONNX Runtime, CPU; max |difference| per output):")
        for name, d in report.max_abs_diff.items():
            print(f"  {name:18s} {d:.2e}" + ("  (fraction of indices that differ)" if name in INDEX_OUTPUTS else ""))
    print(f"use it with: --backend onnx --onnx {report.path}  (node parameters backend:=onnx onnx:={report.path})")
    return 0


# --------------------------------------------------------------------------- replay / monitor


def _add_bag_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bag", type=Path,
                   help="rosbag2 folder (sqlite3 or mcap), a bare .mcap/.db3 file or a ROS 1 .bag")
    p.add_argument("--image-topic", default=None, help="camera topic (Image or CompressedImage; default: found by type)")
    p.add_argument("--cloud-topic", default=None, help="LiDAR PointCloud2 topic (default: found by type)")
    p.add_argument("--camera-info-topic", default=None, help="CameraInfo topic (default: found by type)")
    p.add_argument("--camera-info", type=Path, default=None,
                   help="intrinsics from a ROS camera_info YAML instead of the bag's CameraInfo")
    p.add_argument("--start", type=float, default=0.0, help="skip this many seconds from the bag start")
    p.add_argument("--duration", type=float, default=None, help="process at most this many seconds")
    p.add_argument("--every", type=int, default=1, help="estimate every N-th pair (default %(default)s)")
    p.add_argument("--max-slop", type=float, default=0.05, help="camera/LiDAR pairing tolerance [s] (default %(default)s)")
    session = __import__("crossi2p_ros.session", fromlist=["SessionConfig"]).SessionConfig()
    p.add_argument("--keyframes", type=int, default=session.keyframes.size,
                   help="keyframes in the window (default %(default)s)")
    p.add_argument("--min-keyframes", type=int, default=session.min_keyframes,
                   help="the first window solve waits for this many keyframes (default %(default)s)")
    p.add_argument("--solve-every", type=int, default=session.solve_every,
                   help="new keyframes between window solves (default %(default)s)")
    p.add_argument("--motion", choices=["auto", "on", "off"], default=session.motion,
                   help="on: each keyframe motion-compensated to the camera's stamp with the LiDAR's odometry and "
                        "the camera's time offset estimated; auto: on for clouds with per-point times; off: the "
                        "sweeps as recorded (default %(default)s)")
    p.add_argument("--azimuth-times", choices=["off", "cw", "ccw"], default=session.azimuth_times,
                   help="clouds without per-point times from a spinning head: each point's time from its azimuth, "
                        "the head turning clockwise (cw: Velodyne, Ouster, Hesai) or counter-clockwise seen from "
                        "above (default %(default)s)")
    p.add_argument("--seam-azimuth-deg", type=float, default=session.seam_azimuth_deg,
                   help="... where the sweep starts [deg, left of the LiDAR's +x] (default %(default)s: behind)")
    p.add_argument("--spin-period", type=float, default=session.spin_period_s,
                   help="... and how long a turn takes [s] (default %(default)s)")
    _add_rolling_shutter_arg(p)
    p.add_argument("--odom-frame", default="odom",
                   help="fixed frame of the bag's /tf odometry: while moving, a sweep's motion comes from it where "
                        "/tf connects it to the LiDAR frame, else from registering the sweeps; '' : always "
                        "registration (default %(default)s)")
    _add_backend_args(p)


def _session_config(args: argparse.Namespace, mode: str, monitor=None):
    from dataclasses import replace

    from .session import SessionConfig

    base = SessionConfig()
    cfg = replace(base, mode=mode, keyframes=replace(base.keyframes, size=args.keyframes),
                  min_keyframes=min(args.min_keyframes, args.keyframes), solve_every=args.solve_every,
                  motion=args.motion, azimuth_times=args.azimuth_times, seam_azimuth_deg=args.seam_azimuth_deg,
                  spin_period_s=args.spin_period,
                  **({"monitor": monitor} if monitor is not None else {}))
    cfg.validate()
    return cfg


def _bag_reader(args: argparse.Namespace):
    from .replay import PairReader, detect_topics, read_camera_info
    from .sync import SyncConfig

    if args.every < 1:
        raise CrossI2PError(f"--every {args.every}: must be at least 1")
    topics = detect_topics(args.bag, args.image_topic, args.cloud_topic, args.camera_info_topic,
                           intrinsics_from_file=args.camera_info is not None)
    camera = read_camera_info(args.camera_info) if args.camera_info is not None else None
    print(f"topics: image {topics.image}, cloud {topics.cloud}, camera_info "
          f"{topics.camera_info or args.camera_info}" + (f", tf {', '.join(topics.tf)}" if topics.tf else ""))
    return PairReader(args.bag, topics, SyncConfig(max_slop_s=args.max_slop), camera, args.start, args.duration,
                      args.every, odom_frame=args.odom_frame)


def _add_rolling_shutter_arg(p: argparse.ArgumentParser) -> None:
    """``--rolling-shutter-ms``, read by :func:`_calibrator` into ``WindowConfig.rolling_shutter_s``."""
    p.add_argument("--rolling-shutter-ms", type=float, default=0.0, metavar="MS",
                   help="the camera's rolling-shutter readout, top to bottom row (its datasheet's frame readout "
                        "time); while moving each edge is then taken at its row's time (default %(default)s: a "
                        "global shutter)")


def _add_backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", type=Path, default=None, help="weights file (default: the shipped model)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default %(default)s)")
    p.add_argument("--backend", default="torch", choices=["torch", "onnx"],
                   help="run the network in torch or in ONNX Runtime (default %(default)s)")
    p.add_argument("--onnx", type=Path, default=None, help="with --backend onnx: the file of crossi2p export")
    p.add_argument("--mi", action="store_true",
                   help="polish the window's pose by mutual information of intensity and brightness (off by default)")


def _calibrator(args: argparse.Namespace):
    from .registration.calibrator import Calibrator, CalibratorConfig

    from dataclasses import replace

    cfg = CalibratorConfig(weights=str(args.weights) if args.weights else None, device=args.device, use_mi=args.mi,
                           backend=args.backend, onnx=str(args.onnx) if args.onnx else None)
    readout_ms = getattr(args, "rolling_shutter_ms", 0.0)
    if readout_ms < 0:
        raise CrossI2PError(f"--rolling-shutter-ms {readout_ms}: must be >= 0")
    return Calibrator(replace(cfg, window=replace(cfg.window, rolling_shutter_s=1e-3 * readout_ms)))


def _cmd_replay(args: argparse.Namespace) -> int:
    from .calib_io import Calibration, read_calibration, write_all
    from .report import overlay_before_after, plot_run, summary_text, write_log
    from .geometry import pose_error
    from .replay import run_session

    initial = read_calibration(args.initial).T_camera_lidar if args.initial else None
    reference = read_calibration(args.reference).T_camera_lidar if args.reference else None
    cfg = _session_config(args, "calibrate")
    reader = _bag_reader(args)
    calibrator = _calibrator(args)

    def report(rec) -> None:
        err = ""
        if reference is not None and rec.ok:
            e = pose_error(rec.T, reference)
            err = f"  error {e.rot_deg:.2f} deg / {100 * e.trans_m:.1f} cm"
        print(f"t = {rec.time_s:6.1f} s  {rec.keyframes:2d} keyframes  {'global' if rec.global_search else 'update'}"
              f"  {'converged' if rec.converged else 'converging' if rec.ok else 'no pose'}  "
              f"sigma {rec.sigma_rot_deg:.2f} deg / {100 * rec.sigma_trans_m:.1f} cm{err}  "
              f"({rec.timings_ms.get('total', 0.0) / 1e3:.1f} s)", flush=True)

    result = run_session(reader, calibrator, cfg, initial, on_record=report)
    out: Path = args.out
    if result.T_final is None:
        kept = "the prior (--initial or the bag's TF) stays the calibration" if result.T_initial is not None \
            else "no calibration (no prior)"
        print(f"the calibration did not converge: {kept}; no calibration files written; see the report and the log")
    else:
        calib = Calibration(result.T_final, result.lidar_frame, result.camera_frame, result.covariance,
                            {"bag": args.bag.name, "pairs": result.pairs,
                             "weights": str(calibrator.weights_path) if calibrator.weights_path else None})
        for fmt, path in write_all(calib, out).items():
            print(f"calibration ({fmt}): {path}")
    write_log(result, out / "estimates.json")
    plot_run(result, out / "report" / "estimates.png", reference, f"crossi2p replay {args.bag.name}")
    overlay_before_after(result, out / "report" / "overlay.png")
    text = summary_text(result, args.bag, reference)
    (out / "summary.txt").write_text(text)
    print(text, end="")
    print(f"report: {out / 'report'}; per-solve log: {out / 'estimates.json'}")
    return 0


def _cmd_monitor(args: argparse.Namespace) -> int:
    from .calib_io import read_calibration
    from .monitor import MonitorConfig
    from .report import plot_run, summary_text, write_log
    from .replay import run_session

    installed = read_calibration(args.installed).T_camera_lidar if args.installed else None
    monitor = MonitorConfig(persistence=args.persistence, warn_rot_deg=args.warn_rot_deg,
                            warn_trans_m=args.warn_trans_m, error_rot_deg=args.error_rot_deg,
                            error_trans_m=args.error_trans_m)
    cfg = _session_config(args, "monitor", monitor)
    reader = _bag_reader(args)
    calibrator = _calibrator(args)
    last_level = [None]

    def report(rec) -> None:
        state = (rec.level, rec.checked)
        if state != last_level[0]:
            print(f"t = {rec.time_s:7.2f} s  {rec.level:5s}  offset {rec.offset_rot_deg:.2f} deg, "
                  f"{100 * rec.offset_trans_m:.1f} cm" + (f", mostly {rec.axis}" if rec.level in ("WARN", "ERROR")
                                                          else "")
                  + (f"  (unchecked: a drift up to {rec.detectable_rot_deg:.2f} deg / "
                     f"{100 * rec.detectable_trans_m:.1f} cm would not show)" if rec.unchecked else ""), flush=True)
            last_level[0] = state

    result = run_session(reader, calibrator, cfg, installed, on_record=report)
    out: Path = args.out
    write_log(result, out / "monitor.json")
    plot_run(result, out / "monitor.png", result.T_initial, f"crossi2p monitor {args.bag.name}")
    text = summary_text(result, args.bag)
    (out / "summary.txt").write_text(text)
    print(text, end="")
    alarmed = any(r.level in ("WARN", "ERROR") for r in result.records)
    return 1 if alarmed and args.fail_on_alarm else 0


# --------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    from .data.scene import STYLES

    parser = argparse.ArgumentParser(
        prog="crossi2p",
        description="Online camera-LiDAR extrinsic calibration (CrossI2P) for ROS 2.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="a synthetic drive through the real calibration node",
                       description="Ray-cast a synthetic drive into a bag, start calibration_node with an initial "
                                   "guess 5 deg / 20 cm off, play the bag into the ROS graph with /clock and print "
                                   "every window solve converging against the known ground truth.")
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default %(default)s)")
    p.add_argument("--frames", type=int, default=40, help="frames to generate (default %(default)s)")
    p.add_argument("--seed", type=int, default=7, help="scene seed (default %(default)s)")
    p.add_argument("--style", default="urban", choices=list(STYLES))
    p.add_argument("--rate", type=float, default=0.25,
                   help="playback rate; below 1 so a 2-core CPU prepares every frame while it solves (default "
                        "%(default)s)")
    p.add_argument("--knock-deg", type=float, default=5.0,
                   help="initial guess: rotation error [deg] (default %(default)s)")
    p.add_argument("--knock-m", type=float, default=0.2, help="initial guess: translation error [m] (default %(default)s)")
    p.add_argument("--device", default="auto", help="node inference device (default %(default)s)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("node", help="run the ROS 2 calibration node (same as ros2 run crossi2p_ros calibration_node)",
                       description="Run calibration_node; pass ROS arguments after --ros-args, e.g. "
                                   "crossi2p node --ros-args --params-file config/calibration.yaml")
    p.add_argument("ros_args", nargs=argparse.REMAINDER, help="--ros-args ... (parameters, remappings)")
    p.set_defaults(func=_cmd_node)

    p = sub.add_parser("play", help="play a bag into the ROS graph with /clock",
                       description="Publish a bag's messages at their recorded timing (scaled by --rate), with "
                                   "/clock for use_sim_time.")
    p.add_argument("bag", type=Path, help="rosbag2 folder, .mcap/.db3 file or ROS 1 .bag")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default %(default)s)")
    p.add_argument("--topics", nargs="+", default=None, help="only these topics (default: all)")
    p.add_argument("--exclude", nargs="+", default=[], help="topics not to play (e.g. /tf_static)")
    p.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    p.add_argument("--loop", action="store_true", help="play again and again")
    p.set_defaults(func=_cmd_play)

    p = sub.add_parser("synth", help="generate ray-cast synthetic camera+LiDAR data",
                       description="Generate a synthetic driving sequence with ground-truth extrinsic, "
                                   "in KITTI odometry layout and optionally as a ROS 2 bag.")
    _add_synth_args(p)
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("overlay", help="draw LiDAR points on a camera image",
                       description="Project one frame's LiDAR sweep into its image with the dataset's extrinsic.")
    p.add_argument("--data", type=Path, required=True, help="KITTI odometry or object folder")
    p.add_argument("--frame", default="0", help="frame index or id (default %(default)s)")
    p.add_argument("--out", type=Path, required=True, help="output PNG")
    p.add_argument("--rot-deg", type=float, default=0.0, help="also draw with this rotation error [deg]")
    p.add_argument("--trans-m", type=float, default=0.0, help="also draw with this translation error [m]")
    p.set_defaults(func=_cmd_overlay)

    p = sub.add_parser("train", help="train CrossI2P weights on KITTI-layout data (self-supervised)",
                       description="Train the network on camera+LiDAR folders (KITTI odometry or object layout); "
                                   "the only supervision is each rig's extrinsic. Multi-GPU: launch with "
                                   "torchrun --nproc_per_node N -m crossi2p_ros.cli train ...")
    p.add_argument("--data", type=Path, nargs="+", required=True, help="one or more KITTI-layout folders")
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, logs, model.pt)")
    p.add_argument("--config", type=Path, default=None, help="YAML training config (any subset of TrainConfig)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoints/last.pt")
    p.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"], help="default %(default)s")
    p.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    p.add_argument("--steps-per-epoch", type=int, default=None, help="override steps per epoch (0: one pass)")
    p.add_argument("--batch-size", type=int, default=None, help="override the per-process batch size")
    p.add_argument("--init-weights", type=Path, default=None,
                   help="start from these weights (e.g. models/crossi2p_default.pt) instead of a random init; "
                        "the config's model must match them")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("cache", help="prepare KITTI-layout folders as compact training caches (.npz)",
                       description="Write one training cache per folder (one rig): images undistorted and resized "
                                   "near the network's resolution (JPEG), a subset of each sweep's points, the "
                                   "extrinsic. crossi2p train reads them like the folders; they travel where the "
                                   "generator cannot run (see crossi2p_ros/data/cache.py).")
    p.add_argument("--data", type=Path, nargs="+", required=True, help="KITTI-layout folders, one rig each")
    p.add_argument("--out", type=Path, required=True, help="folder for the .npz caches")
    p.add_argument("--width", type=int, default=None,
                   help="stored image width [px] (default: network width x the largest augmentation scale)")
    p.add_argument("--points", type=int, default=8192, help="points kept per sweep (default %(default)s)")
    p.set_defaults(func=_cmd_cache)

    p = sub.add_parser("eval", help="measure calibration accuracy on a KITTI-layout dataset",
                       description="Run the Calibrator over a dataset under a DESIGN.md protocol (calib: perturbed "
                                   "initial guess; i2p: no prior, cloud moved by a large yaw and shift) and write "
                                   "per-sample errors and a summary as JSON.")
    p.add_argument("--data", type=Path, required=True, help="KITTI object or odometry folder (detected automatically)")
    p.add_argument("--protocol", choices=["calib", "i2p"], default="calib", help="default %(default)s")
    p.add_argument("--samples", type=int, default=100, help="number of samples (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="protocol seed (default %(default)s)")
    p.add_argument("--max-rot-deg", type=float, default=10.0, help="calib: perturbation angle bound (default %(default)s)")
    p.add_argument("--max-trans-m", type=float, default=0.5, help="calib: perturbation radius (default %(default)s)")
    p.add_argument("--frames-per-estimate", type=int, default=1,
                   help="calib: one window estimate from K consecutive frames of the same rig, starting at a "
                        "seeded frame, one perturbation per window (DESIGN.md; 20 is the estimator's measured "
                        "default window; default %(default)s)")
    p.add_argument("--motion", choices=["auto", "on", "off"], default="auto",
                   help="calib: on: the LiDAR's motion at each frame from odometry against its sequence neighbour "
                        "motion-compensates the sweep with its per-point times (velodyne_times/) and the camera's "
                        "time offset is estimated; auto: on where the dataset has per-point times; off: the "
                        "sweeps as recorded (default %(default)s)")
    _add_rolling_shutter_arg(p)
    _add_backend_args(p)
    p.add_argument("--json", type=Path, required=True, help="output JSON (the eval contract of DESIGN.md)")
    p.add_argument("--plots", type=Path, default=None, help="also write error histograms/CDFs and overlays here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("export", help="export the network to ONNX for deployment (with a parity check)",
                       description="Trace the network into an ONNX graph (dynamic image height and point count), "
                                   "check it against torch in ONNX Runtime on other input shapes, and write it "
                                   "atomically. Calibrator, eval, replay, monitor and the node run it with "
                                   "--backend onnx.")
    p.add_argument("--onnx", type=Path, required=True, help="output .onnx file")
    p.add_argument("--weights", type=Path, default=None, help="weights file (default: the shipped model)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default %(default)s)")
    p.add_argument("--tolerance", type=float, default=1e-3,
                   help="largest |ONNX - torch| accepted by the parity check (default %(default)s)")
    p.add_argument("--no-verify", action="store_true", help="skip the parity check")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("replay", help="calibrate from a recorded ROS 2 or ROS 1 bag (no ROS graph needed)",
                       description="Pair camera and LiDAR messages of a bag, keep distinct keyframes, solve the "
                                   "extrinsic jointly over a window of them (a global search until it converges, "
                                   "then updates), and write the converged calibration in every format with a "
                                   "report. The same session loop as the node.")
    _add_bag_args(p)
    p.add_argument("--out", type=Path, required=True, help="output folder (calibration files, log, report)")
    p.add_argument("--initial", type=Path, default=None,
                   help="initial guess (any calibration file format; default: the bag's TF, else none)")
    p.add_argument("--reference", type=Path, default=None,
                   help="a known-good calibration to plot errors against (e.g. ground truth of a synthetic bag)")
    p.set_defaults(func=_cmd_replay)

    p = sub.add_parser("monitor", help="check a bag for decalibration against the installed extrinsic",
                       description="Solve windows of keyframes from the installed extrinsic and report when the "
                                   "node's drift monitor would have raised WARN or ERROR, with the drift's size and "
                                   "axis.")
    _add_bag_args(p)
    p.add_argument("--installed", type=Path, default=None,
                   help="installed calibration (any format; default: the bag's TF)")
    p.add_argument("--out", type=Path, default=Path("out/monitor"), help="output folder (default %(default)s)")
    defaults = __import__("crossi2p_ros.monitor", fromlist=["MonitorConfig"]).MonitorConfig()
    p.add_argument("--persistence", type=int, default=defaults.persistence,
                   help="consecutive window solves a drift must hold before it alarms (default %(default)s)")
    p.add_argument("--warn-rot-deg", type=float, default=defaults.warn_rot_deg, help="default %(default)s")
    p.add_argument("--warn-trans-m", type=float, default=defaults.warn_trans_m, help="default %(default)s")
    p.add_argument("--error-rot-deg", type=float, default=defaults.error_rot_deg, help="default %(default)s")
    p.add_argument("--error-trans-m", type=float, default=defaults.error_trans_m, help="default %(default)s")
    p.add_argument("--fail-on-alarm", action="store_true", help="exit with code 1 if WARN or ERROR was raised")
    p.set_defaults(func=_cmd_monitor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except CrossI2PError as exc:
        print(f"crossi2p {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"crossi2p {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head/less that closed early: not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
