"""How a model runs, for every layer above the models (training, evaluation, inference):
the plain model under its wrappers, and the mixed-precision context of a pass."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain model under DistributedDataParallel / DataParallel / torch.compile."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        else:
            return model


def autocast(device: torch.device, amp_dtype: torch.dtype | None
             ) -> AbstractContextManager[Any]:
    """Mixed precision in ``amp_dtype`` on CUDA; full precision when it is ``None``."""
    if amp_dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast("cuda", dtype=amp_dtype)


__all__ = ["autocast", "unwrap_model"]
