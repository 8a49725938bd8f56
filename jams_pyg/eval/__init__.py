"""Evaluation: Edin et al.'s metrics (:mod:`.metrics`), the evaluation protocol
(:mod:`.protocol`) with threshold tuning (:mod:`.thresholds`), a model's probabilities on a
split (:mod:`.prediction`), CodiEsp's official MAP (:mod:`.codiesp_metric`),
macro-F1 by training frequency and GEM link (:mod:`.buckets`, Figures 2 and 3), the tables
(:mod:`.tables`) and bar chart (:mod:`.plots`) of the paper, and paired deltas between
variants over seeds (:mod:`.deltas`). Names load on first use: importing the package does
not import torch or matplotlib."""

from jams_pyg.lazy import lazy_exports

_EXPORTS = {
    ".names": ("METRIC_KEYS", "METRIC_LABELS", "MONITORS", "OFFICIAL_MEAN", "OFFICIAL_MEAN_METRICS",
               "monitor_value"),
    ".protocol": ("PROTOCOL_MICRO_AUC_CODES", "THRESHOLD_PROTOCOLS", "THRESHOLD_SPLIT",
                  "check_protocol", "protocol_record"),
    ".prediction": ("Predictions", "predict"),
    ".codiesp_metric": ("OFFICIAL_DEPTH", "codiesp_average_precision", "codiesp_map",
                        "ranked_codes"),
    ".metrics": ("MICRO_AUC_CODES", "compute_metrics", "micro_f1",
                 "per_code_f1"),
    ".thresholds": ("EDIN_THRESHOLD_GRID", "evaluate", "tune_threshold"),
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
