"""The arguments launch/calibrate.launch.py declares, read from its source (no launch wheel exists for the venv)."""
from __future__ import annotations

import ast
from pathlib import Path

LAUNCH_FILE = Path(__file__).resolve().parents[1] / "launch" / "calibrate.launch.py"


def launch_arguments(path: Path = LAUNCH_FILE) -> tuple[set[str], set[str]]:
    """(the arguments declared by name, the parameter overrides of its OVERRIDES table, each also an argument)."""
    tree = ast.parse(path.read_text())
    named = {c.args[0].value for c in ast.walk(tree) if isinstance(c, ast.Call)
             and getattr(c.func, "id", "") == "DeclareLaunchArgument" and isinstance(c.args[0], ast.Constant)}
    overrides = next(ast.literal_eval(a.value) for a in ast.walk(tree) if isinstance(a, ast.Assign)
                     and getattr(a.targets[0], "id", "") == "OVERRIDES")
    return named, set(overrides)
