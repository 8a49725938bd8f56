"""Writing the synthetic corpus: concepts, then the documents of both systems, their
patient split and ``synthetic_concepts.json``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from jams_pyg.atomic import atomic_open
from jams_pyg.data.edin import split_by_patient
from jams_pyg.data.synthetic.concepts import build_concepts
from jams_pyg.data.synthetic.documents import generate_documents, write_documents
from jams_pyg.data.synthetic.statistics import bucket_edges_for, size_scale
from jams_pyg.data.synthetic.words import FILLER

PathLike = str | os.PathLike[str]

#: Documents per system at the default size (they scale with the size factor).
_DOCS = {"icd9": 2400, "icd10": 1500}


def generate_synthetic_corpus(
    out_dir: PathLike, seed: int = 0, size: str | float = "default"
) -> Path:
    """Write a synthetic ICD-9 and ICD-10 corpus in Edin et al.'s format.

    Files: ``out_dir/mimiciv_icd9/mimiciv_icd9.feather``,
    ``.../mimiciv_icd9_split.feather``, the same for ``icd10``, and
    ``out_dir/synthetic_concepts.json`` (the latent concepts, their codes,
    words and popularity). :func:`~jams_pyg.data.edin.load_edin_dataset`
    reads ``out_dir`` directly. The same seed and size give the same bytes.

    Args:
        out_dir (str or os.PathLike): Output folder (created).
        seed (int): Random seed.
        size (str or float): ``"small"`` (0.2), ``"default"`` (1.0: 2,400
            ICD-9 and 1,500 ICD-10 documents, ~200 and ~260 codes),
            ``"large"`` (5.0), or a scale factor: documents scale linearly,
            concepts with its square root.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.
    """
    scale = size_scale(size)
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    concepts, background = build_concepts(rng, scale)
    filler = list(FILLER) + background
    fr = rng.permutation(len(FILLER))
    filler_w = np.concatenate([
        1.0 / (fr + 1.0) ** 0.5,  # generic words: Zipf-like
        np.full(len(background), 0.2 / max(1, len(background)) * len(FILLER) ** 0.3),
    ])
    filler_p = filler_w / filler_w.sum()
    bases = {"icd9": (20_000_000, 10_000_000), "icd10": (25_000_000, 15_000_000)}
    for system in ("icd9", "icd10"):
        n_docs = max(20, round(_DOCS[system] * scale))
        frame = generate_documents(
            rng, system, concepts, filler, filler_p, n_docs, *bases[system]
        )
        splits = split_by_patient(
            frame["_id"].tolist(), frame["subject_id"].tolist(), frame["target"].tolist(),
            seed=seed,
        )
        write_documents(frame, splits, out / f"mimiciv_{system}", system)
    meta = {
        "generator": "jams_pyg.data.synthetic",
        "seed": seed,
        "size": size if isinstance(size, str) else float(size),
        "scale": scale,
        "bucket_edges": list(bucket_edges_for(scale)),
        "concepts": [c.to_json() for c in concepts],
    }
    with atomic_open(out / "synthetic_concepts.json", "w") as handle:
        handle.write(json.dumps(meta, indent=1) + "\n")
    return out


def load_concepts(directory: PathLike) -> list[dict]:
    """The concepts written by :func:`generate_synthetic_corpus` (JSON dicts)."""
    path = Path(directory) / "synthetic_concepts.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a synthetic corpus directory")
    return json.loads(path.read_text())["concepts"]
