"""The official CodiEsp metric: MAP over each clinical case's ranked codes.

Re-computes what the organisers' script ``codiespD_P_evaluation.py``
(TeMU-BSC/codiesp-evaluation-script) reports, which formats the files and calls
``trectools.TrecEval.get_map(trec_eval=False)`` (trectools 0.0.42, the version its
``requeriments.txt`` pins):

* gold: codes lower-cased, a ``(case, code)`` pair counted once (the release lists
  a code once per text reference);
* predictions: each case's codes in the submitted order (rank 1 first), lower-cased,
  a repeated code kept at its first rank, codes outside the list of valid codes
  removed; the ranks then count the codes that are left, cut at ``depth`` (1000);
* average precision of a case: the sum, over its relevant codes found, of the
  precision at that rank, divided by its number of gold codes;
* MAP: the sum over the cases that have at least one valid prediction, divided by
  their number. A case without a valid prediction leaves the average (it does not
  count as 0); a predicted case without gold codes counts as 0.

One difference, on purpose: trectools reads the formatted files with pandas,
which guesses column types; here codes stay strings. (trectools 0.0.50 re-sorts a
run by code when all scores tie, as the script's do, which breaks the submitted
order: the script's result needs 0.0.42.)
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

import numpy as np

__all__ = ["OFFICIAL_DEPTH", "codiesp_average_precision", "codiesp_map", "ranked_codes"]

#: trectools' default evaluation depth, which the script keeps.
OFFICIAL_DEPTH = 1000


def _gold_sets(gold: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    sets: dict[str, set[str]] = {}
    for case, code in gold:
        sets.setdefault(str(case), set()).add(str(code).lower())
    return sets


def _clean_ranking(codes: Sequence[str], valid: Collection[str] | None,
                   depth: int) -> list[str]:
    seen: set[str] = set()
    out = []
    for code in codes:
        code = str(code).lower()
        if code in seen:
            continue
        seen.add(code)  # the script de-duplicates before it filters
        if valid is not None and code not in valid:
            continue
        out.append(code)
    return out[:depth]


def codiesp_average_precision(
    gold: Iterable[tuple[str, str]],
    predictions: Mapping[str, Sequence[str]],
    valid_codes: Collection[str] | None = None,
    depth: int = OFFICIAL_DEPTH,
) -> dict[str, float]:
    """Average precision of every case that enters the official MAP.

    Args:
        gold: ``(case id, code)`` pairs of the gold standard (a ``*D.tsv`` /
            ``*P.tsv`` file's rows).
        predictions: ``{case id: codes, best first}``.
        valid_codes: The subtask's valid codes (any case); ``None`` keeps every
            predicted code.
        depth (int): Ranks evaluated per case.

    Returns:
        ``{case id: AP}`` for the cases with at least one valid prediction.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    gold_sets = _gold_sets(gold)
    valid = None if valid_codes is None else {str(c).lower() for c in valid_codes}
    result: dict[str, float] = {}
    for case, codes in predictions.items():
        if isinstance(codes, str):
            raise ValueError(f"predictions for case {case!r}: expected a sequence of codes, "
                             f"got the string {codes!r}")
        ranking = _clean_ranking(codes, valid, depth)
        if not ranking:
            continue
        relevant = gold_sets.get(str(case), set())
        hits, total = 0, 0.0
        for rank, code in enumerate(ranking, 1):
            if code in relevant:
                hits += 1
                total += hits / rank
        result[str(case)] = total / len(relevant) if relevant else 0.0
    return result


def codiesp_map(
    gold: Iterable[tuple[str, str]],
    predictions: Mapping[str, Sequence[str]],
    valid_codes: Collection[str] | None = None,
    depth: int = OFFICIAL_DEPTH,
) -> float:
    """The official CodiEsp MAP (rules in the module docstring); 0.0 when no case
    has a valid prediction.

    Example:
        >>> gold = [("a", "r52"), ("a", "n44.8"), ("b", "i10")]
        >>> codiesp_map(gold, {"a": ["N44.8", "x", "r52"], "b": ["e11.9", "i10"]})
        0.6666666666666666
    """
    ap = codiesp_average_precision(gold, predictions, valid_codes, depth)
    return float(np.mean(list(ap.values()))) if ap else 0.0


def ranked_codes(probs: np.ndarray, codes: Sequence[str], case_ids: Sequence[str],
                 depth: int = OFFICIAL_DEPTH) -> dict[str, list[str]]:
    """A model's submission: ``{case id: its ``depth`` best codes, most probable
    first}`` from probabilities ``[cases, codes]`` in ``codes`` order (ties keep label
    order). Codes are written as CodiEsp writes them: lower case, dotted, a
    3-character diagnosis without Edin et al.'s trailing dot (``I10.`` -> ``i10``)."""
    probs = np.asarray(probs)
    if probs.shape != (len(case_ids), len(codes)):
        raise ValueError(f"probs has shape {probs.shape}, expected "
                         f"({len(case_ids)}, {len(codes)}) (cases, codes)")
    written = [c.lower().rstrip(".") for c in codes]
    order = np.argsort(-probs, axis=1, kind="stable")[:, :depth]
    return {str(case): [written[j] for j in row] for case, row in zip(case_ids, order,
                                                                     strict=True)}
