"""The on-disk format of a model bundle (:mod:`jams_pyg.inference.bundle`): file names,
format versions, the checksums, reading ``config.json`` (:func:`read_bundle_config`) and
the tokenizer and GEM graph parts (:func:`write_tokenizer`, :func:`read_tokenizer`,
:func:`write_graph`, :func:`read_graph`).

Nothing here unpickles: a bundle is JSON and safetensors only.  The checksums detect
accidental and casual edits; they are no signature (anyone can recompute them).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from jams_pyg.graph.gem_graph import GEMGraph

PathLike = str | os.PathLike[str]

__all__ = [
    "BUNDLE_ENTRIES",
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "READABLE_VERSIONS",
    "BundleError",
    "bundle_file",
    "config_checksum",
    "file_sha256",
    "read_bundle_config",
    "read_graph",
    "read_json",
    "read_tokenizer",
    "write_graph",
    "write_tokenizer",
]

BUNDLE_FORMAT = "jams_pyg.bundle"
#: Version of the bundle layout written by :func:`~jams_pyg.inference.bundle.save_bundle`;
#: loading any other is refused.
BUNDLE_VERSION = 4
#: Versions :func:`~jams_pyg.inference.bundle.load_bundle` reads: 1 (before
#: ``config_sha256``; loaded with a warning), 2 (the GEM links also in the weights: checked
#: against the graph and dropped) and 3 (``gem_direction`` also in the model config: checked
#: against the graph).
READABLE_VERSIONS = (1, 2, 3, 4)
CONFIG_CHECKSUM_KEY = "config_sha256"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
CODES_FILE = "codes.json"
VOCAB_FILE = "vocab.json"
HF_TOKENIZER_DIR = "tokenizer"
GRAPH_FILE = "graph.safetensors"
GRAPH_CODES_FILE = "graph_codes.json"
#: What a bundle folder may hold (a save replaces the folder with all its content).
BUNDLE_ENTRIES = frozenset({CONFIG_FILE, WEIGHTS_FILE, CODES_FILE, VOCAB_FILE,
                            HF_TOKENIZER_DIR, GRAPH_FILE, GRAPH_CODES_FILE})


class BundleError(ValueError):
    """A model bundle that cannot be loaded (missing file, checksum mismatch, unknown
    version, weights that do not fit the config, ...)."""


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def config_checksum(config: Mapping[str, Any]) -> str:
    """sha256 of a bundle config's canonical JSON (sorted keys, no white space, ASCII),
    without its ``config_sha256`` entry: what ``config_sha256`` records."""
    content = {k: v for k, v in config.items() if k != CONFIG_CHECKSUM_KEY}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def read_json(path: Path, what: str) -> Any:
    """Parse a bundle's JSON file; :class:`BundleError` naming the file and ``what`` it
    should hold when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path}: missing {what}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"{path}: cannot read {what} ({err})") from err


def bundle_file(directory: Path, name: Any) -> Path:
    """The path of the file ``name`` listed in ``config.json``; refused when it is not a
    relative path inside ``directory``."""
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
    config = read_json(path, "bundle config")
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
            file = bundle_file(directory, name)
            if not file.is_file():
                raise BundleError(f"{directory}: incomplete bundle, file {name!r} is missing")
            if file_sha256(file) != digest:
                raise BundleError(
                    f"{file}: checksum mismatch (sha256 differs from {CONFIG_FILE}); the file "
                    "was modified, truncated or replaced after the bundle was saved"
                )
    return config


# ------------------------------------------------------------------- tokenizer and graph
def write_tokenizer(directory: Path, tokenizer: Any) -> tuple[list[str], dict[str, str]]:
    """Save a :class:`~jams_pyg.data.WordTokenizer` (``vocab.json``) or a Hugging Face
    tokenizer (``tokenizer/``) into a bundle folder; returns the files written and the
    ``"tokenizer"`` entry of ``config.json``."""
    from jams_pyg.data.text import WordTokenizer

    if isinstance(tokenizer, WordTokenizer):
        tokenizer.save(directory / VOCAB_FILE)
        return [VOCAB_FILE], {"kind": "word", "path": VOCAB_FILE}
    if hasattr(tokenizer, "save_pretrained"):
        target = directory / HF_TOKENIZER_DIR
        target.mkdir(exist_ok=True)
        tokenizer.save_pretrained(str(target))
        files = sorted(p.relative_to(directory).as_posix() for p in target.rglob("*")
                       if p.is_file())
        return files, {"kind": "huggingface", "path": HF_TOKENIZER_DIR}
    raise TypeError(
        "tokenizer must be a jams_pyg WordTokenizer or a Hugging Face tokenizer, got "
        f"{type(tokenizer).__name__}"
    )


def read_tokenizer(directory: Path, info: dict[str, Any]) -> Any:
    """The tokenizer :func:`write_tokenizer` saved (``info``: its config entry)."""
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


def write_graph(directory: Path, graph: GEMGraph) -> list[str]:
    """Save a GEM graph in its own format (:meth:`GEMGraph.save`: ``graph.safetensors``, the
    links of each direction, and ``graph_codes.json``, the node codes); returns the files."""
    return [path.name for path in graph.save(directory / GRAPH_FILE)]


def read_graph(directory: Path) -> GEMGraph:
    """The GEM graph :func:`write_graph` saved."""
    try:
        return GEMGraph.load(directory / GRAPH_FILE)
    except (OSError, ValueError) as err:  # safetensors / JSON / GEMGraph validation errors
        raise BundleError(f"{directory / GRAPH_FILE}: cannot rebuild the GEM graph ({err})") \
            from err
