"""``jams-pyg train`` (and ``examples/train_laat.py``): train JAMS and the plain backbone,
evaluate both as Edin et al. and write the side-by-side report.

Without ``--data`` it runs on the embedded synthetic corpus (built from the real CMS GEMs
and code titles) with the CPU-sized settings of :mod:`jams_pyg.train.presets`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from jams_pyg.cli.common import add_command, fail
from jams_pyg.cli.synthetic import size_type
from jams_pyg.data.defaults import SIZES
from jams_pyg.eval.names import MONITORS
from jams_pyg.eval.protocol import THRESHOLD_PROTOCOLS
from jams_pyg.graph.directions import DIRECTIONS
from jams_pyg.icd.codes import SYSTEM_LABELS, SYSTEMS
from jams_pyg.models.config import BACKBONES, OUTPUT_LAYERS
from jams_pyg.train.config import AMP_DTYPES, TrainConfig, train_setting_type
from jams_pyg.train.presets import train_settings
from jams_pyg.train.progress import format_duration
from jams_pyg.train.variants import SEPARATE_VARIANTS, VARIANTS, variant_for

log = logging.getLogger("jams_pyg.train")

DESCRIPTION = """\
Train JAMS and the plain backbone and report Edin et al.'s metrics for ICD-9 and ICD-10
side by side (test split, threshold tuned on validation), with macro-F1 by training
frequency and GEM link.

Without --data: the embedded synthetic corpus (written to OUTPUT_DIR/data), a few
minutes on a CPU. With --data: Edin et al.'s preprocessed MIMIC-IV files (see
`jams-pyg prepare`); a folder with one system's files (`jams-pyg prepare codiesp` writes
ICD-10 only) trains the plain backbone on that system. Torchrun starts the same command
on several GPUs.

Writes OUTPUT_DIR/report.md, metrics.json and buckets.png, and one folder per variant
(backbone/icd9/, backbone/icd10/, jams/) with metrics.json, config.json, checkpoints and
the prediction bundle model/ (`jams-pyg predict --model OUTPUT_DIR/jams/model`).
"""


def _train_help(name: str, what: str) -> str:
    synthetic = train_settings("laat", synthetic=True).get(name)
    real = TrainConfig.__dataclass_fields__[name].default  # no instance: no validation
    return (f"{what} (default: {synthetic} on the synthetic corpus, {real} with --data; "
            "per backbone in jams_pyg.train.presets)")


def add_parser(commands: argparse._SubParsersAction) -> None:
    train = add_command(
        commands, "train", "train JAMS and the plain backbone side by side and write the report",
        DESCRIPTION)
    add_arguments(train)
    train.set_defaults(handler=run, parser=train)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``jams-pyg train`` (also ``examples/train_laat.py``'s)."""
    parser.add_argument("--model", choices=BACKBONES, default="laat", help="the backbone")
    runs = parser.add_mutually_exclusive_group()
    runs.add_argument("--no-jams", dest="variants", action="store_const", const=["backbone"],
                      help="train only the plain backbone (one model per system)")
    runs.add_argument("--jams-only", dest="variants", action="store_const", const=["jams"],
                      help="train only JAMS")
    runs.add_argument("--variants", nargs="+", choices=VARIANTS, metavar="VARIANT",
                      help="runs to compare (default: backbone jams); ablations: no_mat, "
                      "unweighted, mat_only, union, no_proc_links (with procedure links); "
                      "our tied output layer: tied, tied_backbone")
    parser.add_argument("--gem-direction", choices=DIRECTIONS,
                        help="the GEM reading MAT runs on: directional (the official code's, "
                        "what jams reads) or union; union trains the variant union in place "
                        "of jams (runs without MAT are unchanged)")
    parser.add_argument("--output-layer", choices=OUTPUT_LAYERS,
                        help="separate (a per-code output matrix per system, the official "
                        "code's) or code_table (our tied output layer): code_table trains "
                        "tied in place of jams and tied_backbone in place of backbone")
    parser.add_argument("--data", dest="data_dir", metavar="DIR",
                        help="folder with Edin et al.'s MIMIC-IV ICD-9/ICD-10 files "
                        "(default: generate the synthetic corpus)")
    parser.add_argument("--size", type=size_type, default="default",
                        help=f"synthetic corpus size: {', '.join(SIZES)} or a scale factor")
    parser.add_argument("--output-dir", metavar="DIR",
                        help="where results go (default: outputs/<model>); one sub-folder "
                        "per variant")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of model initialisation and batch order")
    # TrainConfig's rules, applied when parsed (e.g. --patience 0 is refused).
    parser.add_argument("--epochs", type=train_setting_type("epochs"), metavar="N",
                        help=_train_help("epochs", "maximum epochs"))
    parser.add_argument("--batch-size", type=train_setting_type("batch_size"), metavar="N",
                        help=_train_help("batch_size", "documents per step"))
    parser.add_argument("--lr", type=train_setting_type("lr"),
                        help=_train_help("lr", "peak learning rate (AdamW, linear decay)"))
    parser.add_argument("--grad-accumulation", type=train_setting_type("grad_accumulation"),
                        metavar="N", help="batches per optimiser step (default: "
                        f"{TrainConfig.__dataclass_fields__['grad_accumulation'].default})")
    parser.add_argument("--patience", type=train_setting_type("patience"), metavar="N",
                        help=_train_help("patience", "early stopping: epochs without a "
                                         "better validation score (the plain backbone: 6 "
                                         "with --data)"))
    parser.add_argument("--monitor", choices=MONITORS,
                        help=_train_help("monitor", "what early stopping and the best "
                                         "checkpoint select on (official_mean: the official "
                                         "JAMS mean of seven metrics; the plain backbone "
                                         "selects on map with --data)"))
    parser.add_argument("--amp-dtype", choices=AMP_DTYPES,
                        help=_train_help("amp_dtype", "mixed precision on CUDA (float16 "
                                         "with a gradient scaler, as the official code)"))
    parser.add_argument("--protocol", choices=THRESHOLD_PROTOCOLS, default="edin",
                        help="how the decision threshold is tuned on validation: edin (Edin "
                        "et al.'s grid, default) or exact (the exact micro-F1 maximiser); "
                        "recorded in metrics.json and the bundle")
    parser.add_argument("--max-length", type=int, default=4000, metavar="N",
                        help="tokens kept per document (Edin et al.)")
    parser.add_argument("--word2vec", action=argparse.BooleanOptionalAction, default=None,
                        help="initialise word embeddings with word2vec on the training texts "
                        "(default: on with --data, as the official recipe; off on the "
                        "synthetic corpus)")
    parser.add_argument("--plm-path", metavar="DIR",
                        help="local pretrained model folder for plm_icd (default: a small "
                        "RoBERTa trained from scratch)")
    parser.add_argument("--procedure-links", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="link procedure codes through the shipped forward procedure "
                        "GEM gem_i9pcs.txt, as the official graph (default: on; the "
                        "synthetic corpus then draws its procedure codes through it); "
                        "recorded in metrics.json")
    parser.add_argument("--procedure-gem", metavar="FILE",
                        help="backward procedure GEM (gem_pcsi9.txt) for the ICD-10-PCS "
                        "codes' links (default: the forward procedure links reversed)")
    parser.add_argument("--icd9-gem", action="append", default=[], metavar="FILE",
                        help="extra forward GEM file (repeatable)")
    parser.add_argument("--icd10-gem", action="append", default=[], metavar="FILE",
                        help="extra backward GEM file (repeatable)")
    parser.add_argument("--device", default="auto",
                        help="auto (cuda if available), cpu, cuda or cuda:N")
    parser.add_argument("--resume", action="store_true",
                        help="continue the runs in --output-dir from their last checkpoints")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the runs already in --output-dir and start afresh "
                        "(says what it removed; a variant folder holding anything a run "
                        "does not write is refused, nothing removed)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (they show only on a terminal anyway)")


def data_systems(data_dir: str | Path) -> tuple[str, ...]:
    """The coding systems whose Edin-format files ``data_dir`` holds (in it or in its
    ``mimiciv_<system>/`` subfolder), in :data:`SYSTEMS` order."""
    from jams_pyg.data.edin import resolve_dataset_dir

    found = []
    for system in SYSTEMS:
        try:
            resolve_dataset_dir(data_dir, system)
        except FileNotFoundError:
            continue
        found.append(system)
    return tuple(found)


def experiment_config(args: argparse.Namespace, variant: str, output_dir: Path,
                      systems: tuple[str, ...] = SYSTEMS):
    """The :class:`~jams_pyg.train.experiment.ExperimentConfig` of one variant."""
    from jams_pyg.train.experiment import ExperimentConfig

    synthetic = args.data_dir is None
    settings: dict[str, Any] = train_settings(args.model, synthetic, variant)
    for name in ("epochs", "batch_size", "lr", "grad_accumulation", "patience", "monitor",
                 "amp_dtype"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    return ExperimentConfig(
        model=args.model, variant=variant, data_dir=args.data_dir, systems=systems,
        synthetic_size=args.size, output_dir=str(output_dir), seed=args.seed,
        max_length=args.max_length, word2vec=args.word2vec, plm_path=args.plm_path,
        icd9_gems=tuple(args.icd9_gem), icd10_gems=tuple(args.icd10_gem),
        procedure_links=args.procedure_links, procedure_gem=args.procedure_gem,
        device=args.device, resume=args.resume, protocol=args.protocol,
        train=TrainConfig(**settings, seed=args.seed, progress=not args.no_progress),
        synthetic_dir=str(output_dir.parent / "data") if synthetic else None,
    )


def save_run_bundle(trained: Any) -> Path:
    """Write a trained run's prediction bundle (``jams_pyg.inference.save_bundle``) where the
    run puts it; the ``save_model`` of :func:`~jams_pyg.train.experiment.run_experiment`,
    which gives ``trained`` (a :class:`~jams_pyg.train.experiment.TrainedModel`), with the
    out-of-distribution signal calibrated on the run's validation notes
    (:func:`jams_pyg.inference.ood.calibrate`)."""
    from jams_pyg.inference.bundle import save_bundle
    from jams_pyg.inference.ood import calibrate

    ood = None
    if trained.validation_texts and trained.validation_probs:
        ood = calibrate(trained.tokenizer, trained.validation_texts, trained.validation_probs,
                        trained.thresholds, trained.max_length)
    return save_bundle(trained.directory, trained.model, trained.model_config,
                       trained.tokenizer, trained.codes, trained.thresholds, trained.graph,
                       trained.max_length, extra=trained.extra, ood=ood)


def _holds_a_run(folder: Path) -> bool:
    """Whether ``folder`` holds checkpoints of an earlier run (``last.pt`` or ``best.pt``,
    in it or in a system's sub-folder)."""
    return any(folder.glob("**/last.pt")) or any(folder.glob("**/best.pt"))


#: What a run writes into its folder (:func:`~jams_pyg.train.experiment.run_experiment`, the
#: trainer, the bundle writer): the entries ``--overwrite`` may remove. The folders of
#: ``_RUN_SYSTEM_FOLDERS`` are runs themselves (the plain backbone's, one per system); the
#: others belong to one writer (the bundle, the PLM tokenizer, TensorBoard).
_RUN_FILES = frozenset({".run.lock", "config.json", "metrics.json", "report.md", "buckets.png",
                        "best.pt", "last.pt", "vocab.json"})
_RUN_FOLDERS = frozenset({"model", "tokenizer", "tensorboard"})
_RUN_SYSTEM_FOLDERS = frozenset({"icd9", "icd10"})
#: The temporary files of :mod:`jams_pyg.atomic`'s writers (``.<name>.<8 characters>.tmp``).
_TEMP = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def _foreign_entries(folder: Path) -> list[Path]:
    """What in ``folder`` no jams_pyg run writes (``--overwrite`` removes nothing then)."""
    foreign = []
    for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
        real_dir = entry.is_dir() and not entry.is_symlink()
        if entry.name in _RUN_SYSTEM_FOLDERS and real_dir:
            foreign += _foreign_entries(entry)
        elif not ((entry.name in _RUN_FOLDERS and real_dir) or _TEMP.fullmatch(entry.name)
                  or (entry.name in _RUN_FILES and not real_dir)):
            foreign.append(entry)
    return foreign


def _overwrite_runs(base: Path, variants: list[str], parser: argparse.ArgumentParser) -> None:
    """``--overwrite``: empty each variant's folder, after checking that each holds only
    what a run writes (a folder with anything else is a one-line error and nothing is
    removed), and say in one line what was removed."""
    from jams_pyg.train.rundir import LOCK_NAME, prepare_run_dir

    for variant in variants:
        foreign = _foreign_entries(base / variant)
        if foreign:
            names = ", ".join(str(p) for p in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            parser.error(f"--overwrite: {base / variant} is not only a jams_pyg run folder "
                         f"(it holds {names}, which no run writes): nothing removed; remove "
                         "it yourself or choose another --output-dir")
    removed = []
    for variant in variants:
        folder = base / variant
        files = sum(1 for p in folder.rglob("*") if p.name != LOCK_NAME and not p.is_dir())
        if files:
            removed.append(f"{variant}/ ({files} file{'s' * (files > 1)})")
        prepare_run_dir(folder, overwrite=True)
    if removed:
        log.info("--overwrite: removed the earlier run in %s: %s", base, ", ".join(removed))


def _with_choices(variants: list[str], args: argparse.Namespace,
                  parser: argparse.ArgumentParser) -> list[str]:
    """``variants`` with ``--gem-direction`` and ``--output-layer`` applied: each becomes the
    variant with those choices (:func:`~jams_pyg.train.variants.variant_for`: the variant
    stays the one home of the choice); a contradiction or two runs made one is an error."""
    flags = " ".join(f"--{name.replace('_', '-')} {getattr(args, name)}"
                     for name in ("gem_direction", "output_layer")
                     if getattr(args, name) is not None)
    if not flags:
        return variants
    try:
        chosen = [variant_for(v, args.gem_direction, args.output_layer) for v in variants]
    except ValueError as err:
        parser.error(f"{flags}: {err}")
    for variant in set(chosen):
        merged = [v for v, c in zip(variants, chosen, strict=True) if c == variant]
        if len(merged) > 1:
            parser.error(f"{flags} makes {' and '.join(merged)} the same run ({variant}): "
                         "name it once")
    moved = [f"{c} in place of {v}" for v, c in zip(variants, chosen, strict=True) if v != c]
    if moved:
        log.info("%s: training %s", flags, ", ".join(moved))
    return chosen


def train_variants(args: argparse.Namespace, parser: argparse.ArgumentParser
                   ) -> list[dict[str, Any]]:
    """Check every setting and output folder first, then train each variant in turn and
    write the side-by-side report; returns each run's metrics."""
    from jams_pyg.eval.report import write_report
    from jams_pyg.train.experiment import run_experiment
    from jams_pyg.train.rundir import hold_run_dirs, prepare_run_dir

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    variants = args.variants or ["backbone", "jams"]
    base = Path(args.output_dir or f"outputs/{args.model}")
    if args.overwrite and args.resume:
        parser.error("--overwrite and --resume exclude each other")
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        parser.error(f"--data {args.data_dir}: no such folder (Edin et al.'s files, e.g. "
                     "written by `jams-pyg prepare mimiciv`)")
    # A folder holding neither system keeps both: loading it then fails with the one-line
    # error that names the missing file, after the settings' own contradictions.
    systems = (SYSTEMS if args.data_dir is None else data_systems(args.data_dir)) or SYSTEMS
    if len(systems) == 1:  # e.g. `jams-pyg prepare codiesp`: ICD-10 only
        label = SYSTEM_LABELS[systems[0]]
        joint = [v for v in variants if v not in SEPARATE_VARIANTS]
        if args.variants is None:
            variants = ["backbone"]
            log.info("--data %s holds %s data only: training the plain backbone (JAMS "
                     "needs ICD-9 and ICD-10 data)", args.data_dir, label)
        elif joint:
            verb = "trains" if len(joint) == 1 else "train"
            parser.error(f"--data {args.data_dir} holds {label} data only, and "
                         f"{', '.join(joint)} {verb} ICD-9 and ICD-10 jointly: train the "
                         "plain backbone (--no-jams)")
    variants = _with_choices(variants, args, parser)
    try:  # settings that fail only together (batch size and accumulation) fail now
        configs = [experiment_config(args, v, base / v, systems) for v in variants]
    except ValueError as err:
        parser.error(str(err))
    main_rank = int(os.environ.get("RANK", "0")) == 0
    # The command owns its output folder and each variant's from here to its end: another
    # command into the same folder fails at once naming this one, whichever variants
    # either trains (a lock per variant let `--jams-only` in beside a running
    # backbone + jams command, which then died at its own jams run).
    with hold_run_dirs([base, *(base / v for v in variants)], enabled=main_rank):
        for variant in variants:  # an earlier run is a one-line error before any work
            if not (args.resume or args.overwrite) and _holds_a_run(base / variant):
                parser.error(f"{base / variant} holds a previous run: resume it (--resume), "
                             "replace it (--overwrite) or choose another --output-dir")
        if args.overwrite and main_rank:
            _overwrite_runs(base, variants, parser)
        if main_rank:
            for variant in variants:
                prepare_run_dir(base / variant)
        runs: list[dict[str, Any]] = []
        bundles: list[Path] = []

        def save_model(trained: Any) -> Path:
            bundles.append(save_run_bundle(trained))
            return bundles[-1]

        start = time.perf_counter()
        for number, config in enumerate(configs, 1):
            systems = " + ".join(SYSTEM_LABELS[s] for s in config.systems)
            left = ""
            if runs:  # the runs so far are the best guide to the ones still to come
                per_run = (time.perf_counter() - start) / len(runs)
                left = (f" (about {format_duration(per_run * (len(configs) - len(runs)))} "
                        f"left if each run still to come takes the {format_duration(per_run)}"
                        " the runs so far took on average)")
            log.info("[%d/%d] %s, %s, seed %d%s", number, len(configs), config.label, systems,
                     config.seed, left)
            # the corpus is written once, by the first run; with several runs their tables
            # are printed once, side by side, at the end
            runs.append(run_experiment(config, save_model=save_model,
                                       generate_data=number == 1,
                                       echo_report=len(configs) == 1))
        if len(runs) > 1 and main_rank:
            write_report(runs, base)
            from jams_pyg.atomic import atomic_write_text

            atomic_write_text(base / "metrics.json", json.dumps(runs, indent=2, default=float))
        if main_rank:
            took = format_duration(time.perf_counter() - start)
            wrote = (f"{base} in {took}: report.md, metrics.json, buckets.png; per run: "
                     + ", ".join(f"{c.variant}/" for c in configs) if len(runs) > 1 else
                     f"{base / variants[0]} in {took}: report.md, metrics.json, buckets.png")
            log.info("wrote %s; model bundle%s for `jams-pyg predict --model`: %s", wrote,
                     "s" * (len(bundles) > 1), ", ".join(map(str, bundles)))
        return runs


def run(args: argparse.Namespace) -> int:
    from jams_pyg.train.errors import TrainingError

    logging.getLogger().setLevel(logging.INFO)
    try:
        train_variants(args, args.parser)
    except (TrainingError, OSError, ValueError) as err:  # held folder, divergence, bad data
        # file (the message names the file and row)
        return fail("train", err)
    return 0
