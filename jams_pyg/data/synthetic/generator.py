"""Writing the synthetic corpus: concepts, then the documents of both systems, their
patient split and ``synthetic_concepts.json``, all or nothing (:func:`write_all_or_nothing`)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import BinaryIO

import numpy as np

from jams_pyg.atomic import AtomicFile
from jams_pyg.data.edin import split_by_patient
from jams_pyg.data.synthetic.concepts import build_concepts
from jams_pyg.data.synthetic.documents import document_tables, generate_documents, write_table
from jams_pyg.data.synthetic.statistics import bucket_edges_for, size_scale
from jams_pyg.data.synthetic.words import FILLER

PathLike = str | os.PathLike[str]

#: Documents per system at the default size (they scale with the size factor).
_DOCS = {"icd9": 2400, "icd10": 1500}


def generate_synthetic_corpus(
    out_dir: PathLike, seed: int = 0, size: str | float = "default",
    procedure_links: bool = True,
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
        procedure_links (bool): Pair each procedure concept's ICD-9 procedure with
            ICD-10-PCS targets of the shipped forward procedure GEM, so that the GEM
            graph links procedure codes
            (:meth:`~jams_pyg.graph.gem_graph.GEMGraph.from_cms_2018` with
            ``procedures=True``), as JAMS links them on real data (default; recorded in
            ``synthetic_concepts.json``). Off: the PCS codes of the same body part whose
            titles share most words, whether or not the GEM maps them (only some are
            GEM targets: 10 of the 28 ICD-9 procedure codes at the default size, seed 0);
            the corpus of the results committed before issue #19's regeneration.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Raises:
        OSError: one line naming the file that could not be written (``ENOSPC``: no
            space left on the device); then nothing of the corpus was written (a
            previous corpus in ``out_dir`` stays as it was).
    """
    scale = size_scale(size)
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    concepts, background = build_concepts(rng, scale, procedure_links)
    filler = list(FILLER) + background
    fr = rng.permutation(len(FILLER))
    filler_w = np.concatenate([
        1.0 / (fr + 1.0) ** 0.5,  # generic words: Zipf-like
        np.full(len(background), 0.2 / max(1, len(background)) * len(FILLER) ** 0.3),
    ])
    filler_p = filler_w / filler_w.sum()
    bases = {"icd9": (20_000_000, 10_000_000), "icd10": (25_000_000, 15_000_000)}
    files: dict[Path, Callable[[BinaryIO], None]] = {}
    for system in ("icd9", "icd10"):
        n_docs = max(20, round(_DOCS[system] * scale))
        frame = generate_documents(
            rng, system, concepts, filler, filler_p, n_docs, *bases[system]
        )
        splits = split_by_patient(
            frame["_id"].tolist(), frame["subject_id"].tolist(), frame["target"].tolist(),
            seed=seed,
        )
        for name, table in document_tables(frame, splits, system).items():
            files[out / f"mimiciv_{system}" / name] = partial(write_table, table)
    meta = {
        "generator": "jams_pyg.data.synthetic",
        "seed": seed,
        "size": size if isinstance(size, str) else float(size),
        "scale": scale,
        "bucket_edges": list(bucket_edges_for(scale)),
        "procedure_links": procedure_links,
        "concepts": [c.to_json() for c in concepts],
    }
    text = (json.dumps(meta, indent=1) + "\n").encode()
    files[out / "synthetic_concepts.json"] = lambda handle: handle.write(text)
    write_all_or_nothing(files)
    return out


#: Errors of writing a file's content (a full disk, a quota, a size limit).
_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}


def write_all_or_nothing(files: Mapping[Path, Callable[[BinaryIO], None]]) -> None:
    """Write ``{path: write(handle)}``: every file, or none.

    Each file goes to a temporary file beside it (:class:`~jams_pyg.atomic.AtomicFile`);
    only when all are written and flushed to disk are they renamed into place, so a
    full disk or any other error leaves the previous files as they were, removes every
    temporary file and the folders this call created. (A corpus half written, its ICD-9
    files new and its ICD-10 files missing, would load as another corpus.)

    Raises:
        OSError: naming the file whose write failed (``ENOSPC``: "No space left on
            device").
    """
    folders = {folder for path in files for folder in (path.parent, *path.parent.parents)
               if not folder.exists()}
    staged: list[AtomicFile] = []
    current: Path | None = None
    try:
        for folder in sorted(folders, key=lambda f: len(f.parts)):
            folder.mkdir(exist_ok=True)
        for current, write in files.items():
            staged.append(AtomicFile(current))
            write(staged[-1].handle)
            staged[-1].handle.flush()
            os.fsync(staged[-1].handle.fileno())
    except BaseException as err:
        for file in staged:
            file.discard()
        for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: never another writer's files
        if (isinstance(err, OSError) and err.errno in _WRITE_ERRORS and current is not None
                and str(current) not in str(err)):
            raise type(err)(err.errno, f"{current}: cannot write the file ({err.strerror}); "
                            "nothing of the corpus was written") from None
        raise
    for file in staged:
        file.commit()


def load_concepts(directory: PathLike) -> list[dict]:
    """The concepts written by :func:`generate_synthetic_corpus` (JSON dicts)."""
    path = Path(directory) / "synthetic_concepts.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a synthetic corpus directory")
    return json.loads(path.read_text())["concepts"]
