"""End to end on PostgreSQL: a real ``acpd serve --db postgresql://…`` process: a streamed turn,
a restart that resumes the session, a ``kill -9`` mid-turn that loses no event a client saw, a
database lost mid-turn and back, a database that is not there at start, a second daemon."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from acpd.testing.daemon import daemon_env, running_daemon
from acpd.testing.postgres import Cluster
from tests.daemon.helpers import all_events, new_session
from tests.e2e.sse import sse_events
from tests.postgres import CUT_NEXT_INSERT, CUT_ONE_INSERT, postgres_dsn, side_sql

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]
__all__ = ["postgres_dsn"]


async def test_a_turn_streams_from_a_daemon_on_postgres_and_the_session_goes_on_after_a_restart(
    tmp_path: Path, postgres_dsn: str
) -> None:
    async with running_daemon(tmp_path, "--db", postgres_dsn) as daemon, daemon.client() as http:
        session_id = (await new_session(http, tmp_path, title="Kumquat plans"))["id"]
        with anyio.fail_after(30):
            async with http.stream(
                "POST",
                f"/v1/sessions/{session_id}/prompt",
                json={"prompt": "chunks 2000\ntool read"},
                headers={"Accept": "text/event-stream"},
            ) as response:
                seen = [event async for event in sse_events(response)]
        assert seen[-1]["payload"]["result"]["stopReason"] == "end_turn"
        seqs = [e["seq"] for e in seen]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    async with running_daemon(tmp_path, "--db", postgres_dsn) as daemon, daemon.client() as http:
        assert [s["id"] for s in (await http.get("/v1/sessions")).json()["items"]] == [session_id]
        events = await all_events(http, session_id)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert {e["seq"]: e for e in events if e["seq"] in seqs} == {e["seq"]: e for e in seen}
        with anyio.fail_after(30):
            answer = (await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "and then?"})).json()
        assert (answer["stopReason"], answer["turn"]) == ("end_turn", 2)
        turns = (await http.get(f"/v1/sessions/{session_id}/turns")).json()["items"]
        assert [t["turn"] for t in turns] == [1, 2]
        found = (await http.get("/v1/sessions", params={"q": "kumquat"})).json()["items"]
        assert [s["id"] for s in found] == [session_id]


async def test_kill_9_mid_turn_on_postgres_loses_no_seen_event_and_the_session_goes_on(
    tmp_path: Path, postgres_dsn: str
) -> None:
    seen: dict[int, dict[str, Any]] = {}
    async with running_daemon(tmp_path, "--db", postgres_dsn) as daemon, daemon.client() as http:
        session_id = (await new_session(http, tmp_path))["id"]
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                # The sleep keeps the turn running until the kill, however far behind the reader is.
                tg.start_soon(
                    _ignore_errors,
                    http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "chunks 20000\nsleep 60"}),
                )
                async with http.stream("GET", f"/v1/sessions/{session_id}/events/stream") as response:
                    async for event in sse_events(response):
                        seen[event["seq"]] = event
                        if len(seen) == 8_000:
                            await daemon.kill()
                            break
                tg.cancel_scope.cancel()
        assert daemon.process.returncode == -9
    async with running_daemon(tmp_path, "--db", postgres_dsn) as daemon, daemon.client() as http:
        events = await all_events(http, session_id)
        by_seq = {e["seq"]: e for e in events}
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert all(by_seq[seq] == event for seq, event in seen.items())
        assert any(e["payload"].get("method") == "_acpd/turn_interrupted" for e in events)
        with anyio.fail_after(30):
            answer = (await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "after the kill"})).json()
        assert (answer["stopReason"], answer["turn"]) == ("end_turn", 2)
        (interrupted, _) = (await http.get(f"/v1/sessions/{session_id}/turns")).json()["items"]
        assert interrupted["error"] == "interrupted: the daemon restarted"


async def test_a_database_lost_mid_turn_ends_the_turn_with_an_error_and_the_log_goes_on_gap_free_when_it_returns(
    tmp_path: Path, postgres_dsn: str
) -> None:
    seen: dict[int, dict[str, Any]] = {}
    answers: list[httpx.Response] = []
    async with running_daemon(tmp_path, "--db", postgres_dsn) as daemon, daemon.client() as http:
        session_id = (await new_session(http, tmp_path))["id"]

        async def prompt() -> None:
            answers.append(await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": HELD_TURN}))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(prompt)
                async with http.stream("GET", f"/v1/sessions/{session_id}/events/stream") as response:
                    async for event in sse_events(response):
                        seen[event["seq"]] = event
                        if asks_permission(event):  # the turn waits here: the cut lands mid-turn
                            await side_sql(postgres_dsn, *CUT_NEXT_INSERT)
                            tg.start_soon(answer_permission, http, session_id)
                            break
        assert answers[0].status_code == 500, answers[0].text
        assert answers[0].json()["type"] == "urn:acpd:problem:store-error"
        await side_sql(postgres_dsn, "DROP TRIGGER cut ON events")  # the database is back
        after = max(seen)
        with anyio.fail_after(30):  # what could not be committed meanwhile commits now, in order
            async with http.stream("GET", f"/v1/sessions/{session_id}/events/stream", params={"after": after}) as live:
                async for event in sse_events(live):
                    if event["payload"].get("id") == "turn-1" and "method" not in event["payload"]:
                        break
        events = await all_events(http, session_id)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert all(events[seq - 1] == event for seq, event in seen.items())
        errors = [e["payload"]["params"] for e in events if e["payload"].get("method") == "_acpd/error"]
        assert [e["code"] for e in errors] == ["STORE_FAILED"]
        with anyio.fail_after(30):
            again = (await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "text back"})).json()
        assert (again["stopReason"], again["turn"], again["text"]) == ("end_turn", 2, "back")


async def test_a_database_lost_for_a_moment_mid_turn_is_tried_again_and_the_turn_ends_normally_gap_free(
    tmp_path: Path, postgres_dsn: str
) -> None:
    seen: dict[int, dict[str, Any]] = {}
    answers: list[httpx.Response] = []
    async with running_daemon(tmp_path, "--db", postgres_dsn) as daemon, daemon.client() as http:
        session_id = (await new_session(http, tmp_path))["id"]

        async def prompt() -> None:
            answers.append(await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": HELD_TURN}))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(prompt)
                async with http.stream("GET", f"/v1/sessions/{session_id}/events/stream") as response:
                    async for event in sse_events(response):
                        seen[event["seq"]] = event
                        if asks_permission(event):  # the turn waits here: the cut lands mid-turn
                            await side_sql(postgres_dsn, *CUT_ONE_INSERT)
                            tg.start_soon(answer_permission, http, session_id)
                        if is_turn_answer(event, 1):
                            break
        assert answers[0].status_code == 200, answers[0].text
        assert answers[0].json()["stopReason"] == "end_turn"
        events = await all_events(http, session_id)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert [events[seq - 1] for seq in sorted(seen)] == [seen[seq] for seq in sorted(seen)]
        assert max(seen) == len(events)  # the stream got every event, once
        assert not [e for e in events if e["payload"].get("method") == "_acpd/error"]
        assert await side_fetchval(postgres_dsn, "SELECT last_value FROM cuts") >= 2  # it was cut, then let through


HELD_TURN = "chunks 2000\npermission edit\nchunks 18000"
"""A turn of 20,000 chunks that waits for a permission after the first 2,000, so that a cut made
then lands mid-turn however fast the rest would have been committed."""


def asks_permission(event: dict[str, Any]) -> bool:
    return bool(event["payload"].get("method") == "session/request_permission")


async def answer_permission(http: httpx.AsyncClient, session_id: str) -> None:
    """Allow the turn's pending permission (its answer may fail to commit: that is the test)."""
    (pending,) = (await http.get(f"/v1/sessions/{session_id}/permissions")).json()["items"]
    await http.post(f"/v1/sessions/{session_id}/permissions/{pending['id']}", json={"reply": "once"})


def is_turn_answer(event: dict[str, Any], turn: int) -> bool:
    return event["payload"].get("id") == f"turn-{turn}" and "method" not in event["payload"]


async def side_fetchval(dsn: str, query: str) -> Any:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def test_a_daemon_whose_database_is_not_there_says_so_and_exits(
    tmp_path: Path, postgres_cluster: Cluster
) -> None:
    nowhere = f"postgresql://acpd:hunter2@127.0.0.1:{postgres_cluster.port}/missing"
    with pytest.raises(RuntimeError, match="exited before listening") as refused:
        async with running_daemon(tmp_path, "--db", nowhere):
            pass
    tail = str(refused.value)
    assert (
        f"cannot reach the PostgreSQL event store postgresql://acpd:***@127.0.0.1:{postgres_cluster.port}/missing"
        in tail
    )
    assert 'database "missing" does not exist' in tail
    assert "hunter2" not in tail


async def test_a_second_daemon_on_the_same_database_is_refused_naming_the_owner(
    tmp_path: Path, postgres_dsn: str
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with running_daemon(tmp_path / "a", "--db", postgres_dsn) as first:
        with pytest.raises(RuntimeError, match="exited before listening") as refused:
            async with running_daemon(tmp_path / "b", "--db", postgres_dsn):
                pass
    assert "another acpd (database backend pid " in str(refused.value)
    assert f", serving {first.url}) holds postgresql://" in str(refused.value)


async def test_acpd_acp_on_a_database_a_daemon_holds_relays_to_that_daemon(tmp_path: Path, postgres_dsn: str) -> None:
    async with running_daemon(tmp_path, "--db", postgres_dsn) as daemon:
        with anyio.fail_after(30):
            relayed = await anyio.run_process(
                [sys.executable, "-m", "acpd", "acp", "--db", postgres_dsn, "--url", "http://127.0.0.1:1"],
                env=daemon_env(tmp_path),
                input=b"",
            )
    assert f"acpd acp: the daemon that owns {postgres_dsn} serves {daemon.url}: relaying there\n".encode() in (
        relayed.stderr
    ), relayed.stderr.decode()


async def _ignore_errors(call: Any) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the daemon is killed under this request on purpose
        await call
