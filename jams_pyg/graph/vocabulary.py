"""Label vocabularies as graph nodes: codes matched on their normalised form
(:func:`~jams_pyg.icd.codes.parse_code`), so dotted and undotted spellings are one code and
diagnoses never match procedures."""

from __future__ import annotations

from collections.abc import Sequence

from jams_pyg.icd.codes import CodeKey, System, parse_code


def vocabulary_index(codes: Sequence[str], system: System, name: str
                     ) -> tuple[list[str], dict[CodeKey, int]]:
    """``(codes as a list, normalised code -> position)`` of a label vocabulary.

    Raises:
        TypeError: for a string instead of a list of codes.
        ValueError: for an empty vocabulary, a malformed or a duplicate code, naming
            ``name`` and the position.
    """
    if isinstance(codes, str):
        raise TypeError(f"{name} must be a list of codes, not a string")
    codes = list(codes)
    if not codes:
        raise ValueError(f"{name} is empty: a vocabulary needs at least one code")
    index: dict[CodeKey, int] = {}
    for position, code in enumerate(codes):
        try:
            key = parse_code(code, system)
        except ValueError as err:
            raise ValueError(f"{name}[{position}]: {err}") from None
        if key in index:
            raise ValueError(
                f"{name} has duplicate code {code!r} (positions {index[key]} and {position})"
            )
        index[key] = position
    return codes, index


def code_lookup(names: Sequence[str], system: System) -> dict[CodeKey, int]:
    """Normalised code -> node index of a graph's node names."""
    return {parse_code(name, system): i for i, name in enumerate(names)}
