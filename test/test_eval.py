"""``crossi2p eval`` end to end with the shipped weights: the DESIGN.md JSON contract, plots, real data."""
import json
from pathlib import Path

import numpy as np
import pytest

from crossi2p_ros.cli import main
from crossi2p_ros.data.synth import SynthConfig, generate
from crossi2p_ros.evaluation import frame_index

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
NUSCENES = SHARED / "nuscenes_demo"
CITY_FRONT = SHARED / "sustech_points_pandar40" / "sequences" / "00"

SAMPLE_KEYS = {"id", "rot_deg", "trans_m", "rre_deg", "rte_m", "time_ms"}
SUMMARY_KEYS = {"rot_median_deg", "trans_median_m", "rot_mean_deg", "trans_mean_m", "rot_p95_deg", "trans_p95_m",
                "rre_mean_deg", "rte_mean_m", "success_rate", "time_ms_median"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    generate(SynthConfig(frames=3, seed=9600, style="suburban"), root, progress=False)
    return root


def _check_contract(doc: dict, protocol: str, n: int) -> None:
    assert doc["protocol"] == protocol and doc["n"] == n and len(doc["per_sample"]) == n
    for s in doc["per_sample"]:
        assert SAMPLE_KEYS <= set(s)
        assert all(np.isfinite(s[k]) for k in SAMPLE_KEYS - {"id"})
    assert SUMMARY_KEYS <= set(doc["summary"])
    assert 0.0 <= doc["summary"]["success_rate"] <= 1.0
    rot = [s["rot_deg"] for s in doc["per_sample"]]
    assert doc["summary"]["rot_median_deg"] == pytest.approx(float(np.median(rot)))


def test_eval_calib_writes_the_contract_json_and_plots(data, tmp_path, capsys):
    out = tmp_path / "calib.json"
    rc = main(["eval", "--data", str(data), "--protocol", "calib", "--samples", "3", "--seed", "1", "--device", "cpu",
               "--json", str(out), "--plots", str(tmp_path / "plots"), "--quiet"])
    assert rc == 0
    doc = json.loads(out.read_text())
    _check_contract(doc, "calib", 3)
    assert all(s["init_rot_deg"] <= 10.0 + 1e-9 and s["init_trans_m"] <= 0.5 + 1e-9 for s in doc["per_sample"])
    printed = capsys.readouterr().out
    assert "success rate" in printed and "rotation error" in printed
    assert (tmp_path / "plots" / "errors.png").is_file()
    assert len(list((tmp_path / "plots").glob("overlay_*.png"))) >= 2


def test_eval_is_reproducible_and_seeded(data, tmp_path):
    docs = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        out = tmp_path / f"{name}.json"
        assert main(["eval", "--data", str(data), "--samples", "2", "--seed", str(seed), "--device", "cpu",
                     "--json", str(out), "--quiet"]) == 0
        docs.append([(s["init_rot_deg"], s["rot_deg"]) for s in json.loads(out.read_text())["per_sample"]])
    assert docs[0] == docs[1] and docs[0] != docs[2]


def test_eval_i2p_and_multi_frame(data, tmp_path):
    out = tmp_path / "i2p.json"
    assert main(["eval", "--data", str(data), "--protocol", "i2p", "--samples", "2", "--device", "cpu",
                 "--json", str(out), "--quiet"]) == 0
    _check_contract(json.loads(out.read_text()), "i2p", 2)
    out = tmp_path / "i2p_window.json"
    assert main(["eval", "--data", str(data), "--protocol", "i2p", "--samples", "1", "--frames-per-estimate", "2",
                 "--device", "cpu", "--json", str(out), "--quiet"]) == 0
    doc = json.loads(out.read_text())
    _check_contract(doc, "i2p", 1)
    assert doc["per_sample"][0]["frames"] == 2
    out = tmp_path / "fused.json"
    assert main(["eval", "--data", str(data), "--samples", "1", "--frames-per-estimate", "3", "--device", "cpu",
                 "--json", str(out), "--quiet"]) == 0
    doc = json.loads(out.read_text())
    _check_contract(doc, "calib", 1)
    assert doc["per_sample"][0]["frames"] == 3


def test_eval_user_errors_are_one_line(data, tmp_path, capsys):
    assert main(["eval", "--data", str(data), "--frames-per-estimate", "0", "--json", str(tmp_path / "x.json")]) == 2
    assert "need at least 1" in capsys.readouterr().err
    assert main(["eval", "--data", str(data), "--weights", str(tmp_path / "none.pt"),
                 "--json", str(tmp_path / "x.json")]) == 2
    assert "weights file not found" in capsys.readouterr().err


def test_samples_spread_over_the_dataset():
    assert [frame_index(i, 3, 30) for i in range(3)] == [0, 10, 20]
    assert [frame_index(i, 5, 2) for i in range(5)] == [0, 1, 0, 1, 0]


@pytest.mark.skipif(not NUSCENES.is_dir(), reason="real nuScenes frames not present (../shared/data/nuscenes_demo)")
def test_eval_runs_on_real_nuscenes_frames(tmp_path):
    out = tmp_path / "nusc.json"
    assert main(["eval", "--data", str(NUSCENES), "--protocol", "calib", "--max-rot-deg", "5", "--max-trans-m", "0.2",
                 "--samples", "6", "--device", "cpu", "--json", str(out), "--quiet"]) == 0
    doc = json.loads(out.read_text())
    _check_contract(doc, "calib", 6)
    assert sorted(s["id"] for s in doc["per_sample"]) == [f"00000{i}" for i in range(6)]
    # the pipeline never leaves the prior's bounds (5 deg / 0.2 m start, 15 deg / 1 m reach)
    assert max(s["rot_deg"] for s in doc["per_sample"]) < 20.0


@pytest.mark.skipif(not CITY_FRONT.is_dir(), reason=f"the real city vehicle's frames are not present ({CITY_FRONT})")
def test_the_city_vehicle_from_2_deg_5_cm_keeps_a_calibration_no_worse_than_its_start(tmp_path):
    """Real 40-beam city vehicle, front camera 2048x1536, windows of its 3 frames from +-2 deg / 0.05 m.

    The window's optimum lies ~0.6 deg / 29 cm from the set's stated extrinsic from every start (its two
    cameras' optima agree on ~0.2 m along the direction of travel: a stamp offset or the stated extrinsic,
    docs/benchmarks.md "Any rig"), so the estimate ends worse than its start. What a user keeps must not:
    no window may claim convergence on a pose worse than its start, and the calibration kept is the prior."""
    out = tmp_path / "city.json"
    assert main(["eval", "--data", str(CITY_FRONT), "--protocol", "calib", "--max-rot-deg", "2", "--max-trans-m",
                 "0.05", "--frames-per-estimate", "3", "--samples", "3", "--device", "cpu", "--json", str(out),
                 "--quiet"]) == 0
    doc = json.loads(out.read_text())
    _check_contract(doc, "calib", 3)
    for s in doc["per_sample"]:
        no_worse = s["rot_deg"] <= s["init_rot_deg"] and s["trans_m"] <= s["init_trans_m"]
        assert no_worse or not s["converged"], s
        kept = (s["rot_deg"], s["trans_m"]) if s["converged"] else (s["init_rot_deg"], s["init_trans_m"])
        assert (s["kept_rot_deg"], s["kept_trans_m"]) == pytest.approx(kept), s
    assert doc["summary"]["kept_worse_than_start"] == 0


def test_eval_on_a_timed_drive_deskews_and_scores_the_cameras_time_offset(tmp_path):
    """A synthetic drive written with per-point times (velodyne_times/), the images' stamps (times_image_2.txt)
    and a camera exposed 20 ms after its stamp: ``--motion auto`` (the default) compensates and estimates the
    offset, scored against the truth in synth.json; ``--motion off`` does neither."""
    root = tmp_path / "drive"
    generate(SynthConfig(frames=31, seed=9986, style="urban", speed_mps=(15.0, 15.0), speed_change_mps=6.0,
                         speed_change_period_s=3.0, sweep_s=0.1, camera_offset_s=0.02), root, progress=False)
    assert len(list((root / "sequences" / "00" / "velodyne_times").glob("*.bin"))) == 31
    docs = {}
    for motion in ("auto", "off"):
        out = tmp_path / f"{motion}.json"
        assert main(["eval", "--data", str(root), "--samples", "1", "--frames-per-estimate", "30", "--max-rot-deg",
                     "3", "--max-trans-m", "0.1", "--motion", motion, "--device", "cpu", "--json", str(out),
                     "--quiet"]) == 0
        docs[motion] = json.loads(out.read_text())
    sample = docs["auto"]["per_sample"][0]
    assert sample["time_offset_ms"] is not None, sample
    assert abs(sample["time_offset_ms"] - 20.0) < 3.0, sample
    assert docs["auto"]["summary"]["time_offset_error_ms_median"] < 3.0
    assert docs["off"]["per_sample"][0]["time_offset_ms"] is None
    assert docs["off"]["per_sample"][0]["time_offset_sigma_ms"] is None
    assert sample["trans_m"] < docs["off"]["per_sample"][0]["trans_m"]
    # without the images' stamps the offset is the exposure from the sweep's stamp: 50 ms to the mid-sweep
    # trigger (each frame +-5 ms of stamp jitter) + 20 ms, a metre at 15 m/s, beyond the search region that the
    # pose alone can absorb: found by the offset's scan (time_offset.py)
    (root / "sequences" / "00" / "times_image_2.txt").unlink()
    out = tmp_path / "unstamped.json"
    assert main(["eval", "--data", str(root), "--samples", "1", "--frames-per-estimate", "30", "--max-rot-deg", "3",
                 "--max-trans-m", "0.1", "--device", "cpu", "--json", str(out), "--quiet"]) == 0
    unstamped = json.loads(out.read_text())["per_sample"][0]
    assert abs(unstamped["time_offset_ms"] - 70.0) < 5.0 and unstamped["trans_m"] < 0.05, unstamped
