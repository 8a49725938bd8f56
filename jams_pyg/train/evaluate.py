"""What a training run needs of its splits, checked before any training
(:func:`check_splits`). A model's predictions on a split are
:func:`jams_pyg.eval.prediction.predict`."""

from __future__ import annotations

from collections.abc import Sequence

from torch.utils.data import Dataset

from jams_pyg.icd.codes import SYSTEM_IDS


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


__all__ = ["check_splits"]
