"""Client layer: ``acpd.client``, the typed Python client of a running acpd daemon, on httpx.

``Acpd`` (sync) and ``AsyncAcpd`` (anyio) cover the REST + SSE API: sessions (create, get, an
auto-paging list, settings, delete), agents, blocking and streamed prompts retried safely with an
``Idempotency-Key``, the event log (paged, or followed across dropped connections and daemon
restarts), permission requests and cancel. Problems are raised as the typed exceptions of
``acpd.client.errors``; records are ``acpd.api.events.EventRecord``. Versioned with the daemon
(``acpd.client.__version__``); ``docs/client.md`` is the reference.

It may import the API models, the protocol and the leaf modules, never the daemon, the adapters,
the transports, the RPC peer, the store or the CLI; httpx is imported when a client is made.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from acpd import __version__

if TYPE_CHECKING:
    from acpd.api.events import EventRecord

    from ._async import AsyncAcpd, AsyncTurnStream
    from ._sync import Acpd, TurnStream
    from .errors import AcpdClientError, DaemonUnreachable, ProblemError
    from .models import Agent, PermissionAnswer, PermissionRequest, PromptResult, Session, Usage
    from .permissions import approve_all, approve_reads, reject_all

DEFAULT_URL: Final = "http://127.0.0.1:4520"

_WHERE: Final = {
    "Acpd": "._sync",
    "TurnStream": "._sync",
    "AsyncAcpd": "._async",
    "AsyncTurnStream": "._async",
    "EventRecord": "acpd.api.events",
    **dict.fromkeys(("AcpdClientError", "DaemonUnreachable", "ProblemError"), ".errors"),
    **dict.fromkeys(
        ("Agent", "PermissionAnswer", "PermissionRequest", "PromptResult", "Session", "Usage"),
        ".models",
    ),
    **dict.fromkeys(("approve_all", "approve_reads", "reject_all"), ".permissions"),
}
"""Where each public name lives: imported at its first use, so that ``import acpd.client`` (the
CLI does it for every command) costs nothing until a client is made."""


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_URL",
    "Acpd",
    "AcpdClientError",
    "Agent",
    "AsyncAcpd",
    "AsyncTurnStream",
    "DaemonUnreachable",
    "EventRecord",
    "PermissionAnswer",
    "PermissionRequest",
    "ProblemError",
    "PromptResult",
    "Session",
    "TurnStream",
    "Usage",
    "__version__",
    "approve_all",
    "approve_reads",
    "reject_all",
]
