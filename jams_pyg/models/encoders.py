r"""Text encoders of the four JAMS backbones.

Every encoder maps token ids ``[B, L]`` and a padding mask ``[B, L]`` (``True`` = token) to
token representations and a mask of the same length::

    H, mask = encoder(input_ids, attention_mask)   # H: [B, L, out_channels], mask: [B, L] bool

All encoders keep the sequence length (``L' = L``), so token attention weights of a head line
up with the input tokens (evidence), and all of them are *padding invariant*: appending pad
tokens to a document changes none of its token representations (pad positions are zeroed
before every convolution, the BiLSTM's backward direction reads each document reversed
within its own length, the PLM masks pad tokens and skips all-pad chunks) and return zeros
at pad positions.  Documents are expected right-padded (tokens first, pads after).

Hyper-parameters default to Edin et al. (2023): CAML 50 filters of width 10, MultiResCNN
kernels 3, 5, 9, 15, 19, 25 with 50 filters each, LAAT a BiLSTM with 512 hidden units per
direction, PLM-ICD a RoBERTa-style model over 128-token chunks (:mod:`jams_pyg.models.plm_encoder`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "CAMLEncoder",
    "LSTMEncoder",
    "MaskedBatchNorm1d",
    "MultiResCNNEncoder",
    "ResidualBlock",
    "SameConv1d",
    "TextEncoder",
    "make_word_embedding",
]


def check_inputs(input_ids: Tensor, attention_mask: Tensor | None) -> Tensor:
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be [B, L], got shape {tuple(input_ids.shape)}")
    if attention_mask is None:
        return input_ids != 0
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} differs from input_ids "
            f"shape {tuple(input_ids.shape)}"
        )
    return attention_mask.bool()


def make_word_embedding(
    vocab_size: int,
    embedding_dim: int,
    weights: Tensor | np.ndarray | None = None,
    freeze: bool = False,
    padding_idx: int = 0,
) -> nn.Embedding:
    r"""Word embedding table, optionally initialised from pretrained (word2vec) vectors.

    Row ``padding_idx`` is zero and receives no gradient.

    Args:
        vocab_size (int): Number of token ids (including pad 0 and unk 1).
        embedding_dim (int): Embedding width.
        weights (Tensor or np.ndarray, optional): Pretrained matrix ``[vocab_size, dim]``.
        freeze (bool, optional): Keep the pretrained matrix fixed. (default: :obj:`False`)
        padding_idx (int, optional): Pad token id. (default: :obj:`0`)
    """
    if weights is None:
        if vocab_size <= 0:
            raise ValueError(f"vocab_size must be positive, got {vocab_size}")
        return nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
    weights = torch.as_tensor(np.asarray(weights), dtype=torch.float32).clone()
    if weights.dim() != 2:
        raise ValueError(f"pretrained embeddings must be 2-D, got {tuple(weights.shape)}")
    if vocab_size and weights.size(0) != vocab_size:
        raise ValueError(
            f"pretrained embeddings have {weights.size(0)} rows but vocab_size is {vocab_size}"
        )
    if embedding_dim and weights.size(1) != embedding_dim:
        raise ValueError(
            f"pretrained embeddings have width {weights.size(1)} but embedding_dim is "
            f"{embedding_dim}"
        )
    weights[padding_idx] = 0.0
    return nn.Embedding.from_pretrained(weights, freeze=freeze, padding_idx=padding_idx)


class SameConv1d(nn.Conv1d):
    """``Conv1d`` (stride 1) with explicit zero "same" padding: ``(k - 1) // 2`` positions
    before and ``k // 2`` after, so the output keeps the input length for odd and even ``k``
    (PyTorch's ``padding="same"`` copies the input for even kernels and warns)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, padding=0, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        k = self.kernel_size[0]
        return super().forward(F.pad(x, ((k - 1) // 2, k // 2)))


class TextEncoder(nn.Module):
    """Base class: ``forward(input_ids, attention_mask) -> (H [B, L, out_channels], mask)``."""

    out_channels: int

    def forward(  # pragma: no cover - interface
        self, input_ids: Tensor, attention_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


class _WordEncoder(TextEncoder):
    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        embed_dropout: float,
        embeddings: Tensor | np.ndarray | None,
        freeze_embeddings: bool,
    ) -> None:
        super().__init__()
        self.embed = make_word_embedding(vocab_size, embedding_dim, embeddings, freeze_embeddings)
        self.embedding_dim = self.embed.embedding_dim
        self.embed_drop = nn.Dropout(embed_dropout)

    def _embed(self, input_ids: Tensor, mask: Tensor) -> Tensor:
        if input_ids.numel() and (
            int(input_ids.min()) < 0 or int(input_ids.max()) >= self.embed.num_embeddings
        ):
            raise ValueError(
                f"token id out of range [0, {self.embed.num_embeddings}): min "
                f"{int(input_ids.min())}, max {int(input_ids.max())}"
            )
        x = self.embed_drop(self.embed(input_ids))
        return x * mask.unsqueeze(-1).to(x.dtype)


class CAMLEncoder(_WordEncoder):
    r"""CAML text encoder (Mullenbach et al., 2018): word embedding and one convolution,

    .. math::
        \mathbf{H} = \tanh(\mathrm{Conv1d}_{k}(\mathbf{E}\,\mathrm{dropout}(\mathbf{x})))

    with ``"same"`` zero padding, so ``L' = L``.

    Args:
        vocab_size (int): Vocabulary size (pad id 0).
        embedding_dim (int, optional): Word embedding width. (default: :obj:`100`)
        num_filters (int, optional): Convolution filters = output width. (default: :obj:`50`)
        kernel_size (int, optional): Filter width. (default: :obj:`10`)
        embed_dropout (float, optional): Dropout on the word embeddings. (default: :obj:`0.2`)
        embeddings (Tensor, optional): Pretrained word vectors ``[vocab_size, embedding_dim]``.
        freeze_embeddings (bool, optional): Keep them fixed. (default: :obj:`False`)

    Shapes:
        - **input:** ``input_ids [B, L]``, ``attention_mask [B, L]`` (bool, optional;
          ``input_ids != 0`` when omitted)
        - **output:** ``H [B, L, num_filters]``, ``mask [B, L]``
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 100,
        num_filters: int = 50,
        kernel_size: int = 10,
        embed_dropout: float = 0.2,
        embeddings: Tensor | np.ndarray | None = None,
        freeze_embeddings: bool = False,
    ) -> None:
        super().__init__(vocab_size, embedding_dim, embed_dropout, embeddings, freeze_embeddings)
        self.kernel_size = kernel_size
        self.conv = SameConv1d(self.embedding_dim, num_filters, kernel_size)
        self.out_channels = num_filters
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        mask = check_inputs(input_ids, attention_mask)
        x = self._embed(input_ids, mask).transpose(1, 2)
        h = torch.tanh(self.conv(x)).transpose(1, 2)
        return h * mask.unsqueeze(-1).to(h.dtype), mask

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(vocab={self.embed.num_embeddings}, "
            f"embedding_dim={self.embedding_dim}, num_filters={self.out_channels}, "
            f"kernel_size={self.kernel_size})"
        )


class MaskedBatchNorm1d(nn.BatchNorm1d):
    r"""Batch normalisation over channels whose batch statistics ignore pad positions.

    In training mode mean and variance are taken over the token positions where
    ``mask`` is true only, so neither the amount of padding nor pad values change the
    normalisation; in evaluation mode the running statistics are used as usual.
    Pad positions of the output are zero.

    Shapes:
        - **input:** ``x [B, C, L]``, ``mask [B, L]`` bool
        - **output:** ``[B, C, L]``
    """

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        if mask is None:
            return super().forward(x)
        m = mask.unsqueeze(1).to(x.dtype)  # [B, 1, L]
        if self.training:
            count = m.sum().clamp(min=1.0)
            mean = (x * m).sum(dim=(0, 2)) / count
            var = (((x - mean[None, :, None]) * m) ** 2).sum(dim=(0, 2)) / count
            if self.track_running_stats and self.running_mean is not None:
                with torch.no_grad():
                    n = float(count)
                    momentum = 0.1 if self.momentum is None else self.momentum
                    unbiased = var * (n / max(n - 1.0, 1.0))
                    self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
                    self.running_var.mul_(1 - momentum).add_(momentum * unbiased.detach())
                    self.num_batches_tracked.add_(1)
        else:
            mean, var = self.running_mean, self.running_var
        out = (x - mean[None, :, None]) * torch.rsqrt(var[None, :, None] + self.eps)
        if self.affine:
            out = out * self.weight[None, :, None] + self.bias[None, :, None]
        return out * m


class ResidualBlock(nn.Module):
    r"""Residual convolution block of MultiResCNN (Li & Yu, 2020):

    .. math::
        \mathbf{y} = \mathrm{dropout}\big(\tanh\big(
        \mathrm{BN}(\mathrm{Conv}_k(\tanh(\mathrm{BN}(\mathrm{Conv}_k \mathbf{x}))))
        + \mathrm{BN}(\mathrm{Conv}_1 \mathbf{x})\big)\big)

    with pad-aware batch norm and pad positions zeroed before every convolution.

    Shapes:
        - **input:** ``x [B, in_channels, L]``, ``mask [B, L]``
        - **output:** ``[B, out_channels, L]``
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, dropout: float = 0.2
    ) -> None:
        super().__init__()
        self.conv1 = SameConv1d(in_channels, out_channels, kernel_size, bias=False)
        self.bn1 = MaskedBatchNorm1d(out_channels)
        self.conv2 = SameConv1d(out_channels, out_channels, kernel_size, bias=False)
        self.bn2 = MaskedBatchNorm1d(out_channels)
        self.shortcut = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.bn_shortcut = MaskedBatchNorm1d(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in (self.conv1, self.conv2, self.shortcut):
            nn.init.xavier_uniform_(conv.weight)
        for bn in (self.bn1, self.bn2, self.bn_shortcut):
            bn.reset_parameters()

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        m = mask.unsqueeze(1).to(x.dtype)
        left = torch.tanh(self.bn1(self.conv1(x * m), mask))
        left = self.bn2(self.conv2(left), mask)
        out = torch.tanh(left + self.bn_shortcut(self.shortcut(x * m), mask))
        return self.dropout(out) * m


class MultiResCNNEncoder(_WordEncoder):
    r"""MultiResCNN text encoder (Li & Yu, 2020): one channel per kernel size ``k``,

    .. math::
        \mathbf{H}_k = \mathrm{ResBlock}_k(\tanh(\mathrm{Conv1d}_k(\mathbf{E}\mathbf{x}))),
        \qquad \mathbf{H} = [\mathbf{H}_{k_1} \,\|\, \dots \,\|\, \mathbf{H}_{k_6}]

    Output width ``num_filters * len(kernel_sizes)`` (300 with the defaults).

    Args:
        vocab_size (int): Vocabulary size (pad id 0).
        embedding_dim (int, optional): Word embedding width. (default: :obj:`100`)
        num_filters (int, optional): Filters per channel. (default: :obj:`50`)
        kernel_sizes (Sequence[int], optional): One channel per size.
            (default: :obj:`(3, 5, 9, 15, 19, 25)`)
        embed_dropout (float, optional): Dropout on embeddings and block outputs.
            (default: :obj:`0.2`)
        embeddings (Tensor, optional): Pretrained word vectors.
        freeze_embeddings (bool, optional): Keep them fixed. (default: :obj:`False`)

    Shapes:
        - **input:** ``input_ids [B, L]``, ``attention_mask [B, L]``
        - **output:** ``H [B, L, num_filters * len(kernel_sizes)]``, ``mask [B, L]``
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 100,
        num_filters: int = 50,
        kernel_sizes: Sequence[int] = (3, 5, 9, 15, 19, 25),
        embed_dropout: float = 0.2,
        embeddings: Tensor | np.ndarray | None = None,
        freeze_embeddings: bool = False,
    ) -> None:
        super().__init__(vocab_size, embedding_dim, embed_dropout, embeddings, freeze_embeddings)
        if not kernel_sizes:
            raise ValueError("kernel_sizes must name at least one kernel size")
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        self.num_filters = num_filters
        d = self.embedding_dim
        self.convs = nn.ModuleList(SameConv1d(d, d, k, bias=False) for k in self.kernel_sizes)
        self.blocks = nn.ModuleList(
            ResidualBlock(d, num_filters, k, embed_dropout) for k in self.kernel_sizes
        )
        self.out_channels = num_filters * len(self.kernel_sizes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in self.convs:
            nn.init.xavier_uniform_(conv.weight)
        for block in self.blocks:
            block.reset_parameters()

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        mask = check_inputs(input_ids, attention_mask)
        x = self._embed(input_ids, mask).transpose(1, 2)  # [B, d, L], pads zero
        m = mask.unsqueeze(1).to(x.dtype)
        outs = [
            block(torch.tanh(conv(x)) * m, mask)
            for conv, block in zip(self.convs, self.blocks, strict=True)
        ]
        return torch.cat(outs, dim=1).transpose(1, 2), mask

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(vocab={self.embed.num_embeddings}, "
            f"embedding_dim={self.embedding_dim}, num_filters={self.num_filters}, "
            f"kernel_sizes={self.kernel_sizes})"
        )


def reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each row of a right-padded ``[B, L, *]`` tensor within its length
    (pad positions stay in place); its own inverse."""
    batch, length = x.shape[:2]
    positions = torch.arange(length, device=x.device).expand(batch, length)
    index = torch.where(positions < lengths[:, None], lengths[:, None] - 1 - positions, positions)
    return x.gather(1, index.view(batch, length, *([1] * (x.dim() - 2))).expand_as(x))


class LSTMEncoder(_WordEncoder):
    r"""LAAT text encoder (Vu et al., 2020): word embedding and a bidirectional LSTM,

    .. math::
        \mathbf{H} = [\overrightarrow{\mathrm{LSTM}}(\mathbf{E}\mathbf{x}) \,\|\,
        \overleftarrow{\mathrm{LSTM}}(\mathbf{E}\mathbf{x})]

    output width ``2 * hidden_size``; pad positions of ``H`` are zero. The
    backward direction starts at each document's last token, so padding never
    changes an output. It runs as a forward LSTM over each document reversed
    within its length rather than on packed sequences: on CPU the backward pass
    of packed sequences re-fills a full-size gradient at every time step and is
    5-20x slower.

    Args:
        vocab_size (int): Vocabulary size (pad id 0).
        embedding_dim (int, optional): Word embedding width. (default: :obj:`200`)
        hidden_size (int, optional): LSTM units per direction. (default: :obj:`512`)
        num_layers (int, optional): LSTM layers. (default: :obj:`1`)
        rnn_dropout (float, optional): Dropout between LSTM layers (only used with
            ``num_layers > 1``). (default: :obj:`0.3`)
        embed_dropout (float, optional): Dropout on the word embeddings. (default: :obj:`0.3`)
        embeddings (Tensor, optional): Pretrained word vectors.
        freeze_embeddings (bool, optional): Keep them fixed. (default: :obj:`False`)

    Shapes:
        - **input:** ``input_ids [B, L]``, ``attention_mask [B, L]`` right-padded
        - **output:** ``H [B, L, 2 * hidden_size]``, ``mask [B, L]``
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 200,
        hidden_size: int = 512,
        num_layers: int = 1,
        rnn_dropout: float = 0.3,
        embed_dropout: float = 0.3,
        embeddings: Tensor | np.ndarray | None = None,
        freeze_embeddings: bool = False,
    ) -> None:
        super().__init__(vocab_size, embedding_dim, embed_dropout, embeddings, freeze_embeddings)
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        sizes = [self.embedding_dim] + [2 * hidden_size] * (num_layers - 1)
        self.forward_rnns = nn.ModuleList(nn.LSTM(n, hidden_size, batch_first=True)
                                          for n in sizes)
        self.backward_rnns = nn.ModuleList(nn.LSTM(n, hidden_size, batch_first=True)
                                           for n in sizes)
        self.rnn_dropout = nn.Dropout(rnn_dropout if num_layers > 1 else 0.0)
        self.out_channels = 2 * hidden_size

    def reset_parameters(self) -> None:
        for rnn in [*self.forward_rnns, *self.backward_rnns]:
            rnn.reset_parameters()

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        mask = check_inputs(input_ids, attention_mask)
        length = input_ids.size(1)
        lengths = mask.sum(dim=1)
        positions = torch.arange(length, device=mask.device)
        if not torch.equal(mask, positions[None, :] < lengths[:, None]):
            raise ValueError(
                "LSTMEncoder needs right-padded documents: attention_mask must be True for "
                "the first n tokens of a row and False after them"
            )
        h = self._embed(input_ids, mask)
        for layer, (fwd, bwd) in enumerate(zip(self.forward_rnns, self.backward_rnns,
                                               strict=True)):
            if layer:
                h = self.rnn_dropout(h)
            # Right padding: the forward pass reaches the pads only after the
            # last token, and the reversed documents keep their pads at the end.
            out_fwd, _ = fwd(h)
            out_bwd, _ = bwd(reverse_padded(h, lengths))
            h = torch.cat([out_fwd, reverse_padded(out_bwd, lengths)], dim=-1)
        return h * mask.unsqueeze(-1).to(h.dtype), mask

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(vocab={self.embed.num_embeddings}, "
            f"embedding_dim={self.embedding_dim}, hidden_size={self.hidden_size}, "
            f"num_layers={self.num_layers}, bidirectional=True)"
        )
