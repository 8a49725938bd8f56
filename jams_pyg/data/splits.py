"""Train/val/test splits of MIMIC-IV documents, as Edin et al. (2023) made them.

Two ways, selected by name (:data:`SPLIT_METHODS`):

* ``"edin-published"``: Edin et al.'s published split files,
  ``files/data/mimiciv_icd{9,10}/mimiciv_icd{9,10}_split.feather`` of
  JoakimEdin/medical-coding-reproducibility (commit c0e1d42, Apache-2.0; the notice is
  ``jams_pyg/resources/splits/NOTICE``), shipped in this package
  (:func:`published_split_path`). They are the splits behind Edin et al.'s and the JAMS
  paper's MIMIC-IV results (209,326 ICD-9 and 122,279 ICD-10 admissions of MIMIC-IV
  v2.2 / MIMIC-IV-Note v2.2).
* ``"edin-algorithm"``: their split algorithm, re-implemented for any other data (another
  MIMIC-IV release, a user's own corpus): ``prepare_data/generate_mimiciv_splits.py``
  with ``src/utils/stratify_function/stratify.py`` (:func:`iterative_stratification`,
  by Sotiris Lamprinidis). Per dataset: the patients' labels are their documents'
  ``target`` lists concatenated in file order; one two-way pass puts 15 % of the
  patients in test, a second one puts 10/85 of the rest in val; one
  ``random.Random(10)`` serves every pass, ICD-9 before ICD-10, as their script seeds
  ``random`` once and splits ICD-9 first (:func:`edin_algorithm_splits`). The result
  equals their script's split file (``tests/test_splits.py``, on a fixture their code
  was run on).

The synthetic corpus keeps its own split (:func:`jams_pyg.data.edin.split_by_patient`,
our patient-level variant) for now: every committed result table depends on it.
:func:`edin_split` is the hook to switch it to Edin et al.'s algorithm.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Hashable, Sequence
from importlib import resources
from pathlib import Path

from jams_pyg.data.defaults import SPLIT_METHODS
from jams_pyg.icd.codes import System, check_system

__all__ = [
    "SPLIT_METHODS", "TEST_SIZE", "VAL_SIZE", "edin_algorithm_splits", "edin_split",
    "iterative_stratification", "published_split_path",
]

#: Edin et al.'s ``TEST_SIZE`` and ``VAL_SIZE`` (``generate_mimiciv_splits.py``).
TEST_SIZE = 0.15
VAL_SIZE = 0.1
#: Their script's ``random.seed(10)``.
EDIN_SPLIT_SEED = 10


def published_split_path(system: System) -> Path:
    """The shipped copy of Edin et al.'s published split file of ``system``
    (``mimiciv_{system}_split.feather``: columns ``_id`` (int64) and ``split``)."""
    name = f"mimiciv_{check_system(system)}_split.feather"
    return Path(str(resources.files("jams_pyg") / "resources" / "splits" / name))


def iterative_stratification(items: Sequence[Hashable], labels: Sequence[Sequence[str]],
                             ratios: Sequence[float], rng: random.Random) -> list[list]:
    """Edin et al.'s ``iterative_stratification`` (their ``stratify.py``), step for step.

    Repeatedly take the label with the fewest remaining occurrences (ties: the one
    counted first, in first-occurrence order, comes last and is taken); place every
    remaining item carrying it, from the last such item to the first, in the set whose
    desired count of that label is largest; ties go to the set with the largest desired
    number of items, then to ``rng.choice`` among the tied sets. Counts are occurrences
    (a label listed twice for an item counts twice), and the desired item counts start
    at ``number of distinct labels x ratio``, both as in their code; the results
    therefore match theirs exactly, including every random draw. Their version rescans
    all items per label (quadratic); this one keeps per-label item lists and a heap.

    Args:
        items: The items (e.g. patient ids).
        labels: Each item's labels; every item needs at least one.
        ratios: The sets' shares, e.g. ``[0.85, 0.15]``; at least two.
        rng: The random source of the last tie-break.

    Returns:
        One list of items per ratio, each in placement order.
    """
    if len(items) != len(labels):
        raise ValueError(f"{len(items)} items but {len(labels)} label lists")
    if len(ratios) < 2:
        raise ValueError(f"need at least two ratios, got {list(ratios)}")
    empty = next((items[i] for i, y in enumerate(labels) if not len(y)), None)
    if empty is not None:
        raise ValueError(f"item {empty!r} has no labels: Edin et al.'s iterative "
                         "stratification needs at least one per item")
    count: dict[str, int] = {}  # remaining occurrences, in first-occurrence order
    members: dict[str, list[int]] = {}
    for i, y in enumerate(labels):
        for label in y:
            count[label] = count.get(label, 0) + 1
            if not members.setdefault(label, []) or members[label][-1] != i:
                members[label].append(i)
    rank = {label: r for r, label in enumerate(count)}
    folds = range(len(ratios))
    desired_samples = [len(count) * r for r in ratios]
    desired_labels = {label: [n * r for r in ratios] for label, n in count.items()}
    placed = [False] * len(items)
    sets: list[list] = [[] for _ in ratios]
    # Heap of (count, -rank): the least common label, the last counted among equals.
    heap = [(n, -rank[label], label) for label, n in count.items()]
    heapq.heapify(heap)
    while heap:
        n, _, label = heapq.heappop(heap)
        if count.get(label) != n:
            continue  # a stale entry
        want = desired_labels[label]
        for i in reversed(members[label]):
            if placed[i]:
                continue
            # sorted(..., reverse=True) is stable: equal values keep set order.
            by_label = sorted(folds, key=lambda f: want[f], reverse=True)
            if want[by_label[0]] != want[by_label[1]]:
                chosen = by_label[0]
            else:
                tied = [f for f in by_label if want[f] == want[by_label[0]]]
                by_size = sorted(tied, key=lambda f: desired_samples[f], reverse=True)
                if desired_samples[by_size[0]] != desired_samples[by_size[1]]:
                    chosen = by_size[0]
                else:
                    chosen = rng.choice(by_size)
            sets[chosen].append(items[i])
            placed[i] = True
            for other in labels[i]:
                desired_labels[other][chosen] -= 1
                left = count.get(other, 0) - 1
                if left > 0:
                    count[other] = left
                    heapq.heappush(heap, (left, -rank[other], other))
                else:
                    count.pop(other, None)
            desired_samples[chosen] -= 1
    return sets


def edin_split(subjects: Sequence[int], targets: Sequence[Sequence[str]],
               rng: random.Random) -> list[str]:
    """Edin et al.'s ``generate_split`` for one dataset: the split of each document.

    Args:
        subjects: Each document's patient, in the data file's order.
        targets: Each document's ``target`` list (procedures + diagnoses), same order.
        rng: The random source, advanced as their global ``random`` is.

    Returns:
        ``"train"``, ``"val"`` or ``"test"`` for each document.
    """
    if len(subjects) != len(targets):
        raise ValueError(f"{len(subjects)} subjects but {len(targets)} target lists")
    # groupby(subject_id)[target].sum(): patients in ascending order, their targets
    # concatenated in file order.
    codes: dict[int, list[str]] = {}
    for subject, target in zip(subjects, targets, strict=True):
        codes.setdefault(subject, []).extend(target)
    patients = sorted(codes)
    train, test = iterative_stratification(
        patients, [codes[p] for p in patients], [1 - TEST_SIZE, TEST_SIZE], rng)
    val_size = VAL_SIZE / (1 - TEST_SIZE)
    train, val = iterative_stratification(
        train, [codes[p] for p in train], [1 - val_size, val_size], rng)
    split_of = {p: "train" for p in train}
    split_of.update({p: "val" for p in val})
    split_of.update({p: "test" for p in test})
    return [split_of[s] for s in subjects]


def edin_algorithm_splits(
    datasets: dict[str, tuple[Sequence[int], Sequence[Sequence[str]]]],
    seed: int = EDIN_SPLIT_SEED,
) -> dict[str, list[str]]:
    """Split several datasets as ``generate_mimiciv_splits.py`` does: one
    ``random.Random(seed)`` for all, in the order given (theirs: ICD-9, then ICD-10).

    Args:
        datasets: ``{name: (subjects, targets)}`` per dataset, documents in file order.
        seed (int): Their ``random.seed(10)``.

    Returns:
        ``{name: split of each document}``.
    """
    rng = random.Random(seed)
    return {name: edin_split(subjects, targets, rng)
            for name, (subjects, targets) in datasets.items()}
