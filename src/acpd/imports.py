"""Leaf module: third-party packages imported without the parts acpd never runs, modules whose code
runs at their first use rather than at their import (call these before the module's first import),
and what imports made kept out of the garbage collector's sight (``freeze_imported``, after them).
Imports only the stdlib."""

from __future__ import annotations

import gc
import importlib.util
import sys
import threading
from typing import Final

TRIGGERS: Final = frozenset({"__all__"})
"""The dunder names whose reading runs a deferred module's code (``from m import *`` reads it)."""
SERVING_AT_FIRST_USE: Final = ("logging.config", "http.client", "http.cookies", "html", "calendar", "hashlib")
"""What uvicorn, Starlette and the stdlib under them import for what a daemon seldom or never does,
about 12 ms of every start: ``logging.config`` (with ``logging.handlers``, ``socketserver``,
``pickle``) for a log configuration the daemon never passes; ``http.client`` (with the ``email``
parser) for the reason phrase of a Starlette ``HTTPException`` that has no detail; ``http.cookies``
for cookies, which acpd neither reads nor sets; ``html`` (and its table of entities) for Starlette's
debug page; ``calendar`` for the email module's date arithmetic; ``hashlib`` for a file response's
ETag and an HMAC (the HTTP stack's own ``_hashlib`` is loaded either way)."""
SESSIONS_AT_FIRST_USE: Final = (
    "acpd.daemon.session",
    "acpd.daemon.turns",
    "acpd.daemon.warm_up",
    "acpd.daemon.titles",
    "acpd.adapters.registry",
    "acpd.protocol.jsonrpc",
)
"""acpd's session engine, which a daemon needs with its first session (created, loaded, or
recovered at start), not to answer: a runtime's turns, permissions, clients and agent views, the
adapters' registry and base, the JSON-RPC frames. The session manager reads them by module, so its
import does not run them: about a twentieth of a start."""
COMPRESSION: Final = ("bz2", "lzma")
"""What ``shutil`` imports to know whether it can make such archives; run at first use where the
extension it needs is installed (shutil then knows as it would)."""


def without_httpx_cli() -> None:
    """Have httpx import without its command line. httpx's ``__init__`` imports ``httpx._main``
    whenever click is installed (uvicorn brings it): click, rich and pygments, about 60 ms and
    10 MiB, for the ``httpx`` program. Marked absent, the import fails and httpx carries on as it
    does without click (its ``main`` only says how to install the command line). For acpd's CLI
    commands, and for the model SDK (``anthropic`` imports httpx)."""
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]  # None: "no such module"


def serving_at_first_use() -> None:
    """Have ``SERVING_AT_FIRST_USE`` and ``SESSIONS_AT_FIRST_USE`` run at their first use (for
    ``acpd serve``, before it imports uvicorn, Starlette and the daemon)."""
    for name in (*SERVING_AT_FIRST_USE, *SESSIONS_AT_FIRST_USE):
        run_at_first_use(name)
    for name in COMPRESSION:
        if importlib.util.find_spec(f"_{name}") is not None:  # else its import fails, as shutil expects
            run_at_first_use(name)


def run_at_first_use(name: str, dunders: frozenset[str] = TRIGGERS) -> None:
    """Put module ``name`` into ``sys.modules`` (and on its parent package) as the module it is,
    its code not run yet: the first name read from it that the module lacks runs it (PEP 562's
    module ``__getattr__``), then reading goes on as from any module. ``dunders``: the dunder
    names whose reading runs it (any other is a probe, from ``copy`` or ``inspect``, not a need).
    Nothing is done when ``name`` was imported before.

    Raises:
        ImportError: no module ``name`` is installed.
    """
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
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


class _Imported:
    """How many modules were loaded at the last ``freeze_imported``."""

    modules = 0


def freeze_imported(*, collect: bool = True) -> None:
    """Move every object the garbage collector tracks out of its sight for good (``gc.freeze``),
    if modules were imported since the last call: what an import makes (modules, classes,
    functions, tables) lives as long as the process, and every collection of an older generation
    walked it again. A daemon calls this once start-up has imported its modules, and again after
    a request that imported more (the first session create loads the agents' configuration and
    adapters: the collection that followed took ~1.5 ms of the next prompt's). Otherwise it costs
    a comparison. With ``collect``, the young generations are collected first, where the garbage
    a request leaves is, so that none of it is frozen; a full collection would add several ms to
    that request, and at start-up there is no garbage worth even that. What else lives at that
    moment (the sessions open then) is frozen too: freed as usual once nothing refers to it, except
    a reference cycle among it, which stays (a few sessions' worth, once per first use)."""
    if len(sys.modules) != _Imported.modules:
        _Imported.modules = len(sys.modules)
        if collect:
            gc.collect(1)
        gc.freeze()
