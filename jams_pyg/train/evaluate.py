"""Evaluation passes of training: the splits a run needs, and a model's predictions.

:func:`predict` gives every document's probabilities per system; a model with MAT
refines its code tables once per pass (they do not depend on the documents), while
training steps keep MAT inside ``forward`` for its gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from jams_pyg.icd.codes import SYSTEM_IDS


@dataclass
class Predictions:
    """Per-system model outputs on a dataset split."""

    probs: dict[str, np.ndarray] = field(default_factory=dict)
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    ids: dict[str, list[Any]] = field(default_factory=dict)


def autocast(device: torch.device, amp_dtype: torch.dtype | None
             ) -> AbstractContextManager[Any]:
    """Mixed precision in ``amp_dtype`` on CUDA; full precision when it is ``None``."""
    if amp_dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast("cuda", dtype=amp_dtype)


def check_splits(train: Dataset, val: Dataset, systems: Sequence[str]) -> None:
    """Refuse, before any training, splits a run cannot use: an empty training set, or
    missing or code-less validation data of a trained system (early stopping and
    threshold tuning need every system's).

    Raises:
        ValueError: saying which split lacks what.
    """
    if len(train) == 0:
        raise ValueError("the training split is empty: there is nothing to train on")
    if len(val) == 0:
        raise ValueError(
            "the validation split is empty: early stopping and threshold tuning need "
            f"validation documents of {', '.join(systems)}"
        )
    system_ids = getattr(val, "system_ids", None)
    labels = getattr(val, "label_indices", None)
    if system_ids is None:
        return
    for system in systems:
        sid = SYSTEM_IDS.get(system)
        docs = [i for i, s in enumerate(system_ids) if s == sid]
        if not docs:
            raise ValueError(
                f"the validation split has no {system} documents: early stopping and "
                f"threshold tuning need validation documents of every trained system "
                f"({', '.join(systems)})"
            )
        if labels is not None and not any(labels[i] for i in docs):
            raise ValueError(
                f"the {len(docs)} {system} validation documents carry no code: the "
                "validation metrics need at least one"
            )


@torch.no_grad()
def predict(model: nn.Module, dataset: Dataset, collate_fn: Callable[[list[Any]], Any],
            systems: Sequence[str], batch_size: int, device: torch.device,
            amp_dtype: torch.dtype | None = None) -> Predictions:
    """Probabilities and targets of every document of ``dataset``, per system, in the
    dataset's order (``model`` is left in the train/eval mode it had).

    A model with MAT (:class:`~jams_pyg.models.JAMS`: ``use_mat`` and
    ``code_embeddings()``) refines its code tables once for the pass and gets them as
    ``forward(..., code_tables=...)``; the numbers are those of refining per batch.

    Args:
        model: The plain model (not wrapped in DDP or ``torch.compile``).
        collate_fn: Turns dataset items into a batch (see :class:`~jams_pyg.train.trainer.Trainer`).
        systems: The systems to collect.
        batch_size: Documents per batch.
        device: The model's device.
        amp_dtype: Mixed precision of the pass (see :func:`autocast`).
    """
    was_training = model.training
    model.eval()
    extra: dict[str, Any] = {}
    if getattr(model, "use_mat", False) and hasattr(model, "code_embeddings"):
        with autocast(device, amp_dtype):  # as inside forward: the same numbers
            extra["code_tables"] = model.code_embeddings()
    batches = [list(range(i, min(i + batch_size, len(dataset))))
               for i in range(0, len(dataset), batch_size)]
    probs: dict[str, list[np.ndarray]] = {s: [] for s in systems}
    targets: dict[str, list[np.ndarray]] = {s: [] for s in systems}
    ids: dict[str, list[Any]] = {s: [] for s in systems}
    for batch in DataLoader(dataset, batch_sampler=batches, collate_fn=collate_fn):
        batch = batch.to(device)
        with autocast(device, amp_dtype):
            logits = model(batch.input_ids, batch.attention_mask, batch.system, **extra)
        system_ids = batch.system.tolist()
        for index, system in enumerate(systems):
            if system not in logits or logits[system].shape[0] == 0:
                continue
            probs[system].append(torch.sigmoid(logits[system].float()).cpu().numpy())
            targets[system].append(batch.labels[system].cpu().numpy())
            sid = SYSTEM_IDS.get(system, index)
            ids[system].extend(d for d, s in zip(batch.ids, system_ids, strict=True)
                               if s == sid)
    model.train(was_training)
    out = Predictions()
    for system in systems:
        if probs[system]:
            out.probs[system] = np.concatenate(probs[system])
            out.targets[system] = np.concatenate(targets[system])
            out.ids[system] = ids[system]
    return out


__all__ = ["Predictions", "autocast", "check_splits", "predict"]
