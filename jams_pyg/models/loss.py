"""The normalised joint loss of JAMS (eq. 3 of the paper)."""

from __future__ import annotations

from collections.abc import Mapping

import torch.nn.functional as F
from torch import Tensor

__all__ = ["jams_loss"]


def jams_loss(
    logits: Mapping[str, Tensor], labels: Mapping[str, Tensor], return_parts: bool = False
) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
    r"""Normalised joint loss (eq. 3):

    .. math::
        \mathcal{L} = \frac{\mathcal{L}_{\text{ICD-9}}\,\mu + \mathcal{L}_{\text{ICD-10}}\,
        \eta}{\mu + \eta}

    with :math:`\mu, \eta` the numbers of ICD-9 and ICD-10 documents of the batch and each
    :math:`\mathcal{L}_s` the binary cross-entropy with logits averaged over that system's
    documents and codes.  A system without documents in the batch drops out, so a batch of
    one system gives that system's loss.  Computed in float32.

    Args:
        logits (dict[str, Tensor]): ``{s: [B_s, C_s]}`` as returned by :class:`JAMS`.
        labels (dict[str, Tensor]): ``{s: [B_s, C_s]}`` multi-hot targets, same row order.
        return_parts (bool, optional): Also return ``{s: L_s}``.
    """
    total: Tensor | None = None
    count = 0
    parts: dict[str, Tensor] = {}
    for s, target in labels.items():
        n = int(target.size(0)) if target.dim() else 0
        if n == 0:
            continue
        if s not in logits:
            raise ValueError(f"labels have {n} {s} documents but logits have no {s!r} entry")
        pred = logits[s]
        if pred.shape != target.shape:
            raise ValueError(
                f"{s}: logits shape {tuple(pred.shape)} != labels shape {tuple(target.shape)}"
            )
        loss_s = F.binary_cross_entropy_with_logits(pred.float(), target.float())
        parts[s] = loss_s
        total = loss_s * n if total is None else total + loss_s * n
        count += n
    for s, pred in logits.items():
        if pred.size(0) and s not in labels:
            raise ValueError(f"logits have {pred.size(0)} {s} documents but labels have none")
    if total is None:
        raise ValueError("jams_loss: the batch has no documents")
    loss = total / count
    return (loss, parts) if return_parts else loss
