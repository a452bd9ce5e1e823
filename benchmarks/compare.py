"""Side by side: the runs of two or more ``benchmarks/window.py --json`` files as one markdown table.

    .venv/bin/python benchmarks/compare.py before=docs/results/window_before.json \
        now=docs/results/window.json

Each argument is ``LABEL=FILE`` (or just ``FILE``, labelled by its overrides);
rows are the runs the files share, in the first file's order.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def cells(s: dict) -> list[str]:
    return [f"{s['rot_median_deg']:.3f} / {s['rot_p95_deg']:.2f}",
            f"{100 * s['trans_median_m']:.2f} / {100 * s['trans_p95_m']:.1f}",
            f"{100 * s['success_rate']:.0f} %", f"{100 * s['coverage_3sigma']:.0f} %",
            f"{100 * s['converged_rate']:.0f} % ({s['false_convergences']})",
            f"{s['time_ms_median'] / 1e3:.1f}"]


def table(results: list[tuple[str, dict]]) -> str:
    head = ["run", "variant", "rotation median / p95 [°]", "translation median / p95 [cm]", "success",
            "3σ", "converged (false)", "s / window"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for run in results[0][1]["runs"]:
        for label, data in results:
            if run in data["runs"]:
                lines.append("| " + " | ".join([run, label] + cells(data["runs"][run]["summary"])) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+", help="LABEL=FILE or FILE (window.py --json outputs)")
    args = ap.parse_args()
    results = []
    for item in args.files:
        label, sep, path = item.partition("=")
        if not sep:
            label, path = "", item
        data = json.loads(Path(path).read_text())
        results.append((label or ", ".join(data.get("overrides", [])) or "defaults", data))
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
