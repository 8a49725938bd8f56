"""The GEM graph as a PyG :class:`~torch_geometric.data.HeteroData`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch_geometric.data import HeteroData

if TYPE_CHECKING:
    from jams_pyg.graph.gem_graph import GEMGraph

#: Edge type of the links that update ICD-9 codes.
EDGE_TYPE = ("icd9", "maps_to", "icd10")
#: Edge type of the links that update ICD-10 codes (ICD-10 index first).
REV_EDGE_TYPE = ("icd10", "rev_maps_to", "icd9")


def to_hetero_data(graph: GEMGraph) -> HeteroData:
    """A :class:`~torch_geometric.data.HeteroData` with node types ``icd9`` and ``icd10``
    (``num_nodes``, ``code``, ``linked``) and edge types ``('icd9', 'maps_to', 'icd10')``
    (the links that update ICD-9 codes) and ``('icd10', 'rev_maps_to', 'icd9')`` (the
    links that update ICD-10 codes, ICD-10 index first), each with ``edge_weight``.  For
    the union graph the second is the first reversed; for the directional one they are
    the forward and the backward file's links, each written in its file's direction.
    ``data.direction`` records which."""
    data = HeteroData()
    data["icd9"].num_nodes = graph.num_icd9
    data["icd9"].code = list(graph.icd9_codes)
    data["icd9"].linked = graph.icd9_linked.clone()
    data["icd10"].num_nodes = graph.num_icd10
    data["icd10"].code = list(graph.icd10_codes)
    data["icd10"].linked = graph.icd10_linked.clone()
    data[EDGE_TYPE].edge_index = graph.icd9_edge_index.clone()
    data[EDGE_TYPE].edge_weight = graph.icd9_edge_weight.clone()
    data[REV_EDGE_TYPE].edge_index = graph.icd10_edge_index.flip(0)
    data[REV_EDGE_TYPE].edge_weight = graph.icd10_edge_weight.clone()
    data.direction = graph.direction
    return data
