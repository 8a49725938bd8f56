"""``jams-pyg predict``: code clinical notes with a trained model bundle (JSONL out)."""

from __future__ import annotations

import argparse
import sys
import warnings

from jams_pyg.cli.common import add_command, bundle_folder_hint, fail, positive_int

DESCRIPTION = """\
Code clinical notes with a trained model bundle (the folder save_bundle writes, e.g.
<output_dir>/model of an experiment) and write one JSON object per note (JSONL).

Input (INPUT, or - for standard input), UTF-8, read line by line; lines end at \\n only
(\\r\\n too), so a form feed or U+2028 inside a note stays in that note:
  * a text file: one note per line; a blank line is an error; the note's id is its line
    number (1-based);
  * a .jsonl / .ndjson file (or --format jsonl): one strict JSON object per line with a
    "text" string and an optional "id" (default: the line number); blank lines are
    skipped; NaN / Infinity are invalid JSON.
Notes are raw text: they are cleaned (Edin et al.'s preprocessing) and truncated to the
bundle's max_length tokens as in training. A bad line stops the run (--on-error fail) or
becomes an error record {"id": ..., "line": 7, "error": "..."} (--on-error skip).

Output (stdout, or --output FILE), one line per note in input order:
  {"id": ..., "index": 0, "codes": {"icd10": [{"code": "I10.", "title": "...",
   "probability": 0.93, "predicted": true, ...}, ...], "icd9": [...]},
   "thresholds": {"icd10": 0.31, ...}, "num_tokens": 812, "truncated": false,
   "unknown_words": 0.02, "ood": {"statistic": "unknown_words", "value": 0.02,
   "threshold": 0.012, "quantile": 0.99, "out_of_distribution": true, "withheld": true,
   "reason": "..."}}
The output is strict JSON (UTF-8, no NaN). Codes are sorted by probability; "predicted"
is probability > the system's tuned threshold.
Without --top-k only the predicted codes are listed; with --top-k K the K most probable.

Out of distribution: "unknown_words" is the share of the words read that the model's
vocabulary does not know. A bundle calibrated when it was saved flags a note whose share
is above its "threshold", the "quantile" (0.99) of its validation notes: the model cannot
read it. A flagged note's codes are withheld (--ood withhold, the default): no code is
"predicted", the list is empty without --top-k and the ranking with it, and "reason"
says why; --ood mark flags it and keeps its codes; --ood off checks nothing. "ood" is null
when nothing was checked (--ood off, or a bundle saved before the calibration). A code
that fired on more than half of its validation notes has "fires_on_most_notes": true; in
a run of 3 notes or more, one above its threshold on more than half of them (flagged
notes included) has "fires_on_most_call_notes": true, and a warning names it. The tuned
thresholds and `jams-pyg evaluate` are untouched.
With --evidence every listed code also has "tokens" (the note's words with the highest
label-attention weight: {"word", "position", "weight"}) and "linked" (its GEM neighbours in
the other system: {"code", "system", "title", "gem_weight", "attention"}; "attention" is
the MAT weight, null for a model without MAT) and "self_attention".
"""


def run(args: argparse.Namespace) -> int:
    from jams_pyg.atomic import AtomicFile
    from jams_pyg.inference.bundle import BundleError
    from jams_pyg.inference.notes import dumps_strict, load_notes, prediction_records
    from jams_pyg.inference.ood import OODWarning
    from jams_pyg.inference.predictor import JAMSPredictor

    output = None
    try:
        # Checked first: an unwritable --output fails before any note or model work.
        output = AtomicFile(args.output, "w", encoding="utf-8", newline="\n") \
            if args.output else None
        notes = load_notes(args.input, args.format, args.on_error)
        predictor = JAMSPredictor.load(args.model, device=args.device)
        with warnings.catch_warnings(record=True) as caught:  # ours: one line each, below
            warnings.simplefilter("always", OODWarning)
            results = predictor.predict(
                notes.texts,
                system=args.system,
                top_k=args.top_k,
                evidence=args.evidence,
                batch_size=args.batch_size,
                ids=notes.ids,
                ood=args.ood,
            ) if notes.texts else []
        text = "".join(dumps_strict(r) + "\n" for r in prediction_records(notes, results))
        if output is not None:
            output.write(text)
            output.commit()
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
    except (BundleError, OSError, ValueError, TypeError, RuntimeError) as err:
        hint = bundle_folder_hint(args.model) if isinstance(err, BundleError) else None
        return fail("predict", hint or err)
    finally:
        if output is not None:
            output.discard()
    for warning in caught:
        if issubclass(warning.category, OODWarning):
            print(f"jams-pyg predict: warning: {warning.message}", file=sys.stderr)
        else:  # anyone else's, as Python shows it
            warnings.showwarning(warning.message, warning.category, warning.filename,
                                 warning.lineno)
    if results and args.ood != "off" and predictor.ood is None:
        print("jams-pyg predict: warning: the bundle has no out-of-distribution calibration "
              "(saved before it existed): notes the model cannot read are not flagged "
              "(\"ood\": null); calibrate it on its validation notes with "
              "jams_pyg.inference.ood.calibrate_bundle", file=sys.stderr)
    if notes.errors:
        print(f"jams-pyg predict: {len(notes.errors)} bad line(s) skipped, "
              f"written as error records (first: line {notes.errors[0].line}: "
              f"{notes.errors[0].error})", file=sys.stderr)
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    predict = add_command(
        commands, "predict",
        "code notes (ICD-9 and/or ICD-10) with a trained model bundle; JSONL output",
        DESCRIPTION)
    predict.add_argument("input", metavar="INPUT",
                         help="notes: text file (one per line), .jsonl file, or - for stdin")
    predict.add_argument("--model", required=True, metavar="DIR",
                         help="model bundle folder (save_bundle's, or a run's model/)")
    predict.add_argument("--system", default="both", choices=["both", "icd9", "icd10"],
                         help="coding system(s) to predict; 'both' = every system of the "
                         "model (default)")
    predict.add_argument("--top-k", type=positive_int, default=None, metavar="K",
                         help="list the K most probable codes per system (default: the codes "
                         "above the tuned threshold)")
    predict.add_argument("--evidence", action="store_true",
                         help="add attention evidence (top words, GEM-linked codes)")
    predict.add_argument("--ood", default="withhold", choices=["withhold", "mark", "off"],
                         help="a note the bundle's calibration flags as out of distribution "
                         "(more unknown words than 99%% of its validation notes): withhold "
                         "its codes, mark it and keep them, or check nothing")
    predict.add_argument("--batch-size", type=positive_int, default=16, metavar="N",
                         help="notes per forward pass")
    predict.add_argument("--device", default=None,
                         help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda if "
                         "available, else cpu)")
    predict.add_argument("--format", default="auto", choices=["auto", "text", "jsonl"],
                         help="input format (default: jsonl for .jsonl/.ndjson, else text)")
    predict.add_argument("--output", "-o", metavar="FILE",
                         help="write the JSONL here instead of standard output; checked "
                         "writable before any work, written to a temporary file next to "
                         "it and renamed at the end (atomic: FILE is never partial, and "
                         "is untouched on error)")
    predict.add_argument("--on-error", default="fail", choices=["fail", "skip"],
                         help="a bad input line (empty note, invalid JSON, not UTF-8, ...): "
                         "'fail' (default) stops with an error naming the line and writes "
                         "nothing; 'skip' writes {\"id\", \"line\", \"error\"} for that line, "
                         "in input order, keeps the other notes and exits 0")
    predict.set_defaults(handler=run)
