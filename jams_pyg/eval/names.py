"""The names of the metrics and of what training selects on, in a module that imports nothing
(a training setting such as ``monitor`` and the tables check and show them without loading numpy
or torch)."""

from __future__ import annotations

METRIC_KEYS: tuple[str, ...] = (
    "auc_micro",
    "auc_macro",
    "f1_micro",
    "f1_macro",
    "exact_match",
    "precision@8",
    "precision@15",
    "r_precision",
    "map",
)
"""The nine metrics of Table 2, in the order of the table."""

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
"""Display names of the metric keys (:data:`~jams_pyg.eval.names.METRIC_KEYS`)."""

OFFICIAL_MEAN_METRICS: tuple[str, ...] = (
    "f1_macro",
    "f1_micro",
    "exact_match",
    "precision@8",
    "precision@15",
    "r_precision",
    "map",
)
"""The seven validation metrics whose mean the official JAMS trainer selects on (GY-Jeong/JAMS,
``src/metrics.py``, ``MetricCollection.get_best_metric``: ``f1_macro``, ``f1_micro``,
``exact_match_ratio``, ``precision@8``, ``precision@15``, ``precision@recall``, ``map``, the
threshold metrics at 0.5)."""

OFFICIAL_MEAN = "official_mean"
"""The monitor of the official JAMS rule: the mean of :data:`OFFICIAL_MEAN_METRICS`."""

MONITORS: tuple[str, ...] = (*METRIC_KEYS, OFFICIAL_MEAN)
"""What training may select on: one metric of :data:`METRIC_KEYS`, or :data:`OFFICIAL_MEAN`."""


def monitor_value(metrics: dict[str, float], monitor: str) -> float:
    """The value of ``monitor`` (one of :data:`MONITORS`) in one system's ``metrics`` (the
    keys of :data:`METRIC_KEYS`): the metric itself, or for :data:`OFFICIAL_MEAN` the plain
    mean of the seven :data:`OFFICIAL_MEAN_METRICS`, as ``get_best_metric`` of the official
    JAMS code computes it (its caller, the early-stopping and best-model callbacks of
    ``src/trainer/callbacks.py``, then averages the ICD-9 and ICD-10 values)."""
    if monitor == OFFICIAL_MEAN:
        return sum(float(metrics[name]) for name in OFFICIAL_MEAN_METRICS) / len(
            OFFICIAL_MEAN_METRICS)
    if monitor not in METRIC_KEYS:
        raise ValueError(f"monitor must be one of {', '.join(MONITORS)}, got {monitor!r}")
    return float(metrics[monitor])


__all__ = ["METRIC_KEYS", "METRIC_LABELS", "MONITORS", "OFFICIAL_MEAN", "OFFICIAL_MEAN_METRICS",
           "monitor_value"]
