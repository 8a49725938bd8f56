"""Notes in, records out.

* :func:`load_notes` reads the notes of a file for
  :meth:`~jams_pyg.inference.predictor.JAMSPredictor.predict`;
* :class:`NotePrediction` is what it returns per note (:class:`CodePrediction` entries with
  their :class:`TokenEvidence` and :class:`LinkedCode` evidence);
* :func:`prediction_records` and :func:`dumps_strict` make the strict JSONL records that
  ``jams-pyg predict`` writes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from jams_pyg.data.text import clean_text

__all__ = [
    "ON_ERROR_CHOICES",
    "CodePrediction",
    "LinkedCode",
    "NoteError",
    "NoteInput",
    "NotePrediction",
    "TokenEvidence",
    "dumps_strict",
    "load_notes",
    "prediction_records",
    "read_notes",
]

PathLike = str | os.PathLike[str]


# ------------------------------------------------------------------------------ results
@dataclass
class TokenEvidence:
    """A word of the (cleaned) note and the label-attention weight the code gives it."""

    word: str
    position: int  #: index of the word in the cleaned note (0-based)
    weight: float


@dataclass
class LinkedCode:
    """A GEM neighbour (other system) of a predicted code."""

    code: str
    system: str
    title: str
    gem_weight: float  #: :math:`\omega`: 1.0 exact, 0.5 approximate mapping
    attention: float | None = None  #: MATConv :math:`\alpha` (None without MAT)


@dataclass
class CodePrediction:
    """One code of one note."""

    code: str
    title: str
    probability: float
    predicted: bool  #: ``probability > threshold`` of the system
    tokens: list[TokenEvidence] | None = None
    linked: list[LinkedCode] | None = None
    self_attention: float | None = None  #: MATConv :math:`\alpha_{ii}` (with MAT)
    #: the code fired on more than half of its system's validation notes
    #: (:mod:`jams_pyg.inference.ood`; ``None``: the bundle has no calibration)
    fires_on_most_notes: bool | None = None
    #: above its threshold on more than half the notes of this call, withheld ones included
    #: (a call of at least 3 notes; ``None``: fewer notes, or the signal is off)
    fires_on_most_call_notes: bool | None = None


@dataclass
class NotePrediction:
    """The codes of one note in each requested system (sorted by probability)."""

    index: int
    id: Any
    codes: dict[str, list[CodePrediction]]
    thresholds: dict[str, float]
    num_tokens: int  #: tokens the model read
    truncated: bool  #: the note was longer than the bundle's ``max_length``
    #: share of the words read that the model's vocabulary does not know (word-level
    #: tokenizers; ``None`` for subword tokenizers, which know every word)
    unknown_words: float | None = None
    #: the out-of-distribution check (:mod:`jams_pyg.inference.ood`): ``{"statistic",
    #: "value", "threshold", "quantile", "out_of_distribution", "withheld", "reason"}``;
    #: ``None`` when nothing was checked (a bundle without calibration, or ``ood="off"``)
    ood: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def withheld(self) -> bool:
        """Whether the note's codes were withheld as out of distribution."""
        return bool(self.ood and self.ood.get("withheld"))

    def __getitem__(self, system: str) -> list[CodePrediction]:
        return self.codes[system]

    def predicted_codes(self, system: str) -> list[str]:
        """Codes of ``system`` above the threshold."""
        return [c.code for c in self.codes[system] if c.predicted]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (evidence and code-frequency fields only where computed;
        ``"ood"`` always, ``null`` when nothing was checked)."""

        def code_dict(c: CodePrediction) -> dict[str, Any]:
            out = asdict(c)
            for key in ("tokens", "linked", "self_attention", "fires_on_most_notes",
                        "fires_on_most_call_notes"):
                if out[key] is None:
                    del out[key]
            return out

        return {
            "id": self.id,
            "index": self.index,
            "codes": {s: [code_dict(c) for c in v] for s, v in self.codes.items()},
            "thresholds": dict(self.thresholds),
            "num_tokens": self.num_tokens,
            "truncated": self.truncated,
            "unknown_words": self.unknown_words,
            "ood": None if self.ood is None else dict(self.ood),
        }


# ------------------------------------------------------------------------------- input
ON_ERROR_CHOICES = ("fail", "skip")


@dataclass
class NoteError:
    """An input line that is not a usable note (kept, with ``on_error="skip"``, as an
    error record in the output)."""

    line: int
    id: Any
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "line": self.line, "error": self.error}


@dataclass
class NoteInput:
    """Notes read by :func:`load_notes`: ``texts[i]`` with ``ids[i]`` from input line
    ``lines[i]``; ``errors`` holds the bad lines (``on_error="skip"`` only)."""

    name: str
    texts: list[str] = field(default_factory=list)
    ids: list[Any] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    errors: list[NoteError] = field(default_factory=list)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (strict JSON has no NaN or Infinity)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range (not a finite float)")
    return value


def _parse_jsonl(line: str) -> Any:
    """Strict JSON: NaN, Infinity and numbers that overflow a float are refused."""
    return json.loads(line, parse_constant=_reject_constant, parse_float=_finite_float)


def _raw_lines(path: PathLike) -> Iterable[bytes]:
    """Lines of a file (``"-"``: standard input) as bytes, split on ``\\n`` only."""
    import sys

    if str(path) == "-":
        yield from sys.stdin.buffer
        return
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, generator
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such input file") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"{path}: is a directory, not an input file") from None
    with handle:
        yield from handle


def load_notes(path: PathLike, fmt: str = "auto", on_error: str = "fail") -> NoteInput:
    """Read notes for :meth:`JAMSPredictor.predict` from a file (``"-"``: standard input),
    one line at a time.

    Lines end at ``\\n`` only (a ``\\r`` right before it is dropped): a form feed,
    vertical tab, U+2028 or U+2029 inside a note is part of the note, so line numbers and
    ids never shift. Every line is decoded as UTF-8 on its own (a leading byte-order mark
    is ignored).

    Formats: ``"text"``: one note per line (the id is the 1-based line number; a blank
    line is an error); ``"jsonl"``: one strict JSON object per line with a ``"text"``
    string and an optional ``"id"`` (default: the line number; ``NaN``, ``Infinity`` and
    out-of-range numbers are refused as invalid JSON), blank lines skipped. ``"auto"``
    picks ``jsonl`` for ``.jsonl`` / ``.ndjson`` files, else ``text``.

    Args:
        path: The input file, or ``"-"``.
        fmt (str): ``"auto"``, ``"text"`` or ``"jsonl"``.
        on_error (str): ``"fail"`` (default): the first bad line raises;
            ``"skip"``: each bad line becomes a :class:`NoteError` (line number, id
            where known, message) in ``errors`` and the other lines are kept.

    Returns:
        A :class:`NoteInput`.

    Raises:
        ValueError: naming the file and line of a bad entry (``on_error="fail"``), or
            when the input holds no line at all.
        FileNotFoundError: for a missing input file.
    """
    name = str(path)
    if fmt == "auto":
        fmt = "jsonl" if name.lower().endswith((".jsonl", ".ndjson")) else "text"
    if fmt not in ("text", "jsonl"):
        raise ValueError(f"unknown input format {fmt!r}: use 'text', 'jsonl' or 'auto'")
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    notes = NoteInput(name="<stdin>" if name == "-" else name)

    def bad(number: int, note_id: Any, message: str) -> None:
        if on_error == "fail":
            raise ValueError(f"{notes.name}, line {number}: {message}")
        notes.errors.append(NoteError(number, note_id, message))

    for number, raw in enumerate(_raw_lines(path), start=1):
        if raw.endswith(b"\n"):
            raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            bad(number, number, f"not UTF-8 text (byte {raw[err.start]:#04x} at byte "
                f"{err.start + 1}); notes must be UTF-8")
            continue
        if fmt == "text":
            if not line.strip():
                bad(number, number, "empty note (one note per line)")
            elif not clean_text(line):
                bad(number, number, "the note has no words")
            else:
                notes.texts.append(line)
                notes.ids.append(number)
                notes.lines.append(number)
            continue
        if not line.strip():
            continue
        try:
            record = _parse_jsonl(line)
        except json.JSONDecodeError as err:
            bad(number, number, f"invalid JSON ({err.msg}, column {err.colno})")
            continue
        except ValueError as err:  # NaN / Infinity / overflowing number
            bad(number, number, f"invalid JSON ({err})")
            continue
        if not isinstance(record, dict) or "text" not in record:
            bad(number, number, "expected an object with a 'text' field")
            continue
        note_id = record.get("id", number)
        text = record["text"]
        if not isinstance(text, str):
            bad(number, note_id, f"'text' must be a string, got {type(text).__name__}")
        elif not text.strip() or not clean_text(text):
            bad(number, note_id, "empty note")
        else:
            notes.texts.append(text)
            notes.ids.append(note_id)
            notes.lines.append(number)
    if not notes.texts and not notes.errors:
        raise ValueError(f"{notes.name}: no notes found")
    return notes


def read_notes(path: PathLike, fmt: str = "auto") -> tuple[list[str], list[Any]]:
    """``(texts, ids)`` of :func:`load_notes` with ``on_error="fail"`` (the first bad
    line raises a ValueError naming the file and line)."""
    notes = load_notes(path, fmt, "fail")
    return notes.texts, notes.ids


def prediction_records(notes: NoteInput, results: Sequence[NotePrediction]) -> list[dict]:
    """The output records in input order: one per note (``NotePrediction.to_dict``) and
    one ``{"id", "line", "error"}`` per skipped line."""
    records = [(line, r.to_dict()) for line, r in zip(notes.lines, results, strict=True)]
    records += [(e.line, e.to_dict()) for e in notes.errors]
    records.sort(key=lambda item: item[0])
    return [record for _, record in records]


def dumps_strict(record: Any) -> str:
    """One JSONL line of strict JSON (UTF-8 text, no NaN / Infinity).

    Raises:
        ValueError: for a value that strict JSON cannot hold (a non-finite float).
    """
    return json.dumps(record, ensure_ascii=False, allow_nan=False)
