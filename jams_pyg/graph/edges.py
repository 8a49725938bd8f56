r"""Tensor operations on a set of ICD-9 ↔ ICD-10 links (row 0: ICD-9 index, row 1: ICD-10
index; one link per distinct pair): sorting, union, relabelling to other vocabularies and
the per-code adjacency (CSR) view."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch_geometric.utils import sort_edge_index
from torch_geometric.utils.sparse import index2ptr


class Adjacency(NamedTuple):
    r"""The links that update the codes of one system, grouped by code (CSR).

    The links of code ``i`` are positions ``ptr[i]:ptr[i + 1]``, ordered by the other
    system's index.

    Attributes:
        ptr (LongTensor): ``[N + 1]``, row pointer over the ``N`` codes of the system.
        perm (LongTensor): ``[E]``, the link's position in ``GEMGraph.edges(system)``
            (gather per-link values such as MAT's :math:`\alpha` with it).
        neighbor (LongTensor): ``[E]``, index of the code of the other system.
        weight (FloatTensor): ``[E]``, the link's :math:`\omega`.
    """

    ptr: Tensor
    perm: Tensor
    neighbor: Tensor
    weight: Tensor

    def degree(self) -> Tensor:
        """``[N]``, links per code."""
        return self.ptr[1:] - self.ptr[:-1]


def check_links(edge_index: Tensor, edge_weight: Tensor, num_icd9: int, num_icd10: int,
                name: str, weight_name: str) -> tuple[Tensor, Tensor]:
    """``(edge_index.long(), edge_weight.float())`` after checking shapes and index
    ranges; a ValueError names the argument (``name``, ``weight_name``) at fault."""
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"{name} must have shape [2, E], got {list(edge_index.shape)}")
    if edge_weight.shape != (edge_index.size(1),):
        raise ValueError(
            f"{weight_name} must have shape [{edge_index.size(1)}], got "
            f"{list(edge_weight.shape)}"
        )
    for row, size, system in ((0, num_icd9, "ICD-9"), (1, num_icd10, "ICD-10")):
        if edge_index.numel() and (
            int(edge_index[row].min()) < 0 or int(edge_index[row].max()) >= size
        ):
            bad = edge_index[row][(edge_index[row] < 0) | (edge_index[row] >= size)][0]
            raise ValueError(
                f"{name} row {row} holds {system} index {int(bad)}, out of range "
                f"for {size} {system} codes"
            )
    return edge_index.long(), edge_weight.float()


def sort_links(edge_index: Tensor, edge_weight: Tensor, num_icd9: int, num_icd10: int
               ) -> tuple[Tensor, Tensor]:
    """Links sorted by ICD-9 then ICD-10 index."""
    # a bipartite key: any node count at least both sides' sizes orders (row, col) pairs
    num_nodes = max(num_icd9, num_icd10, 1)
    return sort_edge_index(edge_index, edge_weight, num_nodes=num_nodes)  # type: ignore[return-value]


def union_links(edge_index: Tensor, edge_weight: Tensor, other_index: Tensor,
                other_weight: Tensor, num_icd9: int, num_icd10: int) -> tuple[Tensor, Tensor]:
    """Union of two link sets, sorted; a pair in both keeps the larger ω (exact wins)."""
    index = torch.cat([edge_index, other_index], dim=1)
    weight = torch.cat([edge_weight, other_weight])
    key = index[0] * max(num_icd10, 1) + index[1]
    unique, inverse = torch.unique(key, sorted=True, return_inverse=True)
    merged = torch.zeros(unique.numel(), dtype=weight.dtype, device=weight.device).scatter_reduce(
        0, inverse, weight, reduce="amax", include_self=False)
    first = torch.zeros(unique.numel(), dtype=torch.long, device=key.device).scatter_reduce(
        0, inverse, torch.arange(key.numel(), device=key.device), reduce="amin",
        include_self=False)
    return index[:, first], merged


def relabel_links(edge_index: Tensor, edge_weight: Tensor, map9: Tensor, map10: Tensor,
                  num_icd9: int, num_icd10: int) -> tuple[Tensor, Tensor]:
    """The links between mapped codes, renumbered and sorted.

    Args:
        edge_index: ``[2, E]`` links over the old numbering.
        edge_weight: ``[E]`` their ω.
        map9: ``[n_old]``, new index of each old ICD-9 code, ``-1`` to drop it.
        map10: ``[m_old]``, likewise for ICD-10 (new indices distinct per side).
        num_icd9: New number of ICD-9 codes.
        num_icd10: New number of ICD-10 codes.
    """
    row, col = map9[edge_index[0]], map10[edge_index[1]]
    keep = (row >= 0) & (col >= 0)
    return sort_links(torch.stack([row[keep], col[keep]]), edge_weight[keep], num_icd9,
                      num_icd10)


def adjacency(edge_index: Tensor, edge_weight: Tensor, row: int, num_nodes: int) -> Adjacency:
    """The :class:`Adjacency` of the codes in row ``row`` of ``edge_index`` (0: ICD-9,
    1: ICD-10) over sorted links: each code's links keep their order."""
    node = edge_index[row]
    perm = torch.argsort(node, stable=True)
    return Adjacency(
        ptr=index2ptr(node[perm], num_nodes),
        perm=perm,
        neighbor=edge_index[1 - row][perm],
        weight=edge_weight[perm],
    )
