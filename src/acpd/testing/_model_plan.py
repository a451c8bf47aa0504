"""Test kit, mock model server: which reply a request gets. Pure; no I/O, no model API's wire shapes.

Each API module reduces its request to a ``Turn`` (the newest user turn's text, its first tool
result, the offered tools, whether JSON was asked for); ``choose`` then picks, in order:

1. a router check (Gemini's JSON-mime requests) gets ``ROUTER_JSON``, always;
2. a *conversation* request takes the next scripted reply, if one is queued;
3. the ``mock:`` directives of the newest user text;
4. the default: after a tool result, ``All done. Tool said: …``; else a call to a known shell tool
   if one is offered; else ``Hello from the mock model.``.

Conversation requests are those that offer at least one tool and are not router checks. The rule
exists because the queue is positional: agents also send housekeeping requests (Gemini's router and
next-speaker checks, opencode's and Claude Code's tool-less title requests) whose number and timing
vary by agent version, and a housekeeping request that took a scripted reply would shift every later
one. Directives travel with the prompt text instead, so they apply to whatever request carries it,
tool-less ones included (a plain SDK call without tools can still use ``mock:text=``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import orjson

from acpd.protocol.jsonio import JsonObject
from acpd.testing._model_replies import Reply, ToolCall, Usage, directed_reply

PlanKind = Literal["text", "tool", "error", "json"]

RESULT_PREVIEW_CHARS: Final = 200
BYTES_PER_TOKEN: Final = 4
HELLO_TEXT: Final = "Hello from the mock model."
SHELL_COMMAND: Final = "echo hi"
ANTHROPIC_BASH_INPUT: Final[JsonObject] = {"command": SHELL_COMMAND, "description": "Print hi"}
SHELL_TOOL_NAMES: Final = ("shell_command", "shell", "exec_command", "run_shell_command", "bash")
"""Known shell tools, most preferred first (Codex, Gemini CLI, opencode and others)."""
ROUTER_JSON: Final = orjson.dumps(
    {
        "reasoning": "The mock model always answers the same way.",
        "complexity_reasoning": "The mock model treats every task as simple.",
        "complexity_score": 1,
        "model_choice": "flash",
        "next_speaker": "user",
    }
).decode()
"""The answer to every JSON-mime request: it satisfies Gemini CLI's router and next-speaker checks."""


class Family(enum.Enum):
    """Which default tool call an API gets: Anthropic's ``Bash`` shape, or one built from the schema."""

    ANTHROPIC = "anthropic"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    schema: Mapping[str, object] = field(default_factory=dict)
    """The tool's JSON schema for its arguments (``{}`` when the request gave none)."""


@dataclass(frozen=True, slots=True)
class Said:
    """One conversation entry as the plan sees it: who said it, its texts, its tool results."""

    role: Literal["user", "assistant", "ignored"]
    texts: tuple[str, ...] = ()
    results: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Turn:
    text: str = ""
    """The newest user turn's text (directives are read from it)."""
    tool_result: str | None = None
    """The first tool result in the newest user turn, if it carries any."""
    tools: tuple[ToolSpec, ...] = ()
    wants_json: bool = False
    """A structured-output (JSON-mime) request: a router or next-speaker check."""

    @property
    def is_conversation(self) -> bool:
        return bool(self.tools) and not self.wants_json


@dataclass(frozen=True, slots=True)
class TokenCount:
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class Plan:
    kind: PlanKind
    reply: Reply
    """The resolved reply: its content filled from the default when it asked for none."""
    scripted: bool = False
    """It came from the scripted queue."""

    def usage(self, body_bytes: int) -> TokenCount:
        """What the response reports (and the request log records)."""
        override = self.reply.usage or Usage()
        default_in = max(1, body_bytes // BYTES_PER_TOKEN)
        default_out = max(1, len(generated_text(self.reply)) // BYTES_PER_TOKEN)
        return TokenCount(
            default_in if override.input_tokens is None else override.input_tokens,
            default_out if override.output_tokens is None else override.output_tokens,
        )


def newest_user_turn(entries: Sequence[Said]) -> tuple[str, str | None]:
    """The text and first tool result of the trailing run of user entries, skipping ignored ones.

    Ignored entries are system/developer messages, which Claude Code and Codex interleave with the
    user's own (Claude Code even after the prompt).
    """
    run: list[Said] = []
    for said in reversed(entries):
        if said.role == "assistant":
            break
        if said.role == "user":
            run.append(said)
    run.reverse()
    results = [result for said in run for result in said.results]
    return "\n".join(text for said in run for text in said.texts), (results[0] if results else None)


def choose(turn: Turn, family: Family, take_scripted: Callable[[], Reply | None]) -> Plan:
    """The plan for one request; ``take_scripted`` is called only for conversation requests."""
    if turn.wants_json:
        return Plan("json", Reply(text=ROUTER_JSON))
    default = default_reply(turn, family)
    scripted = take_scripted() if turn.is_conversation else None
    if scripted is not None:
        return _plan(scripted.filled(default), scripted=True)
    directed = directed_reply(turn.text, [tool.name for tool in turn.tools])
    return _plan(directed.filled(default) if directed is not None else default, scripted=False)


def default_reply(turn: Turn, family: Family) -> Reply:
    if turn.tool_result is not None:
        return Reply(text=f"All done. Tool said: {turn.tool_result[:RESULT_PREVIEW_CHARS]}")
    call = default_shell_call(turn.tools, family)
    return Reply(tool=call) if call is not None else Reply(text=HELLO_TEXT)


def default_shell_call(tools: Sequence[ToolSpec], family: Family) -> ToolCall | None:
    by_name = {tool.name.lower(): tool for tool in tools}
    if family is Family.ANTHROPIC and "bash" in by_name:
        return ToolCall(name=by_name["bash"].name, input=dict(ANTHROPIC_BASH_INPUT))
    for name in SHELL_TOOL_NAMES:
        if name in by_name:
            return ToolCall(name=by_name[name].name, input=shell_arguments(by_name[name].schema))
    return None


def shell_arguments(schema: Mapping[str, object]) -> JsonObject:
    """``echo hi`` in the shape the tool's schema asks for (Gemini schemas may spell types upper-case)."""
    properties = schema.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    if "cmd" in properties:
        return {"cmd": SHELL_COMMAND}
    command = properties.get("command")
    kind = str(command.get("type", "")).lower() if isinstance(command, Mapping) else ""
    if kind == "array":
        return {"command": ["bash", "-lc", SHELL_COMMAND]}
    return {"command": SHELL_COMMAND}


def generated_text(reply: Reply) -> str:
    """Everything the model "wrote", for the default output token count."""
    tool = orjson.dumps(reply.tool.input).decode() if reply.tool is not None else ""
    return (reply.thinking or "") + (reply.text or "") + tool


def _plan(reply: Reply, *, scripted: bool) -> Plan:
    kind: PlanKind = "error" if reply.error is not None else "tool" if reply.tool is not None else "text"
    return Plan(kind, reply, scripted)
