"""Configuration of a :class:`~jams_pyg.models.JAMS` model (no torch import: the command
line shows its defaults without loading torch).

:class:`ModelConfig` holds what every backbone shares (model name, vocabulary, code width,
systems, MAT, output layer, GEM direction, ...) and, in ``ModelConfig.backbone``, the settings
of its backbone alone: :class:`LAATConfig`, :class:`CAMLConfig`, :class:`MultiResCNNConfig` or
:class:`PLMICDConfig`. A setting of another backbone is an error that names the setting and
the backbone. ``config.json``, ``metrics.json`` and bundles keep the flat layout of earlier
versions (:data:`FLAT_LAYOUT`: every backbone's settings side by side, ``null`` where they do
not apply), which :meth:`ModelConfig.to_dict` writes and :meth:`ModelConfig.from_dict` and
:meth:`ModelConfig.for_backbone` read."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from jams_pyg.graph.directions import DIRECTIONS as GEM_DIRECTIONS
from jams_pyg.icd.codes import SYSTEM_IDS

__all__ = ["ATTENTION_IMPLS", "BACKBONES", "BACKBONE_CONFIGS", "FLAT_LAYOUT", "OUTPUT_LAYERS",
           "BackboneConfig", "CAMLConfig", "LAATConfig", "ModelConfig", "MultiResCNNConfig",
           "PLMICDConfig", "backbone_config", "backbone_name", "check_choice"]

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


# The defaults of the backbone configs: Edin et al. (2023), configs/model/*.yaml, and the width
# of their word embeddings: every word backbone takes it from the word2vec text encoder,
# configs/text_encoder/word2vec.yaml (vector_size: 100; the official JAMS code has the same
# file), so LAAT is 100-d too.
@dataclass
class LAATConfig:
    """LAAT's own settings (a BiLSTM encoder and a projected label attention, Vu et al.,
    2020); the defaults are Edin et al.'s ``configs/model/laat.yaml`` and the 100-d word2vec
    embeddings of ``configs/text_encoder/word2vec.yaml``.

    Args:
        embedding_dim: Word embedding width (100: ``vector_size`` of ``word2vec.yaml``).
        embed_dropout: Dropout on word embeddings (0.3, ``laat.yaml``).
        rnn_hidden_size: BiLSTM width per direction (512, ``laat.yaml``).
        rnn_num_layers: BiLSTM layers (1, ``laat.yaml``).
        rnn_dropout: Dropout between BiLSTM layers (0.3, ``laat.yaml``).
        projection_size: Attention projection width (512, ``laat.yaml``).
    """

    model: ClassVar[str] = "laat"
    embedding_dim: int = 100
    embed_dropout: float = 0.3
    rnn_hidden_size: int = 512
    rnn_num_layers: int = 1
    rnn_dropout: float = 0.3
    projection_size: int = 512


@dataclass
class CAMLConfig:
    """CAML's own settings (one convolution and a per-code attention, Mullenbach et al.,
    2018); the defaults are Edin et al.'s ``configs/model/caml.yaml`` and the 100-d word2vec
    embeddings of ``configs/text_encoder/word2vec.yaml``.

    Args:
        embedding_dim: Word embedding width (100: ``vector_size`` of ``word2vec.yaml``).
        embed_dropout: Dropout on word embeddings (0.2, ``caml.yaml``).
        num_filters: Convolution filters (50, ``caml.yaml``).
        kernel_size: Convolution width (10, ``caml.yaml``).
    """

    model: ClassVar[str] = "caml"
    embedding_dim: int = 100
    embed_dropout: float = 0.2
    num_filters: int = 50
    kernel_size: int = 10


@dataclass
class MultiResCNNConfig:
    """MultiResCNN's own settings (parallel residual convolutions, Li & Yu, 2020); the
    defaults are Edin et al.'s ``configs/model/multi_res_conv.yaml`` and the 100-d word2vec
    embeddings of ``configs/text_encoder/word2vec.yaml``.

    Args:
        embedding_dim: Word embedding width (100: ``vector_size`` of ``word2vec.yaml``).
        embed_dropout: Dropout on word embeddings (0.2, ``multi_res_conv.yaml``).
        num_filters: Filters of each channel (50, ``multi_res_conv.yaml``).
        kernel_sizes: One channel per kernel size ((3, 5, 9, 15, 19, 25),
            ``multi_res_conv.yaml``).
    """

    model: ClassVar[str] = "multirescnn"
    embedding_dim: int = 100
    embed_dropout: float = 0.2
    num_filters: int = 50
    kernel_sizes: tuple[int, ...] = (3, 5, 9, 15, 19, 25)

    def __post_init__(self) -> None:
        self.kernel_sizes = tuple(int(k) for k in self.kernel_sizes)


@dataclass
class PLMICDConfig:
    """PLM-ICD's own settings (a pretrained language model over token chunks, Huang et al.,
    2022).

    Args:
        plm_path_or_config: The PLM: a local directory, a ``PretrainedConfig`` or a dict
            (Edin et al.'s ``configs/model/plm_icd.yaml`` names a local RoBERTa-base-PM-M3-Voc
            directory, ``model_path``); required to build the model.
        chunk_size: Tokens per chunk (128).
        projection_size: Attention projection width; ``None``: the PLM's hidden size, as
            Edin et al.'s ``src/models/plm_icd.py`` (``projection_size=self.config.hidden_size``).
    """

    model: ClassVar[str] = "plm_icd"
    plm_path_or_config: Any = None
    chunk_size: int = 128
    projection_size: int | None = None


BackboneConfig = LAATConfig | CAMLConfig | MultiResCNNConfig | PLMICDConfig
#: The config class of each backbone.
BACKBONE_CONFIGS: dict[str, type[BackboneConfig]] = {
    "laat": LAATConfig, "caml": CAMLConfig, "multirescnn": MultiResCNNConfig,
    "plm_icd": PLMICDConfig,
}
#: How errors write each backbone.
_DISPLAY = {"laat": "LAAT", "caml": "CAML", "multirescnn": "MultiResCNN", "plm_icd": "PLM-ICD"}
#: The flat layout of a model config in ``config.json``, ``metrics.json`` and bundles, in its
#: order: the shared fields of :class:`ModelConfig` and every backbone's settings side by side.
FLAT_LAYOUT = (
    "model", "vocab_size", "embedding_dim", "embed_dropout", "freeze_embeddings", "num_filters",
    "kernel_size", "kernel_sizes", "rnn_hidden_size", "rnn_num_layers", "rnn_dropout",
    "projection_size", "plm_path_or_config", "chunk_size", "code_dim", "systems", "use_mat",
    "shared_encoder", "mat_heads", "mat_dropout", "mat_negative_slope", "mat_att_gain",
    "edge_weighting", "output_layer", "key_projection", "gem_direction", "attention",
)
#: Every backbone setting, and the backbones that have it.
_BACKBONE_SETTINGS: dict[str, tuple[str, ...]] = {}
for _name, _cls in BACKBONE_CONFIGS.items():
    for _field in dataclasses.fields(_cls):
        _BACKBONE_SETTINGS[_field.name] = (*_BACKBONE_SETTINGS.get(_field.name, ()), _name)
del _name, _cls, _field


def backbone_name(name: str) -> str:
    """``name`` as :data:`BACKBONES` writes it (``"MultiResCNN"``, ``"multi-res-cnn"`` ->
    ``"multirescnn"``); ``ValueError`` for an unknown backbone."""
    name = str(name).lower().replace("-", "_")
    if name in ("multi_res_cnn", "multirescnn", "multi_res_conv"):
        name = "multirescnn"
    if name not in BACKBONES:
        raise ValueError(f"model must be one of {BACKBONES}, got {name!r}")
    return name


def backbone_config(model: str, settings: Mapping[str, Any]) -> BackboneConfig:
    """The config of backbone ``model`` with the flat ``settings`` (``None`` takes the
    default); a setting of another backbone raises ``ValueError`` naming it and ``model``."""
    model = backbone_name(model)
    cls = BACKBONE_CONFIGS[model]
    own = {f.name for f in dataclasses.fields(cls)}
    foreign = sorted(k for k in settings if k not in own)
    if foreign:
        what = ", ".join(
            f"{k} (a setting of {', '.join(_DISPLAY[m] for m in _BACKBONE_SETTINGS[k])})"
            if k in _BACKBONE_SETTINGS else f"{k} (no backbone's)" for k in foreign)
        raise ValueError(f"model {model!r} ({_DISPLAY[model]}) has no setting {what}; "
                         f"{cls.__name__} has {', '.join(sorted(own))}")
    return cls(**{k: v for k, v in settings.items() if v is not None})


@dataclass
class ModelConfig:
    r"""Configuration of a :class:`JAMS` model: the settings every backbone shares, and
    ``backbone``, the settings of the chosen backbone alone (Edin et al.'s defaults: see
    :class:`LAATConfig`, :class:`CAMLConfig`, :class:`MultiResCNNConfig`,
    :class:`PLMICDConfig`). :meth:`for_backbone` takes both kinds as flat keywords; a backbone
    setting reads flat too (``config.rnn_hidden_size``: ``None`` where the backbone has none).

    Args:
        model: ``"laat"``, ``"caml"``, ``"multirescnn"`` or ``"plm_icd"`` (default: the
            backbone of ``backbone``, else ``"laat"``).
        vocab_size: Word vocabulary size (word-level backbones; pad 0, unk 1).
        freeze_embeddings: Keep pretrained word vectors fixed (word-level backbones).
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
            :func:`build_model` must match.  The run's request: a saved bundle keeps the
            reading in its graph only (bundle format 4) and fills this field from it.
        attention: Token softmax implementation of the heads, ``"sdpa"`` or ``"explicit"``.
        backbone: The backbone's own settings (default: its class's defaults); must be the
            config class of ``model``.
    """

    model: str | None = None
    vocab_size: int = 0
    freeze_embeddings: bool = False
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
    backbone: BackboneConfig | None = None

    # Backbone settings read flat (properties added below the class): their types.
    embedding_dim: ClassVar[int | None]
    embed_dropout: ClassVar[float | None]
    num_filters: ClassVar[int | None]
    kernel_size: ClassVar[int | None]
    kernel_sizes: ClassVar[tuple[int, ...] | None]
    rnn_hidden_size: ClassVar[int | None]
    rnn_num_layers: ClassVar[int | None]
    rnn_dropout: ClassVar[float | None]
    projection_size: ClassVar[int | None]
    plm_path_or_config: ClassVar[Any]
    chunk_size: ClassVar[int | None]

    def __post_init__(self) -> None:
        if self.model is None:
            self.model = self.backbone.model if self.backbone is not None else "laat"
        self.model = backbone_name(self.model)
        cls = BACKBONE_CONFIGS[self.model]
        if self.backbone is None:
            self.backbone = cls()
        elif type(self.backbone) is not cls:
            raise ValueError(
                f"model {self.model!r} ({_DISPLAY[self.model]}) takes a {cls.__name__}, got "
                f"a {type(self.backbone).__name__}")
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
        if self.model == "plm_icd" and self.freeze_embeddings:
            raise ValueError("freeze_embeddings is a setting of the word-level backbones; "
                             "model 'plm_icd' (PLM-ICD) has no word embeddings")

    @classmethod
    def for_backbone(cls, name: str, **overrides: Any) -> ModelConfig:
        """Config of backbone ``name`` (``--model laat|caml|multirescnn|plm_icd``) with Edin
        et al.'s hyper-parameters, ``overrides`` replacing single fields, shared ones and the
        backbone's alike (flat, as ``model_overrides`` and :data:`FLAT_LAYOUT` write them;
        ``None`` takes the default). A setting of another backbone raises ``ValueError``
        naming it and ``name``; so does an unknown field."""
        shared = {f.name for f in dataclasses.fields(cls)} - {"model", "backbone"}
        unknown = sorted(set(overrides) - shared - set(_BACKBONE_SETTINGS))
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s) {unknown}; fields: "
                             f"{sorted(shared | set(_BACKBONE_SETTINGS))}")
        name = backbone_name(name)
        own = {f.name for f in dataclasses.fields(BACKBONE_CONFIGS[name])}
        # a null of another backbone's setting is how the flat layout writes "not set"
        settings = {k: v for k, v in overrides.items()
                    if k not in shared and (k in own or v is not None)}
        return cls(model=name, backbone=backbone_config(name, settings),
                   **{k: v for k, v in overrides.items() if k in shared})

    def to_dict(self) -> dict[str, Any]:
        """The flat, JSON-friendly dict of :data:`FLAT_LAYOUT` (``null`` for the settings of
        the other backbones; a ``PretrainedConfig`` becomes its ``to_dict()``), the layout
        every earlier version wrote."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.name != "backbone"}
        values.update((f.name, getattr(self.backbone, f.name))
                      for f in dataclasses.fields(self.backbone))
        out = {name: values.get(name) for name in FLAT_LAYOUT}
        plm = out["plm_path_or_config"]
        if plm is not None and hasattr(plm, "to_dict"):
            out["plm_path_or_config"] = plm.to_dict()
        elif isinstance(plm, dict):
            out["plm_path_or_config"] = copy.deepcopy(plm)
        elif plm is not None and not isinstance(plm, str):
            out["plm_path_or_config"] = str(plm)
        out["systems"] = list(self.systems)
        if out["kernel_sizes"] is not None:
            out["kernel_sizes"] = list(out["kernel_sizes"])
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict` (the flat layout, as every version wrote it).  Configs
        written before ``key_projection`` and ``gem_direction`` existed describe models with
        per-system key projections over the union graph, so those are their values when the
        fields are missing; before ``mat_att_gain``, MATConv's attention started from PyG's
        ``glorot`` (gain 1)."""
        unknown = sorted(set(data) - set(FLAT_LAYOUT))
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s) {unknown}")
        data = {**_LEGACY_FIELDS, **dict(data)}
        return cls.for_backbone(data.pop("model", "laat"), **data)

    @property
    def shares_keys(self) -> bool:
        """Whether the model owns one key projection for all systems (LAAT, PLM-ICD)."""
        return self.model in ("laat", "plm_icd") and self.key_projection == "shared"


def _flat_setting(name: str) -> property:
    def get(self: ModelConfig) -> Any:
        return getattr(self.backbone, name, None)

    return property(get, doc=f"The backbone's ``{name}`` (``None`` where it has none).")


for _setting in _BACKBONE_SETTINGS:
    setattr(ModelConfig, _setting, _flat_setting(_setting))
del _setting


#: Values of fields that configs written by older versions lack (see ModelConfig.from_dict).
_LEGACY_FIELDS: dict[str, Any] = {"key_projection": "per_system", "gem_direction": "union",
                                  "mat_att_gain": 1.0}
