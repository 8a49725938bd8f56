"""Code titles published by CMS, shipped gzipped in ``jams_pyg/resources/titles``.

=====================================  =========================  ===========
file                                   what                       encoding
=====================================  =========================  ===========
``CMS32_DESC_LONG_DX.txt.gz``          ICD-9-CM diagnoses (v32)   ISO-8859-1
``CMS32_DESC_LONG_SG.txt.gz``          ICD-9-CM procedures (v32)  ASCII
``icd10cm-codes-2024.txt.gz``          ICD-10-CM (2024)           ASCII
``icd10pcs-codes-2024.txt.gz``         ICD-10-PCS (2024)          ASCII
=====================================  =========================  ===========

Each line is ``CODE<white space>title`` with an undotted code. 477 ICD-10-CM
codes of the 2018 GEMs have no 2024 title (deleted since), so look-ups take a
``default``.
"""

from __future__ import annotations

import os
from functools import cache

from jams_pyg.icd.codes import Kind, System, check_system, parse_code
from jams_pyg.icd.gem import DataFileError, iter_lines, quote, resource_path

TITLE_FILES: dict[tuple[System, Kind], tuple[str, str]] = {
    ("icd9", "dx"): ("CMS32_DESC_LONG_DX.txt.gz", "iso-8859-1"),
    ("icd9", "proc"): ("CMS32_DESC_LONG_SG.txt.gz", "ascii"),
    ("icd10", "dx"): ("icd10cm-codes-2024.txt.gz", "ascii"),
    ("icd10", "proc"): ("icd10pcs-codes-2024.txt.gz", "ascii"),
}

_MISSING = object()
PathLike = str | os.PathLike[str]


#: Longest title line accepted, in bytes (CMS lines are at most ~400).
MAX_TITLE_LINE_BYTES = 4096


def read_title_file(path: PathLike, encoding: str) -> dict[str, str]:
    """``{CODE: title}`` of a CMS title file (plain or ``.gz``), read line by line.

    Raises:
        DataFileError: (a :class:`ValueError`) naming the file and line, for a line
            without code and title, text that is not ``encoding``, a line longer than
            :data:`MAX_TITLE_LINE_BYTES`, or truncated / corrupt gzip data.
    """
    titles: dict[str, str] = {}
    for number, line in iter_lines(path, encoding, MAX_TITLE_LINE_BYTES, "CMS title file"):
        text = line.strip()
        if not text:
            continue
        parts = text.split(None, 1)
        if len(parts) != 2:
            raise DataFileError(f"{path}, line {number}: expected 'CODE title', got {quote(text)}")
        code, title = parts
        titles[code.upper()] = title.strip()
    return titles


@cache
def _load(system: System, kind: Kind) -> dict[str, str]:
    name, encoding = TITLE_FILES[(system, kind)]
    return read_title_file(resource_path("titles", name), encoding)


def load_titles(system: System, kind: Kind = "dx") -> dict[str, str]:
    """All CMS titles of one system and kind, keyed by the *undotted* code.

    Args:
        system (str): ``"icd9"`` or ``"icd10"``.
        kind (str): ``"dx"`` (diagnoses) or ``"proc"`` (procedures).

    Returns:
        A new ``dict`` ``{undotted code: title}`` (e.g. ``{"4019": "Unspecified
        essential hypertension", ...}``).
    """
    check_system(system)
    if kind not in ("dx", "proc"):
        raise ValueError(f"unknown code kind {kind!r}: expected 'dx' or 'proc'")
    return dict(_load(system, kind))


def code_title(
    code: str, system: System, kind: Kind | None = None, default: object = _MISSING
) -> str:
    """The CMS title of a code as datasets write it (dotted, e.g. ``"401.9"``,
    ``"40.19"``, ``"I10."``, ``"0DTJ4ZZ"``).

    Args:
        code (str): The code (dotted, or undotted with ``kind``).
        system (str): ``"icd9"`` or ``"icd10"``.
        kind (str, optional): ``"dx"`` or ``"proc"`` for undotted ICD-9 codes.
        default: Returned when the code has no title; without it a
            :class:`KeyError` is raised.

    Raises:
        ValueError: if ``code`` is no code of ``system`` (see
            :func:`jams_pyg.icd.codes.parse_code`).
        KeyError: if the code has no CMS title and no ``default`` is given.
    """
    parsed_kind, raw = parse_code(code, system, kind)
    titles = _load(system, parsed_kind)
    if raw in titles:
        return titles[raw]
    if default is not _MISSING:
        return default  # type: ignore[return-value]
    name = TITLE_FILES[(system, parsed_kind)][0]
    raise KeyError(f"{system} {parsed_kind} code {code!r} has no title in {name}")
