"""Daemon layer: the session records over ACP, as ``_acpd/`` extension methods: what REST offers at
``/v1/sessions/{id}/export|turns``, ``/v1/sessions/import``, ``PATCH /v1/sessions/{id}`` (rename,
archive, project), ``/v1/audit/tool-calls|stats`` and ``/v1/usage``, for an editor that speaks only
ACP. A thin edge like ``records`` and ``audit``: the formats, the indexes and the checks are theirs;
it must not know which transport it runs on.

An export over ACP is one answer, so it is capped (``EXPORT_CAP``): a longer one is refused with a
pointer to the REST export, which streams; JSON and JSON lines can also be read a page of records at
a time (``afterSeq``, ``limit``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from acpd.errors import InvalidInput, PayloadTooLarge, SessionNotFound, StoreLocked
from acpd.protocol import jsonio, methods
from acpd.protocol.jsonio import JsonObject, JsonValue
from acpd.store.base import AuditFilter

from . import records, session_files
from .audit import FILTERS
from .bodies import checked
from .http import MAX_PAGE
from .manager import SessionManager

Handler = Callable[[JsonObject, JsonObject], Awaitable[JsonValue]]

EXPORT_CAP: Final = 16 * 1024 * 1024
"""Characters of one export (or import) over ACP: a JSON-RPC answer is held whole by both ends."""
IMPORT_FIELDS: Final = ("id", "agent", "cwd")
AUDIT_PAGE: Final = 100


class AcpRecords:
    """The handlers of the records' extension methods, for an ``AcpConnection``."""

    def __init__(self, manager: SessionManager) -> None:
        self._manager = manager

    def handlers(self) -> dict[str, Handler]:
        return {
            methods.ACPD_SESSION_EXPORT: self._export,
            methods.ACPD_SESSION_IMPORT: self._import,
            methods.ACPD_SESSION_UPDATE: self._update,
            methods.ACPD_SESSION_TURNS: self._turns,
            methods.ACPD_AUDIT_TOOL_CALLS: self._tool_calls,
            methods.ACPD_AUDIT_STATS: self._stats,
            methods.ACPD_USAGE: self._usage,
        }

    async def _export(self, params: JsonObject, message: JsonObject) -> JsonValue:
        _only(params, "sessionId", "format", "afterSeq", "limit")
        session_id = _session_id(params)
        fmt = _text(params, "format") or "json"
        if fmt not in records.FORMATS:
            raise InvalidInput(f"unknown export format {fmt!r}; use one of {sorted(records.FORMATS)}")
        doc, upto = await self._committed(session_id)
        if "afterSeq" in params or "limit" in params:
            return await self._page(doc, upto, fmt, params)
        content = await _joined(records.export_chunks(self._manager, doc, upto, fmt), session_id)
        return {"format": fmt, "mimeType": records.FORMATS[fmt], "content": content}

    async def _page(self, doc: JsonObject, upto: int, fmt: str, params: JsonObject) -> JsonValue:
        """A page of the session's records: the export's records after ``afterSeq``, as objects."""
        if fmt == "markdown":
            raise InvalidInput('"afterSeq" and "limit" page the records of format json or jsonl, not markdown')
        after = _int(params, "afterSeq", 0, high=upto)
        limit = _int(params, "limit", records.EXPORT_PAGE, low=1, high=records.EXPORT_PAGE)
        page = await self._manager.store.read(str(doc["id"]), after=after, limit=min(limit, upto - after))
        answer: JsonObject = {
            "format": fmt,
            "session": session_files.header_object(doc),
            "records": [jsonio.loads(record.to_json()) for record in page] if after < upto else [],
        }
        last = page[-1].seq if page and after < upto else after
        if last < upto:
            answer["nextAfterSeq"] = last
        return answer

    async def _import(self, params: JsonObject, message: JsonObject) -> JsonValue:
        _only(params, "content", *IMPORT_FIELDS)
        content = params.get("content")
        if not isinstance(content, str):
            raise InvalidInput('"content" must be the text of a session\'s export (format json or jsonl)')
        if len(content) > EXPORT_CAP:
            raise PayloadTooLarge(
                f"an import over ACP is at most {EXPORT_CAP} characters; POST /v1/sessions/import takes more"
            )
        exported = session_files.parse(content.encode())
        overrides = {name: value for name in IMPORT_FIELDS if isinstance(value := params.get(name), str) and value}
        runtime = await self._manager.import_session(exported.session, exported.records, overrides)
        return {"session": runtime.wire()}

    async def _update(self, params: JsonObject, message: JsonObject) -> JsonValue:
        session_id = _session_id(params)
        body = checked({key: value for key, value in params.items() if key != "sessionId"}, "SessionPatch")
        runtime = await self._manager.update(session_id, body)
        return {"session": runtime.wire()}

    async def _turns(self, params: JsonObject, message: JsonObject) -> JsonValue:
        _only(params, "sessionId")
        session_id = _session_id(params)
        await self._committed(session_id)
        return {"items": await self._manager.store.turns(session_id)}

    async def _committed(self, session_id: str) -> tuple[JsonObject, int]:
        """The session as REST shows it, and how far its log is committed. A session another
        daemon serves (a shared database) is read from the table, which holds all it committed:
        a read needs no owner."""
        try:
            async with self._manager.leased(session_id) as runtime:
                return runtime.wire(), runtime.log.committed_seq
        except StoreLocked:
            doc = await self._manager.store.get_session(session_id)
            if doc is None:
                raise SessionNotFound(f"session {session_id!r} not found") from None
            upto = await self._manager.store.last_seq(session_id)
            return {**doc, "lastSeq": upto}, upto

    async def _tool_calls(self, params: JsonObject, message: JsonObject) -> JsonValue:
        _only(params, *FILTERS, "cursor", "limit")
        limit = _int(params, "limit", AUDIT_PAGE, low=1, high=MAX_PAGE)
        cursor = _text(params, "cursor")
        page = await self._manager.store.tool_calls(_audit_filter(params), limit=limit, cursor=cursor)
        answer: JsonObject = {"items": page.items}
        if page.next_cursor is not None:
            answer["nextCursor"] = page.next_cursor
        return answer

    async def _stats(self, params: JsonObject, message: JsonObject) -> JsonValue:
        _only(params, *FILTERS)
        return await self._manager.store.tool_call_stats(_audit_filter(params))

    async def _usage(self, params: JsonObject, message: JsonObject) -> JsonValue:
        _only(params, "groupBy", "since", "until")
        report = await self._manager.store.usage(
            _text(params, "groupBy") or "session", since=_text(params, "since"), until=_text(params, "until")
        )
        return report


async def _joined(chunks: records.Chunks, session_id: str) -> str:
    parts: list[str] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > EXPORT_CAP:
            raise PayloadTooLarge(
                f"session {session_id!r} exports to more than {EXPORT_CAP} characters, more than one ACP"
                ' answer should hold: page its records with "afterSeq" and "limit", or use'
                f" GET /v1/sessions/{session_id}/export, which streams"
            )
        parts.append(chunk)
    return "".join(parts)


def _audit_filter(params: JsonObject) -> AuditFilter:
    return AuditFilter(**{FILTERS[name]: value for name in FILTERS if (value := _text(params, name))})


def _only(params: JsonObject, *names: str) -> None:
    unknown = set(params) - {*names, "_meta"}
    if unknown:
        raise InvalidInput(f"unknown params {sorted(unknown)}; this method takes {sorted(names)}")


def _session_id(params: JsonObject) -> str:
    session_id = params.get("sessionId")
    if not isinstance(session_id, str) or not session_id:
        raise InvalidInput('"sessionId" must be a non-empty string')
    return session_id


def _text(params: JsonObject, name: str) -> str | None:
    value = params.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f'"{name}" must be a string')
    return value or None


def _int(params: JsonObject, name: str, default: int, *, low: int = 0, high: int) -> int:
    value = params.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidInput(f'"{name}" must be an integer from {low} to {high}')
    return value
