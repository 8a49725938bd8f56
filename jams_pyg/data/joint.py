"""A dataset mixing ICD-9 and ICD-10 documents, its batches, and a
length-bucketing batch sampler for joint (JAMS) training."""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from jams_pyg.data.edin import ID_COLUMN, TARGET_COLUMN, TEXT_COLUMN, CodingDataset
from jams_pyg.data.text import DEFAULT_MAX_LENGTH, PAD_ID, pad_sequences
from jams_pyg.icd.codes import SYSTEM_IDS, SYSTEMS, System, check_system


@dataclass
class JointItem:
    """One encoded document."""

    input_ids: list[int]
    system: int
    labels: list[int]
    id: object


@dataclass
class JointBatch:
    """A batch of ICD-9 and ICD-10 documents.

    Attributes:
        input_ids (LongTensor): ``[B, L]``, right-padded with the pad id (0).
        attention_mask (BoolTensor): ``[B, L]``, True on tokens.
        system (LongTensor): ``[B]``, 0 = ICD-9, 1 = ICD-10.
        labels (dict[str, FloatTensor]): ``{"icd9": [B9, n], "icd10": [B10, m]}``,
            the multi-hot targets of each system's documents in batch order
            (``[0, C]`` for a system absent from the batch).
        ids (list): The documents' ``_id`` in batch order.
    """

    input_ids: Tensor
    attention_mask: Tensor
    system: Tensor
    labels: dict[str, Tensor]
    ids: list = field(default_factory=list)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> JointBatch:
        """Move all tensors to ``device`` (returns a new batch)."""
        return JointBatch(
            input_ids=self.input_ids.to(device, non_blocking=non_blocking),
            attention_mask=self.attention_mask.to(device, non_blocking=non_blocking),
            system=self.system.to(device, non_blocking=non_blocking),
            labels={k: v.to(device, non_blocking=non_blocking) for k, v in self.labels.items()},
            ids=list(self.ids),
        )

    def pin_memory(self) -> JointBatch:
        return JointBatch(
            self.input_ids.pin_memory(), self.attention_mask.pin_memory(),
            self.system.pin_memory(), {k: v.pin_memory() for k, v in self.labels.items()},
            list(self.ids),
        )

    def mask(self, system: System) -> Tensor:
        """BoolTensor ``[B]``: the documents of ``system``."""
        return self.system == SYSTEM_IDS[check_system(system)]

    def __len__(self) -> int:
        return self.input_ids.size(0)


class JointCollator:
    """Collate :class:`JointItem` lists into a :class:`JointBatch`.

    Args:
        num_codes (dict[str, int]): Label vocabulary size of each system.
        pad_id (int): Padding id (0).
    """

    def __init__(self, num_codes: dict[str, int], pad_id: int = PAD_ID) -> None:
        self.num_codes = dict(num_codes)
        self.pad_id = pad_id

    def __call__(self, items: Sequence[JointItem]) -> JointBatch:
        input_ids, mask = pad_sequences([it.input_ids for it in items], self.pad_id)
        systems = torch.tensor([it.system for it in items], dtype=torch.long)
        labels: dict[str, Tensor] = {}
        for name, sid in SYSTEM_IDS.items():
            if name not in self.num_codes:
                continue
            mine = [it for it in items if it.system == sid]
            target = torch.zeros(len(mine), self.num_codes[name])
            for row, it in enumerate(mine):
                target[row, it.labels] = 1.0
            labels[name] = target
        return JointBatch(input_ids, mask, systems, labels, [it.id for it in items])


def collate_joint(
    items: Sequence[JointItem], num_codes: dict[str, int], pad_id: int = PAD_ID
) -> JointBatch:
    """Functional form of :class:`JointCollator`."""
    return JointCollator(num_codes, pad_id)(items)


def _encoder(tokenizer, max_length: int) -> tuple[Callable[[str], list[int]], int]:
    """An ``encode(text) -> ids`` function and the pad id for a WordTokenizer,
    a Hugging Face tokenizer or a plain callable."""
    if hasattr(tokenizer, "vocab") and hasattr(tokenizer, "max_length") and hasattr(
        tokenizer, "encode"
    ):  # WordTokenizer
        return (lambda text: tokenizer.encode(text, max_length=max_length)), PAD_ID
    if hasattr(tokenizer, "pad_token_id") and hasattr(tokenizer, "encode"):  # Hugging Face
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else PAD_ID
        return (
            lambda text: tokenizer.encode(text, truncation=True, max_length=max_length)
        ), pad
    if callable(tokenizer):
        return (lambda text: list(tokenizer(text))[:max_length]), PAD_ID
    raise TypeError(f"cannot encode texts with {type(tokenizer).__name__}")


class JointCodingDataset(Dataset):
    """Documents of one split from ICD-9 and/or ICD-10 datasets, each tagged
    with its system, labels as indices into that system's label vocabulary.

    Items are :class:`JointItem`; ICD-9 documents come first (in file order),
    then ICD-10 documents. Texts are encoded lazily (and cached with
    ``cache=True``).

    Args:
        datasets (dict[str, CodingDataset] or sequence): The systems to mix,
            e.g. ``{"icd9": ds9, "icd10": ds10}`` or ``[ds9, ds10]``; one
            system alone also works (single-system training).
        split (str): ``"train"``, ``"val"`` or ``"test"``.
        tokenizer: A :class:`~jams_pyg.data.text.WordTokenizer`, a Hugging
            Face tokenizer (encoded with truncation) or ``text -> ids``.
        max_length (int): Maximum tokens per document (4,000).
        codes (dict[str, list[str]], optional): Label vocabularies; default
            each dataset's ``codes``.
        cache (bool): Keep encoded documents in memory.

    Raises:
        ValueError: naming the document and code, for a code that is not in
            its system's label vocabulary.
    """

    def __init__(
        self,
        datasets: dict[str, CodingDataset] | Sequence[CodingDataset],
        split: str,
        tokenizer,
        max_length: int = DEFAULT_MAX_LENGTH,
        codes: dict[str, Sequence[str]] | None = None,
        cache: bool = True,
    ) -> None:
        if not isinstance(datasets, dict):
            datasets = {ds.system: ds for ds in datasets}
        if not datasets:
            raise ValueError("give at least one CodingDataset")
        for name, ds in datasets.items():
            check_system(name)
            if ds.system != name:
                raise ValueError(f"dataset under key {name!r} is a {ds.system} dataset")
        self.systems: list[str] = [s for s in SYSTEMS if s in datasets]
        self.split = split
        self.max_length = max_length
        self.codes: dict[str, list[str]] = {
            s: list(codes[s]) if codes is not None and s in codes else list(datasets[s].codes)
            for s in self.systems
        }
        self._encode, self.pad_id = _encoder(tokenizer, max_length)
        self.texts: list[str] = []
        self.system_ids: list[int] = []
        self.ids: list[object] = []
        self.label_indices: list[list[int]] = []
        for s in self.systems:
            frame = datasets[s].split(split)
            index = {code: i for i, code in enumerate(self.codes[s])}
            for doc_id, text, target in zip(
                frame[ID_COLUMN].tolist(), frame[TEXT_COLUMN].tolist(),
                frame[TARGET_COLUMN].tolist(), strict=True,
            ):
                labels = []
                for code in target:
                    if code not in index:
                        raise ValueError(
                            f"{s} {split} document _id {doc_id!r}: code {code!r} is not in "
                            f"the {s} label vocabulary ({len(index)} codes)"
                        )
                    labels.append(index[code])
                self.texts.append(text)
                self.system_ids.append(SYSTEM_IDS[s])
                self.ids.append(doc_id)
                self.label_indices.append(labels)
        # Approximate token counts (white-space words) for length bucketing.
        self.lengths: list[int] = [min(t.count(" ") + 1, max_length) for t in self.texts]
        self._cache: list[list[int] | None] | None = [None] * len(self.texts) if cache else None

    @property
    def num_codes(self) -> dict[str, int]:
        return {s: len(c) for s, c in self.codes.items()}

    def collator(self) -> JointCollator:
        """The collate function for a :class:`~torch.utils.data.DataLoader`."""
        return JointCollator(self.num_codes, self.pad_id)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> JointItem:
        ids = None if self._cache is None else self._cache[index]
        if ids is None:
            ids = self._encode(self.texts[index])
            if self._cache is not None:
                self._cache[index] = ids
        return JointItem(ids, self.system_ids[index], self.label_indices[index], self.ids[index])

    def __repr__(self) -> str:
        counts = ", ".join(
            f"{s}={self.system_ids.count(SYSTEM_IDS[s])}" for s in self.systems
        )
        return f"JointCodingDataset(split={self.split!r}, {counts})"


class BucketBatchSampler(Sampler[list[int]]):
    """Length-bucketing batch sampler over a dataset mixing both systems, with
    optional sharding for distributed training.

    Two ways to group documents of similar length, both reshuffled every epoch
    (seed + epoch) and both mixing the systems (documents of both share the
    groups):

    * ``boundaries`` given, the official sampler (GY-Jeong/JAMS and Edin et al.,
      ``src/data/batch_sampler.py``, ``BySequenceLengthSampler``, with the
      boundaries of ``configs/dataloader/defaults.yaml``): a document of length
      ``n`` goes to the fixed bucket ``[b_i, b_{i+1})`` (below the first boundary
      and from the last one on are buckets too); each bucket is shuffled and cut
      into batches, and with ``drop_last`` its incomplete last batch is dropped
      (a different one every epoch); the batches of all buckets are shuffled
      together. Lengths are token counts after truncation, as theirs.
    * ``boundaries=None``: the indices are shuffled, cut into pools of
      ``batch_size * pool_batches`` documents, each pool sorted by length and cut
      into batches (with ``drop_last`` each pool's incomplete last batch is
      dropped); the batch order is shuffled again. Our own scheme, which the
      synthetic presets keep.
 All ranks compute the same
    batch list and rank ``r`` takes batches ``r, r + world_size, ...``; when
    the number of batches is not a multiple of ``world_size`` the list is
    padded by repeating its first batches (``drop_last=False``, as
    :class:`~torch.utils.data.DistributedSampler` does) or the surplus
    batches are dropped (``drop_last=True``), so every rank sees the same
    number of batches.

    Args:
        lengths (Sequence[int]): Length of each document.
        batch_size (int): Documents per batch.
        shuffle (bool): Shuffle (else: index order, no bucketing).
        seed (int): Base seed.
        pool_batches (int): Batches per sorting pool.
        rank (int): This process's rank.
        world_size (int): Number of processes.
        drop_last (bool): Drop the incomplete batches (one per bucket or pool)
            and the batches that do not divide evenly among ranks.
        boundaries (Sequence[int], optional): Increasing length boundaries of
            fixed buckets (the official ones:
            :data:`~jams_pyg.train.config.OFFICIAL_BUCKET_BOUNDARIES`); ``None``
            sorts pools instead.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        pool_batches: int = 50,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        boundaries: Sequence[int] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in range for world_size {world_size}")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.pool_batches = max(1, pool_batches)
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        if boundaries is not None:
            boundaries = [int(b) for b in boundaries]
            if not boundaries or any(b >= c for b, c in itertools.pairwise(boundaries)):
                raise ValueError(f"boundaries must be increasing and non-empty, got "
                                 f"{boundaries}")
        self.boundaries = boundaries
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the shuffle of ``epoch`` (call before each epoch, as with
        :class:`~torch.utils.data.DistributedSampler`)."""
        self.epoch = epoch

    def _global_batches(self) -> list[list[int]]:
        n = len(self.lengths)
        indices = list(range(n))
        if not self.shuffle:
            batches = [indices[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        elif self.boundaries is not None:
            rng = random.Random(self.seed * 1_000_003 + self.epoch)
            buckets: dict[int, list[int]] = {}
            for i in indices:  # bisect_right: a length equal to a boundary opens its bucket
                buckets.setdefault(bisect.bisect_right(self.boundaries, self.lengths[i]),
                                   []).append(i)
            batches = []
            for bucket in sorted(buckets):
                members = buckets[bucket]
                rng.shuffle(members)
                batches.extend(members[i : i + self.batch_size]
                               for i in range(0, len(members), self.batch_size))
            rng.shuffle(batches)
        else:
            rng = random.Random(self.seed * 1_000_003 + self.epoch)
            rng.shuffle(indices)
            pool = self.batch_size * self.pool_batches
            batches = []
            for start in range(0, n, pool):
                chunk = sorted(indices[start : start + pool], key=lambda i: self.lengths[i])
                batches.extend(
                    chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)
                )
            rng.shuffle(batches)
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
            batches = batches[: len(batches) - len(batches) % self.world_size]
        elif batches and len(batches) % self.world_size:
            extra = self.world_size - len(batches) % self.world_size
            batches = batches + [batches[i % len(batches)] for i in range(extra)]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._global_batches()[self.rank :: self.world_size]

    def __len__(self) -> int:
        n = len(self.lengths)
        if self.drop_last:
            if self.shuffle:
                # Pools and buckets may leave one short batch each; count exactly.
                return len(self._global_batches()) // self.world_size
            full = n // self.batch_size
            return (full - full % self.world_size) // self.world_size
        return math.ceil(self._num_batches() / self.world_size)

    def _num_batches(self) -> int:
        n = len(self.lengths)
        if not self.shuffle:
            return math.ceil(n / self.batch_size)
        if self.boundaries is not None:
            return len(self._global_batches())
        pool = self.batch_size * self.pool_batches
        full, rest = divmod(n, pool)
        return full * self.pool_batches + math.ceil(rest / self.batch_size)
