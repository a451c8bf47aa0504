"""Daemon layer: a request for a session another daemon serves (``--share-db``), sent on to that
daemon and its answer streamed back, so that a client may talk to any daemon sharing the database.

The request goes on once, as the client sent it (its method, path, query, body and the headers
that matter to acpd: its token among them, so the daemons must share their token), marked so that
the owner never sends it further; the owner's answer comes back as it answers, a stream included.
When the owner named no address, the client hears ``503 store-locked``. When it cannot even be
connected to, it has died (or its machine is cut off), and its session lock goes with its database
connection (at once for a killed process, within 11 s for a dead machine): the request is tried
here again, after short pauses, for ``TAKEOVER_SECONDS`` at most, so that the session is taken
over here and the client is answered as if nothing happened (``after_refusal``; ACP clients'
requests the same way, acp_shared.py). httpx is imported only when a request is sent on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Final

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from acpd.errors import AcpdError, StoreLocked

from .problems import from_error
from .sharing import after_refusal

if TYPE_CHECKING:
    import httpx

FORWARDED: Final = "acpd-forwarded"
"""The header that marks a request one daemon sent on to another (never sent on again)."""
BODY_KEY: Final = "acpd.body"
"""Where ``read_body`` leaves the body it read in the request's scope (a request stream is read once)."""
REQUEST_HEADERS: Final = ("authorization", "content-type", "accept", "idempotency-key", "last-event-id")
RESPONSE_SKIPPED: Final = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
CONNECT_SECONDS: Final = 5.0
ORIGIN: Final = "acpd-origin"
"""On a prompt one daemon sent on to another: the link id of the ACP client that sent it, whose
link the owner prefers for the turn's ``fs/*`` and ``terminal/*`` requests (client_links.py)."""


Endpoint = Callable[[Request], Awaitable[Response]]


async def forwarded(request: Request, refusal: StoreLocked, endpoint: Endpoint | None) -> Response:
    """The owner's answer to ``request``, or ``refusal`` as a problem if it cannot be had; while
    the owner cannot be connected to, ``endpoint`` is tried here again (``after_refusal``)."""

    async def here() -> Response:
        assert endpoint is not None
        try:
            return await endpoint(request)
        except StoreLocked:
            raise
        except AcpdError as exc:
            return from_error(exc)

    try:
        return await after_refusal(refusal, here, lambda locked: _sent_on(request, locked, retry=endpoint is not None))
    except StoreLocked as exc:
        return from_error(exc)


async def _sent_on(request: Request, refusal: StoreLocked, *, retry: bool) -> Response:
    """The owner's answer, or ``refusal`` as a problem.

    Raises:
        StoreLocked: with ``owner_gone``, the owner could not be connected to (and ``retry``).
    """
    owner = refusal.data.get("url") if isinstance(refusal.data, dict) else None
    if not isinstance(owner, str) or request.headers.get(FORWARDED):
        return from_error(refusal)
    import httpx

    body = request.scope.get(BODY_KEY)
    if body is None:
        body = await request.body()
    headers = {name: value for name, value in request.headers.items() if name in REQUEST_HEADERS}
    headers[FORWARDED] = "1"
    client = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=CONNECT_SECONDS))
    try:
        sent = client.build_request(
            request.method, owner + request.url.path, params=request.url.query, content=body, headers=headers
        )
        answer = await client.send(sent, stream=True)
    except httpx.HTTPError as exc:
        await client.aclose()
        if retry and isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            # nothing reached the owner: the request may be served here once its lock goes
            raise StoreLocked(refusal.message, data=refusal.data, owner_gone=True) from exc
        return from_error(refusal)
    kept = {name: value for name, value in answer.headers.items() if name.lower() not in RESPONSE_SKIPPED}
    return StreamingResponse(_relayed(client, answer), status_code=answer.status_code, headers=kept)


async def _relayed(client: httpx.AsyncClient, answer: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in answer.aiter_raw():
            yield chunk
    finally:
        await answer.aclose()
        await client.aclose()
