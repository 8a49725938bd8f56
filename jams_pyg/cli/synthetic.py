"""``jams-pyg synthetic``: write the synthetic GEM-linked ICD-9 / ICD-10 corpus (Edin et
al.'s format) and print its statistics."""

from __future__ import annotations

import argparse
import time

from jams_pyg.cli.common import add_command, fail
from jams_pyg.data.defaults import SIZES, parse_size


def size_type(value: str) -> str | float:
    """``argparse`` type of ``--size``: a name of :data:`SIZES` or a positive scale."""
    try:
        return parse_size(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def seed_type(value: str) -> int:
    """``argparse`` type of ``--seed``: an integer >= 0 (numpy's generators refuse
    negative seeds)."""
    try:
        seed = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if seed < 0:
        raise argparse.ArgumentTypeError(f"the seed must be an integer >= 0, got {seed}")
    return seed


def run(args: argparse.Namespace) -> int:
    from jams_pyg.data.synthetic import corpus_statistics, generate_synthetic_corpus

    start = time.perf_counter()
    try:
        out = generate_synthetic_corpus(args.out_dir, seed=args.seed, size=args.size,
                                        procedure_links=args.procedure_links)
    except OSError as err:
        return fail("synthetic", err)
    print(f"wrote {out} (seed {args.seed}, size {args.size}) in "
          f"{time.perf_counter() - start:.1f} s")
    print(corpus_statistics(out).to_string())
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    synthetic = add_command(
        commands, "synthetic",
        "write the synthetic GEM-linked ICD-9 / ICD-10 corpus and print its statistics",
        "Generate the synthetic corpus built from the real CMS 2018 GEMs and code "
        "titles (long-tailed, in Edin et al.'s format: OUT_DIR/mimiciv_icd9/, "
        "OUT_DIR/mimiciv_icd10/) and print its statistics.")
    synthetic.add_argument("out_dir", metavar="OUT_DIR", help="output folder")
    synthetic.add_argument("--seed", type=seed_type, default=0,
                           help="seed of the corpus (an integer >= 0)")
    synthetic.add_argument("--size", type=size_type, default="default",
                           help=f"{', '.join(SIZES)} (x{', x'.join(map(str, SIZES.values()))} "
                           "documents) or a scale factor")
    synthetic.add_argument("--procedure-links", action=argparse.BooleanOptionalAction,
                           default=True,
                           help="draw the procedure codes through the shipped forward "
                           "procedure GEM, so that they are GEM-linked (default: on, as "
                           "jams-pyg train)")
    synthetic.set_defaults(handler=run)
