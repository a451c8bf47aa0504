"""Daemon layer: ``acpd acp``, the ACP face on this process's stdin and stdout, for editors.

If a daemon answers at the configured address, this process is a pure relay: every stdin line goes
to the daemon's ``/v1/rpc`` WebSocket and every message back becomes a stdout line, so editors,
orchestrators and the REST API all share the daemon's live sessions. Otherwise it runs the daemon's
SessionManager in process on the same store and serves the connection itself, unless another
daemon owns that store: then it relays to that daemon's address (from the store's lock), or
refuses if it does not answer there. Stdout carries protocol frames only: logs go to stderr. It
must not parse argv or read the environment (the CLI does). A relay imports only what relaying
needs (editors spawn it and wait for its answer): the daemon's engine is imported on the way to
running standalone.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import quote, urlsplit, urlunsplit

import anyio
from anyio.abc import ByteStream
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed as WsClosed

from acpd.errors import ConfigError, ConnectionClosed, RpcError, StoreLocked
from acpd.private import client_token, given_token, private_dir
from acpd.protocol import jsonio, jsonrpc
from acpd.protocol.framing import MAX_LINE_BYTES
from acpd.protocol.jsonrpc import RequestId
from acpd.settings import DaemonConfig
from acpd.store.select import shown
from acpd.transports.stdio import StdioTransport, open_stdio_transport

if TYPE_CHECKING:
    from acpd.store.base import EventStore

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS: Final = 0.5
PROBE_MAX_BYTES: Final = 64 * 1024
"""A health answer is a few dozen bytes: more is not a daemon's."""


async def daemon_answers(url: str) -> bool:
    """True if an acpd daemon answers ``/v1/health`` (open to all, no token) at ``url``.

    One HTTP/1.0 GET on a socket of our own: the answer cannot be chunked and ends when the
    server closes, and an HTTP client library would cost more to import than the relay's start.
    """
    try:
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        host, port = parts.hostname or "", parts.port or (443 if tls else 80)
    except ValueError:
        return False
    authority = f"[{host}]" if ":" in host else host
    request = f"GET {parts.path.rstrip('/')}/v1/health HTTP/1.0\r\nHost: {authority}:{port}\r\n\r\n"
    with anyio.move_on_after(PROBE_TIMEOUT_SECONDS):
        try:
            async with await _connect(host, port, tls=tls) as stream:
                await stream.send(request.encode())
                return _is_healthy(await _read_to_end(stream))
        except (OSError, anyio.BrokenResourceError):
            return False
    return False


async def _connect(host: str, port: int, *, tls: bool) -> ByteStream:
    if tls:
        return await anyio.connect_tcp(host, port, tls=True, tls_hostname=host)
    return await anyio.connect_tcp(host, port)


async def _read_to_end(stream: ByteStream) -> bytes:
    answer = bytearray()
    with contextlib.suppress(anyio.EndOfStream):
        while len(answer) <= PROBE_MAX_BYTES:
            answer += await stream.receive()
    return bytes(answer)


def _is_healthy(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or not status[0].startswith(b"HTTP/") or status[1] != b"200":
        return False
    try:
        health = jsonio.loads(body)
    except ValueError:
        return False
    return isinstance(health, dict) and health.get("status") == "ok"


async def run_acp_stdio(
    config: DaemonConfig,
    *,
    agent: str | None,
    url: str | None,
    standalone: bool,
    announce: Callable[[str], object] = logger.info,
) -> str:
    """Serve ACP on stdio until stdin ends; returns how it ran (``relay`` or ``standalone``).

    ``announce`` is told, in one line, which it is: the user must know whether the editor shares
    the daemon's sessions or has a store of its own.

    Raises:
        StoreLocked: no daemon answers, and the store is another daemon's (which does not answer
            at the address it left in the lock either).
        ConfigError: the configured token file is missing, empty or unreadable.
    """
    daemon_url = url or f"http://{config.host}:{config.port}"
    if not standalone and await daemon_answers(daemon_url):
        announce(f"relaying to the daemon at {daemon_url}")
        await relay_stdio(rpc_url(daemon_url, agent), relay_token(config, daemon_url))
        return "relay"
    from .serve import open_store

    private_dir(config.resolved_data_dir())
    try:
        store = await open_store(config.resolved_db())
    except StoreLocked as exc:
        owner = exc.data.get("url") if isinstance(exc.data, dict) else None
        if standalone or not isinstance(owner, str) or not await daemon_answers(owner):
            raise
        announce(f"the daemon that owns {shown(config.resolved_db())} serves {owner}: relaying there")
        await relay_stdio(rpc_url(owner, agent), relay_token(config, owner))
        return "relay"
    try:
        reason = "--standalone" if standalone else f"no daemon at {daemon_url}"
        announce(f"{reason}: running standalone on {shown(config.resolved_db())}")
        async with open_stdio_transport() as stdio:
            await serve_in_process(stdio, config, store, agent)
    finally:
        with anyio.CancelScope(shield=True):
            await store.aclose()
    return "standalone"


async def relay_stdio(ws_url: str, token: str | None) -> None:
    async with open_stdio_transport() as stdio:
        await relay(stdio, ws_url, token)


def relay_token(config: DaemonConfig, url: str) -> str | None:
    """The token to show the daemon at ``url``: the configured one, else (a daemon on this
    machine) the one in the data directory's token file.

    Raises:
        ConfigError: the configured token file is missing, empty or unreadable.
    """
    try:
        if config.token_file:
            return given_token(Path(config.token_file))
        return config.token or client_token(url, config.resolved_data_dir(), {})
    except OSError as exc:
        raise ConfigError(f"cannot read the bearer token: {exc}") from exc


def rpc_url(http_url: str, agent: str | None) -> str:
    """The relay's ``/v1/rpc``: with ``framing=lines``, the daemon's frames are NDJSON as stdout wants it."""
    parts = urlsplit(http_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    query = "framing=lines" + (f"&agent={quote(agent)}" if agent else "")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/v1/rpc", query, ""))


INPUT_ENDED: Final = RpcError.input_ended().to_wire()
"""The relay's answer, once stdin has ended, to each request of the daemon's the client has not answered."""


class _Outstanding:
    """The requests each side has sent through the relay and not had answered, so that the end of
    stdin loses nothing: the client's last requests are still answered on stdout (a script pipes
    its requests in and reads the answers), and the daemon's requests to the client, which can
    answer nothing more, are answered with an error (a permission a turn waits for), so that the
    turns the client started can end."""

    def __init__(self) -> None:
        self.of_client: set[RequestId] = set()
        self.of_daemon: set[RequestId] = set()
        self.input_ended = False
        self.settled = anyio.Event()

    def client_sent(self, line: bytes) -> None:
        kind, message_id = _kind_and_id(line)
        if kind is jsonrpc.Kind.REQUEST:
            self.of_client.add(message_id)
        elif kind is jsonrpc.Kind.RESPONSE:
            self.of_daemon.discard(message_id)

    def daemon_sent(self, data: bytes) -> list[RequestId]:
        """Note a frame (of lines) of the daemon's; the ids of its requests to answer at once."""
        if b'"id"' not in data:
            return []  # notifications only (a stream of updates): nothing to note, no parse
        unanswerable: list[RequestId] = []
        for line in data.splitlines():
            kind, message_id = _kind_and_id(line)
            if kind is jsonrpc.Kind.RESPONSE:
                self.of_client.discard(message_id)
            elif kind is jsonrpc.Kind.REQUEST and self.input_ended:
                unanswerable.append(message_id)
            elif kind is jsonrpc.Kind.REQUEST:
                self.of_daemon.add(message_id)
        self._check()
        return unanswerable

    def end_input(self) -> list[RequestId]:
        """Stdin has ended; the ids of the daemon's requests left unanswered."""
        self.input_ended = True
        left, self.of_daemon = list(self.of_daemon), set()
        self._check()
        return left

    def _check(self) -> None:
        if self.input_ended and not self.of_client:
            self.settled.set()


def _kind_and_id(line: bytes) -> tuple[jsonrpc.Kind | None, RequestId]:
    """A line's message kind and id (None and "" for a line that is not a JSON-RPC message with one)."""
    try:
        message = jsonio.loads(line)
    except ValueError:
        return None, ""
    kind = jsonrpc.classify(message)
    message_id = message.get("id") if isinstance(message, dict) else None
    if isinstance(kind, jsonrpc.Invalid) or not jsonrpc.is_request_id(message_id):
        return None, ""
    return kind, message_id


async def relay(stdio: StdioTransport, ws_url: str, token: str | None) -> None:
    """Copy frames both ways until the daemon's side ends, or stdin has ended and the daemon has
    answered every request the client sent."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with connect(ws_url, additional_headers=headers, max_size=MAX_LINE_BYTES) as ws:
        await relay_over(stdio, ws)


async def relay_over(stdio: StdioTransport, ws: ClientConnection) -> None:
    """``relay`` on a WebSocket already open."""
    outstanding = _Outstanding()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_stdin_to_ws, stdio, ws, tg.cancel_scope, outstanding)
        tg.start_soon(_ws_to_stdout, ws, stdio, tg.cancel_scope, outstanding)


async def _stdin_to_ws(
    stdio: StdioTransport, ws: ClientConnection, done: anyio.CancelScope, outstanding: _Outstanding
) -> None:
    try:
        while True:
            for frame in await stdio.receive():
                if isinstance(frame, bytes):
                    outstanding.client_sent(frame)
                    await ws.send(frame.decode("utf-8", "replace"))
                else:
                    logger.warning("dropped a %d-byte line from stdin: over the line limit", frame.size)
    except WsClosed:
        pass
    except anyio.EndOfStream:
        with contextlib.suppress(WsClosed):
            await _refuse(ws, outstanding.end_input())
            await outstanding.settled.wait()
    finally:
        done.cancel()


async def _ws_to_stdout(
    ws: ClientConnection, stdio: StdioTransport, done: anyio.CancelScope, outstanding: _Outstanding
) -> None:
    try:
        while True:
            # bytes as they came: text frames are the daemon's UTF-8 JSON, so no decode and encode;
            # a frame of lines (``framing=lines``) goes out whole, one message (a daemon without
            # that framing) gets its newline
            data = await ws.recv(decode=False)
            unanswerable = outstanding.daemon_sent(data)
            await stdio.send(data[:-1] if data.endswith(b"\n") else data)
            await _refuse(ws, unanswerable)
    except (WsClosed, ConnectionClosed):
        pass
    finally:
        done.cancel()


async def _refuse(ws: ClientConnection, request_ids: list[RequestId]) -> None:
    for request_id in request_ids:
        await ws.send(jsonio.dumps_str(jsonrpc.error_response(request_id, INPUT_ENDED)))


async def serve_in_process(stdio: StdioTransport, config: DaemonConfig, store: EventStore, agent: str | None) -> None:
    from .acp_face import AcpConnection
    from .manager import SessionManager

    async with SessionManager(config, store).running() as manager:
        connection = AcpConnection(manager, stdio, default_agent=agent, name="stdio", finish_on_input_end=True)
        await connection.serve()
