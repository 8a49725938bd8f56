"""jams_pyg: JAMS joint ICD-9/ICD-10 medical coding on PyTorch Geometric.

The core (codes, GEM graph, MATConv, datasets, models, metrics) is imported
eagerly; the training loop, the experiment runner and the predictor, which pull
in ``transformers``, load on first use (``jams_pyg.Trainer`` etc.).
"""

from importlib import import_module
from typing import Any

from jams_pyg.analysis import bucket_macro_f1, compare_table, plot_buckets
from jams_pyg.codes import format_code, parse_code
from jams_pyg.datasets import (
    BucketBatchSampler,
    CodingDataset,
    JointBatch,
    JointCodingDataset,
    WordTokenizer,
    load_edin_dataset,
)
from jams_pyg.gem import DataFileError, cms_2018_gem_paths, read_gem_file
from jams_pyg.gem_graph import GEMGraph
from jams_pyg.metrics import compute_metrics, per_code_f1, tune_threshold
from jams_pyg.models import (
    JAMS,
    CAMLEncoder,
    CAMLHead,
    JointCodingModel,
    LAATHead,
    LSTMEncoder,
    ModelConfig,
    MultiResCNNEncoder,
    PLMEncoder,
    build_model,
    jams_loss,
)
from jams_pyg.nn import MATConv
from jams_pyg.titles import code_title

__version__ = "0.1.0"

_LAZY = {
    "Trainer": "jams_pyg.training",
    "TrainConfig": "jams_pyg.training",
    "ExperimentConfig": "jams_pyg.experiment",
    "run_experiment": "jams_pyg.experiment",
    "JAMSPredictor": "jams_pyg.predict",
    "save_bundle": "jams_pyg.bundle",
    "load_bundle": "jams_pyg.bundle",
    "generate_synthetic_corpus": "jams_pyg.datasets.synthetic",
    # what can go wrong, by name (see the README's "Guarantees")
    "BundleError": "jams_pyg.bundle",
    "CheckpointError": "jams_pyg.training",
    "ResumeMismatch": "jams_pyg.training",
    "RunDirLocked": "jams_pyg.training",
    "TrainingDiverged": "jams_pyg.training",
    "TrainingError": "jams_pyg.training",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'jams_pyg' has no attribute {name!r}")


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
