"""Calibration files: every format round-trips, frames follow DESIGN.md, writes are atomic."""
import json
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import yaml

from crossi2p_ros.calib_io import FILENAMES, Calibration, read_calibration, tf_arguments, write_all
from crossi2p_ros.errors import CrossI2PError
from crossi2p_ros.geometry import invert, make_transform, so3_exp

T = make_transform(so3_exp(np.array([1.21, -1.19, 1.22])), np.array([0.27, -0.08, -0.31]))


def test_every_format_reads_back_what_it_writes(tmp_path):
    c = Calibration(T, "velodyne", "cam_front_optical", np.eye(6) * 1e-4, {"frames": 20})
    paths = write_all(c, tmp_path)
    assert set(paths) == set(FILENAMES)
    for fmt, path in paths.items():
        back = read_calibration(path)
        np.testing.assert_allclose(back.T_camera_lidar, T, atol=1e-8, err_msg=fmt)
        if fmt not in ("kitti",):
            assert (back.lidar_frame, back.camera_frame) == ("velodyne", "cam_front_optical"), fmt
    assert read_calibration(paths["json"]).metadata == {"frames": 20}
    for fmt in ("yaml", "json"):   # the formats with room for a matrix carry the covariance ...
        np.testing.assert_allclose(read_calibration(paths[fmt]).covariance, np.eye(6) * 1e-4, err_msg=fmt)
    for fmt in ("kitti", "urdf", "tf"):   # ... the others its per-axis standard deviations [m, deg]
        assert "0.01 0.01 0.01 0.572958 0.572958 0.572958" in paths[fmt].read_text(), fmt


def test_tf_formats_carry_the_camera_pose_in_the_lidar_frame(tmp_path):
    c = Calibration(T)
    doc = yaml.safe_load(write_all(c, tmp_path)["yaml"].read_text())
    t = [doc["translation"][k] for k in "xyz"]
    np.testing.assert_allclose(t, invert(T)[:3, 3], atol=1e-8)       # parent lidar -> child camera
    args = tf_arguments(c)
    assert args[args.index("--frame-id") + 1] == "lidar" and args[args.index("--child-frame-id") + 1] == "camera_optical"
    kitti = (tmp_path / "calib_kitti.txt").read_text().split()
    np.testing.assert_allclose(np.array(kitti[1:], float).reshape(3, 4), T[:3], atol=1e-10)


def test_bad_files_are_clear_errors(tmp_path):
    (tmp_path / "x.yaml").write_text("translation: 3\n")
    with pytest.raises(CrossI2PError, match="not a readable calibration"):
        read_calibration(tmp_path / "x.yaml")
    (tmp_path / "x.ini").write_text("")
    with pytest.raises(CrossI2PError, match="unknown calibration format"):
        read_calibration(tmp_path / "x.ini")
    with pytest.raises(CrossI2PError, match="orthonormal"):
        Calibration(np.diag([2.0, 1.0, 1.0, 1.0]))


def test_a_process_killed_mid_save_leaves_the_old_file_intact(tmp_path):
    write_all(Calibration(T), tmp_path)
    before = (tmp_path / "calibration.json").read_text()
    # a child that writes a huge calibration (metadata) in a loop and gets SIGKILLed while doing it
    script = textwrap.dedent(f"""
        import numpy as np, sys
        from crossi2p_ros.calib_io import Calibration, write_all
        c = Calibration(np.eye(4), metadata={{"blob": "x" * 50_000_000}})
        print("ready", flush=True)
        while True:
            write_all(c, {str(tmp_path)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    after = (tmp_path / "calibration.json").read_text()
    doc = json.loads(after)                              # complete JSON: either the old or a whole new file
    assert after == before or doc["metadata"]["blob"].startswith("x")
