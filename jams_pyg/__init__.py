"""jams_pyg: JAMS joint ICD-9/ICD-10 medical coding on PyTorch Geometric.

The package follows the data flow: :mod:`~jams_pyg.icd` (codes, GEM files, titles) →
:mod:`~jams_pyg.graph` (the GEM graph) → :mod:`~jams_pyg.nn` (MATConv) →
:mod:`~jams_pyg.models` → :mod:`~jams_pyg.data` → :mod:`~jams_pyg.train` →
:mod:`~jams_pyg.eval` → :mod:`~jams_pyg.inference` → :mod:`~jams_pyg.cli`.

Every name below loads on first use: ``import jams_pyg`` and ``jams-pyg --help`` do not
import torch; ``from jams_pyg import MATConv, GEMGraph`` imports what it names.
"""

from importlib.metadata import PackageNotFoundError, version

from jams_pyg.lazy import lazy_exports

try:  # one version source: pyproject.toml, through the installed metadata
    __version__ = version("jams_pyg")
except PackageNotFoundError:  # pragma: no cover - run from a source tree without install
    __version__ = "0+unknown"

_EXPORTS = {
    "jams_pyg.icd.codes": ("format_code", "parse_code"),
    "jams_pyg.icd.gem": ("DataFileError", "cms_2018_gem_paths", "cms_procedure_gem_path",
                         "read_gem_file"),
    "jams_pyg.icd.titles": ("code_title",),
    "jams_pyg.graph.gem_graph": ("GEMGraph",),
    "jams_pyg.nn.mat_conv": ("MATConv",),
    "jams_pyg.models": ("JAMS", "CAMLConfig", "CAMLEncoder", "CAMLHead", "JointCodingModel",
                        "LAATConfig", "LAATHead", "LSTMEncoder", "ModelConfig",
                        "MultiResCNNConfig", "MultiResCNNEncoder", "PLMEncoder", "PLMICDConfig",
                        "build_model", "jams_loss"),
    "jams_pyg.data": ("BucketBatchSampler", "CodingDataset", "JointBatch", "JointCodingDataset",
                      "WordTokenizer", "generate_synthetic_corpus", "load_edin_dataset"),
    "jams_pyg.train.trainer": ("Trainer",),
    "jams_pyg.train.config": ("TrainConfig",),
    "jams_pyg.train.errors": ("CheckpointError", "ResumeMismatch", "RunDirLocked",
                              "TrainingDiverged", "TrainingError"),
    "jams_pyg.train.experiment": ("ExperimentConfig", "run_experiment"),
    "jams_pyg.eval": ("bucket_macro_f1", "compare_table", "compute_metrics", "per_code_f1",
                      "plot_buckets", "tune_threshold"),
    "jams_pyg.inference.bundle": ("BundleError", "load_bundle", "save_bundle"),
    "jams_pyg.inference.predictor": ("JAMSPredictor",),
}
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
