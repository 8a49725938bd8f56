"""The README's JAMS-vs-backbone tables, generated from ``jams_vs_backbone.py``'s results.json.

Prints markdown: test metrics per model (mean ± std over seeds), the paired JAMS − backbone
deltas (mean ± half-width of the 95 % t-interval) with the paper's numbers beside them, and
the epochs each run took.  The paper's numbers are Jeong et al.'s Table 2 (MIMIC-IV test
sets, one run each) and, for LAAT, the Figure 2/3 gains stated in their text (frequency
bucket 1-100 and its codes with / without a GEM link).

Examples::

    python benchmarks/readme_tables.py benchmarks/results/jams_vs_backbone/results.json
    python benchmarks/readme_tables.py --ablations benchmarks/results/jams_ablations/results.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jams_pyg.eval.deltas import format_delta, rarest_groups
from jams_pyg.eval.tables import (
    MISSING,
    compare_table,
    convergence_table,
    results_by_label,
)
from jams_pyg.icd.codes import SYSTEM_LABELS

#: Table 2 of the paper: (backbone, JAMS) macro-F1 and MAP, ×100, per system.
PAPER_TABLE2 = {
    "caml": {"icd9": {"f1_macro": (19.3, 21.5), "map": (62.4, 63.6)},
             "icd10": {"f1_macro": (16.0, 19.7), "map": (57.4, 58.7)}},
    "multirescnn": {"icd9": {"f1_macro": (27.7, 29.2), "map": (64.7, 65.4)},
                    "icd10": {"f1_macro": (21.1, 23.5), "map": (59.3, 60.9)}},
    "laat": {"icd9": {"f1_macro": (26.4, 28.7), "map": (66.3, 66.9)},
             "icd10": {"f1_macro": (20.3, 22.7), "map": (60.6, 62.2)}},
    "plm_icd": {"icd9": {"f1_macro": (29.8, 31.8), "map": (68.0, 68.3)},
                "icd10": {"f1_macro": (21.1, 25.6), "map": (61.9, 63.6)}},
}
#: LAAT+JAMS − LAAT macro-F1 gains the paper's text gives for Figures 2 and 3 (×100).
PAPER_LAAT_BUCKETS = {"icd9": {"rare": 3.2, "rare w/ link": 4.2, "rare w/o link": 1.9},
                      "icd10": {"rare": 3.7, "rare w/ link": 4.1, "rare w/o link": 1.2}}


def metrics_table(runs: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> str:
    """Test metrics per label (mean ± std over its seeds), Table 2-style."""
    return compare_table(results_by_label(runs), metrics=metrics)


def paper_delta_table(deltas: Mapping[str, Any], display: Mapping[str, str],
                      variant: str = "jams") -> str:
    """Our paired ``variant`` − backbone deltas (95 % interval) beside the paper's gains
    (one run each)."""
    lines = ["| Backbone | System | n | macro-F1 ours | paper | MAP ours | paper | "
             "rare ours | paper | rare w/ link ours | paper | rare w/o link ours | paper |",
             "|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for model, variants in deltas.items():
        for system, scores in variants.get(variant, {}).items():
            paper = PAPER_TABLE2.get(model, {}).get(system, {})

            def gain(key: str, paper: Mapping[str, Any] = paper) -> str:
                pair = paper.get(key)
                return f"{pair[1] - pair[0]:+.1f}" if pair else MISSING

            buckets = PAPER_LAAT_BUCKETS.get(system, {}) if model == "laat" else {}
            rare, link, nolink = rarest_groups(scores)
            n = len(scores["f1_macro"]["per_seed"])
            cells = [format_delta(scores["f1_macro"]), gain("f1_macro"),
                     format_delta(scores["map"]), gain("map")]
            for key, name in ((rare, "rare"), (link, "rare w/ link"),
                              (nolink, "rare w/o link")):
                cells += [format_delta(scores.get(key) if key else None),
                          f"{buckets[name]:+.1f}" if name in buckets else MISSING]
            lines.append(f"| {display.get(model, model)} | {SYSTEM_LABELS.get(system, system)} | "
                         f"{n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ablation_table(payload: Mapping[str, Any], model: str = "laat") -> str:
    """One table of paired deltas for the ablations: every variant against the backbone,
    then against each reference variant (``deltas_vs_<reference>``), macro-F1, MAP and the
    rarest linked codes per system (mean ± half-width of the 95 % t-interval)."""
    n = max((len(r["per_seed"]) for v in payload["deltas"].get(model, {}).values()
             for s in v.values() for r in s.values()), default=0)
    lines = [f"| Paired delta (n = {n}) | ICD-9 macro-F1 | ICD-9 MAP | ICD-9 rare w/ link | "
             "ICD-10 macro-F1 | ICD-10 MAP | ICD-10 rare w/ link |",
             "|:---|---:|---:|---:|---:|---:|---:|"]
    references = [("backbone", payload["deltas"])] + [
        (key.removeprefix("deltas_vs_"), value) for key, value in payload.items()
        if key.startswith("deltas_vs_")]
    for reference, deltas in references:
        for variant, systems in deltas.get(model, {}).items():
            cells = []
            for system in SYSTEM_LABELS:
                scores = systems.get(system, {})
                link = rarest_groups(scores)[1]
                cells += [format_delta(scores.get("f1_macro")), format_delta(scores.get("map")),
                          format_delta(scores.get(link) if link else None)]
            lines.append(f"| {variant} − {reference} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="results.json of jams_vs_backbone.py")
    parser.add_argument("--metrics", nargs="+", default=["f1_micro", "f1_macro", "map"])
    parser.add_argument("--variant", default="jams",
                        help="the variant whose deltas against the backbone are shown")
    parser.add_argument("--ablations", action="store_true",
                        help="ablation results: macro-F1/MAP per variant and every paired "
                        "delta (against the backbone and the reference variants)")
    args = parser.parse_args(argv)
    from jams_pyg.train.variants import DISPLAY

    payload = json.loads(args.results.read_text())
    if args.ablations:
        text = (metrics_table(payload["runs"], ["f1_macro", "map"]) + "\n\n"
                + ablation_table(payload))
        print(text)
        return text
    out = [metrics_table(payload["runs"], args.metrics), "",
           paper_delta_table(payload["deltas"], DISPLAY, args.variant)]
    if payload.get("convergence"):
        out += ["", convergence_table(payload["convergence"])]
    text = "\n".join(out)
    print(text)
    return text


if __name__ == "__main__":
    main()
