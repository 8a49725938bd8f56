"""Command line: ``python -m jams_pyg <command>`` (also installed as ``jams-pyg``)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def _graph(args: argparse.Namespace) -> int:
    from jams_pyg.gem_graph import GEMGraph

    if args.icd9_gem or args.icd10_gem:
        graph = GEMGraph.from_gem_files(args.icd9_gem or None, args.icd10_gem or None)
    else:
        graph = GEMGraph.from_cms_2018()
    print(graph.summary())
    if args.save:
        graph.save(args.save)
        print(f"saved to {args.save}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jams_pyg",
        description="jams_pyg: joint ICD-9/ICD-10 medical coding (JAMS) on PyTorch Geometric.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    graph = commands.add_parser(
        "graph",
        help="build the ICD-9 <-> ICD-10 GEM graph and print its summary",
        description="Build the GEM graph (the shipped CMS 2018 diagnosis GEMs unless GEM "
        "files are given) and print its size.",
    )
    graph.add_argument("--icd9-gem", action="append", default=[],
                       help="forward GEM file (ICD-9 -> ICD-10), repeatable")
    graph.add_argument("--icd10-gem", action="append", default=[],
                       help="backward GEM file (ICD-10 -> ICD-9), repeatable")
    graph.add_argument("--save", help="write the graph to this file (GEMGraph.load reads it)")
    graph.set_defaults(handler=_graph)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
