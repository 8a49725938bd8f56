"""How much the default run's numbers move across CPUs: the README command under other ATen kernels.

``python examples/train_laat.py`` is one draw. Its weights are not bit-stable across CPUs:
ATen picks vector kernels per CPU (AVX-512, AVX2, scalar), each with its own summation order,
and a 1e-5 difference after one epoch changes the early-stopping trajectory. This driver
re-runs the default command (seed 0, everything else as the README states) under each kernel
forced with ``ATEN_CPU_CAPABILITY`` (the one this CPU picks by itself, ``avx2``, ``default`` =
scalar), one run at a time, and keeps each run's ``metrics.json`` and log in
``--results-dir/<kernel>/``. A finished kernel is skipped, so the driver resumes. The spread
across seeds comes from ``jams_vs_backbone.py`` (whose seed 0 *is* the default run, on one
thread); ``readme_tables.py --default-run`` puts both beside each other for the README.

The thread count is a draw of the same kind: MATConv's sparse kernels split their sums
across threads. ``--threads N`` runs with ``OMP_NUM_THREADS=N`` into
``<kernel>-threads<N>/``; ``--kernels native --threads 2`` is the README command as typed
on this 2-core machine (torch's default thread count), where the other runs use one thread.

Example::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/default_run_spread.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ("native", "avx2", "default")


def run_name(kernel: str, threads: int | None) -> str:
    """The results folder of a run: ``<kernel>``, or ``<kernel>-threads<N>`` for a run
    with its thread count set."""
    return kernel if threads is None else f"{kernel}-threads{threads}"


def parse_run_name(name: str) -> tuple[str, int | None]:
    """``(kernel, threads)`` of a results folder named by :func:`run_name`."""
    kernel, _, threads = name.partition("-threads")
    if kernel not in KERNELS or (threads and not threads.isdigit()):
        raise ValueError(f"not a default_run_spread results folder: {name!r}")
    return kernel, int(threads) if threads else None


def run_kernel(kernel: str, results_dir: Path, work_dir: Path,
               extra: tuple[str, ...] = (), threads: int | None = None) -> None:
    name = run_name(kernel, threads)
    out = results_dir / name
    if (out / "metrics.json").exists():
        print(f"{name}: done before, skipped")
        return
    run_dir = work_dir / name
    if run_dir.exists():  # an interrupted run: start it again (the whole run is one draw)
        shutil.rmtree(run_dir)
    env = dict(os.environ)
    env.pop("ATEN_CPU_CAPABILITY", None)
    if kernel != "native":
        env["ATEN_CPU_CAPABILITY"] = kernel
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(out / "run.log", "w") as log:
        subprocess.run([sys.executable, str(ROOT / "examples/train_laat.py"), "--no-progress",
                        "--output-dir", str(run_dir), *extra], env=env, stdout=log,
                       stderr=subprocess.STDOUT, check=True)
    shutil.copy(run_dir / "metrics.json", out / "metrics.json")
    shutil.copy(run_dir / "report.md", out / "report.md")
    print(f"{name}: {time.perf_counter() - start:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernels", nargs="+", choices=KERNELS, default=list(KERNELS))
    parser.add_argument("--threads", type=int,
                        help="run with OMP_NUM_THREADS set to this (results folder "
                             "<kernel>-threads<N>; the summation order of the sparse kernels "
                             "depends on it); default: the thread count of this shell, which "
                             "the committed kernel runs set to 1, as jams_vs_backbone.py's")
    parser.add_argument("--results-dir", type=Path,
                        default=ROOT / "benchmarks/results/default_run_spread")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "outputs/default_run_spread",
                        help="where the runs write their checkpoints and bundles")
    parser.add_argument("--procedure-links", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="link procedure codes through the shipped forward procedure "
                             "GEM, and draw the corpus' procedure codes through it (default: "
                             "on, ExperimentConfig.procedure_links)")
    args = parser.parse_args(argv)
    extra = () if args.procedure_links else ("--no-procedure-links",)
    for kernel in args.kernels:
        run_kernel(kernel, args.results_dir, args.work_dir, extra, args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
