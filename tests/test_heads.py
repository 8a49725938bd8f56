"""Label-attention heads against a dense, loop-by-loop computation of their formulas."""

import pytest
import torch

from jams_pyg.models import CAMLHead, LAATHead, label_attention, label_attention_weights

B, L, H, D, C = 3, 7, 10, 4, 5


def _inputs(seed=0, h=H, d=D, c=C):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, L, h, generator=g)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[1, 5:] = False
    mask[2, 2:] = False
    codes = torch.randn(c, d, generator=g)
    bias = torch.randn(c, generator=g)
    return x, mask, codes, bias


def _dense_reference(head, x, mask, codes, bias, outputs=None):
    """Explicit loops over documents and codes, softmax over the document's tokens only."""
    if isinstance(head, LAATHead):
        keys = torch.tanh(x @ head.proj.weight.T)
        queries = codes
    else:
        keys = x
        queries = codes if head.query_proj is None else codes @ head.query_proj.weight.T
    out_vec = outputs if outputs is not None else codes @ head.output_proj.weight.T
    logits = torch.empty(x.size(0), codes.size(0))
    weights = torch.zeros(x.size(0), codes.size(0), x.size(1))
    for b in range(x.size(0)):
        n = int(mask[b].sum())
        for c in range(codes.size(0)):
            scores = torch.stack([queries[c] @ keys[b, i] for i in range(n)])
            a = torch.exp(scores - scores.max())
            a = a / a.sum()
            v = sum(a[i] * x[b, i] for i in range(n))
            logits[b, c] = out_vec[c] @ v + bias[c]
            weights[b, c, :n] = a
    return logits, weights


@pytest.mark.parametrize("impl", ["explicit", "sdpa"])
@pytest.mark.parametrize(
    "make",
    [
        lambda impl: LAATHead(H, D, attention=impl),
        lambda impl: CAMLHead(H, D, attention=impl),  # d != h: query projection
        lambda impl: CAMLHead(H, H, attention=impl),  # queries act directly on H
    ],
    ids=["laat", "caml_proj", "caml_direct"],
)
def test_head_equals_dense_formula(make, impl):
    torch.manual_seed(0)
    head = make(impl)
    x, mask, codes, bias = _inputs(d=head.code_channels)
    ref, ref_w = _dense_reference(head, x, mask, codes, bias)
    logits = head(x, mask, codes, bias)
    assert logits.shape == (B, C)
    torch.testing.assert_close(logits, ref, atol=1e-5, rtol=1e-5)
    logits2, weights = head(x, mask, codes, bias, return_attention=True)
    torch.testing.assert_close(logits2, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, ref_w, atol=1e-6, rtol=1e-5)


def test_separate_output_vectors():
    torch.manual_seed(1)
    head = LAATHead(H, D, output_proj=False)
    assert head.output_proj is None
    x, mask, codes, bias = _inputs()
    outputs = torch.randn(C, H)
    ref, _ = _dense_reference(head, x, mask, codes, bias, outputs=outputs)
    torch.testing.assert_close(head(x, mask, codes, bias, outputs), ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="output_proj=False"):
        head(x, mask, codes, bias)
    with pytest.raises(ValueError, match="outputs must be"):
        head(x, mask, codes, bias, torch.randn(C, H + 1))


@pytest.mark.parametrize("h,d", [(10, 4), (8, 8), (6, 8), (12, 4)])
def test_sdpa_equals_explicit_values_and_grads(h, d):
    """Fused path (value width a multiple of, not a multiple of, or below the key width)."""
    torch.manual_seed(2)
    x, mask, codes, _ = _inputs(h=h, d=d)
    keys = torch.randn(B, L, d)
    results = []
    for impl in ("explicit", "sdpa"):
        xs, ks, qs = (t.clone().requires_grad_(True) for t in (x, keys, codes))
        out = label_attention(qs, ks, xs, mask, impl)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out, xs.grad, ks.grad, qs.grad))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_sdpa_equals_explicit_per_document_queries():
    torch.manual_seed(3)
    x, mask, _, _ = _inputs()
    keys = torch.randn(B, L, D)
    queries = torch.randn(B, 6, D)
    torch.testing.assert_close(
        label_attention(queries, keys, x, mask, "sdpa"),
        label_attention(queries, keys, x, mask, "explicit"),
        atol=1e-5,
        rtol=1e-4,
    )


@pytest.mark.parametrize("impl", ["explicit", "sdpa"])
@pytest.mark.parametrize("head_cls", [LAATHead, CAMLHead])
def test_padding_never_changes_a_logit(head_cls, impl):
    torch.manual_seed(4)
    head = head_cls(H, D, attention=impl)
    x, mask, codes, bias = _inputs()
    ref = head(x, mask, codes, bias)
    # garbage in pad positions and 5 more pad positions appended
    x_pad = torch.cat([x, 100 * torch.randn(B, 5, H)], dim=1)
    x_pad[~torch.cat([mask, torch.zeros(B, 5, dtype=torch.bool)], 1)] = 50.0
    mask_pad = torch.cat([mask, torch.zeros(B, 5, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(head(x_pad, mask_pad, codes, bias), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", ["explicit", "sdpa"])
def test_document_without_tokens_gets_the_bias(impl):
    torch.manual_seed(5)
    head = LAATHead(H, D, attention=impl)
    x, mask, codes, bias = _inputs()
    mask[0] = False
    logits, weights = head(x, mask, codes, bias, return_attention=True)
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(logits[0], bias)
    assert torch.count_nonzero(weights[0]) == 0
    ref, _ = _dense_reference(head, x[1:], mask[1:], codes, bias)
    torch.testing.assert_close(logits[1:], ref, atol=1e-5, rtol=1e-5)


def test_attention_for_a_subset_of_codes():
    torch.manual_seed(6)
    head = LAATHead(H, D)
    x, mask, codes, bias = _inputs()
    _, ref_w = _dense_reference(head, x, mask, codes, bias)
    index = torch.tensor([4, 1])
    logits, weights = head(x, mask, codes, bias, return_attention=True, attention_index=index)
    assert logits.shape == (B, C) and weights.shape == (B, 2, L)
    torch.testing.assert_close(weights, ref_w[:, [4, 1]], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, 2))
    assert torch.count_nonzero(weights[~mask[:, None, :].expand_as(weights)]) == 0
    per_doc = torch.tensor([[0, 2], [3, 3], [1, 4]])
    _, w2 = head(x, mask, codes, bias, return_attention=True, attention_index=per_doc)
    expected = torch.stack([ref_w[b, per_doc[b]] for b in range(B)])
    torch.testing.assert_close(w2, expected, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="rows for a batch"):
        head(x, mask, codes, bias, return_attention=True, attention_index=per_doc[:2])


def test_one_softmax_behind_every_path():
    """The weights-only path, the weights forward returns and the explicit document vectors
    all come from label_attention_weights."""
    torch.manual_seed(8)
    head = LAATHead(H, D, attention="explicit")
    x, mask, codes, bias = _inputs()
    mask[0] = False  # a document without tokens
    keys = head.keys(x)
    index = torch.tensor([[0, 2], [3, 3], [1, 4]])
    _, weights = head(x, mask, codes, bias, return_attention=True, attention_index=index)
    torch.testing.assert_close(head.attention_weights(keys, mask, codes, index), weights,
                               rtol=0, atol=0)
    full = label_attention_weights(codes, keys, mask)
    assert full.dtype == torch.float32 and torch.count_nonzero(full[0]) == 0
    torch.testing.assert_close(label_attention(codes, keys, x, mask, "explicit"), full @ x,
                               rtol=0, atol=0)


def test_bad_shapes_are_named():
    head = CAMLHead(H, D)
    x, mask, codes, bias = _inputs()
    with pytest.raises(ValueError, match=r"codes must be \[C, 4\]"):
        head(x, mask, torch.randn(C, D + 1), bias)
    with pytest.raises(ValueError, match="mask shape"):
        head(x, mask[:, :3], codes, bias)
    with pytest.raises(ValueError, match=r"x must be \[B, L, 10\]"):
        head(x[..., :3], mask, codes, bias)
    with pytest.raises(ValueError, match="attention must be"):
        LAATHead(H, D, attention="flash")


def test_head_gradients_reach_codes_and_parameters():
    torch.manual_seed(7)
    head = LAATHead(H, D)
    x, mask, codes, bias = _inputs()
    codes.requires_grad_(True)
    head(x, mask, codes, bias).sum().backward()
    assert codes.grad.abs().sum() > 0
    assert head.proj.weight.grad.abs().sum() > 0
    assert head.output_proj.weight.grad.abs().sum() > 0
