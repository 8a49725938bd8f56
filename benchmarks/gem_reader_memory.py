"""Peak memory of :func:`jams_pyg.icd.gem.read_gem_file`, and of the whole ``jams-pyg graph``
command, as the GEM file grows.

**The graph command.** ``jams-pyg graph --icd10-gem FILE`` runs in a fresh process on the
shipped CMS 2018 backward GEM, uncompressed (5 MiB), and on the same lines repeated 40
times (``--repeat``; 64 MiB, the same distinct links); its peak RSS (``ru_maxrss`` of the
waited-for child) is reported for both, and their difference. The graph build keeps only
distinct links, so the repeated file should cost little more than the original (target:
less than 100 MiB more). Before it did (every line kept until the graph was built), the
40x file peaked 990 MiB above the original (issue #23).

**The reader.**

Writes GEM files of the given sizes (default 10 and 40 MB) by repeating the
lines of the shipped CMS 2018 backward GEM (``2018_I10gem.txt``), and a file
of the largest size without any newline, in a temporary folder. Each file is
read in a fresh subprocess that reports its own ``ru_maxrss`` before and after
the read, and the size of the returned DataFrame
(``memory_usage(deep=True)``: Arrow string buffers and numpy columns).

* ``peak_growth_mb``: peak RSS during the read minus the RSS after imports;
* ``result_mb``: what the returned table itself holds (grows with the rows:
  the reader returns every line);
* ``overhead_mb`` = ``peak_growth_mb - result_mb``: the reader's own working
  memory. A streaming reader keeps it flat in the file size (one chunk of
  rows, one line of at most ``MAX_GEM_LINE_BYTES``); reading the whole file or
  a list of per-line tuples makes it grow with the file.

The no-newline file must fail fast (a bounded line length) with a short
message, not read the whole line into memory.

Before the reader streamed (a list of per-line tuples, then a DataFrame), a
3.6 MiB file gave 78 MiB of overhead and a 9.6 MiB one 200 MiB (~20x the
file), and an 8 MiB file without a newline peaked at +108 MiB and quoted the
whole line in its error. Now (``results/gem_reader_memory.json``): 5.8 MiB of
overhead at 10 MiB, 12.8 MiB at 40 MiB; the no-newline file fails after
reading 257 bytes.

Usage::

    python benchmarks/gem_reader_memory.py [--sizes-mb 10 40] [--repeat 40]
        [--output benchmarks/results/gem_reader_memory.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
from jams_pyg.icd.gem import read_gem_file

def rss_mb():
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20

before = rss_mb()
start = time.perf_counter()
error = None
rows = 0
result = 0.0
try:
    frame = read_gem_file(sys.argv[1])
    rows = len(frame)
    result = float(frame.memory_usage(deep=True).sum()) / 2**20
except ValueError as err:
    error = str(err)
seconds = time.perf_counter() - start
print(json.dumps({"baseline_mb": before, "peak_mb": rss_mb(), "result_mb": result,
                  "rows": rows, "seconds": seconds, "error": error}))
"""


def write_gem(path: Path, size_bytes: int, newline: bool = True) -> int:
    """Write a GEM file of about ``size_bytes`` bytes (real CMS lines repeated;
    without ``newline`` they are joined by spaces into one line); returns its size."""
    from jams_pyg.icd.gem import cms_2018_gem_paths

    block = gzip.decompress(cms_2018_gem_paths()[1].read_bytes())
    if not newline:
        block = block.replace(b"\n", b" ")
    written = 0
    with open(path, "wb") as handle:
        while written < size_bytes:
            part = block[: size_bytes - written]
            if newline and len(part) < len(block):
                part = part[: part.rfind(b"\n") + 1]
                if not part:
                    break
            handle.write(part)
            written += len(part)
    return written


def measure(path: Path) -> dict:
    """Read ``path`` in a fresh interpreter; its own RSS report."""
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path)], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"reading {path} failed: {proc.stderr[-2000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report["peak_growth_mb"] = report["peak_mb"] - report["baseline_mb"]
    report["overhead_mb"] = report["peak_growth_mb"] - report["result_mb"]
    return report


def graph_command(path: Path) -> dict:
    """Peak RSS and time of ``jams-pyg graph --icd10-gem path`` in a fresh process
    (``ru_maxrss`` of that child, from :func:`os.wait4`)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jams_pyg", "graph", "--icd10-gem", str(path)],
            cwd=ROOT, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"jams-pyg graph on {path} failed: {err.read().decode()[-2000:]}")
        summary = out.read().decode().strip().splitlines()[:3]
    kib = usage.ru_maxrss
    return {"peak_rss_mb": round(kib / 1024 if sys.platform != "darwin" else kib / 2**20, 1),
            "seconds": round(seconds, 1), "summary": summary}


def run_graph(repeat: int, work: Path) -> dict:
    """``jams-pyg graph`` on the original backward GEM and on its lines repeated."""
    from jams_pyg.icd.gem import cms_2018_gem_paths

    block = gzip.decompress(cms_2018_gem_paths()[1].read_bytes())
    original, repeated = work / "2018_I10gem.txt", work / f"2018_I10gem_x{repeat}.txt"
    original.write_bytes(block)
    with open(repeated, "wb") as handle:
        for _ in range(repeat):
            handle.write(block)
    big = graph_command(repeated)
    small = graph_command(original)
    if big["summary"] != small["summary"]:
        raise RuntimeError(f"the graphs differ: {small['summary']} vs {big['summary']}")
    result = {
        "original_mb": round(original.stat().st_size / 2**20, 1),
        "repeated_mb": round(repeated.stat().st_size / 2**20, 1),
        "repeat": repeat,
        "original_peak_rss_mb": small["peak_rss_mb"],
        "repeated_peak_rss_mb": big["peak_rss_mb"],
        "extra_mb": round(big["peak_rss_mb"] - small["peak_rss_mb"], 1),
        "original_seconds": small["seconds"],
        "repeated_seconds": big["seconds"],
        "summary": small["summary"],
    }
    original.unlink()
    repeated.unlink()
    return result


def run(sizes_mb: list[float], work: Path) -> list[dict]:
    results = []
    cases = [(size, True) for size in sizes_mb] + [(max(sizes_mb), False)]
    for size, newline in cases:
        path = work / f"gem_{size:g}mb{'' if newline else '_one_line'}.txt"
        file_bytes = write_gem(path, int(size * 2**20), newline=newline)
        report = measure(path)
        path.unlink()
        error = report.pop("error")
        results.append({
            "file": "lines" if newline else "no newline",
            "file_mb": round(file_bytes / 2**20, 2),
            "rows": report["rows"],
            "peak_growth_mb": round(report["peak_growth_mb"], 1),
            "result_mb": round(report["result_mb"], 1),
            "overhead_mb": round(report["overhead_mb"], 1),
            "seconds": round(report["seconds"], 2),
            "error": error if error is None else error[:200],
            "error_chars": 0 if error is None else len(error),
        })
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[10.0, 40.0],
                        help="GEM file sizes in MiB (default: 10 40)")
    parser.add_argument("--output",
                        default=str(ROOT / "benchmarks/results/gem_reader_memory.json"),
                        help="JSON report (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=40,
                        help="times the backward GEM's lines are repeated for the graph "
                        "command (default: 40)")
    args = parser.parse_args(argv)
    if any(size <= 0 for size in args.sizes_mb):
        parser.error("--sizes-mb must be positive")
    if args.repeat < 2:
        parser.error("--repeat must be at least 2")
    work = Path(tempfile.mkdtemp(prefix="jams_gem_bench_"))
    try:
        graph = run_graph(args.repeat, work)
        results = run(args.sizes_mb, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"jams-pyg graph: {graph['original_mb']} MiB file peaks at "
          f"{graph['original_peak_rss_mb']} MiB RSS, the {graph['repeat']}x file "
          f"({graph['repeated_mb']} MiB) at {graph['repeated_peak_rss_mb']} MiB: "
          f"+{graph['extra_mb']} MiB")
    print(f"{'file':11s} {'MiB':>7s} {'rows':>9s} {'peak+ MiB':>10s} {'result MiB':>11s} "
          f"{'overhead MiB':>13s} {'s':>6s}  error")
    for r in results:
        print(f"{r['file']:11s} {r['file_mb']:7.1f} {r['rows']:9d} {r['peak_growth_mb']:10.1f} "
              f"{r['result_mb']:11.1f} {r['overhead_mb']:13.1f} {r['seconds']:6.2f}  "
              f"{'' if r['error'] is None else r['error'][:60] + ' ...'}")
    report = {
        "benchmark": "gem_reader_memory",
        "description": "graph_command: peak RSS of 'jams-pyg graph --icd10-gem FILE' on "
                       "the CMS 2018 backward GEM and on its lines repeated; results: "
                       "read_gem_file in a fresh subprocess: peak RSS growth over the "
                       "post-import RSS, the returned DataFrame's size, and the reader's "
                       "own overhead (growth - result) for GEM files of growing size and "
                       "one file without a newline",
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "graph_command": graph,
        "results": results,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
