"""jams-pyg prepare mimiciv (prepare_mimiciv) on tiny raw files in the MIMIC-IV schema.

The admission ids here are made up, so these tests split with Edin et al.'s algorithm;
``tests/test_splits.py`` covers the published split files and the comparison with Edin
et al.'s own pipeline."""

import gzip

import pandas as pd
import pytest

from jams_pyg.cli import main
from jams_pyg.data.edin import load_edin_dataset
from jams_pyg.data.prepare import edin_format, prepare_mimiciv
from jams_pyg.icd.codes import format_code
from jams_pyg.icd.gem import DataFileError

NOTE_COLS = ["note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime",
             "storetime", "text"]
DIAG_COLS = ["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"]
PROC_COLS = ["subject_id", "hadm_id", "seq_num", "chartdate", "icd_code", "icd_version"]

TEXT_100 = ("Name: ___  Unit No: ___\nAdmission Date: 2180-05-06\n"
            "Chief Complaint: Chest pain, SOB.\nBP 120/80; HR 72 bpm.\n")
CLEAN_100 = "name unit no admission date chief complaint chest pain sob bp hr bpm"


ALGO = "edin-algorithm"


def _subject(hadm):
    return hadm // 3


def _codes():
    """(hadm, code, version, kind) rows."""
    rows = []
    for h in [*range(100, 112), 114]:
        rows.append((h, "4019", 9, "dx"))          # 13 admissions: kept
    for h in range(100, 110):
        rows.append((h, "E8809", 9, "dx"))         # exactly 10: kept
    for h in range(100, 109):
        rows.append((h, "25000", 9, "dx"))         # 9 admissions ...
    rows.append((100, "25000", 9, "dx"))           # ... listed twice for one: still 9
    for h in [*range(100, 109), 130]:
        rows.append((h, "5849", 9, "dx"))          # 9 with a note + 1 without: dropped
    for h in range(103, 113):
        rows.append((h, "3893", 9, "proc"))        # 10: kept
    rows.append((113, "9904", 9, "proc"))          # 1: dropped, 113 loses all codes
    for h in [*range(115, 125), 114]:
        rows.append((h, "I10", 10, "dx"))          # 11: kept
    for h in range(115, 125):
        rows.append((h, "E119", 10, "dx"))         # 10: kept
    for h in range(120, 129):
        rows.append((h, "K219", 10, "dx"))         # 9: dropped, 128 loses all codes
    for h in range(118, 128):
        rows.append((h, "0DTJ4ZZ", 10, "proc"))    # 10: kept
    rows.append((129, "Z20822", 10, "dx"))         # 1: dropped
    return rows


def _notes():
    notes = []
    for h in range(100, 130):
        if h == 100:
            text = TEXT_100
        elif h == 101:  # two different notes: joined
            notes.append((h, "First part."))
            text = "Second PART 2"
        elif h == 102:  # an exact duplicate: counted once
            notes.append((h, "Same text x2"))
            text = "Same text x2"
        elif h == 103:  # a note without text is skipped
            notes.append((h, None))
            text = "Pt w/ \"quoted\"\nmulti-line, text"
        elif h == 104:  # nothing left after cleaning: kept as '' (Edin et al.)
            text = "*** 123 ***"
        else:
            text = f"Patient {h} has condition."
        notes.append((h, text))
    return notes


def _write_raw(root, codes=None, notes=None, diag_cols=DIAG_COLS):
    (root / "note").mkdir(parents=True, exist_ok=True)
    (root / "hosp").mkdir(parents=True, exist_ok=True)
    notes = _notes() if notes is None else notes
    pd.DataFrame(
        [(f"{_subject(h)}-DS-{i}", _subject(h), h, "DS", i, "2180-01-01 00:00:00",
          "2180-01-01 00:00:00", text) for i, (h, text) in enumerate(notes)],
        columns=NOTE_COLS,
    ).to_csv(root / "note" / "discharge.csv.gz", index=False, compression="gzip")
    codes = _codes() if codes is None else codes
    diag = [(_subject(h), h, i, c, v) for i, (h, c, v, k) in enumerate(codes) if k == "dx"]
    proc = [(_subject(h), h, i, "2180-01-01", c, v)
            for i, (h, c, v, k) in enumerate(codes) if k == "proc"]
    pd.DataFrame(diag, columns=DIAG_COLS)[diag_cols].to_csv(
        root / "hosp" / "diagnoses_icd.csv.gz", index=False, compression="gzip")
    pd.DataFrame(proc, columns=PROC_COLS).to_csv(
        root / "hosp" / "procedures_icd.csv.gz", index=False, compression="gzip")
    return root


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("prep")
    raw = _write_raw(root / "raw")
    # 256-byte blocks: every pass streams over many chunks.
    summary = prepare_mimiciv(raw, root / "out", block_size=256, split=ALGO)
    return root / "out", summary


def test_edin_format_matches_the_dotted_forms():
    cases = [("4019", 9, "dx", "401.9"), ("E8809", 9, "dx", "E880.9"), ("E880", 9, "dx", "E880"),
             ("042", 9, "dx", "042"), ("V1582", 9, "dx", "V15.82"), ("3893", 9, "proc", "38.93"),
             ("I10", 10, "dx", "I10."), ("I150", 10, "dx", "I15.0"),
             ("0DTJ4ZZ", 10, "proc", "0DTJ4ZZ"), ("401.9", 9, "dx", "401.9")]
    for raw, version, kind, expected in cases:
        assert edin_format(raw, version, kind) == expected
        system = "icd9" if version == 9 else "icd10"
        assert format_code(raw.replace(".", ""), system, kind) == expected
    with pytest.raises(ValueError, match="icd_version"):
        edin_format("4019", 11, "dx")


def _docs(out, system):
    """The prepared documents of ``system`` with their split, by ``_id``, as written."""
    folder = out / f"mimiciv_{system}"
    data = pd.read_feather(folder / f"mimiciv_{system}.feather")
    split = pd.read_feather(folder / f"mimiciv_{system}_split.feather")
    assert data["_id"].tolist() == split["_id"].tolist()
    data["split"] = split["split"].tolist()
    for column in (f"{system}_diag", f"{system}_proc", "target"):
        data[column] = data[column].map(list)
    return data.set_index("_id")


def _codes_of(docs):
    return sorted({code for target in docs["target"] for code in target})


def test_documents_codes_and_min_count(prepared):
    out, summary = prepared
    docs9, docs10 = _docs(out, "icd9"), _docs(out, "icd10")
    assert _codes_of(docs9) == ["38.93", "401.9", "E880.9"]
    assert _codes_of(docs10) == ["0DTJ4ZZ", "E11.9", "I10."]
    assert summary["code_counts"]["icd9_diag"] == (4, 2)
    assert summary["code_counts"]["icd10_proc"] == (1, 1)
    # 113: no code left.
    assert sorted(docs9.index) == [*range(100, 113), 114]
    assert sorted(docs10.index) == list(range(114, 128))  # 114 is in both datasets
    assert summary["icd9"]["empty_text"] == 1
    assert docs9.loc[104, "text"] == "" and docs9.loc[104, "num_words"] == 1
    assert docs9.loc[100, "target"] == ["401.9", "E880.9"]
    assert docs9.loc[105, "target"] == ["38.93", "401.9", "E880.9"]  # proc + diag
    assert docs9.loc[105, "icd9_proc"] == ["38.93"]
    assert docs9.loc[112, "target"] == ["38.93"] and docs9.loc[112, "icd9_diag"] == []
    assert docs10.loc[118, "target"] == ["0DTJ4ZZ", "E11.9", "I10."]
    assert docs10.loc[125, "target"] == ["0DTJ4ZZ"]
    assert docs10.loc[114, "target"] == ["I10."] and docs9.loc[114, "target"] == ["401.9"]
    assert (docs9["num_targets"] == docs9["target"].map(len)).all()
    assert docs9.loc[100, "subject_id"] == 33


def test_text_cleaning_and_note_merging(prepared):
    out, _ = prepared
    data = pd.read_feather(out / "mimiciv_icd9" / "mimiciv_icd9.feather").set_index("_id")
    assert data.loc[100, "text"] == CLEAN_100
    assert data.loc[100, "num_words"] == 13
    assert data.loc[101, "text"] == "first part second part 2"
    assert data.loc[101, "note_id"] == "33-DS-1+33-DS-2"
    assert data.loc[102, "text"] == "same text x2"
    assert data.loc[103, "text"] == "pt w quoted multi line text"
    assert data.loc[105, "text"] == "patient has condition"
    # Documents in discharge file order, as Edin et al.'s merge leaves them.
    assert data.index.tolist() == [*range(100, 113), 114]


def test_splits_are_patient_disjoint(prepared):
    out, summary = prepared
    for system in ("icd9", "icd10"):
        docs = _docs(out, system)
        parts = [set(docs.loc[docs["split"] == s, "subject_id"]) for s in ("train", "val",
                                                                         "test")]
        assert sum(len(p) for p in parts) == len(set().union(*parts))
        assert summary[system]["split_counts"] == {
            s: int((docs["split"] == s).sum()) for s in ("train", "val", "test")}
        assert summary[system]["split"] == "edin-algorithm"


def test_deterministic_and_min_count_parameter(prepared, tmp_path):
    out, _ = prepared
    raw = _write_raw(tmp_path / "raw")
    prepare_mimiciv(raw, tmp_path / "same", split=ALGO)
    for name in ("mimiciv_icd9/mimiciv_icd9.feather", "mimiciv_icd10/mimiciv_icd10_split.feather"):
        a = pd.read_feather(out / name)
        b = pd.read_feather(tmp_path / "same" / name)
        pd.testing.assert_frame_equal(a, b)  # the block size changes nothing
    prepare_mimiciv(raw, tmp_path / "low", min_count=1, split=ALGO)
    assert "250.00" in _codes_of(_docs(tmp_path / "low", "icd9"))
    assert "584.9" in _codes_of(_docs(tmp_path / "low", "icd9"))


def test_cli(tmp_path, capsys):
    raw = _write_raw(tmp_path / "raw")
    assert main(["prepare", "mimiciv", str(raw), str(tmp_path / "out"),
                 "--split", "edin-algorithm"]) == 0
    printed = capsys.readouterr().out
    assert "icd9: 14 documents" in printed and "icd10: 14 documents" in printed


@pytest.mark.parametrize("option, value", [("--min-count", "-3"), ("--block-size-mb", "0"),
                                           ("--block-size-mb", "-1"),
                                           ("--block-size-mb", "nan"),
                                           ("--split", "random")])
def test_cli_refuses_bad_values(tmp_path, capsys, option, value):
    """Issue #23: an argparse error naming the option, before any file is read."""
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", "mimiciv", str(tmp_path / "missing"), str(tmp_path / "out"),
              option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and value in err


def test_library_refuses_bad_split_arguments(tmp_path):
    raw = _write_raw(tmp_path / "raw")
    with pytest.raises(ValueError, match="unknown split 'random'"):
        prepare_mimiciv(raw, tmp_path / "out", split="random")
    with pytest.raises(ValueError, match="split_dir is for split='edin-published'"):
        prepare_mimiciv(raw, tmp_path / "out", split=ALGO, split_dir=tmp_path)
    # The published split holds none of these made-up admissions: an error, not an
    # empty dataset.
    with pytest.raises(ValueError, match=r"none of the 14 icd9 documents is in the split "
                                          r"file .*--split edin-algorithm"):
        prepare_mimiciv(raw, tmp_path / "out")


def test_note_dir_option(tmp_path):
    raw = _write_raw(tmp_path / "raw")
    (tmp_path / "notes").mkdir()
    (raw / "note").rename(tmp_path / "notes" / "note")
    with pytest.raises(FileNotFoundError, match="discharge.csv.gz"):
        prepare_mimiciv(raw, tmp_path / "out")
    prepare_mimiciv(raw, tmp_path / "out", note_dir=tmp_path / "notes", split=ALGO)
    assert load_edin_dataset(tmp_path / "out", "icd10").num_codes == 3


def test_errors(tmp_path):
    raw = _write_raw(tmp_path / "a", diag_cols=["subject_id", "hadm_id", "seq_num", "icd_code"])
    with pytest.raises(ValueError, match=r"diagnoses_icd.csv.gz: missing column.*icd_version"):
        prepare_mimiciv(raw, tmp_path / "out")

    raw = _write_raw(tmp_path / "b", codes=[*_codes(), (105, "4019", 11, "dx")])
    with pytest.raises(ValueError, match=r"diagnoses_icd.csv.gz, data row \d+: .*icd_version"):
        prepare_mimiciv(raw, tmp_path / "out")

    bad = [*_codes(), (106, "40X19", 9, "dx")]
    raw = _write_raw(tmp_path / "c", codes=bad)
    with pytest.raises(ValueError, match=r"data row \d+: code '40X19'.*invalid-codes drop"):
        prepare_mimiciv(raw, tmp_path / "out")
    summary = prepare_mimiciv(raw, tmp_path / "dropped", invalid_codes="drop", split=ALGO)
    assert summary["icd9"]["documents"] == 14
    with gzip.open(raw / "hosp" / "procedures_icd.csv.gz", "at") as handle:
        handle.write("1,2,3\n")  # a truncated row
    with pytest.raises(ValueError, match=r"procedures_icd.csv.gz, data row \d+: 3 fields"):
        prepare_mimiciv(raw, tmp_path / "out", invalid_codes="drop")
    with pytest.raises(ValueError, match="invalid_codes"):
        prepare_mimiciv(raw, tmp_path / "out", invalid_codes="ignore")

    notes = [*_notes(), (101, "A note of 101 under another patient")]
    raw = _write_raw(tmp_path / "d", notes=notes)
    df = pd.read_csv(raw / "note" / "discharge.csv.gz")
    df.loc[len(df) - 1, "subject_id"] = 999
    with gzip.open(raw / "note" / "discharge.csv.gz", "wt") as handle:
        df.to_csv(handle, index=False)
    with pytest.raises(ValueError, match="hadm_id 101 belongs to more than one subject_id"):
        prepare_mimiciv(raw, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="procedures_icd.csv.gz"):
        (raw / "hosp" / "procedures_icd.csv.gz").unlink()
        prepare_mimiciv(raw, tmp_path / "out")


def _rewrite_gz(path, data):
    path.write_bytes(data)


def test_gzip_and_encoding_errors_name_file_and_row(tmp_path, capsys):
    """Issue #13: a truncated or non-gzip .gz and a Latin-1 byte give an error naming the
    file (and row), not a bare EOFError / BadGzipFile / UnicodeDecodeError."""
    raw = _write_raw(tmp_path / "a")
    notes = raw / "note" / "discharge.csv.gz"
    original = notes.read_bytes()
    _rewrite_gz(notes, original[: len(original) // 2])
    with pytest.raises(DataFileError, match=r"discharge.csv.gz, data row \d+: truncated or "
                                            r"corrupt gzip data"):
        prepare_mimiciv(raw, tmp_path / "out")
    _rewrite_gz(notes, gzip.decompress(original))
    with pytest.raises(DataFileError, match=r"discharge.csv.gz: not a gzip file"):
        prepare_mimiciv(raw, tmp_path / "out")
    assert main(["prepare", "mimiciv", str(raw), str(tmp_path / "out")]) == 1
    assert "discharge.csv.gz: not a gzip file" in capsys.readouterr().err

    # a Latin-1 byte in a note after the multi-line one (data rows != physical lines)
    notes_list = _notes()
    row = next(i for i, (h, _) in enumerate(notes_list, start=1) if h == 110)
    notes_list[row - 1] = (110, "Patient 110 has M\xe9ni\xe8re's disease.")
    raw = _write_raw(tmp_path / "b", notes=notes_list)
    notes = raw / "note" / "discharge.csv.gz"
    latin1 = gzip.decompress(notes.read_bytes()).decode("utf-8").encode("iso-8859-1")
    assert latin1.count(b"\n") > row + 1  # quoted newlines come before it
    _rewrite_gz(notes, gzip.compress(latin1))
    with pytest.raises(DataFileError, match=rf"discharge.csv.gz, data row {row}: not UTF-8 "
                                            r"text \(byte 0xe9 at character 18"):
        prepare_mimiciv(raw, tmp_path / "out")
    _rewrite_gz(notes, gzip.compress(latin1.decode("iso-8859-1").encode("utf-8")))
    codes = raw / "hosp" / "diagnoses_icd.csv.gz"
    codes.write_bytes(gzip.compress(b"subject_id,hadm_id,seq_num,icd_code,icd_version\n"
                                    b"33,100,1,40\xb019,9\n"))
    with pytest.raises(DataFileError, match=r"diagnoses_icd.csv.gz, data row 1: not UTF-8"):
        prepare_mimiciv(raw, tmp_path / "out")
