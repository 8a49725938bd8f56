"""MATConv vs PyG GATConv: forward + backward time and peak memory.

Cases (``--sizes``):

* ``gem512`` / ``gem64``: the full CMS 2018 diagnosis GEM graph
  (``GEMGraph.from_cms_2018()``: 14,567 ICD-9 and 71,704 ICD-10 codes, 85,566
  links) with d = 512 / 64;
* ``pyg64``: the PyG standard size, 10k nodes split 5k / 5k into the two
  systems, 200k distinct random bipartite edges, 64 channels.

Methods (``--methods``):

* ``mat``: :class:`jams_pyg.nn.MATConv` (default fused CSR path);
* ``mat_propagate``: ``MATConv(fused=False)``, PyG message passing (E × d messages);
* ``mat_coo``: MATConv with the aggregation done by ``torch.sparse.mm`` on COO
  tensors and PyTorch's own autograd (the variant the custom backward replaces);
* ``gat``: ``GATConv(d, d, heads=1)`` on the same codes as one homogeneous
  graph (ICD-10 nodes shifted by n, both directions, ``add_self_loops=True``).

Inputs are leaf tensors requiring grad (embedding tables are trained); one
step = forward, ``sum`` of the outputs, backward.

Time: the methods of a case run round-robin in one subprocess (a change of
machine load hits all alike); reported is the median wall time over
``--repeats`` steps after ``--warmup`` steps (slow methods run fewer repeats,
see ``--budget``), plus the process CPU time per step. ``--threads`` runs the
whole comparison once per torch thread count. Subprocesses get
``OMP_WAIT_POLICY=PASSIVE`` by default (``--omp-wait-policy``): on a shared,
oversubscribed machine OpenMP's spin-waiting makes each multi-threaded op wait
for a scheduler slice.

Peak memory, each (case, method) in its own fresh subprocess:

* CPU: the process's peak resident set size (``VmHWM``) during one cold step,
  minus the resident size just before it; the peak is reset by writing ``5`` to
  ``/proc/self/clear_refs`` after the inputs are built (Linux). This counts
  everything the step touches (tensors, autograd buffers, allocator slack),
  unlike ``tracemalloc`` (blind to torch's C++ allocations). Falls back to the
  ``ru_maxrss`` delta of the subprocess where ``clear_refs`` is unavailable.
* CUDA: ``torch.cuda.max_memory_allocated()`` minus the memory allocated before
  the step.

Example::

    python benchmarks/mat_vs_gat.py --device cpu --threads 1 2 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

CASES = {
    "gem512": {"graph": "gem", "channels": 512},
    "gem64": {"graph": "gem", "channels": 64},
    "pyg64": {"graph": "pyg", "channels": 64},
}
METHODS = {
    "mat": "MATConv (fused CSR)",
    "mat_propagate": "MATConv (fused=False, PyG propagate)",
    "mat_coo": "MATConv + COO torch.sparse.mm autograd",
    "gat": "GATConv(d, d, heads=1)",
}


# ------------------------------------------------------------------ graphs
def build_graph(kind: str) -> dict[str, Any]:
    if kind == "gem":
        from jams_pyg import GEMGraph

        graph = GEMGraph.from_cms_2018()
        return {
            "edge_index": graph.edge_index,
            "edge_weight": graph.edge_weight,
            "num_icd9": graph.num_icd9,
            "num_icd10": graph.num_icd10,
        }
    # PyG standard size: 10k nodes (5k per side), 200k distinct random edges.
    n = m = 5_000
    num_edges = 200_000
    gen = torch.Generator().manual_seed(0)
    key = torch.unique(torch.randint(0, n * m, (int(num_edges * 1.05),), generator=gen))
    key = key[torch.randperm(key.numel(), generator=gen)[:num_edges]]
    assert key.numel() == num_edges
    edge_index = torch.stack([key // m, key % m])
    weight = torch.where(torch.rand(num_edges, generator=gen) < 0.5, 1.0, 0.5)
    return {"edge_index": edge_index, "edge_weight": weight, "num_icd9": n, "num_icd10": m}


# ----------------------------------------------------------------- methods
def make_method(name: str, channels: int, graph: dict[str, Any], device: torch.device):
    """Returns (module, step inputs builder, step function)."""
    from torch_geometric.nn import GATConv

    from jams_pyg.nn import MATConv

    n = graph["num_icd9"]
    edge_index = graph["edge_index"].to(device)
    weight = graph["edge_weight"].to(device)

    if name in ("mat", "mat_propagate", "mat_coo"):
        if name == "mat_coo":

            class COOMATConv(MATConv):
                def propagate(self, edge_index, x, alpha, size):  # type: ignore[override]
                    # messages flow edge_index[0] (source) -> edge_index[1] (target)
                    adj = torch.sparse_coo_tensor(
                        edge_index.flip(0), alpha, (size[1], size[0]), is_coalesced=False
                    )
                    return torch.sparse.mm(adj, x[0])

            module = COOMATConv(channels, fused=False)
        else:
            module = MATConv(channels, fused=name == "mat")
        module = module.to(device)

        def step(x9, x10):
            out9, out10 = module((x9, x10), edge_index, weight)
            (out9.sum() + out10.sum()).backward()

        return module, step

    gat_edges = torch.stack([edge_index[0], edge_index[1] + n])
    gat_edges = torch.cat([gat_edges, gat_edges.flip(0)], dim=1)
    module = GATConv(channels, channels, heads=1, add_self_loops=True).to(device)

    def step(x9, x10):
        out = module(torch.cat([x9, x10], dim=0), gat_edges)
        out.sum().backward()

    return module, step


# ------------------------------------------------------------------ memory
def _proc_status(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"{field}:\s+(\d+) kB", text)
    return int(match.group(1)) * 1024 if match else None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _setup(case: str, method: str, device: torch.device, graph: dict[str, Any]):
    channels = CASES[case]["channels"]
    torch.manual_seed(0)
    module, step = make_method(method, channels, graph, device)
    x9 = torch.randn(graph["num_icd9"], channels, device=device).requires_grad_()
    x10 = torch.randn(graph["num_icd10"], channels, device=device).requires_grad_()

    def run() -> None:
        step(x9, x10)
        module.zero_grad(set_to_none=True)
        x9.grad = x10.grad = None

    return run


def memory_worker(case: str, method: str, device: torch.device, graph: dict[str, Any]) -> dict:
    """Peak memory of one cold forward + backward step, in a fresh process."""
    run = _setup(case, method, device, graph)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        run()
        _sync(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        how = "torch.cuda.max_memory_allocated() delta over one cold step"
    else:
        rss_before = _proc_status("VmRSS") or 0
        if _reset_peak_rss():
            run()
            peak = (_proc_status("VmHWM") or 0) - rss_before
            how = "VmHWM (reset by /proc/self/clear_refs) minus VmRSS before one cold step"
        else:
            maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            run()
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - maxrss_before
            how = "ru_maxrss delta of a fresh subprocess over one cold step"
    return {"peak_mb": peak / 2**20, "memory_method": how}


def timing_worker(
    case: str, methods: list[str], device: torch.device, graph: dict[str, Any], args: dict
) -> dict[str, dict]:
    """Round-robin timing of all methods of a case in one process, so that a
    change of machine load hits all of them alike."""
    runs = {method: _setup(case, method, device, graph) for method in methods}
    wall: dict[str, list[float]] = {method: [] for method in methods}
    cpu: dict[str, list[float]] = {method: [] for method in methods}
    for method in methods:
        for _ in range(args["warmup"]):
            runs[method]()
    for _ in range(args["repeats"]):
        for method in methods:
            if wall[method] and sum(wall[method]) > args["budget"]:
                continue  # a slow method: enough seconds measured
            _sync(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            runs[method]()
            _sync(device)
            wall[method].append(time.perf_counter() - start)
            cpu[method].append(time.process_time() - start_cpu)
    return {method: {"wall_s": wall[method], "cpu_s": cpu[method]} for method in methods}


# ------------------------------------------------------------------- driver
def run_subprocess(job: dict) -> Any:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(job)]
    env = dict(os.environ)
    if job["args"].get("omp_wait_policy", "inherit") != "inherit":
        env["OMP_WAIT_POLICY"] = job["args"]["omp_wait_policy"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {job} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _worker_main(job: dict) -> Any:
    if job["args"].get("threads"):
        torch.set_num_threads(job["args"]["threads"])
    device = torch.device(job["device"])
    graph = torch.load(job["graph"])
    if job["kind"] == "memory":
        return memory_worker(job["case"], job["methods"][0], device, graph)
    return timing_worker(job["case"], job["methods"], device, graph, job["args"])


def markdown_table(results: list[dict]) -> str:
    lines = [
        "| case | ICD-9 / ICD-10 nodes | edges | d | threads | method | fwd+bwd median (ms) "
        "| speed-up vs GAT | CPU time median (ms) | peak memory (MiB) | memory vs GAT |",
        "|---|---|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    gat = {(r["case"], r["threads"]): r for r in results if r["method"] == "gat"}
    for r in results:
        base = gat.get((r["case"], r["threads"]))
        speed = f"{base['median_ms'] / r['median_ms']:.2f}×" if base else "–"
        mem = f"{r['peak_mb'] / base['peak_mb']:.2f}×" if base and base["peak_mb"] > 0 else "–"
        lines.append(
            f"| {r['case']} | {r['num_icd9']:,} / {r['num_icd10']:,} | {r['num_edges']:,} "
            f"| {r['channels']} | {r['threads']} | {r['label']} "
            f"| {r['median_ms']:.0f} (n={len(r['times_ms'])}) "
            f"| {speed} | {r['cpu_median_ms']:.0f} | {r['peak_mb']:.0f} | {mem} |"
        )
    return "\n".join(lines)


def run_case(case: str, methods: list[str], device: str, graph_file: str, args: dict) -> list:
    graph = torch.load(graph_file)
    job = {"case": case, "device": device, "graph": graph_file, "args": args}
    memory = {
        method: run_subprocess({**job, "kind": "memory", "methods": [method]}) for method in methods
    }
    timing = run_subprocess({**job, "kind": "timing", "methods": methods})
    results = []
    for method in methods:
        wall, cpu = timing[method]["wall_s"], timing[method]["cpu_s"]
        results.append(
            {
                "case": case,
                "method": method,
                "label": METHODS[method],
                "num_icd9": graph["num_icd9"],
                "num_icd10": graph["num_icd10"],
                "num_edges": int(graph["edge_index"].size(1)),
                "channels": CASES[case]["channels"],
                "threads": args["threads"],
                "median_ms": 1e3 * statistics.median(wall),
                "min_ms": 1e3 * min(wall),
                "times_ms": [1e3 * t for t in wall],
                "cpu_median_ms": 1e3 * statistics.median(cpu),
                "cpu_times_ms": [1e3 * t for t in cpu],
                **memory[method],
            }
        )
        r = results[-1]
        print(
            f"{case:>7} {args['threads']}t {method:>14}: {r['median_ms']:9.1f} ms wall, "
            f"{r['cpu_median_ms']:9.1f} ms CPU (n={len(wall)}), peak {r['peak_mb']:8.1f} MiB",
            flush=True,
        )
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per method")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument(
        "--budget",
        type=float,
        default=60.0,
        help="seconds of timed steps per method; slower methods stop early (at least 1 step)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[torch.get_num_threads()],
        help="torch CPU thread counts to run, each a separate measurement (default: torch's)",
    )
    parser.add_argument(
        "--omp-wait-policy",
        default="PASSIVE",
        choices=["PASSIVE", "ACTIVE", "inherit"],
        help=(
            "OMP_WAIT_POLICY of the measuring subprocesses. PASSIVE (default): on a shared, "
            "oversubscribed machine OpenMP's spin-waiting makes every multi-threaded op wait "
            "for a scheduler slice (about 12 ms per op was measured on the 2-core dev box)"
        ),
    )
    parser.add_argument("--sizes", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--no-write", action="store_true", help="only print the table")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(_worker_main(json.loads(args.worker))))
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")

    worker_args = {
        "repeats": args.repeats,
        "warmup": args.warmup,
        "budget": args.budget,
        "omp_wait_policy": args.omp_wait_policy,
    }
    load_before = os.getloadavg()
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        graph_files: dict[str, str] = {}
        for case in args.sizes:
            kind = CASES[case]["graph"]
            if kind not in graph_files:
                graph_files[kind] = str(Path(tmp) / f"{kind}.pt")
                torch.save(build_graph(kind), graph_files[kind])
            for threads in args.threads:
                job_args = {**worker_args, "threads": threads}
                results += run_case(case, args.methods, args.device, graph_files[kind], job_args)
    load_after = os.getloadavg()
    table = markdown_table(results)
    print()
    print(table)

    meta = {
        "device": args.device,
        "device_name": (
            torch.cuda.get_device_name()
            if args.device == "cuda"
            else (platform.processor() or platform.machine())
        ),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": args.threads,
        "python": platform.python_version(),
        "repeats": args.repeats,
        "warmup": args.warmup,
        "budget_s": args.budget,
        "omp_wait_policy": args.omp_wait_policy,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "timing": (
            "median wall time of forward + sum + backward steps after warm-up; the methods "
            "of a case run round-robin in one process; CPU time = process CPU time per step"
        ),
        "memory": results[0]["memory_method"] if results else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if not args.no_write:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        (args.out_dir / "mat_vs_gat.json").write_text(
            json.dumps({"meta": meta, "results": results}, indent=2) + "\n"
        )
        (args.out_dir / "mat_vs_gat.md").write_text(
            f"MATConv vs GATConv, forward + backward on {args.device} "
            f"({meta['device_name']}, {meta['cpu_count']} cores, torch {meta['torch']}), "
            f"{meta['date']}; OMP_WAIT_POLICY={args.omp_wait_policy}; load average before/after "
            f"{load_before[0]:.2f} / {load_after[0]:.2f} (the machine is shared).\n\n"
            f"Time: {meta['timing']}. Peak memory: {meta['memory']}.\n\n{table}\n"
        )


if __name__ == "__main__":
    main()
