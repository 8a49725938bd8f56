"""Exclusive run folders: one run at a time writes into an output folder.

:func:`run_dir_lock` gives a run its folder: an OS lock (``fcntl.flock``) on
``<folder>/.run.lock``, held for the run's life and released when it ends, raises or is
killed (the kernel drops the lock of a dead process, so a stale lock never blocks). A
second run gets :class:`~jams_pyg.train.errors.RunDirLocked` naming the holder's pid, host,
start time and command. :meth:`~jams_pyg.train.trainer.Trainer.fit` takes the lock of its
output folder; :func:`jams_pyg.train.experiment.run_experiment` holds it for the whole run;
``jams-pyg train`` holds its output folder and every variant's sub-folder from its start to
its end (:func:`hold_run_dirs`), so a second command into the same folder fails at once,
whichever variants either trains.

Whoever takes a folder's lock removes the temporary files killed writers left in it
(``.<name>.<8 characters>.tmp`` of :mod:`jams_pyg.atomic`; never one a live writer holds).
Torch-free.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

try:  # POSIX; elsewhere run folders are not locked (see run_dir_lock)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from jams_pyg.atomic import remove_stale_temps
from jams_pyg.train.errors import RunDirLocked

log = logging.getLogger(__name__)

#: The lock file of a run folder (kept between runs: deleting it would let two
#: runs lock two different files of the same name).
LOCK_NAME = ".run.lock"

#: The temporary files and folders of :mod:`jams_pyg.atomic`'s writers: ``.<name>.<8
#: random characters>.tmp`` beside ``<name>``.
_TEMP = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")

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
    remove_killed_writers_temps(folder)


def remove_killed_writers_temps(folder: Path) -> list[Path]:
    """Remove the temporary files and folders (``.<name>.<random>.tmp``) that writers
    killed while writing ``<name>`` left in ``folder``; those a live writer holds stay
    (:func:`jams_pyg.atomic.remove_stale_temps`). Returns what was removed."""
    try:
        names = {found["name"] for entry in os.scandir(folder)
                 if (found := _TEMP.fullmatch(entry.name))}
    except OSError:
        return []
    removed = [temp for name in sorted(names) for temp in remove_stale_temps(folder / name)]
    if removed:
        log.info("removed %d temporary file(s) that stopped runs left in %s: %s",
                 len(removed), folder, ", ".join(p.name for p in removed[:5]))
    return removed


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


@contextlib.contextmanager
def hold_run_dirs(folders: Iterable[str | os.PathLike[str]], enabled: bool = True
                  ) -> Iterator[list[Path]]:
    """Hold every folder of ``folders`` (see :func:`run_dir_lock`) until the block ends:
    a command that writes several run folders owns them all for its whole life, so
    another command that would write any of them fails at once, not when it gets there.

    Raises:
        RunDirLocked: naming the holder of the first folder another process holds
            (those taken before it are released).
    """
    paths = [Path(f) for f in folders]
    with contextlib.ExitStack() as stack:
        for path in paths:
            stack.enter_context(run_dir_lock(path, enabled=enabled))
        yield paths


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


__all__ = ["LOCK_NAME", "hold_run_dirs", "prepare_run_dir", "remove_killed_writers_temps",
           "run_dir_lock"]
