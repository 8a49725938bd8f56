import pytest
import torch

from jams_pyg import GEMGraph
from jams_pyg.graph.gem_graph import EDGE_TYPE, REV_EDGE_TYPE


@pytest.fixture(scope="module")
def full_graph():
    return GEMGraph.from_cms_2018()


def independent_pairs(shared_data, files=("2018_I9gem.txt", "2018_I10gem.txt")):
    """Distinct (ICD-9, ICD-10) pairs and their weights, read plainly from the
    CMS files without the code under test."""
    exact: dict[tuple[str, str], bool] = {}
    for name in files:
        forward = name == "2018_I9gem.txt"
        for line in (shared_data / "gems" / name).read_text().splitlines():
            source, target, flags = line.split()
            if flags[1] == "1":
                continue
            pair = (source.upper(), target.upper()) if forward else (
                target.upper(), source.upper())
            exact[pair] = exact.get(pair, False) or flags[0] == "0"
    return exact


def test_full_graph_matches_files(full_graph, shared_data):
    exact = independent_pairs(shared_data)
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


def test_directional_graph_reads_each_file_for_its_own_direction(full_graph, shared_data):
    # The official code's two adjacency matrices: forward-file links update ICD-9 codes,
    # backward-file links update ICD-10 codes, each with its own file's omega.
    assert full_graph.direction == "directional"
    for name, (index, weight) in (("2018_I9gem.txt", full_graph.edges("icd9")),
                                  ("2018_I10gem.txt", full_graph.edges("icd10"))):
        exact = independent_pairs(shared_data, (name,))
        assert _pairs(full_graph, index, weight) == {
            pair: 1.0 if ex else 0.5 for pair, ex in exact.items()}
    # distinct pairs of each file, as ../shared/data/README.md states
    assert full_graph.icd9_edge_index.size(1) == 24_428
    assert full_graph.icd10_edge_index.size(1) == 80_559
    # a code is linked when some link updates it
    forward_sources = {a for a, _ in independent_pairs(shared_data, ("2018_I9gem.txt",))}
    linked9 = {c.replace(".", "") for c, ok in zip(full_graph.icd9_codes,
                                                   full_graph.icd9_linked.tolist(), strict=True)
               if ok}
    assert linked9 == forward_sources
    assert full_graph.mat_edges()[0][1] is full_graph.icd10_edge_index


def test_union_graph_and_the_union_of_a_directional_graph(full_graph, shared_data):
    union = GEMGraph.from_cms_2018(direction="union")
    assert union.direction == "union" and union.edge_index is union.icd10_edge_index
    expected = {pair: 1.0 if ex else 0.5 for pair, ex in independent_pairs(shared_data).items()}
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
    only_dx = GEMGraph.from_gem_files(dx, None, ["40.19", "401.9"], ["I10.", "06L34ZZ"])
    assert only_dx.neighbors("40.19", "icd9") == []


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


def test_save_load_round_trip(tmp_path):
    graph = GEMGraph.from_cms_2018(["576.2", "405.11"], ["I15.0", "K83.1"])
    graph.save(tmp_path / "g.pt")
    loaded = GEMGraph.load(tmp_path / "g.pt")
    assert loaded.icd9_codes == graph.icd9_codes and loaded.icd10_codes == graph.icd10_codes
    assert torch.equal(loaded.edge_index, graph.edge_index)
    assert torch.equal(loaded.edge_weight, graph.edge_weight)
    assert torch.equal(loaded.icd10_linked, graph.icd10_linked)
    assert loaded.direction == "directional"
    assert torch.equal(loaded.icd10_edge_index, graph.icd10_edge_index)
    # a graph saved before directional graphs existed (format 1) is a union graph
    state = graph.state_dict()
    old = {"format_version": 1, **{k: state[k] for k in
                                   ("icd9_codes", "icd10_codes", "edge_index", "edge_weight")}}
    torch.save(old, tmp_path / "old.pt")
    assert GEMGraph.load(tmp_path / "old.pt").direction == "union"


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
