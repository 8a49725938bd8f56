"""jams_pyg: JAMS joint ICD-9/ICD-10 medical coding on PyTorch Geometric."""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# Every name loads on first use (PEP 562): ``import jams_pyg`` and ``jams-pyg --help`` do
# not import torch; ``from jams_pyg import MATConv, GEMGraph`` imports what it names.
_LAZY = {
    **dict.fromkeys(("bucket_macro_f1", "compare_table", "plot_buckets"), "jams_pyg.eval.analysis"),
    **dict.fromkeys(("format_code", "parse_code"), "jams_pyg.icd.codes"),
    **dict.fromkeys(("BucketBatchSampler", "CodingDataset", "JointBatch", "JointCodingDataset",
                     "WordTokenizer", "load_edin_dataset"), "jams_pyg.data"),
    **dict.fromkeys(("DataFileError", "cms_2018_gem_paths", "read_gem_file"), "jams_pyg.icd.gem"),
    "GEMGraph": "jams_pyg.graph.gem_graph",
    **dict.fromkeys(("compute_metrics", "per_code_f1", "tune_threshold"), "jams_pyg.eval.metrics"),
    **dict.fromkeys(("JAMS", "CAMLEncoder", "CAMLHead", "JointCodingModel", "LAATHead",
                     "LSTMEncoder", "ModelConfig", "MultiResCNNEncoder", "PLMEncoder",
                     "build_model", "jams_loss"), "jams_pyg.models"),
    "MATConv": "jams_pyg.nn",
    "code_title": "jams_pyg.icd.titles",
    **dict.fromkeys(("Trainer", "TrainConfig"), "jams_pyg.train.trainer"),
    **dict.fromkeys(("ExperimentConfig", "run_experiment"), "jams_pyg.train.experiment"),
    "JAMSPredictor": "jams_pyg.inference.predictor",
    **dict.fromkeys(("save_bundle", "load_bundle"), "jams_pyg.inference.bundle"),
    "generate_synthetic_corpus": "jams_pyg.data.synthetic",
    # what can go wrong, by name (see the README's "Guarantees")
    "BundleError": "jams_pyg.inference.bundle",
    **dict.fromkeys(("CheckpointError", "ResumeMismatch", "RunDirLocked", "TrainingDiverged",
                     "TrainingError"), "jams_pyg.train.trainer"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'jams_pyg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "JAMS",
    "BucketBatchSampler",
    "BundleError",
    "CAMLEncoder",
    "CAMLHead",
    "CheckpointError",
    "CodingDataset",
    "DataFileError",
    "ExperimentConfig",
    "GEMGraph",
    "JAMSPredictor",
    "JointBatch",
    "JointCodingDataset",
    "JointCodingModel",
    "LAATHead",
    "LSTMEncoder",
    "MATConv",
    "ModelConfig",
    "MultiResCNNEncoder",
    "PLMEncoder",
    "ResumeMismatch",
    "RunDirLocked",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "TrainingError",
    "WordTokenizer",
    "bucket_macro_f1",
    "build_model",
    "cms_2018_gem_paths",
    "code_title",
    "compare_table",
    "compute_metrics",
    "format_code",
    "generate_synthetic_corpus",
    "jams_loss",
    "load_bundle",
    "load_edin_dataset",
    "parse_code",
    "per_code_f1",
    "plot_buckets",
    "read_gem_file",
    "run_experiment",
    "save_bundle",
    "tune_threshold",
]
