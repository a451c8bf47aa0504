"""API layer: the bodies a client sends to acpd's REST routes, as pydantic models. Pure data.

The daemon validates each body with its model (unknown fields are refused: a misspelt field must
not be silently ignored) before the session manager sees it; the OpenAPI spec is generated from
the same models. What a model cannot know (does that directory exist, does the agent offer that
model) the daemon still checks, and answers with its own problem.

Public names: ``SessionCreate``, ``SessionPatch``, ``PolicyFields``, ``PromptRequest``, ``PromptBlock``,
``PermissionReply``, ``McpServer``, ``SessionFork``. Only pydantic is imported here (not ACP's schema package): the
daemon checks bodies with these models and must stay quick to its first answer.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

SESSION_ID_PATTERN = r"^[A-Za-z0-9\-_.:]{1,128}$"
"""Ids a client may choose: URL- and log-safe. ``.`` and ``..`` fit it but are refused by the daemon
(URL clients resolve them away); the pattern language of JSON Schema here has no look-ahead to say so."""

PermissionPolicy: TypeAlias = Literal["ask", "allow", "deny", "allow_reads"]
ReplyKind: TypeAlias = Literal["once", "always", "reject"]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def unchanged(description: str | None = None, **options: Any) -> Any:
    """A field that may be left out (it keeps its value) but not sent as null: no default in the spec."""
    return Field(None, description=description, json_schema_extra=_no_default, **options)


class _Strict(BaseModel):
    """A request body: unknown fields are refused, fields go by their wire (camelCase) names."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)


class PolicyFields(_Strict):
    """A session's permissions and limits; each field left out keeps its current (or default) value.
    ``null`` means no limit."""

    permissions: PermissionPolicy = unchanged(
        "ask: ask a client; allow/deny: answer every request so; allow_reads: allow reads, ask the rest",
    )
    max_steps: int | None = Field(None, alias="maxSteps", ge=0, description="tool calls allowed per turn")
    max_budget_tokens: int | None = Field(
        None, alias="maxBudgetTokens", ge=0, description="tokens the session may spend in all"
    )
    turn_timeout_seconds: float | None = Field(None, alias="turnTimeoutSeconds", gt=0)
    permission_timeout_seconds: float | None = Field(
        None, alias="permissionTimeoutSeconds", gt=0, description="how long a permission request waits for a reply"
    )
    show_thinking: bool = unchanged(
        alias="showThinking", description="false: agent_thought_chunk updates are neither recorded nor streamed"
    )


class McpServer(BaseModel):
    """An ACP MCP server description (stdio, http or sse), passed to the agent as given."""

    model_config = ConfigDict(extra="allow")

    name: Annotated[str, Field(min_length=1)]


class _Settings(_Strict):
    """The settings a create sets and a PATCH changes. ``model``, ``mode`` and ``thoughtLevel`` must
    be values the agent offers (else 422 invalid-setting); ``config`` sets the agent's other
    config options by id."""

    title: str | None = None
    project: str | None = None
    model: str | None = None
    mode: str | None = None
    thought_level: str | None = Field(None, alias="thoughtLevel")


class WarmUpFile(BaseModel):
    """A file inside the session's directories (relative to ``cwd``, or absolute), read at create."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1)


class WarmUpText(BaseModel):
    """A text to put in front of the first prompt."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1)


class SessionCreate(_Settings):
    """``POST /v1/sessions``: a new session and its agent."""

    context: list[WarmUpFile | WarmUpText] | None = Field(
        None,
        max_length=32,
        description="the session's warm-up: files and texts that go in front of its first prompt, as embedded"
        " resources (or text, to an agent that takes none)",
    )

    config: dict[str, Any] | None = Field(None, description="config option id -> value")
    policy: PolicyFields | None = None

    id: Annotated[str | None, Field(pattern=SESSION_ID_PATTERN, description="a client-chosen id; default: random")] = (
        None
    )
    agent: str | None = Field(None, description="a configured agent's name (GET /v1/agents); default: the daemon's")
    cwd: str | None = Field(None, description="an absolute path to an existing directory; default: the daemon's own")
    mcp_servers: list[McpServer] | None = Field(None, alias="mcpServers")
    additional_directories: list[str] | None = Field(
        None, alias="additionalDirectories", description="more absolute directories the agent may use"
    )


class SessionPatch(_Settings):
    """``PATCH /v1/sessions/{id}``: change what is given; the rest stays. Applied whole or not at all."""

    # left out: unchanged; none of these may be null
    config: dict[str, Any] = unchanged("config option id -> value")
    policy: PolicyFields = unchanged()
    archived: bool = unchanged()
    agent: str = unchanged("switch the session to another agent (not while a turn runs)")


class PromptBlock(BaseModel):
    """An ACP content block (``text``, ``image``, ``audio``, ``resource_link``, ``resource``), checked
    here for its ``type`` only: the agent checks the rest, and a block of a newer ACP passes through.
    The spec shows ACP's own ``ContentBlock`` schema (the daemon does not import ACP's models, whose
    import alone takes longer than the daemon takes to start)."""

    model_config = ConfigDict(extra="allow")

    type: str


PROMPT_BLOCK_SCHEMA: Final = {"$ref": "#/components/schemas/ContentBlock"}


class PromptRequest(_Strict):
    """``POST /v1/sessions/{id}/prompt``: one turn."""

    prompt: (
        Annotated[str, Field(min_length=1)]
        | Annotated[list[Annotated[PromptBlock, WithJsonSchema(PROMPT_BLOCK_SCHEMA)]], Field(min_length=1)]
    ) = Field(description="text, or a list of ACP content blocks")
    queue: bool = Field(True, description="false: refuse (409 session-busy) rather than wait behind a running turn")


class PermissionReply(_Strict):
    """``POST /v1/sessions/{id}/permissions/{pid}``: ``reply`` (once, always, reject) or an ``optionId``."""

    reply: ReplyKind | None = None
    option_id: str | None = Field(None, alias="optionId", description="one of the request's options, by id")


class SessionFork(_Strict):
    """``POST /v1/sessions/{id}/fork``: a new session with this one's history up to ``atSeq``."""

    id: Annotated[
        str | None, Field(pattern=SESSION_ID_PATTERN, description="the new session's id; default: random")
    ] = None
    at_seq: int = unchanged(
        alias="atSeq", ge=0, description="the last seq to keep; default: the end of the last finished turn"
    )
    agent: str = unchanged("the new session's agent; default: the source's")
    title: str | None = Field(None, description="default: the source's title with (fork)")
    cwd: str | None = Field(None, description="default: the source's directory")


class GcRequest(_Strict):
    """``POST /v1/gc``: delete the sessions last updated longer ago than ``olderThan``."""

    older_than: str | Annotated[float, Field(ge=0, le=3_153_600_000)] = Field(
        alias="olderThan", description="an age: 30d, 12h, 90m, 3600s, or seconds (0: any session not in use)"
    )
    archived_only: bool = Field(False, alias="archivedOnly", description="only archived sessions")
    dry_run: bool = Field(False, alias="dryRun", description="say what would be deleted; delete nothing")
    vacuum: bool = Field(False, description="then compact the database file (writes wait while it runs)")
