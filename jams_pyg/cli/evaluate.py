"""``jams-pyg evaluate``: score a saved model bundle on a split of Edin et al.'s dataset
files with the metrics of the paper's Table 2 (Edin et al. 2023)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from jams_pyg.cli.common import (
    add_command,
    bundle_folder_hint,
    check_output_folder,
    fail,
    positive_int,
)
from jams_pyg.eval.protocol import THRESHOLD_PROTOCOLS
from jams_pyg.graph.directions import DIRECTIONS
from jams_pyg.models.config import OUTPUT_LAYERS

DESCRIPTION = """\
Score a model bundle (e.g. OUTPUT_DIR/jams/model of `jams-pyg train`) on the documents of
one split of Edin et al.'s MIMIC-IV files (or the synthetic corpus): micro/macro F1 and
AUC-ROC, exact match, P@8, P@15, R-precision and MAP, per coding system of the bundle.

The decision threshold is the bundle's (tuned on the validation split when it was trained),
or tuned again on --tune-on's split with --protocol (default: the protocol the bundle
records). The metrics cover the model's own codes: codes of the data that the model does
not know are left out of the targets, and their share of the code occurrences is printed
and recorded (unknown_code_share). On the data a bundle was trained on there are none, and
this (or --tune-on val) gives the numbers of its training run.

The GEM reading and the output layer are the bundle's (its weights were trained with them:
`jams-pyg train --gem-direction` / `--output-layer` choose them); the first line names them
and --output records them (model_choices). Here --gem-direction and --output-layer say which
the bundle must have: a bundle with another is an error before any scoring (a script meant
for the union model does not score the directional one).
"""


def _targets(documents: Any, codes: list[str]) -> tuple[Any, int, int]:
    """Multi-hot targets over ``codes``, and how many code occurrences fall outside them."""
    import numpy as np

    index = {code: i for i, code in enumerate(codes)}
    targets = np.zeros((len(documents), len(codes)), dtype=np.float32)
    unknown = total = 0
    for row, labels in enumerate(documents):
        for code in labels:
            total += 1
            if code in index:
                targets[row, index[code]] = 1.0
            else:
                unknown += 1
    return targets, unknown, total


def _score(predictor: Any, dataset: Any, split: str, batch_size: int
           ) -> tuple[Any, Any, int, int]:
    """The model's probabilities for the documents of ``split`` of ``dataset`` (one
    system), their targets over the model's codes, and the unknown / total code counts."""
    documents = dataset.split(split)
    # the preprocessed text as training encodes it (not cleaned again): evaluate scores
    # every document train accepted
    probs = predictor.predict_proba(documents["text"].tolist(), dataset.system,
                                    batch_size=batch_size, clean=False)[dataset.system]
    return probs, *_targets(documents["target"], predictor.codes[dataset.system])


def model_choices(config: Any) -> dict[str, Any]:
    """What a bundle's :class:`~jams_pyg.models.ModelConfig` chose among the readings a run
    compares: the backbone, MAT on or off, the GEM reading MAT runs on (``None`` without
    MAT) and the output layer."""
    return {"model": config.model, "use_mat": config.use_mat,
            "gem_direction": config.gem_direction if config.use_mat else None,
            "output_layer": config.output_layer}


def describe_choices(choices: dict[str, Any]) -> str:
    """``MAT over the directional GEM reading, separate output layer`` (or ``no MAT``)."""
    mat = (f"MAT over the {choices['gem_direction']} GEM reading" if choices["use_mat"]
           else "no MAT")
    return f"{mat}, {choices['output_layer']} output layer"


def check_choices(choices: dict[str, Any], gem_direction: str | None,
                  output_layer: str | None) -> None:
    """Raise a ValueError unless the bundle's ``choices`` (:func:`model_choices`) are the GEM
    reading and output layer asked for (``None``: any); the message names the bundle's."""
    if gem_direction is not None and choices["gem_direction"] != gem_direction:
        has = (f"runs MAT over the {choices['gem_direction']} GEM reading" if choices["use_mat"]
               else "has no MAT (it reads no GEMs)")
        raise ValueError(f"--gem-direction {gem_direction}: the bundle {has}; `jams-pyg train "
                         f"--gem-direction {gem_direction}` trains a model that reads the "
                         f"GEMs as {gem_direction}")
    if output_layer is not None and choices["output_layer"] != output_layer:
        raise ValueError(f"--output-layer {output_layer}: the bundle has the "
                         f"{choices['output_layer']} output layer; `jams-pyg train "
                         f"--output-layer {output_layer}` trains one with the {output_layer}")


def evaluate_bundle(args: argparse.Namespace) -> dict[str, Any]:
    """``{"model_choices": model_choices(...), "systems": {system: ...}}``, per system:
    threshold, metrics, threshold protocol, number of documents and of unknown codes; the
    evaluation protocol of training (:func:`jams_pyg.eval.evaluate`)."""
    from jams_pyg.data.edin import load_edin_dataset
    from jams_pyg.eval.thresholds import evaluate
    from jams_pyg.inference.predictor import JAMSPredictor

    if args.protocol and not args.tune_on:
        raise ValueError(f"--protocol {args.protocol} chooses how --tune-on tunes the "
                         "threshold; without --tune-on the bundle's threshold applies")
    predictor = JAMSPredictor.load(args.model, device=args.device)
    choices = model_choices(predictor.bundle.model_config)
    check_choices(choices, args.gem_direction, args.output_layer)
    # the bundle records the protocol its thresholds were tuned with (edin before it did)
    protocol = args.protocol or predictor.bundle.extra.get("protocol", {}).get("threshold",
                                                                               "edin")
    systems = [s for s in predictor.codes if s in predictor.resolve_systems(args.system)]
    results: dict[str, Any] = {}
    for system in systems:
        dataset = load_edin_dataset(args.data, system)
        codes = predictor.codes[system]
        probs, targets, unknown, total = _score(predictor, dataset, args.split, args.batch_size)
        if args.tune_on:
            val_probs, val_targets, _, _ = _score(predictor, dataset, args.tune_on,
                                                  args.batch_size)
            scored = evaluate(probs, targets, tune_on=(val_probs, val_targets),
                              protocol=protocol)
        else:
            scored = evaluate(probs, targets, threshold=predictor.thresholds[system])
        results[system] = {
            **scored,
            "protocol": protocol,
            "num_documents": int(probs.shape[0]),
            "unknown_code_share": unknown / max(total, 1),
        }
        if unknown:
            print(f"jams-pyg evaluate: {system}: {unknown} of {total} code occurrences of the "
                  f"{args.split} split are not among the model's {len(codes)} codes "
                  "(left out of the targets)", file=sys.stderr)
    return {"model_choices": choices, "systems": results}


def _percent(value: float | None) -> str:
    from jams_pyg.eval.tables import MISSING

    return MISSING if value is None or math.isnan(value) else f"{100 * value:.1f}"


def results_table(results: dict[str, Any]) -> str:
    """One row per system: documents, the metrics × 100 and the unknown codes' share (%)
    of the split's code occurrences, aligned to fit a terminal."""
    from jams_pyg.eval.names import METRIC_KEYS, METRIC_LABELS
    from jams_pyg.icd.codes import SYSTEM_LABELS

    header = ["System", "Docs", *(METRIC_LABELS[k] for k in METRIC_KEYS), "Unknown %"]
    rows = [[SYSTEM_LABELS.get(s, s), str(r["num_documents"]),
             *(_percent(r["metrics"].get(k)) for k in METRIC_KEYS),
             f"{100 * r['unknown_code_share']:.1f}"] for s, r in results.items()]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join([row[0].ljust(widths[0])]
                               + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)])
                     for row in [header, *rows])


def run(args: argparse.Namespace) -> int:
    from jams_pyg.inference.bundle import BundleError

    try:
        if args.output:  # checked first: a missing folder fails before the scoring
            check_output_folder(args.output, "--output")
        evaluated = evaluate_bundle(args)
        results = evaluated["systems"]
        payload = {"model": str(args.model), "data": str(args.data), "split": args.split,
                   "threshold_split": args.tune_on or "bundle",
                   "model_choices": evaluated["model_choices"], "systems": results}
        if args.output:
            from jams_pyg.atomic import atomic_write_text

            atomic_write_text(args.output, json.dumps(payload, indent=2) + "\n")
    except (BundleError, OSError, ValueError) as err:
        hint = bundle_folder_hint(args.model) if isinstance(err, BundleError) else None
        return fail("evaluate", hint or err)
    threshold = (f"threshold tuned on {args.tune_on} ({results[next(iter(results))]['protocol']})"
                 if args.tune_on else "the bundle's threshold")
    print(f"{args.model} on the {args.split} split of {args.data} (x100; {threshold}; "
          f"{describe_choices(evaluated['model_choices'])}; "
          "Unknown %: the share of the split's code occurrences that are not among the "
          "model's codes, left out of the targets)\n")
    print(results_table(results))
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    evaluate = add_command(
        commands, "evaluate", "score a model bundle on a split of Edin et al.'s dataset files",
        DESCRIPTION)
    evaluate.add_argument("--model", required=True, metavar="DIR", help="model bundle folder")
    evaluate.add_argument("--data", required=True, metavar="DIR",
                          help="folder with Edin et al.'s files (mimiciv_icd9/, "
                          "mimiciv_icd10/), e.g. a run's synthetic corpus OUTPUT_DIR/data")
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test"],
                          help="documents to score")
    evaluate.add_argument("--system", default="both", choices=["both", "icd9", "icd10"],
                          help="coding system(s); 'both' = every system of the model")
    evaluate.add_argument("--tune-on", choices=["train", "val", "test"],
                          help="tune the threshold again on this split (default: the "
                          "bundle's)")
    evaluate.add_argument("--protocol", choices=THRESHOLD_PROTOCOLS,
                          help="how --tune-on tunes the threshold: edin (Edin et al.'s grid) "
                          "or exact (the exact micro-F1 maximiser); default: the bundle's")
    evaluate.add_argument("--gem-direction", choices=DIRECTIONS,
                          help="the GEM reading the bundle must have (another is an error "
                          "before any scoring); default: any")
    evaluate.add_argument("--output-layer", choices=OUTPUT_LAYERS,
                          help="the output layer the bundle must have (another is an error "
                          "before any scoring); default: any")
    evaluate.add_argument("--batch-size", type=positive_int, default=16, metavar="N",
                          help="documents per forward pass")
    evaluate.add_argument("--device", help="torch device (default: cuda if available, "
                          "else cpu)")
    evaluate.add_argument("--output", "-o", metavar="FILE", help="also write the results "
                          "as JSON here (its folder must exist: checked before any work)")
    evaluate.set_defaults(handler=run)
