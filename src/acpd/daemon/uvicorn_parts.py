"""Daemon layer: the parts of uvicorn the daemon runs (``Config``, ``Server``, the httptools
protocol), imported without ``uvicorn/__init__``. That file imports uvicorn's command line, click
and the process supervisors: about 15 ms and 2 MiB of every start, for code the daemon never runs.

How: before anything imports uvicorn, ``uvicorn`` goes into ``sys.modules`` as the package it is
(its own spec and path) with its ``__init__`` not run yet. Its submodules are uvicorn's own,
imported by the ordinary machinery. The first time anyone reads a name only ``__init__`` defines
(``uvicorn.run``, as the test kit's model server does), ``__init__`` runs, and uvicorn is whole.
If uvicorn was imported before, it is used as it is. Import uvicorn's modules through this one.

``logging.config``, which ``uvicorn.config`` imports for a ``log_config`` the daemon never passes,
goes in the same way: its code (with ``logging.handlers``, ``socketserver`` and ``pickle``, about
5 ms of every start) runs when a name is first read from it (``dictConfig``, as ``uvicorn.run``
with its default logging does), not when it is imported.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from types import ModuleType
from typing import Final

INIT_DUNDERS: Final = frozenset({"__version__", "__all__"})
"""The dunder names uvicorn's ``__init__`` defines."""


def run_at_first_use(name: str, dunders: frozenset[str] = frozenset()) -> None:
    """Put module ``name`` into ``sys.modules`` (and on its parent package) as the module it is,
    its code not run yet: the first name read from it that the module lacks runs it (PEP 562's
    module ``__getattr__``), then reading goes on as from any module. ``dunders``: the dunder
    names its code defines (any other is a probe, from ``copy`` or ``inspect``, not a need).
    Nothing is done when ``name`` was imported before."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:  # pragma: no cover - a dependency, or the stdlib
        raise ImportError(f"{name} is not installed")
    module = importlib.util.module_from_spec(spec)
    loader = spec.loader
    # Reentrant: the code, while it runs, may read a name it has not defined yet (through an
    # import of its own); another thread reading meanwhile waits for it to finish.
    lock = threading.RLock()
    running = False

    def complete(attribute: str) -> object:
        nonlocal running
        if attribute.startswith("__") and attribute not in dunders:
            raise AttributeError(attribute)
        with lock:
            if "__getattr__" in module.__dict__ and not running:
                running = True
                try:
                    loader.exec_module(module)
                finally:
                    running = False
                del module.__dict__["__getattr__"]
        try:
            return module.__dict__[attribute]
        except KeyError:
            raise AttributeError(f"module {name!r} has no attribute {attribute!r}") from None

    module.__dict__["__getattr__"] = complete
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)  # as ``import parent.child`` binds it


def _done(module: ModuleType, **names: object) -> None:
    """What ``__init__`` would have bound and uvicorn's own modules import from the package
    (``lifespan.off`` does ``from uvicorn import Config``)."""
    for name, value in names.items():
        module.__dict__.setdefault(name, value)


run_at_first_use("uvicorn", INIT_DUNDERS)
run_at_first_use("logging.config")

# isort: split
from uvicorn.config import Config  # noqa: E402
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: E402
from uvicorn.server import Server  # noqa: E402

_done(sys.modules["uvicorn"], Config=Config, Server=Server)

__all__ = ["Config", "HttpToolsProtocol", "Server"]
