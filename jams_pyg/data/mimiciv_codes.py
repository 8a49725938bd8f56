"""The code tables of MIMIC-IV for Edin et al.'s datasets: codes formatted and checked
(:func:`edin_format`), ``(admission, code id)`` pairs collected from the code files and
de-duplicated as their ``prepare_data/prepare_mimiciv.py`` does (first row of each
admission and dotted code, over both ICD versions), renumbered, filtered by count and
grouped into each system's documents."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from jams_pyg.data.csv_chunks import integer_ids, read_chunks, valid_rows
from jams_pyg.data.edin import code_columns
from jams_pyg.icd.codes import Kind, System, dot_code, parse_code

log = logging.getLogger(__name__)

#: Columns read from ``hosp/diagnoses_icd.csv.gz`` and ``hosp/procedures_icd.csv.gz``.
CODE_COLUMNS = ["subject_id", "hadm_id", "icd_code", "icd_version"]
#: Column order of the code table: (system, kind) -> column index.
CODE_TABLE: list[tuple[System, Kind]] = [
    ("icd9", "dx"), ("icd9", "proc"), ("icd10", "dx"), ("icd10", "proc")]


def edin_format(code: str, version: int, kind: Kind) -> str:
    """Edin et al.'s ``reformat_icd9`` / ``reformat_icd10`` of a raw MIMIC-IV code: drop
    any dot, then :func:`~jams_pyg.icd.codes.dot_code` (no validity check, as theirs)."""
    code = "".join(str(code).strip().split("."))
    if version not in (9, 10):
        raise ValueError(f"icd_version must be 9 or 10, got {version!r}")
    return dot_code(code, "icd9" if version == 9 else "icd10", kind)


def member(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mask of ``values`` found in the sorted array ``sorted_values``."""
    if not len(sorted_values):
        return np.zeros(len(values), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_values, values), len(sorted_values) - 1)
    return sorted_values[pos] == values


def collect_codes(
    paths: dict[Kind, Path], note_hadm: np.ndarray, block_size: int, invalid_codes: str
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
    """``(hadm, code id)`` pairs of the admissions with a note, de-duplicated,
    and the code table ``[(column index, dotted code)]``."""
    table: dict[tuple[int, str], int] = {}
    names: list[tuple[int, str]] = []
    hadm_parts, code_parts = [], []
    dropped: dict[str, list[str]] = {}
    for kind, path in paths.items():
        formatted: dict[tuple[object, str], tuple[int, str] | None] = {}
        file_hadm: list[np.ndarray] = []
        file_code: list[np.ndarray] = []
        for first, batch in read_chunks(path, CODE_COLUMNS, block_size):
            codes_ok = valid_rows(batch, "icd_code")  # Edin et al.: dropna(subset=["icd_code"])
            batch = batch.filter(codes_ok)
            rows = first + np.flatnonzero(codes_ok)
            hadm = integer_ids(batch.column("hadm_id"), path, "hadm_id", rows)
            keep = member(note_hadm, hadm)
            if not keep.any():
                continue
            hadm, rows = hadm[keep], rows[keep]
            batch = batch.filter(keep)
            versions = np.array(batch.column("icd_version"), dtype=object)
            raw = np.array(batch.column("icd_code"), dtype=object)
            ids = np.empty(len(hadm), dtype=np.int64)
            for i, (version, code) in enumerate(zip(versions.tolist(), raw.tolist(),
                                                    strict=True)):
                key = (version, code)
                if key not in formatted:
                    formatted[key] = _format_checked(path, int(rows[i]), version, code, kind,
                                                     invalid_codes, dropped)
                checked = formatted[key]
                if checked is None:
                    ids[i] = -1
                    continue
                column, dotted = checked
                code_id = table.get((column, dotted))
                if code_id is None:
                    code_id = table[(column, dotted)] = len(names)
                    names.append((column, dotted))
                ids[i] = code_id
            valid = ids >= 0
            file_hadm.append(hadm[valid])
            file_code.append(ids[valid])
        hadm_parts.append(np.concatenate(file_hadm) if file_hadm else np.zeros(0, np.int64))
        code_parts.append(np.concatenate(file_code) if file_code else np.zeros(0, np.int64))
        if len(code_parts[-1]):
            hadm_parts[-1], code_parts[-1] = _first_per_dotted(hadm_parts[-1],
                                                               code_parts[-1], names)
    for path_name, examples in dropped.items():
        log.warning("%s: dropped %d malformed code(s), e.g. %s", path_name, len(examples),
                    examples[:5])
    hadm = np.concatenate(hadm_parts) if hadm_parts else np.zeros(0, np.int64)
    code = np.concatenate(code_parts) if code_parts else np.zeros(0, np.int64)
    # Same code twice in one column of one admission: once.
    pairs = np.unique(np.stack([hadm, code], axis=1), axis=0) if len(hadm) else np.zeros(
        (0, 2), np.int64)
    return pairs[:, 0], pairs[:, 1], names


def _first_per_dotted(hadm: np.ndarray, code: np.ndarray, names: list[tuple[int, str]]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Edin et al.'s ``drop_duplicates(subset=[_id, icd_code])`` over one code file:
    the first row of each (admission, dotted code), whatever its ``icd_version``, so an
    ICD-10 code spelled like an ICD-9 code of the same admission (``V15.82``) is dropped
    when the ICD-9 row comes first, and the reverse."""
    spelling: dict[str, int] = {}
    text_of = np.array([spelling.setdefault(dotted, len(spelling)) for _, dotted in names],
                       dtype=np.int64)
    _, first = np.unique(np.stack([hadm, text_of[code]], axis=1), axis=0, return_index=True)
    first.sort()
    return hadm[first], code[first]


def _format_checked(path: Path, row: int, version: object, code: str, kind: Kind,
                    invalid_codes: str, dropped: dict[str, list[str]]) -> tuple[int, str] | None:
    """``(column index, dotted code)``, or None for a dropped malformed code."""
    try:
        number = float(str(version))
        if number not in (9.0, 10.0):
            raise ValueError(f"icd_version must be 9 or 10, got {version!r}")
        system: System = "icd9" if number == 9.0 else "icd10"
        dotted = edin_format(code, int(number), kind)
        parse_code(dotted, system, kind)
        return CODE_TABLE.index((system, kind)), dotted
    except (ValueError, TypeError) as err:
        if invalid_codes == "drop":
            dropped.setdefault(str(path), []).append(f"{code!r} (v{version})")
            return None
        raise ValueError(
            f"{path}, data row {row}: code {code!r} (icd_version {version!r}): {err}; "
            "pass invalid_codes='drop' (--invalid-codes drop) to skip such codes"
        ) from None


class SystemDocs:
    """The documents of one system after the min-count filter: sorted
    admissions and, per admission, its diagnosis and procedure codes."""

    def __init__(self, system: System, hadm: np.ndarray, code: np.ndarray,
                 names: list[tuple[int, str]]) -> None:
        self.system = system
        self.diag_col, self.proc_col = code_columns(system)
        diag_index = CODE_TABLE.index((system, "dx"))
        proc_index = CODE_TABLE.index((system, "proc"))
        # Code ids are in (column, code) order (see sort_codes), so sorting the
        # pairs by (admission, id) sorts each document's codes as Edin et al. do.
        column_of = np.array([c for c, _ in names], dtype=np.int64)
        column = column_of[code] if len(code) else np.zeros(0, np.int64)
        mine = (column == diag_index) | (column == proc_index)
        hadm, code = hadm[mine], code[mine]
        order = np.lexsort((code, hadm))
        self.hadm_of_pair, self.code_of_pair = hadm[order], code[order]
        self.is_proc = np.array([names[c][0] == proc_index for c in self.code_of_pair],
                                dtype=bool)
        self.names = names
        self.hadm, self.start = np.unique(self.hadm_of_pair, return_index=True)
        self.end = np.append(self.start[1:], len(self.hadm_of_pair))

    def codes(self, position: int) -> tuple[list[str], list[str]]:
        """``(diagnoses, procedures)`` of the document at ``position``, sorted."""
        lo, hi = int(self.start[position]), int(self.end[position])
        diag, proc = [], []
        for code, is_proc in zip(self.code_of_pair[lo:hi].tolist(),
                                 self.is_proc[lo:hi].tolist(), strict=True):
            (proc if is_proc else diag).append(self.names[code][1])
        return sorted(diag), sorted(proc)

    def __len__(self) -> int:
        return len(self.hadm)


def sort_codes(code: np.ndarray, names: list[tuple[int, str]]
                ) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Renumber codes so that id order is (column, code string) order."""
    order = sorted(range(len(names)), key=lambda i: names[i])
    new_id = np.empty(len(names), dtype=np.int64)
    new_id[order] = np.arange(len(names))
    return (new_id[code] if len(code) else code), [names[i] for i in order]


def filter_min_count(hadm: np.ndarray, code: np.ndarray, names: list[tuple[int, str]],
                      min_count: int) -> tuple[np.ndarray, np.ndarray, dict[str, tuple[int, int]]]:
    """Keep codes carried by at least ``min_count`` admissions (per column)."""
    counts = np.bincount(code, minlength=len(names)) if len(code) else np.zeros(len(names),
                                                                                   np.int64)
    keep_code = counts >= min_count
    report = {}
    for index, (system, kind) in enumerate(CODE_TABLE):
        in_col = np.array([c == index for c, _ in names], dtype=bool)
        column = code_columns(system)[0 if kind == "dx" else 1]
        report[column] = (int((in_col & (counts > 0)).sum()), int((in_col & keep_code).sum()))
        log.info("%s: %d unique codes, %d seen >= %d times", column, *report[column], min_count)
    keep = keep_code[code] if len(code) else np.zeros(0, bool)
    return hadm[keep], code[keep], report
