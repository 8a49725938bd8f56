r"""Decision thresholds: Edin et al.'s tuning protocol and the exact micro-F1 maximiser.

Edin et al. (2023) tune one decision threshold per model on the validation split and apply
it to the test split; JAMS tunes one per coding system. :func:`tune_threshold` implements
their grid search (:data:`EDIN_THRESHOLD_GRID`, micro-F1 over *every* code and document of
the split) and, as ``protocol="exact"``, the exact maximiser of the restricted ``f1_micro``
of :func:`~jams_pyg.eval.metrics.compute_metrics`. :func:`evaluate` runs the whole protocol
for one system (:mod:`~jams_pyg.eval.protocol`): tune on validation, score the test split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from jams_pyg.eval.metrics import check_inputs, compute_metrics, counts_at, restrict_to_present
from jams_pyg.eval.protocol import PROTOCOL_MICRO_AUC_CODES, check_protocol

EDIN_THRESHOLD_GRID: np.ndarray = torch.linspace(0, 1, 100).numpy().astype(np.float64)
"""Edin et al.'s candidate thresholds: the float32 values of ``torch.linspace(0, 1, 100)``
(``src/utils/decision_boundary.py``), held exactly in float64."""
EDIN_THRESHOLD_GRID.setflags(write=False)


def _micro_f1_at(p: np.ndarray, t: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Micro-F1 at every threshold of ``candidates`` [K] over *all* cells of ``p``, ``p > g``.

    Exact integer counts (TP, predicted, positives) and ``2 TP / (predicted + positives)`` in
    float64, 0 where nothing is predicted and nothing is true. Edin's objective on the whole
    split; on the restricted split (codes with a positive, documents with a code) the
    ``f1_micro`` of :func:`~jams_pyg.eval.metrics.compute_metrics`.
    """
    edges = np.unique(candidates)
    below, equal, _ = counts_at(p, edges)
    predicted = p.size - (below + equal)[np.searchsorted(edges, candidates)]  # #values > g
    positives = np.sort(p[t].astype(np.float64))
    num_pos = positives.size
    true_pos = num_pos - np.searchsorted(positives, candidates, side="right")
    denominator = predicted + num_pos
    return np.where(denominator > 0, 2 * true_pos / np.maximum(denominator, 1), 0.0)


def _check_grid(grid: Any) -> np.ndarray:
    candidates = np.asarray(grid, dtype=np.float64).ravel()
    if candidates.size == 0 or not np.isfinite(candidates).all():
        raise ValueError(f"grid must be a non-empty sequence of finite numbers, got {grid!r}")
    if candidates.min() < 0.0 or candidates.max() > 1.0:
        raise ValueError(f"grid values must lie in [0, 1], got {grid!r}")
    return candidates


def tune_threshold(
    probs: Any,
    targets: Any,
    grid: Sequence[float] | None = None,
    *,
    protocol: str = "edin",
) -> float:
    r"""The decision threshold that maximises micro-F1 on a validation split.

    Edin et al. tune one threshold per model on the validation split and apply it to the test
    split (JAMS tunes one per coding system: ``GY-Jeong/JAMS`` ``src/trainer/trainer.py``,
    ``calculate_metrics``, ``best_db_icd9`` / ``best_db_icd10``, with the same function).

    * ``protocol="edin"`` (default): Edin et al.'s protocol exactly, as in
      ``JoakimEdin/medical-coding-reproducibility`` ``src/utils/decision_boundary.py``
      (``f1_score_db_tuning``, called from ``src/trainer/trainer.py``,
      ``Trainer.calculate_metrics`` on the *unfiltered* validation outputs, which are sigmoid
      probabilities despite the name ``logits``: ``src/models/base_model.py``,
      ``validation_step``): the candidates
      are the 100 float32 values of ``torch.linspace(0, 1, 100)``
      (:data:`EDIN_THRESHOLD_GRID`; they differ from ``np.linspace`` rounded to float32 in
      some last bits), the prediction is :math:`p > \tau`, micro-F1 counts **every** code and
      **every** document of the split (codes without positives and documents without codes
      included, unlike :func:`compute_metrics`), and the first maximum (lowest threshold) is
      returned, as ``torch.argmax``. The counts are exact integers and F1 is computed in
      float64 (Edin accumulate in float32 with ``+1e-10`` in the denominator, which can only
      differ on near-ties below float32 resolution). With no positive at all every candidate
      scores 0 and the result is ``0.0``, as theirs.
    * ``protocol="exact"``: the exact maximiser of ``compute_metrics(...)["f1_micro"]`` (codes
      with a positive, documents with a code). Only thresholds just below a positive's
      probability can be optimal, so every such cut is scored in one vectorised pass; the
      returned threshold is the midpoint between the best cut value and the next lower
      probability (robust to rounding); its restricted micro-F1 is >= that of any other
      threshold in :math:`[0, 1]`. Cuts at probability 0 are not reachable with
      :math:`p > \tau,\ \tau \ge 0` and are skipped; when no cut is reachable (no positive,
      or every positive at probability 0) every threshold scores 0 and ``0.5`` is returned.

    ``grid`` (values in :math:`[0, 1]`) replaces the candidates: with ``"edin"`` it is
    searched with Edin's all-cells objective, with ``"exact"`` with the restricted objective;
    among equal scores the lowest value wins. The result is always in :math:`[0, 1]`.

    Args:
        probs (np.ndarray or torch.Tensor): validation probabilities :math:`(N, C)`.
        targets (np.ndarray or torch.Tensor): validation targets :math:`(N, C)`.
        grid (sequence of float, optional): candidate thresholds in :math:`[0, 1]`.
            (default: :obj:`None`, Edin's 100-value grid for ``"edin"``, the exact search for
            ``"exact"``)
        protocol (str, optional): one of
            :data:`~jams_pyg.eval.protocol.THRESHOLD_PROTOCOLS`. (default: ``"edin"``)

    Returns:
        float: the threshold, in :math:`[0, 1]`.
    """
    check_protocol(protocol)
    p, t = check_inputs(probs, targets)
    candidates = _check_grid(grid) if grid is not None else None
    if protocol == "edin":
        # on a custom grid sorted ascending, the first maximum is the lowest threshold
        candidates = EDIN_THRESHOLD_GRID if candidates is None else np.sort(candidates)
        f1 = _micro_f1_at(p, t, candidates)
        return float(np.clip(candidates[int(np.argmax(f1))], 0.0, 1.0))

    if not t.any():
        return 0.5
    p, t = restrict_to_present(p, t, docs=True)
    if candidates is not None:
        candidates = np.unique(candidates)  # ascending: the first maximum is the lowest
        return float(candidates[int(np.argmax(_micro_f1_at(p, t, candidates)))])

    num_pos = int(t.sum())
    edges, pos = np.unique(p[t].astype(np.float64), return_counts=True)
    below, _, lower = counts_at(p, edges)
    predicted = p.size - below  # predicting every value >= edges[k]
    true_pos = np.cumsum(pos[::-1])[::-1]
    f1 = 2 * true_pos / (predicted + num_pos)
    f1[edges <= 0.0] = -1.0  # p > tau >= 0 never predicts a probability of 0
    best = int(np.argmax(f1))
    if f1[best] <= 0.0:
        return 0.5
    cut = float(edges[best])
    if below[best] == 0:  # nothing below the cut: any threshold in [0, cut)
        threshold = float(np.nextafter(cut, -np.inf))
    else:
        threshold = (max(float(lower[best]), 0.0) + cut) / 2.0
    return float(np.clip(threshold, 0.0, 1.0))


def evaluate(
    probs: Any,
    targets: Any,
    *,
    tune_on: tuple[Any, Any] | None = None,
    threshold: float | None = None,
    protocol: str = "edin",
    micro_auc_codes: str = PROTOCOL_MICRO_AUC_CODES,
    grid: Sequence[float] | None = None,
) -> dict[str, Any]:
    """The evaluation protocol for one system (:mod:`~jams_pyg.eval.protocol`): the decision
    threshold tuned on ``tune_on`` (the validation split's probabilities and targets) with
    ``protocol``, or a given ``threshold`` (e.g. a bundle's), then the metrics of ``probs`` and
    ``targets`` (the test split) at it. Training and ``jams-pyg evaluate`` both call this.

    Args:
        probs, targets: The evaluated split, :math:`(N, C)` (see :func:`compute_metrics`).
        tune_on: ``(probs, targets)`` of the split the threshold is tuned on.
        threshold: The threshold to apply instead (exactly one of ``tune_on`` and
            ``threshold``).
        protocol, grid: Go to :func:`tune_threshold` (one of
            :data:`~jams_pyg.eval.protocol.THRESHOLD_PROTOCOLS`).
        micro_auc_codes: Goes to :func:`compute_metrics` (default: all codes, as Edin et al.).

    Returns:
        dict: ``{"threshold": float, "metrics": dict}``, the metrics of
        :func:`compute_metrics` at the threshold.
    """
    check_protocol(protocol)
    if (tune_on is None) == (threshold is None):
        raise ValueError("give exactly one of tune_on (the split to tune the threshold on) "
                         f"and threshold; got tune_on={'set' if tune_on else None}, "
                         f"threshold={threshold!r}")
    if tune_on is not None:
        threshold = tune_threshold(*tune_on, grid=grid, protocol=protocol)
    return {"threshold": float(threshold),
            "metrics": compute_metrics(probs, targets, threshold,
                                       micro_auc_codes=micro_auc_codes)}


__all__ = ["EDIN_THRESHOLD_GRID", "evaluate", "tune_threshold"]
