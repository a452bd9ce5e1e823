"""Calibration files: write ``T_camera_lidar`` in the formats people paste into their stacks, and read them back.

| format | file | content |
| --- | --- | --- |
| YAML (ROS style) | ``calibration.yaml`` | parent/child frames, translation + quaternion of the TF transform, the 4x4 ``T_camera_lidar``, covariance |
| JSON | ``calibration.json`` | the same plus free-form metadata |
| KITTI | ``calib_kitti.txt`` | ``Tr_velo_to_cam:`` 12 numbers (``T_camera_lidar`` 3x4, row-major); ``sigma_camera_m_deg:`` |
| URDF | ``calibration.urdf`` | a fixed ``<joint>`` from the LiDAR link to the camera optical link (xyz, rpy); sigmas in a comment |
| TF command | ``static_transform_publisher.sh`` | ``ros2 run tf2_ros static_transform_publisher`` with the same transform; sigmas in a comment |

The covariance (when known) is 6x6 over a left perturbation (x, y, z [m],
rotation about x, y, z [rad]) of ``T_camera_lidar`` in the camera optical
frame, as the estimator reports it; the formats without a place for a matrix
carry its per-axis standard deviations (x, y, z [m], rotation x, y, z [deg]).

Frames: TF, URDF and the command line carry the transform of the *parent*
(LiDAR) frame to the *child* (camera optical) frame, i.e. the pose of the camera
in the LiDAR frame, ``T_lidar_camera = inv(T_camera_lidar)`` (DESIGN.md:
parent = LiDAR, child = camera). KITTI and the matrices carry
``T_camera_lidar`` itself. URDF ``rpy`` is roll-pitch-yaw about fixed X, Y, Z
(``R = Rz(yaw) Ry(pitch) Rx(roll)``). Every write is atomic (temporary file in
the same folder, then rename), so a crash never leaves half a file.
"""
from __future__ import annotations

import json
import re
import shlex
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from scipy.spatial.transform import Rotation

from .errors import CrossI2PError
from .fileio import atomic_write_text
from .geometry import invert, make_transform

FILENAMES = {
    "yaml": "calibration.yaml",
    "json": "calibration.json",
    "kitti": "calib_kitti.txt",
    "urdf": "calibration.urdf",
    "tf": "static_transform_publisher.sh",
}


_FRAME_ID = re.compile(r"[A-Za-z0-9_./-]{1,256}")


@dataclass
class Calibration:
    T_camera_lidar: np.ndarray
    lidar_frame: str = "lidar"
    camera_frame: str = "camera_optical"
    covariance: np.ndarray | None = None     # (6, 6) over (rho [m], phi [rad]), optional
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for what, frame in (("lidar_frame", self.lidar_frame), ("camera_frame", self.camera_frame)):
            # frame ids come from message headers and end up in URDF, YAML and a shell script
            if not isinstance(frame, str) or not _FRAME_ID.fullmatch(frame):
                raise CrossI2PError(f"{what} {frame!r} is not a TF frame id (letters, digits, _ - . / only, "
                                    "at most 256); set lidar_frame/camera_frame to the names your TF tree uses")
        T = np.asarray(self.T_camera_lidar, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise CrossI2PError("a calibration needs a finite 4x4 T_camera_lidar")
        R = T[:3, :3]
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-5) or np.linalg.det(R) < 0:
            raise CrossI2PError("T_camera_lidar's rotation is not orthonormal (a rigid transform is required)")
        self.T_camera_lidar = T

    @property
    def T_lidar_camera(self) -> np.ndarray:
        return invert(self.T_camera_lidar)


def _quaternion_xyzw(T: np.ndarray) -> np.ndarray:
    return Rotation.from_matrix(T[:3, :3]).as_quat()


def _rpy(T: np.ndarray) -> np.ndarray:
    return Rotation.from_matrix(T[:3, :3]).as_euler("xyz")   # extrinsic x, y, z = URDF roll, pitch, yaw


def _fmt(values) -> list[float]:
    return [float(f"{v:.9g}") for v in np.ravel(values)]


# --------------------------------------------------------------------------- writers


def to_yaml(c: Calibration) -> str:
    T = c.T_lidar_camera
    t, q = _fmt(T[:3, 3]), _fmt(_quaternion_xyzw(T))
    doc = {
        "parent_frame": c.lidar_frame,
        "child_frame": c.camera_frame,
        "translation": {"x": t[0], "y": t[1], "z": t[2]},
        "rotation": {"x": q[0], "y": q[1], "z": q[2], "w": q[3]},
        "T_camera_lidar": [_fmt(row) for row in c.T_camera_lidar],
    }
    if c.covariance is not None:
        doc["covariance"] = [_fmt(row) for row in c.covariance]
    header = ("# crossi2p_ros calibration. translation/rotation: the TF transform parent -> child\n"
              "# (pose of the camera optical frame in the LiDAR frame) [m, unit quaternion x y z w];\n"
              "# T_camera_lidar maps LiDAR points into the camera optical frame; covariance: 6x6 over a left\n"
              "# perturbation of T_camera_lidar in the camera frame (x, y, z [m], rotation x, y, z [rad]).\n")
    return header + yaml.safe_dump(doc, sort_keys=False)


def to_json(c: Calibration) -> str:
    T = c.T_lidar_camera
    doc = {
        "parent_frame": c.lidar_frame,
        "child_frame": c.camera_frame,
        "translation_m": _fmt(T[:3, 3]),
        "quaternion_xyzw": _fmt(_quaternion_xyzw(T)),
        "T_camera_lidar": [_fmt(row) for row in c.T_camera_lidar],
        "covariance": None if c.covariance is None else [_fmt(row) for row in c.covariance],
        "metadata": c.metadata,
    }
    return json.dumps(doc, indent=2) + "\n"


def _sigmas(c: Calibration) -> str:
    """Per-axis standard deviations "x y z [m] rx ry rz [deg]" in the camera frame, or ""."""
    if c.covariance is None:
        return ""
    sd = np.sqrt(np.maximum(np.diag(np.asarray(c.covariance, dtype=np.float64)), 0.0))
    return " ".join(f"{v:.6g}" for v in np.r_[sd[:3], np.degrees(sd[3:])])


def to_kitti(c: Calibration) -> str:
    text = "Tr_velo_to_cam: " + " ".join(f"{v:.12e}" for v in c.T_camera_lidar[:3].ravel()) + "\n"
    # "key: numbers" like every KITTI line, so KITTI readers that parse each line keep working
    return text + (f"sigma_camera_m_deg: {_sigmas(c)}\n" if c.covariance is not None else "")


def to_urdf(c: Calibration) -> str:
    T = c.T_lidar_camera
    xyz = " ".join(f"{v:.9g}" for v in T[:3, 3])
    rpy = " ".join(f"{v:.9g}" for v in _rpy(T))
    return (f'<?xml version="1.0"?>\n'
            f'<!-- crossi2p_ros calibration: pose of {c.camera_frame} in {c.lidar_frame} -->\n'
            + (f'<!-- standard deviations in the camera frame, x y z [m] rotation x y z [deg]: {_sigmas(c)} -->\n'
               if c.covariance is not None else '') +
            f'<robot name="crossi2p_calibration">\n'
            f'  <link name="{c.lidar_frame}"/>\n'
            f'  <link name="{c.camera_frame}"/>\n'
            f'  <joint name="{c.lidar_frame}_to_{c.camera_frame}" type="fixed">\n'
            f'    <parent link="{c.lidar_frame}"/>\n'
            f'    <child link="{c.camera_frame}"/>\n'
            f'    <origin xyz="{xyz}" rpy="{rpy}"/>\n'
            f'  </joint>\n'
            f'</robot>\n')


def tf_arguments(c: Calibration) -> list[str]:
    T = c.T_lidar_camera
    t, q = T[:3, 3], _quaternion_xyzw(T)
    args = []
    for name, v in zip(("--x", "--y", "--z", "--qx", "--qy", "--qz", "--qw"), [*t, *q]):
        args += [name, f"{v:.9g}"]
    return args + ["--frame-id", c.lidar_frame, "--child-frame-id", c.camera_frame]


def to_tf_command(c: Calibration) -> str:
    cmd = ["ros2", "run", "tf2_ros", "static_transform_publisher", *tf_arguments(c)]
    sigmas = (f"# standard deviations in the camera frame, x y z [m] rotation x y z [deg]: {_sigmas(c)}\n"
              if c.covariance is not None else "")
    return "#!/bin/sh\n# publish the crossi2p_ros calibration on /tf_static\n" + sigmas + shlex.join(cmd) + "\n"


_WRITERS = {"yaml": to_yaml, "json": to_json, "kitti": to_kitti, "urdf": to_urdf, "tf": to_tf_command}


def write_all(c: Calibration, out_dir: Path) -> dict[str, Path]:
    """Write every format into ``out_dir`` (atomically each); returns ``{format: path}``."""
    out_dir = Path(out_dir)
    return {fmt: atomic_write_text(out_dir / name, _WRITERS[fmt](c)) for fmt, name in FILENAMES.items()}


# --------------------------------------------------------------------------- readers


def _from_parent_child(t, q_xyzw, parent: str, child: str) -> Calibration:
    T_lidar_camera = make_transform(Rotation.from_quat(np.asarray(q_xyzw, dtype=np.float64)).as_matrix(),
                                    np.asarray(t, dtype=np.float64))
    return Calibration(invert(T_lidar_camera), parent, child)


def read_calibration(path: Path) -> Calibration:
    """Read any file :func:`write_all` writes (format from the extension: yaml/yml, json, txt, urdf, sh)."""
    path = Path(path)
    if not path.is_file():
        raise CrossI2PError(f"{path}: calibration file not found")
    text = path.read_text()
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            d = yaml.safe_load(text)
            if "T_camera_lidar" in d:
                cov = d.get("covariance")
                c = Calibration(np.asarray(d["T_camera_lidar"], dtype=np.float64),
                                d.get("parent_frame", "lidar"), d.get("child_frame", "camera_optical"),
                                None if cov is None else np.asarray(cov, dtype=np.float64))
            else:
                tr, rot = d["translation"], d["rotation"]
                c = _from_parent_child([tr["x"], tr["y"], tr["z"]], [rot["x"], rot["y"], rot["z"], rot["w"]],
                                       d["parent_frame"], d["child_frame"])
            return c
        if suffix == ".json":
            d = json.loads(text)
            cov = d.get("covariance")
            return Calibration(np.asarray(d["T_camera_lidar"], dtype=np.float64), d.get("parent_frame", "lidar"),
                               d.get("child_frame", "camera_optical"),
                               None if cov is None else np.asarray(cov, dtype=np.float64), d.get("metadata", {}))
        if suffix == ".txt":
            m = re.search(r"^\s*(Tr_velo_to_cam|Tr)\s*:\s*(.+)$", text, re.MULTILINE)
            values = np.array(m.group(2).split(), dtype=np.float64)  # type: ignore[union-attr]
            T = np.eye(4)
            T[:3] = values.reshape(3, 4)
            return Calibration(T)
        if suffix == ".urdf":
            joint = ET.fromstring(text).find("joint")
            origin = joint.find("origin")  # type: ignore[union-attr]
            xyz = np.array(origin.get("xyz", "0 0 0").split(), dtype=np.float64)  # type: ignore[union-attr]
            rpy = np.array(origin.get("rpy", "0 0 0").split(), dtype=np.float64)  # type: ignore[union-attr]
            T_lidar_camera = make_transform(Rotation.from_euler("xyz", rpy).as_matrix(), xyz)
            return Calibration(invert(T_lidar_camera), joint.find("parent").get("link"),  # type: ignore[union-attr]
                               joint.find("child").get("link"))  # type: ignore[union-attr]
        if suffix == ".sh":
            line = next(ln for ln in text.splitlines() if "static_transform_publisher" in ln)
            tokens = shlex.split(line)
            arg = {tokens[i]: tokens[i + 1] for i in range(len(tokens) - 1) if tokens[i].startswith("--")}
            return _from_parent_child([float(arg["--x"]), float(arg["--y"]), float(arg["--z"])],
                                      [float(arg[k]) for k in ("--qx", "--qy", "--qz", "--qw")],
                                      arg["--frame-id"], arg["--child-frame-id"])
    except CrossI2PError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse problem becomes one clear message
        raise CrossI2PError(f"{path}: not a readable calibration file ({type(exc).__name__}: {exc})") from None
    raise CrossI2PError(f"{path}: unknown calibration format {suffix!r}; use .yaml, .json, .txt (KITTI Tr), "
                        ".urdf or .sh (static_transform_publisher)")
