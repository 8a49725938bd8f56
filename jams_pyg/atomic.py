"""Atomic file writes: readers see the previous file or the whole new one, never a part."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_open", "atomic_write_text", "file_mode"]


def file_mode() -> int:
    """The mode an ordinary new file gets (0666 less the umask)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", **kwargs: Any
                ) -> Iterator[IO[Any]]:
    """Open a temporary file unique to this call in ``path``'s folder; when the block ends
    without an exception, fsync it, give it the ordinary mode and rename it over ``path``
    (:func:`os.replace`).  On an exception the temporary file is removed and ``path`` is
    left as it was, so concurrent writers never share a temporary file and a crash never
    leaves a partial file.

    Args:
        path: The file to (re)place.
        mode: ``"wb"`` or ``"w"``; ``kwargs`` go to :func:`open` (e.g. ``encoding``).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open writes new files only: mode 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
