"""A store that fails (a full disk) under a running daemon: the callers hear at once, the log
says why, and nothing is lost once space returns."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from acpd.config import DaemonConfig
from acpd.daemon import log as log_module
from acpd.daemon.app import create_app
from acpd.daemon.manager import SessionManager
from acpd.errors import RpcError
from acpd.protocol.events import EventRecord
from acpd.store.sqlite import SqliteEventStore
from tests.store.helpers import fill_up, make_room

from .acp_client import acp_client
from .helpers import FullDisk, all_events, daemon_frames, new_session, wait_for_record

pytestmark = pytest.mark.anyio

BASE_URL = "http://127.0.0.1:4520"


@pytest.fixture
def disk() -> FullDisk:
    return FullDisk()


@pytest.fixture
async def manager(
    config: DaemonConfig, disk: FullDisk, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SessionManager]:
    monkeypatch.setattr(log_module, "STORE_RETRY_SECONDS", 0.01)  # space returning is seen at once
    monkeypatch.setattr(log_module, "_failures", log_module._FailureReport())
    async with SessionManager(config, disk).running() as running:
        yield running


def answers_turn(number: int) -> object:
    def test(record: EventRecord) -> bool:
        payload = record.payload_object()
        return payload.get("id") == f"turn-{number}" and "method" not in payload

    return test


def assert_store_full_problem(response: httpx.Response) -> None:
    assert response.status_code == 507, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:acpd:problem:store-full"
    assert "database or disk is full" in problem["detail"]


async def test_a_prompt_when_the_disk_is_full_is_answered_store_full_and_its_log_resumes_gap_free_with_space(
    client: httpx.AsyncClient, manager: SessionManager, disk: FullDisk, workdir: Path
) -> None:
    session_id = (await new_session(client, workdir))["id"]
    disk.full = True
    with anyio.fail_after(10):
        response = await client.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "text hello"})
    assert_store_full_problem(response)
    assert response.json()["turn"] == 1

    disk.full = False
    with anyio.fail_after(10):
        await wait_for_record(manager, session_id, answers_turn(1))  # type: ignore[arg-type]
        # before the answer or after it: an agent that answers at once has done so before the
        # turn's first commit failed
        await wait_for_record(manager, session_id, lambda r: '"STORE_FULL"' in r.payload)
    events = await all_events(client, session_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["code"] for e in daemon_frames(events, "_acpd/error")] == ["STORE_FULL"]
    prompts = [e for e in events if e["payload"].get("method") == "session/prompt"]
    assert len(prompts) == 1
    with anyio.fail_after(10):
        answer = (await client.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "text again"})).json()
    assert answer["stopReason"] == "end_turn"
    assert answer["text"] == "again"


async def test_a_turn_the_disk_fills_under_is_stopped_and_answered_store_full(
    client: httpx.AsyncClient, manager: SessionManager, disk: FullDisk, workdir: Path
) -> None:
    session_id = (await new_session(client, workdir, policy={"permissions": "ask"}))["id"]
    runtime = await manager.runtime(session_id)
    async with anyio.create_task_group() as tg:
        answered: list[httpx.Response] = []

        async def prompt() -> None:
            answered.append(
                await client.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "permission\nsleep 30"})
            )

        tg.start_soon(prompt)
        with anyio.fail_after(10):
            while not runtime.broker.pending():
                await wait_for_record(manager, session_id, lambda r: "session/request_permission" in r.payload)
            disk.full = True
            pending = runtime.broker.pending()[0]
            await client.post(f"/v1/sessions/{session_id}/permissions/{pending.id}", json={"reply": "once"})
    assert_store_full_problem(answered[0])
    assert answered[0].json()["stopReason"] == "cancelled"  # the agent was stopped, not left to sleep


async def test_writes_are_refused_store_full_while_a_session_cannot_commit(
    client: httpx.AsyncClient, manager: SessionManager, disk: FullDisk, workdir: Path
) -> None:
    session_id = (await new_session(client, workdir))["id"]
    disk.full = True
    with anyio.fail_after(10):
        # the write that meets the full disk is applied in memory, and commits when space returns
        assert_store_full_problem(await client.patch(f"/v1/sessions/{session_id}", json={"title": "t"}))
        # later ones are refused before they change anything
        assert_store_full_problem(await client.patch(f"/v1/sessions/{session_id}", json={"title": "u"}))
        assert_store_full_problem(await client.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "x"}))
    runtime = await manager.runtime(session_id)
    assert runtime.doc["title"] == "t"
    assert runtime.doc["turns"] == 0
    disk.full = False
    with anyio.fail_after(10):
        record = await wait_for_record(manager, session_id, lambda r: "_acpd/settings_changed" in r.payload)
    assert record.payload_object()["params"]["changes"] == {"title": "t"}


async def test_a_streaming_prompt_ends_with_a_store_full_error_event(
    client: httpx.AsyncClient, disk: FullDisk, workdir: Path
) -> None:
    session_id = (await new_session(client, workdir))["id"]
    disk.full = True
    with anyio.fail_after(10):
        response = await client.post(
            f"/v1/sessions/{session_id}/prompt",
            json={"prompt": "text hello"},
            headers={"Accept": "text/event-stream"},
        )
    assert response.text.endswith("\n\n")
    last = response.text.rstrip("\n").split("\n\n")[-1]
    assert last.startswith("event: error\ndata: ")
    assert '"type":"urn:acpd:problem:store-full"' in last


async def test_an_acp_prompt_when_the_disk_is_full_gets_an_error_answer(
    manager: SessionManager, disk: FullDisk, workdir: Path
) -> None:
    async with acp_client(manager) as acp:
        with anyio.fail_after(10):
            await acp.initialize()
            session = await acp.new_session(str(workdir))
            disk.full = True
            with pytest.raises(RpcError) as failed:
                await acp.prompt(session["sessionId"], "text hello")
    assert "database or disk is full" in failed.value.message


async def test_the_daemon_stops_promptly_while_the_disk_is_full(
    client: httpx.AsyncClient, manager: SessionManager, disk: FullDisk, workdir: Path
) -> None:
    session_id = (await new_session(client, workdir))["id"]
    disk.full = True
    with anyio.fail_after(10):
        assert_store_full_problem(await client.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "x"}))
    with anyio.fail_after(5):
        await manager.shutdown()


async def test_creating_a_session_on_a_full_sqlite_database_is_a_store_full_problem(
    config: DaemonConfig, tmp_path: Path, workdir: Path
) -> None:
    async with (
        await SqliteEventStore.open(tmp_path / "acpd.db") as store,
        SessionManager(config, store).running() as running,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(running)), base_url=BASE_URL) as http,
    ):
        await fill_up(store)
        body = {"agent": "mock", "cwd": str(workdir), "title": "x" * 100_000}
        assert_store_full_problem(await http.post("/v1/sessions", json=body))
        await make_room(store)
        await new_session(http, workdir)


async def test_closing_a_session_while_the_disk_is_full_is_refused_and_leaves_it_open(
    client: httpx.AsyncClient, manager: SessionManager, disk: FullDisk, workdir: Path
) -> None:
    async with acp_client(manager) as acp:
        with anyio.fail_after(10):
            await acp.initialize()
            session_id = (await acp.new_session(str(workdir)))["sessionId"]
            disk.full = True
            with pytest.raises(RpcError) as refused:
                await acp.request("session/close", {"sessionId": session_id})
            assert "database or disk is full" in refused.value.message
            disk.full = False
            await wait_for_record(manager, session_id, lambda r: "STORE_FULL" in r.payload)
            answer = await acp.prompt(session_id, "text still open")
    assert answer["stopReason"] == "end_turn"
