"""The tool-call audit index, in every store: kept with the records it comes from, rebuilt from
stored logs when a database first gets it, filtered and paged alike."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from acpd.errors import InvalidInput
from acpd.protocol.events import EventRecord, Sender
from acpd.store import EventStore, SqliteEventStore
from acpd.store import _sqlite_index as sqlite_index
from acpd.store import sqlite as sqlite_store
from acpd.store.base import AuditFilter
from acpd.store.docs import session_keys
from acpd.store.sqlite import MIGRATIONS
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


async def test_a_database_from_before_the_indexes_gets_them_built_from_its_logs(tmp_path: Path) -> None:
    history = [*conversation("s"), *turn_records("s", 11, 2, cost=0.5, tokens=10, second=30)]
    session = doc("s", title="Kumquat plans")
    async with await SqliteEventStore.open(":memory:") as fresh:
        await fresh.append(history, session=session)
        expected = ((await fresh.tool_calls(AuditFilter())).items, await fresh.turns("s"))
    path = tmp_path / "acpd.db"
    with sqlite3.connect(path) as conn:  # as an acpd of schema 1 left it
        for statement in MIGRATIONS[0]:
            assert isinstance(statement, str)
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", history)
        keys = session_keys(session)
        conn.execute(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?)",
            (keys.id, keys.agent, keys.project, keys.cwd, keys.created_at, keys.archived_at, json.dumps(session)),
        )
    async with await SqliteEventStore.open(path) as migrated:
        assert ((await migrated.tool_calls(AuditFilter())).items, await migrated.turns("s")) == expected
        assert [s["id"] for s in (await migrated.search_sessions("kumquat")).items] == ["s"]
        assert [s["id"] for s in (await migrated.search_sessions("thing 2")).items] == ["s"]


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


async def test_a_turn_ended_without_its_document_takes_the_agent_and_model_stored_before(store: EventStore) -> None:
    await store.save_session(doc("s", model="big", agent="other"))
    await store.append(turn_records("s", 1, 1, cost=0.5, tokens=10, second=0))
    await store.append(turn_records("s", 5, 2, cost=0.75, tokens=20, second=10), session=doc("s", model="small"))
    assert [(t["agent"], t["model"]) for t in await store.turns("s")] == [("other", "big"), ("mock", "small")]


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


def chat(session_id: str, prompt: str, reply: list[str]) -> list[EventRecord]:
    """A finished turn with its prompt and reply (in chunks)."""
    prompt_params = {"sessionId": session_id, "prompt": [{"type": "text", "text": prompt}]}
    records = [frame(session_id, 1, "client", {"id": "turn-1", "method": "session/prompt", "params": prompt_params}, 0)]
    for offset, text in enumerate(reply, start=2):
        chunk = {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": text}}
        records.append(update(session_id, offset, offset, **chunk))
    end = len(records) + 1
    records.append(frame(session_id, end, "agent", {"id": "turn-1", "result": {"stopReason": "end_turn"}}, end))
    return records


async def test_search_finds_sessions_by_title_prompt_or_reply_with_a_snippet(store: EventStore) -> None:
    await store.append(chat("a", "plan the garden", ["plant kum", "quats by the fence"]), session=doc("a"))
    await store.append(chat("b", "what is a kumquat", ["a small citrus"]), session=doc("b", agent="other"))
    await store.append([], session=doc("c", title="Kumquat marmalade"))
    await store.append(chat("d", "unrelated", ["nothing here"]), session=doc("d"))
    found = (await store.search_sessions("kumquats")).items
    assert [s["id"] for s in found] == ["a"]  # the reply's chunks were joined before the turn was indexed
    assert found[0]["match"]["kind"] == "turn"
    assert "[kumquats]" in found[0]["match"]["snippet"].lower()
    assert {s["id"] for s in (await store.search_sessions("kumquat")).items} == {"b", "c"}
    assert [s["id"] for s in (await store.search_sessions("kumquat", agent="other")).items] == ["b"]
    assert [s["match"]["kind"] for s in (await store.search_sessions("marmalade")).items] == ["title"]
    first = await store.search_sessions("kumquat", limit=1)
    rest = await store.search_sessions("kumquat", limit=1, cursor=first.next_cursor)
    assert {first.items[0]["id"], rest.items[0]["id"]} == {"b", "c"}
    assert rest.next_cursor is None
    await store.append([], session=doc("c", title="Orange jam"))  # a new title replaces the old in the index
    assert (await store.search_sessions("marmalade")).items == []
    assert [s["id"] for s in (await store.search_sessions("orange")).items] == ["c"]


async def test_a_turn_is_found_once_it_has_ended(store: EventStore) -> None:
    whole = chat("a", "ask about plums", ["plums are ripe"])
    await store.append(whole[:-1], session=doc("a"))  # the turn runs on
    assert (await store.search_sessions("ripe")).items == []
    await store.append(whole[-1:])
    assert [s["id"] for s in (await store.search_sessions("ripe plums")).items] == ["a"]


@pytest.mark.parametrize("q", ["kumquat AND (", "kumquat*", "NEAR(kumquat", "col:kumquat", '"kumquat ^', "-kumquat"])
async def test_query_syntax_in_a_search_is_taken_as_words(store: EventStore, q: str) -> None:
    await store.append(chat("a", "kumquat and near col", ["yes"]), session=doc("a"))  # the words, as words
    assert [s["id"] for s in (await store.search_sessions(q)).items] == ["a"]


@pytest.mark.parametrize("q", ['"', "()", "  ", "*^-"])
async def test_a_search_without_a_word_is_refused(store: EventStore, q: str) -> None:
    with pytest.raises(InvalidInput):
        await store.search_sessions(q)


async def test_a_turn_a_restart_interrupted_is_indexed_from_its_records(tmp_path: Path) -> None:
    path = tmp_path / "acpd.db"
    begun = turn_records("s", 1, 1, cost=0.5, tokens=10, second=0)[:3]  # its answer never came
    async with await SqliteEventStore.open(path) as before:
        await before.append(begun, session=doc("s"))
        assert await before.turns("s") == []  # a turn is indexed when it ends
    note = {"method": "_acpd/turn_interrupted", "params": {"sessionId": "s", "turn": 1, "reason": "daemon restarted"}}
    async with await SqliteEventStore.open(path) as after:
        await after.append([frame("s", 4, "daemon", note, 9)])
        (turn,) = await after.turns("s")
        assert (turn["startedAt"], turn["firstSeq"], turn["lastSeq"], turn["steps"]) == (at(0), 1, 4, 1)
        assert turn["error"] == "interrupted: the daemon restarted"
        assert turn["usage"]["cost"] == {"amount": 0.5, "currency": "USD"}
        assert [s["id"] for s in (await after.search_sessions("thing")).items] == ["s"]


def indexed(path: Path) -> tuple[int, int, int]:
    """Turns in the turns index and in the full-text index, and the rowid of ``events`` the
    indexes are written up to, as another process sees them."""
    with sqlite3.connect(path) as conn:
        turns = conn.execute("SELECT count(*) FROM turns").fetchone()[0]
        searched = conn.execute("SELECT count(*) FROM search WHERE kind = 'turn'").fetchone()[0]
        through = conn.execute("SELECT through FROM index_state").fetchone()[0]
    return turns, searched, through


@pytest.fixture
def no_idle_indexing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer's idle moments index and checkpoint nothing: what a commit wrote stays as it is."""
    monkeypatch.setattr(sqlite_index, "INDEX_DELAY_SECONDS", 3600.0)
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_SECONDS", 3600.0)


@pytest.mark.usefixtures("no_idle_indexing")
async def test_a_turns_commit_leaves_its_indexes_to_a_later_transaction_and_a_read_indexes_first(
    tmp_path: Path,
) -> None:
    # the index rows were more than half the pages of a turn's commit
    path = tmp_path / "acpd.db"
    async with await SqliteEventStore.open(path) as store:
        await store.append(chat("a", "ask about plums", ["plums are ripe"]), session=doc("a"))
        assert indexed(path) == (0, 0, 0)
        assert [s["id"] for s in (await store.search_sessions("ripe plums")).items] == ["a"]
        assert indexed(path) == (1, 1, 3)
        await store.append(chat("b", "ask about pears", ["pears are green"]), session=doc("b"))
        assert [t["prompt"] for t in await store.turns("b")] == ["ask about pears"]
        assert indexed(path) == (2, 2, 6)


@pytest.mark.parametrize("delay", [0.0, 0.05], ids=["due at once", "due after the pause"])
async def test_an_idle_writer_indexes_what_was_committed_without_another_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, delay: float
) -> None:
    # with a delay, no call follows the commit to run the idle work: the writer comes back on its own
    monkeypatch.setattr(sqlite_index, "INDEX_DELAY_SECONDS", delay)
    stepped = threading.Event()
    step = sqlite_index.Indexer.step

    def noted(indexer: Any, conn: sqlite3.Connection) -> bool:
        more = step(indexer, conn)
        stepped.set()
        return more

    monkeypatch.setattr(sqlite_index.Indexer, "step", noted)
    path = tmp_path / "acpd.db"
    async with await SqliteEventStore.open(path) as store:
        await store.append(chat("a", "ask about plums", ["plums are ripe"]), session=doc("a"))
        assert await anyio.to_thread.run_sync(stepped.wait, 10.0)
        assert indexed(path) == (1, 1, 3)


async def test_commits_that_keep_coming_are_not_held_back_by_indexing_slices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a slice run between the commits of a busy daemon delayed them, and took the interpreter's
    # lock from the event loop: the indexes wait for the writer's commits to pause
    monkeypatch.setattr(sqlite_index, "INDEX_DELAY_SECONDS", 3600.0)
    monkeypatch.setattr(sqlite_index, "INDEX_SLICE_RECORDS", 2)
    path = tmp_path / "acpd.db"
    async with await SqliteEventStore.open(path) as store:
        for name in "abc":
            await store.append(chat(name, f"prompt {name}", ["reply"]), session=doc(name))
        assert indexed(path) == (0, 0, 0)  # 9 records wait, more than a slice
        assert [t["prompt"] for t in await store.turns("c")] == ["prompt c"]  # a read still sees them


def never_idle(monkeypatch: pytest.MonkeyPatch, *, slice_records: int, behind_records: int) -> None:
    """The writer never has a moment to itself: it indexes only as the backstop has it, a slice of
    ``slice_records`` after each call once ``behind_records`` wait."""
    monkeypatch.setattr(sqlite_store.SqliteEventStore, "_on_idle", lambda store, conn: None)
    monkeypatch.setattr(sqlite_index, "INDEX_SLICE_RECORDS", slice_records)
    monkeypatch.setattr(sqlite_index, "INDEX_BEHIND_RECORDS", behind_records)


async def writer_settled(store: SqliteEventStore) -> None:
    """Every call queued on the store's writer so far has run, and what runs after it."""
    await store._writer.call(lambda conn: None)


async def test_a_writer_that_never_idles_indexes_a_slice_once_enough_records_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    never_idle(monkeypatch, slice_records=2, behind_records=5)
    path = tmp_path / "acpd.db"
    async with await SqliteEventStore.open(path) as store:
        await store.append(chat("a", "prompt a", ["reply"]), session=doc("a"))
        await writer_settled(store)
        assert indexed(path) == (0, 0, 0)  # 3 records wait
        await store.append(chat("b", "prompt b", ["reply"]), session=doc("b"))
        await writer_settled(store)
        assert indexed(path)[2] == 2  # 6 wait: one slice of 2 is indexed after the commit


async def test_a_writer_that_never_idles_answers_a_commit_before_it_indexes_the_slice_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the slice ran inside the commit's call: after a burst, every prompt's round trip took one
    # more slice until the indexes had caught up
    never_idle(monkeypatch, slice_records=3, behind_records=1)
    indexing, go_on = threading.Event(), threading.Event()
    step = sqlite_index.Indexer.step

    def held(indexer: Any, conn: sqlite3.Connection) -> bool:
        indexing.set()
        go_on.wait(10.0)
        return step(indexer, conn)

    monkeypatch.setattr(sqlite_index.Indexer, "step", held)
    path = tmp_path / "acpd.db"
    async with await SqliteEventStore.open(path) as store:
        try:
            with anyio.fail_after(5):
                await store.append(chat("a", "prompt a", ["reply"]), session=doc("a"))
            assert await anyio.to_thread.run_sync(indexing.wait, 10.0)  # the slice runs, held
            assert indexed(path) == (0, 0, 0)
        finally:
            go_on.set()
        await writer_settled(store)
        assert indexed(path) == (1, 1, 3)  # the turn's 3 records, in one slice


async def test_a_bug_in_indexing_a_slice_is_logged_once_and_tried_again_later_not_at_every_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # a slice that raised anything but a database error went up to the writer's loop, and a writer
    # behind tried it again after every call, a traceback each time
    never_idle(monkeypatch, slice_records=2, behind_records=1)
    tried: list[int] = []

    def broken(*args: Any) -> None:
        tried.append(1)
        raise ValueError("a bug")

    monkeypatch.setattr(sqlite_index, "_index_run", broken)
    async with await SqliteEventStore.open(tmp_path / "acpd.db") as store:
        for name in "abc":
            await store.append(chat(name, f"prompt {name}", ["reply"]), session=doc(name))
        await writer_settled(store)
        assert len(tried) == 1  # then not before INDEX_RETRY_SECONDS (the close tries once more)
        assert [record.seq for record in await store.read("c", after=0, limit=10)] == [1, 2, 3]
    assert caplog.text.count("indexing committed records failed") == 1
    assert "ValueError: a bug" in caplog.text


async def test_a_bug_in_the_work_after_a_writers_call_costs_no_later_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(store: Any, conn: sqlite3.Connection) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(sqlite_store.SqliteEventStore, "_after_call", broken)
    async with await SqliteEventStore.open(tmp_path / "acpd.db") as store:
        with anyio.fail_after(5):
            await store.append(chat("a", "prompt a", ["reply"]), session=doc("a"))
            await store.append(chat("b", "prompt b", ["reply"]), session=doc("b"))
        assert [record.seq for record in await store.read("b", after=0, limit=10)] == [1, 2, 3]
    assert "the event store's work after a call failed" in caplog.text


@pytest.mark.usefixtures("no_idle_indexing")
@pytest.mark.parametrize("kept", [0, 4, 100])
async def test_records_are_indexed_alike_whether_the_indexer_kept_them_or_reads_them_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kept: int
) -> None:
    monkeypatch.setattr(sqlite_index, "INDEX_MEMORY_RECORDS", kept)  # 4: the second turn overflows
    path = tmp_path / "acpd.db"
    async with await SqliteEventStore.open(path) as store:
        await store.append(chat("a", "ask about plums", ["plums are ripe"]), session=doc("a", model="big"))
        await store.append([], session=doc("b", model="small"))
        await store.append(chat("b", "ask about pears", ["pears are green"]))
        await store.append(conversation("c"), session=doc("c"))
        assert [s["id"] for s in (await store.search_sessions("green pears")).items] == ["b"]
        assert [(t["prompt"], t["model"]) for t in await store.turns("a")] == [("ask about plums", "big")]
        assert [(t["prompt"], t["model"]) for t in await store.turns("b")] == [("ask about pears", "small")]
        assert len((await store.tool_calls(AuditFilter(session="c"))).items) == 3
        assert indexed(path)[2] == 3 + 3 + len(conversation("c"))


@pytest.mark.usefixtures("no_idle_indexing")
async def test_records_a_crash_left_unindexed_are_indexed_at_the_next_open(tmp_path: Path) -> None:
    path, crashed = tmp_path / "acpd.db", tmp_path / "crashed"
    crashed.mkdir()
    async with await SqliteEventStore.open(path) as store:
        await store.append(chat("a", "ask about plums", ["plums are ripe"]), session=doc("a", model="big"))
        await store.append(chat("b", "ask about pears", ["pears are green"]), session=doc("b"))
        await store.delete_session("b")
        # the files as a kill -9 leaves them: the commits in the WAL, the indexes behind them
        for name in ("acpd.db", "acpd.db-wal"):
            await anyio.Path(crashed / name).write_bytes(await anyio.Path(tmp_path / name).read_bytes())
    assert indexed(crashed / "acpd.db") == (0, 0, 0)
    async with await SqliteEventStore.open(crashed / "acpd.db") as reopened:
        assert indexed(crashed / "acpd.db") == (1, 1, 3)
        assert [s["id"] for s in (await reopened.search_sessions("ripe plums")).items] == ["a"]
        assert (await reopened.search_sessions("pears")).items == []
        assert [(t["prompt"], t["model"]) for t in await reopened.turns("a")] == [("ask about plums", "big")]


def indexed_titles(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT body FROM search WHERE kind = 'title' ORDER BY body")]


@pytest.mark.usefixtures("no_idle_indexing")
async def test_a_title_joins_the_search_index_with_the_records_and_only_its_last_name_does(tmp_path: Path) -> None:
    path = tmp_path / "acpd.db"
    async with await SqliteEventStore.open(path) as store:
        await store.append(chat("a", "ask about plums", ["ripe"]), session=doc("a", title="Plum plans"))
        await store.append(chat("b", "ask about pears", ["green"]), session=doc("b", title="Pear plans"))
        renamed = frame("a", 4, "daemon", {"method": "_acpd/settings_changed", "params": {"changes": {}}}, 9)
        await store.append([renamed], session=doc("a", title="Kumquat plans"))
        await store.delete_session("b")
        assert indexed_titles(path) == []  # none written in the commits that named them
        assert [s["id"] for s in (await store.search_sessions("kumquat")).items] == ["a"]
        assert (await store.search_sessions("plum plans")).items == []
        assert indexed_titles(path) == ["Kumquat plans"]


@pytest.mark.usefixtures("no_idle_indexing")
async def test_titles_a_crash_left_unindexed_are_indexed_from_the_stored_documents_at_the_next_open(
    tmp_path: Path,
) -> None:
    path, crashed = tmp_path / "acpd.db", tmp_path / "crashed"
    crashed.mkdir()
    async with await SqliteEventStore.open(path) as store:
        await store.append(chat("a", "ask about plums", ["ripe"]), session=doc("a", title="Plum plans"))
        assert [s["id"] for s in (await store.search_sessions("plum")).items] == ["a"]
        renamed = frame("a", 4, "daemon", {"method": "_acpd/settings_changed", "params": {"changes": {}}}, 9)
        await store.append([renamed], session=doc("a", title="Kumquat plans"))
        for name in ("acpd.db", "acpd.db-wal"):
            await anyio.Path(crashed / name).write_bytes(await anyio.Path(tmp_path / name).read_bytes())
    assert indexed_titles(crashed / "acpd.db") == ["Plum plans"]
    async with await SqliteEventStore.open(crashed / "acpd.db") as reopened:
        assert indexed_titles(crashed / "acpd.db") == ["Kumquat plans"]
        assert [s["id"] for s in (await reopened.search_sessions("kumquat")).items] == ["a"]


async def test_a_closed_store_leaves_nothing_unindexed(tmp_path: Path) -> None:
    path = tmp_path / "acpd.db"
    async with await SqliteEventStore.open(path) as store:
        await store.append(chat("a", "ask about plums", ["plums are ripe"]), session=doc("a"))
    assert indexed(path) == (1, 1, 3)


@pytest.mark.usefixtures("no_idle_indexing")
async def test_a_turn_keeps_the_model_it_ran_with_when_the_model_changes_before_it_is_indexed(tmp_path: Path) -> None:
    async with await SqliteEventStore.open(tmp_path / "acpd.db") as store:
        await store.append(chat("a", "ask about plums", ["plums are ripe"]), session=doc("a", model="big"))
        await store.append([], session=doc("a", model="small"))
        second = [
            record._replace(seq=record.seq + 3, turn=2, payload=record.payload.replace('"turn-1"', '"turn-2"'))
            for record in chat("a", "and pears", ["green"])
        ]
        await store.append(second[:-1])
        await store.append(second[-1:])  # its end committed without a document: the one before holds
        await store.append([], session=doc("a", model="tiny"))
        assert [t["model"] for t in await store.turns("a")] == ["big", "small"]


@pytest.mark.usefixtures("no_idle_indexing")
async def test_deleting_the_newest_session_lets_the_next_records_be_indexed(tmp_path: Path) -> None:
    # SQLite gives a new row the rowid after the largest: the deleted rows' rowids come again
    path = tmp_path / "acpd.db"
    async with await SqliteEventStore.open(path) as store:
        await store.append(chat("a", "ask about plums", ["plums are ripe"]), session=doc("a"))
        await store.append(chat("b", "ask about pears", ["pears are green"]), session=doc("b"))
        assert [s["id"] for s in (await store.search_sessions("pears")).items] == ["b"]
        await store.delete_session("b")
        await store.append(chat("c", "ask about figs", ["figs are sweet"]), session=doc("c"))
        assert [s["id"] for s in (await store.search_sessions("sweet figs")).items] == ["c"]
        assert indexed(path) == (2, 2, 6)


async def test_compacting_keeps_the_indexes_in_step_with_the_records(tmp_path: Path) -> None:
    path = tmp_path / "acpd.db"
    async with await SqliteEventStore.open(path) as store:
        for name in "abc":
            await store.append(chat(name, f"ask about {name}", ["an answer"]), session=doc(name))
        await store.delete_session("a")
        await store.compact()
        await store.append(chat("d", "ask about dates", ["dates are sticky"]), session=doc("d"))
        assert [s["id"] for s in (await store.search_sessions("sticky dates")).items] == ["d"]
    with sqlite3.connect(path) as conn:
        last = conn.execute("SELECT max(rowid) FROM events").fetchone()[0]
    assert indexed(path) == (3, 3, last)


async def test_a_database_of_schema_3_keeps_its_indexes_and_indexes_its_search_backlog_when_migrated(
    tmp_path: Path,
) -> None:
    path = tmp_path / "acpd.db"
    kept, waiting = turn_records("s", 1, 1, cost=0.5, tokens=10, second=0), chat("a", "ask about plums", ["ripe"])
    with sqlite3.connect(path) as conn:  # as an acpd of schema 3 left it when killed after a's turn
        for statement in [step for migration in MIGRATIONS[:3] for step in migration]:
            conn.execute(statement) if isinstance(statement, str) else statement(conn)
        conn.execute("PRAGMA user_version = 3")
        for records, session in ((kept, doc("s", model="big")), (waiting, doc("a"))):
            conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", records)
            keys = session_keys(session)
            conn.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?)",
                (keys.id, keys.agent, keys.project, keys.cwd, keys.created_at, keys.archived_at, json.dumps(session)),
            )
            texts = sqlite_index.index_records(conn, records, {})  # in the records' commit, as schema 3 did
        sqlite_index.index_texts(conn, {("s", 1): "do thing 1"})
        conn.execute("INSERT INTO search_backlog VALUES ('a', 1)")  # a's text was still waiting
        assert texts
    async with await SqliteEventStore.open(path) as migrated:
        assert [(t["turn"], t["model"], t["steps"]) for t in await migrated.turns("s")] == [(1, "big", 1)]
        assert [s["id"] for s in (await migrated.search_sessions("ripe plums")).items] == ["a"]
    with sqlite3.connect(path) as conn:
        tables = dict(conn.execute("SELECT name, sql FROM sqlite_schema WHERE name IN ('turns', 'search_backlog')"))
        indexes = [row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE tbl_name = 'turns'")]
    assert list(tables) == ["turns"] and tables["turns"].endswith("WITHOUT ROWID")
    assert "turns_by_started" in indexes
    assert indexed(path) == (2, 2, 7)


@pytest.mark.usefixtures("no_idle_indexing")
async def test_texts_a_full_disk_kept_out_of_the_index_wait_and_the_writer_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "acpd.db"
    index_texts = sqlite_index.index_texts

    def full(*args: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    async with await SqliteEventStore.open(path) as store:
        await store.append(chat("a", "ask about plums", ["plums are ripe"]), session=doc("a"))
        monkeypatch.setattr(sqlite_index, "index_texts", full)
        assert (await store.search_sessions("plums")).items == []  # the index as it is
        await store.append(chat("b", "ask about pears", ["pears are green"]), session=doc("b"))
        monkeypatch.setattr(sqlite_index, "index_texts", index_texts)  # space returns
        assert [s["id"] for s in (await store.search_sessions("ripe plums")).items] == ["a"]
        assert [s["id"] for s in (await store.search_sessions("green pears")).items] == ["b"]


def numbered_turn(session_id: str, number: int) -> list[EventRecord]:
    """``chat``'s turn as the session's turn ``number``, its seqs after ``number - 1`` such turns."""
    first = chat(session_id, f"prompt {number}", ["reply"])
    offset = (number - 1) * len(first)
    return [
        record._replace(
            seq=record.seq + offset, turn=number, payload=record.payload.replace('"turn-1"', f'"turn-{number}"')
        )
        for record in first
    ]


async def test_a_writer_that_never_idles_keeps_only_the_documents_its_unindexed_records_need(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under a load that never pauses, each commit's document was kept until the indexes caught up
    # with every record, which they never did: the list grew with every commit, and each turn's
    # row searched it from its start (a busy daemon's indexing grew slower the longer it ran).
    never_idle(monkeypatch, slice_records=3, behind_records=6)
    turns = 40
    async with await SqliteEventStore.open(tmp_path / "acpd.db") as store:
        for number in range(1, turns + 1):
            await store.append(numbered_turn("a", number), session=doc("a", model=f"m{number}"))
        kept = len(store._indexer._facts["a"])  # what the turns not indexed yet may need
        assert [t["model"] for t in await store.turns("a")] == [f"m{number}" for number in range(1, turns + 1)]
    assert kept <= 3
