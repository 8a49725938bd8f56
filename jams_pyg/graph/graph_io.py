"""The file format of a :class:`~jams_pyg.graph.gem_graph.GEMGraph`, the one model bundles
use: a safetensors file of the link tensors (``graph.safetensors``) next to a JSON file of
the node codes (``graph_codes.json``).  Reading parses JSON and safetensors only (no
pickle); files of the former ``torch.save`` format load through their own reader,
:func:`read_legacy_graph_file`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from jams_pyg.atomic import atomic_save_tensors, atomic_write_json
from jams_pyg.icd.gem import PathLike

#: Tensors a graph file may hold: the links updating ICD-9 codes (every graph) and, for
#: a directional graph, the links updating ICD-10 codes.
TENSOR_NAMES = ("edge_index", "edge_weight", "icd10_edge_index", "icd10_edge_weight")
#: Keys of the codes file.
CODE_KEYS = ("icd9_codes", "icd10_codes")
#: Versions of the former ``torch.save`` format (1: before directional graphs).
_LEGACY_VERSIONS = (1, 2)
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes zip archives


def codes_path(path: PathLike) -> Path:
    """The codes file that goes with the tensors file ``path``:
    ``graph.safetensors`` → ``graph_codes.json``."""
    path = Path(path)
    return path.with_name(f"{path.stem}_codes.json")


def write_graph_files(path: PathLike, tensors: dict[str, Tensor],
                      codes: dict[str, list[str]]) -> list[Path]:
    """Write ``tensors`` to ``path`` (safetensors) and ``codes`` to :func:`codes_path`
    (indented UTF-8 JSON), each atomically; returns both paths."""
    path = Path(path)
    atomic_save_tensors(path, {k: t.detach().cpu().contiguous() for k, t in tensors.items()})
    names = codes_path(path)
    atomic_write_json(names, codes)
    return [path, names]


def read_graph_files(path: PathLike) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(tensors, codes)`` of a graph file written by :func:`write_graph_files` (on the
    CPU).  Parses safetensors and JSON only: a former ``torch.save`` file is refused with
    a pointer to :func:`read_legacy_graph_file`.

    Raises:
        FileNotFoundError: for a missing tensors or codes file.
        ValueError: naming the file, when it cannot be read.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        if handle.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC:
            raise ValueError(
                f"{path}: a GEM graph of the former torch.save format; read it with "
                "GEMGraph.load_legacy(path) (and save() it again in the current format)")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except (SafetensorError, ValueError, OSError) as err:
        raise ValueError(f"{path}: not a GEM graph file (safetensors: {err})") from None
    names = codes_path(path)
    try:
        codes = json.loads(names.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{names}: missing, the node codes of {path.name}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{names}: cannot read the GEM graph codes ({err})") from None
    return tensors, codes


def read_legacy_graph_file(path: PathLike) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(tensors, codes)`` of a graph of the former ``torch.save`` format (read with
    ``weights_only``: tensors and strings, no code runs)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a bad archive
        raise ValueError(f"{path}: cannot read the GEM graph ({err})") from None
    version = state.get("format_version") if isinstance(state, dict) else None
    if version not in _LEGACY_VERSIONS:
        raise ValueError(f"{path}: unsupported GEMGraph format {version!r}")
    tensors = {k: state[k] for k in TENSOR_NAMES if state.get(k) is not None}
    return tensors, {k: state.get(k) for k in CODE_KEYS}


def check_graph_parts(tensors: dict[str, Any], codes: Any) -> None:
    """Raise a ValueError naming what is wrong with the parts of a graph file."""
    if not isinstance(codes, dict):
        raise ValueError(f"GEM graph codes must be an object with {list(CODE_KEYS)}, "
                         f"got {type(codes).__name__}")
    for key in CODE_KEYS:
        value = codes.get(key)
        if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
            raise ValueError(f"GEM graph codes: {key!r} must be a list of strings")
    unknown = sorted(set(tensors) - set(TENSOR_NAMES))
    missing = [k for k in TENSOR_NAMES[:2] if k not in tensors]
    if unknown or missing:
        raise ValueError(f"GEM graph tensors: missing {missing}, unknown {unknown}; expected "
                         f"{list(TENSOR_NAMES[:2])} and, if directional, "
                         f"{list(TENSOR_NAMES[2:])}")
    for key, tensor in tensors.items():
        want_int = key.endswith("index")
        if not isinstance(tensor, Tensor) or tensor.is_floating_point() == want_int:
            raise ValueError(f"GEM graph tensors: {key!r} must be a tensor of "
                             f"{'integers' if want_int else 'floats'}")
