"""Checkpoints: atomic writes, safe loads and the run fingerprint that checks a resume.

* **Atomic checkpoints.** :func:`atomic_save` writes to a temporary file unique to the
  writer in the target's folder, fsyncs it and renames it over the target with
  ``os.replace``: a reader sees the old or the new checkpoint, never a partial one, and
  concurrent writers never collide. :func:`load_checkpoint` loads with
  ``weights_only=True`` (nothing is unpickled) and names the file in a
  :class:`~jams_pyg.train.errors.CheckpointError` when it is damaged.
* **Checked resume.** Every checkpoint carries a run fingerprint (the caller's
  ``run_fingerprint``, the optimisation settings, the parameter shapes, the dataset
  sizes); :func:`check_resumable` refuses another run's checkpoint with
  :class:`~jams_pyg.train.errors.ResumeMismatch` listing each difference.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from jams_pyg.atomic import atomic_open
from jams_pyg.icd.codes import SYSTEM_IDS
from jams_pyg.train.errors import CheckpointError, ResumeMismatch

log = logging.getLogger(__name__)

#: 2 adds the run fingerprint and the divergence reference; 1 still loads
#: (without the resume checks).
CHECKPOINT_VERSION = 2
#: The checkpoint versions this jams_pyg reads.
READABLE_VERSIONS = (1, CHECKPOINT_VERSION)


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` through :func:`jams_pyg.atomic.atomic_open`: a reader sees the
    previous or the new file, never a partial one, a crash leaves the previous file, and
    concurrent writers never share a temporary file."""
    with atomic_open(path) as handle:
        torch.save(obj, handle)


def load_checkpoint(path: str | os.PathLike[str],
                    map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`atomic_save` safely
    (``weights_only=True``: tensors and plain containers only, nothing is
    unpickled).

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        CheckpointError: naming ``path`` when it is truncated, damaged or not a
            checkpoint, suggesting ``--overwrite`` to start afresh.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # zip/pickle/EOF/unsafe-type errors: all "damaged"
        detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise CheckpointError(
            f"checkpoint {path} is damaged or not a jams_pyg checkpoint "
            f"({type(err).__name__}: {detail}); delete it or start afresh with "
            "--overwrite"
        ) from err
    if not isinstance(state, dict):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(state).__name__}, not a checkpoint dict; "
            "delete it or start afresh with --overwrite"
        )
    return state


def dataset_fingerprint(dataset: Dataset) -> dict[str, Any]:
    """Sizes and a SHA-256 of a dataset's document ids, systems, labels and
    label vocabularies (not the texts), for :class:`Trainer`'s
    ``run_fingerprint``. Works on :class:`~jams_pyg.data.JointCodingDataset`;
    of another dataset only the size is taken."""
    out: dict[str, Any] = {"documents": len(dataset)}
    ids = getattr(dataset, "ids", None)
    systems = getattr(dataset, "system_ids", None)
    labels = getattr(dataset, "label_indices", None)
    if ids is None or systems is None or labels is None:
        return out
    digest = hashlib.sha256()
    digest.update(json.dumps(getattr(dataset, "codes", None), sort_keys=True,
                             default=str).encode())
    for doc_id, system, label in zip(ids, systems, labels, strict=True):
        digest.update(json.dumps([int(system), str(doc_id), sorted(label)]).encode())
    names = {v: k for k, v in SYSTEM_IDS.items()}
    counts: dict[str, int] = {}
    for system in systems:
        name = names.get(int(system), str(system))
        counts[name] = counts.get(name, 0) + 1
    out["per_system"] = counts
    out["sha256"] = digest.hexdigest()
    return out


def json_like(value: Any) -> Any:
    """JSON-like copy (tuples become lists, other objects strings): what a
    checkpoint stores and what is compared on resume."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def fingerprint_differences(stored: Mapping[str, Any], current: Mapping[str, Any]
                            ) -> list[str]:
    """``"key: stored X, now Y"`` for each (dotted) key whose value differs."""
    old, new = _flatten(stored), _flatten(current)
    absent = "<absent>"
    return [f"{key}: stored {_short(old.get(key, absent))}, now {_short(new.get(key, absent))}"
            for key in sorted(old.keys() | new.keys())
            if old.get(key, absent) != new.get(key, absent)]


def check_resumable(state: Mapping[str, Any], fingerprint: Mapping[str, Any],
                    path: str | os.PathLike[str]) -> None:
    """Refuse to resume from the checkpoint ``state`` (loaded from ``path``) unless it
    is of a readable version and was written by the run whose fingerprint is
    ``fingerprint`` (a version-1 checkpoint has none: it resumes with a warning).

    Raises:
        CheckpointError: naming ``path``, when its version is unknown.
        ResumeMismatch: listing each differing setting with its stored and its
            current value.
    """
    version = state.get("version")
    if version not in READABLE_VERSIONS:
        raise CheckpointError(
            f"checkpoint {path} has version {version!r}; this jams_pyg reads "
            f"versions 1 to {CHECKPOINT_VERSION}: start afresh with --overwrite"
        )
    stored = state.get("fingerprint")
    if stored is None:
        log.warning("%s is a version-1 checkpoint without a run fingerprint: cannot "
                    "check that it belongs to this model, data and settings", path)
        return
    differences = fingerprint_differences(stored, fingerprint)
    if differences:
        shown = differences[:12]
        more = len(differences) - len(shown)
        count = (f"{len(differences)} settings differ" if len(differences) > 1
                 else "1 setting differs")
        raise ResumeMismatch(
            f"cannot resume from {path}: it was written by another run ({count}):\n  "
            + "\n  ".join(shown) + (f"\n  ... and {more} more" if more else "")
            + "\nResume with the stored settings, start afresh with --overwrite, or "
            "choose another output folder (--output-dir)."
        )


__all__ = ["CHECKPOINT_VERSION", "atomic_save", "check_resumable", "dataset_fingerprint",
           "fingerprint_differences", "json_like", "load_checkpoint"]
