"""A trained model as a self-contained folder (a *bundle*), written after training and read
back in one call by :meth:`jams_pyg.inference.predictor.JAMSPredictor.load`.

Layout (no pickle anywhere; loading parses JSON and safetensors only, so it never runs code
from the bundle)::

    config.json          format + version, model config, systems, max_length, thresholds,
                         tokenizer kind, the sha256 of every other file, user extras, and
                         config_sha256: the sha256 of config.json's own content (its
                         canonical JSON without that entry)
    weights.safetensors  the model's state dict
    codes.json           label vocabularies {"icd9": [...], "icd10": [...]} (label order)
    vocab.json           word tokenizer (WordTokenizer.save) -- or --
    tokenizer/           a Hugging Face tokenizer folder (save_pretrained), for PLM-ICD
    graph.safetensors    GEM graph edges (edge_index [2, E], edge_weight [E]; a directional
                         graph adds icd10_edge_index [2, E'], icd10_edge_weight [E'])  [optional]
    graph_codes.json     GEM graph node codes {"icd9_codes": [...], "icd10_codes": [...]}

:func:`load_bundle` refuses (with :class:`BundleError`) a bundle with a missing file, a file
whose checksum differs from ``config.json`` (modified or truncated), a ``config.json``
whose content differs from its ``config_sha256`` (an edited threshold or ``max_length``),
an unknown format version, weights whose names or shapes do not fit the model the config
describes, or any other malformed part; every error names the file. The checksums detect
accidental and casual edits; they are no signature (anyone can recompute them).

Every file is written with the ordinary mode of a new file (``0o666 & ~umask``, e.g. 0644),
through a temporary file unique to the writer that is renamed into place.

Format versions: 2 (written since ``config_sha256``); 1 (no ``config_sha256``) is still
read, with a warning that its ``config.json`` is not protected: re-save it to upgrade.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from torch import nn

from jams_pyg.atomic import atomic_open, atomic_write_text
from jams_pyg.graph.gem_graph import GEMGraph
from jams_pyg.icd.codes import SYSTEMS
from jams_pyg.models import ModelConfig, build_model
from jams_pyg.train.distributed import unwrap_model

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "READABLE_VERSIONS",
    "Bundle",
    "BundleError",
    "config_checksum",
    "load_bundle",
    "read_bundle_config",
    "save_bundle",
]

PathLike = str | os.PathLike[str]

BUNDLE_FORMAT = "jams_pyg.bundle"
#: Version of the bundle layout written by :func:`save_bundle`; loading any other is refused.
BUNDLE_VERSION = 2
#: Versions :func:`load_bundle` reads: 1 (before ``config_sha256``; loaded with a warning).
READABLE_VERSIONS = (1, 2)
CONFIG_CHECKSUM_KEY = "config_sha256"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
CODES_FILE = "codes.json"
VOCAB_FILE = "vocab.json"
HF_TOKENIZER_DIR = "tokenizer"
GRAPH_FILE = "graph.safetensors"
GRAPH_CODES_FILE = "graph_codes.json"


class BundleError(ValueError):
    """A model bundle that cannot be loaded (missing file, checksum mismatch, unknown
    version, weights that do not fit the config, ...)."""


@dataclass
class Bundle:
    """Everything :func:`load_bundle` rebuilds from a bundle folder."""

    path: Path | None
    model: nn.Module
    model_config: ModelConfig | None
    tokenizer: Any
    codes: dict[str, list[str]]
    thresholds: dict[str, float]
    graph: GEMGraph | None
    max_length: int
    extra: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def systems(self) -> tuple[str, ...]:
        return tuple(self.model.systems)


# ----------------------------------------------------------------------------- helpers
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor],
                  metadata: dict[str, str] | None = None) -> None:
    """safetensors file written atomically with the ordinary mode (``safetensors``' own
    ``save_file`` creates its files 0600)."""
    from safetensors.torch import save

    with atomic_open(path) as handle:
        handle.write(save(tensors, metadata=metadata))


def config_checksum(config: Mapping[str, Any]) -> str:
    """sha256 of a bundle config's canonical JSON (sorted keys, no white space, ASCII),
    without its ``config_sha256`` entry: what ``config_sha256`` records."""
    content = {k: v for k, v in config.items() if k != CONFIG_CHECKSUM_KEY}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path}: missing {what}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"{path}: cannot read {what} ({err})") from err


def _is_word_tokenizer(tokenizer: Any) -> bool:
    from jams_pyg.data.text import WordTokenizer

    return isinstance(tokenizer, WordTokenizer)


def _plm_config_dict(value: Any) -> Any:
    """PLM-ICD: store the transformers config (not a path to the PLM: its weights are in
    ``weights.safetensors``, and the bundle must not depend on another folder)."""
    if value is None or isinstance(value, dict):
        return value
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (str, os.PathLike)):
        from transformers import AutoConfig

        path = Path(value)
        if not path.is_dir():
            raise FileNotFoundError(f"PLM directory {str(path)!r} does not exist")
        return AutoConfig.from_pretrained(str(path), local_files_only=True).to_dict()
    raise TypeError(f"cannot store plm_path_or_config of type {type(value).__name__}")


def _check_codes(codes: Mapping[str, Sequence[str]], systems: Sequence[str]) -> dict:
    out: dict[str, list[str]] = {}
    for s in systems:
        if s not in codes:
            raise ValueError(f"codes has no {s!r} list (model systems: {tuple(systems)})")
        values = list(codes[s])
        for i, c in enumerate(values):
            if not isinstance(c, str) or not c:
                raise ValueError(f"codes[{s!r}][{i}] must be a non-empty string, got {c!r}")
        if len(set(values)) != len(values):
            raise ValueError(f"codes[{s!r}] has duplicate codes")
        out[s] = values
    return out


def _check_thresholds(thresholds: Mapping[str, Any], systems: Sequence[str]) -> dict:
    out: dict[str, float] = {}
    for s in systems:
        if s not in thresholds:
            raise ValueError(f"thresholds has no {s!r} entry (model systems: {tuple(systems)})")
        try:
            value = float(thresholds[s])
        except (TypeError, ValueError):
            raise ValueError(f"thresholds[{s!r}] must be a number, got {thresholds[s]!r}") from None
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise ValueError(f"thresholds[{s!r}] must be a probability in [0, 1], got {value}")
        out[s] = value
    return out


# -------------------------------------------------------------------------------- save
def save_bundle(
    directory: PathLike,
    model: nn.Module,
    model_config: ModelConfig,
    tokenizer: Any,
    codes: dict[str, list[str]],
    thresholds: dict[str, float],
    graph: GEMGraph | None,
    max_length: int,
    extra: dict | None = None,
) -> Path:
    """Write a trained model as a bundle folder that :func:`load_bundle` (and
    :meth:`jams_pyg.inference.predictor.JAMSPredictor.load`) read back.

    Args:
        directory (str or os.PathLike): The folder (created if needed; bundle files already
            there are overwritten, ``config.json`` last).
        model (nn.Module): The trained :class:`jams_pyg.models.JAMS` (DDP / compiled
            wrappers are unwrapped).
        model_config (ModelConfig): Its configuration (``build_model(model_config, ...)`` must
            rebuild the same architecture). A PLM-ICD ``plm_path_or_config`` that is a local
            folder is stored as its transformers config (the PLM weights are in the state
            dict).
        tokenizer: The :class:`~jams_pyg.data.WordTokenizer` or Hugging Face fast
            tokenizer the model was trained with.
        codes (dict[str, list[str]]): Label vocabulary of every system of the model, in
            label order.
        thresholds (dict[str, float]): Tuned decision threshold per system.
        graph (GEMGraph, optional): GEM graph over ``codes`` (needed with MAT; used for the
            GEM-neighbour evidence).
        max_length (int): Maximum number of tokens per note (as in training).
        extra (dict, optional): JSON-serialisable information (metrics, data, run name).

    Returns:
        The bundle folder as a :class:`~pathlib.Path`.
    """
    directory = Path(directory)
    model = unwrap_model(model)
    if not isinstance(model_config, ModelConfig):
        raise TypeError(f"model_config must be a ModelConfig, got {type(model_config).__name__}")
    systems = tuple(model_config.systems)
    model_systems = tuple(getattr(model, "systems", systems))
    if set(model_systems) != set(systems):
        raise ValueError(f"model codes {model_systems} but model_config says {systems}")
    codes = _check_codes(codes, systems)
    num_codes = getattr(model, "num_codes", None)
    if num_codes is not None:
        for s in systems:
            if num_codes[s] != len(codes[s]):
                raise ValueError(
                    f"codes[{s!r}] has {len(codes[s])} codes but the model has {num_codes[s]}"
                )
    thresholds = _check_thresholds(thresholds, systems)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"max_length must be a positive int, got {max_length!r}")
    if model_config.use_mat and graph is None:
        raise ValueError("the model uses MAT: save_bundle needs its GEM graph (graph=...)")
    if graph is not None:
        for s in systems:
            if list(graph.codes(s)) != codes[s]:
                raise ValueError(
                    f"the GEM graph's {s} nodes differ from codes[{s!r}]: build the graph on "
                    "the label vocabularies (GEMGraph.from_cms_2018(icd9_codes, icd10_codes))"
                )
    extra = dict(extra or {})
    try:
        json.dumps(extra)
    except (TypeError, ValueError) as err:
        raise TypeError(f"extra must be JSON-serialisable: {err}") from err

    config_dict = model_config.to_dict()
    config_dict["plm_path_or_config"] = _plm_config_dict(model_config.plm_path_or_config)
    if model_config.model != "plm_icd" and config_dict.get("vocab_size", 0) <= 0:
        config_dict["vocab_size"] = len(tokenizer)
    try:
        json.dumps(config_dict)
    except (TypeError, ValueError) as err:
        raise TypeError(f"model_config is not JSON-serialisable: {err}") from err

    directory.mkdir(parents=True, exist_ok=True)
    files: list[str] = []

    # Cloning drops shared storage (tied weights), which safetensors refuses.
    state = {k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()}
    _save_tensors(directory / WEIGHTS_FILE, state, metadata={"format": BUNDLE_FORMAT})
    files.append(WEIGHTS_FILE)

    _write_json(directory / CODES_FILE, {s: codes[s] for s in systems})
    files.append(CODES_FILE)

    if _is_word_tokenizer(tokenizer):
        tokenizer.save(directory / VOCAB_FILE)
        files.append(VOCAB_FILE)
        tokenizer_info = {"kind": "word", "path": VOCAB_FILE}
    elif hasattr(tokenizer, "save_pretrained"):
        target = directory / HF_TOKENIZER_DIR
        target.mkdir(exist_ok=True)
        tokenizer.save_pretrained(str(target))
        files.extend(
            sorted(p.relative_to(directory).as_posix() for p in target.rglob("*") if p.is_file())
        )
        tokenizer_info = {"kind": "huggingface", "path": HF_TOKENIZER_DIR}
    else:
        raise TypeError(
            "tokenizer must be a jams_pyg WordTokenizer or a Hugging Face tokenizer, got "
            f"{type(tokenizer).__name__}"
        )

    graph_info = None
    if graph is not None:
        # edge_index/edge_weight (links updating ICD-9 codes) and, for a directional
        # graph, icd10_edge_index/icd10_edge_weight (links updating ICD-10 codes)
        _save_tensors(
            directory / GRAPH_FILE,
            {name: t.detach().to("cpu").contiguous() for name, t in graph.tensors().items()},
        )
        _write_json(
            directory / GRAPH_CODES_FILE,
            {"icd9_codes": list(graph.icd9_codes), "icd10_codes": list(graph.icd10_codes)},
        )
        files += [GRAPH_FILE, GRAPH_CODES_FILE]
        graph_info = {"tensors": GRAPH_FILE, "codes": GRAPH_CODES_FILE}

    from jams_pyg import __version__

    config = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_VERSION,
        "jams_pyg_version": __version__,
        "model_config": config_dict,
        "systems": list(systems),
        "num_codes": {s: len(codes[s]) for s in systems},
        "max_length": max_length,
        "thresholds": thresholds,
        "tokenizer": tokenizer_info,
        "graph": graph_info,
        "files": {name: _sha256(directory / name) for name in files},
        "extra": extra,
    }
    config[CONFIG_CHECKSUM_KEY] = config_checksum(config)
    _write_json(directory / CONFIG_FILE, config)
    return directory


# -------------------------------------------------------------------------------- load
def _bundle_path(directory: Path, name: Any) -> Path:
    if not isinstance(name, str) or not name:
        raise BundleError(f"{directory / CONFIG_FILE}: bad file name {name!r} in 'files'")
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts:
        raise BundleError(
            f"{directory / CONFIG_FILE}: file {name!r} lies outside the bundle folder"
        )
    return directory.joinpath(*pure.parts)


def read_bundle_config(directory: PathLike, verify: bool = True) -> dict[str, Any]:
    """Read and check a bundle's ``config.json``: format, version and (with ``verify``)
    that every listed file exists and has its recorded sha256.

    Raises:
        BundleError: on any mismatch, naming the file.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise BundleError(f"{directory}: no such model bundle folder")
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise BundleError(
            f"{directory}: not a jams_pyg model bundle ({CONFIG_FILE} is missing)"
        )
    config = _read_json(path, "bundle config")
    if not isinstance(config, dict) or config.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: not a jams_pyg model bundle config (format != "
                          f"{BUNDLE_FORMAT!r})")
    version = config.get("format_version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise BundleError(
            f"{path}: bundle format version {version!r} is not supported (this jams_pyg "
            f"reads versions {', '.join(map(str, READABLE_VERSIONS))}); re-save the model "
            "with a matching jams_pyg"
        )
    if version >= 2 and verify:
        recorded = config.get(CONFIG_CHECKSUM_KEY)
        try:
            actual = config_checksum(config)
        except ValueError as err:  # NaN / Infinity in the config
            raise BundleError(f"{path}: not strict JSON ({err})") from err
        if recorded != actual:
            raise BundleError(
                f"{path}: checksum mismatch ({CONFIG_CHECKSUM_KEY} differs from the "
                "content); config.json was modified after the bundle was saved (an edited "
                "threshold, max_length or model setting is refused: re-save the bundle)"
            )
    elif version == 1:
        warnings.warn(
            f"{path}: bundle format version 1 has no {CONFIG_CHECKSUM_KEY}, so edits to "
            "config.json cannot be detected; re-save the bundle to upgrade it to version "
            f"{BUNDLE_VERSION}", UserWarning, stacklevel=2)
    for key in ("model_config", "systems", "max_length", "thresholds", "tokenizer", "files"):
        if key not in config:
            raise BundleError(f"{path}: missing entry {key!r}")
    files = config["files"]
    if not isinstance(files, dict):
        raise BundleError(f"{path}: 'files' must map file names to sha256 digests")
    required = [WEIGHTS_FILE, CODES_FILE]
    tok = config["tokenizer"]
    if not isinstance(tok, dict) or tok.get("kind") not in ("word", "huggingface"):
        raise BundleError(f"{path}: unknown tokenizer entry {tok!r}")
    required.append(VOCAB_FILE if tok["kind"] == "word" else f"{HF_TOKENIZER_DIR}/tokenizer.json")
    if config.get("graph") is not None and not isinstance(config["graph"], dict):
        raise BundleError(f"{path}: 'graph' must be null or an object, got {config['graph']!r}")
    if config.get("graph"):
        required += [GRAPH_FILE, GRAPH_CODES_FILE]
    for name in required:
        if name not in files:
            raise BundleError(f"{path}: 'files' does not list the required file {name!r}")
    if verify:
        for name, digest in files.items():
            file = _bundle_path(directory, name)
            if not file.is_file():
                raise BundleError(f"{directory}: incomplete bundle, file {name!r} is missing")
            if _sha256(file) != digest:
                raise BundleError(
                    f"{file}: checksum mismatch (sha256 differs from {CONFIG_FILE}); the file "
                    "was modified, truncated or replaced after the bundle was saved"
                )
    return config


def _load_tokenizer(directory: Path, info: dict[str, Any]) -> Any:
    if info["kind"] == "word":
        from jams_pyg.data.text import WordTokenizer

        try:
            return WordTokenizer.load(directory / VOCAB_FILE)
        except ValueError as err:
            raise BundleError(str(err)) from err
    from jams_pyg.data.text import load_hf_tokenizer

    try:
        return load_hf_tokenizer(directory / HF_TOKENIZER_DIR)
    except (OSError, ValueError) as err:
        raise BundleError(f"{directory / HF_TOKENIZER_DIR}: cannot load tokenizer ({err})") from err


def _load_graph(directory: Path) -> GEMGraph:
    from safetensors.torch import load_file

    codes = _read_json(directory / GRAPH_CODES_FILE, "GEM graph codes")
    try:
        tensors = load_file(str(directory / GRAPH_FILE))
        return GEMGraph(codes["icd9_codes"], codes["icd10_codes"], tensors["edge_index"],
                        tensors["edge_weight"], tensors.get("icd10_edge_index"),
                        tensors.get("icd10_edge_weight"))
    except Exception as err:  # safetensors / GEMGraph validation errors
        raise BundleError(f"{directory / GRAPH_FILE}: cannot rebuild the GEM graph ({err})") \
            from err


def load_bundle(directory: PathLike, device: str | torch.device | None = None,
                verify: bool = True) -> Bundle:
    """Rebuild model, tokenizer, label vocabularies, thresholds and GEM graph of a bundle
    written by :func:`save_bundle`; the model is returned in ``eval()`` mode on ``device``
    (default CPU). Only JSON and safetensors are parsed: nothing is unpickled.

    Args:
        verify (bool): Check the sha256 of every file and of ``config.json`` itself
            (default). Without it a malformed part still raises :class:`BundleError`.

    Raises:
        BundleError: missing file, checksum mismatch (``config.json`` included),
            unsupported format version, weights whose names/shapes do not fit the model
            the config describes, or any other malformed part (naming the bundle).
    """
    target = torch.device(device) if device is not None else torch.device("cpu")
    try:
        return _load_bundle(Path(directory), target, verify)
    except BundleError:
        raise
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as err:
        raise BundleError(
            f"{directory}: malformed bundle ({type(err).__name__}: {err})") from err


def _load_bundle(directory: Path, device: torch.device, verify: bool) -> Bundle:
    config = read_bundle_config(directory, verify=verify)
    cfg_path = directory / CONFIG_FILE
    systems = config["systems"]
    if (not isinstance(systems, list) or not systems
            or any(s not in SYSTEMS for s in systems)):
        raise BundleError(f"{cfg_path}: bad 'systems' {systems!r}")
    try:
        model_config = ModelConfig.from_dict(config["model_config"])
    except (TypeError, ValueError) as err:
        raise BundleError(f"{cfg_path}: bad model_config ({err})") from err
    if list(model_config.systems) != systems:
        raise BundleError(f"{cfg_path}: systems {systems} differ from the model config's "
                          f"{list(model_config.systems)}")
    raw_codes = _read_json(directory / CODES_FILE, "label vocabularies")
    if not isinstance(raw_codes, dict):
        raise BundleError(f"{directory / CODES_FILE}: expected {{system: [codes]}}")
    try:
        codes = _check_codes(raw_codes, systems)
        thresholds = _check_thresholds(config["thresholds"], systems)
    except (TypeError, ValueError) as err:
        raise BundleError(f"{directory}: {err}") from err
    max_length = config["max_length"]
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise BundleError(f"{cfg_path}: max_length must be a positive int, got {max_length!r}")
    graph = _load_graph(directory) if config.get("graph") else None
    if graph is not None:
        for s in systems:
            if list(graph.codes(s)) != codes[s]:
                raise BundleError(f"{directory}: GEM graph {s} nodes differ from {CODES_FILE}")
    if model_config.use_mat and graph is None:
        raise BundleError(f"{cfg_path}: the model uses MAT but the bundle has no GEM graph")
    tokenizer = _load_tokenizer(directory, config["tokenizer"])

    try:
        model = build_model(model_config, graph if model_config.use_mat else None,
                            {s: len(codes[s]) for s in systems})
    except (TypeError, ValueError) as err:
        raise BundleError(f"{cfg_path}: cannot build the model ({err})") from err

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights_path = directory / WEIGHTS_FILE
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError) as err:
        raise BundleError(f"{weights_path}: cannot read weights ({err})") from err
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing tensors {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected tensors {unexpected[:5]}")
        if wrong:
            parts.append(f"shape mismatch {wrong[:5]}")
        raise BundleError(
            f"{weights_path}: weights do not fit the model described by {CONFIG_FILE} ("
            + "; ".join(parts) + ")"
        )
    model.load_state_dict(state, strict=True)
    model.to(device)
    model.eval()
    return Bundle(
        path=directory,
        model=model,
        model_config=model_config,
        tokenizer=tokenizer,
        codes=codes,
        thresholds=thresholds,
        graph=graph,
        max_length=max_length,
        extra=dict(config.get("extra") or {}),
        config=config,
    )
