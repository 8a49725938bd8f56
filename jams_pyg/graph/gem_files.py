"""Reading GEM files into the link sets of :class:`~jams_pyg.graph.gem_graph.GEMGraph`:
every code that takes part in the files is a node, each distinct (ICD-9, ICD-10) pair one
link with its :math:`\\omega`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from jams_pyg.graph.edges import sort_links, union_links
from jams_pyg.icd.codes import CodeKey, Kind, System, format_code, is_valid_raw
from jams_pyg.icd.gem import NO_MAP_TARGETS, DataFileError, PathLike, gem_kind, iter_gem_rows

#: :math:`\omega` of a pair some GEM line maps without the approximate flag.
EXACT_WEIGHT = 1.0
#: :math:`\omega` of a pair only mapped approximately.
APPROXIMATE_WEIGHT = 0.5


class GEMLinks(NamedTuple):
    """Everything GEM files say, over every code they name.

    Attributes:
        icd9_keys (list[CodeKey]): ICD-9 nodes, sorted ``(kind, raw code)`` keys.
        icd10_keys (list[CodeKey]): ICD-10 nodes, likewise.
        forward (tuple[Tensor, Tensor]): ``(edge_index, edge_weight)`` of the pairs of the
            forward files, sorted by ICD-9 then ICD-10 index.
        backward (tuple[Tensor, Tensor]): likewise for the backward files.
    """

    icd9_keys: list[CodeKey]
    icd10_keys: list[CodeKey]
    forward: tuple[Tensor, Tensor]
    backward: tuple[Tensor, Tensor]

    def names(self, system: System) -> list[str]:
        """Dotted node names of ``system``, in node order."""
        keys = self.icd9_keys if system == "icd9" else self.icd10_keys
        return [format_code(raw, system, kind) for kind, raw in keys]

    def union(self) -> tuple[Tensor, Tensor]:
        """The pairs of either file set (exact in either wins)."""
        return union_links(*self.forward, *self.backward, len(self.icd9_keys),
                           len(self.icd10_keys))


def as_path_list(paths: PathLike | Sequence[PathLike] | None) -> list[PathLike]:
    """One path, several or none, as a list."""
    if paths is None:
        return []
    if isinstance(paths, (str, Path)) or not isinstance(paths, Sequence):
        return [paths]  # type: ignore[list-item]
    return list(paths)


#: Distinct links of GEM files: ``(kind, ICD-9 code, ICD-10 code) -> exact``.
Pairs = dict[tuple[str, str, str], bool]


def _gem_pairs(path: PathLike, forward: bool) -> tuple[Pairs, set[CodeKey], set[CodeKey]]:
    """The distinct (icd9, icd10) pairs of one GEM file (exact if any line maps the pair
    without the approximate flag) and the codes that take part.

    The file is streamed (:func:`~jams_pyg.icd.gem.iter_gem_rows`) and only distinct pairs
    and codes are kept, so memory grows with the distinct links, not the lines."""
    sources: dict[str, int] = {}  # code -> its first line, for the error message
    targets: dict[str, int] = {}
    exact: dict[tuple[str, str], bool] = {}
    seen_kind: Kind | None = None
    for number, source, target, flags in iter_gem_rows(path):
        if source not in sources:
            sources[source] = number
        if flags[1] == "1":  # no map: the source is a node, without a link
            seen_kind = NO_MAP_TARGETS[target]
            continue
        if target not in targets:
            targets[target] = number
        pair = (source, target)
        if flags[0] == "0":
            exact[pair] = True
        elif pair not in exact:
            exact[pair] = False
    if not sources:
        raise DataFileError(f"{path}: empty GEM file (no mapping line)")
    kind = gem_kind(path, None, seen_kind)
    src_system: System = "icd9" if forward else "icd10"
    tgt_system: System = "icd10" if forward else "icd9"
    # in the order of their first line: the first bad line of the file is named
    for codes, system in ((sources, src_system), (targets, tgt_system)):
        for raw, line in codes.items():
            if not is_valid_raw(raw, system, kind):
                # a procedure GEM is known by a NoPCS line or "pcs" in its name
                hint = (" A procedure GEM needs a NoPCS line or 'pcs' in its file name."
                        if kind == "dx" and is_valid_raw(raw, system, "proc") else "")
                raise ValueError(
                    f"{path}, line {line}: {raw!r} is no {system} {kind} code; is the file "
                    f"given as {'icd9_to_icd10' if forward else 'icd10_to_icd9'} "
                    f"of the right direction?{hint}"
                )
    source_keys = {(kind, code) for code in sources}
    target_keys = {(kind, code) for code in targets}
    icd9_seen, icd10_seen = (source_keys, target_keys) if forward else (target_keys, source_keys)
    pairs = {(kind, a, b) if forward else (kind, b, a): flag for (a, b), flag in exact.items()}
    return pairs, icd9_seen, icd10_seen


def _merge_pairs(files: list[Pairs]) -> Pairs:
    """One entry per distinct (kind, icd9, icd10) pair: exact if any file maps it exactly."""
    merged: Pairs = {}
    for pairs in files:
        for key, flag in pairs.items():
            merged[key] = merged.get(key, False) or flag
    return merged


def _links(pairs: Pairs, index9: dict[CodeKey, int], index10: dict[CodeKey, int]
           ) -> tuple[Tensor, Tensor]:
    """Edge index (sorted by ICD-9 then ICD-10 index) and ω of distinct pairs."""
    row = [index9[(kind, code9)] for kind, code9, _ in pairs]
    col = [index10[(kind, code10)] for kind, _, code10 in pairs]
    weight = torch.where(
        torch.tensor(list(pairs.values()), dtype=torch.bool),
        EXACT_WEIGHT,
        APPROXIMATE_WEIGHT,
    ).float()
    edge_index = torch.tensor([row, col], dtype=torch.long).view(2, -1)
    return sort_links(edge_index, weight, len(index9), len(index10))


def read_gem_files(forward: Sequence[PathLike], backward: Sequence[PathLike]) -> GEMLinks:
    """Parse forward (ICD-9 → ICD-10) and backward GEM files into :class:`GEMLinks`.

    Raises:
        ValueError: naming the file and line of a code that is not of the file's
            direction, or when no file is given.
    """
    if not forward and not backward:
        raise ValueError("give at least one GEM file (icd9_to_icd10 or icd10_to_icd9)")
    by_file: dict[bool, list[Pairs]] = {True: [], False: []}
    icd9_seen: set[CodeKey] = set()
    icd10_seen: set[CodeKey] = set()
    for paths, is_forward in ((forward, True), (backward, False)):
        for path in paths:
            pairs, seen9, seen10 = _gem_pairs(path, is_forward)
            by_file[is_forward].append(pairs)
            icd9_seen |= seen9
            icd10_seen |= seen10
    keys9, keys10 = sorted(icd9_seen), sorted(icd10_seen)
    index9 = {key: i for i, key in enumerate(keys9)}
    index10 = {key: i for i, key in enumerate(keys10)}
    return GEMLinks(keys9, keys10, _links(_merge_pairs(by_file[True]), index9, index10),
                    _links(_merge_pairs(by_file[False]), index9, index10))
