"""API layer: what acpd's REST routes answer, as pydantic models. Pure data.

Responses are read leniently (unknown fields kept, ``extra="allow"``): the daemon may add a field and
an older client must still read it. The spec says the same (``additionalProperties`` is not false).

Public names: ``Health``, ``Session``, ``SessionPage``, ``Usage``, ``Policy``, ``Agent``,
``AgentList``, ``PromptAnswer``, ``CancelAnswer``, ``PermissionRequest``, ``PermissionList``,
``PermissionAnswer``, ``SessionExport``, ``TurnList``, ``ToolCallPage``, ``AuditStats``,
``UsageReport``, ``Problem``, ``AcpConnection``, ``AcpConnectionList``, ``SessionStatus``.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

from acp import schema
from pydantic import BaseModel, ConfigDict, Field

from .events import EventRecord
from .requests import PermissionPolicy

SessionStatus: TypeAlias = Literal["idle", "running", "awaiting_permission", "error", "closed"]
PROBLEM_TYPE_PREFIX = "urn:acpd:problem:"


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Health(_Answer):
    status: Literal["ok"]
    version: str


class Policy(_Answer):
    """A session's permissions and limits as they are; ``null`` is no limit."""

    permissions: PermissionPolicy
    max_steps: int | None = Field(alias="maxSteps")
    max_budget_tokens: int | None = Field(alias="maxBudgetTokens")
    turn_timeout_seconds: float | None = Field(alias="turnTimeoutSeconds")
    permission_timeout_seconds: float | None = Field(alias="permissionTimeoutSeconds")
    show_thinking: bool = Field(alias="showThinking")


class Usage(_Answer):
    """Tokens and cost as the agent reported them; any field may be missing."""

    input_tokens: int | None = Field(None, alias="inputTokens")
    output_tokens: int | None = Field(None, alias="outputTokens")
    total_tokens: int | None = Field(None, alias="totalTokens")


class Session(_Answer):
    """A session as ``GET /v1/sessions/{id}`` shows it."""

    id: str
    agent: str
    cwd: str
    title: str | None
    project: str | None
    model: str | None
    mode: str | None
    thought_level: str | None = Field(alias="thoughtLevel")
    config: dict[str, Any]
    config_options: list[dict[str, Any]] = Field(alias="configOptions", description="the agent's ACP config options")
    modes: dict[str, Any] | None = Field(description="the agent's ACP session modes, when it has them")
    policy: Policy
    status: SessionStatus
    created_at: str = Field(alias="createdAt", json_schema_extra={"format": "date-time"})
    updated_at: str = Field(alias="updatedAt", json_schema_extra={"format": "date-time"})
    archived_at: str | None = Field(alias="archivedAt")
    usage: Usage
    turns: int = Field(ge=0)
    backend_session_id: str | None = Field(alias="backendSessionId")
    agent_info: dict[str, Any] | None = Field(alias="agentInfo")
    mcp_servers: list[dict[str, Any]] = Field(alias="mcpServers")
    additional_directories: list[str] = Field(alias="additionalDirectories")
    last_seq: int | None = Field(None, alias="lastSeq", ge=0, description="the last committed event's seq")
    pending_permissions: int | None = Field(None, alias="pendingPermissions", ge=0)
    queued_prompts: int | None = Field(None, alias="queuedPrompts", ge=0)


class SearchMatch(_Answer):
    """Why a session matched a search: the text that matched best, and a snippet of it."""

    kind: Literal["title", "turn"]
    snippet: str = Field(description="the matching words in [brackets], with some text around them")


class ListedSession(Session):
    """A session in a listing; with ``match`` when the listing is a search (``?q=``)."""

    match: SearchMatch | None = None


class SessionPage(_Answer):
    """One page of sessions, newest first: read on with ``?cursor=nextCursor`` until it is null."""

    items: list[ListedSession]
    next_cursor: str | None = Field(alias="nextCursor")


class AgentCredentials(_Answer):
    present: bool | None = Field(description="null: the agent needs none")
    source: str | None


class Agent(_Answer):
    """A configured agent, whether it can run here and, if not, why."""

    name: str
    kind: str
    preset: str | None
    description: str | None
    command: list[str]
    path: str | None
    source: str | None
    version: str | None
    model_url: str | None = Field(alias="modelUrl")
    credentials: AgentCredentials
    available: bool = Field(description="installed (its program found)")
    usable: bool = Field(description="installed and with credentials: a session can start on it")
    reason: str | None = Field(description="why it is not usable, with the fix")
    reasons: list[str]


class AgentList(_Answer):
    items: list[Agent]


class PromptAnswer(_Answer):
    """A finished turn. ``stopReason`` is ACP's; ``error`` is the agent's JSON-RPC error, when it failed."""

    session_id: str = Field(alias="sessionId")
    turn: int = Field(ge=0)
    stop_reason: str | None = Field(alias="stopReason", description="end_turn, cancelled, max_tokens, …")
    usage: dict[str, Any] | None
    steps: int = Field(ge=0, description="tool calls in the turn")
    text: str = Field(description="the agent's message text, joined")
    text_truncated: bool | None = Field(None, alias="textTruncated")
    first_seq: int = Field(alias="firstSeq", ge=0)
    last_seq: int = Field(alias="lastSeq", ge=0)
    error: dict[str, Any] | None = None


class CancelAnswer(_Answer):
    cancelled: bool = Field(description="whether a turn was running to cancel")


class PermissionRequest(_Answer):
    """A pending ACP ``session/request_permission``; reply by ``availableReplies`` or an option's id."""

    id: str
    seq: int = Field(ge=1, description="the request's record in the session's log")
    turn: int = Field(ge=0)
    created_at: str = Field(alias="createdAt", json_schema_extra={"format": "date-time"})
    tool_call: schema.ToolCallUpdate | None = Field(alias="toolCall")
    options: list[schema.PermissionOption]
    available_replies: list[Literal["once", "always", "reject"]] = Field(alias="availableReplies")


class PermissionList(_Answer):
    items: list[PermissionRequest]


class PermissionAnswer(_Answer):
    """The outcome sent to the agent (ACP ``RequestPermissionOutcome``)."""

    id: str
    outcome: dict[str, Any]


class AcpConnection(_Answer):
    server_id: str = Field(alias="serverId")
    agent: str | None
    created_at_ms: int = Field(alias="createdAtMs")


class AcpConnectionList(_Answer):
    servers: list[AcpConnection]


class SessionExport(_Answer):
    """A session exported as JSON (``?format=json``), as ``POST /v1/sessions/import`` takes it back.
    A JSON-lines export is the same: this object without ``events`` on its first line, then one
    ``EventRecord`` a line."""

    acpd_export: int = Field(alias="acpdExport", ge=1, description="the export format's version")
    session: Session
    events: list[EventRecord] | None = None


class TurnList(_Answer):
    """A session's turns, oldest first: prompt preview, stopReason, usage, steps, times, seq range."""

    items: list[dict[str, Any]]


class ToolCallPage(_Answer):
    """A page of the tool-call audit (one row per tool call across sessions): read on with ``?cursor=``."""

    items: list[dict[str, Any]]
    next_cursor: str | None = Field(alias="nextCursor")


class AuditStats(_Answer):
    """Tool calls counted by kind, status, reply and who decided (each a name -> count object)."""


class UsageReport(_Answer):
    """Tokens and cost of the turns, added up by ``groupBy``, with the total."""

    group_by: str = Field(alias="groupBy")
    items: list[dict[str, Any]]
    total: dict[str, Any]


class GcResult(_Answer):
    """What a collection deleted, and the sessions it kept because they were in use."""

    deleted: list[str]
    kept: list[str] = Field(description="old enough, but in use (a turn, a permission, a follower)")
    dry_run: bool = Field(alias="dryRun")
    reclaimed_bytes: int | None = Field(
        None, alias="reclaimedBytes", description="with vacuum: bytes the file shrank by"
    )


class Problem(_Answer):
    """An error (RFC 9457 problem details). ``type`` is stable per kind: ``urn:acpd:problem:<kind>``."""

    type: str = Field(pattern=r"^urn:acpd:problem:[a-z-]+$")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    data: Any = None
