"""How MAT reads the GEMs, in a module that imports nothing (the model config and the
command line check it without loading torch)."""

from __future__ import annotations

#: ``directional``: forward-file links update ICD-9 codes, backward-file links ICD-10 codes
#: (the official JAMS code's reading); ``union``: one symmetric edge set (ablation).
DIRECTIONS = ("directional", "union")


def check_direction(direction: str) -> None:
    """Raise a ValueError unless ``direction`` is one of :data:`DIRECTIONS`."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
