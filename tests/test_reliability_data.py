"""Issue #23, the data side: malformed CSV quoting, wrong column types, split coverage,
the synthetic corpus written all-or-nothing and its command line."""

import gzip

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
