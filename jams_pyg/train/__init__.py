"""Training: settings (:mod:`.config`, :mod:`.presets`, :mod:`.variants`), the
:class:`Trainer` and its parts, and one run end to end (:mod:`.experiment`)."""

from jams_pyg.lazy import lazy_exports

_EXPORTS = {
    ".config": ("TrainConfig",),
    ".errors": ("CheckpointError", "ResumeMismatch", "RunDirLocked", "TrainingDiverged",
                "TrainingError"),
    ".trainer": ("Trainer",),
    ".experiment": ("ExperimentConfig", "run_experiment"),
}
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
