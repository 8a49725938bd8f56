r"""Fused sparse aggregation of :class:`~jams_pyg.nn.MATConv`.

Both directions of the bipartite ICD-9 ↔ ICD-10 graph are aggregated with
CSR sparse × dense products, so no ``E × d`` message tensor is ever built,
and the backward pass stays sparse as well:

* forward: :math:`U' = \mathrm{ELU}(\mathrm{diag}(s^{9}) U + A^{9} V)` and
  :math:`V' = \mathrm{ELU}(\mathrm{diag}(s^{10}) V + A^{10} U)`, where
  :math:`A^{9} \in \mathbb{R}^{n \times m}` holds the per-edge values
  :math:`v^{9}_e` (ICD-9 code updated from its ICD-10 neighbour) on the
  ``E9`` links of the ICD-9 edge set and
  :math:`A^{10} \in \mathbb{R}^{m \times n}` the values :math:`v^{10}_e` on
  the ``E10`` links of the ICD-10 edge set. The two edge sets may be the same
  (the symmetric, union reading of the GEMs) or differ (the directional
  reading of the official code: forward-GEM links for :math:`A^{9}`,
  backward-GEM links for :math:`A^{10}`);
* backward: feature gradients by the transposed CSR products (the transposed
  structure of each set is built once), per-edge value gradients by sampled
  dense-dense products (:func:`torch.sparse.sampled_addmm`, one dot product
  per edge), self-coefficient gradients by row-wise dot products.

The CSR structure of a graph is built once by :func:`build_bipartite_csr`
and can be reused for every forward pass of a static graph.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch_geometric.utils import index_sort
from torch_geometric.utils.sparse import index2ptr

# PyTorch warns once per process that sparse CSR support is "in beta"; PyG
# silences its own beta warnings the same way. Nothing else is filtered.
warnings.filterwarnings("ignore", message=r".*Sparse CSR tensor support is in beta state.*")

_INT32_MAX = 2**31 - 1


class EdgeSetCSR(NamedTuple):
    r"""CSR structure of one set of ICD-9 ↔ ICD-10 links, both ways round.

    Edges are kept in *sorted order*: by ICD-9 index, then ICD-10 index.

    Attributes:
        perm (LongTensor): ``[E]``, original edge id of each sorted edge.
        inv_perm (LongTensor): ``[E]``, sorted position of each original edge.
        row (LongTensor): ``[E]``, ICD-9 index of each sorted edge.
        col (LongTensor): ``[E]``, ICD-10 index of each sorted edge.
        crow_by9 (Tensor): ``[n + 1]``, CSR row pointer of the ``n × m``
            pattern (rows: ICD-9 codes, columns: ``col``, entries in sorted
            order).
        col_by9 (Tensor): ``[E]``, ``col`` in the CSR index dtype.
        perm_by10 (LongTensor): ``[E]``, sorted position of the edges in the
            order of the ``m × n`` pattern (by ICD-10 index, then ICD-9 index).
        crow_by10 (Tensor): ``[m + 1]``, CSR row pointer of the ``m × n``
            pattern (rows: ICD-10 codes).
        col_by10 (Tensor): ``[E]``, ICD-9 column index of the ``m × n``
            pattern (``row[perm_by10]``).
    """

    perm: Tensor
    inv_perm: Tensor
    row: Tensor
    col: Tensor
    crow_by9: Tensor
    col_by9: Tensor
    perm_by10: Tensor
    crow_by10: Tensor
    col_by10: Tensor

    @property
    def num_edges(self) -> int:
        return self.row.numel()


class BipartiteCSR(NamedTuple):
    r"""CSR structures of the two link sets of a bipartite ICD-9 ↔ ICD-10 graph.

    :attr:`icd9` holds the ``E9`` links that update ICD-9 codes (the pattern
    of :math:`A^{9} \in \mathbb{R}^{n \times m}`), :attr:`icd10` the ``E10``
    links that update ICD-10 codes (the pattern of
    :math:`A^{10} \in \mathbb{R}^{m \times n}`); both are the same object
    for a symmetric graph. The attention entries of a layer are laid out as
    ``[E9 + E10 + n + m]``: the ``E9`` links of :attr:`icd9` seen from their
    ICD-9 code, the ``E10`` links of :attr:`icd10` seen from their ICD-10
    code (each in its set's sorted order), then the ``n`` ICD-9 and ``m``
    ICD-10 self terms; nodes are numbered ICD-9 first, ICD-10 shifted by
    ``n``.

    Attributes:
        num_icd9 (int): :math:`n`, the number of ICD-9 nodes.
        num_icd10 (int): :math:`m`, the number of ICD-10 nodes.
        icd9 (EdgeSetCSR): links updating ICD-9 codes.
        icd10 (EdgeSetCSR): links updating ICD-10 codes.
        att_dst (LongTensor): ``[E9 + E10 + n + m]``, node updated by each
            attention entry (the softmax group).
        att_src (LongTensor): ``[E9 + E10 + n + m]``, node attended to (the
            neighbour, or the node itself for a self term).
        diag9 (tuple[Tensor, Tensor]): CSR row pointer and columns of the
            ``n × n`` identity pattern (row-wise dot products).
        diag10 (tuple[Tensor, Tensor]): same for ``m × m``.
    """

    num_icd9: int
    num_icd10: int
    icd9: EdgeSetCSR
    icd10: EdgeSetCSR
    att_dst: Tensor
    att_src: Tensor
    diag9: tuple[Tensor, Tensor]
    diag10: tuple[Tensor, Tensor]

    @property
    def num_edges9(self) -> int:
        """``E9``, the number of links updating ICD-9 codes."""
        return self.icd9.num_edges

    @property
    def num_edges10(self) -> int:
        """``E10``, the number of links updating ICD-10 codes."""
        return self.icd10.num_edges

    @property
    def symmetric(self) -> bool:
        """Whether both directions use the same link set."""
        return self.icd9 is self.icd10


def _edge_set(edge_index: Tensor, n: int, m: int, index_dtype: torch.dtype) -> EdgeSetCSR:
    src = edge_index[0].long()
    dst = edge_index[1].long()
    # Lexicographic (row, col) order by one stable sort of a combined key: PyG's
    # sort_edge_index sorts unstably, which would reorder duplicate links (and
    # with them the summation order of their messages).
    _, perm = index_sort(src * m + dst, max_value=n * m, stable=True)
    inv_perm = torch.empty_like(perm)
    inv_perm[perm] = torch.arange(perm.numel(), device=perm.device)
    row, col = src[perm], dst[perm]
    _, perm_by10 = index_sort(col * n + row, max_value=n * m, stable=True)
    return EdgeSetCSR(
        perm=perm,
        inv_perm=inv_perm,
        row=row,
        col=col,
        crow_by9=index2ptr(row, n).to(index_dtype),
        col_by9=col.to(index_dtype),
        perm_by10=perm_by10,
        crow_by10=index2ptr(col[perm_by10], m).to(index_dtype),
        col_by10=row[perm_by10].to(index_dtype),
    )


def build_edge_set(edge_index: Tensor, num_rows: int, num_cols: int) -> EdgeSetCSR:
    r"""The :class:`EdgeSetCSR` of one validated ``[2, E]`` link set, row 0 in
    ``[0, num_rows)``, row 1 in ``[0, num_cols)`` (both orientations, sorted once)."""
    n, m = int(num_rows), int(num_cols)
    use_int32 = max(n, m, edge_index.size(1)) < _INT32_MAX
    return _edge_set(edge_index, n, m, torch.int32 if use_int32 else torch.long)


def build_bipartite_csr(
    edge_index: Tensor | tuple[Tensor, Tensor], num_icd9: int, num_icd10: int
) -> BipartiteCSR:
    r"""Sort the links once and build the CSR structures of both directions.

    ``edge_index`` is either one ``[2, E]`` integer tensor, used by both
    directions (symmetric graph), or a pair ``(edge_index_icd9 [2, E9],
    edge_index_icd10 [2, E10])`` of link sets, the first updating ICD-9 codes,
    the second ICD-10 codes; every set has row 0 in ``[0, num_icd9)`` (ICD-9)
    and row 1 in ``[0, num_icd10)`` (ICD-10) and must already be validated. A
    pair of equal tensors gives the symmetric structure. Costs two sorts of
    each set's keys; no feature-sized memory.
    """
    n, m = int(num_icd9), int(num_icd10)
    if isinstance(edge_index, Tensor):
        ei9 = ei10 = edge_index
    else:
        ei9, ei10 = edge_index
    same = ei9 is ei10 or (
        ei9.shape == ei10.shape and ei9.dtype == ei10.dtype and torch.equal(ei9, ei10)
    )
    device = ei9.device
    use_int32 = max(n, m, ei9.size(1), ei10.size(1)) < _INT32_MAX
    index_dtype = torch.int32 if use_int32 else torch.long
    set9 = _edge_set(ei9, n, m, index_dtype)
    set10 = set9 if same else _edge_set(ei10, n, m, index_dtype)
    nodes = torch.arange(n + m, device=device)

    def diag(size: int) -> tuple[Tensor, Tensor]:
        index = torch.arange(size + 1, dtype=index_dtype, device=device)
        return index, index[:size]

    return BipartiteCSR(
        num_icd9=n,
        num_icd10=m,
        icd9=set9,
        icd10=set10,
        att_dst=torch.cat([set9.row, set10.col + n, nodes]),
        att_src=torch.cat([set9.col + n, set10.row, nodes]),
        diag9=diag(n),
        diag10=diag(m),
    )


def _csr(crow: Tensor, col: Tensor, values: Tensor, size: tuple[int, int]) -> Tensor:
    # torch's CSR constructor; the structure was validated once when it was built.
    return torch.sparse_csr_tensor(crow, col, values, size, check_invariants=False)


def _elu_backward(grad: Tensor, out: Tensor) -> Tensor:
    # ELU (alpha = 1) differentiated from its output: 1 where out > 0, out + 1 elsewhere.
    return torch.ops.aten.elu_backward(grad, 1.0, 1, 1.0, True, out)


def _rowwise_dot(a: Tensor, b: Tensor, diag: tuple[Tensor, Tensor]) -> Tensor:
    # [N, d] · [N, d] -> [N]: the diagonal of a @ b^T, sampled on the identity pattern.
    size = a.size(0)
    pattern = _csr(diag[0], diag[1], a.new_zeros(size), (size, size))
    return torch.sparse.sampled_addmm(pattern, a, b.t(), beta=0.0).values()


def _sampled_dot(crow: Tensor, col: Tensor, a: Tensor, b: Tensor) -> Tensor:
    # a[row_e] · b[col_e] for every entry e of the CSR pattern (crow, col).
    pattern = _csr(crow, col, a.new_zeros(col.numel()), (a.size(0), b.size(0)))
    return torch.sparse.sampled_addmm(pattern, a, b.t(), beta=0.0).values()


class MATAggregate(torch.autograd.Function):
    r"""Fused aggregation of both directions of MATConv.

    With attention entries ``alpha = [a9 (E9), a10 (E10), s9 (n), s10 (m)]``
    (each set in its sorted order, heads already averaged) and GEM weights
    ``w9`` (E9), ``w10`` (E10):
    ``out9 = ELU(s9 ⊙ U + A9(a9 ⊙ w9) V)``, ``out10 = ELU(s10 ⊙ V + A10(a10 ⊙ w10) U)``.
    Differentiable once (no double backward; use ``MATConv(fused=False)`` for that).
    """

    @staticmethod
    def forward(
        ctx: Any,
        alpha: Tensor,
        weight9: Tensor | None,
        weight10: Tensor | None,
        x9: Tensor,
        x10: Tensor,
        csr: BipartiteCSR,
    ) -> tuple[Tensor, Tensor]:
        n, m = csr.num_icd9, csr.num_icd10
        e9, e10 = csr.num_edges9, csr.num_edges10
        set9, set10 = csr.icd9, csr.icd10
        alpha = alpha.to(x9.dtype)
        a9, a10 = alpha[:e9], alpha[e9 : e9 + e10]
        s9, s10 = alpha[e9 + e10 : e9 + e10 + n], alpha[e9 + e10 + n :]
        if weight9 is not None:
            weight9 = weight9.to(x9.dtype)
        if weight10 is not None:
            weight10 = weight10.to(x9.dtype)
        v9 = a9 if weight9 is None else a9 * weight9
        v10 = a10 if weight10 is None else a10 * weight10
        # One pass each: the self term is the `input` of the in-place sparse addmm.
        a9_mat = _csr(set9.crow_by9, set9.col_by9, v9, (n, m))
        out9 = (x9 * s9.unsqueeze(-1)).addmm_(a9_mat, x10)
        v10_t = v10[set10.perm_by10]
        a10_mat = _csr(set10.crow_by10, set10.col_by10, v10_t, (m, n))
        out10 = (x10 * s10.unsqueeze(-1)).addmm_(a10_mat, x9)
        torch.nn.functional.elu_(out9)
        torch.nn.functional.elu_(out10)
        ctx.csr = csr
        ctx.save_for_backward(out9, out10, alpha, weight9, weight10, v9, v10, x9, x10)
        return out9, out10

    @staticmethod
    def backward(ctx: Any, grad9: Tensor, grad10: Tensor) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph=True: a second derivative is asked for
            raise RuntimeError(
                "MATConv's fused sparse aggregation is differentiable once only; for "
                "double backward (create_graph=True) use MATConv(..., fused=False)"
            )
        out9, out10, alpha, weight9, weight10, v9, v10, x9, x10 = ctx.saved_tensors
        csr: BipartiteCSR = ctx.csr
        n, m = csr.num_icd9, csr.num_icd10
        e9, e10 = csr.num_edges9, csr.num_edges10
        set9, set10 = csr.icd9, csr.icd10
        need_alpha, need_w9, need_w10, need_x9, need_x10, _ = ctx.needs_input_grad
        gh9 = _elu_backward(grad9, out9)  # gradients of the pre-activations
        gh10 = _elu_backward(grad10, out10)

        grad_alpha = grad_w9 = grad_w10 = None
        need_w9 = need_w9 and weight9 is not None
        need_w10 = need_w10 and weight10 is not None
        if need_alpha or need_w9 or need_w10:
            # d out9[row] / d v9[e] = x10[col],  d out10[col] / d v10[e] = x9[row]:
            # one dot product per edge, each on its set's ICD-9-major pattern
            # (sorted order).
            grad_v9 = _sampled_dot(set9.crow_by9, set9.col_by9, gh9, x10)
            grad_v10 = _sampled_dot(set10.crow_by9, set10.col_by9, x9, gh10)
            if need_alpha:
                grad_a9 = grad_v9 if weight9 is None else grad_v9 * weight9
                grad_a10 = grad_v10 if weight10 is None else grad_v10 * weight10
                grad_s9 = _rowwise_dot(gh9, x9, csr.diag9)
                grad_s10 = _rowwise_dot(gh10, x10, csr.diag10)
                grad_alpha = torch.cat([grad_a9, grad_a10, grad_s9, grad_s10])
            if need_w9:
                grad_w9 = grad_v9 * alpha[:e9]
            if need_w10:
                grad_w10 = grad_v10 * alpha[e9 : e9 + e10]
        s9, s10 = alpha[e9 + e10 : e9 + e10 + n], alpha[e9 + e10 + n :]

        # x9 reaches out9 by the self term and out10 by A10 (its transpose has
        # the ICD-9-major pattern of the ICD-10 set); likewise x10. The first
        # gradient gets a fresh buffer, the second reuses the buffer of its
        # pre-activation gradient, which is then no longer needed (the larger
        # table gets the reused buffer).
        def grad_of_x9(reuse: bool) -> Tensor:
            self_term = gh9.mul_(s9.unsqueeze(-1)) if reuse else gh9 * s9.unsqueeze(-1)
            a10_t = _csr(set10.crow_by9, set10.col_by9, v10, (n, m))  # A10^T, rows: ICD-9
            return self_term.addmm_(a10_t, gh10)

        def grad_of_x10(reuse: bool) -> Tensor:
            self_term = gh10.mul_(s10.unsqueeze(-1)) if reuse else gh10 * s10.unsqueeze(-1)
            v9_t = v9[set9.perm_by10]
            a9_t = _csr(set9.crow_by10, set9.col_by10, v9_t, (m, n))  # A9^T, rows: ICD-10
            return self_term.addmm_(a9_t, gh9)

        grad_x9 = grad_x10 = None
        if n <= m:
            grad_x9 = grad_of_x9(reuse=False) if need_x9 else None
            grad_x10 = grad_of_x10(reuse=True) if need_x10 else None
        else:
            grad_x10 = grad_of_x10(reuse=False) if need_x10 else None
            grad_x9 = grad_of_x9(reuse=True) if need_x9 else None
        return grad_alpha, grad_w9, grad_w10, grad_x9, grad_x10, None


# Dynamo cannot trace sparse CSR tensors: torch.compile runs this eagerly
# (one graph break) and compiles what comes before and after it.
@torch.compiler.disable
def mat_aggregate(
    alpha: Tensor,
    weight: Tensor | tuple[Tensor | None, Tensor | None] | None,
    x9: Tensor,
    x10: Tensor,
    csr: BipartiteCSR,
) -> tuple[Tensor, Tensor]:
    r"""Fused MAT aggregation of both directions (see :class:`MATAggregate`).

    Args:
        alpha (Tensor): ``[E9 + E10 + n + m]`` attention entries in the
            layout of :class:`BipartiteCSR` (each set in its sorted order,
            heads averaged): weight of ICD-10 neighbour ``icd9.col[e]`` in the
            update of ICD-9 code ``icd9.row[e]``, weight of ICD-9 neighbour
            ``icd10.row[e]`` in the update of ICD-10 code ``icd10.col[e]``,
            then the ICD-9 and ICD-10 self weights.
        weight (Tensor or (Tensor, Tensor), optional): GEM weights
            :math:`\omega`, multiplied after the softmax: a pair
            ``(w9 [E9] | None, w10 [E10] | None)`` in the sorted order of each
            set, or, for a symmetric structure only, one ``[E]`` tensor used by
            both directions; ``None`` for all ones.
        x9 (Tensor): ``[n, d]`` ICD-9 features.
        x10 (Tensor): ``[m, d]`` ICD-10 features.
        csr (BipartiteCSR): structure from :func:`build_bipartite_csr`.

    Returns:
        ``(out9 [n, d], out10 [m, d])`` after the ELU.
    """
    if isinstance(weight, Tensor):
        if not csr.symmetric:
            raise TypeError("with two different link sets, weight must be a pair (w9, w10) or None")
        weight9 = weight10 = weight
    elif weight is None:
        weight9 = weight10 = None
    else:
        weight9, weight10 = weight
    return MATAggregate.apply(alpha, weight9, weight10, x9.contiguous(), x10.contiguous(), csr)


class MATSpMM(torch.autograd.Function):
    r"""One direction's weighted neighbour sum :math:`A(\mathbf{v})\,X_{src}` on CSR.

    ``edges`` is the :class:`EdgeSetCSR` of the ``[destination; source]`` pairs (its
    "ICD-9" side is the destination), ``values`` the ``[E]`` entries of :math:`A` in its
    sorted order. The backward pass stays sparse: one dot product per link for
    ``values`` and the transposed CSR product for ``x_src``. Differentiable once.
    """

    @staticmethod
    def forward(ctx: Any, values: Tensor, x_src: Tensor, edges: EdgeSetCSR) -> Tensor:
        num_dst = edges.crow_by9.numel() - 1
        values = values.to(x_src.dtype)
        a = _csr(edges.crow_by9, edges.col_by9, values, (num_dst, x_src.size(0)))
        # into fresh memory: `a @ x_src` would zero-fill a buffer and copy it
        out = x_src.new_empty(num_dst, x_src.size(1)).addmm_(a, x_src, beta=0.0)
        ctx.edges = edges
        ctx.save_for_backward(values, x_src)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():
            raise RuntimeError(
                "MATConv's fused sparse aggregation is differentiable once only; for "
                "double backward (create_graph=True) use MATConv(..., fused=False)"
            )
        values, x_src = ctx.saved_tensors
        edges: EdgeSetCSR = ctx.edges
        grad = grad.contiguous()
        need_values, need_x, _ = ctx.needs_input_grad
        grad_values = grad_x = None
        if need_values:
            grad_values = _sampled_dot(edges.crow_by9, edges.col_by9, grad, x_src)
        if need_x:
            a_t = _csr(edges.crow_by10, edges.col_by10, values[edges.perm_by10],
                       (x_src.size(0), grad.size(0)))
            grad_x = grad.new_empty(x_src.shape).addmm_(a_t, grad, beta=0.0)
        return grad_values, grad_x, None


@torch.compiler.disable
def mat_spmm(values: Tensor, x_src: Tensor, edges: EdgeSetCSR) -> Tensor:
    r"""``[N_dst, d]`` sums :math:`\sum_j v_{ij}\,\mathbf{x}_j` of one direction (see
    :class:`MATSpMM`); ``values`` in the sorted order of ``edges``."""
    return MATSpMM.apply(values, x_src.contiguous(), edges)


class MATSelfUpdate(torch.autograd.Function):
    r""":math:`\mathrm{ELU}(\mathbf{h} + \alpha_{ii}\mathbf{x}_i)` in place on the fused
    sums ``h`` (:class:`MATSpMM`'s fresh output): two passes over ``[N, d]`` instead of
    five tensors, the ELU differentiated from its output and
    :math:`\partial/\partial\alpha_{ii}` by row-wise dot products. Differentiable once."""

    @staticmethod
    def forward(ctx: Any, h: Tensor, x_dst: Tensor, self_alpha: Tensor) -> Tensor:
        self_alpha = self_alpha.to(x_dst.dtype)
        out = torch.nn.functional.elu_(h.addcmul_(x_dst, self_alpha.unsqueeze(-1)))
        ctx.mark_dirty(h)
        ctx.save_for_backward(out, x_dst, self_alpha)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():
            raise RuntimeError(
                "MATConv's fused sparse aggregation is differentiable once only; for "
                "double backward (create_graph=True) use MATConv(..., fused=False)"
            )
        out, x_dst, self_alpha = ctx.saved_tensors
        gh = _elu_backward(grad, out)
        need_h, need_x, need_alpha = ctx.needs_input_grad
        grad_alpha = None
        if need_alpha:
            size = x_dst.size(0)
            index = torch.arange(size + 1, dtype=torch.int32 if size < _INT32_MAX
                                 else torch.long, device=x_dst.device)
            grad_alpha = _rowwise_dot(gh, x_dst.contiguous(), (index, index[:size]))
        grad_x = gh * self_alpha.unsqueeze(-1) if need_x else None
        return gh if need_h else None, grad_x, grad_alpha


@torch.compiler.disable
def mat_self_update(h: Tensor, x_dst: Tensor, self_alpha: Tensor) -> Tensor:
    r"""The update of :class:`MATSelfUpdate`; ``h`` is overwritten."""
    return MATSelfUpdate.apply(h, x_dst, self_alpha)
