"""Optimisation settings of a training run, checked where they enter the library.

Torch-free (no torch or numpy at import): a command line shows the defaults
(``TrainConfig.epochs``) and refuses a bad flag (:func:`train_setting_type`) before
loading torch.
"""

from __future__ import annotations

import argparse
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jams_pyg.eval.names import METRIC_KEYS

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
    "warmup_ratio": (lambda v: _finite(v) and 0 <= v < 1, "a number in [0, 1)"),
    "grad_accumulation": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "max_grad_norm": (lambda v: v is None or (_finite(v) and v > 0),
                      "None (no clipping) or a finite number > 0"),
    "amp": (lambda v: isinstance(v, bool), "True or False"),
    "patience": (lambda v: _is_int(v) and v >= 1,
                 "an integer >= 1 (0 would stop before the first epoch)"),
    "monitor": (lambda v: v in METRIC_KEYS, lambda: f"one of {', '.join(METRIC_KEYS)}"),
    "eval_batch_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "seed": (lambda v: _is_int(v) and 0 <= v < 2**32, "an integer in [0, 2**32)"),
    "progress": (lambda v: isinstance(v, bool), "True or False"),
    "tensorboard": (lambda v: isinstance(v, bool), "True or False"),
    "divergence_factor": (lambda v: v is None or (_finite(v) and v > 1),
                          "None (no check) or a finite number > 1"),
}
#: The fields whose command-line text is parsed as an integer (the others as a number).
_INTEGER_SETTINGS = ("epochs", "batch_size", "grad_accumulation", "patience",
                     "eval_batch_size", "seed")


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
    """Optimisation settings (defaults: Edin et al.'s LAAT on MIMIC-IV).

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
        warmup_ratio: Fraction of all optimiser steps spent warming up linearly
            (then linear decay to 0); in [0, 1).
        grad_accumulation: Micro-batches per optimiser step (>= 1).
        max_grad_norm: Clip the gradient norm to this (``None``: no clipping).
        amp: Mixed precision (bfloat16 where supported, else float16 with a
            gradient scaler) on CUDA; ignored on CPU.
        patience: Stop after this many epochs without a better validation score
            (>= 1).
        monitor: Validation metric for early stopping and the best checkpoint,
            averaged over the systems (Edin et al. use MAP); one of
            :data:`jams_pyg.eval.names.METRIC_KEYS`.
        eval_batch_size: Documents per evaluation batch.
        seed: Seed of the optimiser-side randomness (dropout, batch order).
        progress: Show a progress bar (on a terminal only).
        tensorboard: Log to TensorBoard (when installed) under the output
            directory.
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
    warmup_ratio: float = 0.05
    grad_accumulation: int = 1
    max_grad_norm: float | None = 1.0
    amp: bool = True
    patience: int = 3
    monitor: str = "map"  # Edin et al. select on MAP
    eval_batch_size: int = 16
    seed: int = 0
    progress: bool = True
    tensorboard: bool = True
    divergence_factor: float | None = 100.0

    def __post_init__(self) -> None:
        for name in _TRAIN_RULES:
            check_train_setting(name, getattr(self, name))
        if self.batch_size % self.grad_accumulation:
            raise ValueError(
                f"batch_size {self.batch_size} is not divisible by grad_accumulation "
                f"{self.grad_accumulation}"
            )


__all__ = ["RESUMABLE_SETTINGS", "TrainConfig", "check_train_setting", "train_setting_type"]
