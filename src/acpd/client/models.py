"""Client layer: what the daemon answers, as pydantic models. No I/O.

The wire models are the API's own (``acpd.api.models``, the ones the OpenAPI spec is generated
from: ``Session``, ``Agent``, ``PermissionAnswer``), re-exported here, ``PermissionRequest`` and
``Usage`` with a few conveniences; ``PromptResult`` is the client's: a turn's answer,
from a blocking prompt or added up from a streamed one. Every model keeps the members it does not
name (``model_extra``): a newer daemon's additions reach an older client intact. Fields are
snake_case in Python and camelCase on the wire, as the daemon writes them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from acpd.api import models as api
from acpd.api.models import (
    Agent,
    AuditStats,
    GcResult,
    PermissionAnswer,
    Session,
    ToolCallPage,
    TurnList,
    UsageReport,
)

__all__ = [
    "Agent",
    "AuditStats",
    "PermissionAnswer",
    "PermissionRequest",
    "PromptResult",
    "Session",
    "ToolCallPage",
    "TurnList",
    "Usage",
    "UsageReport",
    "GcResult",
]

REPLY_OPTION_KINDS: dict[str, tuple[str, ...]] = {
    "once": ("allow_once", "allow_always"),
    "always": ("allow_always", "allow_once"),
    "reject": ("reject_once", "reject_always"),
}
"""Which ACP option kinds each short reply picks, in order of preference (the daemon's rule)."""


class Usage(api.Usage):
    """Tokens the agent reported for a turn, its cost, and how full the context is after it."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    cost: Any = None
    context_used: int | None = None
    context_size: int | None = None


class PromptResult(BaseModel):
    """A turn's answer: how it stopped, the agent's text, and what it spent.

    ``error`` is the agent's JSON-RPC error when it answered the prompt with one (then
    ``stop_reason`` is None)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True)

    session_id: str
    turn: int
    stop_reason: str | None = None
    usage: Usage | None = None
    steps: int = 0
    text: str = ""
    text_truncated: bool = False
    first_seq: int = 0
    last_seq: int = 0
    error: dict[str, Any] | None = None


class PermissionRequest(api.PermissionRequest):
    """A pending permission request: the tool call the agent wants to run and the options offered."""

    @property
    def title(self) -> str:
        return (self.tool_call.title if self.tool_call else None) or "a tool call"

    @property
    def tool_kind(self) -> str | None:
        return self.tool_call.kind if self.tool_call else None

    def option_for(self, reply: str) -> Any:
        """The option (ACP ``PermissionOption``) a short reply (``once``, ``always``, ``reject``)
        picks, None if none fits."""
        for kind in REPLY_OPTION_KINDS.get(reply, ()):
            for option in self.options:
                if option.kind == kind:
                    return option
        return None
