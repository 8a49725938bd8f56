"""A model's predictions on a dataset split: every document's probabilities and targets per
system, the input of the evaluation protocol (:func:`~jams_pyg.eval.thresholds.evaluate`).

:func:`predict` serves the trainer's validation passes and a run's final evaluation; a model
with MAT refines its code tables once per pass (they do not depend on the documents), while
training steps keep MAT inside ``forward`` for its gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from jams_pyg.icd.codes import SYSTEM_IDS
from jams_pyg.models.runtime import autocast


@dataclass
class Predictions:
    """Per-system model outputs on a dataset split."""

    probs: dict[str, np.ndarray] = field(default_factory=dict)
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    ids: dict[str, list[Any]] = field(default_factory=dict)


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
        collate_fn: Turns dataset items into a batch with ``.to()``, ``input_ids``,
            ``attention_mask``, ``system``, ``labels`` and ``ids``.
        systems: The systems to collect.
        batch_size: Documents per batch.
        device: The model's device.
        amp_dtype: Mixed precision of the pass (see
            :func:`~jams_pyg.models.runtime.autocast`).
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


__all__ = ["Predictions", "predict"]
