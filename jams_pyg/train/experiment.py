"""End-to-end experiment: data → tokenizer → GEM graph → model → training →
threshold tuning → test metrics → frequency/linkage analysis → outputs.

``examples/train_laat.py`` and the benchmarks call :func:`run_experiment`;
``python examples/train_laat.py --help`` lists the options.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from jams_pyg.atomic import atomic_write_text
from jams_pyg.data import (
    BucketBatchSampler,
    CodingDataset,
    JointCodingDataset,
    WordTokenizer,
    load_edin_dataset,
    train_hf_tokenizer,
    train_word2vec,
)
from jams_pyg.data.edin import check_every_split
from jams_pyg.data.synthetic import generate_synthetic_corpus
from jams_pyg.eval import bucket_macro_f1, evaluate, per_code_f1
from jams_pyg.eval.prediction import Predictions
from jams_pyg.eval.protocol import check_protocol, protocol_record
from jams_pyg.eval.report import write_report
from jams_pyg.graph.gem_graph import GEMGraph
from jams_pyg.icd.codes import SYSTEM_LABELS, SYSTEMS
from jams_pyg.models import BACKBONES, ModelConfig, build_model, jams_loss
from jams_pyg.train.checkpoint import dataset_fingerprint
from jams_pyg.train.config import TrainConfig
from jams_pyg.train.distributed import (
    DistInfo,
    barrier,
    cleanup,
    init_distributed,
    unwrap_model,
)
from jams_pyg.train.presets import SMALL_PLM, SYNTHETIC_MODEL
from jams_pyg.train.rundir import run_dir_lock
from jams_pyg.train.trainer import Trainer
from jams_pyg.train.variants import (
    DIAGNOSIS_LINK_VARIANTS,
    SEPARATE_VARIANTS,
    VARIANTS,
    variant_label,
    variant_model_fields,
)

log = logging.getLogger(__name__)

@dataclass
class ExperimentConfig:
    """What to train and where the results go.

    Args:
        model: Backbone: ``laat``, ``caml``, ``multirescnn`` or ``plm_icd``.
        variant: ``jams`` (default), ``backbone`` (no JAMS: one plain model
            per system) or an ablation, ``no_mat`` / ``unweighted`` / ``mat_only`` /
            ``union`` / ``no_proc_links`` (see ``VARIANTS``).
        data_dir: Folder with Edin et al.'s preprocessed MIMIC-IV files
            (``mimiciv_icd9.feather`` ... or sub-folders ``mimiciv_icd9/``,
            ``mimiciv_icd10/``); ``None`` generates the synthetic corpus.
        synthetic_size: Size of the synthetic corpus (``small``, ``default``,
            ``large`` or a scale factor).
        data_seed: Seed of the synthetic corpus (the same for every training
            seed, so runs compare on the same data).
        synthetic_dir: Where the synthetic corpus is written (default
            ``<output_dir>/data``).
        systems: Coding systems to train on.
        output_dir: Where metrics, plots, checkpoints and the config go.
        seed: Seed of model initialisation and training.
        max_length: Maximum tokens per document.
        min_df: Minimum document frequency of a word (word backbones).
        word2vec: Initialise word embeddings with word2vec trained on the
            training texts (``ModelConfig.embedding_dim`` wide: 100, the official
            and Edin et al.'s ``configs/text_encoder/word2vec.yaml``,
            ``vector_size: 100``); ``None`` (default): on for real data (``data_dir``),
            off for the synthetic corpus (random embeddings, as it always ran).
        plm_path: Local folder of a pretrained RoBERTa-style model and its
            tokenizer for PLM-ICD (e.g. RoBERTa-PM); ``None`` trains a small
            tokenizer and a small randomly initialised model locally.
        icd9_gems, icd10_gems: Extra GEM files added to the shipped CMS 2018
            diagnosis GEMs (and, with ``procedure_links``, the shipped forward
            procedure GEM).
        procedure_links: Link procedure codes (ICD-9-CM procedures, ICD-10-PCS)
            through the shipped forward procedure GEM ``gem_i9pcs.txt``
            (:meth:`GEMGraph.from_cms_2018(procedures=True)
            <jams_pyg.graph.gem_graph.GEMGraph.from_cms_2018>`): Edin et al.'s MIMIC-IV
            targets hold procedure codes, and the official code's link counts point to
            its graph linking them.  On (default) for real and synthetic data alike; the
            synthetic corpus then draws its procedure codes through the same GEM
            (:func:`~jams_pyg.data.synthetic.generate_synthetic_corpus`).  Off
            (``--no-procedure-links``), an extra GEM file that links procedure codes
            is an error, and the synthetic corpus draws PCS codes by title words.
            The variant ``no_proc_links`` turns them off for its MAT only; the
            linked/unlinked buckets keep this graph, as for every variant.
        procedure_gem: A backward procedure GEM (``gem_pcsi9.txt``, not shipped) whose
            links update the ICD-10-PCS codes; without it they are updated along the
            forward procedure links reversed
            (:mod:`jams_pyg.graph.procedures`).  Needs ``procedure_links``.
        bucket_scale: Frequency buckets are (1-100, 101-1000, 1001+) × this
            scale; ``None``: 1 for real data, the corpus' own scale for
            synthetic data.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        resume: Continue a stopped run from its last checkpoint (else a folder
            holding one is an error).
        protocol: How the decision threshold is tuned on validation: ``edin`` (Edin et
            al.'s grid, default) or ``exact`` (see :mod:`jams_pyg.eval.protocol`);
            recorded in ``metrics.json`` and the bundle.
        train: Optimisation settings.
        model_overrides: Extra :class:`~jams_pyg.models.ModelConfig` fields.
    """

    model: str = "laat"
    variant: str = "jams"
    data_dir: str | None = None
    synthetic_size: str | float = "default"
    data_seed: int = 0
    synthetic_dir: str | None = None
    systems: tuple[str, ...] = SYSTEMS
    output_dir: str = "outputs/laat"
    seed: int = 0
    max_length: int = 4000
    min_df: int = 3
    word2vec: bool | None = None
    plm_path: str | None = None
    icd9_gems: tuple[str, ...] = ()
    icd10_gems: tuple[str, ...] = ()
    procedure_links: bool = True
    procedure_gem: str | None = None
    bucket_scale: float | None = None
    device: str = "auto"
    resume: bool = False
    protocol: str = "edin"
    train: TrainConfig = field(default_factory=TrainConfig)
    model_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model not in BACKBONES:
            raise ValueError(f"unknown model {self.model!r}: expected one of {BACKBONES}")
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}: expected one of {VARIANTS}")
        self.systems = tuple(self.systems)
        for system in self.systems:
            if system not in SYSTEMS:
                raise ValueError(f"unknown system {system!r}: expected icd9 and/or icd10")
        if self.variant not in SEPARATE_VARIANTS and len(self.systems) != 2:
            raise ValueError(f"variant {self.variant!r} trains both systems jointly")
        check_protocol(self.protocol)
        if self.word2vec is None:  # the official recipe on real data
            self.word2vec = self.data_dir is not None
        if self.procedure_gem is not None and not Path(self.procedure_gem).is_file():
            raise ValueError(f"procedure_gem {self.procedure_gem}: no such file (a backward "
                             "procedure GEM, gem_pcsi9.txt)")
        if self.procedure_gem is not None and not self.procedure_links:
            raise ValueError(f"procedure_gem {self.procedure_gem} needs procedure_links "
                             "(off: --no-procedure-links)")
        if self.variant in DIAGNOSIS_LINK_VARIANTS and not self.procedure_links:
            raise ValueError(f"variant {self.variant!r} drops the procedure links of JAMS, "
                             "but this run has none (procedure_links off: "
                             "--no-procedure-links)")

    @property
    def label(self) -> str:
        return variant_label(self.model, self.variant)


@dataclass
class TrainedModel:
    """A trained and evaluated model of a run, as :func:`run_experiment` hands it to its
    ``save_model`` callback (on the main process only): what a prediction bundle holds.

    Args:
        directory: Where the run puts its bundle (``<run folder>/model``).
        model: The trained model with the best validation weights (unwrapped).
        model_config: Its configuration.
        tokenizer: The tokenizer it was trained with.
        codes: The label vocabulary of every system of the model, in label order.
        thresholds: The decision threshold per system, tuned on validation.
        graph: The GEM graph of its MAT (``None`` without MAT).
        max_length: Maximum tokens per document.
        extra: The run's label, seed and evaluation protocol.
        validation_texts: The validation notes of every system (preprocessed text), on
            which the bundle's out-of-distribution signal is calibrated
            (:func:`jams_pyg.inference.ood.calibrate`).
        validation_probs: Per system, the model's probabilities on its validation notes.
    """

    directory: Path
    model: nn.Module
    model_config: ModelConfig
    tokenizer: Any
    codes: dict[str, list[str]]
    thresholds: dict[str, float]
    graph: GEMGraph | None
    max_length: int
    extra: dict[str, Any]
    validation_texts: list[str] = field(default_factory=list)
    validation_probs: dict[str, np.ndarray] = field(default_factory=dict)


#: What :func:`run_experiment` calls with each model it trained, e.g. the bundle writer of
#: ``jams-pyg train`` (:func:`jams_pyg.cli.train.save_run_bundle`): training does not import
#: inference, the layer above it.
ModelSaver = Callable[[TrainedModel], Any]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str, info: DistInfo | None = None) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and info is not None and info.enabled:
        device = torch.device("cuda", info.local_rank)
    return device


def load_data(config: ExperimentConfig, generate: bool = True
              ) -> tuple[dict[str, CodingDataset], float]:
    """The datasets of the configured systems and the frequency-bucket scale.

    Without ``data_dir`` the synthetic corpus is written first when
    ``generate`` (under DDP only rank 0 writes it; the others read it).
    """
    if config.data_dir is None:
        directory = Path(config.synthetic_dir or Path(config.output_dir) / "data")
        if generate:
            log.info("generating the synthetic corpus (size %s, seed %d) in %s",
                     config.synthetic_size, config.data_seed, directory)
            generate_synthetic_corpus(directory, seed=config.data_seed,
                                      size=config.synthetic_size,
                                      procedure_links=bool(config.procedure_links))
        # The corpus records the bucket edges that match its size (e.g. 10/100
        # for 1-100/101-1000 at the default size).
        meta = json.loads((directory / "synthetic_concepts.json").read_text())
        scale = config.bucket_scale or meta["bucket_edges"][0] / 100
    else:
        directory = Path(config.data_dir)
        scale = config.bucket_scale or 1.0
    datasets = {s: load_edin_dataset(directory, s) for s in config.systems}
    for dataset in datasets.values():  # each split of each system, before any work
        check_every_split(dataset)
    return datasets, scale


def build_graph(config: ExperimentConfig, datasets: dict[str, CodingDataset],
                direction: str = "directional", procedures: bool | None = None) -> GEMGraph:
    """The GEM graph over the datasets' label vocabularies: the shipped CMS 2018 diagnosis
    GEMs, with ``procedures`` (default: ``config.procedure_links``) the shipped forward
    procedure GEM and ``config.procedure_gem``, and ``config``'s extra files.

    Raises:
        ValueError: without ``procedures``, when an extra file links procedure codes.
    """
    from jams_pyg.icd.gem import cms_2018_gem_paths, cms_procedure_gem_path

    if procedures is None:
        procedures = bool(config.procedure_links)
    codes = {f"{s}_codes": datasets[s].codes if s in datasets else None for s in SYSTEMS}
    if not (config.icd9_gems or config.icd10_gems or (procedures and config.procedure_gem)):
        # the shipped GEMs, parsed once a process
        return GEMGraph.from_cms_2018(**codes, direction=direction, procedures=procedures)
    forward, backward = cms_2018_gem_paths()
    proc_forward = [cms_procedure_gem_path()] if procedures else []
    proc_backward = [config.procedure_gem] if procedures and config.procedure_gem else []
    graph = GEMGraph.from_gem_files([forward, *proc_forward, *config.icd9_gems],
                                    [backward, *proc_backward, *config.icd10_gems],
                                    **codes, direction=direction)
    counts = graph.link_counts()
    if not procedures and (counts["icd9"]["proc"] or counts["icd10"]["proc"]):
        files = ", ".join(map(str, (*config.icd9_gems, *config.icd10_gems)))
        raise ValueError(
            f"procedure links are off (--no-procedure-links or the variant no_proc_links) "
            f"but the extra GEM files ({files}) link "
            f"{counts['icd9']['proc']} + {counts['icd10']['proc']} procedure links: turn "
            "them on (--procedure-links) or leave the procedure files out")
    return graph


def graph_record(graph: GEMGraph | None, procedure_links: bool) -> dict[str, Any] | None:
    """What ``metrics.json`` and the bundle record of a run's GEM graph:
    ``{"procedure_links", "icd10_proc_source", "link_counts"}`` (the links of each set,
    diagnoses and procedures apart, :meth:`GEMGraph.link_counts`); ``None`` without a
    graph."""
    if graph is None:
        return None
    return {"procedure_links": procedure_links, "icd10_proc_source": graph.icd10_proc_source,
            "link_counts": graph.link_counts()}


def _tokenizer(config: ExperimentConfig, datasets: dict[str, CodingDataset], out: Path):
    texts = [t for ds in datasets.values() for t in ds.train["text"].tolist()]
    if config.model == "plm_icd":
        if config.plm_path is not None:
            from jams_pyg.data import load_hf_tokenizer

            return load_hf_tokenizer(config.plm_path)
        return train_hf_tokenizer(texts, save_dir=out / "tokenizer", vocab_size=4000)
    tokenizer = WordTokenizer.fit(texts, min_df=config.min_df, max_length=config.max_length)
    tokenizer.save(out / "vocab.json")
    return tokenizer


def _model_config(config: ExperimentConfig, tokenizer, systems: Sequence[str],
                  synthetic: bool) -> ModelConfig:
    overrides: dict[str, Any] = {}
    if synthetic:
        overrides.update(SYNTHETIC_MODEL[config.model])
    overrides.update(config.model_overrides)
    if config.model == "plm_icd":
        overrides.setdefault("plm_path_or_config", config.plm_path or {
            **SMALL_PLM, "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
        })
    else:
        overrides["vocab_size"] = tokenizer.vocab_size
    return ModelConfig.for_backbone(
        config.model, systems=tuple(systems),
        **{**variant_model_fields(config.variant), **overrides},
    )


def _evaluate(val: Predictions, test: Predictions, train_counts: dict[str, np.ndarray],
              linked: dict[str, np.ndarray], scale: float, protocol: str) -> dict[str, Any]:
    """The evaluation protocol per system (:func:`jams_pyg.eval.evaluate`, as ``jams-pyg
    evaluate``), with macro-F1 by training frequency and GEM link at the tuned threshold."""
    results: dict[str, Any] = {}
    for system, probs in test.probs.items():
        targets = test.targets[system]
        scored = evaluate(probs, targets, tune_on=(val.probs[system], val.targets[system]),
                          protocol=protocol)
        threshold = scored["threshold"]
        f1 = per_code_f1(probs, targets, threshold)
        results[system] = {
            "threshold": threshold,
            "metrics": scored["metrics"],
            "buckets": bucket_macro_f1(f1, train_counts[system], linked=linked.get(system),
                                       scale=scale),
            "num_test_documents": int(probs.shape[0]),
        }
    return results


def _train_one(config: ExperimentConfig, datasets: dict[str, CodingDataset],
               systems: Sequence[str], out: Path, device: torch.device,
               info: DistInfo, synthetic: bool, scale: float, joint_graph: GEMGraph | None,
               save_model: ModelSaver | None = None,
               ) -> tuple[dict[str, Any], dict[str, Any], GEMGraph | None]:
    """Train one model on ``systems``; its per-system results, training summary and the
    GEM graph of its MAT (``None`` without MAT)."""
    selected = {s: datasets[s] for s in systems}
    names = " + ".join(SYSTEM_LABELS[s] for s in systems)
    log.info("training %s on %s, seed %d -> %s", config.label, names, config.seed, out)
    tokenizer = _tokenizer(config, selected, out)
    seed_everything(config.seed)
    model_config = _model_config(config, tokenizer, systems, synthetic)
    graph = None
    procedures = bool(config.procedure_links) and config.variant not in DIAGNOSIS_LINK_VARIANTS
    if model_config.use_mat and joint_graph is not None:
        graph = (joint_graph if joint_graph.direction == model_config.gem_direction
                 and procedures == config.procedure_links
                 else build_graph(config, selected, model_config.gem_direction, procedures))
    num_codes = {s: selected[s].num_codes for s in systems}
    embeddings = None
    if config.word2vec and config.model != "plm_icd":
        texts = [t for ds in selected.values() for t in ds.train["text"].tolist()]
        embeddings = train_word2vec(texts, tokenizer.vocab, dim=model_config.embedding_dim,
                                    seed=config.seed)
    model = build_model(model_config, graph, num_codes, embeddings=embeddings)
    train = JointCodingDataset(selected, "train", tokenizer, max_length=config.max_length)
    val = JointCodingDataset(selected, "val", tokenizer, max_length=config.max_length)
    test = JointCodingDataset(selected, "test", tokenizer, max_length=config.max_length)
    sampler = BucketBatchSampler(train.lengths, config.train.batch_size, shuffle=True,
                                 seed=config.seed, drop_last=config.train.drop_last,
                                 boundaries=config.train.bucket_boundaries)
    if len(sampler) == 0:  # drop_last left nothing: say why, not "no batch"
        raise ValueError(
            f"no length bucket holds a full batch of {config.train.batch_size} of the "
            f"{len(train)} training documents, and drop_last drops incomplete ones: lower "
            "--batch-size or set TrainConfig(drop_last=False)")

    def batches(epoch: int) -> list[list[int]]:
        sampler.set_epoch(epoch)
        return list(sampler)

    # --resume refuses a last.pt of another model, data or settings (listing what differs).
    fingerprint = {"model": model_config.to_dict(), "train_data": dataset_fingerprint(train),
                   "val_data": dataset_fingerprint(val), "max_length": config.max_length}
    trainer = Trainer(model, jams_loss, train, val, train.collator(), batches, config.train,
                      out, device=device, dist_info=info, systems=systems,
                      run_fingerprint=fingerprint)
    if config.resume:
        trainer.resume()
    elif trainer.last_path.exists() or trainer.best_path.exists():
        raise FileExistsError(
            f"{out} holds a previous run; resume it (--resume), replace it (--overwrite) or "
            "choose another output folder (--output-dir)"
        )
    summary = trainer.fit()
    linked = {s: joint_graph.linked(s).numpy() for s in systems} if joint_graph else {}
    val_predictions = trainer.predict(val)
    results = _evaluate(val_predictions, trainer.predict(test),
                        {s: selected[s].code_frequencies("train") for s in systems},
                        linked, scale, config.protocol)
    if info.is_main and save_model is not None:
        # e.g. the prediction bundle that JAMSPredictor.load(out / "model") reads
        save_model(TrainedModel(
            out / "model", unwrap_model(trainer.model), model_config, tokenizer,
            {s: selected[s].codes for s in systems},
            {s: results[s]["threshold"] for s in systems}, graph, config.max_length,
            extra={"label": config.label, "seed": config.seed,
                   "protocol": protocol_record(config.protocol),
                   "gem_graph": graph_record(graph, procedures)},
            validation_texts=[t for s in systems for t in selected[s].val["text"].tolist()],
            validation_probs={s: val_predictions.probs[s] for s in systems}))
    return results, {"training": summary, "model_config": model_config.to_dict(),
                     "train_config": asdict(config.train)}, graph


def run_experiment(config: ExperimentConfig, save_model: ModelSaver | None = None, *,
                   generate_data: bool = True, echo_report: bool = True) -> dict[str, Any]:
    """Train and evaluate one configuration; writes ``metrics.json``,
    ``config.json``, ``buckets.png`` and checkpoints to ``config.output_dir``
    and returns the metrics. ``save_model`` gets each trained model
    (:class:`TrainedModel`) on the main process, e.g.
    :func:`jams_pyg.cli.train.save_run_bundle`, which writes its prediction bundle.

    Without ``data_dir`` the synthetic corpus is written first, unless not
    ``generate_data`` (a command whose earlier run wrote it into the same
    ``synthetic_dir``). The run's tables are printed unless not ``echo_report`` (a
    command that prints those of all its runs side by side at the end).

    The output folder belongs to this run while it lasts
    (:func:`~jams_pyg.train.trainer.run_dir_lock`): a second run into it fails at
    once with ``RunDirLocked`` naming the holder. A diverged run raises
    ``TrainingDiverged`` and writes no metrics and no bundle."""
    with run_dir_lock(config.output_dir, enabled=int(os.environ.get("RANK", "0")) == 0):
        return _run_experiment(config, save_model, generate_data, echo_report)


def _run_experiment(config: ExperimentConfig, save_model: ModelSaver | None,
                    generate_data: bool, echo_report: bool) -> dict[str, Any]:
    info = init_distributed(resolve_device(config.device))
    device = resolve_device(config.device, info)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if info.is_main:
        datasets, scale = load_data(config, generate=generate_data)
    barrier(info)
    if not info.is_main:
        datasets, scale = load_data(config, generate=False)
    synthetic = config.data_dir is None
    # Whether a code has a GEM link to the other dataset's codes: the same
    # grouping (the directional graph's, with procedure links as configured) for
    # every variant, including the plain backbone (which never sees the graph) and
    # the union and no_proc_links ablations.
    joint_graph = build_graph(config, datasets) if len(config.systems) == 2 else None
    results: dict[str, Any] = {"label": config.label, "model": config.model,
                               "variant": config.variant, "seed": config.seed,
                               "bucket_scale": scale, "protocol": protocol_record(config.protocol),
                               "systems": {}}
    if config.variant in SEPARATE_VARIANTS:
        groups = [(s,) for s in config.systems]
    else:
        groups = [tuple(config.systems)]
    meta = {}
    mat_graph = None
    for systems in groups:
        sub = out if len(groups) == 1 else out / systems[0]
        sub.mkdir(parents=True, exist_ok=True)
        group_results, meta["+".join(systems)], graph = _train_one(
            config, datasets, systems, sub, device, info, synthetic, scale, joint_graph,
            save_model)
        mat_graph = mat_graph or graph
        results["systems"].update(group_results)
    # the graph of the model's MAT, else (no MAT) the one grouping the buckets
    results["gem_graph"] = (
        graph_record(mat_graph, bool(config.procedure_links)
                     and config.variant not in DIAGNOSIS_LINK_VARIANTS)
        if mat_graph is not None else graph_record(joint_graph, bool(config.procedure_links)))
    results["training"] = meta
    results["seconds"] = time.perf_counter() - start
    if info.is_main:
        atomic_write_text(out / "metrics.json", json.dumps(results, indent=2, default=float))
        atomic_write_text(out / "config.json", json.dumps(asdict(config), indent=2, default=str))
        write_report([results], out, systems=config.systems, echo=echo_report)
    cleanup(info)
    return results
