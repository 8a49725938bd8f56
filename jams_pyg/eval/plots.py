"""Bar chart of the paper's Figures 2 and 3 (macro-F1 by training frequency and GEM link).

matplotlib is imported inside :func:`plot_buckets`, so importing this module (or the tables
and buckets beside it) does not import matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jams_pyg.eval.buckets import bucket_series
from jams_pyg.eval.tables import mean_std, seed_runs
from jams_pyg.icd.codes import SYSTEM_LABELS


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
    panels = [s for s in systems if any(seed_runs(r.get(s)) for r in bucket_results.values())]
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
            runs = seed_runs(bucket_results[model].get(system))
            if not runs:
                continue
            series = bucket_series(runs)
            if not labels:
                labels = [f"{label}\n(n={num})" for label, num, _ in series]
            stats = [mean_std(values) for _, _, values in series]
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


__all__ = ["plot_buckets"]
