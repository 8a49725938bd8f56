"""MATConv vs PyG GATConv: forward + backward time and peak memory.

Cases (``--sizes``):

* ``gem512`` / ``gem64``: the full CMS 2018 diagnosis GEM graph
  (``GEMGraph.from_cms_2018(procedures=False)``: 14,567 ICD-9 and 71,704 ICD-10 codes, 85,566
  links) with d = 512 / 64;
* ``pyg64``: the PyG standard size, 10k nodes split 5k / 5k into the two
  systems, 200k distinct random bipartite edges, 64 channels;
* ``pyg512``: the same with 512 channels (not run by default);
* ``gemcut16`` / ``pygsmall16``: tiny cases for a quick end-to-end check
  (``benchmarks/gpu_check.py --quick``): 300 linked ICD-9 codes (every 40th) of the
  GEM graph with their ICD-10 neighbours, and 500 + 500 random nodes with 5,000
  edges, d = 16 (not run by default).

MATConv gets the graph's MAT inputs: ``graph.mat_edges()`` where the GEM graph
has that method (a directional graph passes one link set per direction), else
``(graph.edge_index, graph.edge_weight)``.

Methods (``--methods``):

* ``mat``: :class:`jams_pyg.nn.MATConv` (default fused CSR path);
* ``mat_propagate``: ``MATConv(fused=False)``, PyG message passing (E × d messages);
* ``mat_coo``: MATConv with the aggregation done by ``torch.sparse.mm`` on COO
  tensors and PyTorch's own autograd (the variant the custom backward replaces);
* ``gat``: ``GATConv(d, d, heads=1)`` on the same codes as one homogeneous
  graph (ICD-10 nodes shifted by n, both directions, ``add_self_loops=True``);
* ``mat_before`` / ``mat_propagate_before`` (``--before REV``): ``mat`` /
  ``mat_propagate`` with MATConv and its CSR kernels as they were at commit REV
  (``git show REV:jams_pyg/nn/mat_conv.py`` and ``sparse_aggr.py``, imported from a
  temporary package), each timed right after its HEAD counterpart in the same
  round-robin: a change of MATConv side by side with the layer before it;
* ``mat_compile`` / ``gat_compile``: ``mat`` / ``gat`` wrapped in
  ``torch.compile`` (``--compile CASES``): each case's compiled methods run in
  their own subprocess with a time limit (``--compile-timeout``), after all
  eager cases, so a failing or slow compilation costs no eager result (it is
  recorded in ``meta["failures"]``).

PyG uses ``torch-scatter`` where it is installed (``scatter(reduce="max")``
with gradients on CUDA); then each case is timed twice, the second time with
``torch_geometric.typing.WITH_TORCH_SCATTER = False`` (rows labelled
``[no torch-scatter]``). Where it is not installed that is recorded in
``meta["torch_scatter"]``.

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
* CUDA: ``torch.cuda.max_memory_allocated()`` (after
  ``torch.cuda.reset_peak_memory_stats()``) minus the memory allocated before
  the step, for one step after a warm-up step (the steady state of training;
  MATConv's cached CSR structure is built in the warm-up), measured in the
  timing subprocess, one method after the other (``cold_peak_mb``: the first,
  cold step). ``--memory inline`` does the same on CPU (VmHWM), a quick check
  that spares the subprocesses.

Results are written after each case (and each compiled case), so a run killed
half-way leaves the cases done.

Example::

    python benchmarks/mat_vs_gat.py --device cpu --threads 1 2 --repeats 5
    python benchmarks/mat_vs_gat.py --threads 1 --methods mat mat_propagate gat \
        --before d160cdd --out-dir benchmarks/results/mat_vs_gat_before_after
    python benchmarks/mat_vs_gat.py --device cuda --sizes gem64 gem512 pyg64 pyg512 \
        --repeats 20 --warmup 3 --budget 3 --compile gem512 pyg64 --out-dir /tmp/cuda
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import signal
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
    "pyg512": {"graph": "pyg", "channels": 512},
    "gemcut16": {"graph": "gemcut", "channels": 16},
    "pygsmall16": {"graph": "pygsmall", "channels": 16},
}
DEFAULT_SIZES = ["gem512", "gem64", "pyg64"]
METHODS = {
    "mat": "MATConv (fused CSR)",
    "mat_propagate": "MATConv (fused=False, PyG propagate)",
    "mat_coo": "MATConv + COO torch.sparse.mm autograd",
    "gat": "GATConv(d, d, heads=1)",
}
COMPILED = {
    "mat_compile": "torch.compile(MATConv (fused CSR))",
    "gat_compile": "torch.compile(GATConv(d, d, heads=1))",
}
BEFORE = {"mat": "mat_before", "mat_propagate": "mat_propagate_before"}
LABELS = {**METHODS, **COMPILED}
#: the package name of MATConv as it was at ``--before REV``
BEFORE_PACKAGE = "mat_conv_before"


def label(method: str, args: dict) -> str:
    """The table's name of ``method`` (a ``*_before`` method names the commit)."""
    if method.endswith("_before"):
        return f"{LABELS[method.removesuffix('_before')]} at {args['before_rev']}"
    return LABELS[method]


def with_before(methods: list[str]) -> list[str]:
    """``methods`` with each MATConv method followed by its ``--before`` twin."""
    return [m for method in methods for m in (method, BEFORE.get(method)) if m]


def write_before_package(rev: str, folder: Path) -> str:
    """MATConv and its CSR kernels as they were at commit ``rev``, written as the package
    :data:`BEFORE_PACKAGE` under ``folder`` (its one import of the package rewritten to
    the package's own copy); returns ``rev``'s short hash."""
    def git(*argv: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *argv], check=True,
                              capture_output=True, text=True).stdout

    short = git("rev-parse", "--short", f"{rev}^{{commit}}").strip()
    package = folder / BEFORE_PACKAGE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for name in ("sparse_aggr", "mat_conv"):
        source = git("show", f"{short}:jams_pyg/nn/{name}.py").replace(
            "from jams_pyg.nn.sparse_aggr import", f"from {BEFORE_PACKAGE}.sparse_aggr import")
        if re.search(r"^\s*(from|import) jams_pyg", source, re.MULTILINE):
            raise ValueError(f"jams_pyg/nn/{name}.py at {short} imports more of jams_pyg "
                             "than sparse_aggr: --before cannot load it on its own")
        (package / f"{name}.py").write_text(source)
    return short
NO_SCATTER = " [no torch-scatter]"


def mat_inputs(graph: Any) -> tuple[Any, Any]:
    """What MATConv takes for a GEM graph: ``graph.mat_edges()`` where it exists (a
    directional graph: one link set per direction), else ``(edge_index, edge_weight)``."""
    if callable(getattr(graph, "mat_edges", None)):
        return graph.mat_edges()
    return graph.edge_index, graph.edge_weight


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, (tuple, list)):
        return tuple(v.to(device) for v in value)
    return value.to(device)


def torch_scatter_version() -> str | None:
    """The installed torch-scatter's version (None: not installed); nothing is imported."""
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec("torch_scatter") is None:
        return None
    try:
        return importlib.metadata.version("torch_scatter")
    except importlib.metadata.PackageNotFoundError:
        return "unknown version"


# ------------------------------------------------------------------ graphs
def gem_cut(num_icd9: int = 300):
    """A small cut of the CMS 2018 GEM graph: ``num_icd9`` linked ICD-9 codes (every 40th)
    and all their ICD-10 neighbours."""
    from jams_pyg import GEMGraph

    full = GEMGraph.from_cms_2018(procedures=False)
    nine = torch.unique(full.edge_index[0])[::40][:num_icd9]  # spread over the chapters
    ten = torch.unique(full.edge_index[1][torch.isin(full.edge_index[0], nine)])
    return GEMGraph.from_cms_2018(
        [full.icd9_codes[i] for i in nine.tolist()], [full.icd10_codes[j] for j in ten.tolist()],
        procedures=False,
    )


def build_graph(kind: str) -> dict[str, Any]:
    if kind in ("gem", "gemcut"):
        from jams_pyg import GEMGraph

        graph = GEMGraph.from_cms_2018(procedures=False) if kind == "gem" else gem_cut()
        edge_index, edge_weight = mat_inputs(graph)
        return {
            "edge_index": edge_index,
            "edge_weight": edge_weight,
            "num_icd9": graph.num_icd9,
            "num_icd10": graph.num_icd10,
            "num_edges": int(graph.num_edges),
        }
    # PyG standard size: 10k nodes (5k per side), 200k distinct random edges.
    n = m = 5_000
    num_edges = 200_000
    if kind == "pygsmall":
        n = m = 500
        num_edges = 5_000
    gen = torch.Generator().manual_seed(0)
    key = torch.unique(torch.randint(0, n * m, (int(num_edges * 1.05),), generator=gen))
    key = key[torch.randperm(key.numel(), generator=gen)[:num_edges]]
    assert key.numel() == num_edges
    edge_index = torch.stack([key // m, key % m])
    weight = torch.where(torch.rand(num_edges, generator=gen) < 0.5, 1.0, 0.5)
    return {
        "edge_index": edge_index,
        "edge_weight": weight,
        "num_icd9": n,
        "num_icd10": m,
        "num_edges": num_edges,
    }


def gat_edge_index(edge_index: Any, n: int) -> torch.Tensor:
    """The bipartite links as one homogeneous graph for GATConv (ICD-10 nodes shifted by
    ``n``), messages both ways; for a pair of link sets, the first updates ICD-9 codes, the
    second ICD-10 codes."""
    if isinstance(edge_index, (tuple, list)):
        to9, to10 = edge_index
        return torch.cat(
            [torch.stack([to10[0], to10[1] + n]), torch.stack([to9[1] + n, to9[0]])], dim=1
        )
    gat_edges = torch.stack([edge_index[0], edge_index[1] + n])
    return torch.cat([gat_edges, gat_edges.flip(0)], dim=1)


# ----------------------------------------------------------------- methods
def make_method(
    name: str,
    channels: int,
    graph: dict[str, Any],
    device: torch.device,
    compile_backend: str = "inductor",
):
    """Returns (module, step function)."""
    from torch_geometric.nn import GATConv

    from jams_pyg.nn import MATConv

    n = graph["num_icd9"]
    edge_index = _to(graph["edge_index"], device)
    weight = _to(graph["edge_weight"], device)
    compiled = name.endswith("_compile")
    name = name.removesuffix("_compile")
    if name.endswith("_before"):  # the layer at --before REV (the worker's sys.path has it)
        import importlib

        MATConv = importlib.import_module(f"{BEFORE_PACKAGE}.mat_conv").MATConv
        name = name.removesuffix("_before")

    if name in ("mat", "mat_propagate", "mat_coo"):
        if name == "mat_coo":

            class COOMATConv(MATConv):
                def propagate(  # type: ignore[override]
                    self, edge_index, x, alpha, size, self_alpha, edges=None
                ):
                    # messages flow edge_index[0] (source) -> edge_index[1] (target);
                    # update() adds the self term and applies the ELU
                    adj = torch.sparse_coo_tensor(
                        edge_index.flip(0), alpha, (size[1], size[0]), is_coalesced=False
                    )
                    return self.update(torch.sparse.mm(adj, x[0]), x, self_alpha, None)

            module = COOMATConv(channels, fused=False)
        else:
            module = MATConv(channels, fused=name == "mat")
        module = module.to(device)
        call = torch.compile(module, backend=compile_backend) if compiled else module

        def step(x9, x10):
            out9, out10 = call((x9, x10), edge_index, weight)
            (out9.sum() + out10.sum()).backward()

        return module, step

    gat_edges = gat_edge_index(edge_index, n)
    module = GATConv(channels, channels, heads=1, add_self_loops=True).to(device)
    call = torch.compile(module, backend=compile_backend) if compiled else module

    def step(x9, x10):
        out = call(torch.cat([x9, x10], dim=0), gat_edges)
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


def _setup(
    case: str,
    method: str,
    device: torch.device,
    graph: dict[str, Any],
    compile_backend: str = "inductor",
):
    channels = CASES[case]["channels"]
    torch.manual_seed(0)
    module, step = make_method(method, channels, graph, device, compile_backend)
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
    if device.type == "cuda":
        peak = _step_peak(run, device)
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


def _step_peak(run, device: torch.device) -> float:
    """Peak memory (bytes) one step adds over what is allocated (CUDA) or resident (CPU)
    before it, in this process."""
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        run()
        _sync(device)
        return float(torch.cuda.max_memory_allocated(device) - before)
    before = _proc_status("VmRSS") or 0
    _reset_peak_rss()
    run()
    return float((_proc_status("VmHWM") or 0) - before)


def inline_memory(runs: dict[str, Any], device: torch.device) -> dict[str, dict]:
    """Peak memory of each method's first (cold) and second (warm) step, one method after
    the other in this process. On CUDA exact (allocator statistics); on CPU a rough figure
    (memory freed by an earlier method may stay resident)."""
    if device.type == "cuda":  # cuBLAS workspaces etc.: allocated once, not by a method
        a = torch.randn(64, 64, device=device, requires_grad=True)
        (a @ a).sum().backward()
        _sync(device)
    how = (
        "torch.cuda.max_memory_allocated() delta (after reset_peak_memory_stats) over one "
        "step after a warm-up step; cold_peak_mb: the first step"
        if device.type == "cuda"
        else "VmHWM (reset by /proc/self/clear_refs) minus VmRSS before one step after a "
        "warm-up step, all methods in one process (rough)"
    )
    out = {}
    for method, run in runs.items():
        cold = _step_peak(run, device)
        warm = _step_peak(run, device)
        out[method] = {"peak_mb": warm / 2**20, "cold_peak_mb": cold / 2**20, "memory_method": how}
    return out


def timing_worker(
    case: str, methods: list[str], device: torch.device, graph: dict[str, Any], args: dict
) -> dict[str, Any]:
    """Round-robin timing of all methods of a case in one process, so that a
    change of machine load hits all of them alike (with ``args["memory"] ==
    "inline"``, and always on CUDA, the peak memory of each method first)."""
    backend = args.get("compile_backend", "inductor")
    runs = {method: _setup(case, method, device, graph, backend) for method in methods}
    memory = None
    if args.get("memory") == "inline" or device.type == "cuda":
        memory = inline_memory(runs, device)
    wall: dict[str, list[float]] = {method: [] for method in methods}
    cpu: dict[str, list[float]] = {method: [] for method in methods}
    for method in methods:
        # a compiled method compiles its forward and backward in the first steps
        warmup = max(args["warmup"], 2) if method in COMPILED else args["warmup"]
        for _ in range(warmup):
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
    timing = {method: {"wall_s": wall[method], "cpu_s": cpu[method]} for method in methods}
    return {"timing": timing, "memory": memory}


# ------------------------------------------------------------------- driver
def run_subprocess(job: dict, timeout: float | None = None) -> Any:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(job)]
    env = dict(os.environ)
    if job["args"].get("omp_wait_policy", "inherit") != "inherit":
        env["OMP_WAIT_POLICY"] = job["args"]["omp_wait_policy"]
    # a child that hangs (or compiles too long) is killed with its own children
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise RuntimeError(
            f"worker {job['kind']} {job['case']} {job['methods']} timed out after {timeout:.0f} s"
        ) from None
    if proc.returncode != 0:
        raise RuntimeError(f"worker {job} failed:\n{stderr[-4000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def _worker_main(job: dict) -> Any:
    if job["args"].get("before_dir"):
        sys.path.insert(0, job["args"]["before_dir"])
    if job["args"].get("threads"):
        torch.set_num_threads(job["args"]["threads"])
    if job["args"].get("no_torch_scatter"):
        import torch_geometric.typing

        torch_geometric.typing.WITH_TORCH_SCATTER = False
    device = torch.device(job["device"])
    graph = torch.load(job["graph"], weights_only=True)
    if job["kind"] == "memory":
        return memory_worker(job["case"], job["methods"][0], device, graph)
    return timing_worker(job["case"], job["methods"], device, graph, job["args"])


def _ms(value: float) -> str:
    """Milliseconds: whole numbers from 10 ms on (CPU steps), else 3 significant digits."""
    return f"{value:.0f}" if value >= 10 else f"{value:.3g}"


def markdown_table(results: list[dict]) -> str:
    lines = [
        "| case | ICD-9 / ICD-10 nodes | edges | d | threads | method | fwd+bwd median (ms) "
        "| speed-up vs GAT | CPU time median (ms) | peak memory (MiB) | memory vs GAT |",
        "|---|---|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]

    def key(r: dict) -> tuple:
        return r["case"], r["threads"], r.get("no_torch_scatter", False)

    gat = {key(r): r for r in results if r["method"] == "gat"}
    for r in results:
        base = gat.get(key(r))
        speed = f"{base['median_ms'] / r['median_ms']:.2f}×" if base else "–"
        mem = f"{r['peak_mb'] / base['peak_mb']:.2f}×" if base and base["peak_mb"] > 0 else "–"
        lines.append(
            f"| {r['case']} | {r['num_icd9']:,} / {r['num_icd10']:,} | {r['num_edges']:,} "
            f"| {r['channels']} | {r['threads']} | {r['label']} "
            f"| {_ms(r['median_ms'])} (n={len(r['times_ms'])}) "
            f"| {speed} | {_ms(r['cpu_median_ms'])} | {r['peak_mb']:.0f} | {mem} |"
        )
    return "\n".join(lines)


def run_case(
    case: str,
    methods: list[str],
    device: str,
    graph_file: str,
    args: dict,
    timeout: float | None = None,
) -> list:
    graph = torch.load(graph_file, weights_only=True)
    job = {"case": case, "device": device, "graph": graph_file, "args": args}
    inline = args.get("memory") == "inline" or device == "cuda"
    memory = {}
    if not inline:
        memory = {
            method: run_subprocess({**job, "kind": "memory", "methods": [method]}, timeout)
            for method in methods
        }
    out = run_subprocess({**job, "kind": "timing", "methods": methods}, timeout)
    timing = out["timing"]
    memory = out["memory"] or memory
    no_scatter = bool(args.get("no_torch_scatter"))
    results = []
    for method in methods:
        wall, cpu = timing[method]["wall_s"], timing[method]["cpu_s"]
        results.append(
            {
                "case": case,
                "method": method,
                "label": label(method, args) + (NO_SCATTER if no_scatter else ""),
                "num_icd9": graph["num_icd9"],
                "num_icd10": graph["num_icd10"],
                "num_edges": int(graph["num_edges"]),
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
        if no_scatter:
            results[-1]["no_torch_scatter"] = True
        r = results[-1]
        print(
            f"{case:>7} {args['threads']}t {method:>14}{NO_SCATTER if no_scatter else ''}: "
            f"{r['median_ms']:9.3f} ms wall, "
            f"{r['cpu_median_ms']:9.1f} ms CPU (n={len(wall)}), peak {r['peak_mb']:8.1f} MiB",
            flush=True,
        )
    return results


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return platform.processor() or platform.machine()


def write_results(
    args: argparse.Namespace, results: list[dict], meta: dict, final: bool = False
) -> str:
    """Write mat_vs_gat.json / .md with the results so far (called after every case)."""
    load_after = os.getloadavg()
    meta = {
        **meta,
        "loadavg_after": load_after,
        "memory": results[0]["memory_method"] if results else None,
        "complete": final,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    table = markdown_table(results)
    if args.no_write:
        return table
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "mat_vs_gat.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=2) + "\n"
    )
    notes = ""
    if meta.get("device") == "cuda" or meta.get("failures") or not final:
        lines = [f"torch-scatter: {meta['torch_scatter'] or 'not installed'}."]
        lines += [f"FAILED: {f}" for f in meta.get("failures", [])]
        if not final:
            lines.append("Incomplete: the run stopped before all cases were measured.")
        notes = "\n\n" + "\n".join(lines)
    (args.out_dir / "mat_vs_gat.md").write_text(
        f"MATConv vs GATConv, forward + backward on {args.device} "
        f"({meta['device_name']}, {meta['cpu_count']} cores, torch {meta['torch']}), "
        f"{meta['date']}; OMP_WAIT_POLICY={args.omp_wait_policy}; load average before/after "
        f"{meta['loadavg_before'][0]:.2f} / {load_after[0]:.2f} (the machine is shared).\n\n"
        f"Time: {meta['timing']}. Peak memory: {meta['memory']}.{notes}\n\n{table}\n"
    )
    return table


def build_parser() -> argparse.ArgumentParser:
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
    parser.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES, choices=list(CASES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument(
        "--before",
        metavar="REV",
        help="also time mat / mat_propagate as they were at this commit of the repository "
        "(git show), each beside its HEAD counterpart: a change's speed, before and after",
    )
    parser.add_argument(
        "--compile",
        nargs="*",
        default=[],
        choices=list(CASES),
        metavar="CASE",
        help="cases to time torch.compile'd MATConv and GATConv on too (after the eager ones)",
    )
    parser.add_argument(
        "--compile-timeout",
        type=float,
        default=180.0,
        help="seconds for one case's compiled methods (compilation included); then killed",
    )
    parser.add_argument(
        "--compile-backend",
        default="inductor",
        help="torch.compile backend of the compiled methods ('eager': Dynamo only, quick)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds for one eager measuring subprocess (default: no limit)",
    )
    parser.add_argument(
        "--memory",
        default="subprocess",
        choices=["subprocess", "inline"],
        help=(
            "CPU peak memory: one fresh subprocess per method and cold step (default), or "
            "'inline', in the timing process (rough, fewer processes). CUDA: always inline"
        ),
    )
    parser.add_argument(
        "--torch-scatter",
        default="auto",
        choices=["auto", "off"],
        help="auto: if torch-scatter is installed, time each case with and without it",
    )
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--no-write", action="store_true", help="only print the table")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(_worker_main(json.loads(args.worker))))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")

    worker_args = {
        "repeats": args.repeats,
        "warmup": args.warmup,
        "budget": args.budget,
        "omp_wait_policy": args.omp_wait_policy,
        "memory": args.memory,
        "compile_backend": args.compile_backend,
    }
    scatter = torch_scatter_version()
    scatter_runs = [False, True] if scatter and args.torch_scatter == "auto" else [False]
    if scatter and args.torch_scatter == "off":
        scatter_runs = [True]
    if not scatter:
        print("torch-scatter is not installed: PyG runs without it (one measurement per case)")
    meta = {
        "device": args.device,
        "device_name": device_name(args.device),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_geometric": _version("torch_geometric"),
        "torch_scatter": scatter,
        "torch_threads": args.threads,
        "python": platform.python_version(),
        "repeats": args.repeats,
        "warmup": args.warmup,
        "budget_s": args.budget,
        "compile_backend": args.compile_backend if args.compile else None,
        "omp_wait_policy": args.omp_wait_policy,
        "loadavg_before": os.getloadavg(),
        "timing": (
            "median wall time of forward + sum + backward steps after warm-up (with "
            "torch.cuda.synchronize before and after each step on CUDA); the methods "
            "of a case run round-robin in one process; CPU time = process CPU time per step"
        ),
        "failures": [],
    }
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        methods = args.methods
        if args.before:
            worker_args["before_rev"] = meta["before_rev"] = write_before_package(
                args.before, Path(tmp) / "before")
            worker_args["before_dir"] = str(Path(tmp) / "before")
            methods = with_before(args.methods)
        graph_files: dict[str, str] = {}

        def graph_file(case: str) -> str:
            kind = CASES[case]["graph"]
            if kind not in graph_files:
                graph_files[kind] = str(Path(tmp) / f"{kind}.pt")
                torch.save(build_graph(kind), graph_files[kind])
            return graph_files[kind]

        jobs = [(case, methods, args.timeout) for case in args.sizes]
        jobs += [(case, list(COMPILED), args.compile_timeout) for case in args.compile]
        for case, methods, timeout in jobs:
            for threads in args.threads:
                for no_scatter in scatter_runs:
                    job_args = {**worker_args, "threads": threads, "no_torch_scatter": no_scatter}
                    try:
                        results += run_case(
                            case, methods, args.device, graph_file(case), job_args, timeout
                        )
                    except Exception as exc:  # record, keep the other cases
                        what = f"{case} {' '.join(methods)} ({threads} threads)"
                        message = f"{what}: {type(exc).__name__}: {str(exc)[-1500:]}"
                        meta["failures"].append(message)
                        print(f"FAILED {message}", flush=True)
                    write_results(args, results, meta)
    table = write_results(args, results, meta, final=True)
    print()
    print(table)
    eager_failed = [f for f in meta["failures"] if "_compile" not in f]
    return 1 if eager_failed else 0


def _version(package: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
