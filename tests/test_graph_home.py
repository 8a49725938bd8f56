"""Issue #21, one home per choice: the GEM graph holds the MAT links and their direction
(the model derives its edge buffers from it, outside the state dict, so a bundle stores the
links once, and since bundle format 4 its config no ``gem_direction``); bundles and
checkpoints of an earlier jams_pyg that hold the links or the direction twice still load,
checked against the graph."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_bundle import CODES, TEXTS, THRESHOLDS, make_model

from jams_pyg.graph.gem_graph import GEMGraph
from jams_pyg.inference.bundle import BundleError, load_bundle, save_bundle
from jams_pyg.inference.bundle_format import config_checksum, file_sha256
from jams_pyg.inference.predictor import JAMSPredictor
from jams_pyg.models import ModelConfig, build_model
from jams_pyg.models.jams import EDGE_BUFFERS

ROOT = Path(__file__).resolve().parents[1]
#: committed bundles written with bundle format 2 (the links also in weights.safetensors);
#: the first is the golden bundle as it was before issue #19 regenerated it
COMMITTED = [ROOT / "tests" / "fixtures" / "bundle_format2",
             ROOT / "benchmarks" / "results" / "codiesp_transition" / "bundle"]

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_model_asks_the_graph_and_keeps_no_links_in_its_state_dict():
    model, _config, _tok, graph = make_model()
    assert model.graph is graph and model.directional
    assert not set(EDGE_BUFFERS) & set(model.state_dict())
    buffers = model.graph_buffers()
    assert sorted(buffers) == sorted(EDGE_BUFFERS)
    for s, suffix in (("icd9", ""), ("icd10", "_icd10")):
        assert torch.equal(buffers["edge_index" + suffix], graph.edges(s)[0])
        assert torch.equal(buffers["edge_weight" + suffix], graph.edges(s)[1])
    union_graph = GEMGraph.from_cms_2018(CODES["icd9"], CODES["icd10"], direction="union")
    config = ModelConfig.for_backbone("caml", vocab_size=30, embedding_dim=8, num_filters=8,
                                      kernel_size=3, gem_direction="union")
    union = build_model(config, union_graph, {s: len(c) for s, c in CODES.items()})
    assert not union.directional and sorted(union.graph_buffers()) == ["edge_index",
                                                                       "edge_weight"]
    assert isinstance(union.mat_edges()[0], torch.Tensor)
    assert isinstance(model.mat_edges()[0], tuple)
    # the buffers follow the model (what DDP and .to() need)
    assert model.to(torch.float64).edge_index.dtype == torch.long


def test_mat_gets_edge_index_views_and_compares_no_links_per_call(monkeypatch):
    """The links reach MATConv as EdgeIndex views, one per buffer state: its cached CSR
    structures are found by identity, with no O(E) content comparison per forward pass
    (there was one on every call), and the numbers are those of the plain tensors."""
    from torch_geometric import EdgeIndex

    model, _config, _tok, _graph = make_model()
    x = (model.code_tables["icd9"].detach(), model.code_tables["icd10"].detach())
    plain = tuple(model.graph_buffers()[n] for n in ("edge_index", "edge_index_icd10"))
    weights = (model.edge_weight, model.edge_weight_icd10)
    expected = model.mat(x, plain, weights)
    with torch.inference_mode():  # predict's mode: the view must serve training later
        first = model.mat_edges()[0]
    assert all(isinstance(e, EdgeIndex) and not e.is_inference() for e in first)
    assert model.mat_edges()[0][0] is first[0]  # one view while the buffer is unchanged
    model.mat(x, first, weights)
    compared = []
    real_equal = torch.equal
    monkeypatch.setattr(torch, "equal", lambda a, b: compared.append(1) or real_equal(a, b))
    out = model.mat(x, model.mat_edges()[0], weights)
    assert compared == []
    for a, b in zip(out, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # an in-place change of a buffer gives a new view, and MATConv sees the new links
    with torch.no_grad():
        model.edge_index_icd10[0, 0] = (model.edge_index_icd10[0, 0] + 1) % model.num_codes[
            "icd10"]
    changed = model.mat_edges()[0]
    assert changed[1] is not first[1] and changed[0] is first[0]
    moved = model.mat(x, changed, weights)
    assert not torch.equal(moved[1], out[1])


def test_a_saved_bundle_stores_the_links_once(tmp_path):
    model, config, tok, graph = make_model()
    path = save_bundle(tmp_path / "b", model, config, tok, CODES, THRESHOLDS, graph, 32)
    assert json.loads((path / "config.json").read_text())["format_version"] == 4
    assert not set(EDGE_BUFFERS) & set(load_file(str(path / "weights.safetensors")))
    loaded = load_bundle(path)
    for name, buf in model.graph_buffers().items():
        assert torch.equal(loaded.model.graph_buffers()[name], buf)
    a = JAMSPredictor(loaded).predict_proba(TEXTS)
    b = JAMSPredictor.from_model(model, tok, CODES, THRESHOLDS, graph, 32).predict_proba(TEXTS)
    for s in CODES:
        torch.testing.assert_close(torch.as_tensor(a[s]), torch.as_tensor(b[s]))


@pytest.mark.parametrize("bundle", COMMITTED, ids=lambda p: p.parent.name + "/" + p.name)
def test_committed_format_2_bundles_load_their_links_checked_and_dropped(bundle):
    saved = load_file(str(bundle / "weights.safetensors"))
    assert set(EDGE_BUFFERS) <= set(saved)  # written before format 3
    loaded = load_bundle(bundle)
    assert json.loads((bundle / "config.json").read_text())["format_version"] == 2
    assert not set(EDGE_BUFFERS) & set(loaded.model.state_dict())
    for name, buf in loaded.model.graph_buffers().items():
        assert torch.equal(saved[name].to(buf), buf)


def _resign(bundle: Path) -> None:
    """Record every file's new sha256 (a deliberate edit, to reach the check behind)."""
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["files"] = {name: file_sha256(bundle / name) for name in cfg["files"]}
    cfg["config_sha256"] = config_checksum(cfg)
    (bundle / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("name", ["edge_weight", "edge_index_icd10"])
def test_a_format_2_bundle_with_other_links_is_refused_naming_the_file(tmp_path, name):
    bundle = shutil.copytree(COMMITTED[0], tmp_path / "b")
    weights = load_file(str(bundle / "weights.safetensors"))
    tensor = weights[name].clone()
    if tensor.is_floating_point():
        tensor[0] = 0.25
    else:
        tensor = tensor[:, 1:].contiguous()
    weights[name] = tensor
    save_file(weights, str(bundle / "weights.safetensors"))
    _resign(bundle)
    with pytest.raises(BundleError, match=rf"weights\.safetensors: its GEM edge tensors "
                       rf"differ .*\({name}\).*graph\.safetensors"):
        load_bundle(bundle)
    # a partial set of links is refused as well
    del weights[name]
    save_file(weights, str(bundle / "weights.safetensors"))
    _resign(bundle)
    with pytest.raises(BundleError, match=rf"weights\.safetensors: .*\({name}\)"):
        load_bundle(bundle)


def test_load_state_dict_of_an_earlier_jams_pyg():
    model, _config, _tok, _graph = make_model()
    old = {**model.state_dict(), **model.graph_buffers()}
    fresh = make_model()[0]
    torch.manual_seed(0)
    expected_draw = torch.rand(3)
    torch.manual_seed(0)
    fresh.load_state_dict(old)  # strict: the links are checked, then dropped
    # loading draws no random numbers (no re-initialisation) and keeps every saved value
    assert torch.equal(torch.rand(3), expected_draw)
    for name, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, old[name]), name
    bad = dict(old, edge_weight=torch.zeros_like(old["edge_weight"]))
    with pytest.raises(ValueError, match=r"GEM edge tensors differ .*\(edge_weight\)"):
        fresh.load_state_dict(bad)


def _with_links(path: Path) -> None:
    """Rewrite a checkpoint as an earlier jams_pyg wrote it: the links in its weights."""
    from jams_pyg.train.checkpoint import atomic_save, load_checkpoint

    state = load_checkpoint(path)
    graph = GEMGraph.from_cms_2018(*_training_codes())
    state["model"]["edge_index"] = graph.icd9_edge_index
    state["model"]["edge_weight"] = graph.icd9_edge_weight.float()
    state["model"]["edge_index_icd10"] = graph.icd10_edge_index
    state["model"]["edge_weight_icd10"] = graph.icd10_edge_weight.float()
    atomic_save(state, path)


def _training_codes():
    from test_training import CODES as TRAIN_CODES

    return TRAIN_CODES["icd9"], TRAIN_CODES["icd10"]


def test_resume_from_a_checkpoint_that_holds_the_links(tmp_path):
    from test_training import config, make_trainer

    from jams_pyg.train.errors import CheckpointError

    stopped = make_trainer(tmp_path, config(epochs=3))
    assert stopped.model.use_mat
    stopped.fit(stop_after=1)
    for name in ("last.pt", "best.pt"):
        _with_links(tmp_path / name)
    # the fingerprint still counts the links' shapes: it matches the stored one
    resumed = make_trainer(tmp_path, config(epochs=3))
    assert resumed.resume() and resumed.epoch == 1
    resumed.load_best()
    for key, value in stopped.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    # links that are not the graph's: refused, naming the file
    from jams_pyg.train.checkpoint import atomic_save, load_checkpoint

    state = load_checkpoint(tmp_path / "last.pt")
    state["model"]["edge_weight"] = torch.zeros_like(state["model"]["edge_weight"])
    atomic_save(state, tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match=r"last\.pt cannot be resumed.*GEM edge tensors"):
        make_trainer(tmp_path, config(epochs=3)).resume()


def test_jams_takes_its_settings_once():
    """The module's arguments are the one home of its settings; build_model derives them
    from a ModelConfig and records that config (what a bundle stores), nothing more."""
    from jams_pyg.models.jams import JAMS

    model, config, _tok, _graph = make_model()
    assert model.config is config
    assert (model.output_layer, model.edge_weighting) == (config.output_layer,
                                                          config.edge_weighting)
    parts = (model.encoder, dict(model.heads), model.num_codes, model.code_dim)
    assert JAMS(*parts).config is None  # assembled by hand: no config to record
    with pytest.raises(TypeError, match="config"):
        JAMS(*parts, config=config)


#: committed bundles written with bundle format 3 (gem_direction also in config.json); a
#: deliberate regeneration of either writes format 4: keep its format-3 files under
#: tests/fixtures then, as bundle_format2 keeps the golden bundle's format-2 files
FORMAT_3 = [ROOT / "tests" / "golden" / "bundle", ROOT / "examples" / "demo_bundle"]


@pytest.mark.parametrize("direction", ["directional", "union"])
def test_a_saved_bundle_stores_the_gem_reading_once_in_its_graph(direction, tmp_path):
    model, config, tok, graph = make_model(gem_direction=direction)
    assert graph.direction == config.gem_direction == direction
    path = save_bundle(tmp_path / "b", model, config, tok, CODES, THRESHOLDS, graph, 32)
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["format_version"] == 4 and "gem_direction" not in cfg["model_config"]
    graph_keys = set(load_file(str(path / "graph.safetensors")))
    assert ("icd10_edge_index" in graph_keys) == (direction == "directional")
    loaded = load_bundle(path)
    assert loaded.model_config == config and loaded.graph.direction == direction
    assert loaded.model.directional == (direction == "directional")


def test_a_bundle_without_graph_keeps_its_reading_in_the_config(tmp_path):
    model, config, tok, _graph = make_model(systems=("icd10",), use_mat=False)
    codes = {"icd10": CODES["icd10"]}
    path = save_bundle(tmp_path / "b", model, config, tok, codes, {"icd10": 0.5}, None, 32)
    assert json.loads((path / "config.json").read_text())["model_config"]["gem_direction"] == (
        "directional")
    assert load_bundle(path).model_config == config


def test_saving_refuses_a_config_whose_reading_is_not_the_graphs(tmp_path):
    model, config, tok, graph = make_model()
    union = ModelConfig.from_dict({**config.to_dict(), "gem_direction": "union"})
    with pytest.raises(ValueError, match="model_config.gem_direction is 'union' but the GEM "
                       "graph is directional"):
        save_bundle(tmp_path / "b", model, union, tok, CODES, THRESHOLDS, graph, 32)
    assert not (tmp_path / "b").exists()


def test_a_format_4_config_that_also_names_the_reading_is_refused(tmp_path):
    model, config, tok, graph = make_model()
    path = save_bundle(tmp_path / "b", model, config, tok, CODES, THRESHOLDS, graph, 32)
    cfg = json.loads((path / "config.json").read_text())
    cfg["model_config"]["gem_direction"] = "directional"  # even the right one: two homes
    (path / "config.json").write_text(json.dumps(cfg))
    _resign(path)
    with pytest.raises(BundleError, match=r"config\.json: model_config holds gem_direction, "
                       r"which a format-4 bundle keeps in graph\.safetensors only"):
        load_bundle(path)


@pytest.mark.parametrize("bundle", FORMAT_3, ids=lambda p: p.parent.name + "/" + p.name)
def test_committed_format_3_bundles_load_with_their_reading_checked(bundle, tmp_path):
    cfg = json.loads((bundle / "config.json").read_text())
    assert cfg["format_version"] == 3
    assert cfg["model_config"]["gem_direction"] == "directional"
    loaded = load_bundle(bundle)
    assert loaded.model_config.gem_direction == loaded.graph.direction == "directional"
    # the copy in config.json is checked against the graph: a contradiction is refused
    copy = shutil.copytree(bundle, tmp_path / "b")
    cfg["model_config"]["gem_direction"] = "union"
    (copy / "config.json").write_text(json.dumps(cfg))
    _resign(copy)
    with pytest.raises(BundleError, match=r"config\.json: cannot build the model .*union GEM "
                       r"graph but the graph is directional"):
        load_bundle(copy)
