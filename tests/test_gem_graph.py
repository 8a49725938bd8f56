import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from jams_pyg import GEMGraph
from jams_pyg.graph import gem_graph
from jams_pyg.graph.gem_graph import EDGE_TYPE, REV_EDGE_TYPE
from jams_pyg.icd.gem import cms_2018_gem_paths


@pytest.fixture(scope="module")
def full_graph():
    return GEMGraph.from_cms_2018(procedures=False)


def independent_pairs(cms_gem_text, files=("2018_I9gem.txt", "2018_I10gem.txt")):
    """Distinct (ICD-9, ICD-10) pairs and their weights, read plainly from the
    CMS files without the code under test."""
    exact: dict[tuple[str, str], bool] = {}
    for name in files:
        forward = name == "2018_I9gem.txt"
        for line in cms_gem_text[name].splitlines():
            source, target, flags = line.split()
            if flags[1] == "1":
                continue
            pair = (source.upper(), target.upper()) if forward else (
                target.upper(), source.upper())
            exact[pair] = exact.get(pair, False) or flags[0] == "0"
    return exact


def test_full_graph_matches_files(full_graph, cms_gem_text):
    exact = independent_pairs(cms_gem_text)
    assert len(exact) == 85_566  # also stated in ../shared/data/README.md
    assert full_graph.num_edges == len(exact)
    graph_pairs = {}
    for (i, j), w in zip(full_graph.edge_index.t().tolist(), full_graph.edge_weight.tolist(),
                         strict=True):
        key = (full_graph.icd9_codes[i].replace(".", ""),
               full_graph.icd10_codes[j].replace(".", ""))
        graph_pairs[key] = w
    assert graph_pairs == {pair: 1.0 if ex else 0.5 for pair, ex in exact.items()}
    # Every code of both files is a node ("v5889" and "V5889" are one code).
    assert full_graph.num_icd9 == 14_567
    assert full_graph.num_icd10 == 71_704
    assert full_graph.num_unlinked_icd10 == 731  # the NoDx lines of 2018_I10gem.txt
    assert full_graph.icd9_linked.sum() + full_graph.num_unlinked_icd9 == full_graph.num_icd9


def _pairs(graph, edge_index, edge_weight):
    return {
        (graph.icd9_codes[i].replace(".", ""), graph.icd10_codes[j].replace(".", "")): w
        for (i, j), w in zip(edge_index.t().tolist(), edge_weight.tolist(), strict=True)
    }


def test_directional_graph_reads_each_file_for_its_own_direction(full_graph, cms_gem_text):
    # The official code's two adjacency matrices: forward-file links update ICD-9 codes,
    # backward-file links update ICD-10 codes, each with its own file's omega.
    assert full_graph.direction == "directional"
    for name, (index, weight) in (("2018_I9gem.txt", full_graph.edges("icd9")),
                                  ("2018_I10gem.txt", full_graph.edges("icd10"))):
        exact = independent_pairs(cms_gem_text, (name,))
        assert _pairs(full_graph, index, weight) == {
            pair: 1.0 if ex else 0.5 for pair, ex in exact.items()}
    # distinct pairs of each file, as ../shared/data/README.md states
    assert full_graph.icd9_edge_index.size(1) == 24_428
    assert full_graph.icd10_edge_index.size(1) == 80_559
    # a code is linked when some link updates it
    forward_sources = {a for a, _ in independent_pairs(cms_gem_text, ("2018_I9gem.txt",))}
    linked9 = {c.replace(".", "") for c, ok in zip(full_graph.icd9_codes,
                                                   full_graph.icd9_linked.tolist(), strict=True)
               if ok}
    assert linked9 == forward_sources
    assert full_graph.mat_edges()[0][1] is full_graph.icd10_edge_index


def test_union_graph_and_the_union_of_a_directional_graph(full_graph, cms_gem_text):
    union = GEMGraph.from_cms_2018(direction="union", procedures=False)
    assert union.direction == "union" and union.edge_index is union.icd10_edge_index
    expected = {pair: 1.0 if ex else 0.5 for pair, ex in independent_pairs(cms_gem_text).items()}
    assert _pairs(union, union.edge_index, union.edge_weight) == expected
    # the directional graph's edge_index is the union of its two sets (exact wins)
    assert _pairs(full_graph, full_graph.edge_index, full_graph.edge_weight) == expected
    assert union.mat_edges()[0] is union.edge_index
    assert "union" in union.summary() and "forward GEMs" in full_graph.summary()
    with pytest.raises(ValueError, match="direction must be one of"):
        GEMGraph.from_cms_2018(direction="both")


def test_paper_examples(full_graph):
    assert full_graph.neighbors("576.2", "icd9") == [("K83.1", 1.0)]
    assert full_graph.neighbors("405.11", "icd9") == [("I15.0", 0.5)]
    assert ("Q36.9", 0.5) in full_graph.neighbors("749.11", "icd9")
    assert ("576.2", 1.0) in full_graph.neighbors("K83.1", "icd10")


def test_vocabulary_restriction_keeps_order():
    icd9 = ["405.11", "576.2", "749.11", "V99.9"]
    icd10 = ["Z99.89", "Q36.9", "K83.1", "I15.0", "I10."]
    graph = GEMGraph.from_cms_2018(icd9, icd10)
    assert graph.icd9_codes == icd9 and graph.icd10_codes == icd10
    pairs = {(icd9[i], icd10[j]): w for (i, j), w in zip(
        graph.edge_index.t().tolist(), graph.edge_weight.tolist(), strict=True)}
    assert pairs == {("405.11", "I15.0"): 0.5, ("576.2", "K83.1"): 1.0,
                     ("749.11", "Q36.9"): 0.5}
    assert graph.icd9_linked.tolist() == [True, True, True, False]
    assert graph.icd10_linked.tolist() == [False, True, True, True, False]
    assert graph.num_unlinked_icd9 == 1 and graph.num_unlinked_icd10 == 2
    assert "1 without a link" in graph.summary()
    # Edges are sorted by ICD-9 then ICD-10 index.
    keys = (graph.edge_index[0] * graph.num_icd10 + graph.edge_index[1]).tolist()
    assert keys == sorted(keys)


def test_diagnoses_and_procedures_never_confused(tmp_path):
    # 401.9 (dx) and 40.19 (proc) are both "4019" in GEM files of their own kind.
    dx = tmp_path / "2018_I9gem.txt"
    dx.write_text("4019  I10     00000\n")
    proc = tmp_path / "gem_i9pcs.txt"
    proc.write_text("4019  06L34ZZ 10000\n")
    graph = GEMGraph.from_gem_files(
        [dx, proc], None, icd9_codes=["40.19", "401.9"], icd10_codes=["I10.", "06L34ZZ"])
    assert graph.neighbors("401.9", "icd9") == [("I10.", 1.0)]
    assert graph.neighbors("40.19", "icd9") == [("06L34ZZ", 0.5)]
    # no backward procedure file: the PCS code listens along the forward link reversed,
    # no backward diagnosis file: I10. listens to nothing
    assert graph.neighbors("06L34ZZ", "icd10") == [("40.19", 0.5)]
    assert graph.neighbors("I10.", "icd10") == []
    assert graph.procedures("icd9").tolist() == [True, False]
    only_dx = GEMGraph.from_gem_files(dx, None, ["40.19", "401.9"], ["I10.", "06L34ZZ"])
    assert only_dx.neighbors("40.19", "icd9") == []
    assert only_dx.link_counts() == {"icd9": {"dx": 1, "proc": 0}, "icd10": {"dx": 0, "proc": 0}}


def test_weight_is_exact_if_any_line_is_exact(tmp_path):
    fwd = tmp_path / "fwd.txt"
    fwd.write_text("5762 K831 10000\n4019 I10 10000\n")
    bwd = tmp_path / "bwd.txt"
    bwd.write_text("K831 5762 00000\nI10 4019 10000\nI10 NoDx 01000\n")
    graph = GEMGraph.from_gem_files(fwd, bwd)
    assert graph.icd9_codes == ["401.9", "576.2"]
    assert graph.icd10_codes == ["I10.", "K83.1"]
    assert graph.edge_index.tolist() == [[0, 1], [0, 1]]
    assert graph.edge_weight.tolist() == [0.5, 1.0]
    # each direction keeps its own file's flag: the forward file maps 576.2 -> K83.1
    # approximately, the backward file K83.1 -> 576.2 exactly
    assert graph.icd9_edge_weight.tolist() == [0.5, 0.5]
    assert graph.icd10_edge_weight.tolist() == [0.5, 1.0]
    assert GEMGraph.from_gem_files(fwd, bwd, direction="union").edge_weight.tolist() == [0.5, 1.0]


def test_hetero_data(full_graph):
    graph = GEMGraph.from_cms_2018(["576.2", "405.11"], ["I15.0", "K83.1", "I10."])
    data = graph.to_hetero_data()
    assert data.node_types == ["icd9", "icd10"]
    assert data["icd9"].num_nodes == 2 and data["icd10"].num_nodes == 3
    assert data[EDGE_TYPE].edge_index.tolist() == [[0, 1], [1, 0]]
    assert data[EDGE_TYPE].edge_weight.tolist() == [1.0, 0.5]
    assert data[REV_EDGE_TYPE].edge_index.tolist() == [[1, 0], [0, 1]]
    assert data[REV_EDGE_TYPE].edge_weight.tolist() == [1.0, 0.5]
    assert data["icd10"].linked.tolist() == [True, True, False]
    data.validate()


GOLDEN_BUNDLE = Path(__file__).resolve().parent / "golden" / "bundle"


def test_save_writes_the_bundle_files_and_load_reads_them(tmp_path):
    graph = GEMGraph.from_cms_2018(["576.2", "405.11"], ["I15.0", "K83.1"])
    paths = graph.save(tmp_path / "graph.safetensors")
    assert [p.name for p in paths] == ["graph.safetensors", "graph_codes.json"]
    # read plainly: safetensors of the link tensors, JSON of the codes
    assert json.loads(paths[1].read_text()) == {"icd9_codes": ["576.2", "405.11"],
                                                "icd10_codes": ["I15.0", "K83.1"]}
    tensors = load_file(str(paths[0]))
    assert sorted(tensors) == ["edge_index", "edge_weight", "icd10_edge_index",
                               "icd10_edge_weight"]
    assert tensors["edge_index"].tolist() == [[0, 1], [1, 0]]
    loaded = GEMGraph.load(paths[0])
    assert loaded.icd9_codes == graph.icd9_codes and loaded.icd10_codes == graph.icd10_codes
    assert loaded.direction == "directional"
    for name, tensor in graph.tensors().items():
        assert torch.equal(getattr(loaded, name.replace("edge_", "icd9_edge_", 1)
                                   if name.startswith("edge_") else name), tensor), name
    assert torch.equal(loaded.icd10_linked, graph.icd10_linked)
    union = graph.to_union()
    union.save(tmp_path / "u.safetensors")
    assert (tmp_path / "u_codes.json").is_file()
    assert GEMGraph.load(tmp_path / "u.safetensors").direction == "union"
    rebuilt = GEMGraph.from_tensors(graph.tensors(), graph.code_lists())
    assert torch.equal(rebuilt.edge_index, graph.edge_index)


def test_golden_bundle_graph_loads_and_saves_to_the_same_bytes(tmp_path):
    graph = GEMGraph.load(GOLDEN_BUNDLE / "graph.safetensors")
    codes = json.loads((GOLDEN_BUNDLE / "graph_codes.json").read_text())
    # the golden run links procedure codes (the default since issue #19)
    assert {**graph.code_lists(), "icd10_proc_source": "reversed"} == codes
    assert graph.direction == "directional" and graph.icd10_proc_source == "reversed"
    # the graph the bundle was saved with is the CMS graph over its codes
    rebuilt = GEMGraph.from_cms_2018(codes["icd9_codes"], codes["icd10_codes"])
    for name, tensor in rebuilt.tensors().items():
        assert torch.equal(graph.tensors()[name], tensor), name
    for path in graph.save(tmp_path / "graph.safetensors"):
        assert path.read_bytes() == (GOLDEN_BUNDLE / path.name).read_bytes(), path.name


@pytest.mark.parametrize("version", [1, 2])
def test_former_torch_save_files_still_load(tmp_path, version):
    graph = GEMGraph.from_cms_2018(["576.2", "405.11"], ["I15.0", "K83.1"])
    state = {"format_version": version, "icd9_codes": graph.icd9_codes,
             "icd10_codes": graph.icd10_codes, "edge_index": graph.edge_index,
             "edge_weight": graph.edge_weight}
    if version == 2:  # format 2 added directional graphs
        state.update(direction="directional", edge_index=graph.icd9_edge_index,
                     edge_weight=graph.icd9_edge_weight,
                     icd10_edge_index=graph.icd10_edge_index,
                     icd10_edge_weight=graph.icd10_edge_weight)
    torch.save(state, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="former torch.save format; .*GEMGraph.load_legacy"):
        GEMGraph.load(tmp_path / "old.pt")  # load never unpickles
    loaded = GEMGraph.load_legacy(tmp_path / "old.pt")
    assert loaded.direction == ("union" if version == 1 else "directional")
    assert loaded.code_lists() == graph.code_lists()
    assert torch.equal(loaded.edge_index, graph.edge_index)
    torch.save({**state, "format_version": 7}, tmp_path / "new.pt")
    with pytest.raises(ValueError, match="unsupported GEMGraph format 7"):
        GEMGraph.load_legacy(tmp_path / "new.pt")
    loaded.save(tmp_path / "graph.safetensors")  # the way to the current format
    assert GEMGraph.load(tmp_path / "graph.safetensors").code_lists() == graph.code_lists()


def test_bad_graph_files_are_named(tmp_path):
    graph = GEMGraph.from_cms_2018(["576.2"], ["K83.1"])
    path = tmp_path / "graph.safetensors"
    graph.save(path)
    codes = tmp_path / "graph_codes.json"
    codes.write_text("{}")
    with pytest.raises(ValueError, match="graph.safetensors: .*'icd9_codes' must be a list"):
        GEMGraph.load(path)
    codes.unlink()
    with pytest.raises(FileNotFoundError, match="graph_codes.json: missing"):
        GEMGraph.load(path)
    path.write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="graph.safetensors: not a GEM graph file"):
        GEMGraph.load(path)
    with pytest.raises(ValueError, match="missing \\['edge_weight'\\]"):
        GEMGraph.from_tensors({"edge_index": graph.edge_index}, graph.code_lists())
    with pytest.raises(ValueError, match="'edge_index' must be a tensor of integers"):
        GEMGraph.from_tensors({"edge_index": graph.edge_index.float(),
                               "edge_weight": graph.edge_weight}, graph.code_lists())


PROCEDURES = ("40.19", "0DH50YZ")  # never linked by the diagnosis GEMs


def _vocabularies(full, cms_gem_text, seed=0):
    """Random ICD-9 and ICD-10 vocabularies: GEM codes in random order, some spelt in
    lower case, and codes the GEMs do not name."""
    rng = random.Random(seed)
    icd9 = [*rng.sample(full.icd9_codes, 800), "V99.9", PROCEDURES[0]]
    icd10 = [*rng.sample(full.icd10_codes, 3000), "Z99.89", PROCEDURES[1]]
    rng.shuffle(icd9)
    rng.shuffle(icd10)
    icd10 = [c.lower() if i % 3 == 0 else c for i, c in enumerate(icd10)]
    return icd9, icd10


def _expected_links(cms_gem_text, name, icd9, icd10):
    """Links of one CMS file between two vocabularies, computed from the file read plainly:
    sorted (ICD-9 position, ICD-10 position) pairs and their weights."""
    pos9 = {c.replace(".", ""): i for i, c in enumerate(icd9) if c not in PROCEDURES}
    pos10 = {c.replace(".", "").upper(): i for i, c in enumerate(icd10)
             if c not in PROCEDURES}
    links = sorted((pos9[a], pos10[b], 1.0 if exact else 0.5)
                   for (a, b), exact in independent_pairs(cms_gem_text, name).items()
                   if a in pos9 and b in pos10)
    return [[i for i, _, _ in links], [j for _, j, _ in links]], [w for _, _, w in links]


def test_restrict_matches_the_files_read_plainly(full_graph, cms_gem_text):
    icd9, icd10 = _vocabularies(full_graph, cms_gem_text)
    graph = full_graph.restrict(icd9, icd10)
    assert graph.icd9_codes == icd9 and graph.icd10_codes == icd10
    assert graph.num_edges > 20 and graph.num_unlinked_icd10 > 2000
    for system, names in (("icd9", ("2018_I9gem.txt",)), ("icd10", ("2018_I10gem.txt",))):
        index, weight = _expected_links(cms_gem_text, names, icd9, icd10)
        assert graph.edges(system)[0].tolist() == index and graph.edges(system)[1].tolist() \
            == weight, system
    index, weight = _expected_links(cms_gem_text, ("2018_I9gem.txt", "2018_I10gem.txt"),
                                    icd9, icd10)
    assert graph.edge_index.tolist() == index and graph.edge_weight.tolist() == weight
    # one place restricts: from_cms_2018 and from_gem_files give the same graph
    for other in (GEMGraph.from_cms_2018(icd9, icd10),
                  GEMGraph.from_gem_files(*cms_2018_gem_paths(), icd9, icd10)):
        for name, tensor in graph.tensors().items():
            assert torch.equal(other.tensors()[name], tensor), name
    union = GEMGraph.from_cms_2018(icd9, icd10, direction="union")
    assert union.direction == "union" and union.edge_index.tolist() == index
    assert torch.equal(full_graph.to_union().restrict(icd9, icd10).edge_index, union.edge_index)
    # None keeps a side; restricting twice is restricting once
    half = full_graph.restrict(icd9_codes=icd9)
    assert half.icd10_codes == full_graph.icd10_codes
    again = half.restrict(icd10_codes=icd10)
    for name, tensor in graph.tensors().items():
        assert torch.equal(again.tensors()[name], tensor), name
    assert graph.index(icd10[0], "icd10") == 0


def test_cms_2018_files_are_parsed_once_per_process(monkeypatch):
    calls = []
    original = gem_graph.read_gem_files

    def counting(*args):
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(gem_graph, "read_gem_files", counting)
    gem_graph._cms_2018_full.cache_clear()
    first = GEMGraph.from_cms_2018(procedures=False)
    first.edge_weight.fill_(0.0)  # callers get copies: nothing leaks into the cache
    second = GEMGraph.from_cms_2018(procedures=False)
    union = GEMGraph.from_cms_2018(direction="union", procedures=False)
    small = GEMGraph.from_cms_2018(["576.2"], ["K83.1"], direction="union",
                                   procedures=False)
    assert len(calls) == 1
    # with the procedure GEM: one more parse, shared by both readings
    procedures = GEMGraph.from_cms_2018(["40.19"], ["07JK0ZZ"], procedures=True)
    GEMGraph.from_cms_2018(direction="union", procedures=True)
    assert len(calls) == 2 and procedures.link_counts()["icd9"]["proc"] == 1
    assert second.edge_weight.min() == 0.5 and union.num_edges == second.num_edges
    assert small.neighbors("576.2", "icd9") == [("K83.1", 1.0)]


def test_adjacency_matches_a_dense_recomputation(full_graph, cms_gem_text):
    icd9, icd10 = _vocabularies(full_graph, cms_gem_text, seed=1)
    graph = full_graph.restrict(icd9, icd10)
    for system, row in (("icd9", 0), ("icd10", 1)):
        edge_index, weight = graph.edges(system)
        n, m = graph.num_icd9, graph.num_icd10
        dense = torch.zeros(n, m)
        dense[edge_index[0], edge_index[1]] = weight
        if system == "icd10":
            dense = dense.t()
        adj = graph.adjacency(system)
        assert adj.ptr.tolist() == [0, *torch.cumsum((dense > 0).sum(1), 0).tolist()]
        assert torch.equal(adj.degree(), (dense > 0).sum(1))
        others = graph.codes("icd10" if system == "icd9" else "icd9")
        for i in range(dense.size(0)):
            cols = dense[i].nonzero().flatten()
            lo, hi = int(adj.ptr[i]), int(adj.ptr[i + 1])
            assert adj.neighbor[lo:hi].tolist() == cols.tolist()
            assert adj.weight[lo:hi].tolist() == dense[i, cols].tolist()
            assert (edge_index[row, adj.perm[lo:hi]] == i).all()
            assert graph.neighbors(graph.codes(system)[i], system) == [
                (others[j], w) for j, w in zip(cols.tolist(), dense[i, cols].tolist(),
                                               strict=True)]
        # perm gathers per-link values (e.g. MAT's alpha) into the grouped order
        assert torch.equal(edge_index[1 - row][adj.perm], adj.neighbor)
        assert adj is graph.adjacency(system)  # built once


@pytest.mark.parametrize(
    ("icd9", "icd10", "error", "message"),
    [
        ([], ["I10."], ValueError, "icd9_codes is empty"),
        (["401.9", "401.9"], ["I10."], ValueError,
         "duplicate code '401.9' \\(positions 0 and 1\\)"),
        (["401.9"], ["I10.", "i10."], ValueError, "duplicate code 'i10.'"),
        (["4019"], ["I10."], ValueError, "icd9_codes\\[0\\]: ambiguous undotted"),
        (["401.9"], ["I1.0"], ValueError, "icd10_codes\\[0\\]: unknown icd10 code format"),
        ("401.9", ["I10."], TypeError, "list of codes, not a string"),
    ],
)
def test_vocabulary_errors(icd9, icd10, error, message):
    with pytest.raises(error, match=message):
        GEMGraph.from_cms_2018(icd9, icd10)


def test_wrong_direction_is_named(tmp_path):
    fwd = tmp_path / "fwd.txt"
    fwd.write_text("K831 5762 00000\n")
    with pytest.raises(ValueError, match="fwd.txt, line 1: 'K831' is no icd9 dx code"):
        GEMGraph.from_gem_files(icd9_to_icd10=fwd)


def test_constructor_checks_edge_index():
    with pytest.raises(ValueError, match="ICD-10 index 5, out of range for 2"):
        GEMGraph(["401.9"], ["I10.", "K83.1"], torch.tensor([[0], [5]]), torch.ones(1))
    with pytest.raises(ValueError, match="edge_weight must have shape \\[1\\]"):
        GEMGraph(["401.9"], ["I10."], torch.tensor([[0], [0]]), torch.ones(2))
    with pytest.raises(KeyError, match="'K83.1' is not in this graph"):
        GEMGraph(["401.9"], ["I10."], torch.tensor([[0], [0]]), torch.ones(1)).index(
            "K83.1", "icd10")
