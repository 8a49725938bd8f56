"""What JAMS costs per training step: LAAT + JAMS vs the plain LAAT backbone at the real
MIMIC-IV label-set sizes (6,150 ICD-9 and 7,942 ICD-10 codes).

Codes: from the real CMS 2018 diagnosis GEM graph
(``GEMGraph.from_cms_2018(procedures=False)``), sample ``--icd9-codes`` linked ICD-9 codes
(seeded), then take the ICD-10 codes with the most links into that sample (ties broken at
random) and fill up with other ICD-10 codes if too few are linked; the graph is
``GEMGraph.from_cms_2018(icd9_codes, icd10_codes, procedures=False)``. Preferring the
best-linked ICD-10 codes gives many links, i.e. a conservative (large) MAT cost.

Models (Edin et al.'s LAAT sizes: embedding 200, BiLSTM 512 per direction, projection 512):

* ``backbone``: one model, shared encoder, both heads, ``use_mat=False``;
* ``jams``: the same with ``use_mat=True`` (MATConv over the GEM graph).

The only difference is the MAT refinement of the code tables. Both see the same batch:
``--batch`` documents of ``--tokens`` random tokens, half ICD-9 and half ICD-10, random
multi-hot targets. One step = forward, the JAMS loss (eq. 3), backward, gradient clipping
at 1.0 and an AdamW step, as in :class:`jams_pyg.train.trainer.Trainer` (float32; ``--amp bf16``:
forward and loss under ``torch.autocast(dtype=torch.bfloat16)``, as the Trainer on CUDA).

Time: both variants alternate step by step in one process (machine-load changes hit both
alike); the median over ``--repeats`` steps after ``--warmup`` steps. ``MATConv`` alone:
forward + backward of the JAMS model's MAT on its code tables, median likewise.

Peak memory: every variant in its own subprocess (a warm-up step, then the measured steps).
CPU: the child's peak resident set (``ru_maxrss`` from ``os.wait4``, i.e. the child's own
``RUSAGE_CHILDREN`` record) and its growth over the resident set before the first step;
CUDA: ``torch.cuda.max_memory_allocated``. On CUDA the variants are measured in the timing
process instead (``--memory-mode inprocess``, the default there: one variant built at a time
after the timing, peak statistics reset; the allocator's statistics count live tensors only,
so this gives what a fresh process would and spares a CUDA start per variant).

Usage::

    python benchmarks/overhead.py            # -> benchmarks/results/overhead.{json,md}
    python benchmarks/overhead.py --device cuda --tokens 4000 --amp bf16 --out /tmp/overhead
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))
MB = 1024.0**2
VARIANTS = ("backbone", "jams")
TARGET = 0.10  # JAMS may add at most 10% per step


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--icd9-codes", type=int, default=6150)
    parser.add_argument("--icd10-codes", type=int, default=7942)
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=50_000,
                        help="word vocabulary size (embedding rows; the same for both)")
    parser.add_argument("--embedding-dim", type=int, default=200)
    parser.add_argument("--rnn-hidden", type=int, default=512)
    parser.add_argument("--projection", type=int, default=512)
    parser.add_argument("--codes-per-doc", type=int, default=15,
                        help="positive codes per document in the random targets")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", default="none", choices=["none", "bf16"],
                        help="mixed precision: bf16 autocast of forward and loss")
    parser.add_argument("--no-memory", dest="memory", action="store_false",
                        help="skip the peak-memory subprocesses")
    parser.add_argument("--memory-mode", default="auto",
                        choices=["auto", "subprocess", "inprocess"],
                        help="peak memory in one subprocess per variant, or in this process "
                        "one variant at a time (auto: subprocess on CPU, inprocess on CUDA)")
    parser.add_argument("--out", default=str(RESULTS),
                        help="folder for overhead.json and overhead.md")
    # internal: one variant's peak-memory measurement in a child process
    parser.add_argument("--_memory-child", dest="memory_child", choices=VARIANTS,
                        help=argparse.SUPPRESS)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("icd9_codes", "icd10_codes", "tokens", "batch", "vocab", "repeats",
                 "codes_per_doc"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.batch < 2:
        parser.error("--batch must be >= 2 so that the batch mixes both systems")
    return args


# ------------------------------------------------------------------------------------------
# code selection
# ------------------------------------------------------------------------------------------


def choose_codes(icd9: Sequence[str], icd10: Sequence[str], edge_index: np.ndarray,
                 num_icd9: int, num_icd10: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Pick ``num_icd9`` ICD-9 and ``num_icd10`` ICD-10 codes of a GEM graph with many links
    between them.

    ICD-9: a seeded random sample of the linked ICD-9 codes (unlinked ones only when there are
    too few linked). ICD-10: by decreasing number of links into the chosen ICD-9 codes, ties in
    a seeded random order, so unlinked ICD-10 codes only fill up what is left.

    Args:
        icd9, icd10: the graph's codes in node order.
        edge_index: ``[2, E]`` (row 0 ICD-9 index, row 1 ICD-10 index).

    Returns:
        The chosen ICD-9 and ICD-10 codes, each in the graph's node order.
    """
    edge_index = np.asarray(edge_index)
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must have shape [2, E], got {edge_index.shape}")
    if num_icd9 > len(icd9) or num_icd10 > len(icd10):
        raise ValueError(
            f"asked for {num_icd9} ICD-9 / {num_icd10} ICD-10 codes but the graph has "
            f"{len(icd9)} / {len(icd10)}"
        )
    rng = np.random.default_rng(seed)
    linked9 = np.zeros(len(icd9), dtype=bool)
    linked9[edge_index[0]] = True
    order9 = np.concatenate([rng.permutation(np.flatnonzero(linked9)),
                             rng.permutation(np.flatnonzero(~linked9))])
    chosen9 = np.sort(order9[:num_icd9])
    inside = np.zeros(len(icd9), dtype=bool)
    inside[chosen9] = True
    degree = np.bincount(edge_index[1][inside[edge_index[0]]], minlength=len(icd10))
    tie = rng.permutation(len(icd10))
    order10 = np.lexsort((tie, -degree))  # most links first, random among equals
    chosen10 = np.sort(order10[:num_icd10])
    return [icd9[i] for i in chosen9], [icd10[i] for i in chosen10]


def build_graph(args: argparse.Namespace):
    from jams_pyg.graph.gem_graph import GEMGraph

    full = GEMGraph.from_cms_2018(procedures=False)
    icd9, icd10 = choose_codes(full.icd9_codes, full.icd10_codes, full.edge_index.numpy(),
                               args.icd9_codes, args.icd10_codes, seed=args.seed)
    return GEMGraph.from_cms_2018(icd9, icd10, procedures=False)


def graph_stats(graph) -> dict[str, Any]:
    return {
        "icd9_codes": graph.num_icd9, "icd10_codes": graph.num_icd10,
        "links": graph.num_edges,
        "exact_links": int((graph.edge_weight == 1.0).sum()),
        "icd9_linked": int(graph.icd9_linked.sum()),
        "icd10_linked": int(graph.icd10_linked.sum()),
    }


# ------------------------------------------------------------------------------------------
# model, batch, step
# ------------------------------------------------------------------------------------------


def build(args: argparse.Namespace, graph, variant: str, device):
    import torch

    from jams_pyg.models import ModelConfig, build_model

    torch.manual_seed(args.seed)
    config = ModelConfig.for_backbone(
        "laat", vocab_size=args.vocab, embedding_dim=args.embedding_dim,
        rnn_hidden_size=args.rnn_hidden, projection_size=args.projection,
        use_mat=variant == "jams",
    )
    model = build_model(config, graph if variant == "jams" else None,
                        {"icd9": graph.num_icd9, "icd10": graph.num_icd10}).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-3)
    return model, optimizer


def make_batch(args: argparse.Namespace, num_codes: dict[str, int], device) -> dict[str, Any]:
    """``--batch`` documents of ``--tokens`` random tokens (2..vocab-1), the first half ICD-9,
    the rest ICD-10, each with ``--codes-per-doc`` random positive codes."""
    import torch

    g = torch.Generator().manual_seed(args.seed + 1)
    input_ids = torch.randint(2, max(args.vocab, 3), (args.batch, args.tokens), generator=g)
    mask = torch.ones(args.batch, args.tokens, dtype=torch.bool)
    system = torch.tensor([0] * (args.batch // 2) + [1] * (args.batch - args.batch // 2))
    labels = {}
    for sid, s in enumerate(("icd9", "icd10")):
        rows = int((system == sid).sum())
        y = torch.zeros(rows, num_codes[s])
        k = min(args.codes_per_doc, num_codes[s])
        for row in range(rows):
            y[row, torch.randperm(num_codes[s], generator=g)[:k]] = 1.0
        labels[s] = y.to(device)
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device),
            "system": system.to(device), "labels": labels}


def autocast(args: argparse.Namespace, device):
    """The step's autocast context: bf16 with ``--amp bf16``, else disabled."""
    import torch

    amp = getattr(args, "amp", "none")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16")


def mat_inputs(model) -> tuple[Any, Any]:
    """MATConv's graph inputs of a JAMS model (``mat_edges()`` where it has that method: a
    directional graph passes one link set per direction)."""
    if callable(getattr(model, "mat_edges", None)):
        return model.mat_edges()
    return model.edge_index, model.edge_weight


def train_step(model, optimizer, batch: dict[str, Any], amp=None) -> float:
    import torch

    from jams_pyg.models import jams_loss

    optimizer.zero_grad(set_to_none=True)
    with amp if amp is not None else contextlib.nullcontext():
        logits = model(batch["input_ids"], batch["attention_mask"], batch["system"])
        loss = jams_loss(logits, batch["labels"])
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return float(loss.detach())


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(args: argparse.Namespace, graph, device) -> dict[str, Any]:
    """Median step time of both variants (alternating) and of MATConv alone."""
    import torch

    models = {v: build(args, graph, v, device) for v in VARIANTS}
    batch = make_batch(args, {"icd9": graph.num_icd9, "icd10": graph.num_icd10}, device)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for repeat in range(args.warmup + args.repeats):
        for variant in VARIANTS:
            _sync(device)
            start = time.perf_counter()
            train_step(*models[variant], batch, autocast(args, device))
            _sync(device)
            if repeat >= args.warmup:
                times[variant].append(time.perf_counter() - start)
    jams = models["jams"][0]
    tables = (jams.code_tables["icd9"], jams.code_tables["icd10"])
    edge_index, edge_weight = mat_inputs(jams)
    mat_times = []
    for repeat in range(args.warmup + args.repeats):
        jams.zero_grad(set_to_none=True)
        _sync(device)
        start = time.perf_counter()
        with autocast(args, device):
            u, v = jams.mat(tables, edge_index, edge_weight)
        (u.float().sum() + v.float().sum()).backward()
        _sync(device)
        if repeat >= args.warmup:
            mat_times.append(time.perf_counter() - start)
    out = {v: {"median_s": float(np.median(t)), "steps_s": t} for v, t in times.items()}
    out["matconv"] = {"median_s": float(np.median(mat_times)), "steps_s": mat_times}
    out["parameters"] = {v: sum(p.numel() for p in models[v][0].parameters()) for v in VARIANTS}
    out["torch_threads"] = torch.get_num_threads()
    return out


# ------------------------------------------------------------------------------------------
# peak memory (one subprocess per variant)
# ------------------------------------------------------------------------------------------


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / MB


def memory_child(args: argparse.Namespace) -> None:
    import torch

    device = torch.device(args.device)
    graph = build_graph(args)
    model, optimizer = build(args, graph, args.memory_child, device)
    batch = make_batch(args, {"icd9": graph.num_icd9, "icd10": graph.num_icd10}, device)
    result: dict[str, Any] = {"variant": args.memory_child}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        before = _current_rss_mb()
    for _ in range(2):  # the first step also allocates the optimizer state
        train_step(model, optimizer, batch, autocast(args, device))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        result.update(peak_mb=peak / MB, increase_mb=(peak - before) / MB, measure="cuda")
    else:
        result.update(before_mb=before, measure="ru_maxrss")
    print("RESULT " + json.dumps(result), flush=True)


def memory_inprocess(args: argparse.Namespace, graph, device) -> dict[str, dict[str, Any]]:
    """Peak memory of each variant in this process, one variant alive at a time (call it
    with nothing else of the benchmark alive). CUDA: ``max_memory_allocated`` after
    ``reset_peak_memory_stats`` (live tensors only, so as in a fresh process); CPU: the
    resident-set high-water mark ``VmHWM`` after resetting it (Linux), a rough figure."""
    import gc

    import torch

    out: dict[str, dict[str, Any]] = {}
    for variant in VARIANTS:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        model, optimizer = build(args, graph, variant, device)
        batch = make_batch(args, {"icd9": graph.num_icd9, "icd10": graph.num_icd10}, device)
        result: dict[str, Any] = {"variant": variant}
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            before = torch.cuda.memory_allocated(device)
        else:
            before = _current_rss_mb()
            _reset_hwm()
        for _ in range(2):  # the first step also allocates the optimizer state
            train_step(model, optimizer, batch, autocast(args, device))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device)
            result.update(peak_mb=(peak - base) / MB, increase_mb=(peak - before) / MB,
                          measure="cuda, in-process (model, optimizer, batch and steps)")
        else:
            peak_mb = _hwm_mb()
            result.update(peak_mb=peak_mb, increase_mb=peak_mb - before,
                          measure="VmHWM, in-process (rough)")
        out[variant] = result
        del model, optimizer, batch
    gc.collect()
    return out


def _reset_hwm() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _hwm_mb() -> float:
    import re

    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return _current_rss_mb()
    match = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024.0 if match else _current_rss_mb()


def measure_memory(args: argparse.Namespace, variant: str, argv: Sequence[str]) -> dict[str, Any]:
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    proc = subprocess.Popen([sys.executable, __file__, *argv, "--_memory-child", variant],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"memory subprocess for {variant} failed ({proc.returncode}):\n"
                           + stdout[-4000:])
    line = [x for x in stdout.splitlines() if x.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT "):])
    if result["measure"] == "ru_maxrss":
        peak = usage.ru_maxrss / 1024.0  # KiB on Linux
        result.update(peak_mb=peak, increase_mb=peak - result["before_mb"])
    return result


# ------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------


def summarize(timing: dict[str, Any], memory: dict[str, dict[str, Any]] | None
              ) -> dict[str, Any]:
    """Overhead of JAMS over the backbone: time (absolute, relative), MATConv share, memory."""
    base, jams = timing["backbone"]["median_s"], timing["jams"]["median_s"]
    mat = timing["matconv"]["median_s"]
    summary: dict[str, Any] = {
        "backbone_step_s": base, "jams_step_s": jams,
        "added_s": jams - base, "added_fraction": (jams - base) / base,
        "matconv_s": mat, "matconv_fraction_of_backbone": mat / base,
        "target_fraction": TARGET,
        "target_met": (jams - base) / base <= TARGET,
    }
    if memory:
        b, j = memory["backbone"], memory["jams"]
        summary.update(
            backbone_peak_mb=b["peak_mb"], jams_peak_mb=j["peak_mb"],
            added_peak_mb=j["peak_mb"] - b["peak_mb"],
            added_peak_fraction=(j["peak_mb"] - b["peak_mb"]) / b["peak_mb"],
            backbone_increase_mb=b["increase_mb"], jams_increase_mb=j["increase_mb"],
        )
    return summary


def markdown(settings: dict[str, Any], graph: dict[str, Any], s: dict[str, Any]) -> str:
    lines = [
        f"LAAT (embedding {settings['embedding_dim']}, BiLSTM {settings['rnn_hidden']}, "
        f"projection {settings['projection']}, vocabulary {settings['vocab']:,}) on "
        f"{graph['icd9_codes']:,} ICD-9 + {graph['icd10_codes']:,} ICD-10 codes, "
        f"{graph['links']:,} GEM links ({graph['exact_links']:,} exact; "
        f"{graph['icd9_linked']:,} ICD-9 / {graph['icd10_linked']:,} ICD-10 codes linked); "
        f"batch {settings['batch']} ({settings['batch'] // 2} ICD-9 + "
        f"{settings['batch'] - settings['batch'] // 2} ICD-10 documents) x "
        f"{settings['tokens']:,} tokens; device {settings['device']}"
        f"{' (' + settings['device_name'] + ')' if settings['device'] != 'cpu' else ''}"
        f"{', AMP ' + settings['amp'] if settings.get('amp', 'none') != 'none' else ''}, "
        f"{settings['torch_threads']} torch threads; median of {settings['repeats']} steps "
        f"after {settings['warmup']} warm-up.",
        "",
        "| | backbone (use_mat=False) | JAMS (use_mat=True) | JAMS − backbone |",
        "|:---|---:|---:|---:|",
        f"| step time (s): fwd + bwd + AdamW | {s['backbone_step_s']:.3f} | "
        f"{s['jams_step_s']:.3f} | {s['added_s']:+.3f} ({100 * s['added_fraction']:+.1f}%) |",
        f"| MATConv alone, fwd + bwd (s) | – | {s['matconv_s']:.4f} | "
        f"{100 * s['matconv_fraction_of_backbone']:.1f}% of a backbone step |",
    ]
    if "backbone_peak_mb" in s:
        lines.append(
            f"| peak memory (MiB, {settings['memory_measure']}) | {s['backbone_peak_mb']:.0f} | "
            f"{s['jams_peak_mb']:.0f} | {s['added_peak_mb']:+.0f} "
            f"({100 * s['added_peak_fraction']:+.1f}%) |")
        lines.append(
            f"| peak growth during the steps (MiB) | {s['backbone_increase_mb']:.0f} | "
            f"{s['jams_increase_mb']:.0f} | "
            f"{s['jams_increase_mb'] - s['backbone_increase_mb']:+.0f} |")
    verdict = "met" if s["target_met"] else "NOT met"
    lines += ["", f"Target (JAMS adds at most {100 * TARGET:.0f}% per step): **{verdict}** "
              f"({100 * s['added_fraction']:+.1f}% measured; the step-time difference is "
              f"noisy on a shared machine, the MATConv time is the direct cost)."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.memory_child:
        memory_child(args)
        return None
    # Spin-waiting OpenMP threads distort timings on a shared, oversubscribed machine.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available")
    start = time.perf_counter()
    graph = build_graph(args)
    stats = graph_stats(graph)
    print(f"graph: {stats}", flush=True)
    timing = time_steps(args, graph, device)
    memory = None
    mode = args.memory_mode
    if mode == "auto":
        mode = "inprocess" if device.type == "cuda" else "subprocess"
    if args.memory and mode == "inprocess":
        memory = memory_inprocess(args, graph, device)
    elif args.memory:
        memory = {v: measure_memory(args, v, argv) for v in VARIANTS}
    summary = summarize(timing, memory)
    settings = {k: v for k, v in vars(args).items() if k not in ("memory_child", "out")}
    settings.update(torch=torch.__version__, torch_threads=timing["torch_threads"],
                    python=platform.python_version(), cpu_count=os.cpu_count(),
                    memory_measure=("max_memory_allocated" if device.type == "cuda"
                                    else "ru_maxrss" if mode == "subprocess" else "VmHWM"),
                    device_name=(torch.cuda.get_device_name(device) if device.type == "cuda"
                                 else platform.processor() or platform.machine()))
    report = markdown(settings, stats, summary)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"settings": settings, "graph": stats, "timing": timing, "memory": memory,
               "summary": summary, "seconds": time.perf_counter() - start}
    (out / "overhead.json").write_text(json.dumps(payload, indent=2))
    (out / "overhead.md").write_text("# JAMS training-step overhead\n\n" + report)
    print(report)
    return payload


if __name__ == "__main__":
    main()
