"""Training loop for joint (or single-system) coding models.

The trainer is model-agnostic: it needs a model ``model(input_ids,
attention_mask, system) -> {system: logits}``, a loss ``loss_fn(logits,
labels)`` (:func:`jams_pyg.models.jams_loss`), a dataset with a collate
function producing :class:`~jams_pyg.data.JointBatch`, and a function that
gives the global batches of an epoch. It does AdamW with linear warm-up and
decay, gradient accumulation, gradient clipping, mixed precision on CUDA,
early stopping on the mean validation score of the systems, atomic
checkpoints with exact resume, and DistributedDataParallel under ``torchrun``.

Reliability guarantees (tested in ``tests/test_reliability_training.py``):

* **Exclusive run folders.** :func:`run_dir_lock` gives one run at a time a
  folder: an OS lock (``fcntl.flock``) on ``<folder>/.run.lock``, held for the
  run's life and released when it ends, raises or is killed (the kernel drops
  the lock of a dead process, so a stale lock never blocks). A second run gets
  :class:`RunDirLocked` naming the holder's pid, host, start time and command.
  :meth:`Trainer.fit` takes the lock of its output folder;
  :func:`jams_pyg.train.experiment.run_experiment` holds it for the whole run.
* **Atomic checkpoints.** :func:`atomic_save` writes to a temporary file unique
  to the writer in the target's folder, fsyncs it and renames it over the
  target with ``os.replace``: a reader sees the old or the new checkpoint,
  never a partial one, and concurrent writers never collide.
  :func:`load_checkpoint` loads with ``weights_only=True`` (nothing is
  unpickled) and names the file in a :class:`CheckpointError` when it is
  damaged.
* **Checked resume.** Every checkpoint carries a run fingerprint (the
  caller's ``run_fingerprint``, the optimisation settings, the parameter
  shapes, the dataset sizes); :meth:`Trainer.resume` refuses another run's
  checkpoint with :class:`ResumeMismatch` listing each difference, and a
  resumed run ends exactly where an uninterrupted one would.
* **Divergence stop.** A non-finite or exploding step loss
  (``TrainConfig.divergence_factor``) or non-finite weights raise
  :class:`TrainingDiverged` naming the epoch, the step and the settings to
  change, before the diverged model is validated or saved as the best.
* **Checked settings and data.** :class:`TrainConfig` refuses bad values when
  made; :class:`Trainer` refuses an empty training split and missing or empty
  validation data of a trained system before training.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

try:  # POSIX; elsewhere run folders are not locked (see run_dir_lock)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from jams_pyg.atomic import atomic_open
from jams_pyg.eval.metrics import METRIC_KEYS, compute_metrics
from jams_pyg.icd.codes import SYSTEM_IDS
from jams_pyg.train.distributed import DistInfo, mean_over_ranks, shard_batch, unwrap_model

log = logging.getLogger(__name__)

BatchFn = Callable[[int], Sequence[Sequence[int]]]
#: 2 adds the run fingerprint and the divergence reference; 1 still loads
#: (without the resume checks).
CHECKPOINT_VERSION = 2
#: TrainConfig fields that may change on resume (they do not change the result).
RESUMABLE_SETTINGS = ("progress", "tensorboard", "eval_batch_size", "divergence_factor")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value)


#: Per field of :class:`TrainConfig`: (is the value valid, what a valid value is).
_TRAIN_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "epochs": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "batch_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "lr": (lambda v: _finite(v) and v > 0, "a finite number > 0"),
    "weight_decay": (lambda v: _finite(v) and v >= 0, "a finite number >= 0"),
    "warmup_ratio": (lambda v: _finite(v) and 0 <= v < 1, "a number in [0, 1)"),
    "grad_accumulation": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "max_grad_norm": (lambda v: v is None or (_finite(v) and v > 0),
                      "None (no clipping) or a finite number > 0"),
    "amp": (lambda v: isinstance(v, bool), "True or False"),
    "patience": (lambda v: _is_int(v) and v >= 1,
                 "an integer >= 1 (0 would stop before the first epoch)"),
    "monitor": (lambda v: v in METRIC_KEYS, f"one of {', '.join(METRIC_KEYS)}"),
    "eval_batch_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "seed": (lambda v: _is_int(v) and 0 <= v < 2**32, "an integer in [0, 2**32)"),
    "progress": (lambda v: isinstance(v, bool), "True or False"),
    "tensorboard": (lambda v: isinstance(v, bool), "True or False"),
    "divergence_factor": (lambda v: v is None or (_finite(v) and v > 1),
                          "None (no check) or a finite number > 1"),
}


def check_train_setting(name: str, value: Any) -> None:
    """Raise ``ValueError`` naming ``name`` and ``value`` when ``value`` is not a
    valid :class:`TrainConfig` setting (the rules of ``TrainConfig``)."""
    valid, expected = _TRAIN_RULES[name]
    if not valid(value):
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def train_setting_type(name: str) -> Callable[[str], Any]:
    """An ``argparse`` ``type=`` for the :class:`TrainConfig` field ``name``:
    parses the text (int or float as the field needs) and applies the field's
    rule, so a bad value is refused when the command line is parsed, e.g.
    ``parser.add_argument("--patience", type=train_setting_type("patience"))``."""
    integer = name in ("epochs", "batch_size", "grad_accumulation", "patience",
                       "eval_batch_size", "seed")

    def parse(text: str) -> Any:
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            kind = "an integer" if integer else "a number"
            raise argparse.ArgumentTypeError(
                f"{name} must be {kind}, got {text!r}") from None
        try:
            check_train_setting(name, value)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return value

    parse.__name__ = name
    return parse


@dataclass
class TrainConfig:
    """Optimisation settings (defaults: Edin et al.'s LAAT on MIMIC-IV).

    Every field is checked when the config is made (``ValueError`` naming the
    field and the value; :func:`train_setting_type` applies the same rules to
    command-line arguments).

    Args:
        epochs: Maximum number of epochs (>= 1).
        batch_size: Documents per optimiser step (the global batch, over all
            processes and accumulation steps; >= 1, divisible by
            ``grad_accumulation``).
        lr: Peak learning rate of AdamW (finite, > 0).
        weight_decay: AdamW weight decay (>= 0).
        warmup_ratio: Fraction of all optimiser steps spent warming up linearly
            (then linear decay to 0); in [0, 1).
        grad_accumulation: Micro-batches per optimiser step (>= 1).
        max_grad_norm: Clip the gradient norm to this (``None``: no clipping).
        amp: Mixed precision (bfloat16 where supported, else float16 with a
            gradient scaler) on CUDA; ignored on CPU.
        patience: Stop after this many epochs without a better validation score
            (>= 1).
        monitor: Validation metric for early stopping and the best checkpoint,
            averaged over the systems (Edin et al. use MAP); one of
            :data:`jams_pyg.eval.metrics.METRIC_KEYS`.
        eval_batch_size: Documents per evaluation batch.
        seed: Seed of the optimiser-side randomness (dropout, batch order).
        progress: Show a progress bar.
        tensorboard: Log to TensorBoard (when installed) under the output
            directory.
        divergence_factor: Stop training with :class:`TrainingDiverged` when
            an optimiser step's loss exceeds this factor times the loss of the
            run's first step (the untrained model's loss); a non-finite loss
            always stops it. ``None`` turns the factor check off. The default,
            100, is far above the noise of a batch (the joint loss of an
            untrained model is ~0.7 and only falls in normal training) and far
            below a diverged run's (``lr 1e3`` gives ~3e5).
    """

    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-3
    warmup_ratio: float = 0.05
    grad_accumulation: int = 1
    max_grad_norm: float | None = 1.0
    amp: bool = True
    patience: int = 3
    monitor: str = "map"
    eval_batch_size: int = 16
    seed: int = 0
    progress: bool = True
    tensorboard: bool = True
    divergence_factor: float | None = 100.0

    def __post_init__(self) -> None:
        for name in _TRAIN_RULES:
            check_train_setting(name, getattr(self, name))
        if self.batch_size % self.grad_accumulation:
            raise ValueError(
                f"batch_size {self.batch_size} is not divisible by grad_accumulation "
                f"{self.grad_accumulation}"
            )


@dataclass
class Predictions:
    """Per-system model outputs on a dataset split."""

    probs: dict[str, np.ndarray] = field(default_factory=dict)
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    ids: dict[str, list[Any]] = field(default_factory=dict)


class TrainingError(RuntimeError):
    """A training run cannot go on (base of the errors of this module)."""


class RunDirLocked(TrainingError):
    """The output folder is in use by another run (see :func:`run_dir_lock`)."""


class CheckpointError(TrainingError):
    """A checkpoint is damaged, not a checkpoint, or of another version."""


class ResumeMismatch(TrainingError):
    """``--resume`` found a checkpoint of another run: another model, other
    data or other optimisation settings (the message lists what differs)."""


class TrainingDiverged(TrainingError):
    """The loss became non-finite or exploded (see
    ``TrainConfig.divergence_factor``), or the weights became non-finite.

    Raised out of :meth:`Trainer.fit` before anything is computed from the
    diverged model: no validation score, no best checkpoint, and (in
    :func:`jams_pyg.train.experiment.run_experiment`) no metrics and no bundle. The
    message names the epoch and step and the settings to change.
    """


#: The lock file of a run folder (kept between runs: deleting it would let two
#: runs lock two different files of the same name).
LOCK_NAME = ".run.lock"

_held_lock = threading.Lock()
_held: dict[str, list[int]] = {}  # real path of a locked folder -> [fd, depth]


def _lock_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process (no holder recorded yet)"
    return (f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, started "
            f"{info.get('started', '?')}, command: {info.get('command', '?')}")


def _acquire_run_dir(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(folder)
    with _held_lock:
        if key in _held:  # this process owns it already (nested use)
            _held[key][1] += 1
            return
        lock_path = folder / LOCK_NAME
        while True:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _lock_holder(fd)
                os.close(fd)
                raise RunDirLocked(
                    f"{folder} is in use by another run ({holder}); wait for it to end or "
                    "choose another output folder (--output-dir). The lock is "
                    f"{lock_path}; it is released when that process exits."
                ) from None
            except BaseException:
                os.close(fd)
                raise
            # The file may have been deleted or replaced between open and flock:
            # then this lock guards nothing and we try again.
            try:
                current = os.stat(lock_path)
                opened = os.fstat(fd)
                same = (current.st_ino, current.st_dev) == (opened.st_ino, opened.st_dev)
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        record = json.dumps({
            "pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "command": " ".join(sys.argv)[:500],
        }).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        _held[key] = [fd, 1]


def _release_run_dir(folder: Path) -> None:
    key = os.path.realpath(folder)
    with _held_lock:
        entry = _held.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _held[key]
        fd = entry[0]
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


@contextlib.contextmanager
def run_dir_lock(folder: str | os.PathLike[str], enabled: bool = True) -> Iterator[Path]:
    """Hold ``folder`` (created if missing) for one run: no other process can
    lock it until the block ends.

    The lock is ``fcntl.flock`` on ``<folder>/.run.lock``; the file records the
    holder (pid, host, start time, command) for the error message of a second
    run. The kernel releases the lock when the block ends (also on an
    exception) or the process dies, so a crashed run never leaves a stale lock.
    Nested use in one process is allowed (the outermost block releases).
    Without ``fcntl`` (Windows) nothing is locked.

    Args:
        folder: The run's output folder.
        enabled: ``False`` makes this a no-op (e.g. non-main ranks under DDP,
            whose rank 0 holds the lock).

    Raises:
        RunDirLocked: naming the holder, when another process holds the folder.
    """
    folder = Path(folder)
    if not enabled or fcntl is None:
        yield folder
        return
    _acquire_run_dir(folder)
    try:
        yield folder
    finally:
        _release_run_dir(folder)


def prepare_run_dir(folder: str | os.PathLike[str], overwrite: bool = False) -> None:
    """Check before a run that no other run holds ``folder`` and, with
    ``overwrite``, empty it (under the lock, which stays in place).

    Raises:
        RunDirLocked: when another run holds the folder (nothing is deleted).
    """
    folder = Path(folder)
    if not folder.exists():
        return
    with run_dir_lock(folder):
        if overwrite:
            for entry in folder.iterdir():
                if entry.name == LOCK_NAME:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()


def linear_warmup_decay(optimizer: torch.optim.Optimizer, warmup_steps: int,
                        total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0 over ``warmup_steps``, then linear decay to 0 at
    ``total_steps``: the schedule of Edin et al. (``transformers``'
    ``get_linear_schedule_with_warmup``, the same factor step for step) as a plain
    :class:`torch.optim.lr_scheduler.LambdaLR`."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return float(step) / float(max(1, warmup_steps))
        return max(0.0, float(total_steps - step) / float(max(1, total_steps - warmup_steps)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


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


def _plain(value: Any) -> Any:
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


class Trainer:
    """Train and evaluate a coding model.

    Args:
        model: The coding model (moved to ``device`` by the trainer).
        loss_fn: ``loss_fn(logits, labels) -> Tensor``.
        train_dataset: Training documents.
        val_dataset: Validation documents.
        collate_fn: Turns a list of dataset items into a batch with ``.to()``,
            ``input_ids``, ``attention_mask``, ``system`` and ``labels``.
        train_batches: ``train_batches(epoch)`` gives the global batches of an
            epoch as lists of dataset indices (deterministic for an epoch).
        config: Optimisation settings.
        output_dir: Where checkpoints and logs go.
        device: Device to train on.
        dist_info: The process's place under ``torchrun``.
        systems: The systems the model predicts.
        run_fingerprint: What identifies the run beyond the trainer's own view
            (e.g. the model config and :func:`dataset_fingerprint` of the
            splits), JSON-like. It is stored in every checkpoint with the
            trainer's own part (the optimisation settings except
            ``RESUMABLE_SETTINGS``, the model's parameter shapes, the dataset
            sizes and steps per epoch); :meth:`resume` refuses a checkpoint
            whose fingerprint differs, listing each differing key.

    Raises:
        ValueError: when the training split is empty or the validation split
            lacks documents (or codes) of a trained system; raised here, before
            any training.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[dict[str, Tensor], dict[str, Tensor]], Tensor],
        train_dataset: Dataset,
        val_dataset: Dataset,
        collate_fn: Callable[[list[Any]], Any],
        train_batches: BatchFn,
        config: TrainConfig,
        output_dir: str | os.PathLike[str],
        device: torch.device | str = "cpu",
        dist_info: DistInfo | None = None,
        systems: Sequence[str] = ("icd9", "icd10"),
        run_fingerprint: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.run_fingerprint = _plain(dict(run_fingerprint or {}))
        self.device = torch.device(device)
        self.dist = dist_info or DistInfo()
        self.output_dir = Path(output_dir)
        self.systems = tuple(systems)
        self.loss_fn = loss_fn
        self.train_dataset = train_dataset
        self.val_dataset = val_dataset
        self.collate_fn = collate_fn
        self.train_batches = train_batches
        self.model = model.to(self.device)
        if self.dist.enabled:
            # A batch may hold one system only: the other head gets no gradient.
            self.model = nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        self.optimizer = torch.optim.AdamW(
            unwrap_model(self.model).parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self._check_data()
        steps_per_epoch = len(list(train_batches(0)))
        if steps_per_epoch == 0:
            raise ValueError("train_batches(0) gives no batch: there is nothing to train on")
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = max(1, steps_per_epoch * config.epochs)
        self.scheduler = linear_warmup_decay(
            self.optimizer, math.ceil(config.warmup_ratio * self.total_steps), self.total_steps
        )
        self.amp_dtype: torch.dtype | None = None
        if config.amp and self.device.type == "cuda":
            self.amp_dtype = (
                torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            )
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.amp_dtype == torch.float16
        )
        self.epoch = 0
        self.global_step = 0
        self.best_score = -math.inf
        self.best_epoch = -1
        self.bad_epochs = 0
        self.history: list[dict[str, Any]] = []
        #: The loss of the run's first optimiser step (the untrained model's),
        #: the reference of the divergence check; kept in checkpoints.
        self.reference_loss: float | None = None
        self._writer = None

    def _check_data(self) -> None:
        """Refuse, before any training, a split the run cannot use: an empty
        training set, or missing/empty validation data of a trained system
        (early stopping and threshold tuning need every system's)."""
        if len(self.train_dataset) == 0:
            raise ValueError("the training split is empty: there is nothing to train on")
        if len(self.val_dataset) == 0:
            raise ValueError(
                "the validation split is empty: early stopping and threshold tuning need "
                f"validation documents of {', '.join(self.systems)}"
            )
        system_ids = getattr(self.val_dataset, "system_ids", None)
        labels = getattr(self.val_dataset, "label_indices", None)
        if system_ids is None:
            return
        for system in self.systems:
            sid = SYSTEM_IDS.get(system)
            docs = [i for i, s in enumerate(system_ids) if s == sid]
            if not docs:
                raise ValueError(
                    f"the validation split has no {system} documents: early stopping and "
                    f"threshold tuning need validation documents of every trained system "
                    f"({', '.join(self.systems)})"
                )
            if labels is not None and not any(labels[i] for i in docs):
                raise ValueError(
                    f"the {len(docs)} {system} validation documents carry no code: the "
                    "validation metrics need at least one"
                )

    # ------------------------------------------------------------ checkpoints
    @property
    def last_path(self) -> Path:
        return self.output_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.output_dir / "best.pt"

    @property
    def fingerprint(self) -> dict[str, Any]:
        """What a resumed run must share with the stored one (see
        ``run_fingerprint``)."""
        settings = {k: v for k, v in asdict(self.config).items()
                    if k not in RESUMABLE_SETTINGS}
        shapes = {name: list(t.shape)
                  for name, t in unwrap_model(self.model).state_dict().items()}
        return _plain({
            "run": self.run_fingerprint,
            "train": settings,
            "data": {"train_documents": len(self.train_dataset),
                     "val_documents": len(self.val_dataset),
                     "steps_per_epoch": self.steps_per_epoch},
            "model": {"parameters": shapes},
        })

    def state_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "version": CHECKPOINT_VERSION,
            "model": unwrap_model(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "reference_loss": self.reference_loss,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "config": asdict(self.config),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") not in (1, CHECKPOINT_VERSION):
            raise ValueError(f"unsupported checkpoint version {state.get('version')!r}")
        unwrap_model(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch = state["epoch"]
        self.global_step = state["global_step"]
        self.best_score = state["best_score"]
        self.best_epoch = state["best_epoch"]
        self.bad_epochs = state["bad_epochs"]
        self.history = list(state["history"])
        self.reference_loss = state.get("reference_loss")
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])

    def resume(self) -> bool:
        """Continue from ``last.pt`` in the output directory; ``False`` if there
        is none. The run then ends exactly where an uninterrupted run would.

        The stored run must match this one (see ``run_fingerprint``): same
        model, same data, same optimisation settings (batch size, lr, epochs,
        ...; only ``RESUMABLE_SETTINGS`` may change). Nothing is loaded when it
        does not.

        Raises:
            CheckpointError: naming the file, when ``last.pt`` is truncated,
                damaged or of an unknown version (suggests ``--overwrite``).
            ResumeMismatch: listing each differing setting with its stored
                and its current value.
        """
        if not self.last_path.is_file():
            return False
        state = load_checkpoint(self.last_path, map_location=self.device)
        self._check_resumable(state)
        try:
            self.load_state_dict(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CheckpointError(
                f"checkpoint {self.last_path} cannot be resumed ({type(err).__name__}: "
                f"{str(err)[:200]}); delete it or start afresh with --overwrite"
            ) from err
        log.info("resumed from %s at epoch %d", self.last_path, self.epoch)
        return True

    def _check_resumable(self, state: Mapping[str, Any]) -> None:
        version = state.get("version")
        if version not in (1, CHECKPOINT_VERSION):
            raise CheckpointError(
                f"checkpoint {self.last_path} has version {version!r}; this jams_pyg reads "
                f"versions 1 to {CHECKPOINT_VERSION}: start afresh with --overwrite"
            )
        stored = state.get("fingerprint")
        if stored is None:
            log.warning("%s is a version-1 checkpoint without a run fingerprint: cannot "
                        "check that it belongs to this model, data and settings",
                        self.last_path)
            return
        differences = fingerprint_differences(stored, self.fingerprint)
        if differences:
            shown = differences[:12]
            more = len(differences) - len(shown)
            count = (f"{len(differences)} settings differ" if len(differences) > 1
                     else "1 setting differs")
            raise ResumeMismatch(
                f"cannot resume from {self.last_path}: it was written by another run "
                f"({count}):\n  "
                + "\n  ".join(shown) + (f"\n  ... and {more} more" if more else "")
                + "\nResume with the stored settings, start afresh with --overwrite, or "
                "choose another output folder (--output-dir)."
            )

    # --------------------------------------------------------------- training
    def _loader(self, batches: Iterable[Sequence[int]], dataset: Dataset) -> DataLoader:
        return DataLoader(dataset, batch_sampler=list(batches), collate_fn=self.collate_fn)

    def _epoch_steps(self, epoch: int) -> list[list[list[int]]]:
        """The optimiser steps of an epoch: for each, this process's micro-batches."""
        steps = []
        dropped = 0
        for batch in self.train_batches(epoch):
            batch = list(batch)
            if self.dist.enabled:
                keep = len(batch) - len(batch) % self.dist.world_size
                dropped += len(batch) - keep
                if keep == 0:
                    continue
                batch = shard_batch(batch[:keep], self.dist)
            parts = np.array_split(np.arange(len(batch)), self.config.grad_accumulation)
            steps.append([[batch[i] for i in part] for part in parts if len(part)])
        if dropped and self.dist.is_main:
            log.warning(
                "epoch %d: %d documents left out of batches that do not split over %d "
                "processes", epoch + 1, dropped, self.dist.world_size,
            )
        return steps

    def _autocast(self):
        if self.amp_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def train_epoch(self) -> float:
        """One pass over the training batches; returns the mean loss."""
        self.model.train()
        steps = self._epoch_steps(self.epoch)
        micro_batches = iter(
            self._loader([part for step in steps for part in step], self.train_dataset)
        )
        total, docs, start = 0.0, 0, time.perf_counter()
        bar = tqdm(
            steps, desc=f"epoch {self.epoch + 1}/{self.config.epochs}",
            # a bar only on a terminal: in a log file every frame would be a line
            disable=not (self.config.progress and self.dist.is_main and sys.stderr.isatty()),
            leave=False,
        )
        for index, step in enumerate(bar):
            size = sum(len(part) for part in step)
            self.optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for part in step:
                batch = next(micro_batches).to(self.device)
                with self._autocast():
                    logits = self.model(batch.input_ids, batch.attention_mask, batch.system)
                    # The loss is a mean over documents (equation 3): weighting each
                    # micro-batch by its share makes the step the whole batch's mean.
                    loss = self.loss_fn(logits, batch.labels) * (len(part) / size)
                self.scaler.scale(loss).backward()
                step_loss += float(loss.detach())
            # All ranks see the same (global mean) loss, so all stop together.
            step_loss = mean_over_ranks(step_loss, self.dist, self.device)
            self._check_loss(step_loss, index, len(steps))
            if self.config.max_grad_norm is not None:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(unwrap_model(self.model).parameters(),
                                         self.config.max_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.global_step += 1
            total += step_loss
            docs += size
            rate = docs * self.dist.world_size / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(loss=f"{step_loss:.4f}", docs_per_s=f"{rate:.1f}")
            self._log_scalar("train/loss", step_loss, self.global_step)
        return total / max(len(steps), 1)

    def _advice(self) -> str:
        lower = f"lower the learning rate (lr {self.config.lr:g}, --lr)"
        if self.config.max_grad_norm is None:
            return f"{lower} or turn gradient clipping on (max_grad_norm, e.g. 1.0)"
        return f"{lower} or clip gradients harder (max_grad_norm {self.config.max_grad_norm:g})"

    def _check_loss(self, loss: float, index: int, num_steps: int) -> None:
        """Stop on a non-finite or exploding step loss (before the optimiser
        applies that step)."""
        where = (f"epoch {self.epoch + 1}, step {index + 1} of {num_steps} "
                 f"(optimiser step {self.global_step + 1})")
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"training diverged at {where}: the loss is {loss}; {self._advice()}. "
                "No metrics or model bundle are written from a diverged run."
            )
        if self.reference_loss is None:
            self.reference_loss = loss
            return
        factor = self.config.divergence_factor
        if factor is not None and loss > factor * max(self.reference_loss, 1e-12):
            raise TrainingDiverged(
                f"training diverged at {where}: the loss {loss:.4g} is more than "
                f"{factor:g} times the first step's loss {self.reference_loss:.4g} "
                f"(divergence_factor); {self._advice()}. No metrics or model bundle are "
                "written from a diverged run."
            )

    def _check_weights(self) -> None:
        bad = [name for name, param in unwrap_model(self.model).named_parameters()
               if not bool(torch.isfinite(param).all())]
        if bad:
            raise TrainingDiverged(
                f"training diverged in epoch {self.epoch + 1} (by optimiser step "
                f"{self.global_step}): {len(bad)} weight tensors are no longer finite "
                f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); "
                f"{self._advice()}. No metrics or model bundle are written from a "
                "diverged run."
            )

    @torch.no_grad()
    def predict(self, dataset: Dataset, batch_size: int | None = None) -> Predictions:
        """Probabilities and targets of every document of ``dataset``, per system."""
        model = unwrap_model(self.model)
        was_training = model.training
        model.eval()
        size = batch_size or self.config.eval_batch_size
        batches = [list(range(i, min(i + size, len(dataset))))
                   for i in range(0, len(dataset), size)]
        probs: dict[str, list[np.ndarray]] = {s: [] for s in self.systems}
        targets: dict[str, list[np.ndarray]] = {s: [] for s in self.systems}
        ids: dict[str, list[Any]] = {s: [] for s in self.systems}
        for batch in self._loader(batches, dataset):
            batch = batch.to(self.device)
            with self._autocast():
                logits = model(batch.input_ids, batch.attention_mask, batch.system)
            system_ids = batch.system.tolist()
            for index, system in enumerate(self.systems):
                if system not in logits or logits[system].shape[0] == 0:
                    continue
                probs[system].append(torch.sigmoid(logits[system].float()).cpu().numpy())
                targets[system].append(batch.labels[system].cpu().numpy())
                sid = SYSTEM_IDS.get(system, index)
                ids[system].extend(d for d, s in zip(batch.ids, system_ids, strict=True)
                                   if s == sid)
        model.train(was_training)
        out = Predictions()
        for system in self.systems:
            if probs[system]:
                out.probs[system] = np.concatenate(probs[system])
                out.targets[system] = np.concatenate(targets[system])
                out.ids[system] = ids[system]
        return out

    def validation_score(self, predictions: Predictions) -> dict[str, float]:
        """The monitored metric per system (threshold-free metrics need no
        tuning; threshold metrics use 0.5)."""
        scores = {}
        for system, probs in predictions.probs.items():
            if not np.isfinite(probs).all():
                raise TrainingDiverged(
                    f"after epoch {self.epoch + 1} the model gives non-finite {system} "
                    f"probabilities on the validation split; {self._advice()}."
                )
            metrics = compute_metrics(probs, predictions.targets[system], threshold=0.5)
            scores[system] = float(metrics[self.config.monitor])
        return scores

    def fit(self, stop_after: int | None = None) -> dict[str, Any]:
        """Train until ``epochs`` or early stopping; the model ends with the
        weights of the best validation epoch. Returns the training summary.

        Args:
            stop_after: Stop after this many epochs of this call (a time-boxed
                job); :meth:`resume` in a new process continues exactly.

        Training watches its loss: a non-finite step loss, one above
        ``config.divergence_factor`` times the first step's loss, or non-finite
        weights after an epoch stop it with :class:`TrainingDiverged` (naming
        the epoch, the step and the settings to change) before the diverged
        model is validated or saved as the best checkpoint.

        Raises:
            RunDirLocked: when another process holds the output folder (see
                :func:`run_dir_lock`; held by the main process for the call).
            TrainingDiverged: when training diverges (see above).
            TrainingError: when no epoch gave a validation score (nothing was
                selected, so the model would be the untrained one).
        """
        with run_dir_lock(self.output_dir, enabled=self.dist.is_main):
            return self._fit(stop_after)

    def _fit(self, stop_after: int | None) -> dict[str, Any]:
        stop_epoch = self.epoch + stop_after if stop_after is not None else math.inf
        while (self.epoch < min(self.config.epochs, stop_epoch)
               and self.bad_epochs < self.config.patience):
            start = time.perf_counter()
            train_loss = self.train_epoch()
            self._check_weights()
            scores = self.validation_score(self.predict(self.val_dataset))
            score = float(np.mean(list(scores.values()))) if scores else -math.inf
            improved = score > self.best_score
            if improved:
                self.best_score, self.best_epoch, self.bad_epochs = score, self.epoch, 0
                if self.dist.is_main:
                    atomic_save({"model": unwrap_model(self.model).state_dict(),
                                 "epoch": self.epoch, "score": score}, self.best_path)
            else:
                self.bad_epochs += 1
            record = {
                "epoch": self.epoch + 1, "train_loss": train_loss,
                **{f"val_{self.config.monitor}_{s}": v for s, v in scores.items()},
                f"val_{self.config.monitor}": score,
                "seconds": time.perf_counter() - start,
            }
            self.history.append(record)
            for key, value in record.items():
                if key.startswith("val_"):
                    self._log_scalar(key.replace("val_", "val/"), value, self.epoch + 1)
            if self.dist.is_main:
                log.info("epoch %d: loss %.4f, val %s %.4f%s", self.epoch + 1, train_loss,
                         self.config.monitor, score, " (best)" if improved else "")
            self.epoch += 1
            if self.dist.is_main:
                atomic_save(self.state_dict(), self.last_path)
        if self.best_epoch < 0:
            raise TrainingError(
                f"after {self.epoch} epochs no epoch gave a validation {self.config.monitor} "
                "score: the model was never selected, so nothing would be evaluated"
                + (" (stop_after=0 runs no epoch)" if stop_after == 0 else "")
            )
        self.load_best()
        if self._writer is not None:
            self._writer.close()
        return {"best_epoch": self.best_epoch + 1, "best_score": self.best_score,
                "epochs_run": self.epoch, "history": self.history}

    def load_best(self) -> None:
        """Load the best validation weights (from ``best.pt``)."""
        if self.best_path.is_file():
            state = load_checkpoint(self.best_path, map_location=self.device)
            unwrap_model(self.model).load_state_dict(state["model"])

    # ---------------------------------------------------------------- logging
    def _log_scalar(self, tag: str, value: float, step: int) -> None:
        if not (self.config.tensorboard and self.dist.is_main):
            return
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                self.config.tensorboard = False
                return
            self._writer = SummaryWriter(str(self.output_dir / "tensorboard"))
        self._writer.add_scalar(tag, value, step)
