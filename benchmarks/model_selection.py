"""What the model-selection rule does: validation MAP vs the official JAMS mean of seven metrics.

Trains LAAT+JAMS and the plain LAAT on one synthetic corpus with the synthetic presets
(:data:`~jams_pyg.train.presets.SYNTHETIC_TRAIN`), changing only ``TrainConfig.monitor``:
``map`` (the synthetic presets and Edin et al.'s rule) or ``official_mean`` (the official JAMS
rule, :data:`~jams_pyg.eval.names.OFFICIAL_MEAN_METRICS`), same patience. Every run goes through
:func:`~jams_pyg.train.experiment.run_experiment`. It prints one table (test split, x100, mean
over seeds, threshold tuned on validation; the epochs each run selected and ran) and writes
``results.json`` and ``table.md`` to ``--results-dir``.

Resumable: a finished run (its ``metrics.json``) is reused, an interrupted one resumes from its
last checkpoint, so the command can be started again after a stop::

    nohup python benchmarks/model_selection.py > outputs/model_selection.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MONITORS = ("map", "official_mean")
VARIANTS = ("backbone", "jams")
#: Test metrics of the table (per system).
SHOWN = ("f1_micro", "f1_macro", "map")


def build_parser() -> argparse.ArgumentParser:
    from jams_pyg.cli.synthetic import size_type

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="laat")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--size", type=size_type, default=0.25,
                        help="synthetic corpus size (default 0.25)")
    parser.add_argument("--output-dir", default="outputs/model_selection",
                        help="runs and the shared corpus (not committed)")
    parser.add_argument("--results-dir", default="benchmarks/results/model_selection")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--procedure-links", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="link procedure codes through the shipped forward procedure "
                             "GEM, and draw the corpus' procedure codes through it (default: "
                             "on, ExperimentConfig.procedure_links)")
    return parser


def make_config(args: argparse.Namespace, variant: str, monitor: str, seed: int):
    from jams_pyg.train.config import TrainConfig
    from jams_pyg.train.experiment import ExperimentConfig
    from jams_pyg.train.presets import train_settings

    settings = {**train_settings(args.model, synthetic=True), "monitor": monitor,
                "seed": seed, "progress": False, "tensorboard": False}
    out = Path(args.output_dir) / monitor / variant / f"seed{seed}"
    return ExperimentConfig(
        model=args.model, variant=variant, seed=seed, synthetic_size=args.size,
        synthetic_dir=str(Path(args.output_dir) / "data"), output_dir=str(out),
        device=args.device, procedure_links=args.procedure_links,
        train=TrainConfig(**settings))


def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    from jams_pyg.train.experiment import run_experiment

    plan = [(m, v, s) for m in MONITORS for v in VARIANTS for s in args.seeds]
    runs = []
    for position, (monitor, variant, seed) in enumerate(plan, 1):
        config = make_config(args, variant, monitor, seed)
        metrics = Path(config.output_dir) / "metrics.json"
        if metrics.is_file():
            print(f"[{position}/{len(plan)}] reusing {metrics}", flush=True)
            result = json.loads(metrics.read_text())
        else:
            config.resume = any(Path(config.output_dir).glob("**/last.pt"))
            print(f"[{position}/{len(plan)}] {monitor} {variant} seed {seed}", flush=True)
            result = run_experiment(config)
        runs.append({"monitor": monitor, **result})
    return runs


def summary_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (variant, monitor): mean test metrics over seeds, and per run the best
    and the last epoch of each trained model."""
    import numpy as np

    rows = []
    for variant in VARIANTS:
        for monitor in MONITORS:
            mine = [r for r in runs if r["variant"] == variant and r["monitor"] == monitor]
            if not mine:
                continue
            row: dict[str, Any] = {"label": mine[0]["label"], "variant": variant,
                                   "monitor": monitor, "seeds": [r["seed"] for r in mine]}
            for system in ("icd9", "icd10"):
                for key in SHOWN:
                    values = [r["systems"][system]["metrics"][key] for r in mine]
                    row[f"{system}_{key}"] = float(np.mean(values))
            row["epochs"] = [
                f"{t['training']['best_epoch']}/{t['training']['epochs_run']}"
                for r in mine for t in r["training"].values()]
            rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| Model | selects on | seeds | " + " | ".join(
        f"{s} {k}" for s in ("ICD-9", "ICD-10") for k in ("F1 micro", "F1 macro", "MAP"))
        + " | best/last epoch per model |")
    lines = [head, "|:---|:---|---:|" + "---:|" * 6 + ":---|"]
    for row in rows:
        cells = [f"{100 * row[f'{s}_{k}']:.1f}" for s in ("icd9", "icd10") for k in SHOWN]
        lines.append(f"| {row['label']} | {row['monitor']} | {len(row['seeds'])} | "
                     + " | ".join(cells) + f" | {', '.join(row['epochs'])} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    from jams_pyg.train.presets import train_settings

    start = time.perf_counter()
    runs = run_all(args)
    rows = summary_rows(runs)
    text = table(rows)
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    settings = {"model": args.model, "seeds": args.seeds, "synthetic_size": args.size,
                "procedure_links": args.procedure_links,
                "train": train_settings(args.model, synthetic=True), "monitors": MONITORS,
                "command": " ".join(["model_selection.py",
                                     *(argv if argv is not None else sys.argv[1:])])}
    (results / "table.md").write_text(
        f"# Model selection: validation MAP vs the official mean of seven metrics\n\n"
        f"LAAT on the synthetic corpus (size {args.size}), seeds {args.seeds}, synthetic "
        f"presets except the monitor; test split, x100, mean over seeds.\n\n{text}\n")
    payload = {"settings": settings, "rows": rows, "runs": runs,
               "seconds": time.perf_counter() - start}
    (results / "results.json").write_text(json.dumps(payload, indent=2, default=float))
    print(text)
    print(f"\nwrote {results}/table.md and results.json")
    return payload


if __name__ == "__main__":
    main()
