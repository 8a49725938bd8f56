"""Trainer: optimisation, checkpoint/resume, DistributedDataParallel, evaluation passes and
the per-epoch line."""

import logging
import math
import os
import re
import socket

import numpy as np
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
from conftest import modules_loaded_by

from jams_pyg.data import CodingDataset, JointCodingDataset, WordTokenizer
from jams_pyg.graph.gem_graph import GEMGraph
from jams_pyg.models import ModelConfig, build_model, jams_loss
from jams_pyg.train.config import TrainConfig
from jams_pyg.train.distributed import DistInfo, cleanup, init_distributed, shard_batch
from jams_pyg.train.progress import format_duration
from jams_pyg.train.trainer import Trainer

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
    # The settings these tests were written for (not the official recipe's defaults).
    base = dict(epochs=3, batch_size=4, lr=1e-2, patience=10, progress=False,
                tensorboard=False, warmup_steps=None, warmup_ratio=0.2, max_grad_norm=1.0,
                monitor="map")
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

    from jams_pyg.train.schedule import linear_warmup_decay

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


def test_evaluation_refines_the_code_tables_once_per_pass(tmp_path):
    trainer = make_trainer(tmp_path, config(epochs=1))
    model = trainer.model
    assert model.use_mat
    calls = []
    model.mat.register_forward_hook(lambda *args: calls.append(1))
    predictions = trainer.predict(trainer.val_dataset, batch_size=2)
    assert len(calls) == 1  # not once per batch (8 documents, 4 batches)
    assert model.training  # left in the mode it had
    # the same numbers as refining inside each forward
    model.eval()
    loader = torch.utils.data.DataLoader(trainer.val_dataset, batch_size=2,
                                         collate_fn=trainer.collate_fn)
    with torch.no_grad():
        logits = [model(b.input_ids, b.attention_mask, b.system) for b in loader]
    assert len(calls) == 5
    for system, probs in predictions.probs.items():
        expected = torch.cat([torch.sigmoid(x[system]) for x in logits]).numpy()
        np.testing.assert_array_equal(probs, expected)


def test_a_model_without_mat_evaluates_without_tables(tmp_path):
    trainer = make_trainer(tmp_path, config(epochs=1))
    model = trainer.model
    model.mat = None  # the plain backbone's shape: no MAT, tables used as they are
    seen = []
    forward = model.forward
    model.forward = lambda *args, **kw: seen.append(kw) or forward(*args, **kw)
    predictions = trainer.predict(trainer.val_dataset)
    assert seen and all("code_tables" not in kw for kw in seen)
    assert set(predictions.probs) == {"icd9", "icd10"}


def test_each_epoch_logs_one_line_with_the_time_left(tmp_path, caplog):
    trainer = make_trainer(tmp_path, config(epochs=3))
    with caplog.at_level(logging.INFO, logger="jams_pyg.train.trainer"):
        trainer.fit()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert len(lines) == 3
    pattern = r"epoch {}/3: loss \d\.\d{{4}}, val map \d\.\d{{4}}( \(best\))? · [\d.]+ s/epoch"
    assert re.fullmatch(pattern.format(1) + r", at most [\d.]+ s left", lines[0])
    assert re.fullmatch(pattern.format(3), lines[2])  # the last epoch: nothing left


def test_early_stop_is_said_in_the_epoch_line(tmp_path, caplog):
    trainer = make_trainer(tmp_path, config(epochs=50, patience=1))
    scores = iter([0.5, 0.4])
    trainer.validation_score = lambda predictions: {"icd9": next(scores), "icd10": 0.0}
    with caplog.at_level(logging.INFO, logger="jams_pyg.train.trainer"):
        trainer.fit()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert re.search(r"^epoch 1/50: .*\(best\) · .*, at most .* left$", lines[0])
    assert lines[1].endswith(", early stop (no better val map in 1 epochs)")


@pytest.mark.parametrize("seconds, text", [
    (0, "0 s"), (0.042, "0.042 s"), (0.42, "0.42 s"), (0.97, "1 s"), (6.2, "6 s"),
    (59.6, "1 min 0 s"), (282, "4 min 42 s"), (3600, "1 h 00 min"), (7500, "2 h 05 min"),
    (100000, "1 d 3 h"),
])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("bad", [-1.0, math.inf, math.nan])
def test_format_duration_refuses_what_is_not_a_duration(bad):
    with pytest.raises(ValueError, match="finite number >= 0"):
        format_duration(bad)


def test_settings_errors_and_run_folders_load_without_torch():
    # The command line shows TrainConfig's defaults, checks flags and reports errors
    # without paying for torch.
    code = ("from jams_pyg.train.config import TrainConfig, train_setting_type; "
            "from jams_pyg.train.errors import TrainingError; "
            "from jams_pyg.train.rundir import run_dir_lock; "
            "from jams_pyg.train.progress import format_duration; "
            "TrainConfig(epochs=3, monitor='f1_micro'); train_setting_type('lr')('0.1')")
    assert modules_loaded_by(code, ("torch", "numpy")) == []
