"""Test kit, mock model server: what a reply may be, and the ``mock:`` directives that ask for one.

Pure: text in, reply specs out; no I/O, nothing about any model API's wire shapes. A reply spec is
what ``MockModelServer.push`` and ``POST /_mock/script`` queue, and what directives build.

Directives are lines of the newest user turn's text that start with ``mock:`` (case-sensitive):

- ``mock:text=<reply>``, ``mock:tool=<Name> input=<json>``, ``mock:error=<status> [retry-after=<s>]
  [message=<text>]``: the content; when several lines ask for content, the last wins. A tool line
  counts only if the request offers that tool (names compared case-insensitively).
- ``mock:thinking=<text>``, ``mock:delay=<seconds>``, ``mock:cut``: modifiers, each applied on its
  own (the last line of each kind wins) on top of the content, or of the default content.

A malformed line is ordinary text (and logged at warning level), not an error reply.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Final

import orjson
from pydantic import BaseModel, ConfigDict, Field

from acpd.protocol.jsonio import JsonObject

logger = logging.getLogger(__name__)

DIRECTIVE_PREFIX: Final = "mock:"
_ERROR_RE: Final = re.compile(r"(\d{3})(?:\s+retry-after=(\d+(?:\.\d+)?))?(?:\s+message=(.*))?")
_TOOL_RE: Final = re.compile(r"(\S+)(?:\s+input=(.*))?")
_DELAY_RE: Final = re.compile(r"\d+(?:\.\d+)?")


_Parsed = tuple[bool, dict[str, object]]
"""One directive: ``(is_content, reply fields)``."""


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ToolCall(_Spec):
    """One tool call the mock model makes."""

    name: str
    """The tool's name, as the request offers it."""
    input: JsonObject = Field(default_factory=dict)
    """The call's arguments."""


class ErrorReply(_Spec):
    """An HTTP error instead of an answer; the body takes each API's own error shape."""

    status: int = Field(ge=400, le=599)
    """The HTTP status (529 is Anthropic's ``overloaded_error``)."""
    message: str = "mock error"
    """The error's human-readable message."""
    retry_after_seconds: float | None = Field(default=None, ge=0)
    """Sent as a ``retry-after`` header when set."""


class Usage(_Spec):
    """Token counts to report; ``None`` fields get the deterministic defaults."""

    input_tokens: int | None = Field(default=None, ge=0)
    """Default: ``max(1, request body bytes // 4)``."""
    output_tokens: int | None = Field(default=None, ge=0)
    """Default: ``max(1, characters of thinking + text + tool-input JSON // 4)``."""


class Reply(_Spec):
    """One scripted answer. Empty content (no text, tool or error) means the default content."""

    text: str | None = None
    """Assistant text (sent before the tool call when both are set)."""
    thinking: str | None = None
    """A thinking block first (Anthropic); a reasoning summary / thought part elsewhere."""
    tool: ToolCall | None = None
    """A tool call (the response then stops for tool use)."""
    error: ErrorReply | None = None
    """Answer with this HTTP error instead (other fields but ``delay_seconds`` are ignored)."""
    delay_seconds: float = Field(default=0.0, ge=0)
    """Wait this long before answering."""
    cut: bool = False
    """Close the connection mid-response (no ``message_stop`` / ``response.completed``)."""
    usage: Usage | None = None
    """Override the reported token counts."""

    def has_content(self) -> bool:
        return self.text is not None or self.tool is not None or self.error is not None

    def filled(self, default: Reply) -> Reply:
        """This reply, with ``default``'s text and tool call when it asks for no content of its own."""
        if self.has_content():
            return self
        return self.model_copy(update={"text": default.text, "tool": default.tool})


def directed_reply(text: str, offered_tools: Sequence[str]) -> Reply | None:
    """The reply the ``mock:`` lines of ``text`` ask for, or ``None`` when there are none."""
    content: dict[str, object] = {}
    modifiers: dict[str, object] = {}
    found = False
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith(DIRECTIVE_PREFIX):
            continue
        parsed = _parse_line(line[len(DIRECTIVE_PREFIX) :], offered_tools)
        if parsed is None:
            continue
        found = True
        is_content, fields = parsed
        if is_content:
            content = fields
        else:
            modifiers.update(fields)
    return Reply.model_validate({**content, **modifiers}) if found else None


def _parse_line(directive: str, offered_tools: Sequence[str]) -> _Parsed | None:
    """``(is_content, reply fields)`` for one directive (without its prefix), or ``None`` to skip it."""
    key, sep, value = directive.partition("=")
    if key == "cut" and not sep:
        return False, {"cut": True}
    if not sep:
        return _malformed(directive)
    if key == "text":
        return True, {"text": value}
    if key == "thinking":
        return False, {"thinking": value}
    if key == "delay" and _DELAY_RE.fullmatch(value):
        return False, {"delay_seconds": float(value)}
    if key == "error":
        return _error_fields(value) or _malformed(directive)
    if key == "tool":
        return _tool_fields(value, offered_tools)
    return _malformed(directive)


def _error_fields(value: str) -> _Parsed | None:
    match = _ERROR_RE.fullmatch(value)
    if match is None or not 400 <= int(match[1]) <= 599:
        return None
    error: dict[str, object] = {"status": int(match[1])}
    if match[2] is not None:
        error["retry_after_seconds"] = float(match[2])
    if match[3] is not None:
        error["message"] = match[3]
    return True, {"error": error}


def _tool_fields(value: str, offered_tools: Sequence[str]) -> _Parsed | None:
    match = _TOOL_RE.fullmatch(value)
    if match is None:
        return _malformed(f"tool={value}")
    name = next((tool for tool in offered_tools if tool.lower() == match[1].lower()), None)
    if name is None:
        return None  # not offered: the directive does not apply to this request
    try:
        arguments = orjson.loads(match[2]) if match[2] else {}
    except orjson.JSONDecodeError:
        return _malformed(f"tool={value}")
    if not isinstance(arguments, dict):
        return _malformed(f"tool={value}")
    return True, {"tool": {"name": name, "input": arguments}}


def _malformed(directive: str) -> _Parsed | None:
    logger.warning("ignoring malformed directive mock:%s", directive)
    return None
