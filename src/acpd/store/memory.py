"""Store layer: ``MemoryEventStore``, the in-memory twin of the SQLite store.

Dicts and lists only; nothing survives the process (tests, ``--ephemeral``). It must not interpret
payloads or session settings beyond the indexed keys, and imports nothing of acpd but the protocol
layer and errors. The rules it shares with SQLite live in ``_rules``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any

from acpd.errors import StoreError
from acpd.protocol import audit, jsonio
from acpd.protocol.events import EventRecord
from acpd.store._audit import (
    AuditFilter,
    AuditRows,
    SearchTexts,
    TurnRow,
    TurnRows,
    check_times,
    count_by,
    decode_audit_cursor,
    decode_search_cursor,
    encode_audit_cursor,
    encode_search_cursor,
    search_words,
    turn_row,
    turn_views,
    usage_report,
)
from acpd.store._rules import check_page_limit, check_read_limit, decode_cursor, next_last_seqs, page_of
from acpd.store.base import AuditPage, SessionDoc, SessionPage
from acpd.store.docs import EncodedDoc, SessionKeys, encode_doc, encoded_doc, session_keys


def _matches(keys: SessionKeys, project: str | None, agent: str | None, archived: bool | None, cwd: str | None) -> bool:
    return (
        (project is None or keys.project == project)
        and (agent is None or keys.agent == agent)
        and (cwd is None or keys.cwd == cwd)
        and (archived is None or (keys.archived_at is not None) == archived)
    )


class MemoryEventStore:
    """An ``EventStore`` in dicts and lists, with the SQLite store's semantics.

    Every method completes without yielding to the event loop, so no lock is needed. Session
    documents are kept as JSON text, so later changes to a saved dict never leak into the store.
    """

    def __init__(self) -> None:
        self._logs: dict[str, list[EventRecord]] = {}
        self._sessions: dict[str, tuple[SessionKeys, str]] = {}
        self._idempotency: dict[str, dict[str, str]] = {}
        self._audit = AuditRows()
        self._turns = TurnRows()
        self._search = SearchTexts()
        self._open_turns: audit.OpenTurns = {}
        self._closed = False

    async def __aenter__(self) -> MemoryEventStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def append(self, records: Sequence[EventRecord], *, session: SessionDoc | None = None) -> None:
        """Add ``records`` to their sessions' logs and save ``session``, all or none.

        Raises:
            StoreError: a seq does not continue its session's log, or the store is closed.
            InvalidInput: ``session`` lacks an indexed key.
        """
        await self.append_many(records, sessions=() if session is None else (session,))

    async def append_many(
        self, records: Sequence[EventRecord], *, sessions: Sequence[SessionDoc | EncodedDoc] = ()
    ) -> None:
        """Add ``records`` (of any sessions) to their logs and save the ``sessions``, all or none.

        Raises:
            StoreError: a seq does not continue its session's log, or the store is closed.
            InvalidInput: a document lacks an indexed key.
        """
        self._check_open()
        next_last_seqs(records, self._last_seq_now)
        docs = [encoded_doc(doc) for doc in sessions]
        for record in records:
            self._logs.setdefault(record.session_id, []).append(record)
        for doc in docs:
            self._sessions[doc.keys.id] = (doc.keys, doc.text)
            self._search.title(doc.keys.id, doc.title)
        for change in audit.changes_in(records):
            self._audit.apply(change, self._agent_of)
        for end in audit.turn_ends(records, self._open_turns):
            if end.started_at is None:  # begun before this store was: its records tell the rest
                again = [r for r in self._logs[end.session_id][: end.last_seq] if r.turn == end.turn]
                end = audit.turn_ends(again, {})[-1]
            self._turns.add(turn_row(end, *self._agent_and_model(end.session_id)))
            if end.text:
                self._search.add(end.session_id, "turn", end.text)

    async def read(self, session_id: str, *, after: int = 0, limit: int = 1000) -> list[EventRecord]:
        """Records with ``seq > after`` in order, at most ``limit``.

        Raises:
            InvalidInput: ``limit`` is negative.
        """
        self._check_open()
        check_read_limit(limit)
        start = max(after, 0)
        # seq n sits at index n - 1 because logs have no gaps.
        return self._logs.get(session_id, [])[start : start + limit]

    async def last_seq(self, session_id: str) -> int:
        self._check_open()
        return self._last_seq_now(session_id)

    async def save_session(self, doc: SessionDoc) -> None:
        """Insert or replace the session document.

        Raises:
            InvalidInput: an indexed key is missing or mistyped, or the document is not JSON.
        """
        self._check_open()
        keys = session_keys(doc)
        self._sessions[keys.id] = (keys, encode_doc(doc))

    async def get_session(self, session_id: str) -> SessionDoc | None:
        self._check_open()
        entry = self._sessions.get(session_id)
        if entry is None:
            return None
        doc: SessionDoc = jsonio.loads(entry[1])
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
        """
        self._check_open()
        check_page_limit(limit)
        after = decode_cursor(cursor) if cursor is not None else None
        ordered = sorted(self._sessions.values(), key=lambda entry: entry[0].position, reverse=True)
        rows: list[tuple[SessionKeys, str]] = []
        for keys, text in ordered:
            if after is not None and keys.position >= after:
                continue
            if _matches(keys, project, agent, archived, cwd):
                rows.append((keys, text))
                if len(rows) > limit:
                    break
        return page_of(rows, limit)

    async def delete_session(self, session_id: str) -> bool:
        """Delete the session, its events and idempotency records; False if it did not exist."""
        self._check_open()
        self._logs.pop(session_id, None)
        self._idempotency.pop(session_id, None)
        self._audit.forget(session_id)
        self._turns.forget(session_id)
        self._search.forget(session_id)
        return self._sessions.pop(session_id, None) is not None

    async def tool_calls(self, wanted: AuditFilter, *, limit: int = 100, cursor: str | None = None) -> AuditPage:
        self._check_open()
        check_page_limit(limit)
        after = decode_audit_cursor(cursor) if cursor is not None else 0
        rows = [(position, row) for position, row in self._audit.select(wanted, self._project_of) if position > after]
        more = len(rows) > limit
        rows = rows[:limit]
        return AuditPage([row.view() for _, row in rows], encode_audit_cursor(rows[-1][0]) if more else None)

    async def tool_call_stats(self, wanted: AuditFilter) -> dict[str, dict[str, int]]:
        self._check_open()
        return count_by(row.view() for _, row in self._audit.select(wanted, self._project_of))

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
        self._check_open()
        check_page_limit(limit)
        offset = decode_search_cursor(cursor) if cursor is not None else 0
        found = [
            {**jsonio.loads(self._sessions[sid][1]), "match": match}
            for sid, match in self._search.ranked(search_words(q))
            if sid in self._sessions and _matches(self._sessions[sid][0], project, agent, archived, cwd)
        ]
        more = len(found) > offset + limit
        return SessionPage(found[offset : offset + limit], encode_search_cursor(offset + limit) if more else None)

    async def compact(self) -> int:
        self._check_open()
        return 0  # what is deleted is freed at once

    async def turns(self, session_id: str) -> list[dict[str, Any]]:
        self._check_open()
        return turn_views(self._shown(self._turns.select(session_id, None, None)))

    async def usage(self, group_by: str, *, since: str | None = None, until: str | None = None) -> dict[str, Any]:
        self._check_open()
        check_times(since, until)
        return usage_report(turn_views(self._shown(self._turns.select(None, since, until))), group_by)

    def _shown(self, rows: list[TurnRow]) -> list[TurnRow]:
        return [replace(row, project=self._project_of(row.session_id)) for row in rows]

    def _agent_and_model(self, session_id: str) -> tuple[str | None, str | None]:
        entry = self._sessions.get(session_id)
        if entry is None:
            return None, None
        model = jsonio.loads(entry[1]).get("model")
        return entry[0].agent, model if isinstance(model, str) else None

    def _agent_of(self, session_id: str) -> str | None:
        entry = self._sessions.get(session_id)
        return entry[0].agent if entry else None

    def _project_of(self, session_id: str) -> str | None:
        entry = self._sessions.get(session_id)
        return entry[0].project if entry else None

    async def get_idempotent(self, session_id: str, key: str) -> str | None:
        self._check_open()
        return self._idempotency.get(session_id, {}).get(key)

    async def put_idempotent(self, session_id: str, key: str, value: str) -> None:
        """Store (or replace) the answer for an Idempotency-Key."""
        self._check_open()
        self._idempotency.setdefault(session_id, {})[key] = value

    async def aclose(self) -> None:
        """Close the store; idempotent. Later calls raise ``StoreError``."""
        self._closed = True

    def _last_seq_now(self, session_id: str) -> int:
        return len(self._logs.get(session_id, ()))

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the event store is closed")
