"""Smoke tests of benchmarks/jams_vs_backbone.py, benchmarks/overhead.py and
benchmarks/readme_tables.py: argument parsing and the drivers' own helpers on tiny hand-made
inputs (no training). The deltas they show are tested from the package in test_deltas.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import load_benchmark
from test_deltas import RUNS

from jams_pyg.eval.deltas import summarize_deltas

jvb = load_benchmark("jams_vs_backbone")
overhead = load_benchmark("overhead")


# ------------------------------------------------------------------------------------------
# jams_vs_backbone: arguments and configs
# ------------------------------------------------------------------------------------------


def test_jvb_train_settings_are_the_synthetic_presets():
    from jams_pyg.train.presets import SYNTHETIC_TRAIN

    args = jvb.parse_args([])
    assert jvb.train_settings(args, "laat", 2) == {**SYNTHETIC_TRAIN, "seed": 2,
                                                   "progress": False, "tensorboard": False}
    # PLM-ICD's small transformer needs a smaller step than the word-level backbones.
    assert jvb.train_settings(args, "plm_icd", 0)["lr"] == 1e-3

    args = jvb.parse_args(["--models", "laat", "caml", "--ablations", "--seeds", "0",
                           "--size", "2.5", "--epochs", "1"])
    assert args.models == ["laat", "caml"]
    # the order of the committed ablation run, which this command reproduces
    assert args.variants == ["backbone", "jams", "no_proc_links", "no_mat", "unweighted",
                             "mat_only", "union", "tied", "tied_backbone"]
    assert args.seeds == [0]
    assert args.model_seeds == {"laat": [0], "caml": [0]}
    assert args.synthetic_size == 2.5
    assert jvb.train_settings(args, "caml", 0)["epochs"] == 1
    assert jvb.parse_args(["--variants", "no_mat", "--ablations"]).variants == [
        "no_mat", "no_proc_links", "unweighted", "mat_only", "union", "tied", "tied_backbone"]
    args = jvb.parse_args(["--models", "laat", "caml", "--seeds-for", "laat:0,1,2,3,4"])
    assert args.model_seeds == {"laat": [0, 1, 2, 3, 4], "caml": [0, 1, 2]}


@pytest.mark.parametrize("argv", [["--size", "huge"], ["--size", "-1"], ["--models", "bert"],
                                  ["--variants", "gat"], ["--epochs", "0"],
                                  ["--seeds-for", "caml:0,1"], ["--seeds-for", "laat:x"]])
def test_jvb_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit):
        jvb.parse_args(argv)


def test_jvb_configs_share_one_corpus(tmp_path):
    args = jvb.parse_args(["--output-dir", str(tmp_path), "--device", "cpu"])
    configs = [jvb.make_config(args, "laat", v, s) for v in args.variants for s in args.seeds]
    assert {c.synthetic_dir for c in configs} == {str(tmp_path / "data" / "default-seed0")}
    assert len({c.output_dir for c in configs}) == 6
    c = configs[-1]
    assert (c.variant, c.seed, c.train.seed) == ("jams", 2, 2)
    assert Path(c.output_dir) == tmp_path / "laat" / "jams" / "seed2"
    assert not c.train.progress and not c.train.tensorboard
    large = jvb.parse_args(["--output-dir", str(tmp_path), "--size", "3"])
    assert Path(jvb.make_config(large, "caml", "backbone", 0).output_dir) == (
        tmp_path / "x3-seed0" / "caml" / "backbone" / "seed0")
    assert not list(tmp_path.iterdir())  # nothing trained or written


def test_jvb_procedure_links_reach_the_run_config(tmp_path):
    # Issue #19's regeneration: the synthetic corpus and MAT both link procedure codes.
    default = jvb.make_config(jvb.parse_args(["--output-dir", str(tmp_path)]), "laat", "jams", 0)
    assert default.procedure_links is True  # the synthetic default since issue #19
    args = jvb.parse_args(["--output-dir", str(tmp_path), "--no-procedure-links"])
    assert jvb.make_config(args, "laat", "jams", 0).procedure_links is False


# ------------------------------------------------------------------------------------------
# overhead
# ------------------------------------------------------------------------------------------


def test_overhead_measures_at_mimic_iv_label_sizes_and_checks_its_arguments():
    args = overhead.parse_args([])
    # MIMIC-IV ICD-9 / ICD-10 label vocabularies of Edin et al.'s preprocessing (paper Table 1)
    assert (args.icd9_codes, args.icd10_codes) == (6150, 7942)
    assert not overhead.parse_args(["--no-memory"]).memory
    for argv in (["--batch", "1"], ["--tokens", "0"], ["--warmup", "-1"]):
        with pytest.raises(SystemExit):
            overhead.parse_args(argv)


def test_choose_codes_prefers_linked_codes():
    icd9 = ["a", "b", "c", "d"]           # d has no link
    icd10 = ["V", "W", "X", "Y", "Z"]     # Z has no link
    edge_index = np.array([[0, 0, 1, 1, 2, 2], [0, 1, 1, 2, 1, 3]])
    for seed in range(5):
        nine, ten = overhead.choose_codes(icd9, icd10, edge_index, 3, 1, seed=seed)
        assert nine == ["a", "b", "c"]        # all linked ICD-9 codes before unlinked d
        assert ten == ["W"]                   # W has 3 links into {a, b, c}
        nine, ten = overhead.choose_codes(icd9, icd10, edge_index, 4, 5, seed=seed)
        assert (nine, ten) == (icd9, icd10)   # node order kept, unlinked ones fill up
    # one linked ICD-9 code is sampled; its two ICD-10 neighbours come first
    nine, ten = overhead.choose_codes(icd9, icd10, edge_index, 1, 2, seed=0)
    links = {("abcd"[i], "VWXYZ"[j]) for i, j in edge_index.T}
    assert len(nine) == 1 and nine[0] != "d"
    assert all((nine[0], t) in links for t in ten)
    with pytest.raises(ValueError, match="asked for 5 ICD-9"):
        overhead.choose_codes(icd9, icd10, edge_index, 5, 1)


def test_overhead_summary_and_markdown():
    timing = {"backbone": {"median_s": 2.0}, "jams": {"median_s": 2.1},
              "matconv": {"median_s": 0.05}}
    memory = {"backbone": {"peak_mb": 1000.0, "increase_mb": 400.0},
              "jams": {"peak_mb": 1050.0, "increase_mb": 420.0}}
    s = overhead.summarize(timing, memory)
    assert s["added_fraction"] == pytest.approx(0.05)
    assert s["matconv_fraction_of_backbone"] == pytest.approx(0.025)
    assert s["added_peak_fraction"] == pytest.approx(0.05)
    assert s["target_met"] is True
    assert overhead.summarize({**timing, "jams": {"median_s": 2.3}}, None)["target_met"] is False
    settings = {"embedding_dim": 200, "rnn_hidden": 512, "projection": 512, "vocab": 50000,
                "batch": 8, "tokens": 1000, "device": "cpu", "torch_threads": 2,
                "repeats": 5, "warmup": 1, "memory_measure": "ru_maxrss"}
    graph = {"icd9_codes": 6150, "icd10_codes": 7942, "links": 12345, "exact_links": 10,
             "icd9_linked": 6000, "icd10_linked": 7000}
    md = overhead.markdown(settings, graph, s)
    assert "| step time (s): fwd + bwd + AdamW | 2.000 | 2.100 | +0.100 (+5.0%) |" in md
    assert "| peak memory (MiB, ru_maxrss) | 1000 | 1050 | +50 (+5.0%) |" in md
    assert "**met**" in md and "12,345 GEM links" in md


# ------------------------------------------------------------------------------------------
# readme_tables: ours beside the paper's
# ------------------------------------------------------------------------------------------


def test_readme_delta_table_puts_the_papers_gain_beside_ours():
    tables = load_benchmark("readme_tables")
    text = tables.paper_delta_table(summarize_deltas(RUNS), {"laat": "LAAT"})
    lines = text.splitlines()
    assert lines[0].startswith("| Backbone | System | n | macro-F1 ours | paper |")
    # ours: macro-F1 +5.0 ± 12.7 (see above); the paper's LAAT: 28.7 - 26.4 = +2.3 macro-F1,
    # 66.9 - 66.3 = +0.6 MAP, rare codes +3.2, with a link +4.2, without +1.9 (ICD-9)
    assert lines[2] == ("| LAAT | ICD-9 | 2 | +5.0 ± 12.7 | +2.3 | +2.5 ± 6.4 | +0.6 | "
                        "+6.0 ± 12.7 | +3.2 | +9.0 ± 12.7 | +4.2 | -1.0 | +1.9 |")
    assert lines[3].startswith("| LAAT | ICD-10 | 1 | +10.0 | +2.4 |")


def test_readme_ablation_table_lists_every_reference():
    tables = load_benchmark("readme_tables")
    payload = {"deltas": summarize_deltas(RUNS),
               "deltas_vs_jams": summarize_deltas(RUNS, reference="jams")}
    lines = tables.ablation_table(payload).splitlines()
    assert lines[0].startswith("| Paired delta (n = 2) | ICD-9 macro-F1 | ICD-9 MAP |")
    # jams − backbone, ICD-9: macro-F1 +5.0 ± 12.7, MAP +2.5 ± 6.4, rare linked +9.0 ± 12.7
    assert lines[2].startswith("| jams − backbone | +5.0 ± 12.7 | +2.5 ± 6.4 | +9.0 ± 12.7 |")
    assert lines[3].startswith("| backbone − jams | -5.0 ± 12.7 |")


def test_import_cost_counts_top_level_imports_only():
    import_cost = load_benchmark("import_cost")
    sample = ("import time: self [us] | cumulative | imported package\n"
              "import time:       100 |        100 | encodings\n"
              "import time:        30 |         30 |   torch._C\n"
              "import time:        50 |        400 | torch\n"
              "other stderr line\n")
    assert import_cost.top_level_import_us(sample) == {"encodings": 100, "torch": 400}


def test_default_run_table_expect_row_spans_seeds_and_other_kernels(tmp_path):
    import json

    from test_deltas import _run

    tables = load_benchmark("readme_tables")

    def run(seed, icd10_micro, epochs):
        r = _run("LAAT", seed, (0.30, 0.90, 0.60, 0.10, 0.7, 0.2, 0.05),
                 (0.20, icd10_micro, 0.50, 0.05, 0.6, 0.1, 0.02))
        return r | {"training": {"icd9": {"training": {"epochs_run": epochs}}}}

    seeds = [run(0, 0.880, 42), run(1, 0.870, 30)]
    for name, icd10_micro, epochs in (("default", 0.895, 27),  # the scalar kernels: above
                                      ("native-threads2", 0.865, 44),  # every seed / below
                                      ("native", 0.5, 1)):  # the seeds' seed 0: not read
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(
            json.dumps([run(0, icd10_micro, epochs)]))
    lines = tables.default_run_table(seeds, tmp_path, labels=("LAAT",)).splitlines()
    assert [line.split(" | ")[1] for line in lines[2:]] == [
        "seed 0, AVX-512 kernels (what this machine picks)", "seed 0, AVX-512 kernels, 2 threads",
        "seed 0, scalar kernels", "seeds 0,1: mean ± std [min–max]",
        "expect: seeds and kernels [min–max]"]
    icd10_micro = 6  # cells: "| Model", run, four ICD-9 columns, then ICD-10 micro-F1
    # mean 87.5, sample std sqrt(2) * 0.5 = 0.7
    assert lines[5].split(" | ")[icd10_micro] == "87.5 ± 0.7 [87.0–88.0]"
    assert lines[6].split(" | ")[icd10_micro] == "86.5–89.5"  # the other runs widen it
    assert lines[6].split(" | ")[2] == "90.0–90.0"  # ICD-9 micro-F1: one value everywhere
    assert lines[6].endswith("| 27–44 |")
    (tmp_path / "avx2-threadsX").mkdir()
    (tmp_path / "avx2-threadsX" / "metrics.json").write_text("[]")
    with pytest.raises(ValueError, match="avx2-threadsX"):
        tables.default_run_table(seeds, tmp_path, labels=("LAAT",))
    # without other kernels there is nothing to add beyond the seed range
    assert len(tables.default_run_table(seeds, None, labels=("LAAT",)).splitlines()) == 4


def test_procedure_links_reach_model_selection_and_default_run_spread(tmp_path, monkeypatch):
    selection = load_benchmark("model_selection")
    args = selection.build_parser().parse_args(["--output-dir", str(tmp_path)])
    assert selection.make_config(args, "jams", "map", 0).procedure_links is True
    args = selection.build_parser().parse_args(["--output-dir", str(tmp_path),
                                                "--no-procedure-links"])
    assert selection.make_config(args, "jams", "map", 0).procedure_links is False

    spread = load_benchmark("default_run_spread")
    commands = []

    envs = []

    def fake_run(command, **kwargs):  # the train command, as the driver would start it
        commands.append(command)
        envs.append(kwargs["env"])
        run_dir = Path(command[command.index("--output-dir") + 1])
        run_dir.mkdir(parents=True)
        for name in ("metrics.json", "report.md"):
            (run_dir / name).write_text("{}")

    monkeypatch.setattr(spread.subprocess, "run", fake_run)
    assert spread.main(["--kernels", "avx2", "--results-dir", str(tmp_path / "r"),
                        "--work-dir", str(tmp_path / "w"), "--no-procedure-links"]) == 0
    assert commands[0][-1] == "--no-procedure-links"
    assert (tmp_path / "r" / "avx2" / "metrics.json").exists()
    assert envs[0]["ATEN_CPU_CAPABILITY"] == "avx2"
    # --threads: the thread count set for the run, named in its folder
    assert spread.main(["--kernels", "native", "--threads", "2", "--results-dir",
                        str(tmp_path / "r"), "--work-dir", str(tmp_path / "w")]) == 0
    assert envs[1]["OMP_NUM_THREADS"] == "2" and "ATEN_CPU_CAPABILITY" not in envs[1]
    assert (tmp_path / "r" / "native-threads2" / "metrics.json").exists()
    assert spread.parse_run_name("native-threads2") == ("native", 2)
    assert spread.parse_run_name("default") == ("default", None)
