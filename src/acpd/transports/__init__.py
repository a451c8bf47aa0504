"""Transports layer: move framed JSON messages; know no methods. Imports only the protocol layer and ``acpd.errors``.

The package imports only ``base`` itself: the process and stdio transports (and the spawn server's
client under the first) load with the first name asked of them here, or with their own modules,
when the daemon first starts an agent or serves stdio. Everything that speaks to a peer imports
``Transport``, and a daemon that has started nothing yet needs none of the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from acpd.transports.base import Transport

if TYPE_CHECKING:
    from acpd.transports.process import ProcessSpec, ProcessTransport, open_process_transport
    from acpd.transports.stdio import StdioTransport, open_stdio_transport

__all__ = [
    "ProcessSpec",
    "ProcessTransport",
    "StdioTransport",
    "Transport",
    "open_process_transport",
    "open_stdio_transport",
]
_HOMES = {
    "ProcessSpec": "process",
    "ProcessTransport": "process",
    "open_process_transport": "process",
    "StdioTransport": "stdio",
    "open_stdio_transport": "stdio",
}


def __getattr__(name: str) -> object:
    """A name of ``__all__`` from its module, imported now (PEP 562)."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value
