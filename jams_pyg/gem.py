"""Reading CMS General Equivalence Mapping (GEM) files.

A GEM file has one mapping per line, ``source target flags``, separated by
white space. ``flags`` is five digits: approximate, no map, combination (each
0 or 1), scenario and choice list (0-9). A no-map line has target ``NoDx``
(diagnosis GEMs) or ``NoPCS`` (procedure GEMs). The forward files
(``2018_I9gem.txt``, ``gem_i9pcs.txt``) map ICD-9-CM to ICD-10; the backward
files (``2018_I10gem.txt``, ``gem_pcsi9.txt``) map ICD-10 to ICD-9-CM.

The real CMS 2018 diagnosis GEMs ship with the package
(:func:`cms_2018_gem_paths`).
"""

from __future__ import annotations

import gzip
import io
import os
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pandas as pd

from jams_pyg.codes import Kind

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


def open_text(path: PathLike, encoding: str = "ascii") -> io.TextIOBase:
    """Open a text file, transparently gunzipping ``*.gz``."""
    if str(path).endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding)
    return open(path, encoding=encoding)


def _guess_kind(path: PathLike) -> Kind | None:
    name = Path(path).name.lower()
    if "pcs" in name:
        return "proc"
    return None


def _iter_lines(path: PathLike) -> Iterator[tuple[int, str]]:
    try:
        with open_text(path) as handle:
            yield from enumerate(handle, start=1)
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not an ASCII GEM file ({err})") from err


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
        ValueError: naming the file and line, for a line without exactly three
            fields, a malformed code or flag field, a no-map flag that
            disagrees with the target, or a no-map target of the other kind.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"GEM file not found: {path}")
    rows: list[tuple[str, str, bool, bool, bool, int, int, int]] = []
    seen_kind: Kind | None = None
    for number, line in _iter_lines(path):
        fields = line.split()
        if not fields:
            continue  # blank lines (a trailing newline) carry no mapping
        where = f"{path}, line {number}"
        if len(fields) != 3:
            raise ValueError(
                f"{where}: expected 'source target flags', got {line.rstrip()!r}"
            )
        source, target, flags = fields
        # CMS files are upper case but not always (2018_I10gem.txt writes
        # "v5889" once): codes are case-insensitive, so normalise them.
        source = source.upper()
        if target.upper() not in ("NODX", "NOPCS"):
            target = target.upper()
        if not _FLAGS.match(flags):
            raise ValueError(
                f"{where}: flags must be five digits (approximate, no map, "
                f"combination in 0/1; scenario, choice list), got {flags!r}"
            )
        if not _CODE.match(source):
            raise ValueError(f"{where}: malformed source code {source!r}")
        no_map = flags[1] == "1"
        if target in NO_MAP_TARGETS:
            if not no_map:
                raise ValueError(f"{where}: target {target} without the no-map flag")
            line_kind = NO_MAP_TARGETS[target]
            if seen_kind is not None and line_kind != seen_kind:
                raise ValueError(
                    f"{where}: {target} in a file of {seen_kind} mappings"
                )
            seen_kind = line_kind
        else:
            if no_map:
                raise ValueError(
                    f"{where}: no-map flag set but target is {target!r}, not NoDx/NoPCS"
                )
            if not _CODE.match(target):
                raise ValueError(f"{where}: malformed target code {target!r}")
        rows.append(
            (
                source,
                target,
                flags[0] == "1",
                no_map,
                flags[2] == "1",
                int(flags[3]),
                int(flags[4]),
                number,
            )
        )
    resolved = kind or seen_kind or _guess_kind(path) or "dx"
    if seen_kind is not None and kind is not None and seen_kind != kind:
        raise ValueError(f"{path}: kind={kind!r} given, but its no-map lines are {seen_kind}")
    frame = pd.DataFrame(rows, columns=[*GEM_COLUMNS, "line"])
    frame = frame.astype(
        {
            "source": str,
            "target": str,
            "approximate": bool,
            "no_map": bool,
            "combination": bool,
            "scenario": "int8",
            "choice_list": "int8",
            "line": "int64",
        }
    )
    frame.attrs["path"] = str(path)
    frame.attrs["kind"] = resolved
    return frame
