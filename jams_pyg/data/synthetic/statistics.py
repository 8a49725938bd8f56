"""Statistics of a dataset directory like the JAMS paper's Table 1 (:func:`corpus_statistics`)
and the training-frequency bucket edges matching a corpus size."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from jams_pyg.data.defaults import SIZES, parse_size
from jams_pyg.data.edin import SPLITS, load_edin_dataset
from jams_pyg.graph.gem_graph import GEMGraph

PathLike = str | os.PathLike[str]

#: Training-frequency bucket edges for the default size: codes seen 1-10,
#: 11-100 and 101+ times (the paper's 1-100 / 101-1,000 / 1,001+ divided by 10).
DEFAULT_BUCKET_EDGES: tuple[int, int] = (10, 100)
#: The paper's bucket edges (real MIMIC-IV).
PAPER_BUCKET_EDGES: tuple[int, int] = (100, 1000)


def size_scale(size: str | float) -> float:
    """The scale factor of a corpus size (``"small"``: 0.2, ``"default"``: 1.0, ...)."""
    size = parse_size(size)
    return SIZES[size] if isinstance(size, str) else float(size)


def bucket_edges_for(size: str | float) -> tuple[int, int]:
    """Training-frequency bucket edges matching a corpus size: the paper's
    (100, 1000) divided by 10 at the default size, and scaled with the number
    of documents otherwise (``small``: (2, 20); ``large``: (50, 500))."""
    scale = size_scale(size)
    lo = max(1, round(DEFAULT_BUCKET_EDGES[0] * scale))
    return lo, max(lo + 1, round(DEFAULT_BUCKET_EDGES[1] * scale))


def _bucket_labels(edges: tuple[int, int]) -> list[str]:
    lo, hi = edges
    return [f"1-{lo}", f"{lo + 1}-{hi}", f"{hi + 1}+"]


def corpus_statistics(
    directory: PathLike, bucket_edges: tuple[int, int] | None = None,
    procedures: bool | None = None,
) -> pd.DataFrame:
    """A table like the JAMS paper's Table 1 for a dataset directory (synthetic
    or real), with GEM-link and training-frequency statistics.

    Rows: documents, patients, unique codes, split percentages (train/val/test
    documents), mean words and codes per document, codes with a GEM link to a
    code of the other system's vocabulary (and without), codes per
    training-frequency bucket (``1..e0``, ``e0+1..e1``, ``e1+1..``; codes
    absent from training counted apart), the share of code occurrences carried
    by the 10 % most frequent codes, and the linked codes among codes of the
    lowest bucket.

    Args:
        directory: A dataset directory (:func:`~jams_pyg.data.edin.load_edin_dataset`).
        bucket_edges: ``(e0, e1)``; default: those recorded by the generator
            in ``synthetic_concepts.json`` (:func:`bucket_edges_for`), else the
            paper's ``(100, 1000)``.
        procedures: Count GEM links of procedure codes too (the graph JAMS trains on,
            ``ExperimentConfig.procedure_links``); default: as the generator recorded
            in ``synthetic_concepts.json`` (off for a corpus that records nothing),
            on for real data.

    Returns:
        A DataFrame indexed by statistic with columns ``"ICD-9"`` and
        ``"ICD-10"``.
    """
    meta_path = Path(directory) / "synthetic_concepts.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    if bucket_edges is None:
        bucket_edges = tuple(meta["bucket_edges"]) if meta else PAPER_BUCKET_EDGES
    if procedures is None:
        procedures = bool(meta.get("procedure_links", False)) if meta else True
    ds = {s: load_edin_dataset(directory, s) for s in ("icd9", "icd10")}
    graph = GEMGraph.from_cms_2018(ds["icd9"].codes, ds["icd10"].codes,
                                   procedures=procedures)
    labels = _bucket_labels(bucket_edges)
    out: dict[str, dict[str, object]] = {}
    for system, d in ds.items():
        frame = pd.concat([d.train, d.val, d.test])
        n = len(frame)
        freq = d.code_frequencies("train")
        every = np.zeros(d.num_codes, dtype=np.int64)
        index = d.code_index
        for targets in frame["target"]:
            for code in targets:
                every[index[code]] += 1
        top = np.sort(every)[::-1][: max(1, math.ceil(0.1 * len(every)))]
        linked = graph.linked(system).numpy()
        lo, hi = bucket_edges
        buckets = [(freq >= 1) & (freq <= lo), (freq > lo) & (freq <= hi), freq > hi]
        col = {
            "documents": n,
            "patients": frame["subject_id"].nunique(),
            "unique codes": d.num_codes,
            "train/val/test (% docs)": "/".join(
                f"{100 * len(d.split(s)) / n:.1f}" for s in SPLITS),
            "mean words per doc": round(float(frame["text"].str.count(" ").mean() + 1), 1),
            "mean codes per doc": round(float(frame["target"].map(len).mean()), 2),
            "codes with GEM link": int(linked.sum()),
            "codes without GEM link": int((~linked).sum()),
        }
        for label, mask in zip(labels, buckets, strict=True):
            col[f"codes, train freq {label}"] = int(mask.sum())
        col["codes, train freq 0 (val/test only)"] = int((freq == 0).sum())
        col[f"linked / unlinked in {labels[0]}"] = (
            f"{int((buckets[0] & linked).sum())}/{int((buckets[0] & ~linked).sum())}")
        col["top 10% codes' share of occurrences (%)"] = round(
            100 * float(top.sum()) / max(1, int(every.sum())), 1)
        out["ICD-9" if system == "icd9" else "ICD-10"] = col
    return pd.DataFrame(out)
