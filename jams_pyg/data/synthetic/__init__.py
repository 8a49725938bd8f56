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
  the other system's vocabulary.
* **Procedure codes.** A *procedure* concept (an ICD-9 procedure and 1-2
  ICD-10-PCS codes among its targets in the shipped forward procedure GEM, the
  titled ones sharing most of its words) occurs in both systems and is
  GEM-linked, as JAMS links procedure codes on real data
  (``ExperimentConfig.procedure_links``). ``procedure_links=False`` draws PCS
  codes of the same body part whose titles share most words instead, only some
  of them GEM pairs (the corpus of the results before issue #19).
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

Modules: :mod:`~jams_pyg.data.synthetic.words` (title words, cues, filler,
pseudo-words), :mod:`~jams_pyg.data.synthetic.concepts` (the latent concepts from the
GEMs and titles), :mod:`~jams_pyg.data.synthetic.documents` (one system's documents),
:mod:`~jams_pyg.data.synthetic.generator` (the corpus on disk) and
:mod:`~jams_pyg.data.synthetic.statistics` (Table 1-like statistics, bucket edges).

CLI::

    jams-pyg synthetic OUT_DIR --seed 0 --size default
"""

from jams_pyg.data.synthetic.concepts import MIMIC3_TOP50_CODES, TOP_DIAGNOSES, Concept
from jams_pyg.data.synthetic.generator import generate_synthetic_corpus, load_concepts
from jams_pyg.data.synthetic.statistics import (
    DEFAULT_BUCKET_EDGES,
    PAPER_BUCKET_EDGES,
    bucket_edges_for,
    corpus_statistics,
)

__all__ = [
    "DEFAULT_BUCKET_EDGES",
    "MIMIC3_TOP50_CODES",
    "PAPER_BUCKET_EDGES",
    "TOP_DIAGNOSES",
    "Concept",
    "bucket_edges_for",
    "corpus_statistics",
    "generate_synthetic_corpus",
    "load_concepts",
]
