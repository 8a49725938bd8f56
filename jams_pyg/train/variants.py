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


#: How messages name the choices :func:`variant_for` moves a variant along.
_CHOICE_NAMES = {"gem_direction": "GEM reading", "output_layer": "output layer"}


def _reading(variant: str) -> dict[str, Any]:
    """What tells ``variant`` apart: its model fields (the GEM reading only with MAT),
    whether it trains one model per system and whether its MAT drops the procedure
    links."""
    fields = variant_model_fields(variant)
    return {**fields, "gem_direction": fields["gem_direction"] if fields["use_mat"] else None,
            "separate": variant in SEPARATE_VARIANTS,
            "diagnosis_links_only": variant in DIAGNOSIS_LINK_VARIANTS}


def variant_for(variant: str, gem_direction: str | None = None,
                output_layer: str | None = None) -> str:
    """The variant that is ``variant`` with the GEM reading and/or output layer asked for
    (``None``: ``variant``'s own): what ``jams-pyg train --gem-direction`` /
    ``--output-layer`` run in place of each chosen variant, so each choice keeps one home
    (the variant's :func:`variant_model_fields`).  Without MAT the GEM reading does not
    apply and ``variant`` stays.  A variant that is itself a choice other than the
    default (``union``, ``tied``, ``tied_backbone``) keeps it: asking for the default
    there is a contradiction, not a way back to ``jams``.

    Example:
        >>> variant_for("jams", gem_direction="union"), variant_for("backbone", "union")
        ('union', 'backbone')
        >>> variant_for("backbone", output_layer="code_table")
        'tied_backbone'

    Raises:
        ValueError: ``variant`` chooses otherwise (``union`` with ``"directional"``), or no
            variant is ``variant`` with those choices (e.g. ``unweighted`` over the union
            reading): the message names both.
    """
    wanted = _reading(variant)
    default = variant_model_fields("jams")
    asked = {"gem_direction": gem_direction, "output_layer": output_layer}
    for name, value in asked.items():
        own = wanted[name]
        if value is not None and own not in (None, default[name], value):
            raise ValueError(f"variant {variant!r} has the {_CHOICE_NAMES[name]} {own!r}; "
                             f"{value!r} contradicts it")
    if gem_direction is not None and wanted["use_mat"]:
        wanted["gem_direction"] = gem_direction
    if output_layer is not None:
        wanted["output_layer"] = output_layer
    found = [candidate for candidate in VARIANTS if _reading(candidate) == wanted]
    if found:
        return found[0]
    named = " and ".join(f"the {_CHOICE_NAMES[name]} {value!r}" for name, value in asked.items()
                         if value is not None)
    raise ValueError(f"variant {variant!r} has no counterpart with {named}: train it with "
                     "its own, or choose other variants")
