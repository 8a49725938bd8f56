"""The GPU path in one command: CUDA correctness and speed of MATConv, the JAMS-LAAT training
step and prediction (issue #15).

On a GPU machine (the repository copied, not installed; Python with torch + CUDA,
torch_geometric; nothing else is needed: no torch-scatter, no gensim, no network)::

    cd <repo> && PYTHONPATH=. timeout 480 python3 benchmarks/gpu_check.py --out $OUT/cuda

takes about 4-6 minutes on one H100 (each step has its own time limit, the whole run at most
``--budget`` = 420 s plus a few seconds) and writes into ``--out`` (default
``benchmarks/results/cuda``) at most 8 files, each as soon as its step is done (a killed run
keeps the finished steps):

* ``gpu_check.json`` / ``.md``: the machine (``torch.cuda.get_device_name``, torch, CUDA,
  torch_geometric versions), every step's status, time, summary and error; the equality check
  (max abs / rel errors per tensor) and the CUDA tests' outcome;
* ``mat_vs_gat.json`` / ``.md``, ``overhead.json`` / ``.md``, ``predict_throughput.json`` /
  ``.md``: the three benchmarks' own reports (same formats as on CPU).

At the end it prints a compact summary table. Proof on CPU (every step end to end, small
sizes, a few minutes)::

    python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpu_check

Steps (``--steps``; always run in this order, most important first):

1. ``equality``: MATConv on the full CMS 2018 diagnosis GEM graph
   (``GEMGraph.from_cms_2018(procedures=False)``, its MAT inputs: ``graph.mat_edges()``
   where the graph has it) at (d, heads) = (64, 1),
   (512, 1), (64, 2): forward outputs and the gradients of both tables and of the attention
   vector, fused and unfused (``fused=False``), in float64, float32, bfloat16 (tables and
   parameters) and float32 under bf16 autocast (AMP), each compared with a CPU float64
   ``fused=False`` reference (inputs rounded to bf16 so every dtype sees the same numbers).
   On CUDA this is the CUDA-vs-CPU check (CPU float32 rows are added for scale); on CPU it
   compares the fused vs unfused and float32/bf16 vs float64 paths. Reported per tensor:
   max abs error, max rel (``max |got - ref| / max |ref|``) and norm rel error
   (``||got - ref|| / ||ref||``); tolerances (max / norm rel): float64 1e-9, float32 1e-4,
   bf16 and AMP 0.5 / 0.15 (bf16 gradients through the attention logits lose up to 0.16 /
   0.05 on CPU; a wrong kernel gives errors of order 1).
2. ``tests``: ``python -m pytest -q -m cuda`` on the test files that hold CUDA tests.
3. ``mat_vs_gat``: ``benchmarks/mat_vs_gat.py`` on the full GEM graph and PyG's 10k-node /
   200k-edge case at d = 64 and 512 (time with ``torch.cuda.synchronize``, peak memory with
   ``reset_peak_memory_stats`` / ``max_memory_allocated``, speed-up vs ``GATConv``), plus
   ``torch.compile``'d MATConv and GATConv on gem512 and pyg64 (failures are recorded);
   with and without torch-scatter where it is installed (else that is one line).
4. ``overhead``: ``benchmarks/overhead.py`` at full size: 6,150 / 7,942 codes, LAAT with
   embedding 200, BiLSTM 512, projection 512, 4,000 tokens, batch 8, AMP bf16: JAMS vs the
   backbone step time, MATConv alone, peak memory.
5. ``predict``: ``benchmarks/predict_throughput.py --device cuda``.

Every step runs in its own process (a CUDA error or a hang costs that step only), killed with
its children when its time is up.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for _path in (ROOT, BENCH):  # run from a checkout without installing
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

STEPS = ("equality", "tests", "mat_vs_gat", "overhead", "predict")
#: seconds per step (full size on one H100-class GPU, and --quick); a step also never runs
#: past the run's --budget
STEP_BUDGET = {
    "full": {"equality": 75, "tests": 60, "mat_vs_gat": 200, "overhead": 100, "predict": 90},
    "quick": {"equality": 120, "tests": 120, "mat_vs_gat": 300, "overhead": 120, "predict": 120},
}
#: errors allowed per tensor, by the candidate's precision: max_rel = max |got - ref| /
#: max |ref|, norm_rel = ||got - ref|| / ||ref||. Measured on CPU on the full GEM graph
#: (d = 64, 512; 1, 2 heads): float32 <= 1e-5 / 4e-6; bf16 and AMP <= 0.16 / 0.052 (the
#: gradients through the attention logits lose most; the outputs stay <= 8e-3 / 4e-3); a
#: wrong kernel gives errors of order 1.
TOLERANCE = {
    "float64": {"max_rel": 1e-9, "norm_rel": 1e-9},
    "float32": {"max_rel": 1e-4, "norm_rel": 1e-4},
    "bfloat16": {"max_rel": 0.5, "norm_rel": 0.15},
    "amp_bf16": {"max_rel": 0.5, "norm_rel": 0.15},
}
#: modules the GPU image lacks: a step must not need them
NOT_ON_GPU_IMAGE = ("gensim", "torch_scatter", "torch_sparse", "pyg_lib")
OUTPUT_TAIL = 3000
#: files a step writes: removed before it runs, so a failed step leaves no stale result
STEP_FILES = {
    "mat_vs_gat": ("mat_vs_gat.json", "mat_vs_gat.md"),
    "overhead": ("overhead.json", "overhead.md"),
    "predict": ("predict_throughput.json", "predict_throughput.md"),
}


# ------------------------------------------------------------------------------------------
# environment
# ------------------------------------------------------------------------------------------


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(device: str) -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {
        "device": device,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "torch_geometric": _version("torch_geometric") or _version("torch-geometric"),
        "torch_scatter": _version("torch_scatter") or _version("torch-scatter"),
        "transformers": _version("transformers"),
        "numpy": _version("numpy"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update(
            device_name=torch.cuda.get_device_name(0),
            capability=".".join(map(str, torch.cuda.get_device_capability(0))),
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
            cudnn=torch.backends.cudnn.version(),
            bf16_supported=torch.cuda.is_bf16_supported(),
        )
    else:
        env["device_name"] = platform.processor() or platform.machine()
    try:
        env["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        env["git_commit"] = None
    return env


# ------------------------------------------------------------------------------------------
# step 1: equality of MATConv's paths
# ------------------------------------------------------------------------------------------


def _mat_run(inputs: dict[str, Any], device: str, precision: str, fused: bool) -> dict:
    """One forward + backward of MATConv; outputs and gradients as float64 CPU tensors."""
    import torch
    from mat_vs_gat import _to

    from jams_pyg.nn import MATConv

    dev = torch.device(device)
    amp = precision == "amp_bf16"
    dtype = torch.float32 if amp else getattr(torch, precision)
    channels, heads = inputs["channels"], inputs["heads"]
    conv = MATConv(channels, heads=heads, fused=fused)
    with torch.no_grad():
        conv.att.copy_(inputs["att"])
    conv = conv.to(dev, dtype)
    # fresh leaves (a .to() to the same dtype and device would return the input itself)
    x9 = inputs["x9"].to(dev, dtype).clone().requires_grad_()
    x10 = inputs["x10"].to(dev, dtype).clone().requires_grad_()
    edge_index = _to(inputs["edge_index"], dev)
    edge_weight = _to(inputs["edge_weight"], dev)
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
        out9, out10 = conv((x9, x10), edge_index, edge_weight)
    torch.autograd.backward(
        [out9, out10], [inputs["g9"].to(dev, out9.dtype), inputs["g10"].to(dev, out10.dtype)]
    )
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    result = {
        "out9": out9, "out10": out10,
        "grad_x9": x9.grad, "grad_x10": x10.grad, "grad_att": conv.att.grad,
    }
    return {k: v.detach().to("cpu", torch.float64) for k, v in result.items()}


def _errors(got: dict, ref: dict) -> dict[str, dict[str, float]]:
    import torch

    out = {}
    for name, r in ref.items():
        g = got[name]
        diff = (g - r).abs()
        scale = float(r.abs().max()) if r.numel() else 0.0
        max_abs = float(diff.max()) if diff.numel() else 0.0
        norm = float(r.norm())
        out[name] = {
            "max_abs": max_abs,
            "max_rel": max_abs / scale if scale > 0 else max_abs,
            "norm_rel": float((g - r).norm()) / norm if norm > 0 else float((g - r).norm()),
            "finite": bool(torch.isfinite(g).all()),
        }
    return out


def equality_check(device: str, graph_kind: str, configs: list[tuple[int, int]],
                   seed: int = 0) -> dict[str, Any]:
    """Every (device, precision, fused) candidate against CPU float64 ``fused=False``."""
    import torch
    from mat_vs_gat import build_graph

    t0 = time.perf_counter()
    graph = build_graph(graph_kind)
    n, m = graph["num_icd9"], graph["num_icd10"]
    directional = isinstance(graph["edge_index"], (tuple, list))
    precisions = ("float64", "float32", "bfloat16", "amp_bf16")
    rows: list[dict[str, Any]] = []
    for index, (channels, heads) in enumerate(configs):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)

        def bf16_exact(*shape, gen=gen):  # the same numbers in every precision
            return torch.randn(*shape, generator=gen).bfloat16().double()

        att = torch.empty(heads, 2 * channels)
        torch.nn.init.xavier_uniform_(att)
        inputs = {
            "channels": channels, "heads": heads,
            "x9": bf16_exact(n, channels), "x10": bf16_exact(m, channels),
            "g9": bf16_exact(n, channels), "g10": bf16_exact(m, channels),
            "att": att.bfloat16().double(),
            "edge_index": graph["edge_index"], "edge_weight": graph["edge_weight"],
        }
        ref = _mat_run(inputs, "cpu", "float64", fused=False)
        candidates = [(device, p, f) for p in precisions for f in (True, False)]
        if device != "cpu" and index == 0:
            candidates += [("cpu", "float32", True), ("cpu", "float32", False)]
        for cand_device, precision, fused in candidates:
            row: dict[str, Any] = {
                "channels": channels, "heads": heads, "device": cand_device,
                "precision": precision, "fused": fused,
                # bf16 tables take the propagate path even with fused=True
                "fused_path": fused and precision != "bfloat16",
                "tolerance": TOLERANCE[precision],
            }
            try:
                errors = _errors(_mat_run(inputs, cand_device, precision, fused), ref)
                row["errors"] = errors
                row["max_abs"] = max(e["max_abs"] for e in errors.values())
                row["max_rel"] = max(e["max_rel"] for e in errors.values())
                row["norm_rel"] = max(e["norm_rel"] for e in errors.values())
                row["finite"] = all(e["finite"] for e in errors.values())
                tol = row["tolerance"]
                row["ok"] = (row["finite"] and row["max_rel"] <= tol["max_rel"]
                             and row["norm_rel"] <= tol["norm_rel"])
            except Exception as exc:  # record, go on with the other candidates
                row.update(ok=False, error=f"{type(exc).__name__}: {exc}",
                           traceback=traceback.format_exc()[-1000:])
            rows.append(row)
            status = "ok" if row["ok"] else "FAIL"
            detail = (f"max abs {row['max_abs']:.3g}, max rel {row['max_rel']:.3g}, "
                      f"norm rel {row['norm_rel']:.3g}" if "errors" in row else row["error"])
            print(f"d={channels:<4} heads={heads} {cand_device:>4} {precision:>8} "
                  f"{'fused' if fused else 'unfused':>7}: {status} ({detail})", flush=True)
    return {
        "graph": {"kind": graph_kind, "num_icd9": n, "num_icd10": m,
                  "num_edges": graph["num_edges"], "directional": directional},
        "reference": "CPU float64, fused=False (PyG propagate); inputs rounded to bf16",
        "error_measure": ("per tensor: max |got - ref| (max_abs), max |got - ref| / max |ref| "
                          "(max_rel), ||got - ref|| / ||ref|| (norm_rel); a row: the worst "
                          "tensor"),
        "rows": rows,
        "all_ok": all(r["ok"] for r in rows),
        "seconds": time.perf_counter() - t0,
    }


# ------------------------------------------------------------------------------------------
# running a step in its own process
# ------------------------------------------------------------------------------------------


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


class Terminated(BaseException):
    """The driver got SIGTERM (e.g. from ``timeout``): the running step was killed."""


_RUNNING: list[subprocess.Popen] = []


def _on_sigterm(signum: int, frame: Any) -> None:
    for proc in _RUNNING:  # a step runs in its own session: take its whole group down
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    raise Terminated(f"signal {signum}")


def run_process(cmd: list[str], timeout: float, prefix: str) -> dict[str, Any]:
    """Run ``cmd`` (its output echoed, prefixed), killed with its children after ``timeout``
    seconds. Returns rc, timed_out, seconds and the output's tail."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace",
                            start_new_session=True)
    _RUNNING.append(proc)
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if not line.startswith("RESULT "):  # machine-readable, kept out of the log
                print(f"[{prefix}] {line}", end="", flush=True)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    try:
        try:
            proc.wait(timeout=max(timeout, 1.0))
        except subprocess.TimeoutExpired:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    finally:
        _RUNNING.remove(proc)
    reader.join(timeout=10)
    output = "".join(lines)
    return {"rc": proc.returncode, "timed_out": timed_out,
            "seconds": time.perf_counter() - start, "output": output}


def _result_line(output: str) -> dict[str, Any] | None:
    found = [line for line in output.splitlines() if line.startswith("RESULT ")]
    return json.loads(found[-1][len("RESULT "):]) if found else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------------------------------------
# the steps: command, then summary
# ------------------------------------------------------------------------------------------


def step_command(step: str, args: argparse.Namespace) -> list[str]:
    py, out = sys.executable, str(args.out)
    quick, dev = args.quick, args.device
    if step == "equality":
        job = {"device": dev, "graph": "gemcut" if quick else "gem",
               "configs": [[16, 1], [16, 2]] if quick else [[64, 1], [512, 1], [64, 2]]}
        return [py, str(Path(__file__).resolve()), "--_equality", json.dumps(job)]
    if step == "tests":
        files = cuda_test_files()
        return [py, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
                "--continue-on-collection-errors", "-rfEs", *files]
    if step == "mat_vs_gat":
        cmd = [py, str(BENCH / "mat_vs_gat.py"), "--device", dev, "--out-dir", out,
               "--compile-backend", args.compile_backend]
        if quick:
            cmd += ["--sizes", "gemcut16", "--repeats", "2", "--warmup", "1",
                    "--budget", "1", "--memory", "inline", "--threads", "1"]
            compile_cases = ["gemcut16"]
        else:
            cmd += ["--sizes", "gem64", "gem512", "pyg64", "pyg512", "--repeats", "20",
                    "--warmup", "3", "--budget", "2", "--timeout", "120"]
            compile_cases = ["gem512", "pyg64"]
        if args.compile:
            cmd += ["--compile", *compile_cases, "--compile-timeout", "90"]
        return cmd
    if step == "overhead":
        cmd = [py, str(BENCH / "overhead.py"), "--device", dev, "--out", out, "--amp", "bf16"]
        if quick:
            return [*cmd, "--icd9-codes", "60", "--icd10-codes", "80", "--tokens", "64",
                          "--batch", "2", "--vocab", "500", "--embedding-dim", "16",
                          "--rnn-hidden", "16", "--projection", "16", "--warmup", "1",
                          "--repeats", "2", "--memory-mode", "inprocess"]
        return [*cmd, "--icd9-codes", "6150", "--icd10-codes", "7942", "--tokens", "4000",
                      "--batch", "8", "--embedding-dim", "200", "--rnn-hidden", "512",
                      "--projection", "512", "--warmup", "2", "--repeats", "10"]
    if step == "predict":
        cmd = [py, str(BENCH / "predict_throughput.py"), "--device", dev, "--out", out]
        if quick:
            return [*cmd, "--codes9", "60", "--codes10", "80", "--vocab", "300", "--tokens",
                          "32", "64", "--notes", "2", "--batch-size", "2", "--repeats", "1"]
        return [*cmd, "--repeats", "2"]
    raise ValueError(step)


def cuda_test_files() -> list[str]:
    """The test files that hold CUDA-marked tests (collecting only them is quick and skips
    modules that need packages a GPU image may lack); ``tests`` if none is found."""
    files = sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
        if "mark.cuda" in p.read_text(errors="replace")
    )
    return files or ["tests"]


def summarize(step: str, run: dict[str, Any], out: Path) -> tuple[str, dict[str, Any]]:
    """A one-line summary of a finished step and its details for gpu_check.json."""
    if step == "equality":
        result = _result_line(run["output"])
        if result is None:
            return "no result", {}
        rows = result["rows"]
        worst: dict[str, float] = {}
        for r in rows:
            if "max_rel" in r and r["device"] == result.get("device", r["device"]):
                worst[r["precision"]] = max(worst.get(r["precision"], 0.0), r["max_rel"])
        bad = [r for r in rows if not r["ok"]]
        line = ", ".join(f"{p} {v:.1e}" for p, v in worst.items())
        line = f"max rel err {line}; {len(rows) - len(bad)}/{len(rows)} within tolerance"
        return line, {"equality": result}
    if step == "tests":
        found = re.findall(r"^=*\s*(\d+ (?:passed|failed|skipped|deselected|error).*?)\s*=*$",
                           run["output"], flags=re.M)
        line = found[-1] if found else (run["output"].strip().splitlines() or ["no output"])[-1]
        return line[:200], {"pytest_summary": line}
    if step == "mat_vs_gat":
        data = _read_json(out / "mat_vs_gat.json")
        if not data:
            return "no mat_vs_gat.json", {}
        res = data["results"]
        parts = []
        for case in dict.fromkeys(r["case"] for r in res):
            by = {r["method"]: r for r in res if r["case"] == case
                  and not r.get("no_torch_scatter")}
            if "mat" in by and "gat" in by:
                mat, gat = by["mat"], by["gat"]
                text = (f"{case} {mat['median_ms']:.3g}/{gat['median_ms']:.3g} ms "
                        f"{gat['median_ms'] / mat['median_ms']:.1f}x")
                if "mat_compile" in by:
                    text += f" (compiled {by['mat_compile']['median_ms']:.3g} ms)"
                parts.append(text)
        failures = data["meta"].get("failures", [])
        line = "MAT/GAT: " + "; ".join(parts) if parts else "no MAT/GAT pair"
        if failures:
            line += f"; {len(failures)} failure(s)"
        return line, {"mat_vs_gat": {"speedups": parts, "failures": failures,
                                     "torch_scatter": data["meta"].get("torch_scatter")}}
    if step == "overhead":
        data = _read_json(out / "overhead.json")
        if not data:
            return "no overhead.json", {}
        s = data["summary"]
        line = (f"backbone {s['backbone_step_s']:.3f} s, JAMS {s['jams_step_s']:.3f} s "
                f"({100 * s['added_fraction']:+.1f}%), MATConv {1e3 * s['matconv_s']:.1f} ms")
        if "jams_peak_mb" in s:
            line += f", peak {s['backbone_peak_mb']:.0f}/{s['jams_peak_mb']:.0f} MiB"
        return line, {"overhead": s}
    if step == "predict":
        data = _read_json(out / "predict_throughput.json")
        if not data:
            return "no predict_throughput.json", {}
        rows = [r for r in data["rows"] if r["systems"] in ("icd10", "both")]
        line = ", ".join(f"{r['tokens']} tok {r['systems']} {r['notes_per_s']:.1f}/s"
                         for r in rows)
        return f"notes/s: {line}", {"predict": data["rows"]}
    raise ValueError(step)


# ------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------


def summary_table(report: dict[str, Any]) -> str:
    lines = ["| step | status | s | summary |", "|---|---|---:|---|"]
    for step in STEPS:
        st = report["steps"].get(step)
        if st is None:
            continue
        summary = st.get("summary") or st.get("error") or ""
        summary = summary.replace("|", "/").replace("\n", " ")
        lines.append(f"| {step} | {st['status']} | {st.get('seconds', 0):.0f} | "
                     f"{summary[:300]} |")
    return "\n".join(lines)


def equality_table(result: dict[str, Any]) -> str:
    lines = ["| d | heads | device | precision | fused | max abs err | max rel err | "
             "norm rel err | tolerance (max / norm rel) | ok |",
             "|---:|---:|---|---|---|---:|---:|---:|---:|---|"]
    for r in result["rows"]:
        fused = "yes" if r["fused"] else "no"
        if r["fused"] and not r["fused_path"]:
            fused = "yes (propagate)"
        if "errors" in r:
            errs = f"{r['max_abs']:.2e} | {r['max_rel']:.2e} | {r['norm_rel']:.2e}"
        else:
            errs = f"{r.get('error', '?')[:80]} | – | –"
        tol = r["tolerance"]
        lines.append(f"| {r['channels']} | {r['heads']} | {r['device']} | {r['precision']} | "
                     f"{fused} | {errs} | {tol['max_rel']:.2g} / {tol['norm_rel']:.2g} | "
                     f"{'yes' if r['ok'] else 'NO'} |")
    return "\n".join(lines)


def write_report(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    env = report["environment"]
    lines = [
        "# GPU check (benchmarks/gpu_check.py)",
        "",
        f"Device {env['device']}: {env.get('device_name')}; torch {env['torch']} (CUDA "
        f"{env.get('torch_cuda')}), torch_geometric {env.get('torch_geometric')}, "
        f"torch-scatter {env.get('torch_scatter') or 'not installed'}, Python "
        f"{env['python']}; {env['date']}; {'quick sizes' if report['quick'] else 'full size'}"
        f"; commit {env.get('git_commit') or 'unknown'}.",
        "",
        summary_table(report),
    ]
    eq = report["steps"].get("equality", {}).get("equality")
    if eq:
        g = eq["graph"]
        lines += ["", "## MATConv equality", "",
                  f"Graph {g['kind']}: {g['num_icd9']:,} ICD-9 / {g['num_icd10']:,} ICD-10 "
                  f"codes, {g['num_edges']:,} links"
                  f"{' (directional: one link set per direction)' if g['directional'] else ''}"
                  f". Reference: {eq['reference']}. Error: {eq['error_measure']}; tensors: "
                  "both outputs, gradients of both tables and of the attention vector.",
                  "", equality_table(eq)]
    tests = report["steps"].get("tests")
    if tests:
        lines += ["", "## CUDA tests", "", f"`{tests.get('command', '')}`: "
                  f"{tests.get('summary', '')} (exit code {tests.get('rc')})"]
    failed = [(s, st) for s, st in report["steps"].items() if st["status"] not in ("ok",)]
    if failed:
        lines += ["", "## Problems", ""]
        for step, st in failed:
            lines += [f"### {step}: {st['status']}", "", "```",
                      (st.get("error") or st.get("amp_error") or st.get("output_tail")
                       or "")[-2000:], "```", ""]
    (out / "gpu_check.md").write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"],
                        help="auto: cuda where available, else cpu")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (a GEM graph cut, d = 16, few codes, short notes)")
    parser.add_argument("--out", type=Path, default=None,
                        help="results folder (default: benchmarks/results/cuda for a full "
                        "CUDA run, else a new temporary folder)")
    parser.add_argument("--steps", nargs="+", default=list(STEPS), choices=STEPS,
                        help="steps to run (in the fixed order of importance)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for the whole run (default 420; --quick 900)")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="skip the torch.compile'd methods of mat_vs_gat")
    parser.add_argument("--compile-backend", default="inductor",
                        help="torch.compile backend for mat_vs_gat ('eager': Dynamo only)")
    parser.add_argument("--_equality", dest="equality_job", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.equality_job:
        return args
    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    elif args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")
    if args.out is None:
        if args.device == "cuda" and not args.quick:
            args.out = ROOT / "benchmarks" / "results" / "cuda"
        else:
            args.out = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    args.out = args.out.resolve()
    if args.budget is None:
        args.budget = 900.0 if args.quick else 420.0
    return args


def _equality_main(job: dict[str, Any]) -> None:
    result = equality_check(job["device"], job["graph"], [tuple(c) for c in job["configs"]])
    result["device"] = job["device"]
    result["imported_not_on_gpu_image"] = [m for m in NOT_ON_GPU_IMAGE if m in sys.modules]
    print("RESULT " + json.dumps(result), flush=True)


def execute(step: str, cmd: list[str], timeout: float, out: Path) -> dict[str, Any]:
    """Run one step's command and judge it: status ok / failed / timeout / mismatch."""
    print(f"\n=== {step} (at most {timeout:.0f} s): {' '.join(cmd)[:300]}", flush=True)
    entry: dict[str, Any] = {"command": " ".join(cmd), "timeout_s": timeout}
    try:
        run = run_process(cmd, timeout, step)
        entry.update(rc=run["rc"], seconds=run["seconds"],
                     output_tail=run["output"][-OUTPUT_TAIL:])
        summary, details = summarize(step, run, out)
        entry.update(summary=summary, **details)
        if run["timed_out"]:
            entry.update(status="timeout", error=f"killed after {timeout:.0f} s")
        elif run["rc"] != 0 and not (step == "tests" and run["rc"] == 5):  # 5: none collected
            entry.update(status="failed", error=run["output"][-OUTPUT_TAIL:])
        elif step == "equality" and not details.get("equality", {}).get("all_ok", False):
            entry["status"] = "mismatch" if details else "failed"
        else:
            entry["status"] = "ok"
    except Exception as exc:  # the driver itself must go on
        entry.update(status="failed", seconds=entry.get("seconds", 0.0),
                     error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
    return entry


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.equality_job:
        _equality_main(json.loads(args.equality_job))
        return 0
    start = time.perf_counter()
    report: dict[str, Any] = {
        "environment": environment(args.device), "quick": args.quick,
        "out": str(args.out), "budget_s": args.budget, "steps": {},
    }
    print(f"gpu_check: {report['environment']['device_name']} ({args.device}), "
          f"torch {report['environment']['torch']}, out {args.out}", flush=True)
    write_report(report, args.out)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        run_steps(args, report, start)
    except (Terminated, KeyboardInterrupt) as exc:
        current = report.get("current_step")
        if current:
            report["steps"][current] = {
                "status": "killed", "seconds": time.perf_counter() - report["current_start"],
                "error": f"the driver was stopped ({exc!r}) during this step"}
        report["seconds"] = time.perf_counter() - start
        write_report(report, args.out)
        print(f"\ngpu_check stopped ({exc!r}); results so far in {args.out}")
        print(summary_table(report))
        return 143
    report.pop("current_step", None)
    report.pop("current_start", None)
    report["seconds"] = time.perf_counter() - start
    write_report(report, args.out)
    env = report["environment"]
    print(f"\nGPU check on {env['device_name']} ({args.device}), torch {env['torch']}, "
          f"torch_geometric {env['torch_geometric']}, {report['seconds']:.0f} s; files in "
          f"{args.out}: {', '.join(sorted(p.name for p in args.out.iterdir()))}")
    print(summary_table(report))
    return 0 if all(st["status"] == "ok" for st in report["steps"].values()) else 1


def run_steps(args: argparse.Namespace, report: dict[str, Any], start: float) -> None:
    """The steps in order, each within its own and the run's time; the report is written
    after each."""
    deadline = start + args.budget
    budgets = STEP_BUDGET["quick" if args.quick else "full"]
    for step in [s for s in STEPS if s in args.steps]:
        left = deadline - time.perf_counter()
        if left < 10:
            report["steps"][step] = {"status": "skipped", "seconds": 0.0,
                                     "error": f"out of time ({args.budget:.0f} s budget)"}
            write_report(report, args.out)
            continue
        for name in STEP_FILES.get(step, ()):
            (args.out / name).unlink(missing_ok=True)
        report["current_step"], report["current_start"] = step, time.perf_counter()
        cmd = step_command(step, args)
        entry = execute(step, cmd, min(budgets[step], left), args.out)
        left = deadline - time.perf_counter()
        if step == "overhead" and entry["status"] == "failed" and left > 60:
            # AMP is what training uses on CUDA; if it breaks, still measure in float32
            fp32 = [*cmd[:cmd.index("--amp")], "--amp", "none", *cmd[cmd.index("--amp") + 2:]]
            retry = execute(step, fp32, min(budgets[step], left), args.out)
            retry["amp_error"] = entry.get("error")
            if retry["status"] == "ok":
                retry.update(status="degraded",
                             summary=f"AMP bf16 FAILED, float32: {retry.get('summary')}")
            entry = retry
        report["steps"][step] = entry
        report["seconds"] = time.perf_counter() - start
        write_report(report, args.out)
        print(f"=== {step}: {entry['status']} in {entry.get('seconds', 0):.0f} s: "
              f"{entry.get('summary', '')}", flush=True)
        report["current_step"] = None


if __name__ == "__main__":
    sys.exit(main())
