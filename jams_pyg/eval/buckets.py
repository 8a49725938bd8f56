r"""Macro-F1 by training frequency (the paper's Figure 2) and by GEM link (Figure 3).

* **Figure 2** — the codes are grouped by how many training documents carry them (1–100,
  101–1000, 1001+, :data:`FREQUENCY_BUCKETS`) and the macro-F1 of each group on the test
  split is compared between the backbone and the backbone + JAMS.
* **Figure 3** — inside the rarest group, macro-F1 of the codes with a GEM link (an edge to
  the other system in :class:`~jams_pyg.GEMGraph`, ``graph.linked(system)``) versus those
  without one.

Their tables are in :mod:`jams_pyg.eval.tables`, their bar chart in :mod:`jams_pyg.eval.plots`.

**Scaling the buckets.** The bucket edges are training-document counts of MIMIC-IV
(~154k ICD-9 and ~89k ICD-10 training documents). On a smaller corpus, such as the embedded
synthetic one, no code reaches 1001 occurrences, so :func:`scale_buckets` multiplies every
upper edge by a factor ``scale`` (rounded, at least 1) and starts every bucket one past the
previous upper edge: ``scale=0.01`` turns (1–100, 101–1000, 1001+) into (1–1, 2–10, 11+).
:func:`frequency_scale` gives the factor that keeps the buckets at the same *relative*
frequency as on MIMIC-IV (training documents of the corpus / of MIMIC-IV).

A macro-F1 of a group averages :func:`~jams_pyg.eval.metrics.per_code_f1` over the group's codes
present in the evaluated split (those with a ``nan`` F1 are absent from the split and only
counted in ``num_absent``); codes never seen in training form the separate group
``"unseen"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

Bucket = tuple[int, int | None]

FREQUENCY_BUCKETS: tuple[Bucket, ...] = ((1, 100), (101, 1000), (1001, None))
"""Training-frequency groups of the paper's Figure 2 (inclusive; ``None``: no upper edge)."""

MIMIC_IV_TRAIN_DOCS: dict[str, int] = {
    "icd9": round(209_326 * 0.738),
    "icd10": round(122_279 * 0.729),
}
"""Approximate training documents of MIMIC-IV per system (documents × train share, Table 1)."""


def bucket_label(bucket: Bucket) -> str:
    """``(1, 100)`` -> ``"1-100"``, ``(1001, None)`` -> ``"1001+"``."""
    low, high = bucket
    return f"{low}+" if high is None else f"{low}-{high}"


def _check_buckets(buckets: Sequence[Bucket]) -> tuple[Bucket, ...]:
    buckets = tuple((int(low), None if high is None else int(high)) for low, high in buckets)
    if not buckets:
        raise ValueError("buckets is empty")
    expected_low = 1
    for position, (low, high) in enumerate(buckets):
        if low != expected_low:
            raise ValueError(
                f"buckets[{position}] = {(low, high)} must start at {expected_low}: buckets "
                "must cover 1, 2, ... contiguously so that every seen code has one bucket"
            )
        if high is None:
            if position != len(buckets) - 1:
                raise ValueError(f"buckets[{position}] is open-ended but not the last bucket")
            break
        if high < low:
            raise ValueError(
                f"buckets[{position}] = {(low, high)} has its upper edge below its lower edge"
            )
        expected_low = high + 1
    if buckets[-1][1] is not None:
        raise ValueError(f"the last bucket {buckets[-1]} must be open-ended (upper edge None)")
    return buckets


def scale_buckets(
    buckets: Sequence[Bucket] = FREQUENCY_BUCKETS, scale: float = 1.0
) -> tuple[Bucket, ...]:
    """Buckets for a corpus ``scale`` times the size of MIMIC-IV (see the module docstring).

    Every upper edge becomes ``max(1, round(high * scale))`` and every lower edge the previous
    upper edge + 1. Raises ``ValueError`` when two buckets collapse into one.

    Example:
        >>> scale_buckets(FREQUENCY_BUCKETS, 0.05)
        ((1, 5), (6, 50), (51, None))
    """
    buckets = _check_buckets(buckets)
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    out: list[Bucket] = []
    low = 1
    for original_low, high in buckets:
        if high is None:
            out.append((low, None))
            break
        new_high = max(1, round(high * scale))
        if new_high < low:
            raise ValueError(
                f"scale={scale} is too small: bucket {bucket_label((original_low, high))} "
                f"collapses into the previous one (upper edge {new_high} < lower edge {low})"
            )
        out.append((low, new_high))
        low = new_high + 1
    return tuple(out)


def frequency_scale(num_train_docs: int, system: str) -> float:
    """``num_train_docs`` / the MIMIC-IV training documents of ``system`` ("icd9"|"icd10")."""
    if system not in MIMIC_IV_TRAIN_DOCS:
        raise ValueError(f"system must be one of {sorted(MIMIC_IV_TRAIN_DOCS)}, got {system!r}")
    if num_train_docs <= 0:
        raise ValueError(f"num_train_docs must be positive, got {num_train_docs}")
    return num_train_docs / MIMIC_IV_TRAIN_DOCS[system]


def code_frequencies(target_lists: Iterable[Iterable[str]], codes: Sequence[str]) -> np.ndarray:
    """Number of documents carrying each code (a code counted once per document).

    Args:
        target_lists: the code list of every training document (e.g. ``ds.train["target"]``).
        codes: the label vocabulary (``CodingDataset.codes``), in label-index order.

    Returns:
        np.ndarray: int64 counts :math:`(C,)`. A code missing from ``codes`` raises
        ``ValueError`` naming the document.
    """
    index = {code: position for position, code in enumerate(codes)}
    counts = np.zeros(len(index), dtype=np.int64)
    for doc, targets in enumerate(target_lists):
        if isinstance(targets, str):
            raise TypeError(f"document {doc}: targets must be a list of codes, not a string")
        for code in set(targets):
            try:
                counts[index[code]] += 1
            except KeyError:
                raise ValueError(
                    f"document {doc}: code {code!r} is not in the label vocabulary"
                ) from None
    return counts


def _as_array(values: Any, name: str, length: int | None = None) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D [codes], got shape {array.shape}")
    if length is not None and len(array) != length:
        raise ValueError(f"{name} has {len(array)} entries but per_code_f1 has {length}")
    return array


def _group(f1: np.ndarray, members: np.ndarray) -> dict[str, Any]:
    values = f1[members]
    present = ~np.isnan(values)
    return {
        "macro_f1": float(values[present].mean()) if present.any() else None,
        "num_codes": int(present.sum()),
        "num_absent": int((~present).sum()),
    }


def bucket_macro_f1(
    per_code_f1: Any,
    train_counts: Any,
    linked: Any = None,
    buckets: Sequence[Bucket] = FREQUENCY_BUCKETS,
    scale: float = 1.0,
) -> dict[str, Any]:
    r"""Macro-F1 by training-frequency bucket (Figure 2) and by GEM link (Figure 3).

    Args:
        per_code_f1 (np.ndarray): test F1 per code, ``nan`` for codes absent from the test
            split (:func:`jams_pyg.eval.metrics.per_code_f1`).
        train_counts (np.ndarray): training documents per code (:func:`code_frequencies`).
        linked (np.ndarray or torch.BoolTensor, optional): whether each code has a GEM link
            (``GEMGraph.linked(system)``); adds the Figure 3 split of the rarest bucket.
        buckets: contiguous buckets starting at 1, the last open-ended.
            (default: :data:`FREQUENCY_BUCKETS`)
        scale (float, optional): bucket scale, see :func:`scale_buckets`. (default: 1.0)

    Shapes:
        - **input:** per_code_f1 :math:`(C,)`, train_counts :math:`(C,)`, linked :math:`(C,)`

    Returns:
        dict: JSON-ready, macro-F1 as fractions (``None`` for a group without evaluated codes)::

            {"scale": 1.0,
             "buckets": {"1-100": {"low": 1, "high": 100, "macro_f1": 0.21,
                                   "num_codes": 830, "num_absent": 412}, ...},
             "unseen": {"macro_f1": ..., "num_codes": ..., "num_absent": ...},
             "linkage": {"bucket": "1-100",          # only with ``linked``
                         "with_link": {...}, "without_link": {...}}}
    """
    f1 = _as_array(per_code_f1, "per_code_f1").astype(np.float64)
    counts = _as_array(train_counts, "train_counts", len(f1))
    if counts.dtype.kind not in "iu" and not np.all(np.mod(counts, 1) == 0):
        raise ValueError("train_counts must hold whole numbers of documents")
    counts = counts.astype(np.int64)
    if (counts < 0).any():
        raise ValueError(f"train_counts has a negative entry at code {int(np.argmin(counts))}")
    finite = np.isnan(f1) | ((f1 >= 0) & (f1 <= 1))
    if not finite.all():
        raise ValueError(
            f"per_code_f1 must be in [0, 1] or nan; code {int(np.argmin(finite))} has "
            f"{f1[np.argmin(finite)]!r}"
        )
    scaled = scale_buckets(buckets, scale)
    result: dict[str, Any] = {"scale": float(scale), "buckets": {}}
    masks = []
    for low, high in scaled:
        members = (counts >= low) & (True if high is None else counts <= high)
        masks.append(members)
        result["buckets"][bucket_label((low, high))] = {
            "low": low,
            "high": high,
            **_group(f1, members),
        }
    result["unseen"] = _group(f1, counts == 0)
    if linked is not None:
        link = _as_array(linked, "linked", len(f1))
        if link.dtype != np.bool_:
            if not np.isin(link, (0, 1)).all():
                raise ValueError("linked must be a boolean mask")
            link = link.astype(bool)
        result["linkage"] = {
            "bucket": bucket_label(scaled[0]),
            "with_link": _group(f1, masks[0] & link),
            "without_link": _group(f1, masks[0] & ~link),
        }
    return result


def bucket_groups(bucket_result: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(label, group dict) of one :func:`bucket_macro_f1` result, in display order: the
    frequency buckets (``"1-100"``), ``"unseen"`` when it has evaluated codes, then the
    linkage groups (``"1-100 w/ link"``, ``"1-100 w/o link"``)."""
    groups = list(bucket_result["buckets"].items())
    unseen = bucket_result.get("unseen")
    if unseen is not None and unseen["num_codes"]:
        groups.append(("unseen", unseen))
    linkage = bucket_result.get("linkage")
    if linkage is not None:
        groups.append((f"{linkage['bucket']} w/ link", linkage["with_link"]))
        groups.append((f"{linkage['bucket']} w/o link", linkage["without_link"]))
    return groups


def bucket_series(runs: list[Mapping[str, Any]]) -> list[tuple[str, int, list[float | None]]]:
    """Per group of :func:`bucket_groups`: its label, its number of evaluated codes (in the
    first run) and its macro-F1 in every run (one :func:`bucket_macro_f1` result per seed).
    Raises ``ValueError`` when the runs have different groups."""
    first = bucket_groups(runs[0])
    series = []
    for position, (label, group) in enumerate(first):
        values = []
        for run in runs:
            groups = bucket_groups(run)
            if len(groups) != len(first) or groups[position][0] != label:
                raise ValueError(f"bucket results disagree on their groups: {label!r}")
            values.append(groups[position][1]["macro_f1"])
        series.append((label, int(group["num_codes"]), values))
    return series


__all__ = [
    "FREQUENCY_BUCKETS",
    "MIMIC_IV_TRAIN_DOCS",
    "bucket_groups",
    "bucket_label",
    "bucket_macro_f1",
    "bucket_series",
    "code_frequencies",
    "frequency_scale",
    "scale_buckets",
]
