"""JAMS vs the plain backbone on the embedded synthetic corpus (Table 2, Figures 2 and 3).

For every backbone × variant × seed this calls :func:`jams_pyg.train.experiment.run_experiment`
(the same code path as ``examples/train_laat.py``) on ONE shared synthetic corpus (same
``data_seed`` and size for every run), with the backbone's
:func:`~jams_pyg.train.presets.train_settings` budget and the run's seed for model
initialisation, dropout and batch order. It then writes to ``--results-dir``:

* ``report.md``: the Table 2-style table and the Figure 2/3 table, mean ± std over seeds
  (:func:`jams_pyg.eval.report.write_report`), followed by the paired JAMS − backbone deltas;
* ``buckets.png``: macro-F1 by training-frequency bucket and GEM link (Figures 2 and 3);
* ``results.json``: the settings, every run's metrics and buckets, and the deltas (with the
  ``no_mat`` ablation also ``deltas_vs_no_mat``: what MAT adds on top of the shared encoder,
  and with ``mat_only`` ``deltas_vs_mat_only``: what sharing the encoder adds on top of MAT).

Deltas pair runs by seed: for each seed, (variant − backbone) on the same data; reported as
mean, sample std and 95 % t-interval over seeds, for macro-F1, micro-F1, MAP and the macro-F1
of every frequency bucket and of the rarest bucket's codes with / without a GEM link
(:mod:`jams_pyg.eval.deltas`; the epochs each run took: :mod:`jams_pyg.eval.tables`).

A finished run (its ``metrics.json`` exists in ``--output-dir``) is reused, so the ablations
can be added later next to the existing backbone/JAMS runs, and an interrupted one resumes
from its last checkpoint; ``--no-reuse`` refuses both.

Examples::

    python benchmarks/jams_vs_backbone.py                       # LAAT, backbone + jams, 3 seeds
    python benchmarks/jams_vs_backbone.py --variants backbone jams --ablations --seeds 0 \\
        --results-dir benchmarks/results/jams_ablations
    python benchmarks/jams_vs_backbone.py --models laat caml --size large \\
        --device cuda                                          # larger run on a GPU
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

#: ``no_proc_links`` first: the order of the committed ablation run (issue #19), which
#: reproduces with ``--models laat --ablations --seeds 0 1``
ABLATIONS = ("no_proc_links", "no_mat", "unweighted", "mat_only", "union", "tied",
             "tied_backbone")
#: Reference variant -> (variants compared with it, what the paired delta measures).
ABLATION_REFERENCES = {
    "no_mat": (("jams", "unweighted", "union", "no_proc_links"),
               "what MAT adds on top of the shared encoder"),
    "mat_only": (("jams",), "what sharing the encoder adds on top of MAT"),
    "jams": (("unweighted", "union", "no_proc_links"), "the change against the faithful JAMS"),
    "tied_backbone": (("tied",), "what JAMS adds to the tied layout (our extension)"),
}


# ------------------------------------------------------------------------------------------
# arguments
# ------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from jams_pyg.cli.synthetic import size_type
    from jams_pyg.models.config import BACKBONES
    from jams_pyg.train.variants import VARIANTS

    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--models", nargs="+", choices=BACKBONES, default=["laat"])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=["backbone", "jams"])
    parser.add_argument("--ablations", action="store_true",
                        help="add the ablations " + ", ".join(ABLATIONS) + " to --variants")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--seeds-for", nargs="+", default=[], metavar="MODEL:SEEDS",
                        help="other seeds for one model, e.g. laat:0,1,2,3,4")
    parser.add_argument("--size", dest="synthetic_size", type=size_type, default="default",
                        help="small, default, large or a scale factor")
    parser.add_argument("--data-seed", type=int, default=0,
                        help="seed of the synthetic corpus (shared by every run)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="default: the synthetic preset's (jams_pyg.train.presets)")
    parser.add_argument("--output-dir", default="benchmarks/runs",
                        help="runs and the shared corpus (gitignored)")
    parser.add_argument("--results-dir", default="benchmarks/results/jams_vs_backbone")
    parser.add_argument("--procedure-links", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="link procedure codes through the shipped forward procedure "
                             "GEM, and draw the corpus' procedure codes through it (default: "
                             "on, ExperimentConfig.procedure_links)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-reuse", dest="reuse", action="store_false",
                        help="fail instead of reusing a finished run found in --output-dir")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    variants = list(dict.fromkeys(args.variants + (list(ABLATIONS) if args.ablations else [])))
    args.variants = variants
    args.seeds = list(dict.fromkeys(args.seeds))
    args.models = list(dict.fromkeys(args.models))
    args.model_seeds = {m: args.seeds for m in args.models}
    for item in args.seeds_for:
        model, _, seeds = item.partition(":")
        try:
            args.model_seeds[model] = list(dict.fromkeys(int(v) for v in seeds.split(",")))
        except ValueError:
            parser.error(f"--seeds-for takes MODEL:SEED,SEED,..., got {item!r}")
        if model not in args.models:
            parser.error(f"--seeds-for names {model!r}, which is not in --models")
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    return args


def size_name(size: str | float) -> str:
    return size if isinstance(size, str) else f"x{size:g}"


def corpus_dir(args: argparse.Namespace) -> Path:
    return Path(args.output_dir) / "data" / f"{size_name(args.synthetic_size)}-seed{args.data_seed}"


def run_dir(args: argparse.Namespace, model: str, variant: str, seed: int) -> Path:
    # The corpus size is part of the path so that runs of different sizes never mix.
    base = Path(args.output_dir)
    if args.synthetic_size != "default" or args.data_seed != 0:
        base = base / f"{size_name(args.synthetic_size)}-seed{args.data_seed}"
    return base / model / variant / f"seed{seed}"


def train_settings(args: argparse.Namespace, model: str, seed: int) -> dict[str, Any]:
    from jams_pyg.train.presets import train_settings as preset

    settings = preset(model, synthetic=True)
    if args.epochs is not None:
        settings["epochs"] = args.epochs
    return {**settings, "seed": seed, "progress": False, "tensorboard": False}


def make_config(args: argparse.Namespace, model: str, variant: str, seed: int):
    from jams_pyg.train.config import TrainConfig
    from jams_pyg.train.experiment import ExperimentConfig

    return ExperimentConfig(
        model=model, variant=variant, seed=seed, synthetic_size=args.synthetic_size,
        data_seed=args.data_seed, synthetic_dir=str(corpus_dir(args)),
        output_dir=str(run_dir(args, model, variant, seed)), device=args.device,
        procedure_links=args.procedure_links,
        train=TrainConfig(**train_settings(args, model, seed)),
    )


# ------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------


def _same_config(path: Path, config) -> bool:
    if not path.is_file():
        return False
    saved = json.loads(path.read_text())
    current = json.loads(json.dumps(asdict(config), default=str))
    # Whether a run was resumed, and on which device it ran, do not change what was
    # trained (runs may be trained on a GPU machine and aggregated here).
    for key in ("resume", "device"):
        saved.pop(key, None)
        current.pop(key, None)
    return saved == current


def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    from jams_pyg.train.experiment import run_experiment

    runs = []
    plan = [(m, v, s) for m in args.models for v in args.variants for s in args.model_seeds[m]]
    for position, (model, variant, seed) in enumerate(plan, 1):
        config = make_config(args, model, variant, seed)
        out = Path(config.output_dir)
        metrics_path = out / "metrics.json"
        if metrics_path.is_file():
            if not args.reuse:
                raise FileExistsError(f"{out} holds a finished run and --no-reuse was given")
            if not _same_config(out / "config.json", config):
                raise ValueError(
                    f"{out} holds a finished run with other settings (config.json differs); "
                    "choose another --output-dir"
                )
            print(f"[{position}/{len(plan)}] reusing {metrics_path}", flush=True)
            runs.append(json.loads(metrics_path.read_text()))
            continue
        # An interrupted run (a checkpoint but no metrics) continues from its last
        # checkpoint; the Trainer's resume ends where an uninterrupted run would.
        config.resume = any(out.glob("**/last.pt"))
        if config.resume and not args.reuse:
            raise FileExistsError(f"{out} holds an interrupted run and --no-reuse was given")
        action = "resuming" if config.resume else "training"
        print(f"[{position}/{len(plan)}] {action} {model} {variant} seed {seed} -> {out}",
              flush=True)
        start = time.perf_counter()
        runs.append(run_experiment(config))
        print(f"[{position}/{len(plan)}] done in {time.perf_counter() - start:.0f} s", flush=True)
    return runs


def environment() -> dict[str, Any]:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse_args(argv)
    from jams_pyg.eval.deltas import delta_table, delta_text, summarize_deltas
    from jams_pyg.eval.report import write_report
    from jams_pyg.eval.tables import convergence_rows, convergence_table
    from jams_pyg.train.presets import SYNTHETIC_MODEL
    from jams_pyg.train.variants import DISPLAY

    start = time.perf_counter()
    runs = run_all(args)
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    report = write_report(runs, results_dir)
    deltas = summarize_deltas(runs)
    text = delta_text(deltas)
    settings = {
        "models": args.models, "variants": args.variants, "seeds": args.model_seeds,
        "synthetic_size": args.synthetic_size, "data_seed": args.data_seed,
        "procedure_links": args.procedure_links,
        "train": {m: train_settings(args, m, seed=-1) | {"seed": "per run"}
                  for m in args.models},
        "synthetic_model": {m: SYNTHETIC_MODEL[m] for m in args.models},
        "bucket_scale": sorted({r["bucket_scale"] for r in runs}),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None
                                                      else sys.argv[1:])]),
        "environment": environment(),
    }
    links = "" if args.procedure_links else ", procedure codes not linked"
    header = (
        f"# JAMS vs backbone on the synthetic corpus\n\n"
        f"Models {', '.join(args.models)}; variants {', '.join(args.variants)}; seeds "
        f"{json.dumps(args.model_seeds)}; corpus size {args.synthetic_size} "
        f"(data seed {args.data_seed}{links}); training {json.dumps(settings['train'])}.\n"
        f"Command: `python benchmarks/{settings['command']}`\n\n"
    )
    epochs = convergence_rows(runs)
    (results_dir / "report.md").write_text(
        header + report
        + "\nPaired deltas (variant − backbone, same seed and data; x100; mean ± half-width "
        "of the 95 % t-interval over seeds)\n\n" + delta_table(deltas, DISPLAY) + "\n"
        + "\nEpochs each run took (early stopping on validation MAP)\n\n"
        + convergence_table(epochs) + "\n"
    )
    payload = {"settings": settings, "runs": runs, "deltas": deltas, "convergence": epochs,
               "seconds": time.perf_counter() - start}
    for reference, (compared, meaning) in ABLATION_REFERENCES.items():
        if reference not in args.variants:
            continue
        # One part's own share: the joint model with vs without that part.
        kept = [r for r in runs if r["variant"] in (reference, *compared)]
        payload[f"deltas_vs_{reference}"] = summarize_deltas(kept, reference=reference)
        table = delta_table(payload[f"deltas_vs_{reference}"], DISPLAY, reference)
        with (results_dir / "report.md").open("a") as f:
            f.write(f"\nPaired deltas against {reference} (variant − {reference}: {meaning}; "
                    "x100; mean ± half-width of the 95 % t-interval over seeds)\n\n"
                    + table + "\n")
    (results_dir / "results.json").write_text(json.dumps(payload, indent=2, default=float))
    print("\nDeltas (x100, mean ± half-width of the 95 % t-interval over seeds):\n"
          + text)
    print(f"\nwrote {results_dir}/report.md, buckets.png, results.json")
    return payload


if __name__ == "__main__":
    main()
