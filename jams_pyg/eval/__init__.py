"""Evaluation: Edin et al.'s metrics (:mod:`.metrics`), threshold tuning (:mod:`.thresholds`),
macro-F1 by training frequency and GEM link (:mod:`.buckets`, Figures 2 and 3), the tables
(:mod:`.tables`) and bar chart (:mod:`.plots`) of the paper, and paired deltas between
variants over seeds (:mod:`.deltas`). Names load on first use: importing the package does
not import torch or matplotlib."""

from jams_pyg.lazy import lazy_exports

_EXPORTS = {
    ".names": ("METRIC_KEYS", "METRIC_LABELS"),
    ".metrics": ("MICRO_AUC_CODES", "compute_metrics", "micro_f1",
                 "per_code_f1"),
    ".thresholds": ("EDIN_THRESHOLD_GRID", "THRESHOLD_PROTOCOLS", "evaluate", "tune_threshold"),
    ".buckets": ("FREQUENCY_BUCKETS", "MIMIC_IV_TRAIN_DOCS", "bucket_groups", "bucket_label",
                 "bucket_macro_f1", "bucket_series", "code_frequencies", "frequency_scale",
                 "scale_buckets"),
    ".tables": ("MISSING", "bucket_table", "compare_table",
                "convergence_rows", "convergence_table", "mean_std", "results_by_label",
                "seed_runs"),
    ".plots": ("plot_buckets",),
    ".report": ("write_report",),
    ".deltas": ("DELTA_METRICS", "delta_table", "delta_text", "format_delta", "group_scores",
                "rarest_groups", "summarize_deltas"),
}
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
