"""The command line: ``jams-pyg <command>`` (also ``python -m jams_pyg <command>``).

One module per command, in the order of the data flow; each adds its parser
(``add_parser``) and imports what it runs only when it runs, so ``--help`` answers
without importing torch.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from importlib import import_module

#: Sub-commands, in the order of the data flow; ``jams_pyg.cli.<name>`` defines each.
COMMANDS = ("prepare", "synthetic", "graph", "train", "evaluate", "predict")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jams-pyg",
        description="jams_pyg: joint ICD-9/ICD-10 medical coding (JAMS) on PyTorch Geometric.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        import_module(f"jams_pyg.cli.{name}").add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    args = build_parser().parse_args(argv)
    return int(args.handler(args))
