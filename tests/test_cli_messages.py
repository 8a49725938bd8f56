"""What the command line tells a newcomer (issue #22, item 7): a run's tables and its corpus
announced once, a last line naming the model bundles, --overwrite saying what it removed
(and never removing what a run did not write), a run folder given as --model pointing to
its bundle, help text and warnings that read as written, evaluate's table, and output
folders checked before the work."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_reliability_inference import CODES, TEXTS, make_parts

from jams_pyg.cli import main
from jams_pyg.data import clean_text
from jams_pyg.data.synthetic.documents import write_documents
from jams_pyg.eval.report import BUCKETS_TITLE, METRICS_TITLE
from jams_pyg.inference.bundle import save_bundle

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = ["train", "--model", "caml", "--size", "0.05", "--epochs", "1", "--batch-size", "8",
         "--no-progress"]
PREDICT_LINE = "for `jams-pyg predict --model`: "


def _command(*argv: str) -> subprocess.CompletedProcess:
    """``python -m jams_pyg ARGV`` as a user runs it: stdout and stderr apart."""
    result = subprocess.run([sys.executable, "-m", "jams_pyg", *argv], capture_output=True,
                            text=True, check=False, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def _is_bundle(folder: Path) -> bool:
    config = folder / "config.json"
    return config.is_file() and json.loads(config.read_text())["format"] == "jams_pyg.bundle"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The default pair of runs (CAML, CAML+JAMS) on a tiny corpus: its folder and output."""
    out = tmp_path_factory.mktemp("cli") / "caml"
    return out, _command(*TRAIN, "--output-dir", str(out))


@pytest.mark.slow
def test_a_run_prints_its_tables_and_announces_its_corpus_once(run):
    _, result = run
    assert result.stdout.count(METRICS_TITLE) == 1 and result.stdout.count(BUCKETS_TITLE) == 1
    # the one printing is the side-by-side one: both models in each of the four tables
    rows = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("CAML")]
    assert rows == ["CAML", "CAML+JAMS"] * 4
    assert result.stderr.count("generating the synthetic corpus") == 1


@pytest.mark.slow
def test_the_last_line_names_the_model_bundles(run):
    out, result = run
    bundles = [out / "backbone" / "icd9" / "model", out / "backbone" / "icd10" / "model",
               out / "jams" / "model"]
    assert all(_is_bundle(b) for b in bundles)
    last = result.stderr.strip().splitlines()[-1]
    assert last.endswith(f"wrote {out} in " + last.split(" in ", 1)[1].split(":")[0]
                         + ": report.md, metrics.json, buckets.png; per run: backbone/, jams/; "
                         f"model bundles {PREDICT_LINE}" + ", ".join(map(str, bundles)))


@pytest.mark.slow
def test_predict_on_a_run_folder_names_the_bundle_inside(run, tmp_path, capsys):
    out, _ = run
    notes = tmp_path / "notes.txt"
    notes.write_text("hypertension\n")
    assert main(["predict", "--model", str(out / "jams"), str(notes)]) == 1
    assert capsys.readouterr().err == (
        f"jams-pyg predict: error: {out / 'jams'} is a run folder, not a model bundle; its "
        f"model bundle is {out / 'jams' / 'model'}\n")
    assert main(["evaluate", "--model", str(out / "backbone"), "--data", str(out / "data")]) == 1
    assert capsys.readouterr().err == (
        f"jams-pyg evaluate: error: {out / 'backbone'} is a run folder, not a model bundle; its "
        f"model bundles are {out / 'backbone' / 'icd10' / 'model'}, "
        f"{out / 'backbone' / 'icd9' / 'model'}\n")


@pytest.mark.slow
def test_overwrite_says_in_one_line_what_it_removed(run):
    out, _ = run
    jams = out / "jams"
    files = sorted(p.relative_to(jams) for p in jams.rglob("*")
                   if p.is_file() and p.name != ".run.lock")
    assert {"best.pt", "last.pt", "metrics.json", "model/weights.safetensors"} <= \
        set(map(str, files))
    backbone = {p: p.stat().st_mtime_ns for p in (out / "backbone").rglob("*") if p.is_file()}
    result = _command(*TRAIN, "--output-dir", str(out), "--jams-only", "--overwrite")
    said = [line for line in result.stderr.splitlines() if "--overwrite" in line]
    assert len(said) == 1
    assert said[0].endswith(f"--overwrite: removed the earlier run in {out}: jams/ "
                            f"({len(files)} files)")
    assert {p: p.stat().st_mtime_ns for p in backbone} == backbone  # not a variant it trains
    # one run: its own tables, once, and its folder and bundle on the last line
    assert result.stdout.count(METRICS_TITLE) == 1
    assert result.stderr.count("generating the synthetic corpus") == 1
    last = result.stderr.strip().splitlines()[-1]
    assert f"wrote {jams} in " in last
    assert last.endswith(f"model bundle {PREDICT_LINE}{jams / 'model'}")


@pytest.mark.parametrize("foreign", ["notes.txt", "icd9/notes.txt", "model.bak/x"])
def test_overwrite_removes_nothing_from_a_folder_a_run_did_not_write_alone(
        foreign, tmp_path, capsys):
    jams = tmp_path / "out" / "jams"
    (jams / foreign).parent.mkdir(parents=True)
    (jams / foreign).write_text("mine")
    (jams / "last.pt").write_text("a run's")
    with pytest.raises(SystemExit) as stop:
        main([*TRAIN, "--output-dir", str(tmp_path / "out"), "--jams-only", "--overwrite"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"jams-pyg train: error: --overwrite: {jams} is not only a jams_pyg run "
                   f"folder (it holds {jams / foreign.split('/x')[0]}, which no run writes): "
                   "nothing removed; remove it yourself or choose another --output-dir")
    assert (jams / foreign).read_text() == "mine" and (jams / "last.pt").read_text() == "a run's"


def test_a_run_folder_given_as_model_points_to_its_bundle(tmp_path, capsys):
    save_bundle(tmp_path / "run" / "model", **make_parts(("icd10",)))
    (tmp_path / "run" / "config.json").write_text('{"model": "caml", "variant": "jams"}')
    notes = tmp_path / "notes.txt"
    notes.write_text("hypertension\n")
    for command in (["predict", str(notes)], ["evaluate", "--data", str(tmp_path)]):
        assert main([*command, "--model", str(tmp_path / "run")]) == 1
        assert capsys.readouterr().err == (
            f"jams-pyg {command[0]}: error: {tmp_path / 'run'} is a run folder, not a model "
            f"bundle; its model bundle is {tmp_path / 'run' / 'model'}\n")
    # a folder without a bundle keeps the bundle reader's error
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(notes), "--model", str(tmp_path / "empty")]) == 1
    assert "not a jams_pyg model bundle (config.json is missing)" in capsys.readouterr().err


def test_predict_help_shows_line_ends_as_written(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    out = capsys.readouterr().out
    assert "lines end at \\n only\n(\\r\\n too), so a form feed" in out
    assert "\r" not in out


@pytest.mark.parametrize(("category", "kind"), [(UserWarning, "warning"),
                                                (RuntimeWarning, "RuntimeWarning")])
def test_a_warning_is_one_line_naming_the_command(category, kind, monkeypatch, capsys):
    import jams_pyg.cli.predict as predict

    @torch.no_grad()
    def predictor_call():  # a warning with stacklevel=2 from under torch.no_grad names
        warnings.warn("2 of 3 notes look odd", category, stacklevel=2)  # torch's frame

    def run(args):
        predictor_call()
        return 0

    monkeypatch.setattr(predict, "run", run)
    assert main(["predict", "notes.txt", "--model", "m"]) == 0
    assert capsys.readouterr().err == f"jams-pyg predict: {kind}: 2 of 3 notes look odd\n"


def _edin_data(folder: Path, system: str, targets: list[list[str]]) -> Path:
    texts = [clean_text(t) for t in TEXTS]
    frame = pd.DataFrame({
        "_id": range(1, len(texts) + 1), "subject_id": range(1, len(texts) + 1),
        "text": texts, f"{system}_diag": targets, f"{system}_proc": [[] for _ in texts],
        "target": targets, "num_words": [len(t.split()) for t in texts],
        "num_targets": [len(t) for t in targets],
    })
    splits = pd.DataFrame({"_id": frame["_id"], "split": "test"})
    write_documents(frame, splits, folder / f"mimiciv_{system}", system)
    return folder


def test_evaluate_prints_a_row_per_system_with_the_unknown_code_share(tmp_path, capsys):
    model = save_bundle(tmp_path / "model", **make_parts())
    data = tmp_path / "data"
    # ICD-9: 1 of 5 code occurrences unknown to the model (20.0 %); ICD-10: none
    _edin_data(data, "icd9", [[c] for c in CODES["icd9"]] + [["999.9", "405.11"]])
    _edin_data(data, "icd10", [[c] for c in CODES["icd10"]])
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(model), "--data", str(data), "-o", str(report)]) == 0
    captured = capsys.readouterr()
    assert "icd9: 1 of 5 code occurrences of the test split are not among" in captured.err
    lines = captured.out.strip().splitlines()
    assert max(map(len, lines[1:])) <= 100
    header, icd9, icd10 = (line.split("  ") for line in lines[-3:])
    header = [cell.strip() for cell in header if cell]
    assert header == ["System", "Docs", "AUC micro", "AUC macro", "F1 micro", "F1 macro", "EMR",
                      "P@8", "P@15", "R-prec", "MAP", "Unknown %"]
    systems = json.loads(report.read_text())["systems"]
    for row, system, documents, unknown in ((icd9, "icd9", 4, "20.0"),
                                            (icd10, "icd10", 4, "0.0")):
        cells = [cell.strip() for cell in row if cell]
        metrics = systems[system]["metrics"]
        assert cells == [{"icd9": "ICD-9", "icd10": "ICD-10"}[system], str(documents),
                         *("–" if metrics[k] != metrics[k] else f"{100 * metrics[k]:.1f}"
                           for k in
                           ("auc_micro", "auc_macro", "f1_micro", "f1_macro", "exact_match",
                            "precision@8", "precision@15", "r_precision", "map")), unknown]
    assert "Unknown %: the share of the split's code occurrences" in lines[0]


@pytest.mark.parametrize(("command", "expensive"), [
    (["graph", "--save"], "jams_pyg.graph.gem_graph.GEMGraph.from_cms_2018"),
    (["evaluate", "--model", "m", "--data", "d", "--output"],
     "jams_pyg.cli.evaluate.evaluate_bundle"),
])
def test_an_output_into_a_missing_folder_fails_before_the_work(command, expensive, tmp_path,
                                                               monkeypatch, capsys):
    def work(*args, **kwargs):
        raise AssertionError("the work started")

    monkeypatch.setattr(expensive, work)
    target = tmp_path / "missing" / "out.file"
    assert main([*command, str(target)]) == 1
    option = command[-1]
    assert capsys.readouterr().err == (
        f"jams-pyg {command[0]}: error: {option} {target}: folder {target.parent} does not "
        "exist (create it first)\n")
