"""CMS code titles shipped with the package."""

import gzip

import pytest

from jams_pyg.icd.gem import DataFileError, resource_path
from jams_pyg.icd.titles import TITLE_FILES, code_title, load_titles, read_title_file


def test_titles_of_each_system_and_kind():
    assert code_title("401.9", "icd9") == "Unspecified essential hypertension"
    assert code_title("40.19", "icd9") == "Other diagnostic procedures on lymphatic structures"
    assert code_title("I10.", "icd10") == "Essential (primary) hypertension"
    assert code_title("0DTJ4ZZ", "icd10") == (
        "Resection of Appendix, Percutaneous Endoscopic Approach"
    )
    # Undotted ICD-9 codes need their kind: 4019 is both a diagnosis and a procedure.
    assert code_title("4019", "icd9", kind="proc").startswith("Other diagnostic")


def test_icd9_diagnoses_are_read_as_iso_8859_1():
    assert code_title("386.00", "icd9") == "Ménière's disease, unspecified"
    assert code_title("041.3", "icd9").startswith("Friedländer's bacillus")


@pytest.mark.parametrize(("system", "kind"), list(TITLE_FILES))
def test_load_titles_has_one_entry_per_line(system, kind):
    name, encoding = TITLE_FILES[(system, kind)]
    with gzip.open(resource_path("titles", name), "rt", encoding=encoding) as handle:
        lines = [line.split(None, 1) for line in handle if line.strip()]
    titles = load_titles(system, kind)
    assert len(titles) == len(lines)
    code, title = lines[len(lines) // 2]
    assert titles[code] == title.strip()
    titles.clear()  # a copy: the cache is untouched
    assert len(load_titles(system, kind)) == len(lines)


def test_errors():
    with pytest.raises(KeyError, match="no title"):
        code_title("F02.81", "icd10")  # a 2018 GEM code deleted before 2024
    assert code_title("F02.81", "icd10", default=None) is None
    with pytest.raises(ValueError, match="icd9"):
        code_title("I10.", "icd9")
    with pytest.raises(ValueError, match="kind"):
        load_titles("icd9", "surgery")
    with pytest.raises(ValueError, match="coding system"):
        load_titles("icd11", "dx")


def test_read_title_file_errors_name_file_and_line(tmp_path):
    """Issue #13: gzip and encoding errors name the file (and line), not a bare
    EOFError / BadGzipFile / UnicodeDecodeError."""
    good = tmp_path / "t.txt.gz"
    good.write_bytes(gzip.compress("0010 Cholera\n0011 Ménière\n".encode("iso-8859-1")))
    assert read_title_file(good, "iso-8859-1") == {"0010": "Cholera", "0011": "Ménière"}
    with pytest.raises(DataFileError, match=r"t\.txt\.gz, line 2: not ascii text"):
        read_title_file(good, "ascii")
    truncated = tmp_path / "cut.txt.gz"
    truncated.write_bytes(gzip.compress(b"0010 Cholera\n" * 1000)[:-12])
    with pytest.raises(DataFileError, match=r"cut\.txt\.gz.*truncated or corrupt gzip"):
        read_title_file(truncated, "ascii")
    plain = tmp_path / "plain.txt.gz"
    plain.write_bytes(b"0010 Cholera\n")
    with pytest.raises(DataFileError, match=r"plain\.txt\.gz: not a gzip file"):
        read_title_file(plain, "ascii")
    bad = tmp_path / "bad.txt"
    bad.write_text("0010 Cholera\n0011\n")
    with pytest.raises(DataFileError, match=r"bad\.txt, line 2: expected 'CODE title'"):
        read_title_file(bad, "ascii")
