"""What every sub-command shares: the help layout, value types and the error line."""

from __future__ import annotations

import argparse
import sys


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
