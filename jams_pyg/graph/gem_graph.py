"""The bipartite ICD-9 ↔ ICD-10 graph of the GEMs, as JAMS uses it."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from jams_pyg.graph.directions import DIRECTIONS, check_direction
from jams_pyg.graph.edges import Adjacency, adjacency, check_links, relabel_links, union_links
from jams_pyg.graph.gem_files import (
    APPROXIMATE_WEIGHT,
    EXACT_WEIGHT,
    GEMLinks,
    as_path_list,
    read_gem_files,
)
from jams_pyg.graph.graph_io import (
    check_graph_parts,
    read_graph_files,
    read_legacy_graph_file,
    write_graph_files,
)
from jams_pyg.graph.hetero import EDGE_TYPE, REV_EDGE_TYPE, to_hetero_data
from jams_pyg.graph.procedures import (
    PROC_SOURCE_WORDS,
    check_proc_source,
    count_links,
    procedure_mask,
    reverse_missing_procedures,
)
from jams_pyg.graph.vocabulary import code_lookup, vocabulary_index
from jams_pyg.icd.codes import (
    OTHER_SYSTEM,
    SYSTEM_LABELS,
    CodeKey,
    System,
    check_system,
    parse_code,
)
from jams_pyg.icd.gem import PathLike, cms_2018_gem_paths, cms_procedure_gem_path

__all__ = ["APPROXIMATE_WEIGHT", "DIRECTIONS", "EDGE_TYPE", "EXACT_WEIGHT", "REV_EDGE_TYPE",
           "Adjacency", "GEMGraph"]

log = logging.getLogger(__name__)


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

    Procedure codes are linked by the procedure GEMs the same way
    (``gem_i9pcs.txt`` forward, ``gem_pcsi9.txt`` backward); when no backward
    procedure file is given, ICD-10-PCS codes are updated along the forward
    procedure links reversed (:mod:`jams_pyg.graph.procedures`), and
    :attr:`icd10_proc_source` and :meth:`summary` say which.

    Each edge set has one edge per distinct (ICD-9, ICD-10) pair with weight
    :math:`\omega = 1.0` if some line of its file(s) maps the pair without
    the approximate flag and :math:`0.5` otherwise.  No-map lines never
    become edges.

    When vocabularies are given (:meth:`restrict`), the graph holds exactly
    those codes, in that order, and only the edges between them; codes are
    matched on their normalised form (:func:`jams_pyg.icd.codes.parse_code`),
    so the dotted codes of Edin et al.'s MIMIC-IV files match the undotted GEM
    codes, and diagnoses never match procedures. Without a vocabulary, a side
    holds every code that takes part in the GEM files, sorted, in the dotted
    form.  :meth:`adjacency` groups the links by code; :meth:`save` /
    :meth:`load` write and read the model bundle's graph files.

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
        icd10_proc_source (str or None): where the links that update ICD-10-PCS
            codes come from: ``"backward"`` (a backward procedure GEM),
            ``"reversed"`` (the forward procedure GEM's links reversed) or
            ``None`` (not recorded, or no procedure GEM read).

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
        icd10_proc_source: str | None = None,
    ) -> None:
        self.icd9_codes = list(icd9_codes)
        self.icd10_proc_source = check_proc_source(icd10_proc_source)
        self.icd10_codes = list(icd10_codes)
        if (icd10_edge_index is None) != (icd10_edge_weight is None):
            raise ValueError("give icd10_edge_index and icd10_edge_weight together")
        sizes = len(self.icd9_codes), len(self.icd10_codes)
        self.icd9_edge_index, self.icd9_edge_weight = check_links(
            edge_index, edge_weight, *sizes, "edge_index", "edge_weight")
        if icd10_edge_index is None:
            self.direction = "union"
            self.icd10_edge_index, self.icd10_edge_weight = (
                self.icd9_edge_index, self.icd9_edge_weight)
            self.edge_index, self.edge_weight = self.icd9_edge_index, self.icd9_edge_weight
        else:
            assert icd10_edge_weight is not None
            self.direction = "directional"
            self.icd10_edge_index, self.icd10_edge_weight = check_links(
                icd10_edge_index, icd10_edge_weight, *sizes, "icd10_edge_index",
                "icd10_edge_weight")
            self.edge_index, self.edge_weight = union_links(
                self.icd9_edge_index, self.icd9_edge_weight, self.icd10_edge_index,
                self.icd10_edge_weight, self.num_icd9, self.num_icd10)
        self.icd9_linked = torch.zeros(self.num_icd9, dtype=torch.bool)
        self.icd9_linked[self.icd9_edge_index[0]] = True
        self.icd10_linked = torch.zeros(self.num_icd10, dtype=torch.bool)
        self.icd10_linked[self.icd10_edge_index[1]] = True
        # filled on demand: code key -> node index, per system; adjacency per system
        self._lookups: dict[str, dict[CodeKey, int]] = {}
        self._adjacency: dict[str, Adjacency] = {}

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
                ``gem_pcsi9.txt``.  Without a backward procedure file, the
                forward procedure links, reversed, update the ICD-10-PCS codes.
            icd9_codes: The ICD-9 label vocabulary (e.g. a dataset's codes,
                dotted as Edin et al. write them), or ``None`` for every ICD-9
                code of the files.
            icd10_codes: Likewise for ICD-10.
            direction: ``"directional"`` (default, the official code's reading:
                forward files update ICD-9 codes, backward files ICD-10 codes)
                or ``"union"`` (one symmetric edge set of every mapped pair).
        """
        check_direction(direction)
        links = read_gem_files(as_path_list(icd9_to_icd10), as_path_list(icd10_to_icd9))
        graph = cls._from_links(links, direction)
        if icd9_codes is not None or icd10_codes is not None:
            graph = graph.restrict(icd9_codes, icd10_codes)
        log.info("%s", graph.summary())
        return graph

    @classmethod
    def _from_links(cls, links: GEMLinks, direction: str) -> GEMGraph:
        """The graph over every code of parsed GEM files."""
        links, source = reverse_missing_procedures(links)
        edges = links.union() if direction == "union" else (*links.forward, *links.backward)
        graph = cls(links.names("icd9"), links.names("icd10"), *edges)
        graph.icd10_proc_source = source
        # the parsed keys, so that restrict() need not parse 86k names again
        graph._lookups = {"icd9": {key: i for i, key in enumerate(links.icd9_keys)},
                          "icd10": {key: i for i, key in enumerate(links.icd10_keys)}}
        return graph

    @classmethod
    def from_cms_2018(
        cls,
        icd9_codes: Sequence[str] | None = None,
        icd10_codes: Sequence[str] | None = None,
        direction: str = "directional",
        procedures: bool = True,
    ) -> GEMGraph:
        """Build the graph from the CMS 2018 GEMs shipped with the package (no
        files needed), as :meth:`from_gem_files` would.  The files are parsed
        once per process; each call restricts (:meth:`restrict`) a copy of that
        full graph.

        By default the shipped forward procedure GEM
        (:func:`jams_pyg.icd.gem.cms_procedure_gem_path`) links procedure codes
        too, as the official graph does (``GY-Jeong/JAMS``: its analysis counts
        only 931 of 7,942 ICD-10 codes without a link, which the diagnosis GEMs
        alone cannot give), ICD-10-PCS codes along its links reversed (the
        backward procedure GEM is not shipped: pass it to
        :meth:`from_gem_files`).  ``procedures=False`` links diagnosis codes
        only (the ``no_proc_links`` ablation)."""
        check_direction(direction)
        graph = _cms_2018_full(direction, procedures).restrict(icd9_codes, icd10_codes)
        log.info("%s", graph.summary())
        return graph

    def restrict(self, icd9_codes: Sequence[str] | None = None,
                 icd10_codes: Sequence[str] | None = None) -> GEMGraph:
        r"""A new graph over the given vocabularies: exactly those codes, in that
        order (node index = position), and the links between them, sorted by
        ICD-9 then ICD-10 index, each keeping its set and :math:`\omega`.  Codes
        are matched on their normalised form
        (:func:`~jams_pyg.icd.codes.parse_code`); a code the graph lacks is a
        node without links.  ``None`` keeps a side as it is.

        Raises:
            ValueError: for an empty vocabulary, a duplicate or malformed code.
            TypeError: for a string instead of a list of codes.
        """
        names: dict[str, list[str]] = {}
        maps: dict[str, Tensor] = {}
        lookups: dict[str, dict[CodeKey, int]] = {}
        device = self.icd9_edge_index.device
        for system, codes in (("icd9", icd9_codes), ("icd10", icd10_codes)):
            size = len(self.codes(system))
            if codes is None:
                names[system] = list(self.codes(system))
                maps[system] = torch.arange(size, device=device)
                if system in self._lookups:
                    lookups[system] = self._lookups[system]
                continue
            names[system], lookups[system] = vocabulary_index(codes, system, f"{system}_codes")
            mine = self._lookup(system)
            found = [(mine[key], position) for key, position in lookups[system].items()
                     if key in mine]
            mapping = torch.full((size,), -1, dtype=torch.long)
            if found:
                mapping[torch.tensor([i for i, _ in found])] = torch.tensor(
                    [p for _, p in found])
            maps[system] = mapping.to(device)
        sizes = len(names["icd9"]), len(names["icd10"])
        edges = [*relabel_links(*self.edges("icd9"), maps["icd9"], maps["icd10"], *sizes)]
        if self.direction == "directional":
            edges += relabel_links(*self.edges("icd10"), maps["icd9"], maps["icd10"], *sizes)
        graph = type(self)(names["icd9"], names["icd10"], *edges)
        graph._lookups = lookups
        if self.icd10_proc_source is not None and graph.link_counts()["icd10"]["proc"]:
            graph.icd10_proc_source = self.icd10_proc_source  # said only while it applies
        return graph

    def to_union(self) -> GEMGraph:
        """The union reading of this graph: one symmetric edge set, every link of
        either set (exact wins), what ``direction="union"`` builds from the same
        files."""
        graph = type(self)(self.icd9_codes, self.icd10_codes, self.edge_index, self.edge_weight,
                           icd10_proc_source=self.icd10_proc_source)
        graph._lookups = dict(self._lookups)
        return graph

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

    def procedures(self, system: System) -> Tensor:
        """Mask of the codes of ``system`` that are procedure codes (ICD-9-CM
        procedures, ICD-10-PCS), on the CPU."""
        return procedure_mask(self._lookup(check_system(system)), len(self.codes(system)))

    def link_counts(self) -> dict[str, dict[str, int]]:
        """The links that update each system's codes (:meth:`edges`), diagnoses and
        procedures apart (by the kind of the code updated):
        ``{"icd9": {"dx": ..., "proc": ...}, "icd10": {"dx": ..., "proc": ...}}``."""
        return {system: count_links(self.edges(system)[0], row, self.procedures(system))
                for row, system in enumerate(("icd9", "icd10"))}

    def index(self, code: str, system: System) -> int:
        """Node index of ``code`` (matched on its normalised form)."""
        lookup = self._lookup(system)
        key = parse_code(code, system)
        if key not in lookup:
            raise KeyError(f"{system} code {code!r} is not in this graph")
        return lookup[key]

    def _lookup(self, system: System) -> dict[CodeKey, int]:
        """Normalised code -> node index, built once per system."""
        if system not in self._lookups:
            self._lookups[system] = code_lookup(self.codes(system), system)
        return self._lookups[system]

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

    def adjacency(self, system: System) -> Adjacency:
        r"""The links that update the codes of ``system`` (:meth:`edges`), grouped by
        code: for code ``i``, positions ``ptr[i]:ptr[i + 1]`` of ``neighbor`` (the other
        system's codes of its :math:`\mathcal{N}_i`, by index), ``weight``
        (:math:`\omega`) and ``perm`` (the links' positions in :meth:`edges`).  Built
        once per system."""
        system = check_system(system)
        if system not in self._adjacency:
            row = 0 if system == "icd9" else 1
            self._adjacency[system] = adjacency(*self.edges(system), row,
                                                len(self.codes(system)))
        return self._adjacency[system]

    def neighbors(self, code: str, system: System) -> list[tuple[str, float]]:
        r"""The codes of the other system that update ``code`` (its :math:`\mathcal{N}_i`),
        with their ω, by index (see :meth:`adjacency`)."""
        i = self.index(code, system)
        adj = self.adjacency(system)
        lo, hi = int(adj.ptr[i]), int(adj.ptr[i + 1])
        names = self.codes(OTHER_SYSTEM[system])
        return [(names[j], w) for j, w in zip(adj.neighbor[lo:hi].tolist(),
                                              adj.weight[lo:hi].tolist(), strict=True)]

    # ------------------------------------------------------------ conversion
    def to_hetero_data(self) -> HeteroData:
        """A PyG :class:`~torch_geometric.data.HeteroData` of the graph
        (:func:`jams_pyg.graph.hetero.to_hetero_data`)."""
        return to_hetero_data(self)

    def to(self, device: torch.device | str) -> GEMGraph:
        """Move the edge tensors and the masks to ``device``."""
        for name in ("icd9_edge_index", "icd9_edge_weight", "icd10_edge_index",
                     "icd10_edge_weight", "edge_index", "edge_weight", "icd9_linked",
                     "icd10_linked"):
            setattr(self, name, getattr(self, name).to(device))
        self._adjacency.clear()
        return self

    # -------------------------------------------------------------------- I/O
    def tensors(self) -> dict[str, Tensor]:
        """The link tensors that define the graph (with :meth:`code_lists`), on the CPU:
        ``edge_index``/``edge_weight`` (ICD-9 updates) and, if directional,
        ``icd10_edge_index``/``icd10_edge_weight``."""
        out = {"edge_index": self.icd9_edge_index.cpu(),
               "edge_weight": self.icd9_edge_weight.cpu()}
        if self.direction == "directional":
            out["icd10_edge_index"] = self.icd10_edge_index.cpu()
            out["icd10_edge_weight"] = self.icd10_edge_weight.cpu()
        return out

    def code_lists(self) -> dict[str, list[str]]:
        """The node codes: ``{"icd9_codes": [...], "icd10_codes": [...]}``."""
        return {"icd9_codes": list(self.icd9_codes), "icd10_codes": list(self.icd10_codes)}

    def _codes_file(self) -> dict[str, Any]:
        """What :meth:`save` writes beside the tensors: :meth:`code_lists` and, for a
        graph whose ICD-10-PCS codes have links, :attr:`icd10_proc_source`."""
        out: dict[str, Any] = self.code_lists()
        if self.icd10_proc_source is not None:
            out["icd10_proc_source"] = self.icd10_proc_source
        return out

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, Tensor], codes: Mapping[str, Any]) -> GEMGraph:
        """Inverse of :meth:`tensors` and :meth:`code_lists` (the direction follows from
        the tensors given).

        Raises:
            ValueError: naming a missing, unknown or malformed part.
        """
        tensors = dict(tensors)
        check_graph_parts(tensors, codes)
        return cls(codes["icd9_codes"], codes["icd10_codes"], tensors["edge_index"],
                   tensors["edge_weight"], tensors.get("icd10_edge_index"),
                   tensors.get("icd10_edge_weight"), codes.get("icd10_proc_source"))

    def save(self, path: PathLike) -> list[Path]:
        """Write :meth:`tensors` to ``path`` (safetensors) and :meth:`code_lists` to the
        JSON file beside it, ``graph.safetensors`` → ``graph_codes.json`` (the model
        bundle's files; with ``"icd10_proc_source"`` where it is known); returns both
        paths."""
        return write_graph_files(path, self.tensors(), self._codes_file())

    @classmethod
    def load(cls, path: PathLike) -> GEMGraph:
        """Load a graph written by :meth:`save`: safetensors and JSON only, nothing is
        unpickled (a former ``torch.save`` file is refused: :meth:`load_legacy`).

        Raises:
            FileNotFoundError: for a missing file (the codes file named).
            ValueError: naming the file, for one that is no graph.
        """
        return cls._from_file(path, *read_graph_files(path))

    @classmethod
    def load_legacy(cls, path: PathLike) -> GEMGraph:
        """Load a graph of the former ``torch.save`` format (formats 1 and 2; read with
        ``weights_only``); :meth:`save` writes it in the current one."""
        return cls._from_file(path, *read_legacy_graph_file(path))

    @classmethod
    def _from_file(cls, path: PathLike, tensors: dict[str, Tensor], codes: Any) -> GEMGraph:
        try:
            return cls.from_tensors(tensors, codes)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    # ---------------------------------------------------------------- report
    def summary(self) -> str:
        """One line: the codes of each system (how many are procedures, how many have
        no link) and the links of each set (exact and approximate; diagnoses and
        procedures apart, with where the ICD-10-PCS codes' links come from).  A graph
        without procedure codes is summarised as before procedures were linked."""
        def links(weight: Tensor) -> str:
            exact = int((weight == EXACT_WEIGHT).sum())
            return f"{weight.numel()} links ({exact} exact, {weight.numel() - exact} approximate)"

        procs = {s: int(self.procedures(s).sum()) for s in ("icd9", "icd10")}

        def nodes(system: System) -> str:
            kinds = f"{procs[system]} procedures; " if any(procs.values()) else ""
            return (f"{len(self.codes(system))} {SYSTEM_LABELS[system]} codes ({kinds}"
                    f"{int((~self.linked(system)).sum())} without a link)")

        head = f"GEMGraph ({self.direction}): {nodes('icd9')}, {nodes('icd10')}"
        if not any(procs.values()):
            if self.direction == "union":
                return f"{head}, {links(self.edge_weight)}"
            return (f"{head}; ICD-9 codes updated along {links(self.icd9_edge_weight)} of "
                    f"the forward GEMs, ICD-10 codes along {links(self.icd10_edge_weight)} "
                    "of the backward GEMs")
        counts = self.link_counts()
        if self.direction == "union":
            return (f"{head}, {links(self.edge_weight)}, {counts['icd9']['dx']} of diagnoses "
                    f"and {counts['icd9']['proc']} of procedures")
        where = PROC_SOURCE_WORDS.get(self.icd10_proc_source or "", "")
        return (f"{head}; ICD-9 codes updated along {links(self.icd9_edge_weight)} of the "
                f"forward GEMs, {counts['icd9']['dx']} of diagnoses and "
                f"{counts['icd9']['proc']} of procedures; ICD-10 codes along "
                f"{links(self.icd10_edge_weight)}, {counts['icd10']['dx']} of diagnoses of "
                f"the backward GEMs and {counts['icd10']['proc']} of procedures"
                + (f" {where}" if where and counts["icd10"]["proc"] else ""))

    def __repr__(self) -> str:
        edges = (f"edges={self.num_edges}" if self.direction == "union" else
                 f"icd9_edges={self.icd9_edge_index.size(1)}, "
                 f"icd10_edges={self.icd10_edge_index.size(1)}")
        return (
            f"{self.__class__.__name__}(icd9={self.num_icd9}, icd10={self.num_icd10}, "
            f"{edges}, direction={self.direction!r})"
        )


@functools.cache
def _cms_2018_full(direction: str, procedures: bool = False) -> GEMGraph:
    """Every code and link of the shipped CMS 2018 GEMs (and the forward procedure GEM
    with ``procedures``), parsed once per process (never handed out:
    :meth:`GEMGraph.from_cms_2018` returns restricted copies)."""
    if direction == "union":  # the same links, read together
        return _cms_2018_full("directional", procedures).to_union()
    forward, backward = cms_2018_gem_paths()
    extra = [cms_procedure_gem_path()] if procedures else []
    return GEMGraph._from_links(read_gem_files([forward, *extra], [backward]), direction)
