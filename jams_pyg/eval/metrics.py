r"""Evaluation metrics of automated medical coding, as defined by Edin et al. (2023).

Edin et al., "Automated medical coding on MIMIC-III and MIMIC-IV: a critical review and
replicability study" (SIGIR 2023) evaluate every model with the nine metrics the JAMS paper
reports in Table 2. This module re-implements their definitions on dense numpy arrays
``probs`` (probabilities in :math:`[0, 1]`) and ``targets`` (multi-hot :math:`\{0, 1\}`)
of shape ``[N, C]`` (documents × codes of one coding system).

Sources read (``JoakimEdin/medical-coding-reproducibility``): ``src/metrics.py``
(``MetricCollection``, ``F1Score``, ``ExactMatchRatio``, ``Precision_K``,
``PrecisionAtRecall``, ``MeanAveragePrecision``, ``AUC``), ``src/factories.py``
(``get_metric_collection``: ``code_indices`` = the split's codes, ``split2code_indices`` of
``src/lookups.py``, intersected with a code system's codes), ``src/trainer/trainer.py``
(``calculate_metrics``) and ``src/utils/decision_boundary.py`` (``f1_score_db_tuning``). JAMS
(``GY-Jeong/JAMS``, ``src/metrics.py`` and ``src/trainer/trainer.py``) copies them and runs
everything per coding system (``mimiciv_icd9`` / ``mimiciv_icd10``, one tuned threshold each).

**Which codes and documents each metric sees.** Let :math:`\mathcal{C}^+` be the codes with
at least one positive target in the evaluated ``targets`` and :math:`\mathcal{D}^+` the
documents with at least one true code among them (Edin's ``MetricCollection.filter_batch``).

* ``auc_micro`` (default ``micro_auc_codes="all"``): ROC AUC of **all** :math:`N \times C`
  (document, code) pairs, codes without positives and documents without codes included
  (ties count one half, as scikit-learn's trapezoidal ROC). This is Edin's number: in
  ``MetricCollection.compute`` the non-batch metrics (``AUC``) are recomputed last on the
  *unfiltered* ``logits, targets``, overwriting the filtered value, and ``AUC.roc_curve`` with
  ``average="micro"`` is ``roc_curve(targets.ravel(), logits.ravel())``.
  ``micro_auc_codes="present"`` restricts it to the columns of :math:`\mathcal{C}^+` (all
  documents), the previous behaviour of this module.
* ``auc_macro``: mean over the codes with at least one positive *and* one negative of the
  per-code ROC AUC, over all ``N`` documents; ``nan`` when no code has both. Same as Edin
  (``AUC.roc_curve(average="none")`` skips codes with ``targets[:, i].sum() == 0`` and codes
  whose ROC has NaN, i.e. without negatives); with no such code both give ``nan``.
* ``f1_micro``, ``f1_macro``, ``exact_match``, ``precision@8``, ``precision@15``,
  ``r_precision`` (Edin's ``precision@recall``), ``map``: over the codes of
  :math:`\mathcal{C}^+` and the documents of :math:`\mathcal{D}^+` only, as Edin (batch
  metrics with ``filter_codes=True`` see the filtered batch). A prediction of a code outside
  :math:`\mathcal{C}^+` is therefore not a false positive. ``f1_macro`` averages over all of
  :math:`\mathcal{C}^+`.

Deliberate differences from Edin's code: counts are exact (Edin accumulate float32 and add
:math:`10^{-10}` to denominators, which changes nothing here since every denominator is at
least 1 on :math:`\mathcal{C}^+, \mathcal{D}^+`); ties in a document's ranking are broken by
the lower code index (``torch.sort`` / ``torch.topk`` leave them unspecified); :math:`P@k`
with fewer than ``k`` codes divides by ``k`` (``torch.topk`` would fail); targets with no
positive at all raise ``ValueError`` (Edin would divide by zero). The threshold tuning of
:func:`~jams_pyg.eval.thresholds.tune_threshold` defaults to Edin's protocol, which unlike the
metrics above counts every code and document of the validation split (see
:data:`~jams_pyg.eval.protocol.THRESHOLD_PROTOCOLS`).

With :math:`\hat{y} = \mathbb{1}[p > \tau]` (strictly greater, as Edin) and per-code counts
:math:`TP_c, FP_c, FN_c`:

.. math::
    F1_c = \frac{2\,TP_c}{2\,TP_c + FP_c + FN_c}, \quad
    \text{F1}_{micro} = \frac{2\sum_c TP_c}{\sum_c (2\,TP_c + FP_c + FN_c)}, \quad
    \text{F1}_{macro} = \frac{1}{|\mathcal{C}^+|}\sum_{c \in \mathcal{C}^+} F1_c

with :math:`0/0 := 0` (scikit-learn's ``zero_division=0``; Edin add :math:`10^{-10}` to the
denominator, which gives the same 0; on :math:`\mathcal{C}^+` the denominator is never 0).
``exact_match`` is the fraction of documents whose predicted code set equals the true set.
For a document with true set :math:`T` ranked by decreasing probability (ties broken by the
lower code index first, so every metric is deterministic),

.. math::
    P@k = \frac{|T \cap \text{top}_k|}{k}, \quad
    \text{R-prec} = \frac{|T \cap \text{top}_{|T|}|}{|T|}, \quad
    AP = \frac{1}{|T|}\sum_{r:\, \text{rank } r \in T} \frac{|T \cap \text{top}_r|}{r},

each averaged over the documents of :math:`\mathcal{D}^+` (``map`` is the mean AP).

All values are fractions in :math:`[0, 1]` (Table 2 shows them × 100). The implementation is
vectorised and processes rows in chunks, so 20k documents × 8k codes fit in a few GB.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata

from jams_pyg.eval.names import METRIC_KEYS

MICRO_AUC_CODES: tuple[str, ...] = ("all", "present")
"""Code sets of ``auc_micro`` in :func:`compute_metrics` (default first): ``"all"`` every
(document, code) pair as Edin et al., ``"present"`` only the codes with a positive."""

_CHUNK_ELEMENTS = 1 << 22  # elements per chunk of row-wise passes (~4M)


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------


def _to_numpy(array: Any, name: str) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        if array.dtype in (torch.float16, torch.bfloat16):
            array = array.float()
        array = array.numpy()
    try:
        return np.asarray(array)
    except Exception as err:  # pragma: no cover - exotic inputs
        raise TypeError(f"{name} cannot be converted to a numpy array: {err}") from None


def check_inputs(probs: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert ``probs`` [N, C] floats in [0, 1] and ``targets`` [N, C] {0, 1}
    (numpy or torch) to numpy: float32/float64 probabilities and boolean targets.

    Raises:
        ValueError / TypeError: naming the first bad value with its document and code.
    """
    p = _to_numpy(probs, "probs")
    t = _to_numpy(targets, "targets")
    if p.ndim != 2:
        raise ValueError(f"probs must be 2-D [documents, codes], got shape {p.shape}")
    if t.shape != p.shape:
        raise ValueError(
            f"shape mismatch: probs has shape {p.shape} but targets has shape {t.shape}"
        )
    if p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(f"probs is empty (shape {p.shape}): nothing to evaluate")
    if p.dtype.kind not in "fiub":
        raise TypeError(f"probs must be numeric, got dtype {p.dtype}")
    if p.dtype.kind != "f":
        p = p.astype(np.float64)
    elif p.dtype not in (np.float32, np.float64):
        p = p.astype(np.float32)
    nan = np.isnan(p)
    if nan.any():
        row, col = np.argwhere(nan)[0]
        raise ValueError(
            f"probs contains {int(nan.sum())} NaN value(s), first at [document {row}, code {col}]"
        )
    low, high = p.min(), p.max()
    if low < 0.0 or high > 1.0:
        bad = np.argwhere((p < 0.0) | (p > 1.0))[0]
        raise ValueError(
            f"probs must be probabilities in [0, 1]; found {p[tuple(bad)]!r} at [document "
            f"{bad[0]}, code {bad[1]}] (pass sigmoid(logits), not logits)"
        )
    if t.dtype != np.bool_:
        if t.dtype.kind not in "fiu":
            raise TypeError(f"targets must be numeric or boolean, got dtype {t.dtype}")
        nonbinary = (t != 0) & (t != 1)
        if nonbinary.any():
            bad = np.argwhere(nonbinary)[0]
            raise ValueError(
                f"targets must be binary {{0, 1}}; found {t[tuple(bad)]!r} at [document "
                f"{bad[0]}, code {bad[1]}]"
            )
        t = t.astype(bool)
    return p, t


def _check_threshold(threshold: Any) -> float:
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise TypeError(f"threshold must be a number, got {threshold!r}") from None
    if not np.isfinite(value):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    return value


def restrict_to_present(p: np.ndarray, t: np.ndarray, docs: bool) -> tuple[np.ndarray, np.ndarray]:
    """Columns of the codes present in ``t`` and, when ``docs``, rows with a true code
    (Edin's ``MetricCollection.filter_batch``; see the module docstring).

    Raises:
        ValueError: when ``t`` has no positive at all.
    """
    present = t.any(axis=0)
    if not present.any():
        raise ValueError(
            "targets contain no positive label: the metrics, restricted to the codes present "
            "in the split, are undefined"
        )
    if not present.all():
        p, t = p[:, present], t[:, present]
    if docs:
        has_codes = t.any(axis=1)
        if not has_codes.all():
            p, t = p[has_codes], t[has_codes]
    return p, t


def _row_chunks(n_rows: int, n_cols: int) -> tuple[range, int]:
    """Start rows and chunk length of a row-wise pass over an [n_rows, n_cols] array."""
    step = max(1, _CHUNK_ELEMENTS // max(n_cols, 1))
    return range(0, n_rows, step), step


# --------------------------------------------------------------------------------------------
# counting helpers
# --------------------------------------------------------------------------------------------


def counts_at(scores: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How many ``scores`` lie below / on each of the ascending unique ``edges`` [K].

    Sorts one chunk of rows at a time (no global sort, no index array) and returns ``below``
    [K] (#scores < edge), ``equal`` [K] (#scores == edge) and ``lower`` [K] (the largest
    score below each edge, ``-inf`` where none).
    """
    below = np.zeros(len(edges), dtype=np.int64)
    equal = np.zeros(len(edges), dtype=np.int64)
    lower = np.full(len(edges), -np.inf)
    starts, step = _row_chunks(*scores.shape)
    for start in starts:
        ordered = np.sort(scores[start : start + step], axis=None)
        left = np.searchsorted(ordered, edges, side="left")
        right = np.searchsorted(ordered, edges, side="right")
        below += left
        equal += right - left
        has_lower = left > 0
        lower[has_lower] = np.maximum(lower[has_lower], ordered[left[has_lower] - 1])
    return below, equal, lower


def _micro_auc(p: np.ndarray, t: np.ndarray) -> float:
    """ROC AUC of all pairs (Mann-Whitney U with ties counted 1/2)."""
    edges, pos = np.unique(p[t], return_counts=True)
    num_pos = int(pos.sum())
    num_neg = p.size - num_pos
    if num_pos == 0 or num_neg == 0:
        return float("nan")
    below, equal, _ = counts_at(p, edges)
    pos_below = np.concatenate(([0], np.cumsum(pos)[:-1]))
    u_stat = np.sum(pos * ((below - pos_below) + 0.5 * (equal - pos)))
    return float(u_stat / (num_pos * num_neg))


def _per_code_auc(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """ROC AUC of every column (average ranks for ties); ``nan`` for one-class columns.

    Rank sums of the positives per column (Mann-Whitney U). For float32 scores, one sort of
    64-bit keys ``column << 32 | float bits`` (non-negative floats order like their bit
    patterns) ranks a block of columns at once; other dtypes use ``scipy.stats.rankdata``.
    """
    n, c = p.shape
    pos = t.sum(axis=0).astype(np.float64)
    neg = n - pos
    rank_sum = np.zeros(c, dtype=np.float64)
    block = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, c, block):
        scores = p[:, start : start + block]
        hits = t[:, start : start + block]
        width = scores.shape[1]
        if p.dtype == np.float32:
            bits = np.ascontiguousarray(scores).view(np.uint32).astype(np.uint64)
            bits[scores == 0] = 0  # -0.0 ranks with +0.0
            keys = bits | (np.arange(width, dtype=np.uint64) << np.uint64(32))[None, :]
            ordered = np.sort(keys, axis=None)
            pos_keys = keys[hits]  # row-major: the column of each positive below
            cols = np.nonzero(hits)[1]
            left = np.searchsorted(ordered, pos_keys, side="left")
            right = np.searchsorted(ordered, pos_keys, side="right")
            ranks = left - cols * n + (right - left + 1) / 2.0
            rank_sum[start : start + width] = np.bincount(cols, weights=ranks, minlength=width)
        else:
            ranks = rankdata(scores, axis=0)
            rank_sum[start : start + width] = np.sum(ranks * hits, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (rank_sum - pos * (pos + 1) / 2) / (pos * neg)
    auc[(pos == 0) | (neg == 0)] = np.nan
    return auc


def _confusion(p: np.ndarray, t: np.ndarray, threshold: float):
    """Per-code TP, FP, FN and the number of exactly matched documents at ``threshold``."""
    c = p.shape[1]
    tp = np.zeros(c, dtype=np.int64)
    fp = np.zeros(c, dtype=np.int64)
    fn = np.zeros(c, dtype=np.int64)
    exact = 0
    starts, step = _row_chunks(p.shape[0], c)
    for start in starts:
        pred = p[start : start + step] > np.float64(threshold)  # compare in float64
        true = t[start : start + step]
        tp += np.sum(pred & true, axis=0)
        fp += np.sum(pred & ~true, axis=0)
        fn += np.sum(~pred & true, axis=0)
        exact += int(np.sum(np.all(pred == true, axis=1)))
    return tp, fp, fn, exact


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denominator = 2 * tp + fp + fn
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def _positive_ranks(scores: np.ndarray, hits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and 1-based rank (by decreasing score, ties: lower column first) of every positive.

    Returned sorted by row, then rank. For float32 scores one sort of unique 64-bit keys
    ``row | inverted float bits | column`` ranks the whole chunk (the caller keeps
    ``rows * 2**column_bits <= 2**32``); other dtypes use a stable row-wise argsort.
    """
    n, c = scores.shape
    if scores.dtype == np.float32:
        col_bits = max(1, (c - 1).bit_length())
        bits = np.ascontiguousarray(scores).view(np.uint32).copy()
        bits[scores == 0] = 0  # -0.0 ties with +0.0
        keys = (np.uint32(0xFFFFFFFF) - bits).astype(np.uint64) << np.uint64(col_bits)
        keys |= np.arange(c, dtype=np.uint64)[None, :]
        keys |= np.arange(n, dtype=np.uint64)[:, None] << np.uint64(32 + col_bits)
        pos_keys = np.sort(keys[hits])
        position = np.searchsorted(np.sort(keys, axis=None), pos_keys)
        rows = (pos_keys >> np.uint64(32 + col_bits)).astype(np.int64)
        return rows, position - rows * c + 1
    order = np.argsort(-scores, axis=1, kind="stable")
    rows, position = np.nonzero(np.take_along_axis(hits, order, axis=1))
    return rows, position + 1


def _ranking_metrics(p: np.ndarray, t: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    """P@k, R-precision and MAP over the rows of ``p`` (each row has >= 1 true code)."""
    n, c = p.shape
    sums = {f"precision@{k}": 0.0 for k in ks}
    sums["r_precision"] = 0.0
    sums["map"] = 0.0
    step = min(_row_chunks(n, c)[1], 1 << (32 - max(1, (c - 1).bit_length())))
    for start in range(0, n, step):
        rows, ranks = _positive_ranks(p[start : start + step], t[start : start + step])
        num_true = np.bincount(rows)
        first = np.concatenate(([0], np.cumsum(num_true)[:-1]))
        found = np.arange(len(rows)) - first[rows] + 1  # true codes ranked <= this one
        row_true = num_true[rows]
        for k in ks:
            sums[f"precision@{k}"] += float(np.count_nonzero(ranks <= k)) / k
        sums["r_precision"] += float(np.sum((ranks <= row_true) / row_true))
        sums["map"] += float(np.sum(found / ranks / row_true))
    return {key: value / n for key, value in sums.items()}


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def compute_metrics(
    probs: Any, targets: Any, threshold: float = 0.5, *, micro_auc_codes: str = "all"
) -> dict[str, float]:
    r"""The nine metrics of Table 2 (Edin et al. 2023 definitions).

    See the module docstring for the exact definitions and Edin's source. Summary:
    ``auc_micro`` uses every (document, code) pair by default (Edin), or only the codes with
    a positive with ``micro_auc_codes="present"``; ``auc_macro`` averages over the codes with
    both a positive and a negative, over all documents; ``f1_micro``, ``f1_macro``,
    ``exact_match``, ``precision@8``, ``precision@15``, ``r_precision`` and ``map`` use only
    the codes with a positive and the documents with at least one of them. A code is predicted
    when its probability is strictly greater than ``threshold``.

    Args:
        probs (np.ndarray or torch.Tensor): probabilities in :math:`[0, 1]`.
        targets (np.ndarray or torch.Tensor): multi-hot targets, bool or {0, 1}.
        threshold (float, optional): decision threshold, e.g. from
            :func:`~jams_pyg.eval.thresholds.tune_threshold` on the validation split.
            (default: :obj:`0.5`)
        micro_auc_codes (str, optional): one of :data:`MICRO_AUC_CODES`: ``"all"`` (Edin)
            or ``"present"``. (default: ``"all"``)

    Shapes:
        - **input:** probs :math:`(N, C)`, targets :math:`(N, C)`
        - **output:** ``dict`` of the keys :data:`METRIC_KEYS` to Python floats in
          :math:`[0, 1]` (``auc_macro`` may be ``nan``)

    Raises:
        ValueError: on a shape mismatch, NaN or out-of-range probabilities, non-binary
            targets, or targets without any positive label.
    """
    if micro_auc_codes not in MICRO_AUC_CODES:
        raise ValueError(
            f"micro_auc_codes must be one of {MICRO_AUC_CODES}, got {micro_auc_codes!r}"
        )
    p, t = check_inputs(probs, targets)
    threshold = _check_threshold(threshold)
    auc_micro = _micro_auc(p, t) if micro_auc_codes == "all" else None
    p, t = restrict_to_present(p, t, docs=False)
    per_code_auc = _per_code_auc(p, t)
    valid_auc = ~np.isnan(per_code_auc)
    result = {
        "auc_micro": _micro_auc(p, t) if auc_micro is None else auc_micro,
        "auc_macro": float(per_code_auc[valid_auc].mean()) if valid_auc.any() else float("nan"),
    }
    has_codes = t.any(axis=1)
    if not has_codes.all():
        p, t = p[has_codes], t[has_codes]
    tp, fp, fn, exact = _confusion(p, t, threshold)
    result["f1_micro"] = float(_f1(tp.sum(), fp.sum(), fn.sum()))
    result["f1_macro"] = float(_f1(tp, fp, fn).mean())
    result["exact_match"] = exact / p.shape[0]
    result.update(_ranking_metrics(p, t, ks=(8, 15)))
    return {key: result[key] for key in METRIC_KEYS}


def per_code_f1(probs: Any, targets: Any, threshold: float = 0.5) -> np.ndarray:
    r"""F1 of every code at ``threshold``, ``nan`` for codes absent from ``targets``.

    Computed on the same documents as ``f1_macro`` of :func:`compute_metrics` (those with at
    least one true code), so ``np.nanmean(per_code_f1(...))`` equals ``f1_macro``.

    Shapes:
        - **input:** probs :math:`(N, C)`, targets :math:`(N, C)`
        - **output:** :math:`(C,)` float64
    """
    p, t = check_inputs(probs, targets)
    threshold = _check_threshold(threshold)
    present = t.any(axis=0)
    has_codes = t.any(axis=1)
    out = np.full(p.shape[1], np.nan)
    if not present.any():
        return out
    tp, fp, fn, _ = _confusion(p[has_codes], t[has_codes], threshold)
    out[present] = _f1(tp, fp, fn)[present]
    return out


def micro_f1(probs: Any, targets: Any, threshold: float = 0.5) -> float:
    """``f1_micro`` of :func:`compute_metrics` alone (cheaper)."""
    p, t = check_inputs(probs, targets)
    p, t = restrict_to_present(p, t, docs=True)
    tp, fp, fn, _ = _confusion(p, t, _check_threshold(threshold))
    return float(_f1(tp.sum(), fp.sum(), fn.sum()))


__all__ = [
    "MICRO_AUC_CODES",
    "compute_metrics",
    "micro_f1",
    "per_code_f1",
]
