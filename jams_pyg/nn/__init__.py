"""Graph layers of jams_pyg."""

from jams_pyg.nn.mat_conv import MATConv

__all__ = ["MATConv"]
