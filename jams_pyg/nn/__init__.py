"""Graph layers of jams_pyg."""

from jams_pyg.lazy import lazy_exports

_EXPORTS = {".mat_conv": ("MATConv",)}
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
__all__ = ["MATConv"]
