"""The synthetic GEM-linked corpus: schema, statistics, GEM links, determinism."""

import collections
import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import jams_pyg
from jams_pyg.cli import main
from jams_pyg.data.edin import load_edin_dataset
from jams_pyg.data.synthetic import (
    MIMIC3_TOP50_CODES,
    TOP_DIAGNOSES,
    bucket_edges_for,
    corpus_statistics,
    generate_synthetic_corpus,
    load_concepts,
)
from jams_pyg.graph.gem_graph import GEMGraph
from jams_pyg.icd.gem import cms_2018_gem_paths

_RESOURCES = Path(jams_pyg.__file__).parent / "resources"
#: Top MIMIC-III diagnoses, their forward-GEM partner and a word both real titles share.
_TOP_PAIRS = {
    "401.9": ("I10.", "hypertension"),
    "250.00": ("E11.9", "diabetes"),
    "584.9": ("N17.9", "kidney"),
    "428.0": ("I50.9", "failure"),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = generate_synthetic_corpus(tmp_path_factory.mktemp("syn") / "a", seed=3, size="small")
    ds9, ds10 = load_edin_dataset(out, "icd9"), load_edin_dataset(out, "icd10")
    graph = GEMGraph.from_cms_2018(ds9.codes, ds10.codes, procedures=False)  # diagnoses
    return out, ds9, ds10, graph, load_concepts(out)


def _all(ds):
    import pandas as pd

    return pd.concat([ds.train, ds.val, ds.test], ignore_index=True)


def test_edin_schema_and_sizes(corpus):
    out, ds9, ds10, _, _ = corpus
    assert (out / "mimiciv_icd9" / "mimiciv_icd9.feather").is_file()
    assert (out / "mimiciv_icd10" / "mimiciv_icd10_split.feather").is_file()
    for ds, n_docs in ((ds9, 480), (ds10, 300)):
        frame = _all(ds)
        assert len(frame) == n_docs
        assert frame["num_words"].tolist() == [len(t.split()) for t in frame["text"]]
        assert frame["num_targets"].tolist() == [len(t) for t in frame["target"]]
        assert frame["num_words"].min() >= 60 and frame["num_words"].max() <= 170
    # ICD-10: fewer documents and more codes than ICD-9 (the paper's Table 1).
    assert len(ds10) < len(ds9) and ds10.num_codes > ds9.num_codes


def test_splits_are_by_patient(corpus):
    _, ds9, ds10, _, _ = corpus
    for ds in (ds9, ds10):
        subjects = [set(ds.split(s)["subject_id"]) for s in ("train", "val", "test")]
        assert not (subjects[0] & subjects[1] or subjects[0] & subjects[2]
                    or subjects[1] & subjects[2])
        share = len(ds.train) / len(ds)
        assert 0.65 < share < 0.82
        assert len(ds.val) > 0 and len(ds.test) > 0


def test_frequencies_are_long_tailed(corpus):
    _, ds9, ds10, _, _ = corpus
    for ds in (ds9, ds10):
        counts = np.zeros(ds.num_codes)
        index = ds.code_index
        for target in _all(ds)["target"]:
            for code in target:
                counts[index[code]] += 1
        ordered = np.sort(counts)[::-1]
        top = ordered[: int(np.ceil(0.1 * len(ordered)))].sum() / ordered.sum()
        # The head (real top diagnoses) is flatter than the tail, as in MIMIC.
        assert top > 0.35, f"{ds.system}: top 10% of codes carry only {top:.0%}"
        assert (counts <= 10).mean() > 0.35  # many rare codes
        assert ordered[0] > 15 * np.median(counts)


@pytest.mark.slow
def test_gem_links_connect_the_two_systems(corpus):
    _, ds9, ds10, graph, concepts = corpus
    codes9, codes10 = set(ds9.codes), set(ds10.codes)
    checked = 0
    pairs = {(graph.icd9_codes[a], graph.icd10_codes[b])
             for a, b in graph.edge_index.t().tolist()}  # mapped by either GEM file
    for concept in concepts:
        if concept["group"] == "linked":
            for variant in concept["icd10"]:
                if concept["icd9"] in codes9 and variant in codes10:
                    assert (concept["icd9"], variant) in pairs, (concept["icd9"], variant)
                    checked += 1
        else:  # ICD-9-only, ICD-10-only (and, by diagnosis GEMs, procedure) concepts
            for code in ([concept["icd9"]] if concept["icd9"] in codes9 else []):
                assert not graph.icd9_linked[graph.index(code, "icd9")], code
            for code in (c for c in concept["icd10"] if c in codes10):
                assert not graph.icd10_linked[graph.index(code, "icd10")], code
    assert checked >= 30
    # the diagnosis graph of from_cms_2018 (the once-parsed CMS graph, restricted) is the
    # graph built from the GEM files.
    forward, backward = cms_2018_gem_paths()
    for direction in ("directional", "union"):
        cached = GEMGraph.from_cms_2018(ds9.codes, ds10.codes, direction=direction,
                                        procedures=False)
        parsed = GEMGraph.from_gem_files(forward, backward, ds9.codes, ds10.codes, direction)
        assert cached.code_lists() == parsed.code_lists() == graph.code_lists()
        assert cached.direction == parsed.direction == direction
        for name, tensor in parsed.tensors().items():
            assert torch.equal(cached.tensors()[name], tensor), name
        assert torch.equal(cached.edge_index, graph.edge_index)
    # Both groups populated among rare training codes of both systems.
    for ds in (ds9, ds10):
        freq = ds.code_frequencies("train")
        linked = graph.linked(ds.system).numpy()
        rare = (freq >= 1) & (freq <= 10)
        assert (rare & linked).sum() >= 5 and (rare & ~linked).sum() >= 3
    # Rare ICD-10 codes whose ICD-9 partner is frequent exist (what JAMS can use).
    f9, f10 = ds9.code_frequencies("train"), ds10.code_frequencies("train")
    src, dst = graph.edge_index
    assert ((f10[dst.numpy()] <= 5) & (f9[src.numpy()] >= 20)).any()


def test_text_carries_concept_and_variant_words(corpus):
    _, ds9, ds10, _, concepts = corpus
    docs9, docs10 = _all(ds9), _all(ds10)
    words9 = [set(t.split()) for t in docs9["text"]]
    words10 = [set(t.split()) for t in docs10["text"]]
    rates9, rates10, own, other = [], [], [], []
    for concept in concepts:
        if concept["group"] != "linked":
            continue
        synonym = concept["core_words"][-1]  # a concept-specific pseudo-word
        with9 = [w for w, t in zip(words9, docs9["target"], strict=True)
                 if concept["icd9"] in t]
        for j, variant in enumerate(concept["icd10"]):
            marker = concept["variant_words"][j][-1]
            with10 = [w for w, t in zip(words10, docs10["target"], strict=True) if variant in t]
            if len(with9) >= 10 and len(with10) >= 10:
                rates9.append(np.mean([synonym in w for w in with9]))
                rates10.append(np.mean([synonym in w for w in with10]))
            for k in range(len(concept["icd10"])):
                if k != j and with10:
                    own.append(np.mean([marker in w for w in with10]))
                    other_marker = concept["variant_words"][k][-1]
                    other.append(np.mean([other_marker in w for w in with10]))
    # The same text process for both systems: a concept's words show up as often.
    assert len(rates9) >= 5
    assert abs(np.mean(rates9) - np.mean(rates10)) < 0.1
    assert 0.3 < np.mean(rates9) < 0.9  # noisy: not every concept word is present
    # An ICD-10 document carries its own variant's words, rarely a sibling's.
    assert len(own) >= 5 and np.mean(own) > 0.4 and np.mean(other) < 0.15


@pytest.mark.slow
def test_deterministic_for_a_seed_and_cli(corpus, tmp_path, capsys):
    out = corpus[0]
    assert main(["synthetic", str(tmp_path / "b"), "--seed", "3", "--size", "0.2"]) == 0
    printed = capsys.readouterr().out
    assert "unique codes" in printed and "codes with GEM link" in printed
    for name in ("mimiciv_icd9/mimiciv_icd9.feather", "mimiciv_icd9/mimiciv_icd9_split.feather",
                 "mimiciv_icd10/mimiciv_icd10.feather",
                 "mimiciv_icd10/mimiciv_icd10_split.feather"):
        assert (out / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    meta_a = json.loads((out / "synthetic_concepts.json").read_text())
    meta_b = json.loads((tmp_path / "b" / "synthetic_concepts.json").read_text())
    assert meta_a["concepts"] == meta_b["concepts"]
    other = generate_synthetic_corpus(tmp_path / "c", seed=4, size="small")
    assert (other / "mimiciv_icd9/mimiciv_icd9.feather").read_bytes() != (
        out / "mimiciv_icd9/mimiciv_icd9.feather").read_bytes()
    # --no-procedure-links: the corpus of the results before issue #19 (PCS codes by title)
    assert main(["synthetic", str(tmp_path / "d"), "--seed", "3", "--size", "0.2",
                 "--no-procedure-links"]) == 0
    meta_d = json.loads((tmp_path / "d" / "synthetic_concepts.json").read_text())
    assert (meta_a["procedure_links"], meta_d["procedure_links"]) == (True, False)
    by_title = generate_synthetic_corpus(tmp_path / "e", seed=3, size="small",
                                         procedure_links=False)
    assert meta_d["concepts"] == json.loads(
        (by_title / "synthetic_concepts.json").read_text())["concepts"]
    procedures = {key: [(c["icd9"], c["icd10"]) for c in meta["concepts"] if c["group"] == "proc"]
                  for key, meta in (("linked", meta_a), ("by_title", meta_d))}
    assert procedures["linked"] != procedures["by_title"]


def test_statistics_table(corpus):
    out, ds9, ds10, graph, _ = corpus
    table = corpus_statistics(out)
    f9 = ds9.code_frequencies("train")
    explicit = corpus_statistics(out, bucket_edges=(10, 100))
    assert explicit.loc["codes, train freq 11-100", "ICD-9"] == int(((f9 > 10) & (f9 <= 100)).sum())
    assert list(table.columns) == ["ICD-9", "ICD-10"]
    assert table.loc["documents", "ICD-9"] == len(ds9)
    assert table.loc["unique codes", "ICD-10"] == ds10.num_codes
    assert table.loc["patients", "ICD-10"] == _all(ds10)["subject_id"].nunique()
    # the corpus records its procedure links: they count, as in the graph JAMS trains on
    with_procedures = GEMGraph.from_cms_2018(ds9.codes, ds10.codes, procedures=True)
    assert table.loc["codes with GEM link", "ICD-9"] == int(with_procedures.icd9_linked.sum())
    assert int(with_procedures.icd9_linked.sum()) > int(graph.icd9_linked.sum())
    diagnoses = corpus_statistics(out, procedures=False)
    assert diagnoses.loc["codes with GEM link", "ICD-9"] == int(graph.icd9_linked.sum())
    # Bucket edges scale with the size: small (0.2) -> 1-2, 3-20, 21+.
    assert bucket_edges_for("small") == (2, 20) and bucket_edges_for("default") == (10, 100)
    freq = ds10.code_frequencies("train")
    assert table.loc["codes, train freq 3-20", "ICD-10"] == int(((freq >= 3) & (freq <= 20)).sum())
    buckets = [table.loc[f"codes, train freq {b}", "ICD-9"] for b in ("1-2", "3-20", "21+")]
    assert sum(buckets) + table.loc["codes, train freq 0 (val/test only)", "ICD-9"] == len(
        ds9.codes)


def test_bad_size():
    with pytest.raises(ValueError, match="one of small, default, large or a positive number"):
        generate_synthetic_corpus("/nonexistent", size="huge")
    with pytest.raises(ValueError, match="positive"):
        generate_synthetic_corpus("/nonexistent", size=-1)


def _undot(code):
    return code.replace(".", "")


def _read_titles(name, encoding):
    with gzip.open(_RESOURCES / "titles" / name, "rt", encoding=encoding) as f:
        return {code: title.lower() for code, title in (
            line.rstrip("\n").split(None, 1) for line in f if line.strip())}


def test_head_is_the_published_top_diagnoses(corpus):
    _, ds9, ds10, graph, concepts = corpus
    # The real forward GEM and titles, read with plain Python.
    forward: dict[str, set[str]] = {}
    with gzip.open(_RESOURCES / "gems" / "2018_I9gem.txt.gz", "rt", encoding="ascii") as f:
        for line in f:
            source, target, _ = line.split()
            forward.setdefault(source, set()).add(target)
    titles9 = _read_titles("CMS32_DESC_LONG_DX.txt.gz", "latin-1")
    titles10 = _read_titles("icd10cm-codes-2024.txt.gz", "ascii")
    assert len(set(MIMIC3_TOP50_CODES)) == 50
    assert TOP_DIAGNOSES[:6] == ("401.9", "428.0", "427.31", "414.01", "584.9", "250.00")
    assert len(TOP_DIAGNOSES) == 32 and "38.93" not in TOP_DIAGNOSES  # diagnoses only
    head = concepts[: len(TOP_DIAGNOSES)]
    assert [c["icd9"] for c in head] == list(TOP_DIAGNOSES)
    for c in head:
        assert c["group"] == "linked" and c["key_words"]
        assert set(c["key_words"]) <= set(c["core_words"])
        assert all(_undot(v) in forward[_undot(c["icd9"])] for v in c["icd10"]), c
        assert all(not other["key_words"] for other in concepts[len(head):])
    by9 = {c["icd9"]: c for c in head}
    for code9, (code10, word) in _TOP_PAIRS.items():
        assert _undot(code10) in forward[_undot(code9)]
        assert word in re.findall("[a-z]+", titles9[_undot(code9)])
        assert word in re.findall("[a-z]+", titles10[_undot(code10)])
        assert by9[code9]["icd10"][0] == code10 and word in by9[code9]["key_words"]
        assert code10 in {c for c, _ in graph.neighbors(code9, "icd9")}  # forward file
    # The head takes the top frequency ranks of both systems.
    main10 = {c["icd10"][0] for c in head}
    for ds, codes, pairs in ((ds9, set(TOP_DIAGNOSES), list(_TOP_PAIRS)),
                             (ds10, main10, [p for p, _ in _TOP_PAIRS.values()])):
        counts = collections.Counter(c for t in _all(ds)["target"] for c in t)
        ranked = [c for c, _ in counts.most_common()]
        assert ranked[0] == ("401.9" if ds.system == "icd9" else "I10.")
        assert sum(c in codes for c in ranked[:20]) >= 18, ranked[:20]
        assert all(ranked.index(c) < 20 for c in pairs), ranked[:20]
    # ... and the rest stays long-tailed (rare codes of both groups):
    # test_frequencies_are_long_tailed and test_gem_links_connect_the_two_systems.


def test_head_documents_carry_title_words(corpus):
    _, ds9, ds10, _, _ = corpus
    for ds in (ds9, ds10):
        frame = _all(ds)
        words = [set(t.split()) for t in frame["text"]]
        for code9, (code10, word) in _TOP_PAIRS.items():
            code = code9 if ds.system == "icd9" else code10
            coded = np.array([code in t for t in frame["target"]])
            has = np.array([word in w for w in words])
            assert coded.sum() >= 20
            # Nearly every document coded with it says the word (5 % of codes
            # are not mentioned), and the word points to the code.
            assert has[coded].mean() > 0.85, (code, word, has[coded].mean())
            assert coded[has].mean() > 0.4, (code, word, coded[has].mean())
    frame = _all(ds9)
    hypertension = frame["text"].map(lambda t: "hypertension" in t.split())
    assert frame.loc[hypertension, "target"].map(lambda t: "401.9" in t).mean() > 0.8
