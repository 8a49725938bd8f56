"""The ICD-9 -> ICD-10 transition on real text: what JAMS is for, built from CodiEsp.

The situation of the JAMS paper's conclusion: a coding system changes, new documents are
coded in the new system (ICD-10), an archive of old ones in the old system (ICD-9). Per seed:

1. CodiEsp's 500 training cases are halved by a seeded draw (``random.Random(seed)``):
   half **A** keeps its real ICD-10 codes; half **B**, the "legacy archive", gets ICD-9-CM
   codes made from its ICD-10 codes by the **backward GEMs** (rule in
   :func:`to_icd9`): diagnoses through CMS's 2018 ``2018_I10gem.txt``, procedures through
   the ICD-9 -> ICD-10-PCS GEM ``gem_i9pcs.txt`` read in reverse (CMS's backward procedure
   GEM is not available offline). **B's ICD-9 codes come from the GEMs, not from coders.**
2. The ICD-10 validation and test sets are CodiEsp's real dev and test sets. The ICD-9
   side needs a validation set for early stopping (the trainer averages both systems'
   validation MAP): dev converted the same way (and test, converted, for the ICD-9 side's
   report only).
3. Five models, all LAAT with the settings of ``benchmarks/codiesp.py`` (pinned there):
   ``backbone`` = plain LAAT on A; ``jams`` = LAAT+JAMS on A (ICD-10) + B (ICD-9) over the
   diagnosis GEMs plus the procedure GEM (forward, and reversed as the backward file);
   ``no_mat`` (shared encoder, no MATConv); ``mat_only`` (MATConv, separate encoders);
   ``oracle`` = plain LAAT on A + B with their true ICD-10 codes (the full training set:
   the ``en_laat_seed{seed}`` run of ``benchmarks/codiesp.py``, reused when it exists).
4. Everything is scored on the real ICD-10 test set: official CodiEsp MAP (D and P),
   Edin et al.'s micro/macro-F1 and MAP, and the macro-F1 of the rarest codes with / without
   a GEM link; paired deltas against ``backbone`` over seeds with 95 % t-intervals
   (:mod:`jams_pyg.eval.deltas`).

What the GEM-made archive may flatter: B's ICD-9 labels are a deterministic function of its
true ICD-10 labels, and MATConv's graph is the same GEMs, so an ICD-9 label carries exactly
the information the graph links back to ICD-10 (minus the conversion's loss). Real legacy
coding is noisier (coders, guidelines and code use drift between the systems), so a gain
here is an upper bound on what the same archive size would give with coder-made ICD-9 codes.

Results: one JSON per run in ``--results-dir`` (skipped when present; interrupted runs
resume), the conversion counts in ``conversion_seed{seed}.json``; ``--bundle`` copies the
JAMS model of the first seed to ``--results-dir``/bundle. ``benchmarks/codiesp_table.py``
renders the tables. CodiEsp: Miranda-Escalada et al., CLEF 2020, CC BY 4.0.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import codiesp as bench  # benchmarks/codiesp.py: settings, data and scoring

VARIANTS = ("backbone", "jams", "no_mat", "mat_only")


# ------------------------------------------------------------------------------ conversion
def backward_maps() -> dict[str, dict[str, set[str]]]:
    """``{kind: {undotted ICD-10 code: undotted ICD-9 codes}}``: the diagnosis backward GEM
    and the procedure forward GEM read in reverse; no-map lines left out."""
    from jams_pyg.icd.gem import cms_2018_gem_paths, read_gem_file, resource_path

    maps: dict[str, dict[str, set[str]]] = {"dx": {}, "proc": {}}
    _, backward = cms_2018_gem_paths()
    dx = read_gem_file(backward, kind="dx")
    for source, target in zip(dx["source"][~dx["no_map"]], dx["target"][~dx["no_map"]],
                              strict=True):
        maps["dx"].setdefault(source, set()).add(target)
    pcs = read_gem_file(resource_path("gems", "gem_i9pcs.txt.gz"), kind="proc")
    for source, target in zip(pcs["source"][~pcs["no_map"]], pcs["target"][~pcs["no_map"]],
                              strict=True):
        maps["proc"].setdefault(target, set()).add(source)
    return maps


def to_icd9(codes: list[str], maps: dict[str, dict[str, set[str]]],
            counts: Counter) -> tuple[list[str], list[str]]:
    """A document's ICD-10 codes as ICD-9-CM ``(diagnoses, procedures)``, dotted.

    Rule: every ICD-9 target of every (non-no-map) GEM line of the code, i.e. all
    alternatives of a one-to-many entry and all parts of a combination; a code without a
    GEM line (or only no-map lines) is lost. ``counts`` gets, per kind, ``mapped`` /
    ``one_to_many`` / ``no_map`` code occurrences and the ``icd9_codes`` written.
    """
    from jams_pyg.icd.codes import format_code, parse_code

    out: dict[str, set[str]] = {"dx": set(), "proc": set()}
    for code in codes:
        kind, raw = parse_code(code, "icd10")
        targets = maps[kind].get(raw)
        if not targets:
            counts[f"{kind}_no_map"] += 1
            continue
        counts[f"{kind}_mapped"] += 1
        counts[f"{kind}_one_to_many"] += len(targets) > 1
        counts[f"{kind}_icd9_codes"] += len(targets)
        out[kind] |= {format_code(t, "icd9", kind) for t in targets}
    return sorted(out["dx"]), sorted(out["proc"])


def build_transition_data(source: Path, out: Path, seed: int) -> dict[str, Any]:
    """Write the seed's ICD-10 (A + real dev/test) and ICD-9 (B + converted dev/test)
    datasets into ``out``; returns the conversion counts."""
    import pandas as pd

    from jams_pyg.data.edin import code_columns, data_filename, split_filename

    frame = pd.read_feather(source / data_filename("icd10"))
    split = dict(pd.read_feather(source / split_filename("icd10")).itertuples(index=False))
    frame["split"] = frame["_id"].map(split)
    train_ids = sorted(frame.loc[frame["split"] == "train", "_id"])
    random.Random(seed).shuffle(train_ids)
    half_b = set(train_ids[len(train_ids) // 2:])
    maps = backward_maps()
    counts: dict[str, Counter] = {name: Counter() for name in ("B", "val", "test")}
    dropped: Counter = Counter()
    rows9 = []
    for row in frame.to_dict("records"):
        if row["split"] == "train" and row["_id"] not in half_b:  # half A: ICD-10 only
            continue
        part = "B" if row["split"] == "train" else row["split"]
        diag, proc = to_icd9(list(row["target"]), maps, counts[part])
        if not diag and not proc:
            dropped[part] += 1
            continue
        rows9.append({"_id": row["_id"], "subject_id": row["subject_id"], "text": row["text"],
                      "icd9_diag": diag, "icd9_proc": proc, "target": proc + diag,
                      "num_words": row["num_words"], "num_targets": len(proc) + len(diag),
                      "split": row["split"]})
    out.mkdir(parents=True, exist_ok=True)
    icd10 = frame.loc[~frame["_id"].isin(half_b)]
    icd10.drop(columns="split").reset_index(drop=True).to_feather(out / data_filename("icd10"))
    icd10[["_id", "split"]].reset_index(drop=True).to_feather(out / split_filename("icd10"))
    icd9 = pd.DataFrame(rows9)
    diag_col, proc_col = code_columns("icd9")
    assert list(icd9.columns[3:5]) == [diag_col, proc_col]
    icd9.drop(columns="split").to_feather(out / data_filename("icd9"))
    icd9[["_id", "split"]].to_feather(out / split_filename("icd9"))
    (out / "ATTRIBUTION.txt").write_text((source / "ATTRIBUTION.txt").read_text())
    summary = {
        "seed": seed, "half_a": len(train_ids) - len(half_b), "half_b": len(half_b),
        "documents_dropped_without_icd9_codes": dict(dropped),
        "icd9_documents": dict(Counter(r["split"] for r in rows9)),
        "conversion": {part: dict(c) for part, c in counts.items()},
        "rule": "every ICD-9 target of every GEM line of the code (one-to-many: all "
                "alternatives; combinations: all parts); no GEM line or only no-map: lost",
    }
    (out / "conversion.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# ----------------------------------------------------------------------------------- runs
def run_variant(args: argparse.Namespace, variant: str, seed: int, data_dir: Path,
                results: Path, real: Path) -> dict[str, Any]:
    from jams_pyg.cli.train import save_run_bundle
    from jams_pyg.data.edin import load_edin_dataset
    from jams_pyg.icd.gem import resource_path
    from jams_pyg.train.experiment import ExperimentConfig, run_experiment

    key = f"{variant}_seed{seed}"
    out = Path(args.work_dir) / "transition" / key
    systems = ("icd10",) if variant == "backbone" else ("icd9", "icd10")
    config = ExperimentConfig(
        model="laat", variant=variant, data_dir=str(data_dir), systems=systems,
        output_dir=str(out), seed=seed, device=args.device, train=bench.train_config("laat",
                                                                                       seed),
        resume=(out / "last.pt").exists(), model_overrides=dict(bench.MODEL["laat"]),
        icd9_gems=(str(resource_path("gems", "gem_i9pcs.txt.gz")),), **bench.DATA)
    start = time.time()
    metrics = run_experiment(config, save_model=save_run_bundle)
    test = load_edin_dataset(real, "icd10").test
    probs, codes = _icd10_probabilities(out / "model", test)
    record = {
        "key": key, "variant": variant, "seed": seed,
        "official": bench.official_maps(probs, codes, test["_id"].tolist(), real / "gold"),
        "metrics": metrics, "seconds": time.time() - start, "config": asdict(config),
        "library": bench.library_version(),
    }
    (results / f"{key}.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    logging.info("%s: MAP-D %.3f MAP-P %.3f", key, record["official"]["map_d"],
                 record["official"]["map_p"])
    return record


def _icd10_probabilities(model_dir: Path, frame: Any) -> tuple[Any, list[str]]:
    from jams_pyg.inference import JAMSPredictor

    predictor = JAMSPredictor.load(model_dir, device="cpu")
    probs = predictor.predict_proba(frame["text"].tolist(), system="icd10")["icd10"]
    return probs, list(predictor.codes["icd10"])


def oracle(args: argparse.Namespace, seed: int, real: Path, results: Path) -> None:
    """The oracle: ``en_laat_seed{seed}`` of ``benchmarks/codiesp.py`` (trained here if
    missing), recorded under this experiment's results."""
    source = Path(args.codiesp_results) / f"en_laat_seed{seed}.json"
    if not source.is_file():
        ns = argparse.Namespace(work_dir=args.work_dir, device=args.device, set=[])
        bench.run_one(ns, "en", "laat", seed, real, Path(args.codiesp_results))
    record = json.loads(source.read_text())
    record = {"key": f"oracle_seed{seed}", "variant": "oracle", "seed": seed,
              "official": record["official"], "source": str(source)}
    (results / f"oracle_seed{seed}.json").write_text(json.dumps(record, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--variants", nargs="+", default=[*VARIANTS, "oracle"])
    parser.add_argument("--codiesp-dir", default=str(bench.CODIESP_DIR))
    parser.add_argument("--work-dir", default="outputs/codiesp")
    parser.add_argument("--results-dir", default="benchmarks/results/codiesp_transition")
    parser.add_argument("--codiesp-results", default="benchmarks/results/codiesp")
    parser.add_argument("--bundle", action="store_true",
                        help="copy the JAMS model of the first seed to RESULTS_DIR/bundle")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    real = bench.prepared(args.codiesp_dir, Path(args.work_dir), "en")
    for seed in args.seeds:
        data_dir = Path(args.work_dir) / "transition" / f"data_seed{seed}"
        summary = build_transition_data(real, data_dir, seed)
        (results / f"conversion_seed{seed}.json").write_text(json.dumps(summary, indent=2)
                                                             + "\n")
        for variant in args.variants:
            if (results / f"{variant}_seed{seed}.json").is_file():
                continue
            if variant == "oracle":
                oracle(args, seed, real, results)
            else:
                run_variant(args, variant, seed, data_dir, results, real)
    if args.bundle:
        model = Path(args.work_dir) / "transition" / f"jams_seed{args.seeds[0]}" / "model"
        target = results / "bundle"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(model, target)
        (target / "ATTRIBUTION.txt").write_text((real / "ATTRIBUTION.txt").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
