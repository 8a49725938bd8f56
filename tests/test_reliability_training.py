"""Issue #13: exclusive run folders, atomic checkpoints, divergence, settings
validation and resume checks."""

import argparse
import contextlib
import errno
import math
import multiprocessing as mp
import os
import re
import signal
import socket

import pandas as pd
import pytest
import torch

from jams_pyg.train.checkpoint import atomic_save, load_checkpoint
from jams_pyg.train.config import TrainConfig, train_setting_type
from jams_pyg.train.errors import (
    CheckpointError,
    ResumeMismatch,
    RunDirLocked,
    TrainingDiverged,
    TrainingError,
)
from jams_pyg.train.rundir import LOCK_NAME, prepare_run_dir, run_dir_lock

# fork: the children need no fresh interpreter (and no torch import: seconds each).
CTX = mp.get_context("fork")


def _hold_lock(folder: str, ready, release) -> None:
    with run_dir_lock(folder):
        ready.set()
        release.wait(60)


def _hold_lock_forever(folder: str, ready) -> None:
    with run_dir_lock(folder):
        ready.set()
        signal.pause()


# ---------------------------------------------------------------- run folders
def test_second_process_cannot_take_a_held_run_folder(tmp_path):
    ready, release = CTX.Event(), CTX.Event()
    holder = CTX.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(RunDirLocked) as err, run_dir_lock(tmp_path):
            pass
        message = str(err.value)
        assert str(tmp_path) in message and f"pid {holder.pid}" in message
        assert socket.gethostname() in message and "--output-dir" in message
        # --overwrite must not delete a folder another run holds
        (tmp_path / "last.pt").write_bytes(b"x")
        with pytest.raises(RunDirLocked):
            prepare_run_dir(tmp_path, overwrite=True)
        assert (tmp_path / "last.pt").exists()
    finally:
        release.set()
        holder.join(60)
    # released when the holder's block ends
    with run_dir_lock(tmp_path):
        pass


def test_lock_of_a_killed_process_does_not_block(tmp_path):
    ready = CTX.Event()
    holder = CTX.Process(target=_hold_lock_forever, args=(str(tmp_path), ready))
    holder.start()
    assert ready.wait(60)
    with pytest.raises(RunDirLocked), run_dir_lock(tmp_path):
        pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(60)
    assert (tmp_path / LOCK_NAME).exists()  # the file stays; the lock is gone
    with run_dir_lock(tmp_path):
        pass


def test_lock_is_released_on_exception_and_nests_in_one_process(tmp_path):
    with pytest.raises(KeyError), run_dir_lock(tmp_path):
        with run_dir_lock(tmp_path):  # nested: same process, same run
            pass
        raise KeyError("boom")
    ready, release = CTX.Event(), CTX.Event()
    other = CTX.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    other.start()
    assert ready.wait(60)  # another process can take it now
    release.set()
    other.join(60)
    assert other.exitcode == 0


def test_prepare_run_dir_overwrite_keeps_the_lock_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "best.pt").write_bytes(b"x")
    (tmp_path / "last.pt").write_bytes(b"x")
    with run_dir_lock(tmp_path):
        pass
    prepare_run_dir(tmp_path, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == [LOCK_NAME]
    prepare_run_dir(tmp_path / "missing", overwrite=True)  # nothing to do


# ---------------------------------------------------------------- checkpoints
def _writer(path: str, worker: int, rounds: int, errors) -> None:
    torch.set_num_threads(1)
    for i in range(rounds):
        try:
            atomic_save({"worker": worker, "round": i,
                         "weights": torch.full((2000,), float(worker))}, path)
        except Exception as err:
            errors.put(f"save: {type(err).__name__}: {err}")


def _reader(path: str, stop, errors, loads) -> None:
    torch.set_num_threads(1)
    count = 0
    while not stop.is_set() or count == 0:
        try:
            state = load_checkpoint(path)
            assert torch.equal(state["weights"], torch.full((2000,), float(state["worker"])))
            count += 1
        except FileNotFoundError:
            continue
        except Exception as err:
            errors.put(f"load: {type(err).__name__}: {err}")
    loads.put(count)


def test_concurrent_checkpoint_saves_and_loads_never_fail(tmp_path):
    path = str(tmp_path / "last.pt")
    errors, loads, stop = CTX.Queue(), CTX.Queue(), CTX.Event()
    readers = [CTX.Process(target=_reader, args=(path, stop, errors, loads)) for _ in range(2)]
    writers = [CTX.Process(target=_writer, args=(path, w, 30, errors)) for w in range(4)]
    for proc in readers + writers:
        proc.start()
    for proc in writers:
        proc.join(120)
    stop.set()
    counts = [loads.get(timeout=120) for _ in readers]
    for proc in readers:
        proc.join(60)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []
    assert all(c > 0 for c in counts)
    # no temporary file is left behind, and the final file is whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    assert load_checkpoint(path)["round"] == 29
    assert (os.stat(path).st_mode & 0o777) == (0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_failed_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    atomic_save({"a": torch.ones(2)}, path)

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        atomic_save({"a": Unsaveable()}, path)
    assert torch.equal(load_checkpoint(path)["a"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_checkpoint_names_its_path(tmp_path, damage):
    path = tmp_path / "last.pt"
    atomic_save({"weights": torch.randn(1000)}, path)
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a zip" * 10,
                      "empty": b""}[damage])
    with pytest.raises(CheckpointError, match=f"{path}.*--overwrite"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_unsafe_checkpoint_is_refused_not_unpickled(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"payload": socket.socket}, path)  # a class: needs unpickling
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(path)


# ------------------------------------------------------------------- settings
@pytest.mark.parametrize("name, value", [
    ("patience", 0), ("patience", -1), ("epochs", 0), ("epochs", 2.5), ("batch_size", 0),
    ("batch_size", True), ("lr", 0.0), ("lr", -1e-3), ("lr", math.nan), ("lr", math.inf),
    ("grad_accumulation", 0), ("weight_decay", -0.1), ("warmup_ratio", 1.0),
    ("max_grad_norm", 0.0), ("monitor", "accuracy"), ("eval_batch_size", 0), ("seed", -1),
    ("divergence_factor", 1.0), ("amp", "yes"),
])
def test_train_config_rejects_bad_settings(name, value):
    with pytest.raises(ValueError, match=f"{name} must be .*got {value!r}"):
        TrainConfig(**{name: value})


def test_train_config_accepts_good_settings():
    config = TrainConfig(epochs=1, patience=1, lr=1e20, max_grad_norm=None,
                         divergence_factor=None, monitor="f1_micro", batch_size=6,
                         grad_accumulation=3)
    assert config.lr == 1e20
    with pytest.raises(ValueError, match="batch_size 6 is not divisible by grad_accumulation 4"):
        TrainConfig(batch_size=6, grad_accumulation=4)


def test_settings_are_checked_when_parsed():
    parser = argparse.ArgumentParser()
    for name in ("patience", "epochs", "batch_size", "lr", "grad_accumulation"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=train_setting_type(name))
    args = parser.parse_args(["--patience", "2", "--lr", "1e-3", "--batch-size", "4"])
    assert (args.patience, args.lr, args.batch_size) == (2, 1e-3, 4)
    for bad in (["--patience", "0"], ["--epochs", "-3"], ["--lr", "nan"], ["--lr", "0"],
                ["--batch-size", "four"], ["--grad-accumulation", "1.5"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="patience must be an integer >= 1"):
        train_setting_type("patience")("0")


# ----------------------------------------------------------------- divergence
def _trainer(tmp_path, **kw):
    from test_training import config, make_trainer

    datasets = kw.pop("datasets", None)
    fingerprint = kw.pop("run_fingerprint", None)
    extra = {} if fingerprint is None else {"run_fingerprint": fingerprint}
    return make_trainer(tmp_path, config(**kw), datasets=datasets, **extra)


def test_exploding_loss_stops_the_run_naming_epoch_step_and_settings(tmp_path, one_thread):
    trainer = _trainer(tmp_path, lr=1e3, epochs=3)
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step \d+ of 8 .*more than 100 "
                       r"times the first step's loss.*lr 1000, --lr.*max_grad_norm 1"):
        trainer.fit()
    # nothing was selected or saved from the diverged model
    assert not (tmp_path / "best.pt").exists() and not (tmp_path / "last.pt").exists()
    assert trainer.history == []


def test_non_finite_loss_stops_the_run(tmp_path, one_thread):
    from jams_pyg.models import jams_loss

    trainer = _trainer(tmp_path, epochs=3, divergence_factor=None)
    calls = []

    def loss_fn(logits, labels):
        calls.append(1)
        loss = jams_loss(logits, labels)
        return loss * math.nan if len(calls) == 10 else loss  # epoch 2, step 2

    trainer.loss_fn = loss_fn
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 2 of 8 \(optimiser step 10\): "
                       r"the loss is nan"):
        trainer.fit()
    # epoch 1 finished and was checkpointed; the diverged epoch 2 left no trace
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    assert len(trainer.history) == 1


def test_huge_lr_gives_a_clear_error_not_a_metrics_crash(tmp_path, one_thread):
    trainer = _trainer(tmp_path, lr=1e20, epochs=2, divergence_factor=None,
                       max_grad_norm=None)
    with pytest.raises(TrainingDiverged, match="epoch 1.*lr 1e\\+20.*turn gradient clipping on"):
        trainer.fit()


def test_non_finite_weights_after_an_epoch_stop_the_run(tmp_path, one_thread):
    trainer = _trainer(tmp_path, epochs=2)
    train_epoch = trainer.train_epoch

    def poisoned() -> float:
        loss = train_epoch()
        with torch.no_grad():
            next(trainer.model.parameters()).fill_(math.inf)
        return loss

    trainer.train_epoch = poisoned
    with pytest.raises(TrainingDiverged, match="epoch 1 .*weight tensors are no longer finite"):
        trainer.fit()
    assert not (tmp_path / "best.pt").exists()


def test_a_never_selected_model_is_an_error(tmp_path, one_thread):
    trainer = _trainer(tmp_path, epochs=2)
    trainer.validation_score = lambda predictions: {}
    with pytest.raises(TrainingError, match="no epoch gave a validation map score"):
        trainer.fit()


def test_resume_keeps_the_divergence_reference(tmp_path, one_thread):
    trainer = _trainer(tmp_path, epochs=2)
    trainer.fit(stop_after=1)
    reference = trainer.reference_loss
    assert reference is not None and math.isfinite(reference)
    resumed = _trainer(tmp_path, epochs=2)
    assert resumed.resume() and resumed.reference_loss == reference


# --------------------------------------------------------------- data checks
def _without(split_of: str, keep_codes: bool = False):
    from test_training import tiny_datasets

    from jams_pyg.data import CodingDataset

    datasets = tiny_datasets()
    ds = datasets[split_of]
    val = ds.val.copy()
    if keep_codes:
        val["target"] = [[] for _ in range(len(val))]
    else:
        val = val.iloc[:0]
    datasets[split_of] = CodingDataset(ds.system, ds.train, val, ds.test, ds.codes)
    return datasets


def test_missing_validation_data_is_an_error_before_training(tmp_path, one_thread):
    with pytest.raises(ValueError, match="validation split has no icd10 documents"):
        _trainer(tmp_path, datasets=_without("icd10"))
    with pytest.raises(ValueError, match="4 icd9 validation documents carry no code"):
        _trainer(tmp_path, datasets=_without("icd9", keep_codes=True))
    datasets = _without("icd9")
    datasets["icd10"] = _without("icd10")["icd10"]
    with pytest.raises(ValueError, match="validation split is empty"):
        _trainer(tmp_path, datasets=datasets)
    assert not (tmp_path / "last.pt").exists()


def test_a_system_without_training_documents_is_an_error_before_training(tmp_path,
                                                                          one_thread):
    """Probe 3 (the Trainer's own check): a head that saw no document is not trained."""
    from test_training import tiny_datasets

    from jams_pyg.data import CodingDataset

    datasets = tiny_datasets()
    ds = datasets["icd9"]
    datasets["icd9"] = CodingDataset(ds.system, ds.train.iloc[:0], ds.val,
                                     pd.concat([ds.train, ds.test]), ds.codes)
    with pytest.raises(ValueError, match="the training split has no icd9 documents: the "
                       "icd9 head would not be trained"):
        _trainer(tmp_path, datasets=datasets)
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------- resume
def _stopped_run(tmp_path, **kw):
    trainer = _trainer(tmp_path, epochs=3, **kw)
    trainer.fit(stop_after=1)
    return trainer


def test_resume_with_other_optimiser_settings_says_what_differs(tmp_path, one_thread):
    _stopped_run(tmp_path)
    other = _trainer(tmp_path, epochs=3, lr=2e-2, batch_size=8)
    with pytest.raises(ResumeMismatch) as err:
        other.resume()
    message = str(err.value)
    assert str(tmp_path / "last.pt") in message and "--overwrite" in message
    assert "train.lr: stored 0.01, now 0.02" in message
    assert "train.batch_size: stored 4, now 8" in message
    assert "data.steps_per_epoch: stored 8, now 4" in message
    assert other.epoch == 0  # nothing was loaded
    # settings that do not change the result may change
    same = _trainer(tmp_path, epochs=3, eval_batch_size=3, divergence_factor=50.0)
    assert same.resume() and same.epoch == 1


def test_resume_with_other_data_or_model_says_what_differs(tmp_path, one_thread):
    from test_training import make_trainer, tiny_datasets

    from jams_pyg.data import JointCodingDataset, WordTokenizer
    from jams_pyg.train.checkpoint import dataset_fingerprint

    def fingerprint(seed):
        datasets = tiny_datasets(seed=seed)
        tok = WordTokenizer.fit([t for ds in datasets.values() for t in ds.train.text],
                                min_df=1)
        return {"train_data": dataset_fingerprint(JointCodingDataset(datasets, "train", tok)),
                "model": {"embedding_dim": 8}}

    first = fingerprint(0)
    assert first["train_data"]["documents"] == 32
    assert first["train_data"]["per_system"] == {"icd9": 16, "icd10": 16}
    assert fingerprint(0) == first and fingerprint(1) != first
    _stopped_run(tmp_path, run_fingerprint=first)
    other = _trainer(tmp_path, epochs=3, run_fingerprint=fingerprint(1))
    with pytest.raises(ResumeMismatch, match=r"run\.train_data\.sha256: stored '[0-9a-f]+"):
        other.resume()
    # a model of another shape is named as such, not as a deep state_dict error
    from test_training import config

    bigger = make_trainer(tmp_path, config(epochs=3), run_fingerprint=first)
    layer = next(m for m in bigger.model.modules() if isinstance(m, torch.nn.Embedding))
    layer.weight = torch.nn.Parameter(torch.zeros(layer.num_embeddings, 9))
    with pytest.raises(ResumeMismatch, match=r"model\.parameters\..*stored \[\d+, 8\], "
                       r"now \[\d+, 9\]"):
        bigger.resume()


def test_resume_from_a_damaged_checkpoint_names_it(tmp_path, one_thread):
    _stopped_run(tmp_path)
    path = tmp_path / "last.pt"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=f"checkpoint {path} is damaged.*--overwrite"):
        _trainer(tmp_path, epochs=3).resume()


def test_version_1_checkpoints_still_resume(tmp_path, one_thread):
    _stopped_run(tmp_path)
    state = load_checkpoint(tmp_path / "last.pt")
    del state["fingerprint"], state["reference_loss"]
    state["version"] = 1
    atomic_save(state, tmp_path / "last.pt")
    trainer = _trainer(tmp_path, epochs=3)
    assert trainer.resume() and trainer.epoch == 1
    state["version"] = 99
    atomic_save(state, tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        _trainer(tmp_path, epochs=3).resume()


# --------------------------------------------------- the command line (wiring)
CLI = ["train", "--model", "caml", "--size", "0.05", "--batch-size", "8", "--no-progress",
       "--jams-only"]


def _train(capsys, *args: str) -> tuple[int, str]:
    """``jams-pyg train`` with ``args``: its exit status and its error output."""
    from jams_pyg.cli import main

    status = main([*CLI, *args])
    return status, capsys.readouterr().err


@pytest.mark.parametrize("bad", [["--patience", "0"], ["--epochs", "0"], ["--lr", "nan"],
                                 ["--lr", "-1"], ["--batch-size", "0"],
                                 ["--batch-size", "6", "--grad-accumulation", "4"]])
def test_cli_refuses_bad_settings_before_any_work(tmp_path, bad, capsys):
    with pytest.raises(SystemExit) as err:
        _train(capsys, *bad, "--output-dir", str(tmp_path / "run"))
    assert err.value.code == 2
    message = capsys.readouterr().err
    assert "must be" in message or "is not divisible by grad_accumulation" in message
    assert not (tmp_path / "run").exists()  # no data generated, nothing written


def test_cli_second_run_into_a_held_folder_fails_at_once(tmp_path, capsys):
    ready, release = CTX.Event(), CTX.Event()
    holder = CTX.Process(target=_hold_lock, args=(str(tmp_path / "jams"), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        for extra in ([], ["--overwrite"], ["--resume"]):
            status, message = _train(capsys, "--epochs", "1", "--output-dir", str(tmp_path),
                                     *extra)
            assert status == 1 and f"pid {holder.pid}" in message
        assert not (tmp_path / "data").exists()  # failed before generating data
    finally:
        release.set()
        holder.join(60)


@pytest.mark.slow
def test_cli_diverged_run_writes_no_metrics_and_no_bundle(tmp_path, capsys):
    status, message = _train(capsys, "--epochs", "2", "--lr", "1e3", "--output-dir",
                             str(tmp_path))
    assert status == 1 and re.search("diverged at epoch 1, step .*lr 1000", message)
    run = tmp_path / "jams"
    assert not (run / "metrics.json").exists() and not (run / "model").exists()
    assert not (run / "best.pt").exists()
    # the lock went with the failed run: the folder can be reused at once
    with run_dir_lock(run):
        pass


@pytest.mark.slow
def test_cli_resume_with_other_settings_says_what_differs(tmp_path, capsys):
    assert _train(capsys, "--epochs", "1", "--output-dir", str(tmp_path))[0] == 0
    status, message = _train(capsys, "--epochs", "1", "--lr", "0.01", "--resume",
                             "--output-dir", str(tmp_path))
    assert status == 1
    assert re.search(r"(?s)train\.lr: stored 0\.02, now 0\.01.*--overwrite", message)
    last = tmp_path / "jams" / "last.pt"
    last.write_bytes(last.read_bytes()[:5000])
    status, message = _train(capsys, "--epochs", "1", "--resume", "--output-dir",
                             str(tmp_path))
    assert status == 1 and f"{last} is damaged" in message and "--overwrite" in message


# ------------------------------------------- issue #23: best.pt, full disk, stale files
def _best_not_last(tmp_path, **kw):
    """A run stopped after 2 epochs whose best epoch (1) is not its last (2)."""
    trainer = _trainer(tmp_path, epochs=3, **kw)
    scores = iter([0.5, 0.4])
    trainer.validation_score = lambda predictions: {"icd9": next(scores), "icd10": 0.5}
    trainer.fit(stop_after=2)
    assert trainer.best_epoch == 0 and trainer.epoch == 2
    return trainer


def test_resume_without_best_pt_is_refused(tmp_path, one_thread):
    """Probe 2: a deleted best.pt made the resumed run report epoch 3's weights and
    metrics as those of best epoch 2."""
    _best_not_last(tmp_path)
    best = tmp_path / "best.pt"
    best.write_bytes(best.read_bytes()[:1000])  # damaged: named, with the remedy
    with pytest.raises(CheckpointError, match=f"checkpoint {best} is damaged.*--overwrite"):
        _trainer(tmp_path, epochs=3).resume()
    best.unlink()
    with pytest.raises(CheckpointError, match=f"{best} is missing: it held the weights of "
                       r"the best epoch \(1\).*--overwrite"):
        _trainer(tmp_path, epochs=3).resume()
    # nor does a run that lost it while training report another epoch's weights
    trainer = _trainer(tmp_path / "b", epochs=2)
    trainer.fit()
    (tmp_path / "b" / "best.pt").unlink()
    with pytest.raises(CheckpointError, match="best.pt is missing"):
        trainer.load_best()


def test_best_pt_of_the_last_epoch_is_restored_from_last_pt(tmp_path, one_thread, caplog):
    """A run stopped between writing last.pt and best.pt (or whose best.pt was deleted)
    resumes when its last epoch was the best: last.pt holds those weights."""
    trainer = _stopped_run(tmp_path)  # 1 epoch: the best
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    best = tmp_path / "best.pt"
    best.unlink()
    resumed = _trainer(tmp_path, epochs=3)
    with caplog.at_level("WARNING"):
        assert resumed.resume()
    assert "best.pt was missing; written again" in caplog.text
    state = load_checkpoint(best)
    assert state["epoch"] == 0 and state["score"] == trainer.best_score
    assert all(torch.equal(state["model"][k], v) for k, v in weights.items())


def test_best_pt_of_another_run_or_epoch_is_refused(tmp_path, one_thread):
    """Probe 9: a best.pt of another run gave a 'size mismatch' traceback (or, of the
    same shapes, silently another model)."""
    _best_not_last(tmp_path / "a")
    _best_not_last(tmp_path / "b", lr=2e-2)
    best = tmp_path / "a" / "best.pt"
    best.write_bytes((tmp_path / "b" / "best.pt").read_bytes())
    with pytest.raises(CheckpointError, match=rf"{best} was written by another run \(1 "
                       r"setting\(s\) differ, e.g. train.lr: stored 0.02, now 0.01\)"):
        _trainer(tmp_path / "a", epochs=3).resume()
    # this run's best.pt, but of another epoch than last.pt records
    trainer = _best_not_last(tmp_path / "c")
    state = load_checkpoint(tmp_path / "c" / "best.pt")
    atomic_save({**state, "epoch": 1}, tmp_path / "c" / "best.pt")
    with pytest.raises(CheckpointError, match=r"holds epoch 2 .*the run's best is epoch 1"):
        _trainer(tmp_path / "c", epochs=3).resume()
    # a best.pt of an earlier jams_pyg (no fingerprint) with the right epoch and score
    old = {"model": state["model"], "epoch": 0, "score": trainer.best_score}
    atomic_save(old, tmp_path / "c" / "best.pt")
    assert _trainer(tmp_path / "c", epochs=3).resume()
    # a best.pt without last.pt (a run stopped in its first epoch) must be this run's
    (tmp_path / "b" / "last.pt").unlink()
    with pytest.raises(CheckpointError, match="was written by another run"):
        _trainer(tmp_path / "b", epochs=3).resume()
    assert not _trainer(tmp_path / "b", epochs=3, lr=2e-2).resume()


class _FullDisk:
    """A file handle on a disk with ``room`` bytes left."""

    def __init__(self, handle, room: int) -> None:
        self.handle, self.room = handle, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


def _fill_disk(monkeypatch, room: int = 1000) -> None:
    import jams_pyg.train.checkpoint as checkpoint

    real = checkpoint.atomic_open

    @contextlib.contextmanager
    def full_disk(path, *args, **kwargs):
        with real(path, *args, **kwargs) as handle:
            yield _FullDisk(handle, room)

    monkeypatch.setattr(checkpoint, "atomic_open", full_disk)


def test_full_disk_during_a_checkpoint_is_one_line_naming_the_file(tmp_path, monkeypatch):
    """Probe 8: torch.save's zip writer turned ENOSPC into 'RuntimeError [enforce fail at
    inline_container.cc] unexpected pos'."""
    path = tmp_path / "last.pt"
    atomic_save({"weights": torch.ones(3)}, path)
    _fill_disk(monkeypatch)
    with pytest.raises(OSError) as err:
        atomic_save({"weights": torch.randn(10_000)}, path)
    message = str(err.value)
    assert err.value.errno == errno.ENOSPC
    assert message == f"[Errno 28] {path}: cannot write the checkpoint (No space left on device)"
    assert torch.equal(load_checkpoint(path)["weights"], torch.ones(3))  # previous kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary file


def _save_over_a_file_size_limit(path: str, limit: int, results) -> None:
    """In a child: the kernel refuses writes past ``limit`` bytes (``RLIMIT_FSIZE``, with
    SIGXFSZ ignored: ``EFBIG``), a real failed write like a full disk's ``ENOSPC``."""
    import resource

    from jams_pyg.atomic import atomic_write_text

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    for name, write in (("checkpoint", lambda: atomic_save({"w": torch.randn(100_000)}, path)),
                        ("text", lambda: atomic_write_text(path + ".json", "x" * 2 * limit))):
        try:
            write()
            results.put((name, None, "no error"))
        except BaseException as err:  # reported to the parent
            results.put((name, getattr(err, "errno", None), f"{type(err).__name__}: {err}"))


def test_a_real_failed_write_is_one_line_naming_the_file(tmp_path):
    """Not an injected error: the kernel fails the write (past a file size limit), through
    torch.save's zip writer, the buffered file and the fsync."""
    path = tmp_path / "last.pt"
    atomic_save({"w": torch.ones(3)}, path)
    (tmp_path / "last.pt.json").write_text("old")
    results = CTX.Queue()
    child = CTX.Process(target=_save_over_a_file_size_limit,
                        args=(str(path), 100_000, results))
    child.start()
    child.join(120)
    assert child.exitcode == 0
    assert [results.get(timeout=10) for _ in range(2)] == [
        ("checkpoint", errno.EFBIG,
         f"OSError: [Errno 27] {path}: cannot write the checkpoint (File too large)"),
        ("text", errno.EFBIG,
         f"OSError: [Errno 27] {path}.json: cannot write the file (File too large)")]
    # the previous files stay, and no temporary file
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(3))
    assert (tmp_path / "last.pt.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "last.pt.json"]


def test_full_disk_while_training_stops_with_the_file_named(tmp_path, monkeypatch,
                                                             one_thread):
    trainer = _trainer(tmp_path, epochs=2)
    _fill_disk(monkeypatch)
    with pytest.raises(OSError, match=f"{tmp_path / 'last.pt'}: cannot write the "
                       r"checkpoint \(No space left on device\)"):
        trainer.fit()


def _cli_run(folder: str, ready, release, calls) -> None:
    """``jams-pyg train`` (backbone + jams) into ``folder`` whose runs wait for
    ``release``: a long command holding its output folder."""
    import jams_pyg.eval.report as report
    import jams_pyg.train.experiment as experiment
    from jams_pyg.cli import main

    def waiting_run(config, **kwargs):
        calls.put(config.variant)
        ready.set()
        release.wait(60)
        return {"variant": config.variant}

    experiment.run_experiment = waiting_run
    report.write_report = lambda *args, **kwargs: None
    raise SystemExit(main(["train", "--model", "caml", "--size", "0.05", "--no-progress",
                           "--output-dir", folder]))


def test_a_command_owns_its_whole_output_folder_for_its_whole_life(tmp_path, capsys):
    """Probe 4: a lock per variant, held only while that variant trained, let
    `--jams-only` into the folder of a running backbone + jams command, which then died
    at its jams run. The first command now holds the folder (and every variant's) from
    its start to its end; another fails at once, whichever variants it trains."""
    from jams_pyg.cli import main
    from jams_pyg.train import experiment  # noqa: F401  (loaded once, before the fork)

    # what writers killed in an earlier command left in the folder and a variant's
    (tmp_path / "jams").mkdir(parents=True)
    stale = [tmp_path / ".metrics.json.k1ll3d00.tmp", tmp_path / "jams" / ".last.pt.k1ll3d01.tmp"]
    for path in stale:
        path.write_bytes(b"partial")
    ready, release, calls = CTX.Event(), CTX.Event(), CTX.Queue()
    first = CTX.Process(target=_cli_run, args=(str(tmp_path), ready, release, calls))
    first.start()
    try:
        assert ready.wait(120) and calls.get(timeout=60) == "backbone"
        assert not any(path.exists() for path in stale)  # removed when the command began
        for variants in (["--jams-only"], ["--no-jams"], ["--variants", "no_mat"]):
            status = main(["train", "--model", "caml", "--size", "0.05", "--epochs", "1",
                           "--no-progress", "--output-dir", str(tmp_path), *variants])
            message = capsys.readouterr().err
            assert status == 1, message
            assert f"{tmp_path} is in use by another run (pid {first.pid}" in message
        assert not (tmp_path / "data").exists() and not (tmp_path / "no_mat").exists()
    finally:
        release.set()
        first.join(120)
    assert first.exitcode == 0  # the first command ran both its variants to the end
    assert [calls.get(timeout=10)] == ["jams"]
    with run_dir_lock(tmp_path):  # and released the folder when it ended
        pass


def _hold_temp(path: str, ready, release) -> None:
    import fcntl

    with open(path, "wb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        ready.set()
        release.wait(60)


def test_the_next_run_of_a_folder_removes_what_killed_writers_left(tmp_path):
    """Temporary files of writers killed while writing (``.last.pt.<random>.tmp``, a
    bundle folder's ``.model.<random>.tmp``) are removed when a run takes the folder;
    a live writer's temporary file and files that only look alike stay."""
    stale = [tmp_path / ".last.pt.k3j5h7g9.tmp", tmp_path / ".metrics.json.abcdefgh.tmp"]
    for path in stale:
        path.write_bytes(b"partial")
    (tmp_path / ".model.x1y2z3w4.tmp").mkdir()
    (tmp_path / ".model.x1y2z3w4.tmp" / "weights.safetensors").write_bytes(b"partial")
    kept = [tmp_path / name for name in ("last.pt", ".last.pt.tmp", "notes.tmp",
                                         ".last.pt.TOOLONG123.tmp", "last.pt.abcdefgh.tmp")]
    for path in kept:
        path.write_bytes(b"mine")
    live = tmp_path / ".best.pt.l1v2e3w4.tmp"
    ready, release = CTX.Event(), CTX.Event()
    writer = CTX.Process(target=_hold_temp, args=(str(live), ready, release))
    writer.start()
    try:
        assert ready.wait(60)
        with run_dir_lock(tmp_path):
            pass
        assert all(path.exists() for path in [*kept, live])
        assert not any(path.exists() for path in stale)
        assert not (tmp_path / ".model.x1y2z3w4.tmp").exists()
    finally:
        release.set()
        writer.join(60)
