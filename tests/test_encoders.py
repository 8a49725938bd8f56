"""Text encoders: shapes, backward, padding invariance and reference computations."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from jams_pyg.models import (
    CAMLEncoder,
    LSTMEncoder,
    MaskedBatchNorm1d,
    MultiResCNNEncoder,
    PLMEncoder,
    make_word_embedding,
)

VOCAB = 40


def _tiny_roberta(**kw):
    from transformers import RobertaConfig

    params = {
        "vocab_size": VOCAB,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 37,
        "max_position_embeddings": 40,
        "pad_token_id": 1,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }
    params.update(kw)
    return RobertaConfig(**params)


def _encoders():
    return {
        "caml": lambda: CAMLEncoder(VOCAB, 8, num_filters=6, kernel_size=4, embed_dropout=0.0),
        "multirescnn": lambda: MultiResCNNEncoder(
            VOCAB, 8, num_filters=3, kernel_sizes=(3, 4, 7), embed_dropout=0.0
        ),
        "laat": lambda: LSTMEncoder(VOCAB, 8, hidden_size=5, embed_dropout=0.0),
        "plm_icd": lambda: PLMEncoder(_tiny_roberta(), chunk_size=8),
    }


WIDTH = {"caml": 6, "multirescnn": 9, "laat": 10, "plm_icd": 32}


def _batch(seed=0, length=13):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, VOCAB, (3, length), generator=g)
    lengths = torch.tensor([length, 6, 9])
    mask = torch.arange(length)[None, :] < lengths[:, None]
    return ids.masked_fill(~mask, 0), mask


@pytest.mark.parametrize("name", ["caml", "multirescnn", "laat", "plm_icd"])
def test_shapes_and_backward(name):
    torch.manual_seed(0)
    enc = _encoders()[name]()
    ids, mask = _batch()
    h, m = enc(ids, mask)
    assert h.shape == (3, 13, WIDTH[name]) and enc.out_channels == WIDTH[name]
    assert torch.equal(m, mask)
    assert torch.count_nonzero(h[~mask]) == 0  # pad positions are zero
    h.pow(2).sum().backward()
    grads = [p.grad for p in enc.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("name", ["caml", "multirescnn", "laat", "plm_icd"])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_appending_padding_changes_no_token_representation(name, train):
    """Also in training mode: MultiResCNN's batch norm takes statistics over tokens only."""
    torch.manual_seed(1)
    enc = _encoders()[name]().train(train)
    ids, mask = _batch()
    extra = 11
    ids_pad = F.pad(ids, (0, extra))
    mask_pad = F.pad(mask, (0, extra))
    h, _ = enc(ids, mask)
    h_pad, _ = enc(ids_pad, mask_pad)
    torch.testing.assert_close(h_pad[:, :13], h, atol=1e-5, rtol=1e-5)
    assert torch.count_nonzero(h_pad[:, 13:]) == 0


def test_mask_defaults_to_nonzero_ids():
    enc = _encoders()["caml"]()
    ids, mask = _batch()
    torch.testing.assert_close(enc(ids)[0], enc(ids, mask)[0])
    with pytest.raises(ValueError, match="attention_mask shape"):
        enc(ids, mask[:, :4])
    with pytest.raises(ValueError, match=r"input_ids must be \[B, L\]"):
        enc(ids[0])


def test_caml_equals_a_plain_convolution():
    torch.manual_seed(2)
    enc = CAMLEncoder(VOCAB, 8, num_filters=6, kernel_size=10, embed_dropout=0.0)
    ids = torch.randint(2, VOCAB, (1, 15))
    h, _ = enc(ids, torch.ones_like(ids, dtype=torch.bool))
    x = enc.embed.weight[ids[0]].T[None]  # [1, 8, 15]
    ref = torch.tanh(F.conv1d(F.pad(x, (4, 5)), enc.conv.weight, enc.conv.bias))
    torch.testing.assert_close(h, ref.transpose(1, 2))


@pytest.mark.parametrize("num_layers", [1, 2])
def test_lstm_equals_torch_bidirectional_lstm_per_document(num_layers):
    torch.manual_seed(3)
    enc = LSTMEncoder(VOCAB, 8, hidden_size=5, num_layers=num_layers, embed_dropout=0.0,
                      rnn_dropout=0.0)
    # Reference: PyTorch's own bidirectional LSTM with the same weights, run on
    # each document alone (no padding at all).
    ref_rnn = torch.nn.LSTM(8, 5, num_layers=num_layers, bidirectional=True, batch_first=True)
    with torch.no_grad():
        for layer in range(num_layers):
            for direction, rnn in (("", enc.forward_rnns[layer]),
                                   ("_reverse", enc.backward_rnns[layer])):
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(ref_rnn, f"{name}_l{layer}{direction}").copy_(
                        getattr(rnn, f"{name}_l0"))
    ids, mask = _batch()
    h, _ = enc(ids, mask)
    for b in range(3):
        n = int(mask[b].sum())
        ref, _ = ref_rnn(enc.embed(ids[b : b + 1, :n]))
        torch.testing.assert_close(h[b : b + 1, :n], ref, atol=1e-6, rtol=1e-5)
        assert torch.all(h[b, n:] == 0)


def test_lstm_rejects_left_padding():
    enc = LSTMEncoder(VOCAB, 8, hidden_size=5)
    ids, mask = _batch()
    with pytest.raises(ValueError, match="right-padded"):
        enc(ids, mask.flip(1))


def test_masked_batch_norm_uses_token_statistics_only():
    torch.manual_seed(4)
    x = torch.randn(3, 4, 6)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[1, 3:] = False
    mask[2, 1:] = False
    bn, ref = MaskedBatchNorm1d(4), nn.BatchNorm1d(4)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    ref.load_state_dict(bn.state_dict())
    out = bn(x, mask)
    tokens = x.transpose(1, 2)[mask]  # [N, 4] the real tokens only
    expected = ref(tokens)
    torch.testing.assert_close(out.transpose(1, 2)[mask], expected, atol=1e-5, rtol=1e-5)
    assert torch.count_nonzero(out.transpose(1, 2)[~mask]) == 0
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    torch.testing.assert_close(bn.running_var, ref.running_var)
    bn.eval()
    ref.eval()
    torch.testing.assert_close(bn(x, mask).transpose(1, 2)[mask], ref(tokens), atol=1e-5, rtol=1e-5)
    # without a mask it is the ordinary batch norm
    torch.testing.assert_close(bn(x), ref(x))


def test_multirescnn_blocks_and_width():
    enc = MultiResCNNEncoder(VOCAB)
    assert enc.kernel_sizes == (3, 5, 9, 15, 19, 25)
    assert enc.out_channels == 300 and enc.embedding_dim == 100
    assert [c.kernel_size[0] for c in enc.convs] == [3, 5, 9, 15, 19, 25]
    with pytest.raises(ValueError, match="at least one kernel"):
        MultiResCNNEncoder(VOCAB, kernel_sizes=())


def test_plm_chunks_are_encoded_independently_and_concatenated():
    torch.manual_seed(5)
    enc = PLMEncoder(_tiny_roberta(), chunk_size=8).eval()
    ids, mask = _batch(length=21)  # lengths 21, 6, 9: 3 chunks, the last partly padded
    h, _ = enc(ids, mask)
    with torch.no_grad():
        for b in range(3):
            n = int(mask[b].sum())
            for start in range(0, n, 8):
                chunk = ids[b : b + 1, start : min(start + 8, n)]
                ref = enc.plm(input_ids=chunk).last_hidden_state
                torch.testing.assert_close(
                    h[b : b + 1, start : start + chunk.size(1)], ref, atol=1e-5, rtol=1e-5
                )


def test_plm_skips_all_pad_chunks():
    torch.manual_seed(6)
    enc = PLMEncoder(_tiny_roberta(), chunk_size=8).eval()
    seen = []
    enc.plm.embeddings.register_forward_hook(lambda mod, inp, out: seen.append(out.shape[0]))
    ids, mask = _batch(length=13)
    enc(F.pad(ids, (0, 19)), F.pad(mask, (0, 19)))  # 4 chunks per document, 5 with tokens
    assert seen == [5]


def test_plm_config_checks():
    with pytest.raises(ValueError, match="exceeds the model's"):
        PLMEncoder(_tiny_roberta(), chunk_size=64)
    with pytest.raises(TypeError, match="plm_path_or_config must be"):
        PLMEncoder(3.5)
    enc = PLMEncoder({"model_type": "roberta", **_tiny_roberta().to_dict()}, chunk_size=8)
    assert enc.out_channels == 32 and enc.pad_token_id == 1


def test_plm_from_a_local_directory(tmp_path):
    from transformers import RobertaModel

    RobertaModel(_tiny_roberta(), add_pooling_layer=False).save_pretrained(tmp_path)
    enc = PLMEncoder(str(tmp_path), chunk_size=8)
    ids, mask = _batch()
    assert enc(ids, mask)[0].shape == (3, 13, 32)


def test_word_embedding_from_pretrained_vectors():
    vectors = torch.randn(VOCAB, 8)
    emb = make_word_embedding(VOCAB, 8, vectors.numpy(), freeze=True)
    assert not emb.weight.requires_grad and emb.padding_idx == 0
    torch.testing.assert_close(emb.weight[1:], vectors[1:])
    assert torch.count_nonzero(emb.weight[0]) == 0
    with pytest.raises(ValueError, match="width 8 but embedding_dim is 9"):
        make_word_embedding(VOCAB, 9, vectors)
    with pytest.raises(ValueError, match="must be 2-D"):
        make_word_embedding(VOCAB, 8, vectors[0])
    enc = CAMLEncoder(VOCAB, 8)
    with pytest.raises(ValueError, match="token id out of range"):
        enc(torch.full((1, 3), VOCAB))
