"""Daemon layer: a session's records out and in: ``GET /v1/sessions/{id}/export`` (JSON, JSON
lines, Markdown) and ``POST /v1/sessions/import``. A thin edge like ``http``: the formats are
``markdown`` and ``session_files``, the session is made by the manager.

An export streams: the committed records are read from the store a page at a time up to where the
log stood when the request came, so a session of any length exports with flat memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Final, TypeAlias

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from acpd.errors import InvalidInput, SessionNotFound
from acpd.protocol.events import EventRecord
from acpd.protocol.jsonio import JsonObject

from . import retention, session_files
from .bodies import checked
from .http import json_response, manager_of, read_body, read_json
from .manager import SessionManager
from .markdown import MarkdownTranscript, header

EXPORT_PAGE: Final = 2_000
"""Records read from the store at a time."""
FORMATS: Final = {
    "json": "application/json",
    "jsonl": "application/jsonl",
    "markdown": "text/markdown; charset=utf-8",
}
SUFFIXES: Final = {"json": "json", "jsonl": "jsonl", "markdown": "md"}
Chunks: TypeAlias = AsyncIterator[str]


async def export(request: Request) -> Response:
    manager = manager_of(request)
    session_id = request.path_params["id"]
    fmt = request.query_params.get("format") or "json"
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown export format {fmt!r}; use one of {sorted(FORMATS)}")
    async with manager.leased(session_id) as runtime:
        doc = runtime.wire()
        upto = runtime.log.committed_seq
    body = export_chunks(manager, doc, upto, fmt)
    disposition = f'attachment; filename="{session_id}.{SUFFIXES[fmt]}"'
    return StreamingResponse(body, media_type=FORMATS[fmt], headers={"Content-Disposition": disposition})


def export_chunks(manager: SessionManager, doc: JsonObject, upto: int, fmt: str) -> Chunks:
    """The export of ``doc``'s session up to ``upto`` in ``fmt`` (one of ``FORMATS``), in pieces."""
    return _markdown(manager, doc, upto) if fmt == "markdown" else _json(manager, doc, upto, lines=fmt == "jsonl")


async def import_session(request: Request) -> Response:
    exported = session_files.parse(await read_body(request))
    overrides = {name: request.query_params[name] for name in ("id", "agent", "cwd") if request.query_params.get(name)}
    runtime = await manager_of(request).import_session(exported.session, exported.records, overrides)
    return json_response(runtime.wire(), status=201)


async def _pages(manager: SessionManager, session_id: str, upto: int) -> AsyncIterator[list[EventRecord]]:
    after = 0
    while after < upto:
        page = await manager.store.read(session_id, after=after, limit=min(EXPORT_PAGE, upto - after))
        if not page:
            return  # deleted meanwhile
        after = page[-1].seq
        yield page


async def _json(manager: SessionManager, doc: Mapping[str, object], upto: int, *, lines: bool) -> AsyncIterator[str]:
    head = session_files.header(doc)
    pages = _pages(manager, str(doc["id"]), upto)
    if lines:
        yield head + "\n"
        async for page in pages:
            yield "".join(record.to_json() + "\n" for record in page)
        return
    yield head[:-1] + ',"events":['  # the header object, left open for the records
    separator = ""
    async for page in pages:
        yield separator + ",".join(record.to_json() for record in page)
        separator = ","
    yield "]}\n"


async def _markdown(manager: SessionManager, doc: JsonObject, upto: int) -> AsyncIterator[str]:
    yield header(doc)
    transcript = MarkdownTranscript()
    async for page in _pages(manager, str(doc["id"]), upto):
        yield "".join(transcript.feed(record) for record in page)
    yield transcript.end()


async def fork(request: Request) -> Response:
    body = checked(await read_json(request), "SessionFork")
    runtime = await manager_of(request).fork(request.path_params["id"], body)
    return json_response(runtime.wire(), status=201)


async def turns(request: Request) -> Response:
    session_id = request.path_params["id"]
    store = manager_of(request).store
    if await store.get_session(session_id) is None:
        raise SessionNotFound(session_id)
    return json_response({"items": await store.turns(session_id)})


async def collect(request: Request) -> Response:
    body = checked(await read_json(request), "GcRequest")
    manager = manager_of(request)
    dry_run = body.get("dryRun") is True
    result = await manager.collect(
        retention.age_seconds(body.get("olderThan")), archived_only=body.get("archivedOnly") is True, dry_run=dry_run
    )
    if body.get("vacuum") is True and not dry_run:
        result["reclaimedBytes"] = await manager.store.compact()
    return json_response(result)


ROUTES: Final = [
    Route("/v1/gc", collect, methods=["POST"]),
    Route("/v1/sessions/{id}/turns", turns, methods=["GET"]),
    Route("/v1/sessions/{id}/fork", fork, methods=["POST"]),
    Route("/v1/sessions/import", import_session, methods=["POST"]),
    Route("/v1/sessions/{id}/export", export, methods=["GET"]),
]
