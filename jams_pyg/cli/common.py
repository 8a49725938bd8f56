"""What every sub-command shares: the help layout, value types and the error line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written, and every option's default shown in ``--help`` (unless its
    help already says it, or there is none: a flag, or an option whose help explains what
    leaving it out does)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.option_strings and "default" not in text
                and action.default not in (None, False, [], argparse.SUPPRESS)):
            text += " (default: %(default)s)"
        return text


def add_command(commands: argparse._SubParsersAction, name: str, summary: str,
                description: str) -> argparse.ArgumentParser:
    """Add sub-command ``name``: ``summary`` in the command list, ``description`` on its
    ``--help``."""
    return commands.add_parser(name, help=summary, description=description,
                               formatter_class=HelpFormatter)


def positive_int(value: str) -> int:
    """``argparse`` type of a count (``--top-k``, ``--batch-size``)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def fail(command: str, err: BaseException | str) -> int:
    """Print the one-line error of an expected mistake (bad file, bad value) and return
    the exit status 1; tracebacks are for bugs."""
    print(f"jams-pyg {command}: error: {err}", file=sys.stderr)
    return 1


def check_output_folder(path: str, option: str) -> None:
    """Fail before any work when the folder ``path`` is to be written into is missing or
    not writable (``option`` names the option in the message); the command does not create
    it."""
    folder = Path(path).parent
    if not folder.is_dir():
        raise FileNotFoundError(f"{option} {path}: folder {folder} does not exist (create it "
                                "first)")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"{option} {path}: folder {folder} is not writable")


def _is_bundle(folder: Path) -> bool:
    from jams_pyg.inference.bundle_format import BUNDLE_FORMAT, CONFIG_FILE

    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("format") == BUNDLE_FORMAT


def bundle_folder_hint(model: str) -> str | None:
    """When ``--model`` names a run folder of ``jams-pyg train`` (``outputs/laat/jams``)
    rather than a bundle, the error that names the bundle(s) inside it
    (``outputs/laat/jams/model``); else ``None``."""
    folder = Path(model)
    if not folder.is_dir() or _is_bundle(folder):
        return None
    found = sorted(p.parent for pattern in ("model/", "*/model/", "*/*/model/")
             for p in folder.glob(pattern + "config.json") if _is_bundle(p.parent))
    if not found:
        return None
    if len(found) == 1:
        return f"{model} is a run folder, not a model bundle; its model bundle is {found[0]}"
    return (f"{model} is a run folder, not a model bundle; its model bundles are "
            + ", ".join(map(str, found)))
