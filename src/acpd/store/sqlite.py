"""Store layer: ``SqliteEventStore``, the default ``EventStore``, on the stdlib ``sqlite3`` module.

It must not run a sqlite3 call on the event loop, interpret payloads (kept as the JSON text given,
never re-encoded), or import anything of acpd but the protocol layer and errors.

Durability: WAL journal with ``synchronous=NORMAL``. A commit is in the WAL file when ``append``
returns, so it survives ``kill -9`` of the daemon; only an OS crash or power loss can lose the
last commits (the database itself stays consistent).

Threads: each connection has one long-lived thread of its own, fed calls in order through a
queue (a call costs a queue put and a wake-up of the loop, not a worker thread hand-off each): a
call cancelled from the loop is left to finish in its thread (a stuck disk must not hold a
cancelled caller), and the next call waits its turn in the queue. A file database gets one writer
and one read-only reader connection, so reads go on while a write commits (WAL readers see the
last committed snapshot); ``:memory:`` uses one connection for both. The threads are not daemon
threads: ``aclose`` ends them after their last call, so a commit is never cut off by the exit.

Checkpoints: SQLite's own copy the WAL into the database inside the commit that fills it, every
1,000 pages (with two ``fsync``), on some prompt's clock. Here the reader's thread checkpoints, on
its own connection, beside the writer's commits, when the writer's queue is empty, at most once per
``CHECKPOINT_SECONDS`` (every ``CHASE_SECONDS`` while the WAL is long, so that it starts over);
SQLite's automatic one is the backstop of a writer that never idles (``WAL_AUTOCHECKPOINT_PAGES``):
a hot page written by many commits meanwhile is copied once.

Indexes: the record indexes (the tool-call audit, the turns, full-text search) follow the
committed records in transactions of their own (``_sqlite_index.Indexer``), not in the commits of
the records. The writer indexes once it has committed nothing for ``INDEX_DELAY_SECONDS``, a slice
at a time, each slice its own transaction, so a commit that comes meanwhile waits one slice at
most; a writer that never pauses indexes a slice after each call once ``INDEX_BEHIND_RECORDS``
wait, once the call's answer is handed to the event loop. A read of an index (audit, turns, usage,
search) indexes first, so it sees every committed record; the next open indexes what a crash left.

The store is its database's only writer: a file database is locked for the store's life (a
second store, in this process or another, is refused with ``StoreLocked``), and after first use
the store caches each session's last seq, so checking a batch's continuity costs no query.

Faults: a full database or disk raises ``StoreFull`` and rolls the transaction back, so the same
batch can be retried as is once space returns. ``aclose`` waits for a stuck call only so long.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar, TypeVarTuple

import anyio
import anyio.to_thread

from acpd.errors import StoreError, StoreFull
from acpd.protocol import jsonio
from acpd.protocol.events import EventRecord, utc_now
from acpd.store._audit import (
    COLUMNS,
    SEARCH_CANDIDATES,
    TURN_COLUMNS,
    AuditFilter,
    AuditRow,
    TurnRow,
    check_times,
    decode_audit_cursor,
    decode_search_cursor,
    encode_audit_cursor,
    encode_search_cursor,
    fts_query,
    search_words,
    turn_views,
    usage_report,
)
from acpd.store._lock import OwnerLock, acquire_owner_lock
from acpd.store._rules import check_page_limit, check_read_limit, decode_cursor, next_last_seqs, page_of
from acpd.store._sqlite_index import Indexer, index_backlog, index_stored_logs, transaction
from acpd.store.base import AuditPage, SessionDoc, SessionPage
from acpd.store.docs import EncodedDoc, SessionKeys, encoded_doc

logger = logging.getLogger(__name__)

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

MEMORY_PATH: Final = ":memory:"
BUSY_TIMEOUT_SECONDS: Final = 5.0
"""How long a connection waits for another one's lock (sqlite3 sets ``busy_timeout`` from it)."""
CLOSE_TIMEOUT_SECONDS: Final = 2.0
"""How long ``aclose`` waits for a running database call (a stuck disk) before leaving it behind."""

CHECKPOINT_SECONDS: Final = 1.0
"""The least interval between two checkpoints, handed to the reader's thread when the writer is idle."""
CHASE_FRAMES: Final = 1_000
"""A WAL this long at a checkpoint (4 MiB of 4 KiB pages, where SQLite's own checkpoints would
start) is checkpointed again ``CHASE_SECONDS`` later instead, until it starts over."""
CHASE_SECONDS: Final = 0.05
"""(Counted from the end of the last checkpoint.) SQLite starts the WAL over from its beginning
only at a write that finds every frame of it copied, and a checkpoint copies the frames there when
it starts: after a long turn, its checkpoint (tens of ms for 40 MiB) ended with the writer's newer
frames uncopied, the WAL grew on from its end for a second more, and reached
``WAL_AUTOCHECKPOINT_PAGES``, so SQLite copied the rest inside some prompt's commit (20 to 60 ms
more for that prompt). Checkpoints in quick succession each copy what came since the last, in a
few ms, and one soon finds all of it copied."""
WAL_AUTOCHECKPOINT_PAGES: Final = 10_000
"""SQLite's automatic checkpoint, inside a commit, once the WAL holds this many pages (40 MiB of
4 KiB pages): only a writer busy for long without a pause reaches it."""

MIGRATIONS: Final[tuple[tuple[str | Callable[[sqlite3.Connection], None], ...], ...]] = (
    # 1: the initial schema. Events keep their rowid on purpose: WITHOUT ROWID stores whole rows
    # in the key b-tree, which SQLite advises only for rows under ~1/20 of a page; tool outputs
    # are often larger, and benchmarks/store_append.py measured rowid appends faster from ~600 B.
    (
        """CREATE TABLE sessions (
            id TEXT PRIMARY KEY NOT NULL,
            agent TEXT NOT NULL,
            project TEXT,
            cwd TEXT NOT NULL,
            created_at TEXT NOT NULL,
            archived_at TEXT,
            doc TEXT NOT NULL
        )""",
        "CREATE INDEX sessions_by_created ON sessions (created_at, id)",
        "CREATE INDEX sessions_by_agent ON sessions (agent, created_at, id)",
        "CREATE INDEX sessions_by_project ON sessions (project, created_at, id)",
        "CREATE INDEX sessions_by_cwd ON sessions (cwd, created_at, id)",
        "CREATE INDEX sessions_by_archived ON sessions (archived_at)",
        """CREATE TABLE events (
            session_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            at TEXT NOT NULL,
            sender TEXT NOT NULL,
            turn INTEGER NOT NULL,
            payload TEXT NOT NULL,
            PRIMARY KEY (session_id, seq)
        )""",
        """CREATE TABLE idempotency (
            session_id TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (session_id, key)
        ) WITHOUT ROWID""",
    ),
    # 2: the tool-call audit index, the turns and full-text search, kept in the transactions that
    # commit the records, and built from the logs and documents already stored
    (
        """CREATE TABLE tool_calls (
            session_id TEXT NOT NULL,
            tool_call_id TEXT NOT NULL,
            agent TEXT,
            turn INTEGER NOT NULL,
            started_at TEXT NOT NULL,
            kind TEXT,
            title TEXT,
            locations TEXT,
            status TEXT,
            asked INTEGER NOT NULL DEFAULT 0,
            request_id TEXT,
            options TEXT,
            reply TEXT,
            outcome TEXT,
            decided_by TEXT,
            ended_at TEXT,
            UNIQUE (session_id, tool_call_id)
        )""",
        "CREATE INDEX tool_calls_by_started ON tool_calls (started_at)",
        "CREATE INDEX tool_calls_by_request ON tool_calls (session_id, request_id)",
        """CREATE TABLE turns (
            session_id TEXT NOT NULL,
            turn INTEGER NOT NULL,
            agent TEXT,
            model TEXT,
            started_at TEXT NOT NULL,
            first_seq INTEGER NOT NULL,
            preview TEXT,
            steps INTEGER NOT NULL DEFAULT 0,
            cost_total REAL,
            currency TEXT,
            ended_at TEXT,
            last_seq INTEGER,
            stop_reason TEXT,
            error TEXT,
            input_tokens INTEGER,
            output_tokens INTEGER,
            cached_tokens INTEGER,
            thought_tokens INTEGER,
            total_tokens INTEGER,
            PRIMARY KEY (session_id, turn)
        )""",
        "CREATE INDEX turns_by_started ON turns (started_at)",
        "CREATE VIRTUAL TABLE search USING fts5(session_id UNINDEXED, turn UNINDEXED, kind UNINDEXED, body)",
        # where each session's title sits in ``search``: a changed title replaces its row by rowid
        "CREATE TABLE search_titles (session_id TEXT PRIMARY KEY NOT NULL, search_rowid INTEGER NOT NULL)",
        lambda conn: index_stored_logs(conn),
    ),
    # 3: ended turns whose text is not in ``search`` yet (it is indexed in batches)
    ("CREATE TABLE search_backlog (session_id TEXT NOT NULL, turn INTEGER NOT NULL, PRIMARY KEY (session_id, turn))",),
    # 4: the turns keep their rows in their primary key's b-tree (WITHOUT ROWID): small rows,
    # looked up by that key only (a rowid table is a b-tree of rows and another of its key); and
    # the indexes are kept in transactions of their own (``_Indexer``)
    (
        """CREATE TABLE turns_4 (
            session_id TEXT NOT NULL,
            turn INTEGER NOT NULL,
            agent TEXT,
            model TEXT,
            started_at TEXT NOT NULL,
            first_seq INTEGER NOT NULL,
            preview TEXT,
            steps INTEGER NOT NULL DEFAULT 0,
            cost_total REAL,
            currency TEXT,
            ended_at TEXT,
            last_seq INTEGER,
            stop_reason TEXT,
            error TEXT,
            input_tokens INTEGER,
            output_tokens INTEGER,
            cached_tokens INTEGER,
            thought_tokens INTEGER,
            total_tokens INTEGER,
            PRIMARY KEY (session_id, turn)
        ) WITHOUT ROWID""",
        "INSERT INTO turns_4 SELECT * FROM turns",
        "DROP TABLE turns",
        "ALTER TABLE turns_4 RENAME TO turns",
        "CREATE INDEX turns_by_started ON turns (started_at)",
        # the texts a crash left in the backlog, indexed before it goes: from here on the indexes
        # follow the records in transactions of their own, up to ``index_state.through``
        lambda conn: index_backlog(conn),
        "DROP TABLE search_backlog",
        "CREATE TABLE index_state (id INTEGER PRIMARY KEY CHECK (id = 0), through INTEGER NOT NULL)",
        "INSERT INTO index_state VALUES (0, coalesce((SELECT max(rowid) FROM events), 0))",
    ),
)
"""Schema migrations in order; ``PRAGMA user_version`` counts how many a database has had.
Append new ones; never edit one that has shipped. A step is SQL, or a function of the connection."""

SCHEMA_VERSION: Final = len(MIGRATIONS)

_INSERT_EVENT: Final = "INSERT INTO events (session_id, seq, at, sender, turn, payload) VALUES (?, ?, ?, ?, ?, ?)"
ROWS_PER_INSERT: Final = 64
"""Rows one INSERT statement carries in a batch: a statement per row cost ~0.7 us more CPU a row,
and a release of the GIL for each (the event loop's thread waits for it back)."""
_INSERT_EVENTS: Final = _INSERT_EVENT + ", (?, ?, ?, ?, ?, ?)" * (ROWS_PER_INSERT - 1)
_SELECT_EVENTS: Final = (
    "SELECT session_id, seq, at, sender, turn, payload FROM events"
    " WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?"
)
_SELECT_LAST_SEQ: Final = "SELECT seq FROM events WHERE session_id = ? ORDER BY seq DESC LIMIT 1"
_UPSERT_SESSION: Final = (
    "INSERT INTO sessions (id, agent, project, cwd, created_at, archived_at, doc) VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET agent = excluded.agent, project = excluded.project, cwd = excluded.cwd,"
    " created_at = excluded.created_at, archived_at = excluded.archived_at, doc = excluded.doc"
)
_UPDATE_DOC: Final = "UPDATE sessions SET doc = ? WHERE id = ?"
_UPSERT_IDEMPOTENT: Final = (
    "INSERT INTO idempotency (session_id, key, value, created_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (session_id, key) DO UPDATE SET value = excluded.value, created_at = excluded.created_at"
)


class SqliteEventStore:
    """The default ``EventStore``: session documents and event logs in one SQLite database.

    Build it with ``await SqliteEventStore.open(path)`` and close it with ``aclose()`` (or use it
    as an async context manager).
    """

    def __init__(self, writer: sqlite3.Connection, reader: sqlite3.Connection, lock: OwnerLock | None = None) -> None:
        """Private: use ``open``. ``reader`` may be ``writer`` (one connection for ``:memory:``)."""
        self._lock = lock
        self._indexer = Indexer()  # the writer's
        self._writer = _Worker(writer, "acpd-store-writer", idle=self._on_idle, after=self._after_call)
        self._reader = self._writer if reader is writer else _Worker(reader, "acpd-store-reader")
        self._checkpoints = None if reader is writer else _Checkpoints(self._reader)
        self._last_seqs: dict[str, int] = {}  # touched only by the writer thread
        self._saved_keys: dict[str, SessionKeys] = {}  # each session's keys as last committed; the writer's too
        self._closed = False

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> SqliteEventStore:
        """Open (creating it and its parent directories if needed) and migrate the database.

        Args:
            path: a file path, or ``":memory:"`` for a private database that ends with the store.

        Raises:
            StoreLocked: another store (another acpd) has the file open.
            StoreError: the database cannot be opened or migrated, or its schema is newer than
                this version of acpd knows.
        """
        return cls(*await anyio.to_thread.run_sync(_open_connections, os.fspath(path)))

    @classmethod
    def begin_open(cls, path: str | os.PathLike[str]) -> StoreOpening:
        """Begin ``open`` now, in a thread of its own, with no event loop yet: a daemon begins it
        before importing its modules, so that the disk's part (a new database's files and schema)
        overlaps with the imports. ``await opening.store()`` finishes it, raising what ``open``
        would."""
        return StoreOpening(os.fspath(path))

    async def note_owner(self, facts: dict[str, str]) -> None:
        """Tell a process this store refuses who owns the file (e.g. the daemon's ``url``)."""
        if self._lock is not None:
            lock = self._lock
            await self._writer.call(lambda _conn: lock.describe(facts))  # a thread already running

    async def __aenter__(self) -> SqliteEventStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

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
        docs = [encoded_doc(doc) for doc in sessions]
        if records or docs:
            await self._write(self._append_sync, records, docs)

    async def read(self, session_id: str, *, after: int = 0, limit: int = 1000) -> list[EventRecord]:
        """Records with ``seq > after`` in order, at most ``limit``.

        Raises:
            InvalidInput: ``limit`` is negative.
            StoreError: the database failed, or the store is closed.
        """
        check_read_limit(limit)
        return await self._read(_read_sync, session_id, after, limit)

    async def last_seq(self, session_id: str) -> int:
        """The highest committed seq, 0 for an empty or unknown session."""
        return await self._read(_last_seq_sync, session_id)

    async def save_session(self, doc: SessionDoc) -> None:
        """Insert or replace the session document.

        Raises:
            InvalidInput: an indexed key is missing or mistyped, or the document is not JSON.
            StoreError: the database failed, or the store is closed.
        """
        await self.append_many((), sessions=(doc,))

    async def get_session(self, session_id: str) -> SessionDoc | None:
        text = await self._read(_get_session_sync, session_id)
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
        sql, params = _list_query(after, project=project, agent=agent, archived=archived, cwd=cwd)
        rows = await self._read(_list_sync, sql, [*params, limit + 1])
        return page_of(rows, limit)

    async def delete_session(self, session_id: str) -> bool:
        """Delete the session, its events and idempotency records in one transaction; False if it
        did not exist."""
        return await self._write(self._delete_sync, session_id)

    async def get_idempotent(self, session_id: str, key: str) -> str | None:
        """The stored answer for an Idempotency-Key, if any."""
        return await self._read(_get_idempotent_sync, session_id, key)

    async def put_idempotent(self, session_id: str, key: str, value: str) -> None:
        """Store (or replace) the answer for an Idempotency-Key."""
        # the clock is read on the loop: utc_now caches its text and is not thread-safe
        await self._write(_put_idempotent_sync, session_id, key, value, utc_now())

    async def tool_calls(self, wanted: AuditFilter, *, limit: int = 100, cursor: str | None = None) -> AuditPage:
        """The audit index's matching rows, oldest first, ``limit`` a page.

        Raises:
            InvalidInput: a malformed ``cursor``, or ``limit`` below 1.
            StoreError: the database failed, or the store is closed.
        """
        check_page_limit(limit)
        after = decode_audit_cursor(cursor) if cursor is not None else 0
        await self._indexed()
        rows = await self._read(_tool_calls_sync, wanted, after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return AuditPage([row.view() for _, row in rows], encode_audit_cursor(rows[-1][0]) if more else None)

    async def tool_call_stats(self, wanted: AuditFilter) -> dict[str, dict[str, int]]:
        """Counts of the matching tool calls by kind, status, agent, outcome and who decided."""
        await self._indexed()
        return await self._read(_tool_call_stats_sync, wanted)

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
        """Sessions whose title, a prompt or a reply has every word of ``q`` (FTS5, ranked by bm25).

        Raises:
            InvalidInput: ``q`` has no word, a malformed ``cursor``, or ``limit`` below 1.
            StoreError: the database failed, or the store is closed.
        """
        check_page_limit(limit)
        offset = decode_search_cursor(cursor) if cursor is not None else 0
        filters = {"project": project, "agent": agent, "archived": archived, "cwd": cwd}
        query = fts_query(search_words(q))
        await self._indexed()
        found = await self._read(_search_sync, query, filters)
        items = [{**jsonio.loads(text), "match": match} for _, text, match in found[offset : offset + limit]]
        return SessionPage(items, encode_search_cursor(offset + limit) if len(found) > offset + limit else None)

    async def compact(self) -> int:
        """``VACUUM``: rewrite the database without the pages deleted sessions freed (SQLite keeps
        them for reuse otherwise); how many bytes the file shrank by. Writes wait meanwhile."""
        return await self._write(self._compact_indexed)

    async def turns(self, session_id: str) -> list[dict[str, Any]]:
        """The session's turns in order, each with its own usage and cost."""
        await self._indexed()
        return turn_views(await self._read(_turns_sync, session_id, None, None))

    async def usage(self, group_by: str, *, since: str | None = None, until: str | None = None) -> dict[str, Any]:
        """The usage of the turns started in [since, until), added up by ``group_by``.

        Raises:
            InvalidInput: another ``group_by``, or a malformed time.
        """
        check_times(since, until)
        await self._indexed()
        return usage_report(turn_views(await self._read(_turns_sync, None, since, until)), group_by)

    async def _indexed(self) -> None:
        """Index every committed record before a read of the indexes (what a full disk allows)."""
        await self._write(self._indexer.catch_up)

    def _on_idle(self, conn: sqlite3.Connection) -> float | None:
        """The writer has nothing queued: index a slice of records, and have the reader
        checkpoint, when due; and in how many seconds to index (the writer waits so long for a
        call, then comes back)."""
        if self._indexer.due():
            self._indexer.step(conn)  # (it never raises: this thread must go on serving)
        if self._checkpoints is not None:
            self._checkpoints.when_due()
        return self._indexer.due_in()

    def _compact_indexed(self, conn: sqlite3.Connection) -> int:
        self._indexer.catch_up(conn)  # a VACUUM may renumber rowids: the indexes go as far first
        shrunk = _compact_sync(conn)
        self._indexer.rebase(conn)
        return shrunk

    def _close_writer(self, conn: sqlite3.Connection) -> None:
        self._indexer.catch_up(conn)
        _close_writer(conn)

    async def aclose(self) -> None:
        """Wait for running calls (at most ``CLOSE_TIMEOUT_SECONDS``), close the connections and
        let the file's lock go; idempotent."""
        if self._closed:
            return
        self._closed = True
        # Shielded: closing from a cancelled scope (a lifespan's finally) must still close.
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT_SECONDS) as waited:
            if self._reader is not self._writer:
                await self._reader.close(_close_reader)
            await self._writer.close(self._close_writer)
        if waited.cancelled_caught:
            # A call stuck in the disk must not hold the daemon's exit; the lock goes with the process.
            logger.error("the event store did not close within %.0f s: a database call is stuck", CLOSE_TIMEOUT_SECONDS)
        elif self._lock is not None:
            self._lock.release()

    async def _write(self, fn: Callable[[sqlite3.Connection, *Ts], T], *args: *Ts) -> T:
        self._check_open()
        return await self._writer.call(fn, *args)

    async def _read(self, fn: Callable[[sqlite3.Connection, *Ts], T], *args: *Ts) -> T:
        self._check_open()
        return await self._reader.call(fn, *args)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the event store is closed")

    def _append_sync(self, conn: sqlite3.Connection, records: Sequence[EventRecord], docs: list[EncodedDoc]) -> None:
        def last_seq(session_id: str) -> int:
            cached = self._last_seqs.get(session_id)
            if cached is None:
                cached = self._last_seqs[session_id] = _last_seq_sync(conn, session_id)
            return cached

        with transaction(conn):
            last_seqs = next_last_seqs(records, last_seq)
            if records:
                _insert_events(conn, records)
            for doc in docs:
                self._save_doc_sync(conn, doc.keys, doc.text)
        # each document takes effect from the first record of its session in this commit
        from_seqs = [last_seq(doc.keys.id) + 1 for doc in docs]  # (the cache still has the seqs before it)
        self._last_seqs.update(last_seqs)
        self._indexer.committed(records, list(zip(docs, from_seqs, strict=True)))
        self._saved_keys.update((doc.keys.id, doc.keys) for doc in docs)

    def _after_call(self, conn: sqlite3.Connection) -> None:
        """After each of the writer's calls, once its answer is handed to the event loop: a writer
        that never idles still indexes, a slice per call while too many records wait. (A slice run
        inside the commit held back its answer: after a burst, every prompt's round trip took one
        more slice for as long as the indexes took to catch up.)"""
        if self._indexer.behind():
            self._indexer.step(conn)  # (it never raises: this thread must go on serving)

    def _save_doc_sync(self, conn: sqlite3.Connection, keys: SessionKeys, text: str) -> None:
        """Save a document; only its text when its indexed keys are as last committed (the common
        case: a turn's status changes). An upsert rewrites the row's entry in each of the five
        indexes, five more pages in the WAL at every commit, and checkpoints as many times more."""
        if self._saved_keys.get(keys.id) == keys and conn.execute(_UPDATE_DOC, (text, keys.id)).rowcount:
            return
        _save_session_sync(conn, keys, text)

    def _delete_sync(self, conn: sqlite3.Connection, session_id: str) -> bool:
        with transaction(conn):
            existed = conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount > 0
            conn.execute("DELETE FROM events WHERE session_id = ?", (session_id,))
            conn.execute("DELETE FROM idempotency WHERE session_id = ?", (session_id,))
            conn.execute("DELETE FROM tool_calls WHERE session_id = ?", (session_id,))
            conn.execute("DELETE FROM turns WHERE session_id = ?", (session_id,))
            conn.execute("DELETE FROM search WHERE session_id = ?", (session_id,))
            conn.execute("DELETE FROM search_titles WHERE session_id = ?", (session_id,))
            self._indexer.drop(conn, session_id)
        self._last_seqs.pop(session_id, None)
        self._saved_keys.pop(session_id, None)
        return existed


_Call = (
    tuple[Callable[..., object], tuple[object, ...], "asyncio.Future[object]", asyncio.AbstractEventLoop]
    | tuple[Callable[[sqlite3.Connection], None], tuple[()], None, None]
)
"""A function of the connection, its arguments, and the future and loop its caller awaits (None
and None: nobody awaits it)."""


class StoreOpening:
    """A ``SqliteEventStore`` being opened in a thread of its own (``SqliteEventStore.begin_open``)."""

    def __init__(self, path: str) -> None:
        self._done = threading.Event()
        self._opened: tuple[sqlite3.Connection, sqlite3.Connection, OwnerLock | None] | None = None
        self._error: BaseException | None = None
        # A daemon thread: a start that fails before awaiting the store must not wait for it.
        threading.Thread(target=self._open, args=(path,), name="acpd-store-open", daemon=True).start()

    def _open(self, path: str) -> None:
        try:
            self._opened = _open_connections(path)
        except BaseException as exc:  # handed to whoever awaits the store
            self._error = exc
        finally:
            self._done.set()

    async def store(self) -> SqliteEventStore:
        """The opened store (once: the store is the caller's to close).

        Raises:
            StoreLocked, StoreError: as ``SqliteEventStore.open``.
        """
        if not self._done.is_set():
            await anyio.to_thread.run_sync(self._done.wait)
        if self._error is not None:
            raise self._error
        assert self._opened is not None
        opened, self._opened = self._opened, None
        return SqliteEventStore(*opened)


class _Worker:
    """One connection and the one thread that uses it, fed calls in order through a queue.

    A caller awaits a future the thread settles through the loop (``call_soon_threadsafe``); a
    cancelled caller abandons its future, and the call still runs to its end in the thread. A call
    may also be submitted from any thread with nobody awaiting it (``submit``).
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        name: str,
        *,
        idle: Callable[[sqlite3.Connection], float | None] | None = None,
        after: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        """``after`` runs in the thread after every call, and ``idle`` after a call that leaves the
        queue empty (the call's answer is handed to the event loop by then, for both). ``idle``
        returns in how many seconds it wants to run again if no call comes meanwhile (None: not
        before the next call)."""
        self._conn = conn
        self._idle = idle
        self._after = after
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        # Not a daemon thread: the interpreter's exit waits for the commit in progress.
        self._thread = threading.Thread(target=self._serve, name=name, daemon=False)
        self._thread.start()

    async def call(self, fn: Callable[[sqlite3.Connection, *Ts], T], *args: *Ts) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[object] = loop.create_future()
        self._calls.put((fn, args, future, loop))
        return await future  # type: ignore[return-value]  # the thread settles it with fn's result

    def submit(self, fn: Callable[[sqlite3.Connection], None]) -> None:
        """Queue ``fn`` and wait for nothing (from any thread); it must handle its own failures."""
        self._calls.put((fn, (), None, None))

    async def close(self, final: Callable[[sqlite3.Connection], None]) -> None:
        """Run ``final`` (closing the connection) after the queued calls, then end the thread."""
        self._idle = self._after = None  # nothing runs after final
        try:
            await self.call(final)
        finally:
            self._calls.put(None)

    def _serve(self) -> None:
        again: float | None = None  # when the idle work runs if no call comes first
        while True:
            try:
                call = self._calls.get() if again is None else self._calls.get(timeout=max(again, 0.0))
            except queue.Empty:
                again = self._run_idle()
                continue
            if call is None:
                return
            fn, args, future, loop = call
            result: object = None
            error: Exception | None = None
            try:
                result = fn(self._conn, *args)
            except sqlite3.Error as exc:
                error = _store_error(exc)
                error.__cause__ = exc
            except Exception as exc:  # handed to the caller, whose bug it is
                error = exc
            if future is None or loop is None:  # submitted: nobody waits
                if error is not None:
                    logger.error("the event store's %s failed", getattr(fn, "__name__", fn), exc_info=error)
            else:
                with suppress(RuntimeError):  # the loop is closed: nobody waits any more
                    loop.call_soon_threadsafe(_settle, future, result, error)
            self._run_after()
            if self._calls.empty():
                again = self._run_idle()

    def _run_after(self) -> None:
        after = self._after  # read once: ``close`` clears it from the loop's thread
        if after is None:
            return
        try:
            after(self._conn)
        except Exception:  # as for the idle work: the thread every call waits on goes on
            logger.exception("the event store's work after a call failed")

    def _run_idle(self) -> float | None:
        idle = self._idle  # read once: ``close`` clears it from the loop's thread
        if idle is None:
            return None
        try:
            return idle(self._conn)
        except Exception:  # a bug in the idle work must not end the thread every call waits on
            logger.exception("the event store's idle work failed")
            return None


class _Checkpoints:
    """The WAL's checkpoints, due in the writer's idle moments at most once per
    ``CHECKPOINT_SECONDS`` (``CHASE_SECONDS`` while the WAL is long), and run by the reader's
    thread on its connection: a checkpoint copies pages and syncs the database file (milliseconds,
    more on a slow disk), and a commit queued meanwhile on the writer's thread waited for it (a
    fresh daemon's first prompt met one). SQLite lets a checkpoint from another connection run
    beside the writer's commits."""

    def __init__(self, reader: _Worker) -> None:
        self._reader = reader
        self._last = time.monotonic()  # when the last checkpoint ended (or was handed over)
        # both set by the reader's thread as a checkpoint ends, read by the writer's
        self._long = False  # the WAL was long at the last checkpoint
        self._running = False  # one is handed over and not ended: none more piles up behind it

    def when_due(self) -> None:
        """In the writer's thread: hand the reader a checkpoint, if one is due."""
        now = time.monotonic()
        if self._running or now - self._last < (CHASE_SECONDS if self._long else CHECKPOINT_SECONDS):
            return
        self._last, self._running = now, True
        self._reader.submit(self._checkpoint)

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            self._long = self.run(conn) >= CHASE_FRAMES
        finally:
            self._last, self._running = time.monotonic(), False

    @staticmethod
    def run(conn: sqlite3.Connection) -> int:
        """In the reader's thread: copy the WAL into the database, what no reader still needs;
        how many frames the WAL holds (0 when the checkpoint failed)."""
        try:
            # PASSIVE: waits for nobody, neither readers nor the writer; the rest goes next time
            frames: int = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
        except sqlite3.ProgrammingError:
            return 0  # the store closed meanwhile
        except sqlite3.Error as exc:  # a full disk: the WAL keeps the commits, the next one tries again
            logger.warning("checkpointing the event store's WAL failed: %s", exc)
            return 0
        return frames


def _settle(future: asyncio.Future[object], result: object, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled and left the call to finish here
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _store_error(exc: sqlite3.Error) -> StoreError:
    # The primary result code is the low byte of an extended one (SQLITE_FULL is 13).
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_FULL:
        return StoreFull(f"the event store is full ({exc}): free disk space")
    return StoreError(f"event store database error: {exc}")


def _insert_events(conn: sqlite3.Connection, records: Sequence[EventRecord]) -> None:
    """Insert the records, ``ROWS_PER_INSERT`` to a statement; a record is a tuple of the columns in
    their order, so it is bound as it is."""
    whole = len(records) - len(records) % ROWS_PER_INSERT
    if whole:
        groups = (records[start : start + ROWS_PER_INSERT] for start in range(0, whole, ROWS_PER_INSERT))
        conn.executemany(_INSERT_EVENTS, [tuple(itertools.chain.from_iterable(group)) for group in groups])
    if whole < len(records):
        conn.executemany(_INSERT_EVENT, records[whole:])


def _open_connections(path: str) -> tuple[sqlite3.Connection, sqlite3.Connection, OwnerLock | None]:
    if path == MEMORY_PATH:
        conn = _connect(path, _migrate)
        return conn, conn, None
    try:
        Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = acquire_owner_lock(path)
    except OSError as exc:
        raise StoreError(f"cannot create the directory or lock of the event store {path!r}: {exc}") from exc
    try:
        _make_private(path)
    except OSError as exc:
        lock.release()
        raise StoreError(f"cannot open the event store {path!r}: {exc}") from exc
    try:
        writer = _connect(path, _set_up_writer)
        try:
            reader = _connect(path, _set_up_reader)
        except BaseException:
            writer.close()
            raise
    except BaseException:
        lock.release()
        raise
    return writer, reader, lock


PRIVATE_MODE: Final = 0o600
SIDE_FILES: Final = ("-wal", "-shm", "-journal")


def _make_private(path: str) -> None:
    """Create the database file 0600 (whatever the umask) before SQLite opens it, and make files
    an older acpd left readable private: SQLite gives the WAL and shared-memory files it creates
    the database file's mode."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_MODE))
    for name in (path, *(path + suffix for suffix in SIDE_FILES)):
        with suppress(FileNotFoundError):
            os.chmod(name, PRIVATE_MODE)


def _connect(path: str, set_up: Callable[[sqlite3.Connection], None]) -> sqlite3.Connection:
    try:
        # isolation_level=None: no implicit transactions; transaction() says where they are.
        # check_same_thread=False: worker threads take turns, serialized by the store's limiters.
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the event store {path!r}: {exc}") from exc
    try:
        set_up(conn)
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"cannot open the event store {path!r}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _set_up_writer(conn: sqlite3.Connection) -> None:
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode != "wal":
        logger.warning("SQLite refused WAL (journal_mode=%s): reads will wait for writes", mode)
    # NORMAL in WAL mode: a commit survives the process dying, only an OS crash can undo it.
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")  # our constant
    _migrate(conn)
    Indexer().catch_up(conn)  # what a crash left unindexed


def _set_up_reader(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA query_only = ON")


def _migrate(conn: sqlite3.Connection) -> None:
    """Apply the pending migrations in one transaction, or none.

    The version is read inside the write transaction, so two processes opening one new file
    cannot both migrate it.
    """
    with transaction(conn):
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the event store has schema version {version}, newer than the {SCHEMA_VERSION} this acpd "
                "knows: upgrade acpd, or point it at another database (--db)",
                data={"schemaVersion": version, "supported": SCHEMA_VERSION},
            )
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                if isinstance(statement, str):
                    conn.execute(statement)
                else:
                    statement(conn)
        if version < SCHEMA_VERSION:
            # PRAGMA takes no parameters; SCHEMA_VERSION is our own int.
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            logger.info("event store migrated from schema version %d to %d", version, SCHEMA_VERSION)


def _close_reader(conn: sqlite3.Connection) -> None:
    conn.close()


def _close_writer(conn: sqlite3.Connection) -> None:
    try:
        # Keeps the query planner's statistics fresh, as SQLite recommends before closing.
        conn.execute("PRAGMA optimize")
    except sqlite3.Error as exc:  # a full disk, typically: a fact worth a line, not a traceback
        logger.warning("PRAGMA optimize failed while closing the event store: %s", exc)
    conn.close()


def _list_query(
    after: tuple[str, str] | None,
    *,
    project: str | None,
    agent: str | None,
    archived: bool | None,
    cwd: str | None,
    among: str | None = None,
) -> tuple[str, list[object]]:
    """The listing's query; ``among``, a JSON array of ids, keeps only those sessions."""
    clauses: list[str] = []
    params: list[object] = []
    if among is not None:
        clauses.append("id IN (SELECT value FROM json_each(?))")
        params.append(among)
    if after is not None:
        clauses.append("(created_at, id) < (?, ?)")
        params.extend(after)
    for column, value in (("project", project), ("agent", agent), ("cwd", cwd)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if archived is not None:
        clauses.append("archived_at IS NOT NULL" if archived else "archived_at IS NULL")
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = (
        "SELECT id, agent, project, cwd, created_at, archived_at, doc FROM sessions"
        f"{where} ORDER BY created_at DESC, id DESC LIMIT ?"
    )
    return sql, params


def _read_sync(conn: sqlite3.Connection, session_id: str, after: int, limit: int) -> list[EventRecord]:
    rows = conn.execute(_SELECT_EVENTS, (session_id, after, limit)).fetchall()
    return [EventRecord(*row) for row in rows]


def _last_seq_sync(conn: sqlite3.Connection, session_id: str) -> int:
    row = conn.execute(_SELECT_LAST_SEQ, (session_id,)).fetchone()
    return 0 if row is None else int(row[0])


def _save_session_sync(conn: sqlite3.Connection, keys: SessionKeys, text: str) -> None:
    conn.execute(
        _UPSERT_SESSION, (keys.id, keys.agent, keys.project, keys.cwd, keys.created_at, keys.archived_at, text)
    )


def _get_session_sync(conn: sqlite3.Connection, session_id: str) -> str | None:
    row = conn.execute("SELECT doc FROM sessions WHERE id = ?", (session_id,)).fetchone()
    return None if row is None else str(row[0])


def _list_sync(conn: sqlite3.Connection, sql: str, params: list[object]) -> list[tuple[SessionKeys, str]]:
    return [(SessionKeys(*row[:6]), row[6]) for row in conn.execute(sql, params)]


def _get_idempotent_sync(conn: sqlite3.Connection, session_id: str, key: str) -> str | None:
    row = conn.execute("SELECT value FROM idempotency WHERE session_id = ? AND key = ?", (session_id, key)).fetchone()
    return None if row is None else str(row[0])


def _put_idempotent_sync(conn: sqlite3.Connection, session_id: str, key: str, value: str, at: str) -> None:
    conn.execute(_UPSERT_IDEMPOTENT, (session_id, key, value, at))


# --- the tool-call audit index ---------------------------------------------------------------

_SELECT_TOOL_CALLS: Final = (
    "SELECT t.rowid, " + ", ".join(f"t.{name}" for name in COLUMNS if name != "project") + ", s.project"
    " FROM tool_calls t LEFT JOIN sessions s ON s.id = t.session_id"
)
_AUDIT_FILTERS: Final = (
    ("session", "t.session_id = ?"),
    ("agent", "t.agent = ?"),
    ("project", "s.project = ?"),
    ("kind", "t.kind = ?"),
    ("status", "t.status = ?"),
    ("decided_by", "t.decided_by = ?"),
    ("since", "t.started_at >= ?"),
    ("until", "t.started_at < ?"),
)
_SELECT_TURNS: Final = (
    "SELECT " + ", ".join(f"t.{name}" for name in TURN_COLUMNS if name != "project") + ", s.project"
    " FROM turns t LEFT JOIN sessions s ON s.id = t.session_id"
)


def _turns_sync(conn: sqlite3.Connection, session: str | None, since: str | None, until: str | None) -> list[TurnRow]:
    clauses, params = [], []
    for value, clause in ((session, "t.session_id = ?"), (since, "t.started_at >= ?"), (until, "t.started_at < ?")):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    rows = conn.execute(_SELECT_TURNS + where + " ORDER BY t.session_id, t.turn", params).fetchall()
    return [TurnRow(*row) for row in rows]


def _audit_where(wanted: AuditFilter, after: int) -> tuple[str, list[object]]:
    clauses: list[str] = ["t.rowid > ?"]
    params: list[object] = [after]
    for name, clause in _AUDIT_FILTERS:
        value = getattr(wanted, name)
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return " WHERE " + " AND ".join(clauses), params


def _tool_calls_sync(
    conn: sqlite3.Connection, wanted: AuditFilter, after: int, limit: int
) -> list[tuple[int, AuditRow]]:
    where, params = _audit_where(wanted, after)
    rows = conn.execute(_SELECT_TOOL_CALLS + where + " ORDER BY t.rowid LIMIT ?", [*params, limit]).fetchall()
    return [(row[0], AuditRow(*row[1:])) for row in rows]


# --- search -------------------------------------------------------------------------------------

_SEARCH: Final = (
    "SELECT session_id, kind, snippet(search, 3, '[', ']', '…', 12) FROM search WHERE search MATCH ?"
    " ORDER BY rank LIMIT ?"
)


def _search_sync(
    conn: sqlite3.Connection, query: str, filters: dict[str, Any]
) -> list[tuple[SessionKeys, str, dict[str, str]]]:
    """The matching sessions, best first, with their best text's kind and snippet."""
    best: dict[str, dict[str, str]] = {}
    for session_id, kind, snippet in conn.execute(_SEARCH, (query, SEARCH_CANDIDATES)):
        best.setdefault(session_id, {"kind": kind, "snippet": " ".join(snippet.split())})
    if not best:
        return []
    sql, params = _list_query(None, among=jsonio.dumps_str(list(best)), **filters)
    rows = conn.execute(sql, [*params, len(best)]).fetchall()
    order = {session_id: index for index, session_id in enumerate(best)}
    found = sorted(((SessionKeys(*row[:6]), row[6]) for row in rows), key=lambda item: order[item[0].id])
    return [(keys, text, best[keys.id]) for keys, text in found]


def quick_check(path: str) -> list[str]:
    """What SQLite's ``PRAGMA quick_check`` finds wrong in the database at ``path`` ([] when it is
    intact), for ``acpd doctor``. Opened read-only, with no lock and no migration: a running
    daemon's database can be checked while it works, and nothing is written.

    Raises:
        StoreError: it cannot be opened or read (not a database, unreadable).
    """
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_SECONDS)
        try:
            found = [str(row[0]) for row in conn.execute("PRAGMA quick_check").fetchall()]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the event store {path!r}: {exc}") from exc
    return [] if found == ["ok"] else found


def _compact_sync(conn: sqlite3.Connection) -> int:
    def size() -> int:
        pages: int = conn.execute("PRAGMA page_count").fetchone()[0]
        page_size: int = conn.execute("PRAGMA page_size").fetchone()[0]
        return pages * page_size

    before = size()
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return max(0, before - size())


_STAT_COLUMNS: Final = {"kind": "t.kind", "status": "t.status", "agent": "t.agent", "outcome": "t.outcome"}
_STAT_COLUMNS_ALL: Final = {**_STAT_COLUMNS, "decidedBy": "t.decided_by"}


def _tool_call_stats_sync(conn: sqlite3.Connection, wanted: AuditFilter) -> dict[str, dict[str, int]]:
    where, params = _audit_where(wanted, 0)
    source = " FROM tool_calls t LEFT JOIN sessions s ON s.id = t.session_id" + where
    total = conn.execute("SELECT count(*)" + source, params).fetchone()[0]
    stats: dict[str, dict[str, int]] = {"total": {"toolCalls": total}}
    for group, column in _STAT_COLUMNS_ALL.items():
        rows = conn.execute(
            f"SELECT coalesce({column}, 'none'), count(*){source} GROUP BY 1 ORDER BY min(t.rowid)", params
        )
        stats[group] = dict(rows.fetchall())
    return stats
