"""Per-backbone model configs (issue #21): each backbone's settings in its own dataclass, a
setting of another backbone an error naming both, and the flat layout of every earlier
``config.json`` / ``metrics.json`` / bundle written and read unchanged."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from conftest import load_benchmark

from jams_pyg.models import ModelConfig
from jams_pyg.models.config import (
    BACKBONE_CONFIGS,
    BACKBONES,
    FLAT_LAYOUT,
    CAMLConfig,
    LAATConfig,
    MultiResCNNConfig,
    PLMICDConfig,
)
from jams_pyg.train.presets import SYNTHETIC_MODEL
from jams_pyg.train.variants import VARIANTS, variant_model_fields

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
FORMAT_2_BUNDLE = ROOT / "tests" / "fixtures" / "bundle_format2"  # the first golden bundle
DISPLAY = {"laat": "LAAT", "caml": "CAML", "multirescnn": "MultiResCNN", "plm_icd": "PLM-ICD"}

#: Non-default values of every backbone's own settings.
CUSTOM = {
    "laat": {"embedding_dim": 64, "embed_dropout": 0.1, "rnn_hidden_size": 32,
             "rnn_num_layers": 2, "rnn_dropout": 0.0, "projection_size": 48},
    "caml": {"embedding_dim": 16, "embed_dropout": 0.0, "num_filters": 64, "kernel_size": 4},
    "multirescnn": {"embedding_dim": 16, "embed_dropout": 0.1, "num_filters": 8,
                    "kernel_sizes": (3, 5, 9)},
    "plm_icd": {"plm_path_or_config": {"model_type": "roberta", "hidden_size": 32},
                "chunk_size": 64, "projection_size": 16},
}
#: The values the official configurations set, transcribed from Edin et al.'s
#: medical-coding-reproducibility (``configs/model/<file>``; the official JAMS code has the
#: same files) and ``configs/text_encoder/word2vec.yaml`` (``vector_size: 100``: the
#: embedding width of every word backbone).
OFFICIAL = {
    "laat": ("laat.yaml", {"embed_dropout": 0.3, "rnn_hidden_size": 512, "projection_size": 512,
                           "rnn_num_layers": 1, "rnn_dropout": 0.3}),
    "caml": ("caml.yaml", {"embed_dropout": 0.2, "num_filters": 50, "kernel_size": 10}),
    "multirescnn": ("multi_res_conv.yaml", {"kernel_sizes": (3, 5, 9, 15, 19, 25),
                                            "num_filters": 50, "embed_dropout": 0.2}),
}
WORD2VEC_VECTOR_SIZE = 100


def _own(model: str) -> set[str]:
    return {f.name for f in dataclasses.fields(BACKBONE_CONFIGS[model])}


def _all_settings() -> set[str]:
    return set().union(*(_own(m) for m in BACKBONES))


# --------------------------------------------------------------- another backbone's setting
def test_laat_setting_given_to_caml_names_both():
    with pytest.raises(ValueError) as err:
        ModelConfig.for_backbone("caml", vocab_size=10, rnn_hidden_size=64)
    message = str(err.value)
    assert "rnn_hidden_size" in message and "LAAT" in message
    assert "'caml'" in message and "CAMLConfig" in message
    # before per-backbone configs the field was silently ignored: no CAML config has it now
    assert not hasattr(CAMLConfig(), "rnn_hidden_size")


@pytest.mark.parametrize("model", BACKBONES)
def test_every_foreign_setting_is_an_error(model):
    for setting in sorted(_all_settings() - _own(model)):
        value = (3,) if setting == "kernel_sizes" else 3
        with pytest.raises(ValueError, match=rf"'{model}' \({DISPLAY[model]}\) has no "
                                              rf"setting {setting} \(a setting of "):
            ModelConfig.for_backbone(model, vocab_size=10, **{setting: value})
        # model_overrides of a run, and a flat file holding it, are refused alike
        flat = {**ModelConfig.for_backbone(model, vocab_size=10).to_dict(), setting: value}
        with pytest.raises(ValueError, match=setting):
            ModelConfig.from_dict(flat)


def test_backbone_config_must_match_the_model():
    with pytest.raises(ValueError, match="model 'caml' \\(CAML\\) takes a CAMLConfig, got a "
                                         "LAATConfig"):
        ModelConfig(model="caml", vocab_size=5, backbone=LAATConfig())
    config = ModelConfig(vocab_size=5, backbone=MultiResCNNConfig(num_filters=8))
    assert config.model == "multirescnn" and config.num_filters == 8
    assert config == ModelConfig.for_backbone("multirescnn", vocab_size=5, num_filters=8)
    with pytest.raises(ValueError, match="no word embeddings"):
        ModelConfig.for_backbone("plm_icd", freeze_embeddings=True)
    with pytest.raises(ValueError, match="unknown ModelConfig field"):
        ModelConfig.for_backbone("laat", hidden_size=3)


def test_experiment_model_overrides_are_checked(tmp_path):
    from jams_pyg.data import WordTokenizer
    from jams_pyg.train.experiment import ExperimentConfig, _model_config

    tok = WordTokenizer.fit(["a b c", "b c d"], min_df=1, max_length=8)
    bad = ExperimentConfig(model="caml", model_overrides={"projection_size": 8})
    with pytest.raises(ValueError, match="projection_size .*LAAT, PLM-ICD"):
        _model_config(bad, tok, ("icd9", "icd10"), synthetic=True)
    good = ExperimentConfig(model="caml", model_overrides={"num_filters": 8})
    assert _model_config(good, tok, ("icd9", "icd10"), synthetic=True).backbone == CAMLConfig(
        num_filters=8)


def _codiesp_model_sizes() -> dict:
    return load_benchmark("codiesp", "_bench_codiesp_sizes").MODEL


def test_preset_and_benchmark_overrides_keep_working():
    for model, overrides in {**SYNTHETIC_MODEL}.items():
        config = ModelConfig.for_backbone(model, vocab_size=10, **overrides)
        assert config.mat_att_gain == 1.0
        for key, value in overrides.items():
            assert getattr(config, key) == value
    for model, overrides in _codiesp_model_sizes().items():
        backbone = ModelConfig.for_backbone(model, vocab_size=10, **overrides).backbone
        assert backbone == BACKBONE_CONFIGS[model](**overrides)


# ------------------------------------------------------------------------- the flat layout
@pytest.mark.parametrize("model", BACKBONES)
def test_round_trip_of_every_backbone(model):
    shared = {"vocab_size": 0 if model == "plm_icd" else 50, "code_dim": 12,
              "systems": ("icd9", "icd10"), "mat_heads": 2, "mat_att_gain": 1.0,
              "gem_direction": "union", "output_layer": "code_table"}
    for settings in ({}, CUSTOM[model]):
        config = ModelConfig.for_backbone(model, **shared, **settings)
        assert config.backbone == BACKBONE_CONFIGS[model](**settings)
        flat = config.to_dict()
        assert tuple(flat) == FLAT_LAYOUT  # the layout (and order) of every earlier version
        for setting in _all_settings() - _own(model):
            assert flat[setting] is None and getattr(config, setting) is None
        for setting in _own(model):
            assert getattr(config, setting) == getattr(config.backbone, setting)
        assert ModelConfig.from_dict(flat) == config
        assert ModelConfig.from_dict(json.loads(json.dumps(flat))) == config
        typed = ModelConfig(model=model, backbone=BACKBONE_CONFIGS[model](**settings), **shared)
        assert typed == config and typed.to_dict() == flat


def _model_configs(tree, found):
    if isinstance(tree, dict):
        if "rnn_hidden_size" in tree and "model" in tree:
            found.append(tree)
        else:
            for value in tree.values():
                _model_configs(value, found)
    elif isinstance(tree, list):
        for value in tree:
            _model_configs(value, found)
    return found


def test_golden_files_hold_the_flat_layout():
    metrics = _model_configs(json.loads((GOLDEN / "metrics.json").read_text()), [])
    assert len(metrics) == 3
    for flat in metrics:
        assert ModelConfig.from_dict(flat).to_dict() == flat
    # the golden run's LAAT+JAMS config, written with the typed API, is the golden dict
    jams = next(f for f in metrics if f["use_mat"])
    typed = ModelConfig(model="laat", vocab_size=446, mat_att_gain=1.0,
                        backbone=LAATConfig(embedding_dim=64, rnn_hidden_size=64,
                                            projection_size=64))
    assert typed.to_dict() == jams
    preset = ModelConfig.for_backbone("laat", vocab_size=446, **variant_model_fields("jams"),
                                      **SYNTHETIC_MODEL["laat"])
    assert preset == typed
    # the first golden bundle (kept as the format-2 fixture) predates mat_att_gain: it reads
    # as gain 1 and writes it
    bundle = json.loads((FORMAT_2_BUNDLE / "config.json").read_text())["model_config"]
    assert "mat_att_gain" not in bundle
    again = ModelConfig.from_dict(bundle).to_dict()
    assert again == {**bundle, "mat_att_gain": 1.0}
    assert again == dataclasses.replace(typed, vocab_size=424).to_dict()  # its corpus's words


def test_committed_configs_read_and_write_unchanged():
    """Every model config in the committed bundles, metrics and benchmark results (all four
    backbones' layouts) reads and writes back as it is stored."""
    found = []
    for pattern in ("examples/**/config.json", "benchmarks/results/**/*.json"):
        for path in sorted(ROOT.glob(pattern)):
            _model_configs(json.loads(path.read_text()), found)
    assert {flat["model"] for flat in found} >= {"laat", "caml", "multirescnn", "plm_icd"}
    for flat in found:
        again = ModelConfig.from_dict(flat).to_dict()
        assert {k: again[k] for k in flat} == flat


def test_variants_keep_their_backbone_settings():
    for model in BACKBONES:
        for variant in VARIANTS:
            fields = variant_model_fields(variant)
            if variant in ("backbone", "tied_backbone"):
                fields = {**fields, "systems": ("icd9",), "use_mat": False}
            config = ModelConfig.for_backbone(model, vocab_size=10, **fields)
            assert config.backbone == BACKBONE_CONFIGS[model]()


# ------------------------------------------------------------------------ official defaults
@pytest.mark.parametrize("model", ["laat", "caml", "multirescnn"])
def test_word_backbone_defaults_are_the_official_ones(model):
    cls = BACKBONE_CONFIGS[model]
    source, official = OFFICIAL[model]
    assert source in cls.__doc__ and "word2vec.yaml" in cls.__doc__
    defaults = cls()
    for setting, value in official.items():
        assert getattr(defaults, setting) == value, setting
    assert defaults.embedding_dim == WORD2VEC_VECTOR_SIZE
    # every own setting but the embedding width has its official value
    assert set(official) | {"embedding_dim"} == _own(model)


def test_plm_icd_defaults():
    defaults = PLMICDConfig()
    # Edin et al.'s src/models/plm_icd.py: LabelAttention(projection_size=config.hidden_size)
    assert "projection_size=self.config.hidden_size" in PLMICDConfig.__doc__
    assert defaults.projection_size is None and defaults.plm_path_or_config is None
    assert defaults.chunk_size == 128
