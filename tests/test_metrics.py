"""jams_pyg.metrics against scikit-learn and plainly written references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, roc_auc_score

import jams_pyg.metrics as metrics_module
from jams_pyg.metrics import (
    METRIC_KEYS,
    compute_metrics,
    evaluate,
    micro_f1,
    per_code_f1,
    tune_threshold,
)


def _data(seed: int, n: int = 80, c: int = 30, decimals: int | None = None, dtype=np.float64):
    """Random probabilities correlated with random targets, with the awkward cases built in:
    code 3 has no positive, code 7 is positive in every document but 5, which has no code;
    every third document is separable at 0.5 (an exact match)."""
    rng = np.random.default_rng(seed)
    targets = rng.random((n, c)) < 0.15
    targets[:, 3] = False
    targets[:, 7] = True
    targets[5] = False
    signal = np.where(np.arange(n)[:, None] % 3 == 0, 0.55, 0.35)  # every 3rd row separable
    probs = np.clip(signal * targets + (1 - signal) * rng.random((n, c)), 0.0, 1.0)
    if decimals is not None:  # many ties
        probs = np.round(probs, decimals)
    return probs.astype(dtype), targets


def _reference_ranking(probs, targets, ks=(8, 15)):
    """Per-document loop; ranking by decreasing probability, ties by lower code index."""
    sums = {f"precision@{k}": 0.0 for k in ks} | {"r_precision": 0.0, "map": 0.0}
    docs = 0
    for row_p, row_t in zip(probs, targets, strict=True):
        num_true = int(row_t.sum())
        if num_true == 0:
            continue
        docs += 1
        order = sorted(range(len(row_p)), key=lambda j, row_p=row_p: (-float(row_p[j]), j))
        relevant = [bool(row_t[j]) for j in order]
        for k in ks:
            sums[f"precision@{k}"] += sum(relevant[:k]) / k
        sums["r_precision"] += sum(relevant[:num_true]) / num_true
        precision_sum = 0.0
        for rank, hit in enumerate(relevant, start=1):
            if hit:
                precision_sum += sum(relevant[:rank]) / rank
        sums["map"] += precision_sum / num_true
    return {key: value / docs for key, value in sums.items()}


def _sklearn_reference(probs, targets, threshold):
    present = targets.any(axis=0)
    p, t = probs[:, present].astype(np.float64), targets[:, present]
    both = t.any(axis=0) & (~t).any(axis=0)
    ref = {
        "auc_micro": roc_auc_score(t.ravel(), p.ravel()),
        "auc_macro": roc_auc_score(t[:, both], p[:, both], average="macro"),
    }
    docs = t.any(axis=1)
    p, t = p[docs], t[docs]
    pred = p > threshold
    ref["f1_micro"] = f1_score(t, pred, average="micro", zero_division=0)
    ref["f1_macro"] = f1_score(t, pred, average="macro", zero_division=0)
    ref["exact_match"] = accuracy_score(t, pred)  # subset accuracy
    ref.update(_reference_ranking(p, t))
    return ref, p, t


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decimals", [None, 1])
@pytest.mark.parametrize("threshold", [0.3, 0.5])
def test_every_metric_matches_reference(dtype, decimals, threshold):
    probs, targets = _data(seed=1, decimals=decimals, dtype=dtype)
    result = compute_metrics(probs, targets, threshold)
    assert list(result) == list(METRIC_KEYS)
    assert all(isinstance(value, float) for value in result.values())
    ref, p, t = _sklearn_reference(probs, targets, threshold)
    for key in METRIC_KEYS:
        assert result[key] == pytest.approx(ref[key], abs=1e-12), key
    if decimals is None:  # no ties: MAP is the mean of scikit-learn's per-document AP
        sk_map = np.mean([average_precision_score(t[i], p[i]) for i in range(len(t))])
        assert result["map"] == pytest.approx(sk_map, abs=1e-12)


def test_values_are_not_trivial():
    probs, targets = _data(seed=2)
    result = compute_metrics(probs, targets, 0.5)
    for key in METRIC_KEYS:
        assert 0.0 < result[key] < 1.0, key


def test_hand_checked_example():
    probs = np.array([[0.9, 0.2, 0.6, 0.1], [0.4, 0.8, 0.3, 0.7], [0.5, 0.5, 0.5, 0.5]])
    targets = np.array([[1, 0, 0, 0], [0, 1, 0, 1], [1, 0, 0, 0]])
    result = compute_metrics(probs, targets, threshold=0.5)
    # code 2 has no positive and is dropped; codes 0, 1, 3 remain.
    # predictions (p > 0.5): doc0 {0}, doc1 {1, 3}, doc2 {} -> TP 3, FP 0, FN 1 (doc2 code 0)
    assert result["f1_micro"] == pytest.approx(6 / 7)
    # per code: code0 TP1 FN1 -> 2/3, code1 -> 1, code3 -> 1
    assert result["f1_macro"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert result["exact_match"] == pytest.approx(2 / 3)
    # P@8 over 3 present codes still divides by 8: doc0 1/8, doc1 2/8, doc2 1/8
    assert result["precision@8"] == pytest.approx(4 / 24)
    # doc2: all tied -> order codes 0, 1, 3 -> code 0 first: R-prec 1, AP 1
    assert result["r_precision"] == pytest.approx(1.0)
    assert result["map"] == pytest.approx(1.0)
    # micro AUC: positives {0.9, 0.8, 0.7, 0.5}, negatives {0.2, 0.1, 0.4, 0.5, 0.5}:
    # pairs won 5 + 5 + 5 + (3 + 2 ties * 0.5) = 19 of 20
    assert result["auc_micro"] == pytest.approx(19 / 20)


def test_code_without_positives_is_excluded():
    probs, targets = _data(seed=3)
    keep = targets.any(axis=0)
    # code 3 is absent: its (high) probabilities must not count as false positives
    probs[:, 3] = 0.99
    assert not keep[3]
    full = compute_metrics(probs, targets, 0.5)
    restricted = compute_metrics(probs[:, keep], targets[:, keep], 0.5)
    assert full == pytest.approx(restricted, abs=1e-15)


def test_document_without_codes():
    probs, targets = _data(seed=4)
    assert not targets[5].any()
    probs[5] = 0.99  # predicts everything for a document without codes
    with_doc = compute_metrics(probs, targets, 0.5)
    keep = np.ones(len(targets), dtype=bool)
    keep[5] = False
    without = compute_metrics(probs[keep], targets[keep], 0.5)
    # threshold and ranking metrics ignore the document (Edin's filter) ...
    for key in ("f1_micro", "f1_macro", "exact_match", "precision@8", "r_precision", "map"):
        assert with_doc[key] == pytest.approx(without[key], abs=1e-15), key
    # ... AUC keeps it: its 0.99 negatives lower the AUC
    assert with_doc["auc_micro"] < without["auc_micro"]


def test_macro_auc_skips_one_class_codes():
    probs, targets = _data(seed=5)
    targets[:, 7] = True  # no negative: no ROC curve
    result = compute_metrics(probs, targets)
    others = [j for j in range(targets.shape[1]) if j not in (3, 7)]
    ref = np.mean([roc_auc_score(targets[:, j], probs[:, j]) for j in others])
    assert result["auc_macro"] == pytest.approx(ref, abs=1e-12)


def test_all_codes_positive_everywhere_gives_nan_auc():
    probs = np.array([[0.2, 0.9], [0.7, 0.1]])
    targets = np.ones((2, 2), dtype=int)
    result = compute_metrics(probs, targets, 0.5)
    assert np.isnan(result["auc_micro"])
    assert np.isnan(result["auc_macro"])
    assert result["f1_micro"] == pytest.approx(2 * 2 / (2 * 2 + 0 + 2))


def test_ties_in_rows_are_broken_by_code_index():
    probs = np.full((3, 20), 0.5)
    targets = np.zeros((3, 20), dtype=bool)
    targets[0, [0, 1, 19]] = True
    targets[1, [18, 19]] = True
    targets[2] = True  # every code present; this row scores 1 everywhere
    result = compute_metrics(probs, targets)
    # row 0: hits at ranks 1, 2, 20; row 1: ranks 19, 20
    assert result["precision@8"] == pytest.approx((2 / 8 + 0 + 1) / 3)
    assert result["precision@15"] == pytest.approx((2 / 15 + 0 + 1) / 3)
    assert result["r_precision"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    ap0 = (1 + 1 + 3 / 20) / 3
    ap1 = (1 / 19 + 2 / 20) / 2
    assert result["map"] == pytest.approx((ap0 + ap1 + 1) / 3)
    assert compute_metrics(probs.astype(np.float32), targets) == pytest.approx(result)


def test_negative_zero_and_saturated_probabilities():
    probs, targets = _data(seed=6, decimals=1)
    probs[probs < 0.15] = -0.0
    probs[probs > 0.85] = 1.0
    as64 = compute_metrics(probs, targets)
    as32 = compute_metrics(probs.astype(np.float32), targets)
    assert as64 == pytest.approx(as32, abs=1e-12)
    ref, _, _ = _sklearn_reference(probs, targets, 0.5)
    assert as32 == pytest.approx(ref, abs=1e-12)


def test_chunked_passes_agree(monkeypatch):
    probs, targets = _data(seed=7, n=120, c=40, decimals=2, dtype=np.float32)
    whole = compute_metrics(probs, targets, 0.4)
    whole_threshold = tune_threshold(probs, targets)
    whole_grid = tune_threshold(probs, targets, grid=np.linspace(0, 1, 100))
    monkeypatch.setattr(metrics_module, "_CHUNK_ELEMENTS", 97)  # chunks of 2 rows / columns
    assert compute_metrics(probs, targets, 0.4) == pytest.approx(whole, abs=1e-12)
    assert tune_threshold(probs, targets) == whole_threshold
    assert tune_threshold(probs, targets, grid=np.linspace(0, 1, 100)) == whole_grid


def test_torch_inputs():
    probs, targets = _data(seed=8)
    ref = compute_metrics(probs, targets, 0.5)
    got = compute_metrics(torch.from_numpy(probs), torch.from_numpy(targets).float(), 0.5)
    assert got == pytest.approx(ref, abs=1e-12)
    half = compute_metrics(torch.from_numpy(probs).half(), torch.from_numpy(targets), 0.5)
    assert half["auc_micro"] == pytest.approx(ref["auc_micro"], abs=1e-2)


def test_per_code_f1():
    probs, targets = _data(seed=9)
    f1 = per_code_f1(probs, targets, 0.5)
    assert f1.shape == (targets.shape[1],)
    assert np.isnan(f1[3]) and np.isnan(f1).sum() == 1
    docs = targets.any(axis=1)
    ref = f1_score(targets[docs], probs[docs] > 0.5, average=None, zero_division=0)
    present = targets.any(axis=0)
    np.testing.assert_allclose(f1[present], ref[present], atol=1e-12)
    assert np.nanmean(f1) == pytest.approx(compute_metrics(probs, targets, 0.5)["f1_macro"])
    assert micro_f1(probs, targets, 0.5) == compute_metrics(probs, targets, 0.5)["f1_micro"]


def _all_cut_f1(probs, targets):
    """micro-F1 of every distinct prediction set: thresholds between sorted unique values."""
    values = np.unique(probs.astype(np.float64))
    cuts = np.concatenate(([values[0] - 1e-3], (values[:-1] + values[1:]) / 2, [values[-1]]))
    return max(micro_f1(probs, targets, cut) for cut in cuts)


@pytest.mark.parametrize("decimals", [None, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tune_threshold_exact_is_optimal(decimals, dtype):
    probs, targets = _data(seed=10, n=50, c=20, decimals=decimals, dtype=dtype)
    threshold = tune_threshold(probs, targets)
    best = compute_metrics(probs, targets, threshold)["f1_micro"]
    grid = np.round(np.arange(0.01, 1.0, 0.01), 2)
    assert all(best >= micro_f1(probs, targets, g) for g in grid)
    assert best == pytest.approx(_all_cut_f1(probs, targets), abs=1e-15)
    assert 0.0 < threshold < 1.0


def test_tune_threshold_between_adjacent_floats():
    lo = np.float32(0.6)
    hi = np.nextafter(lo, np.float32(1))
    probs = np.array([[hi, lo, 0.1], [0.2, hi, lo]], dtype=np.float32)
    targets = np.array([[1, 0, 0], [0, 1, 0]])
    threshold = tune_threshold(probs, targets)
    assert float(lo) < threshold < float(hi)
    assert compute_metrics(probs, targets, threshold)["f1_micro"] == 1.0


def test_tune_threshold_grid():
    probs, targets = _data(seed=11)
    grid = np.linspace(0, 1, 100)  # Edin's grid
    threshold = tune_threshold(probs, targets, grid=grid)
    assert threshold in grid
    scores = [micro_f1(probs, targets, g) for g in grid]
    assert micro_f1(probs, targets, threshold) == max(scores)
    assert threshold == grid[int(np.argmax(scores))]  # lowest of equal scores
    with pytest.raises(ValueError, match="grid"):
        tune_threshold(probs, targets, grid=[])


def test_evaluate_protocol():
    val_p, val_t = _data(seed=12)
    test_p, test_t = _data(seed=13)
    out = evaluate(val_p, val_t, test_p, test_t)
    assert out["threshold"] == tune_threshold(val_p, val_t)
    assert out["test"] == compute_metrics(test_p, test_t, out["threshold"])
    assert out["val"] == compute_metrics(val_p, val_t, out["threshold"])


@pytest.mark.parametrize(
    ("probs", "targets", "match"),
    [
        (np.zeros((3, 4)), np.zeros((3, 5)), "shape mismatch"),
        (np.zeros(4), np.zeros(4), "2-D"),
        (np.array([[0.5, np.nan]]), np.array([[1, 0]]), "NaN"),
        (np.array([[0.5, 1.5]]), np.array([[1, 0]]), r"\[0, 1\]"),
        (np.array([[0.5, -2.0]]), np.array([[1, 0]]), "sigmoid"),
        (np.array([[0.5, 0.2]]), np.array([[1, 2]]), "binary"),
        (np.array([[0.5, 0.2]]), np.array([[0, 0]]), "no positive"),
        (np.zeros((0, 3)), np.zeros((0, 3)), "empty"),
    ],
)
def test_bad_input(probs, targets, match):
    with pytest.raises(ValueError, match=match):
        compute_metrics(probs, targets)
    with pytest.raises(ValueError, match=match):
        tune_threshold(probs, targets)


def test_bad_threshold():
    probs, targets = _data(seed=14)
    with pytest.raises(ValueError, match="finite"):
        compute_metrics(probs, targets, float("nan"))
    with pytest.raises(TypeError, match="number"):
        compute_metrics(probs, targets, "high")
