"""Training loop for joint (or single-system) coding models.

The trainer is model-agnostic: it needs a model ``model(input_ids,
attention_mask, system) -> {system: logits}``, a loss ``loss_fn(logits,
labels)`` (:func:`jams_pyg.models.jams_loss`), a dataset with a collate
function producing :class:`~jams_pyg.data.JointBatch`, and a function that
gives the global batches of an epoch. It does AdamW with linear warm-up and
decay (:mod:`~jams_pyg.train.schedule`), gradient accumulation, gradient clipping,
mixed precision on CUDA, early stopping on the mean validation score of the systems,
atomic checkpoints with exact resume, and DistributedDataParallel under ``torchrun``.

Reliability guarantees (tested in ``tests/test_reliability_training.py``), each in
its module:

* **Exclusive run folders** (:mod:`~jams_pyg.train.rundir`): :meth:`Trainer.fit`
  holds its output folder; a second run gets
  :class:`~jams_pyg.train.errors.RunDirLocked`.
* **Atomic checkpoints and checked resume** (:mod:`~jams_pyg.train.checkpoint`): a
  reader never sees a partial checkpoint; :meth:`Trainer.resume` refuses another run's
  checkpoint with :class:`~jams_pyg.train.errors.ResumeMismatch` listing each
  difference, and a resumed run ends exactly where an uninterrupted one would.
* **Divergence stop** (:mod:`~jams_pyg.train.divergence`): a non-finite or exploding
  loss, or non-finite weights, raise :class:`~jams_pyg.train.errors.TrainingDiverged`
  before the diverged model is validated or saved as the best.
* **Checked settings and data**: :class:`~jams_pyg.train.config.TrainConfig` refuses
  bad values when made; :class:`Trainer` refuses an empty training split and missing
  or empty validation data of a trained system before training.

On a terminal a progress bar shows each epoch's steps; every epoch ends with one log
line that says how long the run may still take (:mod:`~jams_pyg.train.progress`).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from jams_pyg.eval.metrics import compute_metrics
from jams_pyg.eval.names import monitor_value
from jams_pyg.eval.prediction import Predictions, predict
from jams_pyg.icd.codes import SYSTEM_IDS
from jams_pyg.models.runtime import autocast
from jams_pyg.train.amp import amp_dtype, grad_scaler
from jams_pyg.train.checkpoint import (
    CHECKPOINT_VERSION,
    READABLE_VERSIONS,
    atomic_save,
    best_checkpoint,
    check_best_owner,
    check_resumable,
    json_like,
    load_best_checkpoint,
    load_checkpoint,
)
from jams_pyg.train.config import RESUMABLE_SETTINGS, TrainConfig
from jams_pyg.train.distributed import (
    DistInfo,
    barrier,
    gradient_sync,
    mean_over_ranks,
    shard_batch,
    unwrap_model,
    wrap_ddp,
)
from jams_pyg.train.divergence import check_probabilities, check_step_loss, check_weights
from jams_pyg.train.errors import CheckpointError, TrainingError
from jams_pyg.train.evaluate import check_splits
from jams_pyg.train.progress import epoch_line
from jams_pyg.train.rundir import run_dir_lock
from jams_pyg.train.schedule import linear_warmup_decay

log = logging.getLogger(__name__)

BatchFn = Callable[[int], Sequence[Sequence[int]]]


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
            (e.g. the model config and
            :func:`~jams_pyg.train.checkpoint.dataset_fingerprint` of the
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
        self.run_fingerprint = json_like(dict(run_fingerprint or {}))
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
            self.model = wrap_ddp(self.model, self.device, self.systems)
        self.optimizer = torch.optim.AdamW(
            unwrap_model(self.model).parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        check_splits(train_dataset, val_dataset, self.systems)
        trained = set(getattr(train_dataset, "system_ids", SYSTEM_IDS.values()))
        for system in self.systems:  # a head that saw no data must not be reported
            if SYSTEM_IDS[system] not in trained:
                raise ValueError(f"the training split has no {system} documents: the "
                                 f"{system} head would not be trained")
        steps_per_epoch = len(list(train_batches(0)))
        if steps_per_epoch == 0:
            raise ValueError("train_batches(0) gives no batch: there is nothing to train on")
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = max(1, steps_per_epoch * config.epochs)
        self.scheduler = linear_warmup_decay(
            self.optimizer, config.warmup(self.total_steps), self.total_steps
        )
        self.amp_dtype = amp_dtype(config, self.device)
        self.scaler = grad_scaler(self.amp_dtype, self.device)
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
        model = unwrap_model(self.model)
        # the GEM links count as when they were saved with the weights: an earlier
        # jams_pyg's checkpoint resumes
        tensors = {**model.state_dict(), **getattr(model, "graph_buffers", dict)()}
        shapes = {name: list(t.shape) for name, t in tensors.items()}
        return json_like({
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
        if state.get("version") not in READABLE_VERSIONS:
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

        ``best.pt`` is checked too: a resumed run reports the best epoch's weights, so a
        missing ``best.pt``, one of another run or of another epoch is refused.

        Raises:
            CheckpointError: naming the file, when ``last.pt`` is truncated,
                damaged or of an unknown version (suggests ``--overwrite``), or when
                ``best.pt`` is missing, damaged or not this run's best epoch (see
                :func:`~jams_pyg.train.checkpoint.load_best_checkpoint`).
            ResumeMismatch: listing each differing setting with its stored
                and its current value.
        """
        if not self.last_path.is_file():
            if self.best_path.is_file():  # a run stopped in its first epoch: must be ours
                check_best_owner(load_checkpoint(self.best_path), self.fingerprint,
                                 self.best_path)
            return False
        state = load_checkpoint(self.last_path, map_location=self.device)
        check_resumable(state, self.fingerprint, self.last_path)
        try:
            self.load_state_dict(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CheckpointError(
                f"checkpoint {self.last_path} cannot be resumed ({type(err).__name__}: "
                f"{str(err)[:200]}); delete it or start afresh with --overwrite"
            ) from err
        if self.best_epoch >= 0:  # before any work: the best epoch's weights are there
            # When the last epoch was the best, last.pt holds its weights (a run stopped
            # between the two saves is then resumable).
            last_is_best = self.best_epoch == self.epoch - 1
            load_best_checkpoint(self.best_path, self.fingerprint, self.best_epoch,
                                 self.best_score,
                                 best_weights=state["model"] if last_is_best else None)
        log.info("resumed from %s at epoch %d", self.last_path, self.epoch)
        return True

    # --------------------------------------------------------------- training
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

    def train_epoch(self) -> float:
        """One pass over the training batches; returns the mean loss."""
        self.model.train()
        steps = self._epoch_steps(self.epoch)
        micro_batches = iter(DataLoader(
            self.train_dataset, batch_sampler=[part for step in steps for part in step],
            collate_fn=self.collate_fn))
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
            for number, part in enumerate(step, 1):
                batch = next(micro_batches).to(self.device)
                # DDP all-reduces in the step's last micro-batch only
                with gradient_sync(self.model, sync=number == len(step)):
                    with autocast(self.device, self.amp_dtype):
                        logits = self.model(batch.input_ids, batch.attention_mask,
                                            batch.system)
                        # The loss is a mean over documents (equation 3): weighting each
                        # micro-batch by its share makes the step the whole batch's mean.
                        loss = self.loss_fn(logits, batch.labels) * (len(part) / size)
                    self.scaler.scale(loss).backward()
                step_loss += float(loss.detach())
            # All ranks see the same (global mean) loss, so all stop together.
            step_loss = mean_over_ranks(step_loss, self.dist, self.device)
            self.reference_loss = check_step_loss(
                step_loss, self.reference_loss, self.config,
                f"epoch {self.epoch + 1}, step {index + 1} of {len(steps)} "
                f"(optimiser step {self.global_step + 1})")
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

    def predict(self, dataset: Dataset, batch_size: int | None = None) -> Predictions:
        """Probabilities and targets of every document of ``dataset``, per system
        (see :func:`~jams_pyg.eval.prediction.predict`)."""
        return predict(unwrap_model(self.model), dataset, self.collate_fn, self.systems,
                       batch_size or self.config.eval_batch_size, self.device,
                       self.amp_dtype)

    def validation_score(self, predictions: Predictions) -> dict[str, float]:
        """The monitored value per system (``config.monitor``: one metric, or the official
        mean of seven, :func:`~jams_pyg.eval.names.monitor_value`); threshold metrics use
        0.5, as the official trainer's validation metrics."""
        scores = {}
        for system, probs in predictions.probs.items():
            check_probabilities(probs, system, self.config, self.epoch + 1)
            metrics = compute_metrics(probs, predictions.targets[system], threshold=0.5)
            scores[system] = monitor_value(metrics, self.config.monitor)
        return scores

    def fit(self, stop_after: int | None = None) -> dict[str, Any]:
        """Train until ``epochs`` or early stopping; the model ends with the
        weights of the best validation epoch. Returns the training summary.

        Args:
            stop_after: Stop after this many epochs of this call (a time-boxed
                job); :meth:`resume` in a new process continues exactly.

        Training watches its loss: a non-finite step loss, one above
        ``config.divergence_factor`` times the first step's loss, or non-finite
        weights after an epoch stop it with
        :class:`~jams_pyg.train.errors.TrainingDiverged` (naming
        the epoch, the step and the settings to change) before the diverged
        model is validated or saved as the best checkpoint.

        Raises:
            RunDirLocked: when another process holds the output folder (see
                :func:`~jams_pyg.train.rundir.run_dir_lock`; held by the main process for the call).
            TrainingDiverged: when training diverges (see above).
            TrainingError: when no epoch gave a validation score (nothing was
                selected, so the model would be the untrained one).
        """
        with run_dir_lock(self.output_dir, enabled=self.dist.is_main):
            return self._fit(stop_after)

    def _fit(self, stop_after: int | None) -> dict[str, Any]:
        stop_epoch = self.epoch + stop_after if stop_after is not None else math.inf
        last_epoch = min(self.config.epochs, stop_epoch)
        while self.epoch < last_epoch and self.bad_epochs < self.config.patience:
            start = time.perf_counter()
            train_loss = self.train_epoch()
            check_weights(unwrap_model(self.model), self.config,
                          f"in epoch {self.epoch + 1} (by optimiser step {self.global_step})")
            scores = self.validation_score(self.predict(self.val_dataset))
            score = float(np.mean(list(scores.values()))) if scores else -math.inf
            improved = score > self.best_score
            if improved:
                self.best_score, self.best_epoch, self.bad_epochs = score, self.epoch, 0
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
                self._log_epoch(train_loss, score, improved, last_epoch)
            self.epoch += 1
            if self.dist.is_main:
                # last.pt first: a run stopped before best.pt is written finds this epoch's
                # weights in last.pt on resume (see load_best_checkpoint)
                atomic_save(self.state_dict(), self.last_path)
                if improved:
                    atomic_save(best_checkpoint(unwrap_model(self.model).state_dict(),
                                                self.best_epoch, score, self.fingerprint),
                                self.best_path)
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

    def _log_epoch(self, loss: float, score: float, improved: bool,
                   last_epoch: float) -> None:
        """The epoch's one line, with the time the run may still take (an upper bound:
        early stopping may end it sooner)."""
        stopping = self.bad_epochs >= self.config.patience
        seconds = float(np.mean([record["seconds"] for record in self.history]))
        left = 0 if stopping else last_epoch - (self.epoch + 1)
        log.info("%s", epoch_line(
            self.epoch + 1, self.config.epochs, loss, self.config.monitor, score, improved,
            seconds, int(left),
            early_stop=self.config.patience if stopping else None))

    def load_best(self) -> None:
        """Load the best validation weights (from ``best.pt``, checked to be this run's
        best epoch; under DDP once rank 0 has written it).

        Raises:
            CheckpointError: when ``best.pt`` is missing, damaged, of another run or
                of another epoch than :attr:`best_epoch`.
        """
        barrier(self.dist)
        state = load_best_checkpoint(self.best_path, self.fingerprint, self.best_epoch,
                                     self.best_score, map_location=self.device)
        try:
            unwrap_model(self.model).load_state_dict(state["model"])
        except ValueError as err:  # e.g. saved GEM links that are not the graph's
            raise CheckpointError(f"{self.best_path}: {err}") from err

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


__all__ = ["BatchFn", "Trainer"]
