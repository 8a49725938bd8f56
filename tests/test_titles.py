"""CMS code titles shipped with the package."""

import gzip

import pytest

from jams_pyg.gem import resource_path
from jams_pyg.titles import TITLE_FILES, code_title, load_titles


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
