"""The GEM graph as a PyG :class:`~torch_geometric.data.HeteroData`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch_geometric.data import HeteroData

if TYPE_CHECKING:
    from jams_pyg.graph.gem_graph import GEMGraph

#: Edge type of the links that update ICD-10 codes: messages flow ICD-9 -> ICD-10, so
#: ``edge_index`` holds ICD-9 indices in row 0 and ICD-10 indices in row 1.
EDGE_TYPE = ("icd9", "maps_to", "icd10")
#: Edge type of the links that update ICD-9 codes: ICD-10 -> ICD-9, ICD-10 index first.
REV_EDGE_TYPE = ("icd10", "rev_maps_to", "icd9")


def to_hetero_data(graph: GEMGraph) -> HeteroData:
    """A :class:`~torch_geometric.data.HeteroData` with node types ``icd9`` and ``icd10``
    (``num_nodes``, ``code``, ``linked``) and one edge type per direction, each with
    ``edge_index`` and ``edge_weight`` (ω). As everywhere in PyG an edge type
    ``(src, rel, dst)`` sends messages from ``src`` to ``dst`` (row 0 to row 1), so
    ``('icd9', 'maps_to', 'icd10')`` holds the links that update ICD-10 codes
    (``graph.edges("icd10")``) and ``('icd10', 'rev_maps_to', 'icd9')`` those that update
    ICD-9 codes (``graph.edges("icd9")`` with its rows swapped).  For the union graph the
    second is the first reversed; for the directional one they are the backward and the
    forward file's links.  ``data.direction`` records which.  This is the input of
    :class:`~torch_geometric.nn.conv.HeteroConv` or :func:`~torch_geometric.nn.to_hetero`
    over ``MATConv(..., bipartite=True)``."""
    data = HeteroData()
    data["icd9"].num_nodes = graph.num_icd9
    data["icd9"].code = list(graph.icd9_codes)
    data["icd9"].linked = graph.icd9_linked.clone()
    data["icd10"].num_nodes = graph.num_icd10
    data["icd10"].code = list(graph.icd10_codes)
    data["icd10"].linked = graph.icd10_linked.clone()
    data[EDGE_TYPE].edge_index = graph.icd10_edge_index.clone()
    data[EDGE_TYPE].edge_weight = graph.icd10_edge_weight.clone()
    data[REV_EDGE_TYPE].edge_index = graph.icd9_edge_index.flip(0)
    data[REV_EDGE_TYPE].edge_weight = graph.icd9_edge_weight.clone()
    data.direction = graph.direction
    return data
