"""Store layer: the EventStore Protocol every backend (memory, SQLite) implements.

It must not interpret payloads or session settings beyond the few indexed keys named here, and the
tool calls the audit index reads from records through ``acpd.protocol.audit``; the daemon owns the
rest of their meaning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from acpd.protocol.events import EventRecord
from acpd.store._audit import AuditFilter

if TYPE_CHECKING:
    from acpd.store.docs import EncodedDoc

__all__ = ["AuditFilter", "AuditPage", "EventStore", "SessionDoc", "SessionPage"]

SessionDoc = dict[str, Any]
"""A session as a JSON object. The store reads only these keys: ``id`` (str), ``agent`` (str),
``project`` (str | None), ``cwd`` (str), ``createdAt`` (RFC 3339 str) and ``archivedAt``
(str | None); everything else is kept verbatim."""


@dataclass(frozen=True, slots=True)
class SessionPage:
    """One page of a session listing, and the cursor to the next (None: the last page)."""

    items: list[SessionDoc]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class AuditPage:
    """One page of the tool-call audit, and the cursor to the next (None: the last page)."""

    items: list[dict[str, Any]]
    next_cursor: str | None


class EventStore(Protocol):
    """Durable session documents and append-only event logs.

    Writes never run on the event loop thread. ``append`` commits all given records in one
    transaction; within a session, seqs must continue the log without gaps (1, 2, 3, …), else
    ``StoreError`` is raised and nothing is written.
    """

    async def append(self, records: Sequence[EventRecord], *, session: SessionDoc | None = None) -> None:
        """Commit ``records`` and, when given, the session document (insert or replace) in one
        transaction, so a document never claims more than the log it was saved with."""
        ...

    async def append_many(
        self, records: Sequence[EventRecord], *, sessions: Sequence[SessionDoc | EncodedDoc] = ()
    ) -> None:
        """Commit ``records`` of any number of sessions and the ``sessions`` documents (insert or
        replace, in order) in one transaction, all or none: the daemon's group commit, one
        transaction for what many sessions queued meanwhile. A document may come encoded already
        (``acpd.store.docs.encoded_doc``): its text is kept as it is."""
        ...

    async def read(self, session_id: str, *, after: int = 0, limit: int = 1000) -> list[EventRecord]:
        """Records with ``seq > after`` in order, at most ``limit``."""
        ...

    async def last_seq(self, session_id: str) -> int:
        """The highest committed seq, 0 for an empty or unknown session."""
        ...

    async def save_session(self, doc: SessionDoc) -> None:
        """Insert or replace the session document."""
        ...

    async def get_session(self, session_id: str) -> SessionDoc | None: ...

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
        """Newest first (``createdAt`` desc, then ``id`` desc); ``cursor`` is opaque, from a previous page.
        ``archived=None`` lists both; raises ``InvalidInput`` for a malformed cursor."""
        ...

    async def delete_session(self, session_id: str) -> bool:
        """Delete the session, its events and idempotency records; False if it did not exist."""
        ...

    async def get_idempotent(self, session_id: str, key: str) -> str | None:
        """The stored answer for an Idempotency-Key, if any."""
        ...

    async def tool_calls(self, wanted: AuditFilter, *, limit: int = 100, cursor: str | None = None) -> AuditPage:
        """The audit index's rows (``AuditRow.view``) that match, oldest first, ``limit`` a page.
        The index is kept in the transactions that commit the records (``acpd.protocol.audit``).
        Raises ``InvalidInput`` for a malformed cursor."""
        ...

    async def tool_call_stats(self, wanted: AuditFilter) -> dict[str, dict[str, int]]:
        """Counts of the matching tool calls by kind, status, agent, outcome and who decided."""
        ...

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
        """Sessions whose title, a prompt or a reply has every word of ``q``, best match first, each
        with ``match: {kind, snippet}``; filtered like ``list_sessions``. Raises ``InvalidInput`` for
        a ``q`` without a word, or a malformed cursor."""
        ...

    async def turns(self, session_id: str) -> list[dict[str, Any]]:
        """The session's turns (``TurnRow.view``) in order, each with its own usage and cost."""
        ...

    async def usage(self, group_by: str, *, since: str | None = None, until: str | None = None) -> dict[str, Any]:
        """The usage of the turns started in [since, until), added up by ``group_by`` (session,
        agent, project, model or day). Raises ``InvalidInput`` for another ``group_by``."""
        ...

    async def put_idempotent(self, session_id: str, key: str, value: str) -> None: ...

    async def compact(self) -> int:
        """Give the space deleted sessions left back to the file system; how many bytes. Writes
        wait while it runs."""
        ...

    async def aclose(self) -> None: ...
