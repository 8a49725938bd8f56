"""What can stop a training run, by name (torch-free: a command line can catch these
without loading torch).

:class:`TrainingError` is the base; each subclass names one guarantee of training:
exclusive run folders (:mod:`jams_pyg.train.rundir`), sound checkpoints and checked resume
(:mod:`jams_pyg.train.checkpoint`) and the divergence stop
(:mod:`jams_pyg.train.divergence`).
"""

from __future__ import annotations


class TrainingError(RuntimeError):
    """A training run cannot go on (base of the errors of :mod:`jams_pyg.train`)."""


class RunDirLocked(TrainingError):
    """The output folder is in use by another run (see
    :func:`~jams_pyg.train.rundir.run_dir_lock`)."""


class CheckpointError(TrainingError):
    """A checkpoint is damaged, not a checkpoint, or of another version."""


class ResumeMismatch(TrainingError):
    """``--resume`` found a checkpoint of another run: another model, other
    data or other optimisation settings (the message lists what differs)."""


class TrainingDiverged(TrainingError):
    """The loss became non-finite or exploded (see
    ``TrainConfig.divergence_factor``), or the weights became non-finite.

    Raised out of :meth:`~jams_pyg.train.trainer.Trainer.fit` before anything is computed
    from the diverged model: no validation score, no best checkpoint, and (in
    :func:`jams_pyg.train.experiment.run_experiment`) no metrics and no bundle. The
    message names the epoch and step and the settings to change.
    """


__all__ = ["CheckpointError", "ResumeMismatch", "RunDirLocked", "TrainingDiverged",
           "TrainingError"]
