"""Store layer: following a session's log live in PostgreSQL, whoever writes it: a writer's commit
sends a notification (``NOTIFY``, delivered when the transaction commits, never before), and a
follower, woken by it, reads the rows after its cursor from the table.

The table is the truth and the notification only a wake-up: a follower reads ``seq > cursor`` in
order, so it sees every committed record once, in order, whatever notifications were merged, late
or lost (a listening connection that breaks wakes every follower to read again, and a follower
also reads again every ``POLL_SECONDS`` if nothing woke it). It must not import asyncpg at module
level, nor anything of acpd but the protocol layer and errors.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING, Final

import anyio

from acpd.protocol.events import EventRecord

if TYPE_CHECKING:
    import asyncpg

logger = logging.getLogger(__name__)

CHANNEL: Final = "acpd_events"
"""The channel commits notify on; the payload is ``<schema> <session id>``."""
NOTIFY: Final = "SELECT pg_notify('acpd_events', current_schema() || ' ' || s) FROM unnest($1::text[]) AS s"
"""Sent by a writer inside the transaction that commits records of the sessions ``$1``."""
POLL_SECONDS: Final = 1.0
"""A follower nobody woke reads again after this long (a safety net: a notification is not stored)."""
PAGE: Final = 1000
"""Records a follower reads at a time."""


class Wakeups:
    """One listening connection per store, shared by its followers, and an event per followed
    session that a notification (or the connection's loss) sets."""

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]], schema: str) -> None:
        self._connect = connect
        self._schema = schema
        self._conn: asyncpg.Connection | None = None
        self._listening = asyncio.Lock()
        self._events: dict[str, set[asyncio.Event]] = {}

    async def register(self, session_id: str) -> asyncio.Event:
        """An event set whenever ``session_id`` may have new records; ``unregister`` it after."""
        await self.listen()
        event = asyncio.Event()
        self._events.setdefault(session_id, set()).add(event)
        return event

    def unregister(self, session_id: str, event: asyncio.Event) -> None:
        events = self._events.get(session_id)
        if events is not None:
            events.discard(event)
            if not events:
                del self._events[session_id]

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def listen(self) -> None:
        """Listen, on a new connection unless the current one is open."""
        async with self._listening:
            if self._conn is not None and not self._conn.is_closed():
                return
            conn = await self._connect()
            conn.add_termination_listener(self._lost)
            await conn.add_listener(CHANNEL, self._notified)
            self._conn = conn

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        schema, _, session_id = payload.partition(" ")
        if schema == self._schema:
            for event in self._events.get(session_id, ()):
                event.set()

    def _lost(self, _conn: object) -> None:
        """The listening connection broke: notifications may have been missed meanwhile, so every
        follower reads again (and the next ``register`` listens on a new connection)."""
        self._conn = None
        for events in self._events.values():
            for event in events:
                event.set()


async def follow(
    wakeups: Wakeups,
    read: Callable[[str, int, int], Awaitable[list[EventRecord]]],
    session_id: str,
    after: int,
) -> AsyncGenerator[list[EventRecord], None]:
    """Batches of ``session_id``'s records after seq ``after``, as they commit, forever (the caller
    stops iterating). ``read(session_id, after, limit)`` reads committed records."""
    event = await wakeups.register(session_id)
    try:
        while True:
            await wakeups.listen()  # on a new connection if the last one broke
            event.clear()  # before reading: a commit after the read sets it again
            records = await read(session_id, after, PAGE)
            if records:
                after = records[-1].seq
                yield records
                continue
            with anyio.move_on_after(POLL_SECONDS):
                await event.wait()
    finally:
        wakeups.unregister(session_id, event)
