"""Daemon layer: the one table of the HTTP face's operations, from which the OpenAPI spec is built
(``openapi``): for each route and method, what it takes, what it answers and the problems it may
answer with; and ``PROBLEMS``, every problem ``type`` the daemon answers with, its status and when.
Pure data: no routing, no models (they are named, and imported only when the spec is built).

A test fails when the app serves a route this table does not describe, or raises a problem kind
``PROBLEMS`` does not list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

PROBLEMS: Final[dict[str, tuple[int, str]]] = {
    "invalid-input": (400, "the request is malformed: a body, a parameter or a header that does not fit"),
    "agent-not-found": (400, "no configured agent has that name"),
    "cors-refused": (400, "a cross-origin preflight the daemon does not allow"),
    "malformed-request": (400, "HTTP the server cannot parse, or a WebSocket handshake it cannot take"),
    "unauthorized": (401, "the bearer token is missing or wrong"),
    "origin-not-allowed": (403, "the Origin header is not one of the allowed origins"),
    "forbidden": (403, "a WebSocket handshake the app closed before accepting it (no such WebSocket route)"),
    "not-found": (404, "no such route"),
    "session-not-found": (404, "no session with that id"),
    "permission-not-found": (404, "no pending permission request with that id"),
    "acp-connection-not-found": (404, "no ACP-over-HTTP connection with that id"),
    "method-not-allowed": (405, "the route does not take that method"),
    "conflict": (409, "the request conflicts with the resource's state"),
    "session-busy": (409, "a turn is running and the prompt asked not to queue"),
    "session-exists": (409, "a session with the chosen id already exists"),
    "session-closed": (409, "the session was closed or deleted before the turn ran"),
    "acp-connection-closed": (409, "the ACP connection was deleted while the request waited"),
    "not-acceptable": (406, "the request's Accept header does not take what the route answers with"),
    "payload-too-large": (413, "the body is larger than max_body_bytes"),
    "unsupported-media-type": (415, "the body is not sent as JSON"),
    "host-not-allowed": (421, "the Host header is not allowed (DNS-rebinding protection)"),
    "invalid-setting": (422, "a model, mode or config value the agent does not offer"),
    "upgrade-required": (426, "the route speaks WebSocket only"),
    "internal-error": (500, "a bug: the daemon logged the details"),
    "batch-not-supported": (501, "a JSON-RPC batch (an array) where one message is taken"),
    "store-error": (500, "the database failed"),
    "agent-error": (502, "the agent failed"),
    "agent-exited": (502, "the agent's process exited"),
    "rpc-error": (502, "the agent answered a request with an error"),
    "connection-closed": (502, "the agent's connection closed"),
    "agent-unavailable": (503, "the agent cannot start here (not installed, no credentials, no sandbox)"),
    "store-locked": (503, "another acpd process owns the database"),
    "agent-start-timeout": (504, "the agent did not start in time"),
    "store-full": (507, "the database or its disk is full"),
}
"""Every problem kind the HTTP face answers with: its status and when."""

EDGE: Final = ("host-not-allowed", "origin-not-allowed", "payload-too-large", "internal-error")
TOKEN: Final = ("unauthorized",)
BODY: Final = ("invalid-input", "unsupported-media-type")
STORE: Final = ("store-error", "store-full", "store-locked")
SESSION: Final = ("session-not-found", *STORE)
AGENT_START: Final = ("agent-not-found", "agent-unavailable", "agent-error", "agent-exited", "agent-start-timeout")
AGENT_RUN: Final = (*AGENT_START, "connection-closed", "rpc-error")


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # path, query or header
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Op:
    """One route and method: what it takes and what it answers."""

    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    ok: int = 200
    answer: str | None = None
    """The success body's model name in ``acpd.api`` (None: no body, or ``media`` says what)."""
    media: str = ""
    """The success body's media type when it is not a model's JSON (a page, an SSE stream)."""
    also_media: tuple[str, ...] = ()
    """More media types the success body may come as, beside the model's JSON (an export's formats)."""
    body: str | None = None
    body_media: tuple[str, ...] = ("application/json",)
    params: tuple[Param, ...] = ()
    problems: tuple[str, ...] = ()
    open: bool = False
    """Served without the bearer token (it holds no data); Host and Origin are still checked."""
    description: str = ""
    body_required: bool = True
    """False: no body is a body too (a create with every default, a PATCH that changes nothing)."""
    extra_responses: dict[str, Any] = field(default_factory=dict)
    answer_headers: dict[str, Any] = field(default_factory=dict)
    """Headers of the success answer, as OpenAPI header objects."""


SESSION_ID = Param("id", "path", {"type": "string"}, "the session's id", required=True)
CONNECTION_ID = Param(
    "id", "path", {"type": "string"}, "the ACP connection's id (the client chooses it)", required=True
)
ACP_REMOTE: Final = ("acp-connection-not-found", "session-not-found", "batch-not-supported")
ACP_CONNECTION_HEADER = Param("Acp-Connection-Id", "header", {"type": "string"}, "the connection initialize opened")
ACP_SESSION_HEADER = Param("Acp-Session-Id", "header", {"type": "string"}, "the session a message or stream is for")
SEQ = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
AFTER = Param("after", "query", SEQ, "start after this seq (0: from the start)")
LAST_EVENT_ID = Param(
    "Last-Event-ID", "header", {"type": "string", "pattern": "^[0-9]+$"}, "resume after this seq; wins over ?after="
)

AUDIT_FILTERS: Final = (
    Param("session", "query", {"type": "string"}),
    Param("agent", "query", {"type": "string"}),
    Param("project", "query", {"type": "string"}),
    Param("kind", "query", {"type": "string"}, "ACP tool kind: read, edit, execute, …"),
    Param("status", "query", {"type": "string"}),
    Param("decidedBy", "query", {"type": "string"}, "who settled its permission request"),
    Param("since", "query", {"type": "string", "format": "date-time"}),
    Param("until", "query", {"type": "string", "format": "date-time"}),
)

OPERATIONS: Final[tuple[Op, ...]] = (
    Op("get", "/v1/health", "health", "Liveness and version", "daemon", answer="Health", open=True),
    Op("get", "/v1/openapi.json", "openapi", "This OpenAPI 3.1 description", "daemon", answer=None, open=True),
    Op("get", "/docs", "docs", "The spec rendered as a page", "daemon", media="text/html", open=True),
    Op(
        "get",
        "/docs/{asset}",
        "docsAsset",
        "A script or style sheet of the docs page",
        "daemon",
        media="*/*",
        params=(Param("asset", "path", {"type": "string"}, "the file's name", required=True),),
        problems=("not-found", "unauthorized"),  # only the page's own files are open
        open=True,
    ),
    Op(
        "get", "/ui", "inspector", "The web inspector, a page built on this API", "daemon", media="text/html", open=True
    ),
    Op(
        "get",
        "/ui/{asset}",
        "inspectorAsset",
        "A script module or style sheet of the web inspector",
        "daemon",
        media="*/*",
        params=(Param("asset", "path", {"type": "string"}, "the file's name", required=True),),
        problems=("not-found", "unauthorized"),  # only the page's own files are open
        open=True,
    ),
    Op("get", "/v1/agents", "listAgents", "Agents, with availability and why not", "agents", answer="AgentList"),
    Op(
        "post",
        "/v1/agents/{name}/install",
        "installAgent",
        "Install a preset's pinned npm packages, with progress",
        "agents",
        media="text/event-stream",
        params=(Param("name", "path", {"type": "string"}, "the preset's name", required=True),),
        problems=("agent-not-found", "conflict"),
        body_required=False,
        description=(
            "The install runs while the answer streams: `event: progress` (`name`, `elapsedSeconds`, "
            "`bytesOnDisk`), then `event: done` (`name`, `program`) or `event: error` (a problem, "
            "`urn:acpd:problem:install-failed`, with npm's output tail in `data`). One install of a preset "
            "at a time (409); a client that goes away stops it."
        ),
    ),
    Op(
        "post",
        "/v1/sessions",
        "createSession",
        "Create a session and start its agent",
        "sessions",
        ok=201,
        answer="Session",
        body="SessionCreate",
        body_required=False,
        problems=(*BODY, *AGENT_START, "session-exists", "invalid-setting", *STORE),
        answer_headers={
            "Location": {"required": True, "schema": {"type": "string"}, "description": "/v1/sessions/{id}"}
        },
    ),
    Op(
        "get",
        "/v1/sessions",
        "listSessions",
        "Sessions, newest first (with q: best match first), a page at a time",
        "sessions",
        answer="SessionPage",
        params=(
            Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}),
            Param("cursor", "query", {"type": "string"}, "the previous page's nextCursor"),
            Param("project", "query", {"type": "string"}),
            Param("agent", "query", {"type": "string"}),
            Param(
                "archived",
                "query",
                {"type": "string", "enum": ["true", "false", "any"]},
                "false (the default): archived sessions are hidden; true: only them; any: both",
            ),
            Param(
                "q",
                "query",
                {"type": "string"},
                "full-text search over titles, prompts and replies; every word must appear; best match first,"
                " each item with match: {kind, snippet}",
            ),
        ),
        problems=("invalid-input", *STORE),
    ),
    Op(
        "post",
        "/v1/sessions/import",
        "importSession",
        "Recreate a session, with its whole history, from a JSON or JSON-lines export",
        "sessions",
        ok=201,
        answer="Session",
        body="SessionExport",
        body_media=("application/json", "application/jsonl"),
        params=(
            Param("id", "query", {"type": "string"}, "the new session's id (default: the exported one)"),
            Param("agent", "query", {"type": "string"}, "the agent it runs on (default: the exported one)"),
            Param("cwd", "query", {"type": "string"}, "its directory (default: the exported one)"),
        ),
        problems=("invalid-input", "agent-not-found", "session-exists", *STORE),
        description="A malformed or truncated file is refused whole (400, naming its line); nothing is made of it.",
    ),
    Op(
        "get",
        "/v1/sessions/{id}/export",
        "exportSession",
        "The session and its events as a download: JSON, JSON lines or a Markdown transcript",
        "sessions",
        answer="SessionExport",
        media="application/jsonl",
        also_media=("text/markdown",),
        params=(
            SESSION_ID,
            Param("format", "query", {"type": "string", "enum": ["json", "jsonl", "markdown"], "default": "json"}),
        ),
        problems=("invalid-input", *SESSION),
    ),
    Op(
        "post",
        "/v1/gc",
        "collectSessions",
        "Delete the sessions last updated longer ago than olderThan (those in use are kept)",
        "sessions",
        answer="GcResult",
        body="GcRequest",
        problems=(*BODY, *STORE),
    ),
    Op(
        "post",
        "/v1/sessions/{id}/fork",
        "forkSession",
        "A new session with this one's history up to atSeq",
        "sessions",
        ok=201,
        answer="Session",
        body="SessionFork",
        body_required=False,
        params=(SESSION_ID,),
        problems=(*BODY, *SESSION, *AGENT_START, "session-exists"),
    ),
    Op(
        "get",
        "/v1/sessions/{id}/turns",
        "listTurns",
        "The session's turns: prompt preview, stopReason, usage, steps, times, seq range",
        "turns",
        answer="TurnList",
        params=(SESSION_ID,),
        problems=SESSION,
    ),
    Op(
        "get",
        "/v1/audit/tool-calls",
        "auditToolCalls",
        "Every tool call across sessions, filtered, a page at a time or all as CSV",
        "audit",
        answer="ToolCallPage",
        media="text/csv",
        params=(
            *AUDIT_FILTERS,
            Param("format", "query", {"type": "string", "enum": ["json", "csv"], "default": "json"}),
            Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
            Param("cursor", "query", {"type": "string"}, "the previous page's nextCursor"),
        ),
        problems=("invalid-input", *STORE),
    ),
    Op(
        "get",
        "/v1/audit/stats",
        "auditStats",
        "Tool calls counted by kind, status, reply and who decided",
        "audit",
        answer="AuditStats",
        params=AUDIT_FILTERS,
        problems=("invalid-input", *STORE),
    ),
    Op(
        "get",
        "/v1/usage",
        "usage",
        "Tokens and cost, added up by session, agent, project, model or day",
        "audit",
        answer="UsageReport",
        params=(
            Param(
                "groupBy",
                "query",
                {"type": "string", "enum": ["session", "agent", "project", "model", "day"], "default": "session"},
            ),
            Param("since", "query", {"type": "string", "format": "date-time"}),
            Param("until", "query", {"type": "string", "format": "date-time"}),
        ),
        problems=("invalid-input", *STORE),
    ),
    Op(
        "get",
        "/v1/sessions/{id}",
        "getSession",
        "A session",
        "sessions",
        answer="Session",
        params=(SESSION_ID,),
        problems=SESSION,
    ),
    Op(
        "patch",
        "/v1/sessions/{id}",
        "updateSession",
        "Change a session's settings, policy or agent (all or nothing)",
        "sessions",
        answer="Session",
        body="SessionPatch",
        body_required=False,
        params=(SESSION_ID,),
        problems=(*BODY, *SESSION, *AGENT_START, "invalid-setting"),
    ),
    Op(
        "delete",
        "/v1/sessions/{id}",
        "deleteSession",
        "Stop its agent, delete the session and its events",
        "sessions",
        ok=204,
        params=(SESSION_ID,),
        problems=SESSION,
    ),
    Op(
        "post",
        "/v1/sessions/{id}/prompt",
        "prompt",
        "Run one turn; the answer when it ends, or its events as SSE",
        "turns",
        answer="PromptAnswer",
        body="PromptRequest",
        params=(
            SESSION_ID,
            Param(
                "Idempotency-Key",
                "header",
                {"type": "string"},
                "a retry with the same key gets the first answer (Idempotent-Replayed: true) instead of a second turn",
            ),
        ),
        problems=(*BODY, *SESSION, *AGENT_RUN, "session-busy", "session-closed"),
        answer_headers={
            "Idempotent-Replayed": {
                "schema": {"type": "string", "enum": ["true"]},
                "description": "the stored answer of an earlier prompt with the same Idempotency-Key",
            }
        },
        description=(
            "With `Accept: text/event-stream` the turn's records are streamed as they commit (the same "
            "events as /events/stream) and the stream ends with the turn."
        ),
    ),
    Op(
        "post",
        "/v1/sessions/{id}/cancel",
        "cancel",
        "Cancel the running turn",
        "turns",
        answer="CancelAnswer",
        params=(SESSION_ID,),
        problems=SESSION,
    ),
    Op(
        "get",
        "/v1/sessions/{id}/events",
        "listEvents",
        "A page of the session's event log",
        "events",
        answer="EventsPage",
        params=(
            SESSION_ID,
            AFTER,
            Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 10000, "default": 200}),
        ),
        problems=("invalid-input", *SESSION),
    ),
    Op(
        "get",
        "/v1/sessions/{id}/events/stream",
        "streamEvents",
        "The session's events as SSE: replayed, then live",
        "events",
        media="text/event-stream",
        params=(SESSION_ID, AFTER, LAST_EVENT_ID),
        problems=("invalid-input", *SESSION),
        description=(
            "Each event is `id: <seq>` and `data: <EventRecord JSON>`; `: keep-alive` comments come while "
            "idle; a store failure is an `event: error` whose data is a Problem. The stream does not end "
            "while the session lives: reconnect with Last-Event-ID to resume without loss or repeats."
        ),
    ),
    Op(
        "get",
        "/v1/sessions/{id}/permissions",
        "listPermissions",
        "Pending permission requests",
        "permissions",
        answer="PermissionList",
        params=(SESSION_ID,),
        problems=SESSION,
    ),
    Op(
        "post",
        "/v1/sessions/{id}/permissions/{pid}",
        "answerPermission",
        "Answer a permission request",
        "permissions",
        answer="PermissionAnswer",
        body="PermissionReply",
        params=(SESSION_ID, Param("pid", "path", {"type": "string"}, "the request's id", required=True)),
        problems=(*BODY, *SESSION, "permission-not-found", "conflict"),
    ),
    Op("get", "/v1/acp", "listAcpConnections", "ACP-over-HTTP connections", "acp", answer="AcpConnectionList"),
    Op(
        "post",
        "/v1/acp/{id}",
        "postAcpMessage",
        "Send one ACP JSON-RPC message on a connection (created on first use)",
        "acp",
        answer="JsonRpcMessage",
        body="JsonRpcMessage",
        params=(CONNECTION_ID, Param("agent", "query", {"type": "string"}, "the agent a new connection runs")),
        problems=(*BODY, *STORE, "agent-not-found", "conflict", "acp-connection-closed"),
        description="A request is answered (200) with its response; a notification or a response gets 202.",
        extra_responses={"202": {"description": "accepted (a notification or a response)"}},
    ),
    Op(
        "get",
        "/v1/acp/{id}",
        "streamAcpMessages",
        "The connection's messages as SSE (`event: message`), replayed from Last-Event-ID",
        "acp",
        media="text/event-stream",
        params=(CONNECTION_ID, LAST_EVENT_ID, AFTER),
        problems=("invalid-input", "acp-connection-not-found", *STORE),
    ),
    Op(
        "delete",
        "/v1/acp/{id}",
        "deleteAcpConnection",
        "Close a connection",
        "acp",
        ok=204,
        params=(CONNECTION_ID,),
        problems=STORE,
        description="Deleting a connection that does not exist (or no longer) is not an error.",
    ),
    Op(
        "post",
        "/acp",
        "postAcpRemoteMessage",
        "Send one ACP JSON-RPC message (ACP's Streamable HTTP transport)",
        "acp",
        answer="JsonRpcMessage",
        body="JsonRpcMessage",
        params=(
            ACP_CONNECTION_HEADER,
            ACP_SESSION_HEADER,
            Param("agent", "query", {"type": "string"}, "the agent a new connection's sessions run by default"),
        ),
        problems=(*BODY, *STORE, *ACP_REMOTE, "agent-not-found", "conflict", "acp-connection-closed"),
        description=(
            "`initialize` without Acp-Connection-Id opens a connection: 200 with the answer, the id in the "
            "Acp-Connection-Id header. Any other message names its connection and gets 202; a request's "
            "answer comes on a stream (GET). prompt, cancel, set_mode, set_config_option and close also "
            "need Acp-Session-Id."
        ),
        answer_headers={"Acp-Connection-Id": {"schema": {"type": "string"}, "description": "the new connection's id"}},
        extra_responses={"202": {"description": "accepted: an answer, if any, comes on a stream"}},
    ),
    Op(
        "get",
        "/acp",
        "streamAcpRemote",
        "A connection's stream, or with Acp-Session-Id a session's, as SSE; or a WebSocket on upgrade",
        "acp",
        media="text/event-stream",
        params=(ACP_CONNECTION_HEADER, ACP_SESSION_HEADER, LAST_EVENT_ID),
        problems=("invalid-input", "not-acceptable", "acp-connection-not-found", "session-not-found", *STORE),
        description=(
            "Each event is `event: message`, `id: <n>` and `data: <JSON-RPC message>`; reconnect with "
            "Last-Event-ID to resume. With `Upgrade: websocket` the same conversation runs over a "
            "WebSocket (one message per text frame; the 101 carries Acp-Connection-Id)."
        ),
    ),
    Op(
        "delete",
        "/acp",
        "deleteAcpRemoteConnection",
        "End a connection (its sessions live on)",
        "acp",
        ok=202,
        params=(ACP_CONNECTION_HEADER,),
        problems=("invalid-input", "acp-connection-not-found", *STORE),
    ),
    Op(
        "get",
        "/v1/rpc",
        "rpc",
        "ACP JSON-RPC over a WebSocket (one message per text frame)",
        "acp",
        ok=101,
        problems=("upgrade-required", "malformed-request"),
        description="Upgrade to a WebSocket; a browser may pass the token as ?access_token=. A plain GET gets 426.",
    ),
    Op(
        "get",
        "/v1/sessions/{id}/link",
        "sessionClientLink",
        "A client link between daemons sharing a database (JSON-RPC over a WebSocket)",
        "acp",
        ok=101,
        params=(SESSION_ID,),
        problems=("upgrade-required", "malformed-request"),
        description=(
            "Opened by a daemon sharing the database, for an ACP client attached there to a session"
            " this daemon serves: one `_acpd/client_link` request names the client and its capabilities,"
            " then the agent's `fs/*` and `terminal/*` requests come down the link to it. A plain GET gets 426."
        ),
    ),
)

SSE_NOTE: Final = {
    "/v1/sessions/{id}/events/stream": "EventRecord",
    "/v1/sessions/{id}/prompt": "EventRecord",
    "/v1/acp/{id}": "JsonRpcMessage",
}
"""The model each SSE route's ``data:`` lines carry (described as ``x-sse-data``)."""
