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
+3 % peak RSS). The chunked CSV reader is :mod:`jams_pyg.data.csv_chunks`, the code
tables :mod:`jams_pyg.data.mimiciv_codes`.

Deviations from Edin et al., each to keep the output well-formed: several
different discharge notes of one admission are joined (in file order) into one
document instead of becoming rows with the same ``_id``; identical notes count
once (as their ``drop_duplicates``); a document whose text is empty after
cleaning is dropped with a warning (the loader rejects empty texts).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather

from jams_pyg.data.csv_chunks import integer_ids, read_chunks, valid_rows
from jams_pyg.data.defaults import DEFAULT_BLOCK_SIZE, DEFAULT_SEED, MIN_TARGET_COUNT
from jams_pyg.data.edin import (
    SPLITS,
    code_columns,
    data_filename,
    split_filename,
    stratified_group_split,
)
from jams_pyg.data.mimiciv_codes import (
    SystemDocs,
    collect_codes,
    edin_format,
    filter_min_count,
    member,
    sort_codes,
)
from jams_pyg.data.text import clean_text
from jams_pyg.icd.codes import Kind, System

__all__ = ["NOTE_COLUMNS", "edin_format", "prepare_mimiciv"]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

#: Columns read from ``note/discharge.csv.gz``.
NOTE_COLUMNS = ["note_id", "subject_id", "hadm_id", "text"]


def _text_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


class _Notes:
    """Pass 1 over the notes: sorted unique admissions, their patient, and
    how many note rows each has."""

    def __init__(self, path: Path, block_size: int) -> None:
        hadms, subjects, hashes = [], [], []
        self.missing_text = 0
        for first, batch in read_chunks(path, NOTE_COLUMNS, block_size):
            keep = valid_rows(batch, "text", "hadm_id", "subject_id")
            self.missing_text += int((~keep).sum())
            rows = first + np.flatnonzero(keep)
            batch = batch.filter(keep)
            hadms.append(integer_ids(batch.column("hadm_id"), path, "hadm_id", rows))
            subjects.append(integer_ids(batch.column("subject_id"), path, "subject_id", rows))
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
    hadm, code, names = collect_codes(code_paths, notes.hadm, block_size, invalid_codes)
    code, names = sort_codes(code, names)
    hadm, code, report = filter_min_count(hadm, code, names, min_count)
    docs = {s: SystemDocs(s, hadm, code, names) for s in ("icd9", "icd10")}
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
        for first, batch in read_chunks(notes_path, NOTE_COLUMNS, block_size):
            keep = valid_rows(batch, "text", "hadm_id", "subject_id")
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


def _emit(hadm: int, subject: int, note_id: str, text: str, docs: dict[str, SystemDocs],
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
