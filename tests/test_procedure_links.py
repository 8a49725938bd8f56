"""Procedure codes in the GEM graph: the shipped forward procedure GEM, its links for ICD-9
procedure codes, ICD-10-PCS codes along a backward procedure file or the forward links
reversed, diagnoses and procedures never confused, counted apart."""

import gzip
import hashlib
import json
import re
from fnmatch import fnmatch
from pathlib import Path

import pytest
import torch

from jams_pyg import GEMGraph
from jams_pyg.icd.gem import cms_procedure_gem_path, read_gem_file

ROOT = Path(__file__).resolve().parents[1]
SHARED_GEM = ROOT.parent / "shared" / "data" / "gems" / "gem_i9pcs.txt"
#: SHA-256 of ``../shared/data/gems/gem_i9pcs.txt`` (the data README's copy).
PCS_GEM_SHA256 = "0f2ed91f956b71cfd07d6c2bedcaafa9b6c5ae05ed4c2d9abf39292821941867"


@pytest.fixture(scope="module")
def pcs_text() -> str:
    """The shipped procedure GEM, decompressed plainly and checked against the digest of the
    project's copy, so that no test below trusts the code under test."""
    data = gzip.decompress(cms_procedure_gem_path().read_bytes())
    assert hashlib.sha256(data).hexdigest() == PCS_GEM_SHA256
    return data.decode("ascii")


def plain_pairs(text: str, forward: bool = True) -> dict[tuple[str, str], bool]:
    """(ICD-9, ICD-10) pairs of a GEM text -> mapped exactly by some line (no-map lines
    aside), read without the code under test."""
    exact: dict[tuple[str, str], bool] = {}
    for line in text.splitlines():
        source, target, flags = line.split()
        if flags[1] == "1":
            continue
        pair = (source, target) if forward else (target, source)
        exact[pair] = exact.get(pair, False) or flags[0] == "0"
    return exact


def test_shipped_procedure_gem_is_the_cms_file(pcs_text):
    # the package's copy is the project's copy, byte for byte once decompressed
    if SHARED_GEM.is_file():
        assert pcs_text.encode("ascii") == SHARED_GEM.read_bytes()
    # ../shared/data/README.md: 73,593 lines, 3,882 ICD-9-CM procedure codes, 49,803
    # distinct targets (49,802 ICD-10-PCS codes and NoPCS), 210 no-map lines
    rows = [line.split() for line in pcs_text.splitlines()]
    assert len(rows) == 73_593 and all(len(row) == 3 for row in rows)
    assert len({source for source, _, _ in rows}) == 3_882
    targets = {target for _, target, _ in rows}
    assert len(targets) == 49_803 and "NoPCS" in targets
    no_map = [row for row in rows if row[1] == "NoPCS"]
    assert len(no_map) == 210 and {flags for _, _, flags in no_map} == {"11000"}
    frame = read_gem_file(cms_procedure_gem_path())
    assert frame.attrs["kind"] == "proc" and len(frame) == 73_593
    assert int(frame.no_map.sum()) == 210
    # the package data globs of pyproject.toml ship it
    package_data = re.search(r"^\[tool\.setuptools\.package-data\]\njams_pyg = \[(.*?)\]",
                             (ROOT / "pyproject.toml").read_text(), re.M | re.S)
    assert package_data
    globs = re.findall(r'"([^"]+)"', package_data.group(1))
    assert any(fnmatch("resources/gems/gem_i9pcs.txt.gz", g) for g in globs)


def _keyed(graph, edge_index, edge_weight):
    """Links of a graph as {(ICD-9, ICD-10): omega}, each code keyed by its kind read off
    its dotted name (an ICD-9 procedure is dotted after 2 characters; an ICD-10-PCS code
    has no dot, an ICD-10-CM code always one)."""
    def key9(name):
        return ("proc" if name.index(".") == 2 else "dx") if "." in name else (
            "proc" if len(name) == 2 else "dx"), name.replace(".", "")

    def key10(name):
        return ("dx" if "." in name else "proc"), name.replace(".", "")

    return {(key9(graph.icd9_codes[i]), key10(graph.icd10_codes[j])): w
            for (i, j), w in zip(edge_index.t().tolist(), edge_weight.tolist(), strict=True)}


def _expected(pairs, kind):
    return {((kind, a), (kind, b)): 1.0 if ex else 0.5 for (a, b), ex in pairs.items()}


@pytest.fixture(scope="module")
def procedure_graph():
    return GEMGraph.from_cms_2018(procedures=True)


@pytest.mark.slow
def test_full_graph_with_procedures_matches_the_files(procedure_graph, pcs_text, cms_gem_text):
    graph = procedure_graph
    proc = plain_pairs(pcs_text)
    dx_forward = plain_pairs(cms_gem_text["2018_I9gem.txt"].upper())
    dx_backward = plain_pairs(cms_gem_text["2018_I10gem.txt"].upper().replace("NODX", "NoDx"),
                              forward=False)
    assert len(proc) == 72_415
    # ICD-9 codes: the forward files; ICD-10 codes: the backward diagnosis file and, with no
    # backward procedure file, the forward procedure pairs with their forward omega
    assert _keyed(graph, *graph.edges("icd9")) == {**_expected(dx_forward, "dx"),
                                                   **_expected(proc, "proc")}
    assert _keyed(graph, *graph.edges("icd10")) == {**_expected(dx_backward, "dx"),
                                                    **_expected(proc, "proc")}
    assert graph.icd10_proc_source == "reversed"
    assert graph.link_counts() == {"icd9": {"dx": 24_428, "proc": 72_415},
                                   "icd10": {"dx": 80_559, "proc": 72_415}}
    # nodes: every code of the files; a procedure code has no link exactly when the file
    # maps it to NoPCS only
    assert (graph.num_icd9, graph.num_icd10) == (14_567 + 3_882, 71_704 + 49_802)
    assert int(graph.procedures("icd9").sum()) == 3_882
    assert int(graph.procedures("icd10").sum()) == 49_802
    nopcs_only = {a for a, _ in (line.split(None, 1) for line in pcs_text.splitlines())} - {
        a for a, _ in proc}
    unlinked = {graph.icd9_codes[i].replace(".", "") for i in
                (~graph.icd9_linked & graph.procedures("icd9")).nonzero().flatten().tolist()}
    assert unlinked == nopcs_only and len(unlinked) == 210
    assert graph.num_unlinked_icd10 == 731  # every PCS code of the file gets a link
    # the diagnosis part is the diagnosis-only graph
    dx_only = GEMGraph.from_cms_2018(procedures=False)
    assert _keyed(dx_only, *dx_only.edges("icd10")) == _expected(dx_backward, "dx")
    summary = graph.summary()
    assert "3882 procedures; 632 without a link" in summary
    assert "24428 of diagnoses and 72415 of procedures; ICD-10 codes" in summary
    assert summary.endswith("80559 of diagnoses of the backward GEMs and 72415 of procedures "
                            "of the forward procedure GEM, reversed (no backward procedure "
                            "GEM given)")
    # union: every pair of either set; procedure pairs are the forward file's
    union = GEMGraph.from_cms_2018(procedures=True, direction="union")
    assert _keyed(union, union.edge_index, union.edge_weight) == _keyed(
        graph, graph.edge_index, graph.edge_weight)
    assert union.summary().endswith("85566 of diagnoses and 72415 of procedures")


def test_procedure_and_diagnosis_with_the_same_characters_are_two_nodes(pcs_text,
                                                                      cms_gem_text):
    # 40.19 (a procedure) and 401.9 (a diagnosis) are both "4019" in their GEM files
    proc = {b: 1.0 if ex else 0.5 for (a, b), ex in plain_pairs(pcs_text).items()
            if a == "4019"}
    targets = sorted(proc)
    assert targets  # the procedure GEM maps 40.19
    omega = {forward: 1.0 if plain_pairs(cms_gem_text[name], forward)[("4019", "I10")]
             else 0.5 for name, forward in (("2018_I9gem.txt", True),
                                            ("2018_I10gem.txt", False))}
    graph = GEMGraph.from_cms_2018(["401.9", "40.19"], ["I10.", *targets], procedures=True)
    assert graph.neighbors("401.9", "icd9") == [("I10.", omega[True])]
    assert graph.neighbors("40.19", "icd9") == [(t, proc[t]) for t in targets]
    assert graph.neighbors("I10.", "icd10") == [("401.9", omega[False])]
    assert all(graph.neighbors(t, "icd10") == [("40.19", w)] for t, w in
               graph.neighbors("40.19", "icd9"))
    assert graph.procedures("icd9").tolist() == [False, True]
    assert graph.procedures("icd10").tolist() == [False] + [True] * len(targets)
    assert graph.link_counts() == {"icd9": {"dx": 1, "proc": len(targets)},
                                   "icd10": {"dx": 1, "proc": len(targets)}}
    # without procedures, the same vocabularies have the diagnosis links only
    dx_only = GEMGraph.from_cms_2018(["401.9", "40.19"], ["I10.", *targets], procedures=False)
    assert dx_only.neighbors("40.19", "icd9") == [] and dx_only.icd10_proc_source is None


def test_golden_graph_links_procedure_codes_through_the_gem(pcs_text):
    # the golden run (the default since issue #19) draws its procedure codes through the
    # forward procedure GEM and links them: its saved graph is from_cms_2018(procedures=True),
    # whose procedure links are the GEM's pairs among its codes (read here independently)
    codes = json.loads((ROOT / "tests/golden/bundle/graph_codes.json").read_text())
    golden = GEMGraph.load(ROOT / "tests/golden/bundle/graph.safetensors")
    linked = GEMGraph.from_cms_2018(codes["icd9_codes"], codes["icd10_codes"], procedures=True)
    for name, tensor in golden.tensors().items():
        assert torch.equal(linked.tensors()[name], tensor), name
    pairs = _procedure_pairs(pcs_text, codes["icd9_codes"], codes["icd10_codes"])
    assert linked.link_counts()["icd9"]["proc"] == len(pairs) >= 5
    for (icd9, icd10), _ in pairs.items():
        dotted = f"{icd9[:2]}.{icd9[2:]}"
        assert icd10 in {c for c, _ in linked.neighbors(dotted, "icd9")}, (icd9, icd10)
    # procedures off: the diagnosis links alone
    diagnoses = GEMGraph.from_cms_2018(codes["icd9_codes"], codes["icd10_codes"],
                                       procedures=False)
    assert diagnoses.link_counts() == {s: {"dx": n["dx"], "proc": 0}
                                       for s, n in linked.link_counts().items()}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_backward_procedure_file_is_used_when_given(tmp_path):
    dx_fwd = _write(tmp_path / "2018_I9gem.txt", "4019 I10 00000\n")
    dx_bwd = _write(tmp_path / "2018_I10gem.txt", "I10 4019 00000\n")
    fwd = _write(tmp_path / "gem_i9pcs.txt",
                 "4019 06L34ZZ 10000\n4019 06L30ZZ 00000\n0124 NoPCS 11000\n")
    # the backward file maps other pairs, with other flags
    bwd = _write(tmp_path / "gem_pcsi9.txt", "06L34ZZ 4019 00000\n0DTJ4ZZ 4019 10000\n")
    vocab9, vocab10 = ["401.9", "40.19", "01.24"], ["I10.", "06L34ZZ", "06L30ZZ", "0DTJ4ZZ"]
    given = GEMGraph.from_gem_files([dx_fwd, fwd], [dx_bwd, bwd], vocab9, vocab10)
    assert given.icd10_proc_source == "backward"
    assert given.neighbors("40.19", "icd9") == [("06L34ZZ", 0.5), ("06L30ZZ", 1.0)]
    assert given.neighbors("06L34ZZ", "icd10") == [("40.19", 1.0)]
    assert given.neighbors("06L30ZZ", "icd10") == []
    assert given.neighbors("0DTJ4ZZ", "icd10") == [("40.19", 0.5)]
    assert given.neighbors("01.24", "icd9") == []  # a NoPCS line never links
    assert given.summary().endswith("1 of diagnoses of the backward GEMs and 2 of procedures "
                                    "of the backward procedure GEM")
    reversed_ = GEMGraph.from_gem_files([dx_fwd, fwd], [dx_bwd], vocab9, vocab10)
    assert reversed_.icd10_proc_source == "reversed"
    assert reversed_.neighbors("06L34ZZ", "icd10") == [("40.19", 0.5)]
    assert reversed_.neighbors("06L30ZZ", "icd10") == [("40.19", 1.0)]
    assert reversed_.neighbors("0DTJ4ZZ", "icd10") == []
    assert reversed_.neighbors("I10.", "icd10") == [("401.9", 1.0)]
    assert "reversed (no backward procedure GEM given)" in reversed_.summary()
    # diagnoses: a missing backward file stays missing (the package ships both)
    assert GEMGraph.from_gem_files(dx_fwd, None, ["401.9"], ["I10."]).neighbors(
        "I10.", "icd10") == []
    # a graph without procedure codes is summarised as before
    assert "procedures" not in GEMGraph.from_gem_files(dx_fwd, dx_bwd).summary()
    # restricting away every ICD-10-PCS link drops the source
    assert given.restrict(icd10_codes=["I10."]).icd10_proc_source is None
    assert reversed_.to_union().icd10_proc_source == "reversed"


def test_a_procedure_file_that_is_not_recognised_is_named(tmp_path):
    bwd = _write(tmp_path / "backward.txt", "0DTJ4ZZ 4019 10000\n")
    with pytest.raises(ValueError, match="backward.txt, line 1: '0DTJ4ZZ' is no icd10 dx code;"
                       ".* needs a NoPCS line or 'pcs' in its file name"):
        GEMGraph.from_gem_files(None, bwd)


def test_the_source_is_saved_with_the_graph(tmp_path):
    fwd = _write(tmp_path / "gem_i9pcs.txt", "4019 06L34ZZ 10000\n")
    graph = GEMGraph.from_gem_files(fwd, None, ["40.19", "401.9"], ["06L34ZZ", "I10."])
    paths = graph.save(tmp_path / "graph.safetensors")
    assert json.loads(paths[1].read_text()) == {
        "icd9_codes": ["40.19", "401.9"], "icd10_codes": ["06L34ZZ", "I10."],
        "icd10_proc_source": "reversed"}
    loaded = GEMGraph.load(paths[0])
    assert loaded.icd10_proc_source == "reversed" and loaded.summary() == graph.summary()
    codes = json.loads(paths[1].read_text())
    paths[1].write_text(json.dumps({**codes, "icd10_proc_source": "guessed"}))
    with pytest.raises(ValueError, match="graph.safetensors: icd10_proc_source must be one of "
                       ".*got 'guessed'"):
        GEMGraph.load(paths[0])


@pytest.mark.slow
def test_graph_command_links_procedures(procedure_graph, capsys):
    from jams_pyg.cli import main

    # in this process: the shipped files are parsed once (the fixture's graph)
    assert main(["graph", "--procedures"]) == 0
    assert capsys.readouterr().out == procedure_graph.summary() + "\n"
    # the default, as the official graph: procedures linked; --no-procedures: diagnoses only
    assert main(["graph"]) == 0
    assert capsys.readouterr().out == procedure_graph.summary() + "\n"
    assert main(["graph", "--no-procedures"]) == 0
    assert capsys.readouterr().out == GEMGraph.from_cms_2018(procedures=False).summary() + "\n"
    assert main(["graph", "--procedures", "--icd9-gem", str(cms_procedure_gem_path())]) != 0
    assert "--procedures links the shipped GEMs" in capsys.readouterr().err


# ----------------------------------------------------------------- training
def _procedure_pairs(pcs_text, icd9_codes, icd10_codes):
    """(ICD-9, ICD-10) procedure pairs of the forward procedure GEM between two vocabularies
    (an ICD-9 procedure is dotted after 2 characters, an ICD-10-PCS code has no dot), read
    without the code under test."""
    proc9 = {c.replace(".", "") for c in icd9_codes if "." in c and c.index(".") == 2}
    proc10 = {c for c in icd10_codes if "." not in c}
    return {(a, b): ex for (a, b), ex in plain_pairs(pcs_text).items()
            if a in proc9 and b in proc10}


def test_procedure_links_are_on_by_default(tmp_path):
    from jams_pyg.train.experiment import ExperimentConfig
    from jams_pyg.train.variants import variant_label, variant_model_fields

    assert ExperimentConfig(data_dir=str(tmp_path)).procedure_links is True
    assert ExperimentConfig().procedure_links is True  # the synthetic corpus too (#19)
    assert ExperimentConfig(procedure_links=False).procedure_links is False
    assert ExperimentConfig(data_dir=str(tmp_path), procedure_links=False).procedure_links \
        is False
    # the ablation is JAMS in every model field; it changes the graph only
    assert variant_model_fields("no_proc_links") == variant_model_fields("jams")
    assert variant_label("laat", "no_proc_links") == "LAAT+JAMS (no_proc_links)"
    with pytest.raises(ValueError, match="variant 'no_proc_links' drops the procedure links "
                       "of JAMS, but this run has none"):
        ExperimentConfig(variant="no_proc_links", procedure_links=False)
    backward = _write(tmp_path / "gem_pcsi9.txt", "06L34ZZ 4019 00000\n")
    with pytest.raises(ValueError, match=f"procedure_gem {backward} needs procedure_links"):
        ExperimentConfig(data_dir=str(tmp_path), procedure_links=False,
                         procedure_gem=str(backward))
    with pytest.raises(ValueError, match="procedure_gem .*missing.txt: no such file"):
        ExperimentConfig(data_dir=str(tmp_path), procedure_gem=str(tmp_path / "missing.txt"))


def test_train_options_set_procedure_links(tmp_path, capsys):
    from jams_pyg.cli import build_parser
    from jams_pyg.cli import main as cli_main
    from jams_pyg.cli.train import experiment_config

    backward = _write(tmp_path / "gem_pcsi9.txt", "06L34ZZ 4019 00000\n")

    def config(*argv: str):
        args = build_parser().parse_args(["train", *argv])
        return experiment_config(args, "jams", tmp_path / "out" / "jams")

    assert config("--data", str(tmp_path)).procedure_links is True
    assert config("--data", str(tmp_path), "--no-procedure-links").procedure_links is False
    assert config().procedure_links is True
    assert config("--no-procedure-links").procedure_links is False
    given = config("--data", str(tmp_path), "--procedure-gem", str(backward))
    assert given.procedure_gem == str(backward) and given.procedure_links
    # contradictions are one-line argparse errors before any work
    for argv, message in (
            (["--variants", "no_proc_links", "--no-procedure-links"], "drops the procedure "
             "links of JAMS, but this run has none"),
            (["--data", str(tmp_path), "--no-procedure-links", "--procedure-gem",
              str(backward)], "needs procedure_links")):
        with pytest.raises(SystemExit) as stop:
            cli_main(["train", *argv, "--output-dir", str(tmp_path / "out")])
        assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_build_graph_reads_the_procedure_files(tmp_path, monkeypatch):
    """``build_graph`` with a user's backward procedure file or extra GEM files: the shipped
    files replaced by small ones (the shipped ones are checked end to end below)."""
    from types import SimpleNamespace

    import jams_pyg.icd.gem as gem
    from jams_pyg.train.experiment import ExperimentConfig, build_graph

    dx_fwd = _write(tmp_path / "2018_I9gem.txt", "4019 I10 00000\n")
    dx_bwd = _write(tmp_path / "2018_I10gem.txt", "I10 4019 00000\n")
    fwd = _write(tmp_path / "gem_i9pcs.txt", "4019 06L34ZZ 10000\n4019 06L30ZZ 00000\n")
    bwd = _write(tmp_path / "gem_pcsi9.txt", "06L34ZZ 4019 00000\n")
    monkeypatch.setattr(gem, "cms_2018_gem_paths", lambda: (dx_fwd, dx_bwd))
    monkeypatch.setattr(gem, "cms_procedure_gem_path", lambda: fwd)
    datasets = {"icd9": SimpleNamespace(codes=["401.9", "40.19"]),
                "icd10": SimpleNamespace(codes=["I10.", "06L34ZZ", "06L30ZZ"])}
    config = ExperimentConfig(data_dir=str(tmp_path), procedure_gem=str(bwd))
    graph = build_graph(config, datasets)
    assert graph.icd10_proc_source == "backward"
    assert graph.neighbors("40.19", "icd9") == [("06L34ZZ", 0.5), ("06L30ZZ", 1.0)]
    assert graph.neighbors("06L34ZZ", "icd10") == [("40.19", 1.0)]
    assert graph.neighbors("06L30ZZ", "icd10") == []  # the backward file does not map it
    assert graph.link_counts() == {"icd9": {"dx": 1, "proc": 2}, "icd10": {"dx": 1, "proc": 1}}
    # procedures off: the diagnosis links only, the backward procedure file unread
    off = build_graph(config, datasets, procedures=False)
    assert off.link_counts() == {"icd9": {"dx": 1, "proc": 0}, "icd10": {"dx": 1, "proc": 0}}
    assert off.icd10_proc_source is None
    # off, an extra file that links procedure codes is an error, not a silent link
    extra = ExperimentConfig(procedure_links=False, icd9_gems=(str(fwd),))
    with pytest.raises(ValueError, match=r"procedure links are off .* the extra GEM files "
                       rf"\({re.escape(str(fwd))}\) link 2 \+ 2 procedure links"):
        build_graph(extra, datasets)


@pytest.mark.slow
def test_training_on_real_data_links_procedure_codes(tmp_path, pcs_text, cms_gem_text):
    """``jams-pyg train --data`` on Edin-format files (the synthetic corpus written out, its
    procedure codes paired by title): JAMS's graph links the procedure codes through the
    shipped GEM, the ablation no_proc_links does not, both record it in metrics.json and
    the bundle, and both group the buckets by the same links."""
    from jams_pyg.cli import main as cli_main
    from jams_pyg.data.synthetic import generate_synthetic_corpus

    generate_synthetic_corpus(tmp_path / "data", seed=0, size=0.05, procedure_links=False)
    out = tmp_path / "out"
    assert cli_main(["train", "--data", str(tmp_path / "data"), "--model", "caml",
                     "--variants", "jams", "no_proc_links", "--epochs", "1", "--batch-size",
                     "8", "--no-progress", "--output-dir", str(out)]) == 0
    codes = json.loads((out / "jams" / "model" / "codes.json").read_text())
    proc = _procedure_pairs(pcs_text, codes["icd9"], codes["icd10"])
    dx = {name: {pair for pair in plain_pairs(cms_gem_text[name].upper(), forward)
                 if pair[0] in {c.replace(".", "") for c in codes["icd9"] if "." not in c
                                or c.index(".") != 2}
                 and pair[1] in {c.replace(".", "") for c in codes["icd10"] if "." in c}}
          for name, forward in (("2018_I9gem.txt", True), ("2018_I10gem.txt", False))}
    assert len(proc) == 1  # this corpus: 87.71 -> BT21ZZZ
    dx_counts = {"icd9": len(dx["2018_I9gem.txt"]), "icd10": len(dx["2018_I10gem.txt"])}
    expected = {
        "jams": {"procedure_links": True, "icd10_proc_source": "reversed",
                 "link_counts": {s: {"dx": n, "proc": len(proc)}
                                 for s, n in dx_counts.items()}},
        "no_proc_links": {"procedure_links": False, "icd10_proc_source": None,
                          "link_counts": {s: {"dx": n, "proc": 0}
                                          for s, n in dx_counts.items()}}}
    linked = {}
    for variant, record in expected.items():
        metrics = json.loads((out / variant / "metrics.json").read_text())
        assert metrics["gem_graph"] == record
        bundle = json.loads((out / variant / "model" / "config.json").read_text())
        assert bundle["extra"]["gem_graph"] == record
        graph = GEMGraph.load(out / variant / "model" / "graph.safetensors")
        assert graph.link_counts() == record["link_counts"]
        assert graph.neighbors("87.71", "icd9") == (
            [("BT21ZZZ", 1.0 if proc[("8771", "BT21ZZZ")] else 0.5)]
            if record["procedure_links"] else [])
        linked[variant] = {s: metrics["systems"][s]["buckets"]["linkage"]["with_link"]
                           ["num_codes"] for s in ("icd9", "icd10")}
    assert linked["jams"] == linked["no_proc_links"]


def test_procedure_gem_path_is_exported_beside_the_diagnosis_paths():
    import jams_pyg
    import jams_pyg.icd
    import jams_pyg.icd.gem

    for package in (jams_pyg, jams_pyg.icd):
        assert {"cms_2018_gem_paths", "cms_procedure_gem_path"} <= set(package.__all__)
        assert package.cms_procedure_gem_path is jams_pyg.icd.gem.cms_procedure_gem_path
    assert jams_pyg.cms_procedure_gem_path().name == "gem_i9pcs.txt.gz"


# --------------------------------------------------------------- synthetic corpus
@pytest.mark.slow
def test_synthetic_procedure_codes_through_the_gem_by_default(tmp_path, pcs_text):
    from jams_pyg.data.edin import load_edin_dataset
    from jams_pyg.data.synthetic import generate_synthetic_corpus, load_concepts
    from jams_pyg.train.experiment import ExperimentConfig, load_data

    golden = json.loads((ROOT / "tests/golden/bundle/codes.json").read_text())
    corpora = {}
    for links in (False, True):
        folder = generate_synthetic_corpus(tmp_path / str(links), seed=0, size=0.05,
                                           procedure_links=links)
        if links:  # a default synthetic run writes this corpus
            config = ExperimentConfig(synthetic_size=0.05, synthetic_dir=str(tmp_path / "run"))
            load_data(config)
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                assert path.read_bytes() == (
                    tmp_path / "run" / path.relative_to(folder)).read_bytes(), path
        meta = json.loads((folder / "synthetic_concepts.json").read_text())
        assert meta["procedure_links"] is links
        corpora[links] = (load_concepts(folder),
                          {s: load_edin_dataset(folder, s).codes for s in ("icd9", "icd10")})
    # the default is the corpus the golden run trained on (its label vocabularies)
    assert corpora[True][1] == golden
    assert generate_synthetic_corpus(tmp_path / "default", seed=0, size=0.05).joinpath(
        "synthetic_concepts.json").read_bytes() == (tmp_path / "True" /
                                                    "synthetic_concepts.json").read_bytes()
    # the option changes the procedure concepts only: each pairs an ICD-9 procedure with
    # targets of the forward procedure GEM (read here without the code under test)
    (default, _), (linked, codes) = corpora[False], corpora[True]
    assert [c for c in linked if c["group"] != "proc"] == [
        c for c in default if c["group"] != "proc"]
    proc = [c for c in linked if c["group"] == "proc"]
    pairs = plain_pairs(pcs_text)
    assert len(proc) == 6 and all((c["icd9"].replace(".", ""), v) in pairs
                                  for c in proc for v in c["icd10"])
    title_paired = [(c["icd9"].replace(".", ""), v) in pairs
                    for c in default if c["group"] == "proc" for v in c["icd10"]]
    assert not all(title_paired)  # drawn by title words, they are mostly no GEM pairs
    # so every ICD-10-PCS code of the corpus has a GEM partner among its ICD-9 codes
    pcs10 = [c for c in codes["icd10"] if "." not in c]
    partners = _procedure_pairs(pcs_text, codes["icd9"], codes["icd10"])
    assert pcs10 and {b for _, b in partners} == set(pcs10)
