"""The EventStore contract, run against every store: memory, SQLite on a file, SQLite in memory,
PostgreSQL owned by one daemon and shared by several."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import pytest

from acpd.errors import InvalidInput, StoreError
from acpd.protocol.events import EventRecord
from acpd.store import EventStore, MemoryEventStore, SessionDoc, SqliteEventStore
from acpd.store.postgres import PostgresEventStore
from tests.postgres import fresh_schema
from tests.store.helpers import CREATED_AT, doc, log, record

pytestmark = pytest.mark.anyio

STORE_KINDS: Final = ("memory", "sqlite-file", "sqlite-memory", "postgres", "postgres-shared")


@pytest.fixture(params=STORE_KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path, anyio_backend: str) -> AsyncIterator[EventStore]:
    kind: str = request.param
    if kind.startswith("postgres"):
        cluster = request.getfixturevalue("postgres_cluster")
        shared = kind == "postgres-shared"  # as daemons sharing the database open it
        async with fresh_schema(cluster) as dsn, await PostgresEventStore.open(dsn, shared=shared) as opened_pg:
            yield opened_pg
        return
    opened: EventStore
    if kind == "memory":
        opened = MemoryEventStore()
    elif kind == "sqlite-file":
        opened = await SqliteEventStore.open(tmp_path / "nested" / "dir" / "acpd.db")
    else:
        opened = await SqliteEventStore.open(":memory:")
    try:
        yield opened
    finally:
        await opened.aclose()


async def all_pages(store: EventStore, limit: int, **filters: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = await store.list_sessions(limit=limit, cursor=cursor, **filters)
        pages.append([item["id"] for item in page.items])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


# -- events ------------------------------------------------------------------------------------


async def test_appended_records_read_back_in_seq_order_across_batches(store: EventStore) -> None:
    await store.append(log("s1", 1, 3))
    await store.append(log("s1", 4, 10))

    assert await store.read("s1") == log("s1", 1, 10)


async def test_a_large_batch_of_several_sessions_reads_back_whole_and_in_order(store: EventStore) -> None:
    # past the SQLite store's rows per INSERT statement, with a remainder, sessions interleaved
    first, second = log("a", 1, 150), log("b", 1, 70)
    await store.append([*first[:100], *second, *first[100:]])

    assert await store.read("a", limit=1000) == first
    assert await store.read("b", limit=1000) == second
    assert await store.last_seq("a") == 150


async def test_read_returns_records_after_the_given_seq_up_to_the_limit(store: EventStore) -> None:
    await store.append(log("s1", 1, 10))

    assert await store.read("s1", after=3, limit=4) == log("s1", 4, 7)
    assert await store.read("s1", after=8, limit=100) == log("s1", 9, 10)
    assert await store.read("s1", after=10) == []
    assert await store.read("s1", limit=0) == []


async def test_a_negative_read_limit_is_invalid_input(store: EventStore) -> None:
    with pytest.raises(InvalidInput):
        await store.read("s1", limit=-1)


async def test_an_unknown_session_has_no_records_and_last_seq_zero(store: EventStore) -> None:
    assert await store.read("nobody") == []
    assert await store.last_seq("nobody") == 0


async def test_last_seq_is_the_highest_committed_seq(store: EventStore) -> None:
    await store.append(log("s1", 1, 5))
    await store.append(log("s2", 1, 2))

    assert await store.last_seq("s1") == 5
    assert await store.last_seq("s2") == 2


async def test_one_batch_may_interleave_several_sessions(store: EventStore) -> None:
    await store.append([record("a", 1), record("b", 1), record("a", 2), record("b", 2), record("a", 3)])

    assert await store.read("a") == log("a", 1, 3)
    assert await store.read("b") == log("b", 1, 2)


async def test_an_empty_batch_writes_nothing(store: EventStore) -> None:
    await store.append([])

    assert await store.last_seq("s1") == 0


BAD_BATCHES: Final = {
    "gap": [record("a", 3), record("a", 5)],
    "duplicate-of-committed": [record("a", 2)],
    "duplicate-within-batch": [record("a", 3), record("a", 3)],
    "new-log-not-starting-at-1": [record("c", 2)],
    "new-log-starting-at-0": [record("c", 0)],
}


@pytest.mark.parametrize("bad", BAD_BATCHES.values(), ids=BAD_BATCHES.keys())
async def test_a_seq_that_does_not_continue_the_log_rejects_the_whole_batch(
    store: EventStore, bad: list[EventRecord]
) -> None:
    await store.append(log("a", 1, 2))

    with pytest.raises(StoreError):
        await store.append([*log("b", 1, 2), *bad])

    assert await store.read("a") == log("a", 1, 2)
    assert await store.read("b") == []
    assert await store.read("c") == []
    assert await store.last_seq("a") == 2
    assert await store.last_seq("b") == 0


async def test_a_session_document_commits_with_its_batch(store: EventStore) -> None:
    await store.append(log("a", 1, 2), session=doc("a", title="with its events"))
    assert await store.read("a") == log("a", 1, 2)
    saved = await store.get_session("a")
    assert saved is not None
    assert saved["title"] == "with its events"
    await store.append([], session=doc("a", title="alone"))
    saved = await store.get_session("a")
    assert saved is not None
    assert saved["title"] == "alone"


async def test_a_rejected_batch_does_not_save_its_session_document(store: EventStore) -> None:
    await store.append(log("a", 1, 2), session=doc("a", title="before"))
    with pytest.raises(StoreError):
        await store.append([record("a", 5)], session=doc("a", title="after"))
    saved = await store.get_session("a")
    assert saved is not None
    assert saved["title"] == "before"


async def test_append_many_commits_several_sessions_records_and_documents_in_one_go(store: EventStore) -> None:
    await store.append(log("a", 1, 2))
    await store.append_many([*log("a", 3, 4), *log("b", 1, 3)], sessions=[doc("a", title="a's"), doc("b", title="b's")])
    assert await store.read("a") == log("a", 1, 4)
    assert await store.read("b") == log("b", 1, 3)
    assert [(await store.get_session(s) or {}).get("title") for s in ("a", "b")] == ["a's", "b's"]
    await store.append_many([], sessions=[doc("c", title="alone")])
    assert (await store.get_session("c") or {}).get("title") == "alone"
    await store.append_many([])  # nothing to commit is no error


async def test_append_many_is_all_or_none_across_sessions(store: EventStore) -> None:
    await store.append(log("a", 1, 2), session=doc("a", title="before"))
    with pytest.raises(StoreError):
        await store.append_many([*log("b", 1, 2), record("a", 5)], sessions=[doc("a", title="after"), doc("b")])
    assert await store.read("b") == []
    assert await store.get_session("b") is None
    assert (await store.get_session("a") or {}).get("title") == "before"
    with pytest.raises(InvalidInput):
        await store.append_many(log("b", 1, 2), sessions=[{"id": "b"}])
    assert await store.read("b") == []


async def test_a_rejected_batch_does_not_disturb_the_next_valid_one(store: EventStore) -> None:
    await store.append(log("a", 1, 2))
    with pytest.raises(StoreError):
        await store.append([*log("b", 1, 2), record("a", 3), record("a", 5)])

    await store.append([*log("b", 1, 2), *log("a", 3, 4)])

    assert await store.read("a") == log("a", 1, 4)
    assert await store.read("b") == log("b", 1, 2)


PAYLOADS: Final = {
    "non-canonical-spacing-and-key-order": '{ "z" : 1,\t"a":[ 1.50, 2e3 ],  "m":{}\n}',
    "unicode": '{"text":"héllo wörld ✓ 日本語 עברית 👩\u200d💻 e\u0301","sep":"\u2028\u2029"}',
    "escapes-kept-as-written": '{"nul":"\\u0000","tab":"\\t","emoji":"\\ud83d\\ude00","slash":"\\/"}',
    "meta-and-unknown-variant": '{"params":{"update":{"sessionUpdate":"future_thing","_meta":{"x":[null,true]}}}}',
}


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
async def test_payload_text_round_trips_byte_for_byte(store: EventStore, payload: str) -> None:
    await store.append([record("sé-ß-😀", 1, payload)])

    (got,) = await store.read("sé-ß-😀")

    assert got.payload.encode() == payload.encode()
    assert got == record("sé-ß-😀", 1, payload)


async def test_large_payloads_round_trip_byte_for_byte(store: EventStore) -> None:
    big = '{"text":"' + "Ω≈ç√∫ abc " * 800_000 + '"}'

    await store.append([record("s1", 1, big), record("s1", 2)])

    assert await store.read("s1") == [record("s1", 1, big), record("s1", 2)]


async def test_each_sender_and_turn_are_kept(store: EventStore) -> None:
    records = [
        EventRecord("s1", 1, "2026-01-02T03:04:05.001Z", "client", 1, '{"id":1}'),
        EventRecord("s1", 2, "2026-01-02T03:04:05.002Z", "agent", 1, '{"id":2}'),
        EventRecord("s1", 3, "2026-01-02T03:04:05.003Z", "daemon", 7, '{"id":3}'),
    ]

    await store.append(records)

    assert await store.read("s1") == records


# -- sessions ----------------------------------------------------------------------------------


async def test_a_saved_session_reads_back_with_every_key(store: EventStore) -> None:
    saved = doc("s1", title="Fix the bug", policy={"permissions": "ask", "maxSteps": 5}, usage={"cost": 0.25})

    await store.save_session(saved)

    assert await store.get_session("s1") == saved
    assert await store.get_session("unknown") is None


async def test_saving_a_session_again_replaces_it(store: EventStore) -> None:
    await store.save_session(doc("s1", title="old", project="p1"))

    await store.save_session(doc("s1", title="new", project="p2"))

    assert await store.get_session("s1") == doc("s1", title="new", project="p2")
    assert [item["title"] for item in (await store.list_sessions(project="p2")).items] == ["new"]
    assert (await store.list_sessions(project="p1")).items == []


async def test_a_saved_document_is_a_copy_not_the_callers_dict(store: EventStore) -> None:
    saved = doc("s1", config={"model": "a"})
    await store.save_session(saved)

    saved["config"]["model"] = "changed"
    got = await store.get_session("s1")
    assert got is not None
    got["title"] = "changed too"

    assert await store.get_session("s1") == doc("s1", config={"model": "a"})


@pytest.mark.parametrize(
    "bad",
    [
        {"agent": "mock", "cwd": "/x", "createdAt": CREATED_AT},
        {"id": "", "agent": "mock", "cwd": "/x", "createdAt": CREATED_AT},
        {"id": "s1", "agent": 3, "cwd": "/x", "createdAt": CREATED_AT},
        {"id": "s1", "agent": "mock", "createdAt": CREATED_AT},
        {"id": "s1", "agent": "mock", "cwd": "/x"},
        {"id": "s1", "agent": "mock", "cwd": "/x", "createdAt": CREATED_AT, "project": 5},
        {"id": "s1", "agent": "mock", "cwd": "/x", "createdAt": CREATED_AT, "archivedAt": False},
        {"id": "s1", "agent": "mock", "cwd": "/x", "createdAt": CREATED_AT, "extra": {1: "non-string key"}},
    ],
    ids=["no-id", "empty-id", "agent-not-str", "no-cwd", "no-createdAt", "project-int", "archivedAt-bool", "not-json"],
)
async def test_a_session_document_without_its_indexed_keys_is_invalid_input(store: EventStore, bad: SessionDoc) -> None:
    with pytest.raises(InvalidInput):
        await store.save_session(bad)

    assert (await store.list_sessions()).items == []


async def test_deleting_a_session_removes_its_events_and_idempotency_records(store: EventStore) -> None:
    await store.save_session(doc("s1"))
    await store.append(log("s1", 1, 4))
    await store.put_idempotent("s1", "key-1", '{"stopReason":"end_turn"}')
    await store.save_session(doc("s2"))
    await store.append(log("s2", 1, 2))
    await store.put_idempotent("s2", "key-1", "kept")

    assert await store.delete_session("s1") is True

    assert await store.get_session("s1") is None
    assert await store.read("s1") == []
    assert await store.last_seq("s1") == 0
    assert await store.get_idempotent("s1", "key-1") is None
    assert [item["id"] for item in (await store.list_sessions()).items] == ["s2"]
    assert await store.read("s2") == log("s2", 1, 2)
    assert await store.get_idempotent("s2", "key-1") == "kept"


async def test_deleting_an_unknown_session_returns_false(store: EventStore) -> None:
    assert await store.delete_session("nobody") is False


async def test_a_deleted_sessions_log_starts_again_at_seq_1(store: EventStore) -> None:
    await store.save_session(doc("s1"))
    await store.append(log("s1", 1, 3))
    await store.delete_session("s1")

    await store.append(log("s1", 1, 2))

    assert await store.read("s1") == log("s1", 1, 2)


# -- listing -----------------------------------------------------------------------------------


async def test_sessions_list_newest_first_with_id_breaking_ties(store: EventStore) -> None:
    await store.save_session(doc("b", "2026-01-01T00:00:00.000Z"))
    await store.save_session(doc("a", "2026-01-03T00:00:00.000Z"))
    await store.save_session(doc("c", "2026-01-02T00:00:00.000Z"))
    await store.save_session(doc("e", "2026-01-02T00:00:00.000Z"))
    await store.save_session(doc("d", "2026-01-02T00:00:00.000Z"))

    page = await store.list_sessions()

    assert [item["id"] for item in page.items] == ["a", "e", "d", "c", "b"]
    assert page.next_cursor is None


async def test_pages_cover_every_session_once_even_with_equal_created_at(store: EventStore) -> None:
    expected: list[str] = []
    for day in (3, 2, 1):
        for letter in "zyxwvu":
            session_id = f"{letter}{day}"
            expected.append(session_id)
            await store.save_session(doc(session_id, f"2026-01-0{day}T00:00:00.000Z"))

    pages = await all_pages(store, limit=4)

    assert [len(page) for page in pages] == [4, 4, 4, 4, 2]
    assert [session_id for page in pages for session_id in page] == expected


async def test_the_last_page_has_no_cursor_even_when_it_is_full(store: EventStore) -> None:
    for index in range(4):
        await store.save_session(doc(f"s{index}"))

    pages = await all_pages(store, limit=2)

    assert [len(page) for page in pages] == [2, 2]


async def test_a_cursor_stays_valid_when_sessions_are_added_or_removed(store: EventStore) -> None:
    for index in range(6):
        await store.save_session(doc(f"s{index}", f"2026-01-0{index + 1}T00:00:00.000Z"))
    first = await store.list_sessions(limit=2)
    assert first.next_cursor is not None

    await store.delete_session("s3")
    await store.save_session(doc("newest", "2026-02-01T00:00:00.000Z"))
    rest = await store.list_sessions(limit=10, cursor=first.next_cursor)

    assert [item["id"] for item in first.items] == ["s5", "s4"]
    assert [item["id"] for item in rest.items] == ["s2", "s1", "s0"]


async def test_sessions_filter_by_project_agent_cwd_and_archived(store: EventStore) -> None:
    archived_at = "2026-03-01T00:00:00.000Z"
    await store.save_session(doc("p1-mock", "2026-01-01T00:00:00.000Z", project="p1"))
    await store.save_session(doc("p1-codex", "2026-01-02T00:00:00.000Z", project="p1", agent="codex"))
    await store.save_session(doc("p2-old", "2026-01-03T00:00:00.000Z", project="p2", archivedAt=archived_at))
    await store.save_session(doc("none-cwd", "2026-01-04T00:00:00.000Z", cwd="/srv/projects/beta"))

    async def ids(**filters: Any) -> list[str]:
        return [item["id"] for item in (await store.list_sessions(**filters)).items]

    assert await ids(project="p1") == ["p1-codex", "p1-mock"]
    assert await ids(agent="codex") == ["p1-codex"]
    assert await ids(agent="mock") == ["none-cwd", "p2-old", "p1-mock"]
    assert await ids(cwd="/srv/projects/beta") == ["none-cwd"]
    assert await ids(archived=True) == ["p2-old"]
    assert await ids(archived=False) == ["none-cwd", "p1-codex", "p1-mock"]
    assert await ids(archived=None) == ["none-cwd", "p2-old", "p1-codex", "p1-mock"]
    assert await ids(project="p1", agent="mock") == ["p1-mock"]
    assert await ids(project="nope") == []


async def test_filtered_listings_page_across_more_sessions_than_one_page(store: EventStore) -> None:
    expected: list[str] = []
    for index in range(20):
        project = "even" if index % 2 == 0 else "odd"
        await store.save_session(doc(f"s{index:02}", "2026-01-01T00:00:00.000Z", project=project))
        if project == "even":
            expected.insert(0, f"s{index:02}")

    pages = await all_pages(store, limit=3, project="even", archived=False)

    assert [len(page) for page in pages] == [3, 3, 3, 1]
    assert [session_id for page in pages for session_id in page] == expected


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    ["", "!!not base64!!", b64(b"not json"), b64(b'{"c":"x","i":"y"}'), b64(b'["only-one"]'), b64(b"[1, 2]"), "é"],
)
async def test_a_malformed_cursor_is_invalid_input(store: EventStore, cursor: str) -> None:
    await store.save_session(doc("s1"))

    with pytest.raises(InvalidInput):
        await store.list_sessions(cursor=cursor)


@pytest.mark.parametrize("limit", [0, -1])
async def test_a_page_limit_below_one_is_invalid_input(store: EventStore, limit: int) -> None:
    with pytest.raises(InvalidInput):
        await store.list_sessions(limit=limit)


# -- idempotency and lifecycle -------------------------------------------------------------------


async def test_idempotency_answers_are_kept_per_session_and_key(store: EventStore) -> None:
    await store.put_idempotent("s1", "k", '{"answer":1}')
    await store.put_idempotent("s2", "k", '{"answer":2}')

    assert await store.get_idempotent("s1", "k") == '{"answer":1}'
    assert await store.get_idempotent("s2", "k") == '{"answer":2}'
    assert await store.get_idempotent("s1", "other") is None
    assert await store.get_idempotent("s3", "k") is None


async def test_putting_an_idempotency_answer_again_replaces_it(store: EventStore) -> None:
    await store.put_idempotent("s1", "k", "first")

    await store.put_idempotent("s1", "k", "second")

    assert await store.get_idempotent("s1", "k") == "second"


async def test_a_closed_store_refuses_calls_and_closes_again_quietly(store: EventStore) -> None:
    await store.save_session(doc("s1"))

    await store.aclose()
    await store.aclose()

    with pytest.raises(StoreError):
        await store.append(log("s1", 1, 1))
    with pytest.raises(StoreError):
        await store.get_session("s1")


async def test_stores_used_as_async_context_managers_close_on_exit(tmp_path: Path, anyio_backend: str) -> None:
    async with MemoryEventStore() as memory, await SqliteEventStore.open(tmp_path / "acpd.db") as sqlite:
        closed_on_exit: list[EventStore] = [memory, sqlite]

    for closed in closed_on_exit:
        with pytest.raises(StoreError):
            await closed.last_seq("s1")
