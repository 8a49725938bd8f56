"""``jams-pyg prepare``: build Edin et al.'s MIMIC-IV ICD-9 / ICD-10 datasets from raw
MIMIC-IV (see :mod:`jams_pyg.data.prepare` for the rules)."""

from __future__ import annotations

import argparse
import logging
import math

from jams_pyg.cli import prepare_codiesp
from jams_pyg.cli.common import HelpFormatter, add_command, fail
from jams_pyg.data.defaults import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_SEED,
    DEFAULT_SPLIT,
    MIN_TARGET_COUNT,
    SPLIT_METHODS,
)


def non_negative_int(value: str) -> int:
    """``argparse`` type of ``--min-count``."""
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value!r}")
    return number


def positive_float(value: str) -> float:
    """``argparse`` type of ``--block-size-mb``: finite and > 0."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return number


def run(args: argparse.Namespace) -> int:
    from jams_pyg.data.prepare import prepare_mimiciv

    logging.getLogger().setLevel(logging.INFO)
    try:
        summary = prepare_mimiciv(
            args.raw_dir, args.out_dir, note_dir=args.note_dir, min_count=args.min_count,
            split=args.split, split_dir=args.split_dir, seed=args.seed,
            block_size=max(1, int(args.block_size_mb * 2**20)),
            invalid_codes=args.invalid_codes,
        )
    except (OSError, ValueError) as err:  # every message names the file (and row)
        return fail("prepare", err)
    for system in ("icd9", "icd10"):
        s = summary[system]
        counts = "/".join(str(n) for n in s["split_counts"].values())
        print(f"{system}: {s['documents']} documents ({counts} train/val/test, "
              f"{s['split']}), {s['patients']} patients, {s['codes']} codes -> {s['path']}")
        if s["outside_split"] or s["missing_from_data"]:
            print(f"  {s['outside_split']} documents without a split left out, "
                  f"{s['missing_from_data']} split ids without a document: see "
                  f"{s['path']}/split_report.json")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    prepare = add_command(
        commands, "prepare",
        "build Edin et al.'s MIMIC-IV ICD-9 / ICD-10 datasets from raw MIMIC-IV",
        "Prepare datasets in Edin et al.'s format (documents, codes and their "
        "patient-level train/val/test split), streaming the raw CSV files.")
    datasets = prepare.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    mimic = datasets.add_parser(
        "mimiciv", help="MIMIC-IV ICD-9 and ICD-10 from raw MIMIC-IV (and MIMIC-IV-Note)",
        description="Read RAW_DIR/hosp/{diagnoses,procedures}_icd.csv.gz and "
        "note/discharge.csv.gz; write OUT_DIR/mimiciv_icd9/ and OUT_DIR/mimiciv_icd10/.",
        formatter_class=HelpFormatter,
    )
    mimic.add_argument("raw_dir", metavar="RAW_DIR", help="MIMIC-IV folder holding hosp/ "
                       "(and note/)")
    mimic.add_argument("out_dir", metavar="OUT_DIR", help="output folder")
    mimic.add_argument("--note-dir", metavar="DIR",
                       help="MIMIC-IV-Note folder holding note/ (default: RAW_DIR)")
    mimic.add_argument("--min-count", type=non_negative_int, default=MIN_TARGET_COUNT,
                       metavar="N", help="keep codes of at least N documents (Edin et al.)")
    mimic.add_argument("--split", choices=SPLIT_METHODS, default=DEFAULT_SPLIT,
                       help="edin-published: Edin et al.'s published split files (the "
                       "paper's, for MIMIC-IV v2.2; documents outside them are left out and "
                       "listed in split_report.json); edin-algorithm: their split algorithm "
                       "(for another release or your own data)")
    mimic.add_argument("--split-dir", metavar="DIR",
                       help="with edin-published: read mimiciv_icd{9,10}_split.feather from "
                       "DIR instead of the shipped copies")
    mimic.add_argument("--seed", type=int, default=DEFAULT_SEED,
                       help="seed of edin-algorithm (Edin et al.'s random.seed)")
    mimic.add_argument("--block-size-mb", type=positive_float,
                       default=DEFAULT_BLOCK_SIZE / 2**20,
                       metavar="MB", help="MiB of CSV parsed at a time (bounds memory)")
    mimic.add_argument("--invalid-codes", choices=["error", "drop"], default="error",
                       help="a malformed code: stop with an error naming file and row, or "
                       "drop it with a warning")
    mimic.set_defaults(handler=run)
    prepare_codiesp.add_parser(datasets)
