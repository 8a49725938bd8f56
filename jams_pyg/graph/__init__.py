"""The bipartite ICD-9 <-> ICD-10 GEM graph (:class:`GEMGraph`), built from GEM files and
restricted to the label vocabularies of the datasets."""

from jams_pyg.lazy import lazy_exports

_EXPORTS = {
    ".gem_graph": ("GEMGraph",),
    ".gem_files": ("APPROXIMATE_WEIGHT", "EXACT_WEIGHT"),
    ".directions": ("DIRECTIONS",),
    ".edges": ("Adjacency",),
    ".hetero": ("EDGE_TYPE", "REV_EDGE_TYPE", "to_hetero_data"),
}
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
