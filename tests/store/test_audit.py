"""The tool-call audit index, in every store: kept with the records it comes from, rebuilt from
stored logs when a database first gets it, filtered and paged alike."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from acpd.errors import InvalidInput
from acpd.protocol.events import EventRecord, Sender
from acpd.store import EventStore, SqliteEventStore
from acpd.store.base import AuditFilter
from tests.store.helpers import doc
from tests.store.test_contract import store

pytestmark = pytest.mark.anyio
__all__ = ["store"]  # the contract's fixture: every store

ASK = [
    {"optionId": "yes", "name": "Yes", "kind": "allow_once"},
    {"optionId": "no", "name": "No", "kind": "reject_once"},
]


def at(second: int) -> str:
    return f"2026-12-01T10:00:{second:02d}.000Z"


def frame(session_id: str, seq: int, sender: Sender, message: dict[str, Any], second: int) -> EventRecord:
    return EventRecord(session_id, seq, at(second), sender, 1, json.dumps({"jsonrpc": "2.0", **message}))


def update(session_id: str, seq: int, second: int, **fields: Any) -> EventRecord:
    params = {"sessionId": session_id, "update": fields}
    return frame(session_id, seq, "agent", {"method": "session/update", "params": params}, second)


def conversation(session_id: str) -> list[EventRecord]:
    """A read that completes, an edit asked and allowed by the client, a command rejected by policy."""
    call = {"toolCallId": "c2", "title": "Edit a.py", "kind": "edit"}
    return [
        update(session_id, 1, 0, sessionUpdate="tool_call", toolCallId="c1", title="Read a.py", kind="read",
               status="pending", locations=[{"path": "/w/a.py", "line": 3}]),
        update(session_id, 2, 1, sessionUpdate="tool_call_update", toolCallId="c1", status="completed"),
        update(session_id, 3, 2, sessionUpdate="tool_call", status="pending", **call),
        frame(session_id, 4, "agent", {"id": 7, "method": "session/request_permission",
                                       "params": {"sessionId": session_id, "toolCall": call, "options": ASK}}, 2),
        frame(session_id, 5, "client", {"id": 7, "result": {"outcome": {"outcome": "selected", "optionId": "yes"},
                                        "_meta": {"acpd": {"decidedBy": "client"}}}}, 4),
        update(session_id, 6, 7, sessionUpdate="tool_call_update", toolCallId="c2", status="completed"),
        update(session_id, 7, 8, sessionUpdate="tool_call", toolCallId="c3", title="rm -rf", kind="execute",
               status="pending"),
        frame(session_id, 8, "agent", {"id": 8, "method": "session/request_permission",
                                       "params": {"sessionId": session_id, "options": ASK,
                                                  "toolCall": {"toolCallId": "c3"}}}, 8),
        frame(session_id, 9, "client", {"id": 8, "result": {"outcome": {"outcome": "selected", "optionId": "no"},
                                        "_meta": {"acpd": {"decidedBy": "policy"}}}}, 8),
        update(session_id, 10, 9, sessionUpdate="tool_call_update", toolCallId="c3", status="failed"),
    ]  # fmt: skip


async def test_each_tool_call_is_one_row_with_its_permission_reply_and_who_decided(store: EventStore) -> None:
    await store.append(conversation("s"), session=doc("s", project="p"))
    rows = (await store.tool_calls(AuditFilter())).items
    assert [(r["toolCallId"], r["kind"], r["status"], r["permissionAsked"]) for r in rows] == [
        ("c1", "read", "completed", False),
        ("c2", "edit", "completed", True),
        ("c3", "execute", "failed", True),
    ]
    assert [(r["reply"], r["outcome"], r["decidedBy"]) for r in rows] == [
        (None, None, None),
        ("yes", "allow_once", "client"),
        ("no", "reject_once", "policy"),
    ]
    first = rows[0]
    assert (first["sessionId"], first["agent"], first["project"], first["turn"]) == ("s", "mock", "p", 1)
    assert first["locations"] == [{"path": "/w/a.py", "line": 3}]
    assert (first["startedAt"], first["endedAt"], first["durationMs"]) == (at(0), at(1), 1000)
    assert rows[1]["durationMs"] == 5000


async def test_rows_filter_and_page_alike_in_every_store(store: EventStore) -> None:
    await store.append(conversation("s"), session=doc("s", project="p"))
    await store.append(conversation("t"), session=doc("t", agent="other"))
    assert len((await store.tool_calls(AuditFilter(kind="edit"))).items) == 2
    assert [r["sessionId"] for r in (await store.tool_calls(AuditFilter(agent="other"))).items] == ["t"] * 3
    assert len((await store.tool_calls(AuditFilter(project="p"))).items) == 3
    assert len((await store.tool_calls(AuditFilter(decided_by="policy"))).items) == 2
    assert len((await store.tool_calls(AuditFilter(status="failed", session="t"))).items) == 1
    assert len((await store.tool_calls(AuditFilter(since=at(2), until=at(8)))).items) == 2
    assert (await store.tool_calls(AuditFilter(since="2027-01-01"))).items == []
    seen, cursor = [], None
    while True:
        page = await store.tool_calls(AuditFilter(), limit=2, cursor=cursor)
        seen += [(r["sessionId"], r["toolCallId"]) for r in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [(s, c) for s in "st" for c in ("c1", "c2", "c3")]
    with pytest.raises(InvalidInput):
        await store.tool_calls(AuditFilter(), cursor="garbage")
    with pytest.raises(InvalidInput):
        AuditFilter(since="last tuesday")


async def test_stats_count_by_kind_status_agent_outcome_and_decider(store: EventStore) -> None:
    await store.append(conversation("s"), session=doc("s"))
    stats = await store.tool_call_stats(AuditFilter())
    assert stats["total"] == {"toolCalls": 3}
    assert stats["kind"] == {"read": 1, "edit": 1, "execute": 1}
    assert stats["status"] == {"completed": 2, "failed": 1}
    assert stats["agent"] == {"mock": 3}
    assert stats["outcome"] == {"none": 1, "allow_once": 1, "reject_once": 1}
    assert stats["decidedBy"] == {"none": 1, "client": 1, "policy": 1}


async def test_a_deleted_session_leaves_no_rows(store: EventStore) -> None:
    await store.append(conversation("s"), session=doc("s"))
    await store.delete_session("s")
    assert (await store.tool_calls(AuditFilter())).items == []


async def test_a_database_from_before_the_index_gets_it_built_from_its_logs(tmp_path: Path) -> None:
    path = tmp_path / "acpd.db"
    async with await SqliteEventStore.open(path) as fresh:
        await fresh.append(conversation("s"), session=doc("s"))
        await fresh.append(turn_records("s", 11, 2, cost=0.5, tokens=10, second=30))
        expected = (await fresh.tool_calls(AuditFilter())).items
        turns = await fresh.turns("s")
        assert [t["turn"] for t in turns] == [2]
    with sqlite3.connect(path) as conn:  # as an acpd of schema 1 left it
        conn.execute("DROP TABLE tool_calls")
        conn.execute("DROP TABLE turns")
        conn.execute("PRAGMA user_version = 1")
    async with await SqliteEventStore.open(path) as migrated:
        assert (await migrated.tool_calls(AuditFilter())).items == expected
        assert (await migrated.turns("s")) == turns


def turn_records(
    session_id: str, first_seq: int, turn: int, *, cost: float, tokens: int, second: int
) -> list[EventRecord]:
    """A turn: its prompt, a tool call, the agent's cumulative cost so far, its answer."""
    seq = first_seq

    def made(sender: Sender, message: dict[str, Any], offset: int) -> EventRecord:
        return EventRecord(
            session_id, seq + offset, at(second + offset), sender, turn, json.dumps({"jsonrpc": "2.0", **message})
        )

    prompt = {
        "id": f"turn-{turn}",
        "method": "session/prompt",
        "params": {"sessionId": session_id, "prompt": [{"type": "text", "text": f"do  thing\n{turn}"}]},
    }
    usage = {"sessionUpdate": "usage_update", "used": 10, "size": 100, "cost": {"amount": cost, "currency": "USD"}}
    answer = {
        "id": f"turn-{turn}",
        "result": {
            "stopReason": "end_turn",
            "usage": {"inputTokens": tokens, "outputTokens": 2 * tokens, "totalTokens": 3 * tokens},
        },
    }
    return [
        made("client", prompt, 0),
        made("agent", {"method": "session/update", "params": {"sessionId": session_id, "update": {
            "sessionUpdate": "tool_call", "toolCallId": f"t{turn}", "title": "x", "kind": "read"}}}, 1),
        made("agent", {"method": "session/update", "params": {"sessionId": session_id, "update": usage}}, 2),
        made("agent", answer, 3),
    ]  # fmt: skip


async def test_turns_carry_their_own_usage_and_cost_and_usage_adds_them_up(store: EventStore) -> None:
    await store.append(turn_records("s", 1, 1, cost=0.5, tokens=10, second=0), session=doc("s", model="big"))
    await store.append(turn_records("s", 5, 2, cost=0.75, tokens=20, second=10), session=doc("s", model="big"))
    await store.append(turn_records("t", 1, 1, cost=1.0, tokens=5, second=20), session=doc("t", agent="other"))
    turns = await store.turns("s")
    assert [(t["turn"], t["prompt"], t["steps"], t["stopReason"], t["firstSeq"], t["lastSeq"]) for t in turns] == [
        (1, "do thing 1", 1, "end_turn", 1, 4),
        (2, "do thing 2", 1, "end_turn", 5, 8),
    ]
    assert turns[1]["usage"] == {
        "inputTokens": 20,
        "outputTokens": 40,
        "totalTokens": 60,
        "cost": {"amount": 0.25, "currency": "USD"},  # the session's 0.75 so far, less turn 1's 0.5
    }
    assert (turns[0]["agent"], turns[0]["model"], turns[0]["startedAt"], turns[0]["endedAt"]) == (
        "mock",
        "big",
        at(0),
        at(3),
    )
    by_agent = await store.usage("agent")
    assert by_agent["items"] == [
        {"key": "mock", "turns": 2, "inputTokens": 30, "outputTokens": 60, "totalTokens": 90,
         "cost": {"amount": 0.75, "currency": "USD"}},
        {"key": "other", "turns": 1, "inputTokens": 5, "outputTokens": 10, "totalTokens": 15,
         "cost": {"amount": 1.0, "currency": "USD"}},
    ]  # fmt: skip
    assert by_agent["total"]["cost"] == {"amount": 1.75, "currency": "USD"}
    assert [i["key"] for i in (await store.usage("model"))["items"]] == ["big", "none"]
    assert [i["key"] for i in (await store.usage("day"))["items"]] == ["2026-12-01"]
    assert (await store.usage("session", since=at(10)))["total"]["turns"] == 2
    with pytest.raises(InvalidInput):
        await store.usage("color")
