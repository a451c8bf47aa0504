"""Store layer: the SQLite store's record indexes (the tool-call audit, the turns, full-text
search), written from committed records: the writer thread's ``Indexer``, which keeps them up to
the records in transactions of its own, and the index rows of a run of records.

Each indexing transaction reads the records after ``index_state.through`` (a rowid of
``events``, which grows in commit order) and moves it past them in the same transaction, so a
crash loses nothing: the next open indexes what the last one left. The rows were more than half
the pages of a turn's commit when they were written with the records, on the prompt's clock.

It must not run on the event loop (the writer thread calls it), interpret payloads beyond what
``acpd.protocol.audit`` reads from them, or import anything of acpd but the protocol layer, errors
and the store's shared shapes.
"""

from __future__ import annotations

import bisect
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Final

from acpd.protocol import audit, jsonio
from acpd.protocol.events import EventRecord
from acpd.store._audit import TURN_COLUMNS, turn_row
from acpd.store.docs import EncodedDoc

logger = logging.getLogger(__name__)

INDEX_DELAY_SECONDS: Final = 0.25
"""How long the writer must have committed nothing before it indexes: indexing is background work,
and gives way to commits. Run between the commits of a busy daemon, each slice held them back a few
ms and held the interpreter's lock from the event loop meanwhile (with 50 sessions prompting at
once, the slowest hundredth of round trips was a fifth slower for it)."""
INDEX_SLICE_RECORDS: Final = 256
"""Records an indexing transaction takes at most (a commit queued meanwhile waits for one slice,
a few ms, not a burst's worth)."""
INDEX_MEMORY_RECORDS: Final = 4_096
"""Committed records the indexer keeps to index them without reading them back; a burst past
this is read back from the database."""
INDEX_BEHIND_RECORDS: Final = 8_192
"""Records waiting past which a writer that never idles indexes a slice after each of its calls."""
INDEX_RETRY_SECONDS: Final = 1.0
"""How soon the writer tries again to index after a failure (a full disk)."""


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front, so a busy database waits in busy_timeout here
    # rather than failing halfway through the batch.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                # SQLite rolls back on its own after some errors (a full disk among them);
                # the error to report is the one that stopped the transaction, not this one.
                logger.warning("rolling back an event store transaction failed", exc_info=True)
        raise


TurnKey = tuple[str, int]
Facts = tuple[str | None, str | None]
"""A session's agent and model, as a turn's row keeps them."""


class Indexer:
    """The record indexes kept up to the committed records, in transactions of their own: the
    writer thread's alone.

    ``through`` is the rowid of ``events`` up to which the indexes are written, kept in
    ``index_state`` by the transaction that indexes the records before it. A turn's row takes its
    session's agent and model from the document committed with the turn's end (``committed``
    notes from which of its session's seqs each document holds), so a model chosen after a turn
    is not the one it ran with; what a restart left unindexed takes them as stored.

    Titles go into the full-text index with the records too, not in the commits of the documents
    that change them (a full-text write is several pages). A title changes only in a commit that
    holds a record of its session (the prompt it is derived from, ``_acpd/settings_changed``, the
    agent's ``session_info_update``), so after a crash the titles of the sessions with records
    after ``through`` are indexed again from their stored documents.
    """

    def __init__(self) -> None:
        self._through: int | None = None  # read from the database at first use
        self.open_turns: audit.OpenTurns = {}  # what the records of turns still running told
        self._facts: dict[str, list[tuple[int, Facts]]] = {}  # per session: (from seq, facts), in commit order
        self._waiting = 0  # records committed and not indexed (0: none)
        self._recent: list[EventRecord] | None = None  # those records, if all of them are here
        self._last_commit = 0.0  # when the writer last committed records or documents
        self._not_before = 0.0  # after a failure: when to try again
        self._titles: dict[str, str | None] = {}  # each session's title as last indexed
        self._new_titles: dict[str, str | None] = {}  # titles committed and not indexed

    def committed(self, records: Sequence[EventRecord], docs: list[tuple[EncodedDoc, int]]) -> None:
        """A commit wrote ``records`` and ``docs``, each holding from a seq of its session on."""
        self._last_commit = time.monotonic()
        self._waiting += len(records)
        if self._recent is not None:
            if len(self._recent) + len(records) <= INDEX_MEMORY_RECORDS:
                self._recent.extend(records)  # their rowids follow ``through`` in this order
            else:
                self._recent = None
        for doc, from_seq in docs:
            self._facts.setdefault(doc.keys.id, []).append((from_seq, (doc.keys.agent, doc.model)))
            if self._titles.get(doc.keys.id, "") == doc.title:  # ("": not known)
                self._new_titles.pop(doc.keys.id, None)
            else:
                self._new_titles[doc.keys.id] = doc.title

    def due_in(self) -> float | None:
        """Seconds until indexing is due (0 or less: now), or None while nothing waits. It is due
        once the writer has committed nothing for ``INDEX_DELAY_SECONDS``, and not before the
        retry time of a failure."""
        if not (self._waiting or self._new_titles):
            return None
        return max(self._last_commit + INDEX_DELAY_SECONDS, self._not_before) - time.monotonic()

    def due(self) -> bool:
        due_in = self.due_in()
        return due_in is not None and due_in <= 0

    def behind(self) -> bool:
        return self._waiting >= INDEX_BEHIND_RECORDS and time.monotonic() >= self._not_before

    def catch_up(self, conn: sqlite3.Connection) -> None:
        """Index every committed record (what a full disk allows: a failure leaves them waiting)."""
        if self._through is None:
            self._load(conn)
        while (self._waiting or self._new_titles) and self.step(conn):
            pass

    def step(self, conn: sqlite3.Connection) -> bool:
        """Index a slice of the records waiting, and the titles; whether more may wait. It never
        raises: a failure (a full disk, or a bug) is logged, and all is tried again
        ``INDEX_RETRY_SECONDS`` later."""
        titles = dict(self._new_titles)
        try:
            with transaction(conn):
                through = self._through if self._through is not None else self._load(conn)
                if self._recent is not None:  # no gap: a deletion or a compaction forgets them
                    records = self._recent[:INDEX_SLICE_RECORDS]
                    after = through + len(records)
                else:
                    records, after = _records_after(conn, through, INDEX_SLICE_RECORDS)
                if records:
                    _index_run(conn, records, self.open_turns, self._facts_of)
                    conn.execute("UPDATE index_state SET through = ?", (after,))
                for session_id, title in titles.items():
                    index_title(conn, session_id, title)
        except Exception as exc:  # a full disk; or a bug, which must not fail every call after it
            # the slice's turns come again: what it told the open turns must not count twice
            self.open_turns.clear()
            self._through = None
            if not self._not_before:
                bug = None if isinstance(exc, sqlite3.Error) else exc
                logger.warning("indexing committed records failed, tried again later: %s", exc, exc_info=bug)
            self._not_before = time.monotonic() + INDEX_RETRY_SECONDS
            return False
        self._through, self._not_before = after, 0.0
        self._titles.update(titles)
        self._new_titles.clear()
        if self._recent is not None:
            del self._recent[: len(records)]
            more = bool(self._recent)
        else:
            more = len(records) == INDEX_SLICE_RECORDS
            if not more:
                self._recent = []  # caught up: what commits from now on is kept until indexed
        self._waiting = max(0, self._waiting - len(records)) if more else 0
        if not self._waiting:  # what holds from now on: each session's last document
            self._facts = {session_id: [(0, facts[-1][1])] for session_id, facts in self._facts.items()}
        else:
            self._forget_facts_before(records)
        return more

    def _forget_facts_before(self, indexed: Sequence[EventRecord]) -> None:
        """Drop the documents no record after ``indexed`` needs: a writer that never pauses is
        never caught up, and kept one a commit otherwise (and searched them all at each turn)."""
        for session_id, seq in {record.session_id: record.seq for record in indexed}.items():
            facts = self._facts.get(session_id)
            at = bisect.bisect_right(facts, seq, key=_from_seq) if facts else 0
            if facts and at > 1:
                del facts[: at - 1]  # the one before ``at`` holds for the records after ``seq``

    def drop(self, conn: sqlite3.Connection, session_id: str) -> None:
        """In the transaction deleting a session (its events are gone): forget what it told, and
        keep ``through`` at most the last rowid left, which the next record's rowid follows."""
        for key in [key for key in self.open_turns if key[0] == session_id]:
            del self.open_turns[key]
        self._facts.pop(session_id, None)
        self._titles.pop(session_id, None)
        self._new_titles.pop(session_id, None)
        conn.execute("UPDATE index_state SET through = min(through, coalesce((SELECT max(rowid) FROM events), 0))")
        self._through = self._recent = None

    def rebase(self, conn: sqlite3.Connection) -> None:
        """After a ``VACUUM``, which may renumber rowids (the indexes were caught up before it)."""
        with transaction(conn):
            conn.execute("UPDATE index_state SET through = coalesce((SELECT max(rowid) FROM events), 0)")
        self._through = self._recent = None

    def _load(self, conn: sqlite3.Connection) -> int:
        """``through`` as stored, and how many records wait after it (at open, after a failure
        or a deletion): a crash leaves the records of its last commits unindexed."""
        through, last = conn.execute(
            "SELECT through, coalesce((SELECT max(rowid) FROM events), 0) FROM index_state"
        ).fetchone()
        self._through, self._waiting = int(through), max(0, int(last) - int(through))
        self._recent = None if self._waiting else []
        if self._waiting:  # their sessions' titles may have changed with them
            for session_id, title in conn.execute(_TITLES_AFTER, (through,)).fetchall():
                self._new_titles.setdefault(session_id, title if isinstance(title, str) and title else None)
        self._last_commit = time.monotonic()  # (what waits is indexed once the writer is quiet)
        return self._through

    def _facts_of(self, session_id: str, seq: int) -> Facts | None:
        """The agent and model of the session's document as committed with record ``seq``: the
        last one committed with it or before it, if noted."""
        noted = self._facts.get(session_id)
        at = bisect.bisect_right(noted, seq, key=_from_seq) if noted else 0
        return noted[at - 1][1] if noted and at else None


def _from_seq(noted: tuple[int, Facts]) -> int:
    return noted[0]


_TITLES_AFTER: Final = (
    "SELECT id, json_extract(doc, '$.title') FROM sessions"
    " WHERE id IN (SELECT DISTINCT session_id FROM events WHERE rowid > ?)"
)


def _records_after(conn: sqlite3.Connection, after: int, limit: int) -> tuple[list[EventRecord], int]:
    """The records after rowid ``after``, ``limit`` at most, and the last one's rowid."""
    rows = conn.execute(
        "SELECT rowid, session_id, seq, at, sender, turn, payload FROM events WHERE rowid > ? ORDER BY rowid LIMIT ?",
        (after, limit),
    ).fetchall()
    return [EventRecord(*row[1:]) for row in rows], rows[-1][0] if rows else after


def _index_run(
    conn: sqlite3.Connection,
    records: Sequence[EventRecord],
    open_turns: audit.OpenTurns,
    facts_of: Callable[[str, int], Facts | None],
) -> None:
    """The index rows of a run of records, the texts of the turns it ends in search with them."""
    texts = index_records(conn, records, open_turns, facts_of)
    index_texts(conn, {(session_id, turn): text for session_id, turn, text in texts})


def index_texts(conn: sqlite3.Connection, texts: dict[TurnKey, str]) -> None:
    """Turns' texts into the full-text index."""
    rows = [(session_id, turn, text) for (session_id, turn), text in texts.items()]
    conn.executemany("INSERT INTO search (session_id, turn, kind, body) VALUES (?, ?, 'turn', ?)", rows)


def index_backlog(conn: sqlite3.Connection) -> None:
    """Index the texts of the turns a crash left in schema 3's backlog, from their events (migration 4)."""
    texts: dict[TurnKey, str] = {}
    for session_id, turn in conn.execute("SELECT session_id, turn FROM search_backlog").fetchall():
        rows = conn.execute(_TURN_RECORDS, (session_id, turn)).fetchall()
        ends = audit.turn_ends([EventRecord(*row) for row in rows], {})
        if ends and ends[-1].text:
            texts[(session_id, turn)] = ends[-1].text
    index_texts(conn, texts)


_UPSERT_TOOL_CALL: Final = (
    "INSERT INTO tool_calls (session_id, tool_call_id, agent, turn, started_at, kind, title, locations, status,"
    " asked, request_id, options, ended_at)"
    " VALUES (?, ?, (SELECT agent FROM sessions WHERE id = ?), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (session_id, tool_call_id) DO UPDATE SET kind = coalesce(excluded.kind, kind),"
    " title = coalesce(excluded.title, title), locations = coalesce(excluded.locations, locations),"
    " status = coalesce(excluded.status, status), asked = max(asked, excluded.asked),"
    " request_id = coalesce(excluded.request_id, request_id), options = coalesce(excluded.options, options),"
    " ended_at = coalesce(ended_at, excluded.ended_at)"
)
_ASKED_OPEN: Final = (
    "SELECT rowid, options FROM tool_calls WHERE session_id = ? AND request_id = ? AND reply IS NULL"
    " ORDER BY rowid DESC LIMIT 1"
)
INDEX_PAGE: Final = 5_000
"""Events read at a time when the index is built from stored logs."""


_TURN_STORED: Final = tuple(name for name in TURN_COLUMNS if name != "project")
_INSERT_TURN: Final = (
    "INSERT OR REPLACE INTO turns (" + ", ".join(_TURN_STORED) + ")"
    " VALUES (" + ", ".join("?" * (len(TURN_COLUMNS) - 1)) + ")"
)
_AGENTS_AND_MODELS: Final = (
    "SELECT id, agent, json_extract(doc, '$.model') FROM sessions WHERE id IN (SELECT value FROM json_each(?))"
)
_TURN_RECORDS: Final = (
    "SELECT session_id, seq, at, sender, turn, payload FROM events WHERE session_id = ? AND turn = ? ORDER BY seq"
)


def index_records(
    conn: sqlite3.Connection,
    records: Sequence[EventRecord],
    open_turns: audit.OpenTurns,
    facts_of: Callable[[str, int], Facts | None] = lambda session_id, seq: None,
) -> list[tuple[str, int, str]]:
    """The indexes' rows for ``records``: a statement of each kind for the whole slice (it ends
    many sessions' turns at once), not one a turn. A turn's row takes the agent and model
    ``facts_of`` its session and answer tells, else the session's as stored. Returns the ended
    turns' texts, for the full-text index."""
    _index_tool_calls(conn, records)
    ends = [_whole(conn, end) for end in audit.turn_ends(records, open_turns)]
    if not ends:
        return []
    known = {(end.session_id, end.last_seq): facts_of(end.session_id, end.last_seq) for end in ends}
    stored: dict[str, Facts] = {}
    if unknown := sorted({session_id for (session_id, _), facts in known.items() if facts is None}):
        found = conn.execute(_AGENTS_AND_MODELS, (jsonio.dumps_str(unknown),))
        stored.update((row[0], (row[1], row[2])) for row in found)
    none: Facts = (None, None)  # a session deleted since
    rows = [turn_row(end, *(known[(end.session_id, end.last_seq)] or stored.get(end.session_id, none))) for end in ends]
    conn.executemany(_INSERT_TURN, [tuple(getattr(row, name) for name in _TURN_STORED) for row in rows])
    return [(end.session_id, end.turn, end.text) for end in ends if end.text]


def _whole(conn: sqlite3.Connection, end: audit.TurnEnd) -> audit.TurnEnd:
    """``end``, with what its turn's records told before a restart, read back if need be."""
    if end.started_at is not None:
        return end
    again = conn.execute(_TURN_RECORDS, (end.session_id, end.turn)).fetchall()
    return audit.turn_ends([EventRecord(*row) for row in again if row[1] <= end.last_seq], {})[-1]


def _index_tool_calls(conn: sqlite3.Connection, records: Sequence[EventRecord]) -> None:
    for change in audit.changes_in(records):
        if change.tool_call_id is None:
            row = conn.execute(_ASKED_OPEN, (change.session_id, change.request_id)).fetchone()
            if row is not None:
                conn.execute(
                    "UPDATE tool_calls SET reply = ?, outcome = ?, decided_by = ? WHERE rowid = ?",
                    (change.reply, audit.reply_kind(change.reply, row[1]), change.decided_by, row[0]),
                )
            continue
        ended = change.at if change.status in audit.FINISHED else None
        conn.execute(
            _UPSERT_TOOL_CALL,
            (
                change.session_id,
                change.tool_call_id,
                change.session_id,
                change.turn,
                change.at,
                change.kind,
                change.title,
                change.locations,
                change.status,
                int(change.asked),
                change.request_id,
                change.options,
                ended,
            ),
        )


def index_stored_logs(conn: sqlite3.Connection) -> None:
    """Build the indexes from every stored log and document (a migration: inside its transaction)."""
    for session_id, title in conn.execute("SELECT id, json_extract(doc, '$.title') FROM sessions").fetchall():
        index_title(conn, session_id, title if isinstance(title, str) else None)
    records, after = _records_after(conn, 0, INDEX_PAGE)
    open_turns: audit.OpenTurns = {}
    while records:
        _index_run(conn, records, open_turns, lambda session_id, seq: None)
        records, after = _records_after(conn, after, INDEX_PAGE)


def index_title(conn: sqlite3.Connection, session_id: str, title: str | None) -> None:
    row = conn.execute("SELECT search_rowid FROM search_titles WHERE session_id = ?", (session_id,)).fetchone()
    if row is not None:
        conn.execute("DELETE FROM search WHERE rowid = ?", row)
        conn.execute("DELETE FROM search_titles WHERE session_id = ?", (session_id,))
    if title is not None:
        rowid = conn.execute(
            "INSERT INTO search (session_id, turn, kind, body) VALUES (?, 0, 'title', ?)", (session_id, title)
        ).lastrowid
        conn.execute("INSERT INTO search_titles (session_id, search_rowid) VALUES (?, ?)", (session_id, rowid))
