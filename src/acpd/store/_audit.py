"""Store layer: the shapes of the record indexes, shared by the stores: the tool-call audit (its
filter, its rows as the API shows them, its cursor) and the turns that usage reports add up; and
both kept in memory (``AuditRows``, ``TurnRows``: the memory store's; the SQLite store keeps the
same rows in tables). Pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Final

from acpd.errors import InvalidInput
from acpd.protocol import jsonio
from acpd.protocol.audit import FINISHED, ToolCallChange, TurnEnd, reply_kind

STAT_GROUPS: Final = ("kind", "status", "agent", "outcome", "decidedBy")
"""What ``tool_call_stats`` counts by."""


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which tool calls a query wants; None matches any. ``since`` and ``until`` bound the start
    time (RFC 3339, ``until`` excluded)."""

    session: str | None = None
    agent: str | None = None
    project: str | None = None
    kind: str | None = None
    status: str | None = None
    decided_by: str | None = None
    since: str | None = None
    until: str | None = None

    def __post_init__(self) -> None:
        check_times(self.since, self.until)


@dataclass(slots=True)
class AuditRow:
    """One tool call's row, as both stores keep it."""

    session_id: str
    tool_call_id: str
    agent: str | None
    turn: int
    started_at: str
    kind: str | None = None
    title: str | None = None
    locations: str | None = None
    status: str | None = None
    asked: bool = False
    request_id: str | None = None
    options: str | None = None
    reply: str | None = None
    outcome: str | None = None
    decided_by: str | None = None
    ended_at: str | None = None
    project: str | None = field(default=None, compare=False)

    def view(self) -> dict[str, Any]:
        """The row as ``GET /v1/audit/tool-calls`` shows it."""
        return {
            "sessionId": self.session_id,
            "agent": self.agent,
            "project": self.project,
            "turn": self.turn,
            "toolCallId": self.tool_call_id,
            "kind": self.kind,
            "title": self.title,
            "locations": jsonio.loads(self.locations) if self.locations else [],
            "status": self.status,
            "permissionAsked": self.asked,
            "reply": self.reply,
            "outcome": self.outcome,
            "decidedBy": self.decided_by,
            "startedAt": self.started_at,
            "endedAt": self.ended_at,
            "durationMs": _duration_ms(self.started_at, self.ended_at),
        }


COLUMNS: Final = tuple(f.name for f in fields(AuditRow))


def encode_audit_cursor(position: int) -> str:
    return f"t{position}"


def decode_audit_cursor(cursor: str) -> int:
    return _decode_position(cursor, "t", "malformed cursor: pass nextCursor from a previous page")


def _decode_position(cursor: str, prefix: str, refusal: str) -> int:
    """A cursor that is ``prefix`` and a position (a row, an offset)."""
    digits = cursor.removeprefix(prefix)
    if not (cursor.startswith(prefix) and digits.isascii() and digits.isdigit() and len(digits) < 19):
        raise InvalidInput(refusal)
    return int(digits)


class AuditRows:
    """The index in memory: rows in the order their tool calls were first seen."""

    def __init__(self) -> None:
        self._rows: list[AuditRow] = []
        self._by_id: dict[tuple[str, str], AuditRow] = {}

    def apply(self, change: ToolCallChange, agent_of: Callable[[str], str | None]) -> None:
        if change.tool_call_id is None:
            asked = [r for r in self._rows if r.session_id == change.session_id and r.request_id == change.request_id]
            open_ = [r for r in asked if r.reply is None]
            if open_:
                answered = open_[-1]
                answered.reply, answered.outcome = change.reply, reply_kind(change.reply, answered.options)
                answered.decided_by = change.decided_by
            return
        key = (change.session_id, change.tool_call_id)
        row = self._by_id.get(key)
        if row is None:
            row = AuditRow(change.session_id, change.tool_call_id, agent_of(change.session_id), change.turn, change.at)
            self._rows.append(row)
            self._by_id[key] = row
        for name in ("kind", "title", "locations", "status", "request_id", "options"):
            value = getattr(change, name)
            if value is not None:
                setattr(row, name, value)
        row.asked = row.asked or change.asked
        if change.status in FINISHED and row.ended_at is None:
            row.ended_at = change.at

    def forget(self, session_id: str) -> None:
        self._rows = [row for row in self._rows if row.session_id != session_id]
        self._by_id = {key: row for key, row in self._by_id.items() if key[0] != session_id}

    def select(self, wanted: AuditFilter, project_of: Callable[[str], str | None]) -> Iterable[tuple[int, AuditRow]]:
        """``(position, row)`` of the matching rows, oldest first, with their session's project."""
        for position, row in enumerate(self._rows, start=1):
            shown = replace(row, project=project_of(row.session_id))
            if matches(shown, wanted):
                yield position, shown


def matches(row: AuditRow, wanted: AuditFilter) -> bool:
    pairs = (
        (wanted.session, row.session_id),
        (wanted.agent, row.agent),
        (wanted.project, row.project),
        (wanted.kind, row.kind),
        (wanted.status, row.status),
        (wanted.decided_by, row.decided_by),
    )
    if any(want is not None and want != have for want, have in pairs):
        return False
    return (wanted.since is None or row.started_at >= wanted.since) and (
        wanted.until is None or row.started_at < wanted.until
    )


def count_by(views: Iterable[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Counts of rows by each of ``STAT_GROUPS`` (a missing value counts as ``"none"``)."""
    counts: dict[str, dict[str, int]] = {group: {} for group in STAT_GROUPS}
    total = 0
    for view in views:
        total += 1
        for group in STAT_GROUPS:
            value = str(view.get(group) if view.get(group) is not None else "none")
            counts[group][value] = counts[group].get(value, 0) + 1
    return {"total": {"toolCalls": total}, **counts}


def _duration_ms(start: str, end: str | None) -> int | None:
    if end is None:
        return None
    try:
        return round((_parse(end) - _parse(start)).total_seconds() * 1000)
    except ValueError:
        return None


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def check_times(since: str | None, until: str | None) -> None:
    """Refuse a ``since`` or ``until`` that is not an RFC 3339 date or time."""
    for name, value in (("since", since), ("until", until)):
        if value is not None:
            _check_time(value, name)


def _check_time(value: str, name: str) -> None:
    try:
        _parse(value)
    except ValueError:
        raise InvalidInput(
            f'"{name}" must be an RFC 3339 date or time, e.g. 2026-12-01 or 2026-12-01T08:00:00Z'
        ) from None


# --- turns, and the usage reports made of them ---------------------------------------------------

USAGE_GROUPS: Final = ("session", "agent", "project", "model", "day")
TOKEN_KEYS: Final = ("inputTokens", "outputTokens", "cachedReadTokens", "thoughtTokens", "totalTokens")


@dataclass(slots=True)
class TurnRow:
    """One turn's row, as both stores keep it. ``cost_total`` is the session's cost so far as the
    agent last said it during the turn (ACP's ``usage_update`` cost is cumulative)."""

    session_id: str
    turn: int
    agent: str | None
    model: str | None
    started_at: str
    first_seq: int
    preview: str | None = None
    steps: int = 0
    cost_total: float | None = None
    currency: str | None = None
    ended_at: str | None = None
    last_seq: int | None = None
    stop_reason: str | None = None
    error: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    thought_tokens: int | None = None
    total_tokens: int | None = None
    project: str | None = field(default=None, compare=False)

    def view(self, cost_before: float | None) -> dict[str, Any]:
        """The turn as ``GET /v1/sessions/{id}/turns`` shows it; ``cost_before`` is the session's
        cost as of its previous turn with one."""
        tokens = (self.input_tokens, self.output_tokens, self.cached_tokens, self.thought_tokens, self.total_tokens)
        usage: dict[str, Any] = {key: value for key, value in zip(TOKEN_KEYS, tokens, strict=True) if value is not None}
        cost = self.cost_total
        if cost is not None and cost_before is not None and cost >= cost_before:
            cost -= cost_before  # the agent's total went on from the previous turn's
        if cost is not None:
            usage["cost"] = {"amount": round(cost, 10), "currency": self.currency or "USD"}
        return {
            "sessionId": self.session_id,
            "turn": self.turn,
            "agent": self.agent,
            "model": self.model,
            "project": self.project,
            "prompt": self.preview,
            "stopReason": self.stop_reason,
            "error": self.error,
            "steps": self.steps,
            "usage": usage,
            "startedAt": self.started_at,
            "endedAt": self.ended_at,
            "firstSeq": self.first_seq,
            "lastSeq": self.last_seq,
        }


TURN_COLUMNS: Final = tuple(f.name for f in fields(TurnRow))


def turn_views(rows: Iterable[TurnRow]) -> list[dict[str, Any]]:
    """The views of rows given in session and turn order, each turn's cost its own."""
    views = []
    before: dict[str, float] = {}
    for row in rows:
        views.append(row.view(before.get(row.session_id)))
        if row.cost_total is not None:
            before[row.session_id] = row.cost_total
    return views


def usage_report(views: Iterable[dict[str, Any]], group_by: str) -> dict[str, Any]:
    """Turns' usage added up by ``group_by`` (one of ``USAGE_GROUPS``), with the total."""
    if group_by not in USAGE_GROUPS:
        raise InvalidInput(f"groupBy must be one of {list(USAGE_GROUPS)}")
    groups: dict[str, dict[str, Any]] = {}
    total: dict[str, Any] = {"turns": 0}
    for view in views:
        key = view["startedAt"][:10] if group_by == "day" else view["sessionId" if group_by == "session" else group_by]
        for sums in (groups.setdefault(str(key) if key is not None else "none", {"turns": 0}), total):
            _add(sums, view["usage"])
    items = [{"key": key, **sums} for key, sums in sorted(groups.items())]
    return {"groupBy": group_by, "items": items, "total": total}


def _add(sums: dict[str, Any], usage: dict[str, Any]) -> None:
    sums["turns"] += 1
    for key in TOKEN_KEYS:
        if key in usage:
            sums[key] = sums.get(key, 0) + usage[key]
    cost = usage.get("cost")
    if cost is not None:
        held = sums.setdefault("cost", {"amount": 0.0, "currency": cost["currency"]})
        held["amount"] = round(held["amount"] + cost["amount"], 10)
        if held["currency"] != cost["currency"]:
            held["currency"] = "mixed"


def turn_row(end: TurnEnd, agent: str | None, model: str | None) -> TurnRow:
    """The row of a turn that ended (its start as its records told, else its end)."""
    tokens = [*end.tokens, *[None] * len(TOKEN_KEYS)]
    return TurnRow(
        end.session_id,
        end.turn,
        agent,
        model,
        end.started_at or end.ended_at,
        end.first_seq or end.last_seq,
        end.preview,
        end.steps,
        end.cost,
        end.currency,
        end.ended_at,
        end.last_seq,
        end.stop_reason,
        end.error,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cached_tokens=tokens[2],
        thought_tokens=tokens[3],
        total_tokens=tokens[4],
    )


class TurnRows:
    """The ended turns in memory (the memory store's)."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, int], TurnRow] = {}

    def add(self, row: TurnRow) -> None:
        self._rows[(row.session_id, row.turn)] = row

    def forget(self, session_id: str) -> None:
        self._rows = {key: row for key, row in self._rows.items() if key[0] != session_id}

    def select(self, session: str | None, since: str | None, until: str | None) -> list[TurnRow]:
        """In session and turn order."""
        return [
            row
            for _, row in sorted(self._rows.items())
            if (session is None or row.session_id == session)
            and (since is None or row.started_at >= since)
            and (until is None or row.started_at < until)
        ]


# --- search --------------------------------------------------------------------------------------

SNIPPET_CHARS: Final = 48
"""Characters of context on each side of the first hit in a memory store's snippet."""
SEARCH_CANDIDATES: Final = 5_000
"""Matching texts looked at, best first, to rank the sessions they belong to."""


def search_words(q: str) -> list[str]:
    """The words of a search: letters and digits only, so that nothing in ``q`` is query syntax.

    Raises:
        InvalidInput: ``q`` has no word in it.
    """
    words = re.findall(r"\w+", q)
    if not words:
        raise InvalidInput('"q" must contain a word to search for')
    return words[:32]


def fts_query(words: list[str]) -> str:
    """An FTS5 query matching texts with every word (each quoted: a word, never an operator)."""
    return " ".join(f'"{word}"' for word in words)


def encode_search_cursor(offset: int) -> str:
    return f"q{offset}"


def decode_search_cursor(cursor: str) -> int:
    return _decode_position(cursor, "q", "malformed cursor: pass nextCursor from a previous page of the same search")


class SearchTexts:
    """Texts to search in memory (the memory store's): titles, prompts and replies."""

    def __init__(self) -> None:
        self._texts: list[tuple[str, str, str]] = []  # (session id, kind, text)
        self._titles: dict[str, str] = {}

    def add(self, session_id: str, kind: str, text: str) -> None:
        self._texts.append((session_id, kind, text))

    def title(self, session_id: str, title: object) -> None:
        if isinstance(title, str) and title:
            self._titles[session_id] = title
        else:
            self._titles.pop(session_id, None)

    def forget(self, session_id: str) -> None:
        self._texts = [entry for entry in self._texts if entry[0] != session_id]
        self._titles.pop(session_id, None)

    def ranked(self, words: list[str]) -> list[tuple[str, dict[str, str]]]:
        """``(session id, match)`` of the sessions whose title, a prompt or a reply has every word
        (whole words, any case, as FTS5's default tokenizer matches them), most hits first;
        ``match`` is the best text's kind and a snippet of it."""
        lowered = [word.lower() for word in words]
        best: dict[str, tuple[int, dict[str, str]]] = {}
        entries = [(sid, "title", text) for sid, text in self._titles.items()] + self._texts
        for session_id, kind, text in entries:
            found = re.findall(r"\w+", text.lower())
            if not all(word in found for word in lowered):
                continue
            hits = sum(found.count(word) for word in lowered)
            if hits > best.get(session_id, (0, {}))[0]:
                best[session_id] = (hits, {"kind": kind, "snippet": snippet(text, lowered[0])})
        return [(sid, match) for sid, (_, match) in sorted(best.items(), key=lambda item: -item[1][0])]


def snippet(text: str, word: str) -> str:
    """Context around the first whole-word hit of ``word`` (lower case) in ``text``, the hit in
    brackets (the memory and PostgreSQL stores'; SQLite's FTS5 makes its own)."""
    first = re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE)
    return _snippet(text, first.start() if first else 0, word)


def _snippet(text: str, at: int, word: str) -> str:
    start, end = max(0, at - SNIPPET_CHARS), min(len(text), at + len(word) + SNIPPET_CHARS)
    shown = f"{text[start:at]}[{text[at : at + len(word)]}]{text[at + len(word) : end]}"
    return ("…" if start else "") + " ".join(shown.split()) + ("…" if end < len(text) else "")
