"""CodiEsp: ``jams-pyg prepare codiesp`` and the official MAP."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from jams_pyg.cli import main
from jams_pyg.data.codiesp import prepare_codiesp, read_codiesp_codes
from jams_pyg.data.edin import load_edin_dataset

FIXTURE = Path(__file__).parent / "fixtures" / "codiesp"
CODIESP = SHARED_DATA / "codiesp"


# ----------------------------------------------------------------- prepare
def test_prepare_fixture_writes_an_edin_dataset_by_the_stated_rules(tmp_path):
    summary = prepare_codiesp(FIXTURE, tmp_path / "out")
    ds = load_edin_dataset(tmp_path / "out", "icd10")
    assert (len(ds.train), len(ds.val), len(ds.test)) == (2, 1, 1)
    by_id = {row["_id"]: row for row in ds.train.to_dict("records")}
    # Duplicate r50.9 once; i10 -> I10. (Edin's trailing dot); bn20 (prefix) dropped;
    # c34.9 (a category header, not in the CMS code list) kept; procedures first.
    assert list(by_id["case-1"]["target"]) == ["BW03ZZZ", "R07.9", "R50.9"]
    assert list(by_id["case-2"]["target"]) == ["C34.9", "I10."]
    assert list(ds.test["target"][0]) == ["3E0234Z", "E11.9"]
    # English text, cleaned as Edin et al. clean MIMIC (numbers between spaces go).
    assert by_id["case-2"]["text"] == "woman with essential hypertension bp mmhg"
    assert summary["dx"] == {
        "rows": 7, "duplicate_rows": 1, "prefix_rows_dropped": 0, "prefix_codes_dropped": 0,
        "unlisted_rows": 1, "unlisted_codes": 1, "unlisted_examples": ["C34.9"],
        "target_codes": 6}
    assert summary["proc"]["prefix_rows_dropped"] == 2
    assert summary["proc"]["prefix_codes_dropped"] == 2
    assert summary["proc"]["target_codes"] == 2
    assert json.loads((tmp_path / "out" / "codiesp_summary.json").read_text()) == summary
    assert "CC BY 4.0" in (tmp_path / "out" / "ATTRIBUTION.txt").read_text()
    # The official gold files travel unchanged, prefixes included.
    assert (tmp_path / "out" / "gold" / "testP.tsv").read_bytes() == \
        (FIXTURE / "test" / "testP.tsv").read_bytes()


def test_prepare_spanish_folds_accents_before_cleaning(tmp_path):
    prepare_codiesp(FIXTURE, tmp_path, language="es")
    ds = load_edin_dataset(tmp_path, "icd10")
    text = dict(zip(ds.train["_id"], ds.train["text"], strict=True))["case-1"]
    assert text == "varon de anos con fiebre y dolor toracico se realizo rx torax"


def test_prepare_can_drop_unlisted_codes(tmp_path):
    summary = prepare_codiesp(FIXTURE, tmp_path, unlisted="drop")
    ds = load_edin_dataset(tmp_path, "icd10")
    assert "C34.9" not in ds.codes and summary["dx"]["unlisted_rows"] == 1


def test_prepare_names_what_is_missing(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "c")
    (tmp_path / "c" / "dev" / "devP.tsv").unlink()
    shutil.rmtree(tmp_path / "c" / "test" / "text_files_en")
    with pytest.raises(FileNotFoundError, match="missing dev/devP.tsv, test/text_files_en$"):
        prepare_codiesp(tmp_path / "c", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="CodiEsp folder not found"):
        prepare_codiesp(tmp_path / "nowhere", tmp_path / "out")


@pytest.mark.parametrize("line, match", [
    ("case-4\tzz.9\n", r"testD.tsv, line 2: code 'zz.9'"),
    ("case-4 e11.9\n", r"testD.tsv, line 2: expected 'articleID<TAB>code'"),
    ("case-9\te11.9\n", r"testD.tsv, line 2: article 'case-9' has no text file"),
])
def test_prepare_bad_rows_name_file_and_line(tmp_path, line, match):
    shutil.copytree(FIXTURE, tmp_path / "c")
    with (tmp_path / "c" / "test" / "testD.tsv").open("a") as handle:
        handle.write(line)
    with pytest.raises(ValueError, match=match):
        prepare_codiesp(tmp_path / "c", tmp_path / "out")


def test_prepare_command_prints_the_summary(tmp_path, capsys):
    assert main(["prepare", "codiesp", str(FIXTURE), str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 rows of 2 4-character prefixes dropped" in out
    assert "1 rows of 1 codes outside the shipped ICD-10 lists kept" in out
    assert main(["prepare", "codiesp", str(tmp_path / "none"), str(tmp_path)]) == 1
    assert "CodiEsp folder not found" in capsys.readouterr().err


# Counts from ../shared/data/README.md: documents, D rows, distinct D, P rows, distinct P.
README_COUNTS = {"train": (500, 5639, 1767, 1550, 563), "dev": (250, 2677, 1158, 817, 375),
                 "test": (250, 2842, 1143, 879, 371)}


def test_real_release_matches_the_data_readme(tmp_path):
    all_dx = set()
    prefixes = 0
    for split, (docs, d_rows, d_codes, p_rows, p_codes) in README_COUNTS.items():
        dx = read_codiesp_codes(CODIESP / split / f"{split}D.tsv")
        px = read_codiesp_codes(CODIESP / split / f"{split}P.tsv")
        assert (len(dx), len({c for _, _, c in dx})) == (d_rows, d_codes)
        assert (len(px), len({c for _, _, c in px})) == (p_rows, p_codes)
        assert len(list((CODIESP / split / "text_files_en").glob("*.txt"))) == docs
        all_dx |= {c for _, _, c in dx}
        prefixes += sum(len(c) == 4 for _, _, c in px)
    summary = prepare_codiesp(CODIESP, tmp_path)
    ds = load_edin_dataset(tmp_path, "icd10")
    assert (len(ds.train), len(ds.val), len(ds.test)) == (500, 250, 250)
    assert summary["dx"]["rows"] == sum(c[1] for c in README_COUNTS.values())
    assert summary["dx"]["target_codes"] == len(all_dx) == 2557
    assert summary["proc"]["prefix_rows_dropped"] == prefixes
    # Every document keeps a diagnosis (the README: each has at least one).
    assert all(len(d) for d in ds.train["icd10_diag"]) and summary[
        "documents_dropped_without_codes"] == 0
