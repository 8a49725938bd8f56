r"""Code new notes with a trained model: :class:`JAMSPredictor`.

A predictor holds a model bundle (:mod:`jams_pyg.inference.bundle`): the model, its tokenizer, the
label vocabularies, the tuned thresholds and the GEM graph.  For every note it returns, per
coding system, codes sorted by probability with their CMS titles (:mod:`jams_pyg.icd.titles`) and
the decision at the tuned threshold (``probability > threshold``, as
:func:`jams_pyg.eval.metrics.compute_metrics`), optionally with evidence
(:mod:`jams_pyg.inference.evidence`): the words its label attention weighs most and its GEM
neighbours in the other system with their :math:`\omega` and MAT attention :math:`\alpha`.
A note the bundle's out-of-distribution calibration flags (more unknown words than 99 % of
its validation notes, :mod:`jams_pyg.inference.ood`) has its codes withheld and says why in
:attr:`NotePrediction.ood <jams_pyg.inference.notes.NotePrediction.ood>`; probabilities
(:meth:`JAMSPredictor.predict_proba`) are never changed.

The predictor runs the model through its own API only: :meth:`JAMS.code_embeddings
<jams_pyg.models.jams.JAMS.code_embeddings>` once per call (MAT and its attention),
:meth:`~jams_pyg.models.jams.JAMS.encode` once per batch,
:meth:`~jams_pyg.models.jams.JAMS.score` per system and, for evidence,
:meth:`~jams_pyg.models.jams.JAMS.attention_weights` of the listed codes.

Example::

    from jams_pyg.inference.predictor import JAMSPredictor

    predictor = JAMSPredictor.load("runs/jams_laat/model")
    [note] = predictor.predict(["Pt admitted with renovascular hypertension ..."],
                               system="both", top_k=5, evidence=True)
    for code in note.codes["icd10"]:
        print(code.code, code.title, round(code.probability, 3), code.predicted)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from jams_pyg.data.text import PAD_ID, clean_text, pad_sequences
from jams_pyg.icd.codes import OTHER_SYSTEM, SYSTEMS
from jams_pyg.inference.bundle import Bundle, load_bundle
from jams_pyg.inference.evidence import EncodedNote, LinkEvidence, encode_note, token_evidence
from jams_pyg.inference.notes import CodePrediction, NotePrediction
from jams_pyg.inference.ood import CALL_MIN_NOTES, FIRES_ON_MOST, OOD_MODES, OODWarning

__all__ = ["UNKNOWN_WORDS_WARN", "JAMSPredictor"]

PathLike = str | os.PathLike[str]

#: ``predict`` warns when a note has more than this share of words the model never saw, for
#: a bundle without an out-of-distribution calibration (:mod:`jams_pyg.inference.ood`; a
#: calibrated bundle flags notes at its own threshold instead).
UNKNOWN_WORDS_WARN = 0.5

#: Per system: MAT's α per GEM link (in :meth:`LinkEvidence.grouped` order) and per code.
MATAlpha = dict[str, tuple[list[float], list[float]]]


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
    :func:`~jams_pyg.inference.bundle.save_bundle`), with :meth:`from_model` from a model in
    memory, or directly from a :class:`~jams_pyg.inference.bundle.Bundle`.  Notes are
    cleaned with Edin et al.'s preprocessing (:func:`~jams_pyg.data.clean_text`), tokenised
    as in training, truncated to ``max_length`` tokens and scored in length-sorted batches
    under :func:`torch.inference_mode`.  Every call computes the (MAT-refined) code tables
    once for all its batches; the encoder runs once per note for all requested systems.

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
        #: the out-of-distribution calibration (``None``: the bundle has none)
        self.ood = bundle.ood
        pad = getattr(self.tokenizer, "pad_token_id", PAD_ID)
        self.pad_id = PAD_ID if pad is None else int(pad)
        self._titles = {s: _titles(c, s) for s, c in self.codes.items()}
        self._index_of = {s: {c: i for i, c in enumerate(v)} for s, v in self.codes.items()}
        self._links: dict[str, LinkEvidence] = {}
        if self.graph is not None:
            for s in SYSTEMS:
                if s not in self._titles:
                    self._titles[s] = _titles(self.graph.codes(s), s)
            self._links = {s: LinkEvidence(self.graph, s, self._titles[OTHER_SYSTEM[s]])
                           for s in self.systems}
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
        ood: dict[str, Any] | None = None,
    ) -> JAMSPredictor:
        """A predictor over an in-memory model (same arguments as
        :func:`jams_pyg.inference.bundle.save_bundle`, checked as there by
        :meth:`Bundle.from_model <jams_pyg.inference.bundle.Bundle.from_model>`); the model is
        put in ``eval()`` mode."""
        bundle = Bundle.from_model(model, tokenizer, codes, thresholds, graph, max_length, ood)
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
        return self

    def __repr__(self) -> str:
        codes = ", ".join(f"{s}={len(c)}" for s, c in self.codes.items())
        return (
            f"{self.__class__.__name__}(model={getattr(self.bundle.model_config, 'model', '?')!r}, "
            f"mat={self.model.use_mat}, codes=({codes}), max_length={self.max_length}, "
            f"device={self.device})"
        )

    # --------------------------------------------------------------------- inputs
    def resolve_systems(self, system: str | Sequence[str] | None) -> tuple[str, ...]:
        """The systems ``system`` asks for (``None`` / ``"both"``: every system of the
        model); a ValueError for a system the model does not code ("this model codes
        only icd10, not icd9")."""
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
                raise ValueError(f"this model codes only {' and '.join(self.systems)}, "
                                 f"not {s}")
        return wanted

    @staticmethod
    def _check_texts(texts: Any, clean: bool = True) -> list[str]:
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
            if not clean:  # a dataset's preprocessed text, tokenised as in training
                cleaned.append(text)
                continue
            clean_note = clean_text(text)
            if not clean_note:
                raise ValueError(
                    f"texts[{i}] has no words after cleaning (only punctuation or numbers): "
                    f"{text[:60]!r}"
                )
            cleaned.append(clean_note)
        return cleaned

    def _encode(self, texts: Any, clean: bool = True) -> list[EncodedNote]:
        return [encode_note(self.tokenizer, text, self.max_length)
                for text in self._check_texts(texts, clean)]

    # -------------------------------------------------------------------- model
    def _code_tables(self, attention: bool = False) -> dict[str, Any]:
        """The model's code tables for one whole call (one MAT pass); with ``attention`` and
        MAT also its ``link_attention``."""
        return self.model.code_embeddings(return_attention_weights=attention
                                          and self.model.use_mat)

    def _scored_batches(
        self,
        encoded: list[EncodedNote],
        systems: Sequence[str],
        batch_size: int,
        tables: dict[str, Any],
    ) -> Iterator[tuple[list[int], dict[str, tuple[Tensor, Tensor, Tensor]]]]:
        """Per length-sorted batch: its note indices and, per system, the encoder output
        ``(H, mask)`` and the probabilities ``[B, C_s]`` (a shared encoder runs once for
        all systems)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        model = self.model
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i].ids))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, mask = pad_sequences([encoded[i].ids for i in rows], self.pad_id)
            ids, mask = ids.to(self.device), mask.to(self.device)
            hidden: dict[str | None, tuple[Tensor, Tensor]] = {}
            scored = {}
            for s in systems:
                key = None if model.shared_encoder else s
                if key not in hidden:
                    hidden[key] = model.encode(ids, mask, s)
                h, m = hidden[key]
                probs = torch.sigmoid(model.score(h, m, s, code_tables=tables).float())
                scored[s] = (h, m, probs)
            yield rows, scored

    # ------------------------------------------------------------------ public
    @torch.inference_mode()
    def predict_proba(
        self,
        texts: Sequence[str],
        system: str | Sequence[str] | None = None,
        batch_size: int = 16,
        clean: bool = True,
    ) -> dict[str, np.ndarray]:
        """Probabilities ``{system: float32 array [N, C_s]}`` in label order
        (``self.codes[system]``) for raw notes ``texts``; with ``clean=False`` the texts
        are a dataset's preprocessed text, tokenised as training does (without
        :func:`~jams_pyg.data.clean_text`: a punctuation-only text training accepted is
        scored, not refused)."""
        systems = self.resolve_systems(system)
        encoded = self._encode(texts, clean)
        out = {s: np.zeros((len(encoded), len(self.codes[s])), np.float32) for s in systems}
        tables = self._code_tables()
        for rows, scored in self._scored_batches(encoded, systems, batch_size, tables):
            for s in systems:
                out[s][rows] = scored[s][2].cpu().numpy()
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
        ood: str = "withhold",
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
            ood (str, optional): What a note the bundle's calibration flags as out of
                distribution gets (:mod:`jams_pyg.inference.ood`): ``"withhold"`` (the
                default): no code ``predicted``, an empty list without ``top_k``;
                ``"mark"``: flagged, codes kept; ``"off"``: no check (and no code
                frequency flags). A bundle without calibration checks nothing.

        Returns:
            One :class:`NotePrediction` per note, in input order; ``NotePrediction.ood``
            holds the check.
        """
        systems = self.resolve_systems(system)
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)
                                  or top_k < 1):
            raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
        if num_evidence_tokens < 1:
            raise ValueError(f"num_evidence_tokens must be >= 1, got {num_evidence_tokens}")
        if ood not in OOD_MODES:
            raise ValueError(f"ood must be one of {OOD_MODES}, got {ood!r}")
        encoded = self._encode(texts)
        checks = [self._ood_check(note, ood) for note in encoded]
        # the note-independent code flags: from the calibration (validation notes) and
        # from this call (a code above its threshold on every note of it)
        common = self._fires_on_most(systems) if ood != "off" else {}
        call_rule = ood != "off" and len(encoded) >= CALL_MIN_NOTES
        above = {s: torch.zeros(len(self.codes[s]), dtype=torch.long) for s in systems}
        if ids is not None:
            ids = list(ids)
            if len(ids) != len(encoded):
                raise ValueError(f"{len(ids)} ids for {len(encoded)} texts")
        tables = self._code_tables(attention=evidence)
        alpha = self._mat_alpha(tables)
        results: list[NotePrediction | None] = [None] * len(encoded)
        for rows, scored in self._scored_batches(encoded, systems, batch_size, tables):
            per_system: dict[str, list[list[CodePrediction]]] = {}
            for s in systems:
                h, mask, probs = scored[s]
                above[s] += (probs > self.thresholds[s]).sum(0).cpu()
                withheld = [bool(checks[i] and checks[i]["withheld"]) for i in rows]
                per_system[s] = self._select(s, probs, top_k, withheld, common.get(s))
                if evidence:
                    self._attach_evidence(s, h, mask, [encoded[i] for i in rows],
                                          per_system[s], num_evidence_tokens, tables,
                                          alpha.get(s))
            for b, i in enumerate(rows):
                results[i] = NotePrediction(
                    index=i,
                    id=ids[i] if ids is not None else None,
                    codes={s: per_system[s][b] for s in systems},
                    thresholds={s: self.thresholds[s] for s in systems},
                    num_tokens=len(encoded[i].ids),
                    truncated=encoded[i].truncated,
                    unknown_words=encoded[i].unknown_words,
                    ood=checks[i],
                )
        frequent: list[str] = []
        if call_rule:
            for s in systems:
                most = (above[s] > FIRES_ON_MOST * len(encoded)).tolist()
                ranked = [self.codes[s][j] for j in torch.argsort(-above[s], stable=True)
                          .tolist() if most[j]]  # most often above first
                names = set(ranked)
                frequent += ranked
                for r in results:
                    for c in r.codes[s]:  # type: ignore[union-attr]
                        c.fires_on_most_call_notes = c.code in names
        flagged = [r.index for r in results if r.ood and r.ood["out_of_distribution"]]  # type: ignore[union-attr]
        unfamiliar = [r.index for r in results  # type: ignore[union-attr]
                      if r.unknown_words is not None and r.unknown_words > UNKNOWN_WORDS_WARN]
        if flagged:
            first = results[flagged[0]].ood  # type: ignore[union-attr]
            warnings.warn(
                f"{len(flagged)} of {len(results)} notes (first: index {flagged[0]}) are out "
                f"of distribution: more than {first['threshold']:.1%} of their words are "
                f"unknown to the model (the bundle's {first['quantile']:.0%} quantile of its "
                "validation notes); their codes are "
                + ("withheld" if ood == "withhold" else "kept, marked"),
                OODWarning, stacklevel=3)
        if frequent:
            shown = ", ".join(frequent[:6]) + (", ..." if len(frequent) > 6 else "")
            warnings.warn(
                f"{len(frequent)} codes are above their threshold on more than half of the "
                f"{len(results)} notes (out-of-distribution ones included): {shown}; such a "
                "code may not depend on the note (\"fires_on_most_call_notes\")", OODWarning,
                stacklevel=3)
        # independent of the call rule: a bundle without calibration still says so
        if unfamiliar and (self.ood is None or self.ood["threshold"] is None or ood == "off"):
            warnings.warn(
                f"{len(unfamiliar)} of {len(results)} notes (first: index {unfamiliar[0]}) "
                f"have more than {UNKNOWN_WORDS_WARN:.0%} words the model never saw in "
                "training: its codes for them say little (a bundle trained on the synthetic "
                "corpus knows only its title words and filler)", OODWarning, stacklevel=3)
        return results  # type: ignore[return-value]

    def _ood_check(self, note: EncodedNote, mode: str) -> dict[str, Any] | None:
        """The out-of-distribution record of one note (``None``: nothing checked)."""
        if mode == "off" or self.ood is None or self.ood["threshold"] is None \
                or note.unknown_words is None:
            return None
        threshold, value = float(self.ood["threshold"]), float(note.unknown_words)
        flagged = value > threshold
        withheld = flagged and mode == "withhold"
        reason = None
        if flagged:
            reason = (f"{value:.0%} of its words are unknown to the model, more than "
                      f"{threshold:.1%} (the {self.ood['quantile']:.0%} quantile of "
                      f"{self.ood['num_notes']} validation notes): the model cannot read it; "
                      + ("its codes are withheld" if withheld else "its codes say little"))
        return {"statistic": self.ood["statistic"], "value": value, "threshold": threshold,
                "quantile": float(self.ood["quantile"]), "out_of_distribution": flagged,
                "withheld": withheld, "reason": reason}

    def _fires_on_most(self, systems: Sequence[str]) -> dict[str, list[bool]]:
        """Per system and code (label order): fired on more than the calibration's share
        (one half) of its validation notes; empty without calibration."""
        if self.ood is None:
            return {}
        share = float(self.ood["fires_on_most"])
        return {s: [rate > share for rate in self.ood["fire_rate"][s]] for s in systems}

    def _select(self, system: str, probs: Tensor, top_k: int | None,
                withheld: Sequence[bool] | None = None,
                common: Sequence[bool] | None = None) -> list[list[CodePrediction]]:
        threshold = self.thresholds[system]
        codes, titles = self.codes[system], self._titles[system]
        num = probs.size(1)
        k = num if top_k is None else min(top_k, num)
        values, index = torch.sort(probs, dim=1, descending=True, stable=True)
        values, index = values[:, :k].cpu().numpy(), index[:, :k].cpu().numpy()
        out = []
        for b, (row_p, row_i) in enumerate(zip(values, index, strict=True)):
            chosen = []
            hold = bool(withheld and withheld[b])
            if hold and top_k is None:  # a withheld note lists no code
                out.append(chosen)
                continue
            for p, j in zip(row_p.tolist(), row_i.tolist(), strict=True):
                above = p > threshold
                if top_k is None and not above:
                    break
                chosen.append(CodePrediction(
                    codes[j], titles[j], float(p), bool(above) and not hold,
                    fires_on_most_notes=None if common is None else common[j]))
            out.append(chosen)
        return out

    def _mat_alpha(self, tables: dict[str, Any]) -> MATAlpha:
        """MAT's attention from ``code_embeddings(return_attention_weights=True)``, averaged
        over heads: per system, α per GEM link and the self α per code."""
        return {
            s: (self._links[s].grouped(alpha.float().mean(1)),
                self_alpha.float().mean(1).tolist())
            for s, (_, alpha, self_alpha) in tables.get("link_attention", {}).items()
            if s in self._links
        }

    def _attach_evidence(
        self,
        system: str,
        h: Tensor,
        mask: Tensor,
        encoded: list[EncodedNote],
        chosen: list[list[CodePrediction]],
        num_tokens: int,
        tables: dict[str, Any],
        alpha: tuple[list[float], list[float]] | None,
    ) -> None:
        index_of = self._index_of[system]
        k = max((len(c) for c in chosen), default=0)
        if k == 0:
            return
        index = torch.zeros(len(chosen), k, dtype=torch.long)
        for b, codes in enumerate(chosen):
            for j, c in enumerate(codes):
                index[b, j] = index_of[c.code]
        weights = self.model.attention_weights(h, mask, system, index.to(h.device),
                                               code_tables=tables).cpu()
        links = self._links.get(system)
        link_alpha, self_alpha = alpha if alpha is not None else (None, None)
        for b, codes in enumerate(chosen):
            if not codes:
                continue
            tokens = token_evidence(weights[b, : len(codes)], encoded[b], num_tokens)
            for c, words in zip(codes, tokens, strict=True):
                i = index_of[c.code]
                c.tokens = words
                c.linked = links.linked(i, link_alpha) if links is not None else []
                c.self_attention = None if self_alpha is None else float(self_alpha[i])
