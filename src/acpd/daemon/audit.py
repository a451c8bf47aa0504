"""Daemon layer: the reports across sessions: the tool-call audit, ``GET /v1/audit/tool-calls``
(JSON pages, or the whole selection as streamed CSV) and ``GET /v1/audit/stats``, and ``GET
/v1/usage``. A thin edge: the indexes are the store's, kept with the records they come from.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from acpd.errors import InvalidInput
from acpd.store.base import AuditFilter, EventStore

from .http import MAX_PAGE, int_param, json_response, manager_of

CSV_COLUMNS: Final = (
    "sessionId",
    "agent",
    "project",
    "turn",
    "toolCallId",
    "kind",
    "title",
    "locations",
    "status",
    "permissionAsked",
    "reply",
    "outcome",
    "decidedBy",
    "startedAt",
    "endedAt",
    "durationMs",
)
FILTERS: Final = {
    "session": "session",
    "agent": "agent",
    "project": "project",
    "kind": "kind",
    "status": "status",
    "decidedBy": "decided_by",
    "since": "since",
    "until": "until",
}
CSV_PAGE: Final = 1_000


def audit_filter(request: Request) -> AuditFilter:
    unknown = set(request.query_params) - {*FILTERS, "cursor", "limit", "format"}
    if unknown:
        raise InvalidInput(f"unknown query parameters {sorted(unknown)}; filters: {sorted(FILTERS)}")
    given = {FILTERS[name]: value for name, value in request.query_params.items() if name in FILTERS and value}
    return AuditFilter(**given)


async def tool_calls(request: Request) -> Response:
    wanted = audit_filter(request)
    store = manager_of(request).store
    fmt = request.query_params.get("format") or "json"
    if fmt == "csv":
        headers = {"Content-Disposition": 'attachment; filename="tool-calls.csv"'}
        return StreamingResponse(_csv(store, wanted), media_type="text/csv; charset=utf-8", headers=headers)
    if fmt != "json":
        raise InvalidInput(f"unknown format {fmt!r}; use json or csv")
    limit = int_param(request, "limit", 100, low=1, high=MAX_PAGE)
    page = await store.tool_calls(wanted, limit=limit, cursor=request.query_params.get("cursor") or None)
    return json_response({"items": page.items, "nextCursor": page.next_cursor})


async def stats(request: Request) -> Response:
    return json_response(await manager_of(request).store.tool_call_stats(audit_filter(request)))


async def _csv(store: EventStore, wanted: AuditFilter) -> AsyncIterator[str]:
    """RFC 4180: CRLF line ends, quotes where needed; one page of rows at a time."""
    yield _csv_lines([CSV_COLUMNS])
    cursor: str | None = None
    while True:
        page = await store.tool_calls(wanted, limit=CSV_PAGE, cursor=cursor)
        yield _csv_lines([[_cell(row, column) for column in CSV_COLUMNS] for row in page.items])
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def _csv_lines(rows: list[Any]) -> str:
    import csv  # with the first CSV export, not at every start

    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


def _cell(row: dict[str, Any], column: str) -> object:
    value = row.get(column)
    if column == "locations":
        places = value if isinstance(value, list) else []
        return "; ".join(
            f"{p.get('path')}:{p['line']}" if isinstance(p.get("line"), int) else str(p.get("path"))
            for p in places
            if isinstance(p, dict)
        )
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value


async def usage(request: Request) -> Response:
    unknown = set(request.query_params) - {"groupBy", "since", "until"}
    if unknown:
        raise InvalidInput(f"unknown query parameters {sorted(unknown)}; use groupBy, since, until")
    query = request.query_params
    report = await manager_of(request).store.usage(
        query.get("groupBy") or "session", since=query.get("since") or None, until=query.get("until") or None
    )
    return json_response(report)


ROUTES: Final = [
    Route("/v1/usage", usage, methods=["GET"]),
    Route("/v1/audit/tool-calls", tool_calls, methods=["GET"]),
    Route("/v1/audit/stats", stats, methods=["GET"]),
]
