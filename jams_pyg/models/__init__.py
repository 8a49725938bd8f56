"""Backbones (encoders + label-attention heads) and the JAMS joint coding model (names load
on first use: :mod:`jams_pyg.models.config` alone does not import torch)."""

from jams_pyg.lazy import lazy_exports

_EXPORTS = {
    ".config": ("BACKBONES", "BACKBONE_CONFIGS", "CAMLConfig", "LAATConfig", "ModelConfig",
                "MultiResCNNConfig", "PLMICDConfig"),
    ".encoders": ("CAMLEncoder", "LSTMEncoder", "MaskedBatchNorm1d", "MultiResCNNEncoder",
                  "ResidualBlock", "TextEncoder", "make_word_embedding"),
    ".plm_encoder": ("PLMEncoder",),
    ".heads": ("CAMLHead", "LAATHead", "LabelAttentionHead", "label_attention",
               "label_attention_weights"),
    ".jams": ("JAMS", "JointCodingModel"),
    ".build": ("build_model",),
    ".loss": ("jams_loss",),
}
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
