"""Issue #21: the GEM reading, the output layer and the threshold protocol on the command
line. ``jams-pyg train`` chooses them (``--variants union`` / ``tied``, ``--protocol``) and
each reaches the run's config; ``jams-pyg evaluate`` tunes with ``--protocol`` and names the
reading and the output layer its bundle was trained with (they are its weights')."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from test_cli_messages import _edin_data
from test_reliability_inference import CODES, make_parts

from jams_pyg.cli import build_parser, main
from jams_pyg.cli.evaluate import describe_choices, model_choices
from jams_pyg.cli.train import experiment_config
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


def test_evaluate_help_offers_the_protocol_and_names_the_bundles_choices(capsys):
    text = _help("evaluate", capsys)
    assert "--protocol {edin,exact}" in text
    assert "The GEM reading and the output layer are the bundle's" in text


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
