"""Paired deltas between two variants of one backbone (e.g. JAMS − backbone) over seeds.

Runs (``metrics.json`` payloads of :func:`~jams_pyg.train.experiment.run_experiment`) pair
by model and seed: for each seed, (variant − reference) on the same data. The deltas of the
metrics :data:`DELTA_METRICS` and of the macro-F1 of every frequency bucket and linkage group
(:mod:`jams_pyg.eval.buckets`) are summarised by their mean, sample std and the half-width of
the 95 % t-interval of the mean over seeds (:func:`summarize_deltas`), and shown × 100 as
``mean ± half-width`` (:func:`format_delta`, :func:`delta_table`, :func:`delta_text`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jams_pyg.eval.tables import METRIC_LABELS, MISSING
from jams_pyg.icd.codes import SYSTEM_LABELS

DELTA_METRICS: tuple[str, ...] = ("f1_macro", "f1_micro", "map")
"""The metrics of :func:`~jams_pyg.eval.metrics.compute_metrics` whose deltas are summarised."""


def group_scores(system_result: Mapping[str, Any]) -> dict[str, float | None]:
    """The compared numbers of one system of one run: :data:`DELTA_METRICS` and the macro-F1
    of every frequency bucket (``"bucket 1-10"``) and linkage group (``"1-10 w/ link"``)."""
    scores: dict[str, float | None] = {k: system_result["metrics"][k] for k in DELTA_METRICS}
    buckets = system_result["buckets"]
    for label, group in buckets["buckets"].items():
        scores[f"bucket {label}"] = group["macro_f1"]
    linkage = buckets.get("linkage")
    if linkage is not None:
        scores[f"{linkage['bucket']} w/ link"] = linkage["with_link"]["macro_f1"]
        scores[f"{linkage['bucket']} w/o link"] = linkage["without_link"]["macro_f1"]
    return scores


def rarest_groups(scores: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """The keys of :func:`group_scores` (or of its deltas) for the rarest frequency bucket and
    its codes with / without a GEM link, e.g. ``("bucket 1-10", "1-10 w/ link",
    "1-10 w/o link")``; ``None`` for each one that is missing."""
    buckets = [k for k in scores if k.startswith("bucket ")]
    rare = buckets[0] if buckets else None
    link = next((k for k in scores if k.endswith(" w/ link")), None)
    nolink = next((k for k in scores if k.endswith(" w/o link")), None)
    return rare, link, nolink


def _t_interval(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample std and the half-width of the 95 % t-interval of the mean."""
    from scipy.stats import t

    n = len(values)
    std = float(np.std(values, ddof=1)) if n > 1 else None
    return {
        "mean": float(np.mean(values)) if values else None,
        "std": std,
        "ci95": float(t.ppf(0.975, n - 1) * std / np.sqrt(n)) if std is not None else None,
        "per_seed": [float(v) for v in values],
    }


def summarize_deltas(runs: Sequence[Mapping[str, Any]], reference: str = "backbone"
                     ) -> dict[str, Any]:
    """Paired (variant − ``reference``) deltas per model, variant, system and score.

    Runs pair by (model, seed); a seed without both runs, or a score that is ``None`` in
    either, is left out of that score (its ``seeds`` list says which seeds count).

    Returns:
        ``{model: {variant: {system: {score: {"mean", "std", "ci95", "per_seed",
        "seeds"}}}}}``, fractions (not × 100); ``std`` is the sample std over seeds and
        ``ci95`` the half-width of the 95 % t-interval of the mean (both ``None`` for one
        seed).
    """
    by_key: dict[tuple[str, str, int], Mapping[str, Any]] = {}
    for run in runs:
        key = (run["model"], run["variant"], int(run["seed"]))
        if key in by_key:
            raise ValueError(f"two runs of model {key[0]!r} variant {key[1]!r} seed {key[2]}")
        by_key[key] = run
    summary: dict[str, Any] = {}
    for (model, variant, seed), run in sorted(by_key.items()):
        if variant == reference:
            continue
        base = by_key.get((model, reference, seed))
        if base is None:
            continue
        for system, result in run["systems"].items():
            if system not in base["systems"]:
                continue
            ours, theirs = group_scores(result), group_scores(base["systems"][system])
            target = summary.setdefault(model, {}).setdefault(variant, {}).setdefault(system, {})
            for score, value in ours.items():
                other = theirs.get(score)
                entry = target.setdefault(score, {"values": [], "seeds": []})
                if value is None or other is None:
                    continue
                entry["values"].append(value - other)
                entry["seeds"].append(seed)
    for variants in summary.values():
        for systems in variants.values():
            for scores in systems.values():
                for score, entry in scores.items():
                    scores[score] = {**_t_interval(entry["values"]), "seeds": entry["seeds"]}
    return summary


def format_delta(stats: Mapping[str, Any] | None) -> str:
    """``+mean ± half-width of the 95 % interval`` (× 100, one decimal) of one score of
    :func:`summarize_deltas`; ``+mean`` alone for one seed, :data:`MISSING` for none."""
    if not stats or stats.get("mean") is None:
        return MISSING
    text = f"{100 * stats['mean']:+.1f}"
    if stats.get("ci95") is not None:
        text += f" ± {100 * stats['ci95']:.1f}"
    return text


def _score_label(score: str) -> str:
    """A metric's label, or a bucket's: ``"bucket 1-10"`` -> ``"F1 macro 1-10"``."""
    return METRIC_LABELS.get(score, score.replace("bucket ", f"{METRIC_LABELS['f1_macro']} "))


def delta_table(summary: Mapping[str, Any], display: Mapping[str, str] | None = None,
                reference: str = "backbone") -> str:
    """Markdown table of :func:`summarize_deltas`, × 100: one row per (model, variant,
    system), one column per score; mean ± half-width of the 95 % t-interval over seeds,
    ``n`` = paired seeds. ``display`` names the models (e.g. ``{"laat": "LAAT"}``);
    ``reference`` is the variant the deltas were taken against (the first header)."""
    display = display or {}
    scores: list[str] = []
    for variants in summary.values():
        for systems in variants.values():
            for per_score in systems.values():
                scores += [s for s in per_score if s not in scores]
    lines = [f"| Delta vs {reference} | System | n | "
             + " | ".join(_score_label(s) for s in scores) + " |",
             "|:---|:---|---:|" + "---:|" * len(scores)]
    for model, variants in summary.items():
        for variant, systems in variants.items():
            for system, per_score in systems.items():
                n = max((len(v["per_seed"]) for v in per_score.values()), default=0)
                cells = [format_delta(per_score.get(s)) for s in scores]
                name = f"{display.get(model, model)} {variant}"
                lines.append(f"| {name} | {SYSTEM_LABELS.get(system, system)} | {n} | "
                             + " | ".join(cells) + " |")
    return "\n".join(lines)


def delta_text(summary: Mapping[str, Any], reference: str = "backbone") -> str:
    """Plain-text summary: per model, variant and system the deltas (× 100) and the scores
    where the variant is worse than ``reference`` on average."""
    lines = []
    for model, variants in summary.items():
        for variant, systems in variants.items():
            for system, per_score in systems.items():
                parts = [f"{METRIC_LABELS.get(s, s)} {format_delta(v)}"
                         for s, v in per_score.items()]
                worse = [s for s, v in per_score.items() if v["mean"] is not None and v["mean"] < 0]
                lines.append(f"{model} {variant} - {reference}, "
                             f"{SYSTEM_LABELS.get(system, system)}: " + "; ".join(parts))
                lines.append(f"    not better than the {reference} (mean delta < 0): "
                             + (", ".join(worse) if worse else "none"))
    return "\n".join(lines) if lines else f"no variant/{reference} pairs to compare"


__all__ = [
    "DELTA_METRICS",
    "delta_table",
    "delta_text",
    "format_delta",
    "group_scores",
    "rarest_groups",
    "summarize_deltas",
]
