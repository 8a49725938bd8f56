"""Configuration of a :class:`~jams_pyg.models.JAMS` model (no torch import: the command
line shows its defaults without loading torch)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from jams_pyg.graph.directions import DIRECTIONS as GEM_DIRECTIONS
from jams_pyg.icd.codes import SYSTEM_IDS

__all__ = ["ATTENTION_IMPLS", "BACKBONES", "OUTPUT_LAYERS", "ModelConfig", "check_choice"]

#: Output layers: per-code matrix and bias per system (official), or derived from the code
#: table (our extension).
OUTPUT_LAYERS = ("separate", "code_table")
#: Implementations of the label-attention token softmax.
ATTENTION_IMPLS = ("sdpa", "explicit")
KEY_PROJECTIONS = ("shared", "per_system")


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise ``ValueError("<name> must be 'a' or 'b', got ...")`` unless ``value`` is one of
    ``choices``: the one wording of every such check (config, model, heads)."""
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")

#: The four backbones of the paper (Table 2), in its order.
BACKBONES = ("laat", "caml", "multirescnn", "plm_icd")

# Edin et al. (2023), configs/model/*.yaml, and the width of their word embeddings: every word
# backbone takes it from the word2vec text encoder, configs/text_encoder/word2vec.yaml
# (vector_size: 100; the official JAMS code has the same file), so LAAT is 100-d too.
_BACKBONE_DEFAULTS: dict[str, dict[str, Any]] = {
    "caml": {"embedding_dim": 100, "embed_dropout": 0.2, "num_filters": 50, "kernel_size": 10},
    "multirescnn": {
        "embedding_dim": 100,
        "embed_dropout": 0.2,
        "num_filters": 50,
        "kernel_sizes": (3, 5, 9, 15, 19, 25),
    },
    "laat": {
        "embedding_dim": 100,
        "embed_dropout": 0.3,
        "rnn_hidden_size": 512,
        "rnn_num_layers": 1,
        "rnn_dropout": 0.3,
        "projection_size": 512,
    },
    "plm_icd": {"chunk_size": 128},
}


@dataclass
class ModelConfig:
    r"""Configuration of a :class:`JAMS` model; ``None`` fields take Edin et al.'s default
    for the chosen backbone (see :meth:`for_backbone`).

    Args:
        model: ``"laat"``, ``"caml"``, ``"multirescnn"`` or ``"plm_icd"``.
        vocab_size: Word vocabulary size (word-level backbones; pad 0, unk 1).
        embedding_dim: Word embedding width (100 for every word backbone: the word2vec
            ``vector_size`` of Edin et al.'s and the official
            ``configs/text_encoder/word2vec.yaml``).
        embed_dropout: Dropout on word embeddings (0.2 CAML/MultiResCNN, 0.3 LAAT).
        freeze_embeddings: Keep pretrained word vectors fixed.
        num_filters, kernel_size: CAML convolution (50, 10).
        kernel_sizes: MultiResCNN channels (3, 5, 9, 15, 19, 25), ``num_filters`` each.
        rnn_hidden_size, rnn_num_layers, rnn_dropout: LAAT BiLSTM (512 per direction, 1, 0.3).
        projection_size: LAAT attention projection (512; PLM-ICD: the PLM hidden size).
        plm_path_or_config: PLM-ICD model: local directory, ``PretrainedConfig`` or dict.
        chunk_size: PLM-ICD chunk length (128).
        code_dim: Code embedding width ``d``; default: the projection size (LAAT, PLM-ICD) or
            the encoder width (CAML, MultiResCNN), so queries act without a mapping.
        systems: Coding systems of the model, a subset of ``("icd9", "icd10")``.
        use_mat: Refine the code tables with MATConv over the GEM graph (needs both systems).
        shared_encoder: One text encoder for every system (JAMS); ``False`` gives each
            system its own encoder, so only MAT couples the systems (ablation ``mat_only``).
        mat_heads, mat_dropout, mat_negative_slope: MATConv settings.
        mat_att_gain: Gain of the Xavier-uniform initialisation of MATConv's attention
            vector (``att_gain``): 1.414, the official ``nn.init.xavier_uniform_(self.a.data,
            gain=1.414)`` (GY-Jeong/JAMS, ``src/models/modules/graph_attention.py``); the
            synthetic presets keep 1.0 (PyG's ``glorot``), what they always used.
        edge_weighting: Use the GEM weights :math:`\omega` (1 exact, 0.5 approximate);
            ``False`` sets all :math:`\omega = 1` (ablation).
        output_layer: ``"separate"`` (default, the official JAMS code and Edin et al.'s
            backbones): a separate per-code output matrix and bias per system; MAT refines
            the attention queries only.  ``"code_table"`` (our extension, variant ``tied``):
            output vectors :math:`\mathbf{o}_c = \mathbf{W}_o \mathbf{e}'_c` from the
            (refined) code table with one shared linear map.
        key_projection: LAAT / PLM-ICD only: ``"shared"`` (default, official code): one key
            projection for every system; ``"per_system"``: one per system's head.
        gem_direction: The GEM graph MAT runs on: ``"directional"`` (default, official code:
            forward-file links update ICD-9 codes, backward-file links ICD-10 codes) or
            ``"union"`` (one symmetric edge set, ablation); the graph passed to
            :func:`build_model` must match.
        attention: Token softmax implementation of the heads, ``"sdpa"`` or ``"explicit"``.
    """

    model: str = "laat"
    vocab_size: int = 0
    embedding_dim: int | None = None
    embed_dropout: float | None = None
    freeze_embeddings: bool = False
    num_filters: int | None = None
    kernel_size: int | None = None
    kernel_sizes: tuple[int, ...] | None = None
    rnn_hidden_size: int | None = None
    rnn_num_layers: int | None = None
    rnn_dropout: float | None = None
    projection_size: int | None = None
    plm_path_or_config: Any = None
    chunk_size: int | None = None
    code_dim: int | None = None
    systems: tuple[str, ...] = ("icd9", "icd10")
    use_mat: bool = True
    shared_encoder: bool = True
    mat_heads: int = 1
    mat_dropout: float = 0.0
    mat_negative_slope: float = 0.2
    mat_att_gain: float = 1.414
    edge_weighting: bool = True
    output_layer: Literal["code_table", "separate"] = "separate"
    key_projection: Literal["shared", "per_system"] = "shared"
    gem_direction: Literal["directional", "union"] = "directional"
    attention: Literal["sdpa", "explicit"] = "sdpa"

    def __post_init__(self) -> None:
        self.model = str(self.model).lower().replace("-", "_")
        if self.model in ("multi_res_cnn", "multirescnn", "multi_res_conv"):
            self.model = "multirescnn"
        if self.model not in BACKBONES:
            raise ValueError(f"model must be one of {BACKBONES}, got {self.model!r}")
        for key, value in _BACKBONE_DEFAULTS[self.model].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if self.kernel_sizes is not None:
            self.kernel_sizes = tuple(int(k) for k in self.kernel_sizes)
        if isinstance(self.systems, str):
            self.systems = (self.systems,)
        self.systems = tuple(self.systems)
        if not self.systems or len(set(self.systems)) != len(self.systems):
            raise ValueError(f"systems must be distinct and non-empty, got {self.systems}")
        for system in self.systems:
            if system not in SYSTEM_IDS:
                raise ValueError(f"unknown coding system {system!r}; use 'icd9' and/or 'icd10'")
        if self.use_mat and set(self.systems) != set(SYSTEM_IDS):
            raise ValueError(
                "use_mat=True needs both systems ('icd9', 'icd10'); set use_mat=False for a "
                f"single-system model (systems={self.systems})"
            )
        check_choice("output_layer", self.output_layer, OUTPUT_LAYERS)
        check_choice("attention", self.attention, ATTENTION_IMPLS)
        check_choice("key_projection", self.key_projection, KEY_PROJECTIONS)
        check_choice("gem_direction", self.gem_direction, GEM_DIRECTIONS)
        if self.model != "plm_icd" and self.vocab_size < 0:
            raise ValueError(f"vocab_size must be positive, got {self.vocab_size}")

    @classmethod
    def for_backbone(cls, name: str, **overrides: Any) -> ModelConfig:
        """Config of backbone ``name`` (``--model laat|caml|multirescnn|plm_icd``) with Edin
        et al.'s hyper-parameters, ``overrides`` replacing single fields."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s) {unknown}; fields: {sorted(names)}")
        return cls(model=name, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (a ``PretrainedConfig`` becomes its ``to_dict()``)."""
        out = dataclasses.asdict(self)
        plm = self.plm_path_or_config
        if plm is not None and hasattr(plm, "to_dict"):
            out["plm_path_or_config"] = plm.to_dict()
        elif plm is not None and not isinstance(plm, (dict, str)):
            out["plm_path_or_config"] = str(plm)
        out["systems"] = list(self.systems)
        if self.kernel_sizes is not None:
            out["kernel_sizes"] = list(self.kernel_sizes)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`.  Configs written before ``key_projection`` and
        ``gem_direction`` existed describe models with per-system key projections over the
        union graph, so those are their values when the fields are missing; before
        ``mat_att_gain``, MATConv's attention started from PyG's ``glorot`` (gain 1)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s) {unknown}")
        data = {**_LEGACY_FIELDS, **dict(data)}
        return cls(**data)

    @property
    def shares_keys(self) -> bool:
        """Whether the model owns one key projection for all systems (LAAT, PLM-ICD)."""
        return self.model in ("laat", "plm_icd") and self.key_projection == "shared"


#: Values of fields that configs written by older versions lack (see ModelConfig.from_dict).
_LEGACY_FIELDS: dict[str, Any] = {"key_projection": "per_system", "gem_direction": "union",
                                  "mat_att_gain": 1.0}
