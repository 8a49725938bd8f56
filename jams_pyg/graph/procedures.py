"""Procedure codes in the GEM graph: where the links of ICD-10-PCS codes come from, and
link counts with diagnoses and procedures apart.

Edin et al.'s MIMIC-IV targets are diagnoses and procedures, so both label sets hold
procedure codes (ICD-9-CM ``01.24``, ICD-10-PCS ``0DTJ4ZZ``).  CMS publishes a procedure GEM
for each direction, ``gem_i9pcs.txt`` (forward) and ``gem_pcsi9.txt`` (backward); only the
forward one ships with the package.  The directional graph updates ICD-10 codes along the
backward file's links, so without a backward procedure file the ICD-10-PCS codes would have
none: they are then updated along the forward procedure links, reversed (the same pairs, each
with the forward file's :math:`\\omega`).  This fallback is our own; the official code
(GY-Jeong/JAMS) loads prebuilt adjacency matrices whose construction it does not publish, but
the link counts of its analysis notebook (``코오드/link_analysis.ipynb`` of the initial commit,
8f14c86: 2,240 of 6,150 ICD-9 and 931 of 7,942 ICD-10 codes without a link) point to
procedure codes being linked too.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from jams_pyg.graph.edges import sort_links
from jams_pyg.graph.gem_files import GEMLinks
from jams_pyg.icd.codes import CodeKey

#: Where the links that update ICD-10-PCS codes come from: ``"backward"``, a backward
#: procedure GEM (``gem_pcsi9.txt``); ``"reversed"``, the forward procedure GEM's links
#: reversed, because no backward procedure file was given.
PROC_SOURCES = ("backward", "reversed")
#: How :meth:`~jams_pyg.graph.gem_graph.GEMGraph.summary` says where they come from.
PROC_SOURCE_WORDS = {
    "backward": "of the backward procedure GEM",
    "reversed": "of the forward procedure GEM, reversed (no backward procedure GEM given)",
}


def check_proc_source(source: str | None) -> str | None:
    """Return ``source`` if it is ``None`` or one of :data:`PROC_SOURCES`, else raise."""
    if source is not None and source not in PROC_SOURCES:
        raise ValueError(f"icd10_proc_source must be one of {PROC_SOURCES} or None, "
                         f"got {source!r}")
    return source


def procedure_mask(keys: Mapping[CodeKey, int], size: int) -> Tensor:
    """``[size]`` mask of the nodes whose code (``key -> node index``) is a procedure."""
    mask = torch.zeros(size, dtype=torch.bool)
    index = [i for (kind, _), i in keys.items() if kind == "proc"]
    if index:
        mask[torch.tensor(index)] = True
    return mask


def reverse_missing_procedures(links: GEMLinks) -> tuple[GEMLinks, str | None]:
    """Give ICD-10-PCS codes the forward procedure links reversed when the backward files
    hold no procedure link.

    Returns:
        ``(links, source)``: ``links`` with the backward set completed (or unchanged), and
        ``"backward"`` (the backward files link procedure codes), ``"reversed"`` (they do
        not: the forward procedure links were added to the backward set) or ``None`` (no
        file links procedure codes).
    """
    proc9 = procedure_mask({key: i for i, key in enumerate(links.icd9_keys)},
                           len(links.icd9_keys))
    (forward, omega), (backward, backward_omega) = links.forward, links.backward
    if bool(proc9[backward[0]].any()):
        return links, "backward"
    reverse = proc9[forward[0]]
    if not bool(reverse.any()):
        return links, None
    # Every edge index is (ICD-9 row, ICD-10 row): reversing a link keeps its pair; what
    # changes is the set it sits in, hence which of its two codes it updates.
    completed = sort_links(torch.cat([backward, forward[:, reverse]], dim=1),
                           torch.cat([backward_omega, omega[reverse]]),
                           len(links.icd9_keys), len(links.icd10_keys))
    return links._replace(backward=completed), "reversed"


def count_links(edge_index: Tensor, row: int, procedures: Tensor) -> dict[str, int]:
    """``{"dx": n, "proc": m}``: links of ``edge_index`` by the kind of the code they update
    (row ``row``, whose procedure nodes ``procedures`` marks)."""
    proc = int(procedures.to(edge_index.device)[edge_index[row]].sum())
    return {"dx": edge_index.size(1) - proc, "proc": proc}
