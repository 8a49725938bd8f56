"""Inference: the checksummed model bundle (:mod:`.bundle`) and :class:`JAMSPredictor`,
which codes raw notes with evidence (:mod:`.predictor`, :mod:`.evidence`, :mod:`.notes`)."""

from jams_pyg.lazy import lazy_exports

_EXPORTS = {
    ".bundle": ("Bundle", "BundleError", "load_bundle", "save_bundle"),
    ".predictor": ("JAMSPredictor",),
}
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
