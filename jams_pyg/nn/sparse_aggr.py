r"""Fused sparse aggregation of :class:`~jams_pyg.nn.MATConv`.

Both directions of the bipartite ICD-9 ↔ ICD-10 graph are aggregated with
CSR sparse × dense products, so no ``E × d`` message tensor is ever built,
and the backward pass stays sparse as well:

* forward: :math:`U' = \mathrm{ELU}(\mathrm{diag}(s^{9}) U + A^{9} V)` and
  :math:`V' = \mathrm{ELU}(\mathrm{diag}(s^{10}) V + A^{10} U)`, where
  :math:`A^{9} \in \mathbb{R}^{n \times m}` holds the per-edge values
  :math:`v^{9}_e` (ICD-9 code updated from its ICD-10 neighbour) and
  :math:`A^{10} \in \mathbb{R}^{m \times n}` the values :math:`v^{10}_e`;
* backward: feature gradients by the transposed CSR products (the transposed
  structure is built once), per-edge value gradients by sampled dense-dense
  products (:func:`torch.sparse.sampled_addmm`, one dot product per edge),
  self-coefficient gradients by row-wise dot products.

The CSR structure of a graph is built once by :func:`build_bipartite_csr`
and can be reused for every forward pass of a static graph.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import torch
from torch import Tensor

# PyTorch warns once per process that sparse CSR support is "in beta"; PyG
# silences its own beta warnings the same way. Nothing else is filtered.
warnings.filterwarnings("ignore", message=r".*Sparse CSR tensor support is in beta state.*")

_INT32_MAX = 2**31 - 1


class BipartiteCSR(NamedTuple):
    r"""CSR structure of a bipartite ICD-9 ↔ ICD-10 graph in both directions.

    Edges are kept in *sorted order*: by ICD-9 index, then ICD-10 index. The
    attention entries of a layer are laid out as ``[2E + n + m]``: the ``E``
    edges seen from their ICD-9 code, the ``E`` edges seen from their ICD-10
    code, then the ``n`` ICD-9 and ``m`` ICD-10 self terms; nodes are numbered
    ICD-9 first, ICD-10 shifted by ``n``.

    Attributes:
        num_icd9 (int): :math:`n`, the number of ICD-9 nodes.
        num_icd10 (int): :math:`m`, the number of ICD-10 nodes.
        perm (LongTensor): ``[E]``, original edge id of each sorted edge.
        inv_perm (LongTensor): ``[E]``, sorted position of each original edge.
        row (LongTensor): ``[E]``, ICD-9 index of each sorted edge.
        col (LongTensor): ``[E]``, ICD-10 index of each sorted edge.
        crow9 (Tensor): ``[n + 1]``, CSR row pointer of :math:`A^{9}` (rows:
            ICD-9 codes, columns: ``col``).
        col9 (Tensor): ``[E]``, ``col`` in the CSR index dtype.
        perm10 (LongTensor): ``[E]``, sorted position of the edges in the order
            of :math:`A^{10}` (by ICD-10 index, then ICD-9 index).
        crow10 (Tensor): ``[m + 1]``, CSR row pointer of :math:`A^{10}`.
        col10 (Tensor): ``[E]``, ICD-9 column index of :math:`A^{10}`.
        att_dst (LongTensor): ``[2E + n + m]``, node updated by each attention
            entry (the softmax group).
        att_src (LongTensor): ``[2E + n + m]``, node attended to (the neighbour,
            or the node itself for a self term).
        diag9 (tuple[Tensor, Tensor]): CSR row pointer and columns of the
            ``n × n`` identity pattern (row-wise dot products).
        diag10 (tuple[Tensor, Tensor]): same for ``m × m``.
    """

    num_icd9: int
    num_icd10: int
    perm: Tensor
    inv_perm: Tensor
    row: Tensor
    col: Tensor
    crow9: Tensor
    col9: Tensor
    perm10: Tensor
    crow10: Tensor
    col10: Tensor
    att_dst: Tensor
    att_src: Tensor
    diag9: tuple[Tensor, Tensor]
    diag10: tuple[Tensor, Tensor]

    @property
    def num_edges(self) -> int:
        return self.row.numel()


def _row_pointer(index: Tensor, size: int, dtype: torch.dtype) -> Tensor:
    # CSR row pointer of a matrix with one entry per element of `index` (its row).
    counts = torch.bincount(index, minlength=size)
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)]).to(dtype)


def build_bipartite_csr(edge_index: Tensor, num_icd9: int, num_icd10: int) -> BipartiteCSR:
    r"""Sort the edges once and build the CSR structures of both directions.

    ``edge_index`` must already be validated (``[2, E]`` integer tensor, row 0
    in ``[0, num_icd9)``, row 1 in ``[0, num_icd10)``). Costs two sorts of
    ``E`` keys; no feature-sized memory.
    """
    n, m = int(num_icd9), int(num_icd10)
    device = edge_index.device
    src = edge_index[0].long()
    dst = edge_index[1].long()
    num_edges = src.numel()
    perm = torch.argsort(src * m + dst, stable=True)
    inv_perm = torch.empty_like(perm)
    inv_perm[perm] = torch.arange(num_edges, device=device)
    row, col = src[perm], dst[perm]
    perm10 = torch.argsort(col * n + row, stable=True)

    use_int32 = max(n, m, num_edges) < _INT32_MAX
    index_dtype = torch.int32 if use_int32 else torch.long
    crow9 = _row_pointer(row, n, index_dtype)
    crow10 = _row_pointer(col, m, index_dtype)
    nodes = torch.arange(n + m, device=device)
    shifted = col + n

    def diag(size: int) -> tuple[Tensor, Tensor]:
        index = torch.arange(size + 1, dtype=index_dtype, device=device)
        return index, index[:size]

    return BipartiteCSR(
        num_icd9=n,
        num_icd10=m,
        perm=perm,
        inv_perm=inv_perm,
        row=row,
        col=col,
        crow9=crow9,
        col9=col.to(index_dtype),
        perm10=perm10,
        crow10=crow10,
        col10=row[perm10].to(index_dtype),
        att_dst=torch.cat([row, shifted, nodes]),
        att_src=torch.cat([shifted, row, nodes]),
        diag9=diag(n),
        diag10=diag(m),
    )


def _csr(crow: Tensor, col: Tensor, values: Tensor, size: tuple[int, int]) -> Tensor:
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

    With attention entries ``alpha = [a9 (E), a10 (E), s9 (n), s10 (m)]``
    (sorted edge order, heads already averaged) and GEM weights ``w`` (E):
    ``out9 = ELU(s9 ⊙ U + A9(a9 ⊙ w) V)``, ``out10 = ELU(s10 ⊙ V + A10(a10 ⊙ w) U)``.
    Differentiable once (no double backward; use ``MATConv(fused=False)`` for that).
    """

    @staticmethod
    def forward(
        ctx: Any,
        alpha: Tensor,
        weight: Tensor | None,
        x9: Tensor,
        x10: Tensor,
        csr: BipartiteCSR,
    ) -> tuple[Tensor, Tensor]:
        n, m, num_edges = csr.num_icd9, csr.num_icd10, csr.num_edges
        alpha = alpha.to(x9.dtype)
        a9, a10 = alpha[:num_edges], alpha[num_edges : 2 * num_edges]
        s9, s10 = alpha[2 * num_edges : 2 * num_edges + n], alpha[2 * num_edges + n :]
        if weight is not None:
            weight = weight.to(x9.dtype)
            v9, v10 = a9 * weight, a10 * weight
        else:
            v9, v10 = a9, a10
        # One pass each: the self term is the `input` of the in-place sparse addmm.
        out9 = (x9 * s9.unsqueeze(-1)).addmm_(_csr(csr.crow9, csr.col9, v9, (n, m)), x10)
        v10_t = v10[csr.perm10]
        out10 = (x10 * s10.unsqueeze(-1)).addmm_(_csr(csr.crow10, csr.col10, v10_t, (m, n)), x9)
        torch.nn.functional.elu_(out9)
        torch.nn.functional.elu_(out10)
        ctx.csr = csr
        ctx.has_weight = weight is not None
        ctx.save_for_backward(out9, out10, alpha, weight, v9, v10, x9, x10)
        return out9, out10

    @staticmethod
    def backward(ctx: Any, grad9: Tensor, grad10: Tensor) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph=True: a second derivative is asked for
            raise RuntimeError(
                "MATConv's fused sparse aggregation is differentiable once only; for "
                "double backward (create_graph=True) use MATConv(..., fused=False)"
            )
        out9, out10, alpha, weight, v9, v10, x9, x10 = ctx.saved_tensors
        csr: BipartiteCSR = ctx.csr
        n, m, num_edges = csr.num_icd9, csr.num_icd10, csr.num_edges
        need_alpha, need_weight, need_x9, need_x10, _ = ctx.needs_input_grad
        gh9 = _elu_backward(grad9, out9)  # gradients of the pre-activations
        gh10 = _elu_backward(grad10, out10)

        grad_alpha = grad_weight = None
        if need_alpha or need_weight:
            # d out9[row] / d v9[e] = x10[col],  d out10[col] / d v10[e] = x9[row]:
            # one dot product per edge, both on the pattern of A9 (sorted order).
            grad_v9 = _sampled_dot(csr.crow9, csr.col9, gh9, x10)
            grad_v10 = _sampled_dot(csr.crow9, csr.col9, x9, gh10)
            if need_alpha:
                grad_a9, grad_a10 = grad_v9, grad_v10
                if weight is not None:
                    grad_a9, grad_a10 = grad_v9 * weight, grad_v10 * weight
                grad_s9 = _rowwise_dot(gh9, x9, csr.diag9)
                grad_s10 = _rowwise_dot(gh10, x10, csr.diag10)
                grad_alpha = torch.cat([grad_a9, grad_a10, grad_s9, grad_s10])
            if need_weight and weight is not None:
                a9, a10 = alpha[:num_edges], alpha[num_edges : 2 * num_edges]
                grad_weight = grad_v9 * a9 + grad_v10 * a10
        s9, s10 = alpha[2 * num_edges : 2 * num_edges + n], alpha[2 * num_edges + n :]

        # x9 reaches out9 by the self term and out10 by A10 = transpose of A9's
        # pattern; likewise x10. The first gradient gets a fresh buffer, the
        # second reuses the buffer of its pre-activation gradient, which is
        # then no longer needed (the larger table gets the reused buffer).
        def grad_of_x9(reuse: bool) -> Tensor:
            self_term = gh9.mul_(s9.unsqueeze(-1)) if reuse else gh9 * s9.unsqueeze(-1)
            a10_t = _csr(csr.crow9, csr.col9, v10, (n, m))  # A10^T, rows: ICD-9
            return self_term.addmm_(a10_t, gh10)

        def grad_of_x10(reuse: bool) -> Tensor:
            self_term = gh10.mul_(s10.unsqueeze(-1)) if reuse else gh10 * s10.unsqueeze(-1)
            a9_t = _csr(csr.crow10, csr.col10, v9[csr.perm10], (m, n))  # A9^T, rows: ICD-10
            return self_term.addmm_(a9_t, gh9)

        grad_x9 = grad_x10 = None
        if n <= m:
            grad_x9 = grad_of_x9(reuse=False) if need_x9 else None
            grad_x10 = grad_of_x10(reuse=True) if need_x10 else None
        else:
            grad_x10 = grad_of_x10(reuse=False) if need_x10 else None
            grad_x9 = grad_of_x9(reuse=True) if need_x9 else None
        return grad_alpha, grad_weight, grad_x9, grad_x10, None


# Dynamo cannot trace sparse CSR tensors: torch.compile runs this eagerly
# (one graph break) and compiles what comes before and after it.
@torch.compiler.disable
def mat_aggregate(
    alpha: Tensor,
    weight: Tensor | None,
    x9: Tensor,
    x10: Tensor,
    csr: BipartiteCSR,
) -> tuple[Tensor, Tensor]:
    r"""Fused MAT aggregation of both directions (see :class:`MATAggregate`).

    Args:
        alpha (Tensor): ``[2E + n + m]`` attention entries in the layout of
            :class:`BipartiteCSR` (sorted edge order, heads averaged): weight
            of ICD-10 neighbour ``col[e]`` in the update of ICD-9 code
            ``row[e]``, weight of ICD-9 neighbour ``row[e]`` in the update of
            ICD-10 code ``col[e]``, then the ICD-9 and ICD-10 self weights.
        weight (Tensor, optional): ``[E]`` GEM weights :math:`\omega` (sorted
            edge order), multiplied after the softmax; ``None`` for all ones.
        x9 (Tensor): ``[n, d]`` ICD-9 features.
        x10 (Tensor): ``[m, d]`` ICD-10 features.
        csr (BipartiteCSR): structure from :func:`build_bipartite_csr`.

    Returns:
        ``(out9 [n, d], out10 [m, d])`` after the ELU.
    """
    return MATAggregate.apply(alpha, weight, x9.contiguous(), x10.contiguous(), csr)
