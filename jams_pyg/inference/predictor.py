r"""Code new notes with a trained model: :class:`JAMSPredictor`.

A predictor holds a model bundle (:mod:`jams_pyg.inference.bundle`): the model, its tokenizer, the
label vocabularies, the tuned thresholds and the GEM graph.  For every note it returns, per
coding system, codes sorted by probability with their CMS titles (:mod:`jams_pyg.icd.titles`) and
the decision at the tuned threshold (``probability > threshold``, as
:func:`jams_pyg.eval.metrics.compute_metrics`), optionally with evidence:

* **tokens**: the words of the note (Edin-cleaned, as the model read them) with the highest
  label-attention weight :math:`a_{cl}` of the code's head (for a subword tokenizer the
  weights of a word's pieces are summed);
* **linked**: the GEM-linked codes of the other system with their GEM weight :math:`\omega`
  and, with MAT, the attention weight :math:`\alpha_{ij}` the code gives each of them in
  MATConv (averaged over heads; ``self_attention`` is :math:`\alpha_{ii}`).  Without MAT the
  GEM neighbours come with :math:`\omega` only.

Example::

    from jams_pyg.inference.predictor import JAMSPredictor

    predictor = JAMSPredictor.load("runs/jams_laat/model")
    [note] = predictor.predict(["Pt admitted with renovascular hypertension ..."],
                               system="both", top_k=5, evidence=True)
    for code in note.codes["icd10"]:
        print(code.code, code.title, round(code.probability, 3), code.predicted)
"""

from __future__ import annotations

import bisect
import json
import math
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from jams_pyg.data.text import PAD_ID, clean_text, pad_sequences
from jams_pyg.icd.codes import OTHER_SYSTEM, SYSTEMS
from jams_pyg.inference.bundle import Bundle, load_bundle

__all__ = [
    "CodePrediction",
    "JAMSPredictor",
    "LinkedCode",
    "NoteError",
    "NoteInput",
    "NotePrediction",
    "TokenEvidence",
    "load_notes",
    "read_notes",
]

PathLike = str | os.PathLike[str]


# ------------------------------------------------------------------------------ results
#: ``predict`` warns when a note has more than this share of words the model never saw.
UNKNOWN_WORDS_WARN = 0.5


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
    extra: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, system: str) -> list[CodePrediction]:
        return self.codes[system]

    def predicted_codes(self, system: str) -> list[str]:
        """Codes of ``system`` above the threshold."""
        return [c.code for c in self.codes[system] if c.predicted]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (evidence fields only where computed)."""

        def code_dict(c: CodePrediction) -> dict[str, Any]:
            out = asdict(c)
            for key in ("tokens", "linked", "self_attention"):
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
        }


@dataclass
class _Encoded:
    ids: list[int]
    words: list[str]
    word_index: list[int]  # word of every token position, -1 for special tokens
    truncated: bool


# ---------------------------------------------------------------------------- predictor
def _titles(codes: Sequence[str], system: str) -> list[str]:
    from jams_pyg.icd.titles import code_title

    out = []
    for code in codes:
        try:
            out.append(code_title(code, system, default=""))
        except ValueError:  # not a well-formed code of the system
            out.append("")
    return out


class JAMSPredictor:
    r"""Predict ICD-9 / ICD-10 codes for raw clinical notes with a trained model.

    Build it with :meth:`load` from a bundle folder (see
    :func:`~jams_pyg.inference.bundle.save_bundle`) or directly from a
    :class:`~jams_pyg.inference.bundle.Bundle`.  Notes are cleaned with Edin et al.'s
    preprocessing (:func:`~jams_pyg.data.clean_text`), tokenised as in training,
    truncated to ``max_length`` tokens and scored in length-sorted batches under
    :func:`torch.inference_mode`; the encoder runs once per note for all requested systems.

    Args:
        bundle (Bundle): The loaded bundle.
        device (str or torch.device, optional): Where to run (default: the model's device).
    """

    def __init__(self, bundle: Bundle, device: str | torch.device | None = None) -> None:
        self.bundle = bundle
        self.model = bundle.model
        self.tokenizer = bundle.tokenizer
        self.codes = bundle.codes
        self.thresholds = dict(bundle.thresholds)
        self.graph = bundle.graph
        self.max_length = bundle.max_length
        self._word_level = hasattr(self.tokenizer, "vocab") and hasattr(
            self.tokenizer, "max_length"
        )
        pad = getattr(self.tokenizer, "pad_token_id", PAD_ID)
        self.pad_id = PAD_ID if pad is None else int(pad)
        self._titles = {s: _titles(c, s) for s, c in self.codes.items()}
        self._index_of = {s: {c: i for i, c in enumerate(v)} for s, v in self.codes.items()}
        if self.graph is not None:
            for s in SYSTEMS:
                if s not in self._titles:
                    self._titles[s] = _titles(self.graph.codes(s), s)
        self._tables: dict[str, Tensor] | None = None
        self._links: dict[str, dict[str, Any]] | None = None
        if device is not None:
            self.to(device)
        self.model.eval()

    @classmethod
    def load(cls, path: PathLike, device: str | torch.device | None = None) -> JAMSPredictor:
        """Load a bundle folder (checksums verified, no code executed) onto ``device``
        (default: CUDA if available, else CPU).

        Raises:
            jams_pyg.inference.bundle.BundleError: missing or modified file, unknown format version,
                weights that do not fit the config.
        """
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} requested but CUDA is not available")
        return cls(load_bundle(path, device=device))

    @classmethod
    def from_model(
        cls,
        model: torch.nn.Module,
        tokenizer: Any,
        codes: dict[str, list[str]],
        thresholds: dict[str, float],
        graph: Any = None,
        max_length: int = 4000,
        device: str | torch.device | None = None,
    ) -> JAMSPredictor:
        """A predictor over an in-memory model (same arguments as
        :func:`jams_pyg.inference.bundle.save_bundle`); the model is put in ``eval()`` mode."""
        from jams_pyg.inference.bundle import _check_codes, _check_thresholds
        from jams_pyg.train.distributed import unwrap_model

        model = unwrap_model(model)
        systems = tuple(model.systems)
        bundle = Bundle(
            path=None,
            model=model,
            model_config=getattr(model, "config", None),
            tokenizer=tokenizer,
            codes=_check_codes(codes, systems),
            thresholds=_check_thresholds(thresholds, systems),
            graph=graph,
            max_length=int(max_length),
        )
        return cls(bundle, device=device)

    # ----------------------------------------------------------------- properties
    @property
    def systems(self) -> tuple[str, ...]:
        return tuple(self.model.systems)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> JAMSPredictor:
        self.model.to(torch.device(device))
        self._tables = None
        self._links = None
        return self

    def __repr__(self) -> str:
        codes = ", ".join(f"{s}={len(c)}" for s, c in self.codes.items())
        return (
            f"{self.__class__.__name__}(model={getattr(self.bundle.model_config, 'model', '?')!r}, "
            f"mat={self.model.use_mat}, codes=({codes}), max_length={self.max_length}, "
            f"device={self.device})"
        )

    # --------------------------------------------------------------------- inputs
    def _resolve_systems(self, system: str | Sequence[str] | None) -> tuple[str, ...]:
        if system is None or system == "both":
            return self.systems
        if isinstance(system, str):
            wanted: tuple[str, ...] = (system,)
        else:
            wanted = tuple(system)
        for s in wanted:
            if s not in SYSTEMS:
                raise ValueError(f"unknown coding system {s!r}: use 'icd9', 'icd10' or 'both'")
            if s not in self.systems:
                raise ValueError(f"this model codes only {self.systems}, not {s!r}")
        return wanted

    @staticmethod
    def _check_texts(texts: Any) -> list[str]:
        if isinstance(texts, (str, bytes)):
            raise TypeError(
                "texts must be a list of notes (strings); wrap a single note in a list"
            )
        if not isinstance(texts, Iterable):
            raise TypeError(f"texts must be a list of strings, got {type(texts).__name__}")
        texts = list(texts)
        cleaned = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is a {type(text).__name__}, not a string")
            if not text.strip():
                raise ValueError(f"texts[{i}] is empty or white space only")
            clean = clean_text(text)
            if not clean:
                raise ValueError(
                    f"texts[{i}] has no words after cleaning (only punctuation or numbers): "
                    f"{text[:60]!r}"
                )
            cleaned.append(clean)
        return cleaned

    def _encode(self, clean: str) -> _Encoded:
        words = clean.split()
        if self._word_level:
            ids = self.tokenizer.encode(clean, max_length=self.max_length)
            return _Encoded(ids, words, list(range(len(ids))), len(words) > len(ids))
        enc = self.tokenizer(
            clean, truncation=True, max_length=self.max_length, return_offsets_mapping=True
        )
        starts, pos = [], 0
        for w in words:
            pos = clean.index(w, pos)
            starts.append(pos)
            pos += len(w)
        word_index = [
            bisect.bisect_right(starts, end - 1) - 1 if end > start else -1
            for start, end in enc["offset_mapping"]
        ]
        last = max(word_index, default=-1)
        return _Encoded(list(enc["input_ids"]), words, word_index, last < len(words) - 1)

    # -------------------------------------------------------------------- model
    def _code_tables(self) -> dict[str, Tensor]:
        if self._tables is None:
            with torch.inference_mode():
                out = self.model.code_embeddings(return_attention_weights=self.model.use_mat)
            self._tables = {s: out[s] for s in self.systems}
            self._links = self._build_links(out.get("mat_attention"))
        return self._tables

    def _build_links(self, mat_attention: Any) -> dict[str, dict[str, Any]]:
        """Per system, a CSR over the GEM links that update its codes: for code ``c`` the
        other system's codes, their ω and (with MAT) the α that ``c`` gives them."""
        def per_system(value: Any) -> dict[str, Tensor]:
            # MATConv's edge arguments: one tensor (union graph) or an (ICD-9, ICD-10) pair
            pair = value if isinstance(value, (tuple, list)) else (value, value)
            return {"icd9": pair[0].cpu(), "icd10": pair[1].cpu()}

        if mat_attention is not None:
            edge_arg, a9, a10, s9, s10 = mat_attention
            edges = per_system(edge_arg)
            alphas = {"icd9": a9.float().mean(1).cpu(), "icd10": a10.float().mean(1).cpu()}
            selfs = {"icd9": s9.float().mean(1).cpu(), "icd10": s10.float().mean(1).cpu()}
            omegas = {k: w.float() for k, w in per_system(self.model.mat_edges()[1]).items()}
            if self.graph is not None:
                for s in omegas:  # the real ω even if edge_weighting=False
                    index, weight = self.graph.edges(s)
                    if torch.equal(index, edges[s]):
                        omegas[s] = weight.float()
        elif self.graph is not None:
            edges = {s: self.graph.edges(s)[0] for s in ("icd9", "icd10")}
            omegas = {s: self.graph.edges(s)[1].float() for s in ("icd9", "icd10")}
            alphas, selfs = {}, {}
        else:
            return {}
        links: dict[str, dict[str, Any]] = {}
        for s, row in (("icd9", 0), ("icd10", 1)):
            edge_index, omega = edges[s], omegas[s]
            node, other = edge_index[row], edge_index[1 - row]
            num = self.graph.num_icd9 if (self.graph is not None and s == "icd9") else (
                self.graph.num_icd10 if self.graph is not None else self.model.num_codes[s]
            )
            perm = torch.argsort(node, stable=True)
            ptr = torch.zeros(num + 1, dtype=torch.long)
            ptr[1:] = torch.cumsum(torch.bincount(node, minlength=num), 0)
            links[s] = {
                "ptr": ptr.tolist(),
                "other": other[perm].tolist(),
                "omega": omega[perm].tolist(),
                "alpha": alphas[s][perm].tolist() if s in alphas else None,
                "self": selfs[s].tolist() if s in selfs else None,
            }
        return links

    def _linked(self, system: str, index: int) -> tuple[list[LinkedCode], float | None]:
        info = (self._links or {}).get(system)
        if info is None:
            return [], None
        other = OTHER_SYSTEM[system]
        names = self.graph.codes(other) if self.graph is not None else self.codes[other]
        titles = self._titles.get(other)
        lo, hi = info["ptr"][index], info["ptr"][index + 1]
        out = [
            LinkedCode(
                code=names[j],
                system=other,
                title=titles[j] if titles is not None else "",
                gem_weight=float(info["omega"][e]),
                attention=None if info["alpha"] is None else float(info["alpha"][e]),
            )
            for e, j in zip(range(lo, hi), info["other"][lo:hi], strict=True)
        ]
        if info["alpha"] is not None:
            out.sort(key=lambda c: (-c.attention, c.code))
        else:
            out.sort(key=lambda c: (-c.gem_weight, c.code))
        self_alpha = None if info["self"] is None else float(info["self"][index])
        return out, self_alpha

    def _head(self, system: str, h: Tensor, mask: Tensor) -> Tensor:
        model = self.model
        outputs = model.outputs[system] if model.output_layer == "separate" else None
        tables = self._code_tables()
        return model.heads[system](h, mask, tables[system], model.biases[system], outputs,
                                   keys=model.keys(system, h))

    def _token_attention(self, system: str, h: Tensor, mask: Tensor, index: Tensor) -> Tensor:
        """Label-attention weights ``[B, K, L]`` of the codes ``index [B, K]`` only (the
        head's own softmax, without recomputing the logits of every code)."""
        head = self.model.heads[system]
        queries = head.queries(self._code_tables()[system])[index]  # [B, K, d]
        scores = torch.einsum("bkd,bld->bkl", queries, self.model.keys(system, h)).float()
        scores = scores.masked_fill(~mask.bool()[:, None, :], float("-inf"))
        return torch.softmax(scores, dim=-1)

    def _batches(self, encoded: list[_Encoded], batch_size: int) -> list[list[int]]:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i].ids))
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    def _forward(self, encoded: list[_Encoded], rows: list[int], systems: Sequence[str]
                 ) -> dict[str, tuple[Tensor, Tensor]]:
        """The encoder output ``(H, mask)`` of the notes ``rows`` for each system (one pass
        of the shared encoder, or each system's own encoder)."""
        ids, mask = pad_sequences([encoded[i].ids for i in rows], self.pad_id)
        ids, mask = ids.to(self.device), mask.to(self.device)
        if self.model.shared_encoder:
            shared = self.model.encode(ids, mask)
            return {s: shared for s in systems}
        return {s: self.model.encode(ids, mask, s) for s in systems}

    # ------------------------------------------------------------------ public
    @torch.inference_mode()
    def predict_proba(
        self,
        texts: Sequence[str],
        system: str | Sequence[str] | None = None,
        batch_size: int = 16,
    ) -> dict[str, np.ndarray]:
        """Probabilities ``{system: float32 array [N, C_s]}`` in label order
        (``self.codes[system]``) for raw notes ``texts``."""
        systems = self._resolve_systems(system)
        encoded = [self._encode(t) for t in self._check_texts(texts)]
        out = {s: np.zeros((len(encoded), len(self.codes[s])), np.float32) for s in systems}
        self._code_tables()
        for rows in self._batches(encoded, batch_size):
            hidden = self._forward(encoded, rows, systems)
            for s in systems:
                h, mask = hidden[s]
                out[s][rows] = torch.sigmoid(self._head(s, h, mask).float()).cpu().numpy()
        return out

    @torch.inference_mode()
    def predict(
        self,
        texts: Sequence[str],
        system: str | Sequence[str] | None = "both",
        top_k: int | None = None,
        evidence: bool = False,
        batch_size: int = 16,
        ids: Sequence[Any] | None = None,
        num_evidence_tokens: int = 5,
    ) -> list[NotePrediction]:
        """Code raw notes.

        Args:
            texts (list[str]): Raw notes (cleaned here; empty / white-space-only /
                non-string entries raise an error naming their index).
            system (str, optional): ``"icd10"``, ``"icd9"`` or ``"both"`` (the default: every
                system of the model, also for a single-system model).
            top_k (int, optional): Return the ``k`` most probable codes of each system
                (each flagged ``predicted`` at the threshold); by default the codes above
                the tuned threshold.
            evidence (bool, optional): Attach token and GEM evidence to every returned code.
            batch_size (int, optional): Notes per forward pass. (default: :obj:`16`)
            ids (list, optional): An id per note, copied to :attr:`NotePrediction.id`.
            num_evidence_tokens (int, optional): Words per code. (default: :obj:`5`)

        Returns:
            One :class:`NotePrediction` per note, in input order.
        """
        systems = self._resolve_systems(system)
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)
                                  or top_k < 1):
            raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
        if num_evidence_tokens < 1:
            raise ValueError(f"num_evidence_tokens must be >= 1, got {num_evidence_tokens}")
        cleaned = self._check_texts(texts)
        if ids is not None:
            ids = list(ids)
            if len(ids) != len(cleaned):
                raise ValueError(f"{len(ids)} ids for {len(cleaned)} texts")
        encoded = [self._encode(t) for t in cleaned]
        self._code_tables()
        results: list[NotePrediction | None] = [None] * len(encoded)
        for rows in self._batches(encoded, batch_size):
            hidden = self._forward(encoded, rows, systems)
            per_system: dict[str, list[list[CodePrediction]]] = {}
            for s in systems:
                h, mask = hidden[s]
                probs = torch.sigmoid(self._head(s, h, mask).float())
                per_system[s] = self._select(s, probs, top_k)
                if evidence:
                    self._attach_evidence(s, h, mask, [encoded[i] for i in rows],
                                          per_system[s], num_evidence_tokens)
            for b, i in enumerate(rows):
                results[i] = NotePrediction(
                    index=i,
                    id=ids[i] if ids is not None else None,
                    codes={s: per_system[s][b] for s in systems},
                    thresholds={s: self.thresholds[s] for s in systems},
                    num_tokens=len(encoded[i].ids),
                    truncated=encoded[i].truncated,
                    unknown_words=self._unknown_share(encoded[i]),
                )
        unfamiliar = [r.index for r in results  # type: ignore[union-attr]
                      if r.unknown_words is not None and r.unknown_words > UNKNOWN_WORDS_WARN]
        if unfamiliar:
            warnings.warn(
                f"{len(unfamiliar)} of {len(results)} notes (first: index {unfamiliar[0]}) "
                f"have more than {UNKNOWN_WORDS_WARN:.0%} words the model never saw in "
                "training: its codes for them say little (a bundle trained on the synthetic "
                "corpus knows only its title words and filler)", UserWarning, stacklevel=2)
        return results  # type: ignore[return-value]

    def _unknown_share(self, encoded: _Encoded) -> float | None:
        if not self._word_level or not encoded.ids:
            return None
        unknown = self.tokenizer.unk_token_id
        return sum(i == unknown for i in encoded.ids) / len(encoded.ids)

    def _select(self, system: str, probs: Tensor, top_k: int | None) -> list[list[CodePrediction]]:
        threshold = self.thresholds[system]
        codes, titles = self.codes[system], self._titles[system]
        num = probs.size(1)
        k = num if top_k is None else min(top_k, num)
        values, index = torch.sort(probs, dim=1, descending=True, stable=True)
        values, index = values[:, :k].cpu().numpy(), index[:, :k].cpu().numpy()
        out = []
        for row_p, row_i in zip(values, index, strict=True):
            chosen = []
            for p, j in zip(row_p.tolist(), row_i.tolist(), strict=True):
                above = p > threshold
                if top_k is None and not above:
                    break
                chosen.append(CodePrediction(codes[j], titles[j], float(p), bool(above)))
            out.append(chosen)
        return out

    def _attach_evidence(
        self,
        system: str,
        h: Tensor,
        mask: Tensor,
        encoded: list[_Encoded],
        chosen: list[list[CodePrediction]],
        num_tokens: int,
    ) -> None:
        index_of = self._index_of[system]
        k = max((len(c) for c in chosen), default=0)
        if k > 0:
            index = torch.zeros(len(chosen), k, dtype=torch.long)
            for b, codes in enumerate(chosen):
                for j, c in enumerate(codes):
                    index[b, j] = index_of[c.code]
            weights = self._token_attention(system, h, mask, index.to(h.device)).cpu()
        for b, codes in enumerate(chosen):
            enc = encoded[b]
            if not codes:
                continue
            n = len(enc.ids)
            word_index = torch.tensor(enc.word_index, dtype=torch.long)
            valid = word_index >= 0
            per_word = torch.zeros(len(codes), len(enc.words))
            per_word.index_add_(1, word_index[valid], weights[b, : len(codes), :n][:, valid])
            read = len(set(word_index[valid].tolist()))  # words within max_length
            top_w, top_i = torch.topk(per_word, min(num_tokens, read), dim=1)
            for j, c in enumerate(codes):
                c.tokens = [
                    TokenEvidence(enc.words[p], p, float(w))
                    for w, p in zip(top_w[j].tolist(), top_i[j].tolist(), strict=True)
                ]
                c.linked, c.self_attention = self._linked(system, index_of[c.code])


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
