"""CodiEsp: ``jams-pyg prepare codiesp`` and the official MAP."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, load_benchmark

from jams_pyg.cli import main
from jams_pyg.data.codiesp import prepare_codiesp, read_codiesp_codes
from jams_pyg.data.edin import load_edin_dataset
from jams_pyg.eval.codiesp_metric import codiesp_average_precision, codiesp_map, ranked_codes

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


def test_train_accepts_a_prepared_codiesp_folder(tmp_path, capsys):
    """`jams-pyg train --data` on what `prepare codiesp` writes (ICD-10 only): the plain
    backbone on ICD-10, with its bundle; JAMS asked for is a one-line error."""
    data, out = tmp_path / "data", tmp_path / "out"
    prepare_codiesp(FIXTURE, data)
    args = ["train", "--data", str(data), "--model", "caml", "--epochs", "1",
            "--batch-size", "2", "--no-word2vec", "--no-progress", "--output-dir"]
    assert main([*args, str(out)]) == 0
    metrics = json.loads((out / "backbone" / "metrics.json").read_text())
    assert list(metrics["systems"]) == ["icd10"] and metrics["variant"] == "backbone"
    assert (out / "backbone" / "model").is_dir() and not (out / "jams").exists()
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main([*args, str(tmp_path / "jams"), "--jams-only"])
    assert "holds ICD-10 data only, and jams trains ICD-9 and ICD-10 jointly" in \
        capsys.readouterr().err


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


# ------------------------------------------------------------ official MAP
def test_official_map_by_hand():
    gold = [("a", "R52"), ("a", "n44.8"), ("a", "n44.8"), ("b", "i10"), ("c", "e11.9")]
    predictions = {
        "a": ["N44.8", "x", "n44.8", "r52"],  # duplicate keeps rank 1: APs 1/1, 2/3
        "b": ["e11.9", "i10"],                 # 1/2
        "c": ["bad"],                          # nothing valid: leaves the average
        "d": ["i10"],                          # no gold: counts as 0
    }
    valid = {"r52", "n44.8", "i10", "e11.9", "x"}
    ap = codiesp_average_precision(gold, predictions, valid)
    assert ap == pytest.approx({"a": (1 + 2 / 3) / 2, "b": 0.5, "d": 0.0})
    assert codiesp_map(gold, predictions, valid) == pytest.approx(((1 + 2 / 3) / 2 + 0.5) / 3)
    # Ranks count only what is left after the valid-code filter, then the depth cut.
    assert codiesp_map([("a", "r52")], {"a": ["zz", "r52"]}, {"r52"}, depth=1) == 1.0
    assert codiesp_map([("a", "r52")], {"a": ["n44.8", "r52"]}, depth=1) == 0.0
    assert codiesp_map(gold, {}) == 0.0


def test_ranked_codes_writes_codiesp_codes_best_first():
    probs = np.array([[0.1, 0.9, 0.5], [0.7, 0.2, 0.7]])
    ranked = ranked_codes(probs, ["I10.", "N44.8", "BW03ZZZ"], ["a", "b"], depth=2)
    assert ranked == {"a": ["n44.8", "bw03zzz"], "b": ["i10", "bw03zzz"]}


def _trectools_map(tmp_path, gold, predictions, valid, depth):
    """The organisers' pipeline re-enacted on trectools: their formatting (lower case,
    de-duplication, valid-code filter, score 10 for every row, in submitted order),
    written as TREC qrel / run files and scored by TrecEval.get_map(trec_eval=False)."""
    trectools = pytest.importorskip("trectools")
    valid = {c.lower() for c in valid}
    qrels, seen = [], set()
    for case, code in gold:
        if (case, code.lower()) not in seen:
            seen.add((case, code.lower()))
            qrels.append(f"{case} 0 {code.lower()} 1")
    run = []
    for case, codes in predictions.items():
        kept = set()
        for rank, code in enumerate(codes, 1):
            code = code.lower()
            if code not in kept:
                kept.add(code)
                if code in valid:
                    run.append(f"{case}\tQ0\t{code}\t{rank}\t10.0\txx")
    (tmp_path / "qrels.txt").write_text("\n".join(qrels) + "\n")
    (tmp_path / "run.txt").write_text("\n".join(run) + "\n")
    te = trectools.TrecEval(trectools.TrecRun(str(tmp_path / "run.txt")),
                            trectools.TrecQrel(str(tmp_path / "qrels.txt")))
    return te.get_map(depth=depth, trec_eval=False)


@pytest.mark.filterwarnings("ignore:The inplace keyword")
@pytest.mark.parametrize("seed, depth", [(0, 1000), (1, 1000), (2, 3), (3, 7)])
def test_official_map_agrees_with_trectools(tmp_path, seed, depth):
    rng = np.random.default_rng(seed)
    codes = [f"c{i:02d}.{j}" for i in range(6) for j in range(3)]
    cases = [f"S{i:03d}-1" for i in range(25)]
    gold = [(case, str(rng.choice(codes)).upper() if rng.random() < 0.3 else
             str(rng.choice(codes))) for case in cases[:20] for _ in range(rng.integers(1, 6))]
    predictions = {}
    for case in cases[5:]:  # cases 0-4: gold only; 20-24: predictions only
        n = int(rng.integers(0, 15))
        ranked = [str(rng.choice([*codes, "zz9.9", "yy1"])) for _ in range(n)]
        predictions[case] = [c.upper() if rng.random() < 0.2 else c for c in ranked]
    predictions[cases[6]] = ["zz9.9"]  # only an invalid code: leaves the average
    expected = _trectools_map(tmp_path, gold, predictions, codes, depth)
    assert codiesp_map(gold, predictions, codes, depth=depth) == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------- transition: the GEM conversion
def _raw_gem_targets(path: Path, source: str, reverse: bool = False) -> set[str]:
    """An independent read of a CMS GEM file: the targets of ``source`` (or, reversed, the
    sources that map to it), no-map lines left out."""
    out = set()
    for line in path.read_text().splitlines():
        a, b, flags = line.split()
        if flags[1] == "1":
            continue
        a, b = a.upper(), b.upper()
        if reverse and b == source:
            out.add(a)
        elif not reverse and a == source:
            out.add(b)
    return out


@pytest.mark.slow
def test_transition_converts_icd10_to_icd9_by_every_backward_gem_target():
    from collections import Counter

    from jams_pyg.icd.codes import format_code

    t = load_benchmark("codiesp_transition")
    maps = t.backward_maps()
    gems = SHARED_DATA / "gems"
    codes = ["I50.9", "J44.1", "R52.", "C34.9", "0DTJ4ZZ", "BW03ZZZ"]
    counts = Counter()
    diag, proc = t.to_icd9(codes, maps, counts)
    want_dx = set()
    for code in codes[:4]:
        want_dx |= _raw_gem_targets(gems / "2018_I10gem.txt", code.replace(".", ""))
    want_proc = set()
    for code in codes[4:]:
        want_proc |= _raw_gem_targets(gems / "gem_i9pcs.txt", code, reverse=True)
    assert diag == sorted(format_code(c, "icd9", "dx") for c in want_dx)
    assert proc == sorted(format_code(c, "icd9", "proc") for c in want_proc)
    assert "428.0" in diag and len(want_dx) >= 3 and want_proc
    # C34.9 is a category header: no GEM line, so it is lost and counted.
    assert counts["dx_no_map"] == 1 and counts["dx_mapped"] == 3
    assert counts["proc_mapped"] + counts["proc_no_map"] == 2


def test_transition_table_keeps_stored_runs_of_a_seed_whose_models_are_gone(tmp_path):
    """codiesp_table.transition_runs re-scores saved models; a seed without them keeps the
    runs summary.json recorded, only when they match the run JSONs' official MAP."""
    t = load_benchmark("codiesp_table")
    official = {"map_d": 0.1, "map_p": 0.2, "map_p_full_codes": 0.3}
    record = {"key": "jams_seed7", "variant": "jams", "seed": 7, "official": official,
              "config": {"output_dir": str(tmp_path / "gone")}}
    (tmp_path / "jams_seed7.json").write_text(json.dumps(record))
    run = {"model": "laat", "variant": "jams", "seed": 7, "systems": {
        "icd10": {"metrics": {}, "buckets": {}},
        "codiesp_d": {"metrics": {"map": 0.1}}, "codiesp_p": {"metrics": {"map": 0.2}}}}
    (tmp_path / "summary.json").write_text(json.dumps({"runs": [run]}))
    assert t.transition_runs(tmp_path, tmp_path / "work") == [run]
    run["systems"]["codiesp_d"]["metrics"]["map"] = 0.11
    (tmp_path / "summary.json").write_text(json.dumps({"runs": [run]}))
    with pytest.raises(FileNotFoundError, match="jams_seed7"):
        t.transition_runs(tmp_path, tmp_path / "work")
