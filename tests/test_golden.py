"""Numbers that must not move when code moves.

``tests/golden/`` was first written by the code *before* the package re-layout
(commit 9e73fdc), and regenerated once since, on purpose, when the synthetic corpus
and the graph started linking procedure codes by default (issue #19); a refactoring
never regenerates it:

* ``metrics.json``: ``examples/train_laat.py`` (LAAT and LAAT+JAMS, the
  default command) on the synthetic corpus at size 0.05 for 2 epochs;
* ``bundle/``: the LAAT+JAMS model bundle that run saved;
* ``predictions.jsonl``: ``jams-pyg predict`` of ``notes.txt`` with that
  bundle (top 5 codes per system, with evidence).

The tests guard behaviour, not bits. Weights after training are not
bit-stable across CPUs: ATen picks its vector kernels per CPU (AVX-512,
AVX2, scalar), each with its own summation order. Measured on this machine
kind by forcing the kernel with ``ATEN_CPU_CAPABILITY`` (``avx2``,
``default``) against the AVX-512 golden run: weights move by up to 1.4e-4
(``code_tables``), losses by 2.6e-8, every metric is identical, and
predictions of the golden notes keep their codes and order with
probabilities and attention weights within 6.3e-6 (thread counts 1-3 change
nothing). So metrics compare at 1e-6 relative and predictions at 1e-4
absolute, and the training run of these tests uses the scalar kernels
(``ATEN_CPU_CAPABILITY=default``), a summation order other than the one
that wrote the golden files, on every CPU. Regenerate the folder only for a
change that is *meant* to change numbers, and say so in its commit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden"
TRAIN_ARGS = ["--size", "0.05", "--epochs", "2", "--no-progress"]
#: ``--ood off``: the golden predictions predate the out-of-distribution signal (issue #22),
#: which would withhold the codes of these plain notes for the re-trained, calibrated bundle.
PREDICT_ARGS = ["--top-k", "5", "--evidence", "--ood", "off"]
# Wall-clock times and where a run happened to be written differ by nature.
VOLATILE = {"seconds"}
#: Predictions of a re-trained bundle: probabilities and attention weights within this
#: (measured spread across CPU kernels: 6.3e-6).
PREDICTION_ATOL = 1e-4


def _run(*args: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"), **env_vars}
    result = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _stable(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _stable(v) for k, v in tree.items() if k not in VOLATILE}
    if isinstance(tree, list):
        return [_stable(v) for v in tree]
    return tree


def _assert_same(actual: Any, expected: Any, where: str = "", *, rel: float = 1e-6,
                 abs_: float = 1e-9) -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), where
        for key in expected:
            _assert_same(actual[key], expected[key], f"{where}.{key}", rel=rel, abs_=abs_)
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _assert_same(a, e, f"{where}[{i}]", rel=rel, abs_=abs_)
    elif isinstance(expected, float) and not isinstance(actual, bool):
        assert actual == pytest.approx(expected, rel=rel, abs=abs_), where
    else:
        assert actual == expected, where


def _predict(bundle: Path, out: Path) -> list[Any]:
    _run("-m", "jams_pyg", "predict", str(GOLDEN / "notes.txt"), "--model", str(bundle),
         *PREDICT_ARGS, "--output", str(out))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    for record in records:  # written since the golden files: null, nothing checked
        assert record.pop("ood") is None
    return records


def _golden_predictions() -> list[Any]:
    return [json.loads(line)
            for line in (GOLDEN / "predictions.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("golden") / "laat"
    _run("examples/train_laat.py", *TRAIN_ARGS, "--output-dir", str(out),
         ATEN_CPU_CAPABILITY="default")
    return out


@pytest.mark.slow
def test_default_command_metrics_unchanged(tiny_run):
    expected = json.loads((GOLDEN / "metrics.json").read_text())
    actual = _stable(json.loads((tiny_run / "metrics.json").read_text()))
    _assert_same(actual, expected)


@pytest.mark.slow
def test_saved_bundle_predicts_as_the_golden_one(tiny_run, tmp_path):
    """The bundle the run saved (not its raw weights, which move across CPUs) codes the
    golden notes as the golden bundle did: same codes, order and evidence."""
    from jams_pyg.models.jams import EDGE_BUFFERS

    expected = load_file(GOLDEN / "bundle" / "weights.safetensors")
    actual = load_file(tiny_run / "jams" / "model" / "weights.safetensors")
    # the GEM links live only in graph.safetensors (bundle format 3), which must be the
    # golden one's
    assert not set(EDGE_BUFFERS) & actual.keys()
    assert {k: (v.dtype, v.shape) for k, v in actual.items()} == {
        k: (v.dtype, v.shape) for k, v in expected.items()}
    golden_graph = load_file(GOLDEN / "bundle" / "graph.safetensors")
    graph = load_file(tiny_run / "jams" / "model" / "graph.safetensors")
    assert graph.keys() == golden_graph.keys()
    assert all(graph[k].equal(golden_graph[k]) for k in graph)
    predictions = _predict(tiny_run / "jams" / "model", tmp_path / "predictions.jsonl")
    _assert_same(predictions, _golden_predictions(), rel=0.0, abs_=PREDICTION_ATOL)


@pytest.mark.slow
def test_saved_bundle_predictions_unchanged(tmp_path):
    _assert_same(_predict(GOLDEN / "bundle", tmp_path / "predictions.jsonl"),
                 _golden_predictions())
