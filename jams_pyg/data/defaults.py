"""Defaults of data preparation and of the synthetic corpus, in a module that imports
nothing heavy: the command line shows and checks them without loading numpy or torch."""

from __future__ import annotations

import math

#: Edin et al.'s preprocessing: codes seen fewer times than this are dropped.
MIN_TARGET_COUNT = 10
#: Seed of Edin et al.'s patient-level train/validation/test split (their
#: ``generate_mimiciv_splits.py``: ``random.seed(10)``).
DEFAULT_SEED = 10
#: ``prepare mimiciv``'s split: Edin et al.'s published split files (the other method,
#: ``edin-algorithm``, is their split algorithm; :mod:`jams_pyg.data.splits`).
DEFAULT_SPLIT = "edin-published"
#: The split methods by name (:mod:`jams_pyg.data.splits`).
SPLIT_METHODS: tuple[str, ...] = ("edin-published", "edin-algorithm")
#: Bytes of CSV parsed at a time when preparing MIMIC-IV.
DEFAULT_BLOCK_SIZE = 4 << 20

#: Named sizes of the synthetic corpus (a scale of its default document counts).
SIZES: dict[str, float] = {"small": 0.2, "default": 1.0, "large": 5.0}


def parse_size(value: str | float) -> str | float:
    """A synthetic corpus size as given on the command line: ``small`` / ``default`` /
    ``large`` stay names, anything else must be a positive number (a scale factor)."""
    if isinstance(value, str) and value in SIZES:
        return value
    try:
        scale = float(value)
    except ValueError:
        raise ValueError(
            f"size must be one of {', '.join(SIZES)} or a positive number, got {value!r}"
        ) from None
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"size must be a positive number, got {value!r}")
    return scale
