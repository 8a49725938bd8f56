"""The medical code attention layer (MAT) of JAMS, paper section 2.1."""

from __future__ import annotations

import math
from typing import Any, Final

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch_geometric import EdgeIndex
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.utils import is_torch_sparse_tensor, softmax, to_edge_index

from jams_pyg.nn.sparse_aggr import (
    BipartiteCSR,
    EdgeSetCSR,
    build_bipartite_csr,
    build_edge_set,
    mat_aggregate,
    mat_self_update,
    mat_spmm,
)

#: Links of the two-table call: one set used by both directions, or
#: ``(edge_index_icd9, edge_index_icd10)``.
MATEdges = Tensor | tuple[Tensor, Tensor]
#: ``[E]`` weights of a single link set, or a pair ``(w_icd9, w_icd10)``.
MATEdgeWeight = Tensor | tuple[Tensor | None, Tensor | None] | None
AttentionWeights = tuple[MATEdges, Tensor, Tensor, Tensor, Tensor]
#: (table names, node kinds) used in the messages of each call form.
_JOINT_NAMES = (("x_icd9", "x_icd10"), ("ICD-9", "ICD-10"))
_PYG_NAMES = (("x_src", "x_dst"), ("source", "destination"))
_CACHE_SIZE = 4  # link sets kept: e.g. both edge types of a HeteroConv sharing one layer


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


def _plain(t: Tensor) -> Tensor:
    # EdgeIndex -> Tensor: the structure code indexes and sorts plain tensors.
    return t.as_tensor() if isinstance(t, EdgeIndex) else t


def tensor_version(t: Tensor) -> int:
    """``t``'s version counter (bumped by in-place changes); ``-1`` for an inference
    tensor, which has none (and cannot be changed outside inference mode)."""
    return -1 if t.is_inference() else t._version


class MATConv(MessagePassing):
    r"""The medical code attention network (MAT) of JAMS, from the `"Bridging
    the Code Gap: A Joint Learning Framework Across Medical Coding Systems"`
    paper (section 2.1): a graph attention layer between the ICD-9 and ICD-10
    code-embedding tables
    :math:`\mathbf{U} \in \mathbb{R}^{n \times d}` and
    :math:`\mathbf{V} \in \mathbb{R}^{m \times d}`, linked by the GEMs.

    A code :math:`i` is updated from its own embedding and those of its
    neighbours :math:`\mathcal{N}(i)` in the other system:

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
        \sum_{j \in \mathcal{N}(i)} \alpha_{ij}\,\omega_{ij}\,\mathbf{v}_j\right).

    The first half of :math:`\mathbf{a}` multiplies the code being updated,
    the second half the neighbour (or the code itself for the self term).
    The GEM weight :math:`\omega_{ij}` (1 for an exact, 0.5 for an
    approximate mapping) multiplies the message *after* the softmax and is not
    renormalised. A code without links becomes :math:`\mathrm{ELU}(\mathbf{u}_i)`.
    With :math:`H > 1` heads, each head :math:`h` has its own vector
    :math:`\mathbf{a}^{(h)}` and the heads are averaged inside the ELU (as in
    the last GAT layer), so the output keeps :math:`d` channels:
    :math:`\mathbf{u}'_i = \mathrm{ELU}\big(\frac{1}{H}\sum_h (\alpha^{(h)}_{ii}
    \mathbf{u}_i + \sum_j \alpha^{(h)}_{ij}\omega_{ij}\mathbf{v}_j)\big)`.

    The layer has two call forms (:obj:`bipartite`):

    * **two tables** (``bipartite=False``, the form of the JAMS model): one
      call updates both tables with the same :math:`\mathbf{a}`,
      ``conv((U, V), edge_index, edge_weight) -> (U', V')``. The links come
      as two sets, both written as (ICD-9 code, ICD-10 code) pairs:
      :math:`\mathcal{E}_9`, whose links update the ICD-9 codes
      (:math:`\mathcal{N}_9(i) = \{j : (i, j) \in \mathcal{E}_9\}`), and
      :math:`\mathcal{E}_{10}`, whose links update the ICD-10 codes. A pair
      ``(edge_index_icd9, edge_index_icd10)`` is the **directional** reading
      of the authors' official code (``GY-Jeong/JAMS``,
      ``src/models/modules/graph_attention.py``), which loads
      ``adj_matrix_icd9_to_icd10.npy`` (:math:`n \times m`, driving the ICD-9
      updates) and ``adj_matrix_icd10_to_icd9.npy`` (:math:`m \times n`,
      driving the ICD-10 updates): most likely the forward GEM (ICD-9 →
      ICD-10 file) and the backward GEM file; pass the forward-file links as
      ``edge_index_icd9`` and the backward-file links, written ICD-9 first as
      well, as ``edge_index_icd10``. One tensor is the **symmetric** (union)
      reading, :math:`\mathcal{E}_9 = \mathcal{E}_{10}`, as
      :attr:`jams_pyg.GEMGraph.edge_index` gives it.
    * **PyG's bipartite call** (``bipartite=True``):
      ``conv((x_src, x_dst), edge_index, edge_weight) -> x_dst'`` updates the
      destination codes only, :math:`\mathbf{u} = \mathbf{x}_{dst}`,
      :math:`\mathbf{v} = \mathbf{x}_{src}`, ``edge_index`` row 0 source and
      row 1 destination indices (``x`` one tensor: both are that table). This
      is the form :class:`~torch_geometric.nn.conv.HeteroConv` and
      :func:`~torch_geometric.nn.to_hetero` call, one edge type per direction,
      over :meth:`jams_pyg.GEMGraph.to_hetero_data` (whose edge types say
      which links update which system: the directional and the union reading
      differ only in their links). ``HeteroConv({EDGE_TYPE: conv,
      REV_EDGE_TYPE: conv}, aggr="sum")`` with *one* layer shared by both
      edge types is exactly the two-table call (same :math:`\mathbf{a}`, each
      destination type receives one edge type); :func:`to_hetero` copies the
      layer per edge type, so each direction gets its own :math:`\mathbf{a}`.
      Where several edge types end in one node type, ``HeteroConv(aggr=...)``
      combines the *finished* outputs (each with its own softmax over its own
      links plus the self term, and its own ELU): ``aggr="sum"`` is then
      **not** one softmax over the union of the links (which is what a
      single edge type holding all of them gives), and it counts the self
      term once per edge type.

    Computation: per-node scores :math:`\mathbf{a}_{1}^{\top}\mathbf{u}_i`,
    :math:`\mathbf{a}_{2}^{\top}\mathbf{u}_i` (one mat-vec per table and
    head), per-link scalars by gathering them (:meth:`edge_update`), a sparse
    softmax over the links plus the self terms
    (:func:`torch_geometric.utils.softmax`), and a fused aggregation by CSR
    sparse × dense products whose backward pass stays sparse
    (:mod:`jams_pyg.nn.sparse_aggr`; :meth:`message_and_aggregate` in the
    bipartite form): no dense :math:`n \times m` matrix and no
    :math:`|\mathcal{E}| \times d` message tensor is built. The CSR structure
    of the links is sorted once and cached for a static graph. The fused path
    is off, as in PyG, under ``explain=True`` (the edge mask then scales each
    message :math:`\alpha_{ij}\omega_{ij}\mathbf{v}_j`; the self term is not
    masked) and under :func:`torch.compile`, where the bipartite form traces
    into one graph (``fullgraph=True``) as :class:`~torch_geometric.nn.GATConv`
    does.

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
            passing (:meth:`message` and :meth:`aggregate`), which builds an
            :math:`|\mathcal{E}| \times d` message tensor: a slower reference
            path, numerically the same, and the one for double backward (the
            fused path is differentiable once). Tables that are neither
            float32 nor float64 always take this path (the sparse CSR kernels
            support only those). (default: :obj:`True`)
        cached (bool, optional): If :obj:`True`, keep the CSR structures of
            the last few link sets and reuse them while the same links come
            again: a plain tensor is compared by content
            (:math:`O(|\mathcal{E}|)` :func:`torch.equal`, which sees any
            change, in place ones included), a
            :class:`torch_geometric.EdgeIndex` by identity and version counter
            (no comparison). (default: :obj:`True`)
        check_finite (bool, optional): If :obj:`True`, check on every call
            that both tables are finite and raise a :class:`ValueError`
            naming the table and the first row holding a NaN or infinity (one
            reduction per table and a synchronisation on GPU; a graph break
            under :func:`torch.compile`). (default: :obj:`False`)
        att_gain (float, optional): Gain of the Xavier-uniform initialisation
            of :math:`\mathbf{a}`: bound
            :math:`\text{gain}\cdot\sqrt{6 / (H + 2d)}`. :obj:`1.0` is PyG's
            :func:`~torch_geometric.nn.inits.glorot`; the official code
            (``GY-Jeong/JAMS``, ``src/models/modules/graph_attention.py``)
            uses ``nn.init.xavier_uniform_(a, gain=1.414)`` on its
            :math:`2d \times 1` vector, which is ``att_gain=1.414`` here
            (:math:`H = 1`). (default: :obj:`1.0`)
        bipartite (bool, optional): The call form: :obj:`False` for the
            two-table call, :obj:`True` for PyG's bipartite call (see above).
            (default: :obj:`False`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`; ``aggr`` can only be
            ``"add"`` (the attention-weighted sum).

    The tables must have the dtype of the layer's parameters (convert with
    ``conv.to(dtype)``), except under :func:`torch.autocast`, where float32,
    bfloat16 and float16 tables and parameters may mix.

    Shapes:
        - **input (two tables):**
          code embeddings :math:`((n, d), (m, d))` (ICD-9, ICD-10);
          edge indices :math:`(2, |\mathcal{E}|)` (symmetric) or
          :math:`((2, |\mathcal{E}_9|), (2, |\mathcal{E}_{10}|))`
          (directional), every set with row 0 ICD-9 and row 1 ICD-10 indices;
          edge weights :math:`\omega` *(optional, ones by default)*
          :math:`(|\mathcal{E}|)` for a tensor :obj:`edge_index`, or
          :obj:`None` or a pair :math:`((|\mathcal{E}_9|), (|\mathcal{E}_{10}|))`
          (either item may be :obj:`None`) for a pair
        - **output (two tables):** :math:`((n, d), (m, d))`. If
          :obj:`return_attention_weights=True`, then
          :math:`(((n, d), (m, d)), (\text{edge\_index}, (|\mathcal{E}_9|, H),
          (|\mathcal{E}_{10}|, H), (n, H), (m, H)))`: the :obj:`edge_index`
          as passed, the weight each ICD-9 code gives its ICD-10 neighbour on
          each column of the ICD-9 link set, the weight each ICD-10 code gives
          its ICD-9 neighbour on each column of the ICD-10 link set (both
          aligned with the one tensor in the symmetric form), and the self
          weights of the ICD-9 and ICD-10 codes (:math:`\alpha` before
          :math:`\omega`, after dropout).
        - **input (bipartite):** node features :math:`(|\mathcal{V}|, d)` or
          :math:`((|\mathcal{V}_s|, d), (|\mathcal{V}_t|, d))`; edge indices
          :math:`(2, |\mathcal{E}|)` (a :class:`torch.Tensor` or
          :class:`torch_geometric.EdgeIndex`) or a :class:`torch.sparse`
          COO/CSR adjacency :math:`(|\mathcal{V}_t|, |\mathcal{V}_s|)`
          (transposed, as PyG's convolutions take it; its values are
          :math:`\omega` unless :obj:`edge_weight` is given); edge weights
          :math:`(|\mathcal{E}|)` *(optional)*
        - **output (bipartite):** :math:`(|\mathcal{V}_t|, d)`. If
          :obj:`return_attention_weights=True`, then
          :math:`((|\mathcal{V}_t|, d), (\text{edge\_index}, (|\mathcal{E}|, H),
          (|\mathcal{V}_t|, H)))`: the links as passed, their
          :math:`\alpha_{ij}` (in the order of the links, for a sparse
          adjacency the order of its indices) and the self weights.
    """

    # The fused path receives the cached, destination-sorted EdgeIndex.
    SUPPORTS_FUSED_EDGE_INDEX: Final[bool] = True

    def __init__(
        self,
        channels: int,
        heads: int = 1,
        negative_slope: float = 0.2,
        dropout: float = 0.0,
        fused: bool = True,
        cached: bool = True,
        check_finite: bool = False,
        att_gain: float = 1.0,
        bipartite: bool = False,
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
        if not (math.isfinite(float(att_gain)) and float(att_gain) > 0.0):
            raise ValueError(f"att_gain must be a positive number, got {att_gain!r}")
        self.channels = channels
        self.heads = heads
        self.negative_slope = float(negative_slope)
        self.dropout = float(dropout)
        self.fused = fused
        self.cached = cached
        self.check_finite = check_finite
        self.att_gain = float(att_gain)
        self.bipartite = bool(bipartite)
        self.att = Parameter(torch.empty(heads, 2 * channels))
        # most recent first: (key, the links as passed or copies of them, structure)
        self._cache: list[tuple[tuple[Any, ...], tuple[tuple[Tensor, int], ...], Any]] = []
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        # PyG's glorot, times the gain (att_gain=1.0: exactly glorot).
        bound = self.att_gain * math.sqrt(6.0 / (self.att.size(-2) + self.att.size(-1)))
        with torch.no_grad():
            self.att.uniform_(-bound, bound)
        self._cache = []

    # ------------------------------------------------------------- checking
    def _check_tables(self, x9: Any, x10: Any, names: tuple[str, str]) -> None:
        for name, t in zip(names, (x9, x10), strict=True):
            if not isinstance(t, Tensor):
                raise TypeError(f"{name} must be a Tensor, got {type(t).__name__}")
            if t.dim() != 2:
                raise ValueError(
                    f"{name} must be 2-D [num_codes, channels], got shape {tuple(t.shape)}"
                )
        a, b = names
        if x9.size(1) != x10.size(1):
            raise ValueError(
                f"feature sizes differ: {a} has {x9.size(1)} channels, {b} has {x10.size(1)}"
            )
        if x9.size(1) != self.channels:
            raise ValueError(
                f"{a} and {b} have {x9.size(1)} channels, but this MATConv "
                f"was built with channels={self.channels}"
            )
        if x9.dtype != x10.dtype:
            raise ValueError(f"{a} is {x9.dtype} but {b} is {x10.dtype}")
        if x9.device != x10.device:
            raise ValueError(f"{a} is on {x9.device} but {b} is on {x10.device}")
        if not x9.is_floating_point():
            raise ValueError(f"{a} and {b} must be floating point, got {x9.dtype}")
        param = self.att.dtype
        if x9.dtype != param and not _autocast_covers(x9, param):
            raise ValueError(
                f"{a} and {b} are {x9.dtype} but this MATConv's parameters are "
                f"{param}: convert the layer with conv.to({x9.dtype}) (or the tables "
                f"with .to({param}))"
            )

    def _check_x(self, x: Any) -> tuple[Tensor, Tensor]:
        if not isinstance(x, (tuple, list)) or len(x) != 2:
            got = type(x).__name__ if not isinstance(x, (tuple, list)) else f"{len(x)} items"
            hint = (" (for PyG's call conv((x_src, x_dst), edge_index) -> x_dst', build "
                    "the layer with bipartite=True)" if isinstance(x, Tensor) else "")
            raise TypeError(
                f"MATConv expects x = (x_icd9, x_icd10), a pair of tensors; got {got}{hint}"
            )
        self._check_tables(x[0], x[1], _JOINT_NAMES[0])
        return x[0], x[1]

    @staticmethod
    @torch.compiler.disable
    def _check_finite_tables(tables: tuple[Tensor, ...], names: tuple[str, ...]) -> None:
        for name, t in zip(names, tables, strict=True):
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
        """The link set(s) of a two-table call's ``edge_index`` and their names."""
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
    def _check_edge_shape(edge_index: Tensor, name: str) -> None:
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(
                f"{name} must have shape [2, num_edges], got {tuple(edge_index.shape)}"
            )
        if edge_index.dtype not in (torch.long, torch.int, torch.int16, torch.uint8):
            raise ValueError(f"{name} must be an integer tensor, got {edge_index.dtype}")

    @staticmethod
    def _check_edge_range(
        edge_index: Tensor, sizes: tuple[int, int], name: str,
        names: tuple[tuple[str, str], tuple[str, str]] = _JOINT_NAMES,
    ) -> None:
        if edge_index.numel() == 0:
            return
        tables, kinds = names
        for r in range(2):
            lo, hi = (int(v) for v in torch.aminmax(edge_index[r]))
            bad = lo if lo < 0 else hi if hi >= sizes[r] else None
            if bad is not None:
                raise IndexError(
                    f"{name}[{r}] holds {kinds[r]} index {bad}, out of range for "
                    f"{tables[r]} with {sizes[r]} rows (valid: 0..{sizes[r] - 1})"
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
        """ω of both link sets of a two-table call, validated, in each set's sorted order."""
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
        w9, w10 = self._weight_pair(edge_weight, (e9, e10), x)
        if w9 is not None:
            w9 = w9[csr.icd9.perm].to(x.dtype)
        if w10 is not None:
            w10 = w10[csr.icd10.perm].to(x.dtype)
        return w9, w10

    def _weight_pair(
        self, edge_weight: Any, sizes: tuple[int, int], x: Tensor
    ) -> tuple[Tensor | None, Tensor | None]:
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
        w9 = self._check_edge_weight(
            edge_weight[0], sizes[0], x, "edge_weight_icd9", "edge_index_icd9"
        )
        w10 = self._check_edge_weight(
            edge_weight[1], sizes[1], x, "edge_weight_icd10", "edge_index_icd10"
        )
        return w9, w10

    # ---------------------------------------------------------------- cache
    @torch.compiler.disable
    def _structure(
        self,
        edges: tuple[Tensor, ...],
        names: tuple[str, ...],
        sizes: tuple[int, int],
        bipartite: bool,
    ) -> Any:
        """Validated CSR structure of the link set(s), cached for a static graph: a
        :class:`BipartiteCSR` for the two-table call, ``(EdgeSetCSR, EdgeIndex)``
        (destination-major) for the bipartite one."""
        key = (bipartite, tuple((tuple(e.shape), e.dtype, e.device) for e in edges), sizes)
        for pos, (old_key, old_edges, structure) in enumerate(self._cache):
            if old_key == key and all(
                # An EdgeIndex is its own cache key (its version counter sees in-place
                # changes); a plain tensor is compared by content, which also sees
                # changes made through .data (those leave the version counter alone).
                (old is new and tensor_version(old) == version)
                if isinstance(new, EdgeIndex)
                else (not isinstance(old, EdgeIndex) and torch.equal(old, new))
                for (old, version), new in zip(old_edges, edges, strict=True)
            ):
                self._cache.insert(0, self._cache.pop(pos))
                return structure
        plain = tuple(_plain(e) for e in edges)
        table_names = _PYG_NAMES if bipartite else _JOINT_NAMES
        for edge_index, name in zip(plain, names, strict=True):
            self._check_edge_range(edge_index, sizes, name, table_names)
        if bipartite:
            src, dst = plain[0][0], plain[0][1]
            edge_set = build_edge_set(torch.stack([dst, src]), sizes[1], sizes[0])
            # the links in the set's order (by destination, then source), as PyG's
            # EdgeIndex: propagate hands it to message_and_aggregate
            sorted_index = EdgeIndex(
                torch.stack([edge_set.col, edge_set.row]),
                sparse_size=sizes,
                sort_order="col",
            )
            structure: Any = (edge_set, sorted_index)
        else:
            n, m = sizes
            structure = build_bipartite_csr(plain[0] if len(plain) == 1 else plain, n, m)
        if self.cached:
            kept = tuple(
                (e, tensor_version(e)) if isinstance(e, EdgeIndex) else (e.detach().clone(), 0)
                for e in edges
            )
            self._cache.insert(0, (key, kept, structure))
            del self._cache[_CACHE_SIZE:]
        return structure

    # -------------------------------------------------------------- forward
    def forward(
        self,
        x: Any,
        edge_index: Any,
        edge_weight: Any = None,
        return_attention_weights: bool = False,
        size: tuple[int, int] | None = None,
    ) -> Any:
        r"""Update the code tables (see the class docstring for both call forms).

        Args:
            x: Two tables: ``(x_icd9 [n, d], x_icd10 [m, d])``. Bipartite:
                ``x [N, d]`` or ``(x_src [N_s, d], x_dst [N_t, d])``.
            edge_index: Two tables: one ``[2, E]`` tensor used by both
                directions (symmetric) or a pair ``(edge_index_icd9 [2, E9],
                edge_index_icd10 [2, E10])``, the first updating the ICD-9
                codes, the second the ICD-10 codes (directional, the official
                form), row 0 ICD-9 and row 1 ICD-10 indices. Bipartite: a
                ``[2, E]`` tensor or :class:`torch_geometric.EdgeIndex`, row 0
                source and row 1 destination, or a :class:`torch.sparse`
                adjacency ``[N_t, N_s]``.
            edge_weight (optional): GEM weights :math:`\omega`: ``[E]`` for a
                tensor :obj:`edge_index`; :obj:`None` or a pair
                ``(edge_weight_icd9 [E9] | None, edge_weight_icd10 [E10] | None)``
                for a pair.
            return_attention_weights (bool, optional): also return the
                attention weights (see *Shapes*). (default: :obj:`False`)
            size ((int, int), optional): Bipartite only: ``(N_s, N_t)``, which
                must agree with the tables.
        """
        if self.bipartite:
            return self._forward_bipartite(x, edge_index, edge_weight,
                                           return_attention_weights, size)
        if size is not None:
            raise TypeError("size is for the bipartite call (MATConv(..., bipartite=True))")
        return self._forward_tables(x, edge_index, edge_weight, return_attention_weights)

    def _att_rows(self) -> Tensor:
        # [2H, d]: rows :H multiply the code being updated (att[:, :d]), rows H: the
        # attended code, so one mat-vec per table gives both per-node scores.
        return self.att.view(self.heads, 2, self.channels).transpose(0, 1).reshape(
            2 * self.heads, -1
        )

    def _forward_tables(
        self, x: Any, edge_index: Any, edge_weight: Any, return_attention_weights: bool
    ) -> tuple[Tensor, Tensor] | tuple[tuple[Tensor, Tensor], AttentionWeights]:
        x9, x10 = self._check_x(x)
        n, m = x9.size(0), x10.size(0)
        if self.check_finite:
            self._check_finite_tables((x9, x10), _JOINT_NAMES[0])
        edges, names = self._edge_sets(edge_index)
        for t, name in zip(edges, names, strict=True):
            self._check_edge_shape(t, name)
            if t.device != x9.device:
                raise ValueError(f"{name} is on {t.device} but x is on {x9.device}")
        if self.explain:
            return self._explain_tables(x9, x10, edges, edge_weight, return_attention_weights)
        csr = self._structure(edges, names, (n, m), bipartite=False)
        weight9, weight10 = self._edge_weights(edge_weight, len(edges) == 2, csr, x9)
        e9, e10, heads = csr.num_edges9, csr.num_edges10, self.heads

        # Per-node scores, one mat-vec per table and head: [:, :H] multiplies
        # the code being updated (att[:, :d]), [:, H:] the attended code.
        att = self._att_rows()
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
        """Reference path of the two-table call: PyG message passing, [E, d] messages."""
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
        # update() adds the self term and applies the ELU
        out9 = self.propagate(to9, x=(x10, x9), alpha=v9, self_alpha=s9, size=(m, n),
                              edges=None)
        out10 = self.propagate(to10, x=(x9, x10), alpha=v10, self_alpha=s10, size=(n, m),
                               edges=None)
        return out9, out10

    def _explain_tables(
        self, x9: Tensor, x10: Tensor, edges: tuple[Tensor, ...], edge_weight: Any,
        return_attention_weights: bool,
    ) -> Any:
        # Under explain the layer's one edge mask scales the messages of both
        # directions of the one link set, in its column order (the bipartite call twice).
        if len(edges) == 2:
            raise ValueError(
                "explain=True needs one link set for the two-table call (its edge mask "
                "covers one edge_index); explain a directional graph per direction with "
                "MATConv(..., bipartite=True), e.g. in a HeteroConv"
            )
        if isinstance(edge_weight, (tuple, list)):
            raise TypeError("with a single edge_index tensor, edge_weight must be a Tensor "
                            "[E] or None")
        ei = _plain(edges[0])
        out9, w9 = self._forward_bipartite((x10, x9), ei.flip(0), edge_weight, True, None)
        out10, w10 = self._forward_bipartite((x9, x10), ei, edge_weight, True, None)
        if not return_attention_weights:
            return out9, out10
        return (out9, out10), (edges[0], w9[1], w10[1], w9[2], w10[2])

    def _forward_bipartite(
        self,
        x: Any,
        edge_index: Any,
        edge_weight: Any,
        return_attention_weights: bool,
        size: tuple[int, int] | None,
    ) -> Tensor | tuple[Tensor, tuple[Any, Tensor, Tensor]]:
        """PyG's call: ``conv((x_src, x_dst), edge_index, edge_weight) -> x_dst'``."""
        if isinstance(x, Tensor):
            x_src = x_dst = x
        elif isinstance(x, (tuple, list)) and len(x) == 2:
            x_src, x_dst = x
            if x_dst is None:
                raise ValueError("MATConv needs the destination table: its self term "
                                 "attends to x_dst (got x = (x_src, None))")
        else:
            raise TypeError(f"x must be a Tensor or a pair (x_src, x_dst); got "
                            f"{type(x).__name__}")
        self._check_tables(x_src, x_dst, _PYG_NAMES[0])
        sizes = (x_src.size(0), x_dst.size(0))
        if size is not None and tuple(size) != sizes:
            raise ValueError(f"size {tuple(size)} does not match (x_src, x_dst) with "
                             f"{sizes[0]} and {sizes[1]} rows")
        if self.check_finite:
            self._check_finite_tables((x_src, x_dst), _PYG_NAMES[0])
        links = edge_index
        if is_torch_sparse_tensor(edge_index):
            if tuple(edge_index.shape) != (sizes[1], sizes[0]):
                raise ValueError(
                    f"the sparse adjacency must have shape [num_dst, num_src] = "
                    f"[{sizes[1]}, {sizes[0]}] (PyG's transposed adjacency), got "
                    f"{tuple(edge_index.shape)}"
                )
            adj_index, values = to_edge_index(edge_index)  # rows: destination
            links = adj_index.flip(0)
            if edge_weight is None and values.is_floating_point():
                edge_weight = values
        elif not isinstance(edge_index, Tensor):
            hint = (" (a pair (edge_index_icd9, edge_index_icd10) is the two-table call: "
                    "build the layer without bipartite=True)"
                    if isinstance(edge_index, (tuple, list)) and len(edge_index) == 2
                    and all(isinstance(t, Tensor) for t in edge_index) else "")
            raise TypeError(
                "edge_index must be a Tensor [2, E], an EdgeIndex or a torch.sparse "
                f"adjacency for the bipartite call; got {type(edge_index).__name__}{hint}"
            )
        self._check_edge_shape(links, "edge_index")
        if links.device != x_src.device:
            raise ValueError(f"edge_index is on {links.device} but x is on {x_src.device}")
        num_edges = links.size(1)
        w = self._check_edge_weight(edge_weight, num_edges, x_src, "edge_weight", "edge_index")

        heads = self.heads
        att = self._att_rows()
        score_src = x_src @ att.t()  # [N_s, 2H]
        score_dst = score_src if x_dst is x_src else x_dst @ att.t()
        compiling = torch.compiler.is_compiling()
        fused = (self.fused and not self.explain and not compiling
                 and _fused_supports(x_src))
        edges: EdgeSetCSR | None = None
        if fused:
            edges, index = self._structure((links,), ("edge_index",), sizes, bipartite=True)
            if w is not None:
                w = w[edges.perm]
        else:
            if not compiling:  # data-dependent checks would break the traced graph
                self._check_edge_range(_plain(links), sizes, "edge_index", _PYG_NAMES)
            # a plain tensor: propagate would fuse a destination-sorted EdgeIndex
            index = _plain(links)

        # [E + N_t, H]: the links (in the order of `index`), then the self terms
        alpha = self.edge_updater(
            index,
            alpha=(score_src[:, heads:], score_dst[:, :heads]),
            self_score=score_dst[:, :heads] + score_dst[:, heads:],
            size=sizes,
        )
        mean = alpha.mean(dim=1) if heads > 1 else alpha.view(-1)
        value = mean[:num_edges] if w is None else mean[:num_edges] * w.to(mean.dtype)
        out = self.propagate(index, x=(x_src, x_dst), alpha=value,
                             self_alpha=mean[num_edges:], size=sizes, edges=edges)
        if not return_attention_weights:
            return out
        link_alpha = alpha[:num_edges]
        if edges is not None:
            link_alpha = link_alpha[edges.inv_perm]
        return out, (edge_index, link_alpha, alpha[num_edges:])

    # ------------------------------------------------------ PyG hooks
    def edge_update(
        self,
        alpha_j: Tensor,
        alpha_i: Tensor,
        self_score: Tensor,
        index: Tensor,
        dim_size: int | None,
    ) -> Tensor:
        r"""Normalised coefficients ``[E + N_t, H]``: :math:`\alpha_{ij}` of each link,
        then :math:`\alpha_{ii}` of each destination (one softmax per destination over
        its links and itself), after dropout in training mode."""
        assert dim_size is not None
        e = F.leaky_relu(torch.cat([alpha_i + alpha_j, self_score]), self.negative_slope)
        group = torch.cat([index, torch.arange(dim_size, device=index.device)])
        alpha = softmax(e, group, num_nodes=dim_size)
        if self.training and self.dropout > 0.0:
            alpha = F.dropout(alpha, p=self.dropout, training=True)
        return alpha

    def message(self, x_j: Tensor, alpha: Tensor) -> Tensor:
        return alpha.unsqueeze(-1) * x_j

    def message_and_aggregate(
        self, edge_index: Tensor, x: tuple[Tensor, Tensor], alpha: Tensor,
        edges: EdgeSetCSR | None,
    ) -> Tensor:
        r""":math:`\sum_j \alpha_{ij}\omega_{ij}\mathbf{x}_j` by one CSR product (no
        :math:`|\mathcal{E}| \times d` messages), for the cached destination-sorted
        ``edge_index``; ``alpha`` holds :math:`\alpha_{ij}\omega_{ij}` in its order."""
        assert edges is not None  # propagate fuses only the EdgeIndex of _structure
        return mat_spmm(alpha, x[0], edges)

    def update(
        self, inputs: Tensor, x: tuple[Tensor, Tensor], self_alpha: Tensor,
        edges: EdgeSetCSR | None,
    ) -> Tensor:
        r""":math:`\mathrm{ELU}(\alpha_{ii}\mathbf{x}_i + \text{aggregated messages})`; after
        :meth:`message_and_aggregate` (``edges`` given) in place on its fresh sums."""
        if edges is not None:
            return mat_self_update(inputs, x[1], self_alpha)
        return F.elu(self_alpha.unsqueeze(-1) * x[1] + inputs)

    def __repr__(self) -> str:
        extra = ", bipartite=True" if self.bipartite else ""
        return f"{self.__class__.__name__}({self.channels}, heads={self.heads}{extra})"
