"""Store layer: which daemon owns each session when several share a PostgreSQL database: a session
advisory lock per session, held on the owner's writer connection, so that the owner is the only
writer of the session's log and its death (its connection closing) frees the session at once.

The lock's key is (the schema's hash, the session's ``lock_id``): ``session_locks`` gives each
session a number of its own, so no two sessions of a schema share a lock; ``daemons`` names each
owner's address by its writer's backend pid. It must not import asyncpg at module level, nor
anything of acpd but errors.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import asyncpg

_KEY: Final = "hashtext(current_schema()), lock_id"
_NUMBER: Final = "INSERT INTO session_locks (session_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING"
_TRY: Final = f"SELECT session_id, pg_try_advisory_lock({_KEY}) FROM session_locks WHERE session_id = ANY($1)"
_UNLOCK: Final = f"SELECT pg_advisory_unlock({_KEY}) FROM session_locks WHERE session_id = $1"
_OWNER: Final = (
    "SELECT l.pid, d.url FROM session_locks s"
    " JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"
    " AND l.classid = hashtext(current_schema())::oid AND l.objid = s.lock_id::oid"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " LEFT JOIN daemons d ON d.backend_pid = l.pid WHERE s.session_id = $1"
)
_NOTE: Final = (
    "WITH gone AS (DELETE FROM daemons WHERE backend_pid NOT IN (SELECT pid FROM pg_stat_activity))"
    " INSERT INTO daemons (backend_pid, url) VALUES (pg_backend_pid(), $1)"
    " ON CONFLICT (backend_pid) DO UPDATE SET url = excluded.url, noted_at = now()"
)


class Leases:
    """The sessions this store's writer connection holds; forgotten with that connection."""

    def __init__(self) -> None:
        self.held: set[str] = set()
        self.url: str | None = None  # this daemon's address, noted again on every new connection

    async def claim(self, conn: asyncpg.Connection, session_ids: Iterable[str]) -> tuple[list[str], list[str]]:
        """Lock the sessions not held yet: those locked now, and those another daemon holds."""
        wanted = sorted({session_id for session_id in session_ids if session_id not in self.held})
        if not wanted:
            return [], []
        await conn.execute(_NUMBER, wanted)
        got: list[str] = []
        refused: list[str] = []
        for session_id, locked in await conn.fetch(_TRY, wanted):
            (got if locked else refused).append(session_id)
        self.held.update(got)
        return got, refused

    async def release(self, conn: asyncpg.Connection, session_id: str) -> None:
        if session_id in self.held:
            await conn.execute(_UNLOCK, session_id)
            self.held.discard(session_id)

    async def note(self, conn: asyncpg.Connection, url: str | None = None) -> None:
        """Tell the other daemons this one's address (``url``, else the one noted before)."""
        self.url = url or self.url
        if self.url is not None:
            await conn.execute(_NOTE, self.url)

    def forget(self) -> list[str]:
        """The connection that held the locks is gone, and they with it: the sessions it held."""
        held = sorted(self.held)
        self.held.clear()
        return held


async def owner_of(conn: asyncpg.Connection, session_id: str) -> dict[str, Any] | None:
    """Who holds the session: its writer's backend ``pid`` and, if it said, its ``url``; None if
    nobody does."""
    row = await conn.fetchrow(_OWNER, session_id)
    return None if row is None else {"pid": row[0], "url": row[1]}
