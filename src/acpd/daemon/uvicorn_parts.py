"""Daemon layer: the parts of uvicorn the daemon runs (``Config``, ``Server``, the httptools
protocol), imported without ``uvicorn/__init__``. That file imports uvicorn's command line, click
and the process supervisors: about 15 ms and 2 MiB of every start, for code the daemon never runs.

How: before anything imports uvicorn, ``uvicorn`` goes into ``sys.modules`` as the package it is
(its own spec and path) with its ``__init__`` not run yet. Its submodules are uvicorn's own,
imported by the ordinary machinery. The first time anyone reads a name only ``__init__`` defines
(``uvicorn.run``, as the test kit's model server does), ``__init__`` runs, and uvicorn is whole.
If uvicorn was imported before, it is used as it is (``acpd.imports.run_at_first_use``). Import
uvicorn's modules through this one.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Final

from acpd.imports import run_at_first_use

INIT_DUNDERS: Final = frozenset({"__version__", "__all__"})
"""The dunder names uvicorn's ``__init__`` defines."""


def _done(module: ModuleType, **names: object) -> None:
    """What ``__init__`` would have bound and uvicorn's own modules import from the package
    (``lifespan.off`` does ``from uvicorn import Config``)."""
    for name, value in names.items():
        module.__dict__.setdefault(name, value)


run_at_first_use("uvicorn", INIT_DUNDERS)

# isort: split
from uvicorn.config import Config  # noqa: E402
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: E402
from uvicorn.server import Server  # noqa: E402

_done(sys.modules["uvicorn"], Config=Config, Server=Server)

__all__ = ["Config", "HttpToolsProtocol", "Server"]
