"""``jams-pyg graph``: build the ICD-9 <-> ICD-10 GEM graph and print its summary."""

from __future__ import annotations

import argparse

from jams_pyg.cli.common import add_command, check_output_folder, fail
from jams_pyg.graph.directions import DIRECTIONS


def run(args: argparse.Namespace) -> int:
    try:
        if args.save:  # checked first: a missing folder fails before the graph is built
            check_output_folder(args.save, "--save")
    except OSError as err:
        return fail("graph", err)
    from jams_pyg.graph.gem_graph import GEMGraph

    try:
        if args.procedures is True and (args.icd9_gem or args.icd10_gem):
            raise ValueError("--procedures links the shipped GEMs; with --icd9-gem/--icd10-gem "
                             "give the procedure GEM files themselves (gem_i9pcs.txt, "
                             "gem_pcsi9.txt)")
        if args.icd9_gem or args.icd10_gem:
            graph = GEMGraph.from_gem_files(args.icd9_gem or None, args.icd10_gem or None,
                                            direction=args.direction)
        else:
            graph = GEMGraph.from_cms_2018(direction=args.direction,
                                           procedures=args.procedures is not False)
        print(graph.summary())
        if args.save:
            print("wrote " + ", ".join(map(str, graph.save(args.save))))
    except (OSError, ValueError) as err:  # names the GEM file (and line)
        return fail("graph", err)
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    graph = add_command(
        commands, "graph", "build the ICD-9 <-> ICD-10 GEM graph and print its summary",
        "Build the GEM graph (the shipped CMS 2018 diagnosis and forward procedure "
        "GEMs unless GEM files are given) and print its size.")
    graph.add_argument("--icd9-gem", action="append", default=[], metavar="FILE",
                       help="forward GEM file (ICD-9 -> ICD-10), repeatable; default: the "
                       "shipped CMS 2018 diagnosis GEMs")
    graph.add_argument("--icd10-gem", action="append", default=[], metavar="FILE",
                       help="backward GEM file (ICD-10 -> ICD-9), repeatable; without a "
                       "backward procedure GEM, ICD-10-PCS codes take the forward procedure "
                       "links reversed")
    graph.add_argument("--procedures", action=argparse.BooleanOptionalAction, default=None,
                       help="link procedure codes too, with the shipped forward procedure GEM "
                       "(gem_i9pcs.txt; ICD-10-PCS codes along its links reversed), as the "
                       "official graph does; default: on with the shipped GEMs")
    graph.add_argument("--direction", default="directional", choices=DIRECTIONS,
                       help="'directional': forward-file links update ICD-9 codes, "
                       "backward-file links ICD-10 codes (the official JAMS code); 'union': "
                       "one symmetric edge set (ablation)")
    graph.add_argument("--save", metavar="FILE",
                       help="write the graph here (safetensors, its codes in <stem>_codes.json "
                       "beside it; GEMGraph.load reads it); FILE's folder must exist: a "
                       "missing one fails at once, before the graph is built")
    graph.set_defaults(handler=run)
