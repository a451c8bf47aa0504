"""End to end: a daemon sharing a PostgreSQL database (``--share-db``) whose connection to it
breaks (a TCP proxy between it and the database, cut, then mended): when another daemon took one
of its live sessions meanwhile, it lets that session go (its turn ends with an error written to
no log) and serves it as any session another daemon holds; when nobody did, it takes its sessions
again as soon as the database answers, and its turn goes on."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from acpd.testing import tcp_proxy
from acpd.testing.daemon import Daemon, running_daemon
from tests.daemon.helpers import all_events, new_session
from tests.e2e.sse import sse_events
from tests.postgres import NOTE_TRIGGER, notes_of, port_of, postgres_dsn, side_sql, through, wait_free

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]
__all__ = ["postgres_dsn"]


@contextlib.asynccontextmanager
async def a_behind_a_proxy(tmp_path: Path, dsn: str) -> AsyncIterator[tuple[Daemon, Daemon, tcp_proxy.TcpProxy]]:
    """Daemon A reaching the database through a proxy the test can cut, daemon B directly."""
    port = port_of(dsn)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    async with (
        tcp_proxy.serving([("127.0.0.1", port)]) as proxy,
        running_daemon(tmp_path / "a", "--db", through(dsn, proxy.port), "--share-db", "--no-auth") as a,
        running_daemon(tmp_path / "b", "--db", dsn, "--share-db", "--no-auth") as b,
    ):
        yield a, b, proxy


async def stream_until_error(client: httpx.AsyncClient, session_id: str, seen: list[dict[str, Any]]) -> None:
    """Follow the session's stream, keeping its events, until an ``error`` event (a problem)."""
    async with client.stream("GET", f"/v1/sessions/{session_id}/events/stream") as response:
        async for event in sse_events(response):
            seen.append(event)
            if "seq" not in event:
                return


async def until_chunk(client: httpx.AsyncClient, session_id: str, text: str) -> None:
    async with client.stream("GET", f"/v1/sessions/{session_id}/events/stream") as response:
        async for event in sse_events(response):
            update = event["payload"].get("params", {}).get("update", {})
            if update.get("sessionUpdate") == "agent_message_chunk" and update["content"].get("text") == text:
                return


async def test_a_daemon_cut_off_while_another_took_its_session_lets_it_go_and_serves_it_as_a_non_owner(
    tmp_path: Path, postgres_dsn: str
) -> None:
    async with (
        a_behind_a_proxy(tmp_path, postgres_dsn) as (a, b, proxy),
        a.client(timeout=60) as on_a,
        b.client(timeout=60) as on_b,
    ):
        session_id = (await new_session(on_a, tmp_path))["id"]
        answers: list[httpx.Response] = []
        on_a_stream: list[dict[str, Any]] = []

        async def prompt_on_a() -> None:
            prompt = {"prompt": "text started\nsleep 60"}
            answers.append(await on_a.post(f"/v1/sessions/{session_id}/prompt", json=prompt))

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(prompt_on_a)
                await until_chunk(on_a, session_id, "started")
                tg.start_soon(stream_until_error, on_a, session_id, on_a_stream)
                await proxy.cut()  # the server lets A's locks go as it sees A's connection close
                await wait_free(postgres_dsn, session_id)
                taken = (await on_b.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "text on b"})).json()
                proxy.restore()  # A connects again, finds the session B's, and lets it go
        assert (taken["stopReason"], taken["turn"], taken["text"]) == ("end_turn", 2, "on b")
        # A's turn ended with the store-locked error, told to its caller and its stream, not logged
        assert answers[0].status_code == 503, answers[0].text
        problem = answers[0].json()
        assert problem["type"].endswith("store-locked") and "taken over by another daemon" in problem["detail"]
        assert problem["turn"] == 1
        assert "seq" not in on_a_stream[-1] and "taken over by another daemon" in on_a_stream[-1]["detail"]

        with anyio.fail_after(30):  # A serves it as a non-owner now: prompts go to B, reads from the table
            again = (await on_a.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "text via a"})).json()
            events = await all_events(on_b, session_id)
            assert await all_events(on_a, session_id) == events
        assert (again["stopReason"], again["turn"], again["text"]) == ("end_turn", 3, "via a")
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert on_a_stream[:-1] == events[: len(on_a_stream) - 1]  # what A streamed is in the log
        kinds = [e["payload"].get("method") or e["payload"].get("id") for e in events]
        assert kinds.count("_acpd/turn_interrupted") == 1  # B found turn 1 running, and said so
        assert "turn-1" not in kinds and "_acpd/error" not in kinds  # nothing of A's after the cut
        assert kinds.count("_acpd/agent_started") == 2  # A's, then B's
        turns = (await on_a.get(f"/v1/sessions/{session_id}/turns")).json()["items"]
        assert [(t["turn"], t["error"]) for t in turns] == [
            (1, "interrupted: the daemon restarted"),
            (2, None),
            (3, None),
        ]


async def test_a_daemon_cut_off_while_nobody_took_its_session_holds_it_again_and_its_turn_goes_on(
    tmp_path: Path, postgres_dsn: str
) -> None:
    async with (
        a_behind_a_proxy(tmp_path, postgres_dsn) as (a, b, proxy),
        a.client(timeout=60) as on_a,
        b.client(timeout=60) as on_b,
    ):
        await side_sql(postgres_dsn, *NOTE_TRIGGER)
        session_id = (await new_session(on_a, tmp_path, policy={"permissions": "ask"}))["id"]
        answers: list[httpx.Response] = []

        async def prompt_on_a() -> None:
            prompt = {"prompt": "text started\npermission edit\ntext done"}
            answers.append(await on_a.post(f"/v1/sessions/{session_id}/prompt", json=prompt))

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(prompt_on_a)
                async with on_a.stream("GET", f"/v1/sessions/{session_id}/events/stream") as response:
                    async for event in sse_events(response):
                        if event["payload"].get("method") == "session/request_permission":
                            break
                await proxy.cut()
                await wait_free(postgres_dsn, session_id)
                async with notes_of(postgres_dsn) as notes:
                    proxy.restore()
                    # A connects again by itself (nothing writes), takes its session again, notes itself
                    assert await notes.receive() == a.url
                # so B does not take it: B sends the permission's answer on to A, whose turn goes on
                pending = (await on_b.get(f"/v1/sessions/{session_id}/permissions")).json()["items"]
                reply = await on_b.post(
                    f"/v1/sessions/{session_id}/permissions/{pending[0]['id']}", json={"reply": "once"}
                )
                assert reply.status_code == 200, reply.text
        answer = answers[0].json()
        assert (answer["stopReason"], answer["text"]) == ("end_turn", "startedpermission: allowdone"), answer
        events = await all_events(on_b, session_id)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        kinds = [e["payload"].get("method") for e in events]
        assert "_acpd/turn_interrupted" not in kinds and "_acpd/error" not in kinds
        assert kinds.count("_acpd/agent_started") == 1
        assert events[-1]["payload"]["id"] == "turn-1"  # its answer, from A


async def test_a_prompt_through_another_daemon_takes_over_a_session_whose_killed_owner_still_holds_its_lock(
    tmp_path: Path, postgres_dsn: str
) -> None:
    # the owner is gone (its address refuses connections) but the server has not yet seen its
    # connection close: the other daemon waits for the lock to go, takes the session and answers
    async with (
        a_behind_a_proxy(tmp_path, postgres_dsn) as (a, b, proxy),
        a.client(timeout=60) as on_a,
        b.client(timeout=60) as on_b,
    ):
        session_id = (await new_session(on_a, tmp_path))["id"]
        answers: list[httpx.Response] = []

        async def prompt_on_b() -> None:
            answers.append(await on_b.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "text on b"}))

        with anyio.fail_after(60):
            assert (await on_a.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "text on a"})).is_success
            proxy.linger = True  # A's database connection outlives A: the server keeps A's lock
            await a.kill()
            async with anyio.create_task_group() as tg:
                tg.start_soon(prompt_on_b)
                for _ in range(3):  # B has tried the lock and A's address by now
                    assert (await on_b.get("/v1/health")).is_success
                assert not answers  # B waits for the lock
                await proxy.let_go()  # the server sees A's connection close and lets the lock go
        assert answers[0].status_code == 200, answers[0].text
        assert (answers[0].json()["turn"], answers[0].json()["text"]) == (2, "on b")
        events = await all_events(on_b, session_id)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
