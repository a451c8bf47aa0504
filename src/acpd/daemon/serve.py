"""Daemon layer: ``serve`` runs the daemon: store, SessionManager and uvicorn on a pre-bound socket.

Binding the socket ourselves lets ``--port 0`` work and readiness be reported the moment the port
is known. It must not parse argv or read the environment (the CLI does).
"""

from __future__ import annotations

import logging
import socket

import anyio
import uvicorn
from anyio.abc import TaskStatus

from acpd.config import DaemonConfig
from acpd.store.base import EventStore
from acpd.store.memory import MemoryEventStore
from acpd.store.sqlite import SqliteEventStore

from . import ws
from .app import create_app
from .http_protocol import ProblemHttpToolsProtocol, ProblemWebSocketProtocol
from .manager import SessionManager
from .security import check_bind

logger = logging.getLogger(__name__)


async def open_store(db: str) -> EventStore:
    if db == "memory":
        return MemoryEventStore()
    return await SqliteEventStore.open(db)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn, stopping the sessions as soon as it starts shutting down: it waits for every open
    request, and a request waiting on a session (an agent start, a turn) ends only when it does."""

    def __init__(self, config: uvicorn.Config, manager: SessionManager) -> None:
        super().__init__(config)
        self._manager = manager

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._manager.shutdown)
            await super().shutdown(sockets)


async def serve(
    config: DaemonConfig,
    *,
    port_file: str | None = None,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until SIGINT/SIGTERM; then stop every agent and close the store."""
    check_bind(config)
    store = await open_store(config.resolved_db())
    sock = bind(config.host, config.port)
    port = int(sock.getsockname()[1])
    try:
        manager = SessionManager(config, store)
        async with manager.running():
            app = create_app(manager, port=port)
            server = _Server(
                uvicorn.Config(
                    app,
                    http=ProblemHttpToolsProtocol,
                    ws=ProblemWebSocketProtocol,
                    ws_max_size=ws.MAX_MESSAGE_BYTES,
                    lifespan="off",
                    log_level="warning",
                    access_log=False,
                ),
                manager,
            )
            if port_file:
                await anyio.Path(port_file).write_text(f"{port}\n")
            logger.info("acpd listening on http://%s:%d (db %s)", config.host, port, config.resolved_db())
            task_status.started(port)
            await server.serve(sockets=[sock])
    finally:
        sock.close()
        with anyio.CancelScope(shield=True):
            await store.aclose()
