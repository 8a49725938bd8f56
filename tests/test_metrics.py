"""jams_pyg.eval.metrics and .thresholds against scikit-learn and plainly written references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, roc_auc_score

import jams_pyg.eval.metrics as metrics_module
from jams_pyg.eval.metrics import (
    METRIC_KEYS,
    MICRO_AUC_CODES,
    compute_metrics,
    micro_f1,
    per_code_f1,
)
from jams_pyg.eval.protocol import THRESHOLD_PROTOCOLS
from jams_pyg.eval.thresholds import (
    EDIN_THRESHOLD_GRID,
    evaluate,
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
        # Edin: micro AUC over every (document, code) pair, codes without positives included
        "auc_micro": roc_auc_score(targets.ravel(), probs.astype(np.float64).ravel()),
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
    # micro AUC over all pairs (Edin): positives {0.9, 0.8, 0.7, 0.5}, negatives
    # {0.2, 0.1, 0.4, 0.5, 0.5} and code 2's {0.6, 0.3, 0.5}: 8 + 8 + 8 + (4 + 3 * 0.5) of 32
    assert result["auc_micro"] == pytest.approx(29.5 / 32)
    # restricted to the present codes: 5 + 5 + 5 + (3 + 2 ties * 0.5) = 19 of 20
    present = compute_metrics(probs, targets, threshold=0.5, micro_auc_codes="present")
    assert present["auc_micro"] == pytest.approx(19 / 20)
    assert {k: v for k, v in present.items() if k != "auc_micro"} == {
        k: v for k, v in result.items() if k != "auc_micro"
    }


def test_code_without_positives_is_excluded():
    probs, targets = _data(seed=3)
    keep = targets.any(axis=0)
    # code 3 is absent: its (high) probabilities must not count as false positives
    probs[:, 3] = 0.99
    assert not keep[3]
    full = compute_metrics(probs, targets, 0.5, micro_auc_codes="present")
    restricted = compute_metrics(probs[:, keep], targets[:, keep], 0.5)
    assert full == pytest.approx(restricted, abs=1e-15)
    # default (Edin): only auc_micro sees the absent code, as 0.99 negatives
    edin = compute_metrics(probs, targets, 0.5)
    assert edin["auc_micro"] < restricted["auc_micro"]
    assert edin["auc_micro"] == pytest.approx(roc_auc_score(targets.ravel(), probs.ravel()))
    for key in METRIC_KEYS[1:]:
        assert edin[key] == pytest.approx(restricted[key], abs=1e-15), key


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
    whole_exact = tune_threshold(probs, targets, protocol="exact")
    whole_grid = tune_threshold(probs, targets, grid=np.linspace(0, 1, 100), protocol="exact")
    monkeypatch.setattr(metrics_module, "_CHUNK_ELEMENTS", 97)  # chunks of 2 rows / columns
    assert compute_metrics(probs, targets, 0.4) == pytest.approx(whole, abs=1e-12)
    assert tune_threshold(probs, targets) == whole_threshold
    assert tune_threshold(probs, targets, protocol="exact") == whole_exact
    grid = np.linspace(0, 1, 100)
    assert tune_threshold(probs, targets, grid=grid, protocol="exact") == whole_grid


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
    threshold = tune_threshold(probs, targets, protocol="exact")
    best = compute_metrics(probs, targets, threshold)["f1_micro"]
    grid = np.concatenate((np.round(np.arange(0.0, 1.0, 0.01), 2), EDIN_THRESHOLD_GRID))
    assert all(best >= micro_f1(probs, targets, g) for g in grid)
    # in particular it beats-or-equals Edin's pick on the restricted objective
    assert best >= micro_f1(probs, targets, tune_threshold(probs, targets))
    assert best == pytest.approx(_all_cut_f1(probs, targets), abs=1e-15)
    assert 0.0 < threshold < 1.0


def test_tune_threshold_between_adjacent_floats():
    lo = np.float32(0.6)
    hi = np.nextafter(lo, np.float32(1))
    probs = np.array([[hi, lo, 0.1], [0.2, hi, lo]], dtype=np.float32)
    targets = np.array([[1, 0, 0], [0, 1, 0]])
    threshold = tune_threshold(probs, targets, protocol="exact")
    assert float(lo) < threshold < float(hi)
    assert compute_metrics(probs, targets, threshold)["f1_micro"] == 1.0


def test_tune_threshold_grid():
    probs, targets = _data(seed=11)
    grid = np.linspace(0, 1, 100)
    threshold = tune_threshold(probs, targets, grid=grid, protocol="exact")
    assert threshold in grid
    scores = [micro_f1(probs, targets, g) for g in grid]
    assert micro_f1(probs, targets, threshold) == max(scores)
    assert threshold == grid[int(np.argmax(scores))]  # lowest of equal scores
    with pytest.raises(ValueError, match="grid"):
        tune_threshold(probs, targets, grid=[])
    with pytest.raises(ValueError, match="grid"):
        tune_threshold(probs, targets, grid=[0.5, 1.5], protocol="exact")
    # the Edin protocol on a custom grid: all cells, first maximum
    assert tune_threshold(probs, targets, grid=grid) == _edin_reference(probs, targets, grid)


@pytest.mark.parametrize("protocol", THRESHOLD_PROTOCOLS)
def test_evaluate_tunes_on_one_split_and_scores_another(protocol):
    val_p, val_t = _data(seed=12)
    test_p, test_t = _data(seed=13)
    out = evaluate(test_p, test_t, tune_on=(val_p, val_t), protocol=protocol)
    assert out["threshold"] == tune_threshold(val_p, val_t, protocol=protocol)
    assert out["metrics"] == compute_metrics(test_p, test_t, out["threshold"])
    # the protocols pick different thresholds here, so the argument is really used
    assert (tune_threshold(val_p, val_t, protocol="edin")
            != tune_threshold(val_p, val_t, protocol="exact"))
    given = evaluate(test_p, test_t, threshold=0.3, micro_auc_codes="present")
    assert given == {"threshold": 0.3, "metrics": compute_metrics(
        test_p, test_t, 0.3, micro_auc_codes="present")}


def test_evaluate_needs_one_threshold_source():
    probs, targets = _data(seed=14)
    for kwargs in ({}, {"tune_on": (probs, targets), "threshold": 0.5}):
        with pytest.raises(ValueError, match="exactly one of tune_on"):
            evaluate(probs, targets, **kwargs)
    with pytest.raises(ValueError, match="protocol must be one of"):
        evaluate(probs, targets, threshold=0.5, protocol="grid")


def test_protocol_record_is_what_runs_record():
    from jams_pyg.eval.protocol import protocol_record

    assert protocol_record() == {"threshold": "edin", "micro_auc_codes": "all",
                                 "threshold_split": "val"}
    assert protocol_record("exact", "bundle")["threshold"] == "exact"
    with pytest.raises(ValueError, match="protocol must be one of"):
        protocol_record("mullenbach")


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
    if match == "no positive":  # a threshold is still returned (Edin: 0.0)
        assert tune_threshold(probs, targets) == 0.0
        assert tune_threshold(probs, targets, protocol="exact") == 0.5
        return
    for protocol in THRESHOLD_PROTOCOLS:
        with pytest.raises(ValueError, match=match):
            tune_threshold(probs, targets, protocol=protocol)


def test_bad_protocol():
    probs, targets = _data(seed=15)
    with pytest.raises(ValueError, match="protocol"):
        tune_threshold(probs, targets, protocol="mullenbach")
    with pytest.raises(ValueError, match="micro_auc_codes"):
        compute_metrics(probs, targets, micro_auc_codes="some")


def test_bad_threshold():
    probs, targets = _data(seed=14)
    with pytest.raises(ValueError, match="finite"):
        compute_metrics(probs, targets, float("nan"))
    with pytest.raises(TypeError, match="number"):
        compute_metrics(probs, targets, "high")


# --------------------------------------------------------------------------------------------
# Edin et al.'s threshold protocol, re-computed independently
# --------------------------------------------------------------------------------------------


def _edin_reference(probs, targets, grid=None):
    """A plain loop as ``f1_score_db_tuning`` (Edin et al., src/utils/decision_boundary.py):
    every grid value, every cell, ``p > t``, micro-F1, first maximum."""
    if grid is None:
        grid = torch.linspace(0, 1, 100).numpy()  # float32, as theirs
    p = np.asarray(probs)
    t = np.asarray(targets).astype(bool)
    best_f1, best_t = -1.0, None
    for value in grid:
        pred = p > value
        tp = int(np.sum(pred & t))
        fp = int(np.sum(pred & ~t))
        fn = int(np.sum(~pred & t))
        f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0
        if f1 > best_f1:  # strict: the first maximum wins
            best_f1, best_t = f1, float(value)
    return best_t


def test_edin_grid_is_torch_linspace():
    assert THRESHOLD_PROTOCOLS[0] == "edin" and "exact" in THRESHOLD_PROTOCOLS
    assert MICRO_AUC_CODES[0] == "all"
    torch_grid = torch.linspace(0, 1, 100)
    assert EDIN_THRESHOLD_GRID.dtype == np.float64 and len(EDIN_THRESHOLD_GRID) == 100
    assert np.array_equal(EDIN_THRESHOLD_GRID, torch_grid.double().numpy())
    assert np.array_equal(EDIN_THRESHOLD_GRID.astype(np.float32), torch_grid.numpy())


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tune_threshold_default_is_edin(seed, dtype):
    rng = np.random.default_rng(100 + seed)
    n, c = 70, 25
    targets = rng.random((n, c)) < 0.12
    targets[:, 2] = False  # a code without positives ...
    targets[4] = False  # ... and a document without codes, both counted by Edin
    probs = np.clip(0.3 * targets + 0.7 * rng.random((n, c)), 0, 1)
    if seed % 2:  # ties, many of them exactly on grid values
        probs = torch.linspace(0, 1, 100).numpy()[np.round(probs * 99).astype(int)]
    probs = probs.astype(dtype)
    got = tune_threshold(probs, targets)
    assert got == _edin_reference(probs, targets)
    assert got in EDIN_THRESHOLD_GRID
    assert tune_threshold(torch.from_numpy(probs), torch.from_numpy(targets)) == got


def test_tune_threshold_edin_differs_from_restricted_search():
    """Edin count absent codes and code-less documents: on these data the restricted exact
    search picks a threshold Edin's protocol would not."""
    rng = np.random.default_rng(0)
    targets = rng.random((40, 10)) < 0.2
    targets[:, :3] = False
    targets[:8] = False
    probs = np.clip(0.3 * targets + 0.7 * rng.random((40, 10)), 0, 1)
    probs[:8] = 0.7  # code-less documents: false positives for Edin only
    edin = tune_threshold(probs, targets)
    restricted = tune_threshold(probs, targets, grid=EDIN_THRESHOLD_GRID, protocol="exact")
    assert edin == _edin_reference(probs, targets)
    assert edin >= 0.7 > restricted  # Edin skip the 0.7 cells, the restricted search not


def test_tune_threshold_ties_first_maximum():
    # every grid value between 0.1 and 0.8 gives the same prediction set: the first one wins
    probs = np.array([[0.9, 0.05], [0.85, 0.95]])
    targets = np.array([[1, 0], [1, 1]])
    got = tune_threshold(probs, targets)
    assert got == _edin_reference(probs, targets) == float(torch.linspace(0, 1, 100)[5])


DEGENERATE = [
    ("zeros_eye", np.zeros((4, 3)), np.eye(4, 3)),
    ("all_zero_probs", np.zeros((5, 4)), np.random.default_rng(1).random((5, 4)) < 0.5),
    ("all_one_probs", np.ones((5, 4)), np.random.default_rng(2).random((5, 4)) < 0.5),
    ("no_positives", np.random.default_rng(3).random((5, 4)), np.zeros((5, 4))),
    ("all_positives", np.random.default_rng(4).random((5, 4)), np.ones((5, 4))),
    ("all_positives_ones", np.ones((3, 3)), np.ones((3, 3))),
    ("all_positives_zeros", np.zeros((3, 3)), np.ones((3, 3))),
    ("single_cell", np.array([[0.3]]), np.array([[1]])),
]


@pytest.mark.parametrize(("name", "probs", "targets"), DEGENERATE, ids=[d[0] for d in DEGENERATE])
@pytest.mark.parametrize("protocol", THRESHOLD_PROTOCOLS)
def test_tune_threshold_in_unit_interval_on_degenerate_input(name, probs, targets, protocol):
    for dtype in (np.float32, np.float64):
        p = probs.astype(dtype)
        threshold = tune_threshold(p, targets, protocol=protocol)
        assert isinstance(threshold, float)
        assert 0.0 <= threshold <= 1.0, (name, protocol, threshold)
        if protocol == "edin":
            assert threshold == _edin_reference(p, targets)
        grid_threshold = tune_threshold(p, targets, grid=[0.0, 0.5, 1.0], protocol=protocol)
        assert 0.0 <= grid_threshold <= 1.0


def test_tune_threshold_zeros_eye_regression():
    # used to return -5e-324 (outside [0, 1]), which broke bundle saving
    assert tune_threshold(np.zeros((4, 3)), np.eye(4, 3)) == 0.0
    assert tune_threshold(np.zeros((4, 3)), np.eye(4, 3), protocol="exact") == 0.5


@pytest.mark.parametrize("seed", range(4))
def test_exact_beats_any_grid_threshold_on_restricted_objective(seed):
    probs, targets = _data(seed=200 + seed, n=60, c=20, decimals=2 if seed % 2 else None)
    exact = tune_threshold(probs, targets, protocol="exact")
    best = micro_f1(probs, targets, exact)
    assert 0.0 <= exact <= 1.0
    for value in EDIN_THRESHOLD_GRID:
        assert best >= micro_f1(probs, targets, value)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("decimals", [None, 1])
def test_micro_auc_over_all_pairs_matches_sklearn(seed, decimals):
    probs, targets = _data(seed=300 + seed, decimals=decimals, dtype=np.float32)
    result = compute_metrics(probs, targets)
    ref = roc_auc_score(targets.ravel(), probs.astype(np.float64).ravel())
    assert result["auc_micro"] == pytest.approx(ref, abs=1e-12)
    present = targets.any(axis=0)
    restricted = compute_metrics(probs, targets, micro_auc_codes="present")["auc_micro"]
    ref_present = roc_auc_score(targets[:, present].ravel(), probs[:, present].ravel())
    assert restricted == pytest.approx(ref_present, abs=1e-12)
