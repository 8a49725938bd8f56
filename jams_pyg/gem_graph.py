"""The bipartite ICD-9 ↔ ICD-10 graph of the GEMs, as JAMS uses it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from jams_pyg.codes import CodeKey, System, check_system, format_code, is_valid_raw, parse_code
from jams_pyg.gem import PathLike, cms_2018_gem_paths, read_gem_file

log = logging.getLogger(__name__)

EXACT_WEIGHT = 1.0
APPROXIMATE_WEIGHT = 0.5
EDGE_TYPE = ("icd9", "maps_to", "icd10")
REV_EDGE_TYPE = ("icd10", "rev_maps_to", "icd9")
_FORMAT_VERSION = 1


def _as_list(paths: PathLike | Sequence[PathLike] | None) -> list[PathLike]:
    if paths is None:
        return []
    if isinstance(paths, (str, Path)) or not isinstance(paths, Sequence):
        return [paths]  # type: ignore[list-item]
    return list(paths)


def _gem_pairs(path: PathLike, forward: bool) -> tuple[pd.DataFrame, set[CodeKey], set[CodeKey]]:
    """Mapped (icd9, icd10) pairs of one GEM file and the codes that take part."""
    frame = read_gem_file(path)
    kind = frame.attrs["kind"]
    src_system: System = "icd9" if forward else "icd10"
    tgt_system: System = "icd10" if forward else "icd9"
    for column, system in (("source", src_system), ("target", tgt_system)):
        values = frame if column == "source" else frame.loc[~frame.no_map]
        for raw, line in zip(values[column].tolist(), values["line"].tolist(), strict=True):
            if not is_valid_raw(raw, system, kind):
                raise ValueError(
                    f"{path}, line {line}: {raw!r} is no {system} {kind} code; is the file "
                    f"given as {'icd9_to_icd10' if forward else 'icd10_to_icd9'} "
                    "of the right direction?"
                )
    icd9_col, icd10_col = ("source", "target") if forward else ("target", "source")
    sources = {(kind, code) for code in frame["source"].tolist()}
    mapped = frame.loc[~frame.no_map]
    targets = {(kind, code) for code in mapped["target"].tolist()}
    icd9_seen, icd10_seen = (sources, targets) if forward else (targets, sources)
    pairs = pd.DataFrame(
        {
            "kind": kind,
            "icd9": mapped[icd9_col].to_numpy(),
            "icd10": mapped[icd10_col].to_numpy(),
            "exact": ~mapped["approximate"].to_numpy(),
        }
    )
    return pairs, icd9_seen, icd10_seen


def _vocabulary(
    codes: Sequence[str], system: System, name: str
) -> tuple[list[str], dict[CodeKey, int]]:
    if isinstance(codes, str):
        raise TypeError(f"{name} must be a list of codes, not a string")
    codes = list(codes)
    if not codes:
        raise ValueError(f"{name} is empty: a vocabulary needs at least one code")
    index: dict[CodeKey, int] = {}
    for position, code in enumerate(codes):
        try:
            key = parse_code(code, system)
        except ValueError as err:
            raise ValueError(f"{name}[{position}]: {err}") from None
        if key in index:
            raise ValueError(
                f"{name} has duplicate code {code!r} (positions {index[key]} and {position})"
            )
        index[key] = position
    return codes, index


class GEMGraph:
    r"""The bipartite graph between ICD-9 and ICD-10 codes given by the GEMs.

    One edge per distinct (ICD-9, ICD-10) pair mapped by the forward or the
    backward GEM file (their union), with weight :math:`\omega = 1.0` if some
    line maps the pair without the approximate flag and :math:`0.5` otherwise.
    No-map lines never become edges.

    When vocabularies are given, the graph holds exactly those codes, in that
    order, and only the edges between them; codes are matched on their
    normalised form (:func:`jams_pyg.codes.parse_code`), so the dotted codes
    of Edin et al.'s MIMIC-IV files match the undotted GEM codes, and
    diagnoses never match procedures. Without a vocabulary, a side holds every
    code that takes part in the GEM files, sorted, in the dotted form.

    Attributes:
        icd9_codes (list[str]): ICD-9 node names, in node order.
        icd10_codes (list[str]): ICD-10 node names, in node order.
        edge_index (LongTensor): ``[2, E]``; row 0 ICD-9 index, row 1 ICD-10
            index; sorted by ICD-9 then ICD-10 index.
        edge_weight (FloatTensor): ``[E]``, :math:`\omega` of each edge.
        icd9_linked (BoolTensor): ``[n]``, ICD-9 codes with at least one edge.
        icd10_linked (BoolTensor): ``[m]``, ICD-10 codes with at least one edge.

    Example:
        >>> graph = GEMGraph.from_cms_2018(["576.2", "405.11"], ["K83.1", "I15.0"])
        >>> graph.edge_weight.tolist()
        [1.0, 0.5]
    """

    def __init__(
        self,
        icd9_codes: Sequence[str],
        icd10_codes: Sequence[str],
        edge_index: Tensor,
        edge_weight: Tensor,
    ) -> None:
        self.icd9_codes = list(icd9_codes)
        self.icd10_codes = list(icd10_codes)
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"edge_index must have shape [2, E], got {list(edge_index.shape)}")
        if edge_weight.shape != (edge_index.size(1),):
            raise ValueError(
                f"edge_weight must have shape [{edge_index.size(1)}], got "
                f"{list(edge_weight.shape)}"
            )
        for row, size, name in ((0, self.num_icd9, "ICD-9"), (1, self.num_icd10, "ICD-10")):
            if edge_index.numel() and (
                int(edge_index[row].min()) < 0 or int(edge_index[row].max()) >= size
            ):
                bad = edge_index[row][(edge_index[row] < 0) | (edge_index[row] >= size)][0]
                raise ValueError(
                    f"edge_index row {row} holds {name} index {int(bad)}, out of range "
                    f"for {size} {name} codes"
                )
        self.edge_index = edge_index.long()
        self.edge_weight = edge_weight.float()
        self.icd9_linked = torch.zeros(self.num_icd9, dtype=torch.bool)
        self.icd9_linked[self.edge_index[0]] = True
        self.icd10_linked = torch.zeros(self.num_icd10, dtype=torch.bool)
        self.icd10_linked[self.edge_index[1]] = True

    # ------------------------------------------------------------------ build
    @classmethod
    def from_gem_files(
        cls,
        icd9_to_icd10: PathLike | Sequence[PathLike] | None = None,
        icd10_to_icd9: PathLike | Sequence[PathLike] | None = None,
        icd9_codes: Sequence[str] | None = None,
        icd10_codes: Sequence[str] | None = None,
    ) -> GEMGraph:
        """Build the graph from GEM files.

        Args:
            icd9_to_icd10: Forward GEM file(s): ``2018_I9gem.txt`` and, for
                procedures, ``gem_i9pcs.txt``.
            icd10_to_icd9: Backward GEM file(s): ``2018_I10gem.txt``,
                ``gem_pcsi9.txt``.
            icd9_codes: The ICD-9 label vocabulary (e.g. a dataset's codes,
                dotted as Edin et al. write them), or ``None`` for every ICD-9
                code of the files.
            icd10_codes: Likewise for ICD-10.
        """
        forward, backward = _as_list(icd9_to_icd10), _as_list(icd10_to_icd9)
        if not forward and not backward:
            raise ValueError("give at least one GEM file (icd9_to_icd10 or icd10_to_icd9)")
        frames, icd9_seen, icd10_seen = [], set(), set()
        for paths, is_forward in ((forward, True), (backward, False)):
            for path in paths:
                pairs, seen9, seen10 = _gem_pairs(path, is_forward)
                frames.append(pairs)
                icd9_seen |= seen9
                icd10_seen |= seen10
        pairs = pd.concat(frames, ignore_index=True)
        # One edge per pair: exact if any line maps it without the approximate flag.
        pairs = pairs.groupby(["kind", "icd9", "icd10"], as_index=False, sort=False)["exact"].any()

        def side(codes: Sequence[str] | None, seen: set[CodeKey], system: System):
            if codes is not None:
                return _vocabulary(codes, system, f"{system}_codes")
            keys = sorted(seen)
            names = [format_code(raw, system, kind) for kind, raw in keys]
            return names, {key: i for i, key in enumerate(keys)}

        names9, index9 = side(icd9_codes, icd9_seen, "icd9")
        names10, index10 = side(icd10_codes, icd10_seen, "icd10")
        kinds = pairs["kind"].tolist()
        keys9 = list(zip(kinds, pairs["icd9"].tolist(), strict=True))
        keys10 = list(zip(kinds, pairs["icd10"].tolist(), strict=True))
        row = torch.tensor([index9.get(k, -1) for k in keys9], dtype=torch.long)
        col = torch.tensor([index10.get(k, -1) for k in keys10], dtype=torch.long)
        weight = torch.where(
            torch.tensor(pairs["exact"].tolist(), dtype=torch.bool),
            EXACT_WEIGHT,
            APPROXIMATE_WEIGHT,
        ).float()
        keep = (row >= 0) & (col >= 0)
        row, col, weight = row[keep], col[keep], weight[keep]
        order = torch.argsort(row * max(len(names10), 1) + col)
        graph = cls(names9, names10, torch.stack([row[order], col[order]]), weight[order])
        log.info("%s", graph.summary())
        return graph

    @classmethod
    def from_cms_2018(
        cls,
        icd9_codes: Sequence[str] | None = None,
        icd10_codes: Sequence[str] | None = None,
    ) -> GEMGraph:
        """Build the graph from the CMS 2018 diagnosis GEMs shipped with the
        package (no files needed). Procedure codes of a vocabulary stay
        unlinked: pass the procedure GEMs to :meth:`from_gem_files` with
        :func:`jams_pyg.gem.cms_2018_gem_paths` to link them too."""
        forward, backward = cms_2018_gem_paths()
        return cls.from_gem_files(forward, backward, icd9_codes, icd10_codes)

    # ------------------------------------------------------------ properties
    @property
    def num_icd9(self) -> int:
        return len(self.icd9_codes)

    @property
    def num_icd10(self) -> int:
        return len(self.icd10_codes)

    @property
    def num_edges(self) -> int:
        return self.edge_index.size(1)

    @property
    def num_unlinked_icd9(self) -> int:
        return int((~self.icd9_linked).sum())

    @property
    def num_unlinked_icd10(self) -> int:
        return int((~self.icd10_linked).sum())

    def codes(self, system: System) -> list[str]:
        """Node names of ``system``."""
        return self.icd9_codes if check_system(system) == "icd9" else self.icd10_codes

    def linked(self, system: System) -> Tensor:
        """Mask of the codes of ``system`` with at least one GEM link."""
        return self.icd9_linked if check_system(system) == "icd9" else self.icd10_linked

    def index(self, code: str, system: System) -> int:
        """Node index of ``code`` (matched on its normalised form)."""
        key = parse_code(code, system)
        names = self.codes(system)
        lookup = getattr(self, f"_{system}_lookup", None)
        if lookup is None:
            lookup = {parse_code(name, system): i for i, name in enumerate(names)}
            setattr(self, f"_{system}_lookup", lookup)
        if key not in lookup:
            raise KeyError(f"{system} code {code!r} is not in this graph")
        return lookup[key]

    def neighbors(self, code: str, system: System) -> list[tuple[str, float]]:
        """The codes of the other system linked to ``code``, with their ω."""
        i = self.index(code, system)
        mine, other = (0, 1) if system == "icd9" else (1, 0)
        mask = self.edge_index[mine] == i
        names = self.codes("icd10" if system == "icd9" else "icd9")
        return [
            (names[int(j)], float(w))
            for j, w in zip(self.edge_index[other][mask], self.edge_weight[mask], strict=True)
        ]

    # ------------------------------------------------------------ conversion
    def to_hetero_data(self) -> HeteroData:
        """A PyG :class:`~torch_geometric.data.HeteroData` with node types
        ``icd9`` and ``icd10`` (``num_nodes``, ``code``, ``linked``) and edge
        types ``('icd9', 'maps_to', 'icd10')`` and its reverse
        ``('icd10', 'rev_maps_to', 'icd9')``, each with ``edge_weight``."""
        data = HeteroData()
        data["icd9"].num_nodes = self.num_icd9
        data["icd9"].code = list(self.icd9_codes)
        data["icd9"].linked = self.icd9_linked.clone()
        data["icd10"].num_nodes = self.num_icd10
        data["icd10"].code = list(self.icd10_codes)
        data["icd10"].linked = self.icd10_linked.clone()
        data[EDGE_TYPE].edge_index = self.edge_index.clone()
        data[EDGE_TYPE].edge_weight = self.edge_weight.clone()
        data[REV_EDGE_TYPE].edge_index = self.edge_index.flip(0)
        data[REV_EDGE_TYPE].edge_weight = self.edge_weight.clone()
        return data

    def to(self, device: torch.device | str) -> GEMGraph:
        """Move ``edge_index``, ``edge_weight`` and the masks to ``device``."""
        for name in ("edge_index", "edge_weight", "icd9_linked", "icd10_linked"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def state_dict(self) -> dict[str, Any]:
        return {
            "format_version": _FORMAT_VERSION,
            "icd9_codes": list(self.icd9_codes),
            "icd10_codes": list(self.icd10_codes),
            "edge_index": self.edge_index.cpu(),
            "edge_weight": self.edge_weight.cpu(),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> GEMGraph:
        if state.get("format_version") != _FORMAT_VERSION:
            raise ValueError(
                f"unsupported GEMGraph format {state.get('format_version')!r}, "
                f"expected {_FORMAT_VERSION}"
            )
        return cls(state["icd9_codes"], state["icd10_codes"], state["edge_index"],
                   state["edge_weight"])

    def save(self, path: PathLike) -> None:
        """Save to ``path`` (a ``torch.save`` file of tensors and strings only)."""
        torch.save(self.state_dict(), path)

    @classmethod
    def load(cls, path: PathLike) -> GEMGraph:
        """Load a graph written by :meth:`save` (no code is executed)."""
        return cls.from_state_dict(torch.load(path, weights_only=True))

    # ---------------------------------------------------------------- report
    def summary(self) -> str:
        exact = int((self.edge_weight == EXACT_WEIGHT).sum())
        return (
            f"GEMGraph: {self.num_icd9} ICD-9 codes ({self.num_unlinked_icd9} without a "
            f"link), {self.num_icd10} ICD-10 codes ({self.num_unlinked_icd10} without a "
            f"link), {self.num_edges} links ({exact} exact, {self.num_edges - exact} "
            "approximate)"
        )

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(icd9={self.num_icd9}, icd10={self.num_icd10}, "
            f"edges={self.num_edges})"
        )
