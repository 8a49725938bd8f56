"""The documents of one system of the synthetic corpus: concepts drawn per patient and
admission, mentioned behind positive cues, distractors behind negative ones, filled with
generic words; written in Edin et al.'s feather format."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather

from jams_pyg.atomic import atomic_open
from jams_pyg.data.edin import code_columns, data_filename, split_filename
from jams_pyg.data.synthetic.concepts import Concept
from jams_pyg.data.synthetic.words import NEGATIVE_CUES, POSITIVE_CUES

#: Words per document (mentions, then filler up to this length). Short enough
#: that the embedded LAAT default trains on the CPU in minutes.
_DOC_WORDS = (60, 120)
_DOCS_PER_PATIENT_P = {"icd9": 0.467, "icd10": 0.537}  # mean 2.14 / 1.86 (Table 1)


def _mention(rng: np.random.Generator, concept: Concept, variant: int, cue: str) -> list[str]:
    words = list(concept.key_words)
    words += [w for w in concept.core_words if w not in concept.key_words and rng.random() < 0.5]
    if concept.variant_words:
        words += [w for w in concept.variant_words[variant] if rng.random() < 0.6]
    if len(words) < 2:
        pool = concept.core_words + (concept.variant_words[variant] if concept.variant_words
                                     else [])
        words += [pool[int(i)] for i in rng.choice(len(pool), min(2, len(pool)), replace=False)]
    return cue.split() + words


def generate_documents(
    rng: np.random.Generator,
    system: str,
    concepts: list[Concept],
    filler: list[str],
    filler_p: np.ndarray,
    n_docs: int,
    id_base: int,
    subject_base: int,
) -> pd.DataFrame:
    weights = np.array([c.weight[system] for c in concepts])
    present = np.flatnonzero(weights > 0)
    probs = weights[present] / weights[present].sum()
    all_w = np.array([sum(c.weight.values()) for c in concepts])
    all_p = all_w / all_w.sum()
    diag_col, proc_col = code_columns(system)
    rows: dict[str, list] = {k: [] for k in (
        "_id", "subject_id", "text", diag_col, proc_col, "target", "num_words", "num_targets")}
    patient = 0
    while len(rows["_id"]) < n_docs:
        n_adm = min(8, int(rng.geometric(_DOCS_PER_PATIENT_P[system])))
        n_chronic = int(rng.integers(0, 4))
        chronic = rng.choice(present, n_chronic, replace=False, p=probs).tolist()
        for _ in range(n_adm):
            if len(rows["_id"]) >= n_docs:
                break
            n_codes = int(np.clip(1 + rng.poisson(4.5), 1, 12))
            chosen = [c for c in chronic if rng.random() < 0.6]
            extra = rng.choice(present, min(len(present), n_codes + 3), replace=False, p=probs)
            for c in extra.tolist():
                if len(chosen) >= n_codes:
                    break
                if c not in chosen:
                    chosen.append(c)
            sentences: list[list[str]] = []
            diag: set[str] = set()
            proc: set[str] = set()
            for ci in chosen:
                concept = concepts[ci]
                variant = (int(rng.choice(len(concept.icd10), p=concept.variant_probs))
                           if concept.icd10 else 0)
                code = concept.icd9 if system == "icd9" else concept.icd10[variant]
                (proc if concept.group == "proc" else diag).add(code)
                if rng.random() >= 0.05:
                    cue = POSITIVE_CUES[int(rng.integers(0, len(POSITIVE_CUES)))]
                    sentences.append(_mention(rng, concept, variant, cue))
            for _ in range(int(rng.choice([0, 1, 2], p=[0.3, 0.45, 0.25]))):
                ci = int(rng.choice(len(concepts), p=all_p))
                if ci in chosen:
                    continue
                concept = concepts[ci]
                variant = (int(rng.choice(len(concept.icd10), p=concept.variant_probs))
                           if concept.icd10 else 0)
                cue = NEGATIVE_CUES[int(rng.integers(0, len(NEGATIVE_CUES)))]
                sentences.append(_mention(rng, concept, variant, cue))
            length = int(rng.integers(_DOC_WORDS[0], _DOC_WORDS[1] + 1))
            used = sum(len(s) for s in sentences)
            while used < length:
                n = int(rng.integers(6, 15))
                sentences.append([filler[int(i)] for i in rng.choice(len(filler), n, p=filler_p)])
                used += n
            order = rng.permutation(len(sentences))
            text = " ".join(" ".join(sentences[int(i)]) for i in order)
            diag_list, proc_list = sorted(diag), sorted(proc)
            target = proc_list + diag_list
            rows["_id"].append(id_base + len(rows["_id"]))
            rows["subject_id"].append(subject_base + patient)
            rows["text"].append(text)
            rows[diag_col].append(diag_list)
            rows[proc_col].append(proc_list)
            rows["target"].append(target)
            rows["num_words"].append(text.count(" ") + 1)
            rows["num_targets"].append(len(target))
        patient += 1
    return pd.DataFrame(rows)


def document_tables(frame: pd.DataFrame, splits: pd.DataFrame, system: str
                    ) -> dict[str, pa.Table]:
    """One system's documents and split in Edin et al.'s files: ``{file name: table}``."""
    diag_col, proc_col = code_columns(system)
    codes = pa.list_(pa.string())
    schema = pa.schema([
        ("_id", pa.int64()), ("subject_id", pa.int64()), ("text", pa.string()),
        (diag_col, codes), (proc_col, codes), ("target", codes),
        ("num_words", pa.int64()), ("num_targets", pa.int64()),
    ])
    table = pa.Table.from_pydict({name: frame[name].tolist() for name in schema.names}, schema)
    split_table = pa.Table.from_pydict(
        {"_id": splits["_id"].tolist(), "split": splits["split"].tolist()},
        pa.schema([("_id", pa.int64()), ("split", pa.string())]),
    )
    return {data_filename(system): table, split_filename(system): split_table}


def write_table(table: pa.Table, handle: BinaryIO) -> None:
    """A table as a (zstd-compressed) feather file."""
    feather.write_feather(table, handle, compression="zstd")


def write_documents(frame: pd.DataFrame, splits: pd.DataFrame, folder: Path, system: str) -> None:
    """Write one system's documents and split into ``folder`` (each file atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    # Atomic: runs that share a corpus folder may rewrite it while another reads it.
    for name, table in document_tables(frame, splits, system).items():
        with atomic_open(folder / name) as handle:
            write_table(table, handle)
