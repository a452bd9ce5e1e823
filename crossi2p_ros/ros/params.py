"""The node's parameters, derived from the configuration dataclasses (defaults live there, once).

Each parameter is ``[group.]field`` of one dataclass: the node's own
:class:`NodeConfig`, the calibrator's runtime choices (:class:`CalibratorConfig`
``weights``, ``device``, ...), and the ``sync.``, ``keyframes.``, ``session.``
and ``monitor.`` groups (:class:`SyncConfig`, :class:`KeyframeConfig`,
:class:`SessionConfig`, :class:`MonitorConfig`). This module adds only what a
dataclass cannot say: the description, the allowed range or choices, and
whether a change at run time takes effect (``monitor.*``, applied by the
node's on-set callback); every other parameter is declared read-only.
``None`` defaults are declared as ``""`` (ROS parameters have no null).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from ..monitor import MonitorConfig
from ..registration.calibrator import CalibratorConfig
from ..registration.keyframe_window import KeyframeConfig
from ..session import SessionConfig
from ..sync import SyncConfig


def _opt(default: Any, description: str, allowed: Any = None) -> Any:
    return field(default=default, metadata={"description": description, "allowed": allowed})


@dataclass(frozen=True)
class NodeConfig:
    """What only the ROS adapter needs: topics, frames, files, the prior, timings of diagnostics."""

    mode: str = _opt("calibrate", "calibrate: solve windows, publish ~/calibration and, once converged, "
                                  "/tf_static; monitor: compare with the installed extrinsic, publish no TF",
                     ("calibrate", "monitor"))
    cameras: tuple = _opt(("camera",), "the cameras calibrated against the LiDAR, by name: each {camera} in the "
                                       "topics, frames and files below is a camera's name; with several, each "
                                       "publishes on ~/<name>/calibration (~/calibration with one) and saves to "
                                       "<output_dir>/<name>, and each sweep's LiDAR work is done once for all")
    image_topic: str = _opt("/{camera}/image_raw", "camera image topic (base name for compressed transport)")
    image_transport: str = _opt("raw", "raw (sensor_msgs/Image) or compressed (<image_topic>/compressed)",
                                ("raw", "compressed"))
    camera_info_topic: str = _opt("/{camera}/camera_info", "sensor_msgs/CameraInfo topic")
    cloud_topic: str = _opt("/lidar/points", "sensor_msgs/PointCloud2 topic")
    qos: str = _opt("sensor_data", "subscription QoS: sensor_data (best effort) or reliable",
                    ("sensor_data", "reliable"))
    lidar_frame: str = _opt("", "the LiDAR frame (TF parent of the calibration); empty: the cloud's header.frame_id")
    camera_frame: str = _opt("", "the camera optical frame; empty: the image's header.frame_id")
    tf_child_frame: str = _opt("", "child frame of the calibration on /tf_static; empty: <camera_frame>_calibrated "
                                   "(set it to the camera frame to make this node that edge's publisher)")
    initial_calibration: str = _opt("", "calibrate mode: prior file (any calib_io format); empty: /tf_static "
                                        "(composed through frames such as base_link), else none (global search)")
    installed_calibration: str = _opt("", "monitor mode: installed extrinsic file; empty: installed_transform, "
                                          "else /tf_static")
    installed_transform: tuple = _opt((0.0,), "monitor mode: installed TF lidar->camera as [x, y, z, qx, qy, qz, "
                                              "qw]; [0.0] = unset")
    odom_frame: str = _opt("odom", "fixed frame of the vehicle's odometry on /tf (REP-105 odom): while moving, a "
                                   "sweep's motion comes from it where /tf connects it to the LiDAR frame at both "
                                   "sweeps' stamps, else from registering the sweeps; empty: always registration")
    output_dir: str = _opt("crossi2p_calibration", "where ~/save writes the calibration files")
    autostart: bool = _opt(True, "start at once; false: wait for ~/start")
    stale_after_s: float = _opt(5.0, "diagnostics turn STALE after this long without a pair [s]", (0.1, 3600.0))
    no_estimate_warn_s: float = _opt(30.0, "monitor mode: WARN when pairs arrive but no window solve has "
                                           "checked the installed calibration for this long (succeeded, and "
                                           "constrained enough to reveal a drift at the error thresholds) [s]",
                                     (1.0, 3600.0))


# (dataclass, group prefix, {field: (description, allowed)}) of the other configs the node exposes
_DERIVED: list[tuple[Any, str, dict[str, tuple[str, Any]]]] = [
    (CalibratorConfig(), "", {
        "weights": ("weights file; empty: the shipped default model", None),
        "device": ("inference device: auto, cpu, cuda, cuda:N", None),
        "backend": ("network runtime: torch, or onnx (ONNX Runtime on the file of crossi2p export)",
                    ("torch", "onnx")),
        "onnx": ("backend onnx: the exported network (crossi2p export --onnx FILE)", None),
        "use_mi": ("polish each window's pose by mutual information", None),
        "mount_scan": ("no prior: score the usual mounts besides the network's proposals; false: the "
                       "proposals alone", None),
        "motion_proposal": ("no prior: start from the camera's rotation from the keyframes' own motion once the "
                            "vehicle has travelled (the mounts only when it has not)", None),
        "max_proposals": ("no prior: network poses kept as global starts of the window search; 0: the network "
                          "is not run (about 0.3 s a keyframe on a 2-core CPU)", (0, 32)),
    }),
    (CalibratorConfig().window, "window.", {
        "threads": ("CPU threads a window solve splits its keyframes over (the same result for any number)",
                    (1, 64)),
        "max_focal_px": ("work on images at most at this focal length [px], downscaled (a 2-4 K camera's "
                         "keyframes then take a fraction of the time); 0: as they come", (0.0, 100000.0)),
        "rolling_shutter_s": ("the camera's rolling-shutter readout, top to bottom row [s] (its datasheet's frame "
                              "readout time); while moving each edge is taken at its row's time; 0: a global "
                              "shutter", (0.0, 0.2)),
        "converged_rot_deg": ("a solve is converged (published on /tf_static, saved by ~/save) when no rotation "
                              "direction has more sigma than this [deg] ...", (0.0, 45.0)),
        "converged_trans_m": ("... and no translation direction more than this [m] (with the camera's time "
                              "offset estimated too, the translation along the travel is as uncertain as the offset "
                              "times the speed)", (0.0, 10.0)),
    }),
    (SyncConfig(), "sync.", {
        "max_slop_s": ("largest camera/LiDAR stamp difference of a pair [s]", (0.001, 1.0)),
        "queue_size": ("messages kept per stream while waiting for a partner", (1, 1000)),
    }),
    (KeyframeConfig(), "keyframes.", {
        "size": ("keyframes in the window", (1, 200)),
        "min_edge_points": ("a frame with fewer LiDAR depth edges is skipped (no structure)", (0, 100000)),
        "min_change": ("image change (mean absolute thumbnail difference, 0-1) that makes a frame a new "
                       "keyframe", (0.0, 1.0)),
        "max_interval_s": ("... or this long since the newest keyframe [s]", (0.0, 3600.0)),
        "min_interval_s": ("never closer than this to the newest keyframe [s] (frames are skipped before their "
                           "features are computed)", (0.0, 3600.0)),
        "diverse_speeds": ("full window while moving: drop the keyframe whose speed the others repeat most "
                           "closely instead of the oldest (speed changes tell the camera's time offset from its "
                           "lever arm); off: the newest keyframes", None),
    }),
    (SessionConfig(), "session.", {
        "min_keyframes": ("the first window solve waits for this many keyframes", (1, 200)),
        "solve_every": ("new keyframes between window solves", (1, 200)),
        "republish_sigma": ("a converged calibration is republished on /tf_static when it moves by more "
                            "than this many of its sigmas", (0.0, 100.0)),
        "mount_search_every": ("no prior: unconverged solves search around the last supported pose; every "
                               "this many-th one scans all mounts again", (1, 100)),
        "motion": ("on: the LiDAR's motion from consecutive sweeps (odometry) motion-compensates each keyframe to "
                   "the camera's stamp and the window estimates the camera's time offset (~/time_offset); auto: "
                   "on for clouds with per-point times (t, time, timestamp, offset_time); off: sweeps as published",
                   ("auto", "on", "off")),
        "azimuth_times": ("a spinning head whose clouds carry no per-point time: cw or ccw, the way it turns seen "
                          "from above (Velodyne, Ouster, Hesai: cw), gives each point its time from its azimuth "
                          "(motion auto is then on); off: none", ("off", "cw", "ccw")),
        "seam_azimuth_deg": ("... where its sweep starts [deg, left of the LiDAR's +x; 180: behind]",
                             (-360.0, 360.0)),
        "spin_period_s": ("... and how long a turn takes [s]", (0.001, 10.0)),
    }),
    (MonitorConfig(), "monitor.", {
        "warn_rot_deg": ("WARN beyond this significant rotation offset [deg]", (0.0, 90.0)),
        "warn_trans_m": ("WARN beyond this significant translation offset [m]", (0.0, 10.0)),
        "error_rot_deg": ("ERROR beyond this rotation offset [deg]", (0.0, 90.0)),
        "error_trans_m": ("ERROR beyond this translation offset [m]", (0.0, 10.0)),
        "persistence": ("consecutive window solves a drift must hold before it is raised", (1, 100)),
        "chi2_threshold": ("significance of an offset: chi-square (3 dof) of the rotation or translation "
                           "block", (0.0, 1000.0)),
    }),
]
DYNAMIC_GROUPS = ("monitor.",)


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    default: Any            # as declared on ROS (None -> "", tuples -> lists)
    description: str
    allowed: Any            # (lo, hi) range, a tuple of string choices, or None
    read_only: bool

    def descriptor(self) -> ParameterDescriptor:
        d = ParameterDescriptor(name=self.name, description=self.description, read_only=self.read_only)
        lo_hi = isinstance(self.allowed, tuple) and len(self.allowed) == 2 and \
            all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.allowed)
        if lo_hi and isinstance(self.default, int) and not isinstance(self.default, bool):
            d.integer_range = [IntegerRange(from_value=int(self.allowed[0]), to_value=int(self.allowed[1]), step=1)]
        elif lo_hi:
            d.floating_point_range = [FloatingPointRange(from_value=float(self.allowed[0]),
                                                         to_value=float(self.allowed[1]))]
        elif isinstance(self.allowed, tuple):
            d.additional_constraints = "one of: " + ", ".join(self.allowed)
        return d

    def check(self, value: Any) -> str | None:
        """Why ``value`` is not allowed, or None (ranges are enforced by ROS itself)."""
        if isinstance(self.allowed, tuple) and self.allowed and isinstance(self.allowed[0], str) \
                and value not in self.allowed:
            return f"parameter {self.name}={value!r}: use one of {', '.join(self.allowed)}"
        return None


def _ros_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, tuple):
        return [v if isinstance(v, str) else float(v) for v in value]
    return value


def parameter_specs() -> list[ParameterSpec]:
    """Every node parameter, in declaration order."""
    specs = [ParameterSpec(f.name, _ros_value(f.default), f.metadata["description"], f.metadata["allowed"], True)
             for f in dataclasses.fields(NodeConfig)]
    for instance, prefix, docs in _DERIVED:
        for name, (description, allowed) in docs.items():
            default = getattr(instance, name)   # AttributeError here: a doc for a field that does not exist
            specs.append(ParameterSpec(prefix + name, _ros_value(default), description, allowed,
                                       prefix not in DYNAMIC_GROUPS))
    return specs


def _build(instance: Any, prefix: str, names: dict, values: dict[str, Any]) -> Any:
    changes = {}
    for name in names:
        default, value = getattr(instance, name), values[prefix + name]
        if default is None and value == "":
            value = None
        elif isinstance(default, float):
            value = float(value)
        changes[name] = value
    return dataclasses.replace(instance, **changes)


def configs_from(values: dict[str, Any]) -> dict[str, Any]:
    """The dataclass configs from parameter values ``{name: value}``: keys node, calibrator, sync, session."""
    built = {prefix: _build(instance, prefix, docs, values) for instance, prefix, docs in _DERIVED}
    node = NodeConfig(**{f.name: (tuple(values[f.name]) if isinstance(f.default, tuple) else values[f.name])
                         for f in dataclasses.fields(NodeConfig)})
    session = dataclasses.replace(built["session."], mode=node.mode, keyframes=built["keyframes."],
                                  monitor=built["monitor."])
    calibrator = dataclasses.replace(built[""], window=built["window."])
    return {"node": node, "calibrator": calibrator, "sync": built["sync."], "session": session}


def monitor_config(values: dict[str, Any]) -> MonitorConfig:
    """The ``monitor.*`` group alone (for run-time changes)."""
    instance, prefix, docs = next(d for d in _DERIVED if d[1] == "monitor.")
    return _build(instance, prefix, docs, values)


def parameter_file() -> str:
    """``config/calibration.yaml`` as these specs define it (test_node checks the shipped file is this)."""
    lines = ["# Parameters of the crossi2p calibration node, with their defaults. Generated from the configuration",
             "# dataclasses by crossi2p_ros/ros/params.py (python -m crossi2p_ros.ros.params > config/calibration.yaml);",
             "# test_node checks that this file is what they say.",
             "# Use: ros2 run crossi2p_ros calibration_node --ros-args --params-file config/calibration.yaml",
             "#      ros2 launch crossi2p_ros calibrate.launch.py config:=<this file>",
             "crossi2p_calibration:", "  ros__parameters:"]
    import json

    group = ""
    for spec in parameter_specs():
        prefix, _, leaf = spec.name.rpartition(".")
        if prefix != group:   # ROS parameter files nest dotted names
            lines.append(f"    {prefix}:")
            group = prefix
        indent = "      " if prefix else "    "
        allowed = ""
        if isinstance(spec.allowed, tuple) and spec.allowed and isinstance(spec.allowed[0], str):
            allowed = f" ({' | '.join(spec.allowed)})"
        elif isinstance(spec.allowed, tuple):
            allowed = f" [{spec.allowed[0]} .. {spec.allowed[1]}]"
        lines.append(f"{indent}# {spec.description}{allowed}{'' if spec.read_only else ' (may change at run time)'}")
        lines.append(f"{indent}{leaf}: {json.dumps(spec.default)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(parameter_file(), end="")
