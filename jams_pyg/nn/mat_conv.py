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

#: One link set used by both directions, or ``(edge_index_icd9, edge_index_icd10)``.
EdgeIndex = Tensor | tuple[Tensor, Tensor]
#: ``[E]`` weights of a single link set, or a pair ``(w_icd9, w_icd10)``.
EdgeWeight = Tensor | tuple[Tensor | None, Tensor | None] | None
AttentionWeights = tuple[EdgeIndex, Tensor, Tensor, Tensor, Tensor]


def _fused_supports(x: Tensor) -> bool:
    # PyTorch's sparse CSR kernels (MKL on CPU, cuSPARSE on CUDA) take float32
    # and float64; other dtypes (bfloat16 / float16 tables) use propagate.
    return x.dtype in (torch.float32, torch.float64)


def _autocast_covers(x: Tensor, param_dtype: torch.dtype) -> bool:
    # Under autocast the score mat-vecs run in the autocast dtype whatever the
    # table and parameter dtypes are, except float64, which autocast leaves alone.
    return torch.is_autocast_enabled(x.device.type) and torch.float64 not in (
        x.dtype,
        param_dtype,
    )


class MATConv(MessagePassing):
    r"""The medical code attention network (MAT) of JAMS, from the `"Bridging
    the Code Gap: A Joint Learning Framework Across Medical Coding Systems"`
    paper (section 2.1): a graph attention layer between the ICD-9 and ICD-10
    code-embedding tables
    :math:`\mathbf{U} \in \mathbb{R}^{n \times d}` and
    :math:`\mathbf{V} \in \mathbb{R}^{m \times d}`, linked by the GEMs.

    The links come as two sets, both written as (ICD-9 code, ICD-10 code)
    pairs: :math:`\mathcal{E}_9`, whose links update the ICD-9 codes, and
    :math:`\mathcal{E}_{10}`, whose links update the ICD-10 codes. An ICD-9
    code :math:`i` listens to :math:`\mathcal{N}_9(i) = \{j : (i, j) \in
    \mathcal{E}_9\}`, an ICD-10 code :math:`j` to :math:`\mathcal{N}_{10}(j) =
    \{i : (i, j) \in \mathcal{E}_{10}\}`:

    .. math::
        e_{ii} = \mathrm{LeakyReLU}\left(\mathbf{a}^{\top}
        [\mathbf{u}_i \,\Vert\, \mathbf{u}_i]\right), \qquad
        e_{ij} = \mathrm{LeakyReLU}\left(\mathbf{a}^{\top}
        [\mathbf{u}_i \,\Vert\, \mathbf{v}_j]\right),

    .. math::
        \alpha_{ij} = \frac{\exp(e_{ij})}{\exp(e_{ii}) +
        \sum_{k \in \mathcal{N}_9(i)} \exp(e_{ik})}
        \quad (j \in \{i\} \cup \mathcal{N}_9(i)),

    .. math::
        \mathbf{u}'_i = \mathrm{ELU}\left(\alpha_{ii}\mathbf{u}_i +
        \sum_{j \in \mathcal{N}_9(i)} \alpha_{ij}\,\omega_{ij}\,\mathbf{v}_j\right),

    and symmetrically for an ICD-10 code :math:`j` over
    :math:`\{j\} \cup \mathcal{N}_{10}(j)` (its self term uses
    :math:`[\mathbf{v}_j \Vert \mathbf{v}_j]`, its neighbours
    :math:`[\mathbf{v}_j \Vert \mathbf{u}_i]`, its weights :math:`\omega` those
    of :math:`\mathcal{E}_{10}`). The same attention vector
    :math:`\mathbf{a}` serves both directions: its first half multiplies the
    code being updated, its second half the neighbour (or the code itself for
    the self term). The GEM weight :math:`\omega_{ij}` (1 for an exact, 0.5
    for an approximate mapping) multiplies the message *after* the softmax and
    is not renormalised. A code without links becomes
    :math:`\mathrm{ELU}(\mathbf{u}_i)`.

    Two forms of :obj:`edge_index` select the link sets:

    * **directional** — a pair ``(edge_index_icd9, edge_index_icd10)``:
      :math:`\mathcal{E}_9` and :math:`\mathcal{E}_{10}` differ. This is the
      form of the authors' official code (``GY-Jeong/JAMS``,
      ``src/models/modules/graph_attention.py``), which loads two adjacency
      matrices, ``adj_matrix_icd9_to_icd10.npy`` (:math:`n \times m`, driving
      the ICD-9 updates) and ``adj_matrix_icd10_to_icd9.npy``
      (:math:`m \times n`, driving the ICD-10 updates): most likely the
      forward GEM (ICD-9 → ICD-10 file) and the backward GEM (ICD-10 → ICD-9
      file). Pass the forward-file links as ``edge_index_icd9`` and the
      backward-file links, written ICD-9 first as well, as
      ``edge_index_icd10``.
    * **symmetric** — one tensor: :math:`\mathcal{E}_9 = \mathcal{E}_{10}`,
      the union reading of the GEMs (a link of either file updates both of
      its codes), as :attr:`jams_pyg.GEMGraph.edge_index` gives it.

    With :math:`H > 1` heads, each head :math:`h` has its own vector
    :math:`\mathbf{a}^{(h)}` and the heads are averaged inside the ELU (as in
    the last GAT layer), so the output keeps :math:`d` channels:
    :math:`\mathbf{u}'_i = \mathrm{ELU}\big(\frac{1}{H}\sum_h (\alpha^{(h)}_{ii}
    \mathbf{u}_i + \sum_j \alpha^{(h)}_{ij}\omega_{ij}\mathbf{v}_j)\big)`.

    Computation: per-node scores :math:`\mathbf{a}_{1}^{\top}\mathbf{u}_i`,
    :math:`\mathbf{a}_{2}^{\top}\mathbf{u}_i` (one mat-vec per table and
    head), per-link scalars by gathering them, a sparse softmax over the
    links plus the self terms
    (:func:`torch_geometric.utils.softmax`), and a fused aggregation of both
    directions by CSR sparse × dense products whose backward pass stays sparse
    (:mod:`jams_pyg.nn.sparse_aggr`): no dense :math:`n \times m` matrix and
    no :math:`|\mathcal{E}| \times d` message tensor is built. The CSR
    structure of :obj:`edge_index` is cached while edges of the same content
    come again (a static GEM graph).

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
            last :obj:`edge_index` (with a copy of its links) and reuse it
            while links of the same content, shape and dtype, on the same
            device, and the same node counts come again; any change, in place
            ones included, rebuilds and re-validates it. The comparison is an
            :math:`O(|\mathcal{E}|)` :func:`torch.equal` per call.
            (default: :obj:`True`)
        check_finite (bool, optional): If :obj:`True`, check on every call
            that both code tables are finite and raise a :class:`ValueError`
            naming the table (``x_icd9`` / ``x_icd10``) and the first row
            holding a NaN or infinity (one reduction per table and a
            synchronisation on GPU). (default: :obj:`False`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`; ``aggr`` can only be
            ``"add"`` (the attention-weighted sum), and the propagate hooks fire on
            the ``fused=False`` path only.

    The code tables must have the dtype of the layer's parameters (convert
    with ``conv.to(dtype)``), except under :func:`torch.autocast`, where
    float32, bfloat16 and float16 tables and parameters may mix. Tables of
    another dtype than float32 / float64 (e.g. a ``conv.to(torch.bfloat16)``
    layer) take the :meth:`propagate` path.

    Shapes:
        - **input:**
          code embeddings :math:`((n, d), (m, d))` (ICD-9, ICD-10);
          edge indices :math:`(2, |\mathcal{E}|)` (symmetric) or
          :math:`((2, |\mathcal{E}_9|), (2, |\mathcal{E}_{10}|))`
          (directional), every set with row 0 ICD-9 and row 1 ICD-10 indices;
          edge weights :math:`\omega` *(optional, ones by default)*
          :math:`(|\mathcal{E}|)` for a tensor :obj:`edge_index`, or
          :obj:`None` or a pair :math:`((|\mathcal{E}_9|), (|\mathcal{E}_{10}|))`
          (either item may be :obj:`None`) for a pair
        - **output:** :math:`((n, d), (m, d))`. If
          :obj:`return_attention_weights=True`, then
          :math:`(((n, d), (m, d)), (\text{edge\_index}, (|\mathcal{E}_9|, H),
          (|\mathcal{E}_{10}|, H), (n, H), (m, H)))`: the :obj:`edge_index`
          as passed, the weight each ICD-9 code gives its ICD-10 neighbour on
          each column of the ICD-9 link set, the weight each ICD-10 code gives
          its ICD-9 neighbour on each column of the ICD-10 link set (both
          aligned with the one tensor in the symmetric form), and the self
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
        check_finite: bool = False,
        **kwargs: Any,
    ) -> None:
        aggr = kwargs.setdefault("aggr", "add")
        if aggr != "add":  # the softmax-weighted sum of eq. 1-2, in both paths
            raise ValueError(f"MATConv aggregates with a weighted sum: aggr must be 'add', "
                             f"got {aggr!r}")
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
        self.check_finite = check_finite
        self.att = Parameter(torch.empty(heads, 2 * channels))
        # (key, copies of the cached link sets, structure)
        self._cache: tuple[tuple[Any, ...], tuple[Tensor, ...], BipartiteCSR] | None = None
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
        if not x9.is_floating_point():
            raise ValueError(f"x_icd9 and x_icd10 must be floating point, got {x9.dtype}")
        param = self.att.dtype
        if x9.dtype != param and not _autocast_covers(x9, param):
            raise ValueError(
                f"x_icd9 and x_icd10 are {x9.dtype} but this MATConv's parameters are "
                f"{param}: convert the layer with conv.to({x9.dtype}) (or the tables "
                f"with .to({param}))"
            )
        return x9, x10

    @staticmethod
    @torch.compiler.disable
    def _check_finite_tables(x9: Tensor, x10: Tensor) -> None:
        for name, t in (("x_icd9", x9), ("x_icd10", x10)):
            finite = torch.isfinite(t.detach())
            if bool(finite.all()):
                continue
            row, col = (int(v) for v in (~finite).nonzero()[0])
            raise ValueError(
                f"{name} holds a non-finite value ({t[row, col].item()}) at row {row}, "
                f"column {col}: the first of its {t.size(0)} rows with a NaN or infinity "
                "(checked because check_finite=True)"
            )

    @staticmethod
    def _edge_sets(edge_index: Any) -> tuple[tuple[Tensor, ...], tuple[str, ...]]:
        """The link set(s) of ``edge_index`` and the names used in messages."""
        if isinstance(edge_index, Tensor):
            return (edge_index,), ("edge_index",)
        if isinstance(edge_index, (tuple, list)):
            if len(edge_index) != 2:
                raise TypeError(
                    "edge_index must be a Tensor [2, E] or a pair (edge_index_icd9, "
                    f"edge_index_icd10) of Tensors; got {len(edge_index)} items"
                )
            names = ("edge_index_icd9", "edge_index_icd10")
            for name, t in zip(names, edge_index, strict=True):
                if not isinstance(t, Tensor):
                    raise TypeError(
                        "edge_index must be a Tensor [2, E] or a pair (edge_index_icd9, "
                        f"edge_index_icd10) of Tensors; {name} is a {type(t).__name__}"
                    )
            return tuple(edge_index), names
        raise TypeError(
            "edge_index must be a Tensor [2, E] or a pair (edge_index_icd9, "
            f"edge_index_icd10) of Tensors; got {type(edge_index).__name__}"
        )

    @staticmethod
    def _check_edge_index(edge_index: Tensor, n: int, m: int, name: str = "edge_index") -> None:
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(
                f"{name} must have shape [2, num_edges], got {tuple(edge_index.shape)}"
            )
        if edge_index.dtype not in (torch.long, torch.int, torch.int16, torch.uint8):
            raise ValueError(f"{name} must be an integer tensor, got {edge_index.dtype}")
        if edge_index.numel() == 0:
            return
        for r, (system, size) in enumerate((("ICD-9", n), ("ICD-10", m))):
            lo, hi = (int(v) for v in torch.aminmax(edge_index[r]))
            bad = lo if lo < 0 else hi if hi >= size else None
            if bad is not None:
                table = "x_icd9" if r == 0 else "x_icd10"
                raise IndexError(
                    f"{name}[{r}] holds {system} index {bad}, out of range for "
                    f"{table} with {size} rows (valid: 0..{size - 1})"
                )

    @staticmethod
    def _check_edge_weight(
        edge_weight: Any, num_edges: int, x: Tensor, name: str, edges_name: str
    ) -> Tensor | None:
        if edge_weight is None:
            return None
        if not isinstance(edge_weight, Tensor):
            raise TypeError(f"{name} must be a Tensor or None, got {type(edge_weight).__name__}")
        if edge_weight.dim() != 1 or edge_weight.numel() != num_edges:
            raise ValueError(
                f"{name} must have shape [{num_edges}] (one ω per edge of "
                f"{edges_name}), got {tuple(edge_weight.shape)}"
            )
        if not edge_weight.is_floating_point():
            raise ValueError(f"{name} must be floating point, got {edge_weight.dtype}")
        if edge_weight.device != x.device:
            raise ValueError(f"{name} is on {edge_weight.device} but x is on {x.device}")
        return edge_weight

    def _edge_weights(
        self, edge_weight: Any, pair: bool, csr: BipartiteCSR, x: Tensor
    ) -> tuple[Tensor | None, Tensor | None]:
        """ω of both link sets, validated, in the sorted order of each set."""
        e9, e10 = csr.num_edges9, csr.num_edges10
        if not pair:
            if isinstance(edge_weight, (tuple, list)):
                raise TypeError(
                    "with a single edge_index tensor, edge_weight must be a Tensor [E] or "
                    "None; a pair (edge_weight_icd9, edge_weight_icd10) goes with a pair "
                    "(edge_index_icd9, edge_index_icd10)"
                )
            w = self._check_edge_weight(edge_weight, e9, x, "edge_weight", "edge_index")
            if w is None:
                return None, None
            w = w[csr.icd9.perm].to(x.dtype)
            return w, w
        if edge_weight is None:
            return None, None
        if not isinstance(edge_weight, (tuple, list)) or len(edge_weight) != 2:
            got = (
                f"{len(edge_weight)} items"
                if isinstance(edge_weight, (tuple, list))
                else type(edge_weight).__name__
            )
            raise TypeError(
                "with a pair edge_index (edge_index_icd9, edge_index_icd10), edge_weight "
                f"must be None or a pair (edge_weight_icd9, edge_weight_icd10); got {got}"
            )
        w9 = self._check_edge_weight(edge_weight[0], e9, x, "edge_weight_icd9", "edge_index_icd9")
        w10 = self._check_edge_weight(
            edge_weight[1], e10, x, "edge_weight_icd10", "edge_index_icd10"
        )
        if w9 is not None:
            w9 = w9[csr.icd9.perm].to(x.dtype)
        if w10 is not None:
            w10 = w10[csr.icd10.perm].to(x.dtype)
        return w9, w10

    @torch.compiler.disable
    def _structure(
        self, edges: tuple[Tensor, ...], names: tuple[str, ...], n: int, m: int
    ) -> BipartiteCSR:
        """Validated CSR structure of the link set(s), cached for a static graph."""
        key = (tuple((tuple(e.shape), e.dtype, e.device) for e in edges), n, m)
        # The cache compares content, not storage: a change made in place (even
        # through .data, which leaves the version counter alone) is seen.
        if (
            self.cached
            and self._cache is not None
            and self._cache[0] == key
            and all(torch.equal(old, new) for old, new in zip(self._cache[1], edges, strict=True))
        ):
            return self._cache[2]
        for edge_index, name in zip(edges, names, strict=True):
            self._check_edge_index(edge_index, n, m, name)
        csr = build_bipartite_csr(edges[0] if len(edges) == 1 else (edges[0], edges[1]), n, m)
        if self.cached:
            copies = tuple(e.detach().clone() for e in edges)
            self._cache = (key, copies, csr)
        else:
            self._cache = None
        return csr

    # -------------------------------------------------------------- forward
    def forward(
        self,
        x: tuple[Tensor, Tensor],
        edge_index: EdgeIndex,
        edge_weight: EdgeWeight = None,
        return_attention_weights: bool = False,
    ) -> tuple[Tensor, Tensor] | tuple[tuple[Tensor, Tensor], AttentionWeights]:
        r"""Update both code tables.

        Args:
            x ((Tensor, Tensor)): ICD-9 embeddings ``[n, d]`` and ICD-10
                embeddings ``[m, d]``.
            edge_index (LongTensor or (LongTensor, LongTensor)): GEM links,
                row 0 ICD-9 and row 1 ICD-10 indices: one ``[2, E]`` tensor
                used by both directions (symmetric), or a pair
                ``(edge_index_icd9 [2, E9], edge_index_icd10 [2, E10])``, the
                first updating the ICD-9 codes, the second the ICD-10 codes
                (directional, the official form).
            edge_weight (Tensor or (Tensor, Tensor), optional): GEM weights
                :math:`\omega`: ``[E]`` for a tensor :obj:`edge_index`;
                :obj:`None` or a pair ``(edge_weight_icd9 [E9] | None,
                edge_weight_icd10 [E10] | None)`` for a pair.
            return_attention_weights (bool, optional): also return the
                attention weights (see *Shapes*). (default: :obj:`False`)
        """
        x9, x10 = self._check_x(x)
        n, m = x9.size(0), x10.size(0)
        if self.check_finite:
            self._check_finite_tables(x9, x10)
        edges, names = self._edge_sets(edge_index)
        for t, name in zip(edges, names, strict=True):
            if t.device != x9.device:
                raise ValueError(f"{name} is on {t.device} but x is on {x9.device}")
        csr = self._structure(edges, names, n, m)
        weight9, weight10 = self._edge_weights(edge_weight, len(edges) == 2, csr, x9)
        e9, e10, heads = csr.num_edges9, csr.num_edges10, self.heads

        # Per-node scores, one mat-vec per table and head: [:, :H] multiplies
        # the code being updated (att[:, :d]), [:, H:] the attended code.
        att = self.att.view(heads, 2, self.channels).transpose(0, 1).reshape(2 * heads, -1)
        score = torch.cat([x9 @ att.t(), x10 @ att.t()], dim=0)  # [n + m, 2H]
        # Per-entry scalars, layout [E9 + E10 + n + m] (see BipartiteCSR): the
        # ICD-9 links seen from their ICD-9 code, the ICD-10 links seen from
        # their ICD-10 code, then the self terms, one softmax over all.
        e = score[:, :heads][csr.att_dst] + score[:, heads:][csr.att_src]
        e = F.leaky_relu(e, self.negative_slope)
        alpha = softmax(e, csr.att_dst, num_nodes=n + m)  # [E9 + E10 + n + m, H]
        if self.training and self.dropout > 0.0:
            alpha = F.dropout(alpha, p=self.dropout, training=True)
        # Averaging the heads commutes with the (head-independent) aggregation.
        mean = alpha.mean(dim=1) if heads > 1 else alpha.view(-1)

        if self.fused and _fused_supports(x9):
            out9, out10 = mat_aggregate(mean, (weight9, weight10), x9, x10, csr)
        else:
            out9, out10 = self._propagate_both(mean, weight9, weight10, x9, x10, csr)

        if not return_attention_weights:
            return out9, out10
        weights = (
            edge_index,
            alpha[:e9][csr.icd9.inv_perm],
            alpha[e9 : e9 + e10][csr.icd10.inv_perm],
            alpha[e9 + e10 : e9 + e10 + n],
            alpha[e9 + e10 + n :],
        )
        return (out9, out10), weights

    def _propagate_both(
        self,
        mean: Tensor,
        weight9: Tensor | None,
        weight10: Tensor | None,
        x9: Tensor,
        x10: Tensor,
        csr: BipartiteCSR,
    ) -> tuple[Tensor, Tensor]:
        """Reference path: PyG message passing, messages of shape [E, d]."""
        n, m = csr.num_icd9, csr.num_icd10
        e9, e10 = csr.num_edges9, csr.num_edges10
        v9, v10 = mean[:e9], mean[e9 : e9 + e10]
        if weight9 is not None:
            v9 = v9 * weight9
        if weight10 is not None:
            v10 = v10 * weight10
        s9, s10 = mean[e9 + e10 : e9 + e10 + n], mean[e9 + e10 + n :]
        to9 = torch.stack([csr.icd9.col, csr.icd9.row])  # ICD-10 source -> ICD-9 target
        to10 = torch.stack([csr.icd10.row, csr.icd10.col])  # ICD-9 source -> ICD-10 target
        agg9 = self.propagate(to9, x=(x10, x9), alpha=v9, size=(m, n))
        agg10 = self.propagate(to10, x=(x9, x10), alpha=v10, size=(n, m))
        out9 = F.elu(s9.unsqueeze(-1) * x9 + agg9)
        out10 = F.elu(s10.unsqueeze(-1) * x10 + agg10)
        return out9, out10

    def message(self, x_j: Tensor, alpha: Tensor) -> Tensor:
        return alpha.unsqueeze(-1) * x_j

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.channels}, heads={self.heads})"
