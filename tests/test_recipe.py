"""The official training recipe for real data (issue #19, items 4-7): each default against the
value the official code sets (GY-Jeong/JAMS; Edin et al.'s medical-coding-reproducibility for the
plain backbone), and the synthetic presets keeping what they always used."""

import argparse
import json
import math
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_training import config, make_trainer

from jams_pyg.data.joint import BucketBatchSampler
from jams_pyg.eval.metrics import compute_metrics
from jams_pyg.eval.names import OFFICIAL_MEAN_METRICS, monitor_value
from jams_pyg.models import ModelConfig
from jams_pyg.train.amp import amp_dtype, grad_scaler
from jams_pyg.train.config import OFFICIAL_BUCKET_BOUNDARIES, TrainConfig
from jams_pyg.train.presets import SYNTHETIC_TRAIN, train_settings

GOLDEN = Path(__file__).resolve().parent / "golden"

# The values the official files set (read from GY-Jeong/JAMS at 69382b0 and
# JoakimEdin/medical-coding-reproducibility at c0e1d42).
#: configs/lr_scheduler/warmup_linear_decay.yaml: num_warmup_steps
OFFICIAL_WARMUP_STEPS = 2000
#: configs/callbacks/mean_average_precision.yaml: EarlyStoppingCallback patience (JAMS; Edin)
OFFICIAL_PATIENCE, EDIN_PATIENCE = 5, 6
#: configs/text_encoder/word2vec.yaml: model_configs.vector_size (both repositories)
OFFICIAL_WORD2VEC_SIZE = 100
#: src/models/modules/graph_attention.py: xavier_uniform_ gain of the attention vector
OFFICIAL_MAT_GAIN = 1.414
#: configs/dataloader/defaults.yaml: batch_sampler.configs.bucket_boundaries and drop_last
OFFICIAL_BOUNDARIES = [400, 600, 800, 1000, 1200, 1400, 1600, 1800, 2000, 2200, 2600, 3000,
                       4000]
#: configs/experiment/mimiciv_integrate/<model>.yaml: optimizer.configs and batch_size
OFFICIAL_OPTIMISER = {
    "laat": {"lr": 1e-3, "weight_decay": 1e-3, "batch_size": 8, "epochs": 20},
    "caml": {"lr": 5e-3, "weight_decay": 1e-3, "batch_size": 8, "epochs": 20},
    "multirescnn": {"lr": 5e-4, "weight_decay": 1e-4, "batch_size": 16, "epochs": 20},
    "plm_icd": {"lr": 5e-5, "weight_decay": 0.0, "batch_size": 16, "epochs": 20},
}


# ------------------------------------------------------------------------ the defaults
def test_train_config_defaults_are_the_official_recipe():
    c = TrainConfig()
    assert c.warmup_steps == OFFICIAL_WARMUP_STEPS and c.warmup_ratio is None
    assert c.max_grad_norm is None  # src/trainer/trainer.py never clips
    assert c.amp and c.amp_dtype == "float16"  # torch.autocast(dtype=torch.float16) + scaler
    assert (c.monitor, c.patience) == ("official_mean", OFFICIAL_PATIENCE)
    assert list(c.bucket_boundaries) == OFFICIAL_BOUNDARIES == list(OFFICIAL_BUCKET_BOUNDARIES)
    assert c.drop_last is True


@pytest.mark.parametrize("model", sorted(OFFICIAL_OPTIMISER))
def test_real_data_settings_per_backbone_and_variant(model):
    for variant, (monitor, patience) in (("jams", ("official_mean", OFFICIAL_PATIENCE)),
                                         ("no_mat", ("official_mean", OFFICIAL_PATIENCE)),
                                         ("backbone", ("map", EDIN_PATIENCE))):
        c = TrainConfig(**train_settings(model, synthetic=False, variant=variant))
        assert {k: getattr(c, k) for k in OFFICIAL_OPTIMISER[model]} == OFFICIAL_OPTIMISER[model]
        assert (c.monitor, c.patience) == (monitor, patience)
        assert c.warmup_steps == OFFICIAL_WARMUP_STEPS and c.max_grad_norm is None


def test_word_embeddings_are_100_d_as_the_official_word2vec():
    for model in ("laat", "caml", "multirescnn"):
        assert ModelConfig.for_backbone(model, vocab_size=10).embedding_dim == (
            OFFICIAL_WORD2VEC_SIZE)


def test_mat_attention_starts_from_the_official_xavier_gain():
    # src/models/modules/graph_attention.py: nn.init.xavier_uniform_(self.a.data, gain=1.414)
    from jams_pyg.graph.gem_graph import GEMGraph
    from jams_pyg.models import build_model
    from jams_pyg.train.presets import SYNTHETIC_MODEL

    config_ = ModelConfig.for_backbone("caml", vocab_size=10, embedding_dim=4, num_filters=64)
    assert config_.mat_att_gain == OFFICIAL_MAT_GAIN
    graph = GEMGraph.from_cms_2018(["405.11", "576.2"], ["I15.0", "K83.1"])
    torch.manual_seed(0)
    model = build_model(config_, graph, {"icd9": 2, "icd10": 2})
    assert model.mat.att_gain == OFFICIAL_MAT_GAIN
    # xavier_uniform_ of a [2d, 1] vector: 128 draws come close to the bound
    bound = OFFICIAL_MAT_GAIN * math.sqrt(6 / (1 + 2 * 64))
    assert model.mat.att.abs().max() <= bound and model.mat.att.abs().max() > bound / 1.414
    # the synthetic presets and configs saved before the field keep gain 1 (PyG's glorot)
    assert all(m["mat_att_gain"] == 1.0 for m in SYNTHETIC_MODEL.values())
    legacy = {k: v for k, v in config_.to_dict().items() if k != "mat_att_gain"}
    assert ModelConfig.from_dict(legacy).mat_att_gain == 1.0


def test_synthetic_presets_keep_the_settings_of_the_golden_run():
    # The golden run recorded its TrainConfig before the official recipe became the default.
    golden = json.loads((GOLDEN / "metrics.json").read_text())
    for variant in ("backbone", "jams"):
        recorded_configs = _train_configs(golden, variant)
        assert recorded_configs, variant
        for recorded in recorded_configs:
            ours = asdict(TrainConfig(**train_settings("laat", synthetic=True)))
            # the golden command set --epochs 2 and --no-progress; tensorboard is optional
            for key in set(recorded) - {"epochs", "progress", "tensorboard"}:
                if key == "amp":
                    continue
                assert ours[key] == recorded[key], key
    c = TrainConfig(**SYNTHETIC_TRAIN)
    assert (c.warmup_ratio, c.warmup_steps, c.max_grad_norm, c.monitor, c.patience) == (
        0.05, None, 1.0, "map", 3)
    assert (c.bucket_boundaries, c.drop_last, c.amp_dtype) == (None, False, "auto")


def _train_configs(metrics, variant):
    runs = metrics if isinstance(metrics, list) else [metrics]
    return [meta["train_config"] for run in runs if run["variant"] == variant
            for meta in run["training"].values()]


def _parse(argv):
    from jams_pyg.cli.train import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_the_data_command_line_runs_the_official_recipe(tmp_path):
    from jams_pyg.cli.train import experiment_config

    args = _parse(["--data", str(tmp_path)])
    jams = experiment_config(args, "jams", tmp_path / "jams")
    backbone = experiment_config(args, "backbone", tmp_path / "backbone")
    assert jams.word2vec and backbone.word2vec
    assert asdict(jams.train) == asdict(TrainConfig(seed=0))
    assert (backbone.train.monitor, backbone.train.patience) == ("map", EDIN_PATIENCE)
    off = experiment_config(_parse(["--data", str(tmp_path), "--no-word2vec", "--monitor",
                                    "map", "--amp-dtype", "bfloat16"]), "jams", tmp_path)
    assert not off.word2vec and off.train.monitor == "map" and off.train.amp_dtype == "bfloat16"
    synthetic = experiment_config(_parse([]), "jams", tmp_path / "jams")
    assert not synthetic.word2vec
    assert asdict(synthetic.train) == asdict(TrainConfig(**SYNTHETIC_TRAIN, progress=True))


# ------------------------------------------------------------------ model selection
def official_mean_reference(probs: np.ndarray, targets: np.ndarray, batch: int = 16) -> float:
    """The official validation score of one system, computed as its code does: metrics
    accumulated batch by batch over the codes present in the split (``split2code_indices``)
    and the documents with one of them (``MetricCollection.filter_batch``), at threshold 0.5,
    then ``get_best_metric``'s plain mean of seven."""
    p = torch.as_tensor(probs, dtype=torch.float64)
    t = torch.as_tensor(targets, dtype=torch.float64)
    present = t.sum(0) > 0
    p, t = p[:, present], t[:, present]
    tp = torch.zeros(p.shape[1], dtype=torch.float64)
    fp, fn = tp.clone(), tp.clone()
    sums = dict.fromkeys(("exact", "p8", "p15", "rprec", "map"), 0.0)
    seen = 0
    for start in range(0, len(p), batch):
        pb, tb = p[start:start + batch], t[start:start + batch]
        keep = tb.sum(1) > 0
        pb, tb = pb[keep], tb[keep]
        pred = (pb > 0.5).double()
        tp += (pred * tb).sum(0)
        fp += (pred * (1 - tb)).sum(0)
        fn += ((1 - pred) * tb).sum(0)
        sums["exact"] += float(torch.all(pred == tb, dim=1).sum())
        ranked = tb.gather(1, torch.sort(pb, dim=1, descending=True).indices)
        found = ranked.cumsum(1)
        for k in (8, 15):
            top = ranked[:, :k].sum(1)
            sums[f"p{k}"] += float((top / (top + (k - top) + 1e-10)).sum())
        num = tb.sum(1).long()
        sums["rprec"] += float((found.gather(1, num.unsqueeze(1) - 1).squeeze(1) / num).sum())
        ranks = torch.arange(1, tb.shape[1] + 1, dtype=torch.float64)
        sums["map"] += float(((found / ranks * ranked).sum(1) / ranked.sum(1)).sum())
        seen += len(pb)
    f1_micro = tp.sum() / (tp.sum() + 0.5 * (fp.sum() + fn.sum()) + 1e-10)
    f1_macro = torch.mean(tp / (tp + 0.5 * (fp + fn) + 1e-10))
    scores = [float(f1_macro), float(f1_micro), sums["exact"] / seen, sums["p8"] / seen,
              sums["p15"] / seen, sums["rprec"] / seen, sums["map"] / seen]
    return sum(scores) / len(scores)


def _predictions(seed: int, docs: int, codes: int, scale: float) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    targets = (rng.random((docs, codes)) < 0.15).astype(np.float32)
    targets[:, -3:] = 0  # codes absent from the split
    targets[docs - 2] = 0  # a document without a code of the split
    noise = rng.normal(size=(docs, codes))
    probs = 1 / (1 + np.exp(-(scale * (targets - 0.5) + noise)))
    return probs.astype(np.float32), targets


def test_official_mean_is_the_official_score_of_a_system():
    assert OFFICIAL_MEAN_METRICS == ("f1_macro", "f1_micro", "exact_match", "precision@8",
                                     "precision@15", "r_precision", "map")
    for seed, scale in ((0, 0.5), (1, 2.0), (2, 6.0)):
        probs, targets = _predictions(seed, docs=50, codes=30, scale=scale)
        ours = monitor_value(compute_metrics(probs, targets, threshold=0.5), "official_mean")
        assert ours == pytest.approx(official_mean_reference(probs, targets), abs=1e-8)


def test_training_selects_on_the_mean_over_both_systems(tmp_path):
    trainer = make_trainer(tmp_path, config(epochs=1, monitor="official_mean"))
    nine, ten = _predictions(3, 40, 12, 2.0), _predictions(4, 30, 16, 1.0)
    scores = trainer.validation_score(SimpleNamespace(  # a Predictions' two fields
        probs={"icd9": nine[0], "icd10": ten[0]}, targets={"icd9": nine[1], "icd10": ten[1]}))
    # src/trainer/callbacks.py: (best_metric_icd9 + best_metric_icd10) / 2
    assert scores["icd9"] == pytest.approx(official_mean_reference(*nine), abs=1e-8)
    assert scores["icd10"] == pytest.approx(official_mean_reference(*ten), abs=1e-8)
    summary = trainer.fit()
    record = summary["history"][0]
    assert record["val_official_mean"] == pytest.approx(
        (record["val_official_mean_icd9"] + record["val_official_mean_icd10"]) / 2)


def official_epochs(scores: list[float], patience: int) -> tuple[int, int]:
    """Epochs run and best epoch under the official EarlyStoppingCallback and
    SaveBestModelCallback: strictly better resets the count, training stops once it
    reaches ``patience``."""
    best, best_epoch, counter = None, 0, 0
    for epoch, score in enumerate(scores, 1):
        if best is None or score > best:
            best, best_epoch, counter = score, epoch, 0
        else:
            counter += 1
        if counter >= patience:
            return epoch, best_epoch
    return len(scores), best_epoch


def test_patience_counts_as_the_official_callback(tmp_path):
    sequence = [0.5, 0.6, 0.6, 0.55, 0.6, 0.58, 0.59, 0.7, 0.8]  # ties do not improve
    trainer = make_trainer(tmp_path, config(epochs=len(sequence), patience=OFFICIAL_PATIENCE,
                                            monitor="official_mean"))
    scores = iter(sequence)
    trainer.validation_score = lambda predictions: {"icd9": next(scores)}
    summary = trainer.fit()
    assert (summary["epochs_run"], summary["best_epoch"]) == official_epochs(
        sequence, OFFICIAL_PATIENCE) == (7, 2)


# ------------------------------------------------------------- warm-up and clipping
def test_warmup_is_2000_steps_of_the_transformers_schedule(tmp_path):
    from transformers import get_linear_schedule_with_warmup

    trainer = make_trainer(tmp_path, config(epochs=2, warmup_steps=OFFICIAL_WARMUP_STEPS,
                                            warmup_ratio=None))
    total = trainer.total_steps
    reference = get_linear_schedule_with_warmup(
        torch.optim.SGD([torch.zeros(1)], lr=1.0), OFFICIAL_WARMUP_STEPS, total)
    for step in (0, 1, 7, total, 1999, 2000, 2001, 5000):
        assert trainer.scheduler.lr_lambdas[0](step) == pytest.approx(
            reference.lr_lambdas[0](step), abs=1e-12)
    ratio = make_trainer(tmp_path / "ratio", config(epochs=2))  # warmup_ratio 0.2
    assert ratio.scheduler.lr_lambdas[0](1) == pytest.approx(
        1 / math.ceil(0.2 * ratio.total_steps))


def test_warmup_takes_steps_or_a_ratio_not_both():
    with pytest.raises(ValueError, match=r"one of warmup_steps \(2000\) and warmup_ratio "
                       r"\(0.1\)"):
        TrainConfig(warmup_ratio=0.1)
    with pytest.raises(ValueError, match="one of warmup_steps"):
        TrainConfig(warmup_steps=None)
    assert TrainConfig(warmup_steps=None, warmup_ratio=0.1).warmup(100) == 10
    assert TrainConfig().warmup(100) == OFFICIAL_WARMUP_STEPS
    with pytest.raises(ValueError, match="bucket_boundaries must be"):
        TrainConfig(bucket_boundaries=(400, 400))


def test_no_clipping_by_default(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                        lambda params, norm: calls.append(norm))
    make_trainer(tmp_path / "off", config(epochs=1, max_grad_norm=None)).train_epoch()
    assert calls == []
    make_trainer(tmp_path / "on", config(epochs=1, max_grad_norm=1.0)).train_epoch()
    assert calls and set(calls) == {1.0}


# ------------------------------------------------------------------- mixed precision
def test_mixed_precision_type_per_setting():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert amp_dtype(TrainConfig(), cuda) == torch.float16
    assert amp_dtype(TrainConfig(amp_dtype="bfloat16"), cuda) == torch.bfloat16
    assert amp_dtype(TrainConfig(amp=False), cuda) is None
    assert amp_dtype(TrainConfig(), cpu) is None  # CPU trains in float32
    assert grad_scaler(torch.float16, cpu).is_enabled()
    assert not grad_scaler(torch.bfloat16, cpu).is_enabled()
    assert not grad_scaler(None, cpu).is_enabled()
    with pytest.raises(ValueError, match="amp_dtype must be one of float16, bfloat16, auto"):
        TrainConfig(amp_dtype="fp8")


def _params(trainer):
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_the_gradient_scaler_path_trains_as_full_precision(tmp_path):
    # A power-of-two loss scale is exact in float32: scaled, unscaled before clipping and
    # stepped, the weights must equal those of the run without a scaler.
    plain = make_trainer(tmp_path / "plain", config(epochs=1))
    plain.train_epoch()
    scaled = make_trainer(tmp_path / "scaled", config(epochs=1))
    scaled.scaler = grad_scaler(torch.float16, torch.device("cpu"))
    assert scaled.scaler.is_enabled()
    scaled.train_epoch()
    assert scaled.scaler.get_scale() == 2.0**16  # no overflow: the scale never moved
    for key, value in _params(plain).items():
        torch.testing.assert_close(_params(scaled)[key], value, rtol=1e-6, atol=1e-7)


# The scheduler steps on a skipped step too, as in the official trainer.
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`")
def test_an_overflowing_gradient_skips_the_step(tmp_path):
    trainer = make_trainer(tmp_path, config(epochs=1))
    trainer.scaler = grad_scaler(torch.float16, torch.device("cpu"))
    before = _params(trainer)
    weight = next(trainer.model.parameters())
    weight.register_hook(lambda grad: grad * math.inf)  # as a float16 overflow
    trainer.train_epoch()
    for key, value in _params(trainer).items():
        assert torch.equal(value, before[key]), key
    assert trainer.scaler.get_scale() == 2.0**16 * 0.5**trainer.steps_per_epoch


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_default_is_float16_with_a_scaler(tmp_path):
    trainer = make_trainer(tmp_path, config(epochs=1, amp_dtype="float16"), device="cuda")
    assert trainer.amp_dtype == torch.float16 and trainer.scaler.is_enabled()
    loss = trainer.train_epoch()
    assert math.isfinite(loss) and trainer.scaler.get_scale() > 0
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    auto = make_trainer(tmp_path / "auto", config(epochs=1, amp_dtype="auto"), device="cuda")
    assert auto.amp_dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported()
                              else torch.float16)


# ------------------------------------------------------------------------- batching
def official_bucket(length: int) -> int:
    """``BySequenceLengthSampler.element_to_bucket_id`` of the official code."""
    low = torch.tensor([np.iinfo(np.int32).min, *OFFICIAL_BOUNDARIES])
    high = torch.tensor([*OFFICIAL_BOUNDARIES, np.iinfo(np.int32).max])
    return int(((length >= low) * (length < high)).nonzero()[0].item())


def test_official_buckets_with_drop_last():
    rng = np.random.default_rng(0)
    lengths = [*rng.integers(1, 4001, size=500).tolist(), 400, 399, 4000, 3999, 600]
    buckets = [official_bucket(n) for n in lengths]
    sizes = np.bincount(buckets)
    batch = 8
    sampler = BucketBatchSampler(lengths, batch, seed=1, drop_last=True,
                                 boundaries=OFFICIAL_BOUNDARIES)
    batches = list(sampler)
    assert all(len(b) == batch for b in batches)
    assert all(len({buckets[i] for i in b}) == 1 for b in batches)  # one bucket a batch
    per_bucket = np.bincount([buckets[b[0]] for b in batches], minlength=len(sizes))
    np.testing.assert_array_equal(per_bucket, sizes // batch)  # each bucket's tail dropped
    used = [i for b in batches for i in b]
    assert len(used) == len(set(used)) == len(sampler) * batch
    sampler.set_epoch(1)
    assert list(sampler) != batches  # reshuffled every epoch
    keep_all = list(BucketBatchSampler(lengths, batch, seed=1, boundaries=OFFICIAL_BOUNDARIES))
    assert sorted(i for b in keep_all for i in b) == list(range(len(lengths)))
    assert all(len({buckets[i] for i in b}) == 1 for b in keep_all)
    with pytest.raises(ValueError, match="boundaries must be increasing"):
        BucketBatchSampler(lengths, batch, boundaries=[600, 400])


@pytest.mark.slow
def test_a_run_uses_the_configured_batching(tmp_path, monkeypatch):
    from jams_pyg.train import experiment

    seen = {}

    class Stop(Exception):
        pass

    class Recording(BucketBatchSampler):
        def __init__(self, *args, **kwargs):
            seen.update(kwargs)
            raise Stop

    monkeypatch.setattr(experiment, "BucketBatchSampler", Recording)
    train = TrainConfig(**{**SYNTHETIC_TRAIN, "bucket_boundaries": OFFICIAL_BOUNDARIES,
                           "drop_last": True}, progress=False, tensorboard=False)
    config_ = experiment.ExperimentConfig(synthetic_size=0.05, output_dir=str(tmp_path / "run"),
                                          train=train, device="cpu")
    assert config_.word2vec is False  # the synthetic corpus keeps random embeddings
    with pytest.raises(Stop):
        experiment.run_experiment(config_)
    assert seen["drop_last"] is True and list(seen["boundaries"]) == OFFICIAL_BOUNDARIES
    assert experiment.ExperimentConfig(data_dir=str(tmp_path)).word2vec is True


@pytest.mark.slow
def test_drop_last_leaving_no_batch_is_a_clear_error(tmp_path):
    from jams_pyg.train import experiment

    train = TrainConfig(**{**SYNTHETIC_TRAIN, "batch_size": 4096, "drop_last": True},
                        progress=False, tensorboard=False)
    with pytest.raises(ValueError, match="no length bucket holds a full batch of 4096 of the "
                       r"\d+ training documents, and drop_last"):
        experiment.run_experiment(experiment.ExperimentConfig(
            synthetic_size=0.05, output_dir=str(tmp_path / "run"), train=train, device="cpu"))
