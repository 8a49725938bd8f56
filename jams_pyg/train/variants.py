"""What each compared run is: JAMS, the plain backbone, and the ablations that each change one
part of JAMS (torch-free: the command line lists them)."""

from __future__ import annotations

from typing import Any

#: ``jams``: the full method, as the official code. ``backbone``: the plain
#: backbone, one model per system (Edin et al.'s model). Ablations, each
#: changing one part of JAMS: ``no_mat`` (MAT off: joint training with the
#: shared encoder only, code tables not linked), ``unweighted`` (MAT with
#: ω = 1 for every link), ``mat_only`` (no shared encoder: one encoder per
#: system, joint training, tables linked by MAT), ``union`` (MAT over the
#: symmetric union of both GEM files instead of the directional graph),
#: ``no_proc_links`` (MAT over the diagnosis links only: the GEM graph without
#: the procedure GEM's links, on data whose run links procedure codes,
#: ``ExperimentConfig.procedure_links``). Our extension, the tied output layer
#: (``output_layer="code_table"``: output vectors derived from the code table):
#: ``tied`` (JAMS) and
#: ``tied_backbone`` (the plain backbone with it).
VARIANTS = ("jams", "backbone", "no_mat", "unweighted", "mat_only", "union", "no_proc_links",
            "tied", "tied_backbone")
#: The variants whose code tables MATConv links over the GEM graph.
MAT_VARIANTS = ("jams", "unweighted", "mat_only", "union", "no_proc_links", "tied")
#: The variants whose GEM graph leaves procedure codes unlinked whatever the run's setting.
DIAGNOSIS_LINK_VARIANTS = ("no_proc_links",)
#: The variants that train one plain model per system.
SEPARATE_VARIANTS = ("backbone", "tied_backbone")
#: The variants with the tied output layer (our extension).
TIED_VARIANTS = ("tied", "tied_backbone")
#: How the paper writes each backbone.
DISPLAY = {"laat": "LAAT", "caml": "CAML", "multirescnn": "MultiResCNN", "plm_icd": "PLM-ICD"}


def variant_label(model: str, variant: str) -> str:
    """The row label of a run in tables and logs: ``LAAT``, ``LAAT+JAMS``,
    ``LAAT+JAMS (no_mat)``, ``LAAT (tied)``."""
    name = DISPLAY[model]
    return {"jams": f"{name}+JAMS", "backbone": name,
            "tied_backbone": f"{name} (tied)"}.get(variant, f"{name}+JAMS ({variant})")


def variant_model_fields(variant: str) -> dict[str, Any]:
    """The :class:`~jams_pyg.models.ModelConfig` fields ``variant`` sets."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: expected one of {VARIANTS}")
    return {
        "use_mat": variant in MAT_VARIANTS,
        "edge_weighting": variant != "unweighted",
        "shared_encoder": variant != "mat_only",
        "gem_direction": "union" if variant == "union" else "directional",
        "output_layer": "code_table" if variant in TIED_VARIANTS else "separate",
    }
