"""Issue #23, the data side: malformed CSV quoting, wrong column types, split coverage,
the synthetic corpus written all-or-nothing and its command line."""

import errno
import gzip
import os
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


def test_a_stray_quote_closed_at_the_end_of_a_later_field_is_valid_csv(tmp_path):
    """The one stray quote the strict parser cannot see (the README says so): closed by a
    quote that ends a later field, it is a valid quoted field holding line breaks, and the
    rows between are read into it."""
    path = tmp_path / "notes.csv"
    rows = ["id,text", *(f"{i},note {i}" for i in range(1, 9))]
    rows[3], rows[6] = '3,"note 3', '6,he said no"'
    path.write_text("\n".join(rows) + "\n")
    (_, chunk), = read_chunks(path, ["id", "text"], 1 << 20)
    assert chunk.column("id") == ["1", "2", "3", "7", "8"]
    assert chunk.column("text")[2] == "note 3\n4,note 4\n5,note 5\n6,he said no"
    # closed anywhere else, it is an error naming the row where the field began
    rows[6] = '6,he said "no"'
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataFileError, match=r"notes.csv, data row 3: malformed quoting"):
        list(read_chunks(path, ["id", "text"], 1 << 20))


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


# ------------------------------------------------------------- synthetic corpus
class _FullDisk:
    """A file handle on a disk with ``room`` bytes left."""

    def __init__(self, handle, room: int) -> None:
        self.handle, self.room = handle, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)


def test_files_are_written_all_or_nothing(tmp_path):
    from jams_pyg.data.synthetic.generator import write_all_or_nothing

    def text(value: bytes):
        return lambda handle: handle.write(value)

    def full(handle):
        _FullDisk(handle, 10).write(b"x" * 100)

    old = tmp_path / "old"
    write_all_or_nothing({old / "a" / "one.bin": text(b"1"), old / "two.bin": text(b"2")})
    assert (old / "a" / "one.bin").read_bytes() == b"1"
    with pytest.raises(OSError) as err:
        write_all_or_nothing({old / "a" / "one.bin": text(b"new"),
                              old / "b" / "c" / "new.bin": text(b"new"),
                              old / "two.bin": full})
    assert err.value.errno == errno.ENOSPC
    assert str(err.value) == (f"[Errno 28] {old / 'two.bin'}: cannot write the file (No "
                              "space left on device); nothing of the corpus was written")
    # the previous files as they were; no temporary file, no folder of the failed call
    assert sorted(str(p.relative_to(old)) for p in old.rglob("*")) == [
        "a", "a/one.bin", "two.bin"]
    assert (old / "a" / "one.bin").read_bytes() == b"1"
    with pytest.raises(ZeroDivisionError):  # any error: nothing written
        write_all_or_nothing({tmp_path / "new" / "x.bin": lambda handle: 1 / 0})
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_synthetic_on_a_full_disk_writes_nothing_and_names_the_file(tmp_path, monkeypatch,
                                                                    capsys):
    """It left half a corpus (ICD-9 written, ICD-10 missing), with an error naming no
    file."""
    import jams_pyg.data.synthetic.generator as generator
    from jams_pyg.cli import main

    out = tmp_path / "corpus"
    assert main(["synthetic", str(out), "--size", "0.05"]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real = generator.write_table

    def icd10_on_a_full_disk(table, handle):
        if "icd10_diag" in table.schema.names:
            handle = _FullDisk(handle, 1000)
        real(table, handle)

    monkeypatch.setattr(generator, "write_table", icd10_on_a_full_disk)
    capsys.readouterr()
    assert main(["synthetic", str(out), "--size", "0.05", "--seed", "1"]) == 1
    err = capsys.readouterr().err
    assert err == (f"jams-pyg synthetic: error: [Errno 28] {out}/mimiciv_icd10/"
                   "mimiciv_icd10.feather: cannot write the file (No space left on "
                   "device); nothing of the corpus was written\n")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert main(["synthetic", str(tmp_path / "new"), "--size", "0.05"]) == 1
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("seed, problem", [("-1", "the seed must be an integer >= 0, "
                                                  "got -1"),
                                           ("1.5", "'1.5' is not an integer")])
def test_synthetic_refuses_a_bad_seed_as_an_argument_error(tmp_path, capsys, seed, problem):
    """Probe 11: --seed -1 was a ValueError traceback from numpy."""
    from jams_pyg.cli import main

    with pytest.raises(SystemExit) as err:
        main(["synthetic", str(tmp_path / "out"), "--seed", seed])
    assert err.value.code == 2
    assert f"argument --seed: {problem}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
