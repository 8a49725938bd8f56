"""Atomic file writes: readers see the previous file or the whole new one, never a part.

Used for checkpoints, bundles, prediction output, the synthetic corpus and the
experiment's result files.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["AtomicFile", "atomic_open", "atomic_save_tensors", "atomic_write_json",
           "atomic_write_text", "file_mode"]


def file_mode() -> int:
    """The mode an ordinary new file gets (0666 less the umask)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


class AtomicFile:
    """A file written atomically.  The content goes to a temporary file next to ``path``,
    unique to this writer; :meth:`commit` flushes and fsyncs it and renames it over
    ``path`` (:func:`os.replace`), :meth:`discard` removes it.  Opening checks that
    ``path`` can be written, before any other work.  The file gets the mode of the file
    it replaces, else the ordinary ``0o666 & ~umask``.  As a context manager it commits
    when the block ends normally and discards on an exception.

    Args:
        path: The file to (re)place.
        mode: ``"wb"`` or ``"w"``; ``kwargs`` go to :func:`open` (e.g. ``encoding``).

    Raises:
        OSError: naming ``path`` if it is a directory or its folder is missing or not
            writable.
    """

    def __init__(self, path: str | os.PathLike[str], mode: str = "wb", **kwargs: Any) -> None:
        if mode not in ("wb", "w"):
            raise ValueError(f"AtomicFile writes whole files: mode 'wb' or 'w', got {mode!r}")
        self.path = Path(path)
        if self.path.is_dir():
            raise IsADirectoryError(f"{self.path}: is a directory, not a file to write")
        folder = self.path.parent
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=folder)
        except OSError as err:
            raise type(err)(err.errno, f"{self.path}: cannot write the file "
                            f"({err.strerror}: {folder})") from None
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
        return self.handle.write(data)

    def commit(self) -> None:
        """Make the written content the file at ``path``."""
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self._tmp, self.path)
        self._done = True
        with contextlib.suppress(OSError):  # make the rename itself durable
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def discard(self) -> None:
        """Remove the temporary file (no-op after :meth:`commit`)."""
        if not self._done:
            self.handle.close()
            self._tmp.unlink(missing_ok=True)
            self._done = True

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", **kwargs: Any
                ) -> Iterator[IO[Any]]:
    """``with atomic_open(path) as handle:`` writes ``path`` through an
    :class:`AtomicFile`: committed when the block ends normally, discarded (``path``
    left as it was) on an exception."""
    with AtomicFile(path, mode, **kwargs) as file:
        yield file.handle


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
