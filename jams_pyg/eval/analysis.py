r"""The analyses of the JAMS paper: Table 2, Figure 2 and Figure 3.

* **Figure 2** — macro-F1 by training frequency: the codes are grouped by how many training
  documents carry them (1–100, 101–1000, 1001+, :data:`FREQUENCY_BUCKETS`) and the macro-F1
  of each group on the test split is compared between the backbone and the backbone + JAMS.
* **Figure 3** — inside the rarest group, macro-F1 of the codes with a GEM link (an edge to
  the other system in :class:`~jams_pyg.GEMGraph`, ``graph.linked(system)``) versus those
  without one.
* **Table 2** — the nine metrics of :mod:`jams_pyg.eval.metrics` per system, × 100.

**Scaling the buckets.** The bucket edges are training-document counts of MIMIC-IV
(~154k ICD-9 and ~89k ICD-10 training documents). On a smaller corpus, such as the embedded
synthetic one, no code reaches 1001 occurrences, so :func:`scale_buckets` multiplies every
upper edge by a factor ``scale`` (rounded, at least 1) and starts every bucket one past the
previous upper edge: ``scale=0.01`` turns (1–100, 101–1000, 1001+) into (1–1, 2–10, 11+).
:func:`frequency_scale` gives the factor that keeps the buckets at the same *relative*
frequency as on MIMIC-IV (training documents of the corpus / of MIMIC-IV).

A macro-F1 of a group averages :func:`~jams_pyg.eval.metrics.per_code_f1` over the group's codes
present in the evaluated split (those with a ``nan`` F1 are absent from the split and only
counted in ``num_absent``); codes never seen in training form the separate group
``"unseen"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jams_pyg.eval.metrics import METRIC_KEYS

Bucket = tuple[int, int | None]

FREQUENCY_BUCKETS: tuple[Bucket, ...] = ((1, 100), (101, 1000), (1001, None))
"""Training-frequency groups of the paper's Figure 2 (inclusive; ``None``: no upper edge)."""

MIMIC_IV_TRAIN_DOCS: dict[str, int] = {
    "icd9": round(209_326 * 0.738),
    "icd10": round(122_279 * 0.729),
}
"""Approximate training documents of MIMIC-IV per system (documents × train share, Table 1)."""

METRIC_LABELS: dict[str, str] = {
    "auc_micro": "AUC micro",
    "auc_macro": "AUC macro",
    "f1_micro": "F1 micro",
    "f1_macro": "F1 macro",
    "exact_match": "EMR",
    "precision@8": "P@8",
    "precision@15": "P@15",
    "r_precision": "R-prec",
    "map": "MAP",
}
SYSTEM_LABELS: dict[str, str] = {"icd9": "ICD-9", "icd10": "ICD-10"}
MISSING = "–"


# --------------------------------------------------------------------------------------------
# frequency buckets
# --------------------------------------------------------------------------------------------


def bucket_label(bucket: Bucket) -> str:
    """``(1, 100)`` -> ``"1-100"``, ``(1001, None)`` -> ``"1001+"``."""
    low, high = bucket
    return f"{low}+" if high is None else f"{low}-{high}"


def _check_buckets(buckets: Sequence[Bucket]) -> tuple[Bucket, ...]:
    buckets = tuple((int(low), None if high is None else int(high)) for low, high in buckets)
    if not buckets:
        raise ValueError("buckets is empty")
    expected_low = 1
    for position, (low, high) in enumerate(buckets):
        if low != expected_low:
            raise ValueError(
                f"buckets[{position}] = {(low, high)} must start at {expected_low}: buckets "
                "must cover 1, 2, ... contiguously so that every seen code has one bucket"
            )
        if high is None:
            if position != len(buckets) - 1:
                raise ValueError(f"buckets[{position}] is open-ended but not the last bucket")
            break
        if high < low:
            raise ValueError(
                f"buckets[{position}] = {(low, high)} has its upper edge below its lower edge"
            )
        expected_low = high + 1
    if buckets[-1][1] is not None:
        raise ValueError(f"the last bucket {buckets[-1]} must be open-ended (upper edge None)")
    return buckets


def scale_buckets(
    buckets: Sequence[Bucket] = FREQUENCY_BUCKETS, scale: float = 1.0
) -> tuple[Bucket, ...]:
    """Buckets for a corpus ``scale`` times the size of MIMIC-IV (see the module docstring).

    Every upper edge becomes ``max(1, round(high * scale))`` and every lower edge the previous
    upper edge + 1. Raises ``ValueError`` when two buckets collapse into one.

    Example:
        >>> scale_buckets(FREQUENCY_BUCKETS, 0.05)
        ((1, 5), (6, 50), (51, None))
    """
    buckets = _check_buckets(buckets)
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    out: list[Bucket] = []
    low = 1
    for original_low, high in buckets:
        if high is None:
            out.append((low, None))
            break
        new_high = max(1, round(high * scale))
        if new_high < low:
            raise ValueError(
                f"scale={scale} is too small: bucket {bucket_label((original_low, high))} "
                f"collapses into the previous one (upper edge {new_high} < lower edge {low})"
            )
        out.append((low, new_high))
        low = new_high + 1
    return tuple(out)


def frequency_scale(num_train_docs: int, system: str) -> float:
    """``num_train_docs`` / the MIMIC-IV training documents of ``system`` ("icd9"|"icd10")."""
    if system not in MIMIC_IV_TRAIN_DOCS:
        raise ValueError(f"system must be one of {sorted(MIMIC_IV_TRAIN_DOCS)}, got {system!r}")
    if num_train_docs <= 0:
        raise ValueError(f"num_train_docs must be positive, got {num_train_docs}")
    return num_train_docs / MIMIC_IV_TRAIN_DOCS[system]


def code_frequencies(target_lists: Iterable[Iterable[str]], codes: Sequence[str]) -> np.ndarray:
    """Number of documents carrying each code (a code counted once per document).

    Args:
        target_lists: the code list of every training document (e.g. ``ds.train["target"]``).
        codes: the label vocabulary (``CodingDataset.codes``), in label-index order.

    Returns:
        np.ndarray: int64 counts :math:`(C,)`. A code missing from ``codes`` raises
        ``ValueError`` naming the document.
    """
    index = {code: position for position, code in enumerate(codes)}
    counts = np.zeros(len(index), dtype=np.int64)
    for doc, targets in enumerate(target_lists):
        if isinstance(targets, str):
            raise TypeError(f"document {doc}: targets must be a list of codes, not a string")
        for code in set(targets):
            try:
                counts[index[code]] += 1
            except KeyError:
                raise ValueError(
                    f"document {doc}: code {code!r} is not in the label vocabulary"
                ) from None
    return counts


def _as_array(values: Any, name: str, length: int | None = None) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D [codes], got shape {array.shape}")
    if length is not None and len(array) != length:
        raise ValueError(f"{name} has {len(array)} entries but per_code_f1 has {length}")
    return array


def _group(f1: np.ndarray, members: np.ndarray) -> dict[str, Any]:
    values = f1[members]
    present = ~np.isnan(values)
    return {
        "macro_f1": float(values[present].mean()) if present.any() else None,
        "num_codes": int(present.sum()),
        "num_absent": int((~present).sum()),
    }


def bucket_macro_f1(
    per_code_f1: Any,
    train_counts: Any,
    linked: Any = None,
    buckets: Sequence[Bucket] = FREQUENCY_BUCKETS,
    scale: float = 1.0,
) -> dict[str, Any]:
    r"""Macro-F1 by training-frequency bucket (Figure 2) and by GEM link (Figure 3).

    Args:
        per_code_f1 (np.ndarray): test F1 per code, ``nan`` for codes absent from the test
            split (:func:`jams_pyg.eval.metrics.per_code_f1`).
        train_counts (np.ndarray): training documents per code (:func:`code_frequencies`).
        linked (np.ndarray or torch.BoolTensor, optional): whether each code has a GEM link
            (``GEMGraph.linked(system)``); adds the Figure 3 split of the rarest bucket.
        buckets: contiguous buckets starting at 1, the last open-ended.
            (default: :data:`FREQUENCY_BUCKETS`)
        scale (float, optional): bucket scale, see :func:`scale_buckets`. (default: 1.0)

    Shapes:
        - **input:** per_code_f1 :math:`(C,)`, train_counts :math:`(C,)`, linked :math:`(C,)`

    Returns:
        dict: JSON-ready, macro-F1 as fractions (``None`` for a group without evaluated codes)::

            {"scale": 1.0,
             "buckets": {"1-100": {"low": 1, "high": 100, "macro_f1": 0.21,
                                   "num_codes": 830, "num_absent": 412}, ...},
             "unseen": {"macro_f1": ..., "num_codes": ..., "num_absent": ...},
             "linkage": {"bucket": "1-100",          # only with ``linked``
                         "with_link": {...}, "without_link": {...}}}
    """
    f1 = _as_array(per_code_f1, "per_code_f1").astype(np.float64)
    counts = _as_array(train_counts, "train_counts", len(f1))
    if counts.dtype.kind not in "iu" and not np.all(np.mod(counts, 1) == 0):
        raise ValueError("train_counts must hold whole numbers of documents")
    counts = counts.astype(np.int64)
    if (counts < 0).any():
        raise ValueError(f"train_counts has a negative entry at code {int(np.argmin(counts))}")
    finite = np.isnan(f1) | ((f1 >= 0) & (f1 <= 1))
    if not finite.all():
        raise ValueError(
            f"per_code_f1 must be in [0, 1] or nan; code {int(np.argmin(finite))} has "
            f"{f1[np.argmin(finite)]!r}"
        )
    scaled = scale_buckets(buckets, scale)
    result: dict[str, Any] = {"scale": float(scale), "buckets": {}}
    masks = []
    for low, high in scaled:
        members = (counts >= low) & (True if high is None else counts <= high)
        masks.append(members)
        result["buckets"][bucket_label((low, high))] = {
            "low": low,
            "high": high,
            **_group(f1, members),
        }
    result["unseen"] = _group(f1, counts == 0)
    if linked is not None:
        link = _as_array(linked, "linked", len(f1))
        if link.dtype != np.bool_:
            if not np.isin(link, (0, 1)).all():
                raise ValueError("linked must be a boolean mask")
            link = link.astype(bool)
        result["linkage"] = {
            "bucket": bucket_label(scaled[0]),
            "with_link": _group(f1, masks[0] & link),
            "without_link": _group(f1, masks[0] & ~link),
        }
    return result


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------


def _mean_std(values: Sequence[float | None]) -> tuple[float, float | None] | None:
    finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not finite:
        return None
    mean = float(np.mean(finite))
    std = float(np.std(finite, ddof=1)) if len(finite) > 1 else None
    return mean, std


def _cell(values: Sequence[float | None], show_std: bool) -> str:
    stats = _mean_std(values)
    if stats is None:
        return MISSING
    mean, std = stats
    text = f"{100 * mean:.1f}"
    if show_std and std is not None:
        text += f" ± {100 * std:.1f}"
    return text


def _runs(entry: Any) -> list[Any]:
    """One result or a list of results (one per seed) -> list."""
    if entry is None:
        return []
    if isinstance(entry, Mapping):
        return [entry]
    return list(entry)


def _render(header: list[str], rows: list[list[str]], fmt: str, groups: list[tuple[str, int]]):
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
        metrics: the metric keys to show. (default: :data:`~jams_pyg.eval.metrics.METRIC_KEYS`)
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
            runs = _runs(per_system.get(system))
            for key in metrics:
                row.append(_cell([run.get(key) for run in runs], show_std) if runs else MISSING)
        rows.append(row)
    groups = [(SYSTEM_LABELS.get(s, s), len(metrics)) for s in systems]
    return _render(header, rows, fmt, groups)


def _bucket_groups(bucket_result: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(label, group dict) of the frequency buckets, unseen codes and linkage groups."""
    groups = list(bucket_result["buckets"].items())
    unseen = bucket_result.get("unseen")
    if unseen is not None and unseen["num_codes"]:
        groups.append(("unseen", unseen))
    linkage = bucket_result.get("linkage")
    if linkage is not None:
        groups.append((f"{linkage['bucket']} w/ link", linkage["with_link"]))
        groups.append((f"{linkage['bucket']} w/o link", linkage["without_link"]))
    return groups


def _bucket_series(runs: list[Mapping[str, Any]]) -> list[tuple[str, int, list[float | None]]]:
    """Per group: label, number of evaluated codes (first run), macro-F1 of every run."""
    first = _bucket_groups(runs[0])
    series = []
    for position, (label, group) in enumerate(first):
        values = []
        for run in runs:
            groups = _bucket_groups(run)
            if len(groups) != len(first) or groups[position][0] != label:
                raise ValueError(f"bucket results disagree on their groups: {label!r}")
            values.append(groups[position][1]["macro_f1"])
        series.append((label, int(group["num_codes"]), values))
    return series


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
            runs = _runs(per_system.get(system))
            if not runs:
                continue
            for label, num_codes, _ in _bucket_series(runs):
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
            runs = _runs(per_system.get(system))
            if runs:
                for label, _, run_values in _bucket_series(runs):
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


# --------------------------------------------------------------------------------------------
# plot
# --------------------------------------------------------------------------------------------


def plot_buckets(
    bucket_results: Mapping[str, Mapping[str, Any]],
    path: str | Path,
    systems: Sequence[str] = ("icd9", "icd10"),
    title: str | None = None,
) -> Path:
    """Bar chart of Figures 2 and 3: macro-F1 per group, one panel per system, one bar per model.

    Uses matplotlib's Agg canvas directly (no pyplot, no display needed). With several seeds
    per model the bars show the mean and error bars the sample std. When exactly two models
    are given, the difference (second − first) is written above each pair.

    Args:
        bucket_results: ``{model: {system: bucket_macro_f1(...)}}`` (or a list per seed),
            e.g. ``{"LAAT": ..., "LAAT+JAMS": ...}``.
        path: the PNG file to write (parent folders are created).
        systems: panels, left to right; systems absent from every model are skipped.
        title: figure title. (default: :obj:`None`)

    Returns:
        Path: ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not bucket_results:
        raise ValueError("bucket_results is empty")
    models = list(bucket_results)
    panels = [s for s in systems if any(_runs(r.get(s)) for r in bucket_results.values())]
    if not panels:
        raise ValueError(f"no model has results for the systems {list(systems)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    fig = Figure(figsize=(6.0 * len(panels), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    width = 0.8 / len(models)
    colors = ["#9e9e9e", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]
    for ax, system in zip(axes, panels, strict=True):
        labels: list[str] = []
        means: dict[str, list[float]] = {}
        tops: dict[str, list[float]] = {}  # bar + error bar, to place the difference above
        for model in models:
            runs = _runs(bucket_results[model].get(system))
            if not runs:
                continue
            series = _bucket_series(runs)
            if not labels:
                labels = [f"{label}\n(n={num})" for label, num, _ in series]
            stats = [_mean_std(values) for _, _, values in series]
            mean = [np.nan if s is None else 100 * s[0] for s in stats]
            err = [0.0 if s is None or s[1] is None else 100 * s[1] for s in stats]
            means[model] = mean
            tops[model] = [m + e for m, e in zip(mean, err, strict=True)]
            position = models.index(model)
            x = np.arange(len(series)) + (position - (len(models) - 1) / 2) * width
            ax.bar(
                x,
                mean,
                width,
                yerr=err if any(err) else None,
                capsize=3,
                label=model,
                color=colors[position % len(colors)],
            )
        if len(means) == 2:
            first, second = (m for m in models if m in means)
            for index, (a, b) in enumerate(zip(means[first], means[second], strict=True)):
                if not (math.isnan(a) or math.isnan(b)):
                    ax.annotate(
                        f"{b - a:+.1f}",
                        (index, max(tops[first][index], tops[second][index])),
                        xytext=(0, 3),
                        textcoords="offset points",
                        ha="center",
                        fontsize=8,
                    )
        links = [i for i, label in enumerate(labels) if " link\n" in label]
        if links and links[0] > 0:  # Figure 3 groups, set apart from Figure 2's
            ax.axvline(links[0] - 0.5, color="black", linewidth=0.8, linestyle=":")
        ax.set_xticks(np.arange(len(labels)), labels, fontsize=8)
        ax.set_ylabel("macro-F1 (× 100)")
        ax.set_title(f"{SYSTEM_LABELS.get(system, system)}: by training frequency and GEM link")
        ax.legend(fontsize=8)
        ax.margins(y=0.15)
    if title:
        fig.suptitle(title)
    fig.savefig(path, format="png", dpi=120)
    return path


__all__ = [
    "FREQUENCY_BUCKETS",
    "MIMIC_IV_TRAIN_DOCS",
    "bucket_label",
    "bucket_macro_f1",
    "bucket_table",
    "code_frequencies",
    "compare_table",
    "frequency_scale",
    "plot_buckets",
    "scale_buckets",
]
