"""Daemon layer: one prompt turn's bookkeeping: what it saw, why it must stop, what it answered.

Pure state plus small helpers; it neither talks to the agent nor writes the log.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from acpd.errors import AcpdError, InvalidInput
from acpd.protocol.jsonio import JsonObject

TEXT_LIMIT_CHARS: Final = 1_000_000
"""Agent text kept for a blocking prompt's answer; the full text is always in the event log."""


@dataclass(slots=True)
class Turn:
    """A prompt from submission to its recorded answer."""

    prompt: list[JsonObject]
    idempotency_key: str | None = None
    origin: str | None = None
    """The ACP client connection that sent the prompt, if any (it already knows what it sent)."""
    number: int = 0
    # asyncio's events, not anyio's: four a prompt, and anyio's looks its backend up at each
    # creation (the daemon runs on asyncio only; anyio's cancel scopes cancel their waits alike)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    """Set to ask the running turn to end (cancel, a limit, the timeout)."""
    with_agent: bool = False
    """The turn is past its own bookkeeping: its agent starts or has the prompt (a cancel reaches it)."""
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the turn's answer is recorded (appended to the log; it commits when the store can),
    or the turn ended without one (refused, or broken by a bug): at the latest with ``done``."""
    stop_reason_override: str | None = None
    first_seq: int = 0
    last_seq: int = 0
    steps: int = 0
    context_used: int = 0
    context: JsonObject = field(default_factory=dict)
    """``contextUsed`` / ``contextSize`` from the turn's last ``usage_update``."""
    tokens_spent: int = 0
    """Tokens the turn has cost so far, when the agent reports it (``_meta.acpd.turnTokens``)."""
    text_parts: list[str] = field(default_factory=list)
    text_chars: int = 0
    text_truncated: bool = False
    """The answer's ``text`` stops at ``TEXT_LIMIT_CHARS``; the event log has it all."""
    response: JsonObject | None = None
    error: AcpdError | None = None
    on_stop: Callable[[], None] | None = None
    """Called at the first stop request while set (the running turn's guard starts enforcing it)."""

    def request_stop(self, stop_reason: str | None = None) -> None:
        if stop_reason is not None and self.stop_reason_override is None:
            self.stop_reason_override = stop_reason
        if self.stop.is_set():
            return
        self.stop.set()
        if self.on_stop is not None:
            self.on_stop()

    def add_text(self, text: str) -> None:
        room = TEXT_LIMIT_CHARS - self.text_chars
        if len(text) > room:
            self.text_truncated = True
            text = text[: max(room, 0)]
        if text:
            self.text_parts.append(text)
            self.text_chars += len(text)

    def add_texts(self, texts: list[str]) -> None:
        """``add_text`` of each, in order."""
        size = sum(map(len, texts))
        if self.text_chars + size > TEXT_LIMIT_CHARS:
            for text in texts:
                self.add_text(text)
            return
        self.text_parts += texts
        self.text_chars += size

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def _usage(self, reported: object) -> JsonObject | None:
        """The agent's ``usage`` with the context the turn's ``usage_update``s told: the same for
        every agent, whichever of the two it reports (Codex only the context)."""
        if not isinstance(reported, dict) and not self.context:
            return None
        return {**(reported if isinstance(reported, dict) else {}), **self.context}

    def answer(self, session_id: str) -> JsonObject:
        """The blocking prompt's JSON answer (REST)."""
        result = self.response.get("result") if self.response else None
        result = result if isinstance(result, dict) else {}
        answer: dict[str, Any] = {
            "sessionId": session_id,
            "turn": self.number,
            "stopReason": result.get("stopReason"),
            "usage": self._usage(result.get("usage")),
            "steps": self.steps,
            "text": self.text,
            "firstSeq": self.first_seq,
            "lastSeq": self.last_seq,
        }
        if self.text_truncated:
            answer["textTruncated"] = True
        if self.response is not None and "error" in self.response:
            answer["error"] = self.response["error"]
        return answer


def chunk_text(update: JsonObject) -> str | None:
    content = update.get("content")
    if isinstance(content, dict) and content.get("type") == "text":
        text = content.get("text")
        return text if isinstance(text, str) else None
    return None


def usage_totals(previous: JsonObject, result_usage: object) -> JsonObject:
    """Add a prompt response's ``usage`` to the session's running totals."""
    totals = dict(previous)
    if isinstance(result_usage, dict):
        for key in (
            "inputTokens",
            "outputTokens",
            "totalTokens",
            "thoughtTokens",
            "cachedReadTokens",
            "cachedWriteTokens",
        ):
            value = result_usage.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                totals[key] = int(totals.get(key) or 0) + value
    return totals


PLAIN_BLOCKS: Final = frozenset({"text", "resource_link"})
"""Content blocks every ACP agent takes."""
ATTACHMENT_NEEDS: Final = {"image": "image", "audio": "audio", "resource": "embeddedContext"}
"""The other blocks, and the ``promptCapabilities`` flag an agent must set to take each."""


def check_attachments(blocks: list[JsonObject], capabilities: object, agent: str) -> None:
    """Refuse, before the turn starts, a block the session's agent does not take or that is not
    well formed: an agent would drop it or fail on it, and the user would not know.

    Raises:
        InvalidInput: naming the block by its index, and what is wrong with it.
    """
    offered = capabilities.get("promptCapabilities") if isinstance(capabilities, dict) else None
    offered = offered if isinstance(offered, dict) else {}
    for index, block in enumerate(blocks):
        kind = block["type"]
        if kind in PLAIN_BLOCKS:
            continue
        need = ATTACHMENT_NEEDS.get(kind)
        if need is None:
            raise InvalidInput(f"prompt block {index}: {kind!r} is not an ACP content block type")
        if offered.get(need) is not True:
            raise InvalidInput(
                f"prompt block {index} is {kind!r}, which agent {agent!r} does not take"
                f" (its promptCapabilities.{need} is not true)"
            )
        problem = _attachment_problem(block)
        if problem is not None:
            raise InvalidInput(f"prompt block {index} ({kind}): {problem}")


def _attachment_problem(block: JsonObject) -> str | None:
    if block["type"] == "resource":
        resource = block.get("resource")
        if not isinstance(resource, dict) or not isinstance(resource.get("uri"), str):
            return '"resource" must be an object with a "uri"'
        if not isinstance(resource.get("text"), str) and not _base64(resource.get("blob")):
            return 'the resource needs a "text" or a base64 "blob"'
        return None
    if not isinstance(block.get("mimeType"), str) or not block["mimeType"]:
        return 'it needs its "mimeType"'
    if not _base64(block.get("data")):
        return '"data" must be the content in base64'
    return None


def _base64(value: object) -> bool:
    if not isinstance(value, str) or not value:
        return False
    try:
        base64.b64decode(value, validate=True)
    except ValueError:
        return False
    return True
