"""Process-group helpers for ``torchrun`` (DistributedDataParallel).

``torchrun --nproc_per_node=N`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``;
without them everything runs as one process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

# one home below training and inference; importable here as before
from jams_pyg.models.runtime import unwrap_model as unwrap_model


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group that ``torchrun`` describes (NCCL on GPU, gloo on
    CPU). A no-op returning rank 0 of 1 when not launched by ``torchrun``."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size)


def shard_batch(batch: list[int], info: DistInfo) -> list[int]:
    """The part of a global batch that this rank computes.

    Every rank takes every ``world_size``-th document, so N processes with a
    global batch of B see exactly the documents one process sees with B;
    DDP's gradient average then equals the one-process gradient, because the
    JAMS loss is a mean over documents (equation 3).
    """
    if not info.enabled:
        return batch
    if len(batch) % info.world_size:
        raise ValueError(
            f"a global batch of {len(batch)} documents does not split evenly over "
            f"{info.world_size} processes; use a batch size divisible by the world size "
            "(the last, smaller batch of an epoch is dropped under DDP)"
        )
    return batch[info.rank :: info.world_size]


def mean_over_ranks(value: float, info: DistInfo, device: torch.device) -> float:
    """The mean of ``value`` over all ranks (``value`` itself in one process).

    Every rank gets the same result, so a decision taken on it (e.g. stopping a
    diverged run) is taken by all ranks together and none is left waiting in a
    collective. ``device`` must suit the backend (CUDA for NCCL).
    """
    if not info.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / info.world_size


def has_unused_parameters(systems: Sequence[str]) -> bool:
    """Whether a model of ``systems`` may leave parameters without a gradient in a step,
    so that DDP must look for them (``find_unused_parameters=True``, which costs a walk of
    the autograd graph after every forward).

    A model of several systems reads mixed batches (JAMS trains on ICD-9 and ICD-10
    documents together), and a micro-batch, or one process's share of it, may hold the
    documents of one system only: the other system's head, output layer and bias, and its
    encoder where encoders are per system, get no gradient in that micro-step. A model of
    one system uses every parameter in every step (``tests/test_distributed.py`` checks
    the word backbones with both output layers), and DDP without the search then also
    refuses a parameter left unused by mistake instead of hiding it.
    """
    return len(tuple(systems)) > 1


def wrap_ddp(model: nn.Module, device: torch.device, systems: Sequence[str]
             ) -> DistributedDataParallel:
    """``model`` under :class:`~torch.nn.parallel.DistributedDataParallel`, looking for
    unused parameters only where a model of ``systems`` has them
    (:func:`has_unused_parameters`)."""
    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=has_unused_parameters(systems),
    )


def gradient_sync(model: nn.Module, sync: bool) -> AbstractContextManager[Any]:
    """The context of one accumulation micro-step (forward and backward): under DDP,
    ``model.no_sync()`` unless ``sync``, so gradients add up locally and are all-reduced
    once, in the step's last micro-batch (as nanoGPT's ``train.py``, which sets
    ``require_backward_grad_sync`` on the last micro-step only). The summed gradient is the
    same; the micro-steps before the last send nothing."""
    if sync or not isinstance(model, DistributedDataParallel):
        return nullcontext()
    return model.no_sync()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
