"""Import and start-up cost of jams_pyg beside PyTorch Geometric, measured side by side.

For each statement a fresh interpreter runs ``python -X importtime -c STATEMENT``; the cost
is the sum of the cumulative times of the top-level imports it makes beyond those of
``python -c pass`` (the interpreter's own start-up), and the process's user CPU time. Each
statement runs ``--repeats`` times, interleaved, and the least of each is reported (the
least is the one the machine disturbed least). Also measured: ``jams-pyg --help`` and
``jams-pyg train --help`` as whole processes.

    python benchmarks/import_cost.py            # table + benchmarks/results/import_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

STATEMENTS = {
    "import torch_geometric": "import torch_geometric",
    "import jams_pyg": "import jams_pyg",
    "from jams_pyg import MATConv, GEMGraph": "from jams_pyg import MATConv, GEMGraph",
    "from jams_pyg import MATConv, GEMGraph, build_model, compute_metrics":
        "from jams_pyg import MATConv, GEMGraph, build_model, compute_metrics",
}
COMMANDS = {
    "jams-pyg --help": ["-m", "jams_pyg", "--help"],
    "jams-pyg train --help": ["-m", "jams_pyg", "train", "--help"],
    "jams-pyg predict --help": ["-m", "jams_pyg", "predict", "--help"],
}


def top_level_import_us(stderr: str) -> dict[str, int]:
    """``{module: cumulative µs}`` of the top-level imports in ``-X importtime`` output."""
    out = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "| imported package" in line:
            continue
        _, cumulative, name = line[len("import time:"):].split("|")
        if not name.startswith("  "):  # more indentation marks a nested import
            out[name.strip()] = int(cumulative)
    return out


def run(args: list[str], importtime: bool) -> tuple[dict[str, int], float, float]:
    """Top-level imports (with ``importtime``), wall seconds and user CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    start = time.perf_counter()
    result = subprocess.run([sys.executable, *(["-X", "importtime"] if importtime else []),
                             *args], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    user = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - before
    return (top_level_import_us(result.stderr) if importtime else {}), wall, user


def measure(repeats: int) -> dict[str, dict[str, float]]:
    base: list[dict[str, int]] = []
    samples: dict[str, list[tuple[float, float, float]]] = {k: [] for k in
                                                            [*STATEMENTS, *COMMANDS]}
    for _ in range(repeats):  # interleaved: every statement sees the same machine
        base.append(run(["-c", "pass"], True)[0])
        for name, statement in STATEMENTS.items():
            modules, wall, user = run(["-c", statement], True)
            samples[name].append((sum(modules.values()) / 1e6, wall, user))
        for name, argv in COMMANDS.items():
            _, wall, user = run(argv, False)
            samples[name].append((float("nan"), wall, user))
    startup = min(sum(b.values()) for b in base) / 1e6
    results = {}
    for name, rows in samples.items():
        importtime = min(r[0] for r in rows) - startup if name in STATEMENTS else None
        results[name] = {"importtime_s": importtime, "wall_s": min(r[1] for r in rows),
                         "user_s": min(r[2] for r in rows)}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per statement")
    parser.add_argument("--out", default="benchmarks/results/import_cost.json",
                        help="JSON results file")
    args = parser.parse_args(argv)
    results = measure(args.repeats)
    reference = results["import torch_geometric"]["importtime_s"]
    lines = ["| command | -X importtime | user CPU | wall |", "|---|---:|---:|---:|"]
    for name, r in results.items():
        cost = "–" if r["importtime_s"] is None else f"{r['importtime_s']:.2f} s"
        if r["importtime_s"] is not None and name != "import torch_geometric":
            cost += f" ({100 * (r['importtime_s'] / reference - 1):+.0f} %)" \
                if r["importtime_s"] > 0.5 * reference else ""
        lines.append(f"| `{name}` | {cost} | {r['user_s']:.2f} s | {r['wall_s']:.2f} s |")
    table = "\n".join(lines)
    print(table)
    payload = {"results": results, "repeats": args.repeats, "table": table,
               "python": platform.python_version(), "cpus": os.cpu_count(),
               "note": "least of the repeats; importtime beyond `python -c pass`"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
