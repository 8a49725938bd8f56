"""The divergence stop: a run whose loss or weights blow up ends with a clear error.

A non-finite or exploding step loss (``TrainConfig.divergence_factor``), non-finite
weights or non-finite validation probabilities raise
:class:`~jams_pyg.train.errors.TrainingDiverged` naming where it happened and the settings
to change, before the diverged model is validated or saved as the best.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from jams_pyg.train.config import TrainConfig
from jams_pyg.train.errors import TrainingDiverged

_NOTHING_WRITTEN = "No metrics or model bundle are written from a diverged run."


def divergence_advice(config: TrainConfig) -> str:
    """The settings of ``config`` to change after a divergence."""
    lower = f"lower the learning rate (lr {config.lr:g}, --lr)"
    if config.max_grad_norm is None:
        return f"{lower} or turn gradient clipping on (max_grad_norm, e.g. 1.0)"
    return f"{lower} or clip gradients harder (max_grad_norm {config.max_grad_norm:g})"


def check_step_loss(loss: float, reference: float | None, config: TrainConfig,
                    where: str) -> float:
    """Stop on a non-finite step loss, or one above ``config.divergence_factor`` times
    ``reference`` (the run's first step loss). Returns the reference: ``reference``, or
    ``loss`` itself for the run's first step (``reference is None``).

    Args:
        where: The step, for the message (e.g. ``"epoch 2, step 3 of 8"``).
    """
    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"training diverged at {where}: the loss is {loss}; "
            f"{divergence_advice(config)}. {_NOTHING_WRITTEN}"
        )
    if reference is None:
        return loss
    factor = config.divergence_factor
    if factor is not None and loss > factor * max(reference, 1e-12):
        raise TrainingDiverged(
            f"training diverged at {where}: the loss {loss:.4g} is more than "
            f"{factor:g} times the first step's loss {reference:.4g} "
            f"(divergence_factor); {divergence_advice(config)}. {_NOTHING_WRITTEN}"
        )
    return reference


def check_weights(model: nn.Module, config: TrainConfig, where: str) -> None:
    """Stop when a weight of ``model`` is no longer finite.

    Args:
        where: When, for the message (e.g. ``"in epoch 2 (by optimiser step 16)"``).
    """
    bad = [name for name, param in model.named_parameters()
           if not bool(torch.isfinite(param).all())]
    if bad:
        raise TrainingDiverged(
            f"training diverged {where}: {len(bad)} weight tensors are no longer finite "
            f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); "
            f"{divergence_advice(config)}. {_NOTHING_WRITTEN}"
        )


def check_probabilities(probs: np.ndarray, system: str, config: TrainConfig,
                        epoch: int) -> None:
    """Stop when the validation probabilities of ``system`` after ``epoch`` (1-based)
    are not all finite."""
    if not np.isfinite(probs).all():
        raise TrainingDiverged(
            f"after epoch {epoch} the model gives non-finite {system} probabilities on "
            f"the validation split; {divergence_advice(config)}."
        )


__all__ = ["check_probabilities", "check_step_loss", "check_weights", "divergence_advice"]
