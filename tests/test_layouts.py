"""Every model layout and GEM graph reading saves, loads and predicts alike: the faithful
default (per-code outputs, shared keys, directional graph), the tied extension, per-system
key projections and the union graph."""

import numpy as np
import pytest
import torch

from jams_pyg.data import WordTokenizer, clean_text
from jams_pyg.graph.gem_graph import GEMGraph
from jams_pyg.inference.bundle import load_bundle, save_bundle
from jams_pyg.inference.predictor import JAMSPredictor
from jams_pyg.models import ModelConfig, build_model

CODES = {"icd9": ["405.11", "576.2", "749.11"], "icd10": ["I15.0", "K83.1", "Q36.9", "Z99.89"]}
TEXTS = [
    "patient admitted with renovascular hypertension and bile duct obstruction",
    "cleft lip unilateral repaired, dependence on machine",
    "bile duct obstruction treated; renovascular hypertension stable",
]
LAYOUTS = [
    ("laat", {}),
    ("laat", {"output_layer": "code_table"}),
    ("laat", {"key_projection": "per_system", "gem_direction": "union"}),
    ("caml", {"gem_direction": "union", "output_layer": "code_table"}),
    ("multirescnn", {}),
]
TINY = {"laat": {"embedding_dim": 8, "rnn_hidden_size": 6, "projection_size": 5},
        "caml": {"embedding_dim": 8, "num_filters": 8, "kernel_size": 3},
        "multirescnn": {"embedding_dim": 8, "num_filters": 3, "kernel_sizes": (3, 5)}}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("name", "fields"), LAYOUTS)
def test_bundle_round_trip_of_every_layout(name, fields, tmp_path):
    tok = WordTokenizer.fit([clean_text(t) for t in TEXTS], min_df=1, max_length=32)
    config = ModelConfig.for_backbone(name, vocab_size=tok.vocab_size, **TINY[name], **fields)
    graph = GEMGraph.from_cms_2018(CODES["icd9"], CODES["icd10"],
                                   direction=config.gem_direction)
    torch.manual_seed(0)
    model = build_model(config, graph, {s: len(c) for s, c in CODES.items()}).eval()
    with torch.no_grad():  # move away from the initialisation
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    path = save_bundle(tmp_path / "model", model, config, tok, CODES,
                       {"icd9": 0.5, "icd10": 0.5}, graph, 32)
    bundle = load_bundle(path)
    assert bundle.model_config == config
    assert bundle.graph.direction == config.gem_direction
    assert (bundle.model.key_proj is None) == (not config.shares_keys)
    assert bundle.model.output_layer == config.output_layer
    for key, value in model.state_dict().items():
        assert torch.equal(bundle.model.state_dict()[key], value), key
    # the predictor (encode once, score per system) equals the model's own forward
    probs = JAMSPredictor.load(path).predict_proba(TEXTS, system="both")
    ids = [tok.encode(clean_text(t), max_length=32) for t in TEXTS]
    length = max(len(i) for i in ids)
    batch = torch.tensor([i + [0] * (length - len(i)) for i in ids])
    with torch.no_grad():
        for s in ("icd9", "icd10"):
            logits = model(batch, batch != 0, [s] * len(TEXTS))[s]
            np.testing.assert_allclose(probs[s], torch.sigmoid(logits).numpy(), atol=1e-5)
