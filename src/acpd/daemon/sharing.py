"""Daemon layer: sessions of a PostgreSQL database that several daemons share (``--share-db``).

A daemon serves a session live (its agent, its turns, its log's writes) only while it holds it in
the store (``PostgresEventStore.claim``): it takes it when it first uses it and nobody holds it
(an idle session, or one whose daemon died), and lets it go when the session leaves its memory.
Whoever holds a session, any daemon serves its events: a page from the table, a stream that
follows the table live (woken by the owner's commits). Writes to a session another daemon holds
(a prompt, a cancel, a permission's answer, a setting) are refused with ``StoreLocked``, whose data
name that daemon's ``url``: forward.py sends REST requests there, acp_shared.py an ACP client's.
When that daemon cannot even be connected to, it has died and its lock is going: the request is
tried here again for a while (``after_refusal``), to take the session over.

It must not parse HTTP (http.py does) nor start agents (the manager does).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

import anyio

from acpd.errors import StoreLocked
from acpd.protocol.events import EventRecord
from acpd.store.base import EventStore

from . import sse

if TYPE_CHECKING:
    from acpd.store.postgres import PostgresEventStore

CLAIM_TRIES: Final = 3
"""Claims of a session whose owner is gone by the time it is asked for (``hold``)."""
TAKEOVER_SECONDS: Final = 12.0
"""How long a request whose session's owner cannot be connected to waits for the owner's lock to go
(a dead machine's connection is given up within 11 s) before it is answered ``store-locked``."""
TAKEOVER_PAUSES: Final = (0.05, 0.1, 0.25, 0.5, 1.0)
"""The pauses between tries here, the last repeated."""


def shared_store(store: EventStore) -> PostgresEventStore | None:
    """The store, if it shares its database with other daemons."""
    # A PostgreSQL store was made through its module, so a daemon without that module loaded has
    # none: a SQLite daemon never imports it (and the check costs a dictionary lookup).
    module = sys.modules.get("acpd.store.postgres")
    if module is None:
        return None
    shared: PostgresEventStore | None = store if isinstance(store, module.PostgresEventStore) and store.shared else None
    return shared


async def hold(store: PostgresEventStore, session_id: str) -> None:
    """Make this daemon the session's server, unless another daemon holds it.

    Raises:
        StoreLocked: another daemon holds it; ``data`` has its ``url`` (if it told one).
    """
    owner: dict[str, Any] | None = None
    for _ in range(CLAIM_TRIES):
        if await store.claim(session_id):
            return
        owner = await store.owner_of(session_id)
        if owner is not None:
            break
        # held as it was claimed, free as its owner was asked: its lock has just gone (its daemon died)
    owner = owner or {}
    url = owner.get("url")
    raise StoreLocked(
        f"session {session_id!r} is served by another daemon{f' at {url}' if url else ''}: send it there",
        data={"sessionId": session_id, **owner},
    )


class Follows(Protocol):
    def follow(self, session_id: str, *, after: int = 0) -> AsyncGenerator[list[EventRecord], None]: ...


async def followed(
    store: Follows, session_id: str, after: int, *, keepalive_seconds: float = sse.KEEPALIVE_SECONDS
) -> AsyncGenerator[bytes, None]:
    """SSE bytes for every committed record of a session another daemon serves, after ``after``,
    live, read from the table as its owner commits them; a keep-alive comment whenever nothing
    came for ``keepalive_seconds``, as on a stream through the owner (proxies close idle streams)."""
    yield b"retry: 1000\n\n"
    batches = store.follow(session_id, after=after)
    # one read of the next batch outlives any number of keep-alives: cancelling it would end the follow
    pending: asyncio.Future[list[EventRecord]] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(batches))
            done, _ = await asyncio.wait({pending}, timeout=keepalive_seconds)
            if not done:
                yield sse.KEEPALIVE
                continue
            try:
                records = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield sse.encode(records)
    finally:
        if pending is not None:
            pending.cancel()  # ends the follow: its generator exits by the cancellation
            await asyncio.wait({pending})
        else:
            await batches.aclose()


T = TypeVar("T")


async def after_refusal(
    refusal: StoreLocked, here: Callable[[], Awaitable[T]], there: Callable[[StoreLocked], Awaitable[T]]
) -> T:
    """``there(refusal)``: the answer of the daemon that holds the session. While that daemon
    cannot be connected to (``StoreLocked.owner_gone``), ``here()`` again after a pause (its lock
    may be gone: the session is then served here), and so on for ``TAKEOVER_SECONDS`` at most.

    Raises:
        StoreLocked: the owner refused, or could not be reached for so long.
    """
    deadline = anyio.current_time() + TAKEOVER_SECONDS
    pauses = iter(TAKEOVER_PAUSES)
    while True:
        try:
            return await there(refusal)
        except StoreLocked as exc:
            pause = next(pauses, TAKEOVER_PAUSES[-1])
            if not exc.owner_gone or anyio.current_time() + pause > deadline:
                raise
        await anyio.sleep(pause)
        try:
            return await here()
        except StoreLocked as exc:
            refusal = exc  # still held: by the same daemon, or already by another
