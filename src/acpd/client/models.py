"""Client layer: what the daemon answers, as pydantic models. No I/O.

Every model keeps the members it does not name (``extra="allow"``, read them with
``model_extra`` or ``model_dump()``): a newer daemon's additions reach an older client intact.
Fields are snake_case in Python and camelCase on the wire, as the daemon writes them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

REPLY_OPTION_KINDS: dict[str, tuple[str, ...]] = {
    "once": ("allow_once", "allow_always"),
    "always": ("allow_always", "allow_once"),
    "reject": ("reject_once", "reject_always"),
}
"""Which ACP option kinds each short reply picks, in order of preference (the daemon's rule)."""


class Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True)


class Usage(Model):
    """Tokens the agent reported (for a turn, or a session's running totals) and the context's fill."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cost: Any = None
    context_used: int | None = None
    context_size: int | None = None


class Session(Model):
    """A session as ``GET /v1/sessions/{id}`` shows it."""

    id: str
    agent: str
    status: str = "idle"
    cwd: str | None = None
    title: str | None = None
    project: str | None = None
    model: str | None = None
    mode: str | None = None
    thought_level: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    config_options: list[dict[str, Any]] | None = None
    modes: dict[str, Any] | None = None
    policy: dict[str, Any] | None = None
    created_at: str | None = None
    updated_at: str | None = None
    archived_at: str | None = None
    usage: Usage | None = None
    turns: int = 0
    last_seq: int = 0
    pending_permissions: int = 0
    queued_prompts: int = 0


class Agent(Model):
    """A configured backend as ``GET /v1/agents`` lists it."""

    name: str
    kind: str
    command: Any = None
    available: bool = False
    usable: bool = False
    reasons: list[str] = Field(default_factory=list)
    reason: str | None = None


class PromptResult(Model):
    """A turn's answer: how it stopped, the agent's text, and what it spent.

    ``error`` is the agent's JSON-RPC error when it answered the prompt with one (then
    ``stop_reason`` is None)."""

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


class PermissionOption(Model):
    option_id: str
    name: str = ""
    kind: str = ""


class PermissionRequest(Model):
    """A pending permission request: the tool call the agent wants to run and the options offered."""

    id: str
    seq: int
    turn: int = 0
    created_at: str | None = None
    tool_call: dict[str, Any] | None = None
    options: list[PermissionOption] = Field(default_factory=list)
    available_replies: list[str] = Field(default_factory=list)

    @property
    def title(self) -> str:
        return str((self.tool_call or {}).get("title") or "a tool call")

    @property
    def tool_kind(self) -> str | None:
        kind = (self.tool_call or {}).get("kind")
        return kind if isinstance(kind, str) else None

    def option_for(self, reply: str) -> PermissionOption | None:
        """The option a short reply (``once``, ``always``, ``reject``) picks, None if none fits."""
        for kind in REPLY_OPTION_KINDS.get(reply, ()):
            for option in self.options:
                if option.kind == kind:
                    return option
        return None


class PermissionAnswer(Model):
    """The daemon's answer to a permission reply: the ACP outcome sent to the agent."""

    id: str
    outcome: dict[str, Any]
