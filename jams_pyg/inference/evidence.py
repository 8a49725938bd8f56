r"""Why a code was predicted, for :meth:`JAMSPredictor.predict(evidence=True)
<jams_pyg.inference.predictor.JAMSPredictor.predict>`.

* **tokens**: the words of the note (Edin-cleaned, as the model read them) with the highest
  label-attention weight :math:`a_{cl}` of the code's head; for a subword tokenizer the
  weights of a word's pieces are summed (:func:`token_evidence`, over the words of
  :func:`encode_note`);
* **linked**: the GEM-linked codes of the other system with their GEM weight :math:`\omega`
  and, with MAT, the attention weight :math:`\alpha_{ij}` the code gives each of them in
  MATConv (averaged over heads); ``self_attention`` is :math:`\alpha_{ii}`
  (:class:`LinkEvidence`).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from jams_pyg.graph.gem_graph import GEMGraph
from jams_pyg.icd.codes import OTHER_SYSTEM
from jams_pyg.inference.notes import LinkedCode, TokenEvidence

__all__ = ["EncodedNote", "LinkEvidence", "encode_note", "token_evidence"]


@dataclass
class EncodedNote:
    """A cleaned note as the model reads it: its token ids and the word of every token."""

    ids: list[int]
    words: list[str]
    word_index: list[int]  #: word of every token position, -1 for special tokens
    truncated: bool  #: the note had words beyond ``max_length`` tokens
    #: share of the tokens the word vocabulary does not know (``None`` for a subword
    #: tokenizer, which knows every word)
    unknown_words: float | None = None


def encode_note(tokenizer: Any, clean: str, max_length: int) -> EncodedNote:
    """Tokenise a cleaned note as in training (at most ``max_length`` tokens) with a
    :class:`~jams_pyg.data.WordTokenizer` (one token per word) or a Hugging Face fast
    tokenizer (its offsets map the pieces to words)."""
    words = clean.split()
    if hasattr(tokenizer, "vocab") and hasattr(tokenizer, "max_length"):  # word level
        ids = tokenizer.encode(clean, max_length=max_length)
        unknown = (sum(i == tokenizer.unk_token_id for i in ids) / len(ids)) if ids else None
        return EncodedNote(ids, words, list(range(len(ids))), len(words) > len(ids), unknown)
    enc = tokenizer(clean, truncation=True, max_length=max_length, return_offsets_mapping=True)
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
    return EncodedNote(list(enc["input_ids"]), words, word_index, last < len(words) - 1)


def token_evidence(weights: Tensor, note: EncodedNote, num_tokens: int
                   ) -> list[list[TokenEvidence]]:
    """The ``num_tokens`` words of ``note`` with the highest attention weight, per code.

    Args:
        weights (Tensor): Token attention weights ``[K, L]`` of ``K`` codes
            (``L >= len(note.ids)``; padding beyond the note is ignored).
        note (EncodedNote): The note the weights are over.
        num_tokens (int): Words per code (fewer when the note has fewer words read).
    """
    word_index = torch.tensor(note.word_index, dtype=torch.long)
    valid = word_index >= 0
    per_word = torch.zeros(weights.size(0), len(note.words))
    per_word.index_add_(1, word_index[valid], weights[:, : len(note.ids)][:, valid])
    read = len(set(word_index[valid].tolist()))  # words within max_length
    top_w, top_i = torch.topk(per_word, min(num_tokens, read), dim=1)
    return [
        [TokenEvidence(note.words[p], p, float(w))
         for w, p in zip(ws, ps, strict=True)]
        for ws, ps in zip(top_w.tolist(), top_i.tolist(), strict=True)
    ]


class LinkEvidence:
    r"""The GEM links that update the codes of one system (``graph.edges(system)``), grouped
    by code, with the other end's code, title and :math:`\omega`.

    Args:
        graph (GEMGraph): The GEM graph.
        system (str): The system whose codes the links update.
        titles (list[str]): Titles of the other system's codes (graph order).
    """

    def __init__(self, graph: GEMGraph, system: str, titles: Sequence[str]) -> None:
        self.system, self.other_system = system, OTHER_SYSTEM[system]
        self.names, self.titles = graph.codes(self.other_system), titles
        # the links of code i are positions ptr[i]:ptr[i + 1] of perm (edge ids)
        adjacency = graph.adjacency(system)
        self.perm = adjacency.perm
        self.ptr = adjacency.ptr.tolist()
        self.other = adjacency.neighbor.tolist()
        self.omega = adjacency.weight.float().tolist()

    def grouped(self, per_edge: Tensor) -> list[float]:
        """Per-link values in ``graph.edges(system)`` order (e.g. MAT's α) in the order of
        :meth:`linked`'s ``alpha``."""
        return per_edge[self.perm.to(per_edge.device)].tolist()

    def linked(self, index: int, alpha: Sequence[float] | None = None) -> list[LinkedCode]:
        r"""The linked codes of code ``index``, by :math:`\alpha` (with ``alpha``, from
        :meth:`grouped`) or else by :math:`\omega`, then by code."""
        lo, hi = self.ptr[index], self.ptr[index + 1]
        out = [
            LinkedCode(
                code=self.names[j],
                system=self.other_system,
                title=self.titles[j],
                gem_weight=float(self.omega[e]),
                attention=None if alpha is None else float(alpha[e]),
            )
            for e, j in zip(range(lo, hi), self.other[lo:hi], strict=True)
        ]
        if alpha is not None:
            out.sort(key=lambda c: (-c.attention, c.code))
        else:
            out.sort(key=lambda c: (-c.gem_weight, c.code))
        return out
