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

from jams_pyg.icd.codes import CodeKey, System, check_system, format_code, is_valid_raw, parse_code
from jams_pyg.icd.gem import PathLike, cms_2018_gem_paths, read_gem_file

log = logging.getLogger(__name__)

EXACT_WEIGHT = 1.0
APPROXIMATE_WEIGHT = 0.5
EDGE_TYPE = ("icd9", "maps_to", "icd10")
REV_EDGE_TYPE = ("icd10", "rev_maps_to", "icd9")
_FORMAT_VERSION = 2
#: How MAT reads the GEMs (see GEMGraph): ``directional`` is the official JAMS code's reading.
DIRECTIONS = ("directional", "union")


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


def _merge_pairs(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One row per distinct (kind, icd9, icd10) pair: exact if any line maps it exactly."""
    if not frames:
        return pd.DataFrame({"kind": [], "icd9": [], "icd10": [], "exact": []})
    pairs = pd.concat(frames, ignore_index=True)
    return pairs.groupby(["kind", "icd9", "icd10"], as_index=False, sort=False)["exact"].any()


def _edges(pairs: pd.DataFrame, index9: dict[CodeKey, int], index10: dict[CodeKey, int],
           num_icd10: int) -> tuple[Tensor, Tensor]:
    """Edge index (sorted by ICD-9 then ICD-10 index) and ω of the pairs inside both
    vocabularies."""
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
    order = torch.argsort(row * max(num_icd10, 1) + col)
    return torch.stack([row[order], col[order]]), weight[order]


def _union(edge_index: Tensor, edge_weight: Tensor, other_index: Tensor, other_weight: Tensor,
           num_icd10: int) -> tuple[Tensor, Tensor]:
    """Union of two edge sets, sorted; a pair in both keeps the larger ω (exact wins)."""
    index = torch.cat([edge_index, other_index], dim=1)
    weight = torch.cat([edge_weight, other_weight])
    key = index[0] * max(num_icd10, 1) + index[1]
    unique, inverse = torch.unique(key, sorted=True, return_inverse=True)
    merged = torch.zeros(unique.numel(), dtype=weight.dtype).scatter_reduce(
        0, inverse, weight, reduce="amax", include_self=False)
    first = torch.zeros(unique.numel(), dtype=torch.long).scatter_reduce(
        0, inverse, torch.arange(key.numel()), reduce="amin", include_self=False)
    return index[:, first], merged


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

    Two readings of the GEMs, both fitting the paper's :math:`\mathcal{N}_i`:

    * ``direction="directional"`` (default): the links of the forward file
      (``2018_I9gem.txt``, ICD-9 → ICD-10) update the ICD-9 codes and the
      links of the backward file (``2018_I10gem.txt``) update the ICD-10
      codes.  This is the best evidence of what the authors ran: their
      official MAT layer (GY-Jeong/JAMS,
      ``src/models/modules/graph_attention.py``) loads two separate
      adjacency matrices, ``adj_matrix_icd9_to_icd10.npy`` for :math:`U'`
      and ``adj_matrix_icd10_to_icd9.npy`` for :math:`V'`, and the link
      counts of their analysis notebook (about 6,478 links on 6,150 ICD-9
      codes, 8,416 on 7,942 ICD-10 codes) show they are not transposes of
      each other.
    * ``direction="union"``: one symmetric edge set, every pair mapped by
      either file, used in both directions (ablation ``union``).

    Each edge set has one edge per distinct (ICD-9, ICD-10) pair with weight
    :math:`\omega = 1.0` if some line of its file(s) maps the pair without
    the approximate flag and :math:`0.5` otherwise.  No-map lines never
    become edges.

    When vocabularies are given, the graph holds exactly those codes, in that
    order, and only the edges between them; codes are matched on their
    normalised form (:func:`jams_pyg.icd.codes.parse_code`), so the dotted codes
    of Edin et al.'s MIMIC-IV files match the undotted GEM codes, and
    diagnoses never match procedures. Without a vocabulary, a side holds every
    code that takes part in the GEM files, sorted, in the dotted form.

    The constructor takes ``edge_index`` / ``edge_weight``, the links along
    which ICD-9 codes are updated, and for a directional graph
    ``icd10_edge_index`` / ``icd10_edge_weight``, the links along which
    ICD-10 codes are updated; without them one edge set serves both
    directions (the union reading).  Every edge index has row 0 = ICD-9
    index, row 1 = ICD-10 index.

    Attributes:
        icd9_codes (list[str]): ICD-9 node names, in node order.
        icd10_codes (list[str]): ICD-10 node names, in node order.
        direction (str): ``"directional"`` or ``"union"``.
        icd9_edge_index (LongTensor): ``[2, E9]``, the links that update
            ICD-9 codes, sorted by ICD-9 then ICD-10 index.
        icd9_edge_weight (FloatTensor): ``[E9]``, their :math:`\omega`.
        icd10_edge_index (LongTensor): ``[2, E10]``, the links that update
            ICD-10 codes (the same tensor as ``icd9_edge_index`` for the
            union graph).
        icd10_edge_weight (FloatTensor): ``[E10]``, their :math:`\omega`.
        edge_index (LongTensor): ``[2, E]``, every link of either set
            (sorted; the union graph's only set).
        edge_weight (FloatTensor): ``[E]``, :math:`\omega` of each link
            (exact in either set wins).
        icd9_linked (BoolTensor): ``[n]``, ICD-9 codes updated along at least
            one link (a neighbour in :math:`\mathcal{N}_i`).
        icd10_linked (BoolTensor): ``[m]``, likewise for ICD-10 codes.

    Example:
        >>> graph = GEMGraph.from_cms_2018(["576.2", "405.11"], ["K83.1", "I15.0"])
        >>> graph.icd9_edge_weight.tolist(), graph.icd10_edge_weight.tolist()
        ([1.0, 0.5], [1.0, 0.5])
    """

    def __init__(
        self,
        icd9_codes: Sequence[str],
        icd10_codes: Sequence[str],
        edge_index: Tensor,
        edge_weight: Tensor,
        icd10_edge_index: Tensor | None = None,
        icd10_edge_weight: Tensor | None = None,
    ) -> None:
        self.icd9_codes = list(icd9_codes)
        self.icd10_codes = list(icd10_codes)
        if (icd10_edge_index is None) != (icd10_edge_weight is None):
            raise ValueError("give icd10_edge_index and icd10_edge_weight together")
        self.icd9_edge_index, self.icd9_edge_weight = self._check_edges(
            edge_index, edge_weight, "edge_index", "edge_weight")
        if icd10_edge_index is None:
            self.direction = "union"
            self.icd10_edge_index, self.icd10_edge_weight = (
                self.icd9_edge_index, self.icd9_edge_weight)
            self.edge_index, self.edge_weight = self.icd9_edge_index, self.icd9_edge_weight
        else:
            assert icd10_edge_weight is not None
            self.direction = "directional"
            self.icd10_edge_index, self.icd10_edge_weight = self._check_edges(
                icd10_edge_index, icd10_edge_weight, "icd10_edge_index", "icd10_edge_weight")
            self.edge_index, self.edge_weight = _union(
                self.icd9_edge_index, self.icd9_edge_weight, self.icd10_edge_index,
                self.icd10_edge_weight, self.num_icd10)
        self.icd9_linked = torch.zeros(self.num_icd9, dtype=torch.bool)
        self.icd9_linked[self.icd9_edge_index[0]] = True
        self.icd10_linked = torch.zeros(self.num_icd10, dtype=torch.bool)
        self.icd10_linked[self.icd10_edge_index[1]] = True

    def _check_edges(self, edge_index: Tensor, edge_weight: Tensor, name: str,
                     weight_name: str) -> tuple[Tensor, Tensor]:
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"{name} must have shape [2, E], got {list(edge_index.shape)}")
        if edge_weight.shape != (edge_index.size(1),):
            raise ValueError(
                f"{weight_name} must have shape [{edge_index.size(1)}], got "
                f"{list(edge_weight.shape)}"
            )
        for row, size, system in ((0, self.num_icd9, "ICD-9"), (1, self.num_icd10, "ICD-10")):
            if edge_index.numel() and (
                int(edge_index[row].min()) < 0 or int(edge_index[row].max()) >= size
            ):
                bad = edge_index[row][(edge_index[row] < 0) | (edge_index[row] >= size)][0]
                raise ValueError(
                    f"{name} row {row} holds {system} index {int(bad)}, out of range "
                    f"for {size} {system} codes"
                )
        return edge_index.long(), edge_weight.float()

    # ------------------------------------------------------------------ build
    @classmethod
    def from_gem_files(
        cls,
        icd9_to_icd10: PathLike | Sequence[PathLike] | None = None,
        icd10_to_icd9: PathLike | Sequence[PathLike] | None = None,
        icd9_codes: Sequence[str] | None = None,
        icd10_codes: Sequence[str] | None = None,
        direction: str = "directional",
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
            direction: ``"directional"`` (default, the official code's reading:
                forward files update ICD-9 codes, backward files ICD-10 codes)
                or ``"union"`` (one symmetric edge set of every mapped pair).
        """
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        forward, backward = _as_list(icd9_to_icd10), _as_list(icd10_to_icd9)
        if not forward and not backward:
            raise ValueError("give at least one GEM file (icd9_to_icd10 or icd10_to_icd9)")
        by_file: dict[bool, list[pd.DataFrame]] = {True: [], False: []}
        icd9_seen: set[CodeKey] = set()
        icd10_seen: set[CodeKey] = set()
        for paths, is_forward in ((forward, True), (backward, False)):
            for path in paths:
                pairs, seen9, seen10 = _gem_pairs(path, is_forward)
                by_file[is_forward].append(pairs)
                icd9_seen |= seen9
                icd10_seen |= seen10

        def side(codes: Sequence[str] | None, seen: set[CodeKey], system: System):
            if codes is not None:
                return _vocabulary(codes, system, f"{system}_codes")
            keys = sorted(seen)
            names = [format_code(raw, system, kind) for kind, raw in keys]
            return names, {key: i for i, key in enumerate(keys)}

        names9, index9 = side(icd9_codes, icd9_seen, "icd9")
        names10, index10 = side(icd10_codes, icd10_seen, "icd10")
        if direction == "union":
            edges = _edges(_merge_pairs(by_file[True] + by_file[False]), index9, index10,
                           len(names10))
            graph = cls(names9, names10, *edges)
        else:
            edges9 = _edges(_merge_pairs(by_file[True]), index9, index10, len(names10))
            edges10 = _edges(_merge_pairs(by_file[False]), index9, index10, len(names10))
            graph = cls(names9, names10, *edges9, *edges10)
        log.info("%s", graph.summary())
        return graph

    @classmethod
    def from_cms_2018(
        cls,
        icd9_codes: Sequence[str] | None = None,
        icd10_codes: Sequence[str] | None = None,
        direction: str = "directional",
    ) -> GEMGraph:
        """Build the graph from the CMS 2018 diagnosis GEMs shipped with the
        package (no files needed). Procedure codes of a vocabulary stay
        unlinked: pass the procedure GEMs to :meth:`from_gem_files` with
        :func:`jams_pyg.icd.gem.cms_2018_gem_paths` to link them too."""
        forward, backward = cms_2018_gem_paths()
        return cls.from_gem_files(forward, backward, icd9_codes, icd10_codes, direction)

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

    def edges(self, system: System) -> tuple[Tensor, Tensor]:
        """``(edge_index, edge_weight)`` of the links that update the codes of ``system``."""
        if check_system(system) == "icd9":
            return self.icd9_edge_index, self.icd9_edge_weight
        return self.icd10_edge_index, self.icd10_edge_weight

    def mat_edges(self) -> tuple[Any, Any]:
        """``(edge_index, edge_weight)`` in the form :class:`~jams_pyg.nn.MATConv` takes:
        tensors for the union graph, ``(ICD-9 updates, ICD-10 updates)`` pairs for a
        directional one."""
        if self.direction == "union":
            return self.edge_index, self.edge_weight
        return ((self.icd9_edge_index, self.icd10_edge_index),
                (self.icd9_edge_weight, self.icd10_edge_weight))

    def neighbors(self, code: str, system: System) -> list[tuple[str, float]]:
        r"""The codes of the other system that update ``code`` (its :math:`\mathcal{N}_i`),
        with their ω."""
        i = self.index(code, system)
        edge_index, edge_weight = self.edges(system)
        mine, other = (0, 1) if system == "icd9" else (1, 0)
        mask = edge_index[mine] == i
        names = self.codes("icd10" if system == "icd9" else "icd9")
        return [
            (names[int(j)], float(w))
            for j, w in zip(edge_index[other][mask], edge_weight[mask], strict=True)
        ]

    # ------------------------------------------------------------ conversion
    def to_hetero_data(self) -> HeteroData:
        """A PyG :class:`~torch_geometric.data.HeteroData` with node types
        ``icd9`` and ``icd10`` (``num_nodes``, ``code``, ``linked``) and edge
        types ``('icd9', 'maps_to', 'icd10')`` (the links that update ICD-9
        codes) and ``('icd10', 'rev_maps_to', 'icd9')`` (the links that update
        ICD-10 codes, ICD-10 index first), each with ``edge_weight``.  For the
        union graph the second is the first reversed; for the directional one
        they are the forward and the backward file's links, each written in
        its file's direction.  ``data.direction`` records which."""
        data = HeteroData()
        data["icd9"].num_nodes = self.num_icd9
        data["icd9"].code = list(self.icd9_codes)
        data["icd9"].linked = self.icd9_linked.clone()
        data["icd10"].num_nodes = self.num_icd10
        data["icd10"].code = list(self.icd10_codes)
        data["icd10"].linked = self.icd10_linked.clone()
        data[EDGE_TYPE].edge_index = self.icd9_edge_index.clone()
        data[EDGE_TYPE].edge_weight = self.icd9_edge_weight.clone()
        data[REV_EDGE_TYPE].edge_index = self.icd10_edge_index.flip(0)
        data[REV_EDGE_TYPE].edge_weight = self.icd10_edge_weight.clone()
        data.direction = self.direction
        return data

    def to(self, device: torch.device | str) -> GEMGraph:
        """Move the edge tensors and the masks to ``device``."""
        for name in ("icd9_edge_index", "icd9_edge_weight", "icd10_edge_index",
                     "icd10_edge_weight", "edge_index", "edge_weight", "icd9_linked",
                     "icd10_linked"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def tensors(self) -> dict[str, Tensor]:
        """The edge tensors that define the graph (with :attr:`direction` and the code
        lists): ``edge_index``/``edge_weight`` (ICD-9 updates) and, if directional,
        ``icd10_edge_index``/``icd10_edge_weight``."""
        out = {"edge_index": self.icd9_edge_index.cpu(),
               "edge_weight": self.icd9_edge_weight.cpu()}
        if self.direction == "directional":
            out["icd10_edge_index"] = self.icd10_edge_index.cpu()
            out["icd10_edge_weight"] = self.icd10_edge_weight.cpu()
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "format_version": _FORMAT_VERSION,
            "direction": self.direction,
            "icd9_codes": list(self.icd9_codes),
            "icd10_codes": list(self.icd10_codes),
            **self.tensors(),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> GEMGraph:
        """Inverse of :meth:`state_dict`; format 1 (before directional graphs) is a union
        graph."""
        version = state.get("format_version")
        if version not in (1, _FORMAT_VERSION):
            raise ValueError(
                f"unsupported GEMGraph format {version!r}, expected {_FORMAT_VERSION}"
            )
        return cls(state["icd9_codes"], state["icd10_codes"], state["edge_index"],
                   state["edge_weight"], state.get("icd10_edge_index"),
                   state.get("icd10_edge_weight"))

    def save(self, path: PathLike) -> None:
        """Save to ``path`` (a ``torch.save`` file of tensors and strings only)."""
        torch.save(self.state_dict(), path)

    @classmethod
    def load(cls, path: PathLike) -> GEMGraph:
        """Load a graph written by :meth:`save` (no code is executed)."""
        return cls.from_state_dict(torch.load(path, weights_only=True))

    # ---------------------------------------------------------------- report
    def summary(self) -> str:
        def links(weight: Tensor) -> str:
            exact = int((weight == EXACT_WEIGHT).sum())
            return f"{weight.numel()} links ({exact} exact, {weight.numel() - exact} approximate)"

        nodes = (
            f"{self.num_icd9} ICD-9 codes ({self.num_unlinked_icd9} without a link), "
            f"{self.num_icd10} ICD-10 codes ({self.num_unlinked_icd10} without a link)"
        )
        if self.direction == "union":
            return f"GEMGraph (union): {nodes}, {links(self.edge_weight)}"
        return (
            f"GEMGraph (directional): {nodes}; ICD-9 codes updated along "
            f"{links(self.icd9_edge_weight)} of the forward GEMs, ICD-10 codes along "
            f"{links(self.icd10_edge_weight)} of the backward GEMs"
        )

    def __repr__(self) -> str:
        edges = (f"edges={self.num_edges}" if self.direction == "union" else
                 f"icd9_edges={self.icd9_edge_index.size(1)}, "
                 f"icd10_edges={self.icd10_edge_index.size(1)}")
        return (
            f"{self.__class__.__name__}(icd9={self.num_icd9}, icd10={self.num_icd10}, "
            f"{edges}, direction={self.direction!r})"
        )
