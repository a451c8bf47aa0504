"""Protocol layer: what a session's records say about its tool calls, for the audit index. Pure.

One row per tool call and session. The agent's ``tool_call`` update opens it and
``tool_call_update`` changes it; the agent's ``session/request_permission`` marks it asked (with the
request's JSON-RPC id); the client's reply to that request, recorded by acpd with
``_meta.acpd.decidedBy``, says what was answered and by whom. ``changes`` turns one record into the
changes it makes, which a store applies in the transaction that commits the record, so the index is
never behind the log and can be rebuilt from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final, NamedTuple

from acpd.protocol import jsonio
from acpd.protocol.events import EventRecord
from acpd.protocol.jsonio import object_of, objects_in

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


def changes_in(records: Sequence[EventRecord]) -> list[ToolCallChange]:
    """The changes a batch of records makes, in order. A batch with no mark of a tool call
    anywhere (a burst of reply chunks) is passed over with three searches of its joined text
    instead of three a record."""
    if len(records) > 1:
        joined = "".join(record.payload for record in records)
        if '"tool_call' not in joined and '"session/request_permission"' not in joined and '"outcome"' not in joined:
            return []
    return [change for record in records for change in changes(record)]


def changes(record: EventRecord) -> list[ToolCallChange]:
    """The changes ``record`` makes to the index (none for most records: they are checked by a
    substring first, and parsed only when they may be about a tool call)."""
    payload = record.payload
    # spelled out, not any() over _MARKS: this runs for every record a store commits
    if '"tool_call' not in payload and '"session/request_permission"' not in payload and '"outcome"' not in payload:
        return []
    message = jsonio.loads(payload)
    if not isinstance(message, dict):
        return []
    method = message.get("method")
    params = object_of(message.get("params"))
    if method == "session/update" and record.sender == "agent":
        return _update(record, object_of(params.get("update")))
    if method == "session/request_permission" and record.sender == "agent":
        call = object_of(params.get("toolCall"))
        if not isinstance(call.get("toolCallId"), str):
            return []
        request_id = jsonio.dumps_str(message.get("id"))
        offered = [option for option in params.get("options") or () if isinstance(option, dict)]
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
    result = object_of(message.get("result"))
    outcome = object_of(result.get("outcome"))
    if "outcome" not in outcome:
        return []  # a response to another request of the agent's (fs, terminal)
    chosen = outcome.get("optionId") if outcome.get("outcome") == "selected" else outcome.get("outcome")
    decided_by = _text(object_of(object_of(result.get("_meta")).get("acpd")).get("decidedBy"))
    reply = _text(chosen) or "unknown"
    return [
        ToolCallChange(
            record.session_id, None, record.turn, record.at, request_id=request_id, reply=reply, decided_by=decided_by
        )
    ]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


# --- turns: the per-turn index that usage reports add up, and the texts search finds ---------------

PREVIEW_CHARS: Final = 120
SEARCHED_REPLY_CHARS: Final = 16_384
"""Characters of a turn's reply kept for search (its beginning)."""
TOKEN_FIELDS: Final = ("inputTokens", "outputTokens", "cachedReadTokens", "thoughtTokens", "totalTokens")


class OpenTurn:
    """A turn begun and not yet ended, as its records have told so far."""

    __slots__ = ("cost", "currency", "first_seq", "parts", "prompt", "size", "started_at", "steps")

    def __init__(self, prompt: str, started_at: str | None, first_seq: int | None) -> None:
        self.prompt = prompt
        self.started_at = started_at
        self.first_seq = first_seq
        self.parts: list[str] = []
        self.size = 0
        self.steps = 0
        self.cost: float | None = None
        self.currency: str | None = None

    def add(self, text: str) -> None:
        if self.size < SEARCHED_REPLY_CHARS:
            self.parts.append(text)
            self.size += len(text)


OpenTurns = dict[tuple[str, int], OpenTurn]
"""The turns begun and not yet ended, by session and turn. A store's writer keeps one across
transactions, so that a turn is written once, whole, when it ends: a row and a full-text entry per
turn instead of a statement per step (one full-text insert costs ~50 us)."""


class TurnEnd(NamedTuple):
    """A turn that ended (its answer, or the restart that found it interrupted), with what its
    records said. ``started_at`` None: its start was not seen (a restart since): the store reads
    the turn's records back and replays them (``turn_ends``) to learn it."""

    session_id: str
    turn: int
    started_at: str | None
    first_seq: int | None
    preview: str | None
    steps: int
    cost: float | None
    currency: str | None
    ended_at: str
    last_seq: int
    stop_reason: str | None
    error: str | None
    tokens: tuple[int | None, ...]
    text: str  # for search: the prompt, then the reply's beginning


def turn_ends(records: Iterable[EventRecord], open_turns: OpenTurns) -> list[TurnEnd]:
    """The turns ``records`` end; what they tell of turns still running goes into ``open_turns``.
    Only what may matter is parsed: a flood of reply chunks costs a substring test each once its
    turn holds the reply's first ``SEARCHED_REPLY_CHARS``."""
    ended: list[TurnEnd] = []
    last: tuple[str, int, OpenTurn | None] = ("", -1, None)  # a batch is mostly one turn's updates
    for record in records:
        payload = record.payload
        if record.sender == "agent" and '"session/update"' in payload:
            if last[1] != record.turn or last[0] != record.session_id:
                last = (record.session_id, record.turn, open_turns.get((record.session_id, record.turn)))
            held = last[2]
            if held is not None and _may_tell(payload, held):
                update = object_of(object_of(object_of(jsonio.loads(payload)).get("params")).get("update"))
                _observe(held, update)
            continue
        if record.turn <= 0:
            continue
        key = (record.session_id, record.turn)
        if '"turn-' not in payload and '"session/prompt"' not in payload and "_acpd/turn_interrupted" not in payload:
            continue  # spelled out (see changes)
        message = object_of(jsonio.loads(payload))
        method = message.get("method")
        if method == "session/prompt" and record.sender == "client":
            prompt = object_of(message.get("params")).get("prompt")
            open_turns[key] = OpenTurn(prompt_text(prompt), record.at, record.seq)
            last = ("", -1, None)
        elif (method is None and message.get("id") == f"turn-{record.turn}") or (
            method == "_acpd/turn_interrupted" and record.sender == "daemon"
        ):
            ended.append(_end(record, message, open_turns.pop(key, None)))
            last = ("", -1, None)
    return ended


def _may_tell(payload: str, held: OpenTurn) -> bool:
    """Whether an update may change what ``held`` knows: a step, a cost, or reply text it still wants."""
    if '"agent_message_chunk"' in payload:
        return held.size < SEARCHED_REPLY_CHARS
    return '"tool_call"' in payload or '"usage_update"' in payload


def _observe(held: OpenTurn, update: dict[str, object]) -> None:
    kind = update.get("sessionUpdate")
    if kind == "agent_message_chunk":
        text = object_of(update.get("content")).get("text")
        if isinstance(text, str):
            held.add(text)
    elif kind == "tool_call":
        held.steps += 1
    elif kind == "usage_update":
        cost = object_of(update.get("cost"))
        if isinstance(cost.get("amount"), (int, float)):
            held.cost, held.currency = float(cost["amount"]), _text(cost.get("currency")) or held.currency


def _end(record: EventRecord, message: dict[str, object], held: OpenTurn | None) -> TurnEnd:
    result = object_of(message.get("result"))
    usage = object_of(result.get("usage"))
    tokens = tuple(v if isinstance(v, int) and not isinstance(v, bool) else None for v in map(usage.get, TOKEN_FIELDS))
    error = object_of(message.get("error"))
    if message.get("method") == "_acpd/turn_interrupted":
        error = {"message": "interrupted: the daemon restarted"}
    held = held or OpenTurn("", None, None)
    prompt = " ".join(held.prompt.split())
    return TurnEnd(
        record.session_id,
        record.turn,
        held.started_at,
        held.first_seq,
        prompt[:PREVIEW_CHARS] or None,
        held.steps,
        held.cost,
        held.currency,
        record.at,
        record.seq,
        _text(result.get("stopReason")),
        _text(error.get("message")) if error else None,
        tokens,
        f"{held.prompt}\n{''.join(held.parts)[:SEARCHED_REPLY_CHARS]}".strip(),
    )


def prompt_text(prompt: object) -> str:
    """A prompt's blocks as text: its texts, and a resource or link by its URI."""
    parts: list[str] = []
    for block in objects_in(prompt):
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            parts.append(str(block["text"]))
        elif block.get("type") in ("resource_link", "resource"):
            resource = block.get("resource")
            uri = block.get("uri") or (resource.get("uri") if isinstance(resource, dict) else None)
            parts.append(f"[{block['type']}: {uri or block.get('name') or ''}]")
    return "\n".join(parts)
