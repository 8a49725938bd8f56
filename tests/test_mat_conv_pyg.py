"""MATConv as a PyG citizen: the bipartite call against a plain dense reference, the
same layer across input layouts (as PyG's test_gat_conv.py), HeteroConv and to_hetero
against the two-table call, explain and torch.compile."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch_geometric import EdgeIndex
from torch_geometric.nn import GATConv, HeteroConv, to_hetero

from jams_pyg import GEMGraph
from jams_pyg.graph.hetero import EDGE_TYPE, REV_EDGE_TYPE
from jams_pyg.nn import MATConv

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state")

DT = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-12}


def dense_update(x_src, x_dst, edges, att, slope=0.2):
    """Loops over destination codes: softmax over {self} ∪ links, ω after it, heads
    averaged, ELU. ``edges``: list of (src, dst, ω). Returns the output and
    ``{link k: [H]}``, ``{("self", i): [H]}`` attention weights."""
    heads, d = att.size(0), x_dst.size(1)
    outs, alphas = [], {}
    for i in range(x_dst.size(0)):
        nbrs = [(s, w, k) for k, (s, t, w) in enumerate(edges) if t == i]
        per_head, self_alpha, link_alpha = [], [], {k: [] for _, _, k in nbrs}
        for h in range(heads):
            a_own, a_other = att[h, :d], att[h, d:]
            own = a_own @ x_dst[i]
            scores = [F.leaky_relu(own + a_other @ x_dst[i], slope)]
            scores += [F.leaky_relu(own + a_other @ x_src[s], slope) for s, _, _ in nbrs]
            alpha = torch.softmax(torch.stack(scores), dim=0)
            total = alpha[0] * x_dst[i]
            for (s, w, k), a in zip(nbrs, alpha[1:], strict=True):
                total = total + a * w * x_src[s]
                link_alpha[k].append(a)
            self_alpha.append(alpha[0])
            per_head.append(total)
        outs.append(F.elu(torch.stack(per_head).mean(dim=0)))
        alphas[("self", i)] = torch.stack(self_alpha)
        alphas.update({k: torch.stack(v) for k, v in link_alpha.items()})
    return torch.stack(outs), alphas


def bipartite_graph(n_src=7, n_dst=9, num_edges=18, seed=0):
    """Random distinct links (the last source and the last two destinations unlinked),
    ω in {1.0, 0.5}, in shuffled order."""
    g = torch.Generator().manual_seed(seed)
    pairs = torch.cartesian_prod(torch.arange(n_src - 1), torch.arange(n_dst - 2)).t()
    pairs = pairs[:, torch.randperm(pairs.size(1), generator=g)[:num_edges]]
    weight = torch.where(torch.rand(num_edges, generator=g) < 0.5, 1.0, 0.5).to(DT)
    x_src = torch.randn(n_src, 5, generator=g, dtype=DT)
    x_dst = torch.randn(n_dst, 5, generator=g, dtype=DT)
    return x_src, x_dst, pairs, weight


def make_conv(heads=1, seed=1, **kwargs):
    torch.manual_seed(seed)
    conv = MATConv(5, heads=heads, bipartite=True, **kwargs).to(DT)
    with torch.no_grad():  # larger than glorot, so the softmax is far from uniform
        conv.att.mul_(3.0)
    return conv


def grads(outputs, inputs, seed=5):
    g = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outputs)
    return torch.autograd.grad(loss, inputs)


def edge_list(edge_index, weight):
    return [(int(s), int(t), w) for (s, t), w in zip(edge_index.t(), weight, strict=True)]


# ------------------------------------------------------ the bipartite call
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("heads", [1, 2])
def test_bipartite_matches_dense_reference(heads, fused):
    x_src, x_dst, edge_index, weight = bipartite_graph(seed=heads)
    conv = make_conv(heads, fused=fused)
    for t in (x_src, x_dst, weight):
        t.requires_grad_()
    out, (ei, alpha, self_alpha) = conv((x_src, x_dst), edge_index, weight,
                                        return_attention_weights=True)
    ref, ref_alpha = dense_update(x_src, x_dst, edge_list(edge_index, weight), conv.att)
    torch.testing.assert_close(out, ref, **TOL)
    assert ei is edge_index and alpha.shape == (edge_index.size(1), heads)
    for k in range(edge_index.size(1)):
        torch.testing.assert_close(alpha[k], ref_alpha[k], **TOL)
    for i in range(x_dst.size(0)):
        torch.testing.assert_close(self_alpha[i], ref_alpha[("self", i)], **TOL)
    torch.testing.assert_close(out[-2:], F.elu(x_dst[-2:]), rtol=0, atol=0)  # unlinked
    inputs = (x_src, x_dst, weight, conv.att)
    for name, a, b in zip(("x_src", "x_dst", "edge_weight", "att"), grads([out], inputs),
                          grads([ref], inputs), strict=True):
        assert b.abs().sum() > 0, name
        torch.testing.assert_close(a, b, **TOL, msg=lambda m, name=name: f"grad {name}: {m}")


def _layouts(edge_index, weight, n_src, n_dst):
    """The same links as PyG's convolutions take them: (edge_index, edge_weight)."""
    sorted_ei, sorted_w = edge_index, weight
    perm = torch.argsort(edge_index[1] * n_src + edge_index[0])
    sorted_ei, sorted_w = edge_index[:, perm], weight[perm]
    adj = torch.sparse_coo_tensor(edge_index.flip(0), weight, (n_dst, n_src),
                                  check_invariants=True).coalesce()
    return {
        "tensor": (edge_index, weight),
        "edge_index": (EdgeIndex(edge_index, sparse_size=(n_src, n_dst)), weight),
        "edge_index_sorted": (
            EdgeIndex(sorted_ei, sparse_size=(n_src, n_dst), sort_order="col"), sorted_w),
        "sparse_coo": (adj, None),
        "sparse_csr": (adj.to_sparse_csr(), None),
        "sparse_csr_weight": (adj.to_sparse_csr(), adj.values()),
    }


@pytest.mark.parametrize("fused", [True, False])
def test_same_layer_across_input_layouts(fused):
    x_src, x_dst, edge_index, weight = bipartite_graph(seed=3)
    conv = make_conv(2, fused=fused)
    x_src.requires_grad_()
    x_dst.requires_grad_()
    want = conv((x_src, x_dst), edge_index, weight)
    want_grads = grads([want], (x_src, x_dst, conv.att))
    n_src, n_dst = x_src.size(0), x_dst.size(0)
    for name, (ei, w) in _layouts(edge_index, weight, n_src, n_dst).items():
        out, (got_ei, alpha, _) = conv((x_src, x_dst), ei, w, return_attention_weights=True)
        torch.testing.assert_close(out, want, **TOL, msg=lambda m, name=name: f"{name}: {m}")
        assert got_ei is ei
        assert alpha.shape == (edge_index.size(1), 2)
        got = grads([out], (x_src, x_dst, conv.att))
        for a, b in zip(got, want_grads, strict=True):
            torch.testing.assert_close(a, b, **TOL, msg=lambda m, name=name: f"{name}: {m}")


def test_attention_weights_follow_the_links_order():
    x_src, x_dst, edge_index, weight = bipartite_graph(seed=4)
    conv = make_conv(2)
    _, (_, alpha, self_alpha) = conv((x_src, x_dst), edge_index, weight,
                                     return_attention_weights=True)
    perm = torch.randperm(edge_index.size(1), generator=torch.Generator().manual_seed(0))
    _, (_, alpha_p, self_p) = conv((x_src, x_dst), edge_index[:, perm], weight[perm],
                                   return_attention_weights=True)
    torch.testing.assert_close(alpha_p, alpha[perm], **TOL)
    torch.testing.assert_close(self_p, self_alpha, **TOL)
    # each destination's weights over {self} ∪ its links sum to one
    total = self_alpha.clone().index_add_(0, edge_index[1], alpha)
    torch.testing.assert_close(total, torch.ones_like(total), **TOL)


@pytest.mark.parametrize("fused", [True, False])
def test_no_links_leaves_each_code_to_itself(fused):
    x_src, x_dst, _, _ = bipartite_graph(seed=12)
    conv = make_conv(2, fused=fused)
    x_dst.requires_grad_()
    empty = torch.empty(2, 0, dtype=torch.long)
    out = conv((x_src, x_dst), empty, torch.empty(0, dtype=DT))
    torch.testing.assert_close(out, F.elu(x_dst), rtol=0, atol=0)
    out.sum().backward()
    torch.testing.assert_close(x_dst.grad, torch.where(x_dst > 0, 1.0, torch.exp(x_dst)),
                               **TOL)


def test_one_table_is_source_and_destination():
    x, _, _, _ = bipartite_graph(n_src=9, seed=5)
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 4], [1, 0, 0, 2, 3, 1]])
    weight = torch.tensor([1.0, 0.5, 1.0, 0.5, 1.0, 1.0], dtype=DT)
    for fused in (True, False):
        conv = make_conv(2, fused=fused)
        out = conv(x, edge_index, weight)
        ref, _ = dense_update(x, x, edge_list(edge_index, weight), conv.att)
        torch.testing.assert_close(out, ref, **TOL)
        torch.testing.assert_close(conv((x, x), edge_index, weight), out, rtol=0, atol=0)


def test_fused_path_goes_through_message_and_aggregate():
    x_src, x_dst, edge_index, weight = bipartite_graph(seed=6)
    calls = {"message_and_aggregate": 0, "message": 0}
    for fused in (True, False):
        conv = make_conv(fused=fused)
        conv.register_message_and_aggregate_forward_hook(
            lambda *a: calls.__setitem__("message_and_aggregate",
                                         calls["message_and_aggregate"] + 1))
        conv.register_message_forward_hook(
            lambda *a: calls.__setitem__("message", calls["message"] + 1))
        conv((x_src, x_dst), edge_index, weight)
    # fused: one fused call, no [E, d] messages; fused=False: messages only
    assert calls == {"message_and_aggregate": 1, "message": 1}


def test_edge_index_is_cached_by_identity_without_content_check(monkeypatch):
    x_src, x_dst, edge_index, weight = bipartite_graph(seed=7)
    conv = make_conv()
    ei = EdgeIndex(edge_index, sparse_size=(x_src.size(0), x_dst.size(0)))
    want = conv((x_src, x_dst), ei, weight)
    structure = conv._cache[0][2]

    def no_equal(*args):
        raise AssertionError("torch.equal called for an EdgeIndex")

    monkeypatch.setattr(torch, "equal", no_equal)
    torch.testing.assert_close(conv((x_src, x_dst), ei, weight), want, rtol=0, atol=0)
    assert conv._cache[0][2] is structure
    monkeypatch.undo()
    # an in-place change bumps the version counter: the structure is rebuilt
    ei[0, 0] = (int(ei[0, 0]) + 1) % (x_src.size(0) - 1)
    got = conv((x_src, x_dst), ei, weight)
    assert conv._cache[0][2] is not structure
    ref, _ = dense_update(x_src, x_dst, edge_list(ei.as_subclass(torch.Tensor), weight),
                          conv.att)
    torch.testing.assert_close(got, ref, **TOL)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda c, xs, xd, ei, w: c((xs, None), ei, w), ValueError, "destination table"),
        (lambda c, xs, xd, ei, w: c((xs, xd), ei.t(), w), ValueError, r"\[2, num_edges\]"),
        (
            lambda c, xs, xd, ei, w: c((xs, xd), torch.cat([ei, torch.tensor([[7], [0]])], 1),
                                       torch.cat([w, w[:1]])),
            IndexError,
            r"edge_index\[0\] holds source index 7.*x_src with 7 rows",
        ),
        (
            lambda c, xs, xd, ei, w: c((xs, xd), torch.cat([ei, torch.tensor([[0], [9]])], 1)),
            IndexError,
            r"edge_index\[1\] holds destination index 9.*x_dst with 9 rows",
        ),
        (lambda c, xs, xd, ei, w: c((xs, xd), ei, w[:-1]), ValueError, r"shape \[18\]"),
        (lambda c, xs, xd, ei, w: c((xs, xd), ei, w, size=(7, 8)), ValueError, "size"),
        (
            lambda c, xs, xd, ei, w: c(
                (xs, xd), torch.sparse_coo_tensor(ei, w, (7, 9), check_invariants=True), None),
            ValueError,
            r"\[num_dst, num_src\] = \[9, 7\]",
        ),
        (lambda c, xs, xd, ei, w: c((xs, xd), ei.tolist(), w), TypeError, "EdgeIndex"),
        (lambda c, xs, xd, ei, w: c((xs, xd[:, :4]), ei, w), ValueError, "x_dst has 4"),
    ],
)
def test_bad_bipartite_input_raises_clear_error(call, error, match):
    x_src, x_dst, edge_index, weight = bipartite_graph()
    with pytest.raises(error, match=match):
        call(make_conv(), x_src, x_dst, edge_index, weight)


def test_call_forms_say_which_layer_they_need():
    x_src, x_dst, edge_index, weight = bipartite_graph()
    two_tables = MATConv(5).to(DT)
    # one table is PyG's call: the two-table layer names the option that takes it ...
    with pytest.raises(TypeError) as one_table:
        two_tables(x_src, edge_index)
    assert str(one_table.value) == (
        "MATConv expects x = (x_icd9, x_icd10), a pair of tensors; got Tensor (for PyG's "
        "call conv((x_src, x_dst), edge_index) -> x_dst', build the layer with bipartite=True)")
    # ... and only then: what is neither a pair nor a tensor gets no hint
    with pytest.raises(TypeError) as not_tables:
        two_tables(x_src.numpy(), edge_index)
    assert str(not_tables.value) == (
        "MATConv expects x = (x_icd9, x_icd10), a pair of tensors; got ndarray")
    with pytest.raises(TypeError, match="size is for the bipartite call"):
        two_tables((x_src, x_dst), edge_index, size=(7, 9))
    # the two-table layer takes the same tables and links without the size
    assert len(two_tables((x_src, x_dst), edge_index)) == 2
    # a pair of link sets is the two-table call: the bipartite layer names it
    bipartite = make_conv(2)
    with pytest.raises(TypeError) as pair:
        bipartite((x_src, x_dst), (edge_index, edge_index), (weight, weight))
    assert str(pair.value).endswith(
        "got tuple (a pair (edge_index_icd9, edge_index_icd10) is the two-table call: build "
        "the layer without bipartite=True)")
    with pytest.raises(TypeError) as listed:
        bipartite((x_src, x_dst), edge_index.tolist(), weight)
    assert str(listed.value).endswith("for the bipartite call; got list")
    assert repr(bipartite) == "MATConv(5, heads=2, bipartite=True)"
    assert repr(two_tables) == "MATConv(5, heads=1)"


# -------------------------------------------------- HeteroConv / to_hetero
def _gem(direction):
    # links in both files (001.0 = A00.0), in the forward file only (005.3 -> A05.8) and
    # in the backward file only (A01.01 -> 002.0); unlinked: V70.0, Z00.00
    icd9 = ["001.0", "005.3", "002.0", "V70.0", "401.9", "008.1"]
    icd10 = ["A00.0", "A05.8", "A01.01", "A01.02", "Z00.00", "I10.", "A04.8"]
    return GEMGraph.from_cms_2018(icd9_codes=icd9, icd10_codes=icd10, direction=direction)


def test_hetero_data_edge_types_follow_the_message_flow():
    graph = _gem("directional")
    data = graph.to_hetero_data()
    # (src, rel, dst): row 0 indexes src, messages update dst
    assert torch.equal(data[EDGE_TYPE].edge_index, graph.edges("icd10")[0])
    assert torch.equal(data[EDGE_TYPE].edge_weight, graph.edges("icd10")[1])
    assert torch.equal(data[REV_EDGE_TYPE].edge_index, graph.edges("icd9")[0].flip(0))
    assert torch.equal(data[REV_EDGE_TYPE].edge_weight, graph.edges("icd9")[1])
    sets = {tuple(p) for p in graph.edges("icd9")[0].t().tolist()}
    assert sets != {tuple(p) for p in graph.edges("icd10")[0].t().tolist()}  # directional


def _tables(graph, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"icd9": torch.randn(graph.num_icd9, 5, generator=g, dtype=DT, requires_grad=True),
            "icd10": torch.randn(graph.num_icd10, 5, generator=g, dtype=DT,
                                 requires_grad=True)}


@pytest.mark.parametrize("direction", ["directional", "union"])
@pytest.mark.parametrize("fused", [True, False])
def test_hetero_conv_with_one_shared_layer_is_the_two_table_call(direction, fused):
    graph = _gem(direction)
    data = graph.to_hetero_data()
    x = _tables(graph)
    edge_index, edge_weight = graph.mat_edges()
    weights = (tuple(w.to(DT) for w in edge_weight) if isinstance(edge_weight, tuple)
               else edge_weight.to(DT))
    two = make_conv(2, fused=fused)
    two.bipartite = False
    u, v = two((x["icd9"], x["icd10"]), edge_index, weights)

    conv = make_conv(2, fused=fused)
    hetero = HeteroConv({EDGE_TYPE: conv, REV_EDGE_TYPE: conv}, aggr="sum")
    w_dict = {k: w.to(DT) for k, w in data.collect("edge_weight").items()}
    out = hetero(x, data.edge_index_dict, edge_weight_dict=w_dict)
    torch.testing.assert_close(out["icd9"], u, **TOL)
    torch.testing.assert_close(out["icd10"], v, **TOL)
    inputs = (x["icd9"], x["icd10"])
    for a, b in zip(grads([out["icd9"], out["icd10"]], (*inputs, conv.att)),
                    grads([u, v], (*inputs, two.att)), strict=True):
        torch.testing.assert_close(a, b, **TOL)


class _Net(torch.nn.Module):
    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x, edge_index, edge_weight):
        return self.conv(x, edge_index, edge_weight)


def test_to_hetero_is_the_two_table_call_with_one_vector_per_direction():
    graph = _gem("directional")
    data = graph.to_hetero_data()
    x = _tables(graph, seed=1)
    model = to_hetero(_Net(make_conv(2)), data.metadata(), aggr="sum")
    att = make_conv(2).att.detach()
    for et in (EDGE_TYPE, REV_EDGE_TYPE):
        conv = model.conv["__".join(et)]  # to_hetero copies (and re-initialises) the layer
        assert isinstance(conv, MATConv) and conv.bipartite
        with torch.no_grad():
            conv.att.copy_(att)
    w_dict = {k: w.to(DT) for k, w in data.collect("edge_weight").items()}
    out = model(x, data.edge_index_dict, w_dict)
    two = MATConv(5, heads=2).to(DT)
    with torch.no_grad():
        two.att.copy_(att)
    edge_index, (w9, w10) = graph.mat_edges()
    u, v = two((x["icd9"], x["icd10"]), edge_index, (w9.to(DT), w10.to(DT)))
    torch.testing.assert_close(out["icd9"], u, **TOL)
    torch.testing.assert_close(out["icd10"], v, **TOL)


@pytest.mark.filterwarnings("ignore:There exist node types")
def test_hetero_conv_sum_of_two_edge_types_is_not_one_softmax():
    # Two edge types into one destination: HeteroConv sums two finished outputs.
    x_src, x_dst, edge_index, _ = bipartite_graph(seed=8)
    half = edge_index.size(1) // 2
    a, b = edge_index[:, :half], edge_index[:, half:]
    conv = make_conv(2)
    x = {"src": x_src, "dst": x_dst}
    hetero = HeteroConv({("src", "a", "dst"): conv, ("src", "b", "dst"): conv}, aggr="sum")
    out = hetero(x, {("src", "a", "dst"): a, ("src", "b", "dst"): b})["dst"]
    torch.testing.assert_close(out, conv((x_src, x_dst), a) + conv((x_src, x_dst), b),
                               rtol=0, atol=0)
    one_softmax = conv((x_src, x_dst), edge_index)
    linked = torch.unique(edge_index[1])
    assert not torch.allclose(out[linked], one_softmax[linked])


# ---------------------------------------------------------------- explain
def _explaining(conv, mask):
    conv.explain = True
    conv._edge_mask = mask
    conv._apply_sigmoid = False


@pytest.mark.parametrize("fused", [True, False])
def test_explain_masks_the_messages(fused):
    x_src, x_dst, edge_index, weight = bipartite_graph(seed=9)
    conv = make_conv(2, fused=fused)
    plain, (_, _, self_alpha) = conv((x_src, x_dst), edge_index, weight,
                                     return_attention_weights=True)
    _explaining(conv, torch.ones(edge_index.size(1), dtype=DT))
    torch.testing.assert_close(conv((x_src, x_dst), edge_index, weight), plain, **TOL)
    conv._edge_mask = torch.zeros(edge_index.size(1), dtype=DT)
    masked = conv((x_src, x_dst), edge_index, weight)
    # no message passes: each code keeps its self term only
    torch.testing.assert_close(masked, F.elu(self_alpha.mean(1, keepdim=True) * x_dst), **TOL)
    linked = torch.unique(edge_index[1])
    assert not torch.allclose(masked[linked], plain[linked])
    # one link masked: only its destination changes
    mask = torch.ones(edge_index.size(1), dtype=DT)
    mask[0] = 0.0
    conv._edge_mask = mask
    one = conv((x_src, x_dst), edge_index, weight)
    changed = (one - plain).abs().sum(1) > 1e-9
    assert changed.nonzero().view(-1).tolist() == [int(edge_index[1, 0])]


def test_explain_with_the_two_table_call():
    graph = _gem("union")
    x = _tables(graph, seed=2)
    conv = make_conv(2)
    conv.bipartite = False
    tables = (x["icd9"], x["icd10"])
    ei, w = graph.edge_index, graph.edge_weight.to(DT)
    plain = conv(tables, ei, w)
    _explaining(conv, torch.ones(ei.size(1), dtype=DT))
    for a, b in zip(conv(tables, ei, w), plain, strict=True):
        torch.testing.assert_close(a, b, **TOL)
    conv._edge_mask = torch.zeros(ei.size(1), dtype=DT)
    u, v = conv(tables, ei, w)
    assert not torch.allclose(u, plain[0]) and not torch.allclose(v, plain[1])
    with pytest.raises(ValueError, match="bipartite=True"):
        conv(tables, (ei, ei), (w, w))


# ---------------------------------------------------------------- compile
@pytest.mark.slow
def test_torch_compile_fullgraph_like_gatconv():
    # About 15 s on a CPU (Dynamo tracing, AOT autograd, no code generation).
    x_src, x_dst, edge_index, weight = bipartite_graph(seed=10)
    gat = GATConv((5, 5), 5, add_self_loops=False).to(DT)
    try:
        torch.compile(gat, fullgraph=True, backend="aot_eager")((x_src, x_dst), edge_index)
    except Exception as error:  # PyG's own layer cannot: nothing to match
        pytest.skip(f"GATConv itself does not compile with fullgraph=True here: {error}")
    conv = make_conv(2)
    x_src.requires_grad_()
    eager = conv((x_src, x_dst), edge_index, weight)
    compiled = torch.compile(conv, fullgraph=True, backend="aot_eager", dynamic=False)
    out = compiled((x_src, x_dst), edge_index, weight)
    torch.testing.assert_close(out, eager, **TOL)
    (g_eager,) = torch.autograd.grad(eager.sum(), x_src)
    (g_comp,) = torch.autograd.grad(out.sum(), x_src)
    torch.testing.assert_close(g_comp, g_eager, **TOL)


# ------------------------------------------------------------- init gain
def test_att_gain_is_the_official_xavier_init():
    d = 64
    torch.manual_seed(3)
    conv = MATConv(d, att_gain=1.414)
    torch.manual_seed(3)
    official = torch.nn.init.xavier_uniform_(torch.empty(2 * d, 1), gain=1.414)  # GY-Jeong/JAMS
    torch.testing.assert_close(conv.att.detach().view(-1), official.view(-1),
                               rtol=1e-6, atol=0)
    # the default is PyG's glorot, bit for bit
    from torch_geometric.nn.inits import glorot

    torch.manual_seed(4)
    default = MATConv(d, heads=2)
    torch.manual_seed(4)
    want = torch.empty(2, 2 * d)
    glorot(want)
    assert torch.equal(default.att.detach(), want)
    with pytest.raises(ValueError, match="att_gain"):
        MATConv(d, att_gain=0.0)


# ------------------------------------------------------------------- CUDA
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
@pytest.mark.parametrize("layout", ["tensor", "edge_index", "sparse_csr"])
def test_cuda_bipartite_matches_cpu(layout):
    x_src, x_dst, edge_index, weight = bipartite_graph(seed=11)
    ei, w = _layouts(edge_index, weight, x_src.size(0), x_dst.size(0))[layout]
    conv = make_conv(2)
    gpu_conv = copy.deepcopy(conv).cuda()
    xs = [t.clone().requires_grad_() for t in (x_src, x_dst)]
    xg = [t.cuda().requires_grad_() for t in (x_src, x_dst)]
    cpu = conv(tuple(xs), ei, w)
    gpu = gpu_conv(tuple(xg), ei.cuda(), None if w is None else w.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-9, atol=1e-11)
    cpu.sum().backward()
    gpu.sum().backward()
    for a, b in zip(xs, xg, strict=True):
        torch.testing.assert_close(b.grad.cpu(), a.grad, rtol=1e-9, atol=1e-11)
