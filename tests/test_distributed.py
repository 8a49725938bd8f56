"""DistributedDataParallel in the Trainer: gradient accumulation all-reduces once a step
(``no_sync`` on the other micro-steps) and two processes train as one process with the same
global batch; DDP looks for unused parameters only in models that have them."""

from __future__ import annotations

import gc
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

import jams_pyg.train.trainer as trainer_module
from jams_pyg.data import CodingDataset, JointCodingDataset, WordTokenizer
from jams_pyg.graph.gem_graph import GEMGraph
from jams_pyg.models import ModelConfig, build_model, jams_loss
from jams_pyg.train.config import TrainConfig
from jams_pyg.train.distributed import DistInfo, has_unused_parameters
from jams_pyg.train.trainer import Trainer

CODES = {"icd9": ["405.11", "576.2", "749.11"], "icd10": ["I15.0", "K83.1", "Q36.9"]}
TITLES = ["renal hypertension", "bile duct", "cleft lip"]
WORDS = {c: t for codes in CODES.values() for c, t in zip(codes, TITLES, strict=True)}
#: Tiny GEM files (CMS layout: source, target, flags); one forward and one backward link.
GEMS = {"forward.txt": "40511 I150 00000\n5762 K831 00000\n",
        "backward.txt": "Q369 74911 10000\nK831 5762 00000\n"}
DOCS = 8  # training documents per system: indices 0-7 are ICD-9, 8-15 ICD-10
#: The global batches of the epoch. Under 2 processes × 2 micro-steps each micro-batch of
#: the first step is one system only (rank 0: [0, 2] then [8, 10]); in the second each
#: process sees one system only; the third is mixed everywhere.
BATCHES = [[0, 1, 2, 3, 8, 9, 10, 11], [4, 12, 5, 13, 6, 14, 7, 15],
           [0, 8, 12, 1, 5, 3, 14, 9]]
ACCUMULATION = 2
#: A hang guard, not a timing: spawning two workers that each import torch took over 180 s
#: on a loaded 2-core machine, so the guard leaves room for that.
WORKER_TIMEOUT_S = 600


def _datasets() -> dict[str, CodingDataset]:
    rng = np.random.default_rng(0)
    out = {}
    for system, codes in CODES.items():
        rows = []
        for i in range(DOCS + 2):
            chosen = sorted(rng.choice(codes, size=int(rng.integers(1, 3)), replace=False))
            rows.append({"_id": f"{system}-{i}", "subject_id": i,
                         "text": " ".join(["patient", *(WORDS[c] for c in chosen), "home"]),
                         "target": list(chosen)})
        frame = pd.DataFrame(rows)
        parts = frame.iloc[:DOCS], frame.iloc[DOCS:DOCS + 1], frame.iloc[DOCS + 1:]
        out[system] = CodingDataset(system, *(p.reset_index(drop=True) for p in parts),
                                    list(codes))
    return out


def _graph(folder: Path) -> GEMGraph:
    for name, text in GEMS.items():
        (folder / name).write_text(text)
    return GEMGraph.from_gem_files(folder / "forward.txt", folder / "backward.txt",
                                   CODES["icd9"], CODES["icd10"])


def _trainer(folder: Path, info: DistInfo | None, accumulation: int, loss_fn=jams_loss
             ) -> Trainer:
    folder.mkdir(parents=True, exist_ok=True)
    datasets = _datasets()
    tokenizer = WordTokenizer.fit([t for d in datasets.values() for t in d.train.text],
                                  min_df=1)
    torch.manual_seed(0)
    model = build_model(  # no dropout: both runs must draw the same numbers
        ModelConfig.for_backbone("caml", vocab_size=tokenizer.vocab_size, embedding_dim=8,
                                 num_filters=8, kernel_size=3, embed_dropout=0.0),
        _graph(folder), {s: len(c) for s, c in CODES.items()})
    train = JointCodingDataset(datasets, "train", tokenizer)
    val = JointCodingDataset(datasets, "val", tokenizer)
    assert train.system_ids == [0] * DOCS + [1] * DOCS  # BATCHES relies on this order
    # clipping acts on the all-reduced gradient, so it is part of the comparison
    config = TrainConfig(epochs=1, batch_size=len(BATCHES[0]), lr=1e-2, warmup_steps=None,
                         warmup_ratio=0.0, max_grad_norm=1.0, grad_accumulation=accumulation,
                         progress=False, tensorboard=False)
    return Trainer(model, loss_fn, train, val, train.collator(), lambda epoch: BATCHES,
                   config, folder, dist_info=info)


def _worker(rank: int, world: int, folder: str, sync_every_micro_step: bool) -> None:
    """One process: an epoch of BATCHES; saves the weights and, per all-reduced bucket, the
    number of micro-steps run so far (counted by the loss)."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank,
                            world_size=world)
    micro_steps = [0]
    reduced_at: list[int] = []

    def counting_loss(logits, labels):
        micro_steps[0] += 1
        return jams_loss(logits, labels)

    def counting_hook(state, bucket):
        reduced_at.append(micro_steps[0])
        return allreduce_hook(state, bucket)

    if sync_every_micro_step:  # the control: what the hook sees without no_sync
        trainer_module.gradient_sync = lambda model, sync: nullcontext()
    trainer = _trainer(Path(folder) / f"rank{rank}", DistInfo(rank, rank, world),
                       ACCUMULATION, counting_loss)
    trainer.model.register_comm_hook(None, counting_hook)
    trainer.train_epoch()
    state = {k: v.detach().clone() for k, v in trainer.model.module.state_dict().items()}
    torch.save({"weights": state, "reduced_at": reduced_at, "micro_steps": micro_steps[0],
                "find_unused": trainer.model.find_unused_parameters},
               Path(folder) / f"rank{rank}.pt")
    # Tear down in order: the DDP model (its reducer holds the process group) first, then,
    # once both ranks are here, the group. Left to the end of this frame, its destruction
    # after destroy_process_group hung one run in three of the control test below.
    del trainer
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


def _spawn(folder: Path, sync_every_micro_step: bool = False) -> list[dict]:
    """Two gloo processes running :func:`_worker`, killed after WORKER_TIMEOUT_S."""
    folder.mkdir(parents=True)
    context = mp.start_processes(_worker, args=(2, str(folder), sync_every_micro_step),
                                 nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    while not context.join(timeout=max(deadline - time.monotonic(), 0.1)):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the DDP workers did not finish within {WORKER_TIMEOUT_S} s")
    return [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    return _spawn(tmp_path_factory.mktemp("ddp") / "run")


@pytest.mark.slow
def test_two_processes_with_accumulation_match_one_process(ddp_run, tmp_path):
    single = _trainer(tmp_path, None, ACCUMULATION)
    single.train_epoch()
    reference = single.model.state_dict()
    initial = _trainer(tmp_path / "initial", None, ACCUMULATION).model.state_dict()
    for rank in ddp_run:
        assert rank["weights"].keys() == reference.keys()
        for key, value in reference.items():
            torch.testing.assert_close(rank["weights"][key], value, rtol=1e-5, atol=1e-6,
                                       msg=lambda m, key=key: f"{key}: {m}")
    # the comparison is not vacuous: training moved every parameter
    moved = [k for k, v in reference.items() if not torch.equal(v, initial[k])]
    assert {k for k, _ in single.model.named_parameters()} <= set(moved)


@pytest.mark.slow
def test_only_the_last_micro_step_all_reduces(ddp_run):
    steps, last = len(BATCHES), [ACCUMULATION * (s + 1) for s in range(len(BATCHES))]
    for rank in ddp_run:
        assert rank["micro_steps"] == steps * ACCUMULATION
        # every bucket is reduced once a step, after the step's last micro-batch
        assert sorted(set(rank["reduced_at"])) == last
        buckets = len(rank["reduced_at"]) // steps
        assert buckets >= 1 and len(rank["reduced_at"]) == buckets * steps
        assert rank["find_unused"]  # a two-system model: a micro-batch may miss a system


@pytest.mark.slow
def test_the_hook_sees_every_micro_step_without_no_sync(tmp_path):
    """The control of the test above: syncing every micro-step shows in the hook."""
    ranks = _spawn(tmp_path / "run", sync_every_micro_step=True)
    for rank in ranks:
        assert set(range(1, len(BATCHES) * ACCUMULATION + 1)) == set(rank["reduced_at"])


def _tiny(model: str, systems: tuple[str, ...], **fields) -> torch.nn.Module:
    sizes = {"laat": dict(rnn_hidden_size=4, projection_size=6, embed_dropout=0.0,
                          rnn_dropout=0.0),
             "caml": dict(num_filters=6, kernel_size=3, embed_dropout=0.0),
             "multirescnn": dict(num_filters=6, kernel_sizes=(3,), embed_dropout=0.0)}[model]
    config = ModelConfig.for_backbone(model, vocab_size=20, embedding_dim=8, systems=systems,
                                      use_mat=False, **{**sizes, **fields})
    torch.manual_seed(0)
    return build_model(config, None, {s: len(CODES[s]) for s in systems})


def _without_gradient(model: torch.nn.Module, system: str) -> list[str]:
    ids = torch.randint(1, 20, (3, 12))
    logits = model(ids, torch.ones_like(ids, dtype=torch.bool), [system] * 3)
    labels = {s: (torch.rand_like(v) > 0.5).float() for s, v in logits.items()}
    jams_loss(logits, labels).backward()
    return [name for name, p in model.named_parameters() if p.grad is None]


@pytest.mark.parametrize("model", ["laat", "caml", "multirescnn"])
@pytest.mark.parametrize("output_layer", ["separate", "code_table"])
def test_find_unused_parameters_only_where_a_model_has_them(model, output_layer):
    # one system: every parameter gets a gradient in every step, so DDP need not search
    for system in ("icd9", "icd10"):
        assert _without_gradient(_tiny(model, (system,), output_layer=output_layer),
                                 system) == []
        assert not has_unused_parameters((system,))
    # two systems: a batch of ICD-9 documents leaves the ICD-10 parameters without one
    unused = _without_gradient(_tiny(model, ("icd9", "icd10"), output_layer=output_layer),
                               "icd9")
    assert unused and all("icd10" in name for name in unused)
    assert has_unused_parameters(("icd9", "icd10"))
