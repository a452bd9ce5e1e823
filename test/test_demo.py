"""The README's first command: ``crossi2p demo`` runs a synthetic bag through the real node end to end."""
import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.ros


def test_demo_runs_the_bag_through_the_node_and_the_calibration_converges(tmp_path, ros_environment):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "crossi2p_ros.cli", "demo", "--out", str(out), "--device", "cpu"],
                          capture_output=True, text=True, timeout=600, env={**os.environ, **ros_environment})
    text = proc.stdout
    assert proc.returncode == 0, text + proc.stderr[-3000:]
    assert "node up" in text and "window solve # 1 on ~/calibration" in text and "(converged)" in text
    assert "-> /tf_static lidar -> camera_optical_calibrated" in text and "~/save:" in text
    m = re.search(r"final: ([\d.]+) deg / ([\d.]+) cm off the truth \(initial ([\d.]+) deg / ([\d.]+) cm\)", text)
    assert m, text
    rot, trans_cm, rot0, trans0_cm = map(float, m.groups())
    assert rot0 >= 4.9 and trans0_cm >= 19.0            # the demo starts from 5 deg / 20 cm off
    assert rot < 0.2 and trans_cm < 2.0, text           # ... and ends within 0.2 deg / 2 cm
    for name in ("demo.mcap", "overlay.png", "calibration/calibration.yaml", "calibration/calib_kitti.txt"):
        assert (out / name).exists(), name
