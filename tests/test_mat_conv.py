"""MATConv against a plain dense re-computation of the paper's equations 1 and 2."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from jams_pyg import GEMGraph
from jams_pyg.nn import MATConv
from jams_pyg.nn.sparse_aggr import build_bipartite_csr, mat_aggregate

# PyTorch's one-time notice that sparse CSR support is "in beta" (pytest resets
# the library's own filter for it).
pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state")

DT = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-12}


# --------------------------------------------------------------- reference
def dense_mat(x9, x10, edges, att, slope=0.2):
    """Loops over codes: softmax over {self} ∪ neighbours, ω after the softmax,
    heads averaged, then ELU. ``edges`` is a list of (icd9, icd10, ω).
    Returns outputs and the attention weights as dicts keyed by (code, neighbour)."""
    heads, d = att.size(0), x9.size(1)

    def update(x_own, x_other, own_pos, other_pos):
        outs, alphas = [], {}
        for i in range(x_own.size(0)):
            nbrs = [(e[other_pos], e[2], k) for k, e in enumerate(edges) if e[own_pos] == i]
            per_head = []
            for h in range(heads):
                a_own, a_other = att[h, :d], att[h, d:]
                own_score = a_own @ x_own[i]
                scores = [F.leaky_relu(own_score + a_other @ x_own[i], slope)]
                scores += [
                    F.leaky_relu(own_score + a_other @ x_other[j], slope) for j, _, _ in nbrs
                ]
                alpha = torch.softmax(torch.stack(scores), dim=0)
                alphas[("self", i, h)] = alpha[0]
                total = alpha[0] * x_own[i]
                for (j, w, k), a in zip(nbrs, alpha[1:], strict=True):
                    total = total + a * w * x_other[j]
                    alphas[(k, h)] = a
                per_head.append(total)
            outs.append(F.elu(torch.stack(per_head).mean(dim=0)))
        return torch.stack(outs), alphas

    out9, alpha9 = update(x9, x10, 0, 1)
    out10, alpha10 = update(x10, x9, 1, 0)
    return out9, out10, alpha9, alpha10


def random_graph(n=7, m=9, num_edges=16, seed=0, duplicates=False):
    """Random bipartite edges among codes 0..n-3 / 0..m-3 (the last two codes of
    each side stay isolated), ω mixed in {1.0, 0.5}."""
    g = torch.Generator().manual_seed(seed)
    pairs = torch.stack(
        [
            torch.randint(0, n - 2, (4 * num_edges,), generator=g),
            torch.randint(0, m - 2, (4 * num_edges,), generator=g),
        ]
    )
    pairs = torch.unique(pairs, dim=1)
    pairs = pairs[:, torch.randperm(pairs.size(1), generator=g)[:num_edges]]
    if duplicates:
        pairs = torch.cat([pairs, pairs[:, :3]], dim=1)
    weight = torch.where(torch.rand(pairs.size(1), generator=g) < 0.5, 1.0, 0.5).to(DT)
    x9 = torch.randn(n, 5, generator=g, dtype=DT)
    x10 = torch.randn(m, 5, generator=g, dtype=DT)
    return x9, x10, pairs, weight


def edge_list(edge_index, weight):
    return [(int(i), int(j), w) for (i, j), w in zip(edge_index.t(), weight, strict=True)]


def make_conv(heads=1, seed=1, **kwargs):
    torch.manual_seed(seed)
    conv = MATConv(5, heads=heads, **kwargs).to(DT)
    with torch.no_grad():  # larger than glorot, so the softmax is far from uniform
        conv.att.mul_(3.0)
    return conv


# -------------------------------------------------------------- exactness
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("heads", [1, 2])
@pytest.mark.parametrize("duplicates", [False, True])
def test_matches_dense_reference_values_and_gradients(heads, fused, duplicates):
    x9, x10, edge_index, weight = random_graph(seed=heads, duplicates=duplicates)
    conv = make_conv(heads, fused=fused)
    x9.requires_grad_()
    x10.requires_grad_()
    weight.requires_grad_()
    out9, out10 = conv((x9, x10), edge_index, weight)
    ref9, ref10, _, _ = dense_mat(x9, x10, edge_list(edge_index, weight), conv.att)
    torch.testing.assert_close(out9, ref9, **TOL)
    torch.testing.assert_close(out10, ref10, **TOL)

    g = torch.Generator().manual_seed(5)
    r9, r10 = (
        torch.randn(out9.shape, generator=g, dtype=DT),
        torch.randn(out10.shape, generator=g, dtype=DT),
    )
    inputs = (x9, x10, conv.att, weight)
    got = torch.autograd.grad((out9 * r9).sum() + (out10 * r10).sum(), inputs)
    want = torch.autograd.grad((ref9 * r9).sum() + (ref10 * r10).sum(), inputs)
    for name, a, b in zip(("x_icd9", "x_icd10", "att", "edge_weight"), got, want, strict=True):
        assert b.abs().sum() > 0, name
        torch.testing.assert_close(a, b, **TOL, msg=lambda m, name=name: f"grad {name}: {m}")


@pytest.mark.parametrize("with_weight", [True, False])
@pytest.mark.parametrize("sizes", [(5, 6), (6, 4)])  # both buffer-reuse orders
def test_fused_aggregation_gradcheck(with_weight, sizes):
    n, m = sizes
    x9, x10, edge_index, weight = random_graph(n=n, m=m, num_edges=6, seed=3)
    csr = build_bipartite_csr(edge_index, n, m)
    alpha = torch.rand(2 * 6 + n + m, generator=torch.Generator().manual_seed(0), dtype=DT)
    inputs = [alpha, weight if with_weight else None, x9, x10]
    for t in inputs:
        if t is not None:
            t.requires_grad_()
    assert torch.autograd.gradcheck(lambda *a: mat_aggregate(*a, csr), inputs, fast_mode=True)


def test_double_backward_needs_the_propagate_path():
    x9, x10, edge_index, weight = random_graph(seed=14)
    x9.requires_grad_()
    conv = make_conv()
    out9, out10 = conv((x9, x10), edge_index, weight)
    with pytest.raises(RuntimeError, match=r"differentiable once.*fused=False"):
        torch.autograd.grad(out9.sum() + out10.sum(), x9, create_graph=True)
    conv.fused = False  # plain autograd: second derivatives work
    out9, out10 = conv((x9, x10), edge_index, weight)
    (g,) = torch.autograd.grad(out9.sum() + out10.sum(), x9, create_graph=True)
    g.pow(2).sum().backward()
    assert x9.grad is not None and torch.isfinite(x9.grad).all()


def test_edge_weight_none_is_all_ones():
    x9, x10, edge_index, _ = random_graph()
    conv = make_conv()
    a = conv((x9, x10), edge_index)
    b = conv((x9, x10), edge_index, torch.ones(edge_index.size(1), dtype=DT))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_isolated_codes_become_elu_of_themselves():
    x9, x10, edge_index, weight = random_graph()
    conv = make_conv(heads=2)
    out9, out10 = conv((x9, x10), edge_index, weight)
    # by construction the last two codes of each side have no link
    torch.testing.assert_close(out9[-2:], F.elu(x9[-2:]), rtol=0, atol=0)
    torch.testing.assert_close(out10[-2:], F.elu(x10[-2:]), rtol=0, atol=0)
    assert not torch.allclose(out9[:-2], F.elu(x9[:-2]))
    # a graph without any edge
    empty = torch.empty(2, 0, dtype=torch.long)
    for fused in (True, False):
        conv.fused = fused
        out9, out10 = conv((x9, x10), empty, torch.empty(0, dtype=DT))
        torch.testing.assert_close(out9, F.elu(x9), rtol=0, atol=0)
        torch.testing.assert_close(out10, F.elu(x10), rtol=0, atol=0)


def test_edge_order_does_not_matter():
    x9, x10, edge_index, weight = random_graph(seed=4)
    conv = make_conv(heads=2)
    (a9, a10), att_a = conv((x9, x10), edge_index, weight, return_attention_weights=True)
    perm = torch.randperm(edge_index.size(1), generator=torch.Generator().manual_seed(0))
    (b9, b10), att_b = conv(
        (x9, x10), edge_index[:, perm], weight[perm], return_attention_weights=True
    )
    torch.testing.assert_close(a9, b9, **TOL)
    torch.testing.assert_close(a10, b10, **TOL)
    assert torch.equal(att_b[0], edge_index[:, perm])
    torch.testing.assert_close(att_a[1][perm], att_b[1], **TOL)
    torch.testing.assert_close(att_a[2][perm], att_b[2], **TOL)
    torch.testing.assert_close(att_a[3], att_b[3], **TOL)
    torch.testing.assert_close(att_a[4], att_b[4], **TOL)


# ------------------------------------------------------ attention weights
@pytest.mark.parametrize("heads", [1, 2])
def test_attention_weights_match_reference_and_sum_to_one(heads):
    x9, x10, edge_index, weight = random_graph(seed=7)
    conv = make_conv(heads)
    _, (ei, a9, a10, s9, s10) = conv((x9, x10), edge_index, weight, return_attention_weights=True)
    n, m, num_edges = x9.size(0), x10.size(0), edge_index.size(1)
    assert ei is edge_index
    assert a9.shape == a10.shape == (num_edges, heads)
    assert s9.shape == (n, heads) and s10.shape == (m, heads)
    _, _, ref9, ref10 = dense_mat(x9, x10, edge_list(edge_index, weight), conv.att)
    for h in range(heads):
        for k in range(num_edges):
            torch.testing.assert_close(a9[k, h], ref9[(k, h)], **TOL)
            torch.testing.assert_close(a10[k, h], ref10[(k, h)], **TOL)
        for i in range(n):
            torch.testing.assert_close(s9[i, h], ref9[("self", i, h)], **TOL)
        for j in range(m):
            torch.testing.assert_close(s10[j, h], ref10[("self", j, h)], **TOL)
    total9 = s9.clone().index_add_(0, edge_index[0], a9)
    total10 = s10.clone().index_add_(0, edge_index[1], a10)
    torch.testing.assert_close(total9, torch.ones_like(total9), **TOL)
    torch.testing.assert_close(total10, torch.ones_like(total10), **TOL)
    # isolated codes listen only to themselves
    assert torch.equal(s9[-2:], torch.ones(2, heads, dtype=DT))
    assert torch.equal(s10[-2:], torch.ones(2, heads, dtype=DT))


def test_dropout_only_in_training():
    x9, x10, edge_index, weight = random_graph(seed=8)
    conv = make_conv(heads=2, dropout=0.5)
    plain = make_conv(heads=2, dropout=0.0)
    torch.testing.assert_close(conv.att, plain.att, rtol=0, atol=0)

    conv.eval()
    plain.eval()
    e1 = conv((x9, x10), edge_index, weight)
    e2 = conv((x9, x10), edge_index, weight)
    ref = plain((x9, x10), edge_index, weight)
    for a, b, c in zip(e1, e2, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(a, c, rtol=0, atol=0)

    conv.train()
    torch.manual_seed(0)
    (t9, _), (_, a9, _, s9, _) = conv((x9, x10), edge_index, weight, return_attention_weights=True)
    assert not torch.allclose(t9, ref[0])
    # dropped coefficients are zero, kept ones are scaled by 1 / (1 - p)
    alphas = torch.cat([a9.flatten(), s9.flatten()])
    assert (alphas == 0).any() and (alphas > 0).any()
    plain.train()
    _, (_, p9, _, ps9, _) = plain((x9, x10), edge_index, weight, return_attention_weights=True)
    kept = torch.cat([p9.flatten(), ps9.flatten()])[alphas > 0]
    torch.testing.assert_close(alphas[alphas > 0], 2.0 * kept, **TOL)


def test_bfloat16_tables_use_the_propagate_path():
    x9, x10, edge_index, weight = random_graph(seed=13)
    conv = make_conv(heads=2)
    want = conv((x9, x10), edge_index, weight)
    low = conv.to(torch.bfloat16)
    got = low((x9.bfloat16(), x10.bfloat16()), edge_index, weight)  # ω stays float64
    for a, b in zip(got, want, strict=True):
        assert a.dtype == torch.bfloat16
        torch.testing.assert_close(a.double(), b, rtol=0.05, atol=0.05)


# ----------------------------------------------------------------- caching
def test_structure_cache_follows_edge_index():
    x9, x10, edge_index, weight = random_graph(seed=9)
    conv = make_conv()
    conv((x9, x10), edge_index, weight)
    structure = conv._cache[0][2]
    conv((x9, x10), edge_index, weight * 0.5)
    assert conv._cache[0][2] is structure  # the same tensor again: built once
    other = random_graph(seed=10)[2][:, : edge_index.size(1)]
    assert other.shape == edge_index.shape and not torch.equal(other, edge_index)
    got = conv((x9, x10), other, weight)
    want = make_conv(cached=False)((x9, x10), other, weight)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    # an in-place change of the cached tensor is seen too
    before = conv((x9, x10), other, weight)
    other[1] = other[1].flip(0)
    after = conv((x9, x10), other, weight)
    want = dense_mat(x9, x10, edge_list(other, weight), conv.att)[:2]
    torch.testing.assert_close(after, want, **TOL)
    assert not torch.allclose(before[0], after[0])


# ------------------------------------------------------------ torch.compile
def test_torch_compile_gives_same_output():
    x9, x10, edge_index, weight = random_graph(seed=11)
    conv = make_conv(heads=2)
    x9.requires_grad_()
    eager = conv((x9, x10), edge_index, weight)
    compiled = torch.compile(conv, backend="aot_eager", fullgraph=False, dynamic=False)
    out = compiled((x9, x10), edge_index, weight)
    torch.testing.assert_close(out, eager, **TOL)
    (g_eager,) = torch.autograd.grad(eager[0].sum() + eager[1].sum(), x9)
    (g_comp,) = torch.autograd.grad(out[0].sum() + out[1].sum(), x9)
    torch.testing.assert_close(g_comp, g_eager, **TOL)


@pytest.mark.slow
def test_torch_compile_inductor_gives_same_output():
    # The default backend (inductor, C++ code generation on CPU): about 30 s.
    x9, x10, edge_index, weight = random_graph(seed=11)
    conv = make_conv(heads=2).eval()
    with torch.no_grad():
        eager = conv((x9, x10), edge_index, weight)
        out = torch.compile(conv, fullgraph=False, dynamic=False)((x9, x10), edge_index, weight)
    torch.testing.assert_close(out, eager, **TOL)


# ------------------------------------------------------------ bad input
def _inputs():
    x9, x10, edge_index, weight = random_graph()
    return x9, x10, edge_index, weight


@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [
        (lambda a: {**a, "x": a["x"][0]}, TypeError, r"x = \(x_icd9, x_icd10\).*Tensor"),
        (lambda a: {**a, "x": (*a["x"], a["x"][0])}, TypeError, "3 items"),
        (lambda a: {**a, "x": (a["x"][0], None)}, TypeError, "x_icd10 must be a Tensor"),
        (
            lambda a: {**a, "x": (a["x"][0][0], a["x"][1])},
            ValueError,
            r"x_icd9 must be 2-D.*\(5,\)",
        ),
        (lambda a: {**a, "x": (a["x"][0][:, :4], a["x"][1])}, ValueError, "differ.*4.*5"),
        (
            lambda a: {**a, "x": (a["x"][0][:, :4], a["x"][1][:, :4])},
            ValueError,
            "4 channels.*channels=5",
        ),
        (lambda a: {**a, "x": (a["x"][0], a["x"][1].float())}, ValueError, "float64.*float32"),
        (
            lambda a: {**a, "edge_index": a["edge_index"].tolist()},
            TypeError,
            "edge_index must be a Tensor",
        ),
        (lambda a: {**a, "edge_index": a["edge_index"].t()}, ValueError, r"\[2, num_edges\]"),
        (lambda a: {**a, "edge_index": a["edge_index"].to(DT)}, ValueError, "integer"),
        (
            lambda a: {
                **a,
                "edge_index": torch.cat([a["edge_index"], torch.tensor([[7], [0]])], 1),
                "edge_weight": torch.ones(17, dtype=DT),
            },
            IndexError,
            r"edge_index\[0\] holds ICD-9 index 7.*x_icd9 with 7 rows",
        ),
        (
            lambda a: {
                **a,
                "edge_index": torch.cat([a["edge_index"], torch.tensor([[0], [12]])], 1),
                "edge_weight": torch.ones(17, dtype=DT),
            },
            IndexError,
            r"edge_index\[1\] holds ICD-10 index 12.*x_icd10 with 9 rows",
        ),
        (
            lambda a: {
                **a,
                "edge_index": torch.cat([a["edge_index"], torch.tensor([[-1], [0]])], 1),
                "edge_weight": torch.ones(17, dtype=DT),
            },
            IndexError,
            "ICD-9 index -1",
        ),
        (
            lambda a: {**a, "edge_weight": a["edge_weight"][:-1]},
            ValueError,
            r"shape \[16\].*\(15,\)",
        ),
        (lambda a: {**a, "edge_weight": a["edge_weight"][:, None]}, ValueError, r"\(16, 1\)"),
        (lambda a: {**a, "edge_weight": torch.ones(16, dtype=torch.long)}, ValueError, "floating"),
        (lambda a: {**a, "edge_weight": [1.0] * 16}, TypeError, "edge_weight must be a Tensor"),
    ],
)
def test_bad_input_raises_clear_error(mutate, error, match):
    x9, x10, edge_index, weight = _inputs()
    args = mutate({"x": (x9, x10), "edge_index": edge_index, "edge_weight": weight})
    with pytest.raises(error, match=match):
        make_conv()(**args)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"channels": 0}, "channels"),
        ({"channels": 4, "heads": 0}, "heads"),
        ({"channels": 4, "dropout": 1.0}, "dropout"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MATConv(**kwargs)


# ---------------------------------------------------------------- module
def test_reset_parameters_and_repr():
    torch.manual_seed(0)
    conv = MATConv(512, heads=1)
    assert repr(conv) == "MATConv(512, heads=1)"
    assert repr(MATConv(64, heads=4)) == "MATConv(64, heads=4)"
    assert conv.att.shape == (1, 1024)
    bound = (6.0 / (1 + 1024)) ** 0.5  # glorot on [heads, 2 * channels]
    assert conv.att.abs().max() <= bound and conv.att.abs().max() > 0.9 * bound
    before = conv.att.detach().clone()
    conv.reset_parameters()
    assert not torch.equal(before, conv.att)
    assert [name for name, _ in conv.named_parameters()] == ["att"]


def test_real_gem_graph_plugs_in():
    icd9 = ["576.2", "749.11", "401.9", "V70.0"]
    icd10 = ["K83.1", "Q36.9", "I10.", "Z00.00", "A00.0"]
    graph = GEMGraph.from_cms_2018(icd9_codes=icd9, icd10_codes=icd10)
    assert graph.edge_index.size(1) >= 2
    g = torch.Generator().manual_seed(0)
    x9 = torch.randn(graph.num_icd9, 5, generator=g, dtype=DT)
    x10 = torch.randn(graph.num_icd10, 5, generator=g, dtype=DT)
    conv = make_conv(heads=2)
    out9, out10 = conv((x9, x10), graph.edge_index, graph.edge_weight.to(DT))
    edges = edge_list(graph.edge_index, graph.edge_weight.to(DT))
    assert (0, 0, 1.0) in edges  # 576.2 = K83.1, exact
    assert (1, 1, 0.5) in edges  # 749.11 ~ Q36.9, approximate
    ref9, ref10, _, _ = dense_mat(x9, x10, edges, conv.att)
    torch.testing.assert_close(out9, ref9, **TOL)
    torch.testing.assert_close(out10, ref10, **TOL)
    a0 = graph.icd10_codes.index("A00.0")
    torch.testing.assert_close(out10[a0], F.elu(x10[a0]), rtol=0, atol=0)  # no GEM link


# ------------------------------------------------------------------ CUDA
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
@pytest.mark.parametrize("heads", [1, 2])
def test_cuda_matches_cpu(heads):
    x9, x10, edge_index, weight = random_graph(seed=12)
    assert_cuda_matches_cpu(heads, x9, x10, edge_index, weight)


def assert_cuda_matches_cpu(heads, x9, x10, edge_index, weight):
    """Outputs and gradients of one layer on CUDA equal those on the CPU (float64);
    ``edge_index`` / ``weight``: tensors or (ICD-9, ICD-10) pairs."""
    def cuda(value):
        return tuple(t.cuda() for t in value) if isinstance(value, tuple) else value.cuda()

    conv = make_conv(heads)
    cuda_conv = make_conv(heads).cuda()
    xs = [t.clone().requires_grad_() for t in (x9, x10)]
    xs_cuda = [t.cuda().requires_grad_() for t in (x9, x10)]
    cpu = conv(tuple(xs), edge_index, weight)
    gpu = cuda_conv(tuple(xs_cuda), cuda(edge_index), cuda(weight))
    for a, b in zip(cpu, gpu, strict=True):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-9, atol=1e-11)
    sum(o.sum() for o in cpu).backward()
    sum(o.sum() for o in gpu).backward()
    for a, b in zip(xs, xs_cuda, strict=True):
        torch.testing.assert_close(b.grad.cpu(), a.grad, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(cuda_conv.att.grad.cpu(), conv.att.grad, rtol=1e-9, atol=1e-11)


# ------------------------------------------------- directional link sets
def dense_directional(x9, x10, adj9, adj10, att, slope=0.2):
    """Matrix form of the official code: ``adj9 [n, m]`` holds the ω of the links
    updating ICD-9 codes, ``adj10 [m, n]`` those updating ICD-10 codes (0: no link).
    Softmax over a self column and the masked cross scores, ω after it, heads
    averaged, ELU. Returns outputs and per-head attention ``(self [N], cross [N, M])``."""
    heads, d = att.size(0), x9.size(1)

    def update(x_own, x_other, adj):
        outs, alphas = [], []
        for h in range(heads):
            a_own, a_other = att[h, :d], att[h, d:]
            own = x_own @ a_own
            e_self = F.leaky_relu(own + x_own @ a_other, slope)
            e_cross = F.leaky_relu(own[:, None] + (x_other @ a_other)[None, :], slope)
            e_cross = torch.where(adj != 0, e_cross, torch.full_like(e_cross, -torch.inf))
            alpha = torch.softmax(torch.cat([e_self[:, None], e_cross], dim=1), dim=1)
            s, cross = alpha[:, 0], alpha[:, 1:]
            outs.append(s[:, None] * x_own + (cross * adj) @ x_other)
            alphas.append((s, cross))
        return F.elu(torch.stack(outs).mean(dim=0)), alphas

    out9, alpha9 = update(x9, x10, adj9)
    out10, alpha10 = update(x10, x9, adj10)
    return out9, out10, alpha9, alpha10


def dense_adjacency(edge_index, weight, rows, cols, transpose=False):
    """Dense ω matrix of a link set (differentiable in ``weight``); ``[rows, cols]``
    indexed by (ICD-9, ICD-10), or (ICD-10, ICD-9) with ``transpose``."""
    if weight is None:
        weight = torch.ones(edge_index.size(1), dtype=DT)
    index = (edge_index[1], edge_index[0]) if transpose else (edge_index[0], edge_index[1])
    return torch.zeros(rows, cols, dtype=DT).index_put(index, weight)


def directional_graph(seed=0):
    """Two different link sets between 8 ICD-9 and 10 ICD-10 codes, each in its own
    shuffled order: 6 links in both sets (with ω that may differ between them), 8
    only in the ICD-9 set (3 of them to ICD-10 codes 6..8, linked in no other way)
    and 9 only in the ICD-10 set (3 of them from ICD-9 codes 5..6, likewise). ICD-9
    code 7 and ICD-10 code 9 have no link at all. E9 = 14, E10 = 15."""
    g = torch.Generator().manual_seed(seed)
    n, m = 8, 10
    grid = torch.cartesian_prod(torch.arange(5), torch.arange(6)).t()  # ICD-9 0..4, ICD-10 0..5
    grid = grid[:, torch.randperm(grid.size(1), generator=g)]
    r9 = torch.randint(0, 5, (3,), generator=g)
    r10 = torch.randint(0, 6, (3,), generator=g)
    only9 = torch.cat([grid[:, 6:11], torch.stack([r9, torch.tensor([6, 7, 8])])], dim=1)
    only10 = torch.cat([grid[:, 11:17], torch.stack([torch.tensor([5, 6, 5]), r10])], dim=1)
    ei9 = torch.cat([grid[:, :6], only9], dim=1)
    ei10 = torch.cat([only10, grid[:, :6]], dim=1)
    ei9 = ei9[:, torch.randperm(ei9.size(1), generator=g)]
    ei10 = ei10[:, torch.randperm(ei10.size(1), generator=g)]

    def omega(size):
        return torch.where(torch.rand(size, generator=g) < 0.5, 1.0, 0.5).to(DT)

    x9 = torch.randn(n, 5, generator=g, dtype=DT)
    x10 = torch.randn(m, 5, generator=g, dtype=DT)
    return x9, x10, (ei9, ei10), (omega(ei9.size(1)), omega(ei10.size(1)))


def test_directional_graph_has_one_way_links():
    # the fixtures below exercise links present in one direction only
    _, _, (ei9, ei10), _ = directional_graph()
    set9 = {tuple(c) for c in ei9.t().tolist()}
    set10 = {tuple(c) for c in ei10.t().tolist()}
    assert set9 & set10 and set9 - set10 and set10 - set9
    # ICD-9 codes linked only in the ICD-10 set update as isolated codes
    assert set(ei10[0].tolist()) - set(ei9[0].tolist())
    assert set(ei9[1].tolist()) - set(ei10[1].tolist())


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("heads", [1, 2])
@pytest.mark.parametrize("weights", ["both", "none", "icd9_only", "icd10_only"])
def test_directional_matches_dense_reference_values_and_gradients(heads, fused, weights):
    x9, x10, (ei9, ei10), (w9, w10) = directional_graph(seed=heads)
    n, m = x9.size(0), x10.size(0)
    conv = make_conv(heads, fused=fused)
    for t in (x9, x10, w9, w10):
        t.requires_grad_()
    pair = {
        "both": (w9, w10),
        "none": None,
        "icd9_only": (w9, None),
        "icd10_only": (None, w10),
    }[weights]
    out9, out10 = conv((x9, x10), (ei9, ei10), pair)
    p9, p10 = (None, None) if pair is None else pair
    adj9 = dense_adjacency(ei9, p9, n, m)
    adj10 = dense_adjacency(ei10, p10, m, n, transpose=True)
    ref9, ref10, _, _ = dense_directional(x9, x10, adj9, adj10, conv.att)
    torch.testing.assert_close(out9, ref9, **TOL)
    torch.testing.assert_close(out10, ref10, **TOL)
    # codes whose links all lie in the other set keep only themselves
    lonely9 = sorted(set(range(n)) - set(ei9[0].tolist()))
    torch.testing.assert_close(out9[lonely9], F.elu(x9)[lonely9], rtol=0, atol=0)

    g = torch.Generator().manual_seed(5)
    r9 = torch.randn(out9.shape, generator=g, dtype=DT)
    r10 = torch.randn(out10.shape, generator=g, dtype=DT)
    names = ["x_icd9", "x_icd10", "att"]
    inputs = [x9, x10, conv.att]
    for name, w in (("edge_weight_icd9", p9), ("edge_weight_icd10", p10)):
        if w is not None:
            names.append(name)
            inputs.append(w)
    got = torch.autograd.grad((out9 * r9).sum() + (out10 * r10).sum(), inputs)
    want = torch.autograd.grad((ref9 * r9).sum() + (ref10 * r10).sum(), inputs)
    for name, a, b in zip(names, got, want, strict=True):
        assert b.abs().sum() > 0, name
        torch.testing.assert_close(a, b, **TOL, msg=lambda msg, name=name: f"grad {name}: {msg}")


@pytest.mark.parametrize("heads", [1, 2])
def test_directional_attention_weights_align_with_their_own_sets(heads):
    x9, x10, (ei9, ei10), (w9, w10) = directional_graph(seed=3)
    n, m = x9.size(0), x10.size(0)
    conv = make_conv(heads)
    edges = (ei9, ei10)
    _, (got_edges, a9, a10, s9, s10) = conv(
        (x9, x10), edges, (w9, w10), return_attention_weights=True
    )
    assert got_edges is edges
    assert a9.shape == (ei9.size(1), heads) and a10.shape == (ei10.size(1), heads)
    assert s9.shape == (n, heads) and s10.shape == (m, heads)
    adj9 = dense_adjacency(ei9, w9, n, m)
    adj10 = dense_adjacency(ei10, w10, m, n, transpose=True)
    _, _, ref9, ref10 = dense_directional(x9, x10, adj9, adj10, conv.att)
    for h in range(heads):
        torch.testing.assert_close(a9[:, h], ref9[h][1][ei9[0], ei9[1]], **TOL)
        torch.testing.assert_close(a10[:, h], ref10[h][1][ei10[1], ei10[0]], **TOL)
        torch.testing.assert_close(s9[:, h], ref9[h][0], **TOL)
        torch.testing.assert_close(s10[:, h], ref10[h][0], **TOL)
    # each code's weights over {self} ∪ its own set's neighbours sum to one
    total9 = s9.clone().index_add_(0, ei9[0], a9)
    total10 = s10.clone().index_add_(0, ei10[1], a10)
    torch.testing.assert_close(total9, torch.ones_like(total9), **TOL)
    torch.testing.assert_close(total10, torch.ones_like(total10), **TOL)
    # codes without a link in their own set listen only to themselves
    lonely9 = sorted(set(range(n)) - set(ei9[0].tolist()))
    lonely10 = sorted(set(range(m)) - set(ei10[1].tolist()))
    assert len(lonely9) >= 2 and len(lonely10) >= 2
    assert torch.equal(s9[lonely9], torch.ones(len(lonely9), heads, dtype=DT))
    assert torch.equal(s10[lonely10], torch.ones(len(lonely10), heads, dtype=DT))


@pytest.mark.parametrize("fused", [True, False])
def test_pair_of_identical_sets_equals_tensor_form(fused):
    x9, x10, edge_index, weight = random_graph(seed=15)
    conv = make_conv(heads=2, fused=fused)
    (t9, t10), att_t = conv((x9, x10), edge_index, weight, return_attention_weights=True)
    # the same tensor twice: the shared (symmetric) structure, bit for bit
    (p9, p10), att_p = conv(
        (x9, x10), (edge_index, edge_index), (weight, weight), return_attention_weights=True
    )
    for a, b in zip((t9, t10, *att_t[1:]), (p9, p10, *att_p[1:]), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the ICD-10 set in another order: weights follow their own set's columns
    perm = torch.randperm(edge_index.size(1), generator=torch.Generator().manual_seed(1))
    (q9, q10), att_q = conv(
        (x9, x10),
        (edge_index, edge_index[:, perm]),
        (weight, weight[perm]),
        return_attention_weights=True,
    )
    torch.testing.assert_close(q9, t9, **TOL)
    torch.testing.assert_close(q10, t10, **TOL)
    torch.testing.assert_close(att_q[1], att_t[1], **TOL)
    torch.testing.assert_close(att_q[2], att_t[2][perm], **TOL)
    torch.testing.assert_close(att_q[3], att_t[3], **TOL)
    torch.testing.assert_close(att_q[4], att_t[4], **TOL)
    # no weights on either side: the same as no weights at all
    a = conv((x9, x10), edge_index)
    b = conv((x9, x10), (edge_index, edge_index[:, perm]))
    c = conv((x9, x10), (edge_index, edge_index), (None, None))
    torch.testing.assert_close(a, b, **TOL)
    torch.testing.assert_close(a, c, rtol=0, atol=0)


def test_directional_empty_sets():
    x9, x10, (ei9, ei10), (_, w10) = directional_graph(seed=4)
    empty = torch.empty(2, 0, dtype=torch.long)
    conv = make_conv(heads=2)
    for fused in (True, False):
        conv.fused = fused
        out9, out10 = conv((x9, x10), (empty, ei10), (torch.empty(0, dtype=DT), w10))
        torch.testing.assert_close(out9, F.elu(x9), rtol=0, atol=0)
        assert not torch.allclose(out10, F.elu(x10))
        out9, out10 = conv((x9, x10), (ei9, empty))
        torch.testing.assert_close(out10, F.elu(x10), rtol=0, atol=0)
        assert not torch.allclose(out9, F.elu(x9))


@pytest.mark.parametrize("with_weight", [True, False])
@pytest.mark.parametrize("sizes", [(8, 10), (12, 10)])  # both buffer-reuse orders
def test_directional_fused_aggregation_gradcheck(with_weight, sizes):
    n, m = sizes
    _, _, (ei9, ei10), (w9, w10) = directional_graph(seed=6)
    x9 = torch.randn(n, 3, dtype=DT, generator=torch.Generator().manual_seed(1))
    x10 = torch.randn(m, 3, dtype=DT, generator=torch.Generator().manual_seed(2))
    csr = build_bipartite_csr((ei9, ei10), n, m)
    assert not csr.symmetric
    assert (csr.num_edges9, csr.num_edges10) == (14, 15)
    size = ei9.size(1) + ei10.size(1) + n + m
    alpha = torch.rand(size, generator=torch.Generator().manual_seed(0), dtype=DT)
    inputs = [alpha, w9, w10, x9, x10]
    for t in inputs:
        t.requires_grad_()

    def fn(alpha, w9, w10, x9, x10):
        return mat_aggregate(alpha, (w9, w10) if with_weight else None, x9, x10, csr)

    assert torch.autograd.gradcheck(fn, inputs, fast_mode=True)
    with pytest.raises(TypeError, match="pair"):
        mat_aggregate(alpha, w9, x9, x10, csr)


@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [
        (
            lambda a: {**a, "edge_index": (*a["edge_index"], a["edge_index"][0])},
            TypeError,
            "3 items",
        ),
        (
            lambda a: {**a, "edge_index": (a["edge_index"][0], a["edge_index"][1].tolist())},
            TypeError,
            "edge_index_icd10 is a list",
        ),
        (
            lambda a: {**a, "edge_index": (a["edge_index"][0].t(), a["edge_index"][1])},
            ValueError,
            r"edge_index_icd9 must have shape \[2, num_edges\]",
        ),
        (
            lambda a: {
                **a,
                "edge_index": (
                    a["edge_index"][0],
                    torch.cat([a["edge_index"][1], torch.tensor([[0], [10]])], 1),
                ),
                "edge_weight": None,
            },
            IndexError,
            r"edge_index_icd10\[1\] holds ICD-10 index 10.*x_icd10 with 10 rows",
        ),
        (
            lambda a: {
                **a,
                "edge_index": (
                    torch.cat([a["edge_index"][0], torch.tensor([[8], [0]])], 1),
                    a["edge_index"][1],
                ),
                "edge_weight": None,
            },
            IndexError,
            r"edge_index_icd9\[0\] holds ICD-9 index 8.*x_icd9 with 8 rows",
        ),
        (
            lambda a: {**a, "edge_weight": a["edge_weight"][0]},
            TypeError,
            r"edge_weight must be None or a pair \(edge_weight_icd9, edge_weight_icd10\)",
        ),
        (
            lambda a: {**a, "edge_weight": (*a["edge_weight"], a["edge_weight"][0])},
            TypeError,
            "3 items",
        ),
        (
            lambda a: {**a, "edge_weight": (a["edge_weight"][0], a["edge_weight"][1][:-1])},
            ValueError,
            r"edge_weight_icd10 must have shape \[15\].*edge_index_icd10.*\(14,\)",
        ),
        (
            lambda a: {**a, "edge_weight": (a["edge_weight"][1], a["edge_weight"][0])},
            ValueError,
            r"edge_weight_icd9 must have shape \[14\].*edge_index_icd9.*\(15,\)",
        ),
        (
            lambda a: {**a, "edge_weight": (a["edge_weight"][0][:, None], None)},
            ValueError,
            r"edge_weight_icd9.*\(14, 1\)",
        ),
        (
            lambda a: {**a, "edge_weight": (None, [1.0] * 15)},
            TypeError,
            "edge_weight_icd10 must be a Tensor",
        ),
        (
            lambda a: {**a, "edge_index": a["edge_index"][0]},
            TypeError,
            "a pair .* goes with a pair",
        ),
    ],
)
def test_bad_directional_input_raises_clear_error(mutate, error, match):
    x9, x10, (ei9, ei10), (w9, w10) = directional_graph()
    assert (ei9.size(1), ei10.size(1)) == (14, 15)
    args = {"x": (x9, x10), "edge_index": (ei9, ei10), "edge_weight": (w9, w10)}
    args = mutate(args)
    with pytest.raises(error, match=match):
        make_conv()(**args)


# ---------------------------------------- structure cache keyed on content
def test_structure_cache_sees_changes_through_data():
    x9, x10, edge_index, weight = random_graph(seed=16)
    conv = make_conv()
    conv((x9, x10), edge_index, weight)
    structure = conv._cache[0][2]
    # .data changes leave the version counter alone: only the content shows them
    edge_index.data[0, 0] = (edge_index[0, 0] + 1) % 5
    got = conv((x9, x10), edge_index, weight)
    assert conv._cache[0][2] is not structure
    want = make_conv(cached=False)((x9, x10), edge_index, weight)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    # an equal copy (another storage) reuses the structure
    structure = conv._cache[0][2]
    conv((x9, x10), edge_index.clone(), weight)
    assert conv._cache[0][2] is structure
    # an out-of-range index written through .data is rejected, not used
    edge_index.data[0, 0] = 77
    with pytest.raises(IndexError, match="ICD-9 index 77"):
        conv((x9, x10), edge_index, weight)


def test_structure_cache_of_a_pair_follows_both_sets():
    x9, x10, (ei9, ei10), (w9, w10) = directional_graph(seed=7)
    conv = make_conv(heads=2)
    conv((x9, x10), (ei9, ei10), (w9, w10))
    structure = conv._cache[0][2]
    conv((x9, x10), (ei9.clone(), ei10.clone()), (w9, w10))
    assert conv._cache[0][2] is structure
    ei10.data[0, 0] = 7 - ei10[0, 0]  # still in range, another link
    got = conv((x9, x10), (ei9, ei10), (w9, w10))
    assert conv._cache[0][2] is not structure
    want = make_conv(heads=2, cached=False)((x9, x10), (ei9, ei10), (w9, w10))
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    ei10.data[1, 0] = 10
    with pytest.raises(IndexError, match=r"edge_index_icd10\[1\] holds ICD-10 index 10"):
        conv((x9, x10), (ei9, ei10), (w9, w10))
    # the tensor form after the pair form (and back) rebuilds the structure
    ei10.data[1, 0] = 0
    a = conv((x9, x10), ei9, w9)
    b = make_conv(heads=2, cached=False)((x9, x10), ei9, w9)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


# ------------------------------------------------------------------ dtypes
def test_tables_of_another_dtype_than_the_layer_are_rejected():
    x9, x10, edge_index, weight = random_graph(seed=17)
    conv = MATConv(5)  # float32 parameters
    with pytest.raises(ValueError, match=r"float64.*float32.*conv\.to\(torch\.float64\)"):
        conv((x9, x10), edge_index, weight)
    with pytest.raises(ValueError, match=r"bfloat16.*float32"):
        conv((x9.bfloat16(), x10.bfloat16()), edge_index, weight)
    with pytest.raises(ValueError, match="floating point"):
        conv((x9.long(), x10.long()), edge_index, weight)
    # after conv.to(dtype) the tables are accepted
    out9, out10 = conv.to(DT)((x9, x10), edge_index, weight)
    assert out9.dtype == out10.dtype == DT


@pytest.mark.parametrize("fused", [True, False])
def test_autocast_mixes_dtypes(fused):
    x9, x10, edge_index, weight = random_graph(seed=18)
    x9, x10 = x9.float(), x10.float()
    conv = make_conv(heads=2, fused=fused).float()
    want = conv((x9, x10), edge_index, weight)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        same = conv((x9, x10), edge_index, weight)  # float32 tables and layer
        low = conv((x9.bfloat16(), x10.bfloat16()), edge_index, weight)  # bf16 tables
        # float64 is left alone by autocast: still a clear error
        with pytest.raises(ValueError, match=r"float64.*float32"):
            conv((x9.double(), x10.double()), edge_index, weight)
    assert same[0].dtype == torch.float32 and low[0].dtype == torch.bfloat16
    for got in (same, low):
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a.float(), b, rtol=0.05, atol=0.05)


# --------------------------------------------------------- finite tables
@pytest.mark.parametrize("fused", [True, False])
def test_check_finite_names_the_table_and_row(fused):
    x9, x10, edge_index, weight = random_graph(seed=19)
    conv = make_conv(fused=fused, check_finite=True)
    want = make_conv(fused=fused)((x9, x10), edge_index, weight)
    torch.testing.assert_close(conv((x9, x10), edge_index, weight), want, rtol=0, atol=0)
    bad10 = x10.clone()
    bad10[3, 2] = float("nan")
    bad10[5, 0] = float("inf")
    with pytest.raises(ValueError, match=r"x_icd10 .*\(nan\) at row 3, column 2"):
        conv((x9, bad10), edge_index, weight)
    bad9 = x9.clone()
    bad9[4, 1] = -float("inf")
    with pytest.raises(ValueError, match=r"x_icd9 .*\(-inf\) at row 4, column 1"):
        conv((bad9, bad10), edge_index, weight)
    # off by default: the NaN flows through
    _, out10 = make_conv(fused=fused)((x9, bad10), edge_index, weight)
    assert torch.isnan(out10).any()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_directional_matches_cpu():
    x9, x10, edge_index, weight = directional_graph(seed=20)
    assert_cuda_matches_cpu(2, x9, x10, edge_index, weight)


def test_only_the_weighted_sum_aggregation():
    # MATConv(4, aggr="mean") used to give different outputs fused and unfused
    with pytest.raises(ValueError, match="aggr must be 'add', got 'mean'"):
        MATConv(4, aggr="mean")
    assert MATConv(4, aggr="add").aggr == "add"


# ----------------------------------------------- ω reaches every direction
def _changed_rows(a, b):
    return (a - b).abs().sum(1).gt(0).nonzero().view(-1).tolist()


@pytest.mark.parametrize("fused", [True, False])
def test_omega_of_one_link_moves_exactly_the_codes_it_updates(fused):
    # Would fail if ω were ignored (or sent to the wrong codes) in any one direction
    # of either form: each change is checked against the dense reference too.
    conv = make_conv(heads=2, fused=fused)
    x9, x10, (ei9, ei10), (w9, w10) = directional_graph(seed=21)
    n, m = x9.size(0), x10.size(0)
    base = conv((x9, x10), (ei9, ei10), (w9, w10))
    for side, k in (("icd9", 3), ("icd10", 5)):
        v9, v10 = w9.clone(), w10.clone()
        target = v9 if side == "icd9" else v10
        target[k] = 0.25 if target[k] != 0.25 else 1.0
        out9, out10 = conv((x9, x10), (ei9, ei10), (v9, v10))
        ref9, ref10, _, _ = dense_directional(
            x9, x10, dense_adjacency(ei9, v9, n, m),
            dense_adjacency(ei10, v10, m, n, transpose=True), conv.att)
        torch.testing.assert_close(out9, ref9, **TOL)
        torch.testing.assert_close(out10, ref10, **TOL)
        if side == "icd9":
            assert _changed_rows(out9, base[0]) == [int(ei9[0, k])]
            assert _changed_rows(out10, base[1]) == []
        else:
            assert _changed_rows(out9, base[0]) == []
            assert _changed_rows(out10, base[1]) == [int(ei10[1, k])]
    # one symmetric set: the link's ω reaches both of its codes
    x9, x10, edge_index, weight = random_graph(seed=22)
    base = conv((x9, x10), edge_index, weight)
    changed = weight.clone()
    changed[2] = 0.25
    out9, out10 = conv((x9, x10), edge_index, changed)
    ref9, ref10, _, _ = dense_mat(x9, x10, edge_list(edge_index, changed), conv.att)
    torch.testing.assert_close(out9, ref9, **TOL)
    torch.testing.assert_close(out10, ref10, **TOL)
    assert _changed_rows(out9, base[0]) == [int(edge_index[0, 2])]
    assert _changed_rows(out10, base[1]) == [int(edge_index[1, 2])]
