"""Names of a package that load on first use (PEP 562), so that importing the package,
or a light module inside it, does not import torch, pandas or matplotlib."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(
    package: str, namespace: dict[str, Any], exports: Mapping[str, Iterable[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``: each name in ``exports[module]``
    is imported from ``module`` (relative to ``package`` when it starts with a dot) the
    first time it is asked for, then kept in ``namespace`` (later look-ups skip the hook).

    Example::

        __getattr__, __dir__ = lazy_exports(__name__, globals(), {".mat_conv": ["MATConv"]})
    """
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *where})

    return __getattr__, __dir__
