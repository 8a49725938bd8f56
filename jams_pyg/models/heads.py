r"""Label-wise attention heads (LAAT and CAML forms) over a given code-embedding table.

A head scores every code ``c`` of a coding system against a document.  The per-code
queries :math:`\mathbf{q}_c` and output vectors :math:`\mathbf{o}_c` are not parameters of
the head: they are derived from the code-embedding table ``codes [C, d]`` passed to
:meth:`forward`, which in JAMS is the MAT-refined table :math:`U'` or :math:`V'`.

*Output vectors.*  :math:`\mathbf{o}_c = \mathbf{W}_o \mathbf{e}_c` with one learned
``Linear(d, in_channels, bias=False)`` shared by all codes (used even when
``d == in_channels``, so the attention query and output vector of a code are not forced to
be the same vector).  Alternatively per-code output vectors ``outputs [C, in_channels]``
can be passed (the official JAMS code keeps such a separate output layer per system);
build the head with ``output_proj=False`` then.

*Keys.*  A head computes its token keys itself (``keys(x)``), or takes them precomputed
(``forward(..., keys=...)``): in a joint LAAT / PLM-ICD model the official JAMS code
(GY-Jeong/JAMS, ``src/models/modules/attention.py``, ``LabelAttention.first_linear``) uses ONE
key projection :math:`\tanh(\mathbf{W}\mathbf{H})` for both systems, so the MAT-mixed queries
of both tables live in one key space; :class:`~jams_pyg.models.JAMS` then owns that projection
and the heads are built with ``key_proj=False``.

*Masking.*  Pad tokens get :math:`-\infty` before the softmax, so padding never changes a
logit.  A document without any token gets :math:`\mathbf{v}_c = \mathbf{0}`, i.e. the
logit :math:`b_c`.

*Two equal computations.*  ``attention="explicit"`` materialises the float32 token
softmax ``[B, C, L]`` of :func:`label_attention_weights` (the one softmax, also behind the
weights that ``forward(..., return_attention=True)`` and
:meth:`LabelAttentionHead.attention_weights` return); ``attention="sdpa"`` runs
:func:`torch.nn.functional.scaled_dot_product_attention` with the code queries as ``Q``
(``[B, heads, C, d]``), the keys as ``K`` and the tokens as ``V`` and a boolean padding
mask, so fused kernels (FlashAttention on CPU and CUDA) never build the ``[B, C, L]`` map.
When the value width differs from the key width, ``V`` is split (zero-padded) into
key-width slices that run as separate SDPA heads sharing ``Q`` and ``K`` — the fused kernels
need equal widths.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jams_pyg.models.config import ATTENTION_IMPLS, check_choice

__all__ = [
    "CAMLHead",
    "LAATHead",
    "LabelAttentionHead",
    "label_attention",
    "label_attention_weights",
]

AttentionImpl = Literal["sdpa", "explicit"]


def label_attention_weights(queries: Tensor, keys: Tensor, mask: Tensor) -> Tensor:
    r"""The token softmax of label attention, :math:`a_{cl} = \mathrm{softmax}_l
    (\mathbf{q}_c^\top \mathbf{k}_l)` over the tokens of each document (no scaling),
    computed in float32.

    Pads get weight 0; a document without any token gets all-zero weights.

    Shapes:
        - **queries:** ``[C, d]`` (shared by the batch) or ``[B, C, d]``
        - **keys:** ``[B, L, d]``, **mask:** ``[B, L]`` bool
        - **output:** ``[B, C, L]`` float32
    """
    eq = "cd,bld->bcl" if queries.dim() == 2 else "bcd,bld->bcl"
    scores = torch.einsum(eq, queries, keys).float()
    has_tokens = mask.any(dim=1)
    empty = not bool(has_tokens.all())
    if empty:  # documents without tokens: attend anywhere (finite softmax), zero below
        mask = mask | ~has_tokens[:, None]
    weights = torch.softmax(scores.masked_fill(~mask[:, None, :], float("-inf")), dim=-1)
    return weights * has_tokens[:, None, None] if empty else weights


def label_attention(
    queries: Tensor,
    keys: Tensor,
    values: Tensor,
    mask: Tensor,
    impl: AttentionImpl = "sdpa",
) -> Tensor:
    r"""Per-code document vectors :math:`\mathbf{v}_c = \sum_l a_{cl}\, \mathbf{x}_l` with the
    weights :math:`a_{cl}` of :func:`label_attention_weights` (pads excluded; a document
    without tokens gets :math:`\mathbf{0}`).

    ``impl="explicit"`` materialises the weights; ``impl="sdpa"`` runs
    :func:`~torch.nn.functional.scaled_dot_product_attention` and never builds them.

    Shapes:
        - **queries:** ``[C, d]`` (shared by the batch) or ``[B, C, d]``
        - **keys:** ``[B, L, d]``, **values:** ``[B, L, h]``, **mask:** ``[B, L]`` bool
        - **output:** ``[B, C, h]``
    """
    batch, length, dk = keys.shape
    dv = values.size(-1)
    if queries.size(-1) != dk:
        raise ValueError(f"query width {queries.size(-1)} differs from key width {dk}")
    if impl == "explicit":
        return label_attention_weights(queries, keys, mask).to(values.dtype) @ values
    check_choice("attention", impl, ATTENTION_IMPLS)
    has_tokens = mask.any(dim=1)
    empty = not bool(has_tokens.all())
    if empty:  # documents without tokens: attend anywhere, zero below
        mask = mask | ~has_tokens[:, None]
    # one dtype for the fused kernel (autocast may leave the code table in float32)
    queries, keys = queries.to(values.dtype), keys.to(values.dtype)
    q = queries.unsqueeze(-3)  # [1|B, 1, C, d]
    if q.dim() == 3:
        q = q.unsqueeze(0)
    n = math.ceil(dv / dk)
    v = values
    if n * dk != dv:
        v = F.pad(v, (0, n * dk - dv))
    v = v.view(batch, length, n, dk).transpose(1, 2)  # [B, n, L, dk]
    q = q.expand(batch, n, q.size(-2), dk)
    k = keys.unsqueeze(1).expand(batch, n, length, dk)
    attn_mask = mask[:, None, None, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=1.0)
    out = out.transpose(1, 2).reshape(batch, -1, n * dk)[..., :dv]
    return out * has_tokens[:, None, None].to(out.dtype) if empty else out


class LabelAttentionHead(nn.Module):
    """Shared machinery of the label-attention heads (see the module docstring)."""

    def __init__(
        self,
        in_channels: int,
        code_channels: int,
        output_proj: bool = True,
        attention: AttentionImpl = "sdpa",
    ) -> None:
        super().__init__()
        check_choice("attention", attention, ATTENTION_IMPLS)
        self.in_channels = in_channels
        self.code_channels = code_channels
        self.attention = attention
        self.output_proj = (
            nn.Linear(code_channels, in_channels, bias=False) if output_proj else None
        )

    # hooks of the concrete forms
    def keys(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def queries(self, codes: Tensor) -> Tensor:
        raise NotImplementedError

    def output_vectors(self, codes: Tensor, outputs: Tensor | None = None) -> Tensor:
        r"""Per-code output vectors :math:`\mathbf{o}_c` ``[C, in_channels]``."""
        if outputs is not None:
            if outputs.shape != (codes.size(0), self.in_channels):
                raise ValueError(
                    f"outputs must be [{codes.size(0)}, {self.in_channels}], got "
                    f"{tuple(outputs.shape)}"
                )
            return outputs
        if self.output_proj is None:
            raise ValueError(
                f"{self.__class__.__name__} was built with output_proj=False: pass outputs"
            )
        return self.output_proj(codes)

    def reset_parameters(self) -> None:
        if self.output_proj is not None:
            nn.init.xavier_uniform_(self.output_proj.weight)

    def _check(self, x: Tensor, mask: Tensor, codes: Tensor) -> None:
        if x.dim() != 3 or x.size(-1) != self.in_channels:
            raise ValueError(
                f"{self.__class__.__name__}: x must be [B, L, {self.in_channels}], got "
                f"{tuple(x.shape)}"
            )
        if mask.shape != x.shape[:2]:
            raise ValueError(
                f"mask shape {tuple(mask.shape)} does not match x shape {tuple(x.shape[:2])}"
            )
        if codes.dim() != 2 or codes.size(-1) != self.code_channels:
            raise ValueError(
                f"{self.__class__.__name__}: codes must be [C, {self.code_channels}], got "
                f"{tuple(codes.shape)}"
            )

    def forward(
        self,
        x: Tensor,
        mask: Tensor,
        codes: Tensor,
        bias: Tensor | None = None,
        outputs: Tensor | None = None,
        return_attention: bool = False,
        attention_index: Tensor | None = None,
        keys: Tensor | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        r"""
        Args:
            x (Tensor): Encoder output ``[B, L, in_channels]``.
            mask (Tensor): Padding mask ``[B, L]`` (``True`` = token).
            codes (Tensor): Code-embedding table ``[C, code_channels]``.
            bias (Tensor, optional): Per-code bias ``[C]``.
            outputs (Tensor, optional): Per-code output vectors ``[C, in_channels]``
                replacing ``output_proj(codes)``.
            return_attention (bool, optional): Also return token attention weights.
            attention_index (Tensor, optional): Code indices whose weights are returned,
                ``[K]`` (same codes for every document) or ``[B, K]``; all codes if omitted.
            keys (Tensor, optional): Precomputed token keys ``[B, L, code_channels]`` (a key
                projection shared across systems); ``keys(x)`` if omitted.

        Returns:
            ``logits [B, C]``, or ``(logits, attention [B, K, L])`` with
            ``return_attention=True``.
        """
        mask = mask.bool()
        self._check(x, mask, codes)
        if keys is None:
            keys = self.keys(x)
        elif keys.shape[:2] != x.shape[:2]:
            raise ValueError(
                f"keys shape {tuple(keys.shape)} does not match x shape {tuple(x.shape[:2])}"
            )
        queries = self.queries(codes)
        doc = label_attention(queries, keys, x, mask, self.attention)  # [B, C, h]
        out_vec = self.output_vectors(codes, outputs)
        logits = torch.einsum("bch,ch->bc", doc, out_vec.to(doc.dtype))
        if bias is not None:
            logits = logits + bias
        if not return_attention:
            return logits
        return logits, self._select_weights(queries, keys, mask, attention_index)

    def attention_weights(
        self,
        keys: Tensor,
        mask: Tensor,
        codes: Tensor,
        attention_index: Tensor | None = None,
    ) -> Tensor:
        r"""Token attention weights :math:`a_{cl}` of some codes only, without the logits of
        every code (e.g. evidence for the codes chosen from the logits).

        Args:
            keys (Tensor): Token keys ``[B, L, code_channels]`` (``keys(x)`` or shared).
            mask (Tensor): Padding mask ``[B, L]`` (``True`` = token).
            codes (Tensor): Code-embedding table ``[C, code_channels]``.
            attention_index (Tensor, optional): Code indices ``[K]`` or ``[B, K]``; all codes
                if omitted.

        Returns:
            ``[B, K, L]`` float32 weights (rows sum to 1 over the document's tokens).
        """
        return self._select_weights(self.queries(codes), keys, mask.bool(), attention_index)

    @staticmethod
    def _select_weights(
        queries: Tensor, keys: Tensor, mask: Tensor, index: Tensor | None
    ) -> Tensor:
        if index is not None:
            queries = queries[index.to(queries.device).long()]  # [K, d] or [B, K, d]
            if queries.dim() == 3 and queries.size(0) != keys.size(0):
                raise ValueError(
                    f"attention_index [B, K] has {queries.size(0)} rows for a batch of "
                    f"{keys.size(0)}"
                )
        return label_attention_weights(queries, keys, mask)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.in_channels}, code_channels="
            f"{self.code_channels}, attention={self.attention!r})"
        )


class LAATHead(LabelAttentionHead):
    r"""Label attention of LAAT (Vu et al., 2020) with queries from a code table.

    .. math::
        \mathbf{Z} = \tanh(\mathbf{W}\mathbf{H}) \in \mathbb{R}^{B \times L \times d},\quad
        a_{cl} = \frac{\exp(\mathbf{q}_c^\top \mathbf{z}_l)}{\sum_{l' \in \mathrm{tokens}}
        \exp(\mathbf{q}_c^\top \mathbf{z}_{l'})},\quad
        \mathbf{v}_c = \sum_l a_{cl}\mathbf{h}_l,\quad
        \hat{y}_c = \mathbf{o}_c^\top \mathbf{v}_c + b_c

    with :math:`\mathbf{q}_c = \mathbf{e}_c` (row ``c`` of ``codes``; ``d`` = LAAT's
    projection size) and :math:`\mathbf{o}_c = \mathbf{W}_o\mathbf{e}_c`.

    Args:
        in_channels (int): Encoder width ``h``.
        code_channels (int): Code embedding width = projection size ``d``.
        output_proj (bool, optional): Derive output vectors from ``codes`` with a shared
            ``Linear(d, h)``; else ``outputs`` must be passed. (default: :obj:`True`)
        attention (str, optional): ``"sdpa"`` or ``"explicit"``. (default: :obj:`"sdpa"`)
        key_proj (bool, optional): Own the key projection :math:`\mathbf{W}`; with
            :obj:`False` the keys must be passed to :meth:`forward` (a projection shared
            across systems). (default: :obj:`True`)

    Shapes:
        - **input:** ``x [B, L, h]``, ``mask [B, L]``, ``codes [C, d]``, ``bias [C]``
        - **output:** ``[B, C]`` (and ``[B, K, L]`` attention when asked)
    """

    def __init__(
        self,
        in_channels: int,
        code_channels: int,
        output_proj: bool = True,
        attention: AttentionImpl = "sdpa",
        key_proj: bool = True,
    ) -> None:
        super().__init__(in_channels, code_channels, output_proj, attention)
        self.proj = nn.Linear(in_channels, code_channels, bias=False) if key_proj else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.proj is not None:
            nn.init.normal_(self.proj.weight, 0.0, 0.03)  # as Edin et al.

    def keys(self, x: Tensor) -> Tensor:
        if self.proj is None:
            raise ValueError("this LAATHead shares its key projection: pass keys to forward")
        return torch.tanh(self.proj(x))

    def queries(self, codes: Tensor) -> Tensor:
        return codes


class CAMLHead(LabelAttentionHead):
    r"""Per-label attention of CAML (Mullenbach et al., 2018) with queries from a code table.

    .. math::
        a_{cl} = \frac{\exp(\mathbf{q}_c^\top \mathbf{h}_l)}{\sum_{l' \in \mathrm{tokens}}
        \exp(\mathbf{q}_c^\top \mathbf{h}_{l'})},\quad
        \mathbf{v}_c = \sum_l a_{cl}\mathbf{h}_l,\quad
        \hat{y}_c = \mathbf{o}_c^\top \mathbf{v}_c + b_c

    with :math:`\mathbf{q}_c = \mathbf{e}_c` when ``d == h`` (else
    :math:`\mathbf{W}_q\mathbf{e}_c`, a shared ``Linear(d, h)``) and
    :math:`\mathbf{o}_c = \mathbf{W}_o\mathbf{e}_c`.  Used by CAML and MultiResCNN (whose
    encoders end in ``tanh``).

    Args:
        in_channels (int): Encoder width ``h``.
        code_channels (int): Code embedding width ``d``.
        output_proj (bool, optional): See :class:`LAATHead`. (default: :obj:`True`)
        attention (str, optional): ``"sdpa"`` or ``"explicit"``. (default: :obj:`"sdpa"`)

    Shapes:
        - **input:** ``x [B, L, h]``, ``mask [B, L]``, ``codes [C, d]``, ``bias [C]``
        - **output:** ``[B, C]`` (and ``[B, K, L]`` attention when asked)
    """

    def __init__(
        self,
        in_channels: int,
        code_channels: int,
        output_proj: bool = True,
        attention: AttentionImpl = "sdpa",
    ) -> None:
        super().__init__(in_channels, code_channels, output_proj, attention)
        self.query_proj = (
            nn.Linear(code_channels, in_channels, bias=False)
            if code_channels != in_channels
            else None
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.query_proj is not None:
            nn.init.xavier_uniform_(self.query_proj.weight)

    def keys(self, x: Tensor) -> Tensor:
        return x

    def queries(self, codes: Tensor) -> Tensor:
        return codes if self.query_proj is None else self.query_proj(codes)
