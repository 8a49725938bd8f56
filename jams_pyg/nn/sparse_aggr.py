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

    Edges are kept in *sorted order*: by ICD-9 index, then ICD-10 index.

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
        softmax_index9 (LongTensor): ``[E + n]``, ``row`` followed by
            ``arange(n)``: the softmax groups of the ICD-9 side, self term last.
        softmax_index10 (LongTensor): ``[E + m]``, likewise for ICD-10.
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
    softmax_index9: Tensor
    softmax_index10: Tensor

    @property
    def num_edges(self) -> int:
        return self.row.numel()


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

    use_int32 = max(n, m, num_edges) <= _INT32_MAX
    crow9 = torch._convert_indices_from_coo_to_csr(row, n, out_int32=use_int32)
    crow10 = torch._convert_indices_from_coo_to_csr(col[perm10], m, out_int32=use_int32)
    index_dtype = torch.int32 if use_int32 else torch.long
    arange9 = torch.arange(n, device=device)
    arange10 = torch.arange(m, device=device)
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
        softmax_index9=torch.cat([row, arange9]),
        softmax_index10=torch.cat([col, arange10]),
    )


def _csr(crow: Tensor, col: Tensor, values: Tensor, size: tuple[int, int]) -> Tensor:
    return torch.sparse_csr_tensor(crow, col, values, size, check_invariants=False)


def _elu_backward(grad: Tensor, out: Tensor) -> Tensor:
    # ELU (alpha = 1) differentiated from its output: 1 where out > 0, out + 1 elsewhere.
    return torch.ops.aten.elu_backward(grad, 1.0, 1, 1.0, True, out)


def _rowwise_dot(a: Tensor, b: Tensor) -> Tensor:
    # [N, d] · [N, d] -> [N] by a batched mat-vec (no N × d temporary).
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(-1)


class MATAggregate(torch.autograd.Function):
    r"""``(out9, out10) = (ELU(s9 ⊙ U + A9(v9) V), ELU(s10 ⊙ V + A10(v10) U))``.

    ``v9`` and ``v10`` are per-edge values in the sorted edge order of the
    :class:`BipartiteCSR`; ``s9`` / ``s10`` the per-node self coefficients.
    """

    @staticmethod
    def forward(
        ctx: Any,
        v9: Tensor,
        v10: Tensor,
        s9: Tensor,
        s10: Tensor,
        x9: Tensor,
        x10: Tensor,
        csr: BipartiteCSR,
    ) -> tuple[Tensor, Tensor]:
        n, m = csr.num_icd9, csr.num_icd10
        dtype = x9.dtype
        v9, v10, s9, s10 = (t.to(dtype) for t in (v9, v10, s9, s10))
        a9 = _csr(csr.crow9, csr.col9, v9, (n, m))
        a10 = _csr(csr.crow10, csr.col10, v10[csr.perm10], (m, n))
        # One pass each: the self term is the `input` of the in-place addmm.
        out9 = (x9 * s9.unsqueeze(-1)).addmm_(a9, x10)
        out10 = (x10 * s10.unsqueeze(-1)).addmm_(a10, x9)
        torch.nn.functional.elu_(out9)
        torch.nn.functional.elu_(out10)
        ctx.csr = csr
        ctx.save_for_backward(out9, out10, v9, v10, s9, s10, x9, x10)
        return out9, out10

    @staticmethod
    def backward(ctx: Any, grad9: Tensor, grad10: Tensor) -> tuple[Tensor | None, ...]:
        out9, out10, v9, v10, s9, s10, x9, x10 = ctx.saved_tensors
        csr: BipartiteCSR = ctx.csr
        n, m = csr.num_icd9, csr.num_icd10
        need_v9, need_v10, need_s9, need_s10, need_x9, need_x10, _ = ctx.needs_input_grad
        gh9 = _elu_backward(grad9, out9)  # gradient wrt the pre-activation of out9
        gh10 = _elu_backward(grad10, out10)

        grad_v9 = grad_v10 = grad_s9 = grad_s10 = grad_x9 = grad_x10 = None
        if need_v9 or need_v10:
            # Sampled dense-dense products on the pattern of A9 (sorted order):
            # d out9[row] / d v9[e] = x10[col], d out10[col] / d v10[e] = x9[row].
            pattern = _csr(csr.crow9, csr.col9, v9, (n, m))
            if need_v9:
                grad_v9 = torch.sparse.sampled_addmm(pattern, gh9, x10.t(), beta=0.0).values()
            if need_v10:
                grad_v10 = torch.sparse.sampled_addmm(pattern, x9, gh10.t(), beta=0.0).values()
        if need_s9:
            grad_s9 = _rowwise_dot(gh9, x9)
        if need_s10:
            grad_s10 = _rowwise_dot(gh10, x10)
        if need_x9:
            # x9 enters out9 through the self term and out10 through A10 = (A9-pattern)^T.
            a10_t = _csr(csr.crow9, csr.col9, v10, (n, m))
            grad_x9 = (gh9 * s9.unsqueeze(-1)).addmm_(a10_t, gh10)
        if need_x10:
            a9_t = _csr(csr.crow10, csr.col10, v9[csr.perm10], (m, n))
            grad_x10 = (gh10 * s10.unsqueeze(-1)).addmm_(a9_t, gh9)
        return grad_v9, grad_v10, grad_s9, grad_s10, grad_x9, grad_x10, None


def mat_aggregate(
    v9: Tensor,
    v10: Tensor,
    s9: Tensor,
    s10: Tensor,
    x9: Tensor,
    x10: Tensor,
    csr: BipartiteCSR,
) -> tuple[Tensor, Tensor]:
    r"""Fused MAT aggregation of both directions (see :class:`MATAggregate`).

    Args:
        v9 (Tensor): ``[E]``, weight of ICD-10 neighbour ``col[e]`` in the
            update of ICD-9 code ``row[e]`` (sorted edge order).
        v10 (Tensor): ``[E]``, weight of ICD-9 neighbour ``row[e]`` in the
            update of ICD-10 code ``col[e]`` (sorted edge order).
        s9 (Tensor): ``[n]``, self coefficients of the ICD-9 codes.
        s10 (Tensor): ``[m]``, self coefficients of the ICD-10 codes.
        x9 (Tensor): ``[n, d]`` ICD-9 features.
        x10 (Tensor): ``[m, d]`` ICD-10 features.
        csr (BipartiteCSR): structure from :func:`build_bipartite_csr`.

    Returns:
        ``(out9 [n, d], out10 [m, d])`` after the ELU.
    """
    return MATAggregate.apply(v9, v10, s9, s10, x9.contiguous(), x10.contiguous(), csr)
