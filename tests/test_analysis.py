"""jams_pyg.eval.buckets, .tables and .plots: frequency buckets, GEM-link split, tables and
the plot; and the eval package's exports."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch
from conftest import modules_loaded_by

import jams_pyg.eval
from jams_pyg.eval.buckets import (
    FREQUENCY_BUCKETS,
    MIMIC_IV_TRAIN_DOCS,
    bucket_label,
    bucket_macro_f1,
    code_frequencies,
    frequency_scale,
    scale_buckets,
)
from jams_pyg.eval.metrics import METRIC_KEYS, per_code_f1
from jams_pyg.eval.plots import plot_buckets
from jams_pyg.eval.tables import bucket_table, compare_table, results_by_label

# hand-made: 10 codes
COUNTS = np.array([0, 1, 100, 101, 1000, 1001, 5000, 50, 0, 7])
F1 = np.array([0.5, 0.2, 0.4, 0.6, np.nan, 0.9, 0.7, np.nan, np.nan, 0.0])
LINKED = np.array([True, True, False, True, False, False, True, True, False, False])


def test_bucket_assignment_by_hand():
    result = bucket_macro_f1(F1, COUNTS)
    buckets = result["buckets"]
    assert list(buckets) == ["1-100", "101-1000", "1001+"]
    # 1-100: codes 1 (0.2), 2 (0.4), 7 (absent), 9 (0.0)
    assert buckets["1-100"]["macro_f1"] == pytest.approx((0.2 + 0.4 + 0.0) / 3)
    assert (buckets["1-100"]["num_codes"], buckets["1-100"]["num_absent"]) == (3, 1)
    # 101-1000: codes 3 (0.6), 4 (absent)
    assert buckets["101-1000"]["macro_f1"] == pytest.approx(0.6)
    assert (buckets["101-1000"]["num_codes"], buckets["101-1000"]["num_absent"]) == (1, 1)
    # 1001+: codes 5 (0.9), 6 (0.7)
    assert buckets["1001+"]["macro_f1"] == pytest.approx(0.8)
    assert buckets["1001+"]["low"] == 1001 and buckets["1001+"]["high"] is None
    # unseen: codes 0 (0.5), 8 (absent)
    assert result["unseen"] == {"macro_f1": pytest.approx(0.5), "num_codes": 1, "num_absent": 1}
    assert "linkage" not in result
    # every code is counted exactly once
    groups = [*buckets.values(), result["unseen"]]
    assert sum(g["num_codes"] + g["num_absent"] for g in groups) == len(COUNTS)


def test_linkage_split_by_hand():
    result = bucket_macro_f1(F1, COUNTS, linked=torch.from_numpy(LINKED))
    linkage = result["linkage"]
    assert linkage["bucket"] == "1-100"
    # rare codes 1 (linked, 0.2), 2 (unlinked, 0.4), 7 (linked, absent), 9 (unlinked, 0.0)
    assert linkage["with_link"] == {"macro_f1": pytest.approx(0.2), "num_codes": 1, "num_absent": 1}
    assert linkage["without_link"] == {
        "macro_f1": pytest.approx(0.2),
        "num_codes": 2,
        "num_absent": 0,
    }
    # unseen code 0 is linked but not in the rare bucket: not in the split
    only_unseen_linked = LINKED & (COUNTS > 0)
    assert bucket_macro_f1(F1, COUNTS, linked=only_unseen_linked)["linkage"] == linkage


def test_empty_group_is_none():
    f1 = np.array([0.5, np.nan])
    result = bucket_macro_f1(f1, np.array([5, 2000]), linked=np.array([0, 0]))
    assert result["buckets"]["101-1000"] == {
        "low": 101,
        "high": 1000,
        "macro_f1": None,
        "num_codes": 0,
        "num_absent": 0,
    }
    assert result["buckets"]["1001+"]["macro_f1"] is None
    assert result["buckets"]["1001+"]["num_absent"] == 1
    assert result["linkage"]["with_link"]["macro_f1"] is None


def test_scaled_buckets():
    assert scale_buckets(FREQUENCY_BUCKETS, 1.0) == FREQUENCY_BUCKETS
    assert scale_buckets(FREQUENCY_BUCKETS, 0.05) == ((1, 5), (6, 50), (51, None))
    assert scale_buckets(FREQUENCY_BUCKETS, 0.01) == ((1, 1), (2, 10), (11, None))
    with pytest.raises(ValueError, match="too small"):
        scale_buckets(FREQUENCY_BUCKETS, 0.0001)
    with pytest.raises(ValueError, match="positive"):
        scale_buckets(FREQUENCY_BUCKETS, 0)
    result = bucket_macro_f1(F1, COUNTS, linked=LINKED, scale=0.05)
    assert result["scale"] == 0.05
    assert list(result["buckets"]) == ["1-5", "6-50", "51+"]
    # 1-5: code 1 (0.2); 6-50: codes 7 (absent), 9 (0.0); 51+: 2, 3, 5, 6 (+4 absent)
    assert result["buckets"]["1-5"]["macro_f1"] == pytest.approx(0.2)
    assert result["buckets"]["6-50"]["macro_f1"] == pytest.approx(0.0)
    assert result["buckets"]["51+"]["macro_f1"] == pytest.approx((0.4 + 0.6 + 0.9 + 0.7) / 4)
    assert result["linkage"]["bucket"] == "1-5"
    assert result["linkage"]["without_link"]["num_codes"] == 0


def test_frequency_scale():
    assert frequency_scale(MIMIC_IV_TRAIN_DOCS["icd10"], "icd10") == 1.0
    assert frequency_scale(1000, "icd9") == pytest.approx(1000 / 154_483, rel=1e-3)
    with pytest.raises(ValueError, match="system"):
        frequency_scale(10, "icd11")


@pytest.mark.parametrize(
    ("buckets", "match"),
    [
        (((2, 100), (101, None)), "start at 1"),
        (((1, 100), (102, None)), "start at 101"),
        (((1, 100), (101, 1000)), "open-ended"),
        (((1, None), (2, None)), "not the last"),
        ((), "empty"),
    ],
)
def test_bad_buckets(buckets, match):
    with pytest.raises(ValueError, match=match):
        bucket_macro_f1(F1, COUNTS, buckets=buckets)


def test_bad_bucket_inputs():
    with pytest.raises(ValueError, match="train_counts has 3 entries"):
        bucket_macro_f1(F1, COUNTS[:3])
    with pytest.raises(ValueError, match="linked has 2 entries"):
        bucket_macro_f1(F1, COUNTS, linked=LINKED[:2])
    with pytest.raises(ValueError, match="negative"):
        bucket_macro_f1(F1, -COUNTS)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bucket_macro_f1(F1 * 3, COUNTS)


def test_bucket_label():
    assert bucket_label((1, 100)) == "1-100"
    assert bucket_label((1001, None)) == "1001+"


def test_code_frequencies():
    codes = ["401.9", "I10.", "250.00"]
    docs = [["401.9", "I10."], ["401.9", "401.9"], []]
    np.testing.assert_array_equal(code_frequencies(docs, codes), [2, 1, 0])
    with pytest.raises(ValueError, match=r"document 1: code 'E11.9'"):
        code_frequencies([["401.9"], ["E11.9"]], codes)


def test_end_to_end_with_per_code_f1():
    rng = np.random.default_rng(0)
    targets = rng.random((40, 12)) < 0.3
    targets[:, 0] = False
    probs = np.clip(0.4 * targets + 0.6 * rng.random((40, 12)), 0, 1)
    f1 = per_code_f1(probs, targets, 0.5)
    counts = np.arange(12) * 200  # 0, 200, ..., 2200
    result = bucket_macro_f1(f1, counts)
    assert result["unseen"]["num_absent"] == 1  # code 0
    assert result["buckets"]["101-1000"]["macro_f1"] == pytest.approx(np.mean(f1[1:6]))
    assert result["buckets"]["1001+"]["macro_f1"] == pytest.approx(np.mean(f1[6:]))


def _metrics(value: float) -> dict[str, float]:
    return {key: value for key in METRIC_KEYS}


def test_compare_table_markdown():
    laat = {"icd9": _metrics(0.617), "icd10": [_metrics(0.5), _metrics(0.6), _metrics(0.7)]}
    jams = {"icd9": _metrics(0.6224)}
    table = compare_table({"LAAT": laat, "LAAT+JAMS": jams})
    lines = table.splitlines()
    assert len(lines) == 4
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[0] == "Model"
    assert header[1] == "ICD-9 AUC micro" and header[10] == "ICD-10 AUC micro"
    assert len(header) == 1 + 2 * len(METRIC_KEYS)
    laat_row = [cell.strip() for cell in lines[2].strip("|").split("|")]
    assert laat_row[0] == "LAAT"
    assert laat_row[1:10] == ["61.7"] * 9
    # mean 60.0, sample std 10.0 over the three seeds
    assert laat_row[10:] == ["60.0 ± 10.0"] * 9
    jams_row = [cell.strip() for cell in lines[3].strip("|").split("|")]
    assert jams_row[1:10] == ["62.2"] * 9
    assert jams_row[10:] == ["–"] * 9  # no ICD-10 result
    no_std = compare_table({"LAAT": laat}, show_std=False)
    assert "±" not in no_std and "| 60.0 |" in no_std


def test_compare_table_plain_and_subset():
    results = {"CAML": {"icd9": _metrics(0.5)}, "CAML+JAMS": {"icd9": {"f1_macro": math.nan}}}
    table = compare_table(results, systems=("icd9",), metrics=("f1_micro", "f1_macro"), fmt="plain")
    lines = table.splitlines()
    assert "ICD-9" in lines[0]
    assert lines[1].split() == ["Model", "F1", "micro", "F1", "macro"]
    assert lines[2].split() == ["CAML", "50.0", "50.0"]
    assert lines[3].split() == ["CAML+JAMS", "–", "–"]  # missing and nan
    with pytest.raises(ValueError, match="unknown metric"):
        compare_table(results, metrics=("f1",))
    with pytest.raises(ValueError, match="fmt"):
        compare_table(results, fmt="latex")


def _two_models():
    base = bucket_macro_f1(F1, COUNTS, linked=LINKED)
    better = bucket_macro_f1(
        np.where(np.isnan(F1), np.nan, np.minimum(F1 + 0.1, 1)), COUNTS, LINKED
    )
    return base, better


def test_bucket_table():
    base, better = _two_models()
    table = bucket_table({"LAAT": {"icd9": base}, "LAAT+JAMS": {"icd9": [better, better]}})
    lines = table.splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == [
        "Model",
        "ICD-9 1-100 (n=3)",
        "ICD-9 101-1000 (n=1)",
        "ICD-9 1001+ (n=2)",
        "ICD-9 unseen (n=1)",
        "ICD-9 1-100 w/ link (n=1)",
        "ICD-9 1-100 w/o link (n=2)",
    ]
    row = [cell.strip() for cell in lines[2].strip("|").split("|")]
    assert row == ["LAAT", "20.0", "60.0", "80.0", "50.0", "20.0", "20.0"]
    row = [cell.strip() for cell in lines[3].strip("|").split("|")]
    assert row[1] == f"{100 * (0.3 + 0.5 + 0.1) / 3:.1f} ± 0.0"


@pytest.mark.slow
def test_plot_writes_png(tmp_path):
    base, better = _two_models()
    results = {
        "LAAT": {"icd9": base, "icd10": [base, better]},
        "LAAT+JAMS": {"icd9": better, "icd10": [better, better]},
    }
    path = plot_buckets(results, tmp_path / "sub" / "buckets.png", title="Figures 2 and 3")
    assert path == tmp_path / "sub" / "buckets.png"
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000
    with pytest.raises(ValueError, match="no model has results"):
        plot_buckets({"LAAT": {"icd9": base}}, tmp_path / "x.png", systems=("icd10",))


def test_results_by_label_groups_seeds():
    runs = [{"label": "LAAT", "systems": {"icd9": {"metrics": {"map": 0.1}, "buckets": 1}}},
            {"label": "LAAT", "systems": {"icd9": {"metrics": {"map": 0.3}, "buckets": 2},
                                          "icd10": {"metrics": {"map": 0.5}, "buckets": 3}}}]
    assert results_by_label(runs) == {"LAAT": {"icd9": [{"map": 0.1}, {"map": 0.3}],
                                               "icd10": [{"map": 0.5}]}}
    assert results_by_label(runs, "buckets") == {"LAAT": {"icd9": [1, 2], "icd10": [3]}}


# --------------------------------------------------------------------------------------------
# the package: every export resolves, light imports stay light
# --------------------------------------------------------------------------------------------


def test_eval_exports_match_the_modules():
    for module_name, names in jams_pyg.eval._EXPORTS.items():
        module = importlib.import_module(module_name, "jams_pyg.eval")
        assert sorted(names) == sorted(module.__all__), module_name
        for name in names:
            assert getattr(jams_pyg.eval, name) is getattr(module, name)
    with pytest.raises(AttributeError, match="no attribute"):
        jams_pyg.eval.analysis_table  # noqa: B018


@pytest.mark.slow
def test_light_imports():
    assert modules_loaded_by("import jams_pyg.eval", ("torch",)) == []
    assert modules_loaded_by("import jams_pyg.eval.tables, jams_pyg.eval.buckets, "
                             "jams_pyg.eval.plots, jams_pyg.eval.deltas",
                             ("matplotlib",)) == []
