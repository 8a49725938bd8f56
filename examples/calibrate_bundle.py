"""Add the out-of-distribution calibration to a model bundle saved without one.

Bundles that ``jams-pyg train`` writes are calibrated when they are saved; a bundle saved
before the signal existed predicts with ``"ood": null``. This script calibrates it on the
validation split of the data it was trained on (:func:`jams_pyg.inference.ood.calibrate_bundle`)
and saves it again (weights, vocabularies and thresholds unchanged)::

    python examples/calibrate_bundle.py outputs/laat/jams/model --data outputs/laat/data

(``examples/demo_bundle/`` needs no such step: it is the bundle ``jams-pyg train --jams-only
--output-dir /tmp/demo`` saves, seed 0, calibrated when saved.)
"""

from __future__ import annotations

import argparse

from jams_pyg.inference.ood import OOD_QUANTILE, calibrate_bundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", help="the model bundle folder")
    parser.add_argument("--data", required=True,
                        help="the data folder it was trained on (its validation split)")
    parser.add_argument("--output", help="where to save the calibrated bundle (default: "
                        "in place)")
    parser.add_argument("--quantile", type=float, default=OOD_QUANTILE,
                        help="share of the validation notes at or below the threshold "
                        f"(default: {OOD_QUANTILE})")
    args = parser.parse_args()
    path = calibrate_bundle(args.bundle, args.data, args.output, args.quantile)
    print(f"calibrated bundle written to {path}")


if __name__ == "__main__":
    main()
