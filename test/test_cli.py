"""The crossi2p command line: help, overlay, and one-line errors with exit code 2."""
import subprocess
import sys

import cv2
import numpy as np

from crossi2p_ros import geometry as g
from crossi2p_ros.cli import main
from crossi2p_ros.data import kitti
from crossi2p_ros.overlay import draw_projection


def _scene(tmp_path):
    """A wall 10 m in front of the camera, seen by a LiDAR placed at the camera."""
    cam = g.CameraModel.from_intrinsics(200, 100, 100, 100, 99.5, 49.5)
    T_camera_lidar = g.make_transform(np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0.0]]), np.zeros(3))  # REP-103
    y, z = np.meshgrid(np.linspace(-8, 8, 80), np.linspace(-4, 4, 40))
    pts = np.c_[np.full(y.size, 10.0), y.ravel(), z.ravel(), np.ones(y.size)].astype(np.float32)
    kitti.write_object_frame(tmp_path, "000000", np.full((100, 200, 3), 128, np.uint8), pts, cam, T_camera_lidar)
    return cam, T_camera_lidar, pts


def test_overlay_draws_points_where_they_project(tmp_path):
    cam, T, pts = _scene(tmp_path)
    out = draw_projection(np.zeros((100, 200, 3), np.uint8), pts, T, cam)
    uv, _, valid = g.project_lidar(pts, T, cam)
    u, v = np.rint(uv[valid]).astype(int).T
    assert valid.sum() > 1000 and np.all(out[v, u].sum(axis=1) > 0)
    assert out[0:2, 0:2].sum() == 0 or valid.sum() > 0  # background untouched where no point lands
    assert np.count_nonzero(out.sum(axis=2)) < out.shape[0] * out.shape[1]


def test_cli_overlay_writes_png_with_perturbed_panel(tmp_path, capsys):
    _scene(tmp_path)
    assert main(["overlay", "--data", str(tmp_path), "--frame", "000000", "--out", str(tmp_path / "o.png"), "--rot-deg", "2"]) == 0
    img = cv2.imread(str(tmp_path / "o.png"))
    assert img.shape == (200, 200, 3)  # two stacked panels
    assert "wrote" in capsys.readouterr().out


def test_cli_user_error_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["overlay", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dataset folder not found" in err[0] and err[0].startswith("crossi2p overlay: error:")
    _scene(tmp_path)
    assert main(["overlay", "--data", str(tmp_path), "--frame", "9", "--out", str(tmp_path / "o.png")]) == 2
    assert "out of range" in capsys.readouterr().err


def test_console_script_help_lists_commands():
    proc = subprocess.run([sys.executable, "-m", "crossi2p_ros.cli", "--help"], capture_output=True, text=True, check=True)
    for command in ("demo", "synth", "overlay"):
        assert command in proc.stdout
