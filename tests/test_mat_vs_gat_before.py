"""benchmarks/mat_vs_gat.py --before REV: MATConv as it was at a commit, loaded from git
beside HEAD's, so a change's speed is measured side by side (issue #21: MATConv's numbers
and speed must not move across the PyG refactor, d160cdd -> HEAD)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import load_benchmark

import jams_pyg.nn

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "d160cdd"  # the last commit before MATConv became a bipartite PyG conv (692100a)


mvg = load_benchmark("mat_vs_gat")


def _has_commit(rev: str) -> bool:
    return subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{rev}^{{commit}}"],
                          capture_output=True).returncode == 0


def test_before_methods_follow_their_head_twins_and_name_the_commit():
    assert mvg.with_before(["mat", "mat_propagate", "mat_coo", "gat"]) == [
        "mat", "mat_before", "mat_propagate", "mat_propagate_before", "mat_coo", "gat"]
    args = {"before_rev": "abc1234"}
    assert mvg.label("mat_before", args) == "MATConv (fused CSR) at abc1234"
    assert mvg.label("mat_propagate", args) == mvg.METHODS["mat_propagate"]
    assert "--before" in mvg.build_parser().format_help()


@pytest.mark.skipif(not _has_commit(BEFORE), reason=f"{BEFORE} is not in this clone")
def test_the_layer_before_is_the_commits_and_computes_what_head_does(tmp_path, monkeypatch):
    assert mvg.write_before_package(BEFORE, tmp_path) == BEFORE
    package = tmp_path / mvg.BEFORE_PACKAGE
    shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{BEFORE}:jams_pyg/nn/mat_conv.py"],
                           capture_output=True, text=True, check=True).stdout
    written = (package / "mat_conv.py").read_text()
    assert written != shown  # its import of the CSR kernels, and only that, is rewritten
    assert written == shown.replace("from jams_pyg.nn.sparse_aggr import",
                                    f"from {mvg.BEFORE_PACKAGE}.sparse_aggr import")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        before = importlib.import_module(f"{mvg.BEFORE_PACKAGE}.mat_conv").MATConv
        assert before is not jams_pyg.nn.MATConv
        assert Path(sys.modules[before.__module__].__file__).parent == package
        g = torch.Generator().manual_seed(0)
        n, m, d = 30, 40, 8
        links = [torch.stack([torch.randint(0, n, (60,), generator=g),
                              torch.randint(0, m, (60,), generator=g)]) for _ in range(2)]
        weights = [torch.where(torch.rand(60, generator=g) < 0.5, 1.0, 0.5) for _ in range(2)]
        x9, x10 = torch.randn(n, d, generator=g), torch.randn(m, d, generator=g)
        # the union (one tensor) and the directional (a pair per direction) link sets
        for edge_index, edge_weight in ((links[0], weights[0]), (tuple(links), tuple(weights))):
            for fused in (True, False):
                outs = []
                for layer in (jams_pyg.nn.MATConv, before):
                    torch.manual_seed(0)  # the same attention vector a
                    conv = layer(d, heads=2, fused=fused)
                    tables = (x9.clone().requires_grad_(), x10.clone().requires_grad_())
                    u, v = conv(tables, edge_index, edge_weight)
                    (u.square().sum() + v.sum()).backward()
                    outs.append([u, v, tables[0].grad, tables[1].grad, conv.att.grad])
                for now, then in zip(*outs, strict=True):
                    torch.testing.assert_close(now, then, rtol=0, atol=0)
    finally:
        for name in [k for k in sys.modules if k.startswith(mvg.BEFORE_PACKAGE)]:
            del sys.modules[name]
