"""jams_pyg: JAMS joint ICD-9/ICD-10 medical coding on PyTorch Geometric."""

from jams_pyg.codes import format_code, parse_code
from jams_pyg.gem import cms_2018_gem_paths, read_gem_file
from jams_pyg.gem_graph import GEMGraph

__version__ = "0.1.0"

__all__ = [
    "GEMGraph",
    "cms_2018_gem_paths",
    "format_code",
    "parse_code",
    "read_gem_file",
]
