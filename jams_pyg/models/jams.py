r"""The JAMS joint coding model (built from a :class:`ModelConfig` by
:func:`jams_pyg.models.build.build_model`, trained with :func:`jams_pyg.models.loss.jams_loss`).

One shared text encoder reads every document; each coding system ``s`` has a code
embedding table (``U`` for ICD-9, ``V`` for ICD-10, ``[C_s, d]``), a label-attention head, a
per-code output matrix and a per-code bias.  With ``use_mat`` the two tables are refined by one
:class:`MATConv` over the GEM graph once per forward pass (eq. 1-2 of the paper) and the
refined :math:`U', V'` serve as the code queries of the heads; without it the tables are used
as they are.

The defaults follow the authors' official code (GY-Jeong/JAMS, ``src/models/modules/
attention.py`` and ``graph_attention.py``) where the paper is silent:

* a separate per-code output matrix and bias per system (``third_linear_icd9/icd10``), never
  touched by MAT (``output_layer="separate"``);
* for LAAT and PLM-ICD one key projection :math:`\tanh(\mathbf{W}\mathbf{H})` shared by both
  systems (``first_linear``; ``key_projection="shared"``);
* code tables initialised from :math:`\mathcal{N}(0, 0.03)` (``_init_weights``), output
  matrices as the backbone's own (LAAT/PLM-ICD :math:`\mathcal{N}(0, 0.03)`,
  CAML/MultiResCNN Xavier), biases as ``nn.Linear``'s;
* the directional GEM graph (forward-file links update ICD-9 codes, backward-file links
  update ICD-10 codes; ``adj_matrix_icd9_to_icd10.npy`` / ``adj_matrix_icd10_to_icd9.npy``).

A plain CAML/MultiResCNN backbone (no MAT) initialises its code table with Xavier, as Edin et
al.'s ``mullenbach_models.py``.  Our own extension ``output_layer="code_table"`` (variant
``tied``) derives each code's output vector from its (refined) code table through one shared
linear map instead.  Every document goes through its own system's head only.
The same class with MAT off and one system is the plain backbone (CAML, MultiResCNN, LAAT or
PLM-ICD), so every comparison runs one code path; with one encoder per system
(``shared_encoder=False``) it isolates what MAT adds without sharing the encoder.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric import EdgeIndex

from jams_pyg.icd.codes import SYSTEM_IDS
from jams_pyg.models.config import ModelConfig
from jams_pyg.models.encoders import TextEncoder
from jams_pyg.models.heads import LabelAttentionHead
from jams_pyg.nn.mat_conv import tensor_version

__all__ = ["EDGE_BUFFERS", "JAMS", "JointCodingModel"]


def _system_ids(system: Tensor | Sequence[Any] | str | None, batch: int, device) -> Tensor:
    if system is None:
        raise ValueError("system is required for a model with several coding systems")
    if isinstance(system, str):
        system = [system] * batch
    if not isinstance(system, Tensor):
        ids = []
        for position, value in enumerate(system):
            if isinstance(value, str):
                if value not in SYSTEM_IDS:
                    raise ValueError(f"system[{position}]: unknown coding system {value!r}")
                ids.append(SYSTEM_IDS[value])
            else:
                ids.append(int(value))
        system = torch.tensor(ids, dtype=torch.long)
    system = system.to(device=device, dtype=torch.long).view(-1)
    if system.numel() != batch:
        raise ValueError(f"system has {system.numel()} entries for a batch of {batch}")
    return system


#: Names of the GEM edge buffers (:meth:`JAMS.graph_buffers`): the links updating ICD-9
#: codes and, for a directional graph, ICD-10 codes. jams_pyg before bundle format 3 saved
#: them in state dicts; loading checks and drops them.
EDGE_BUFFERS = ("edge_index", "edge_weight", "edge_index_icd10", "edge_weight_icd10")


def _pop_saved_edges(model: JAMS, state: Any, prefix: str, source: str) -> None:
    saved = {name: state[prefix + name] for name in EDGE_BUFFERS if prefix + name in state}
    if not saved:
        return
    mine = model.graph_buffers()
    differ = sorted(name for name in saved.keys() | mine.keys() if not (
        name in saved and name in mine and isinstance(saved[name], Tensor)
        and saved[name].shape == mine[name].shape
        and torch.equal(saved[name].to(mine[name]), mine[name])))
    if differ:
        raise ValueError(
            f"{source}: its GEM edge tensors differ from the links of the GEM graph the "
            f"model is built with ({', '.join(differ)}); the graph is the links' one home: "
            "load the weights with the graph they were trained on")
    for name in saved:
        del state[prefix + name]


class JAMS(nn.Module):
    r"""Joint learning across medical coding systems (Jeong et al., JAMS).

    .. math::
        (U', V') = \mathrm{MAT}(U, V; \mathcal{G}_{\mathrm{GEM}}, \omega), \qquad
        \hat{\mathbf{y}}^{(s)} = \mathrm{head}_s(\mathrm{enc}(\mathbf{x}), U' \text{ or } V')

    Args:
        encoder (TextEncoder or dict[str, TextEncoder]): Shared text encoder, ``out_channels``
            wide, or one encoder per coding system (all equally wide; ablation).
        heads (dict[str, LabelAttentionHead]): One head per coding system, the one home of
            the output layer (:attr:`output_layer`): heads without an output projection
            give each code its own output vector (``"separate"``), heads with one derive
            them from the code table (``"code_table"``, see :class:`ModelConfig`); every
            head the same.
        num_codes (dict[str, int]): Codes per system (label order = table rows).
        code_dim (int): Code embedding width ``d``.
        mat (nn.Module, optional): A :class:`jams_pyg.nn.MATConv` refining ``(U, V)``;
            needs ``graph``.
        graph (GEMGraph, optional): GEM graph MAT runs on, the one home of its links and
            of their direction: the model keeps it (:attr:`graph`) and holds its links as
            buffers that move with the model but are not part of the state dict.
        edge_weighting (bool, optional): Use the GEM edge weights; all ones if
            :obj:`False`. (default: :obj:`True`)
        key_proj (nn.Linear, optional): Key projection :math:`\mathbf{W}` shared by the
            heads of all systems (their keys are :math:`\tanh(\mathbf{W}\mathbf{H})`); the
            heads must then be built with ``key_proj=False``.
        output_init (str, optional): Initialisation of the per-code output matrices,
            ``"normal"`` (:math:`\mathcal{N}(0, 0.03)`) or ``"xavier"``.
            (default: :obj:`"normal"`)
        table_init (str, optional): Initialisation of the code tables, ``"normal"``
            (:math:`\mathcal{N}(0, 0.03)`) or ``"xavier"``. (default: :obj:`"normal"`)

    These arguments are the model's one home of each setting; :func:`build_model` derives
    them from a :class:`ModelConfig` and records that config as :attr:`config` (``None``
    for a model assembled by hand), which a bundle stores to rebuild the model.

    Shapes:
        - **input:** ``input_ids [B, L]``, ``attention_mask [B, L]`` bool, ``system [B]``
          (0 = icd9, 1 = icd10, or names)
        - **output:** ``{s: logits [B_s, C_s]}`` for every system of the model, rows in batch
          order of that system's documents (``[0, C_s]`` when absent from the batch)
    """

    def __init__(
        self,
        encoder: TextEncoder | Mapping[str, TextEncoder],
        heads: Mapping[str, LabelAttentionHead],
        num_codes: Mapping[str, int],
        code_dim: int,
        mat: nn.Module | None = None,
        graph: Any = None,
        edge_weighting: bool = True,
        key_proj: nn.Linear | None = None,
        output_init: str = "normal",
        table_init: str = "normal",
    ) -> None:
        super().__init__()
        self.systems = tuple(heads)
        for s in self.systems:
            if s not in SYSTEM_IDS:
                raise ValueError(f"unknown coding system {s!r}")
            if s not in num_codes:
                raise ValueError(f"num_codes has no entry for system {s!r}")
            if int(num_codes[s]) <= 0:
                raise ValueError(f"num_codes[{s!r}] must be positive, got {num_codes[s]}")
        self.shared_encoder = isinstance(encoder, TextEncoder)
        self.encoder: nn.Module
        if isinstance(encoder, TextEncoder):
            self.encoder = encoder
            width = encoder.out_channels
        else:
            if set(encoder) != set(self.systems):
                raise ValueError(f"per-system encoders for {sorted(encoder)}, but the heads "
                                 f"code {sorted(self.systems)}")
            widths = {s: enc.out_channels for s, enc in encoder.items()}
            if len(set(widths.values())) != 1:
                raise ValueError(f"per-system encoders differ in width: {widths}")
            self.encoder = nn.ModuleDict(dict(encoder))
            width = widths[self.systems[0]]
        self.heads = nn.ModuleDict(dict(heads))
        # one choice, one home: the output layer is the heads' (their output projection)
        projected = {s: getattr(head, "output_proj", None) is not None
                     for s, head in self.heads.items()}
        if len(set(projected.values())) > 1:
            raise ValueError(
                "the heads differ in their output layer (output_proj per system: "
                f"{projected}): build every head with output_proj=False ('separate': every "
                "code its own output vector) or every head with output_proj=True "
                "('code_table': output vectors derived from the code table)")
        self.num_codes = {s: int(num_codes[s]) for s in self.systems}
        self.code_dim = code_dim
        self.edge_weighting = edge_weighting
        for name, value in (("output_init", output_init), ("table_init", table_init)):
            if value not in ("normal", "xavier"):
                raise ValueError(f"{name} must be 'normal' or 'xavier', got {value!r}")
        self.output_init, self.table_init = output_init, table_init
        self.key_proj = key_proj
        #: the ModelConfig build_model built this model from (set there; a bundle stores it)
        self.config: ModelConfig | None = None
        self.code_tables = nn.ParameterDict(
            {s: nn.Parameter(torch.empty(self.num_codes[s], code_dim)) for s in self.systems}
        )
        self.biases = nn.ParameterDict(
            {s: nn.Parameter(torch.zeros(self.num_codes[s])) for s in self.systems}
        )
        self.outputs = nn.ParameterDict(
            {
                s: nn.Parameter(torch.empty(self.num_codes[s], width))
                for s in self.systems
            }
            if self.output_layer == "separate"
            else {}
        )
        self.mat = mat
        if mat is not None:
            if set(self.systems) != set(SYSTEM_IDS):
                raise ValueError("MAT needs both coding systems 'icd9' and 'icd10'")
            if graph is None:
                raise ValueError("MAT needs the GEM graph: pass graph=GEMGraph(...)")
            for s, n in (("icd9", graph.num_icd9), ("icd10", graph.num_icd10)):
                if n != self.num_codes[s]:
                    raise ValueError(
                        f"GEM graph has {n} {s} nodes but num_codes[{s!r}] = "
                        f"{self.num_codes[s]}: build the graph on the dataset's code lists"
                    )
        #: the GEM graph MAT runs on (``None`` without MAT)
        self.graph = graph if mat is not None else None
        # The links MAT runs on, as buffers (they follow .to() / DDP) derived from the graph
        # and not persistent: the graph is their one home (a bundle stores it once, in
        # graph.safetensors). Their names are those of the tensors older state dicts hold
        # (see drop_saved_edges).
        for name, tensor in self._graph_edges(edge_weighting).items():
            self.register_buffer(name, tensor, persistent=False)
        self.reset_parameters()

    def _graph_edges(self, edge_weighting: bool) -> dict[str, Tensor]:
        """The buffers of the graph's links: those updating ICD-9 codes (``edge_index``,
        ``edge_weight``) and, for a directional graph, ICD-10 codes (``..._icd10``)."""
        if self.graph is None:
            return {}
        out: dict[str, Tensor] = {}
        systems = ("icd9", "icd10") if self.directional else ("icd9",)
        for s in systems:
            index, weight = self.graph.edges(s)
            weight = weight.detach().clone().float()
            suffix = "" if s == "icd9" else "_icd10"
            out["edge_index" + suffix] = index.detach().clone().long()
            out["edge_weight" + suffix] = weight if edge_weighting else torch.ones_like(weight)
        return out

    @property
    def output_layer(self) -> str:
        """``"code_table"`` when the heads derive the output vectors from the code table
        (their ``output_proj``), else ``"separate"``: asked of :attr:`heads`."""
        head = next(iter(self.heads.values()))
        return "code_table" if getattr(head, "output_proj", None) is not None else "separate"

    @property
    def directional(self) -> bool:
        """Whether MAT reads the GEMs directionally: asked of :attr:`graph`."""
        return self.graph is not None and self.graph.direction == "directional"

    def graph_buffers(self) -> dict[str, Tensor]:
        """The buffers of the graph's links, by name (not in the state dict)."""
        return {name: buf for name, buf in self.named_buffers(recurse=False)
                if name in EDGE_BUFFERS}

    def drop_saved_edges(self, state: Mapping[str, Any], source: str = "the state dict",
                         ) -> dict[str, Any]:
        """``state`` without the GEM edge tensors an earlier jams_pyg saved in its state
        dicts (bundle format <= 2, checkpoints), after checking they equal this model's
        (the graph's) links.

        Raises:
            ValueError: naming ``source``, when they differ.
        """
        state = dict(state)
        _pop_saved_edges(self, state, "", source)
        return state

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # an older state dict holds the graph's links: checked, then dropped
        _pop_saved_edges(self, state_dict, prefix, "the state dict")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def reset_parameters(self) -> None:
        std = 0.03  # the official code's _init_weights(mean=0.0, std=0.03)
        for table in self.code_tables.values():
            if self.table_init == "normal":
                nn.init.normal_(table, 0.0, std)
            else:
                nn.init.xavier_uniform_(table)
        width = next(iter(self.outputs.values())).size(1) if len(self.outputs) else 0
        for s, bias in self.biases.items():
            if self.output_layer == "separate":
                # nn.Linear's bias initialisation, as the official per-code output layers
                bound = 1.0 / math.sqrt(width)
                nn.init.uniform_(bias, -bound, bound)
            else:
                nn.init.zeros_(bias)
            if s in self.outputs:
                if self.output_init == "normal":
                    nn.init.normal_(self.outputs[s], 0.0, std)
                else:
                    nn.init.xavier_uniform_(self.outputs[s])
        if self.key_proj is not None:
            nn.init.normal_(self.key_proj.weight, 0.0, std)

    def mat_edges(self) -> tuple[Any, Any]:
        r"""``(edge_index, edge_weight)`` as :class:`~jams_pyg.nn.MATConv` takes them: tensors
        for the union graph, pairs ``(ICD-9 updates, ICD-10 updates)`` for a directional one.

        The link sets come as :class:`torch_geometric.EdgeIndex` views of the buffers, one
        view per buffer state: MATConv finds the CSR structures it cached for an
        ``EdgeIndex`` by identity, where a plain tensor costs an :math:`O(|\mathcal{E}|)`
        content comparison on every forward pass."""
        if self.directional:
            return ((self._edge_view("edge_index"), self._edge_view("edge_index_icd10")),
                    (self.edge_weight, self.edge_weight_icd10))
        return self._edge_view("edge_index"), self.edge_weight

    def _edge_view(self, name: str) -> EdgeIndex:
        buffer = getattr(self, name)
        views = self.__dict__.setdefault("_edge_views", {})
        kept = views.get(name)
        # a new view when the buffer is a new tensor (.to(), a new graph) or was changed
        # in place: MATConv then builds its structures afresh
        version = tensor_version(buffer)
        if kept is None or kept[0] is not buffer or kept[1] != version:
            # outside inference mode even when called in it (predict), so that the view
            # can serve training afterwards (inference tensors cannot be saved for backward)
            with torch.inference_mode(False):
                kept = (buffer, version, EdgeIndex(buffer))
            views[name] = kept
        return kept[2]

    def keys(self, system: str, h: Tensor) -> Tensor:
        r"""Token keys ``[B, L, d]`` the head of ``system`` attends with: the shared projection
        :math:`\tanh(\mathbf{W}\mathbf{H})` when the model has one, else the head's own."""
        if self.key_proj is not None:
            return torch.tanh(self.key_proj(h))
        return self.heads[system].keys(h)

    @property
    def use_mat(self) -> bool:
        return self.mat is not None

    def code_embeddings(self, return_attention_weights: bool = False) -> dict[str, Any]:
        r"""The code tables the heads use: :math:`U', V'` after MAT (or :math:`U, V`).

        Compute them once and pass them as ``code_tables=`` to :meth:`forward`,
        :meth:`score` or :meth:`attention_weights` to score many batches with one MAT pass
        (the weights must not change in between, e.g. under ``torch.no_grad()``).

        Returns ``{"icd9": [n, d], "icd10": [m, d]}`` (systems of the model); with
        ``return_attention_weights=True`` and MAT on, also

        * ``"mat_attention"``: MATConv's ``(edge_index, alpha_9_from_10, alpha_10_from_9,
          self_alpha_9, self_alpha_10)``;
        * ``"link_attention"``: the same per system ``s``, ``{s: (edge_index [2, E_s],
          alpha [E_s, H], self_alpha [C_s, H])}``: the GEM links that update the codes of
          ``s`` (row 0 ICD-9, row 1 ICD-10 indices, as the graph's ``edges(s)``), the
          attention :math:`\alpha_{ij}` each code of ``s`` gives the other end of each of
          them, and its self weight :math:`\alpha_{ii}`, per MAT head.
        """
        if self.mat is None:
            return {s: self.code_tables[s] for s in self.systems}
        x = (self.code_tables["icd9"], self.code_tables["icd10"])
        edge_index, edge_weight = self.mat_edges()
        if return_attention_weights:
            (u, v), att = self.mat(x, edge_index, edge_weight, return_attention_weights=True)
        else:
            u, v = self.mat(x, edge_index, edge_weight)
        for s, t in (("icd9", u), ("icd10", v)):
            if t.shape != (self.num_codes[s], self.code_dim):
                raise ValueError(
                    f"MATConv returned {s} embeddings of shape {tuple(t.shape)}, expected "
                    f"[{self.num_codes[s]}, {self.code_dim}]"
                )
        out: dict[str, Any] = {"icd9": u, "icd10": v}
        if return_attention_weights:
            out["mat_attention"] = att
            edge_arg, alpha9, alpha10, self9, self10 = att
            # one tensor for the union graph, an (ICD-9, ICD-10 updates) pair otherwise
            edges9, edges10 = edge_arg if self.directional else (edge_arg, edge_arg)
            out["link_attention"] = {"icd9": (edges9, alpha9, self9),
                                     "icd10": (edges10, alpha10, self10)}
        return out

    def encode(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, system: str | None = None
    ) -> tuple[Tensor, Tensor]:
        """Token representations ``H [B, L', h]`` and their mask ``[B, L']`` of documents of
        ``system`` (needed only with per-system encoders; the shared one reads any)."""
        if self.shared_encoder:
            return self.encoder(input_ids, attention_mask)
        if system not in self.num_codes:
            raise ValueError(f"per-system encoders need the system of the documents, one of "
                             f"{self.systems}; got {system!r}")
        return self.encoder[system](input_ids, attention_mask)

    def _run(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        system: Tensor | Sequence[Any] | str | None,
        code_tables: Mapping[str, Tensor] | None,
        attention_codes: Mapping[str, Tensor] | None,
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        batch = input_ids.size(0)
        if system is None and len(self.systems) == 1:
            system = torch.full((batch,), SYSTEM_IDS[self.systems[0]], dtype=torch.long)
        sys_ids = _system_ids(system, batch, input_ids.device)
        known = torch.tensor([SYSTEM_IDS[s] for s in self.systems], device=sys_ids.device)
        bad = ~torch.isin(sys_ids, known)
        if bool(bad.any()):
            pos = int(bad.nonzero()[0])
            raise ValueError(
                f"document {pos} has system id {int(sys_ids[pos])}, but the model codes only "
                f"{self.systems} (ids {[SYSTEM_IDS[s] for s in self.systems]})"
            )
        tables = code_tables if code_tables is not None else self.code_embeddings()
        if self.shared_encoder:
            h, mask = self.encoder(input_ids, attention_mask)
        logits: dict[str, Tensor] = {}
        attention: dict[str, Tensor] = {}
        for s in self.systems:
            rows = (sys_ids == SYSTEM_IDS[s]).nonzero().view(-1)
            if rows.numel() == 0:
                logits[s] = tables[s].new_zeros(0, self.num_codes[s])
                continue
            if not self.shared_encoder:
                # Encode only this system's documents with this system's encoder.
                ids_s = input_ids if rows.numel() == batch else input_ids[rows]
                mask_s = None
                if attention_mask is not None:
                    mask_s = attention_mask if rows.numel() == batch else attention_mask[rows]
                hs, ms = self.encode(ids_s, mask_s, s)
            elif rows.numel() == batch:
                hs, ms = h, mask
            else:
                hs, ms = h[rows], mask[rows]
            if attention_codes is not None and s in attention_codes:
                index = attention_codes[s]
                if index.dim() == 2 and index.size(0) != rows.numel():
                    raise ValueError(
                        f"attention_codes[{s!r}] has {index.size(0)} rows for {rows.numel()} "
                        f"{s} documents"
                    )
                logits[s], attention[s] = self.score(hs, ms, s, tables, index)
            else:
                logits[s] = self.score(hs, ms, s, tables)
        return logits, attention

    def score(
        self,
        h: Tensor,
        mask: Tensor,
        system: str,
        code_tables: Mapping[str, Tensor] | None = None,
        attention_codes: Tensor | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        r"""Logits of the head of ``system`` over encoded documents (the second half of
        :meth:`forward`, for documents that :meth:`encode` read once for several systems).

        Args:
            h (Tensor): Token representations ``[B, L, h]`` of :meth:`encode`.
            mask (Tensor): Their mask ``[B, L]`` (``True`` = token).
            system (str): The coding system whose head scores the documents.
            code_tables (dict, optional): Precomputed :meth:`code_embeddings`.
            attention_codes (Tensor, optional): Code indices ``[K]`` or ``[B, K]``: also
                return their token attention weights.

        Returns:
            ``logits [B, C_s]``, or ``(logits, attention [B, K, L])`` with
            ``attention_codes``.
        """
        tables = code_tables if code_tables is not None else self.code_embeddings()
        outputs = self.outputs[system] if self.output_layer == "separate" else None
        keys = self.keys(system, h) if self.key_proj is not None else None  # else the head's
        return self.heads[system](
            h,
            mask,
            tables[system],
            self.biases[system],
            outputs,
            return_attention=attention_codes is not None,
            attention_index=attention_codes,
            keys=keys,
        )

    def attention_weights(
        self,
        h: Tensor,
        mask: Tensor,
        system: str,
        codes: Tensor,
        code_tables: Mapping[str, Tensor] | None = None,
    ) -> Tensor:
        r"""Token attention weights :math:`a_{cl}` ``[B, K, L]`` of the codes ``codes``
        (``[K]`` or ``[B, K]`` indices of ``system``) over encoded documents, without the
        logits of every code: evidence for codes chosen from :meth:`score`'s logits.
        Rows sum to 1 over the tokens of a document and are zero on padding."""
        tables = code_tables if code_tables is not None else self.code_embeddings()
        return self.heads[system].attention_weights(
            self.keys(system, h), mask, tables[system], codes
        )

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        system: Tensor | Sequence[Any] | str | None = None,
        code_tables: Mapping[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        r"""Logits per coding system.

        Args:
            input_ids (Tensor): ``[B, L]`` token ids, right-padded with 0.
            attention_mask (Tensor, optional): ``[B, L]`` bool, ``True`` = token
                (``input_ids != 0`` when omitted).
            system (Tensor or list, optional): ``[B]`` system ids (0 icd9, 1 icd10) or names;
                optional for a single-system model.
            code_tables (dict, optional): Precomputed :meth:`code_embeddings` (e.g. computed
                once for a whole evaluation under ``torch.no_grad()``).
        """
        return self._run(input_ids, attention_mask, system, code_tables, None)[0]

    def forward_with_attention(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        system: Tensor | Sequence[Any] | str | None,
        codes: Mapping[str, Tensor],
        code_tables: Mapping[str, Tensor] | None = None,
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Logits and token attention weights for chosen codes (evidence).

        ``codes[s]`` holds code indices of system ``s``: ``[K]`` (same codes for all of its
        documents) or ``[B_s, K]`` (per document).  Returns ``(logits, attention)`` with
        ``attention[s]`` of shape ``[B_s, K, L]`` (rows sum to 1 over the tokens of the
        document; zero on padding) for every system in ``codes`` present in the batch.
        """
        return self._run(input_ids, attention_mask, system, code_tables, codes)

    def __repr__(self) -> str:
        codes = ", ".join(f"{s}={n}" for s, n in self.num_codes.items())
        return (
            f"{self.__class__.__name__}(encoder={self.encoder!r}, codes=({codes}), "
            f"code_dim={self.code_dim}, mat={self.mat!r}, output_layer={self.output_layer!r}, "
            f"shared_keys={self.key_proj is not None}, directional={self.directional})"
        )


JointCodingModel = JAMS
