"""Model bundles: layout, checksums, refusal of incomplete / modified / foreign bundles,
and a PLM-ICD bundle with a Hugging Face tokenizer."""

import hashlib
import json
import os
import pickle
import shutil
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from jams_pyg.data import WordTokenizer, clean_text, train_hf_tokenizer
from jams_pyg.graph.gem_graph import GEMGraph
from jams_pyg.inference.bundle import (
    BUNDLE_VERSION,
    BundleError,
    config_checksum,
    load_bundle,
    save_bundle,
)
from jams_pyg.inference.predictor import JAMSPredictor
from jams_pyg.models import ModelConfig, build_model

CODES = {"icd9": ["405.11", "576.2", "749.11"], "icd10": ["I15.0", "K83.1", "Q36.9", "Z99.89"]}
TEXTS = [
    "patient admitted with renovascular hypertension and bile duct obstruction",
    "cleft lip unilateral repaired, dependence on machine",
    "bile duct obstruction treated; renovascular hypertension stable",
    "no cleft lip; hypertension renovascular; discharged home",
]
THRESHOLDS = {"icd9": 0.4, "icd10": 0.6}


pytestmark = pytest.mark.usefixtures("one_thread")


def make_model(config=None, **fields):
    """A small CAML model (``fields``: ModelConfig fields), its config, tokenizer and GEM
    graph (in the config's reading; ``None`` without MAT)."""
    tok = WordTokenizer.fit([clean_text(t) for t in TEXTS], min_df=1, max_length=32)
    config = config or ModelConfig.for_backbone(
        "caml", vocab_size=tok.vocab_size, embedding_dim=8, num_filters=8, kernel_size=3,
        **fields)
    graph = (GEMGraph.from_cms_2018(CODES["icd9"], CODES["icd10"],
                                    direction=config.gem_direction) if config.use_mat else None)
    torch.manual_seed(0)
    model = build_model(config, graph, {s: len(CODES[s]) for s in config.systems})
    with torch.no_grad():  # move away from the initialisation
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval(), config, tok, graph


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model, config, tok, graph = make_model()
    path = save_bundle(tmp_path_factory.mktemp("bundle") / "model", model, config, tok, CODES,
                       THRESHOLDS, graph, 32, extra={"f1_micro": 0.5})
    return path, model, config, tok, graph


@pytest.fixture
def copy(saved, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(saved[0], target)
    return target


def test_layout_checksums_and_contents(saved):
    path, model, config, _tok, _graph = saved
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["format_version"] == BUNDLE_VERSION
    assert cfg["systems"] == ["icd9", "icd10"] and cfg["max_length"] == 32
    assert cfg["thresholds"] == THRESHOLDS and cfg["extra"] == {"f1_micro": 0.5}
    # the GEM reading lives in graph.safetensors only (format 4)
    assert cfg["model_config"] == {k: v for k, v in config.to_dict().items()
                                   if k != "gem_direction"}
    listed = set(cfg["files"])
    on_disk = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    assert listed == on_disk - {"config.json"}
    assert listed == {"weights.safetensors", "codes.json", "vocab.json", "graph.safetensors",
                      "graph_codes.json"}
    for name, digest in cfg["files"].items():
        assert hashlib.sha256((path / name).read_bytes()).hexdigest() == digest
    weights = load_file(str(path / "weights.safetensors"))
    for k, v in model.state_dict().items():
        assert torch.equal(weights[k], v)
    assert json.loads((path / "codes.json").read_text()) == CODES


def test_load_rebuilds_everything_without_pickle(saved, monkeypatch):
    path, model, config, tok, graph = saved

    def forbidden(*args, **kwargs):
        raise AssertionError("loading a bundle must not unpickle")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    bundle = load_bundle(path)
    assert not bundle.model.training
    for k, v in model.state_dict().items():
        assert torch.equal(bundle.model.state_dict()[k], v)
    assert bundle.codes == CODES and bundle.thresholds == THRESHOLDS
    assert bundle.max_length == 32 and bundle.extra == {"f1_micro": 0.5}
    assert bundle.model_config == config
    assert bundle.tokenizer.vocab.itos == tok.vocab.itos
    assert bundle.graph.icd9_codes == graph.icd9_codes
    assert bundle.graph.icd10_codes == graph.icd10_codes
    assert torch.equal(bundle.graph.edge_index, graph.edge_index)
    assert torch.equal(bundle.graph.edge_weight, graph.edge_weight)
    a = JAMSPredictor(bundle).predict_proba(TEXTS)
    b = JAMSPredictor.from_model(model, tok, CODES, THRESHOLDS, graph, 32).predict_proba(TEXTS)
    for s in CODES:
        np.testing.assert_array_equal(a[s], b[s])


def test_tampered_weights_are_refused(copy):
    data = bytearray((copy / "weights.safetensors").read_bytes())
    data[-3] ^= 0x01  # one bit of one weight
    (copy / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"weights\.safetensors: checksum mismatch"):
        JAMSPredictor.load(copy, device="cpu")


def test_tampered_vocabulary_is_refused(copy):
    vocab = json.loads((copy / "vocab.json").read_text())
    vocab["tokens"][2], vocab["tokens"][3] = vocab["tokens"][3], vocab["tokens"][2]
    (copy / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(BundleError, match=r"vocab\.json: checksum mismatch"):
        load_bundle(copy)


@pytest.mark.parametrize("name", ["codes.json", "weights.safetensors", "graph.safetensors",
                                  "vocab.json"])
def test_missing_file_is_refused(copy, name):
    (copy / name).unlink()
    with pytest.raises(BundleError, match=f"incomplete bundle, file '{name}' is missing"):
        load_bundle(copy)


def test_missing_config_or_folder(copy, tmp_path):
    (copy / "config.json").unlink()
    with pytest.raises(BundleError, match=r"not a jams_pyg model bundle \(config.json"):
        load_bundle(copy)
    with pytest.raises(BundleError, match="no such model bundle folder"):
        load_bundle(tmp_path / "absent")


def edit_config(path, change, resign=True):
    """Change config.json; ``resign``: record the new content's checksum, as a deliberate
    edit (to reach the checks behind the checksum) would."""
    cfg = json.loads((path / "config.json").read_text())
    change(cfg)
    if resign and "config_sha256" in cfg:
        cfg["config_sha256"] = config_checksum(cfg)
    (path / "config.json").write_text(json.dumps(cfg))


def test_unknown_format_version_is_refused(copy):
    edit_config(copy, lambda c: c.update(format_version=BUNDLE_VERSION + 1))
    with pytest.raises(BundleError, match=f"format version {BUNDLE_VERSION + 1} is not "
                                          "supported"):
        load_bundle(copy)


def test_config_that_does_not_fit_the_weights_is_refused(copy):
    edit_config(copy, lambda c: c["model_config"].update(num_filters=6))
    with pytest.raises(BundleError, match="weights do not fit the model.*shape mismatch"):
        load_bundle(copy)


def test_files_outside_the_bundle_are_refused(copy):
    edit_config(copy, lambda c: c["files"].update({"../secret": "0" * 64}))
    with pytest.raises(BundleError, match="outside the bundle folder"):
        load_bundle(copy)


def test_save_checks_its_arguments(tmp_path):
    model, config, tok, graph = make_model()
    args = dict(model=model, model_config=config, tokenizer=tok, codes=CODES,
                thresholds=THRESHOLDS, graph=graph, max_length=32)
    cases = [
        ({"codes": {"icd9": CODES["icd9"][:2], "icd10": CODES["icd10"]}},
         ValueError, "has 2 codes but the model has 3"),
        ({"thresholds": {"icd9": 0.5}}, ValueError, "thresholds has no 'icd10'"),
        ({"thresholds": {"icd9": 0.5, "icd10": 1.5}}, ValueError, r"in \[0, 1\]"),
        ({"graph": None}, ValueError, "needs its GEM graph"),
        ({"max_length": 0}, ValueError, "max_length"),
        ({"extra": {"x": object()}}, TypeError, "JSON-serialisable"),
        ({"tokenizer": object()}, TypeError, "WordTokenizer or a Hugging Face tokenizer"),
    ]
    for change, error, match in cases:
        with pytest.raises(error, match=match):
            save_bundle(tmp_path / "b", **{**args, **change})


def test_in_memory_bundle_is_checked_as_a_saved_one():
    model, _config, tok, graph = make_model()
    union = GEMGraph.from_cms_2018(CODES["icd9"], CODES["icd10"], direction="union")
    with pytest.raises(ValueError, match="links differ from the ones the model's MAT runs on"):
        JAMSPredictor.from_model(model, tok, CODES, THRESHOLDS, union, 32)
    with pytest.raises(ValueError, match="needs its GEM graph"):
        JAMSPredictor.from_model(model, tok, CODES, THRESHOLDS, None, 32)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        JAMSPredictor.from_model(model, tok, CODES, {"icd9": 2, "icd10": 0.5}, graph, 32)


def test_plm_icd_bundle_with_hf_tokenizer(tmp_path):
    texts = [clean_text(t) for t in TEXTS] * 3
    hf = train_hf_tokenizer(texts, vocab_size=120, min_frequency=1)
    plm = {"model_type": "bert", "hidden_size": 16, "num_hidden_layers": 1,
           "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 64,
           "vocab_size": len(hf), "pad_token_id": hf.pad_token_id}
    config = ModelConfig.for_backbone("plm_icd", plm_path_or_config=plm, chunk_size=8,
                                      projection_size=8, systems=("icd10",), use_mat=False)
    torch.manual_seed(0)
    model = build_model(config, None, {"icd10": len(CODES["icd10"])}).eval()
    path = save_bundle(tmp_path / "plm", model, config, hf, {"icd10": CODES["icd10"]},
                       {"icd10": 0.5}, None, 24)
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["tokenizer"]["kind"] == "huggingface" and "tokenizer/tokenizer.json" in cfg["files"]
    loaded = JAMSPredictor.load(path, device="cpu")
    notes = [TEXTS[0] + " " + " ".join(["stable"] * 30), TEXTS[1]]  # the first is truncated
    a = loaded.predict_proba(notes)["icd10"]
    b = JAMSPredictor.from_model(model, hf, {"icd10": CODES["icd10"]}, {"icd10": 0.5},
                                 None, 24).predict_proba(notes)["icd10"]
    np.testing.assert_array_equal(a, b)
    ids = hf(clean_text(notes[1]), truncation=True, max_length=24, return_tensors="pt")
    with torch.no_grad():
        ref = torch.sigmoid(model(ids["input_ids"], ids["attention_mask"].bool())["icd10"])
    np.testing.assert_allclose(a[1], ref[0].numpy(), atol=1e-6)
    result = loaded.predict(notes, system="icd10", top_k=2, evidence=True)
    assert result[0].truncated and not result[1].truncated
    assert result[0].num_tokens == 24
    for note, r in zip(notes, result, strict=True):
        words = clean_text(note).split()
        for c in r.codes["icd10"]:
            assert c.linked == [] and 1 <= len(c.tokens) <= 5
            for t in c.tokens:
                assert t.word == words[t.position]
            weights = [t.weight for t in c.tokens]
            assert weights == sorted(weights, reverse=True)
    with pytest.raises(ValueError, match="codes only"):
        loaded.predict(notes, system="icd9")


# ---------------------------------------------------------------- integrity (issue #13)
@pytest.mark.parametrize(
    "change",
    [lambda c: c["thresholds"].update(icd9=0.05), lambda c: c.update(max_length=4000),
     lambda c: c["model_config"].update(dropout=0.9), lambda c: c.pop("extra")],
)
def test_edited_config_is_refused(copy, change):
    edit_config(copy, change, resign=False)
    with pytest.raises(BundleError, match=r"config\.json: checksum mismatch"):
        load_bundle(copy)


def test_config_checksum_covers_the_whole_content(saved):
    cfg = json.loads((saved[0] / "config.json").read_text())
    assert cfg["format_version"] == BUNDLE_VERSION == 4
    content = {k: v for k, v in cfg.items() if k != "config_sha256"}
    reference = hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":"))
                               .encode()).hexdigest()
    assert cfg["config_sha256"] == reference


def test_all_files_get_the_ordinary_mode(tmp_path):
    model, config, tok, graph = make_model()
    old = os.umask(0o027)
    try:
        path = save_bundle(tmp_path / "m", model, config, tok, CODES, THRESHOLDS, graph, 32)
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in path.iterdir()}
    assert set(modes) == {"config.json", "weights.safetensors", "codes.json", "vocab.json",
                          "graph.safetensors", "graph_codes.json"}  # no temporary left
    assert set(modes.values()) == {0o640}, modes


def _replace_file(path, name, content):
    """Replace a bundle file and record its new checksum (a consistent but malformed
    bundle: only the parsing can refuse it)."""
    (path / name).write_bytes(content)
    edit_config(path, lambda c: c["files"].update(
        {name: hashlib.sha256(content).hexdigest()}))


@pytest.mark.parametrize(
    ("name", "content"),
    [("vocab.json", b""), ("vocab.json", b"[]"), ("vocab.json", b"null"),
     ("vocab.json", b'{"format": "jams_pyg.Vocabulary", "version": 1, "tokens": 3}'),
     ("codes.json", b"[]"), ("codes.json", b'{"icd9": 5, "icd10": []}'),
     ("codes.json", b'{"icd9": [1, 2, 3], "icd10": ["A"]}'),
     ("graph_codes.json", b"[]"), ("graph_codes.json", b"{}"),
     ("graph.safetensors", b"not safetensors"), ("weights.safetensors", b"\x00" * 16)],
)
def test_every_malformed_file_is_a_bundle_error(copy, name, content):
    _replace_file(copy, name, content)
    with pytest.raises(BundleError, match=name.replace(".", r"\.") + "|" + str(copy)):
        load_bundle(copy)


@pytest.mark.parametrize(
    "change",
    [lambda c: c.update(model_config=[]), lambda c: c.update(systems="icd9"),
     lambda c: c.update(thresholds=[]), lambda c: c.update(max_length="32"),
     lambda c: c.update(extra=[1]), lambda c: c.update(files=[]),
     lambda c: c.update(tokenizer="word"), lambda c: c.update(graph=7),
     lambda c: c["model_config"].update(model="gpt"),
     lambda c: c["model_config"].update(embedding_dim="8")],
)
def test_every_malformed_config_entry_is_a_bundle_error(copy, change):
    edit_config(copy, change)
    with pytest.raises(BundleError):
        load_bundle(copy)


def test_format_version_1_is_read_with_a_warning(saved, copy):
    """Bundles written before config_sha256 (format version 1) still load, warned."""
    def downgrade(cfg):
        cfg.pop("config_sha256")
        cfg["format_version"] = 1
        cfg["model_config"]["gem_direction"] = "directional"  # before format 4, written
    edit_config(copy, downgrade)
    with pytest.warns(UserWarning, match="format version 1 has no config_sha256"):
        bundle = load_bundle(copy)
    a = JAMSPredictor(bundle).predict_proba(TEXTS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = JAMSPredictor(load_bundle(saved[0])).predict_proba(TEXTS)
    for s in CODES:
        np.testing.assert_array_equal(a[s], b[s])
    edit_config(copy, lambda c: c.update(format_version=2))  # v2 without its checksum
    with pytest.raises(BundleError, match="checksum mismatch"):
        load_bundle(copy)
