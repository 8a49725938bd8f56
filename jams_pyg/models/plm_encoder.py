r"""The PLM-ICD text encoder: a local Hugging Face RoBERTa-style model over chunks of the
document (Huang et al., 2022; Edin et al.'s ``plm_icd.py``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from jams_pyg.models.encoders import TextEncoder, check_inputs

__all__ = ["PLMEncoder"]


def _load_plm(path_or_config: Any) -> nn.Module:
    from transformers import AutoConfig, AutoModel, PretrainedConfig

    if isinstance(path_or_config, dict):
        params = dict(path_or_config)
        model_type = params.pop("model_type", None)
        if model_type is None:
            raise ValueError("a PLM config dict needs a 'model_type' entry (e.g. 'roberta')")
        path_or_config = AutoConfig.for_model(model_type, **params)
    if isinstance(path_or_config, PretrainedConfig):
        try:
            return AutoModel.from_config(path_or_config, add_pooling_layer=False)
        except TypeError:
            return AutoModel.from_config(path_or_config)
    if isinstance(path_or_config, (str, Path)):
        path = Path(path_or_config)
        if not path.is_dir():
            raise FileNotFoundError(
                f"PLM directory {str(path)!r} does not exist (hub downloads are not used: "
                "give a local model directory or a transformers config)"
            )
        try:
            return AutoModel.from_pretrained(str(path), add_pooling_layer=False)
        except TypeError:
            return AutoModel.from_pretrained(str(path))
    raise TypeError(
        "plm_path_or_config must be a local directory, a transformers PretrainedConfig or a "
        f"config dict, got {type(path_or_config).__name__}"
    )


class PLMEncoder(TextEncoder):
    r"""PLM-ICD text encoder (Huang et al., 2022): a pretrained transformer over chunks.

    The token sequence is cut into chunks of ``chunk_size`` tokens, every chunk holding at
    least one token is encoded independently, and the chunk outputs are concatenated back
    into one sequence of length ``L``:

    .. math::
        \mathbf{H} = [\mathrm{PLM}(\mathbf{x}_{1:c}) \,\|\, \mathrm{PLM}(\mathbf{x}_{c+1:2c})
        \,\|\, \dots]_{1:L}

    Pad positions (mask false) are fed as the model's ``pad_token_id`` and masked out of
    self-attention; chunks made only of padding are not run.  No special tokens are
    inserted: the tokenizer decides the ids.

    Args:
        path_or_config: A local model directory (``AutoModel.from_pretrained``), a
            ``transformers.PretrainedConfig`` or a config dict with ``model_type``
            (randomly initialised model, e.g. for tests).
        chunk_size (int, optional): Tokens per chunk. (default: :obj:`128`)

    Shapes:
        - **input:** ``input_ids [B, L]``, ``attention_mask [B, L]``
        - **output:** ``H [B, L, hidden_size]``, ``mask [B, L]``
    """

    def __init__(self, path_or_config: Any, chunk_size: int = 128) -> None:
        super().__init__()
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.plm = _load_plm(path_or_config)
        cfg = self.plm.config
        self.chunk_size = chunk_size
        self.out_channels = int(cfg.hidden_size)
        pad = getattr(cfg, "pad_token_id", None)
        self.pad_token_id = 0 if pad is None else int(pad)
        max_pos = getattr(cfg, "max_position_embeddings", None)
        # RoBERTa offsets positions by pad_token_id + 1
        if max_pos is not None and getattr(cfg, "model_type", "") in ("roberta", "xlm-roberta"):
            max_pos = max_pos - self.pad_token_id - 1
        if max_pos is not None and chunk_size > max_pos:
            raise ValueError(
                f"chunk_size {chunk_size} exceeds the model's {max_pos} position embeddings"
            )

    def reset_parameters(self) -> None:
        self.plm.init_weights()

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        mask = check_inputs(input_ids, attention_mask)
        batch, length = input_ids.shape
        c = self.chunk_size
        num_chunks = max(1, math.ceil(length / c))
        total = num_chunks * c
        ids = input_ids.masked_fill(~mask, self.pad_token_id)
        if total > length:
            ids = F.pad(ids, (0, total - length), value=self.pad_token_id)
            cmask = F.pad(mask, (0, total - length), value=False)
        else:
            cmask = mask
        ids = ids.view(batch * num_chunks, c)
        cmask = cmask.view(batch * num_chunks, c)
        keep = cmask.any(dim=1)
        out = self.plm(input_ids=ids[keep], attention_mask=cmask[keep].long())
        hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state
        h = hidden.new_zeros(batch * num_chunks, c, hidden.size(-1))
        h[keep] = hidden
        h = h.view(batch, total, -1)[:, :length]
        return h * mask.unsqueeze(-1).to(h.dtype), mask

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.plm.__class__.__name__}, "
            f"hidden={self.out_channels}, chunk_size={self.chunk_size})"
        )
