"""Issue #21: the GEM reading, the output layer and the threshold protocol on the command
line. ``jams-pyg train`` chooses them (``--gem-direction`` / ``--output-layer``, which train
the variant with that choice, ``--variants union`` / ``tied``, ``--protocol``) and each
reaches the run's config; ``jams-pyg evaluate`` tunes with ``--protocol``, names the reading
and the output layer its bundle was trained with (they are its weights') and refuses a
bundle with another than ``--gem-direction`` / ``--output-layer`` ask for."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from test_cli_messages import _edin_data
from test_reliability_inference import CODES, make_parts

from jams_pyg.cli import build_parser, main
from jams_pyg.cli.evaluate import describe_choices, model_choices
from jams_pyg.cli.train import _with_choices, experiment_config
from jams_pyg.inference.bundle import save_bundle
from jams_pyg.models import ModelConfig
from jams_pyg.train.experiment import _model_config


def _help(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_train_help_offers_the_reading_the_output_layer_and_the_protocol(capsys):
    text = _help("train", capsys)
    assert "--protocol {edin,exact}" in text
    assert "ablations: no_mat, unweighted, mat_only, union, no_proc_links" in text
    assert "our tied output layer: tied, tied_backbone" in text
    assert "--gem-direction {directional,union}" in text
    assert "--output-layer {separate,code_table}" in text


def test_evaluate_help_offers_the_protocol_and_names_the_bundles_choices(capsys):
    text = _help("evaluate", capsys)
    assert "--protocol {edin,exact}" in text
    assert "The GEM reading and the output layer are the bundle's" in text
    assert "--gem-direction {directional,union}" in text
    assert "--output-layer {separate,code_table}" in text


@pytest.mark.parametrize("protocol", ["edin", "exact"])
def test_train_flags_reach_each_runs_config(protocol, tmp_path):
    args = build_parser().parse_args(
        ["train", "--variants", "jams", "union", "tied", "backbone", "tied_backbone",
         "--protocol", protocol, "--output-dir", str(tmp_path)])
    want = {  # variant: (use_mat, gem_direction, output_layer)
        "jams": (True, "directional", "separate"),
        "union": (True, "union", "separate"),
        "tied": (True, "directional", "code_table"),
        "backbone": (False, "directional", "separate"),
        "tied_backbone": (False, "directional", "code_table"),
    }
    assert args.variants == list(want)
    tokenizer = SimpleNamespace(vocab_size=50)
    for variant, (use_mat, direction, output_layer) in want.items():
        config = experiment_config(args, variant, tmp_path / variant)
        assert config.protocol == protocol
        systems = ("icd9", "icd10") if use_mat else ("icd9",)
        model = _model_config(config, tokenizer, systems, synthetic=True)
        assert (model.use_mat, model.gem_direction, model.output_layer) == (
            use_mat, direction, output_layer), variant


def test_model_choices_name_the_reading_only_with_mat():
    jams = ModelConfig.for_backbone("laat", vocab_size=5, gem_direction="union")
    assert model_choices(jams) == {"model": "laat", "use_mat": True, "gem_direction": "union",
                                   "output_layer": "separate"}
    assert describe_choices(model_choices(jams)) == (
        "MAT over the union GEM reading, separate output layer")
    plain = ModelConfig.for_backbone("caml", vocab_size=5, systems=("icd10",), use_mat=False,
                                     output_layer="code_table")
    assert model_choices(plain) == {"model": "caml", "use_mat": False, "gem_direction": None,
                                    "output_layer": "code_table"}
    assert describe_choices(model_choices(plain)) == "no MAT, code_table output layer"


@pytest.mark.parametrize("protocol", [None, "edin", "exact"])
def test_evaluate_records_the_bundles_choices_and_the_protocol(protocol, tmp_path, capsys):
    model = save_bundle(tmp_path / "model", **make_parts())
    data = tmp_path / "data"
    for system in ("icd9", "icd10"):  # one document a code, four documents
        _edin_data(data, system, [[c] for c in (CODES[system] * 2)[:4]])
    report = tmp_path / "eval.json"
    tune = ["--tune-on", "test", "--protocol", protocol] if protocol else []
    assert main(["evaluate", "--model", str(model), "--data", str(data), "-o", str(report),
                 *tune]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "; MAT over the directional GEM reading, separate output layer; " in first
    payload = json.loads(report.read_text())
    assert payload["model_choices"] == {"model": "caml", "use_mat": True,
                                        "gem_direction": "directional",
                                        "output_layer": "separate"}
    assert payload["threshold_split"] == ("test" if protocol else "bundle")
    # the bundle records no protocol: its thresholds were tuned with edin
    assert {r["protocol"] for r in payload["systems"].values()} == {protocol or "edin"}


@pytest.mark.parametrize(("argv", "chosen"), [
    ([], ["backbone", "jams"]),
    (["--gem-direction", "directional"], ["backbone", "jams"]),
    (["--gem-direction", "union"], ["backbone", "union"]),
    (["--output-layer", "code_table"], ["tied_backbone", "tied"]),
    (["--no-jams", "--output-layer", "code_table"], ["tied_backbone"]),
    (["--variants", "no_mat", "union", "--gem-direction", "union"], ["no_mat", "union"]),
    (["--variants", "tied", "--output-layer", "code_table"], ["tied"]),
])
def test_train_reading_and_output_layer_flags_choose_the_variant(argv, chosen, tmp_path):
    args = build_parser().parse_args(["train", "--output-dir", str(tmp_path), *argv])
    assert _with_choices(args.variants or ["backbone", "jams"], args, args.parser) == chosen
    # the chosen variant is the one home of the choice: its config has it
    tokenizer = SimpleNamespace(vocab_size=50)
    for variant in chosen:
        config = experiment_config(args, variant, tmp_path / variant)
        systems = ("icd9",) if variant.endswith("backbone") else ("icd9", "icd10")
        model = _model_config(config, tokenizer, systems, synthetic=True)
        if args.gem_direction and model.use_mat:
            assert model.gem_direction == args.gem_direction
        if args.output_layer:
            assert model.output_layer == args.output_layer


@pytest.mark.parametrize(("argv", "message"), [
    (["--variants", "union", "--gem-direction", "directional"],
     "--gem-direction directional: variant 'union' has the GEM reading 'union'; "
     "'directional' contradicts it"),
    (["--variants", "tied_backbone", "--output-layer", "separate"],
     "--output-layer separate: variant 'tied_backbone' has the output layer 'code_table'"),
    (["--variants", "unweighted", "--gem-direction", "union"],
     "--gem-direction union: variant 'unweighted' has no counterpart with the GEM reading "
     "'union'"),
    (["--gem-direction", "union", "--output-layer", "code_table"],
     "--gem-direction union --output-layer code_table: variant 'jams' has no counterpart "
     "with the GEM reading 'union' and the output layer 'code_table'"),
    (["--variants", "jams", "union", "--gem-direction", "union"],
     "--gem-direction union makes jams and union the same run (union): name it once"),
])
def test_train_refuses_a_reading_that_contradicts_the_variants_before_any_work(
        argv, message, tmp_path, capsys):
    out = tmp_path / "runs"
    with pytest.raises(SystemExit) as done:
        main(["train", "--output-dir", str(out), *argv])
    assert done.value.code == 2
    assert message in " ".join(capsys.readouterr().err.split())
    assert not out.exists()  # nothing written, no folder made


@pytest.mark.parametrize(("flags", "error"), [
    ([], None),
    (["--gem-direction", "directional", "--output-layer", "separate"], None),
    (["--gem-direction", "union"], "--gem-direction union: the bundle runs MAT over the "
     "directional GEM reading; `jams-pyg train --gem-direction union` trains"),
    (["--output-layer", "code_table"], "--output-layer code_table: the bundle has the "
     "separate output layer"),
])
def test_evaluate_scores_only_a_bundle_with_the_reading_asked_for(flags, error, tmp_path,
                                                                 capsys):
    model = save_bundle(tmp_path / "model", **make_parts())
    data = tmp_path / "data"
    for system in ("icd9", "icd10"):
        _edin_data(data, system, [[c] for c in (CODES[system] * 2)[:4]])
    report = tmp_path / "eval.json"
    code = main(["evaluate", "--model", str(model), "--data", str(data), "-o", str(report),
                 *flags])
    captured = capsys.readouterr()
    if error is None:
        assert code == 0 and report.is_file()
        return
    assert code == 1 and not report.exists() and not captured.out  # before any scoring
    assert error in " ".join(captured.err.split())


def test_evaluate_names_a_bundle_without_mat_for_gem_direction(tmp_path, capsys):
    parts = make_parts(systems=("icd10",))
    model = save_bundle(tmp_path / "model", **parts)
    data = tmp_path / "data"
    _edin_data(data, "icd10", [[c] for c in (CODES["icd10"] * 2)[:4]])
    assert main(["evaluate", "--model", str(model), "--data", str(data),
                 "--gem-direction", "directional"]) == 1
    assert ("--gem-direction directional: the bundle has no MAT (it reads no GEMs)"
            in " ".join(capsys.readouterr().err.split()))
