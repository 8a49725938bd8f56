"""The report of one or more runs: ``report.md`` (the paper's Table 2 and the Figure 2/3
table, markdown), ``buckets.png``, and the same tables printed one system at a time, so that
they fit a terminal."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jams_pyg.atomic import atomic_write_text
from jams_pyg.eval.plots import plot_buckets
from jams_pyg.eval.tables import bucket_table, compare_table, results_by_label
from jams_pyg.icd.codes import SYSTEMS

METRICS_TITLE = "Test metrics (x100; thresholds tuned on validation)"
BUCKETS_TITLE = ("Macro-F1 (x100) by training frequency and, for the rarest codes, by GEM "
                 "link; n = the group's codes that occur in the test split (a code without a "
                 "test document has no F1)")


def write_report(runs: Sequence[Mapping[str, Any]], out: Path,
                 systems: Sequence[str] = SYSTEMS, echo: bool = True) -> str:
    """Write ``out/report.md`` and ``out/buckets.png`` for ``runs`` (``metrics.json``
    payloads; several runs of one label are its seeds, shown as mean ± std), print the
    tables one system at a time (unless not ``echo``: a command that prints the report of
    all its runs at the end) and return the markdown report."""
    metrics = results_by_label(runs, "metrics")
    buckets = results_by_label(runs, "buckets")
    plot_buckets(buckets, out / "buckets.png", systems=systems)
    report = (f"{METRICS_TITLE}\n\n{compare_table(metrics, systems=systems)}\n\n"
              f"{BUCKETS_TITLE}\n\n{bucket_table(buckets, systems=systems)}\n")
    atomic_write_text(out / "report.md", report)
    if not echo:
        return report
    print(f"\n{METRICS_TITLE}\n")
    for system in systems:
        print(compare_table(metrics, systems=[system], fmt="plain") + "\n")
    print(f"{BUCKETS_TITLE}\n")
    for system in systems:
        print(bucket_table(buckets, systems=[system], fmt="plain") + "\n")
    return report


__all__ = ["write_report"]
