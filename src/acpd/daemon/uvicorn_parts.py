"""Daemon layer: the parts of uvicorn the daemon runs (``Config``, ``Server``, the httptools
protocol), imported without ``uvicorn/__init__``. That file imports uvicorn's command line, click
and the process supervisors: about 15 ms and 2 MiB of every start, for code the daemon never runs.

How: before anything imports uvicorn, ``uvicorn`` goes into ``sys.modules`` as the package it is
(its own spec and path) with its ``__init__`` not run yet. Its submodules are uvicorn's own,
imported by the ordinary machinery. The first time anyone reads a name only ``__init__`` defines
(``uvicorn.run``, as the test kit's model server does), ``__init__`` runs, and uvicorn is whole.
If uvicorn was imported before, it is used as it is. Import uvicorn's modules through this one.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import Final

INIT_DUNDERS: Final = frozenset({"__version__", "__all__"})
"""The dunder names uvicorn's ``__init__`` defines."""


def _uvicorn_without_init() -> None:
    if "uvicorn" in sys.modules:
        return
    spec = importlib.util.find_spec("uvicorn")
    if spec is None or spec.loader is None:  # pragma: no cover - uvicorn is a dependency
        raise ImportError("uvicorn is not installed")
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def complete(name: str) -> object:
        """Run ``__init__`` now, for a name only it defines (PEP 562's module ``__getattr__``)."""
        if name.startswith("__") and name not in INIT_DUNDERS:  # a probe (copy, inspect), not a need
            raise AttributeError(name)
        del package.__dict__["__getattr__"]
        loader.exec_module(package)
        return getattr(package, name)

    package.__dict__["__getattr__"] = complete
    sys.modules["uvicorn"] = package


def _done(module: ModuleType, **names: object) -> None:
    """What ``__init__`` would have bound and uvicorn's own modules import from the package
    (``lifespan.off`` does ``from uvicorn import Config``)."""
    for name, value in names.items():
        module.__dict__.setdefault(name, value)


_uvicorn_without_init()

# isort: split
from uvicorn.config import Config  # noqa: E402
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: E402
from uvicorn.server import Server  # noqa: E402

_done(sys.modules["uvicorn"], Config=Config, Server=Server)

__all__ = ["Config", "HttpToolsProtocol", "Server"]
