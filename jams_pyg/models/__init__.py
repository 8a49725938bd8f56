"""Backbones (encoders + label-attention heads) and the JAMS joint coding model."""

from jams_pyg.models.config import BACKBONES, ModelConfig
from jams_pyg.models.encoders import (
    CAMLEncoder,
    LSTMEncoder,
    MaskedBatchNorm1d,
    MultiResCNNEncoder,
    PLMEncoder,
    ResidualBlock,
    TextEncoder,
    make_word_embedding,
)
from jams_pyg.models.heads import CAMLHead, LAATHead, LabelAttentionHead, label_attention
from jams_pyg.models.jams import JAMS, JointCodingModel, build_model, jams_loss

__all__ = [
    "BACKBONES",
    "JAMS",
    "CAMLEncoder",
    "CAMLHead",
    "JointCodingModel",
    "LAATHead",
    "LSTMEncoder",
    "LabelAttentionHead",
    "MaskedBatchNorm1d",
    "ModelConfig",
    "MultiResCNNEncoder",
    "PLMEncoder",
    "ResidualBlock",
    "TextEncoder",
    "build_model",
    "jams_loss",
    "label_attention",
    "make_word_embedding",
]
