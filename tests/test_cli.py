"""The command line answers --help without importing torch (a fast, light start)."""

import subprocess
import sys

import pytest

PROBE = """
import contextlib, io, runpy, sys
sys.argv = ["jams_pyg", *sys.argv[1:], "--help"]
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        runpy.run_module("jams_pyg", run_name="__main__")
    except SystemExit as stop:
        assert stop.code in (0, None), stop.code
assert out.getvalue().startswith("usage: "), out.getvalue()[:200]
print(sorted(m for m in ("torch", "torch_geometric", "transformers", "pandas")
             if m in sys.modules))
"""


@pytest.mark.parametrize("command", [[], ["predict"], ["graph"]])
def test_help_does_not_import_torch(command):
    result = subprocess.run([sys.executable, "-c", PROBE, *command], capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_package_import_is_lazy_and_names_resolve():
    code = ("import sys, jams_pyg; assert 'torch' not in sys.modules; "
            "from jams_pyg import GEMGraph, MATConv, TrainingDiverged; "
            "assert MATConv.__module__ == 'jams_pyg.nn.mat_conv'; "
            "assert set(jams_pyg.__all__) <= set(dir(jams_pyg)); print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "ok"
