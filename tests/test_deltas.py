"""jams_pyg.eval.deltas (paired variant − reference deltas over seeds, their tables) and
the epochs-per-run table of jams_pyg.eval.tables, on tiny hand-made run payloads."""

from __future__ import annotations

import math

import pytest

from jams_pyg.eval.deltas import (
    delta_table,
    delta_text,
    format_delta,
    rarest_groups,
    summarize_deltas,
)
from jams_pyg.eval.tables import MISSING, convergence_rows, convergence_table


def _system(f1_macro, f1_micro, mapv, rare, freq, linked, unlinked):
    group = {"num_codes": 3, "num_absent": 0}
    return {
        "metrics": {"f1_macro": f1_macro, "f1_micro": f1_micro, "map": mapv, "auc_micro": 0.9},
        "buckets": {
            "scale": 0.1,
            "buckets": {"1-10": {"low": 1, "high": 10, "macro_f1": rare, **group},
                        "11+": {"low": 11, "high": None, "macro_f1": freq, **group}},
            "unseen": {"macro_f1": None, "num_codes": 0, "num_absent": 2},
            "linkage": {"bucket": "1-10", "with_link": {"macro_f1": linked, **group},
                        "without_link": {"macro_f1": unlinked, **group}},
        },
    }


def _run(variant, seed, icd9, icd10=None):
    systems = {"icd9": _system(*icd9)}
    if icd10 is not None:
        systems["icd10"] = _system(*icd10)
    return {"label": variant, "model": "laat", "variant": variant, "seed": seed,
            "bucket_scale": 0.1, "systems": systems}


RUNS = [
    _run("backbone", 0, (0.30, 0.50, 0.60, 0.10, 0.70, 0.20, 0.05), (0.2, 0.4, 0.5, 0, 0, 0, 0)),
    _run("backbone", 1, (0.32, 0.52, 0.62, 0.12, 0.72, 0.22, None)),
    _run("jams", 0, (0.34, 0.49, 0.63, 0.15, 0.69, 0.30, 0.04), (0.3, 0.4, 0.5, 0, 0, 0, 0)),
    _run("jams", 1, (0.38, 0.52, 0.64, 0.19, 0.72, 0.30, 0.06)),
    _run("jams", 2, (0.99, 0.99, 0.99, 0.99, 0.99, 0.99, 0.99)),  # no backbone seed 2: unpaired
]


def test_summarize_deltas_pairs_by_seed():
    d = summarize_deltas(RUNS)["laat"]["jams"]
    icd9 = d["icd9"]
    # macro-F1: seed 0 +0.04, seed 1 +0.06 -> mean 0.05, sample std sqrt(2)*0.01
    assert icd9["f1_macro"]["per_seed"] == pytest.approx([0.04, 0.06])
    assert icd9["f1_macro"]["mean"] == pytest.approx(0.05)
    assert icd9["f1_macro"]["std"] == pytest.approx(math.sqrt(2) * 0.01)
    # 95 % t-interval of the mean, n = 2: t(0.975, 1) = 12.7062 (tables), half-width
    # t * std / sqrt(2) = 12.7062 * 0.01
    assert icd9["f1_macro"]["ci95"] == pytest.approx(12.7062 * 0.01, rel=1e-4)
    assert icd9["f1_macro"]["seeds"] == [0, 1]
    assert icd9["f1_micro"]["mean"] == pytest.approx(-0.005)
    assert icd9["bucket 1-10"]["mean"] == pytest.approx(0.06)
    assert icd9["bucket 11+"]["mean"] == pytest.approx(-0.005)
    assert icd9["1-10 w/ link"]["per_seed"] == pytest.approx([0.10, 0.08])
    # the backbone's seed-1 value is None: only seed 0 counts, no std from one value
    assert icd9["1-10 w/o link"] == {"mean": pytest.approx(-0.01), "std": None, "ci95": None,
                                     "per_seed": [pytest.approx(-0.01)], "seeds": [0]}
    assert d["icd10"]["f1_macro"]["per_seed"] == pytest.approx([0.1])
    assert set(icd9) == {"f1_macro", "f1_micro", "map", "bucket 1-10", "bucket 11+",
                         "1-10 w/ link", "1-10 w/o link"}


def test_summarize_deltas_rejects_duplicates_and_needs_backbone():
    with pytest.raises(ValueError, match="two runs"):
        summarize_deltas([*RUNS, RUNS[0]])
    assert summarize_deltas([r for r in RUNS if r["variant"] == "jams"]) == {}
    # another reference (as for deltas_vs_no_mat): the signs flip
    flipped = summarize_deltas(RUNS, reference="jams")["laat"]["backbone"]["icd9"]
    assert flipped["f1_macro"]["per_seed"] == pytest.approx([-0.04, -0.06])


def test_delta_table_and_text():
    summary = summarize_deltas(RUNS)
    table = delta_table(summary, {"laat": "LAAT"})
    lines = table.splitlines()
    assert lines[0] == ("| Delta vs backbone | System | n | F1 macro | F1 micro | MAP | "
                        "F1 macro 1-10 | F1 macro 11+ | 1-10 w/ link | 1-10 w/o link |")
    # mean ± half-width of the 95 % t-interval: 12.706 * std / sqrt(2)
    assert "| LAAT jams | ICD-9 | 2 | +5.0 ± 12.7 | -0.5 ± 6.4 |" in table
    assert lines[-1].startswith("| LAAT jams | ICD-10 | 1 | +10.0 |")
    text = delta_text(summary)
    assert "laat jams - backbone, ICD-9: F1 macro +5.0 ± 12.7" in text
    assert "(mean delta < 0): f1_micro, bucket 11+, 1-10 w/o link" in text
    assert delta_text({}) == "no variant/backbone pairs to compare"
    against_jams = summarize_deltas(RUNS, reference="jams")
    assert delta_table(against_jams, reference="jams").startswith("| Delta vs jams | System |")
    assert "| laat backbone | ICD-9 | 2 | -5.0 ± 12.7 |" in delta_table(against_jams)
    assert "not better than the jams (mean delta < 0): f1_macro," in delta_text(
        against_jams, reference="jams")


def test_format_delta_and_rarest_groups():
    assert format_delta({"mean": 0.05, "ci95": 0.127}) == "+5.0 ± 12.7"
    assert format_delta({"mean": -0.01, "ci95": None}) == "-1.0"
    assert format_delta({"mean": None}) == MISSING
    assert format_delta(None) == MISSING
    scores = summarize_deltas(RUNS)["laat"]["jams"]["icd9"]
    assert rarest_groups(scores) == ("bucket 1-10", "1-10 w/ link", "1-10 w/o link")
    assert rarest_groups({"f1_macro": 0.1}) == (None, None, None)


# ------------------------------------------------------------------------------------------
# epochs each run took
# ------------------------------------------------------------------------------------------


def _trained(label, seed, epochs_run, best, cap):
    summary = {"training": {"epochs_run": epochs_run, "best_epoch": best}}
    if cap is not None:
        summary["train_config"] = {"epochs": cap}
    return {"label": label, "seed": seed, "training": {"icd9+icd10": summary}}


def test_convergence_rows_and_table():
    runs = [_trained("LAAT+JAMS", 0, 12, 9, 50), _trained("LAAT+JAMS", 1, 50, 48, 50),
            _trained("LAAT", 0, 7, 4, None), {"label": "old", "seed": 0}]
    rows = convergence_rows(runs)
    assert rows[0] == {"label": "LAAT+JAMS", "seed": 0, "model": "icd9+icd10",
                       "epochs_run": 12, "best_epoch": 9, "epochs_cap": 50,
                       "early_stopped": True}
    assert rows[1]["early_stopped"] is False  # stopped by the cap
    assert rows[2]["early_stopped"] is None   # no cap recorded
    assert len(rows) == 3                     # a run without training meta adds no row
    assert convergence_table(rows).splitlines() == [
        "| Run | Trained on | seeds | epochs run | best epoch | stopped early |",
        "|:---|:---|---:|---|---|---:|",
        "| LAAT+JAMS | icd9+icd10 | 2 | 12, 50 | 9, 48 | 1/2 |",
        "| LAAT | icd9+icd10 | 1 | 7 | 4 | 0/1 |",
    ]
