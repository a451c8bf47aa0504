"""Daemon layer: the REST + SSE routes of DESIGN §3.1. A thin edge: parse, call the
SessionManager, respond. No business logic, no storage decisions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from acpd import __version__
from acpd.errors import InvalidInput, PayloadTooLarge, RpcError, StoreLocked, UnsupportedMediaType
from acpd.protocol import jsonio
from acpd.protocol.jsonio import JsonObject

from . import forward, sharing, sse
from .bodies import checked
from .log import SessionLog
from .manager import SessionManager
from .problems import problem

if TYPE_CHECKING:
    from .turns import Turn  # the session engine, which ``acpd serve`` loads with the first session

MAX_PAGE: Final = 1000
DEFAULT_EVENTS_PAGE: Final = 200
MAX_INT_PARAM: Final = 2**63 - 1
"""The largest integer a query parameter or Last-Event-ID may carry: a store's integer column."""


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(jsonio.dumps(value), status_code=status, media_type="application/json", headers=headers)


def manager_of(request: Request) -> SessionManager:
    manager = request.app.state.manager
    assert isinstance(manager, SessionManager)
    return manager


async def read_body(request: Request) -> bytes:
    """The body, refused once it grows past the daemon's limit (also when no Content-Length was sent).

    Raises:
        PayloadTooLarge: it is larger than ``max_body_bytes``.
    """
    read = request.scope.get(forward.BODY_KEY)
    if read is not None:
        return bytes(read)  # an endpoint tried again (forward.after_refusal): the stream was read once
    limit: int = request.app.state.max_body_bytes
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
    request.scope[forward.BODY_KEY] = whole = bytes(body)  # a request sent on to another daemon sends it
    return whole


async def read_json(request: Request) -> JsonObject:
    """The body as a JSON object, within the size and nesting limits (also when no Content-Length
    was sent). A body must be sent as JSON: no Content-Type, ``application/json`` or ``…+json``."""
    _check_json_media_type(request.headers.get("content-type"))
    body = await read_body(request)
    if not body.strip():
        return {}
    try:
        value = jsonio.loads(bytes(body))
    except jsonio.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidInput("the body must be a JSON object")
    if jsonio.nesting_exceeds(body, value):
        raise InvalidInput(f"the body nests arrays and objects deeper than {jsonio.MAX_NESTING} levels")
    return value


def _check_json_media_type(content_type: str | None) -> None:
    if content_type is None:
        return
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType(f"the body must be JSON (Content-Type: application/json), not {media_type!r}")


def int_param(request: Request, name: str, default: int, *, low: int = 0, high: int = MAX_INT_PARAM) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    return _bounded_int(raw, f"query parameter {name!r}", low, high)


def _bounded_int(raw: str, what: str, low: int, high: int) -> int:
    # ASCII digits only, and few enough that int() is cheap and the value fits a store's column
    text = raw.strip()
    digits = text.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()) or len(digits) > len(str(MAX_INT_PARAM)):
        raise InvalidInput(f"{what} must be an integer between {low} and {high}")
    value = int(text)
    if value < low or value > high:
        raise InvalidInput(f"{what} must be an integer between {low} and {high}")
    return value


def replay_after(request: Request) -> int:
    """Where an SSE stream starts: after ``Last-Event-ID`` (a reconnecting EventSource sends the
    last ``id:`` it saw, always a seq), else after ``?after=``, else from the start."""
    last_id = request.headers.get("last-event-id")
    if last_id is not None:
        return _bounded_int(last_id, "Last-Event-ID", 0, MAX_INT_PARAM)
    return int_param(request, "after", 0)


def bool_param(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise InvalidInput(
            f"query parameter {name!r} must be true or false" + (" or any" if name == "archived" else "")
        )
    return raw == "true"


async def health(request: Request) -> Response:
    return json_response({"status": "ok", "version": __version__})


async def agents(request: Request) -> Response:
    from .agents import all_agent_facts  # with ``config``, at the first listing: not at start

    items = await anyio.to_thread.run_sync(all_agent_facts, manager_of(request).config)
    return json_response({"items": items})


async def create_session(request: Request) -> Response:
    runtime = await manager_of(request).create(checked(await read_json(request), "SessionCreate"))
    location = f"/v1/sessions/{runtime.session_id}"
    return json_response(runtime.wire(), status=201, headers={"Location": location})


async def list_sessions(request: Request) -> Response:
    manager = manager_of(request)
    filters = {
        "limit": int_param(request, "limit", 50, low=1, high=MAX_PAGE),
        "cursor": request.query_params.get("cursor") or None,
        "project": request.query_params.get("project"),
        "agent": request.query_params.get("agent"),
        "archived": archived_param(request),
    }
    q = request.query_params.get("q")
    page = await (manager.list_sessions(**filters) if q is None else manager.search_sessions(q, **filters))
    return json_response({"items": page.items, "nextCursor": page.next_cursor})


def archived_param(request: Request) -> bool | None:
    """``archived``: ``false`` (the default: archived sessions are hidden), ``true`` (only them) or
    ``any`` (None: both)."""
    raw = request.query_params.get("archived")
    if raw == "any":
        return None
    if raw is None:
        return False
    return bool_param(request, "archived")


async def get_session(request: Request) -> Response:
    runtime = await manager_of(request).runtime(request.path_params["id"])
    return json_response(runtime.wire())


async def patch_session(request: Request) -> Response:
    body = checked(await read_json(request), "SessionPatch")
    runtime = await manager_of(request).update(request.path_params["id"], body)
    return json_response(runtime.wire())


async def delete_session(request: Request) -> Response:
    await manager_of(request).delete(request.path_params["id"])
    return Response(status_code=204)


async def prompt(request: Request) -> Response:
    manager = manager_of(request)
    session_id = request.path_params["id"]
    body = checked(await read_json(request), "PromptRequest")
    key = request.headers.get("idempotency-key") or None
    if key is not None:
        await manager.runtime(session_id)
        stored = await manager.stored_answer(session_id, key)
        if stored is not None:
            return json_response(stored, headers={"Idempotent-Replayed": "true"})
    # a prompt another daemon sent on names its ACP client, whose link serves the turn's fs and terminals
    origin = request.headers.get(forward.ORIGIN) if request.headers.get(forward.FORWARDED) else None
    turn = await manager.prompt(session_id, body["prompt"], key=key, queue=body.get("queue", True), origin=origin)
    if "text/event-stream" in request.headers.get("accept", ""):
        runtime = await manager.runtime(session_id)
        return StreamingResponse(_turn_stream(runtime.log, turn), media_type="text/event-stream", headers=sse.HEADERS)
    await turn.done.wait()
    return _turn_answer(session_id, turn)


async def _turn_stream(log: SessionLog, turn: Turn) -> AsyncIterator[bytes]:
    await turn.started.wait()
    if turn.first_seq == 0:
        return
    stream = sse.stream_log(log, turn.first_seq - 1, until=lambda seq: seq == turn.last_seq, stop_on_fault=True)
    async for chunk in stream:
        yield chunk


def _turn_answer(session_id: str, turn: Turn) -> Response:
    if turn.number == 0:
        detail = turn.error.message if turn.error else "the turn did not run"
        return problem(409, "session-closed", detail)
    answer = turn.answer(session_id)
    if turn.error is not None and not isinstance(turn.error, RpcError):
        return problem(turn.error.status, turn.error.kind, turn.error.message, **answer)
    return json_response(answer)


async def cancel(request: Request) -> Response:
    cancelled = await manager_of(request).cancel(request.path_params["id"])
    return json_response({"cancelled": cancelled})


async def events(request: Request) -> Response:
    after = int_param(request, "after", 0)
    limit = int_param(request, "limit", DEFAULT_EVENTS_PAGE, low=1, high=MAX_PAGE * 10)
    records, committed = await manager_of(request).events(request.path_params["id"], after=after, limit=limit)
    next_after = records[-1].seq if records else after
    items = ",".join(r.to_json() for r in records)
    body = f'{{"items":[{items}],"nextAfter":{next_after},"hasMore":{"true" if next_after < committed else "false"}}}'
    return Response(body, media_type="application/json")


async def event_stream(request: Request) -> Response:
    manager = manager_of(request)
    session_id = request.path_params["id"]
    after = replay_after(request)
    try:
        runtime = await manager.runtime(session_id)
    except StoreLocked:
        shared = sharing.shared_store(manager.store)
        if shared is None:
            raise
        # another daemon serves it: follow what it commits, from the table
        body = sharing.followed(shared, session_id, after)
        return StreamingResponse(body, media_type="text/event-stream", headers=sse.HEADERS)
    return StreamingResponse(sse.stream_log(runtime.log, after), media_type="text/event-stream", headers=sse.HEADERS)


async def permissions(request: Request) -> Response:
    runtime = await manager_of(request).runtime(request.path_params["id"])
    return json_response({"items": [p.to_wire() for p in runtime.broker.pending()]})


async def reply_permission(request: Request) -> Response:
    runtime = await manager_of(request).runtime(request.path_params["id"])
    result = runtime.reply_permission(request.path_params["pid"], checked(await read_json(request), "PermissionReply"))
    return json_response(result)


ROUTES: Final = [
    Route("/v1/health", health, methods=["GET"]),
    Route("/v1/agents", agents, methods=["GET"]),
    Route("/v1/sessions", create_session, methods=["POST"]),
    Route("/v1/sessions", list_sessions, methods=["GET"]),
    Route("/v1/sessions/{id}", get_session, methods=["GET"]),
    Route("/v1/sessions/{id}", patch_session, methods=["PATCH"]),
    Route("/v1/sessions/{id}", delete_session, methods=["DELETE"]),
    Route("/v1/sessions/{id}/prompt", prompt, methods=["POST"]),
    Route("/v1/sessions/{id}/cancel", cancel, methods=["POST"]),
    Route("/v1/sessions/{id}/events", events, methods=["GET"]),
    Route("/v1/sessions/{id}/events/stream", event_stream, methods=["GET"]),
    Route("/v1/sessions/{id}/permissions", permissions, methods=["GET"]),
    Route("/v1/sessions/{id}/permissions/{pid}", reply_permission, methods=["POST"]),
]
