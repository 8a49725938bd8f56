"""Edin et al.'s MIMIC-IV splits: the shipped published files, their split algorithm, and
``prepare mimiciv`` against the output of their own pipeline on a fixture
(``tests/fixtures/mimiciv_edin``, README there)."""

import hashlib
import json
import random
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from conftest import SHARED_DATA

from jams_pyg.cli import main
from jams_pyg.data.edin import load_edin_dataset
from jams_pyg.data.prepare import SPLIT_REPORT, edin_lower, prepare_mimiciv
from jams_pyg.data.splits import (
    edin_algorithm_splits,
    iterative_stratification,
    published_split_path,
)
from jams_pyg.data.text import clean_text

FIXTURE = Path(__file__).parent / "fixtures" / "mimiciv_edin"
EDIN_OUT = FIXTURE / "edin"
SYSTEMS = ("icd9", "icd10")
#: SHA-256 of JoakimEdin/medical-coding-reproducibility c0e1d42's split files.
PUBLISHED_SHA256 = {
    "icd9": "b60d01628b76aa8874cb52bb06aa07f9d18ed03a441cbf0884e9b748300ab4bf",
    "icd10": "f913edf80c41f52c0865c2c802ab65d0d7b24fdfc03307564d2808bb9a672b61",
}
#: train / val / test admissions, as ``../shared/data/README.md`` states them.
PUBLISHED_COUNTS = {"icd9": (154_542, 21_980, 32_804), "icd10": (89_099, 13_378, 19_802)}


def _edin(system, name=""):
    return pd.read_feather(EDIN_OUT / f"mimiciv_{system}" / f"mimiciv_{system}{name}.feather")


def _lists(frame, column):
    return [list(v) for v in frame[column]]


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    out = tmp_path_factory.mktemp("edin_fixture")
    # Small blocks: every pass streams over many chunks.
    summary = prepare_mimiciv(FIXTURE / "raw", out, split="edin-algorithm", block_size=2048)
    return out, summary


# ------------------------------------------------------------- the published files
def test_shipped_split_files_are_edins():
    readme = (SHARED_DATA / "README.md").read_text() if SHARED_DATA.is_dir() else None
    for system in SYSTEMS:
        path = published_split_path(system)
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == PUBLISHED_SHA256[system]
        shared = SHARED_DATA / "edin_splits" / path.name
        if shared.is_file():  # the project's copy, where this checkout has one
            assert shared.read_bytes() == data
        split = pd.read_feather(path)
        assert list(split.columns) == ["_id", "split"] and split["_id"].dtype == "int64"
        assert not split["_id"].duplicated().any()
        counts = tuple(int((split["split"] == s).sum()) for s in ("train", "val", "test"))
        assert counts == PUBLISHED_COUNTS[system]
        if readme is not None:
            assert f"{len(split):,}" in readme and all(f"{n:,}" in readme for n in counts)
    notice = (published_split_path("icd9").parent / "NOTICE").read_text()
    assert "medical-coding-reproducibility" in notice and "c0e1d42" in notice
    assert "Apache License" in (published_split_path("icd9").parent / "LICENSE").read_text()


# ------------------------------------------------------ their split algorithm
def _reference_stratification(items, labels, ratios, rng):
    """Edin et al.'s iterative stratification written naively, the way their
    ``stratify.py`` runs: rescan everything per label, delete placed items."""
    items, labels = list(items), [list(y) for y in labels]
    unique = sorted({x for y in labels for x in y})
    counts = Counter(x for y in labels for x in y)
    want_items = [len(unique) * r for r in ratios]
    want = {x: [counts[x] * r for r in ratios] for x in unique}
    sets = [[] for _ in ratios]
    while labels:
        rarest = min(counts.values())
        label = [x for x in counts if counts[x] == rarest][-1]
        carriers = [i for i, y in enumerate(labels) if label in y]
        for i in reversed(carriers):
            values = want[label]
            best = max(values)
            tied = [f for f in range(len(ratios)) if values[f] == best]
            if len(tied) == 1:
                chosen = tied[0]
            else:
                tied.sort(key=lambda f: -want_items[f])
                same_size = want_items[tied[0]] == want_items[tied[1]]
                chosen = rng.choice(tied) if same_size else tied[0]
            sets[chosen].append(items[i])
            for x in labels[i]:
                want[x][chosen] -= 1
                counts[x] -= 1
                if counts[x] <= 0:
                    del counts[x]
            want_items[chosen] -= 1
            del items[i], labels[i]
    return sets


@pytest.mark.parametrize("seed", range(6))
def test_iterative_stratification_equals_the_naive_reference(seed):
    gen = random.Random(100 + seed)
    vocab = [f"c{i}" for i in range(gen.randint(3, 25))]
    n = gen.randint(5, 120)
    labels = [[gen.choice(vocab) for _ in range(gen.randint(1, 6))] for _ in range(n)]
    items = [gen.randint(0, 10**6) for _ in range(n)]
    ratios = [[0.85, 0.15], [0.7, 0.3], [0.5, 0.5], [0.6, 0.25, 0.15]][seed % 4]
    class Counting(random.Random):
        draws = 0

        def choice(self, seq):
            self.draws += 1
            return super().choice(seq)

    rng = Counting(seed)
    expected = _reference_stratification(items, labels, ratios, rng)
    assert iterative_stratification(items, labels, ratios, random.Random(seed)) == expected
    if ratios == [0.5, 0.5]:
        assert rng.draws > 0  # the random tie-break is exercised


def test_edin_algorithm_reproduces_their_split_files():
    data = {s: _edin(s) for s in SYSTEMS}
    inputs = {s: (d["subject_id"].tolist(), _lists(d, "target")) for s, d in data.items()}
    ours = edin_algorithm_splits(inputs)
    for system in SYSTEMS:
        theirs = _edin(system, "_split")
        assert theirs["_id"].tolist() == data[system]["_id"].tolist()
        assert ours[system] == theirs["split"].tolist()
        assert set(ours[system]) == {"train", "val", "test"}


def test_stratification_rejects_items_without_labels():
    with pytest.raises(ValueError, match="item 7 has no labels"):
        iterative_stratification([5, 7], [["a"], []], [0.85, 0.15], random.Random(0))


# --------------------------------------------- prepare vs their pipeline, row for row
def test_prepare_equals_edins_pipeline_row_for_row(ours):
    out, summary = ours
    for system in SYSTEMS:
        theirs = _edin(system)
        mine = pd.read_feather(out / f"mimiciv_{system}" / f"mimiciv_{system}.feather")
        for column in ("_id", "subject_id", "note_id", "text", "num_words", "num_targets"):
            assert mine[column].tolist() == theirs[column].tolist(), (system, column)
        for column in (f"{system}_diag", f"{system}_proc", "target"):
            assert _lists(mine, column) == _lists(theirs, column), (system, column)
        split = pd.read_feather(out / f"mimiciv_{system}" / f"mimiciv_{system}_split.feather")
        pd.testing.assert_frame_equal(split, _edin(system, "_split"))
        assert summary[system]["documents"] == len(theirs)


def test_the_fixture_triggers_each_rule(ours):
    """The rows that differ from a plain reading of the raw files, each checked."""
    out, summary = ours
    notes = pd.read_csv(FIXTURE / "raw" / "note" / "discharge.csv.gz", keep_default_na=False)
    docs = {s: pd.read_feather(out / f"mimiciv_{s}" / f"mimiciv_{s}.feather").set_index("_id")
            for s in SYSTEMS}
    text_of = dict(zip(notes["hadm_id"], notes["text"], strict=False))
    # Empty after cleaning: kept as '' with num_words 1.
    empty = [h for h, t in text_of.items() if t.startswith(("___ 12", "*** ***"))]
    for h in empty:
        row = next(d.loc[h] for d in docs.values() if h in d.index)
        assert row["text"] == "" and row["num_words"] == 1
    assert sum(summary[s]["empty_text"] for s in SYSTEMS) == len(empty) == 2
    # İ lower-cases to i (vaex), not to i + a combining dot.
    turkish = next(h for h, t in text_of.items() if t.startswith("İleus"))
    assert next(d.loc[turkish, "text"] for d in docs.values() if turkish in d.index
                ).startswith("ileus resolved discharged to istanbul")
    # A missing text and "NA" (NaN to pandas): dropped.
    for h in [h for h, t in text_of.items() if t in ("", "NA")]:
        assert all(h not in d.index for d in docs.values())
    # V15.82 under both versions of one admission: the first row wins. ICD-9 keeps it on
    # 9 of its 12 admissions, below the threshold of 10: it leaves ICD-9 altogether.
    diag = pd.read_csv(FIXTURE / "raw" / "hosp" / "diagnoses_icd.csv.gz", dtype={"icd_code": str})
    v1582 = diag[diag["icd_code"] == "V1582"].groupby("hadm_id")["icd_version"].agg(list)
    assert v1582.map(len).max() == 2 and (v1582.map(lambda v: 9 in v)).sum() == 12
    first_10 = {h for h, v in v1582.items() if v[0] == 10}
    with_code = {s: {h for h, t in zip(d.index, d["target"], strict=True) if "V15.82" in t}
                 for s, d in docs.items()}
    assert with_code["icd10"] == first_10 and len(first_10) == 15
    assert with_code["icd9"] == set()


def test_edin_lower():
    assert edin_lower("İSTANBUL Iİ") == "istanbul ii"
    assert clean_text(edin_lower("İleus")) == "ileus"
    assert clean_text("İleus") == "i leus"  # what str.lower would give
    assert edin_lower("\u212a ẞ Σ") == "\u212a ẞ Σ".lower()  # no other change


# ------------------------------------------------------------- published splits
def test_a_split_file_of_exactly_edins_admissions_joins_with_no_missing_id(tmp_path):
    """Edin et al.'s training inner-joins the published split on _id: a preparation that
    drops or merges a document their pipeline keeps breaks that join."""
    split_dir = tmp_path / "splits"
    split_dir.mkdir()
    for system in SYSTEMS:
        _edin(system, "_split").to_feather(split_dir / f"mimiciv_{system}_split.feather")
    summary = prepare_mimiciv(FIXTURE / "raw", tmp_path / "out", split_dir=split_dir)
    for system in SYSTEMS:
        folder = tmp_path / "out" / f"mimiciv_{system}"
        data = pd.read_feather(folder / f"mimiciv_{system}.feather")
        joined = data.merge(_edin(system, "_split"), on="_id", how="outer", indicator=True)
        assert (joined["_merge"] == "both").all() and len(joined) == len(data)
        assert summary[system]["outside_split"] == summary[system]["missing_from_data"] == 0
        report = json.loads((folder / SPLIT_REPORT).read_text())
        assert report["outside_split"] == report["missing_from_data"] == []
        # ... and jams_pyg's own loader takes every document, the empty texts included
        dataset = load_edin_dataset(tmp_path / "out", system)
        loaded = pd.concat([dataset.train, dataset.val, dataset.test])
        assert sorted(loaded["_id"]) == sorted(data["_id"])
        assert (loaded["text"] == "").sum() == (data["text"] == "").sum()
    assert (pd.read_feather(tmp_path / "out" / "mimiciv_icd9" / "mimiciv_icd9.feather")["text"]
            == "").any()  # the fixture has a note empty after cleaning


@pytest.mark.slow
def test_published_split_is_the_default_and_outsiders_are_reported(tmp_path, capsys):
    """The fixture's made-up ids fall in MIMIC-IV's hadm_id range: a few are in the
    published files. Those get their published split; every other document is left
    out and listed, and so are the published ids without a document."""
    assert main(["prepare", "mimiciv", str(FIXTURE / "raw"), str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    for system in SYSTEMS:
        folder = tmp_path / "out" / f"mimiciv_{system}"
        published = pd.read_feather(published_split_path(system))
        everything = _edin(system)  # the documents Edin et al.'s preparation keeps
        inside = everything[everything["_id"].isin(published["_id"])]
        assert 0 < len(inside) < len(everything)
        data = pd.read_feather(folder / f"mimiciv_{system}.feather")
        split = pd.read_feather(folder / f"mimiciv_{system}_split.feather")
        assert data["_id"].tolist() == inside["_id"].tolist() == split["_id"].tolist()
        expected = inside[["_id"]].merge(published, on="_id")["split"].tolist()
        assert split["split"].tolist() == expected
        report = json.loads((folder / SPLIT_REPORT).read_text())
        assert report["split"] == "edin-published"
        assert sorted(report["outside_split"]) == sorted(
            set(everything["_id"]) - set(published["_id"]))
        assert len(report["missing_from_data"]) == len(published) - len(inside)
        assert f"{len(report['outside_split'])} documents without a split left out" in printed
