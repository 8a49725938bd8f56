"""The README's results tables, generated from the committed benchmark results.

Every results table of the README follows a marker line ``<!-- table: NAME -->``; NAME is a
key of :data:`SECTIONS`, whose function renders the table from ``benchmarks/results/``.
``--check README.md`` fails when a marked table differs from its rendering, ``--update
README.md`` rewrites the marked tables in place (tests/test_readme.py runs the check).

The JAMS-vs-backbone tables come from ``jams_vs_backbone.py``'s results.json.

Prints markdown: test metrics per model (mean ± std over seeds), the paired JAMS − backbone
deltas (mean ± half-width of the 95 % t-interval) with the paper's numbers beside them, and
the epochs each run took.  The paper's numbers are Jeong et al.'s Table 2 (MIMIC-IV test
sets, one run each) and, for LAAT, the Figure 2/3 gains stated in their text (frequency
bucket 1-100 and its codes with / without a GEM link).

Examples::

    python benchmarks/readme_tables.py benchmarks/results/jams_vs_backbone/results.json
    python benchmarks/readme_tables.py --ablations benchmarks/results/jams_ablations/results.json
    python benchmarks/readme_tables.py benchmarks/results/jams_vs_backbone/results.json \
        --default-run benchmarks/results/default_run_spread

``--default-run`` prints the README's "what the default run printed" table: the default
command's seed-0 run on this CPU (it *is* ``jams_vs_backbone.py``'s seed 0), the same run
under other ATen kernels (``default_run_spread.py``), and the range over every seed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# sibling scripts (benchmarks/), imported by name as each imports its own
import codiesp_table
from default_run_spread import KERNELS, parse_run_name

from jams_pyg.eval.deltas import format_delta, rarest_groups
from jams_pyg.eval.tables import (
    MISSING,
    compare_table,
    convergence_table,
    results_by_label,
)
from jams_pyg.icd.codes import SYSTEM_LABELS

#: Table 2 of the paper: (backbone, JAMS) macro-F1 and MAP, ×100, per system.
PAPER_TABLE2 = {
    "caml": {"icd9": {"f1_macro": (19.3, 21.5), "map": (62.4, 63.6)},
             "icd10": {"f1_macro": (16.0, 19.7), "map": (57.4, 58.7)}},
    "multirescnn": {"icd9": {"f1_macro": (27.7, 29.2), "map": (64.7, 65.4)},
                    "icd10": {"f1_macro": (21.1, 23.5), "map": (59.3, 60.9)}},
    "laat": {"icd9": {"f1_macro": (26.4, 28.7), "map": (66.3, 66.9)},
             "icd10": {"f1_macro": (20.3, 22.7), "map": (60.6, 62.2)}},
    "plm_icd": {"icd9": {"f1_macro": (29.8, 31.8), "map": (68.0, 68.3)},
                "icd10": {"f1_macro": (21.1, 25.6), "map": (61.9, 63.6)}},
}
#: LAAT+JAMS − LAAT macro-F1 gains the paper's text gives for Figures 2 and 3 (×100).
PAPER_LAAT_BUCKETS = {"icd9": {"rare": 3.2, "rare w/ link": 4.2, "rare w/o link": 1.9},
                      "icd10": {"rare": 3.7, "rare w/ link": 4.1, "rare w/o link": 1.2}}


def metrics_table(runs: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> str:
    """Test metrics per label (mean ± std over its seeds), Table 2-style."""
    return compare_table(results_by_label(runs), metrics=metrics)


def paper_delta_table(deltas: Mapping[str, Any], display: Mapping[str, str],
                      variant: str = "jams") -> str:
    """Our paired ``variant`` − backbone deltas (95 % interval) beside the paper's gains
    (one run each)."""
    lines = ["| Backbone | System | n | macro-F1 ours | paper | MAP ours | paper | "
             "rare ours | paper | rare w/ link ours | paper | rare w/o link ours | paper |",
             "|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for model, variants in deltas.items():
        for system, scores in variants.get(variant, {}).items():
            paper = PAPER_TABLE2.get(model, {}).get(system, {})

            def gain(key: str, paper: Mapping[str, Any] = paper) -> str:
                pair = paper.get(key)
                return f"{pair[1] - pair[0]:+.1f}" if pair else MISSING

            buckets = PAPER_LAAT_BUCKETS.get(system, {}) if model == "laat" else {}
            rare, link, nolink = rarest_groups(scores)
            n = len(scores["f1_macro"]["per_seed"])
            cells = [format_delta(scores["f1_macro"]), gain("f1_macro"),
                     format_delta(scores["map"]), gain("map")]
            for key, name in ((rare, "rare"), (link, "rare w/ link"),
                              (nolink, "rare w/o link")):
                cells += [format_delta(scores.get(key) if key else None),
                          f"{buckets[name]:+.1f}" if name in buckets else MISSING]
            lines.append(f"| {display.get(model, model)} | {SYSTEM_LABELS.get(system, system)} | "
                         f"{n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ablation_table(payload: Mapping[str, Any], model: str = "laat") -> str:
    """One table of paired deltas for the ablations: every variant against the backbone,
    then against each reference variant (``deltas_vs_<reference>``), macro-F1, MAP and the
    rarest linked codes per system (mean ± half-width of the 95 % t-interval)."""
    n = max((len(r["per_seed"]) for v in payload["deltas"].get(model, {}).values()
             for s in v.values() for r in s.values()), default=0)
    lines = [f"| Paired delta (n = {n}) | ICD-9 macro-F1 | ICD-9 MAP | ICD-9 rare w/ link | "
             "ICD-10 macro-F1 | ICD-10 MAP | ICD-10 rare w/ link |",
             "|:---|---:|---:|---:|---:|---:|---:|"]
    references = [("backbone", payload["deltas"])] + [
        (key.removeprefix("deltas_vs_"), value) for key, value in payload.items()
        if key.startswith("deltas_vs_")]
    for reference, deltas in references:
        for variant, systems in deltas.get(model, {}).items():
            cells = []
            for system in SYSTEM_LABELS:
                scores = systems.get(system, {})
                link = rarest_groups(scores)[1]
                cells += [format_delta(scores.get("f1_macro")), format_delta(scores.get("map")),
                          format_delta(scores.get(link) if link else None)]
            lines.append(f"| {variant} − {reference} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: The default run's table: (system, score key of :func:`group_scores`, column name).
DEFAULT_RUN_COLUMNS = [(s, key, name) for s in ("icd9", "icd10") for key, name in (
    ("f1_micro", "micro-F1"), ("f1_macro", "macro-F1"), ("map", "MAP"),
    ("bucket 1-10", "1–10 macro-F1"))]
#: ATen kernels of default_run_spread.py: the name of each in the rows' labels.
KERNEL_NAMES = {"native": "AVX-512 kernels", "avx2": "AVX2 kernels",
                "default": "scalar kernels"}
#: The kernel a CPU of this machine type picks by itself (the seeds' runs use it).
NATIVE_LABEL = f"{KERNEL_NAMES['native']} (what this machine picks)"


def _scores(run: Mapping[str, Any], system: str) -> dict[str, float | None]:
    from jams_pyg.eval.deltas import group_scores

    return group_scores(run["systems"][system])


def _epochs(run: Mapping[str, Any]) -> list[int]:
    return [part["training"]["epochs_run"] for part in run["training"].values()]


def default_run_table(runs: Sequence[Mapping[str, Any]], spread_dir: Path | None,
                      labels: Sequence[str] = ("LAAT", "LAAT+JAMS")) -> str:
    """One draw and the spread to expect: per model, the seed-0 run (this CPU), the seed-0
    run under each other kernel or thread count found in ``spread_dir/<name>/metrics.json``
    (``<kernel>`` or ``<kernel>-threads<N>``, default_run_spread.py's folders), mean ± std
    [min–max] over every seed, and (with other runs) the range over the seeds and the other
    seed-0 runs: what a user's run is expected inside (×100)."""
    header = ["Model", "run"] + [f"{SYSTEM_LABELS[s]} {name}" for s, _, name in
                                 DEFAULT_RUN_COLUMNS] + ["epochs"]
    lines = ["| " + " | ".join(header) + " |",
             "|:---|:---|" + "---:|" * (len(header) - 2)]
    kernels: dict[str, list[Mapping[str, Any]]] = {}  # row label -> that run's metrics
    if spread_dir is not None:
        found = {parse_run_name(path.parent.name): path
                 for path in spread_dir.glob("*/metrics.json")}
        for kernel, threads in sorted(found, key=lambda k: (KERNELS.index(k[0]), k[1] or 0)):
            if (kernel, threads) == ("native", None):
                continue  # that run is the seeds' seed 0
            if threads is not None:
                what = f"{KERNEL_NAMES[kernel]}, {threads} threads"
            else:
                what = NATIVE_LABEL if kernel == "native" else KERNEL_NAMES[kernel]
            kernels[what] = json.loads(found[kernel, threads].read_text())

    def row(label: str, what: str, picked: Sequence[Mapping[str, Any]],
            range_only: bool = False) -> str:
        cells = []
        for system, key, _ in DEFAULT_RUN_COLUMNS:
            values = [100 * v for r in picked
                      if (v := _scores(r, system).get(key)) is not None]
            if not values:
                cells.append(MISSING)
            elif range_only:
                cells.append(f"{min(values):.1f}–{max(values):.1f}")
            elif len(values) == 1:
                cells.append(f"{values[0]:.1f}")
            else:
                mean = sum(values) / len(values)
                std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
                cells.append(f"{mean:.1f} ± {std:.1f} [{min(values):.1f}–{max(values):.1f}]")
        epochs = sorted(e for r in picked for e in _epochs(r))
        cells.append(f"{epochs[0]}–{epochs[-1]}" if epochs[0] != epochs[-1] else str(epochs[0]))
        return f"| {label} | {what} | " + " | ".join(cells) + " |"

    for label in labels:
        seeded = sorted((r for r in runs if r["label"] == label), key=lambda r: r["seed"])
        if not seeded:
            raise ValueError(f"no run labelled {label!r} in the results")
        first = [r for r in seeded if r["seed"] == 0]
        lines.append(row(label, f"seed 0, {NATIVE_LABEL}", first))
        for what, kernel_runs in kernels.items():
            same = [r for r in kernel_runs if r["label"] == label and r["seed"] == 0]
            if same:
                lines.append(row(label, f"seed 0, {what}", same))
        seeds = ",".join(str(r["seed"]) for r in seeded)
        lines.append(row(label, f"seeds {seeds}: mean ± std [min–max]", seeded))
        # What a user should expect: a seed-0 run lands on one kernel, so the range spans
        # every seed on this CPU and seed 0 under each other kernel.
        other = [r for runs_ in kernels.values() for r in runs_
                 if r["label"] == label and r["seed"] == 0]
        if other:
            lines.append(row(label, "expect: seeds and kernels [min–max]", seeded + other,
                             range_only=True))
    return "\n".join(lines)


RESULTS = Path(__file__).resolve().parent / "results"
MARKER = "<!-- table: {} -->"


def _json(name: str) -> Any:
    return json.loads((RESULTS / name).read_text())


def _jvb_tables() -> list[str]:
    from jams_pyg.train.variants import DISPLAY

    payload = _json("jams_vs_backbone/results.json")
    return [metrics_table(payload["runs"], ["f1_micro", "f1_macro", "map"]),
            paper_delta_table(payload["deltas"], DISPLAY, "jams"),
            convergence_table(payload["convergence"])]


def _ablation_tables() -> list[str]:
    payload = _json("jams_ablations/results.json")
    return [metrics_table(payload["runs"], ["f1_macro", "map"]), ablation_table(payload)]


def _int(value: float) -> str:
    return f"{value:,.0f}"


def mat_vs_gat_table() -> str:
    """MATConv (fused) against GATConv per case of ``mat_vs_gat_directional.json``."""
    rows = _json("mat_vs_gat_directional.json")["results"]
    by_case: dict[str, dict[str, Any]] = {}
    for row in rows:
        by_case.setdefault(row["case"], {})[row["method"]] = row
    lines = ["| graph | d | MATConv ms | GATConv ms | speed-up | MATConv MiB | GATConv MiB |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    first_gem = True
    for methods in by_case.values():
        mat, gat = methods["mat"], methods["gat"]
        if mat["num_edges"] == 200_000:
            graph = "PyG standard size (5k + 5k nodes, 200k edges)"
        elif first_gem:
            graph = (f"CMS 2018 dx GEMs, directional ({_int(mat['num_icd9'])} + "
                     f"{_int(mat['num_icd10'])} codes)")
            first_gem = False
        else:
            graph = "CMS 2018 dx GEMs, directional"
        speed = gat["median_ms"] / mat["median_ms"]
        speed_cell = f"**{speed:.1f}×**" if mat["channels"] == 512 else f"{speed:.1f}×"
        lines.append(f"| {graph} | {mat['channels']} | {_int(mat['median_ms'])} | "
                     f"{_int(gat['median_ms'])} | {speed_cell} | {_int(mat['peak_mb'])} | "
                     f"{_int(gat['peak_mb'])} |")
    return "\n".join(lines)


def laat_head_memory_table() -> str:
    payload = _json("laat_head_memory.json")
    labels = {"explicit": "explicit (float32 `[B, C, L]` map, "
                          f"{payload['float32_attention_map_mib']:.0f} MiB per copy)",
              "sdpa": "fused `scaled_dot_product_attention` (default)"}
    lines = ["| token softmax | peak increase |", "|---|---:|"]
    for row in payload["results"]:
        lines.append(f"| {labels[row['variant']]} | {row['peak_increase_mib']:.0f} MiB |")
    return "\n".join(lines)


def predict_throughput_table() -> str:
    lines = ["| tokens | systems | notes/s | ms/note |", "|---:|---|---:|---:|"]
    for row in _json("predict_throughput.json")["rows"]:
        lines.append(f"| {row['tokens']:,} | {row['systems']} | {row['notes_per_s']:.2f} | "
                     f"{_int(row['ms_per_note'])} |")
    return "\n".join(lines)


def overhead_table() -> str:
    payload = _json("overhead.json")
    timing, memory = payload["timing"], payload["memory"]
    back, jams = timing["backbone"]["median_s"], timing["jams"]["median_s"]
    mat = timing["matconv"]["median_s"]
    peak_b, peak_j = memory["backbone"]["peak_mb"], memory["jams"]["peak_mb"]
    return "\n".join([
        "| | backbone (`use_mat=False`) | JAMS (`use_mat=True`) | JAMS − backbone |",
        "|:---|---:|---:|---:|",
        f"| step time (fwd + bwd + AdamW) | {back:.3f} s | {jams:.3f} s | "
        f"{100 * (jams - back) / back:+.1f} % |",
        f"| MATConv alone, fwd + bwd | – | {mat:.3f} s | {100 * mat / jams:.1f} % of a step |",
        f"| peak memory (ru_maxrss) | {_int(peak_b)} MiB | {_int(peak_j)} MiB | "
        f"{peak_j - peak_b:+.0f} MiB |"])


def prepare_memory_table() -> str:
    rows = {(r["mode"], r.get("scale")): r for r in _json("prepare_memory.json")["results"]}
    lines = ["| input (MIMIC-IV schema, 1,500-word notes) | streaming `prepare` | "
             "all in memory (Edin-style) |", "|---|---:|---:|"]
    base = rows[("streaming", 1)]["peak_rss_mb"]
    for scale in sorted({k[1] for k in rows if k[1] is not None}):
        stream, memory = rows[("streaming", scale)], rows[("in_memory", scale)]
        growth = "" if scale == 1 else f" ({100 * (stream['peak_rss_mb'] - base) / base:+.0f} %)"
        lines.append(f"| ×{scale} ({stream['notes']:,} notes, {stream['note_text_mb']:.0f} MB "
                     f"text) | {_int(stream['peak_rss_mb'])} MB{growth} | "
                     f"{_int(memory['peak_rss_mb'])} MB |")
    return "\n".join(lines)


def import_cost_table() -> str:
    return str(_json("import_cost.json")["table"]).strip()


def model_selection_table() -> str:
    """The README's columns of ``model_selection/table.md`` (the epochs column left out)."""
    text = (RESULTS / "model_selection" / "table.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("|")]
    names = {"map": "MAP", "official_mean": "official mean"}
    out = []
    for i, line in enumerate(rows):
        cells = [c.strip() for c in line.strip("|").split("|")]
        cells = cells[:2] + cells[3:-1]  # drop "seeds" and the epochs column
        if i == 1:
            out.append("|:---|:---|" + "---:|" * (len(cells) - 2))
            continue
        if i > 1:
            cells[1] = names.get(cells[1], cells[1])
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def default_run_section() -> str:
    return default_run_table(_json("jams_vs_backbone/results.json")["runs"],
                             RESULTS / "default_run_spread")


def codiesp_transition_runs() -> list[dict[str, Any]]:
    """The transition experiment's re-scored runs, as its summary.json records them."""
    runs = codiesp_table.stored_runs(RESULTS / "codiesp_transition")
    if not runs:
        raise FileNotFoundError("benchmarks/results/codiesp_transition/summary.json: run "
                                "benchmarks/codiesp_table.py")
    return runs


#: Every generated README table: marker name -> renderer.
SECTIONS: dict[str, Any] = {
    "default-run": default_run_section,
    "prepare-memory": prepare_memory_table,
    "model-selection": model_selection_table,
    "mat-vs-gat": mat_vs_gat_table,
    "laat-head-memory": laat_head_memory_table,
    "predict-throughput": predict_throughput_table,
    "overhead": overhead_table,
    "jvb-metrics": lambda: _jvb_tables()[0],
    "jvb-deltas": lambda: _jvb_tables()[1],
    "jvb-convergence": lambda: _jvb_tables()[2],
    "ablation-metrics": lambda: _ablation_tables()[0],
    "ablation-deltas": lambda: _ablation_tables()[1],
    "import-cost": import_cost_table,
    "codiesp-backbones": lambda: codiesp_table.backbone_results_table(RESULTS / "codiesp"),
    "codiesp-published": lambda: codiesp_table.published_table(),
    "codiesp-transition": lambda: codiesp_table.transition_scores_table(
        codiesp_transition_runs()),
    "codiesp-transition-deltas": lambda: codiesp_table.transition_delta_table(
        codiesp_transition_runs()),
}


def marked_tables(readme: str) -> list[tuple[str, int, int]]:
    """(name, start, end) of each marked table: the markdown table lines after a marker."""
    found = []
    lines = readme.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("<!-- table: ") and stripped.endswith(" -->"):
            name = stripped[len("<!-- table: "):-len(" -->")]
            j = i + 1
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            if j == i + 1:
                raise ValueError(f"README marker {stripped!r} (line {i + 1}) has no table "
                                 "on the next line")
            found.append((name, offsets[i + 1], offsets[j]))
    return found


def render_readme(readme: str) -> str:
    """``readme`` with every marked table replaced by its rendering."""
    out, last = [], 0
    for name, start, end in marked_tables(readme):
        if name not in SECTIONS:
            raise ValueError(f"README table marker {name!r} is none of {sorted(SECTIONS)}")
        out += [readme[last:start], SECTIONS[name]().rstrip("\n") + "\n"]
        last = end
    return "".join(out) + readme[last:]


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, nargs="?",
                        help="results.json of jams_vs_backbone.py")
    parser.add_argument("--metrics", nargs="+", default=["f1_micro", "f1_macro", "map"])
    parser.add_argument("--variant", default="jams",
                        help="the variant whose deltas against the backbone are shown")
    parser.add_argument("--ablations", action="store_true",
                        help="ablation results: macro-F1/MAP per variant and every paired "
                        "delta (against the backbone and the reference variants)")
    parser.add_argument("--default-run", type=Path, default=None, metavar="SPREAD_DIR",
                        help="print the default run's table instead: seed 0 on this CPU, "
                        "under the kernels of SPREAD_DIR (default_run_spread.py's results) "
                        "and over all seeds")
    parser.add_argument("--section", choices=sorted(SECTIONS),
                        help="print one README table, rendered from benchmarks/results/")
    parser.add_argument("--check", type=Path, metavar="README",
                        help="exit 1 when a marked table of README differs from its rendering")
    parser.add_argument("--update", type=Path, metavar="README",
                        help="rewrite the marked tables of README in place")
    args = parser.parse_args(argv)
    from jams_pyg.train.variants import DISPLAY

    if args.section:
        text = SECTIONS[args.section]()
        print(text)
        return text
    if args.check or args.update:
        path = args.check or args.update
        readme = path.read_text()
        rendered = render_readme(readme)
        if args.update:
            path.write_text(rendered)
        elif rendered != readme:
            stale = [name for name, start, end in marked_tables(readme)
                     if readme[start:end].rstrip("\n") != SECTIONS[name]().rstrip("\n")]
            raise SystemExit(f"{path}: stale tables {stale}; run "
                             f"python benchmarks/readme_tables.py --update {path}")
        return rendered
    if args.results is None:
        parser.error("give results.json, or --section / --check / --update")

    payload = json.loads(args.results.read_text())
    if args.default_run is not None:
        text = default_run_table(payload["runs"], args.default_run)
        print(text)
        return text
    if args.ablations:
        text = (metrics_table(payload["runs"], ["f1_macro", "map"]) + "\n\n"
                + ablation_table(payload))
        print(text)
        return text
    out = [metrics_table(payload["runs"], args.metrics), "",
           paper_delta_table(payload["deltas"], DISPLAY, args.variant)]
    if payload.get("convergence"):
        out += ["", convergence_table(payload["convergence"])]
    text = "\n".join(out)
    print(text)
    return text


if __name__ == "__main__":
    main()
