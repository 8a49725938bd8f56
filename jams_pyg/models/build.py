"""Build the :class:`~jams_pyg.models.jams.JAMS` model a :class:`ModelConfig` describes:
the backbone's encoder(s), one label-attention head per coding system, the shared key
projection and MAT (see :mod:`jams_pyg.models.jams` for the official defaults)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from torch import Tensor, nn

from jams_pyg.models.config import CAMLConfig, ModelConfig, MultiResCNNConfig, PLMICDConfig
from jams_pyg.models.encoders import (
    CAMLEncoder,
    LSTMEncoder,
    MultiResCNNEncoder,
    TextEncoder,
)
from jams_pyg.models.heads import CAMLHead, LAATHead, LabelAttentionHead
from jams_pyg.models.jams import JAMS
from jams_pyg.models.plm_encoder import PLMEncoder

__all__ = ["build_model"]


def _build_encoder(config: ModelConfig, vocab: int, emb_dim: int | None,
                   embeddings: Tensor | np.ndarray | None) -> TextEncoder:
    """A fresh text encoder of ``config``'s backbone (``config.backbone``'s settings)."""
    b = config.backbone
    if isinstance(b, PLMICDConfig):
        if b.plm_path_or_config is None:
            raise ValueError("model 'plm_icd' needs plm_path_or_config (a local model dir)")
        return PLMEncoder(b.plm_path_or_config, b.chunk_size)
    # the word-level encoders end in (dropout, pretrained vectors, freeze them)
    word = (b.embed_dropout, embeddings, config.freeze_embeddings)
    if isinstance(b, CAMLConfig):
        return CAMLEncoder(vocab, emb_dim, b.num_filters, b.kernel_size, *word)
    if isinstance(b, MultiResCNNConfig):
        return MultiResCNNEncoder(vocab, emb_dim, b.num_filters, b.kernel_sizes, *word)
    return LSTMEncoder(vocab, emb_dim, b.rnn_hidden_size, b.rnn_num_layers, b.rnn_dropout,
                       *word)


def build_model(
    config: ModelConfig,
    graph: Any = None,
    num_codes: Mapping[str, int] | None = None,
    embeddings: Tensor | np.ndarray | None = None,
) -> JAMS:
    """Build the :class:`JAMS` model of ``config``.

    Args:
        config (ModelConfig): Backbone and JAMS settings.
        graph (GEMGraph, optional): GEM graph over the datasets' code lists (needed with
            ``use_mat``; its node counts give ``num_codes`` when that is omitted).
        num_codes (dict[str, int], optional): Codes per system.
        embeddings (Tensor or np.ndarray, optional): Pretrained word vectors
            ``[vocab_size, embedding_dim]`` for the word-level backbones.
    """
    if num_codes is None:
        if graph is None:
            raise ValueError("build_model needs num_codes or a graph")
        num_codes = {"icd9": graph.num_icd9, "icd10": graph.num_icd10}
    missing = [s for s in config.systems if s not in num_codes]
    if missing:
        raise ValueError(f"num_codes lacks system(s) {missing}")
    if config.use_mat and graph is None:
        raise ValueError("use_mat=True needs the GEM graph (graph=GEMGraph...)")
    m = config.model
    if m != "plm_icd" and config.vocab_size <= 0 and embeddings is None:
        raise ValueError(f"model {m!r} needs vocab_size > 0 (the word vocabulary size)")
    if m != "plm_icd" and embeddings is not None:
        vocab = config.vocab_size or int(np.shape(embeddings)[0])
        emb_dim = int(np.shape(embeddings)[1])
    else:
        vocab, emb_dim = config.vocab_size, config.embedding_dim
    encoder: TextEncoder | dict[str, TextEncoder]
    if config.shared_encoder:
        encoder = _build_encoder(config, vocab, emb_dim, embeddings)
        h = encoder.out_channels
    else:
        per_system = {s: _build_encoder(config, vocab, emb_dim, embeddings)
                      for s in config.systems}
        encoder, h = per_system, per_system[config.systems[0]].out_channels
    if m in ("laat", "plm_icd"):
        d = config.code_dim or config.backbone.projection_size or h
    else:
        d = config.code_dim or h
    separate = config.output_layer == "separate"
    heads: dict[str, LabelAttentionHead] = {}
    for s in config.systems:
        if m in ("laat", "plm_icd"):
            heads[s] = LAATHead(h, d, output_proj=not separate, attention=config.attention,
                                key_proj=not config.shares_keys)
        else:
            heads[s] = CAMLHead(h, d, output_proj=not separate, attention=config.attention)
    key_proj = nn.Linear(h, d, bias=False) if config.shares_keys else None
    mat = None
    if config.use_mat:
        if graph.direction != config.gem_direction:
            raise ValueError(
                f"the config asks for the {config.gem_direction} GEM graph but the graph is "
                f"{graph.direction}: build it with direction={config.gem_direction!r}"
            )
        from jams_pyg.nn import MATConv  # imported only when MAT is used

        mat = MATConv(
            d,
            heads=config.mat_heads,
            negative_slope=config.mat_negative_slope,
            dropout=config.mat_dropout,
            att_gain=config.mat_att_gain,
        )
    model = JAMS(
        encoder,
        heads,
        {s: int(num_codes[s]) for s in config.systems},
        d,
        mat=mat,
        graph=graph if config.use_mat else None,
        edge_weighting=config.edge_weighting,
        key_proj=key_proj,
        # LAAT / PLM-ICD: N(0, 0.03) (official code, Edin et al.); CAML / MultiResCNN
        # outputs Xavier (official CAMLAttention), code tables Xavier without MAT (Edin et al.)
        output_init="normal" if m in ("laat", "plm_icd") else "xavier",
        table_init="normal" if m in ("laat", "plm_icd") or config.use_mat else "xavier",
    )
    model.config = config  # what rebuilds it (a bundle stores it)
    return model
