"""The learning-rate schedule of training (Edin et al.'s)."""

from __future__ import annotations

import torch


def linear_warmup_decay(optimizer: torch.optim.Optimizer, warmup_steps: int,
                        total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0 over ``warmup_steps``, then linear decay to 0 at
    ``total_steps``: the schedule of Edin et al. (``transformers``'
    ``get_linear_schedule_with_warmup``, the same factor step for step) as a plain
    :class:`torch.optim.lr_scheduler.LambdaLR`."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return float(step) / float(max(1, warmup_steps))
        return max(0.0, float(total_steps - step) / float(max(1, total_steps - warmup_steps)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


__all__ = ["linear_warmup_decay"]
