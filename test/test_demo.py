"""The README's first command: ``crossi2p demo`` runs a synthetic bag through the real node end to end."""
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.ros


def test_demo_runs_the_bag_through_the_node_and_prints_the_calibration_converging(tmp_path, ros_environment):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "crossi2p_ros.cli", "demo", "--out", str(out), "--frames", "6",
                           "--rate", "0.2", "--device", "cpu"], capture_output=True, text=True, timeout=400,
                          env={**os.environ, **ros_environment})
    text = proc.stdout
    assert proc.returncode == 0, text + proc.stderr[-3000:]
    assert "node up" in text and "fused extrinsic # 1 on /tf_static" in text
    assert "~/save:" in text and "final:" in text
    for name in ("demo.mcap", "overlay.png", "calibration/calibration.yaml", "calibration/calib_kitti.txt"):
        assert (out / name).exists(), name
