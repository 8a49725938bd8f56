"""The evaluation protocol of every result, in one place (torch-free: the command line
offers its choices without loading torch).

Edin et al. (2023) tune one decision threshold on the validation split and apply it to the
test split; JAMS tunes one per coding system. ``"edin"`` is their grid search
(:func:`~jams_pyg.eval.thresholds.tune_threshold`), ``"exact"`` our exact maximiser of the
restricted micro-F1. :func:`~jams_pyg.eval.thresholds.evaluate` runs the protocol for one
system; training (:func:`~jams_pyg.train.experiment.run_experiment`) and ``jams-pyg
evaluate`` both call it, and record :func:`protocol_record` with their numbers.
"""

from __future__ import annotations

THRESHOLD_PROTOCOLS: tuple[str, ...] = ("edin", "exact")
"""Names of the threshold-tuning protocols of :func:`~jams_pyg.eval.thresholds.tune_threshold`
(default first): ``"edin"`` is Edin et al.'s grid search over all cells, ``"exact"`` the exact
maximiser of the restricted ``f1_micro`` of :func:`~jams_pyg.eval.metrics.compute_metrics`.
Record the name with the results."""

#: Micro AUC over all (document, code) pairs, as Edin et al. (see :mod:`~jams_pyg.eval.metrics`).
PROTOCOL_MICRO_AUC_CODES = "all"
#: The split the threshold is tuned on.
THRESHOLD_SPLIT = "val"


def check_protocol(protocol: str) -> str:
    """``protocol`` when it names a threshold protocol; a one-line error otherwise."""
    if protocol not in THRESHOLD_PROTOCOLS:
        raise ValueError(f"protocol must be one of {THRESHOLD_PROTOCOLS}, got {protocol!r}")
    return protocol


def protocol_record(protocol: str = "edin", threshold_split: str = THRESHOLD_SPLIT
                    ) -> dict[str, str]:
    """What ``metrics.json`` and a bundle record of how their numbers were computed:
    ``{"threshold": protocol, "micro_auc_codes": "all", "threshold_split": "val"}``."""
    return {"threshold": check_protocol(protocol),
            "micro_auc_codes": PROTOCOL_MICRO_AUC_CODES, "threshold_split": threshold_split}


__all__ = ["PROTOCOL_MICRO_AUC_CODES", "THRESHOLD_PROTOCOLS", "THRESHOLD_SPLIT",
           "check_protocol", "protocol_record"]
