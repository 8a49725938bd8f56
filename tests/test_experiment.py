"""End to end: examples/train_laat.py's entry point on a tiny synthetic corpus."""

import json
from pathlib import Path

import pytest

from jams_pyg.cli import main as cli_main
from jams_pyg.eval import FREQUENCY_BUCKETS, METRIC_LABELS, bucket_label, scale_buckets
from jams_pyg.inference.predictor import JAMSPredictor
from jams_pyg.train.experiment import ExperimentConfig

ARGS = ["--model", "caml", "--size", "0.05", "--epochs", "1", "--batch-size", "8",
        "--no-progress"]


def main(argv: list[str]) -> list[dict]:
    """``jams-pyg train`` with ``argv``; the metrics of each run it trained, from disk."""
    assert cli_main(["train", *argv]) == 0
    out = Path(argv[argv.index("--output-dir") + 1])
    variants = (["jams"] if "--jams-only" in argv else
                [argv[argv.index("--variants") + 1]] if "--variants" in argv else
                ["backbone", "jams"])
    return [json.loads((out / v / "metrics.json").read_text()) for v in variants]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp")
    return out, main([*ARGS, "--output-dir", str(out)])


@pytest.mark.slow
def test_backbone_and_jams_side_by_side(runs):
    out, results = runs
    assert [r["variant"] for r in results] == ["backbone", "jams"]
    assert [r["label"] for r in results] == ["CAML", "CAML+JAMS"]
    for variant in ("backbone", "jams"):
        metrics = json.loads((out / variant / "metrics.json").read_text())
        for system in ("icd9", "icd10"):
            entry = metrics["systems"][system]
            assert set(entry["metrics"]) == set(METRIC_LABELS)
            assert 0.0 < entry["threshold"] < 1.0
            # The paper's buckets scaled to the corpus size (the corpus records it).
            expected = [bucket_label(b) for b in
                        scale_buckets(FREQUENCY_BUCKETS, metrics["bucket_scale"])]
            assert list(entry["buckets"]["buckets"]) == expected
            assert {"with_link", "without_link"} <= set(entry["buckets"]["linkage"])
        config = json.loads((out / variant / "config.json").read_text())
        assert config["variant"] == variant and config["model"] == "caml"
    # The plain backbone is one model per system; JAMS is one joint model.
    assert (out / "backbone" / "icd9" / "best.pt").is_file()
    assert (out / "backbone" / "icd10" / "best.pt").is_file()
    assert (out / "jams" / "best.pt").is_file()
    report = (out / "report.md").read_text()
    assert "| CAML |" in report and "| CAML+JAMS |" in report
    assert (out / "buckets.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Linkage groups are the same for both (a property of the GEMs, not the model).
    link = [json.loads((out / v / "metrics.json").read_text())["systems"]["icd9"]["buckets"]
            ["linkage"]["with_link"]["num_codes"] for v in ("backbone", "jams")]
    assert link[0] == link[1]


@pytest.mark.slow
def test_bundle_written_with_tuned_thresholds(runs):
    out, results = runs
    predictor = JAMSPredictor.load(out / "jams" / "model")
    jams = results[1]["systems"]
    assert predictor.thresholds == pytest.approx(
        {s: jams[s]["threshold"] for s in ("icd9", "icd10")})


@pytest.mark.slow
def test_rerun_needs_resume(runs, capsys):
    out, results = runs
    # a one-line error before any work (the corpus is not even regenerated)
    corpus = out / "data" / "synthetic_concepts.json"
    stamp = corpus.stat().st_mtime_ns
    with pytest.raises(SystemExit):
        main([*ARGS, "--output-dir", str(out), "--jams-only"])
    assert "holds a previous run: resume it (--resume)" in capsys.readouterr().err
    assert corpus.stat().st_mtime_ns == stamp
    again = main([*ARGS, "--output-dir", str(out), "--jams-only", "--resume"])
    # Training had finished: resuming only re-evaluates the best checkpoint.
    assert again[0]["systems"]["icd9"]["metrics"] == pytest.approx(
        results[1]["systems"]["icd9"]["metrics"])
    # --overwrite starts afresh; the same seed gives the same run.
    fresh = main([*ARGS, "--output-dir", str(out), "--jams-only", "--overwrite"])
    assert fresh[0]["systems"]["icd10"]["metrics"] == pytest.approx(
        results[1]["systems"]["icd10"]["metrics"])


def test_config_errors():
    with pytest.raises(ValueError, match="unknown model 'bert'"):
        ExperimentConfig(model="bert")
    with pytest.raises(ValueError, match="unknown variant 'xyz'"):
        ExperimentConfig(variant="xyz")
    with pytest.raises(ValueError, match="trains both systems jointly"):
        ExperimentConfig(systems=("icd9",))


@pytest.mark.slow
def test_ablation_variants_switch_one_part_each(tmp_path):
    from jams_pyg.data import WordTokenizer
    from jams_pyg.train.experiment import _model_config

    tok = WordTokenizer.fit(["a b c", "a b d"], min_df=1)
    parts = {}
    for variant in ("jams", "no_mat", "unweighted", "mat_only"):
        config = _model_config(ExperimentConfig(model="caml", variant=variant), tok,
                               ("icd9", "icd10"), synthetic=True)
        parts[variant] = (config.use_mat, config.edge_weighting, config.shared_encoder)
    assert parts == {"jams": (True, True, True), "no_mat": (False, True, True),
                     "unweighted": (True, False, True), "mat_only": (True, True, False)}
    assert ExperimentConfig(model="caml", variant="mat_only").label == "CAML+JAMS (mat_only)"
    # end to end: one encoder per system, written to and read back from the bundle
    (run,) = main([*ARGS, "--output-dir", str(tmp_path), "--variants", "mat_only"])
    assert set(run["systems"]) == {"icd9", "icd10"}
    predictor = JAMSPredictor.load(tmp_path / "mat_only" / "model")
    assert not predictor.model.shared_encoder and predictor.model.use_mat


def test_size_is_checked_when_parsed(capsys):
    from jams_pyg.cli import build_parser

    def size(value: str):
        return build_parser().parse_args(["train", "--size", value]).size

    assert size("0.5") == 0.5 and size("large") == "large"
    for bad in ("huge", "-1", "nan"):
        with pytest.raises(SystemExit):
            size(bad)
        assert "size must be" in capsys.readouterr().err


def test_missing_or_empty_data_folder_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        cli_main(["train", "--data", str(tmp_path / "nowhere"), "--output-dir",
                  str(tmp_path / "out")])
    assert stop.value.code == 2
    assert f"--data {tmp_path / 'nowhere'}: no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    status = cli_main(["train", "--data", str(tmp_path / "empty"), "--output-dir",
                       str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1 and err[0].startswith("jams-pyg train: error: ")
    assert str(tmp_path / "empty") in err[0]


@pytest.mark.slow
def test_evaluate_reproduces_the_runs_test_metrics(runs, tmp_path):
    """`jams-pyg evaluate` re-scores the saved bundle through the predictor (raw text in)
    and must give the numbers the training run computed from its own batches."""
    out, results = runs
    report = tmp_path / "eval.json"
    assert cli_main(["evaluate", "--model", str(out / "jams" / "model"), "--data",
                     str(out / "data"), "--tune-on", "val", "-o", str(report)]) == 0
    evaluated = json.loads(report.read_text())["systems"]
    trained = results[1]["systems"]
    for system in ("icd9", "icd10"):
        assert evaluated[system]["unknown_code_share"] == 0.0
        assert evaluated[system]["num_documents"] == trained[system]["num_test_documents"]
        assert evaluated[system]["threshold"] == pytest.approx(trained[system]["threshold"])
        assert evaluated[system]["metrics"] == pytest.approx(trained[system]["metrics"],
                                                             abs=1e-6)


@pytest.mark.slow
def test_evaluate_protocol_exact_reproduces_the_exact_run(runs, tmp_path):
    """`train --protocol exact` tunes with the exact maximiser and records it; `evaluate
    --tune-on val --protocol exact` (and the bundle's own threshold) give its numbers."""
    out, results = runs
    (exact,) = main([*ARGS, "--output-dir", str(tmp_path / "exact"), "--jams-only",
                     "--protocol", "exact"])
    assert exact["protocol"] == {"threshold": "exact", "micro_auc_codes": "all",
                                 "threshold_split": "val"}
    assert results[1]["protocol"]["threshold"] == "edin"
    edin = results[1]["systems"]
    # same seed and data, so the same model: only the tuned thresholds differ
    assert [exact["systems"][s]["threshold"] != edin[s]["threshold"]
            for s in ("icd9", "icd10")] == [True, True]
    model = tmp_path / "exact" / "jams" / "model"
    for extra in (["--tune-on", "val", "--protocol", "exact"], []):
        report = tmp_path / "eval.json"
        assert cli_main(["evaluate", "--model", str(model), "--data", str(out / "data"),
                         "-o", str(report), *extra]) == 0
        evaluated = json.loads(report.read_text())["systems"]
        for system, trained in exact["systems"].items():
            assert evaluated[system]["protocol"] == "exact"
            assert evaluated[system]["threshold"] == pytest.approx(trained["threshold"])
            assert evaluated[system]["metrics"] == pytest.approx(trained["metrics"], abs=1e-6)


def test_evaluate_protocol_needs_tune_on(tmp_path, capsys):
    # refused before the bundle is read: the folders need not exist
    status = cli_main(["evaluate", "--model", str(tmp_path / "model"), "--data",
                       str(tmp_path / "data"), "--protocol", "exact"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1
    assert "--protocol exact chooses how --tune-on tunes the threshold" in err[0]
