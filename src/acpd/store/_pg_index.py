"""Store layer: the PostgreSQL store's record indexes (tool-call audit, turns, full-text search)
and its session listing queries, written in the transaction that commits the records. It must not
import asyncpg at module level, nor anything of acpd but the protocol layer and errors.

Queries are built with ``$n`` placeholders only; values never enter the SQL text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from acpd.protocol import audit, jsonio
from acpd.protocol.events import EventRecord
from acpd.store._audit import COLUMNS, SEARCH_CANDIDATES, TURN_COLUMNS, AuditFilter, AuditRow, TurnRow, turn_row
from acpd.store.docs import SessionKeys

if TYPE_CHECKING:
    import asyncpg

SESSION_COLUMNS: Final = "id, agent, project, cwd, created_at, archived_at, doc"

_UPSERT_TOOL_CALL: Final = (
    "INSERT INTO tool_calls (session_id, tool_call_id, agent, turn, started_at, kind, title, locations, status,"
    " asked, request_id, options, ended_at)"
    " VALUES ($1, $2, (SELECT agent FROM sessions WHERE id = $1), $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    " ON CONFLICT (session_id, tool_call_id) DO UPDATE SET kind = coalesce(excluded.kind, tool_calls.kind),"
    " title = coalesce(excluded.title, tool_calls.title),"
    " locations = coalesce(excluded.locations, tool_calls.locations),"
    " status = coalesce(excluded.status, tool_calls.status), asked = tool_calls.asked OR excluded.asked,"
    " request_id = coalesce(excluded.request_id, tool_calls.request_id),"
    " options = coalesce(excluded.options, tool_calls.options),"
    " ended_at = coalesce(tool_calls.ended_at, excluded.ended_at)"
)
_ASKED_OPEN: Final = (
    "SELECT pos, options FROM tool_calls WHERE session_id = $1 AND request_id = $2 AND reply IS NULL"
    " ORDER BY pos DESC LIMIT 1"
)
_SELECT_TOOL_CALLS: Final = (
    "SELECT t.pos, " + ", ".join(f"t.{name}" for name in COLUMNS if name != "project") + ", s.project"
    " FROM tool_calls t LEFT JOIN sessions s ON s.id = t.session_id"
)
_AUDIT_FILTERS: Final = (
    ("session", "t.session_id"),
    ("agent", "t.agent"),
    ("project", "s.project"),
    ("kind", "t.kind"),
    ("status", "t.status"),
    ("decided_by", "t.decided_by"),
)
_TURN_STORED: Final = tuple(name for name in TURN_COLUMNS if name != "project")
_INSERT_TURN: Final = (
    "INSERT INTO turns (" + ", ".join(_TURN_STORED) + ") VALUES ("
    + ", ".join(f"${n}" for n in range(1, len(_TURN_STORED) + 1))
    + ") ON CONFLICT (session_id, turn) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _TURN_STORED[2:])
)  # fmt: skip
_SELECT_TURNS: Final = (
    "SELECT " + ", ".join(f"t.{name}" for name in _TURN_STORED) + ", s.project"
    " FROM turns t LEFT JOIN sessions s ON s.id = t.session_id"
)
_TURN_RECORDS: Final = (
    "SELECT session_id, seq, at, sender, turn, payload FROM events WHERE session_id = $1 AND turn = $2 ORDER BY seq"
)
_INSERT_SEARCH: Final = (
    "INSERT INTO search (session_id, turn, kind, body, words) VALUES ($1, $2, $3, $4, to_tsvector('simple', $5))"
)


def words_of(text: str) -> str:
    """The words of ``text`` (letters and digits) joined by spaces: what is indexed and searched,
    so punctuation splits words as FTS5's tokenizer does (``a.py`` is ``a`` and ``py``)."""
    return " ".join(re.findall(r"\w+", text))


# --- written with the records ---------------------------------------------------------------------


async def index_records(conn: asyncpg.Connection, records: Sequence[EventRecord], open_turns: audit.OpenTurns) -> None:
    """The indexes' rows for ``records``, in the caller's transaction."""
    await _index_tool_calls(conn, records)
    ends = [await _whole(conn, end) for end in audit.turn_ends(records, open_turns)]
    if not ends:
        return
    facts = await _agents_and_models(conn, sorted({end.session_id for end in ends}))
    rows = [turn_row(end, *facts.get(end.session_id, (None, None))) for end in ends]
    await conn.executemany(_INSERT_TURN, [tuple(getattr(row, name) for name in _TURN_STORED) for row in rows])
    texts = [(end.session_id, end.turn, "turn", end.text, words_of(end.text)) for end in ends if end.text]
    if texts:
        await conn.executemany(_INSERT_SEARCH, texts)


async def _agents_and_models(conn: asyncpg.Connection, ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
    """Each session's agent and model; the model read from the document here, not by the
    database's JSON functions, which refuse some JSON that the store keeps (``\\u0000``)."""
    facts: dict[str, tuple[str | None, str | None]] = {}
    for session_id, agent, doc in await conn.fetch("SELECT id, agent, doc FROM sessions WHERE id = ANY($1)", ids):
        model = jsonio.loads(doc).get("model")
        facts[session_id] = (agent, model if isinstance(model, str) else None)
    return facts


async def _whole(conn: asyncpg.Connection, end: audit.TurnEnd) -> audit.TurnEnd:
    """``end``, with what its turn's records told before a restart, read back if need be."""
    if end.started_at is not None:
        return end
    again = await conn.fetch(_TURN_RECORDS, end.session_id, end.turn)
    return audit.turn_ends([EventRecord(*row) for row in again if row[1] <= end.last_seq], {})[-1]


async def _index_tool_calls(conn: asyncpg.Connection, records: Sequence[EventRecord]) -> None:
    for change in audit.changes_in(records):
        if change.tool_call_id is None:
            row = await conn.fetchrow(_ASKED_OPEN, change.session_id, change.request_id)
            if row is not None:
                await conn.execute(
                    "UPDATE tool_calls SET reply = $1, outcome = $2, decided_by = $3 WHERE pos = $4",
                    change.reply,
                    audit.reply_kind(change.reply, row[1]),
                    change.decided_by,
                    row[0],
                )
            continue
        ended = change.at if change.status in audit.FINISHED else None
        await conn.execute(
            _UPSERT_TOOL_CALL,
            change.session_id,
            change.tool_call_id,
            change.turn,
            change.at,
            change.kind,
            change.title,
            change.locations,
            change.status,
            change.asked,
            change.request_id,
            change.options,
            ended,
        )


async def index_title(conn: asyncpg.Connection, session_id: str, title: str | None) -> None:
    """Replace the session's title in the search index (none: remove it)."""
    await conn.execute("DELETE FROM search WHERE session_id = $1 AND kind = 'title'", session_id)
    if title is not None:
        await conn.execute(_INSERT_SEARCH, session_id, 0, "title", title, words_of(title))


# --- read --------------------------------------------------------------------------------------------


class Params:
    """Positional parameters of a query being built: ``add`` gives a value its ``$n``."""

    def __init__(self) -> None:
        self.values: list[object] = []

    def add(self, value: object) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def session_filters(
    params: Params,
    alias: str,
    *,
    project: str | None,
    agent: str | None,
    archived: bool | None,
    cwd: str | None,
) -> list[str]:
    """The listing filters' clauses on the sessions table as ``alias``."""
    clauses = [
        f"{alias}.{column} = {params.add(value)}"
        for column, value in (("project", project), ("agent", agent), ("cwd", cwd))
        if value is not None
    ]
    if archived is not None:
        clauses.append(f"{alias}.archived_at IS {'NOT ' if archived else ''}NULL")
    return clauses


def list_query(after: tuple[str, str] | None, limit: int, **filters: Any) -> tuple[str, list[object]]:
    """The listing's query, newest first, at most ``limit`` rows."""
    params = Params()
    clauses = session_filters(params, "s", **filters)
    if after is not None:
        clauses.append(f"(s.created_at, s.id) < ({params.add(after[0])}, {params.add(after[1])})")
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = (
        f"SELECT {_aliased('s')} FROM sessions s{where} ORDER BY s.created_at DESC, s.id DESC LIMIT {params.add(limit)}"
    )
    return sql, params.values


def _aliased(alias: str) -> str:
    return ", ".join(f"{alias}.{name}" for name in SESSION_COLUMNS.split(", "))


def session_row(row: Sequence[Any]) -> tuple[SessionKeys, str]:
    return SessionKeys(*row[:6]), row[6]


def search_query(words: list[str], **filters: Any) -> tuple[str, list[object]]:
    """The sessions whose title or a turn has every word, best first: each session's best text
    among the ``SEARCH_CANDIDATES`` best (``ts_rank``), with its kind and its row in ``search``."""
    params = Params()
    query = params.add(" ".join(words))
    candidates = params.add(SEARCH_CANDIDATES)
    clauses = session_filters(params, "s", **filters)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = (
        f"WITH q AS (SELECT plainto_tsquery('simple', {query}) AS q),"
        " hits AS (SELECT x.id, x.session_id, x.kind, ts_rank(x.words, q.q) AS r FROM search x, q"
        f" WHERE x.words @@ q.q ORDER BY r DESC, x.id LIMIT {candidates}),"
        " best AS (SELECT DISTINCT ON (session_id) id, session_id, kind, r FROM hits ORDER BY session_id, r DESC, id)"
        f" SELECT {_aliased('s')}, b.kind, b.id FROM best b JOIN sessions s ON s.id = b.session_id"
        f"{where} ORDER BY b.r DESC, b.id"
    )
    return sql, params.values


SEARCH_BODIES: Final = "SELECT id, body FROM search WHERE id = ANY($1)"
"""The texts a page of search results shows snippets of."""


def audit_query(wanted: AuditFilter, after: int, limit: int | None) -> tuple[str, list[object]]:
    """The audit rows that match, after position ``after``, oldest first (``limit`` None: the
    FROM and WHERE only, for the stats)."""
    params = Params()
    clauses = [f"t.pos > {params.add(after)}"]
    clauses += [
        f"{column} = {params.add(getattr(wanted, name))}"
        for name, column in _AUDIT_FILTERS
        if getattr(wanted, name) is not None
    ]
    if wanted.since is not None:
        clauses.append(f"t.started_at >= {params.add(wanted.since)}")
    if wanted.until is not None:
        clauses.append(f"t.started_at < {params.add(wanted.until)}")
    where = " WHERE " + " AND ".join(clauses)
    if limit is None:
        return " FROM tool_calls t LEFT JOIN sessions s ON s.id = t.session_id" + where, params.values
    return _SELECT_TOOL_CALLS + where + f" ORDER BY t.pos LIMIT {params.add(limit)}", params.values


def audit_row(row: Sequence[Any]) -> tuple[int, AuditRow]:
    return int(row[0]), AuditRow(*row[1:])


STAT_COLUMNS: Final = {
    "kind": "t.kind",
    "status": "t.status",
    "agent": "t.agent",
    "outcome": "t.outcome",
    "decidedBy": "t.decided_by",
}


def turns_query(session: str | None, since: str | None, until: str | None) -> tuple[str, list[object]]:
    params = Params()
    clauses = [
        f"{clause} {params.add(value)}"
        for value, clause in ((session, "t.session_id ="), (since, "t.started_at >="), (until, "t.started_at <"))
        if value is not None
    ]
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    return _SELECT_TURNS + where + " ORDER BY t.session_id, t.turn", params.values


def turn_row_of(row: Sequence[Any]) -> TurnRow:
    return TurnRow(*row)
