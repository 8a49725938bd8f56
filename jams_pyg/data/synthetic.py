"""A synthetic MIMIC-IV-like corpus linked by the real CMS GEMs.

MIMIC-IV is credentialed data; the embedded default, the examples and the tests
train on this generator instead. It writes both datasets in Edin et al.'s
format (:mod:`jams_pyg.data.edin`), so the same loader reads real and
synthetic data.

Generative story
----------------
* **The head: real inpatient diagnoses.** The most frequent concepts are the
  diagnoses of a published list of the most frequent codes of real inpatient
  coding, in its rank order (:data:`MIMIC3_TOP50_CODES`, MIMIC-III, Mullenbach
  et al. 2018; procedures of the list left out: :data:`TOP_DIAGNOSES`), each
  linked to its ICD-10-CM partners through the real forward GEM (401.9 and
  I10., 250.00 and E11.9, 584.9 and N17.9, 428.0 and I50.9, ...). Their
  mentions always carry their *key words* (the content words shared by the
  ICD-9 and ICD-10 titles, e.g. "hypertension", "diabetes mellitus", "acute
  kidney failure"), so a model learns to link these words to these codes.
  They are the first concepts (``c000`` = 401.9, ``c001`` = 428.0, ...).
* **Latent clinical concepts shared by both systems.** A *linked* concept is a
  real ICD-9-CM diagnosis (chapters 240-289 and 390-629) with its real GEM
  neighbours that still have a 2024 ICD-10-CM title; it keeps 1-3 of them as
  *variants* (the finer ICD-10 condition), each with a probability. A
  document of either system that carries the concept draws one variant; an
  ICD-9 document is coded with the concept's ICD-9 code, an ICD-10 document
  with the variant's ICD-10 code (one target per document when the GEM offers
  several). Every such (ICD-9, ICD-10) pair is a GEM edge.
* **Unlinked codes.** *ICD-9-only* and *ICD-10-only* diagnosis concepts occur
  in one system only and are chosen so that none of their GEM neighbours is in
  the other system's vocabulary; *procedure* concepts (an ICD-9 procedure and
  1-2 ICD-10-PCS codes that share a body part and words) occur in both
  systems but stay unlinked, since the procedure GEMs are not shipped.
* **Text.** The same process for both systems: each coded concept is mentioned
  once (5 % of codes are not mentioned at all) by a positive cue ("diagnosed
  with", ...), its key words (head concepts only) and a random subset of its
  other words: the content words of its
  ICD-9 title, two concept-specific pseudo-words (synonyms), and the words
  specific to the drawn variant (its ICD-10 title words and one pseudo-word).
  Documents also mention 0-2 uncoded *distractor* concepts behind negative
  cues ("no evidence of", ...), and are filled to 60-120 words with generic
  clinical words and words of unrelated CMS titles.
* **Frequencies.** Concept popularity is Zipf-like over a ranking whose first
  ranks are the head concepts in the published order (exponent 0.6: 401.9 is
  coded in ~40 % of ICD-9 documents, as in MIMIC-III) and the rest in a random
  order (exponent 1.1, from 0.3 x the last head weight down), perturbed per
  system (log-normal, sigma 0.1 in the head, 0.5 in the rest, capped below
  the head); patients carry 0-3
  chronic concepts that recur over their admissions. ICD-10 has fewer
  documents and, through variants, more codes than ICD-9 (as in the JAMS
  paper's Table 1). Rare ICD-10 codes with a frequent ICD-9 partner (and vice
  versa) are what JAMS can learn through the GEM links.

Scale: the default has ~1/85 of MIMIC-IV's training documents; the paper's
training-frequency buckets 1-100, 101-1,000, 1,001+ map to **1-10, 11-100,
101+** here (divide by 10; :data:`DEFAULT_BUCKET_EDGES`), all populated. Other
sizes scale the edges with the number of documents (:func:`bucket_edges_for`;
recorded as ``bucket_edges`` in ``synthetic_concepts.json``).

What it can and cannot show: it checks that the pipeline, the models and the
GEM-based transfer work and that rare linked codes can gain from the other
system; its absolute scores say nothing about real MIMIC-IV performance (the
text is a bag of title words and filler, not clinical language).

CLI::

    python -m jams_pyg.data.synthetic OUT_DIR --seed 0 --size default
"""

from __future__ import annotations

import gzip
import json
import math
import os
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import torch

from jams_pyg.atomic import atomic_open
from jams_pyg.data.defaults import SIZES, parse_size
from jams_pyg.data.edin import (
    SPLITS,
    code_columns,
    data_filename,
    load_edin_dataset,
    split_by_patient,
    split_filename,
)
from jams_pyg.data.text import clean_text
from jams_pyg.graph.gem_graph import GEMGraph
from jams_pyg.icd.codes import format_code, parse_code
from jams_pyg.icd.gem import cms_2018_gem_paths
from jams_pyg.icd.titles import load_titles

PathLike = str | os.PathLike[str]

#: Training-frequency bucket edges for the default size: codes seen 1-10,
#: 11-100 and 101+ times (the paper's 1-100 / 101-1,000 / 1,001+ divided by 10).
DEFAULT_BUCKET_EDGES: tuple[int, int] = (10, 100)
#: The paper's bucket edges (real MIMIC-IV).
PAPER_BUCKET_EDGES: tuple[int, int] = (100, 1000)


# Default-size parameters; documents scale with the size factor, concept
# counts with its square root.
_DOCS = {"icd9": 2400, "icd10": 1500}
_CONCEPTS = {"linked": 150, "only9": 20, "only10": 30, "proc": 28}
_ZIPF_EXPONENT = 1.1
_DX_RANGES = ((240, 289), (390, 629))
_ICD10_PREFIXES = ("D5", "D6", "E", "I", "J", "K", "N")
#: Words per document (mentions, then filler up to this length). Short enough
#: that the embedded LAAT default trains on the CPU in minutes.
_DOC_WORDS = (60, 120)
_DOCS_PER_PATIENT_P = {"icd9": 0.467, "icd10": 0.537}  # mean 2.14 / 1.86 (Table 1)

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
#: head concepts of the corpus. The corpus's procedure concepts are not
#: GEM-linked (the procedure GEMs are not shipped), so the list's 17
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

_STOPWORDS_TEXT = (
    "a an and as at by due for from in into its of on or other others the to with without "
    "not elsewhere classified unspecified specified site sites type nos than more"
)
_STOPWORDS = frozenset(_STOPWORDS_TEXT.split())
_POSITIVE_CUES = [
    "diagnosed with", "found to have", "treated for", "consistent with", "admitted for",
    "known", "assessment", "significant for", "managed for", "discharge diagnosis",
]
_NEGATIVE_CUES = [
    "no evidence of", "negative for", "ruled out", "denies", "no signs of", "unlikely",
    "family history of", "low suspicion for",
]
_FILLER_TEXT = (
    "patient admitted hospital discharge history present illness service medicine allergies "
    "known chief complaint major surgical invasive procedure physical exam vital signs stable "
    "general alert oriented pleasant comfortable distress heent normocephalic atraumatic neck "
    "supple lungs clear auscultation bilaterally cardiac regular rate rhythm murmurs abdomen "
    "soft nontender nondistended extremities warm well perfused edema neuro grossly intact "
    "pertinent results labs admission blood count glucose sodium potassium chloride "
    "bicarbonate creatinine urea nitrogen calcium magnesium phosphate imaging chest "
    "radiograph impression brief course presented emergency department evaluation vitals "
    "notable started continued held resumed home medications transitional issues follow up "
    "outpatient primary care provider instructed return worsening symptoms condition mental "
    "status level consciousness activity ambulatory independent disposition facility "
    "extended instructions dear mr ms pleasure caring you were why what happened while take "
    "your please call doctor tablet daily twice day mg po iv as needed bid tid qhs prn "
    "refills dose once weeks days hours overnight afebrile tolerated diet ambulating voiding "
    "remained hemodynamically monitored telemetry consult team recommended plan noted "
    "reviewed family social tobacco alcohol lives wife husband daughter son retired works "
    "reported initially subsequently improved trend repeat normal limits unremarkable mild "
    "moderate prior baseline per report the and of to was with in for on at he she his her "
    "is be had this that given also which after from"
)
_FILLER = _FILLER_TEXT.split()
_SYLLABLES = [c + v for c in "bcdfgklmnprstvz" for v in "aeiou"]


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


def _words(title: str) -> list[str]:
    seen: list[str] = []
    for word in clean_text(title).split():
        if word in _STOPWORDS or word.isdigit() or len(word) < 3 or word in seen:
            continue
        seen.append(word)
    return seen


def _scale(size: str | float) -> float:
    size = parse_size(size)
    return SIZES[size] if isinstance(size, str) else float(size)


@lru_cache(maxsize=2)
def _full_graph(direction: str = "directional") -> tuple[GEMGraph, dict, dict]:
    graph = GEMGraph.from_cms_2018(direction=direction)
    keys9 = {parse_code(c, "icd9"): i for i, c in enumerate(graph.icd9_codes)}
    keys10 = {parse_code(c, "icd10"): i for i, c in enumerate(graph.icd10_codes)}
    return graph, keys9, keys10


def cms_2018_graph(
    icd9_codes: list[str], icd10_codes: list[str], direction: str = "directional"
) -> GEMGraph:
    """``GEMGraph.from_cms_2018(icd9_codes, icd10_codes, direction)``, cut from
    a full graph cached in this process (the GEM files are parsed once)."""
    full, keys9, keys10 = _full_graph(direction)
    map9 = torch.full((full.num_icd9,), -1, dtype=torch.long)
    map10 = torch.full((full.num_icd10,), -1, dtype=torch.long)
    for codes, keys, mapping, system in ((icd9_codes, keys9, map9, "icd9"),
                                         (icd10_codes, keys10, map10, "icd10")):
        for i, code in enumerate(codes):
            j = keys.get(parse_code(code, system))
            if j is not None:
                mapping[j] = i

    def cut(edge_index: torch.Tensor, edge_weight: torch.Tensor) -> list[torch.Tensor]:
        row, col = map9[edge_index[0]], map10[edge_index[1]]
        keep = (row >= 0) & (col >= 0)
        row, col, weight = row[keep], col[keep], edge_weight[keep]
        order = torch.argsort(row * max(len(icd10_codes), 1) + col)
        return [torch.stack([row[order], col[order]]), weight[order]]

    edges = cut(full.icd9_edge_index, full.icd9_edge_weight)
    if full.direction != "union":
        edges += cut(full.icd10_edge_index, full.icd10_edge_weight)
    return GEMGraph(icd9_codes, icd10_codes, *edges)


@lru_cache(maxsize=1)
def _gem_neighbours() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """``(icd9 -> [icd10], icd10 -> [icd9])`` over the full shipped GEM graph
    (pairs mapped by either file), dotted codes."""
    graph = _full_graph()[0]
    n9: dict[str, list[str]] = {}
    n10: dict[str, list[str]] = {}
    for a, b in zip(graph.edge_index[0].tolist(), graph.edge_index[1].tolist(), strict=True):
        c9, c10 = graph.icd9_codes[a], graph.icd10_codes[b]
        n9.setdefault(c9, []).append(c10)
        n10.setdefault(c10, []).append(c9)
    return n9, n10


@lru_cache(maxsize=1)
def _forward_targets() -> dict[str, list[str]]:
    """ICD-9 diagnosis -> its ICD-10-CM targets in the shipped forward GEM
    (``2018_I9gem.txt``), dotted, in file order, no-map lines left out."""
    out: dict[str, list[str]] = {}
    with gzip.open(cms_2018_gem_paths()[0], "rt", encoding="ascii") as lines:
        for line in lines:
            src, tgt, flags = line.split()
            if flags[1] == "0":  # the second flag marks no-map lines
                out.setdefault(format_code(src.upper(), "icd9", "dx"), []).append(
                    format_code(tgt.upper(), "icd10", "dx"))
    return out


class _PseudoWords:
    def __init__(self, rng: np.random.Generator, taken: set[str]) -> None:
        self.rng = rng
        self.taken = set(taken)

    def __call__(self) -> str:
        while True:
            n = int(self.rng.integers(2, 4))
            word = "".join(_SYLLABLES[int(i)] for i in self.rng.integers(0, len(_SYLLABLES), n))
            word += "xrn"[int(self.rng.integers(0, 3))]
            if word not in self.taken:
                self.taken.add(word)
                return word


_BODY_PARTS = ("heart", "colon", "kidney", "lung", "stomach", "liver", "esophagus", "trachea",
               "gallbladder", "spinal", "small intestine", "bladder", "skin")


@cache
def _pcs_candidates(part: str) -> list[tuple[str, frozenset[str]]]:
    """ICD-10-PCS codes whose title names ``part``, with their title words."""
    return [
        (code, frozenset(_words(title)))
        for code, title in sorted(load_titles("icd10", "proc").items())
        if part in title.lower()
    ]


def _in_ranges(code9: str) -> bool:
    head = code9[:3]
    if not head.isdigit():
        return False
    n = int(head)
    return any(lo <= n <= hi for lo, hi in _DX_RANGES)


def _build_concepts(rng: np.random.Generator, scale: float) -> tuple[list[Concept], list[str]]:
    """The concepts and the background (filler) words from unrelated titles."""
    n9, n10 = _gem_neighbours()
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
    forward = _forward_targets()
    for c9 in TOP_DIAGNOSES[: max(1, counts["linked"] // 2)]:
        core = _words(title9(c9))
        options = [x for x in forward.get(c9, []) if title10(x) and x not in used10]
        if not core or not options:
            continue
        overlap = [len(set(core) & set(_words(title10(x)))) / len(set(core) | set(
            _words(title10(x)))) for x in options]
        main = int(np.argmax(overlap))
        variants = [options[main]] + [x for j, x in enumerate(options) if j != main]
        rest = len(variants) - 1
        probs = [1.0] if not rest else [_HEAD_MAIN_P] + [(1 - _HEAD_MAIN_P) / rest] * rest
        main_words = set(_words(title10(variants[0])))
        key = [w for w in core if w in main_words]
        key += [w for w in core if w not in key][: max(0, 2 - len(key))]
        concepts.append(Concept(
            f"c{len(concepts):03d}", "linked", c9, variants, probs, core,
            [[w for w in _words(title10(v)) if w not in core] for v in variants],
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
        core = _words(title9(c9))
        vwords = [[w for w in _words(title10(v)) if w not in core] for v in variants]
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
            f"c{len(concepts):03d}", "only10", None, [c10], [1.0], _words(title10(c10)), [[]],
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
            f"c{len(concepts):03d}", "only9", c9, [], [], _words(title9(c9)), [],
        ))
        used9.add(c9)

    # Procedures: an ICD-9 procedure and the PCS codes sharing most of its words.
    proc9 = sorted(t9p)
    for _ in range(counts["proc"] * 20):
        if sum(c.group == "proc" for c in concepts) >= counts["proc"]:
            break
        part = _BODY_PARTS[int(rng.integers(0, len(_BODY_PARTS)))]
        options = [c for c in proc9 if part in t9p[c].lower()]
        raw9 = options[int(rng.integers(0, len(options)))]
        code9 = format_code(raw9, "icd9", "proc")
        if code9 in used9:
            continue
        words9 = set(_words(t9p[raw9]))
        scored = sorted(
            (-len(words9 & w) / len(words9 | w), c) for c, w in _pcs_candidates(part)
        )
        k = int(rng.choice([1, 2], p=[0.5, 0.5]))
        variants = sorted(c for _, c in scored[:k] if c not in used10)
        if not variants:
            continue
        core = _words(t9p[raw9])
        concepts.append(Concept(
            f"c{len(concepts):03d}", "proc", code9, variants,
            sorted(rng.dirichlet(np.full(len(variants), 1.5)).tolist(), reverse=True), core,
            [[w for w in _words(t10p[v]) if w not in core][:6] for v in variants],
        ))
        used9.add(code9)
        used10.update(variants)

    # Synonyms (concept-specific pseudo-words) and one pseudo-word per variant.
    taken = {w for c in concepts for w in c.core_words} | set(_FILLER)
    pseudo = _PseudoWords(rng, taken)
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
        if not _in_ranges(format_code(code, "icd9", "dx")) for w in _words(t)
    } - taken_words - set(_FILLER))
    pick = rng.choice(len(background), min(400, len(background)), replace=False)
    return concepts, [background[int(i)] for i in sorted(pick)]


def _mention(rng: np.random.Generator, concept: Concept, variant: int, cue: str) -> list[str]:
    words = list(concept.key_words)
    words += [w for w in concept.core_words if w not in concept.key_words and rng.random() < 0.5]
    if concept.variant_words:
        words += [w for w in concept.variant_words[variant] if rng.random() < 0.6]
    if len(words) < 2:
        pool = concept.core_words + (concept.variant_words[variant] if concept.variant_words
                                     else [])
        words += [pool[int(i)] for i in rng.choice(len(pool), min(2, len(pool)), replace=False)]
    return cue.split() + words


def _generate_system(
    rng: np.random.Generator,
    system: str,
    concepts: list[Concept],
    filler: list[str],
    filler_p: np.ndarray,
    n_docs: int,
    id_base: int,
    subject_base: int,
) -> pd.DataFrame:
    weights = np.array([c.weight[system] for c in concepts])
    present = np.flatnonzero(weights > 0)
    probs = weights[present] / weights[present].sum()
    all_w = np.array([sum(c.weight.values()) for c in concepts])
    all_p = all_w / all_w.sum()
    diag_col, proc_col = code_columns(system)
    rows: dict[str, list] = {k: [] for k in (
        "_id", "subject_id", "text", diag_col, proc_col, "target", "num_words", "num_targets")}
    patient = 0
    while len(rows["_id"]) < n_docs:
        n_adm = min(8, int(rng.geometric(_DOCS_PER_PATIENT_P[system])))
        n_chronic = int(rng.integers(0, 4))
        chronic = rng.choice(present, n_chronic, replace=False, p=probs).tolist()
        for _ in range(n_adm):
            if len(rows["_id"]) >= n_docs:
                break
            n_codes = int(np.clip(1 + rng.poisson(4.5), 1, 12))
            chosen = [c for c in chronic if rng.random() < 0.6]
            extra = rng.choice(present, min(len(present), n_codes + 3), replace=False, p=probs)
            for c in extra.tolist():
                if len(chosen) >= n_codes:
                    break
                if c not in chosen:
                    chosen.append(c)
            sentences: list[list[str]] = []
            diag: set[str] = set()
            proc: set[str] = set()
            for ci in chosen:
                concept = concepts[ci]
                variant = (int(rng.choice(len(concept.icd10), p=concept.variant_probs))
                           if concept.icd10 else 0)
                code = concept.icd9 if system == "icd9" else concept.icd10[variant]
                (proc if concept.group == "proc" else diag).add(code)
                if rng.random() >= 0.05:
                    cue = _POSITIVE_CUES[int(rng.integers(0, len(_POSITIVE_CUES)))]
                    sentences.append(_mention(rng, concept, variant, cue))
            for _ in range(int(rng.choice([0, 1, 2], p=[0.3, 0.45, 0.25]))):
                ci = int(rng.choice(len(concepts), p=all_p))
                if ci in chosen:
                    continue
                concept = concepts[ci]
                variant = (int(rng.choice(len(concept.icd10), p=concept.variant_probs))
                           if concept.icd10 else 0)
                cue = _NEGATIVE_CUES[int(rng.integers(0, len(_NEGATIVE_CUES)))]
                sentences.append(_mention(rng, concept, variant, cue))
            length = int(rng.integers(_DOC_WORDS[0], _DOC_WORDS[1] + 1))
            used = sum(len(s) for s in sentences)
            while used < length:
                n = int(rng.integers(6, 15))
                sentences.append([filler[int(i)] for i in rng.choice(len(filler), n, p=filler_p)])
                used += n
            order = rng.permutation(len(sentences))
            text = " ".join(" ".join(sentences[int(i)]) for i in order)
            diag_list, proc_list = sorted(diag), sorted(proc)
            target = proc_list + diag_list
            rows["_id"].append(id_base + len(rows["_id"]))
            rows["subject_id"].append(subject_base + patient)
            rows["text"].append(text)
            rows[diag_col].append(diag_list)
            rows[proc_col].append(proc_list)
            rows["target"].append(target)
            rows["num_words"].append(text.count(" ") + 1)
            rows["num_targets"].append(len(target))
        patient += 1
    return pd.DataFrame(rows)


def _write(frame: pd.DataFrame, splits: pd.DataFrame, folder: Path, system: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    diag_col, proc_col = code_columns(system)
    codes = pa.list_(pa.string())
    schema = pa.schema([
        ("_id", pa.int64()), ("subject_id", pa.int64()), ("text", pa.string()),
        (diag_col, codes), (proc_col, codes), ("target", codes),
        ("num_words", pa.int64()), ("num_targets", pa.int64()),
    ])
    table = pa.Table.from_pydict({name: frame[name].tolist() for name in schema.names}, schema)
    split_table = pa.Table.from_pydict(
        {"_id": splits["_id"].tolist(), "split": splits["split"].tolist()},
        pa.schema([("_id", pa.int64()), ("split", pa.string())]),
    )
    # Atomic: runs that share a corpus folder may rewrite it while another reads it.
    for data, name in ((table, data_filename(system)), (split_table, split_filename(system))):
        with atomic_open(folder / name) as handle:
            feather.write_feather(data, handle, compression="zstd")


def generate_synthetic_corpus(
    out_dir: PathLike, seed: int = 0, size: str | float = "default"
) -> Path:
    """Write a synthetic ICD-9 and ICD-10 corpus in Edin et al.'s format.

    Files: ``out_dir/mimiciv_icd9/mimiciv_icd9.feather``,
    ``.../mimiciv_icd9_split.feather``, the same for ``icd10``, and
    ``out_dir/synthetic_concepts.json`` (the latent concepts, their codes,
    words and popularity). :func:`~jams_pyg.data.edin.load_edin_dataset`
    reads ``out_dir`` directly. The same seed and size give the same bytes.

    Args:
        out_dir (str or os.PathLike): Output folder (created).
        seed (int): Random seed.
        size (str or float): ``"small"`` (0.2), ``"default"`` (1.0: 2,400
            ICD-9 and 1,500 ICD-10 documents, ~200 and ~260 codes),
            ``"large"`` (5.0), or a scale factor: documents scale linearly,
            concepts with its square root.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.
    """
    scale = _scale(size)
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    concepts, background = _build_concepts(rng, scale)
    filler = list(_FILLER) + background
    fr = rng.permutation(len(_FILLER))
    filler_w = np.concatenate([
        1.0 / (fr + 1.0) ** 0.5,  # generic words: Zipf-like
        np.full(len(background), 0.2 / max(1, len(background)) * len(_FILLER) ** 0.3),
    ])
    filler_p = filler_w / filler_w.sum()
    bases = {"icd9": (20_000_000, 10_000_000), "icd10": (25_000_000, 15_000_000)}
    for system in ("icd9", "icd10"):
        n_docs = max(20, round(_DOCS[system] * scale))
        frame = _generate_system(
            rng, system, concepts, filler, filler_p, n_docs, *bases[system]
        )
        splits = split_by_patient(
            frame["_id"].tolist(), frame["subject_id"].tolist(), frame["target"].tolist(),
            seed=seed,
        )
        _write(frame, splits, out / f"mimiciv_{system}", system)
    meta = {
        "generator": "jams_pyg.data.synthetic",
        "seed": seed,
        "size": size if isinstance(size, str) else float(size),
        "scale": scale,
        "bucket_edges": list(bucket_edges_for(scale)),
        "concepts": [c.to_json() for c in concepts],
    }
    with atomic_open(out / "synthetic_concepts.json", "w") as handle:
        handle.write(json.dumps(meta, indent=1) + "\n")
    return out


def bucket_edges_for(size: str | float) -> tuple[int, int]:
    """Training-frequency bucket edges matching a corpus size: the paper's
    (100, 1000) divided by 10 at the default size, and scaled with the number
    of documents otherwise (``small``: (2, 20); ``large``: (50, 500))."""
    scale = _scale(size)
    lo = max(1, round(DEFAULT_BUCKET_EDGES[0] * scale))
    return lo, max(lo + 1, round(DEFAULT_BUCKET_EDGES[1] * scale))


def load_concepts(directory: PathLike) -> list[dict]:
    """The concepts written by :func:`generate_synthetic_corpus` (JSON dicts)."""
    path = Path(directory) / "synthetic_concepts.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a synthetic corpus directory")
    return json.loads(path.read_text())["concepts"]


# ------------------------------------------------------------------ statistics
def _bucket_labels(edges: tuple[int, int]) -> list[str]:
    lo, hi = edges
    return [f"1-{lo}", f"{lo + 1}-{hi}", f"{hi + 1}+"]


def corpus_statistics(
    directory: PathLike, bucket_edges: tuple[int, int] | None = None
) -> pd.DataFrame:
    """A table like the JAMS paper's Table 1 for a dataset directory (synthetic
    or real), with GEM-link and training-frequency statistics.

    Rows: documents, patients, unique codes, split percentages (train/val/test
    documents), mean words and codes per document, codes with a GEM link to a
    code of the other system's vocabulary (and without), codes per
    training-frequency bucket (``1..e0``, ``e0+1..e1``, ``e1+1..``; codes
    absent from training counted apart), the share of code occurrences carried
    by the 10 % most frequent codes, and the linked codes among codes of the
    lowest bucket.

    Args:
        directory: A dataset directory (:func:`~jams_pyg.data.edin.load_edin_dataset`).
        bucket_edges: ``(e0, e1)``; default: those recorded by the generator
            in ``synthetic_concepts.json`` (:func:`bucket_edges_for`), else the
            paper's ``(100, 1000)``.

    Returns:
        A DataFrame indexed by statistic with columns ``"ICD-9"`` and
        ``"ICD-10"``.
    """
    if bucket_edges is None:
        meta = Path(directory) / "synthetic_concepts.json"
        bucket_edges = (tuple(json.loads(meta.read_text())["bucket_edges"]) if meta.is_file()
                        else PAPER_BUCKET_EDGES)
    ds = {s: load_edin_dataset(directory, s) for s in ("icd9", "icd10")}
    graph = cms_2018_graph(ds["icd9"].codes, ds["icd10"].codes)
    labels = _bucket_labels(bucket_edges)
    out: dict[str, dict[str, object]] = {}
    for system, d in ds.items():
        frame = pd.concat([d.train, d.val, d.test])
        n = len(frame)
        freq = d.code_frequencies("train")
        every = np.zeros(d.num_codes, dtype=np.int64)
        index = d.code_index
        for targets in frame["target"]:
            for code in targets:
                every[index[code]] += 1
        top = np.sort(every)[::-1][: max(1, math.ceil(0.1 * len(every)))]
        linked = graph.linked(system).numpy()
        lo, hi = bucket_edges
        buckets = [(freq >= 1) & (freq <= lo), (freq > lo) & (freq <= hi), freq > hi]
        col = {
            "documents": n,
            "patients": frame["subject_id"].nunique(),
            "unique codes": d.num_codes,
            "train/val/test (% docs)": "/".join(
                f"{100 * len(d.split(s)) / n:.1f}" for s in SPLITS),
            "mean words per doc": round(float(frame["text"].str.count(" ").mean() + 1), 1),
            "mean codes per doc": round(float(frame["target"].map(len).mean()), 2),
            "codes with GEM link": int(linked.sum()),
            "codes without GEM link": int((~linked).sum()),
        }
        for label, mask in zip(labels, buckets, strict=True):
            col[f"codes, train freq {label}"] = int(mask.sum())
        col["codes, train freq 0 (val/test only)"] = int((freq == 0).sum())
        col[f"linked / unlinked in {labels[0]}"] = (
            f"{int((buckets[0] & linked).sum())}/{int((buckets[0] & ~linked).sum())}")
        col["top 10% codes' share of occurrences (%)"] = round(
            100 * float(top.sum()) / max(1, int(every.sum())), 1)
        out["ICD-9" if system == "icd9" else "ICD-10"] = col
    return pd.DataFrame(out)
