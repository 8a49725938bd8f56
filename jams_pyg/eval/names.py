"""The names of the metrics, in a module that imports nothing (a training setting such as
``monitor`` and the tables check and show them without loading numpy or torch)."""

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

__all__ = ["METRIC_KEYS", "METRIC_LABELS"]
