"""Loader of Edin et al.'s MIMIC-IV feather format, and the patient split."""

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from jams_pyg.data.edin import (
    CodingDataset,
    load_edin_dataset,
    split_by_patient,
    stratified_group_split,
)


def _frame(system="icd9"):
    if system == "icd9":
        diag = [["401.9", "428.0"], ["401.9"], ["E880.9"], ["250.00", "401.9"]]
        proc = [["40.19"], [], ["96.04"], []]
    else:
        diag = [["I10.", "I50.9"], ["I10."], ["W19.XXXA"], ["E11.9", "I10."]]
        proc = [["0DTJ4ZZ"], [], ["0BH17EZ"], []]
    return pd.DataFrame(
        {
            "_id": [11, 12, 13, 14],
            "subject_id": [1, 1, 2, 3],
            "text": ["chest pain", "hypertension follow up", "fall at home", "diabetes"],
            f"{system}_diag": diag,
            f"{system}_proc": proc,
            "target": [p + d for p, d in zip(proc, diag, strict=True)],
            "num_words": [2, 3, 3, 1],
            "num_targets": [len(p) + len(d) for p, d in zip(proc, diag, strict=True)],
            "note_type": ["DS"] * 4,  # extra columns are kept
        }
    )


def _split():
    return pd.DataFrame({"_id": [11, 12, 13, 14], "split": ["train", "train", "val", "test"]})


def _write(folder, system="icd9", frame=None, split=None):
    folder.mkdir(parents=True, exist_ok=True)
    (frame if frame is not None else _frame(system)).to_feather(
        folder / f"mimiciv_{system}.feather")
    (split if split is not None else _split()).to_feather(
        folder / f"mimiciv_{system}_split.feather")
    return folder


@pytest.mark.parametrize("system", ["icd9", "icd10"])
def test_load_splits_and_vocabulary(tmp_path, system):
    _write(tmp_path, system)
    ds = load_edin_dataset(tmp_path, system)
    assert isinstance(ds, CodingDataset) and ds.system == system
    assert ds.train["_id"].tolist() == [11, 12]
    assert ds.val["_id"].tolist() == [13]
    assert ds.test["_id"].tolist() == [14]
    frame = _frame(system)
    expected_codes = sorted({c for t in frame["target"] for c in t})
    assert ds.codes == expected_codes
    assert ds.train["target"].tolist() == frame["target"].tolist()[:2]
    assert all(isinstance(t, list) for t in ds.test["target"])
    assert ds.train["note_type"].tolist() == ["DS", "DS"]
    assert len(ds) == 4 and ds.num_codes == len(expected_codes)
    # Training frequencies, in label order, against a direct count.
    counts = Counter(c for t in frame["target"][:2] for c in t)
    assert ds.code_frequencies("train").tolist() == [counts[c] for c in ds.codes]
    assert ds.split("val") is ds.val
    with pytest.raises(ValueError, match="unknown split"):
        ds.split("dev")


def test_parent_directory_with_system_folders(tmp_path):
    _write(tmp_path / "mimiciv_icd9", "icd9")
    _write(tmp_path / "mimiciv_icd10", "icd10")
    assert load_edin_dataset(tmp_path, "icd10").codes[-1] == "W19.XXXA"
    assert load_edin_dataset(tmp_path / "mimiciv_icd9", "icd9").num_codes == 6


def test_vocabulary_builds_the_gem_graph(tmp_path):
    from jams_pyg.graph.gem_graph import GEMGraph

    ds9 = load_edin_dataset(_write(tmp_path / "a", "icd9"), "icd9")
    ds10 = load_edin_dataset(_write(tmp_path / "b", "icd10"), "icd10")
    graph = GEMGraph.from_cms_2018(ds9.codes, ds10.codes)
    assert graph.icd9_codes == ds9.codes and graph.icd10_codes == ds10.codes
    # 401.9 -> I10. is an (approximate) CMS GEM pair; procedures stay unlinked.
    assert graph.neighbors("401.9", "icd9") == [("I10.", 0.5)]
    assert not graph.icd9_linked[ds9.codes.index("40.19")]


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_edin_dataset(tmp_path / "nowhere", "icd9")
    with pytest.raises(FileNotFoundError, match="mimiciv_icd9.feather"):
        load_edin_dataset(tmp_path, "icd9")
    _write(tmp_path, "icd9")
    (tmp_path / "mimiciv_icd9_split.feather").unlink()
    with pytest.raises(FileNotFoundError, match="mimiciv_icd9_split.feather"):
        load_edin_dataset(tmp_path, "icd9")


@pytest.mark.parametrize("column", ["_id", "subject_id", "text", "icd9_diag", "icd9_proc",
                                    "target"])
def test_missing_column(tmp_path, column):
    _write(tmp_path, frame=_frame().drop(columns=[column]))
    with pytest.raises(ValueError, match=f"missing column.*'{column}'"):
        load_edin_dataset(tmp_path, "icd9")


def test_missing_split_column(tmp_path):
    _write(tmp_path, split=_split().rename(columns={"split": "fold"}))
    with pytest.raises(ValueError, match=r"mimiciv_icd9_split.feather: missing column.*'split'"):
        load_edin_dataset(tmp_path, "icd9")


def test_split_ids_must_match_data_ids(tmp_path):
    split = _split()
    split.loc[3, "_id"] = 99
    _write(tmp_path, split=split)
    with pytest.raises(ValueError, match="_id 99 is not in mimiciv_icd9.feather"):
        load_edin_dataset(tmp_path, "icd9")
    _write(tmp_path, split=_split().iloc[:3])
    with pytest.raises(ValueError, match="_id 14 has no split"):
        load_edin_dataset(tmp_path, "icd9")


def test_duplicates_and_unknown_split(tmp_path):
    frame = _frame()
    frame.loc[1, "_id"] = 11
    _write(tmp_path, frame=frame)
    with pytest.raises(ValueError, match="duplicated _id 11"):
        load_edin_dataset(tmp_path, "icd9")
    _write(tmp_path, split=pd.concat([_split(), _split().iloc[:1]], ignore_index=True))
    with pytest.raises(ValueError, match="_id 11 has more than one split"):
        load_edin_dataset(tmp_path, "icd9")
    split = _split()
    split.loc[2, "split"] = "dev"
    _write(tmp_path, split=split)
    with pytest.raises(ValueError, match="unknown split 'dev' for _id 13"):
        load_edin_dataset(tmp_path, "icd9")


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_text_is_kept_as_edin_keeps_it(tmp_path, text):
    """Edin et al.'s pipeline writes a note empty after cleaning as '' (and their published
    splits list it), so the loader keeps it."""
    frame = _frame()
    frame.loc[2, "text"] = text
    _write(tmp_path, frame=frame)
    ds = load_edin_dataset(tmp_path, "icd9")
    assert ds.val["_id"].tolist() == [13] and ds.val["text"].tolist() == [text]


def test_missing_text_names_the_row(tmp_path):
    frame = _frame()
    frame["text"] = frame["text"].astype(object)
    frame.loc[2, "text"] = None
    _write(tmp_path, frame=frame)
    with pytest.raises(ValueError, match="_id 13, column text: a missing value, not text"):
        load_edin_dataset(tmp_path, "icd9")


def test_document_without_codes(tmp_path):
    frame = _frame()
    frame.at[1, "icd9_diag"] = []
    frame.at[1, "target"] = []
    _write(tmp_path, frame=frame)
    with pytest.raises(ValueError, match="_id 12: document has no codes"):
        load_edin_dataset(tmp_path, "icd9")


@pytest.mark.parametrize(
    ("column", "codes", "message"),
    [
        ("icd9_diag", ["I10."], "code 'I10.'"),          # an ICD-10 code in ICD-9 data
        ("icd9_diag", ["40.19"], "not dx"),               # a procedure in the diagnosis column
        ("icd9_proc", ["401.9"], "not proc"),             # a diagnosis in the procedure column
        ("icd9_diag", ["4019"], "ambiguous"),             # undotted ICD-9 code
    ],
)
def test_unparseable_or_misplaced_codes(tmp_path, column, codes, message):
    frame = _frame()
    frame.at[1, column] = codes
    other = "icd9_proc" if column == "icd9_diag" else "icd9_diag"
    frame.at[1, other] = []
    frame.at[1, "target"] = codes
    _write(tmp_path, frame=frame)
    with pytest.raises(ValueError, match=f"_id 12, column {column}: .*{message}"):
        load_edin_dataset(tmp_path, "icd9")


def test_target_must_be_proc_plus_diag(tmp_path):
    frame = _frame()
    frame.at[0, "target"] = ["401.9"]
    _write(tmp_path, frame=frame)
    with pytest.raises(ValueError, match="_id 11: target"):
        load_edin_dataset(tmp_path, "icd9")


def test_two_spellings_of_one_code(tmp_path):
    frame = _frame("icd10")
    frame.at[1, "icd10_diag"] = ["I10"]
    frame.at[1, "target"] = ["I10"]
    _write(tmp_path, "icd10", frame=frame)
    with pytest.raises(ValueError, match="'I10' and 'I10.' are two spellings"):
        load_edin_dataset(tmp_path, "icd10")


def test_split_by_patient_is_patient_disjoint_and_stratified():
    rng = np.random.default_rng(0)
    n_docs = 600
    subjects = rng.integers(0, 250, n_docs).tolist()
    codes = [f"c{i}" for i in range(30)]
    targets = [sorted(set(rng.choice(codes, 3, p=np.arange(30, 0, -1) / 465).tolist()))
               for _ in range(n_docs)]
    split = split_by_patient(list(range(n_docs)), subjects, targets, seed=1)
    assert split["_id"].tolist() == list(range(n_docs))
    by_subject = pd.DataFrame({"s": subjects, "split": split["split"]}).groupby("s")["split"]
    assert (by_subject.nunique() == 1).all()
    share = split["split"].value_counts(normalize=True)
    assert abs(share["train"] - 0.75) < 0.06
    assert abs(share["val"] - 0.10) < 0.05
    assert abs(share["test"] - 0.15) < 0.05
    # Stratified: every code with >= 10 patients reaches every split.
    for code in codes:
        splits = {s for s, t in zip(split["split"], targets, strict=True) if code in t}
        patients = {p for p, t in zip(subjects, targets, strict=True) if code in t}
        if len(patients) >= 10:
            assert splits == {"train", "val", "test"}, code
    again = split_by_patient(list(range(n_docs)), subjects, targets, seed=1)
    assert again.equals(split)


def test_stratified_group_split_places_a_rare_label_by_demand():
    # Label "r" on 10 groups: 75/10/15 wants 7.5/1/1.5 of them.
    labels = [{"r"} if i < 10 else {"x"} for i in range(100)]
    folds = stratified_group_split(list(range(100)), labels, seed=0)
    r_folds = Counter(folds[:10])
    assert r_folds[0] in (7, 8) and r_folds[1] == 1 and r_folds[2] in (1, 2)
    assert Counter(folds) == Counter({0: 75, 1: 10, 2: 15})
    with pytest.raises(ValueError, match="positive"):
        stratified_group_split([1], [{"a"}], ratios=(1, 0, 0))
