"""Daemon layer: a client link, the end on the daemon an ACP client is attached through
(``--share-db``): the client advertised ``fs`` or ``terminal`` in ``initialize`` and follows a
session another daemon serves, so the agent's ``fs/*`` and ``terminal/*`` requests, raised on
that daemon, must reach it and its answers go back.

The link is a WebSocket to the owner's ``/v1/sessions/{id}/link`` (client_links.py is the other
end) speaking JSON-RPC: one ``_acpd/client_link`` request says who the client is and what it
advertised; then the owner sends the agent's requests, each asked of the client and answered
with its result or its error (a client gone answers with an error: the agent never waits on a
client that left). When the link ends while the client still follows the session (its owner
died, or let it go), it is made again to whichever daemon serves it, after a pause that grows
from ``RETRY_FIRST_SECONDS`` to ``RETRY_MAX_SECONDS``; meanwhile the owner serves such requests
itself, as it does when no client offers them. It must not run agents nor write a log.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import anyio

from acpd.errors import AcpdError, ConnectionClosed, RpcError
from acpd.protocol import methods
from acpd.protocol.framing import Frame
from acpd.protocol.jsonio import JsonObject, JsonValue
from acpd.rpc.peer import JsonRpcPeer

from .clients import advertises
from .forward import CONNECT_SECONDS, FORWARDED

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

    from acpd.store.postgres import PostgresEventStore  # only annotations: a SQLite daemon never loads it

logger = logging.getLogger(__name__)

RELAYED: Final = frozenset(
    {
        methods.FS_READ_TEXT_FILE,
        methods.FS_WRITE_TEXT_FILE,
        methods.TERMINAL_CREATE,
        methods.TERMINAL_OUTPUT,
        methods.TERMINAL_WAIT_FOR_EXIT,
        methods.TERMINAL_KILL,
        methods.TERMINAL_RELEASE,
    }
)
RETRY_FIRST_SECONDS: Final = 0.25
RETRY_MAX_SECONDS: Final = 2.0
MAX_MESSAGE_BYTES: Final = 32 * 1024 * 1024
"""A message's limit on a link: a ``/v1/rpc`` message's (ws.py)."""


class Client(Protocol):
    """The ACP client a link stands for (``AcpConnection``, a ``ClientLink``)."""

    @property
    def link_id(self) -> str: ...

    @property
    def client_capabilities(self) -> JsonObject: ...

    async def relay(self, method: str, params: JsonObject) -> JsonValue: ...


def wants_link(client: Client) -> bool:
    """True if the client advertised anything an agent may ask of it besides permissions."""
    return any(advertises(client, method) for method in RELAYED)


async def keep_linked(
    store: PostgresEventStore, token: str | None, session_id: str, client: Client, linked: anyio.Event
) -> None:
    """Link ``client`` to the session's owner, and again whenever the link ends, until cancelled.
    ``linked`` is set once the first try is over, linked or not (whoever waits for it goes on)."""
    from websockets.exceptions import WebSocketException  # imported with the first link

    delay = RETRY_FIRST_SECONDS
    while True:
        try:
            if await _link_once(store, token, session_id, client, linked):
                delay = RETRY_FIRST_SECONDS
            elif await store.get_session(session_id) is None:
                linked.set()
                return  # deleted: nobody will serve it again
        except (OSError, TimeoutError, WebSocketException, AcpdError) as exc:
            logger.info("client %s: no link to session %s's owner: %s", client.link_id, session_id, exc)
        linked.set()
        await anyio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX_SECONDS)


async def _link_once(
    store: PostgresEventStore, token: str | None, session_id: str, client: Client, linked: anyio.Event
) -> bool:
    """Serve one link until it ends; False if the owner refused it (or none serves the session)."""
    url = (await store.owner_of(session_id) or {}).get("url")
    if not isinstance(url, str):
        return False  # nobody serves it now: whoever takes it over is linked to on the next try
    from websockets.asyncio.client import connect

    headers = {FORWARDED: "1", **({"authorization": f"Bearer {token}"} if token else {})}
    async with connect(
        link_url(url, session_id), additional_headers=headers, max_size=MAX_MESSAGE_BYTES, open_timeout=CONNECT_SECONDS
    ) as ws:
        peer = JsonRpcPeer(_Socket(ws), on_request=relay_to(client), name=f"link {session_id}")
        async with anyio.create_task_group() as tg:
            tg.start_soon(peer.run)
            accepted = await _hello(peer, client, session_id)
            if accepted:
                linked.set()
                await peer.wait_closed()
            await peer.aclose()
    return accepted


async def _hello(peer: JsonRpcPeer, client: Client, session_id: str) -> bool:
    hello = {"linkId": client.link_id, "clientCapabilities": client.client_capabilities}
    try:
        with anyio.fail_after(CONNECT_SECONDS):
            await peer.request(methods.ACPD_CLIENT_LINK, hello)
    except (AcpdError, TimeoutError) as exc:  # another daemon took the session meanwhile, or none answers
        logger.info("client %s: session %s's owner refused a link: %s", client.link_id, session_id, exc)
        return False
    return True


def relay_to(client: Client) -> Callable[[str, JsonValue, JsonObject], Awaitable[JsonValue]]:
    """The link's request handler: the owner's requests the client advertised, asked of it."""

    async def relay(method: str, params: JsonValue, message: JsonObject) -> JsonValue:
        if method not in RELAYED or not advertises(client, method):
            raise RpcError.method_not_found(method)
        if not isinstance(params, dict):
            raise RpcError.invalid_params("params must be an object")
        return await client.relay(method, params)  # the client's error, or ConnectionClosed if it left

    return relay


def link_url(http_url: str, session_id: str) -> str:
    parts = urlsplit(http_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = f"{parts.path.rstrip('/')}/v1/sessions/{quote(session_id, safe='')}/link"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class _Socket:
    """A client-side WebSocket as a Transport: one JSON-RPC message per text frame."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws

    async def send(self, frame: bytes) -> None:
        from websockets.exceptions import ConnectionClosed as WsClosed

        try:
            await self._ws.send(frame.decode())
        except WsClosed as exc:
            raise ConnectionClosed("the link is closed") from exc

    async def receive(self) -> list[Frame]:
        from websockets.exceptions import ConnectionClosed as WsClosed

        try:
            data = await self._ws.recv(decode=False)
        except WsClosed:
            raise anyio.EndOfStream from None
        return [data if isinstance(data, bytes) else data.encode()]

    async def aclose(self) -> None:
        await self._ws.close()
