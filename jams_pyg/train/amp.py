"""Mixed precision of a training run: the autocast type and its gradient scaler.

The official JAMS trainer (GY-Jeong/JAMS, ``src/trainer/trainer.py``) and Edin et al.'s run
every CUDA forward pass under ``torch.autocast(device_type="cuda", dtype=torch.float16)`` and
scale the loss with ``torch.cuda.amp.GradScaler`` (``use_amp: true`` in
``configs/trainer/defaults.yaml``): that is ``amp_dtype="float16"``, the default of
:class:`~jams_pyg.train.config.TrainConfig`. ``"bfloat16"`` needs no scaler (its exponent range
is float32's); ``"auto"`` takes bfloat16 where the GPU supports it, else float16 with the
scaler. On a CPU training runs in float32 and the scaler is off.
"""

from __future__ import annotations

import torch

from jams_pyg.train.config import TrainConfig


def amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast type of a run on ``device``; ``None`` (float32) off CUDA or without
    ``config.amp``."""
    if not config.amp or device.type != "cuda":
        return None
    if config.amp_dtype == "float16":
        return torch.float16
    if config.amp_dtype == "bfloat16":
        return torch.bfloat16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def grad_scaler(dtype: torch.dtype | None, device: torch.device) -> torch.amp.GradScaler:
    """The loss scaler for autocast type ``dtype``: enabled for float16 only (its gradients
    underflow without it), a no-op otherwise (``scale`` returns the loss, ``step`` steps)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


__all__ = ["amp_dtype", "grad_scaler"]
