"""The paper's tables as text: Table 2 (:func:`compare_table`), Figures 2 and 3
(:func:`bucket_table`) and the epochs each run took (:func:`convergence_table`).

Every table shows fractions × 100 with one decimal and, for several seeds, the mean ± the
sample std. :data:`METRIC_LABELS` are the one set of display names of the metrics (those of
the coding systems are :data:`jams_pyg.icd.codes.SYSTEM_LABELS`); :data:`MISSING` fills a cell
without a value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jams_pyg.eval.buckets import bucket_series
from jams_pyg.eval.names import METRIC_KEYS, METRIC_LABELS
from jams_pyg.icd.codes import SYSTEM_LABELS

MISSING = "–"
"""The cell of a value that is missing (no run, no evaluated code, ``None`` or ``nan``)."""


def mean_std(values: Sequence[float | None]) -> tuple[float, float | None] | None:
    """Mean and sample std of the finite ``values`` (``None`` and ``nan`` left out); the std
    is ``None`` for one value, the whole result ``None`` for none."""
    finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not finite:
        return None
    mean = float(np.mean(finite))
    std = float(np.std(finite, ddof=1)) if len(finite) > 1 else None
    return mean, std


def _cell(values: Sequence[float | None], show_std: bool) -> str:
    stats = mean_std(values)
    if stats is None:
        return MISSING
    mean, std = stats
    text = f"{100 * mean:.1f}"
    if show_std and std is not None:
        text += f" ± {100 * std:.1f}"
    return text


def seed_runs(entry: Any) -> list[Any]:
    """One result or a list of results (one per seed) -> list (``None`` -> ``[]``)."""
    if entry is None:
        return []
    if isinstance(entry, Mapping):
        return [entry]
    return list(entry)


def results_by_label(
    runs: Sequence[Mapping[str, Any]], part: str = "metrics"
) -> dict[str, dict[str, list[Any]]]:
    """``{label: {system: [part of each run]}}`` of experiment runs (``metrics.json``
    payloads), ready for :func:`compare_table` (``part="metrics"``) or :func:`bucket_table`
    (``part="buckets"``); runs of one label are its seeds, in the order given."""
    table: dict[str, dict[str, list[Any]]] = {}
    for run in runs:
        for system, result in run["systems"].items():
            table.setdefault(run["label"], {}).setdefault(system, []).append(result[part])
    return table


def _render(
    header: list[str], rows: list[list[str]], fmt: str, groups: list[tuple[str, int]]
) -> str:
    """Markdown, or plain aligned text under a line naming each group of columns."""
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |"]
        lines.append("|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    if fmt != "plain":
        raise ValueError(f"fmt must be 'markdown' or 'plain', got {fmt!r}")
    table = [header, *rows]
    widths = [max(len(row[col]) for row in table) for col in range(len(header))]
    sep = "  "
    group_line = " " * widths[0]
    col = 1
    for name, span in groups:
        width = sum(widths[col : col + span]) + len(sep) * (span - 1)
        group_line += sep + name.center(width, "-" if span > 1 else " ")
        col += span
    lines = [group_line.rstrip()]
    for row in table:
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append(sep.join(cells).rstrip())
    return "\n".join(lines)


def compare_table(
    results: Mapping[str, Mapping[str, Any]],
    systems: Sequence[str] = ("icd9", "icd10"),
    metrics: Sequence[str] = METRIC_KEYS,
    fmt: str = "markdown",
    show_std: bool = True,
) -> str:
    r"""Table 2: one row per model, the metrics of each system as columns, × 100, one decimal.

    Args:
        results: ``{model: {system: metrics}}`` where ``metrics`` is the dict of
            :func:`~jams_pyg.eval.metrics.compute_metrics` or a list of such dicts, one per seed
            (shown as mean ± sample std over the seeds).
        systems: the systems to show, in order. (default: ``("icd9", "icd10")``)
        metrics: the metric keys to show. (default: :data:`~jams_pyg.eval.names.METRIC_KEYS`)
        fmt: ``"markdown"`` (columns "ICD-9 F1 macro", ...) or ``"plain"`` (aligned text
            with a system header line). (default: ``"markdown"``)
        show_std: append ``± std`` when there are several seeds. (default: :obj:`True`)

    A model without a system or metric (or with ``nan``) shows ``–``.
    """
    unknown = [key for key in metrics if key not in METRIC_LABELS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {list(METRIC_LABELS)}")
    if not results:
        raise ValueError("results is empty")
    header = ["Model"]
    for system in systems:
        for key in metrics:
            label = METRIC_LABELS[key]
            header.append(
                f"{SYSTEM_LABELS.get(system, system)} {label}" if fmt != "plain" else label
            )
    rows = []
    for model, per_system in results.items():
        row = [str(model)]
        for system in systems:
            runs = seed_runs(per_system.get(system))
            for key in metrics:
                row.append(_cell([run.get(key) for run in runs], show_std) if runs else MISSING)
        rows.append(row)
    groups = [(SYSTEM_LABELS.get(s, s), len(metrics)) for s in systems]
    return _render(header, rows, fmt, groups)


def bucket_table(
    bucket_results: Mapping[str, Mapping[str, Any]],
    systems: Sequence[str] = ("icd9", "icd10"),
    fmt: str = "markdown",
    show_std: bool = True,
) -> str:
    """Figures 2 and 3 as a table: macro-F1 × 100 per model (rows) and group (columns).

    Args:
        bucket_results: ``{model: {system: bucket_macro_f1(...)}}`` (or a list per seed).
        systems, fmt, show_std: as :func:`compare_table`. The header gives each group's
            number of evaluated codes, e.g. ``ICD-9 1-100 (n=37)``.
    """
    if not bucket_results:
        raise ValueError("bucket_results is empty")
    columns: list[tuple[str, str]] = []  # (system, group label)
    counts: dict[tuple[str, str], int] = {}
    for per_system in bucket_results.values():
        for system in systems:
            runs = seed_runs(per_system.get(system))
            if not runs:
                continue
            for label, num_codes, _ in bucket_series(runs):
                if (system, label) not in counts:
                    columns.append((system, label))
                    counts[(system, label)] = num_codes
    columns.sort(key=lambda column: list(systems).index(column[0]))
    header = ["Model"]
    for system, label in columns:
        text = f"{label} (n={counts[(system, label)]})"
        header.append(f"{SYSTEM_LABELS.get(system, system)} {text}" if fmt != "plain" else text)
    rows = []
    for model, per_system in bucket_results.items():
        values: dict[tuple[str, str], list[float | None]] = {}
        for system in systems:
            runs = seed_runs(per_system.get(system))
            if runs:
                for label, _, run_values in bucket_series(runs):
                    values[(system, label)] = run_values
        rows.append(
            [str(model)]
            + [
                _cell(values[column], show_std) if column in values else MISSING
                for column in columns
            ]
        )
    groups = [
        (SYSTEM_LABELS.get(s, s), sum(1 for c in columns if c[0] == s))
        for s in systems
        if any(c[0] == s for c in columns)
    ]
    return _render(header, rows, fmt, groups)


def convergence_rows(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per run and trained model: epochs run, best epoch, the epoch cap, and whether early
    stopping ended it (rather than the cap)."""
    rows = []
    for run in runs:
        for group, meta in run.get("training", {}).items():
            summary = meta["training"]
            cap = meta.get("train_config", {}).get("epochs")
            rows.append({"label": run["label"], "seed": run["seed"], "model": group,
                         "epochs_run": summary["epochs_run"], "best_epoch": summary["best_epoch"],
                         "epochs_cap": cap,
                         "early_stopped": None if cap is None else summary["epochs_run"] < cap})
    return rows


def convergence_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown of :func:`convergence_rows`: per label and trained model, the epochs run and
    the best epoch of every seed, and how many seeds stopped early."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["label"], row["model"]), []).append(row)
    lines = ["| Run | Trained on | seeds | epochs run | best epoch | stopped early |",
             "|:---|:---|---:|---|---|---:|"]
    for (label, model), items in groups.items():
        run = ", ".join(str(r["epochs_run"]) for r in items)
        best = ", ".join(str(r["best_epoch"]) for r in items)
        early = sum(bool(r["early_stopped"]) for r in items)
        lines.append(f"| {label} | {model} | {len(items)} | {run} | {best} | "
                     f"{early}/{len(items)} |")
    return "\n".join(lines)


__all__ = [
    "MISSING",
    "bucket_table",
    "compare_table",
    "convergence_rows",
    "convergence_table",
    "mean_std",
    "results_by_label",
    "seed_runs",
]
