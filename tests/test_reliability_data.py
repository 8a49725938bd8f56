"""Issue #23, the data side: malformed CSV quoting, wrong column types, split coverage,
the synthetic corpus written all-or-nothing and its command line."""

import gzip
import shutil

import pandas as pd
import pytest
from test_prepare import _write_raw

from jams_pyg.data.csv_chunks import read_chunks
from jams_pyg.data.prepare import prepare_mimiciv
from jams_pyg.icd.gem import DataFileError


# ------------------------------------------------------------------ CSV quoting
def _notes_with_stray_quote(root, row: int = 11, notes: int = 200):
    """Raw MIMIC-IV files whose discharge notes (one line each) have a stray ``"`` opening
    the text of data row ``row``; the path of the notes file."""
    raw = _write_raw(root, notes=[(h, f"Patient {h} has condition.")
                                  for h in range(100, 100 + notes)])
    path = raw / "note" / "discharge.csv.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines(keepends=True)
    assert len(lines) == notes + 1 and '"' not in "".join(lines)  # unquoted, one per line
    lines[row] = lines[row].replace(",Patient", ',"Patient')
    path.write_bytes(gzip.compress("".join(lines).encode()))
    return raw, path


def test_stray_quote_in_a_notes_file_is_an_error_naming_file_and_row(tmp_path):
    """Probe 1: the lenient parser merged the 189 rows after row 11 into one text."""
    raw, path = _notes_with_stray_quote(tmp_path / "raw")
    with pytest.raises(DataFileError, match=r"discharge.csv.gz, data row 11: a quoted field "
                       r"that begins in this row is never closed"):
        prepare_mimiciv(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.feather"))
    # the same file without the stray quote reads all 200 rows
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()).replace(b'"', b"")))
    rows = sum(chunk.num_rows for _, chunk in read_chunks(path, ["hadm_id", "text"], 1 << 20))
    assert rows == 200


def test_quote_closed_inside_a_field_is_an_error_naming_the_row(tmp_path):
    path = tmp_path / "codes.csv"
    path.write_text('a,b\n1,x\n2,"y\n3,"z"\n4,w\n')
    with pytest.raises(DataFileError, match=r"codes.csv, data row 2: malformed quoting "
                       r"\(',' expected after '\"'\)"):
        list(read_chunks(path, ["a", "b"], 1 << 20))
    # quoted fields with commas, quotes and line breaks stay valid
    path.write_text('a,b\n1,"x, ""q""\ny"\n2,z\n')
    (_, chunk), = read_chunks(path, ["a", "b"], 1 << 20)
    assert chunk.column("b") == ['x, "q"\ny', "z"]


# ---------------------------------------------------------- data of every split
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """test_training's tiny ICD-9 and ICD-10 datasets in Edin et al.'s files."""
    from test_training import tiny_datasets

    out = tmp_path_factory.mktemp("corpus")
    for system, dataset in tiny_datasets().items():
        frames = {split: dataset.split(split) for split in ("train", "val", "test")}
        data = pd.concat(frames.values(), ignore_index=True)
        data[f"{system}_diag"] = data["target"]
        data[f"{system}_proc"] = [[] for _ in range(len(data))]
        splits = pd.concat([pd.DataFrame({"_id": f["_id"], "split": name})
                            for name, f in frames.items()], ignore_index=True)
        (out / f"mimiciv_{system}").mkdir()
        data.to_feather(out / f"mimiciv_{system}" / f"mimiciv_{system}.feather")
        splits.to_feather(out / f"mimiciv_{system}" / f"mimiciv_{system}_split.feather")
    return out


def _edited(corpus, folder, system: str, edit):
    """A copy of ``corpus`` whose ``system`` data and split frames went through
    ``edit(data, splits) -> (data, splits)``."""
    shutil.copytree(corpus, folder)
    sub = folder / f"mimiciv_{system}"
    data = pd.read_feather(sub / f"mimiciv_{system}.feather")
    splits = pd.read_feather(sub / f"mimiciv_{system}_split.feather")
    data, splits = edit(data, splits)
    data.reset_index(drop=True).to_feather(sub / f"mimiciv_{system}.feather")
    splits.reset_index(drop=True).to_feather(sub / f"mimiciv_{system}_split.feather")
    return folder, sub / f"mimiciv_{system}_split.feather"


def _train_on(data, out, capsys) -> tuple[int, str]:
    from jams_pyg.cli import main

    status = main(["train", "--data", str(data), "--model", "caml", "--epochs", "1",
                   "--jams-only", "--no-progress", "--output-dir", str(out)])
    return status, capsys.readouterr().err


def _train_to_test(data, splits):
    """Probe 3: every training document moved to the test split."""
    splits = splits.copy()
    splits.loc[splits["split"] == "train", "split"] = "test"
    return data, splits


def _without_test(data, splits):
    """Probe 7: every test document removed."""
    test = set(splits.loc[splits["split"] == "test", "_id"])
    return data[~data["_id"].isin(test)], splits[~splits["_id"].isin(test)]


@pytest.mark.parametrize("system, edit, split", [
    ("icd9", _train_to_test, "train"), ("icd10", _without_test, "test")])
def test_a_system_without_documents_in_a_split_is_refused_before_training(
        corpus, tmp_path, capsys, system, edit, split):
    """Probe 3 trained an ICD-9 head on no ICD-9 document and reported its metrics;
    probe 7 trained an epoch, then failed with KeyError: 'icd9' and left a last.pt that
    blocked the next run."""
    data, split_file = _edited(corpus, tmp_path / "data", system, edit)
    status, message = _train_on(data, tmp_path / "out", capsys)
    assert status == 1
    assert f"{split_file}: no {system} document is in the {split} split" in message
    assert len(message.strip().splitlines()) == 1
    assert not list((tmp_path / "out").rglob("*.pt"))  # nothing trained, nothing blocks


def test_a_text_column_of_numbers_is_named_as_such(corpus, tmp_path):
    """It was reported as 'empty text'."""
    from jams_pyg.data.edin import load_edin_dataset

    def numbers(data, splits):
        return data.assign(text=range(len(data))), splits

    data, _ = _edited(corpus, tmp_path / "data", "icd9", numbers)
    first = pd.read_feather(data / "mimiciv_icd9" / "mimiciv_icd9.feather")["_id"][0]
    assert first == "icd9-0"
    with pytest.raises(ValueError, match=rf"mimiciv_icd9.feather, _id {first!r}, column "
                       r"text: the int 0, not text \(the column's type is int64\)"):
        load_edin_dataset(data, "icd9")
