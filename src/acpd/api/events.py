"""API layer: the event record a session's log is made of, and the ACP ``session/update`` variants
its payloads carry, as pydantic models. Pure data; no I/O, no daemon.

Public names (stable; the Python client and the OpenAPI spec use them):

- ``EventRecord``: one record, ``{seq, sessionId, at, sender, turn, payload}``, as
  ``GET /v1/sessions/{id}/events`` lists it and each SSE ``data:`` line carries it.
- ``Payload``: the record's JSON-RPC message; a ``session/update`` notification is parsed into
  ``SessionUpdateNotification`` and every other message into ``JsonRpcMessage`` (fields kept as
  sent; also importable as ``Message``).
- ``SessionUpdate``: one update variant. A variant ACP names is parsed into its
  ``agent-client-protocol`` model (``AgentMessageChunk``, ``ToolCallStart``, …); a variant this
  version does not know is kept whole as ``UnknownUpdate``, so a newer agent never breaks an older
  reader. ``_meta`` is kept on every variant (``field_meta`` in ACP's models).
- ``EventsPage``: one page of ``GET /v1/sessions/{id}/events``.
- ``Sender``: who a record came from.
- ``ContentBlock``: an ACP content block (ACP's models, by ``type``).

Records are read leniently (unknown fields are kept): the daemon may add a field to a record
and an older client must still read it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeAlias

from acp import schema
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

Sender: TypeAlias = Literal["client", "agent", "daemon"]

KNOWN_UPDATES: dict[str, type[schema.BaseModel]] = {
    "user_message_chunk": schema.UserMessageChunk,
    "agent_message_chunk": schema.AgentMessageChunk,
    "agent_thought_chunk": schema.AgentThoughtChunk,
    "tool_call": schema.ToolCallStart,
    "tool_call_update": schema.ToolCallProgress,
    "plan": schema.AgentPlanUpdate,
    "plan_update": schema.AgentPlanContentUpdate,
    "plan_removed": schema.AgentPlanRemovedUpdate,
    "available_commands_update": schema.AvailableCommandsUpdate,
    "current_mode_update": schema.CurrentModeUpdate,
    "config_option_update": schema.ConfigOptionUpdate,
    "session_info_update": schema.SessionInfoUpdate,
    "usage_update": schema.UsageUpdate,
}
"""Each ``sessionUpdate`` tag ACP's schema names, and its model."""

UNKNOWN_TAG = "unknown"


ContentBlock: TypeAlias = Annotated[
    schema.TextContentBlock
    | schema.ImageContentBlock
    | schema.AudioContentBlock
    | schema.ResourceContentBlock
    | schema.EmbeddedResourceContentBlock,
    Field(discriminator="type"),
]
"""An ACP content block, as a prompt carries them and a message chunk holds one."""


class UnknownUpdate(BaseModel):
    """An update variant this version of acpd does not know: every field is kept as sent."""

    model_config = ConfigDict(extra="allow")

    session_update: Annotated[str, Field(alias="sessionUpdate")]


def _update_tag(value: Any) -> str:
    """The variant a raw or parsed update is: its ``sessionUpdate`` when ACP names it, else unknown."""
    if isinstance(value, dict):
        tag = value.get("sessionUpdate", value.get("session_update"))
    else:
        tag = getattr(value, "session_update", None)
    return tag if isinstance(tag, str) and tag in KNOWN_UPDATES else UNKNOWN_TAG


SessionUpdate: TypeAlias = Annotated[
    Annotated[schema.UserMessageChunk, Tag("user_message_chunk")]
    | Annotated[schema.AgentMessageChunk, Tag("agent_message_chunk")]
    | Annotated[schema.AgentThoughtChunk, Tag("agent_thought_chunk")]
    | Annotated[schema.ToolCallStart, Tag("tool_call")]
    | Annotated[schema.ToolCallProgress, Tag("tool_call_update")]
    | Annotated[schema.AgentPlanUpdate, Tag("plan")]
    | Annotated[schema.AgentPlanContentUpdate, Tag("plan_update")]
    | Annotated[schema.AgentPlanRemovedUpdate, Tag("plan_removed")]
    | Annotated[schema.AvailableCommandsUpdate, Tag("available_commands_update")]
    | Annotated[schema.CurrentModeUpdate, Tag("current_mode_update")]
    | Annotated[schema.ConfigOptionUpdate, Tag("config_option_update")]
    | Annotated[schema.SessionInfoUpdate, Tag("session_info_update")]
    | Annotated[schema.UsageUpdate, Tag("usage_update")]
    | Annotated[UnknownUpdate, Tag(UNKNOWN_TAG)],
    Discriminator(_update_tag),
]
"""One ``session/update`` variant: ACP's model for a known ``sessionUpdate``, else ``UnknownUpdate``."""


class SessionUpdateParams(BaseModel):
    """The params of a ``session/update`` notification; ``sessionId`` is the daemon's session id."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    session_id: Annotated[str, Field(alias="sessionId")]
    update: SessionUpdate
    meta: Annotated[dict[str, Any] | None, Field(alias="_meta")] = None


class JsonRpcMessage(BaseModel):
    """A JSON-RPC 2.0 message as it crossed the daemon: a request (``id`` and ``method``), a
    notification (``method`` only; acpd's own frames are named ``_acpd/…``), or a response
    (``id`` with ``result`` or ``error``). Every field is kept as sent."""

    model_config = ConfigDict(extra="allow")

    jsonrpc: Literal["2.0"] = "2.0"
    id: int | str | None = None
    method: str | None = None
    params: Any = None
    result: Any = None
    error: Any = None


Message = JsonRpcMessage
"""The name this module first gave ``JsonRpcMessage``; kept for readers that import it."""


class SessionUpdateNotification(BaseModel):
    """A ``session/update`` notification, its update parsed into a ``SessionUpdate`` variant."""

    model_config = ConfigDict(extra="allow")

    jsonrpc: Literal["2.0"] = "2.0"
    method: Literal["session/update"]
    params: SessionUpdateParams


def _payload_tag(value: Any) -> str:
    method = value.get("method") if isinstance(value, dict) else getattr(value, "method", None)
    has_id = ("id" in value) if isinstance(value, dict) else getattr(value, "id", None) is not None
    return "session_update" if method == "session/update" and not has_id else "message"


Payload: TypeAlias = Annotated[
    Annotated[SessionUpdateNotification, Tag("session_update")] | Annotated[JsonRpcMessage, Tag("message")],
    Discriminator(_payload_tag),
]
"""A record's JSON-RPC message: a ``session/update`` notification parsed, any other kept as sent."""


class EventRecord(BaseModel):
    """One entry of a session's append-only log. ``seq`` starts at 1 and has no gaps."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    seq: Annotated[int, Field(ge=1)]
    session_id: Annotated[str, Field(alias="sessionId")]
    at: Annotated[
        str, Field(description="RFC 3339 UTC time, millisecond precision", json_schema_extra={"format": "date-time"})
    ]
    sender: Sender
    turn: Annotated[int, Field(ge=0, description="the turn this record belongs to; 0 outside any turn")]
    payload: Payload

    @property
    def update(self) -> Any:
        """The ``SessionUpdate`` variant when this record is a ``session/update``, else None."""
        if isinstance(self.payload, SessionUpdateNotification):
            return self.payload.params.update
        return None

    @property
    def method(self) -> str | None:
        return self.payload.method


class EventsPage(BaseModel):
    """One page of a session's log: read on with ``?after=nextAfter`` while ``hasMore``."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    items: list[EventRecord]
    next_after: Annotated[int, Field(alias="nextAfter", ge=0)]
    has_more: Annotated[bool, Field(alias="hasMore")]
