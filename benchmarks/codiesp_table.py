"""Tables of the CodiEsp benchmarks (``benchmarks/codiesp.py``,
``benchmarks/codiesp_transition.py``), from their per-run JSON files.

* ``benchmarks/results/codiesp/README.md``: the backbones on the real test set, mean ± std
  over seeds, beside the published CodiEsp results (numbers as issue #20 lists them);
* ``benchmarks/results/codiesp_transition/README.md`` and ``summary.json``: the transition
  experiment. Every variant is re-scored here from its saved model on the real ICD-10 test
  set in ONE label space (the codes of half A + dev + test, which every variant's
  vocabulary holds), with frequencies counted in half A (buckets 1-10, 11-100, 101+; the
  rarest one split by GEM link in that seed's JAMS graph), so the oracle (trained on more
  codes) and the others compare code for code; paired deltas against ``backbone`` over seeds
  with 95 % t-intervals (:func:`jams_pyg.eval.deltas.summarize_deltas`).

Run: ``python benchmarks/codiesp_table.py`` (reads the models under ``--work-dir``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

#: Published CodiEsp test-set MAP, as issue #20 lists them (different systems,
#: preprocessing and languages: see the README).
PUBLISHED = [
    ("IXA-AAA (best shared-task run; per-label XGBoost + string matching)", 0.593, None),
    ("ICB-UMA (BERT multi-label classifier)", 0.482, None),
    ("LIIR (convolutional label attention)", 0.44, None),
    ("Hulat (dictionary match on the English translation)", 0.115, None),
    ("López-García et al. 2021 (transformer ensembles, Spanish clinical pretraining)",
     0.662, 0.544),
]
MODEL_NAMES = {"laat": "LAAT", "caml": "CAML", "multirescnn": "MultiResCNN",
               "plm_icd": "PLM-ICD (small RoBERTa from scratch)"}
VARIANT_NAMES = {"backbone": "LAAT on A (ICD-10 only)", "jams": "LAAT+JAMS on A + B (ICD-9)",
                 "no_mat": "no_mat (shared encoder, no MAT)",
                 "mat_only": "mat_only (MAT, separate encoders)",
                 "oracle": "oracle: LAAT on A + B (true ICD-10)"}


def _ms(values: list[float], scale: float = 100.0) -> str:
    if not values:
        return "–"
    mean = scale * float(np.mean(values))
    if len(values) == 1:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {scale * float(np.std(values, ddof=1)):.1f}"


# -------------------------------------------------------------------------------- backbones
def backbone_results_table(results: Path) -> str:
    """Our runs: mean ± std over seeds per language × backbone, and the frequency ranking."""
    runs = [json.loads(p.read_text()) for p in sorted(results.glob("*_seed*.json"))]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["language"], run["model"]), []).append(run)
    lines = [
        "| Model | text | seeds | MAP-D | MAP-P | MAP-P (7-char gold) | micro-F1 | macro-F1 "
        "| Edin MAP | epochs (best/run) | min/run |",
        "|:--|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    order = {m: i for i, m in enumerate(MODEL_NAMES)}
    for (language, model), group in sorted(groups.items(),
                                           key=lambda kv: (kv[0][0], order.get(kv[0][1], 9))):
        official = [g["official"] for g in group]
        edin = [g["edin"] for g in group]
        epochs = ", ".join(f"{g['training']['best_epoch']}/{g['training']['epochs_run']}"
                           for g in group)
        lines.append(
            f"| {MODEL_NAMES.get(model, model)} | {language} | "
            f"{','.join(str(g['seed']) for g in group)} | {_ms([o['map_d'] for o in official])} | "
            f"{_ms([o['map_p'] for o in official])} | "
            f"{_ms([o['map_p_full_codes'] for o in official])} | "
            f"{_ms([e['f1_micro'] for e in edin])} | {_ms([e['f1_macro'] for e in edin])} | "
            f"{_ms([e['map'] for e in edin])} | {epochs} | "
            f"{np.mean([g['seconds'] for g in group]) / 60:.0f} |")
    baseline = results / "frequency_baseline.json"
    if baseline.is_file():
        b = json.loads(baseline.read_text())
        lines.append(f"| codes ranked by training frequency (no text) | en | – | "
                     f"{100 * b['map_d']:.1f} | {100 * b['map_p']:.1f} | "
                     f"{100 * b['map_p_full_codes']:.1f} | | | | | |")
    return "\n".join(lines)


def published_table() -> str:
    """The published CodiEsp test-set MAP (:data:`PUBLISHED`)."""
    lines = ["| System | MAP-D | MAP-P |", "|:--|--:|--:|"]
    for name, d, p in PUBLISHED:
        lines.append(f"| {name} | {100 * d:.1f} | {'–' if p is None else f'{100 * p:.1f}'} |")
    return "\n".join(lines)


def backbone_table(results: Path) -> str:
    """Our runs, then the published results."""
    return (backbone_results_table(results) + "\n\nPublished (CodiEsp test set, official "
            "MAP ×100):\n\n" + published_table())


# ------------------------------------------------------------------------------- transition
def _bundle_dir(record: dict[str, Any], codiesp_results: Path) -> Path:
    if record["variant"] == "oracle":
        source = json.loads(Path(record["source"]).read_text())
        return Path(source["config"]["output_dir"]) / "model"
    return Path(record["config"]["output_dir"]) / "model"


def _threshold(record: dict[str, Any]) -> float:
    if record["variant"] == "oracle":
        return json.loads(Path(record["source"]).read_text())["threshold"]
    return record["metrics"]["systems"]["icd10"]["threshold"]


def stored_runs(results: Path) -> list[dict[str, Any]]:
    """The re-scored runs of ``results``/summary.json (none without the file)."""
    path = results / "summary.json"
    return json.loads(path.read_text())["runs"] if path.is_file() else []


def transition_runs(results: Path, work: Path) -> list[dict[str, Any]]:
    """Every finished run re-scored in its seed's common label space (a ``metrics.json``-like
    payload per run, for :func:`~jams_pyg.eval.deltas.summarize_deltas`).

    A seed whose saved models are not all under ``work`` (its runs were made on another
    machine, or the run folders were cleaned) keeps its runs as summary.json last recorded
    them, provided they are all there and carry the official MAP of the run JSONs; otherwise
    this fails naming the missing model."""
    from jams_pyg.data.edin import load_joint_datasets
    from jams_pyg.eval.buckets import bucket_macro_f1
    from jams_pyg.eval.metrics import compute_metrics, per_code_f1
    from jams_pyg.graph import GEMGraph
    from jams_pyg.icd.gem import cms_2018_gem_paths, resource_path
    from jams_pyg.inference import JAMSPredictor

    runs = []
    stored = {(r["variant"], r["seed"]): r for r in stored_runs(results)}
    seeds = sorted({int(p.stem.split("seed")[1]) for p in results.glob("*_seed*.json")
                    if not p.stem.startswith("conversion")})
    for seed in seeds:
        records = [json.loads(p.read_text()) for p in sorted(results.glob(f"*_seed{seed}.json"))
                   if not p.stem.startswith("conversion")]
        missing = [d for r in records if not (d := _bundle_dir(r, results)).is_dir()]
        if missing:
            runs += _stored_seed(records, stored, missing[0])
            continue
        data = work / "transition" / f"data_seed{seed}"
        ds9, ds10 = load_joint_datasets(data)
        forward, backward = cms_2018_gem_paths()
        graph = GEMGraph.from_gem_files(
            [forward, resource_path("gems", "gem_i9pcs.txt.gz")], [backward],
            icd9_codes=ds9.codes, icd10_codes=ds10.codes, direction="directional")
        linked = graph.linked("icd10").numpy()
        counts = ds10.code_frequencies("train")
        test = ds10.test
        index = {c: i for i, c in enumerate(ds10.codes)}
        targets = np.zeros((len(test), len(ds10.codes)), dtype=np.float32)
        for row, codes in enumerate(test["target"]):
            for code in codes:
                targets[row, index[code]] = 1
        for record in records:
            predictor = JAMSPredictor.load(_bundle_dir(record, results), device="cpu")
            probs = predictor.predict_proba(test["text"].tolist(), system="icd10")["icd10"]
            columns = [predictor.codes["icd10"].index(c) for c in ds10.codes]
            probs = probs[:, columns]
            threshold = _threshold(record)
            metrics = compute_metrics(probs, targets, threshold=threshold)
            f1 = per_code_f1(probs, targets, threshold)
            buckets = bucket_macro_f1(f1, counts, linked, scale=0.1)
            official = record["official"]
            runs.append({
                "model": "laat", "variant": record["variant"], "seed": seed,
                "systems": {
                    "icd10": {"metrics": metrics, "buckets": buckets},
                    "codiesp_d": {"metrics": {"map": official["map_d"], "f1_macro": None,
                                              "f1_micro": None}, "buckets": {"buckets": {}}},
                    "codiesp_p": {"metrics": {"map": official["map_p"], "f1_macro": None,
                                              "f1_micro": None}, "buckets": {"buckets": {}}},
                }})
    return runs


def _stored_seed(records: list[dict[str, Any]], stored: dict[tuple[str, int], Any],
                 missing: Path) -> list[dict[str, Any]]:
    """One seed's runs from summary.json, checked against the run JSONs."""
    out = []
    for record in records:
        run = stored.get((record["variant"], record["seed"]))
        official = record["official"]
        systems = run["systems"] if run else {}
        if (run is None or systems["codiesp_d"]["metrics"]["map"] != official["map_d"]
                or systems["codiesp_p"]["metrics"]["map"] != official["map_p"]):
            raise FileNotFoundError(
                f"{missing} is missing and summary.json holds no re-scored run of "
                f"{record['key']} with its official MAP: re-run that seed")
        out.append(run)
    return out


def _transition_scores(runs: list[dict[str, Any]]) -> tuple[list[str], dict[str, Any],
                                                            list[str]]:
    """(variants present, in table order; {variant: {score: per-run values}}; the rare
    bucket's link keys)."""
    from jams_pyg.eval.deltas import group_scores

    variants = [v for v in VARIANT_NAMES if any(r["variant"] == v for r in runs)]
    scores: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        entry = scores.setdefault(run["variant"], {})
        for name, value in group_scores(run["systems"]["icd10"]).items():
            if value is not None:
                entry.setdefault(name, []).append(value)
        entry.setdefault("MAP-D", []).append(run["systems"]["codiesp_d"]["metrics"]["map"])
        entry.setdefault("MAP-P", []).append(run["systems"]["codiesp_p"]["metrics"]["map"])
    link_keys = [k for k in next(iter(scores.values())) if "link" in k]
    return variants, scores, link_keys


def transition_scores_table(runs: list[dict[str, Any]]) -> str:
    """Per variant: seeds, official MAP-D/-P, Edin's metrics, rare-code macro-F1 (mean ± std)."""
    variants, scores, link_keys = _transition_scores(runs)
    columns = ["MAP-D", "MAP-P", "f1_micro", "f1_macro", "map", "bucket 1-10", *link_keys]
    headers = ["MAP-D", "MAP-P", "micro-F1", "macro-F1", "Edin MAP", "macro-F1 1-10",
               *[f"macro-F1 {k}" for k in link_keys]]
    lines = ["| Variant | seeds | " + " | ".join(headers) + " |",
             "|:--|--:|" + "--:|" * len(headers)]
    for variant in variants:
        n = sum(r["variant"] == variant for r in runs)
        cells = [_ms(scores[variant].get(c, [])) for c in columns]
        lines.append(f"| {VARIANT_NAMES[variant]} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def transition_deltas(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Paired deltas of every variant against ``backbone`` over seeds."""
    from jams_pyg.eval.deltas import summarize_deltas

    return summarize_deltas(runs, reference="backbone").get("laat", {})


def transition_delta_table(runs: list[dict[str, Any]]) -> str:
    """Paired deltas against ``backbone`` (mean ± half-width of the 95 % t-interval)."""
    from jams_pyg.eval.deltas import format_delta

    variants, _, link_keys = _transition_scores(runs)
    deltas = transition_deltas(runs)
    lines = ["| Variant | MAP-D | MAP-P | micro-F1 | macro-F1 | Edin MAP | macro-F1 1-10 | "
             + " | ".join(f"macro-F1 {k}" for k in link_keys) + " |",
             "|:--|" + "--:|" * (6 + len(link_keys))]
    for variant in variants:
        if variant == "backbone" or variant not in deltas:
            continue
        d = deltas[variant]
        cells = [format_delta(d.get("codiesp_d", {}).get("map")),
                 format_delta(d.get("codiesp_p", {}).get("map")),
                 *[format_delta(d["icd10"].get(c)) for c in ("f1_micro", "f1_macro", "map",
                                                             "bucket 1-10", *link_keys)]]
        lines.append(f"| {VARIANT_NAMES[variant]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def transition_table(runs: list[dict[str, Any]], results: Path) -> str:
    """Both transition tables; writes ``results``/summary.json (runs and deltas)."""
    (results / "summary.json").write_text(json.dumps(
        {"runs": runs, "deltas_vs_backbone": transition_deltas(runs)}, indent=2,
        default=float) + "\n")
    return (transition_scores_table(runs) + "\n\nPaired deltas against LAAT on A (×100, "
            "mean ± half-width of the 95 % t-interval over seeds):\n\n"
            + transition_delta_table(runs))


def conversion_table(results: Path) -> str:
    lines = ["| seed | B docs kept | dx codes mapped / lost (one-to-many) | "
             "proc codes mapped / lost (one-to-many) | ICD-9 codes written |",
             "|--:|--:|--:|--:|--:|"]
    for path in sorted(results.glob("conversion_seed*.json")):
        s = json.loads(path.read_text())
        b = s["conversion"]["B"]
        kept = s["icd9_documents"].get("train", 0)
        lines.append(
            f"| {s['seed']} | {kept}/{s['half_b']} | {b.get('dx_mapped', 0)} / "
            f"{b.get('dx_no_map', 0)} ({b.get('dx_one_to_many', 0)}) | "
            f"{b.get('proc_mapped', 0)} / {b.get('proc_no_map', 0)} "
            f"({b.get('proc_one_to_many', 0)}) | "
            f"{b.get('dx_icd9_codes', 0) + b.get('proc_icd9_codes', 0)} |")
    return "\n".join(lines)


def _written_sections(readme: Path) -> str:
    """The hand-written sections of an existing README (from its first ``## `` heading on),
    kept below the regenerated tables; empty without any."""
    text = readme.read_text() if readme.is_file() else ""
    start = text.find("\n## ")
    return "" if start < 0 else text[start:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="benchmarks/results/codiesp")
    parser.add_argument("--transition", default="benchmarks/results/codiesp_transition")
    parser.add_argument("--work-dir", default="outputs/codiesp")
    args = parser.parse_args(argv)
    results, transition = Path(args.results), Path(args.transition)
    text = backbone_table(results)
    (results / "README.md").write_text(
        "# CodiEsp: the backbones on real text (test set, ×100)\n\n"
        "Written by `benchmarks/codiesp_table.py` from the per-run JSON files here (each "
        "holds its full config). CodiEsp: Miranda-Escalada et al., CLEF eHealth 2020, "
        "CC BY 4.0.\n\n" + text + "\n" + _written_sections(results / "README.md"))
    print(text)
    if any(transition.glob("*_seed*.json")):
        runs = transition_runs(transition, Path(args.work_dir))
        table = transition_table(runs, transition) + "\n\nConversion of half B (ICD-10 -> " \
            "ICD-9 by the backward GEMs; code occurrences):\n\n" + conversion_table(transition)
        (transition / "README.md").write_text(
            "# CodiEsp transition experiment (real ICD-10 test set, ×100)\n\n"
            "Written by `benchmarks/codiesp_table.py`; setup in "
            "`benchmarks/codiesp_transition.py`. B's ICD-9 codes come from the GEMs, not "
            "from coders. CodiEsp: Miranda-Escalada et al., CLEF eHealth 2020, CC BY 4.0.\n\n"
            + table + "\n" + _written_sections(transition / "README.md"))
        print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
