"""How many codes ``predict`` gives notes the model cannot read, before and after the
out-of-distribution signal (issue #22, :mod:`jams_pyg.inference.ood`).

On a bundle (default: the committed demo bundle ``examples/demo_bundle/``, LAAT+JAMS of the
default command on the synthetic corpus, seed 0) and the notes of
``examples/demo_notes.jsonl`` (six plain clinical notes written as a clinician would:
pneumonia with sepsis, CHF with atrial fibrillation, COPD exacerbation, hip fracture, GI
bleed, stroke; one line of gibberish; and, as a control, a test note of the synthetic
corpus, the kind of text the model was trained on), it counts the codes above the tuned
threshold per note and system:

* **before**: ``predict(ood="off")``, as ``predict`` was before the signal;
* **after**: ``predict()`` (``ood="withhold"``, the default), where a note whose share of
  unknown words is above the bundle's calibrated threshold has its codes withheld.

It also lists, with ``ood="mark"``, the codes above their threshold on more than half of
the notes of the call (``fires_on_most_call_notes``) and those that fired on more than half
of the validation notes (``fires_on_most_notes``). Nothing here is timed: the counts are
the same on every machine (the bundle's weights are committed).

Usage::

    python benchmarks/predict_ood.py     # -> benchmarks/results/predict_ood.{json,md}
    python benchmarks/predict_ood.py --model outputs/laat/jams/model --out /tmp/ood
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

DEMO_BUNDLE = ROOT / "examples" / "demo_bundle"
DEMO_NOTES = ROOT / "examples" / "demo_notes.jsonl"


def measure(model: Path, notes_path: Path) -> dict:
    from jams_pyg.inference.notes import read_notes
    from jams_pyg.inference.predictor import JAMSPredictor

    predictor = JAMSPredictor.load(model, device="cpu")
    texts, ids = read_notes(notes_path)
    runs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # what they say is in the records
        for mode in ("off", "withhold", "mark"):
            runs[mode] = predictor.predict(texts, ids=ids, ood=mode)
    systems = list(predictor.systems)
    rows = []
    for before, after, marked in zip(runs["off"], runs["withhold"], runs["mark"],
                                     strict=True):
        rows.append({
            "id": before.id,
            "unknown_words": before.unknown_words,
            "out_of_distribution": bool(after.ood and after.ood["out_of_distribution"]),
            "withheld": after.withheld,
            "before": {s: len(before.predicted_codes(s)) for s in systems},
            "after": {s: len(after.predicted_codes(s)) for s in systems},
            "max_probability_before": {s: max((c.probability for c in before.codes[s]),
                                              default=None) for s in systems},
            "fires_on_most_call_notes": {s: [c.code for c in marked.codes[s]
                                             if c.fires_on_most_call_notes]
                                         for s in systems},
        })
    calibration = predictor.ood
    common = {}
    if calibration is not None:
        common = {s: [code for code, rate in zip(predictor.codes[s],
                                                 calibration["fire_rate"][s], strict=True)
                      if rate > calibration["fires_on_most"]] for s in systems}
    frequent = {s: sorted({c for r in rows for c in r["fires_on_most_call_notes"][s]})
                for s in systems}
    return {
        "bundle": str(model.relative_to(ROOT) if model.is_relative_to(ROOT) else model),
        "notes": str(notes_path.relative_to(ROOT) if notes_path.is_relative_to(ROOT)
                     else notes_path),
        "systems": systems,
        "thresholds": dict(predictor.thresholds),
        "ood_calibration": None if calibration is None else {
            k: calibration[k] for k in ("statistic", "quantile", "threshold", "num_notes",
                                        "fires_on_most")},
        "codes_firing_on_most_validation_notes": common,
        "codes_firing_on_most_notes_of_the_call": frequent,
        "notes_table": rows,
    }


def markdown(result: dict) -> str:
    systems = result["systems"]
    names = {"icd9": "ICD-9", "icd10": "ICD-10"}
    cal = result["ood_calibration"]
    lines = [
        f"Bundle `{result['bundle']}`, notes `{result['notes']}`; thresholds "
        + ", ".join(f"{names[s]} {result['thresholds'][s]:.3f}" for s in systems) + ".",
        "",
        ("OOD threshold: unknown-word share above "
         f"{cal['threshold']:.4f}, the {cal['quantile']} order statistic of "
         f"{cal['num_notes']} validation notes." if cal else
         "The bundle has no OOD calibration."),
        "",
        "| note | unknown words | out of distribution | "
        + " | ".join(f"{names[s]} codes before" for s in systems) + " | "
        + " | ".join(f"{names[s]} codes after" for s in systems) + " | "
        + " | ".join(f"{names[s]} max p before" for s in systems) + " |",
        "|:---|---:|:---|" + "---:|" * (3 * len(systems)),
    ]
    for r in result["notes_table"]:
        flag = "yes, withheld" if r["withheld"] else ("yes" if r["out_of_distribution"]
                                                      else "no")
        maxp = [f"{r['max_probability_before'][s]:.2f}"
                if r["max_probability_before"][s] is not None else "–" for s in systems]
        lines.append(
            f"| {r['id']} | {r['unknown_words']:.1%} | {flag} | "
            + " | ".join(str(r["before"][s]) for s in systems) + " | "
            + " | ".join(str(r["after"][s]) for s in systems) + " | "
            + " | ".join(maxp) + " |")
    lines.append("")
    for s in systems:
        most = result["codes_firing_on_most_notes_of_the_call"][s]
        common = result["codes_firing_on_most_validation_notes"].get(s, [])
        lines.append(
            f"{names[s]}: above the threshold on more than half of these "
            f"{len(result['notes_table'])} notes: {', '.join(most) or 'none'}; "
            f"on more than half of the validation notes: {', '.join(common) or 'none'}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEMO_BUNDLE, help="model bundle folder")
    parser.add_argument("--notes", type=Path, default=DEMO_NOTES,
                        help="notes (.jsonl with ids, or text)")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="folder for predict_ood.json and predict_ood.md")
    args = parser.parse_args()
    result = measure(args.model.resolve(), args.notes.resolve())
    text = markdown(result)
    print(text, end="")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "predict_ood.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "predict_ood.md").write_text(text)


if __name__ == "__main__":
    main()
