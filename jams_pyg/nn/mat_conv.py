"""The medical code attention layer (MAT) of JAMS, paper section 2.1."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.inits import glorot
from torch_geometric.utils import softmax

from jams_pyg.nn.sparse_aggr import BipartiteCSR, build_bipartite_csr, mat_aggregate

AttentionWeights = tuple[Tensor, Tensor, Tensor, Tensor, Tensor]


def _fused_supports(x: Tensor) -> bool:
    # PyTorch's sparse CSR kernels (MKL on CPU, cuSPARSE on CUDA) take float32
    # and float64; other dtypes (bfloat16 / float16 tables) use propagate.
    return x.dtype in (torch.float32, torch.float64)


class MATConv(MessagePassing):
    r"""The medical code attention network (MAT) of JAMS, from the `"Bridging
    the Code Gap: A Joint Learning Framework Across Medical Coding Systems"`
    paper (section 2.1): a graph attention layer between the ICD-9 and ICD-10
    code-embedding tables
    :math:`\mathbf{U} \in \mathbb{R}^{n \times d}` and
    :math:`\mathbf{V} \in \mathbb{R}^{m \times d}`, linked by the GEMs.

    For an ICD-9 code :math:`i` with ICD-10 neighbours :math:`\mathcal{N}(i)`

    .. math::
        e_{ii} = \mathrm{LeakyReLU}\left(\mathbf{a}^{\top}
        [\mathbf{u}_i \,\Vert\, \mathbf{u}_i]\right), \qquad
        e_{ij} = \mathrm{LeakyReLU}\left(\mathbf{a}^{\top}
        [\mathbf{u}_i \,\Vert\, \mathbf{v}_j]\right),

    .. math::
        \alpha_{ij} = \frac{\exp(e_{ij})}{\exp(e_{ii}) +
        \sum_{k \in \mathcal{N}(i)} \exp(e_{ik})}
        \quad (j \in \{i\} \cup \mathcal{N}(i)),

    .. math::
        \mathbf{u}'_i = \mathrm{ELU}\left(\alpha_{ii}\mathbf{u}_i +
        \sum_{j \in \mathcal{N}(i)} \alpha_{ij}\,\omega_{ij}\,\mathbf{v}_j\right),

    and symmetrically for an ICD-10 code :math:`j` (its self term uses
    :math:`[\mathbf{v}_j \Vert \mathbf{v}_j]`, its neighbours
    :math:`[\mathbf{v}_j \Vert \mathbf{u}_i]`). The same attention vector
    :math:`\mathbf{a}` serves both directions: its first half multiplies the
    code being updated, its second half the neighbour (or the code itself for
    the self term). The GEM weight :math:`\omega_{ij}` (1 for an exact, 0.5
    for an approximate mapping) multiplies the message *after* the softmax and
    is not renormalised. A code without links becomes
    :math:`\mathrm{ELU}(\mathbf{u}_i)`.

    With :math:`H > 1` heads, each head :math:`h` has its own vector
    :math:`\mathbf{a}^{(h)}` and the heads are averaged inside the ELU (as in
    the last GAT layer), so the output keeps :math:`d` channels:
    :math:`\mathbf{u}'_i = \mathrm{ELU}\big(\frac{1}{H}\sum_h (\alpha^{(h)}_{ii}
    \mathbf{u}_i + \sum_j \alpha^{(h)}_{ij}\omega_{ij}\mathbf{v}_j)\big)`.

    Computation: per-node scores :math:`\mathbf{a}_{1}^{\top}\mathbf{u}_i`,
    :math:`\mathbf{a}_{2}^{\top}\mathbf{u}_i` (one mat-vec per table and
    head), per-edge scalars by gathering them, a sparse softmax over the
    edges plus the self terms
    (:func:`torch_geometric.utils.softmax`), and a fused aggregation of both
    directions by CSR sparse × dense products whose backward pass stays sparse
    (:mod:`jams_pyg.nn.sparse_aggr`): no dense :math:`n \times m` matrix and
    no :math:`|\mathcal{E}| \times d` message tensor is built. The CSR
    structure of :obj:`edge_index` is cached while the same, unmodified
    tensor is passed again (a static GEM graph).

    Args:
        channels (int): Size :math:`d` of each code embedding (input and
            output).
        heads (int, optional): Number of attention heads :math:`H`, averaged.
            (default: :obj:`1`)
        negative_slope (float, optional): LeakyReLU angle of the negative
            slope. (default: :obj:`0.2`)
        dropout (float, optional): Dropout probability of the normalised
            attention coefficients (self terms included), in training mode
            only. (default: :obj:`0.0`)
        fused (bool, optional): If :obj:`False`, aggregate with PyG message
            passing (:meth:`propagate`), which builds an
            :math:`|\mathcal{E}| \times d` message tensor: a slower reference
            path, numerically the same, and the one for double backward (the
            fused path is differentiable once). Tables that are neither
            float32 nor float64 always take this path (the sparse CSR kernels
            support only those). (default: :obj:`True`)
        cached (bool, optional): If :obj:`True`, keep the CSR structure of the
            last :obj:`edge_index` and reuse it while the same, unmodified
            tensor (same storage and version) and node counts come again.
            (default: :obj:`True`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          code embeddings :math:`((n, d), (m, d))` (ICD-9, ICD-10),
          edge indices :math:`(2, |\mathcal{E}|)` (row 0 ICD-9 index, row 1
          ICD-10 index, as :attr:`jams_pyg.GEMGraph.edge_index`),
          edge weights :math:`\omega` :math:`(|\mathcal{E}|)` *(optional,
          ones by default)*
        - **output:** :math:`((n, d), (m, d))`. If
          :obj:`return_attention_weights=True`, then
          :math:`(((n, d), (m, d)), ((2, |\mathcal{E}|), (|\mathcal{E}|, H),
          (|\mathcal{E}|, H), (n, H), (m, H)))`: the edge indices, the weight
          each ICD-9 code gives its ICD-10 neighbour on edge :math:`e`, the
          weight each ICD-10 code gives its ICD-9 neighbour, and the self
          weights of the ICD-9 and ICD-10 codes (:math:`\alpha` before
          :math:`\omega`, after dropout).
    """

    def __init__(
        self,
        channels: int,
        heads: int = 1,
        negative_slope: float = 0.2,
        dropout: float = 0.0,
        fused: bool = True,
        cached: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("aggr", "add")
        super().__init__(node_dim=0, **kwargs)
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
            raise ValueError(f"heads must be a positive int, got {heads!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.channels = channels
        self.heads = heads
        self.negative_slope = float(negative_slope)
        self.dropout = float(dropout)
        self.fused = fused
        self.cached = cached
        self.att = Parameter(torch.empty(heads, 2 * channels))
        self._cache: tuple[tuple[Any, ...], Tensor, BipartiteCSR] | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        glorot(self.att)
        self._cache = None

    # ------------------------------------------------------------- checking
    def _check_x(self, x: Any) -> tuple[Tensor, Tensor]:
        if not isinstance(x, (tuple, list)) or len(x) != 2:
            got = type(x).__name__ if not isinstance(x, (tuple, list)) else f"{len(x)} items"
            raise TypeError(f"MATConv expects x = (x_icd9, x_icd10), a pair of tensors; got {got}")
        x9, x10 = x
        for name, t in (("x_icd9", x9), ("x_icd10", x10)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{name} must be a Tensor, got {type(t).__name__}")
            if t.dim() != 2:
                raise ValueError(
                    f"{name} must be 2-D [num_codes, channels], got shape {tuple(t.shape)}"
                )
        if x9.size(1) != x10.size(1):
            raise ValueError(
                f"feature sizes differ: x_icd9 has {x9.size(1)} channels, x_icd10 has {x10.size(1)}"
            )
        if x9.size(1) != self.channels:
            raise ValueError(
                f"x_icd9 and x_icd10 have {x9.size(1)} channels, but this MATConv "
                f"was built with channels={self.channels}"
            )
        if x9.dtype != x10.dtype:
            raise ValueError(f"x_icd9 is {x9.dtype} but x_icd10 is {x10.dtype}")
        if x9.device != x10.device:
            raise ValueError(f"x_icd9 is on {x9.device} but x_icd10 is on {x10.device}")
        return x9, x10

    @staticmethod
    def _check_edge_index(edge_index: Any, n: int, m: int) -> None:
        if not isinstance(edge_index, Tensor):
            raise TypeError(f"edge_index must be a Tensor, got {type(edge_index).__name__}")
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(
                f"edge_index must have shape [2, num_edges], got {tuple(edge_index.shape)}"
            )
        if edge_index.dtype not in (torch.long, torch.int, torch.int16, torch.uint8):
            raise ValueError(f"edge_index must be an integer tensor, got {edge_index.dtype}")
        if edge_index.numel() == 0:
            return
        for r, (system, size) in enumerate((("ICD-9", n), ("ICD-10", m))):
            lo, hi = (int(v) for v in torch.aminmax(edge_index[r]))
            bad = lo if lo < 0 else hi if hi >= size else None
            if bad is not None:
                table = "x_icd9" if r == 0 else "x_icd10"
                raise IndexError(
                    f"edge_index[{r}] holds {system} index {bad}, out of range for "
                    f"{table} with {size} rows (valid: 0..{size - 1})"
                )

    @staticmethod
    def _check_edge_weight(edge_weight: Any, num_edges: int, x: Tensor) -> Tensor | None:
        if edge_weight is None:
            return None
        if not isinstance(edge_weight, Tensor):
            raise TypeError(
                f"edge_weight must be a Tensor or None, got {type(edge_weight).__name__}"
            )
        if edge_weight.dim() != 1 or edge_weight.numel() != num_edges:
            raise ValueError(
                f"edge_weight must have shape [{num_edges}] (one ω per edge of "
                f"edge_index), got {tuple(edge_weight.shape)}"
            )
        if not edge_weight.is_floating_point():
            raise ValueError(f"edge_weight must be floating point, got {edge_weight.dtype}")
        if edge_weight.device != x.device:
            raise ValueError(f"edge_weight is on {edge_weight.device} but x is on {x.device}")
        return edge_weight

    @torch.compiler.disable
    def _structure(self, edge_index: Tensor, n: int, m: int) -> BipartiteCSR:
        """Validated CSR structure of ``edge_index``, cached for a static graph."""
        key = (
            edge_index.data_ptr(),
            edge_index._version,
            tuple(edge_index.shape),
            tuple(edge_index.stride()),
            edge_index.dtype,
            edge_index.device,
            n,
            m,
        )
        # The cache holds a reference to the tensor, so its storage cannot be
        # freed and reused by another tensor while the key is alive.
        if self.cached and self._cache is not None and self._cache[0] == key:
            return self._cache[2]
        self._check_edge_index(edge_index, n, m)
        csr = build_bipartite_csr(edge_index, n, m)
        self._cache = (key, edge_index, csr) if self.cached else None
        return csr

    # -------------------------------------------------------------- forward
    def forward(
        self,
        x: tuple[Tensor, Tensor],
        edge_index: Tensor,
        edge_weight: Tensor | None = None,
        return_attention_weights: bool = False,
    ) -> tuple[Tensor, Tensor] | tuple[tuple[Tensor, Tensor], AttentionWeights]:
        r"""Update both code tables.

        Args:
            x ((Tensor, Tensor)): ICD-9 embeddings ``[n, d]`` and ICD-10
                embeddings ``[m, d]``.
            edge_index (LongTensor): ``[2, E]`` GEM links, row 0 ICD-9 and row 1
                ICD-10 indices.
            edge_weight (Tensor, optional): ``[E]`` GEM weights :math:`\omega`.
            return_attention_weights (bool, optional): also return the
                attention weights (see *Shapes*). (default: :obj:`False`)
        """
        x9, x10 = self._check_x(x)
        n, m = x9.size(0), x10.size(0)
        if not isinstance(edge_index, Tensor):
            raise TypeError(f"edge_index must be a Tensor, got {type(edge_index).__name__}")
        if edge_index.device != x9.device:
            raise ValueError(f"edge_index is on {edge_index.device} but x is on {x9.device}")
        csr = self._structure(edge_index, n, m)
        num_edges, heads = csr.num_edges, self.heads
        weight = self._check_edge_weight(edge_weight, num_edges, x9)
        if weight is not None:
            weight = weight[csr.perm].to(x9.dtype)

        # Per-node scores, one mat-vec per table and head: [:, :H] multiplies
        # the code being updated (att[:, :d]), [:, H:] the attended code.
        att = self.att.view(heads, 2, self.channels).transpose(0, 1).reshape(2 * heads, -1)
        score = torch.cat([x9 @ att.t(), x10 @ att.t()], dim=0)  # [n + m, 2H]
        # Per-entry scalars, layout [2E + n + m] (see BipartiteCSR): the edges
        # seen from both ends, then the self terms, one softmax over all.
        e = score[:, :heads][csr.att_dst] + score[:, heads:][csr.att_src]
        e = F.leaky_relu(e, self.negative_slope)
        alpha = softmax(e, csr.att_dst, num_nodes=n + m)  # [2E + n + m, H]
        if self.training and self.dropout > 0.0:
            alpha = F.dropout(alpha, p=self.dropout, training=True)
        # Averaging the heads commutes with the (head-independent) aggregation.
        mean = alpha.mean(dim=1) if heads > 1 else alpha.view(-1)

        if self.fused and _fused_supports(x9):
            out9, out10 = mat_aggregate(mean, weight, x9, x10, csr)
        else:
            out9, out10 = self._propagate_both(mean, weight, x9, x10, csr)

        if not return_attention_weights:
            return out9, out10
        inv, e2 = csr.inv_perm, 2 * num_edges
        weights = (
            edge_index,
            alpha[:num_edges][inv],
            alpha[num_edges:e2][inv],
            alpha[e2 : e2 + n],
            alpha[e2 + n :],
        )
        return (out9, out10), weights

    def _propagate_both(
        self, mean: Tensor, weight: Tensor | None, x9: Tensor, x10: Tensor, csr: BipartiteCSR
    ) -> tuple[Tensor, Tensor]:
        """Reference path: PyG message passing, messages of shape [E, d]."""
        n, m, num_edges = csr.num_icd9, csr.num_icd10, csr.num_edges
        v9, v10 = mean[:num_edges], mean[num_edges : 2 * num_edges]
        if weight is not None:
            v9, v10 = v9 * weight, v10 * weight
        s9, s10 = mean[2 * num_edges : 2 * num_edges + n], mean[2 * num_edges + n :]
        to9 = torch.stack([csr.col, csr.row])  # ICD-10 source -> ICD-9 target
        to10 = torch.stack([csr.row, csr.col])  # ICD-9 source -> ICD-10 target
        agg9 = self.propagate(to9, x=(x10, x9), alpha=v9, size=(m, n))
        agg10 = self.propagate(to10, x=(x9, x10), alpha=v10, size=(n, m))
        out9 = F.elu(s9.unsqueeze(-1) * x9 + agg9)
        out10 = F.elu(s10.unsqueeze(-1) * x10 + agg10)
        return out9, out10

    def message(self, x_j: Tensor, alpha: Tensor) -> Tensor:
        return alpha.unsqueeze(-1) * x_j

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.channels}, heads={self.heads})"
