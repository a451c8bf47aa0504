"""Store layer: ``PostgresEventStore``, the ``EventStore`` on a PostgreSQL database (``--db
postgresql://…``), on asyncpg and its connection pool.

It must not import asyncpg at module level (a daemon on SQLite never loads it), interpret payloads
(kept as the text given), or import anything of acpd but the protocol layer and errors.

Durability: every connection sets ``synchronous_commit = on``, so a commit's WAL is flushed (and
sent to a synchronous standby, where there is one) when ``append`` returns: the daemon makes
records visible only after that, as on SQLite.

One daemon owns a database (a schema of it) at a time, as a SQLite file: its writes go through
one connection of its own, which holds a session advisory lock for that: the server lets it go when
the connection closes, even by ``kill -9`` of the daemon; a second daemon waits a few seconds for
it, then is refused with ``StoreLocked``. A writer whose connection broke connects again and takes
the lock again before it writes (refused if another daemon took the database meanwhile), and
forgets what it cached of the logs. Writes are one at a time (a lock), each one transaction; a
caller cancelled meanwhile leaves it to finish (it runs in a task of its own), as the SQLite store
leaves a call to its thread, so that a cancelled group commit is never half-known. Reads take any
connection of a pool and see the last committed state. Like the SQLite store, the writer caches
each session's last seq once it has written it, so checking a batch's continuity costs no query
(the primary key refuses a duplicate seq all the same). A store opened with ``writer=False`` only
reads, and can follow the logs another daemon writes (``follow``).

Faults: an unreachable database at open raises ``StoreError`` naming it (password masked). A
write whose connection is lost is tried again on a new connection, a few times over about two
seconds (``RETRY_DELAYS``), then raises ``StoreError``; the batch can also be retried as is later:
a retry of a batch whose commit did land is recognised and not written twice.

Sharing (``shared``): the sessions' locks live on the writer's connection, so the server lets them
go when that connection breaks. The store notices at once (the connection's termination), connects
again (every ``REHOLD_SECONDS`` until the database answers) and takes again every session it held;
one that another daemon took meanwhile is no longer this store's, and ``on_lost`` is told (the
daemon lets it go from memory). A write that comes first reconnects and re-takes them the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio

from acpd.errors import StoreError, StoreFull, StoreLocked
from acpd.protocol import audit, jsonio
from acpd.protocol.events import EventRecord, utc_now
from acpd.store import _pg_index as index
from acpd.store._audit import (
    AuditFilter,
    check_times,
    decode_audit_cursor,
    decode_search_cursor,
    encode_audit_cursor,
    encode_search_cursor,
    search_words,
    snippet,
    turn_views,
    usage_report,
)
from acpd.store._pg_follow import NOTIFY, Wakeups, follow
from acpd.store._pg_leases import Leases, owner_of
from acpd.store._pg_schema import connect, create_pool, driver_errors, take_ownership
from acpd.store._rules import check_page_limit, check_read_limit, decode_cursor, next_last_seqs, page_of
from acpd.store.base import AuditPage, SessionDoc, SessionPage
from acpd.store.docs import EncodedDoc, SessionKeys, encoded_doc
from acpd.store.select import shown

if TYPE_CHECKING:
    import asyncpg

logger = logging.getLogger(__name__)

T = TypeVar("T")

POOL_SIZE: Final = 8
"""Connections at most: the writer's one and readers' (streams that fell behind, listings)."""
CLOSE_TIMEOUT_SECONDS: Final = 2.0
"""How long ``aclose`` waits for running calls before cutting the connections."""
DISK_FULL: Final = "53100"
RETRY_DELAYS: Final = (0.2, 0.6, 1.2)
"""A write whose connection is lost is tried again after each of these pauses, on a new
connection: 4 tries over about 2 s (each new connection within its own 5 s timeout), then it fails."""
"""SQLSTATE of ``disk_full``."""
REHOLD_SECONDS: Final = 1.0
"""A shared store whose writer connection broke tries to connect again (and take its sessions
again) this often, until the database answers."""

_SELECT_EVENTS: Final = (
    "SELECT session_id, seq, at, sender, turn, payload FROM events WHERE session_id = $1 AND seq > $2"
    " ORDER BY seq LIMIT $3"
)
_SELECT_LAST_SEQ: Final = "SELECT coalesce(max(seq), 0) FROM events WHERE session_id = $1"
_INSERT_EVENTS: Final = (
    "INSERT INTO events (session_id, seq, at, sender, turn, payload)"
    " SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::text[])"
)
_UPSERT_SESSION: Final = (
    f"INSERT INTO sessions ({index.SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    " ON CONFLICT (id) DO UPDATE SET agent = excluded.agent, project = excluded.project, cwd = excluded.cwd,"
    " created_at = excluded.created_at, archived_at = excluded.archived_at, doc = excluded.doc"
)
_UPSERT_IDEMPOTENT: Final = (
    "INSERT INTO idempotency (session_id, key, value, created_at) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (session_id, key) DO UPDATE SET value = excluded.value, created_at = excluded.created_at"
)
_DELETES: Final = tuple(
    f"DELETE FROM {table} WHERE session_id = $1"
    for table in ("events", "idempotency", "tool_calls", "turns", "search")
)  # fmt: skip


class PostgresEventStore:
    """An ``EventStore`` in a PostgreSQL database.

    Build it with ``await PostgresEventStore.open(dsn)`` and close it with ``aclose()`` (or use it
    as an async context manager).
    """

    def __init__(
        self, pool: asyncpg.Pool, owner: asyncpg.Connection | None, dsn: str, schema: str, *, shared: bool = False
    ) -> None:
        """Private: use ``open``."""
        self._pool = pool
        self._dsn = dsn
        self._shared = shared
        self._leases = Leases()
        self._writer = owner is not None  # False: a store that only reads
        self._owner = owner  # the writer's connection, which holds the owner lock; None: to be made again
        self._wakeups = Wakeups(lambda: connect(dsn), schema)
        self.dsn = shown(dsn)
        self._write_lock = asyncio.Lock()
        self._writes: set[asyncio.Task[Any]] = set()
        self._last_seqs: dict[str, int] = {}  # what this store committed; touched under the write lock
        self._saved_keys: dict[str, SessionKeys] = {}
        self._titles: dict[str, str | None] = {}
        self._open_turns: audit.OpenTurns = {}
        self._doubtful: set[str] = set()  # sessions whose last write failed: did its commit land?
        self._closed = False
        self.on_lost: Callable[[list[str]], None] | None = None
        """Told the sessions this store held and another daemon's took while its connection was
        broken (``shared``): they are no longer this store's to write."""
        self._rehold: asyncio.Task[None] | None = None
        if owner is not None:
            owner.add_termination_listener(self._owner_lost)

    @classmethod
    async def open(cls, dsn: str, *, writer: bool = True, shared: bool = False) -> PostgresEventStore:
        """Connect to ``dsn`` (``postgresql://user:password@host:port/database``) and migrate it.

        Args:
            writer: take the database's owner lock and write; False: only read and follow the
                logs another store (another daemon) writes there, refusing writes.
            shared: share the database with other daemons' stores opened so: each writes only the
                sessions it holds (``claim``; a write claims its sessions), and a session another
                holds is refused with ``StoreLocked`` naming its owner (``owner_of``).

        Raises:
            StoreLocked: another daemon owns the database (its schema) and did not let go within
                a few seconds.
            StoreError: the database cannot be reached within a few seconds, refuses the login or
                the migration, or has a schema newer than this version of acpd knows.
        """
        owner = await take_ownership(dsn, shared=shared) if writer else None
        try:
            pool = await create_pool(dsn, max_size=POOL_SIZE)
        except BaseException:
            if owner is not None:
                owner.terminate()
            raise
        return cls(pool, owner, dsn, str(await pool.fetchval("SELECT current_schema()")), shared=shared)

    async def __aenter__(self) -> PostgresEventStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # --- writes ---------------------------------------------------------------------------------

    async def append(self, records: Sequence[EventRecord], *, session: SessionDoc | None = None) -> None:
        """Commit ``records`` and ``session`` (when given) in one transaction, all or none.

        Raises:
            StoreError: a seq does not continue its session's log, the database failed, or the
                store is closed.
            InvalidInput: ``session`` lacks an indexed key.
        """
        await self.append_many(records, sessions=() if session is None else (session,))

    async def append_many(
        self, records: Sequence[EventRecord], *, sessions: Sequence[SessionDoc | EncodedDoc] = ()
    ) -> None:
        """Commit ``records`` of any sessions and the ``sessions`` documents in one transaction,
        all or none (the daemon's group commit).

        Raises:
            StoreError: a seq does not continue its session's log, the database failed, or the
                store is closed.
            InvalidInput: a document lacks an indexed key.
        """
        docs = [(doc.keys, doc.text, doc.title) for doc in map(encoded_doc, sessions)]
        if records or docs:
            await self._write(lambda conn: self._append(conn, records, docs))

    async def save_session(self, doc: SessionDoc) -> None:
        """Insert or replace the session document.

        Raises:
            InvalidInput: an indexed key is missing or mistyped, or the document is not JSON.
            StoreError: the database failed, or the store is closed.
        """
        await self.append_many((), sessions=(doc,))

    async def delete_session(self, session_id: str) -> bool:
        """Delete the session, its events, idempotency records and index rows in one transaction;
        False if it did not exist."""
        return await self._write(lambda conn: self._delete(conn, session_id))

    async def put_idempotent(self, session_id: str, key: str, value: str) -> None:
        """Store (or replace) the answer for an Idempotency-Key."""
        at = utc_now()
        await self._write(lambda conn: conn.execute(_UPSERT_IDEMPOTENT, session_id, key, value, at))

    async def compact(self) -> int:
        """``VACUUM`` the tables, so the space deleted sessions left is reused; how many bytes the
        database shrank by (usually 0: PostgreSQL keeps freed pages in its files for reuse, and
        only ``VACUUM FULL``, which locks every table, gives them back)."""

        async def vacuum(conn: asyncpg.Connection) -> int:
            size = "SELECT pg_database_size(current_database())"
            before = int(await conn.fetchval(size))
            await conn.execute("VACUUM")
            return max(0, before - int(await conn.fetchval(size)))

        return await self._write(vacuum)

    # --- reads ----------------------------------------------------------------------------------

    async def read(self, session_id: str, *, after: int = 0, limit: int = 1000) -> list[EventRecord]:
        """Records with ``seq > after`` in order, at most ``limit``.

        Raises:
            InvalidInput: ``limit`` is negative.
            StoreError: the database failed, or the store is closed.
        """
        check_read_limit(limit)
        if limit == 0:
            self._check_open()
            return []
        rows = await self._read(lambda conn: conn.fetch(_SELECT_EVENTS, session_id, after, limit))
        return [EventRecord(*row) for row in rows]

    async def last_seq(self, session_id: str) -> int:
        """The highest committed seq, 0 for an empty or unknown session."""
        return int(await self._read(lambda conn: conn.fetchval(_SELECT_LAST_SEQ, session_id)))

    async def get_session(self, session_id: str) -> SessionDoc | None:
        text = await self._read(lambda conn: conn.fetchval("SELECT doc FROM sessions WHERE id = $1", session_id))
        if text is None:
            return None
        doc: SessionDoc = jsonio.loads(text)
        return doc

    async def list_sessions(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        project: str | None = None,
        agent: str | None = None,
        archived: bool | None = None,
        cwd: str | None = None,
    ) -> SessionPage:
        """Newest first (``createdAt`` desc, then ``id`` desc), filtered, ``limit`` per page.

        Raises:
            InvalidInput: a malformed ``cursor``, or ``limit`` below 1.
            StoreError: the database failed, or the store is closed.
        """
        check_page_limit(limit)
        after = decode_cursor(cursor) if cursor is not None else None
        sql, params = index.list_query(after, limit + 1, project=project, agent=agent, archived=archived, cwd=cwd)
        rows = await self._read(lambda conn: conn.fetch(sql, *params))
        return page_of([index.session_row(row) for row in rows], limit)

    async def get_idempotent(self, session_id: str, key: str) -> str | None:
        """The stored answer for an Idempotency-Key, if any."""
        sql = "SELECT value FROM idempotency WHERE session_id = $1 AND key = $2"
        value = await self._read(lambda conn: conn.fetchval(sql, session_id, key))
        return None if value is None else str(value)

    async def tool_calls(self, wanted: AuditFilter, *, limit: int = 100, cursor: str | None = None) -> AuditPage:
        """The audit index's matching rows, oldest first, ``limit`` a page.

        Raises:
            InvalidInput: a malformed ``cursor``, or ``limit`` below 1.
            StoreError: the database failed, or the store is closed.
        """
        check_page_limit(limit)
        after = decode_audit_cursor(cursor) if cursor is not None else 0
        sql, params = index.audit_query(wanted, after, limit + 1)
        rows = [index.audit_row(row) for row in await self._read(lambda conn: conn.fetch(sql, *params))]
        more = len(rows) > limit
        rows = rows[:limit]
        return AuditPage([row.view() for _, row in rows], encode_audit_cursor(rows[-1][0]) if more else None)

    async def tool_call_stats(self, wanted: AuditFilter) -> dict[str, dict[str, int]]:
        """Counts of the matching tool calls by kind, status, agent, outcome and who decided."""
        source, params = index.audit_query(wanted, 0, None)

        async def count(conn: asyncpg.Connection) -> dict[str, dict[str, int]]:
            stats = {"total": {"toolCalls": int(await conn.fetchval("SELECT count(*)" + source, *params))}}
            for group, column in index.STAT_COLUMNS.items():
                sql = f"SELECT coalesce({column}, 'none'), count(*){source} GROUP BY 1 ORDER BY min(t.pos)"
                stats[group] = {str(key): int(n) for key, n in await conn.fetch(sql, *params)}
            return stats

        return await self._read(count)

    async def search_sessions(
        self,
        q: str,
        *,
        limit: int = 50,
        cursor: str | None = None,
        project: str | None = None,
        agent: str | None = None,
        archived: bool | None = None,
        cwd: str | None = None,
    ) -> SessionPage:
        """Sessions whose title, a prompt or a reply has every word of ``q`` (PostgreSQL full-text
        search, ranked by ``ts_rank``), each with a snippet of its best text around its first word.

        Raises:
            InvalidInput: ``q`` has no word, a malformed ``cursor``, or ``limit`` below 1.
            StoreError: the database failed, or the store is closed.
        """
        check_page_limit(limit)
        offset = decode_search_cursor(cursor) if cursor is not None else 0
        filters = {"project": project, "agent": agent, "archived": archived, "cwd": cwd}
        words = search_words(q)
        sql, params = index.search_query(words, **filters)

        async def search(conn: asyncpg.Connection) -> tuple[list[Any], dict[int, str]]:
            found = await conn.fetch(sql, *params)
            page = [row[8] for row in found[offset : offset + limit]]
            return found, dict(await conn.fetch(index.SEARCH_BODIES, page)) if page else {}

        found, bodies = await self._read(search)
        items = [
            {**jsonio.loads(row[6]), "match": {"kind": row[7], "snippet": snippet(bodies[row[8]], words[0].lower())}}
            for row in found[offset : offset + limit]
        ]
        return SessionPage(items, encode_search_cursor(offset + limit) if len(found) > offset + limit else None)

    async def turns(self, session_id: str) -> list[dict[str, Any]]:
        """The session's turns in order, each with its own usage and cost."""
        sql, params = index.turns_query(session_id, None, None)
        return turn_views(index.turn_row_of(row) for row in await self._read(lambda conn: conn.fetch(sql, *params)))

    async def usage(self, group_by: str, *, since: str | None = None, until: str | None = None) -> dict[str, Any]:
        """The usage of the turns started in [since, until), added up by ``group_by``.

        Raises:
            InvalidInput: another ``group_by``, or a malformed time.
        """
        check_times(since, until)
        sql, params = index.turns_query(None, since, until)
        rows = await self._read(lambda conn: conn.fetch(sql, *params))
        return usage_report(turn_views(index.turn_row_of(row) for row in rows), group_by)

    # --- daemons sharing the database (``shared``) ---------------------------------------------

    @property
    def shared(self) -> bool:
        """Whether the store shares its database with other daemons' (``open(shared=True)``)."""
        return self._shared

    async def claim(self, session_id: str) -> bool:
        """Make this store the session's only writer until it releases it or its connection
        closes; False if another daemon's store holds it. Refused by a store not ``shared``."""
        self._check_shared()

        async def claim(conn: asyncpg.Connection) -> bool:
            got, refused = await self._leases.claim(conn, [session_id])
            self._forget_logs(got)
            return not refused

        return await self._write(claim)

    async def release(self, session_id: str) -> None:
        """Let another daemon's store claim the session."""
        self._check_shared()
        await self._write(lambda conn: self._leases.release(conn, session_id))

    async def owner_of(self, session_id: str) -> dict[str, Any] | None:
        """Which daemon holds the session (its writer's backend ``pid`` and its ``url`` if it told
        one with ``note_owner``), None if none does."""
        return await self._read(lambda conn: owner_of(conn, session_id))

    async def note_owner(self, facts: dict[str, str]) -> None:
        """Tell the daemons sharing the database where this one answers (``facts["url"]``)."""
        if self._writer and "url" in facts:
            await self._write(lambda conn: self._leases.note(conn, facts["url"]))

    def _check_shared(self) -> None:
        if not self._shared:
            raise StoreError("sessions are claimed only in a store opened to share its database (shared=True)")

    async def _claim(self, conn: asyncpg.Connection, session_ids: list[str]) -> None:
        """Hold the sessions written, or refuse the write.

        Raises:
            StoreLocked: another daemon's store holds one of them (``data`` names its owner).
        """
        got, refused = await self._leases.claim(conn, session_ids)
        self._forget_logs(got)
        if refused:
            owner = await owner_of(conn, refused[0]) or {}
            raise StoreLocked(
                f"session {refused[0]!r} is another daemon's (database backend pid {owner.get('pid')},"
                f" serving {owner.get('url') or 'an unknown address'}): send its writes there",
                data={"sessionId": refused[0], **owner},
            )

    def _forget_logs(self, session_ids: list[str]) -> None:
        """Sessions claimed now: another daemon may have written them since this store last did."""
        for session_id in session_ids:
            self._last_seqs.pop(session_id, None)
            self._saved_keys.pop(session_id, None)
            self._titles.pop(session_id, None)
            for key in [key for key in self._open_turns if key[0] == session_id]:
                del self._open_turns[key]

    def follow(self, session_id: str, *, after: int = 0) -> AsyncGenerator[list[EventRecord], None]:
        """Batches of the session's records after seq ``after`` as they commit, whoever commits
        them (this store, or another daemon's on the same database), each once and in order;
        it never ends by itself (stop iterating, or cancel).

        Raises:
            StoreError: the database failed, or the store is closed.
        """
        return follow(self._wakeups, self._read_events, session_id, after)

    async def _read_events(self, session_id: str, after: int, limit: int) -> list[EventRecord]:
        return await self.read(session_id, after=after, limit=limit)

    async def aclose(self) -> None:
        """Let running writes finish (at most ``CLOSE_TIMEOUT_SECONDS``) and close the pool;
        idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._rehold is not None:
            self._rehold.cancel()
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT_SECONDS) as waited:
            if self._writes:
                await asyncio.wait(list(self._writes))
            await self._wakeups.aclose()
            await self._pool.close()
            if self._owner is not None and not self._owner.is_closed():
                await self._owner.close()  # the owner lock goes with it
        if waited.cancelled_caught:
            logger.error("the event store did not close within %.0f s: cutting its connections", CLOSE_TIMEOUT_SECONDS)
            self._pool.terminate()
            if self._owner is not None:
                self._owner.terminate()

    # --- the machinery --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the event store is closed")

    async def _read(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        self._check_open()
        try:
            async with self._pool.acquire() as conn:
                return await fn(conn)
        except driver_errors() as exc:
            raise _store_error(exc) from exc

    async def _write(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``fn`` with the writer's turn, in a task of its own that a cancelled caller leaves
        to finish."""
        self._check_open()
        if not self._writer:
            raise StoreError("this event store only reads: another daemon writes its database")
        task = asyncio.ensure_future(self._write_now(fn))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return await asyncio.shield(task)

    async def _write_now(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``fn`` on the writer's connection; while the connection is lost (it broke, or a new
        one cannot be had), again on a new one, ``len(RETRY_DELAYS) + 1`` tries in all."""
        async with self._write_lock:
            for delay in RETRY_DELAYS:
                try:
                    return await self._write_once(fn)
                except _ConnectionLost as lost:
                    logger.warning("the database connection was lost (%s); trying again in %.1f s", lost, delay)
                await anyio.sleep(delay)
            try:
                return await self._write_once(fn)
            except _ConnectionLost as lost:
                raise lost.error from lost.__cause__

    async def _write_once(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """``fn`` on the writer's connection.

        Raises:
            _ConnectionLost: the connection broke, or a new one could not be had (``error`` says so).
            StoreError: anything else the database refused; ``StoreLocked``: another daemon took it.
        """
        try:
            conn = await self._writer_connection()
        except StoreLocked:
            raise
        except StoreError as exc:
            raise _ConnectionLost(exc) from exc
        except driver_errors() as exc:  # the new connection broke at once
            raise _ConnectionLost(_store_error(exc)) from exc
        try:
            return await fn(conn)
        except driver_errors() as exc:
            if conn.is_closed():  # the server or the network cut it: all every fn does can be done again
                raise _ConnectionLost(_store_error(exc)) from exc
            raise _store_error(exc) from exc

    async def _writer_connection(self) -> asyncpg.Connection:
        """The writer's connection; a new one, that takes the owner lock again, if the last one
        broke (the lock went with it: whoever holds it now is the owner).

        Raises:
            StoreLocked: another daemon took the database meanwhile.
            StoreError: the database cannot be reached.
        """
        if self._owner is not None and not self._owner.is_closed():
            return self._owner
        self._owner = None
        # a commit may have landed unanswered, and another writer may have written since
        self._doubtful |= set(self._last_seqs)
        self._last_seqs.clear()
        self._saved_keys.clear()
        self._titles.clear()
        conn = await take_ownership(self._dsn, shared=self._shared)
        held = self._leases.forget()  # the sessions' locks went with the old connection
        try:
            # take every session held before again, at once: whoever took one meanwhile has it now
            got, lost = await self._leases.claim(conn, held)
            await self._leases.note(conn)  # then tell the others where this daemon is
        except BaseException:
            conn.terminate()
            self._leases.forget()
            self._leases.held.update(held)  # to be taken again on the next connection
            raise
        self._owner = conn
        conn.add_termination_listener(self._owner_lost)
        if held:
            logger.warning(
                "the database connection was lost and made again: %d session(s) held again, %d taken by another daemon",
                len(got),
                len(lost),
            )
        if lost and self.on_lost is not None:
            self.on_lost(lost)
        return conn

    def _owner_lost(self, conn: object) -> None:
        """The writer's connection broke (its locks went with it): a shared store connects again
        now, not at its next write, so that it holds its sessions again before another daemon's
        next use of one takes it (and learns at once of those it lost)."""
        if conn is not self._owner or self._closed or not self._shared or self._rehold is not None:
            return
        self._rehold = asyncio.ensure_future(self._hold_again())

    async def _hold_again(self) -> None:
        try:
            while not self._closed:
                try:
                    await self._write(_nothing)  # a write reconnects, and takes the sessions again
                    return
                except StoreLocked as exc:  # a daemon that owns the database alone took it
                    logger.error("the database connection was made again, but %s", exc.message)
                    return
                except StoreError:
                    await anyio.sleep(REHOLD_SECONDS)
        finally:
            self._rehold = None

    async def _append(
        self,
        conn: asyncpg.Connection,
        records: Sequence[EventRecord],
        docs: list[tuple[SessionKeys, str, str | None]],
    ) -> None:
        if self._shared:
            await self._claim(conn, [*(record.session_id for record in records), *(keys.id for keys, _, _ in docs)])
        records = await self._not_yet_committed(conn, records)
        known = {record.session_id: await self._last_seq_of(conn, record.session_id) for record in records}
        last_seqs = next_last_seqs(records, known.__getitem__)
        try:
            async with conn.transaction():
                if records:
                    await conn.execute(_INSERT_EVENTS, *_columns(records))
                    await conn.execute(NOTIFY, list(last_seqs))  # delivered at the commit
                for keys, text, title in docs:
                    await self._save_doc(conn, keys, text)
                    if self._titles.get(keys.id, "") != title:
                        await index.index_title(conn, keys.id, title)
                await index.index_records(conn, records, self._open_turns)
        except BaseException:
            # the batch comes again: forget what it told of running turns, and what the cache
            # knows of its sessions (its commit may have landed before the connection broke)
            failed = {record.session_id for record in records} | {keys.id for keys, _, _ in docs}
            for key in [key for key in self._open_turns if key[0] in failed]:
                del self._open_turns[key]
            self._doubtful |= failed
            for session_id in failed:
                self._last_seqs.pop(session_id, None)
                self._saved_keys.pop(session_id, None)
                self._titles.pop(session_id, None)
            raise
        self._last_seqs.update(last_seqs)
        self._saved_keys.update((keys.id, keys) for keys, _, _ in docs)
        self._titles.update((keys.id, title) for keys, _, title in docs)
        self._doubtful.difference_update(last_seqs)

    async def _last_seq_of(self, conn: asyncpg.Connection, session_id: str) -> int:
        cached = self._last_seqs.get(session_id)
        if cached is None:
            cached = self._last_seqs[session_id] = int(await conn.fetchval(_SELECT_LAST_SEQ, session_id))
        return cached

    async def _not_yet_committed(self, conn: asyncpg.Connection, records: Sequence[EventRecord]) -> list[EventRecord]:
        """``records`` less those a commit whose answer was lost (a broken connection) did write:
        for a session whose last write failed, its records up to its last committed seq that read
        back the same are dropped from the retry (anywhere else a seq already taken is refused)."""
        forgotten = {record.session_id for record in records if record.session_id in self._doubtful}
        if not forgotten:
            return list(records)
        for session_id in forgotten:
            await self._last_seq_of(conn, session_id)
        done = [r for r in records if r.session_id in forgotten and r.seq <= self._last_seqs[r.session_id]]
        if not done or not await self._stored_alike(conn, done):
            return list(records)
        drop = set(map(id, done))
        return [record for record in records if id(record) not in drop]

    async def _stored_alike(self, conn: asyncpg.Connection, records: list[EventRecord]) -> bool:
        rows = await conn.fetch(
            "SELECT e.session_id, e.seq, e.at, e.sender, e.turn, e.payload FROM events e"
            " JOIN unnest($1::text[], $2::bigint[]) AS k (session_id, seq)"
            " ON e.session_id = k.session_id AND e.seq = k.seq",
            [r.session_id for r in records],
            [r.seq for r in records],
        )
        return {EventRecord(*row) for row in rows} == set(records)

    async def _save_doc(self, conn: asyncpg.Connection, keys: SessionKeys, text: str) -> None:
        """Save a document; only its text when its indexed keys are as last committed (a turn's
        status changed): the row's index entries stay as they are."""
        if self._saved_keys.get(keys.id) == keys:
            done = await conn.execute("UPDATE sessions SET doc = $1 WHERE id = $2", text, keys.id)
            if done != "UPDATE 0":
                return
        await conn.execute(
            _UPSERT_SESSION, keys.id, keys.agent, keys.project, keys.cwd, keys.created_at, keys.archived_at, text
        )

    async def _delete(self, conn: asyncpg.Connection, session_id: str) -> bool:
        if self._shared:
            await self._claim(conn, [session_id])
        async with conn.transaction():
            existed = str(await conn.execute("DELETE FROM sessions WHERE id = $1", session_id)) != "DELETE 0"
            for statement in _DELETES:
                await conn.execute(statement, session_id)
        self._last_seqs.pop(session_id, None)
        self._saved_keys.pop(session_id, None)
        self._titles.pop(session_id, None)
        return existed


async def _nothing(conn: asyncpg.Connection) -> None:
    """A write that writes nothing: it only makes sure the writer's connection is there."""


class _ConnectionLost(Exception):
    """A write failed because the writer's connection is lost; ``error`` is what its caller hears."""

    def __init__(self, error: StoreError) -> None:
        super().__init__(str(error))
        self.error = error


def _columns(records: Sequence[EventRecord]) -> list[list[Any]]:
    """The records as six column arrays, bound to one ``INSERT … SELECT unnest(…)``: a statement
    and a round trip for the whole batch."""
    return [list(column) for column in zip(*records, strict=True)]


def _store_error(exc: BaseException) -> StoreError:
    if getattr(exc, "sqlstate", None) == DISK_FULL:
        return StoreFull(f"the event store is full ({exc}): free disk space")
    return StoreError(f"event store database error: {exc}")
