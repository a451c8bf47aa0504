"""Protocol layer: what a session's records say about its tool calls, for the audit index. Pure.

One row per tool call and session. The agent's ``tool_call`` update opens it and
``tool_call_update`` changes it; the agent's ``session/request_permission`` marks it asked (with the
request's JSON-RPC id); the client's reply to that request, recorded by acpd with
``_meta.acpd.decidedBy``, says what was answered and by whom. ``changes`` turns one record into the
changes it makes, which a store applies in the transaction that commits the record, so the index is
never behind the log and can be rebuilt from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, NamedTuple

from acpd.protocol import jsonio
from acpd.protocol.events import EventRecord

FINISHED: Final = frozenset({"completed", "failed"})
_MARKS: Final = ('"tool_call', '"session/request_permission"', '"outcome"')


class ToolCallChange(NamedTuple):
    """A tool call opened or changed (``tool_call_id`` set), or a permission reply (``request_id``
    set, ``tool_call_id`` None) for the asked tool call whose request had that id and no reply yet.
    ``None`` fields leave the row's value as it is."""

    session_id: str
    tool_call_id: str | None
    turn: int
    at: str
    kind: str | None = None
    title: str | None = None
    locations: str | None = None  # JSON text
    status: str | None = None
    asked: bool = False
    request_id: str | None = None
    options: str | None = None  # JSON text: the request's option ids and their kinds
    reply: str | None = None
    decided_by: str | None = None


def reply_kind(reply: str | None, options: str | None) -> str | None:
    """How a reply reads whatever the agent named its options: the chosen option's ACP kind
    (``allow_once``, ``allow_always``, ``reject_once``, ``reject_always``), else the outcome
    (``cancelled``, ``error``); None when not answered."""
    if reply is None:
        return None
    kinds = jsonio.loads(options) if options else {}
    kind = kinds.get(reply) if isinstance(kinds, dict) else None
    return kind if isinstance(kind, str) else reply


def changes(record: EventRecord) -> list[ToolCallChange]:
    """The changes ``record`` makes to the index (none for most records: they are checked by a
    substring first, and parsed only when they may be about a tool call)."""
    payload = record.payload
    if not any(mark in payload for mark in _MARKS):
        return []
    message = jsonio.loads(payload)
    if not isinstance(message, dict):
        return []
    method = message.get("method")
    params = _object(message.get("params"))
    if method == "session/update" and record.sender == "agent":
        return _update(record, _object(params.get("update")))
    if method == "session/request_permission" and record.sender == "agent":
        call = _object(params.get("toolCall"))
        if not isinstance(call.get("toolCallId"), str):
            return []
        request_id = jsonio.dumps_str(message.get("id"))
        offered = [option for option in params.get("options") or () if isinstance(option, dict)]  # type: ignore[attr-defined]
        kinds = {str(option.get("optionId")): option.get("kind") for option in offered}
        return [_opened(record, call, request_id=request_id)._replace(options=jsonio.dumps_str(kinds))]
    if method is None and record.sender == "client" and "id" in message:
        return _reply(record, message)
    return []


def _update(record: EventRecord, update: dict[str, object]) -> list[ToolCallChange]:
    if update.get("sessionUpdate") not in ("tool_call", "tool_call_update"):
        return []
    if not isinstance(update.get("toolCallId"), str):
        return []
    return [_opened(record, update)]


def _opened(record: EventRecord, call: dict[str, object], *, request_id: str | None = None) -> ToolCallChange:
    asked = request_id is not None
    locations = call.get("locations")
    return ToolCallChange(
        record.session_id,
        str(call["toolCallId"]),
        record.turn,
        record.at,
        kind=_text(call.get("kind")),
        title=_text(call.get("title")),
        locations=jsonio.dumps_str(locations) if isinstance(locations, list) else None,
        status=None if asked else _text(call.get("status")),
        asked=asked,
        request_id=request_id,
    )


def _reply(record: EventRecord, message: dict[str, object]) -> list[ToolCallChange]:
    request_id = jsonio.dumps_str(message.get("id"))
    if "error" in message:
        return [ToolCallChange(record.session_id, None, record.turn, record.at, request_id=request_id, reply="error")]
    result = _object(message.get("result"))
    outcome = _object(result.get("outcome"))
    if "outcome" not in outcome:
        return []  # a response to another request of the agent's (fs, terminal)
    chosen = outcome.get("optionId") if outcome.get("outcome") == "selected" else outcome.get("outcome")
    decided_by = _text(_object(_object(result.get("_meta")).get("acpd")).get("decidedBy"))
    reply = _text(chosen) or "unknown"
    return [
        ToolCallChange(
            record.session_id, None, record.turn, record.at, request_id=request_id, reply=reply, decided_by=decided_by
        )
    ]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _object(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


# --- turns: the per-turn index that usage reports add up --------------------------------------

PREVIEW_CHARS: Final = 120
TOKEN_FIELDS: Final = ("inputTokens", "outputTokens", "cachedReadTokens", "thoughtTokens", "totalTokens")
_TURN_MARKS: Final = ('"session/prompt"', '"tool_call"', '"usage_update"', '"turn-')


class TurnChange(NamedTuple):
    """What a record says of its turn: it started (the prompt), took a step (a tool call), saw
    the session's cost so far (``usage_update``), or ended (the prompt's answer)."""

    session_id: str
    turn: int
    at: str
    seq: int
    started: bool = False
    preview: str | None = None
    step: bool = False
    cost: float | None = None
    currency: str | None = None
    ended: bool = False
    stop_reason: str | None = None
    error: str | None = None
    tokens: tuple[int | None, ...] = ()  # TOKEN_FIELDS' values from the answer's usage


def turn_changes(record: EventRecord) -> list[TurnChange]:
    """The change ``record`` makes to its turn's row, if any (checked by a substring first)."""
    payload = record.payload
    if record.turn <= 0 or not any(mark in payload for mark in _TURN_MARKS):
        return []
    message = jsonio.loads(payload)
    if not isinstance(message, dict):
        return []
    base = (record.session_id, record.turn, record.at, record.seq)
    method = message.get("method")
    params = _object(message.get("params"))
    if method == "session/prompt" and record.sender == "client":
        return [TurnChange(*base, started=True, preview=_preview(params.get("prompt")))]
    if method == "session/update" and record.sender == "agent":
        update = _object(params.get("update"))
        if update.get("sessionUpdate") == "tool_call":
            return [TurnChange(*base, step=True)]
        cost = _object(update.get("cost"))
        amount = cost.get("amount")
        if update.get("sessionUpdate") == "usage_update" and isinstance(amount, (int, float)):
            return [TurnChange(*base, cost=float(amount), currency=_text(cost.get("currency")))]
        return []
    if method is None and message.get("id") == f"turn-{record.turn}":
        return [_ended(base, message)]
    return []


def _ended(base: tuple[str, int, str, int], message: dict[str, object]) -> TurnChange:
    result = _object(message.get("result"))
    usage = _object(result.get("usage"))
    tokens = tuple(
        value if isinstance(value, int) and not isinstance(value, bool) else None
        for value in map(usage.get, TOKEN_FIELDS)
    )
    error = _object(message.get("error"))
    return TurnChange(
        *base,
        ended=True,
        stop_reason=_text(result.get("stopReason")),
        error=_text(error.get("message")) if error else None,
        tokens=tokens,
    )


def _preview(prompt: object) -> str | None:
    return " ".join(_prompt_text(prompt).split())[:PREVIEW_CHARS] or None


# --- search: the texts full-text search finds sessions by ----------------------------------------


class SearchText(NamedTuple):
    """Text to index for search: a prompt, or a turn's reply as far as one batch carries it."""

    session_id: str
    turn: int
    kind: str  # "prompt" or "reply"
    text: str


def search_texts(records: Iterable[EventRecord]) -> list[SearchText]:
    """The prompts and replies in ``records``; a turn's reply chunks in them joined into one text."""
    found: list[SearchText] = []
    replies: dict[tuple[str, int], list[str]] = {}
    for record in records:
        payload = record.payload
        if record.sender == "client" and '"session/prompt"' in payload:
            message = _object(jsonio.loads(payload))
            if message.get("method") == "session/prompt":
                text = _prompt_text(_object(message.get("params")).get("prompt"))
                if text:
                    found.append(SearchText(record.session_id, record.turn, "prompt", text))
        elif record.sender == "agent" and '"agent_message_chunk"' in payload:
            update = _object(_object(_object(jsonio.loads(payload)).get("params")).get("update"))
            content = _object(update.get("content"))
            if update.get("sessionUpdate") == "agent_message_chunk" and isinstance(content.get("text"), str):
                replies.setdefault((record.session_id, record.turn), []).append(str(content["text"]))
    found += [SearchText(session, turn, "reply", "".join(parts)) for (session, turn), parts in replies.items()]
    return found


def _prompt_text(prompt: object) -> str:
    blocks = prompt if isinstance(prompt, list) else []
    return "\n".join(str(b.get("text")) for b in blocks if isinstance(b, dict) and isinstance(b.get("text"), str))
