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
* **The best epoch's weights are the best epoch's.** ``best.pt`` carries the same
  fingerprint and its epoch and score; :func:`load_best_checkpoint` refuses a missing
  ``best.pt``, one of another run or of another epoch than ``last.pt`` records, so a
  resumed run never reports one epoch's metrics under another's name.
* **A full disk is one line.** ``torch.save`` turns a failed write into a
  ``RuntimeError`` of its zip writer (``inline_container.cc ... unexpected pos``);
  :func:`atomic_save` raises the underlying ``OSError`` instead, naming the file
  (``ENOSPC``: "No space left on device"), and leaves the previous file in place.
"""

from __future__ import annotations

import errno
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


class _WriteRecorder:
    """A file handle that remembers the ``OSError`` of a failed write (``torch.save``'s
    zip writer replaces it with a ``RuntimeError`` that names no file)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.handle.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.handle.flush()


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` through :func:`jams_pyg.atomic.atomic_open`: a reader sees the
    previous or the new file, never a partial one, a crash leaves the previous file, and
    concurrent writers never share a temporary file.

    Raises:
        OSError: one line naming ``path`` when the file cannot be written (``ENOSPC``:
            "No space left on device"); the previous file stays, the temporary file is
            removed.
    """
    recorder: _WriteRecorder | None = None
    try:
        with atomic_open(path) as handle:
            recorder = _WriteRecorder(handle)
            torch.save(obj, recorder)
    except RuntimeError:
        failed = recorder.error if recorder is not None else None
        if failed is None:
            raise
        raise _write_error(failed, path) from None


def _write_error(err: OSError, path: str | os.PathLike[str]) -> OSError:
    """``err`` of a failed checkpoint write as one line naming ``path``."""
    reason = err.strerror or os.strerror(err.errno or errno.EIO)
    return type(err)(err.errno, f"{path}: cannot write the checkpoint ({reason})")


#: What a damaged ``last.pt`` calls for.
RESTART = "delete it or start afresh with --overwrite"


def load_checkpoint(path: str | os.PathLike[str],
                    map_location: torch.device | str = "cpu",
                    remedy: str = RESTART) -> dict[str, Any]:
    """Load a checkpoint written by :func:`atomic_save` safely
    (``weights_only=True``: tensors and plain containers only, nothing is
    unpickled).

    Args:
        remedy: What the error message advises (default: delete it or start afresh
            with ``--overwrite``).

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        CheckpointError: naming ``path`` when it is truncated, damaged or not a
            checkpoint, with ``remedy``.
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
            f"({type(err).__name__}: {detail}); {remedy}"
        ) from err
    if not isinstance(state, dict):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(state).__name__}, not a checkpoint dict; "
            f"{remedy}"
        )
    return state


def best_checkpoint(model_state: Mapping[str, Any], epoch: int, score: float,
                    fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """The content of ``best.pt``: the weights of the best epoch (0-based ``epoch``), its
    validation ``score`` and the run ``fingerprint`` (as ``last.pt`` carries it)."""
    return {"version": CHECKPOINT_VERSION, "fingerprint": json_like(dict(fingerprint)),
            "model": model_state, "epoch": epoch, "score": score}


#: Why a run cannot go on without the best epoch's weights.
_BEST_LOST = ("the run cannot report its best epoch without them: start afresh with "
              "--overwrite (or choose another --output-dir)")


def load_best_checkpoint(path: str | os.PathLike[str], fingerprint: Mapping[str, Any],
                         epoch: int, score: float,
                         map_location: torch.device | str = "cpu",
                         best_weights: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Load ``best.pt`` and check that it holds this run's best epoch: the run
    ``fingerprint``, the (0-based) ``epoch`` and the validation ``score`` that
    ``last.pt`` records. A ``best.pt`` of an earlier jams_pyg (no fingerprint) is
    accepted when its epoch and score match.

    Args:
        best_weights: The best epoch's weights where the caller has them (``last.pt``'s
            model, when its last epoch was the best): a missing ``best.pt``, or this
            run's of an earlier epoch (a run stopped between writing ``last.pt`` and
            ``best.pt``), is then written again from them, with a warning.

    Raises:
        CheckpointError: naming ``path``, when it is missing or damaged, was written by
            another run (listing what differs) or holds another epoch.
    """
    path = Path(path)
    if not path.is_file():
        if best_weights is not None:
            return _restore_best(path, best_weights, epoch, score, fingerprint, "missing")
        raise CheckpointError(
            f"{path} is missing: it held the weights of the best epoch ({epoch + 1}); "
            + _BEST_LOST)
    state = load_checkpoint(path, map_location, remedy=_BEST_LOST)
    check_best_owner(state, fingerprint, path)
    if state.get("epoch") != epoch or state.get("score") != score or "model" not in state:
        if best_weights is not None:
            return _restore_best(path, best_weights, epoch, score, fingerprint,
                                 f"of epoch {_epoch_number(state.get('epoch'))}")
        raise CheckpointError(
            f"{path} holds epoch {_epoch_number(state.get('epoch'))} (score "
            f"{state.get('score')!r}), but the run's best is epoch {epoch + 1} (score "
            f"{score!r}); " + _BEST_LOST)
    return state


def _restore_best(path: Path, weights: Mapping[str, Any], epoch: int, score: float,
                  fingerprint: Mapping[str, Any], found: str) -> dict[str, Any]:
    log.warning("%s was %s; written again from the weights of the best epoch (%d) that "
                "last.pt holds", path, found, epoch + 1)
    state = best_checkpoint(dict(weights), epoch, score, fingerprint)
    atomic_save(state, path)
    return state


def check_best_owner(state: Mapping[str, Any], fingerprint: Mapping[str, Any],
                     path: str | os.PathLike[str]) -> None:
    """Refuse the ``best.pt`` ``state`` (loaded from ``path``) when its run fingerprint
    is not ``fingerprint`` (one without a fingerprint, of an earlier jams_pyg, passes).

    Raises:
        CheckpointError: naming ``path`` and the first difference.
    """
    stored = state.get("fingerprint")
    if stored is None:
        return
    differences = fingerprint_differences(stored, json_like(dict(fingerprint)))
    if differences:
        raise CheckpointError(
            f"{path} was written by another run ({len(differences)} setting(s) "
            f"differ, e.g. {differences[0]}); " + _BEST_LOST)


def _epoch_number(epoch: Any) -> Any:
    return epoch + 1 if isinstance(epoch, int) else epoch


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


__all__ = ["CHECKPOINT_VERSION", "atomic_save", "best_checkpoint", "check_best_owner",
           "check_resumable",
           "dataset_fingerprint", "fingerprint_differences", "json_like",
           "load_best_checkpoint", "load_checkpoint"]
