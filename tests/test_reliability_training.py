"""Issue #13: exclusive run folders, atomic checkpoints, divergence, settings
validation and resume checks."""

import argparse
import math
import multiprocessing as mp
import os
import signal
import socket

import pytest
import torch

from jams_pyg.training import (
    LOCK_NAME,
    CheckpointError,
    RunDirLocked,
    TrainConfig,
    atomic_save,
    load_checkpoint,
    prepare_run_dir,
    run_dir_lock,
    train_setting_type,
)

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
