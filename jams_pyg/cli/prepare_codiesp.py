"""``jams-pyg prepare codiesp``: CodiEsp's release folder as an Edin-format ICD-10
dataset (see :mod:`jams_pyg.data.codiesp` for the rules)."""

from __future__ import annotations

import argparse

from jams_pyg.cli.common import HelpFormatter, fail


def run(args: argparse.Namespace) -> int:
    from jams_pyg.data.codiesp import prepare_codiesp, summary_lines

    try:
        summary = prepare_codiesp(args.codiesp_dir, args.out_dir, language=args.language,
                                  unlisted=args.unlisted)
    except (OSError, ValueError) as err:  # every message names the file (and line)
        return fail("prepare codiesp", err)
    print("\n".join(summary_lines(summary)))
    print(f"summary: {summary['path']}/codiesp_summary.json; CodiEsp is CC BY 4.0 "
          "(attribution in ATTRIBUTION.txt)")
    return 0


def add_parser(datasets: argparse._SubParsersAction) -> None:
    """Register ``codiesp`` under ``jams-pyg prepare``."""
    codiesp = datasets.add_parser(
        "codiesp", help="CodiEsp (CLEF eHealth 2020) as an ICD-10 dataset",
        description="Read DIR/{train,dev,test}/ ({split}D.tsv, {split}P.tsv, text_files/ "
        "or text_files_en/) of the CodiEsp release; write OUT_DIR/mimiciv_icd10.feather, "
        "its split file (train/dev/test -> train/val/test), gold/ (the official code "
        "files, for the official MAP) and codiesp_summary.json. Target: diagnoses + "
        "procedures; 4-character procedure prefixes are left out of the target "
        "(counted).",
        formatter_class=HelpFormatter,
    )
    codiesp.add_argument("codiesp_dir", metavar="DIR", help="CodiEsp release folder")
    codiesp.add_argument("out_dir", metavar="OUT_DIR", help="output folder")
    codiesp.add_argument("--language", choices=["en", "es"], default="en",
                         help="English machine translation (text_files_en) or the Spanish "
                         "originals (text_files)")
    codiesp.add_argument("--unlisted", choices=["keep", "drop"], default="keep",
                         help="codes outside the shipped CMS ICD-10 code lists (mostly "
                         "category headers and codes of the Spanish 2018 edition)")
    codiesp.set_defaults(handler=run)
