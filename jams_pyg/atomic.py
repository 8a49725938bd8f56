"""Atomic file writes: readers see the previous file or the whole new one, never a part.

Used for checkpoints, bundles, prediction output, the synthetic corpus and the
experiment's result files; :func:`atomic_folder` replaces a whole folder (a model bundle)
the same way.

Every temporary file or folder is named ``.<name>.<8 random characters>.tmp`` beside its
destination ``<name>`` and is locked (:func:`fcntl.flock`) by its writer for as long as
it exists, so a writer that was killed leaves an unlocked one:
:func:`remove_stale_temps` (called by every writer of the destination) removes those,
and never one a live writer holds.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["AtomicFile", "atomic_folder", "atomic_open", "atomic_save_tensors",
           "atomic_write_json", "atomic_write_text", "file_mode", "remove_stale_temps",
           "temp_siblings"]

#: ``tempfile``'s random part: 8 characters of this alphabet.
_RANDOM = r"[a-z0-9_]{8}"


def _temp_pattern(name: str) -> re.Pattern[str]:
    return re.compile(re.escape(f".{name}.") + _RANDOM + r"\.tmp")


def temp_siblings(path: str | os.PathLike[str]) -> list[Path]:
    """The temporary files and folders of writers of ``path`` (live or dead) beside it,
    newest first; symbolic links are never listed."""
    path = Path(path)
    pattern = _temp_pattern(path.name)
    try:
        entries = [e for e in os.scandir(path.parent)
                   if pattern.fullmatch(e.name) and not e.is_symlink()]
    except OSError:  # a missing or unreadable folder holds none we can remove
        return []
    def mtime(entry: os.DirEntry[str]) -> float:
        try:
            return entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            return 0.0
    return [Path(e.path) for e in sorted(entries, key=mtime, reverse=True)]


def _lock_new(fd: int, path: Path) -> bool:
    """Lock a just-created temporary ``path`` (open as ``fd``) for its writer; False if
    a concurrent :func:`remove_stale_temps` removed it before the lock was taken."""
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        return os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files and folders that killed writers of ``path`` left beside
    it (``.<name>.<random>.tmp``, see the module docstring); one a live writer holds
    locked stays.  Returns what was removed.  Errors (permissions, a file that vanished)
    leave that entry alone."""
    removed = []
    for temp in temp_siblings(path):
        try:
            fd = os.open(temp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live writer's
            # still the entry we locked (not replaced since it was listed)?
            if os.stat(temp, follow_symlinks=False).st_ino != os.fstat(fd).st_ino:
                continue
            if temp.is_dir():
                shutil.rmtree(temp)
            else:
                temp.unlink()
            removed.append(temp)
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed


#: errors of writing a file's content (not of finding or opening another file).
_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}


def _named(err: OSError, path: Path) -> OSError:
    """``err`` as a one-line error that names the destination ``path`` (``ENOSPC``:
    "no space left on device")."""
    if str(path) in str(err):
        return err
    reason = err.strerror or str(err)
    return type(err)(err.errno, f"{path}: cannot write the file ({reason})")


def file_mode() -> int:
    """The mode an ordinary new file gets (0666 less the umask)."""
    return 0o666 & ~_umask()


class AtomicFile:
    """A file written atomically.  The content goes to a temporary file next to ``path``,
    unique to this writer and locked by it; :meth:`commit` flushes and fsyncs it and
    renames it over ``path`` (:func:`os.replace`; a symbolic link at ``path`` is replaced,
    never written through), :meth:`discard` removes it.  Opening checks that ``path`` can
    be written, before any other work, and removes the temporary files killed writers of
    ``path`` left (:func:`remove_stale_temps`).  The file gets the mode of the file it
    replaces, else the ordinary ``0o666 & ~umask``.  As a context manager it commits
    when the block ends normally and discards on an exception.

    Args:
        path: The file to (re)place.
        mode: ``"wb"`` or ``"w"``; ``kwargs`` go to :func:`open` (e.g. ``encoding``).

    Raises:
        OSError: naming ``path`` if it is a directory, its folder is missing or not
            writable, or a write fails (``ENOSPC``: no space left on the device); the
            previous file stays and the temporary file is removed.
    """

    def __init__(self, path: str | os.PathLike[str], mode: str = "wb", **kwargs: Any) -> None:
        if mode not in ("wb", "w"):
            raise ValueError(f"AtomicFile writes whole files: mode 'wb' or 'w', got {mode!r}")
        self.path = Path(path)
        if self.path.is_dir():
            raise IsADirectoryError(f"{self.path}: is a directory, not a file to write")
        folder = self.path.parent
        remove_stale_temps(self.path)
        while True:
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                           dir=folder)
            except OSError as err:
                raise type(err)(err.errno, f"{self.path}: cannot write the file "
                                f"({err.strerror}: {folder})") from None
            if _lock_new(fd, Path(tmp)):
                break
            os.close(fd)
        self._tmp = Path(tmp)
        try:
            try:
                permissions = os.stat(self.path).st_mode & 0o7777
            except FileNotFoundError:
                permissions = file_mode()
            os.chmod(fd, permissions)
            self.handle: IO[Any] = os.fdopen(fd, mode, **kwargs)
        except BaseException:
            os.close(fd)
            self._tmp.unlink(missing_ok=True)
            raise
        self._done = False

    def write(self, data: Any) -> int:
        try:
            return self.handle.write(data)
        except OSError as err:
            self.discard()
            raise _named(err, self.path) from None

    def commit(self) -> None:
        """Make the written content the file at ``path``."""
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            # renamed while still open and locked: a cleaner never takes it for stale
            os.replace(self._tmp, self.path)
        except OSError as err:
            self.discard()
            raise _named(err, self.path) from None
        self._done = True
        with contextlib.suppress(OSError):
            self.handle.close()
        _fsync_folder(self.path.parent)

    def discard(self) -> None:
        """Remove the temporary file (no-op after :meth:`commit`)."""
        if not self._done:
            self._done = True
            self._tmp.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # a full disk fails the buffered flush
                self.handle.close()

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort)."""
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", **kwargs: Any
                ) -> Iterator[IO[Any]]:
    """``with atomic_open(path) as handle:`` writes ``path`` through an
    :class:`AtomicFile`: committed when the block ends normally, discarded (``path``
    left as it was) on an exception."""
    file = AtomicFile(path, mode, **kwargs)
    try:
        with file:
            yield file.handle
    except OSError as err:  # e.g. ENOSPC while the block wrote: name the destination
        if err.errno in _WRITE_ERRORS and err.filename is None:
            raise _named(err, file.path) from None
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented UTF-8 JSON (the model bundle's and graph files'
    layout), atomically."""
    atomic_write_text(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def atomic_save_tensors(path: str | os.PathLike[str], tensors: dict[str, Any],
                        metadata: dict[str, str] | None = None) -> None:
    """A safetensors file of CPU tensors, written atomically with the ordinary file mode
    (``safetensors``' own ``save_file`` creates its files 0600)."""
    from safetensors.torch import save

    with atomic_open(path) as handle:
        handle.write(save(tensors, metadata=metadata))


# ------------------------------------------------------------------------------ folders
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system or file system does not offer it."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, f"{b}: cannot replace the folder ({os.strerror(code)})")


def _folder_mode(path: Path) -> int:
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return 0o777 & ~_umask()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """``with atomic_folder(path) as staged:`` write a whole folder into ``staged`` (a new
    empty folder beside ``path``, ``.<name>.<random>.tmp``, locked by this writer); when
    the block ends normally ``staged`` takes the place of ``path`` and the previous
    folder is removed; on an exception ``staged`` is removed and ``path`` stays as it was.

    The swap is one ``renameat2(RENAME_EXCHANGE)`` on Linux, so a crash at any point
    leaves ``path`` the previous folder or the complete new one.  Where the exchange is
    missing it is two renames; a crash between them leaves no ``path`` but the previous
    folder as a temporary sibling (:func:`temp_siblings` lists it for a reader).  A
    symbolic link at ``path`` is followed: the folder it points to is replaced.  The
    folder killed writers left are removed after the swap (:func:`remove_stale_temps`).

    Raises:
        OSError: naming ``path``: not a folder, parent not writable, a failed write.
    """
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path}: exists and is not a folder")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise type(err)(err.errno, f"{path}: cannot create its folder ({err.strerror})") \
            from None
    while True:
        try:
            staged = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
        except OSError as err:
            raise type(err)(err.errno, f"{path}: cannot write the folder "
                            f"({err.strerror}: {parent})") from None
        fd = os.open(staged, os.O_RDONLY)
        if _lock_new(fd, staged):
            break
        os.close(fd)
    try:
        try:
            os.chmod(staged, _folder_mode(path))
            yield staged
        except OSError as err:
            if err.errno in _WRITE_ERRORS and err.filename is None:
                raise _named(err, path) from None
            raise
        _fsync_folder(staged)
        if not _rename_into(staged, path) and not _exchange(staged, path):
            # two renames: the previous folder moves to an (empty) temp of ours first
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
            os.replace(path, old)
            os.replace(staged, path)
            staged = old
        _fsync_folder(parent)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        os.close(fd)
        raise
    shutil.rmtree(staged, ignore_errors=True)  # now the previous folder
    os.close(fd)
    remove_stale_temps(path)


def _rename_into(staged: Path, path: Path) -> bool:
    """Rename ``staged`` to ``path`` where ``path`` is missing or an empty folder."""
    try:
        os.rename(staged, path)
    except OSError as err:
        if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        raise type(err)(err.errno, f"{path}: cannot replace the folder ({err.strerror})") \
            from None
    return True
