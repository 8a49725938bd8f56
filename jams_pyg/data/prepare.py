"""Build MIMIC-IV ICD-9 and MIMIC-IV ICD-10 from raw MIMIC-IV, streaming.

``jams-pyg prepare mimiciv RAW_DIR OUT_DIR`` reads
``RAW_DIR/note/discharge.csv.gz`` (MIMIC-IV-Note), ``RAW_DIR/hosp/diagnoses_icd.csv.gz``
and ``RAW_DIR/hosp/procedures_icd.csv.gz`` (MIMIC-IV; ``--note-dir`` when the
note module lives elsewhere) and writes ``OUT_DIR/mimiciv_icd9/`` and
``OUT_DIR/mimiciv_icd10/`` in Edin et al.'s format
(:mod:`jams_pyg.data.edin`), with Edin et al.'s rules:

* a document is the discharge summary of an admission (``_id`` = ``hadm_id``);
  codes are dotted (:func:`edin_format`: ICD-9 diagnoses after 3 characters,
  E-codes after 4, ICD-9 procedures after 2, ICD-10-CM after 3, ICD-10-PCS
  undotted), de-duplicated per admission and sorted; ``target`` is
  procedures + diagnoses;
* a code is kept if at least ``min_count`` (10) documents of the dataset carry
  it, counted per column (``icd9_diag``, ``icd9_proc``, ...); documents left
  without codes are dropped; an admission with both ICD-9 and ICD-10 codes is
  in both datasets, as in Edin et al.;
* text: :func:`jams_pyg.data.text.clean_text` (lowercase, non-alphanumerics
  to spaces, numbers between spaces removed, white space collapsed);
* split by patient 75/10/15, stratified on the patients' codes by iterative
  stratification (:func:`jams_pyg.data.edin.stratified_group_split`, the
  method Edin et al. used; seeded, ``seed=10`` as their script). The split
  cannot be Edin et al.'s exact one: to reproduce the paper, use their split
  files with :func:`~jams_pyg.data.edin.load_edin_dataset`.

Streaming: Edin et al.'s script holds every table in memory (about 128 GB on
the full data). Here the CSVs are parsed row by row (:mod:`csv` over
:mod:`gzip`) into chunks of ``block_size`` characters: a first pass over the
notes keeps admission and patient ids and an 8-byte hash per note; the code
files keep ``(admission, code id)`` integer pairs and per-code counts; a second
pass over the notes cleans each chunk's texts and appends them to Arrow IPC
(feather v2) writers batch by batch. Peak memory depends on the chunk size,
not on the number of notes (``benchmarks/prepare_memory.py``: 10x the notes,
+3 % peak RSS).

Deviations from Edin et al., each to keep the output well-formed: several
different discharge notes of one admission are joined (in file order) into one
document instead of becoming rows with the same ``_id``; identical notes count
once (as their ``drop_duplicates``); a document whose text is empty after
cleaning is dropped with a warning (the loader rejects empty texts).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import logging
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from itertools import compress
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather

from jams_pyg.data.defaults import DEFAULT_BLOCK_SIZE, DEFAULT_SEED, MIN_TARGET_COUNT
from jams_pyg.data.edin import (
    SPLITS,
    code_columns,
    data_filename,
    split_filename,
    stratified_group_split,
)
from jams_pyg.data.text import clean_text
from jams_pyg.icd.codes import Kind, System, dot_code, parse_code
from jams_pyg.icd.gem import DataFileError

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

NOTE_COLUMNS = ["note_id", "subject_id", "hadm_id", "text"]
CODE_COLUMNS = ["subject_id", "hadm_id", "icd_code", "icd_version"]
#: Column order of the code table: (system, kind) -> column index.
_COLUMNS: list[tuple[System, Kind]] = [
    ("icd9", "dx"), ("icd9", "proc"), ("icd10", "dx"), ("icd10", "proc")]


def edin_format(code: str, version: int, kind: Kind) -> str:
    """Edin et al.'s ``reformat_icd9`` / ``reformat_icd10`` of a raw MIMIC-IV code: drop
    any dot, then :func:`~jams_pyg.icd.codes.dot_code` (no validity check, as theirs)."""
    code = "".join(str(code).strip().split("."))
    if version not in (9, 10):
        raise ValueError(f"icd_version must be 9 or 10, got {version!r}")
    return dot_code(code, "icd9" if version == 9 else "icd10", kind)


class _Chunk:
    """Some rows of a CSV: ``{column: list of str or None}``."""

    def __init__(self, columns: dict[str, list]) -> None:
        self.columns = columns
        self.num_rows = len(next(iter(columns.values()))) if columns else 0

    def column(self, name: str) -> list:
        return self.columns[name]

    def filter(self, mask: np.ndarray) -> _Chunk:
        return _Chunk({k: list(compress(v, mask.tolist())) for k, v in self.columns.items()})


def _read_chunks(
    path: Path, columns: Sequence[str], block_size: int, max_rows: int = 50_000
) -> Iterator[tuple[int, _Chunk]]:
    """``(first data row number, chunk)`` of a (gzipped) CSV, only ``columns``
    (strings; empty fields are None), each chunk about ``block_size``
    characters of fields or ``max_rows`` rows, whichever comes first.

    Parsed row by row with the :mod:`csv` module (quoted fields may hold
    newlines), so memory holds one chunk at a time. (Chunked
    ``pandas.read_csv`` lets the peak creep up over the chunks of a gzipped
    file, and :func:`pyarrow.csv.open_csv` reads ahead without bound when the
    consumer is slower than the parser.)
    """
    if not path.is_file():
        raise FileNotFoundError(f"MIMIC-IV file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    # MIMIC-IV notes exceed the csv module's default 131,072-character field limit.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    row = 0  # the data row being parsed (0: the header)
    try:
        # surrogateescape: a byte that is not UTF-8 becomes a lone surrogate, found in
        # the row that holds it (strict decoding fails a block ahead, rows unknown).
        with opener(path, "rt", encoding="utf-8", errors="surrogateescape",
                    newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None) or []
            _check_utf8(path, 0, header)
            missing = [c for c in columns if c not in header]
            if missing:
                raise ValueError(f"{path}: missing column(s) {missing}; found {header}")
            positions = [header.index(c) for c in columns]
            width = len(header)
            first = row = 1
            buffer: list[list] = [[] for _ in columns]
            size = 0
            try:
                for record in reader:
                    if len(record) != width:
                        if not record:
                            continue
                        raise ValueError(
                            f"{path}, data row {row}: {len(record)} fields, expected {width}")
                    for store, position in zip(buffer, positions, strict=True):
                        value = record[position]
                        if not value.isascii():
                            _check_utf8(path, row, [value])
                        store.append(value if value != "" else None)
                        size += len(value)
                    row += 1
                    if size >= block_size or row - first >= max_rows:
                        yield first, _Chunk(dict(zip(columns, buffer, strict=True)))
                        first, buffer, size = row, [[] for _ in columns], 0
            except csv.Error as err:
                raise ValueError(f"{path}, data row {row}: {err}") from err
            if buffer[0]:
                yield first, _Chunk(dict(zip(columns, buffer, strict=True)))
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        if isinstance(err, gzip.BadGzipFile) and row == 0:
            problem = "not a gzip file"
        else:
            problem = "truncated or corrupt gzip data"
        where = f"{path}, data row {row}" if row else str(path)
        raise DataFileError(f"{where}: {problem} ({err})") from None


_SURROGATE = re.compile("[\udc80-\udcff]")


def _check_utf8(path: Path, row: int, values: Sequence[str]) -> None:
    """Raise naming file and row if a field holds a byte that was not UTF-8 (decoded
    with ``surrogateescape``)."""
    for value in values:
        found = _SURROGATE.search(value)
        if found:
            where = f"{path}, data row {row}" if row else f"{path}, header"
            byte = ord(found.group()) - 0xDC00
            raise DataFileError(
                f"{where}: not UTF-8 text (byte {byte:#04x} at character "
                f"{found.start() + 1} of a field; MIMIC-IV files are UTF-8)"
            )


def _valid(chunk: _Chunk, *columns: str) -> np.ndarray:
    """Mask of the rows where all ``columns`` are non-null."""
    mask = np.ones(chunk.num_rows, dtype=bool)
    for column in columns:
        mask &= np.fromiter((v is not None for v in chunk.column(column)), bool,
                            chunk.num_rows)
    return mask


def _text_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def _ids(values: list, path: Path, column: str, rows: np.ndarray) -> np.ndarray:
    """Integer ids of a (non-null) column; ``rows`` are the data row numbers
    (1-based) for the error message."""
    out = np.empty(len(values), dtype=np.int64)
    for pos, value in enumerate(values):
        try:
            out[pos] = int(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"{path}, data row {int(rows[pos])}: {column} {value!r} is not an integer id"
            ) from None
    return out


def _member(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mask of ``values`` found in the sorted array ``sorted_values``."""
    if not len(sorted_values):
        return np.zeros(len(values), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_values, values), len(sorted_values) - 1)
    return sorted_values[pos] == values


class _Notes:
    """Pass 1 over the notes: sorted unique admissions, their patient, and
    how many note rows each has."""

    def __init__(self, path: Path, block_size: int) -> None:
        hadms, subjects, hashes = [], [], []
        self.missing_text = 0
        for first, batch in _read_chunks(path, NOTE_COLUMNS, block_size):
            keep = _valid(batch, "text", "hadm_id", "subject_id")
            self.missing_text += int((~keep).sum())
            rows = first + np.flatnonzero(keep)
            batch = batch.filter(keep)
            hadms.append(_ids(batch.column("hadm_id"), path, "hadm_id", rows))
            subjects.append(_ids(batch.column("subject_id"), path, "subject_id", rows))
            texts = batch.column("text")
            hashes.append(np.fromiter((_text_hash(t) for t in texts), np.uint64, len(texts)))
            del texts
        hadm = np.concatenate(hadms) if hadms else np.zeros(0, np.int64)
        subject = np.concatenate(subjects) if subjects else np.zeros(0, np.int64)
        digest = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
        order = np.lexsort((digest, hadm))
        hadm, subject, digest = hadm[order], subject[order], digest[order]
        self.hadm, first_index, self.rows = np.unique(hadm, return_index=True,
                                                      return_counts=True)
        self.subject = subject[first_index]
        same = np.repeat(self.subject, self.rows)
        if (same != subject).any():
            bad = int(hadm[np.flatnonzero(same != subject)[0]])
            raise ValueError(f"{path}: hadm_id {bad} belongs to more than one subject_id")
        if self.missing_text:
            log.warning("%s: %d notes without text or hadm_id skipped", path, self.missing_text)


def _collect_codes(
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
        for first, batch in _read_chunks(path, CODE_COLUMNS, block_size):
            codes_ok = _valid(batch, "icd_code")  # Edin et al.: dropna(subset=["icd_code"])
            batch = batch.filter(codes_ok)
            rows = first + np.flatnonzero(codes_ok)
            hadm = _ids(batch.column("hadm_id"), path, "hadm_id", rows)
            keep = _member(note_hadm, hadm)
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
            hadm_parts.append(hadm[valid])
            code_parts.append(ids[valid])
    for path_name, examples in dropped.items():
        log.warning("%s: dropped %d malformed code(s), e.g. %s", path_name, len(examples),
                    examples[:5])
    hadm = np.concatenate(hadm_parts) if hadm_parts else np.zeros(0, np.int64)
    code = np.concatenate(code_parts) if code_parts else np.zeros(0, np.int64)
    # Edin et al.: drop_duplicates(subset=[_id, icd_code]).
    pairs = np.unique(np.stack([hadm, code], axis=1), axis=0) if len(hadm) else np.zeros(
        (0, 2), np.int64)
    return pairs[:, 0], pairs[:, 1], names


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
        return _COLUMNS.index((system, kind)), dotted
    except (ValueError, TypeError) as err:
        if invalid_codes == "drop":
            dropped.setdefault(str(path), []).append(f"{code!r} (v{version})")
            return None
        raise ValueError(
            f"{path}, data row {row}: code {code!r} (icd_version {version!r}): {err}; "
            "pass invalid_codes='drop' (--invalid-codes drop) to skip such codes"
        ) from None


class _SystemDocs:
    """The documents of one system after the min-count filter: sorted
    admissions and, per admission, its diagnosis and procedure codes."""

    def __init__(self, system: System, hadm: np.ndarray, code: np.ndarray,
                 names: list[tuple[int, str]]) -> None:
        self.system = system
        self.diag_col, self.proc_col = code_columns(system)
        diag_index = _COLUMNS.index((system, "dx"))
        proc_index = _COLUMNS.index((system, "proc"))
        # Code ids are in (column, code) order (see _sort_codes), so sorting the
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


def _sort_codes(code: np.ndarray, names: list[tuple[int, str]]
                ) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Renumber codes so that id order is (column, code string) order."""
    order = sorted(range(len(names)), key=lambda i: names[i])
    new_id = np.empty(len(names), dtype=np.int64)
    new_id[order] = np.arange(len(names))
    return (new_id[code] if len(code) else code), [names[i] for i in order]


def _filter_min_count(hadm: np.ndarray, code: np.ndarray, names: list[tuple[int, str]],
                      min_count: int) -> tuple[np.ndarray, np.ndarray, dict[str, tuple[int, int]]]:
    """Keep codes carried by at least ``min_count`` admissions (per column)."""
    counts = np.bincount(code, minlength=len(names)) if len(code) else np.zeros(len(names),
                                                                                   np.int64)
    keep_code = counts >= min_count
    report = {}
    for index, (system, kind) in enumerate(_COLUMNS):
        in_col = np.array([c == index for c, _ in names], dtype=bool)
        column = code_columns(system)[0 if kind == "dx" else 1]
        report[column] = (int((in_col & (counts > 0)).sum()), int((in_col & keep_code).sum()))
        log.info("%s: %d unique codes, %d seen >= %d times", column, *report[column], min_count)
    keep = keep_code[code] if len(code) else np.zeros(0, bool)
    return hadm[keep], code[keep], report


def _schema(system: System) -> pa.Schema:
    diag_col, proc_col = code_columns(system)
    codes = pa.list_(pa.string())
    return pa.schema([
        ("_id", pa.int64()), ("subject_id", pa.int64()), ("note_id", pa.string()),
        ("text", pa.string()), (diag_col, codes), (proc_col, codes), ("target", codes),
        ("num_words", pa.int64()), ("num_targets", pa.int64()),
    ])


def prepare_mimiciv(
    raw_dir: PathLike,
    out_dir: PathLike,
    note_dir: PathLike | None = None,
    min_count: int = MIN_TARGET_COUNT,
    seed: int = DEFAULT_SEED,
    ratios: Sequence[float] = (0.75, 0.10, 0.15),
    block_size: int = DEFAULT_BLOCK_SIZE,
    invalid_codes: str = "error",
) -> dict[str, dict[str, object]]:
    """Build MIMIC-IV ICD-9 and ICD-10 in Edin et al.'s format (see the module
    docstring for the rules), streaming.

    Args:
        raw_dir: Folder with ``hosp/diagnoses_icd.csv.gz`` and
            ``hosp/procedures_icd.csv.gz`` (and ``note/discharge.csv.gz``
            unless ``note_dir`` is given).
        out_dir: Output folder; ``mimiciv_icd9/`` and ``mimiciv_icd10/`` are
            written there.
        note_dir: Folder with ``note/discharge.csv.gz`` (default ``raw_dir``).
        min_count (int): Minimum number of documents per code (10).
        seed (int): Seed of the split (10).
        ratios: Train/val/test shares of the patients (0.75/0.10/0.15).
        block_size (int): Characters of CSV fields per chunk (4 Mi); bounds
            the peak memory.
        invalid_codes (str): ``"error"`` (default) to stop at a malformed
            code naming file and row, ``"drop"`` to skip such codes with a
            warning.

    Returns:
        ``{system: {"documents", "patients", "codes", "dropped_empty_text", "path"}}``
        plus ``"code_counts"``: ``{column: (unique codes, kept codes)}``.

    Raises:
        FileNotFoundError: for a missing input file.
        ValueError: naming the file and row, for a missing column, a
            non-integer id, an ``icd_version`` other than 9/10, a malformed
            code (unless ``invalid_codes="drop"``), or an admission listed
            under two patients; :class:`~jams_pyg.icd.gem.DataFileError` (a
            ValueError) for a truncated, corrupt or non-gzip ``.gz`` file or a
            field that is not UTF-8, naming the file and data row.
    """
    if invalid_codes not in ("error", "drop"):
        raise ValueError(f"invalid_codes must be 'error' or 'drop', got {invalid_codes!r}")
    raw = Path(raw_dir)
    notes_path = Path(note_dir if note_dir is not None else raw) / "note" / "discharge.csv.gz"
    code_paths: dict[Kind, Path] = {
        "dx": raw / "hosp" / "diagnoses_icd.csv.gz",
        "proc": raw / "hosp" / "procedures_icd.csv.gz",
    }
    for path in (notes_path, *code_paths.values()):
        if not path.is_file():
            raise FileNotFoundError(f"MIMIC-IV file not found: {path}")
    out = Path(out_dir)

    # Pass 1: admissions with a note.
    notes = _Notes(notes_path, block_size)
    log.info("%s: %d admissions with a discharge note", notes_path, len(notes.hadm))
    # Codes of those admissions, min-count filter.
    hadm, code, names = _collect_codes(code_paths, notes.hadm, block_size, invalid_codes)
    code, names = _sort_codes(code, names)
    hadm, code, report = _filter_min_count(hadm, code, names, min_count)
    docs = {s: _SystemDocs(s, hadm, code, names) for s in ("icd9", "icd10")}
    del hadm, code

    # Split by patient, stratified on the (kept) codes.
    split_of: dict[str, dict[int, str]] = {}
    for system, d in docs.items():
        subject = notes.subject[np.searchsorted(notes.hadm, d.hadm)]
        patients: dict[int, set[int]] = {}
        for position, s in enumerate(subject.tolist()):
            lo, hi = int(d.start[position]), int(d.end[position])
            patients.setdefault(s, set()).update(d.code_of_pair[lo:hi].tolist())
        keys = list(patients)
        folds = stratified_group_split(keys, [patients[k] for k in keys], ratios, seed)
        fold_of = dict(zip(keys, folds, strict=True))
        split_of[system] = {
            int(h): SPLITS[fold_of[s]] for h, s in zip(d.hadm.tolist(), subject.tolist(),
                                                       strict=True)
        }
        del patients

    # Pass 2: texts, written batch by batch.
    folders = {s: out / f"mimiciv_{s}" for s in docs}
    writers = {}
    for system, folder in folders.items():
        folder.mkdir(parents=True, exist_ok=True)
        writers[system] = pa.ipc.new_file(
            str(folder / data_filename(system)), _schema(system),
            options=pa.ipc.IpcWriteOptions(compression="zstd"),
        )
    written: dict[str, list[int]] = {s: [] for s in docs}
    dropped_empty = {s: 0 for s in docs}
    pending: dict[int, list[tuple[int, str, str]]] = {}  # multi-note admissions
    try:
        for first, batch in _read_chunks(notes_path, NOTE_COLUMNS, block_size):
            keep = _valid(batch, "text", "hadm_id", "subject_id")
            batch = batch.filter(keep)
            hadm_ids = _ids(batch.column("hadm_id"), notes_path, "hadm_id",
                            first + np.flatnonzero(keep))
            wanted = np.zeros(len(hadm_ids), dtype=bool)
            for d in docs.values():
                wanted |= _member(d.hadm, hadm_ids)
            batch = batch.filter(wanted)
            hadm_ids = hadm_ids[wanted]
            chunk_texts = batch.column("text")
            chunk_note_ids = batch.column("note_id")
            out_rows: dict[str, dict[str, list]] = {
                s: {name: [] for name in _schema(s).names} for s in docs}
            note_index = np.searchsorted(notes.hadm, hadm_ids)
            for i in range(len(hadm_ids)):
                h = int(hadm_ids[i])
                text, note_id = chunk_texts[i], chunk_note_ids[i]
                n_rows = int(notes.rows[note_index[i]])
                if n_rows > 1:
                    parts = pending.setdefault(h, [])
                    parts.append((_text_hash(text), text, str(note_id)))
                    if len(parts) < n_rows:
                        continue
                    del pending[h]
                    seen, texts, note_ids = set(), [], []
                    for digest, part, nid in parts:
                        if digest not in seen:
                            seen.add(digest)
                            texts.append(part)
                            note_ids.append(nid)
                    text, note_id = "\n".join(texts), "+".join(note_ids)
                _emit(h, int(notes.subject[note_index[i]]), str(note_id), text, docs,
                      out_rows, written, dropped_empty)
            del chunk_texts, chunk_note_ids
            for system, writer in writers.items():
                if out_rows[system]["_id"]:
                    writer.write_batch(pa.RecordBatch.from_pydict(out_rows[system],
                                                                  schema=_schema(system)))
    finally:
        for writer in writers.values():
            writer.close()
    if pending:  # cannot happen: pass 1 counted every row
        raise RuntimeError(f"{len(pending)} admissions with notes left unwritten")

    summary: dict[str, dict[str, object]] = {}
    for system, folder in folders.items():
        ids = written[system]
        split = pa.table({"_id": pa.array(ids, pa.int64()),
                          "split": pa.array([split_of[system][h] for h in ids], pa.string())})
        feather.write_feather(split, folder / split_filename(system), compression="zstd")
        if dropped_empty[system]:
            log.warning("%s: dropped %d documents whose text is empty after cleaning",
                        system, dropped_empty[system])
        d = docs[system]
        subjects = notes.subject[np.searchsorted(notes.hadm, np.asarray(ids, np.int64))]
        summary[system] = {
            "documents": len(ids),
            "patients": len(np.unique(subjects)),
            "codes": len(np.unique(d.code_of_pair)),
            "dropped_empty_text": dropped_empty[system],
            "path": str(folder),
        }
    summary["code_counts"] = report  # type: ignore[assignment]
    return summary


def _emit(hadm: int, subject: int, note_id: str, text: str, docs: dict[str, _SystemDocs],
          batch: dict[str, dict[str, list]], written: dict[str, list[int]],
          dropped_empty: dict[str, int]) -> None:
    cleaned = clean_text(text)
    for system, d in docs.items():
        pos = int(np.searchsorted(d.hadm, hadm))
        if pos >= len(d.hadm) or d.hadm[pos] != hadm:
            continue
        if not cleaned:
            dropped_empty[system] += 1
            continue
        diag, proc = d.codes(pos)
        target = proc + diag
        rows = batch[system]
        rows["_id"].append(hadm)
        rows["subject_id"].append(subject)
        rows["note_id"].append(note_id)
        rows["text"].append(cleaned)
        rows[d.diag_col].append(diag)
        rows[d.proc_col].append(proc)
        rows["target"].append(target)
        rows["num_words"].append(cleaned.count(" ") + 1)
        rows["num_targets"].append(len(target))
        written[system].append(hadm)
