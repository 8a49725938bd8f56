"""The JAMS joint model: routing, padding, loss (eq. 3), MAT on/off, one/two systems, fitting."""

import pytest
import torch
import torch.nn.functional as F

from jams_pyg.models import JAMS, JointCodingModel, ModelConfig, build_model, jams_loss

VOCAB = 30
NUM_CODES = {"icd9": 4, "icd10": 5}


TINY = {
    "caml": {"embedding_dim": 8, "num_filters": 6, "kernel_size": 4},
    "multirescnn": {"embedding_dim": 8, "num_filters": 3, "kernel_sizes": (3, 5)},
    "laat": {"embedding_dim": 8, "rnn_hidden_size": 6, "projection_size": 5},
}


def _plm_config():
    from transformers import RobertaConfig

    return RobertaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=140,
        pad_token_id=1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def _config(name, **overrides):
    if name == "plm_icd":
        kwargs = {"plm_path_or_config": _plm_config(), "chunk_size": 8, "projection_size": 6}
    else:
        kwargs = {"vocab_size": VOCAB, "embed_dropout": 0.0, **TINY[name]}
    kwargs.update({"use_mat": False, **overrides})
    return ModelConfig.for_backbone(name, **kwargs)


def _tiny_graph(direction="directional"):
    """A small GEM graph whose two directions differ (as the forward and backward GEM files
    do): ICD-10 node 2 updates no ICD-9 code but is updated by ICD-9 node 3."""
    from jams_pyg import GEMGraph

    codes9 = [f"00{i}.0" for i in range(NUM_CODES["icd9"])]
    codes10 = [f"A0{i}.0" for i in range(NUM_CODES["icd10"])]
    index9 = torch.tensor([[0, 0, 1, 2, 3], [0, 1, 1, 3, 4]])
    weight9 = torch.tensor([1.0, 0.5, 1.0, 0.5, 1.0])
    if direction == "union":
        return GEMGraph(codes9, codes10, index9, weight9)
    index10 = torch.tensor([[0, 1, 3, 3], [0, 1, 2, 4]])
    weight10 = torch.tensor([1.0, 1.0, 0.5, 0.5])
    return GEMGraph(codes9, codes10, index9, weight9, index10, weight10)


def _batch(seed=0, batch=5, length=12):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, VOCAB, (batch, length), generator=g)
    lengths = torch.tensor([length, 9, 5, 11, 7, 12, 3, 8][:batch])
    mask = torch.arange(length)[None, :] < lengths[:, None]
    ids[~mask] = 0
    system = torch.tensor([0, 1, 1, 0, 1, 0, 1, 0][:batch])
    return ids, mask, system


BACKBONE_NAMES = ["caml", "multirescnn", "laat", "plm_icd"]


@pytest.mark.parametrize("name", BACKBONE_NAMES)
def test_shapes_routing_and_backward(name):
    torch.manual_seed(0)
    model = build_model(_config(name), None, NUM_CODES)
    assert isinstance(model, JAMS) and JointCodingModel is JAMS
    ids, mask, system = _batch()
    out = model(ids, mask, system)
    assert set(out) == {"icd9", "icd10"}
    assert out["icd9"].shape == (2, 4) and out["icd10"].shape == (3, 5)
    labels = {s: torch.randint(0, 2, out[s].shape).float() for s in out}
    jams_loss(out, labels).backward()
    for s in ("icd9", "icd10"):
        assert model.code_tables[s].grad.abs().sum() > 0
        assert model.biases[s].grad.abs().sum() > 0
    enc_grads = [p.grad for p in model.encoder.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in enc_grads)
    # each document goes through its own system's head only: same logits as a sub-batch
    model.eval()
    with torch.no_grad():
        full = model(ids, mask, system)
        for s, sid in (("icd9", 0), ("icd10", 1)):
            rows = system == sid
            sub = model(ids[rows], mask[rows], system[rows])
            assert sub[s].shape == full[s].shape
            assert sub["icd10" if s == "icd9" else "icd9"].shape[0] == 0
            torch.testing.assert_close(sub[s], full[s], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", BACKBONE_NAMES)
def test_padding_invariance_every_backbone(name):
    torch.manual_seed(1)
    model = build_model(_config(name), None, NUM_CODES).eval()
    ids, mask, system = _batch(length=12)
    extra = 9  # PLM: crosses a chunk border and adds an all-pad chunk
    ids_pad = torch.cat([ids, torch.zeros(ids.size(0), extra, dtype=torch.long)], 1)
    mask_pad = torch.cat([mask, torch.zeros(ids.size(0), extra, dtype=torch.bool)], 1)
    with torch.no_grad():
        ref = model(ids, mask, system)
        out = model(ids_pad, mask_pad, system)
        # a single document alone, without any padding
        alone = model(ids[2:3, :5], mask[2:3, :5], system[2:3])
    for s in ref:
        torch.testing.assert_close(out[s], ref[s], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone["icd10"][0], ref["icd10"][1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["laat", "caml", "multirescnn"])
@pytest.mark.parametrize("use_mat", [False, True])
def test_documents_without_tokens_score_the_biases(name, use_mat):
    """Edin et al. keep notes empty after cleaning: such a document has no text evidence,
    so its logits are the output biases, alone or beside a document with text, and the
    backward pass stays finite."""
    from jams_pyg.data.text import pad_sequences

    torch.manual_seed(2)
    graph = _tiny_graph() if use_mat else None
    model = build_model(_config(name, use_mat=use_mat), graph, NUM_CODES)
    for docs in ([[5, 6, 7, 8, 9], []], [[], []]):
        ids, mask = pad_sequences(docs)
        out = model(ids, mask, torch.tensor([1, 1]))
        torch.testing.assert_close(out["icd10"][1], model.biases["icd10"].detach(),
                                   rtol=0, atol=1e-6)
        out["icd10"].sum().backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters()
                   if p.grad is not None)
        model.zero_grad()


def _bce_by_hand(logits, target):
    p = torch.sigmoid(logits.double())
    return -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean()


def test_loss_is_equation_3_by_hand():
    g = torch.Generator().manual_seed(0)
    logits = {"icd9": torch.randn(3, 4, generator=g), "icd10": torch.randn(1, 6, generator=g)}
    labels = {
        "icd9": torch.randint(0, 2, (3, 4), generator=g).float(),
        "icd10": torch.randint(0, 2, (1, 6), generator=g).float(),
    }
    l9, l10 = (
        _bce_by_hand(logits["icd9"], labels["icd9"]),
        _bce_by_hand(logits["icd10"], labels["icd10"]),
    )
    mu, eta = 3, 1
    expected = (l9 * mu + l10 * eta) / (mu + eta)
    loss, parts = jams_loss(logits, labels, return_parts=True)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss.double(), expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(parts["icd9"].double(), l9, atol=1e-6, rtol=1e-6)
    # the normalisation is the mean over documents of each document's mean over its codes
    per_doc = [_bce_by_hand(logits["icd9"][i], labels["icd9"][i]) for i in range(3)]
    per_doc.append(_bce_by_hand(logits["icd10"][0], labels["icd10"][0]))
    torch.testing.assert_close(loss.double(), torch.stack(per_doc).mean(), atol=1e-6, rtol=1e-6)
    # not the plain average of the two system losses
    assert abs(float(loss) - float((l9 + l10) / 2)) > 1e-4


def test_loss_with_one_system_reduces_to_that_system():
    g = torch.Generator().manual_seed(1)
    logits = {"icd9": torch.randn(0, 4), "icd10": torch.randn(2, 6, generator=g)}
    labels = {"icd9": torch.zeros(0, 4), "icd10": torch.randint(0, 2, (2, 6), generator=g)}
    loss = jams_loss(logits, {k: v.float() for k, v in labels.items()})
    expected = F.binary_cross_entropy_with_logits(logits["icd10"], labels["icd10"].float())
    torch.testing.assert_close(loss, expected)
    # an absent system may also be omitted entirely
    torch.testing.assert_close(
        jams_loss({"icd10": logits["icd10"]}, {"icd10": labels["icd10"].float()}), expected
    )


def test_loss_errors_are_clear():
    logits = {"icd9": torch.randn(2, 4)}
    with pytest.raises(ValueError, match="icd9: logits shape"):
        jams_loss(logits, {"icd9": torch.zeros(2, 5)})
    with pytest.raises(ValueError, match="no 'icd10' entry"):
        jams_loss(logits, {"icd9": torch.zeros(2, 4), "icd10": torch.zeros(1, 3)})
    with pytest.raises(ValueError, match="no documents"):
        jams_loss({"icd9": torch.zeros(0, 4)}, {"icd9": torch.zeros(0, 4)})


def test_single_system_model_is_the_plain_backbone():
    torch.manual_seed(2)
    model = build_model(_config("laat", systems=("icd10",)), None, {"icd10": 5})
    ids, mask, _ = _batch(batch=3)
    out = model(ids, mask)  # system optional with one system
    assert set(out) == {"icd10"} and out["icd10"].shape == (3, 5)
    out2 = model(ids, mask, torch.ones(3, dtype=torch.long))
    torch.testing.assert_close(out["icd10"], out2["icd10"])
    with pytest.raises(ValueError, match="has system id 0"):
        model(ids, mask, torch.tensor([1, 0, 1]))
    assert not model.use_mat and model.mat is None
    with pytest.raises(ValueError, match="needs both systems"):
        ModelConfig.for_backbone("laat", vocab_size=VOCAB, systems=("icd9",), use_mat=True)


def test_system_names_and_errors():
    torch.manual_seed(3)
    model = build_model(_config("caml"), None, NUM_CODES)
    ids, mask, system = _batch(batch=3)
    names = ["icd9" if int(s) == 0 else "icd10" for s in system]
    model.eval()
    with torch.no_grad():
        a, b = model(ids, mask, system), model(ids, mask, names)
    for s in a:
        torch.testing.assert_close(a[s], b[s])
    with pytest.raises(ValueError, match="system is required"):
        model(ids, mask)
    with pytest.raises(ValueError, match="system has 2 entries"):
        model(ids, mask, system[:2])
    with pytest.raises(ValueError, match="unknown coding system 'icd11'"):
        model(ids, mask, ["icd11"] * 3)
    with pytest.raises(ValueError, match="token id out of range"):
        model(ids + VOCAB, mask, system)


def test_tied_output_layer_and_explicit_attention_agree_in_shape_and_fit():
    torch.manual_seed(4)
    ids, mask, system = _batch()
    for cfg in (
        _config("laat", output_layer="code_table"),
        _config("caml", attention="explicit"),
    ):
        model = build_model(cfg, None, NUM_CODES)
        out = model(ids, mask, system)
        assert out["icd9"].shape == (2, 4) and out["icd10"].shape == (3, 5)
    sep = build_model(_config("laat"), None, NUM_CODES)
    assert sep.outputs["icd9"].shape == (4, 12) and sep.heads["icd9"].output_proj is None
    tied = build_model(_config("laat", output_layer="code_table"), None, NUM_CODES)
    assert len(tied.outputs) == 0 and tied.heads["icd9"].output_proj is not None


@pytest.mark.parametrize("output_layer", ["separate", "code_table"])
def test_the_output_layer_is_the_heads(output_layer):
    # the heads are the one home of the choice: the model asks them, and heads built for
    # different output layers are refused, naming each head's
    built = {layer: build_model(_config("laat", output_layer=layer), None, NUM_CODES)
             for layer in ("separate", "code_table")}
    model, other = built[output_layer], built[
        "code_table" if output_layer == "separate" else "separate"]
    assert model.output_layer == output_layer
    assert (len(model.outputs) == 0) == (output_layer == "code_table")
    again = JAMS(model.encoder, model.heads, NUM_CODES, model.code_dim,
                 key_proj=model.key_proj)
    assert again.output_layer == output_layer
    assert set(again.state_dict()) == set(model.state_dict())
    mixed = {"icd9": model.heads["icd9"], "icd10": other.heads["icd10"]}
    proj = output_layer == "code_table"
    with pytest.raises(ValueError, match=rf"the heads differ in their output layer \(output_proj "
                       rf"per system: {{'icd9': {proj}, 'icd10': {not proj}}}\)"):
        JAMS(model.encoder, mixed, NUM_CODES, model.code_dim, key_proj=model.key_proj)


def _laat_reference(model, ids, mask, system, s):
    """Official LAAT/JAMS head (GY-Jeong/JAMS attention.py) re-computed densely in float64:
    Z = tanh(W H), A = softmax_tokens(Z U'^T), logits = sum_h(O * (A H)) + b."""
    sid = {"icd9": 0, "icd10": 1}[s]
    rows = system == sid
    with torch.no_grad():
        h, m = model.encoder(ids[rows], mask[rows])
        h, m = h.double(), m.bool()
        queries = model.code_embeddings()[s].double()
        z = torch.tanh(h @ model.key_proj.weight.double().t())  # one W for both systems
        scores = torch.einsum("bld,cd->bcl", z, queries).masked_fill(~m[:, None], -torch.inf)
        doc = torch.softmax(scores, dim=-1) @ h
        return (doc * model.outputs[s].double()).sum(-1) + model.biases[s].double()


def test_official_layout_per_code_outputs_and_one_shared_key_projection():
    torch.manual_seed(13)
    model = build_model(_config("laat", use_mat=True), _tiny_graph(), NUM_CODES).eval()
    # one key projection: a single parameter, none in the heads
    assert model.key_proj is not None
    assert all(head.proj is None for head in model.heads.values())
    names = [n for n, _ in model.named_parameters() if "proj" in n]
    assert names == ["key_proj.weight"], names
    # a per-code output matrix and bias per system, untouched by MAT
    assert model.outputs["icd9"].shape == (4, 12) and model.outputs["icd10"].shape == (5, 12)
    ids, mask, system = _batch(batch=8)
    with torch.no_grad():
        out = model(ids, mask, system)
    for s in ("icd9", "icd10"):
        torch.testing.assert_close(out[s].double(), _laat_reference(model, ids, mask, system, s),
                                   atol=1e-5, rtol=1e-5)
    # both systems' losses reach the one W
    model.train()
    for sid, s in ((0, "icd9"), (1, "icd10")):
        model.zero_grad()
        rows = system == sid
        logits = model(ids[rows], mask[rows], system[rows])
        jams_loss(logits, {s: torch.ones_like(logits[s])}).backward()
        assert model.key_proj.weight.grad.abs().sum() > 0
        assert model.outputs[s].grad.abs().sum() > 0


def test_per_system_key_projection_and_legacy_configs():
    model = build_model(_config("laat", key_projection="per_system"), None, NUM_CODES)
    assert model.key_proj is None and all(h.proj is not None for h in model.heads.values())
    # CAML / MultiResCNN attend over the encoder output itself: no key projection at all
    assert build_model(_config("caml"), None, NUM_CODES).key_proj is None
    # a config written before the fields existed describes the old layout
    old = _config("laat").to_dict()
    del old["key_projection"], old["gem_direction"]
    cfg = ModelConfig.from_dict(old)
    assert cfg.key_projection == "per_system" and cfg.gem_direction == "union"
    assert ModelConfig.from_dict(_config("laat").to_dict()).key_projection == "shared"
    with pytest.raises(ValueError, match="key_projection must be"):
        _config("laat", key_projection="both")
    with pytest.raises(ValueError, match="gem_direction must be"):
        _config("laat", gem_direction="forward")


def test_official_initialisation():
    torch.manual_seed(14)
    big = {"icd9": 400, "icd10": 500}
    laat = build_model(_config("laat", projection_size=64), None, big)
    for s in big:  # N(0, 0.03): the official code's _init_weights
        for t in (laat.code_tables[s], laat.outputs[s]):
            assert abs(float(t.std()) - 0.03) < 0.003 and abs(float(t.mean())) < 0.003
        bound = 1 / 12**0.5  # nn.Linear's bias: U(-1/sqrt(h), 1/sqrt(h)), h = 12
        assert float(laat.biases[s].abs().max()) <= bound and float(laat.biases[s].std()) > 0
    assert abs(float(laat.key_proj.weight.std()) - 0.03) < 0.006
    # CAML without MAT: Xavier code table (Edin et al.); with MAT N(0, 0.03) (official)
    caml = build_model(_config("caml"), None, big)
    xavier_std = (2 / (400 + 6)) ** 0.5
    assert abs(float(caml.code_tables["icd9"].std()) - xavier_std) < 0.1 * xavier_std


def test_graph_direction_must_match_the_config():
    with pytest.raises(ValueError, match="directional GEM graph but the graph is union"):
        build_model(_config("laat", use_mat=True), _tiny_graph("union"), NUM_CODES)
    union = build_model(_config("laat", use_mat=True, gem_direction="union"),
                        _tiny_graph("union"), NUM_CODES)
    assert not union.directional and not hasattr(union, "edge_index_icd10")
    directional = build_model(_config("laat", use_mat=True), _tiny_graph(), NUM_CODES)
    # the two readings give different U', V' on the same tables
    directional.load_state_dict(union.state_dict(), strict=False)
    a, b = union.code_embeddings(), directional.code_embeddings()
    assert not torch.allclose(a["icd10"], b["icd10"])


def test_sdpa_and_explicit_models_give_the_same_logits():
    torch.manual_seed(5)
    sdpa = build_model(_config("laat", attention="sdpa"), None, NUM_CODES).eval()
    explicit = build_model(_config("laat", attention="explicit"), None, NUM_CODES).eval()
    explicit.load_state_dict(sdpa.state_dict())
    ids, mask, system = _batch()
    with torch.no_grad():
        a, b = sdpa(ids, mask, system), explicit(ids, mask, system)
    for s in a:
        torch.testing.assert_close(a[s], b[s], atol=1e-5, rtol=1e-5)


def test_forward_with_attention_for_evidence():
    torch.manual_seed(6)
    model = build_model(_config("laat"), None, NUM_CODES).eval()
    ids, mask, system = _batch()
    codes = {"icd9": torch.tensor([3, 0]), "icd10": torch.tensor([[4], [1], [2]])}
    with torch.no_grad():
        logits, att = model.forward_with_attention(ids, mask, system, codes)
        plain = model(ids, mask, system)
    for s in plain:
        torch.testing.assert_close(logits[s], plain[s])
    assert att["icd9"].shape == (2, 2, 12) and att["icd10"].shape == (3, 1, 12)
    docs = {"icd9": system == 0, "icd10": system == 1}
    for s in att:
        torch.testing.assert_close(att[s].sum(-1), torch.ones(att[s].shape[:2]))
        pad = ~mask[docs[s]][:, None, :].expand_as(att[s])
        assert torch.count_nonzero(att[s][pad]) == 0
    with pytest.raises(ValueError, match="rows for 3 icd10 documents"):
        model.forward_with_attention(ids, mask, system, {"icd10": torch.zeros(2, 1).long()})
    # the same from documents encoded once, scored per system (as the predictor does)
    with torch.no_grad():
        tables = model.code_embeddings()
        h, m = model.encode(ids, mask)
        for s, sid in (("icd9", 0), ("icd10", 1)):
            rows = system == sid
            torch.testing.assert_close(model.score(h[rows], m[rows], s, tables), plain[s])
            weights = model.attention_weights(h[rows], m[rows], s, codes[s], tables)
            torch.testing.assert_close(weights, att[s], rtol=0, atol=0)


def test_config_defaults_follow_edin_and_roundtrip():
    laat = ModelConfig.for_backbone("laat", vocab_size=100)
    assert (laat.embedding_dim, laat.rnn_hidden_size, laat.projection_size) == (100, 512, 512)
    assert (laat.embed_dropout, laat.rnn_dropout, laat.rnn_num_layers) == (0.3, 0.3, 1)
    caml = ModelConfig.for_backbone("caml", vocab_size=100)
    assert (caml.embedding_dim, caml.num_filters, caml.kernel_size) == (100, 50, 10)
    assert caml.embed_dropout == 0.2
    mrc = ModelConfig.for_backbone("multirescnn", vocab_size=100)
    assert mrc.kernel_sizes == (3, 5, 9, 15, 19, 25) and mrc.num_filters == 50
    assert ModelConfig.for_backbone("plm_icd").chunk_size == 128
    assert ModelConfig(model="MultiResCNN", vocab_size=3).model == "multirescnn"
    with pytest.raises(ValueError, match="unknown ModelConfig field"):
        ModelConfig.for_backbone("laat", hidden=3)
    with pytest.raises(ValueError, match="model must be one of"):
        ModelConfig.for_backbone("bert")
    assert ModelConfig.from_dict(laat.to_dict()) == laat
    plm = _config("plm_icd")
    again = ModelConfig.from_dict(plm.to_dict())
    model = build_model(again, None, NUM_CODES)
    assert model.encoder.out_channels == 32 and model.code_dim == 6


def test_full_size_edin_dimensions():
    """Default widths: LAAT H 1024 / d 512, CAML 50, MultiResCNN 300 (tiny vocabulary)."""
    for name, h, d in (("laat", 1024, 512), ("caml", 50, 50), ("multirescnn", 300, 300)):
        model = build_model(
            ModelConfig.for_backbone(name, vocab_size=5, use_mat=False),
            None,
            {"icd9": 2, "icd10": 3},
        )
        assert model.encoder.out_channels == h and model.code_dim == d
        assert model.code_tables["icd10"].shape == (3, d)


def test_build_errors():
    with pytest.raises(ValueError, match="needs vocab_size"):
        build_model(ModelConfig.for_backbone("caml", use_mat=False), None, NUM_CODES)
    with pytest.raises(ValueError, match="needs plm_path_or_config"):
        build_model(ModelConfig.for_backbone("plm_icd", use_mat=False), None, NUM_CODES)
    with pytest.raises(ValueError, match="needs the GEM graph"):
        build_model(ModelConfig.for_backbone("caml", vocab_size=9), None, NUM_CODES)
    with pytest.raises(ValueError, match="lacks system"):
        build_model(_config("caml"), None, {"icd9": 3})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_model(_config("plm_icd", plm_path_or_config="/nonexistent/plm"), None, NUM_CODES)


def test_pretrained_word_vectors():
    vectors = torch.randn(VOCAB, 8)
    model = build_model(_config("caml"), None, NUM_CODES, embeddings=vectors)
    w = model.encoder.embed.weight
    torch.testing.assert_close(w[1:], vectors[1:])
    assert torch.count_nonzero(w[0]) == 0
    with pytest.raises(ValueError, match="rows but vocab_size"):
        build_model(_config("caml"), None, NUM_CODES, embeddings=torch.randn(VOCAB + 1, 8))


def _separable_problem(seed=0, n=16, length=10):
    """Code c of a system is present iff token 2 + c (icd9) / 12 + c (icd10) occurs."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(22, VOCAB, (n, length), generator=g)
    system = torch.arange(n) % 2
    labels = {"icd9": [], "icd10": []}
    for i in range(n):
        s = "icd9" if system[i] == 0 else "icd10"
        y = torch.randint(0, 2, (NUM_CODES[s],), generator=g).float()
        offset = 2 if s == "icd9" else 12
        pos = torch.randperm(length, generator=g)[: NUM_CODES[s]]
        for c in range(NUM_CODES[s]):
            if y[c]:
                ids[i, pos[c]] = offset + c
        labels[s].append(y)
    mask = torch.ones(n, length, dtype=torch.bool)
    mask[::3, -3:] = False
    ids[~mask] = 0
    return ids, mask, system, {s: torch.stack(v) for s, v in labels.items()}


def _fit_separable(model, name: str, steps: int = 25) -> list[float]:
    """Adam on the tiny separable problem; the loss after every step."""
    ids, mask, system, labels = _separable_problem()
    opt = torch.optim.Adam(model.parameters(), lr=3e-2 if name != "plm_icd" else 1e-2)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = jams_loss(model(ids, mask, system), labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", BACKBONE_NAMES)
def test_a_few_steps_drive_the_loss_down(name):
    torch.manual_seed(0)
    model = build_model(_config(name), None, NUM_CODES)
    losses = _fit_separable(model, name)
    assert losses[-1] < 0.5 * losses[0], losses


# ---- MAT on ---------------------------------------------------------------------------


def test_mat_on_and_off_through_the_same_class():
    from jams_pyg.nn import MATConv

    torch.manual_seed(7)
    graph = _tiny_graph()
    ids, mask, system = _batch()
    on = build_model(_config("laat", use_mat=True), graph, NUM_CODES)
    off = build_model(_config("laat", use_mat=False), None, NUM_CODES)
    assert type(on) is type(off) is JAMS
    assert isinstance(on.mat, MATConv) and off.mat is None
    torch.testing.assert_close(on.edge_weight, graph.icd9_edge_weight)
    assert torch.equal(on.edge_index, graph.icd9_edge_index)
    torch.testing.assert_close(on.edge_weight_icd10, graph.icd10_edge_weight)
    assert torch.equal(on.edge_index_icd10, graph.icd10_edge_index)
    # U', V' are exactly MATConv applied to (U, V) over the directed GEM edges
    tables = on.code_embeddings()
    u, v = on.mat((on.code_tables["icd9"], on.code_tables["icd10"]), *graph.mat_edges())
    torch.testing.assert_close(tables["icd9"], u)
    torch.testing.assert_close(tables["icd10"], v)
    # without MAT the tables are used as they are
    assert off.code_embeddings()["icd9"] is off.code_tables["icd9"]
    # MAT-on logits equal the heads applied to U', V'
    on.eval()
    with torch.no_grad():
        out = on(ids, mask, system)
        h, m = on.encoder(ids, mask)
        tables = on.code_embeddings()
        rows = system == 1
        keys = torch.tanh(on.key_proj(h[rows]))
        ref = on.heads["icd10"](h[rows], m[rows], tables["icd10"], on.biases["icd10"],
                                on.outputs["icd10"], keys=keys)
    torch.testing.assert_close(out["icd10"], ref)
    labels = {s: torch.ones_like(out[s]) for s in out}
    on.train()
    jams_loss(on(ids, mask, system), labels).backward()
    assert on.code_tables["icd9"].grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in on.mat.parameters())


def test_mat_runs_once_per_forward_and_links_the_systems():
    torch.manual_seed(8)
    model = build_model(_config("caml", use_mat=True), _tiny_graph(), NUM_CODES)
    calls = []
    model.mat.register_forward_hook(lambda *args: calls.append(1))
    ids, mask, system = _batch(batch=8)
    out = model(ids, mask, system)
    assert len(calls) == 1
    # a batch of ICD-9 documents only still trains the linked ICD-10 embeddings through MAT
    rows = system == 0
    out = model(ids[rows], mask[rows], system[rows])
    jams_loss(out, {"icd9": torch.ones_like(out["icd9"])}).backward()
    grad10 = model.code_tables["icd10"].grad
    assert grad10 is not None and grad10[:4].abs().sum() > 0  # ICD-10 nodes 0, 1, 3, 4 linked
    assert grad10[2].abs().sum() == 0  # ICD-10 node 2 has no GEM edge


def test_edge_weighting_ablation_and_attention_weights():
    torch.manual_seed(9)
    graph = _tiny_graph()
    model = build_model(_config("laat", use_mat=True, edge_weighting=False), graph, NUM_CODES)
    assert torch.equal(model.edge_weight, torch.ones(5))
    assert torch.equal(model.edge_weight_icd10, torch.ones(4))
    out = model.code_embeddings(return_attention_weights=True)
    assert out["icd9"].shape == (4, 5) and out["icd10"].shape == (5, 5)
    assert len(out["mat_attention"]) == 5
    for s, (index, alpha, self_alpha) in out["link_attention"].items():
        assert torch.equal(index, graph.edges(s)[0])  # aligned with the graph's links
        assert alpha.shape == (index.size(1), 1) and self_alpha.shape == (NUM_CODES[s], 1)
    with pytest.raises(ValueError, match="GEM graph has 4 icd9 nodes"):
        build_model(_config("laat", use_mat=True), graph, {"icd9": 3, "icd10": 5})


@pytest.mark.parametrize("name", BACKBONE_NAMES)
def test_mat_on_every_backbone_fits(name):
    torch.manual_seed(0)
    model = build_model(_config(name, use_mat=True), _tiny_graph(), NUM_CODES)
    losses = _fit_separable(model, name)
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("name", ["caml", "laat"])
def test_mat_only_ablation_gives_each_system_its_own_encoder(name):
    torch.manual_seed(12)
    model = build_model(_config(name, use_mat=True, shared_encoder=False), _tiny_graph(),
                        NUM_CODES)
    assert not model.shared_encoder and set(model.encoder) == {"icd9", "icd10"}
    p9, p10 = (list(model.encoder[s].parameters()) for s in ("icd9", "icd10"))
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(p9, p10, strict=True))
    ids, mask, system = _batch(batch=8)
    model.eval()
    with torch.no_grad():
        out = model(ids, mask, system)
        tables = model.code_embeddings()
        for s, sid in (("icd9", 0), ("icd10", 1)):
            rows = system == sid
            h, m = model.encoder[s](ids[rows], mask[rows])
            ref = model.heads[s](h, m, tables[s], model.biases[s], model.outputs[s],
                                 keys=model.keys(s, h))
            torch.testing.assert_close(out[s], ref)
            torch.testing.assert_close(model.encode(ids[rows], mask[rows], s)[0], h)
    # ICD-9 documents train the ICD-9 encoder and, through MAT, the linked ICD-10 codes,
    # but never the ICD-10 encoder.
    model.train()
    rows = system == 0
    logits = model(ids[rows], mask[rows], system[rows])
    jams_loss(logits, {"icd9": torch.ones_like(logits["icd9"])}).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in p9)
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in p10)
    assert model.code_tables["icd10"].grad[[0, 1, 3, 4]].abs().sum() > 0
    with pytest.raises(ValueError, match="need the system"):
        model.encode(ids, mask)
    with pytest.raises(ValueError, match="per-system encoders for"):
        JAMS({"icd9": model.encoder["icd9"]}, model.heads, NUM_CODES, model.code_dim)


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
def test_runs_under_bfloat16_autocast(attention):
    torch.manual_seed(10)
    model = build_model(_config("laat", attention=attention), None, NUM_CODES).eval()
    ids, mask, system = _batch()
    with torch.no_grad():
        ref = model(ids, mask, system)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(ids, mask, system)
    for s in ref:
        torch.testing.assert_close(out[s].float(), ref[s], atol=2e-2, rtol=2e-2)


def test_multi_head_mat():
    torch.manual_seed(11)
    model = build_model(_config("caml", use_mat=True, mat_heads=2), _tiny_graph(), NUM_CODES)
    assert model.mat.heads == 2
    tables = model.code_embeddings()
    assert tables["icd9"].shape == (4, 6) and tables["icd10"].shape == (5, 6)
    ids, mask, system = _batch()
    out = model(ids, mask, system)
    assert out["icd9"].shape == (2, 4) and out["icd10"].shape == (3, 5)
