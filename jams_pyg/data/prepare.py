"""Build MIMIC-IV ICD-9 and MIMIC-IV ICD-10 from raw MIMIC-IV, streaming, as Edin et al.

``jams-pyg prepare mimiciv RAW_DIR OUT_DIR`` reads
``RAW_DIR/note/discharge.csv.gz`` (MIMIC-IV-Note), ``RAW_DIR/hosp/diagnoses_icd.csv.gz``
and ``RAW_DIR/hosp/procedures_icd.csv.gz`` (MIMIC-IV; ``--note-dir`` when the
note module lives elsewhere) and writes ``OUT_DIR/mimiciv_icd9/`` and
``OUT_DIR/mimiciv_icd10/`` in Edin et al.'s format (:mod:`jams_pyg.data.edin`), with
the rules of their ``prepare_data/prepare_mimiciv.py`` (JoakimEdin/medical-coding-
reproducibility), on every row:

* a document is the discharge summary of an admission (``_id`` = ``hadm_id``); a note
  without text, or whose text pandas reads as NaN (``NA``, ``null``, ...:
  :data:`PANDAS_NA_TEXTS`), is dropped; copies of one note count once;
* codes are dotted (:func:`edin_format`: ICD-9 diagnoses after 3 characters,
  E-codes after 4, ICD-9 procedures after 2, ICD-10-CM after 3, ICD-10-PCS
  undotted) and de-duplicated per admission on the dotted code over both ICD
  versions of a code file, the first row winning (their
  ``drop_duplicates(subset=[_id, icd_code])``: an ICD-10 ``V15.82`` after an ICD-9
  ``V15.82`` of the same admission goes); ``target`` is procedures + diagnoses, each
  sorted;
* a code is kept if at least ``min_count`` (10) documents of the dataset carry
  it, counted per column (``icd9_diag``, ``icd9_proc``, ...); documents left
  without codes are dropped; an admission with both ICD-9 and ICD-10 codes is
  in both datasets;
* text: :func:`edin_lower` (vaex's lower-casing), then
  :func:`jams_pyg.data.text.clean_text` (non-alphanumerics to spaces, numbers between
  spaces removed, white space collapsed); a text empty after cleaning stays, as ``''``
  with ``num_words`` 1 (their ``str.count(" ") + 1``);
* split (:mod:`jams_pyg.data.splits`): by default Edin et al.'s published split files
  (shipped; the JAMS paper's). A prepared document they do not list is left out of the
  dataset, and a listed ``_id`` with no prepared document is counted; both are listed
  in ``split_report.json`` and logged. ``split="edin-algorithm"`` runs their
  ``generate_mimiciv_splits.py`` instead (for another MIMIC-IV release or other data).

``tests/test_splits.py`` checks the output against the files their own scripts wrote
for a fixture that triggers each rule (``tests/fixtures/mimiciv_edin``): equal row for
row (ids, patients, note ids, texts, code lists, counts, split).

Streaming: Edin et al.'s script holds every table in memory (about 128 GB on
the full data). Here the CSVs are parsed row by row (:mod:`csv` over
:mod:`gzip`) into chunks of ``block_size`` characters: a first pass over the
notes keeps admission and patient ids, the row and an 8-byte hash per note; the code
files keep ``(admission, code id)`` integer pairs and per-code counts; a second
pass over the notes cleans each chunk's texts and appends them to Arrow IPC
(feather v2) writers batch by batch. Peak memory depends on the chunk size,
not on the number of notes (``benchmarks/prepare_memory.py``: 10x the notes,
+3 % peak RSS). The chunked CSV reader is :mod:`jams_pyg.data.csv_chunks`, the code
tables :mod:`jams_pyg.data.mimiciv_codes`.

One deviation, to keep ``_id`` unique: several different discharge notes of one
admission are joined (in file order, written at the last) into one document, where
Edin et al. keep one row per note with the same ``_id``. Their published split files
list every ``_id`` once, so MIMIC-IV v2.2 has no such admission.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather

from jams_pyg.data.csv_chunks import CSVChunk, integer_ids, read_chunks, valid_rows
from jams_pyg.data.defaults import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_SEED,
    DEFAULT_SPLIT,
    MIN_TARGET_COUNT,
)
from jams_pyg.data.edin import (
    SPLITS,
    code_columns,
    data_filename,
    split_filename,
)
from jams_pyg.data.mimiciv_codes import (
    SystemDocs,
    collect_codes,
    edin_format,
    filter_min_count,
    member,
    sort_codes,
)
from jams_pyg.data.splits import SPLIT_METHODS, edin_algorithm_splits, published_split_path
from jams_pyg.data.text import clean_text
from jams_pyg.icd.codes import Kind, System

__all__ = ["NOTE_COLUMNS", "SPLIT_REPORT", "edin_format", "edin_lower", "prepare_mimiciv"]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

#: Columns read from ``note/discharge.csv.gz``.
NOTE_COLUMNS = ["note_id", "subject_id", "hadm_id", "text"]
#: The file (in each dataset folder) listing the documents without a split and the split
#: file's ids without a document.
SPLIT_REPORT = "split_report.json"


def _text_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


#: Texts pandas 1.5 reads as NaN (``pandas._libs.parsers.STR_NA_VALUES``): Edin et al.'s
#: ``pd.read_csv`` turns a note written ``NA`` or ``null`` into a missing text, which
#: their ``dropna`` then drops; so do we.
PANDAS_NA_TEXTS = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
    "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "n/a", "nan", "null"})


def edin_lower(text: str) -> str:
    """Lower-case as vaex's ``str.lower`` (Edin et al.'s ``TextPreprocessor``): as
    :meth:`str.lower` except ``İ`` (U+0130), which becomes ``i`` (Python: ``i`` and a
    combining dot, which cleaning turns into a space). A sweep of every code point up to
    U+10FFFF through vaex-core 4.18.1 found no other difference."""
    return text.replace("\u0130", "i").lower()


def _note_rows(batch: CSVChunk) -> np.ndarray:
    """Mask of the note rows Edin et al. keep: an admission, a patient and a text that
    pandas does not read as NaN."""
    keep = valid_rows(batch, "text", "hadm_id", "subject_id")
    return keep & np.fromiter((t not in PANDAS_NA_TEXTS if k else False
                               for t, k in zip(batch.column("text"), keep, strict=True)),
                              bool, batch.num_rows)


class _Notes:
    """Pass 1 over the notes: sorted unique admissions, their patient, how many note
    rows each has and the row at which its document is complete (:attr:`emit_row`)."""

    def __init__(self, path: Path, block_size: int) -> None:
        hadms, subjects, hashes, row_parts = [], [], [], []
        self.missing_text = 0
        for first, batch in read_chunks(path, NOTE_COLUMNS, block_size):
            keep = _note_rows(batch)
            self.missing_text += int((~keep).sum())
            rows = first + np.flatnonzero(keep)
            batch = batch.filter(keep)
            hadms.append(integer_ids(batch.column("hadm_id"), path, "hadm_id", rows))
            subjects.append(integer_ids(batch.column("subject_id"), path, "subject_id", rows))
            texts = batch.column("text")
            hashes.append(np.fromiter((_text_hash(t) for t in texts), np.uint64, len(texts)))
            row_parts.append(rows.astype(np.int64))
            del texts
        hadm = np.concatenate(hadms) if hadms else np.zeros(0, np.int64)
        subject = np.concatenate(subjects) if subjects else np.zeros(0, np.int64)
        digest = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
        row = np.concatenate(row_parts) if row_parts else np.zeros(0, np.int64)
        order = np.lexsort((row, hadm))
        hadm, subject, digest, row = hadm[order], subject[order], digest[order], row[order]
        self.hadm, first_index, self.rows = np.unique(hadm, return_index=True,
                                                      return_counts=True)
        self.subject = subject[first_index]
        same = np.repeat(self.subject, self.rows)
        if (same != subject).any():
            bad = int(hadm[np.flatnonzero(same != subject)[0]])
            raise ValueError(f"{path}: hadm_id {bad} belongs to more than one subject_id")
        # Distinct texts per admission: one (copies of one note) is written at its first
        # row, as Edin et al.'s drop_duplicates keeps it; several are joined, written at
        # the admission's last row.
        pairs = np.unique(np.stack([hadm, digest.view(np.int64)], axis=1), axis=0) \
            if len(hadm) else np.zeros((0, 2), np.int64)
        self.distinct = np.bincount(np.searchsorted(self.hadm, pairs[:, 0]),
                                    minlength=len(self.hadm))
        last_index = first_index + self.rows - 1
        self.emit_row = np.where(self.distinct == 1, row[first_index], row[last_index])
        if self.missing_text:
            log.warning("%s: %d notes without text (or pandas' NaN spellings such as 'NA') "
                        "or hadm_id skipped", path, self.missing_text)


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
    split: str = DEFAULT_SPLIT,
    split_dir: PathLike | None = None,
    seed: int = DEFAULT_SEED,
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
        split (str): ``"edin-published"`` (default): Edin et al.'s published split
            files (shipped, or read from ``split_dir``); ``"edin-algorithm"``: their
            split algorithm (:mod:`jams_pyg.data.splits`).
        split_dir: A folder holding ``mimiciv_icd{9,10}_split.feather`` in the
            published format, used instead of the shipped files (``edin-published``).
        seed (int): Seed of ``edin-algorithm`` (10, their ``random.seed(10)``).
        block_size (int): Characters of CSV fields per chunk (4 Mi); bounds
            the peak memory.
        invalid_codes (str): ``"error"`` (default) to stop at a malformed
            code naming file and row, ``"drop"`` to skip such codes with a
            warning.

    Returns:
        ``{system: {"documents", "patients", "codes", "empty_text", "split",
        "split_counts", "outside_split", "missing_from_data", "path"}}`` plus
        ``"code_counts"``: ``{column: (unique codes, kept codes)}``.
        ``outside_split`` counts prepared documents without a published split (left
        out of the data file); ``missing_from_data`` published ids with no prepared
        document; both are listed in ``split_report.json``.

    Raises:
        FileNotFoundError: for a missing input file.
        ValueError: naming the file and row, for a missing column, a
            non-integer id, an ``icd_version`` other than 9/10, a malformed
            code (unless ``invalid_codes="drop"``), or an admission listed
            under two patients; for an unknown ``split`` or a published split that
            holds none of a dataset's documents; :class:`~jams_pyg.icd.gem.DataFileError`
            (a ValueError) for a truncated, corrupt or non-gzip ``.gz`` file or a
            field that is not UTF-8, naming the file and data row.
    """
    if invalid_codes not in ("error", "drop"):
        raise ValueError(f"invalid_codes must be 'error' or 'drop', got {invalid_codes!r}")
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 0:
        raise ValueError(f"min_count must be an integer >= 0, got {min_count!r}")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    if split not in SPLIT_METHODS:
        raise ValueError(f"unknown split {split!r}: expected one of {list(SPLIT_METHODS)}")
    if split_dir is not None and split != "edin-published":
        raise ValueError(f"split_dir is for split='edin-published', not {split!r}")
    raw = Path(raw_dir)
    notes_path = Path(note_dir if note_dir is not None else raw) / "note" / "discharge.csv.gz"
    code_paths: dict[Kind, Path] = {
        "dx": raw / "hosp" / "diagnoses_icd.csv.gz",
        "proc": raw / "hosp" / "procedures_icd.csv.gz",
    }
    split_paths = {s: (Path(split_dir) / split_filename(s) if split_dir is not None
                       else published_split_path(s)) for s in ("icd9", "icd10")}
    inputs = [notes_path, *code_paths.values()]
    if split == "edin-published":
        inputs += split_paths.values()
    for path in inputs:
        if not path.is_file():
            raise FileNotFoundError(f"MIMIC-IV file not found: {path}")
    out = Path(out_dir)

    # Pass 1: admissions with a note.
    notes = _Notes(notes_path, block_size)
    log.info("%s: %d admissions with a discharge note", notes_path, len(notes.hadm))
    # Codes of those admissions, min-count filter.
    hadm, code, names = collect_codes(code_paths, notes.hadm, block_size, invalid_codes)
    code, names = sort_codes(code, names)
    hadm, code, report = filter_min_count(hadm, code, names, min_count)
    docs = {s: SystemDocs(s, hadm, code, names) for s in ("icd9", "icd10")}
    del hadm, code

    # The split of each document; documents without one are left out.
    split_of: dict[str, dict[int, str]] = {}
    split_report: dict[str, dict[str, object]] = {}
    if split == "edin-algorithm":
        inputs_of = {}
        for system, d in docs.items():
            position = np.searchsorted(notes.hadm, d.hadm)
            order = np.argsort(notes.emit_row[position], kind="stable")  # file order
            targets = [_target(*d.codes(int(i))) for i in order]
            inputs_of[system] = (notes.subject[position[order]].tolist(), targets)
        for system, names_ in edin_algorithm_splits(inputs_of, seed).items():
            d = docs[system]
            order = np.argsort(notes.emit_row[np.searchsorted(notes.hadm, d.hadm)],
                               kind="stable")
            split_of[system] = dict(zip(d.hadm[order].tolist(), names_, strict=True))
            split_report[system] = {"outside_split": [], "missing_from_data": []}
    else:
        for system, d in docs.items():
            split_of[system], split_report[system] = _published(split_paths[system],
                                                                system, d.hadm)

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
    empty_text = {s: 0 for s in docs}
    pending: dict[int, list[tuple[int, str, str]]] = {}  # multi-note admissions
    done: set[int] = set()  # admissions written at their first of several copies
    try:
        for first, batch in read_chunks(notes_path, NOTE_COLUMNS, block_size):
            keep = _note_rows(batch)
            batch = batch.filter(keep)
            hadm_ids = integer_ids(batch.column("hadm_id"), notes_path, "hadm_id",
                                   first + np.flatnonzero(keep))
            wanted = np.zeros(len(hadm_ids), dtype=bool)
            for d in docs.values():
                wanted |= member(d.hadm, hadm_ids)
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
                k = note_index[i]
                if notes.rows[k] > 1 and notes.distinct[k] == 1:
                    if h in done:
                        continue  # a copy of a note already written
                    done.add(h)
                elif notes.rows[k] > 1:
                    parts = pending.setdefault(h, [])
                    parts.append((_text_hash(text), text, str(note_id)))
                    if len(parts) < notes.rows[k]:
                        continue
                    del pending[h]
                    seen, texts, note_ids = set(), [], []
                    for digest, part, nid in parts:
                        if digest not in seen:
                            seen.add(digest)
                            texts.append(part)
                            note_ids.append(nid)
                    text, note_id = "\n".join(texts), "+".join(note_ids)
                _emit(h, int(notes.subject[k]), str(note_id), text, docs, split_of,
                      out_rows, written, empty_text)
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
        names_ = [split_of[system][h] for h in ids]
        table = pa.table({"_id": pa.array(ids, pa.int64()), "split": pa.array(names_, pa.string())})
        feather.write_feather(table, folder / split_filename(system), compression="zstd")
        rep = split_report[system]
        with open(folder / SPLIT_REPORT, "w", encoding="utf-8") as handle:
            json.dump({"split": split, "split_file": str(split_paths[system])
                       if split == "edin-published" else None, **rep}, handle)
        if empty_text[system]:
            log.info("%s: %d documents have no text left after cleaning (kept as '', as "
                     "Edin et al.)", system, empty_text[system])
        d = docs[system]
        subjects = notes.subject[np.searchsorted(notes.hadm, np.asarray(ids, np.int64))]
        codes = np.unique(d.code_of_pair[member(np.asarray(sorted(ids), np.int64),
                                                d.hadm_of_pair)])
        summary[system] = {
            "documents": len(ids),
            "patients": len(np.unique(subjects)),
            "codes": len(codes),
            "empty_text": empty_text[system],
            "split": split,
            "split_counts": {name: names_.count(name) for name in SPLITS},
            "outside_split": len(rep["outside_split"]),  # type: ignore[arg-type]
            "missing_from_data": len(rep["missing_from_data"]),  # type: ignore[arg-type]
            "path": str(folder),
        }
    summary["code_counts"] = report  # type: ignore[assignment]
    return summary


def _target(diag: list[str], proc: list[str]) -> list[str]:
    """Edin et al.'s ``target``: procedures, then diagnoses."""
    return proc + diag


def _published(path: Path, system: System, hadm: np.ndarray
               ) -> tuple[dict[int, str], dict[str, object]]:
    """The published split of the prepared admissions ``hadm`` (sorted), and the
    report: prepared ids it lacks, its ids with no prepared document."""
    try:
        table = feather.read_table(path, columns=["_id", "split"])
    except Exception as err:  # pyarrow raises several types for a bad file
        raise ValueError(f"{path}: not a split file with columns _id and split ({err})"
                         ) from None
    ids = np.asarray(table.column("_id").to_numpy(zero_copy_only=False), dtype=np.int64)
    names = table.column("split").to_pylist()
    bad = next((n for n in names if n not in SPLITS), None)
    if bad is not None:
        raise ValueError(f"{path}: unknown split {bad!r}; expected one of {list(SPLITS)}")
    if len(np.unique(ids)) != len(ids):
        raise ValueError(f"{path}: an _id is listed twice")
    order = np.argsort(ids)
    ids, names = ids[order], [names[i] for i in order]
    inside = member(ids, hadm)
    outside = hadm[~inside].tolist()
    missing = ids[~member(hadm, ids)].tolist()
    if len(hadm) and not inside.any():
        raise ValueError(
            f"none of the {len(hadm)} {system} documents is in the split file {path}: "
            "not the MIMIC-IV release the split was made from (v2.2)? Use "
            "split='edin-algorithm' (--split edin-algorithm) for other data")
    if outside:
        log.warning("%s: %d documents have no split in %s and are left out (see %s), "
                    "e.g. _id %s", system, len(outside), path.name, SPLIT_REPORT, outside[:5])
    if missing:
        log.warning("%s: %d _id of %s have no prepared document (see %s), e.g. %s",
                    system, len(missing), path.name, SPLIT_REPORT, missing[:5])
    position = np.searchsorted(ids, hadm[inside])
    split_of = {int(h): names[int(p)] for h, p in zip(hadm[inside], position, strict=True)}
    return split_of, {"outside_split": outside, "missing_from_data": missing}


def _emit(hadm: int, subject: int, note_id: str, text: str, docs: dict[str, SystemDocs],
          split_of: dict[str, dict[int, str]], batch: dict[str, dict[str, list]],
          written: dict[str, list[int]], empty_text: dict[str, int]) -> None:
    cleaned = clean_text(edin_lower(text))
    for system, d in docs.items():
        pos = int(np.searchsorted(d.hadm, hadm))
        if pos >= len(d.hadm) or d.hadm[pos] != hadm or hadm not in split_of[system]:
            continue
        if not cleaned:
            empty_text[system] += 1
        diag, proc = d.codes(pos)
        target = _target(diag, proc)
        rows = batch[system]
        rows["_id"].append(hadm)
        rows["subject_id"].append(subject)
        rows["note_id"].append(note_id)
        rows["text"].append(cleaned)
        rows[d.diag_col].append(diag)
        rows[d.proc_col].append(proc)
        rows["target"].append(target)
        rows["num_words"].append(cleaned.count(" ") + 1)  # Edin et al.: 1 for ''
        rows["num_targets"].append(len(target))
        written[system].append(hadm)
