"""ICD code formats: the dotted form datasets write and the undotted GEM form.

Edin et al.'s MIMIC-IV files write

* ICD-9-CM diagnoses with a dot after 3 characters (E-codes after 4): ``401.9``,
  ``E880.9``, ``042``;
* ICD-9-CM procedures with a dot after 2 characters: ``40.19``;
* ICD-10-CM diagnoses with a dot after 3 characters, a 3-character code keeping
  a trailing dot: ``I15.0``, ``I10.``;
* ICD-10-PCS procedures without a dot: ``0DTJ4ZZ``.

GEM files and CMS title files write every code without a dot, so ``401.9`` (a
diagnosis) and ``40.19`` (a procedure) are both ``4019``, each in a file of its
own kind. A code is therefore identified by its :data:`CodeKey`: the kind
(``"dx"`` or ``"proc"``) and the undotted code.
"""

from __future__ import annotations

import re
from typing import Literal

System = Literal["icd9", "icd10"]
Kind = Literal["dx", "proc"]
CodeKey = tuple[Kind, str]

#: The two coding systems, in the order every table and file lists them.
SYSTEMS: tuple[System, System] = ("icd9", "icd10")
#: Integer id of each system in a mixed batch (``JointBatch.system``).
SYSTEM_IDS: dict[str, int] = {"icd9": 0, "icd10": 1}
#: How tables and logs write each system.
SYSTEM_LABELS: dict[str, str] = {"icd9": "ICD-9", "icd10": "ICD-10"}
#: The other system of each: the one a GEM link leads to.
OTHER_SYSTEM: dict[str, System] = {"icd9": "icd10", "icd10": "icd9"}

_ICD9_DX = re.compile(r"^(?:\d{3}|V\d{2}|E\d{3})(?:\d{1,2})?$")
_ICD9_PROC = re.compile(r"^\d{2}(?:\d{1,2})?$")
_ICD10_CM = re.compile(r"^[A-Z]\d[0-9A-Z](?:[0-9A-Z]{1,4})?$")
# PCS uses digits and letters except I and O, always 7 characters.
_ICD10_PCS = re.compile(r"^[0-9A-HJ-NP-Z]{7}$")


def check_system(system: str) -> System:
    """Return ``system`` if it is ``"icd9"`` or ``"icd10"``, else raise."""
    if system not in SYSTEMS:
        raise ValueError(f"unknown coding system {system!r}: expected 'icd9' or 'icd10'")
    return system  # type: ignore[return-value]


def is_valid_raw(raw: str, system: System, kind: Kind) -> bool:
    """Whether ``raw`` (undotted) is a well-formed code of that system and kind."""
    if system == "icd9":
        return bool((_ICD9_DX if kind == "dx" else _ICD9_PROC).match(raw))
    return bool((_ICD10_CM if kind == "dx" else _ICD10_PCS).match(raw))


def parse_code(code: str, system: System, kind: Kind | None = None) -> CodeKey:
    """Parse a code as a dataset writes it into its ``(kind, undotted code)`` key.

    The dot position tells diagnoses from procedures (``401.9`` vs ``40.19``);
    pass ``kind`` for undotted codes where it cannot (``4019``).

    Args:
        code (str): The code, e.g. ``"401.9"``, ``"40.19"``, ``"I10."``,
            ``"0DTJ4ZZ"``.
        system (str): ``"icd9"`` or ``"icd10"``.
        kind (str, optional): ``"dx"`` or ``"proc"`` when known.

    Raises:
        ValueError: if the code fits no format of ``system`` (or of ``kind``),
            or is an undotted ICD-9 code whose kind is ambiguous.
    """
    check_system(system)
    if not isinstance(code, str):
        raise ValueError(f"{system} code must be a string, got {code!r}")
    text = code.strip().upper()
    if not text:
        raise ValueError(f"empty {system} code {code!r}")
    inferred: Kind | None
    if "." in text:
        head, _, tail = text.partition(".")
        if "." in tail:
            raise ValueError(f"{system} code {code!r} has more than one dot")
        raw = head + tail
        if system == "icd9":
            if len(head) == 2:
                inferred = "proc"
            elif len(head) == 3 or (len(head) == 4 and head.startswith("E")):
                inferred = "dx"
            else:
                inferred = None
        else:
            inferred = "dx" if len(head) == 3 else None
        if inferred is None:
            raise ValueError(
                f"unknown {system} code format {code!r}: the dot is in no position "
                "that Edin et al.'s MIMIC-IV files use"
            )
    else:
        raw = text
        if kind is not None:
            inferred = kind
        elif system == "icd9":
            if _ICD9_PROC.match(raw) and len(raw) == 2:
                inferred = "proc"
            elif len(raw) == 3 or (len(raw) == 4 and raw.startswith("E")):
                inferred = "dx"
            else:
                raise ValueError(
                    f"ambiguous undotted ICD-9 code {code!r}: write it dotted "
                    "(diagnoses after 3 characters, E-codes after 4, procedures "
                    "after 2) or pass kind='dx' or kind='proc'"
                )
        elif len(raw) == 7 and _ICD10_PCS.match(raw):
            inferred = "proc"
        elif len(raw) == 3:
            inferred = "dx"
        else:
            raise ValueError(
                f"unknown icd10 code format {code!r}: ICD-10-CM codes are dotted "
                "after 3 characters (I15.0, I10.), ICD-10-PCS codes are 7 "
                "characters without a dot"
            )
    if kind is not None and kind != inferred:
        raise ValueError(f"{system} code {code!r} is a {inferred} code, not {kind}")
    if not is_valid_raw(raw, system, inferred):
        raise ValueError(f"unknown {system} {inferred} code format {code!r}")
    return inferred, raw


def dot_code(raw: str, system: System, kind: Kind) -> str:
    """Put the dot where Edin et al.'s files have it (their ``reformat_icd9`` /
    ``reformat_icd10``), without checking the code: ICD-9 diagnoses after 3 characters
    (E-codes after 4), ICD-9 procedures after 2, ICD-10-CM after 3 (a 3-character code
    keeps a trailing dot), ICD-10-PCS without a dot."""
    if system == "icd9":
        if kind == "proc":
            return raw if len(raw) <= 2 else f"{raw[:2]}.{raw[2:]}"
        cut = 4 if raw.startswith("E") else 3
        return raw if len(raw) <= cut else f"{raw[:cut]}.{raw[cut:]}"
    if kind == "proc":
        return raw
    return f"{raw[:3]}.{raw[3:]}"


def format_code(raw: str, system: System, kind: Kind) -> str:
    """Write an undotted code in Edin et al.'s dotted form (the inverse of
    :func:`parse_code`); an invalid code is an error."""
    check_system(system)
    if not is_valid_raw(raw, system, kind):
        raise ValueError(f"unknown {system} {kind} code format {raw!r}")
    return dot_code(raw, system, kind)
