"""benchmarks/gpu_check.py, the one-command GPU check, proven on CPU: the quick run of every
step end to end (files, keys, finite equality errors; never timings), the full-size commands
accepted by the benchmarks' parsers, the time budget and the killing of a step that hangs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import BENCHMARKS, load_benchmark

ROOT = Path(__file__).resolve().parent.parent


gpu_check = load_benchmark("gpu_check")


@pytest.mark.slow
def test_quick_cpu_run_writes_every_step(tmp_path):
    out = tmp_path / "cuda"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_check.py"), "--device", "cpu", "--quick",
         "--no-compile", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**gpu_check._child_env(), "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    names = {p.name for p in out.iterdir()}
    assert names == {"gpu_check.json", "gpu_check.md", "mat_vs_gat.json", "mat_vs_gat.md",
                     "overhead.json", "overhead.md", "predict_throughput.json",
                     "predict_throughput.md"}  # at most 8 files come back from a device
    report = json.loads((out / "gpu_check.json").read_text())
    env = report["environment"]
    assert env["device"] == "cpu" and env["torch"] and env["torch_geometric"]
    assert report["quick"] is True
    steps = report["steps"]
    assert list(steps) == list(gpu_check.STEPS)
    for name, step in steps.items():  # every step ran to its end and was summarised
        assert step["status"] in ("ok", "mismatch"), (name, step.get("error"))
        assert step["summary"] and step["seconds"] >= 0
    eq = steps["equality"]["equality"]
    assert eq["device"] == "cpu" and eq["imported_not_on_gpu_image"] == []
    rows = eq["rows"]
    combos = {(r["precision"], r["fused"]) for r in rows}
    assert combos == {(p, f) for p in gpu_check.TOLERANCE for f in (True, False)}
    for row in rows:
        assert "error" not in row, row
        assert row["finite"]
        for tensor in ("out9", "out10", "grad_x9", "grad_x10", "grad_att"):
            err = row["errors"][tensor]
            assert err["finite"] and err["max_abs"] >= 0 and err["max_rel"] >= 0
        if row["precision"] in ("float64", "float32"):
            assert row["ok"], row  # fused and unfused agree with float64 reference
    assert "skipped" in steps["tests"]["summary"] or "passed" in steps["tests"]["summary"]

    mvg = json.loads((out / "mat_vs_gat.json").read_text())
    assert mvg["meta"]["complete"] and not mvg["meta"]["failures"]
    assert {r["method"] for r in mvg["results"]} == {"mat", "mat_propagate", "mat_coo", "gat"}
    for r in mvg["results"]:
        assert r["median_ms"] > 0 and "peak_mb" in r
    overhead = json.loads((out / "overhead.json").read_text())
    assert overhead["settings"]["amp"] == "bf16"
    assert {"backbone_step_s", "jams_step_s", "matconv_s", "jams_peak_mb"} <= set(
        overhead["summary"])
    predict = json.loads((out / "predict_throughput.json").read_text())
    assert predict["rows"] and all(r["notes_per_s"] > 0 for r in predict["rows"])
    md = (out / "gpu_check.md").read_text()
    assert "| equality |" in md and "MATConv equality" in md
    assert "| step | status |" in proc.stdout  # the summary table is printed at the end


def test_full_size_commands_parse():
    """The device run's commands are accepted by each benchmark's own parser."""
    args = gpu_check.parse_args(["--device", "cpu", "--out", "/tmp/unused"])
    args.device = "cuda"  # as on the GPU machine; nothing runs
    overhead = load_benchmark("overhead")
    mvg = load_benchmark("mat_vs_gat")
    predict = load_benchmark("predict_throughput")

    cmd = gpu_check.step_command("mat_vs_gat", args)
    parsed = mvg.build_parser().parse_args(cmd[2:])
    assert parsed.device == "cuda" and {"gem64", "gem512", "pyg64", "pyg512"} == set(parsed.sizes)
    assert parsed.compile == ["gem512", "pyg64"]
    assert parsed.out_dir == Path("/tmp/unused").resolve()

    cmd = gpu_check.step_command("overhead", args)
    parsed = overhead.parse_args(cmd[2:])
    assert (parsed.icd9_codes, parsed.icd10_codes, parsed.tokens, parsed.batch) == (
        6150, 7942, 4000, 8)
    assert (parsed.embedding_dim, parsed.rnn_hidden, parsed.projection) == (200, 512, 512)
    assert parsed.amp == "bf16" and parsed.device == "cuda"

    cmd = gpu_check.step_command("predict", args)
    parsed = predict.build_parser().parse_args(cmd[2:])
    assert parsed.device == "cuda" and (parsed.codes9, parsed.codes10) == (6150, 7942)

    cmd = gpu_check.step_command("equality", args)
    job = json.loads(cmd[-1])
    assert job["graph"] == "gem" and sorted({c[0] for c in job["configs"]}) == [64, 512]

    cmd = gpu_check.step_command("tests", args)
    assert cmd[1:5] == ["-m", "pytest", "-q", "-m"] and "tests/test_mat_conv.py" in cmd


def test_no_time_left_skips_steps_and_still_reports(tmp_path):
    assert gpu_check.main(["--device", "cpu", "--quick", "--budget", "5",
                           "--out", str(tmp_path)]) == 1
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert {s["status"] for s in report["steps"].values()} == {"skipped"}
    assert "| mat_vs_gat | skipped |" in (tmp_path / "gpu_check.md").read_text()


def test_a_hanging_step_is_killed():
    start = time.perf_counter()
    run = gpu_check.run_process(
        [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"],
        timeout=2, prefix="hang")
    assert run["timed_out"] and time.perf_counter() - start < 30
    assert "started" in run["output"]


def test_summaries_of_outputs():
    run = {"output": "...\n3 passed, 1 skipped, 90 deselected in 2.10s\n", "rc": 0}
    line, details = gpu_check.summarize("tests", run, Path("/nonexistent"))
    assert line.startswith("3 passed, 1 skipped") and details["pytest_summary"]
    line, _ = gpu_check.summarize("overhead", {"output": ""}, Path("/nonexistent"))
    assert line == "no overhead.json"
    rows = [{"channels": 16, "heads": 1, "device": "cpu", "precision": "float32",
             "fused": True, "fused_path": True, "tolerance": {"max_rel": 1e-4, "norm_rel": 1e-4},
             "ok": False,
             "error": "RuntimeError: boom"}]
    assert "RuntimeError: boom" in gpu_check.equality_table({"rows": rows})


def test_overhead_falls_back_to_float32_when_amp_fails(tmp_path, monkeypatch):
    calls = []

    def fake_execute(step, cmd, timeout, out):
        calls.append(cmd)
        if cmd[cmd.index("--amp") + 1] == "bf16":
            return {"status": "failed", "error": "RuntimeError: no bf16 LSTM", "seconds": 1.0}
        return {"status": "ok", "summary": "backbone 1 s", "seconds": 1.0}

    monkeypatch.setattr(gpu_check, "execute", fake_execute)
    assert gpu_check.main(["--device", "cpu", "--quick", "--steps", "overhead",
                           "--out", str(tmp_path)]) == 1
    assert len(calls) == 2
    step = json.loads((tmp_path / "gpu_check.json").read_text())["steps"]["overhead"]
    assert step["status"] == "degraded" and "no bf16 LSTM" in step["amp_error"]
    assert step["summary"].startswith("AMP bf16 FAILED")
    assert "no bf16 LSTM" in (tmp_path / "gpu_check.md").read_text()


@pytest.mark.slow
def test_sigterm_kills_the_running_step_and_keeps_the_report(tmp_path):
    """``timeout`` sends SIGTERM: the step's process group goes, the report stays."""
    proc = subprocess.Popen(
        [sys.executable, str(BENCHMARKS / "gpu_check.py"), "--device", "cpu", "--quick",
         "--steps", "tests", "--out", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=gpu_check._child_env())
    for line in proc.stdout:  # wait until the step has started
        if line.startswith("=== tests"):
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.stdout.read()
    assert proc.wait(timeout=60) == 143, rest
    step = json.loads((tmp_path / "gpu_check.json").read_text())["steps"]["tests"]
    assert step["status"] == "killed"
    assert "| tests | killed |" in rest
