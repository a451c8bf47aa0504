"""Test kit: a fake model API on 127.0.0.1, so real coding agents and acpd's own loop run fully offline.

It speaks Anthropic Messages (``/v1/messages``), OpenAI Responses and Chat Completions
(``/v1/responses``, ``/v1/chat/completions``) and Gemini (``/v1beta/models/<m>:generateContent``,
``:streamGenerateContent``, ``:countTokens``), streamed and not. Which reply a request gets is
decided in ``_model_plan`` (scripted queue, then ``mock:`` directives, then defaults: one shell tool
call per prompt, then ``All done. Tool said: …``). Control API: ``POST /_mock/script`` (a JSON list of
reply specs, queued), ``GET /_mock/requests`` (the log), ``DELETE /_mock/requests`` (log and queue
cleared). Any other path is logged and answered 404 in Anthropic's error shape; ``HEAD`` anything is 200.

In process::

    async with serve_mock_model() as server:      # binds 127.0.0.1, a free port
        server.push(Reply(text="hi"))
        client = AsyncAnthropic(base_url=server.url, api_key="x")

As a process: ``python -m acpd.testing.model_server --port 0 --port-file F --log F.jsonl [--delay S]``.
It never touches process signals when used in process (``main`` handles SIGTERM/SIGINT itself).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import AsyncIterator, Generator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import anyio
import uvicorn
from anyio.abc import TaskStatus

from acpd.testing._model_replies import ErrorReply, Reply, ToolCall, Usage
from acpd.testing._model_routes import create_app
from acpd.testing._model_state import LoggedRequest, MockState, PlanRecord, UsageRecord

__all__ = [
    "ErrorReply",
    "LoggedRequest",
    "MockModelServer",
    "PlanRecord",
    "Reply",
    "ToolCall",
    "Usage",
    "UsageRecord",
    "bind_local",
    "main",
    "serve_mock_model",
]

logger = logging.getLogger(__name__)

DEFAULT_HOST: Final = "127.0.0.1"
SHUTDOWN_GRACE_SECONDS: Final = 2
"""How long a stop waits for responses still streaming before cancelling them."""
LISTEN_BACKLOG: Final = 128


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn would take over SIGINT/SIGTERM (and re-raise them on exit); whoever runs us owns signals.
        yield


class MockModelServer:
    """The mock model API: its state and ASGI app. Run it with ``serve_mock_model``, or ``serve``.

    Args:
        event_delay_seconds: pause between streamed events (for cancel tests).
        log_path: also append every logged request to this JSONL file.
    """

    def __init__(self, *, event_delay_seconds: float = 0.0, log_path: Path | None = None) -> None:
        self._state = MockState(log_path=log_path, event_delay_seconds=event_delay_seconds)
        self.app = create_app(self._state)
        self.url = ""
        """``http://127.0.0.1:PORT`` (no trailing slash) once listening."""
        self._uvicorn: _Server | None = None

    @property
    def requests(self) -> list[LoggedRequest]:
        """The request log, oldest first (control-API requests excluded)."""
        return self._state.requests

    def push(self, *replies: Reply) -> None:
        """Queue replies for the next conversation requests (those offering tools), first in first out."""
        self._state.push(replies)

    def clear(self) -> None:
        """Forget the request log and every queued reply."""
        self._state.clear()

    async def serve(self, sock: socket.socket, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve on ``sock`` (from ``bind_local``; closed on return) until ``stop()``; once only per server.

        Reports the port through ``task_status`` at once: the socket already listens, so connections
        made before uvicorn starts accepting wait in its backlog.
        """
        host, port = sock.getsockname()[:2]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        config = uvicorn.Config(
            self.app,
            http="httptools",
            lifespan="off",
            log_config=None,
            log_level=None,
            access_log=False,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        )
        self._uvicorn = _Server(config)
        try:
            task_status.started(int(port))
            await self._uvicorn.serve(sockets=[sock])
        finally:
            sock.close()
            self._state.close()

    def stop(self) -> None:
        """Ask ``serve`` to return: it stops accepting, lets streams finish (briefly), then exits."""
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True


@asynccontextmanager
async def serve_mock_model(
    *,
    host: str = DEFAULT_HOST,
    port: int = 0,
    event_delay_seconds: float = 0.0,
    log_path: Path | None = None,
) -> AsyncIterator[MockModelServer]:
    """Run a ``MockModelServer`` in a task group of the caller's task; stop it on exit.

    Raises:
        OSError: the address could not be bound.
    """
    server = MockModelServer(event_delay_seconds=event_delay_seconds, log_path=log_path)
    sock = bind_local(host, port)
    async with anyio.create_task_group() as group:
        await group.start(server.serve, sock)
        try:
            yield server
        finally:
            server.stop()


def bind_local(host: str = DEFAULT_HOST, port: int = 0) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: a free port) for ``MockModelServer.serve``.

    Raises:
        OSError: the address is in use or not local.
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m acpd.testing.model_server``: serve until SIGTERM or SIGINT; return the exit status."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="acpd-mock-model: %(levelname)s %(message)s")
    try:
        sock = bind_local(args.host, args.port)
    except OSError as exc:
        logger.error("cannot listen on %s port %d: %s", args.host, args.port, exc)
        return 1
    anyio.run(_run, args, sock, backend="asyncio")
    return 0


async def _run(args: argparse.Namespace, sock: socket.socket) -> None:
    server = MockModelServer(event_delay_seconds=args.delay, log_path=args.log)
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with anyio.create_task_group() as group:
            port = await group.start(server.serve, sock)
            if args.port_file is not None:
                # Readers should wait for the newline: the file exists, empty, for a moment before it.
                await anyio.Path(args.port_file).write_text(f"{port}\n")
            logger.info("mock model server listening on %s", server.url)
            async for signum in signals:
                logger.info("stopping on signal %d", signum)
                server.stop()
                break


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="acpd mock-model", description="Serve a mock model API on this machine.")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    parser.add_argument("--port-file", help="write the bound port (and a newline) here once listening")
    parser.add_argument("--log", type=Path, help="append every request to this JSONL file")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between streamed events (default 0)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
