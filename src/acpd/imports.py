"""Leaf module: third-party packages imported without the parts acpd never runs. Imports only the
stdlib; call these before the package's first import."""

from __future__ import annotations

import sys


def without_httpx_cli() -> None:
    """Have httpx import without its command line. httpx's ``__init__`` imports ``httpx._main``
    whenever click is installed (uvicorn brings it): click, rich and pygments, about 60 ms and
    10 MiB, for the ``httpx`` program. Marked absent, the import fails and httpx carries on as it
    does without click (its ``main`` only says how to install the command line). For acpd's CLI
    commands, and for the model SDK (``anthropic`` imports httpx)."""
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]  # None: "no such module"
