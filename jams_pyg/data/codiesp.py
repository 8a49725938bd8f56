"""CodiEsp (CLEF eHealth 2020 Task 1) as an Edin-format ICD-10 dataset.

``jams-pyg prepare codiesp DIR OUT`` reads CodiEsp's final release folder
(Miranda-Escalada et al., Barcelona Supercomputing Center; CC BY 4.0)::

    DIR/{train,dev,test}/{split}D.tsv        articleID<TAB>code  (diagnoses)
    DIR/{train,dev,test}/{split}P.tsv        articleID<TAB>code  (procedures)
    DIR/{train,dev,test}/text_files/ID.txt     Spanish originals
    DIR/{train,dev,test}/text_files_en/ID.txt  English machine translations

and writes ``OUT/mimiciv_icd10.feather`` and ``OUT/mimiciv_icd10_split.feather``
in Edin et al.'s format (:mod:`jams_pyg.data.edin`), which ``jams-pyg train
--data OUT`` reads, with these rules:

* one row per clinical case of ``text_files``; ``_id`` and ``subject_id`` are
  the article id (each case is its own patient); the official train/dev/test
  become train/val/test;
* the target is procedures + diagnoses (Edin et al.'s ``target``), each code
  once per document (the release lists a code once per text reference),
  sorted, written in jams_pyg's dotted form (``n44.8`` -> ``N44.8``,
  ``r52`` -> ``R52.``, ``bw03zzz`` -> ``BW03ZZZ``);
* **4-character procedure prefixes** (``bn20``: CodiEsp's annotators coded
  some procedures only up to the 4th axis) are *dropped* from the target: they
  are no ICD-10-PCS codes and no GEM links them. They stay in the official
  gold files copied to ``OUT/gold/``, so the official MAP counts them as
  missed;
* **codes outside the ICD-10 code lists** shipped with jams_pyg (CMS 2024
  ICD-10-CM / ICD-10-PCS titles; CodiEsp uses the Spanish 2018 edition, which
  holds codes deleted since) are *kept* by default (``unlisted="keep"``: they
  are well-formed codes the coders chose, and the official metric scores
  them) or dropped with ``unlisted="drop"``;
* a code of neither format is an error naming file and line;
* text: English or Spanish (``language``); cleaned by Edin et al.'s MIMIC-IV
  cleaning (:func:`jams_pyg.data.text.clean_text`). That cleaning keeps only
  ``[a-z0-9]``; for Spanish, accents are first folded to their base letter
  (``tórax`` -> ``torax``, ``ñ`` -> ``n``) so that it does not split words
  (our addition; Edin et al. only had English text);
* no minimum code count (Edin et al. drop codes of fewer than 10 MIMIC
  documents; the CodiEsp shared task scores every code); a document left
  without codes is dropped and counted (none in the v4 release).

The summary (:func:`prepare_codiesp`'s return value, also
``OUT/codiesp_summary.json``) counts what each rule did.
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.feather as feather

from jams_pyg.data.edin import code_columns, data_filename, split_filename
from jams_pyg.data.text import clean_text
from jams_pyg.icd.codes import format_code, is_valid_raw

__all__ = ["ATTRIBUTION", "CODIESP_SPLITS", "PCS_PREFIX_LENGTH", "prepare_codiesp",
           "read_codiesp_codes"]

PathLike = str | os.PathLike[str]
Language = Literal["en", "es"]
Subtask = Literal["D", "P"]

#: CodiEsp's split folders and the Edin split each becomes.
CODIESP_SPLITS: dict[str, str] = {"train": "train", "dev": "val", "test": "test"}
#: Length of the partial procedure codes CodiEsp's coders used.
PCS_PREFIX_LENGTH = 4
TEXT_FOLDERS: dict[str, str] = {"es": "text_files", "en": "text_files_en"}

#: Written beside every dataset built from CodiEsp (CC BY 4.0 asks for it).
ATTRIBUTION = """\
This folder is derived from the CodiEsp corpus (CLEF eHealth 2020 Task 1),
final release v4, by A. Miranda-Escalada, A. Gonzalez-Agirre, J. Armengol-Estapé
and M. Krallinger (Barcelona Supercomputing Center, Plan TL), licensed under
Creative Commons Attribution 4.0 International (CC BY 4.0,
https://creativecommons.org/licenses/by/4.0/).
Source: https://doi.org/10.5281/zenodo.3837305 (http://temu.bsc.es/codiesp/).
Reference: Miranda-Escalada et al., "Overview of automatic clinical coding:
annotations, guidelines, and solutions for non-English clinical cases at
CodiEsp track of CLEF eHealth 2020", CLEF 2020 Working Notes.
Changes made by jams_pyg (jams-pyg prepare codiesp): texts cleaned (lowercase,
non-alphanumerics removed, accents folded), codes de-duplicated per case and
re-written in dotted upper case, 4-character procedure prefixes left out of the
targets (see codiesp_summary.json); gold/ holds the official code files unchanged.
"""


def _fold_accents(text: str) -> str:
    # NFKD splits "ó" into "o" + a combining accent, which is then dropped.
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _check_layout(root: Path, language: Language) -> None:
    if not root.is_dir():
        raise FileNotFoundError(f"CodiEsp folder not found: {root}")
    missing = []
    for split in CODIESP_SPLITS:
        for name in (f"{split}/{split}D.tsv", f"{split}/{split}P.tsv",
                     f"{split}/{TEXT_FOLDERS[language]}"):
            if not (root / name).exists():
                missing.append(name)
    if missing:
        raise FileNotFoundError(
            f"{root} is not a CodiEsp release folder: missing {', '.join(missing)}"
        )


def read_codiesp_codes(path: PathLike) -> list[tuple[int, str, str]]:
    """The ``(line number, articleID, code)`` rows of a CodiEsp ``*D.tsv`` /
    ``*P.tsv`` file, in file order, codes lower-cased (as released); blank lines
    are skipped.

    Raises:
        ValueError: naming file and line, for a line that is not two
            tab-separated non-empty fields.
    """
    path = Path(path)
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
                raise ValueError(f"{path}, line {number}: expected 'articleID<TAB>code', "
                                 f"got {line[:80]!r}")
            rows.append((number, fields[0].strip(), fields[1].strip().lower()))
    return rows


def _listed_codes() -> dict[str, set[str]]:
    from jams_pyg.icd.titles import load_titles

    return {kind: set(load_titles("icd10", kind)) for kind in ("dx", "proc")}


def prepare_codiesp(
    codiesp_dir: PathLike,
    out_dir: PathLike,
    language: Language = "en",
    unlisted: Literal["keep", "drop"] = "keep",
) -> dict[str, Any]:
    """Build an Edin-format ICD-10 dataset from a CodiEsp release folder (rules
    in the module docstring).

    Args:
        codiesp_dir: The release folder holding ``train/``, ``dev/``, ``test/``.
        out_dir: Output folder (created); existing dataset files are replaced.
        language (str): ``"en"`` (``text_files_en``, default) or ``"es"``.
        unlisted (str): Codes outside the shipped ICD-10 code lists: ``"keep"``
            (default) or ``"drop"``.

    Returns:
        The summary: per split, documents and code rows; per kind (``dx``,
        ``proc``), rows read, duplicate rows, 4-character prefixes dropped,
        unlisted codes (kept or dropped), codes in the target; the output path.

    Raises:
        FileNotFoundError: naming what is missing from ``codiesp_dir``.
        ValueError: naming file and line, for a malformed line or code, a code
            row whose article has no text file, or an empty text.
    """
    if language not in TEXT_FOLDERS:
        raise ValueError(f"language must be 'en' or 'es', got {language!r}")
    if unlisted not in ("keep", "drop"):
        raise ValueError(f"unlisted must be 'keep' or 'drop', got {unlisted!r}")
    root, out = Path(codiesp_dir), Path(out_dir)
    _check_layout(root, language)
    listed = _listed_codes()
    diag_col, proc_col = code_columns("icd10")

    rows: dict[str, list[Any]] = {name: [] for name in (
        "_id", "subject_id", "text", diag_col, proc_col, "target", "num_words", "num_targets")}
    split_rows: dict[str, list[str]] = {"_id": [], "split": []}
    counts: dict[str, Counter] = {"dx": Counter(), "proc": Counter()}
    distinct: dict[str, dict[str, set[str]]] = {
        kind: {"prefix": set(), "unlisted": set(), "target": set()} for kind in ("dx", "proc")}
    per_split: dict[str, dict[str, int]] = {}
    dropped_docs = 0
    for split, edin_split in CODIESP_SPLITS.items():
        text_dir = root / split / TEXT_FOLDERS[language]
        doc_ids = sorted(p.stem for p in text_dir.glob("*.txt"))
        if not doc_ids:
            raise FileNotFoundError(f"{text_dir}: no .txt files")
        known = set(doc_ids)
        codes: dict[str, dict[str, set[str]]] = {d: {"dx": set(), "proc": set()} for d in doc_ids}
        for kind, letter in (("dx", "D"), ("proc", "P")):
            path = root / split / f"{split}{letter}.tsv"
            seen: set[tuple[str, str]] = set()
            for number, doc, code in read_codiesp_codes(path):
                where = f"{path}, line {number}"
                if doc not in known:
                    raise ValueError(f"{where}: article {doc!r} has no text file in {text_dir}")
                counts[kind]["rows"] += 1
                if (doc, code) in seen:
                    counts[kind]["duplicate_rows"] += 1
                    continue
                seen.add((doc, code))
                raw = code.replace(".", "").upper()
                if kind == "proc" and len(raw) == PCS_PREFIX_LENGTH \
                        and is_valid_raw(raw + "ZZZ", "icd10", "proc"):
                    counts[kind]["prefix_rows_dropped"] += 1
                    distinct[kind]["prefix"].add(raw)
                    continue
                try:
                    dotted = format_code(raw, "icd10", kind)
                except ValueError as err:
                    raise ValueError(f"{where}: code {code!r}: {err}") from None
                if raw not in listed[kind]:
                    counts[kind]["unlisted_rows"] += 1
                    distinct[kind]["unlisted"].add(dotted)
                    if unlisted == "drop":
                        continue
                distinct[kind]["target"].add(dotted)
                codes[doc][kind].add(dotted)
        n_docs = n_codes = 0
        for doc in doc_ids:
            diag, proc = sorted(codes[doc]["dx"]), sorted(codes[doc]["proc"])
            if not diag and not proc:
                dropped_docs += 1
                continue
            path = text_dir / f"{doc}.txt"
            try:
                raw_text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}: not UTF-8 ({err})") from None
            text = clean_text(_fold_accents(raw_text) if language == "es" else raw_text)
            if not text:
                raise ValueError(f"{path}: empty text after cleaning")
            target = proc + diag
            rows["_id"].append(doc)
            rows["subject_id"].append(doc)
            rows["text"].append(text)
            rows[diag_col].append(diag)
            rows[proc_col].append(proc)
            rows["target"].append(target)
            rows["num_words"].append(text.count(" ") + 1)
            rows["num_targets"].append(len(target))
            split_rows["_id"].append(doc)
            split_rows["split"].append(edin_split)
            n_docs += 1
            n_codes += len(target)
        per_split[edin_split] = {"documents": n_docs, "target_codes": n_codes}

    out.mkdir(parents=True, exist_ok=True)
    codes_type = pa.list_(pa.string())
    table = pa.table({
        "_id": pa.array(rows["_id"], pa.string()),
        "subject_id": pa.array(rows["subject_id"], pa.string()),
        "text": pa.array(rows["text"], pa.string()),
        diag_col: pa.array(rows[diag_col], codes_type),
        proc_col: pa.array(rows[proc_col], codes_type),
        "target": pa.array(rows["target"], codes_type),
        "num_words": pa.array(rows["num_words"], pa.int64()),
        "num_targets": pa.array(rows["num_targets"], pa.int64()),
    })
    feather.write_feather(table, out / data_filename("icd10"))
    feather.write_feather(pa.table({"_id": pa.array(split_rows["_id"], pa.string()),
                                    "split": pa.array(split_rows["split"], pa.string())}),
                          out / split_filename("icd10"))
    gold = out / "gold"
    gold.mkdir(exist_ok=True)
    for split, edin_split in CODIESP_SPLITS.items():
        for letter in ("D", "P"):
            source = root / split / f"{split}{letter}.tsv"
            (gold / f"{edin_split}{letter}.tsv").write_bytes(source.read_bytes())
    (out / "ATTRIBUTION.txt").write_text(ATTRIBUTION, encoding="utf-8")

    summary: dict[str, Any] = {
        "source": str(root),
        "language": language,
        "unlisted": unlisted,
        "splits": per_split,
        "documents_dropped_without_codes": dropped_docs,
        "path": str(out),
    }
    for kind in ("dx", "proc"):
        c = counts[kind]
        summary[kind] = {
            "rows": c["rows"],
            "duplicate_rows": c["duplicate_rows"],
            "prefix_rows_dropped": c["prefix_rows_dropped"],
            "prefix_codes_dropped": len(distinct[kind]["prefix"]),
            "unlisted_rows": c["unlisted_rows"],
            "unlisted_codes": len(distinct[kind]["unlisted"]),
            "unlisted_examples": sorted(distinct[kind]["unlisted"])[:10],
            "target_codes": len(distinct[kind]["target"]),
        }
    (out / "codiesp_summary.json").write_text(json.dumps(summary, indent=2) + "\n",
                                              encoding="utf-8")
    return summary


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The summary as the command prints it."""
    lines = [f"CodiEsp ({summary['language']}) -> {summary['path']}"]
    verb = "kept" if summary["unlisted"] == "keep" else "dropped"
    for split, s in summary["splits"].items():
        lines.append(f"  {split}: {s['documents']} documents, {s['target_codes']} target codes")
    for kind, name in (("dx", "diagnoses"), ("proc", "procedures")):
        s = summary[kind]
        lines.append(
            f"  {name}: {s['rows']} rows, {s['duplicate_rows']} duplicate rows merged, "
            f"{s['prefix_rows_dropped']} rows of {s['prefix_codes_dropped']} 4-character "
            f"prefixes dropped, {s['unlisted_rows']} rows of {s['unlisted_codes']} codes "
            f"outside the shipped ICD-10 lists {verb}; {s['target_codes']} codes in the target")
    if summary["documents_dropped_without_codes"]:
        lines.append(f"  {summary['documents_dropped_without_codes']} documents without codes "
                     "dropped")
    return lines
