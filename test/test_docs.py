"""The user guide as a user follows it (issue 35): its commands run as written, and nothing it names has drifted
from the code.

* Every plain ```bash block of docs/user_guide.md runs, in order, each in its own ``bash`` with
  ``set -euo pipefail``, all in one temporary folder, with this venv's ``bin`` first on PATH (so ``crossi2p`` and
  ``python`` are the installed ones). The guide makes every file it uses itself (a synthetic bag, a prior), so it
  is self-contained; then what they produced is checked (the calibration converged near the synthetic truth, the
  monitor alarms on the wrong calibration and not on the right one, ...). Blocks whose info string says
  ``not-run`` (they need a live ROS graph, a colcon workspace or the repository root) are not run here.
* Every ``crossi2p <subcommand>`` and ``--option`` named in the guide (run or not) and in the README is in that
  subcommand's ``--help``; every node parameter, launch argument and node topic/service the guide names exists;
  every message its troubleshooting and monitor tables quote is in the source.

The README's runnable blocks hold ``./scripts/demo.sh`` and ``./scripts/test.sh`` only, which are not run here:
CI runs test.sh (``.ci/run``; running it here would run this test again), and test_demo.py runs demo.sh's
command (demo.sh is install.sh, then ``crossi2p demo``). A test below fails when the README gains another command.

About 60 s on a 2-core CPU: 45-50 s for the guide's own synthetic drive, replay and two monitor runs, 10 s for
the --help pages.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import yaml

from _launch_args import launch_arguments

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "user_guide.md"
README = ROOT / "README.md"
VENV_BIN = Path(sys.executable).parent

FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)
OPTION = re.compile(r"(?<![\w-])--[a-z][\w-]*")
ELLIPSIS = "\u2026"


# --------------------------------------------------------------------------- markdown helpers


def _blocks(path: Path) -> list[tuple[str, str]]:
    """(info string, body) of every fenced block."""
    return [(m.group(1).strip(), m.group(2)) for m in FENCE.finditer(path.read_text())]


def _runnable(path: Path) -> list[str]:
    """The plain ```bash blocks: the ones a user runs as written (``bash not-run`` and other info strings are not)."""
    return [body for info, body in _blocks(path) if info == "bash"]


def _shell_lines(path: Path) -> list[str]:
    """The logical lines (continuations joined, comments dropped) of every bash block, run or not."""
    lines = []
    for info, body in _blocks(path):
        if info.split()[:1] != ["bash"]:
            continue
        body = re.sub(r"\\\n", " ", body)
        body = re.sub(r"<<'?(\w+)'?\n.*?^\1$", "", body, flags=re.M | re.S)   # heredoc bodies are not commands
        lines += [re.sub(r"\s#\s.*$", "", ln) for ln in body.splitlines() if not ln.lstrip().startswith("#")]
    return lines


def _inline_spans(path: Path) -> list[str]:
    """Inline code spans outside fenced blocks, whitespace collapsed."""
    prose = FENCE.sub("", path.read_text())
    return [" ".join(s.split()) for s in re.findall(r"`([^`]+)`", prose)]


def _tables(path: Path) -> list[list[list[str]]]:
    """Markdown tables as rows of cells (header first, the --- row dropped)."""
    tables, current = [], []
    for line in FENCE.sub("", path.read_text()).splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not all(re.fullmatch(r":?-{3,}:?", c) for c in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def _column_spans(path: Path, header: str) -> list[str]:
    """Inline code spans in the column named ``header`` of every table that has one."""
    spans = []
    for table in _tables(path):
        names = [h.lower() for h in table[0]]
        if header in names:
            k = names.index(header)
            for row in table[1:]:
                spans += [" ".join(s.split()) for s in re.findall(r"`([^`]+)`", row[k])]
    return spans


# --------------------------------------------------------------------------- the guide, run as written


def _environment() -> dict[str, str]:
    return {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "MPLBACKEND": "Agg"}


@pytest.fixture(scope="module")
def guide_run(tmp_path_factory):
    """Run the guide's bash blocks in order in one empty folder; stop at the first that fails."""
    if not (VENV_BIN / "crossi2p").is_file():
        pytest.fail(f"no crossi2p next to {sys.executable}: run scripts/install.sh and pytest from its venv")
    work = tmp_path_factory.mktemp("user_guide")
    results, start = [], time.monotonic()
    for body in _runnable(GUIDE):
        proc = subprocess.run(["bash", "-c", "set -euo pipefail\n" + body], cwd=work, env=_environment(),
                              capture_output=True, text=True, timeout=600)
        results.append((body, proc))
        if proc.returncode != 0:
            break
    return work, results, time.monotonic() - start


def _all_ran(guide_run) -> Path:
    work, results, _ = guide_run
    for body, proc in results:
        assert proc.returncode == 0, (f"this block of docs/user_guide.md exited with {proc.returncode}:\n{body}\n"
                                      f"--- stdout (tail)\n{proc.stdout[-3000:]}\n--- stderr (tail)\n"
                                      f"{proc.stderr[-3000:]}")
    assert len(results) == len(_runnable(GUIDE))
    return work


def _output_of(guide_run, marker: str) -> str:
    """stdout of the guide block whose text contains ``marker``."""
    found = [proc.stdout for body, proc in guide_run[1] if marker in body]
    assert len(found) == 1, f"expected one guide block containing {marker!r}, found {len(found)}"
    return found[0]


def test_every_bash_block_of_the_guide_runs_as_written(guide_run):
    work = _all_ran(guide_run)
    assert len(guide_run[1]) >= 8, "the guide lost its runnable walk-through"
    print(f"{len(guide_run[1])} guide blocks ran in {guide_run[2]:.0f} s in {work}")


def test_the_guides_replay_converges_near_the_synthetic_truth(guide_run):
    from crossi2p_ros.calib_io import read_calibration
    from crossi2p_ros.geometry import pose_error

    work = _all_ran(guide_run)
    out = work / "calib"
    for name in ("calibration.yaml", "calibration.json", "calib_kitti.txt", "calibration.urdf",
                 "static_transform_publisher.sh", "estimates.json", "summary.txt", "report/estimates.png",
                 "report/overlay.png"):
        assert (out / name).is_file(), name
    summary = (out / "summary.txt").read_text()
    assert "calibration T_camera_lidar (converged" in summary and "error against the reference" in summary, summary
    truth = read_calibration(work / "drive" / "sequences" / "00" / "calib.txt").T_camera_lidar
    prior = read_calibration(work / "prior.yaml").T_camera_lidar
    calib = read_calibration(out / "calibration.yaml")
    e0, e = pose_error(prior, truth), pose_error(calib.T_camera_lidar, truth)
    # measured when written: the prior 1.7 deg / 12.4 cm off, the result 0.10 deg / 1.4 cm
    assert e0.rot_deg > 1.0 and e0.trans_m > 0.08, e0
    assert e.rot_deg < 0.5 and e.trans_m < 0.05, e
    assert (calib.lidar_frame, calib.camera_frame) == ("lidar", "camera_optical")
    assert calib.covariance is not None
    # the per-axis sigmas the guide greps: x y z [m] then rotation [deg], within the "converged" bounds
    m = re.search(r"^sigma_camera_m_deg:(.*)$", _output_of(guide_run, "grep sigma_camera_m_deg"), re.M)
    assert m, "the guide's grep printed no sigma_camera_m_deg line"
    sd = np.array(m.group(1).split(), dtype=float)
    assert sd.shape == (6,) and np.all(sd > 0) and np.all(sd[:3] <= 0.02) and np.all(sd[3:] <= 0.2), sd
    log = json.loads((out / "estimates.json").read_text())
    states = [s["converged"] for s in log["solves"]]
    assert states and states[-1] and log["pairs"] == 30, states


def test_the_guides_monitor_alarms_on_the_prior_and_not_on_the_calibration(guide_run):
    work = _all_ran(guide_run)
    ok = (work / "monitor_ok" / "summary.txt").read_text()
    assert "monitor: no alarm" in ok, ok
    assert "monitor alarmed: exit code 1" in _output_of(guide_run, "--installed prior.yaml")
    levels = [s["level"] for s in json.loads((work / "monitor_prior" / "monitor.json").read_text())["solves"]]
    assert {"WARN", "ERROR"} & set(levels), levels


def test_the_guides_other_commands_produce_what_it_says(guide_run):
    from crossi2p_ros.calib_io import read_calibration

    work = _all_ran(guide_run)
    assert "crossi2p" in _output_of(guide_run, "crossi2p --help")
    topics = _output_of(guide_run, "bag_topics")
    for line in ("/camera/camera_info sensor_msgs/msg/CameraInfo 30", "/camera/image_raw sensor_msgs/msg/Image 30",
                 "/lidar/points sensor_msgs/msg/PointCloud2 30", "/tf_static tf2_msgs/msg/TFMessage 1"):
        assert line in topics, topics
    for name in ("calibration.yaml", "calibration.json", "calib_kitti.txt", "calibration.urdf",
                 "static_transform_publisher.sh"):
        np.testing.assert_allclose(read_calibration(work / "prior_files" / name).T_camera_lidar,
                                   read_calibration(work / "prior.yaml").T_camera_lidar, atol=1e-6)
    assert (work / "overlay_2deg.png").stat().st_size > 10_000
    assert '<joint name="lidar_to_camera_optical" type="fixed">' in _output_of(guide_run, "cat calib/calibration.urdf")
    # the URDF origin of lidar -> camera_link: camera_link (x forward) is about level with the LiDAR's axes and
    # sits where the camera is (the synthetic rig's jitter is within 3 deg a side)
    m = re.search(r'<origin xyz="(\S+) (\S+) (\S+)" rpy="(\S+) (\S+) (\S+)"/>', _output_of(guide_run, "T_lidar_link"))
    assert m, "the URDF snippet printed no origin"
    values = np.array(m.groups(), dtype=float)
    truth = read_calibration(work / "drive" / "sequences" / "00" / "calib.txt").T_lidar_camera
    assert np.all(np.abs(values[3:]) < np.radians(6)), values
    np.testing.assert_allclose(values[:3], truth[:3, 3], atol=0.05)


# --------------------------------------------------------------------------- the README's commands


def test_the_readme_runs_only_the_demo_and_the_test_scripts():
    """The README's two commands are run elsewhere; a third would have to be run here (or be marked not-run)."""
    commands = [ln.split("#")[0].strip() for body in _runnable(README) for ln in body.splitlines()]
    assert [c for c in commands if c] == ["./scripts/demo.sh", "./scripts/test.sh"]
    assert "./scripts/test.sh" in (ROOT / ".ci" / "run").read_text()                  # CI runs test.sh
    assert re.search(r"^exec \.venv/bin/crossi2p demo", (ROOT / "scripts" / "demo.sh").read_text(), re.M)
    assert '"demo"' in (ROOT / "test" / "test_demo.py").read_text()                    # ... and test_demo its command


# --------------------------------------------------------------------------- the CLI named in the docs


@lru_cache(maxsize=None)
def _help(command: str) -> str:
    args = [str(VENV_BIN / "crossi2p")] + command.split() + ["--help"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, env=_environment())
    assert proc.returncode == 0, f"crossi2p {command} --help failed:\n{proc.stderr[-2000:]}"
    return proc.stdout


def _cli_uses(path: Path) -> tuple[list[tuple[str, list[str], str]], list[tuple[str, str]]]:
    """([(subcommand or "", options, where)], [(loose option, where)]) named in ``path``."""
    uses, loose = [], []
    texts = _shell_lines(path) + [s for s in _inline_spans(path) if s.startswith("crossi2p ")]
    for text in texts:
        for segment in re.split(r"&&|\|\||[;|](?!\w)", text):
            m = re.search(r"(?<![\w/.-])crossi2p\s+(\S+)(.*)", segment)
            if not m:
                continue
            sub, rest = m.group(1), m.group(2)
            if sub.startswith("-"):                           # crossi2p --help
                sub, rest = "", sub + rest
            if sub == "node":                                 # what follows --ros-args is ROS's
                rest = rest.split("--ros-args")[0] + (" --ros-args" if "--ros-args" in rest else "")
            uses.append((sub, OPTION.findall(rest), segment.strip()))
    for span in _inline_spans(path):
        if span.startswith("--"):
            loose += [(opt, span) for opt in OPTION.findall(span)]
    return uses, loose


def _has(help_text: str, option: str) -> bool:
    help_text = re.sub(r"-\n\s*", "-", help_text)      # argparse wraps descriptions at hyphens too
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", help_text) is not None


@pytest.mark.parametrize("doc", [GUIDE, README], ids=lambda p: p.name)
def test_every_crossi2p_command_and_option_in_the_docs_exists(doc):
    uses, loose = _cli_uses(doc)
    assert uses, f"{doc.name} names no crossi2p command?"
    top = _help("")
    subcommands = set(re.findall(r"^ {4}([a-z]+)\s", top, re.M))
    problems = []
    for sub, options, where in uses:
        if sub and sub not in subcommands:
            problems.append(f"`crossi2p {sub}` is not a subcommand ({sorted(subcommands)}): {where}")
            continue
        text = _help(sub)
        problems += [f"`crossi2p {sub}` has no {opt}: {where}" for opt in options if not _has(text, opt)]
    every_help = "\n".join(_help(s) for s in sorted(subcommands))
    problems += [f"no crossi2p subcommand has {opt}: `{span}`" for opt, span in loose if not _has(every_help, opt)]
    assert not problems, f"{doc.name}:\n" + "\n".join(problems)


# --------------------------------------------------------------------------- node parameters, launch, names


def test_the_node_parameters_launch_arguments_topics_and_services_in_the_guide_exist():
    from crossi2p_ros.ros.params import DYNAMIC_GROUPS, parameter_specs

    params = {spec.name for spec in parameter_specs()} | {"use_sim_time"}    # use_sim_time: every ROS node's
    lines, spans = _shell_lines(GUIDE), _inline_spans(GUIDE)
    problems = []
    named = [(p, ln) for ln in lines for p in re.findall(r"(?:^|\s)-p\s+([\w.]+):=", ln)]
    named += [(s.split(":")[0], s) for s in _column_spans(GUIDE, "parameter")]      # the parameter table
    problems += [f"no node parameter {name!r}: {where}" for name, where in named if name not in params]
    for ln in lines:
        m = re.search(r"ros2 param set /crossi2p_calibration (\S+)", ln)
        if m and not (m.group(1) in params and m.group(1).startswith(DYNAMIC_GROUPS)):
            problems.append(f"{m.group(1)!r} is not a parameter that can change at run time: {ln}")
    assert named, "the guide names no node parameter?"

    # a parameter file in the guide: every (nested, dotted) key a parameter of the node's name
    def flat(d, prefix=""):
        for k, v in d.items():
            yield from flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]

    param_files = [yaml.safe_load(body) for info, body in _blocks(GUIDE) if info == "yaml"]
    param_files = [d for d in param_files if isinstance(d, dict) and "crossi2p_calibration" in d]
    assert param_files, "the guide shows no parameter file?"
    for d in param_files:
        problems += [f"parameter file key {k!r} is no node parameter"
                     for k in flat(d["crossi2p_calibration"]["ros__parameters"]) if k not in params]

    named, overrides = launch_arguments()
    launch_args = named | overrides
    for ln in lines:
        if "calibrate.launch.py" in ln:
            problems += [f"calibrate.launch.py has no argument {a!r}: {ln}"
                         for a in re.findall(r"(\w+):=", ln) if a not in launch_args]

    node_py = (ROOT / "crossi2p_ros" / "ros" / "node.py").read_text()
    assert 'super().__init__("crossi2p_calibration"' in node_py
    # the node's own topics and services: the last part of the names its publishers and services are made with
    # ("~/save", or a per-camera prefix + "calibration")
    ros_code = "\n".join(p.read_text() for p in (ROOT / "crossi2p_ros" / "ros").glob("*.py"))
    made = re.findall(r"create_(?:publisher|service)\(([^)]*)\)", ros_code)
    own = {name for args in made for name in re.findall(r"[\"'](?:~/)?(\w+)[\"']", args)}
    used = set(re.findall(r"/crossi2p_calibration/(\w+)", GUIDE.read_text()))
    used |= {m for s in spans for m in re.findall(r"~/(\w+)", s)}
    problems += [f"the node has no ~/{name}" for name in sorted(used - own)]
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- the messages the guide quotes


@lru_cache(maxsize=1)
def _source_strings() -> str:
    """The package's source with adjacent string literals joined (as Python joins them) and whitespace collapsed."""
    text = "\n".join(p.read_text() for p in sorted((ROOT / "crossi2p_ros").rglob("*.py")))
    text = re.sub(r"([\"'])[ \t]*\\?[ \t]*\n\s*[rRbBfFuU]{0,2}\1", "", text)
    return " ".join(text.split())


def test_the_messages_the_guide_quotes_are_in_the_code():
    """Each quoted message, split at its ``…`` (a value), is in the source piece by piece."""
    quoted = _column_spans(GUIDE, "what you see") + _column_spans(GUIDE, "message starts with")
    assert len(quoted) > 20, quoted
    source, problems = _source_strings(), []
    for message in quoted:
        pieces = message.split(ELLIPSIS)
        for k, piece in enumerate(pieces):
            if k > 0:
                piece = piece.lstrip("'\"[]()")       # the quotes or brackets around a value
            if k < len(pieces) - 1:
                piece = piece.rstrip("'\"[]()")
            piece = piece.strip()
            if len(piece) >= 4 and piece not in source:
                problems.append(f"{piece!r} (of `{message}`)")
    assert not problems, "quoted in docs/user_guide.md but not in crossi2p_ros/:\n" + "\n".join(problems)
