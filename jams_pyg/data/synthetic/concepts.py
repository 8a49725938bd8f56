"""The latent clinical concepts of the synthetic corpus: the head of real top MIMIC-III
diagnoses, GEM-linked concepts with their ICD-10 variants, unlinked codes and procedures,
with their words and popularity (see :mod:`jams_pyg.data.synthetic`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from jams_pyg.data.synthetic.words import FILLER, PseudoWords, title_words
from jams_pyg.graph.gem_graph import GEMGraph
from jams_pyg.icd.codes import OTHER_SYSTEM, System, format_code, parse_code
from jams_pyg.icd.titles import load_titles

# Concepts per group at the default size; the counts scale with the square root of the
# size factor (documents scale with the factor itself).
_CONCEPTS = {"linked": 150, "only9": 20, "only10": 30, "proc": 28}
_ZIPF_EXPONENT = 1.1
_DX_RANGES = ((240, 289), (390, 629))
_ICD10_PREFIXES = ("D5", "D6", "E", "I", "J", "K", "N")

#: The 50 most frequent ICD-9 codes of MIMIC-III discharge summaries, in the
#: published order: Mullenbach et al., "Explainable Prediction of Medical Codes
#: from Clinical Text", NAACL 2018 (CAML), file
#: ``mimicdata/mimic3/TOP_50_CODES.csv`` of github.com/jamesmullenbach/caml-mimic
#: (the MIMIC-III-50 label set of later work). Diagnoses and procedures mixed.
MIMIC3_TOP50_CODES: tuple[str, ...] = (
    "401.9", "38.93", "428.0", "427.31", "414.01", "96.04", "96.6", "584.9", "250.00",
    "96.71", "272.4", "518.81", "99.04", "39.61", "599.0", "530.81", "96.72", "272.0",
    "285.9", "88.56", "244.9", "486", "38.91", "285.1", "36.15", "276.2", "496", "99.15",
    "995.92", "V58.61", "507.0", "038.9", "88.72", "585.9", "403.90", "311", "305.1",
    "37.22", "412", "33.24", "39.95", "287.5", "410.71", "276.1", "V45.81", "424.0",
    "45.13", "V15.82", "511.9", "37.23",
)
#: The diagnoses of :data:`MIMIC3_TOP50_CODES` (33 of 50), in its order: the
#: head concepts of the corpus. The corpus's procedure concepts are drawn
#: by body part (and by default not GEM-linked), so the list's 17
#: procedures are left out. 276.2 (acidosis) is left out too: its only GEM
#: partner, E87.2, has no 2024 ICD-10-CM title (split into E87.20-E87.29).
TOP_DIAGNOSES: tuple[str, ...] = tuple(
    c for c in MIMIC3_TOP50_CODES if parse_code(c, "icd9")[0] == "dx" and c != "276.2"
)
#: Probability of a head concept's main ICD-10 partner (the forward-GEM target
#: whose title is nearest the ICD-9 title); other forward targets share the rest.
_HEAD_MAIN_P = 0.85
_HEAD_SIGMA = 0.1
#: Zipf exponent within the head: flatter than the tail's, as in MIMIC-III
#: (401.9 in ~38 % of admissions, the 20th diagnosis in ~6 %).
_HEAD_EXPONENT = 0.6
#: The tail starts at this fraction of the last head weight, then falls as
#: Zipf with :data:`_ZIPF_EXPONENT`.
_TAIL_GAP = 0.3


@dataclass
class Concept:
    """A latent clinical concept of the generator.

    Attributes:
        name (str): ``"c017"``.
        group (str): ``"linked"``, ``"only9"``, ``"only10"`` or ``"proc"``.
        icd9 (str or None): Its ICD-9 code (dotted), None for ICD-10-only.
        icd10 (list[str]): Its ICD-10 variants (dotted); empty for ICD-9-only.
        variant_probs (list[float]): Probability of each variant.
        core_words (list[str]): Words mentioned whatever the variant.
        variant_words (list[list[str]]): Words specific to each variant.
        weight (dict[str, float]): Popularity in each system (0 = absent).
        key_words (list[str]): Words of ``core_words`` every mention carries
            (head concepts; empty for the others).
    """

    name: str
    group: str
    icd9: str | None
    icd10: list[str]
    variant_probs: list[float]
    core_words: list[str]
    variant_words: list[list[str]]
    weight: dict[str, float] = field(default_factory=dict)
    key_words: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "name": self.name, "group": self.group, "icd9": self.icd9, "icd10": self.icd10,
            "variant_probs": [round(p, 6) for p in self.variant_probs],
            "core_words": self.core_words, "variant_words": self.variant_words,
            "weight": {k: round(v, 6) for k, v in self.weight.items()},
            "key_words": self.key_words,
        }



def _neighbour_codes(graph: GEMGraph, system: System) -> dict[str, list[str]]:
    """Each linked code of ``system`` -> the other system's codes that update it, dotted."""
    adj = graph.adjacency(system)
    names, others = graph.codes(system), graph.codes(OTHER_SYSTEM[system])
    ptr, neighbor = adj.ptr.tolist(), adj.neighbor.tolist()
    return {names[i]: [others[j] for j in neighbor[ptr[i]:ptr[i + 1]]]
            for i in range(len(names)) if ptr[i] < ptr[i + 1]}


@cache
def _gem_links() -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, list[str]]]:
    """``(forward, n9, n10)`` over the shipped GEMs: ICD-9 diagnosis -> its ICD-10-CM
    targets in the forward GEM (``2018_I9gem.txt``), and ``icd9 -> [icd10]``,
    ``icd10 -> [icd9]`` over the pairs mapped by either file; dotted codes."""
    directional = GEMGraph.from_cms_2018(procedures=False)
    union = directional.to_union()
    return (_neighbour_codes(directional, "icd9"), _neighbour_codes(union, "icd9"),
            _neighbour_codes(union, "icd10"))


_BODY_PARTS = ("heart", "colon", "kidney", "lung", "stomach", "liver", "esophagus", "trachea",
               "gallbladder", "spinal", "small intestine", "bladder", "skin")


@cache
def _procedure_gem_targets() -> dict[str, tuple[str, ...]]:
    """ICD-9 procedure (raw) -> its ICD-10-PCS targets in the shipped forward procedure GEM
    ``gem_i9pcs.txt`` (no-map lines left out), sorted."""
    from jams_pyg.icd.gem import cms_procedure_gem_path, read_gem_file

    frame = read_gem_file(cms_procedure_gem_path(), kind="proc")
    frame = frame[~frame["no_map"]]
    targets: dict[str, set[str]] = {}
    for source, target in zip(frame["source"].tolist(), frame["target"].tolist(),
                              strict=True):
        targets.setdefault(source, set()).add(target)
    return {source: tuple(sorted(codes)) for source, codes in targets.items()}


@cache
def _pcs_candidates(part: str) -> list[tuple[str, frozenset[str]]]:
    """ICD-10-PCS codes whose title names ``part``, with their title words."""
    return [
        (code, frozenset(title_words(title)))
        for code, title in sorted(load_titles("icd10", "proc").items())
        if part in title.lower()
    ]


def _in_ranges(code9: str) -> bool:
    head = code9[:3]
    if not head.isdigit():
        return False
    n = int(head)
    return any(lo <= n <= hi for lo, hi in _DX_RANGES)



def build_concepts(rng: np.random.Generator, scale: float, procedure_links: bool = True
                   ) -> tuple[list[Concept], list[str]]:
    """The concepts and the background (filler) words from unrelated titles.

    ``procedure_links``: a procedure concept's ICD-10-PCS variants are targets of its ICD-9
    procedure in the shipped forward procedure GEM (the titled ones sharing most of its
    words), so that procedure codes are GEM-linked (default); off (the corpus before issue
    #19), they are the PCS codes of the same body part whose titles share most of its words,
    whether or not the GEM maps them."""
    forward, n9, n10 = _gem_links()
    t9, t10 = load_titles("icd9", "dx"), load_titles("icd10", "dx")
    t9p, t10p = load_titles("icd9", "proc"), load_titles("icd10", "proc")

    def title9(code: str) -> str | None:
        return t9.get(parse_code(code, "icd9")[1])

    def title10(code: str) -> str | None:
        return t10.get(parse_code(code, "icd10")[1])

    factor = math.sqrt(scale)
    counts = {k: max(3, round(v * factor)) for k, v in _CONCEPTS.items()}
    concepts: list[Concept] = []
    used9: set[str] = set()
    used10: set[str] = set()

    # The head: the published top diagnoses in their order (at most half of
    # the linked concepts, so that small corpora keep random linked ones),
    # each with its titled forward-GEM targets, the one whose title is
    # nearest the ICD-9 title first.
    for c9 in TOP_DIAGNOSES[: max(1, counts["linked"] // 2)]:
        core = title_words(title9(c9))
        options = [x for x in forward.get(c9, []) if title10(x) and x not in used10]
        if not core or not options:
            continue
        overlap = [len(set(core) & set(title_words(title10(x)))) / len(set(core) | set(
            title_words(title10(x)))) for x in options]
        main = int(np.argmax(overlap))
        variants = [options[main]] + [x for j, x in enumerate(options) if j != main]
        rest = len(variants) - 1
        probs = [1.0] if not rest else [_HEAD_MAIN_P] + [(1 - _HEAD_MAIN_P) / rest] * rest
        main_words = set(title_words(title10(variants[0])))
        key = [w for w in core if w in main_words]
        key += [w for w in core if w not in key][: max(0, 2 - len(key))]
        concepts.append(Concept(
            f"c{len(concepts):03d}", "linked", c9, variants, probs, core,
            [[w for w in title_words(title10(v)) if w not in core] for v in variants],
            key_words=key,
        ))
        used9.add(c9)
        used10.update(variants)
    n_head = len(concepts)

    candidates = sorted(
        c for c in n9
        if _in_ranges(c) and title9(c) and any(title10(x) for x in n9[c])
    )
    order = rng.permutation(len(candidates))
    for i in order:
        if len(concepts) >= counts["linked"]:
            break
        c9 = candidates[int(i)]
        if c9 in used9:
            continue
        options = sorted(x for x in n9[c9] if title10(x) and x not in used10)
        if not options:
            continue
        k = min(len(options), int(rng.choice([1, 2, 3], p=[0.3, 0.35, 0.35])))
        variants = sorted(options[int(j)] for j in rng.choice(len(options), k, replace=False))
        core = title_words(title9(c9))
        vwords = [[w for w in title_words(title10(v)) if w not in core] for v in variants]
        concepts.append(Concept(
            f"c{len(concepts):03d}", "linked", c9, variants,
            sorted(rng.dirichlet(np.full(k, 1.5)).tolist(), reverse=True), core, vwords,
        ))
        used9.add(c9)
        used10.update(variants)

    # ICD-10-only: ICD-10-CM codes none of whose GEM partners is an ICD-9 code in use.
    cands10 = sorted(
        c for c in n10
        if c.startswith(_ICD10_PREFIXES) and c not in used10 and title10(c)
        and not used9.intersection(n10[c])
    )
    for i in rng.permutation(len(cands10))[: counts["only10"]]:
        c10 = cands10[int(i)]
        concepts.append(Concept(
            f"c{len(concepts):03d}", "only10", None, [c10], [1.0], title_words(title10(c10)), [[]],
        ))
        used10.add(c10)
    # ICD-9-only: ICD-9 codes none of whose GEM partners is an ICD-10 code in use.
    cands9 = sorted(
        c for c in n9
        if _in_ranges(c) and c not in used9 and title9(c) and not used10.intersection(n9[c])
    )
    for i in rng.permutation(len(cands9))[: counts["only9"]]:
        c9 = cands9[int(i)]
        concepts.append(Concept(
            f"c{len(concepts):03d}", "only9", c9, [], [], title_words(title9(c9)), [],
        ))
        used9.add(c9)

    # Procedures: an ICD-9 procedure and the PCS codes sharing most of its words (with
    # procedure_links: among its forward procedure GEM targets).
    pcs_gem = _procedure_gem_targets() if procedure_links else {}
    proc9 = sorted(c for c in t9p if not procedure_links
                   or any(x in t10p for x in pcs_gem.get(c, ())))
    for _ in range(counts["proc"] * 20):
        if sum(c.group == "proc" for c in concepts) >= counts["proc"]:
            break
        part = _BODY_PARTS[int(rng.integers(0, len(_BODY_PARTS)))]
        options = [c for c in proc9 if part in t9p[c].lower()]
        raw9 = options[int(rng.integers(0, len(options)))]
        code9 = format_code(raw9, "icd9", "proc")
        if code9 in used9:
            continue
        words9 = set(title_words(t9p[raw9]))
        pcs = (_pcs_candidates(part) if not procedure_links else
               [(x, frozenset(title_words(t10p[x]))) for x in pcs_gem[raw9] if x in t10p])
        scored = sorted((-len(words9 & w) / len(words9 | w), c) for c, w in pcs)
        k = int(rng.choice([1, 2], p=[0.5, 0.5]))
        variants = sorted(c for _, c in scored[:k] if c not in used10)
        if not variants:
            continue
        core = title_words(t9p[raw9])
        concepts.append(Concept(
            f"c{len(concepts):03d}", "proc", code9, variants,
            sorted(rng.dirichlet(np.full(len(variants), 1.5)).tolist(), reverse=True), core,
            [[w for w in title_words(t10p[v]) if w not in core][:6] for v in variants],
        ))
        used9.add(code9)
        used10.update(variants)

    # Synonyms (concept-specific pseudo-words) and one pseudo-word per variant.
    taken = {w for c in concepts for w in c.core_words} | set(FILLER)
    pseudo = PseudoWords(rng, taken)
    for c in concepts:
        c.core_words = [*c.core_words, pseudo(), pseudo()]
        c.variant_words = [[*ws, pseudo()] for ws in c.variant_words]

    # Popularity: Zipf over the head in its published order, then the rest in
    # a random order, perturbed per system (less in the head).
    ranks = np.concatenate([np.arange(n_head), n_head + rng.permutation(len(concepts) - n_head)])
    for c, r in zip(concepts, ranks, strict=True):
        r = int(r)
        base = ((r + 1) ** -_HEAD_EXPONENT if r < n_head else _TAIL_GAP * max(n_head, 1) ** (
            -_HEAD_EXPONENT) * ((r + 1) / max(n_head, 1)) ** -_ZIPF_EXPONENT)
        sigma = _HEAD_SIGMA if r < n_head else 0.5
        c.weight = {
            s: 0.0 if (s == "icd9" and c.group == "only10") or (
                s == "icd10" and c.group == "only9") else base * float(rng.lognormal(0, sigma))
            for s in ("icd9", "icd10")
        }
    # The head keeps the top ranks: a tail concept perturbed above the least
    # frequent head concept of a system is brought just below it.
    if n_head:
        for s in ("icd9", "icd10"):
            floor = 0.9 * min(c.weight[s] for c in concepts[:n_head])
            for c in concepts[n_head:]:
                c.weight[s] = min(c.weight[s], floor)

    taken_words = {w for c in concepts for w in c.core_words}
    taken_words.update(w for c in concepts for ws in c.variant_words for w in ws)
    background = sorted({
        w for code, t in t9.items()
        if not _in_ranges(format_code(code, "icd9", "dx")) for w in title_words(t)
    } - taken_words - set(FILLER))
    pick = rng.choice(len(background), min(400, len(background)), replace=False)
    return concepts, [background[int(i)] for i in sorted(pick)]
