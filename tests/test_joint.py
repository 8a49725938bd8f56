"""Joint ICD-9/ICD-10 dataset, collate and the bucketing batch sampler."""

import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from jams_pyg.data.edin import CodingDataset
from jams_pyg.data.joint import (
    BucketBatchSampler,
    JointBatch,
    JointCodingDataset,
    collate_joint,
)
from jams_pyg.data.text import WordTokenizer


def _ds(system, rows):
    frame = pd.DataFrame(rows, columns=["_id", "subject_id", "text", "target"])
    codes = sorted({c for t in frame["target"] for c in t})
    empty = frame.iloc[:0]
    return CodingDataset(system, frame, empty.copy(), empty.copy(), codes)


@pytest.fixture
def datasets():
    ds9 = _ds("icd9", [
        (1, 10, "chest pain", ["401.9", "428.0"]),
        (2, 11, "heart failure again and again", ["428.0"]),
        (3, 12, "pain", ["250.00"]),
    ])
    ds10 = _ds("icd10", [
        (4, 20, "chest pain heart", ["I10.", "I50.9"]),
        (5, 21, "diabetes", ["E11.9"]),
    ])
    return ds9, ds10


def test_items_collate_to_hand_made_multi_hot(datasets):
    ds9, ds10 = datasets
    tok = WordTokenizer.fit(["chest pain heart failure diabetes"], min_df=1)
    joint = JointCodingDataset({"icd9": ds9, "icd10": ds10}, "train", tok, max_length=3)
    assert len(joint) == 5 and joint.systems == ["icd9", "icd10"]
    assert joint.num_codes == {"icd9": 3, "icd10": 3}
    assert joint.lengths == [2, 3, 1, 3, 1]  # white-space words, capped at max_length
    # ds9.codes = ["250.00", "401.9", "428.0"], ds10.codes = ["E11.9", "I10.", "I50.9"]
    batch = joint.collator()([joint[i] for i in (3, 0, 4, 2)])
    assert isinstance(batch, JointBatch) and len(batch) == 4
    assert batch.ids == [4, 1, 5, 3]
    assert batch.system.tolist() == [1, 0, 1, 0]
    torch.testing.assert_close(batch.labels["icd9"], torch.tensor([[0.0, 1, 1], [1, 0, 0]]))
    torch.testing.assert_close(batch.labels["icd10"], torch.tensor([[0.0, 1, 1], [1, 0, 0]]))
    assert batch.input_ids.tolist() == [
        [tok.encode("chest")[0], tok.encode("pain")[0], tok.encode("heart")[0]],
        [tok.encode("chest")[0], tok.encode("pain")[0], 0],
        [tok.encode("diabetes")[0], 0, 0],
        [tok.encode("pain")[0], 0, 0],
    ]
    assert batch.attention_mask.tolist() == [
        [True] * 3, [True, True, False], [True, False, False], [True, False, False]]
    assert batch.mask("icd10").tolist() == [True, False, True, False]
    moved = batch.to("cpu")
    assert moved.labels["icd9"].dtype == torch.float32 and moved.ids == batch.ids


def test_absent_system_has_an_empty_label_tensor(datasets):
    ds9, ds10 = datasets
    joint = JointCodingDataset([ds9, ds10], "train", lambda t: [7] * len(t.split()))
    batch = collate_joint([joint[0], joint[1]], joint.num_codes)
    assert batch.labels["icd10"].shape == (0, 3)
    assert batch.labels["icd9"].shape == (2, 3)
    single = JointCodingDataset([ds10], "train", lambda t: [7])
    assert single.systems == ["icd10"] and list(single.collator()([single[0]]).labels) == [
        "icd10"]


def test_dataloader_with_sampler(datasets):
    ds9, ds10 = datasets
    tok = WordTokenizer.fit(["chest pain"], min_df=1)
    joint = JointCodingDataset({"icd9": ds9, "icd10": ds10}, "train", tok)
    sampler = BucketBatchSampler(joint.lengths, batch_size=2, seed=0)
    loader = DataLoader(joint, batch_sampler=sampler, collate_fn=joint.collator())
    ids = [i for batch in loader for i in batch.ids]
    assert sorted(ids) == [1, 2, 3, 4, 5]
    for batch in loader:
        assert batch.labels["icd9"].shape[0] + batch.labels["icd10"].shape[0] == len(batch)


def test_code_outside_label_vocabulary_is_named(datasets):
    ds9, ds10 = datasets
    with pytest.raises(ValueError, match=r"_id 4: code 'I50.9' is not in the icd10 label"):
        JointCodingDataset({"icd9": ds9, "icd10": ds10}, "train", lambda t: [1],
                           codes={"icd10": ["E11.9", "I10."]})
    with pytest.raises(ValueError, match="is a icd9 dataset"):
        JointCodingDataset({"icd10": ds9}, "train", lambda t: [1])


def test_hf_tokenizer_items(datasets, tmp_path):
    from jams_pyg.data.text import train_hf_tokenizer

    ds9, ds10 = datasets
    hf = train_hf_tokenizer(["chest pain heart failure diabetes"] * 5, vocab_size=60)
    joint = JointCodingDataset([ds9, ds10], "train", hf, max_length=4)
    item = joint[1]  # "heart failure again and again" -> [CLS] ... truncated to 4
    assert len(item.input_ids) == 4 and item.input_ids[0] == hf.cls_token_id
    assert joint.pad_id == hf.pad_token_id == 0


def test_sampler_covers_each_index_once_and_buckets_by_length():
    lengths = [(i * 37) % 101 for i in range(103)]
    sampler = BucketBatchSampler(lengths, batch_size=8, seed=1, pool_batches=4)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 13  # 3 pools of 32 (4 batches each) + 7 left
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(103))
    # Within a pool, batches are sorted by length: each batch spans a narrow range.
    spreads = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches]
    assert sum(spreads) / len(spreads) < 30
    # Deterministic per (seed, epoch), different across epochs.
    assert list(BucketBatchSampler(lengths, 8, seed=1, pool_batches=4)) == batches
    sampler.set_epoch(1)
    assert list(sampler) != batches
    no_shuffle = BucketBatchSampler(lengths, 8, shuffle=False)
    assert next(iter(no_shuffle)) == list(range(8)) and len(no_shuffle) == 13


@pytest.mark.parametrize(("n", "world_size", "drop_last"), [(96, 4, False), (103, 3, False),
                                                            (103, 3, True)])
def test_sampler_shards_like_distributed_sampler(n, world_size, drop_last):
    lengths = list(range(n))
    shards = [
        list(BucketBatchSampler(lengths, 8, seed=5, rank=r, world_size=world_size,
                                drop_last=drop_last))
        for r in range(world_size)
    ]
    sizes = {len(s) for s in shards}
    assert len(sizes) == 1  # every rank runs the same number of steps
    assert sizes == {len(BucketBatchSampler(lengths, 8, seed=5, rank=0,
                                            world_size=world_size, drop_last=drop_last))}
    per_rank = [[i for b in s for i in b] for s in shards]
    everything = [i for s in per_rank for i in s]
    if n % (8 * world_size) == 0:
        # Divisible: the shards are disjoint and cover every index exactly once.
        assert sorted(everything) == list(range(n))
    elif drop_last:
        assert len(everything) == len(set(everything))
        assert all(len(b) == 8 for s in shards for b in s)
    else:
        # Padded by repeating batches, as DistributedSampler pads indices.
        assert set(everything) == set(range(n))
    with pytest.raises(ValueError, match="rank"):
        BucketBatchSampler(lengths, 8, rank=world_size, world_size=world_size)


def test_sampler_mixes_systems():
    # 60 ICD-9 documents then 40 ICD-10 documents of similar lengths.
    lengths = [50 + (i % 7) for i in range(100)]
    systems = [0] * 60 + [1] * 40
    batches = list(BucketBatchSampler(lengths, batch_size=10, seed=0))
    mixed = sum(len({systems[i] for i in b}) == 2 for b in batches)
    assert mixed >= len(batches) // 2
