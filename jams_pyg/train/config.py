"""Optimisation settings of a training run, checked where they enter the library.

Torch-free (no torch or numpy at import): a command line shows the defaults
(``TrainConfig.epochs``) and refuses a bad flag (:func:`train_setting_type`) before
loading torch.
"""

from __future__ import annotations

import argparse
import itertools
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jams_pyg.eval.names import MONITORS, OFFICIAL_MEAN

#: Mixed-precision types on CUDA: ``float16`` with a gradient scaler (the official code's),
#: ``bfloat16``, or ``auto`` (bfloat16 where the GPU supports it, else float16 with the scaler).
AMP_DTYPES = ("float16", "bfloat16", "auto")
#: The official length buckets (GY-Jeong/JAMS and Edin et al., ``configs/dataloader/defaults.yaml``,
#: ``batch_sampler: BySequenceLengthSampler``): a document of ``n`` tokens (after truncation)
#: goes to the bucket ``[b_i, b_{i+1})`` of these boundaries (below 400 and from 4,000 on are
#: buckets too).
OFFICIAL_BUCKET_BOUNDARIES = (400, 600, 800, 1000, 1200, 1400, 1600, 1800, 2000, 2200, 2600,
                              3000, 4000)

#: TrainConfig fields that may change on resume (they do not change the result).
RESUMABLE_SETTINGS = ("progress", "tensorboard", "eval_batch_size", "divergence_factor")


def _is_int(value: Any) -> bool:
    # numbers.Integral covers numpy integers without importing numpy.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


#: Per field of :class:`TrainConfig`: (is the value valid, what a valid value is; a
#: callable is asked only for the error message).
_TRAIN_RULES: dict[str, tuple[Callable[[Any], bool], str | Callable[[], str]]] = {
    "epochs": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "batch_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "lr": (lambda v: _finite(v) and v > 0, "a finite number > 0"),
    "weight_decay": (lambda v: _finite(v) and v >= 0, "a finite number >= 0"),
    "warmup_steps": (lambda v: v is None or (_is_int(v) and v >= 0),
                     "None (use warmup_ratio) or an integer >= 0"),
    "warmup_ratio": (lambda v: v is None or (_finite(v) and 0 <= v < 1),
                     "None (use warmup_steps) or a number in [0, 1)"),
    "grad_accumulation": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "max_grad_norm": (lambda v: v is None or (_finite(v) and v > 0),
                      "None (no clipping) or a finite number > 0"),
    "amp": (lambda v: isinstance(v, bool), "True or False"),
    "amp_dtype": (lambda v: v in AMP_DTYPES, f"one of {', '.join(AMP_DTYPES)}"),
    "patience": (lambda v: _is_int(v) and v >= 1,
                 "an integer >= 1 (0 would stop before the first epoch)"),
    "monitor": (lambda v: v in MONITORS, lambda: f"one of {', '.join(MONITORS)}"),
    "eval_batch_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "seed": (lambda v: _is_int(v) and 0 <= v < 2**32, "an integer in [0, 2**32)"),
    "progress": (lambda v: isinstance(v, bool), "True or False"),
    "tensorboard": (lambda v: isinstance(v, bool), "True or False"),
    "divergence_factor": (lambda v: v is None or (_finite(v) and v > 1),
                          "None (no check) or a finite number > 1"),
    "bucket_boundaries": (lambda v: v is None or (
        isinstance(v, (tuple, list)) and len(v) > 0 and all(_is_int(b) and b > 0 for b in v)
        and all(a < b for a, b in itertools.pairwise(v))),
        "None (pools of sorted lengths) or increasing positive integers"),
    "drop_last": (lambda v: isinstance(v, bool), "True or False"),
}
#: The fields whose command-line text is parsed as an integer (the others as a number).
_INTEGER_SETTINGS = ("epochs", "batch_size", "grad_accumulation", "patience",
                     "eval_batch_size", "seed", "warmup_steps")


def check_train_setting(name: str, value: Any) -> None:
    """Raise ``ValueError`` naming ``name`` and ``value`` when ``value`` is not a
    valid :class:`TrainConfig` setting (the rules of ``TrainConfig``)."""
    valid, expected = _TRAIN_RULES[name]
    if not valid(value):
        expected = expected() if callable(expected) else expected
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def train_setting_type(name: str) -> Callable[[str], Any]:
    """An ``argparse`` ``type=`` for the :class:`TrainConfig` field ``name``:
    parses the text (int or float as the field needs) and applies the field's
    rule, so a bad value is refused when the command line is parsed, e.g.
    ``parser.add_argument("--patience", type=train_setting_type("patience"))``."""
    integer = name in _INTEGER_SETTINGS

    def parse(text: str) -> Any:
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            kind = "an integer" if integer else "a number"
            raise argparse.ArgumentTypeError(
                f"{name} must be {kind}, got {text!r}") from None
        try:
            check_train_setting(name, value)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return value

    parse.__name__ = name
    return parse


@dataclass
class TrainConfig:
    """Optimisation settings. The defaults are the official JAMS recipe for MIMIC-IV
    (GY-Jeong/JAMS, files named per field; LAAT's lr, weight decay, batch size and epochs from
    ``configs/experiment/mimiciv_integrate/laat.yaml``, which equal Edin et al.'s
    ``configs/experiment/mimiciv_icd9/laat.yaml``). :mod:`jams_pyg.train.presets` changes them
    per backbone and for the plain backbone (Edin et al.'s model selection), and keeps its
    own, stated settings for the CPU-sized synthetic corpus.

    Every field is checked when the config is made (``ValueError`` naming the
    field and the value; :func:`train_setting_type` applies the same rules to
    command-line arguments).

    Args:
        epochs: Maximum number of epochs (>= 1).
        batch_size: Documents per optimiser step (the global batch, over all
            processes and accumulation steps; >= 1, divisible by
            ``grad_accumulation``).
        lr: Peak learning rate of AdamW (finite, > 0).
        weight_decay: AdamW weight decay (>= 0).
        warmup_steps: Optimiser steps of linear warm-up from 0, then linear decay to 0 at
            the last step (2,000: ``configs/lr_scheduler/warmup_linear_decay.yaml``,
            ``num_warmup_steps: 2000``, official and Edin et al.; ``transformers``'
            ``get_linear_schedule_with_warmup``). ``None``: use ``warmup_ratio``. The
            official scheduler counts ``N // batch_size`` steps an epoch (the sampler's
            ``__len__``), a few more than its buckets give, so its rate ends slightly above
            0; here the decay ends at the last step taken.
        warmup_ratio: The warm-up as a fraction of all optimiser steps, in [0, 1), when
            ``warmup_steps`` is ``None`` (the synthetic presets: 0.05). Only one of the two
            may be set.
        grad_accumulation: Micro-batches per optimiser step (>= 1).
        max_grad_norm: Clip the gradient norm to this (``None``, the default: no clipping,
            as the official ``src/trainer/trainer.py`` and Edin et al.'s).
        amp: Mixed precision on CUDA (``trainer.use_amp: true`` in
            ``configs/trainer/defaults.yaml``); ignored on CPU.
        amp_dtype: Its type, one of :data:`AMP_DTYPES`: ``"float16"`` (default) with a
            ``torch.amp.GradScaler``, as the official trainer (``torch.autocast(...,
            dtype=torch.float16)`` and ``torch.cuda.amp.GradScaler``); ``"bfloat16"`` (no
            scaler); ``"auto"``: bfloat16 where the GPU supports it, else float16 with the
            scaler (the synthetic presets).
        patience: Stop after this many epochs without a better validation score
            (>= 1; 5: ``configs/callbacks/mean_average_precision.yaml``, counted as the
            official ``EarlyStoppingCallback``: a score not strictly above the best so far
            adds one, training stops when the count reaches ``patience``).
        monitor: What early stopping and the best checkpoint select on, averaged over the
            systems: one of :data:`jams_pyg.eval.names.MONITORS`. The default,
            ``"official_mean"``, is the official JAMS rule: per system the mean of seven
            validation metrics at threshold 0.5
            (:data:`~jams_pyg.eval.names.OFFICIAL_MEAN_METRICS`; ``src/metrics.py``,
            ``MetricCollection.get_best_metric``, which ignores the configured ``map``), then
            the mean of ICD-9 and ICD-10 (``src/trainer/callbacks.py``). Edin et al.'s plain
            backbones select on ``"map"``.
        eval_batch_size: Documents per evaluation batch.
        seed: Seed of the optimiser-side randomness (dropout, batch order).
        progress: Show a progress bar (on a terminal only).
        tensorboard: Log to TensorBoard (when installed) under the output
            directory.
        bucket_boundaries: Length buckets of the training batches (default
            :data:`OFFICIAL_BUCKET_BOUNDARIES`, official and Edin et al.): every epoch each
            bucket is shuffled and cut into batches, and the batches of all buckets are
            shuffled together. ``None``: pools of 50 batches, each sorted by length (the
            synthetic presets). See :class:`~jams_pyg.data.joint.BucketBatchSampler`.
        drop_last: Drop each bucket's (or pool's) incomplete last batch (official:
            ``drop_last: true`` in ``configs/dataloader/defaults.yaml``).
        divergence_factor: Stop training with
            :class:`~jams_pyg.train.errors.TrainingDiverged` when an optimiser step's
            loss exceeds this factor times the loss of the run's first step (the
            untrained model's loss); a non-finite loss always stops it. ``None`` turns
            the factor check off. The default, 100, is far above the noise of a batch
            (the joint loss of an untrained model is ~0.7 and only falls in normal
            training) and far below a diverged run's (``lr 1e3`` gives ~3e5).
    """

    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-3
    warmup_steps: int | None = 2000
    warmup_ratio: float | None = None
    grad_accumulation: int = 1
    max_grad_norm: float | None = None
    amp: bool = True
    amp_dtype: str = "float16"
    patience: int = 5
    monitor: str = OFFICIAL_MEAN
    eval_batch_size: int = 16
    seed: int = 0
    progress: bool = True
    tensorboard: bool = True
    divergence_factor: float | None = 100.0
    bucket_boundaries: tuple[int, ...] | None = OFFICIAL_BUCKET_BOUNDARIES
    drop_last: bool = True

    def __post_init__(self) -> None:
        for name in _TRAIN_RULES:
            check_train_setting(name, getattr(self, name))
        if self.bucket_boundaries is not None:
            self.bucket_boundaries = tuple(self.bucket_boundaries)
        if (self.warmup_steps is None) == (self.warmup_ratio is None):
            raise ValueError(
                f"give one of warmup_steps ({self.warmup_steps!r}) and warmup_ratio "
                f"({self.warmup_ratio!r}); set the other to None"
            )
        if self.batch_size % self.grad_accumulation:
            raise ValueError(
                f"batch_size {self.batch_size} is not divisible by grad_accumulation "
                f"{self.grad_accumulation}"
            )


    def warmup(self, total_steps: int) -> int:
        """The optimiser steps of warm-up in a run of ``total_steps`` steps."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return math.ceil(float(self.warmup_ratio or 0.0) * total_steps)


__all__ = ["AMP_DTYPES", "OFFICIAL_BUCKET_BOUNDARIES", "RESUMABLE_SETTINGS", "TrainConfig",
           "check_train_setting", "train_setting_type"]
