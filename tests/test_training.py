"""Trainer: optimisation, checkpoint/resume and DistributedDataParallel."""

import os
import socket

import numpy as np
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

from jams_pyg.data import CodingDataset, JointCodingDataset, WordTokenizer
from jams_pyg.graph.gem_graph import GEMGraph
from jams_pyg.models import ModelConfig, build_model, jams_loss
from jams_pyg.train.distributed import DistInfo, cleanup, init_distributed, shard_batch
from jams_pyg.train.trainer import TrainConfig, Trainer

CODES = {"icd9": ["405.11", "576.2", "749.11"], "icd10": ["I15.0", "K83.1", "Q36.9", "Z99.89"]}
WORDS = {
    "405.11": "renovascular hypertension", "576.2": "bile duct obstruction",
    "749.11": "cleft lip unilateral", "I15.0": "renovascular hypertension",
    "K83.1": "bile duct obstruction", "Q36.9": "cleft lip unilateral",
    "Z99.89": "dependence machine",
}


def tiny_datasets(docs: int = 24, seed: int = 0) -> dict[str, CodingDataset]:
    rng = np.random.default_rng(seed)
    out = {}
    for system, codes in CODES.items():
        rows = []
        for i in range(docs):
            chosen = sorted(rng.choice(codes, size=int(rng.integers(1, 3)), replace=False))
            text = " ".join(["patient", "admitted"] + [WORDS[c] for c in chosen] + ["home"])
            rows.append({"_id": f"{system}-{i}", "subject_id": i, "text": text,
                         "target": list(chosen)})
        frame = pd.DataFrame(rows)
        out[system] = CodingDataset(system, frame.iloc[:16].reset_index(drop=True),
                                    frame.iloc[16:20].reset_index(drop=True),
                                    frame.iloc[20:].reset_index(drop=True), list(codes))
    return out


def make_trainer(tmp_path, config: TrainConfig, info: DistInfo | None = None, seed: int = 0,
                 datasets: dict[str, CodingDataset] | None = None, **kwargs):
    datasets = datasets or tiny_datasets()
    texts = [t for ds in datasets.values() for t in ds.train.text]
    tokenizer = WordTokenizer.fit(texts, min_df=1)
    graph = GEMGraph.from_cms_2018(CODES["icd9"], CODES["icd10"])
    torch.manual_seed(seed)
    model = build_model(
        ModelConfig.for_backbone("caml", vocab_size=tokenizer.vocab_size, embedding_dim=8,
                                 num_filters=8, kernel_size=3, embed_dropout=0.0),
        graph, {s: len(c) for s, c in CODES.items()})
    train = JointCodingDataset(datasets, "train", tokenizer)
    val = JointCodingDataset(datasets, "val", tokenizer)

    def batches(epoch: int):
        order = np.random.default_rng(100 + epoch).permutation(len(train)).tolist()
        return [order[i:i + config.batch_size] for i in range(0, len(order), config.batch_size)]

    return Trainer(model, jams_loss, train, val, train.collator(), batches, config, tmp_path,
                   dist_info=info, **kwargs)


def params(trainer) -> dict[str, torch.Tensor]:
    model = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def config(**kw) -> TrainConfig:
    base = dict(epochs=3, batch_size=4, lr=1e-2, patience=10, progress=False,
                tensorboard=False, warmup_ratio=0.2)
    base.update(kw)
    return TrainConfig(**base)


def test_fit_lowers_the_loss_and_keeps_the_best_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, config(epochs=6))
    first = trainer.train_epoch()
    trainer.epoch += 1
    summary = trainer.fit()
    assert summary["history"][-1]["train_loss"] < first
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "last.pt").is_file()
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["epoch"] + 1 == summary["best_epoch"]
    # The model ends with the best epoch's weights.
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, best["model"][key])
    scores = [h["val_map"] for h in summary["history"]]
    assert summary["best_score"] == pytest.approx(max(scores))


def test_resume_continues_to_the_same_result(tmp_path):
    full = make_trainer(tmp_path / "full", config())
    full.fit()
    stopped = make_trainer(tmp_path / "stopped", config())
    stopped.fit(stop_after=1)
    assert stopped.epoch == 1
    resumed = make_trainer(tmp_path / "stopped", config(), seed=123)  # other init: overwritten
    assert resumed.resume()
    assert resumed.epoch == 1
    resumed.fit()
    a, b = params(full), params(resumed)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert [h["train_loss"] for h in full.history] == [h["train_loss"] for h in resumed.history]


def test_grad_accumulation_matches_one_big_batch(tmp_path):
    one = make_trainer(tmp_path / "one", config(epochs=1, max_grad_norm=None))
    one.train_epoch()
    acc = make_trainer(tmp_path / "acc", config(epochs=1, grad_accumulation=2,
                                                max_grad_norm=None))
    acc.train_epoch()
    for key, value in params(one).items():
        torch.testing.assert_close(value, params(acc)[key], rtol=1e-5, atol=1e-6)


def test_early_stopping(tmp_path):
    trainer = make_trainer(tmp_path, config(epochs=50, patience=2))
    scores = iter([0.5, 0.6, 0.55, 0.58, 0.9])
    trainer.validation_score = lambda predictions: {"icd9": next(scores), "icd10": 0.0}
    summary = trainer.fit()
    # The best epoch is the second; two epochs without a better score stop the run.
    assert summary["epochs_run"] == 4 and summary["best_epoch"] == 2
    assert summary["best_score"] == pytest.approx(0.3)


def test_checkpoint_write_is_atomic(tmp_path):
    trainer = make_trainer(tmp_path, config(epochs=1))
    trainer.fit()
    assert not list(tmp_path.glob(".*.tmp"))
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and state["version"] == 2


def test_shard_batch():
    batch = list(range(8))
    assert shard_batch(batch, DistInfo(0, 0, 2)) == [0, 2, 4, 6]
    assert shard_batch(batch, DistInfo(1, 1, 2)) == [1, 3, 5, 7]
    with pytest.raises(ValueError, match="does not split evenly over 3 processes"):
        shard_batch(batch, DistInfo(0, 0, 3))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    info = init_distributed(torch.device("cpu"))
    trainer = make_trainer(out_dir, config(epochs=2, batch_size=4), info)
    trainer.fit()
    if info.is_main:
        torch.save(params(trainer), os.path.join(out_dir, "ddp_params.pt"))
    cleanup(info)


@pytest.mark.slow
def test_ddp_two_gloo_processes_match_one_process(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path / "ddp")), nprocs=2, join=True)
    ddp = torch.load(tmp_path / "ddp" / "ddp_params.pt", weights_only=True)
    single = make_trainer(tmp_path / "single", config(epochs=2, batch_size=4))
    single.fit()
    ref = params(single)
    assert ddp.keys() == ref.keys()
    for key in ref:
        torch.testing.assert_close(ddp[key], ref[key], rtol=1e-4, atol=1e-5)


def test_linear_warmup_decay_equals_transformers_schedule():
    from transformers import get_linear_schedule_with_warmup

    from jams_pyg.train.trainer import linear_warmup_decay

    for warmup, total in ((0, 10), (3, 10), (10, 10), (4, 37)):
        ours = linear_warmup_decay(torch.optim.SGD([torch.zeros(1)], lr=0.5), warmup, total)
        ref = get_linear_schedule_with_warmup(torch.optim.SGD([torch.zeros(1)], lr=0.5),
                                              warmup, total)
        for _ in range(total + 3):
            assert ours.get_last_lr() == ref.get_last_lr()
            ours.optimizer.step()
            ref.optimizer.step()
            ours.step()
            ref.step()
