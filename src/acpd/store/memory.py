"""Store layer: ``MemoryEventStore``, the in-memory twin of the SQLite store, and the rules both share.

Dicts and lists only; nothing survives the process (tests, ``--ephemeral``). It must not interpret
payloads or session settings beyond the indexed keys, and imports nothing of acpd but the protocol
layer and errors. The module-level helpers (seq continuity, session keys, cursors, limits) are the
reference semantics: the SQLite store imports them, so both stores accept, reject and page alike.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final

from acpd.errors import InvalidInput, StoreError
from acpd.protocol import jsonio
from acpd.protocol.events import EventRecord
from acpd.store.base import SessionDoc, SessionPage

CURSOR_ALTCHARS: Final = b"-_"
"""URL-safe base64: a cursor travels in a query string unescaped."""


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """The few keys of a session document the stores index; the rest is kept verbatim."""

    id: str
    agent: str
    project: str | None
    cwd: str
    created_at: str
    archived_at: str | None

    @property
    def position(self) -> tuple[str, str]:
        """Where the session sits in the listing order (compared descending)."""
        return (self.created_at, self.id)


def session_keys(doc: SessionDoc) -> SessionKeys:
    """Read the indexed keys of a session document.

    Raises:
        InvalidInput: ``id``, ``agent``, ``cwd`` or ``createdAt`` is missing or not a string, or
            ``project``/``archivedAt`` is neither a string nor null.
    """
    keys = SessionKeys(
        id=_required_str(doc, "id"),
        agent=_required_str(doc, "agent"),
        project=_optional_str(doc, "project"),
        cwd=_required_str(doc, "cwd"),
        created_at=_required_str(doc, "createdAt"),
        archived_at=_optional_str(doc, "archivedAt"),
    )
    if not keys.id:
        raise InvalidInput("a session document's 'id' must not be empty")
    return keys


def _required_str(doc: SessionDoc, key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise InvalidInput(f"a session document needs a string {key!r}, got {type(value).__name__}")
    return value


def _optional_str(doc: SessionDoc, key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"a session document's {key!r} must be a string or null, got {type(value).__name__}")
    return value


def encode_doc(doc: SessionDoc) -> str:
    """The session document as JSON text, as both stores keep it.

    Raises:
        InvalidInput: the document is not JSON (a non-string key, an unsupported value).
    """
    try:
        return jsonio.dumps_str(doc)
    except TypeError as exc:
        raise InvalidInput(f"a session document must be JSON: {exc}") from exc


def next_last_seqs(records: Sequence[EventRecord], last_seq: Callable[[str], int]) -> dict[str, int]:
    """Check that ``records`` continue their sessions' logs; return each touched session's new last seq.

    Records of several sessions may interleave in one batch; within a session they must read
    ``last_seq(session) + 1, + 2, …`` in batch order. ``last_seq`` is called once per session.

    Raises:
        StoreError: a seq that is not the next one of its session: a gap, a duplicate, or a new
            log that does not start at 1. The caller then writes nothing.
    """
    expected: dict[str, int] = {}
    for record in records:
        session_id = record.session_id
        want = expected.get(session_id)
        if want is None:
            want = last_seq(session_id) + 1
        if record.seq != want:
            raise StoreError(
                f"seq {record.seq} does not continue the log of session {session_id!r}: expected {want}",
                data={"sessionId": session_id, "seq": record.seq, "expected": want},
            )
        expected[session_id] = want + 1
    return {session_id: following - 1 for session_id, following in expected.items()}


def encode_cursor(keys: SessionKeys) -> str:
    """An opaque cursor that resumes a listing after ``keys``' session (keyset pagination)."""
    raw = jsonio.dumps([keys.created_at, keys.id])
    return base64.b64encode(raw, altchars=CURSOR_ALTCHARS).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The ``(createdAt, id)`` position a cursor resumes after.

    Raises:
        InvalidInput: the cursor was not made by ``encode_cursor``.
    """
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=CURSOR_ALTCHARS, validate=True)
        value = jsonio.loads(raw)
    except (ValueError, binascii.Error) as exc:
        raise InvalidInput("malformed cursor: pass back the nextCursor of a previous page") from exc
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(part, str) for part in value)):
        raise InvalidInput("malformed cursor: pass back the nextCursor of a previous page")
    return (value[0], value[1])


def check_read_limit(limit: int) -> None:
    """Raises ``InvalidInput`` for a negative event ``limit`` (0 reads nothing)."""
    if limit < 0:
        raise InvalidInput(f"limit must be 0 or more, got {limit}")


def check_page_limit(limit: int) -> None:
    """Raises ``InvalidInput`` for a session page ``limit`` below 1 (an empty page could not resume)."""
    if limit < 1:
        raise InvalidInput(f"limit must be 1 or more, got {limit}")


def page_of(rows: list[tuple[SessionKeys, str]], limit: int) -> SessionPage:
    """Build a page from up to ``limit + 1`` matching rows in listing order; the extra row only
    proves that another page exists."""
    shown = rows[:limit]
    next_cursor = encode_cursor(shown[-1][0]) if len(rows) > limit else None
    return SessionPage(items=[jsonio.loads(text) for _, text in shown], next_cursor=next_cursor)


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
        self._closed = False

    async def __aenter__(self) -> MemoryEventStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def append(self, records: Sequence[EventRecord]) -> None:
        """Add ``records`` to their sessions' logs, all or none.

        Raises:
            StoreError: a seq does not continue its session's log, or the store is closed.
        """
        self._check_open()
        next_last_seqs(records, self._last_seq_now)
        for record in records:
            self._logs.setdefault(record.session_id, []).append(record)

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
        return self._sessions.pop(session_id, None) is not None

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
