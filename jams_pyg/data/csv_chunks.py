"""Reading the MIMIC-IV CSV files in chunks, row by row: only the columns asked for, UTF-8
checked field by field, a malformed file named with its data row.

The parser is strict (``csv.reader(strict=True)``): a quote that opens a field and is never
closed, or is closed in the middle of a field, is an error naming the data row where the
field began. (The lenient default would merge every following row into that one field:
probe 1 of issue #23, a stray ``"`` in one note swallowing the 189 notes after it.) A stray
quote closed exactly at the end of a later field is still valid CSV and cannot be told
apart from a quoted field that holds line breaks."""

from __future__ import annotations

import csv
import gzip
import re
import zlib
from collections.abc import Iterator, Sequence
from itertools import compress
from pathlib import Path

import numpy as np

from jams_pyg.icd.gem import DataFileError


class CSVChunk:
    """Some rows of a CSV: ``{column: list of str or None}``."""

    def __init__(self, columns: dict[str, list]) -> None:
        self.columns = columns
        self.num_rows = len(next(iter(columns.values()))) if columns else 0

    def column(self, name: str) -> list:
        """The values of column ``name``."""
        return self.columns[name]

    def filter(self, mask: np.ndarray) -> CSVChunk:
        """The rows where ``mask`` is true."""
        return CSVChunk({k: list(compress(v, mask.tolist())) for k, v in self.columns.items()})


def read_chunks(
    path: Path, columns: Sequence[str], block_size: int, max_rows: int = 50_000
) -> Iterator[tuple[int, CSVChunk]]:
    """``(first data row number, chunk)`` of a (gzipped) CSV, only ``columns``
    (strings; empty fields are None), each chunk about ``block_size``
    characters of fields or ``max_rows`` rows, whichever comes first.

    Parsed row by row with the :mod:`csv` module (quoted fields may hold
    newlines), so memory holds one chunk at a time. (Chunked
    ``pandas.read_csv`` lets the peak creep up over the chunks of a gzipped
    file, and :func:`pyarrow.csv.open_csv` reads ahead without bound when the
    consumer is slower than the parser.)
    """
    if not path.is_file():
        raise FileNotFoundError(f"MIMIC-IV file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    # MIMIC-IV notes exceed the csv module's default 131,072-character field limit.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    row = 0  # the data row being parsed (0: the header)
    try:
        # surrogateescape: a byte that is not UTF-8 becomes a lone surrogate, found in
        # the row that holds it (strict decoding fails a block ahead, rows unknown).
        with opener(path, "rt", encoding="utf-8", errors="surrogateescape",
                    newline="") as handle:
            reader = csv.reader(handle, strict=True)
            header = next(reader, None) or []
            check_utf8(path, 0, header)
            missing = [c for c in columns if c not in header]
            if missing:
                raise ValueError(f"{path}: missing column(s) {missing}; found {header}")
            positions = [header.index(c) for c in columns]
            width = len(header)
            first = row = 1
            buffer: list[list] = [[] for _ in columns]
            size = 0
            try:
                for record in reader:
                    if len(record) != width:
                        if not record:
                            continue
                        raise ValueError(
                            f"{path}, data row {row}: {len(record)} fields, expected {width}")
                    for store, position in zip(buffer, positions, strict=True):
                        value = record[position]
                        if not value.isascii():
                            check_utf8(path, row, [value])
                        store.append(value if value != "" else None)
                        size += len(value)
                    row += 1
                    if size >= block_size or row - first >= max_rows:
                        yield first, CSVChunk(dict(zip(columns, buffer, strict=True)))
                        first, buffer, size = row, [[] for _ in columns], 0
            except csv.Error as err:
                raise DataFileError(f"{path}, data row {row}: {csv_problem(err)}") from None
            if buffer[0]:
                yield first, CSVChunk(dict(zip(columns, buffer, strict=True)))
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        if isinstance(err, gzip.BadGzipFile) and row == 0:
            problem = "not a gzip file"
        else:
            problem = "truncated or corrupt gzip data"
        where = f"{path}, data row {row}" if row else str(path)
        raise DataFileError(f"{where}: {problem} ({err})") from None


def csv_problem(err: csv.Error) -> str:
    """What a :class:`csv.Error` of the strict parser means, in words."""
    text = str(err)
    if text == "unexpected end of data":
        return ('a quoted field that begins in this row is never closed (a stray \'"\'?); '
                "the rest of the file would be read as part of it")
    if "expected after" in text:
        return (f"malformed quoting ({text}): a quoted field that begins in this row is "
                'closed in the middle of a field (a stray \'"\'?)')
    return text


_SURROGATE = re.compile("[\udc80-\udcff]")


def check_utf8(path: Path, row: int, values: Sequence[str]) -> None:
    """Raise naming file and row if a field holds a byte that was not UTF-8 (decoded
    with ``surrogateescape``)."""
    for value in values:
        found = _SURROGATE.search(value)
        if found:
            where = f"{path}, data row {row}" if row else f"{path}, header"
            byte = ord(found.group()) - 0xDC00
            raise DataFileError(
                f"{where}: not UTF-8 text (byte {byte:#04x} at character "
                f"{found.start() + 1} of a field; MIMIC-IV files are UTF-8)"
            )


def valid_rows(chunk: CSVChunk, *columns: str) -> np.ndarray:
    """Mask of the rows where all ``columns`` are non-null."""
    mask = np.ones(chunk.num_rows, dtype=bool)
    for column in columns:
        mask &= np.fromiter((v is not None for v in chunk.column(column)), bool,
                            chunk.num_rows)
    return mask


def integer_ids(values: list, path: Path, column: str, rows: np.ndarray) -> np.ndarray:
    """Integer ids of a (non-null) column; ``rows`` are the data row numbers
    (1-based) for the error message."""
    out = np.empty(len(values), dtype=np.int64)
    for pos, value in enumerate(values):
        try:
            out[pos] = int(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"{path}, data row {int(rows[pos])}: {column} {value!r} is not an integer id"
            ) from None
    return out
