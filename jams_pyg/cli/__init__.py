"""The command line: ``jams-pyg <command>`` (also ``python -m jams_pyg <command>``).

One module per command, in the order of the data flow; each adds its parser
(``add_parser``) and imports what it runs only when it runs, so ``--help`` answers
without importing torch.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from importlib import import_module
from typing import TextIO

#: Sub-commands, in the order of the data flow; ``jams_pyg.cli.<name>`` defines each.
COMMANDS = ("prepare", "synthetic", "graph", "train", "evaluate", "predict")

#: Set for the process when the user has not: OpenMP worker threads that spin while waiting
#: (the GNU default) stall every other process on a shared or busy machine; measured on a
#: loaded 2-core machine, epochs of the default run took 33-111 s spinning and 9-32 s with
#: PASSIVE, with identical losses. It must be set before torch (OpenMP) loads, which the
#: commands do only when they run.
OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jams-pyg",
        description="jams_pyg: joint ICD-9/ICD-10 medical coding (JAMS) on PyTorch Geometric.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        import_module(f"jams_pyg.cli.{name}").add_parser(commands)
    return parser


def command_parser(parser: argparse.ArgumentParser,
                   args: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost sub-command parser ``args`` were parsed by (``prepare mimiciv``'s for
    ``jams-pyg prepare mimiciv ...``), so its errors show its own usage."""
    while True:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)),
                   None)
        chosen = getattr(args, sub.dest, None) if sub is not None else None
        if chosen is None or chosen not in sub.choices:
            return parser
        parser = sub.choices[chosen]


def unknown_arguments_error(parser: argparse.ArgumentParser, extra: Sequence[str]) -> str:
    """``unrecognized arguments`` with the closest option of ``parser`` for each mistyped
    one (``--topk``: did you mean ``--top-k``?)."""
    options = [opt for action in parser._actions for opt in action.option_strings]
    hints = []
    for arg in extra:
        if arg.startswith("-"):
            close = difflib.get_close_matches(arg.split("=", 1)[0], options, n=1, cutoff=0.6)
            if close:
                hints.append(f"{arg}: did you mean {close[0]}?")
    return "unrecognized arguments: " + " ".join(extra) + "".join(f"; {h}" for h in hints)


def one_line_warnings(command: str) -> Callable[..., None]:
    """A ``warnings.showwarning`` that prints ``jams-pyg <command>: warning: <message>``:
    a user of the command line needs the message, not the source line that raised it
    (``torch/utils/_contextlib.py:124`` for a warning from under ``torch.no_grad``)."""

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:
        kind = "warning" if issubclass(category, UserWarning) else category.__name__
        print(f"jams-pyg {command}: {kind}: {message}", file=file or sys.stderr)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    for name, value in OPENMP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        leaf = command_parser(parser, args)
        leaf.error(unknown_arguments_error(leaf, extra))
    try:
        with warnings.catch_warnings():  # restored on return (main may run in-process)
            warnings.showwarning = one_line_warnings(args.command)
            return int(args.handler(args))
    except KeyboardInterrupt:
        hint = (" (finished epochs are kept: run the same command with --resume to go on)"
                if args.command == "train" else "")
        print(f"jams-pyg {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
