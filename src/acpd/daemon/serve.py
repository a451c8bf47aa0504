"""Daemon layer: ``serve`` runs the daemon: store, SessionManager and uvicorn on a pre-bound socket.

Binding the socket ourselves lets ``--port 0`` work and readiness be reported the moment the port
is known. It must not parse argv or read the environment (the CLI does).

Stopping: the first SIGTERM or SIGINT stops taking connections, closes every session (turns
answered, agents stopped by their ladder, logs committed) while requests in flight finish, each
step with a bound, and arms a hard deadline after which the process exits whatever is stuck. A
second signal exits at once. Either way the agents go too: each runs under a keeper that the
kernel signals when the daemon dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Final, cast

import anyio
from anyio.abc import TaskStatus

from acpd.errors import ConfigError
from acpd.settings import DaemonConfig
from acpd.store.base import EventStore
from acpd.store.memory import MemoryEventStore
from acpd.store.select import is_postgres, shown
from acpd.store.sqlite import SqliteEventStore, StoreOpening

from .app import create_app
from .http_protocol import MAX_MESSAGE_BYTES, ProblemHttpToolsProtocol, websocket_protocol
from .manager import SessionManager
from .uvicorn_parts import Config, Server

logger = logging.getLogger(__name__)

HTTP_GRACE_SECONDS: Final = 5
"""After a stop signal, how long requests in flight get to finish before they are cancelled."""
CLOSE_POLL_SECONDS: Final = 0.01
"""While requests finish after a stop signal, how often to look whether they have (uvicorn tells
no one when its last connection closes)."""
STOP_DEADLINE_SECONDS: Final = 20.0
"""After the first stop signal the process exits by then, whatever is stuck."""
EXIT_GRACE_SECONDS: Final = 1.0
"""Once a signalled stop is done, how long the interpreter may take to exit (a thread stuck in the
disk would hold it forever) before the process leaves without it."""
EXIT_STUCK: Final = 70
"""Exit status when the deadline cut the stop short (EX_SOFTWARE)."""


async def open_store(db: str, opening: StoreOpening | None = None, *, share: bool = False) -> EventStore:
    """The store ``db`` names; ``opening``, when given, is that store's open begun earlier.
    ``share``: a PostgreSQL database shared with other daemons.

    Raises:
        ConfigError: ``share`` for a database that is not PostgreSQL.
    """
    if share and not is_postgres(db):
        raise ConfigError("--share-db needs a PostgreSQL --db (postgresql://…): a SQLite file has one daemon")
    if db == "memory":
        return MemoryEventStore()
    if is_postgres(db):
        from acpd.store.postgres import PostgresEventStore  # only then: a SQLite daemon starts without it

        return await PostgresEventStore.open(db, shared=share)  # it imports its driver only here
    if opening is not None:
        return await opening.store()
    return await SqliteEventStore.open(db)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        fix = (
            "; another program holds it: stop it, or pick another with --port" if exc.errno == errno.EADDRINUSE else ""
        )
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{fix}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _Server(Server):
    """uvicorn, stopping the sessions as soon as it starts shutting down: it waits for every open
    request, and a request waiting on a session (an agent start, a turn, a stream) ends only when
    it does. Without its signal handling: ``serve`` owns the signals (uvicorn re-raises the signal
    once its own shutdown is done, which killed the process before the store was closed). Without
    its fixed waits: uvicorn notices a stop on its next tick (up to 0.1 s) and then sleeps 0.1 s
    more whether or not a connection is open; ``stop()`` wakes it at once, and its shutdown waits
    only while connections or requests remain."""

    def __init__(self, config: Config, manager: SessionManager) -> None:
        super().__init__(config)
        self._manager = manager
        self._ticking = anyio.CancelScope()

    def stop(self) -> None:
        """Begin the graceful shutdown now (from a task on the server's event loop)."""
        self.should_exit = True
        self._ticking.cancel()

    async def main_loop(self) -> None:
        with self._ticking:
            await super().main_loop()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._manager.shutdown)
            await self._close_http(sockets or [])

    async def _close_http(self, sockets: list[socket.socket]) -> None:
        """uvicorn's shutdown (lifespan is off): stop listening, close idle connections, let the
        busy ones finish within the graceful timeout, then cancel what is left."""
        for server in self.servers:
            server.close()
        for sock in sockets:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        with anyio.move_on_after(HTTP_GRACE_SECONDS) as grace:
            while self.server_state.connections or self.server_state.tasks:  # noqa: ASYNC110 - see CLOSE_POLL_SECONDS
                await anyio.sleep(CLOSE_POLL_SECONDS)
        if grace.cancelled_caught:
            logger.error(
                "cancelling %d request(s) still running after %d s", len(self.server_state.tasks), HTTP_GRACE_SECONDS
            )
            for task in self.server_state.tasks:
                task.cancel()
        for server in self.servers:
            await server.wait_closed()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(
    config: DaemonConfig,
    *,
    port_file: str | None = None,
    opening: StoreOpening | None = None,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until SIGINT/SIGTERM; then stop every agent and close the store. ``config`` has its
    token settled already (``security.secured``, which the CLI calls before the store opens).
    ``task_status`` gets the bound port once the daemon answers. ``opening``: the store's open,
    begun before (``SqliteEventStore.begin_open``).

    Raises:
        StoreLocked: another acpd owns the database.
    """
    store = await open_store(config.resolved_db(), opening, share=config.share_db)
    signalled = False
    try:
        sock = bind(config.host, config.port)
        try:
            port = int(sock.getsockname()[1])
            signalled = await _serve_on(config, store, sock, port, port_file, task_status)
        finally:
            sock.close()
    finally:
        with anyio.CancelScope(shield=True):
            await store.aclose()
        if signalled:  # the process is ending: a thread stuck in the disk must not hold it
            _arm_deadline(EXIT_GRACE_SECONDS, "stopped, but a thread is stuck: exiting without it")


async def _serve_on(
    config: DaemonConfig,
    store: EventStore,
    sock: socket.socket,
    port: int,
    port_file: str | None,
    task_status: TaskStatus[int],
) -> bool:
    """Serve until stopped; True when a stop signal stopped it."""
    url = f"http://{config.host}:{port}"
    note_owner = getattr(store, "note_owner", None)  # a file's or a database's (others open them)
    if note_owner is not None:
        await note_owner({"url": url})  # a refused `acpd acp` relays here
    manager = SessionManager(config, store)
    server = _Server(
        Config(
            create_app(manager, port=port),
            http=ProblemHttpToolsProtocol,
            ws=cast("type[asyncio.Protocol]", websocket_protocol),  # a class or a factory: uvicorn calls it
            ws_max_size=MAX_MESSAGE_BYTES,
            lifespan="off",
            log_level="warning",
            access_log=False,
            log_config=None,  # uvicorn's records go through the process's (redacting) handlers
            # No proxy fronts a local daemon, and nothing here reads the client's address or
            # scheme: uvicorn's X-Forwarded-* rewriting (trusting any process on loopback) was
            # one more layer around every request.
            proxy_headers=False,
        ),
        manager,
    )
    # The signal watcher outlives the manager: a second signal must work while sessions close.
    async with anyio.create_task_group() as signals:
        await signals.start(_stop_on_signals, server)
        try:
            async with manager.running():
                if port_file:
                    _tell_port(port_file, port)
                logger.info("acpd listening on %s (db %s)", url, shown(config.resolved_db()))
                task_status.started(port)
                await server.serve(sockets=[sock])
        finally:
            signals.cancel_scope.cancel()
    return server.should_exit  # only a stop signal sets it (``_Server.stop``)


def _tell_port(port_file: str, port: int) -> None:
    """Write the port: a few bytes, written from the loop (nothing is served yet) rather than
    through a worker thread that would be started for them alone."""
    with open(port_file, "w") as file:
        file.write(f"{port}\n")


async def _stop_on_signals(server: _Server, *, task_status: TaskStatus[None]) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
        task_status.started()
        async for signum in received:
            name = signal.Signals(signum).name
            if server.should_exit:
                _exit_now(f"{name} again: exiting now", 128 + signum)
            logger.info(
                "%s: stopping (exiting within %.0f s at most; send it again to exit now)", name, STOP_DEADLINE_SECONDS
            )
            _arm_deadline(STOP_DEADLINE_SECONDS, f"not stopped within {STOP_DEADLINE_SECONDS:.0f} s: exiting now")
            server.stop()


def _arm_deadline(seconds: float, why: str) -> None:
    # A thread, not a task: the deadline must hold even if the event loop itself is stuck. A
    # daemon thread: it never holds the exit itself.
    timer = threading.Timer(seconds, _exit_now, (why, EXIT_STUCK))
    timer.daemon = True
    timer.start()


def _exit_now(why: str, status: int) -> None:
    """Leave without waiting for anything: the agents' keepers stop them when we are gone, and the
    database is consistent whenever the process dies."""
    logger.error("%s", why)
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    os._exit(status)
