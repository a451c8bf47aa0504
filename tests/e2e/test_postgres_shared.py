"""End to end: two daemons sharing one PostgreSQL database (``--share-db``): a session served by A
streams through B exactly as through A, B sends its prompts and permission answers on to A, and
when A is killed in the middle of a turn, B takes the session over, records the turn as
interrupted, and serves it on."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from acpd.daemon.serve import open_store
from acpd.errors import ConfigError
from acpd.store._pg_schema import FAILOVER_SECONDS
from acpd.testing.daemon import Daemon, running_daemon
from tests.daemon.helpers import all_events, new_session
from tests.e2e.sse import sse_events
from tests.postgres import postgres_dsn, wait_free

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]
__all__ = ["postgres_dsn"]


def is_answer(event: dict[str, Any], turn: int) -> bool:
    payload = event["payload"]
    return payload.get("id") == f"turn-{turn}" and "method" not in payload


async def stream_turn(http: httpx.AsyncClient, session_id: str, turn: int, into: list[dict[str, Any]]) -> None:
    """The session's events from the start through the answer of ``turn``."""
    async with http.stream("GET", f"/v1/sessions/{session_id}/events/stream") as response:
        assert response.status_code == 200
        async for event in sse_events(response):
            into.append(event)
            if is_answer(event, turn):
                return


@contextlib.asynccontextmanager
async def two_daemons(tmp_path: Path, dsn: str, *a_flags: str) -> Any:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    async with (
        running_daemon(tmp_path / "a", "--db", dsn, "--share-db", "--no-auth", *a_flags) as a,
        running_daemon(tmp_path / "b", "--db", dsn, "--share-db", "--no-auth") as b,
    ):
        yield a, b


async def test_a_session_served_by_one_daemon_streams_through_another_exactly_and_prompts_through_it_reach_the_owner(
    tmp_path: Path, postgres_dsn: str
) -> None:
    async with (
        two_daemons(tmp_path, postgres_dsn) as (a, b),
        a.client() as on_a,
        b.client() as on_b,
    ):
        session_id = (await new_session(on_a, tmp_path))["id"]
        through_a: list[dict[str, Any]] = []
        through_b: list[dict[str, Any]] = []
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(stream_turn, on_a, session_id, 1, through_a)
                tg.start_soon(stream_turn, on_b, session_id, 1, through_b)
                answer = await on_a.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "chunks 3000"})
        assert answer.json()["stopReason"] == "end_turn"
        assert through_b == through_a
        assert [e["seq"] for e in through_b] == list(range(1, len(through_b) + 1))
        assert await all_events(on_b, session_id) == through_a  # pages too
        assert [s["id"] for s in (await on_b.get("/v1/sessions")).json()["items"]] == [session_id]

        with anyio.fail_after(30):  # through B, served by A
            again = await on_b.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "text via b"})
        assert (again.json()["stopReason"], again.json()["turn"], again.json()["text"]) == ("end_turn", 2, "via b")


async def test_a_permission_asked_on_the_owner_is_answered_through_another_daemon(
    tmp_path: Path, postgres_dsn: str
) -> None:
    async with (
        two_daemons(tmp_path, postgres_dsn) as (a, b),
        a.client() as on_a,
        b.client() as on_b,
    ):
        session_id = (await new_session(on_a, tmp_path, policy={"permissions": "ask"}))["id"]
        answers: list[httpx.Response] = []

        async def prompt() -> None:
            answers.append(await on_b.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "permission edit"}))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(prompt)
                async with on_b.stream("GET", f"/v1/sessions/{session_id}/events/stream") as response:
                    async for event in sse_events(response):
                        if event["payload"].get("method") == "session/request_permission":
                            break
                pending = (await on_b.get(f"/v1/sessions/{session_id}/permissions")).json()["items"]
                reply = await on_b.post(
                    f"/v1/sessions/{session_id}/permissions/{pending[0]['id']}", json={"reply": "once"}
                )
                assert reply.json()["outcome"] == {"outcome": "selected", "optionId": "allow"}
        assert "permission: allow" in answers[0].json()["text"]
        owner = await on_b.get(f"/v1/sessions/{session_id}")
        assert owner.status_code == 200


async def test_when_the_owner_is_killed_mid_turn_another_daemon_takes_the_session_over(
    tmp_path: Path, postgres_dsn: str
) -> None:
    seen: list[dict[str, Any]] = []
    async with (
        two_daemons(tmp_path, postgres_dsn) as (a, b),
        a.client() as on_a,
        b.client() as on_b,
    ):
        session_id = (await new_session(on_a, tmp_path))["id"]
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    _ignore_errors,
                    on_a.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "chunks 50000\nsleep 60"}),
                )
                async with on_b.stream("GET", f"/v1/sessions/{session_id}/events/stream") as response:
                    async for event in sse_events(response):  # through B, while A serves it
                        seen.append(event)
                        if len(seen) == 20_000:
                            break
                await kill(a)
                killed = anyio.current_time()
                tg.cancel_scope.cancel()
        with anyio.fail_after(FAILOVER_SECONDS):  # the server frees A's sessions when A's connection closes
            await wait_free(postgres_dsn, session_id)
        assert anyio.current_time() - killed < FAILOVER_SECONDS
        with anyio.fail_after(30):
            answer = (await on_b.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "text on b"})).json()
        assert (answer["stopReason"], answer["turn"], answer["text"]) == ("end_turn", 2, "on b")
        events = await all_events(on_b, session_id)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert events[: len(seen)] == seen  # every event a client saw is in the database
        interrupted = [e for e in events if e["payload"].get("method") == "_acpd/turn_interrupted"]
        assert [e["payload"]["params"]["turn"] for e in interrupted] == [1]
        turns = (await on_b.get(f"/v1/sessions/{session_id}/turns")).json()["items"]
        assert [(t["turn"], t["error"]) for t in turns] == [(1, "interrupted: the daemon restarted"), (2, None)]


async def test_a_session_its_owner_let_go_of_when_idle_is_served_by_the_daemon_that_uses_it_next(
    tmp_path: Path, postgres_dsn: str
) -> None:
    async with (
        two_daemons(tmp_path, postgres_dsn, "--idle-seconds", "0.5") as (a, b),
        a.client() as on_a,
        b.client() as on_b,
    ):
        session_id = (await new_session(on_a, tmp_path))["id"]
        with anyio.fail_after(30):
            await on_a.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "text one"})
            async with on_b.stream("GET", f"/v1/sessions/{session_id}/events/stream") as response:
                async for event in sse_events(response):  # A lets it go once it has been idle
                    if event["payload"].get("method") == "_acpd/session_evicted":
                        break
            await wait_free(postgres_dsn, session_id)
            answer = (await on_b.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "text two"})).json()
        assert (answer["stopReason"], answer["turn"], answer["text"]) == ("end_turn", 2, "two")
        events = await all_events(on_b, session_id)
        methods = [e["payload"].get("method") for e in events]
        assert methods.count("_acpd/agent_started") == 2  # started again, on B
        assert "_acpd/turn_interrupted" not in methods


async def test_sharing_a_database_that_is_not_postgresql_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--share-db needs a PostgreSQL --db"):
        await open_store(str(tmp_path / "acpd.db"), share=True)


async def kill(daemon: Daemon) -> None:
    await daemon.kill()
    assert daemon.process.returncode == -9


async def _ignore_errors(call: Any) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the daemon is killed under this request on purpose
        await call
