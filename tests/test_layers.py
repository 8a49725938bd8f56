"""The package's layers: no module imports from a layer above its own.

The order follows the data flow of README "Layout" as the code needs it: evaluation sits
below training, because the trainer scores validation epochs and the experiment evaluates
its runs; inference (the bundle, the predictor) sits above training, and the command line
composes them (e.g. ``jams-pyg train`` hands the bundle writer to the experiment). Every
import counts: at module level, inside functions (lazy imports) and under
``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "jams_pyg"

#: Low to high; a module may import from its own layer and those below. The top-level
#: helpers (``jams_pyg`` itself, ``lazy``, ``atomic``) are the base; ``__main__`` is the
#: command line.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("", "lazy", "atomic"),
    ("icd",),
    ("graph",),
    ("nn",),
    ("models",),
    ("data",),
    ("eval",),
    ("train",),
    ("inference",),
    ("cli", "__main__"),
)
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def layer_of(module: str) -> str:
    """``jams_pyg.train.trainer`` -> ``train``; ``jams_pyg`` -> ``""``."""
    parts = module.split(".")
    assert parts[0] == "jams_pyg", module
    return parts[1] if len(parts) > 1 else ""


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, module)`` of every ``jams_pyg`` import of ``source`` (relative ones
    resolved against ``module``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return [(line, name) for line, name in found if name.split(".")[0] == "jams_pyg"]


def upward_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """The imports of ``source`` (the text of ``module``) from a layer above its own."""
    own = RANK[layer_of(module)]
    return [f"{module} line {line} imports {name} ({layer_of(name) or 'jams_pyg'}, above "
            f"{layer_of(module) or 'jams_pyg'})"
            for line, name in imported_modules(source, module, is_package)
            if RANK[layer_of(name)] > own]


def package_modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def test_every_part_of_the_package_has_a_layer():
    parts = {layer_of(module) for module, _ in package_modules()}
    assert parts - set(RANK) == set(), "give the new part a place in LAYERS"


def test_no_module_imports_from_a_layer_above():
    violations = [v for module, path in package_modules()
                  for v in upward_imports(path.read_text(), module, path.name == "__init__.py")]
    assert violations == []


@pytest.mark.parametrize(("source", "module", "expected"), [
    ("from jams_pyg.inference.bundle import save_bundle", "jams_pyg.train.experiment",
     ["jams_pyg.train.experiment line 1 imports jams_pyg.inference.bundle (inference, "
      "above train)"]),
    ("def f():\n    import jams_pyg.cli", "jams_pyg.models.jams",
     ["jams_pyg.models.jams line 2 imports jams_pyg.cli (cli, above models)"]),
    ("from ..train import Trainer", "jams_pyg.eval.metrics",
     ["jams_pyg.eval.metrics line 1 imports jams_pyg.train (train, above eval)"]),
    ("from jams_pyg.eval.metrics import compute_metrics\nfrom . import config",
     "jams_pyg.train.trainer", []),
    ("from jams_pyg import __version__\nimport numpy", "jams_pyg.inference.bundle", []),
])
def test_the_check_finds_upward_imports(source, module, expected):
    assert upward_imports(source, module) == expected


def test_readme_layout_lists_the_layers_in_this_order():
    readme = (PACKAGE.parent / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    rows = [line for line in layout.splitlines() if line.startswith("| ")
            and "| `jams_pyg/" in line]
    folders = [row.split("| `jams_pyg/")[1].split("/")[0] for row in rows]
    expected = [part for parts in LAYERS[1:] for part in parts if part != "__main__"]
    assert [f for f in folders if f in RANK] == expected
