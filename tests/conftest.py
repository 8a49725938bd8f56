import ast
import gzip
import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

#: What a light import must not pull in.
HEAVY_MODULES = ("torch", "torch_geometric", "transformers", "pandas", "numpy", "matplotlib",
                 "scipy")


def modules_loaded_by(code: str, modules: tuple[str, ...] = HEAVY_MODULES) -> list[str]:
    """Run ``code`` in a fresh interpreter (it must succeed) and return which of ``modules``
    it left imported, sorted."""
    probe = f"{code}\nimport sys as _sys\nprint(sorted(set({modules!r}) & set(_sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return ast.literal_eval(result.stdout.strip().splitlines()[-1])


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str, module_name: str | None = None) -> Any:
    """``benchmarks/<name>.py`` imported as a module (``_bench_<name>`` unless named): the
    scripts are no package. The benchmarks folder is on the path while it imports, as when
    the script runs, so that it imports its siblings by name (``import codiesp``)."""
    spec = importlib.util.spec_from_file_location(module_name or f"_bench_{name}",
                                                  BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESOURCES = Path(__file__).resolve().parents[1] / "jams_pyg" / "resources"
#: SHA-256 of the CMS 2018 diagnosis GEM files as published (``../shared/data/gems``).
CMS_GEM_SHA256 = {
    "2018_I9gem.txt": "0b24fd28de341bdbac2930609fd3dc480d6ec278b3bdae2e53ac5ccf7f89b230",
    "2018_I10gem.txt": "31a5f6e22c8d8ec18a44bc723c13bd50d83a2c1403d90551adaeb2203537aec5",
}


@pytest.fixture(scope="session")
def cms_gem_text() -> dict[str, str]:
    """The CMS 2018 diagnosis GEM files as text, the independent reference of the GEM
    tests: the project's copies (``../shared/data/gems``) where this checkout has them, else
    the package's gzipped copies; either way checked against the published files' SHA-256,
    so the tests never skip and never trust the code under test."""
    texts = {}
    for name, digest in CMS_GEM_SHA256.items():
        shared = SHARED_DATA / "gems" / name
        data = (shared.read_bytes() if shared.is_file()
                else gzip.decompress((RESOURCES / "gems" / f"{name}.gz").read_bytes()))
        assert hashlib.sha256(data).hexdigest() == digest, f"{name} is not the CMS file"
        texts[name] = data.decode("ascii")
    return texts


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one thread avoids stalls of the LSTM's many small parallel regions on
    a busy machine (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
