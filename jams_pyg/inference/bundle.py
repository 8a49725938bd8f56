"""A trained model as a self-contained folder (a *bundle*), written after training and read
back in one call by :meth:`jams_pyg.inference.predictor.JAMSPredictor.load`.

Layout (no pickle anywhere; loading parses JSON and safetensors only, so it never runs code
from the bundle)::

    config.json          format + version, model config, systems, max_length, thresholds,
                         tokenizer kind, the sha256 of every other file, user extras, and
                         config_sha256: the sha256 of config.json's own content (its
                         canonical JSON without that entry)
    weights.safetensors  the model's state dict (without the GEM links: see below)
    codes.json           label vocabularies {"icd9": [...], "icd10": [...]} (label order)
    vocab.json           word tokenizer (WordTokenizer.save) -- or --
    tokenizer/           a Hugging Face tokenizer folder (save_pretrained), for PLM-ICD
    graph.safetensors    GEM graph edges (edge_index [2, E], edge_weight [E]; a directional
                         graph adds icd10_edge_index [2, E'], icd10_edge_weight [E']), the
                         one home of the links MAT runs on and of their direction, the GEM
                         reading (config.json's model config then has no gem_direction)
                                                                                  [optional]
    graph_codes.json     GEM graph node codes {"icd9_codes": [...], "icd10_codes": [...]}

``config.json``'s ``"ood"`` holds the out-of-distribution calibration on held-out notes
(:mod:`jams_pyg.inference.ood`), or ``null``; a bundle saved before it has no such entry
and loads with ``Bundle.ood = None`` (same format version: the entry is optional, and an
older jams_pyg reads a calibrated bundle, ignoring it).

:func:`load_bundle` refuses (with :class:`BundleError`) a bundle with a missing file, a file
whose checksum differs from ``config.json`` (modified or truncated), a ``config.json``
whose content differs from its ``config_sha256`` (an edited threshold or ``max_length``),
an unknown format version, weights whose names or shapes do not fit the model the config
describes, or any other malformed part; every error names the file. The checksums detect
accidental and casual edits; they are no signature (anyone can recompute them). File names,
versions and checksums live in :mod:`jams_pyg.inference.bundle_format`.

Every file is written with the ordinary mode of a new file (``0o666 & ~umask``, e.g. 0644).
A save writes the whole bundle into a new folder beside the bundle folder, which then takes
its place in one atomic exchange (:func:`jams_pyg.atomic.atomic_folder`): a crash at any point
leaves the previous bundle or the complete new one, never a mix (our own extension; the
official code saves a checkpoint file in place).

Format versions: 4 (written since the GEM reading left ``config.json``); 3 (the GEM links
left the state dict), 2 (``config_sha256``) and 1 (no ``config_sha256``; read with a warning
that its ``config.json`` is not protected: re-save it to upgrade) are still read.

The GEM reading is stored once. Up to version 3 ``config.json``'s model config also held
``gem_direction``, which the graph's layout already says (a directional graph has ICD-10
links of its own); loading such a bundle checks the two agree. Version 4 writes it only
where a bundle has no graph (a model without MAT, where it is no choice the weights made);
an older jams_pyg would read a version-4 config without it as the union reading of its
oldest configs, hence the new version.

The graph is stored once. Up to version 2 ``weights.safetensors`` also held the model's MAT
links (``edge_index``, ``edge_weight`` and, directional, ``edge_index_icd10``,
``edge_weight_icd10``): a copy of ``graph.safetensors``. The model now derives them from the
graph it is built with (buffers outside the state dict, :class:`~jams_pyg.models.JAMS`), so
version 3 writes no such tensor; loading an older bundle checks that they equal the graph's
links (a :class:`BundleError` naming ``weights.safetensors`` if not) and drops them. An older
jams_pyg would refuse a version-3 MAT bundle as weights missing tensors, hence the new
version: it refuses it as a format version it does not read (re-save with a matching
jams_pyg, or upgrade).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jams_pyg.atomic import atomic_folder, atomic_save_tensors, atomic_write_json, temp_siblings
from jams_pyg.graph.gem_graph import GEMGraph
from jams_pyg.icd.codes import SYSTEMS
from jams_pyg.inference.bundle_format import (
    BUNDLE_ENTRIES,
    BUNDLE_FORMAT,
    BUNDLE_VERSION,
    CODES_FILE,
    CONFIG_CHECKSUM_KEY,
    CONFIG_FILE,
    GRAPH_CODES_FILE,
    GRAPH_FILE,
    READABLE_VERSIONS,
    VOCAB_FILE,
    WEIGHTS_FILE,
    BundleError,
    config_checksum,
    file_sha256,
    read_bundle_config,
    read_graph,
    read_json,
    read_tokenizer,
    write_graph,
    write_tokenizer,
)
from jams_pyg.inference.ood import check_calibration
from jams_pyg.models import ModelConfig, build_model
from jams_pyg.models.runtime import unwrap_model

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


@dataclass
class Bundle:
    """Everything :func:`load_bundle` rebuilds from a bundle folder (or
    :meth:`Bundle.from_model` gathers in memory)."""

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
    #: the out-of-distribution calibration (:mod:`jams_pyg.inference.ood`); ``None`` for a
    #: bundle saved without one (before it existed)
    ood: dict[str, Any] | None = None

    @property
    def systems(self) -> tuple[str, ...]:
        return tuple(self.model.systems)

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        tokenizer: Any,
        codes: Mapping[str, Sequence[str]],
        thresholds: Mapping[str, float],
        graph: GEMGraph | None = None,
        max_length: int = 4000,
        ood: dict[str, Any] | None = None,
    ) -> Bundle:
        """A bundle of an in-memory model (no folder), its arguments checked as
        :func:`save_bundle` checks them; DDP / compiled wrappers are unwrapped."""
        model = unwrap_model(model)
        systems = tuple(model.systems)
        codes, thresholds = _check_parts(systems, codes, thresholds, max_length, graph,
                                         bool(getattr(model, "use_mat", False)),
                                         getattr(model, "num_codes", None))
        _check_links(model, graph)
        ood = check_calibration(ood, codes)
        return cls(path=None, model=model, model_config=getattr(model, "config", None),
                   tokenizer=tokenizer, codes=codes, thresholds=thresholds, graph=graph,
                   max_length=max_length, ood=ood)


# ----------------------------------------------------------------------------- helpers
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


def _check_parts(
    systems: Sequence[str],
    codes: Mapping[str, Sequence[str]],
    thresholds: Mapping[str, Any],
    max_length: Any,
    graph: GEMGraph | None,
    use_mat: bool,
    num_codes: Mapping[str, int] | None = None,
) -> tuple[dict[str, list[str]], dict[str, float]]:
    """The checks every bundle passes where it enters (save, load, in memory): label
    vocabularies (of the model's sizes ``num_codes``), thresholds, ``max_length`` and a GEM
    graph over the vocabularies (needed with MAT). Returns the codes and thresholds as plain
    lists and floats."""
    codes = _check_codes(codes, systems)
    for s, n in (num_codes or {}).items():
        if s in codes and n != len(codes[s]):
            raise ValueError(f"codes[{s!r}] has {len(codes[s])} codes but the model has {n}")
    thresholds = _check_thresholds(thresholds, systems)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"max_length must be a positive int, got {max_length!r}")
    if use_mat and graph is None:
        raise ValueError("the model uses MAT: the bundle needs its GEM graph (graph=...)")
    if graph is not None:
        for s in systems:
            if list(graph.codes(s)) != codes[s]:
                raise ValueError(
                    f"the GEM graph's {s} nodes differ from codes[{s!r}]: build the graph on "
                    "the label vocabularies (GEMGraph.from_cms_2018(icd9_codes, icd10_codes))"
                )
    return codes, thresholds


def _check_links(model: nn.Module, graph: GEMGraph | None) -> None:
    """MAT of a model in memory runs on the links of the graph it was built with (its
    attention is reported per link of ``graph.edges(system)``): ``graph`` must have them."""
    mine = getattr(model, "graph", None)
    if mine is None or graph is None or mine is graph:
        return
    if mine.direction != graph.direction or not all(
            torch.equal(mine.edges(s)[0].cpu(), graph.edges(s)[0].cpu()) for s in SYSTEMS):
        raise ValueError("the GEM graph's links differ from the ones the model's MAT runs "
                         "on: pass the graph the model was built with")


def _check_folder(directory: Path) -> None:
    """A bundle replaces its folder as a whole: refuse a folder that holds anything else
    (it would be deleted with the previous bundle)."""
    if not directory.is_dir():
        return
    foreign = sorted(entry.name for entry in os.scandir(directory)
                     if entry.name not in BUNDLE_ENTRIES and not (
                         entry.name.startswith(".") and entry.name.endswith(".tmp")))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5
                                          else "")
        raise FileExistsError(
            f"{directory}: holds files that are not part of a model bundle ({shown}); a "
            "bundle replaces its whole folder: save it into a folder of its own")


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
    ood: dict[str, Any] | None = None,
) -> Path:
    """Write a trained model as a bundle folder that :func:`load_bundle` (and
    :meth:`jams_pyg.inference.predictor.JAMSPredictor.load`) read back.

    Args:
        directory (str or os.PathLike): The folder (created if needed). A bundle already
            there is replaced as a whole, atomically; a folder holding other files is
            refused (:class:`FileExistsError`), as they would be deleted with it.
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
        ood (dict, optional): The out-of-distribution calibration on held-out notes
            (:func:`jams_pyg.inference.ood.calibrate`), stored in ``config.json`` as
            ``"ood"``; ``None``: the bundle predicts without the signal.

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
    codes, thresholds = _check_parts(systems, codes, thresholds, max_length, graph,
                                     model_config.use_mat, getattr(model, "num_codes", None))
    _check_links(model, graph)
    ood = check_calibration(ood, codes)
    extra = dict(extra or {})
    try:
        json.dumps(extra)
    except (TypeError, ValueError) as err:
        raise TypeError(f"extra must be JSON-serialisable: {err}") from err

    config_dict = model_config.to_dict()
    config_dict["plm_path_or_config"] = _plm_config_dict(model_config.plm_path_or_config)
    if graph is not None:  # the graph is the GEM reading's one home (format 4)
        if graph.direction != model_config.gem_direction:
            raise ValueError(f"model_config.gem_direction is {model_config.gem_direction!r} "
                             f"but the GEM graph is {graph.direction}: pass the graph the "
                             "model was built with")
        del config_dict["gem_direction"]
    if model_config.model != "plm_icd" and config_dict.get("vocab_size", 0) <= 0:
        config_dict["vocab_size"] = len(tokenizer)
    try:
        json.dumps(config_dict)
    except (TypeError, ValueError) as err:
        raise TypeError(f"model_config is not JSON-serialisable: {err}") from err

    from jams_pyg.data.text import WordTokenizer

    if isinstance(tokenizer, WordTokenizer) and config_dict["vocab_size"] != len(tokenizer):
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but the model's "
                         f"embedding {config_dict['vocab_size']} rows (model_config.vocab_size)")
    _check_folder(directory)
    # Written into a new folder that then takes the bundle folder's place as a whole: a
    # crash at any point leaves the previous bundle or the complete new one.
    with atomic_folder(directory) as staged:
        files: list[str] = []

        # Cloning drops shared storage (tied weights), which safetensors refuses.
        state = {k: v.detach().to("cpu").clone().contiguous()
                 for k, v in model.state_dict().items()}
        atomic_save_tensors(staged / WEIGHTS_FILE, state, metadata={"format": BUNDLE_FORMAT})
        files.append(WEIGHTS_FILE)

        atomic_write_json(staged / CODES_FILE, {s: codes[s] for s in systems})
        files.append(CODES_FILE)

        tokenizer_files, tokenizer_info = write_tokenizer(staged, tokenizer)
        files += tokenizer_files

        graph_info = None
        if graph is not None:
            files += write_graph(staged, graph)
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
            "files": {name: file_sha256(staged / name) for name in files},
            "extra": extra,
            "ood": ood,
        }
        config[CONFIG_CHECKSUM_KEY] = config_checksum(config)
        atomic_write_json(staged / CONFIG_FILE, config)
    return directory


# -------------------------------------------------------------------------------- load
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
    directory = Path(directory)
    if not directory.exists():
        directory = _interrupted_save(directory) or directory
    try:
        return _load_bundle(directory, target, verify)
    except BundleError:
        raise
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as err:
        raise BundleError(
            f"{directory}: malformed bundle ({type(err).__name__}: {err})") from err


def _interrupted_save(directory: Path) -> Path | None:
    """Where a save was killed between the two renames of a system without an atomic
    folder exchange (:func:`jams_pyg.atomic.atomic_folder`), ``directory`` is missing
    and a complete bundle (the previous or the new one) lies beside it: that one."""
    for candidate in temp_siblings(directory):
        if not (candidate / CONFIG_FILE).is_file():
            continue
        try:
            read_bundle_config(candidate, verify=True)
        except BundleError:
            continue
        warnings.warn(f"{directory}: missing; loading the complete bundle an interrupted "
                      f"save left beside it ({candidate.name}); save the bundle again",
                      UserWarning, stacklevel=3)
        return candidate
    return None


def _model_config_dict(config: dict[str, Any], graph: GEMGraph | None,
                       cfg_path: Path) -> dict[str, Any]:
    """``config.json``'s model config with its GEM reading: since format 4 a bundle with a
    graph keeps the reading in the graph only (``gem_direction`` is the graph's direction);
    earlier bundles also wrote it into the config, which :func:`build_model` checks
    against the graph."""
    raw = config["model_config"]
    if not isinstance(raw, dict):
        raise BundleError(f"{cfg_path}: bad model_config (expected an object, got "
                          f"{type(raw).__name__})")
    if config["format_version"] < 4 or graph is None:
        return raw
    if "gem_direction" in raw:
        raise BundleError(f"{cfg_path}: model_config holds gem_direction, which a format-4 "
                          f"bundle keeps in {GRAPH_FILE} only (the direction of its links)")
    return {**raw, "gem_direction": graph.direction}


def _load_bundle(directory: Path, device: torch.device, verify: bool) -> Bundle:
    config = read_bundle_config(directory, verify=verify)
    cfg_path = directory / CONFIG_FILE
    systems = config["systems"]
    if (not isinstance(systems, list) or not systems
            or any(s not in SYSTEMS for s in systems)):
        raise BundleError(f"{cfg_path}: bad 'systems' {systems!r}")
    graph = read_graph(directory) if config.get("graph") else None
    try:
        model_config = ModelConfig.from_dict(_model_config_dict(config, graph, cfg_path))
    except (TypeError, ValueError) as err:
        raise BundleError(f"{cfg_path}: bad model_config ({err})") from err
    if list(model_config.systems) != systems:
        raise BundleError(f"{cfg_path}: systems {systems} differ from the model config's "
                          f"{list(model_config.systems)}")
    raw_codes = read_json(directory / CODES_FILE, "label vocabularies")
    if not isinstance(raw_codes, dict):
        raise BundleError(f"{directory / CODES_FILE}: expected {{system: [codes]}}")
    max_length = config["max_length"]
    try:
        codes, thresholds = _check_parts(systems, raw_codes, config["thresholds"], max_length,
                                         graph, model_config.use_mat)
    except (TypeError, ValueError) as err:
        raise BundleError(f"{directory}: {err}") from err
    try:
        ood = check_calibration(config.get("ood"), codes)
    except ValueError as err:
        raise BundleError(f"{cfg_path}: bad out-of-distribution calibration ({err})") from err
    tokenizer = read_tokenizer(directory, config["tokenizer"])
    if config["tokenizer"]["kind"] == "word" and len(tokenizer) != model_config.vocab_size:
        raise BundleError(
            f"{directory / VOCAB_FILE}: {len(tokenizer)} tokens, but the model's embedding "
            f"has {model_config.vocab_size} rows (vocab_size in {CONFIG_FILE}): the "
            "vocabulary is not the one the model was trained with")

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
    try:  # bundle format <= 2 also saved the graph's links with the weights
        state = model.drop_saved_edges(state, source=str(weights_path))
    except ValueError as err:
        raise BundleError(f"{err} (the graph is {directory / GRAPH_FILE})") from err
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
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise BundleError(
                f"{weights_path}: tensor {name!r} holds {bad} NaN or infinite value(s) of "
                f"{tensor.numel()}; the model cannot give probabilities (did its training "
                "diverge?)")
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
        ood=ood,
    )
