r"""Does the model know this kind of text? An out-of-distribution (OOD) signal for
:meth:`JAMSPredictor.predict <jams_pyg.inference.predictor.JAMSPredictor.predict>`,
calibrated on held-out notes when the bundle is saved.

**The statistic.** A word-level model reads every word outside its training vocabulary as
the same unknown token: a note whose words it mostly does not know gives codes that say
nothing about the note (a model trained on the synthetic corpus returned 21 ICD-9 and 25
ICD-10 codes at p = 1.00 for a line of gibberish). The statistic is the share of the
tokens read that the vocabulary does not know (:attr:`NotePrediction.unknown_words
<jams_pyg.inference.notes.NotePrediction.unknown_words>`).

**The calibration** (:func:`calibrate`). The statistic of every validation note (notes the
tokenizer and the weights never trained on, tokenised as in training) gives the threshold:
its ``quantile`` (default :data:`OOD_QUANTILE`, 0.99) as an order statistic, the smallest
value that at least 99 % of the validation notes do not exceed. A new note is *out of
distribution* when its statistic is above the threshold: at most 1 % of notes like the
validation notes are flagged. The threshold follows the data the model was trained on (on
the synthetic corpus 1.2 %, where real clinical notes have 40-50 % unknown words), not a
fixed share.

**What is withheld.** ``predict(ood="withhold")`` (the default; ``jams-pyg predict
--ood withhold``) marks a flagged note and predicts none of its codes: without ``top_k`` its
code lists are empty, with ``top_k`` the ranking is listed with ``predicted`` false, and its
record's ``"ood"`` says why. ``ood="mark"`` flags the note and keeps its codes;
``ood="off"`` checks nothing (the behaviour before the signal).

**Codes that fire on nearly every input.** The calibration also stores, per code, the
share of the validation notes of its system on which it fires (probability above the tuned
threshold). A code that fired on more than half of them (:data:`FIRES_ON_MOST`) is reported
with ``fires_on_most_notes`` true. Within one call of at least :data:`CALL_MIN_NOTES`
notes, a code above its threshold on more than half of the call's notes (withheld notes
included) is reported with ``fires_on_most_call_notes`` true, and ``predict`` warns naming
it: a code that does not depend on the note (or a batch of notes that share it). On the
demo bundle no code fires on more than 44 % of the validation notes, while I69.021 and
I69.132 fire on 6 of the 7 plain notes and gibberish of ``benchmarks/predict_ood.py``.

The decision threshold and the evaluation protocol (Edin et al.'s single tuned threshold,
:meth:`~jams_pyg.inference.predictor.JAMSPredictor.predict_proba`, ``jams-pyg evaluate``)
are untouched: the signal acts in :meth:`predict` only.

The calibration lives in the bundle's ``config.json`` under ``"ood"`` (covered by its
checksum); a bundle saved before it has none and predicts with ``"ood": null`` in every
record (:func:`calibrate_bundle` adds it to such a bundle).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CALL_MIN_NOTES",
    "FIRES_ON_MOST",
    "OOD_MODES",
    "OOD_QUANTILE",
    "OOD_STATISTIC",
    "OODWarning",
    "calibrate",
    "calibrate_bundle",
    "check_calibration",
    "order_statistic",
]

PathLike = str | os.PathLike[str]

#: The familiarity statistic: share of the tokens read that the vocabulary does not know.
OOD_STATISTIC = "unknown_words"
#: Share of the validation notes at or below the threshold.
OOD_QUANTILE = 0.99
#: A code that fired on more than this share of its validation notes (or, in a call, of
#: the call's notes) fires on most notes.
FIRES_ON_MOST = 0.5
#: A call needs at least this many notes before a code above its threshold on most of them
#: is reported as firing on most of the call's notes.
CALL_MIN_NOTES = 3
#: ``predict(ood=...)``: withhold the codes of flagged notes, only mark them, or no check.
OOD_MODES = ("withhold", "mark", "off")


class OODWarning(UserWarning):
    """What :meth:`JAMSPredictor.predict <jams_pyg.inference.predictor.JAMSPredictor.predict>`
    warns about the notes it was given: notes out of distribution, codes that fire on most
    of them (``jams-pyg predict`` prints each as one line)."""


def order_statistic(values: Sequence[float], quantile: float) -> float:
    """The smallest of ``values`` that at least ``quantile`` of them do not exceed
    (``sorted(values)[ceil(quantile * n) - 1]``: numpy's ``inverted_cdf`` quantile, a value
    that occurred, never an interpolation between two notes)."""
    if not len(values):
        raise ValueError("no values to calibrate on")
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}")
    return float(np.quantile(np.asarray(values, dtype=np.float64), quantile,
                             method="inverted_cdf"))


def calibrate(
    tokenizer: Any,
    texts: Sequence[str],
    probs: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float],
    max_length: int,
    quantile: float = OOD_QUANTILE,
) -> dict[str, Any]:
    """The ``"ood"`` entry of a bundle, from held-out notes.

    Args:
        tokenizer: The bundle's tokenizer.
        texts (list[str]): The validation notes of every system (a dataset's preprocessed
            text, tokenised as in training).
        probs (dict[str, np.ndarray]): Per system, the model's probabilities ``[N_s, C_s]``
            on that system's validation notes (label order).
        thresholds (dict[str, float]): The tuned decision threshold per system.
        max_length (int): Tokens read per note.
        quantile (float): Share of the validation notes at or below the threshold.

    Returns:
        ``{"statistic", "quantile", "threshold", "num_notes", "fires_on_most",
        "fire_rate": {system: [share of its validation notes each code fires on]}}``;
        ``statistic`` and ``threshold`` are ``None`` for a subword tokenizer (it knows every
        word).
    """
    from jams_pyg.inference.evidence import encode_note

    texts = list(texts)
    values = [encode_note(tokenizer, t, max_length).unknown_words for t in texts]
    word_level = bool(values) and all(v is not None for v in values)
    fire_rate = {}
    for system, p in probs.items():
        p = np.asarray(p)
        if p.ndim != 2 or p.shape[0] == 0:
            raise ValueError(f"probs[{system!r}] must be a non-empty [notes, codes] array")
        fire_rate[system] = [round(float(r), 6)
                             for r in (p > float(thresholds[system])).mean(axis=0)]
    return {
        "statistic": OOD_STATISTIC if word_level else None,
        "quantile": float(quantile),
        "threshold": order_statistic(values, quantile) if word_level else None,
        "num_notes": len(texts),
        "fires_on_most": FIRES_ON_MOST,
        "fire_rate": fire_rate,
    }


def check_calibration(ood: Any, codes: Mapping[str, Sequence[str]]) -> dict[str, Any] | None:
    """A bundle's ``"ood"`` entry checked (``None``: no calibration); a ValueError names
    what is malformed."""
    if ood is None:
        return None
    if not isinstance(ood, dict):
        raise ValueError(f"'ood' must be null or an object, got {ood!r}")
    for key in ("statistic", "quantile", "threshold", "num_notes", "fires_on_most",
                "fire_rate"):
        if key not in ood:
            raise ValueError(f"'ood' has no {key!r} entry")
    if ood["statistic"] not in (OOD_STATISTIC, None):
        raise ValueError(f"unknown ood statistic {ood['statistic']!r}")
    threshold = ood["threshold"]
    if (ood["statistic"] is None) != (threshold is None):
        raise ValueError("'ood' needs a threshold exactly when it has a statistic")
    if threshold is not None and (isinstance(threshold, bool)
                                  or not isinstance(threshold, (int, float))
                                  or not 0.0 <= threshold <= 1.0):
        raise ValueError(f"ood threshold must be a share in [0, 1], got {threshold!r}")
    for key in ("quantile", "fires_on_most"):
        value = ood[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not 0.0 <= value <= 1.0:
            raise ValueError(f"ood {key} must be in [0, 1], got {value!r}")
    if isinstance(ood["num_notes"], bool) or not isinstance(ood["num_notes"], int) \
            or ood["num_notes"] < 1:
        raise ValueError(f"ood num_notes must be a positive int, got {ood['num_notes']!r}")
    rates = ood["fire_rate"]
    if not isinstance(rates, dict) or set(rates) != set(codes):
        raise ValueError(f"ood fire_rate must have an entry per system {sorted(codes)}")
    for system, values in rates.items():
        if not isinstance(values, list) or len(values) != len(codes[system]) or any(
                isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1
                for v in values):
            raise ValueError(f"ood fire_rate[{system!r}] must hold a share in [0, 1] per code "
                             f"({len(codes[system])})")
    return dict(ood)


def calibrate_bundle(bundle: PathLike, data_dir: PathLike, output: PathLike | None = None,
                     quantile: float = OOD_QUANTILE, batch_size: int = 16) -> Path:
    """Calibrate a saved bundle on the validation split of the data it was trained on (Edin
    et al.'s files, or a synthetic corpus folder) and save it with its ``"ood"`` entry to
    ``output`` (default: in place). Weights, vocabularies and thresholds are copied as they
    are."""
    from jams_pyg.data import load_edin_dataset
    from jams_pyg.inference.bundle import load_bundle, save_bundle
    from jams_pyg.inference.predictor import JAMSPredictor

    loaded = load_bundle(bundle)
    predictor = JAMSPredictor(loaded)
    texts: list[str] = []
    probs = {}
    for system in predictor.systems:
        val = load_edin_dataset(data_dir, system).val["text"].tolist()
        texts += val
        probs[system] = predictor.predict_proba(val, system, batch_size=batch_size,
                                                clean=False)[system]
    ood = calibrate(loaded.tokenizer, texts, probs, loaded.thresholds, loaded.max_length,
                    quantile)
    return save_bundle(output if output is not None else bundle, loaded.model,
                       loaded.model_config, loaded.tokenizer, loaded.codes, loaded.thresholds,
                       loaded.graph, loaded.max_length, extra=loaded.extra, ood=ood)
