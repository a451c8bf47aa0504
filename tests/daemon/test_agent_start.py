"""Starting an agent: an agent that hangs, exits or floods while it starts fails the start
cleanly (a 5xx problem, no session, no process left), within the agent's start timeout."""

from __future__ import annotations

import os
import sys
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from acpd.config import AGENT_START_TIMEOUT_SECONDS, AgentConfig, DaemonConfig
from acpd.daemon.app import create_app
from acpd.daemon.manager import SessionManager
from acpd.errors import RpcError
from acpd.store.memory import MemoryEventStore
from tests.processes import cmdlines

from .acp_client import acp_client
from .helpers import all_events, daemon_frames, new_session

pytestmark = pytest.mark.anyio

SECRET = "sk-test-0123456789abcdef"
MARKER = f"acpd-test-agent-{uuid.uuid4().hex}"
"""On every test agent's command line, so a test can tell whether one is left running."""


def mock(*flags: str, timeout: float | None = None) -> AgentConfig:
    args = ("-m", "acpd.testing.mock_agent", "--name", MARKER, *flags)
    return AgentConfig(command=sys.executable, args=args, start_timeout_seconds=timeout)


@pytest.fixture
def started_fifo(tmp_path: Path) -> Path:
    """The ``slow`` agent writes a line here once it runs (opening a FIFO blocks until both ends are open)."""
    path = tmp_path / "started"
    os.mkfifo(path)
    return path


@pytest.fixture
def config(tmp_path: Path, started_fifo: Path) -> DaemonConfig:
    script = f'echo "no luck with key $MY_API_KEY" >&2; exit 3; : {MARKER}'
    mute = f"{sys.executable} -m acpd.testing.mock_agent --ignore initialize --name {MARKER}"
    slow = f"echo started > {started_fifo}; exec {mute}"
    agents = {
        "slow": AgentConfig(command="sh", args=("-c", slow), start_timeout_seconds=60),
        "mute": mock("--ignore", "initialize", timeout=0.5),
        "no-session": mock("--ignore", "session/new", timeout=0.5),
        "dies": AgentConfig(command="sh", args=("-c", script), env={"MY_API_KEY": SECRET}),
        "other": mock(),
        "absent": AgentConfig(command=f"acpd-no-such-program-{MARKER}"),
    }
    return DaemonConfig(data_dir=str(tmp_path / "data"), db=":memory:", agents=agents)


def agents_left() -> list[str]:
    return [line for _, line in cmdlines() if MARKER in line]


@pytest.mark.parametrize(("agent", "step"), [("mute", "initialize"), ("no-session", "session/new")])
async def test_an_agent_that_never_answers_its_start_fails_the_create_with_a_504_and_leaves_nothing(
    client: httpx.AsyncClient, workdir: Path, agent: str, step: str
) -> None:
    with anyio.fail_after(10):
        response = await client.post("/v1/sessions", json={"agent": agent, "cwd": str(workdir), "id": "s1"})
    assert response.status_code == 504
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:acpd:problem:agent-start-timeout"
    assert f"did not answer {step} within 0.5 s" in problem["detail"]
    assert problem["data"]["startTimeoutSeconds"] == 0.5
    assert (await client.get("/v1/sessions")).json()["items"] == []
    assert (await client.get("/v1/sessions/s1")).status_code == 404
    assert agents_left() == []


async def test_an_agent_that_exits_at_start_answers_502_with_its_redacted_stderr_and_leaves_nothing(
    client: httpx.AsyncClient, workdir: Path
) -> None:
    with anyio.fail_after(10):
        response = await client.post("/v1/sessions", json={"agent": "dies", "cwd": str(workdir)})
    assert response.status_code == 502
    problem = response.json()
    assert problem["type"] == "urn:acpd:problem:agent-exited"
    assert "exited with status 3" in problem["detail"]
    assert "no luck with key ***" in problem["detail"]
    assert SECRET not in response.text
    assert problem["data"]["exitCode"] == 3
    assert (await client.get("/v1/sessions")).json()["items"] == []
    assert agents_left() == []


async def test_acp_session_new_with_an_agent_that_hangs_answers_an_error_in_time(
    manager: SessionManager, workdir: Path
) -> None:
    async with acp_client(manager) as client:
        with anyio.fail_after(10):
            await client.initialize()
            with pytest.raises(RpcError) as caught:
                await client.new_session(str(workdir), agent="no-session")
    assert "did not answer session/new within 0.5 s" in caught.value.message
    assert (await manager.list_sessions()).items == []
    assert agents_left() == []


def test_an_agents_start_timeout_defaults_to_the_daemons() -> None:
    agents = {
        "slow": AgentConfig.model_validate({"command": "x", "startTimeoutSeconds": 90}),
        "plain": AgentConfig(command="x"),
    }
    resolved = DaemonConfig(agents=agents, agent_start_timeout_seconds=12).all_agents()
    assert resolved["slow"].start_timeout_seconds == 90
    assert resolved["plain"].start_timeout_seconds == 12
    assert resolved["codex"].start_timeout_seconds == 12
    assert DaemonConfig().all_agents()["mock"].start_timeout_seconds == AGENT_START_TIMEOUT_SECONDS


async def test_deleting_a_session_whose_agent_is_starting_fails_the_start_and_stops_the_agent(
    manager: SessionManager, workdir: Path, started_fifo: Path
) -> None:
    failures: list[Exception] = []

    async def create() -> None:
        try:
            await manager.create({"agent": "slow", "cwd": str(workdir), "id": "s1"})
        except Exception as exc:
            failures.append(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(create)
            await anyio.to_thread.run_sync(started_fifo.read_bytes)  # the agent is running, unanswered
            await manager.delete("s1")
    assert [type(f).__name__ for f in failures] == ["SessionClosed"]
    assert agents_left() == []


async def test_switching_agents_records_the_old_agents_exit_as_expected(
    client: httpx.AsyncClient, workdir: Path
) -> None:
    session = await new_session(client, workdir)
    with anyio.fail_after(10):
        response = await client.patch(f"/v1/sessions/{session['id']}", json={"agent": "other"})
    assert response.status_code == 200, response.text
    exited = daemon_frames(await all_events(client, session["id"]), "_acpd/agent_exited")
    assert [(e["agent"], e["expected"]) for e in exited] == [("mock", True)]


async def test_switching_agents_over_acp_records_the_old_agents_exit_as_expected(
    manager: SessionManager, workdir: Path
) -> None:
    async with acp_client(manager) as client:
        with anyio.fail_after(10):
            sid = await client.start(str(workdir))
            await client.request("session/set_config_option", {"sessionId": sid, "configId": "agent", "value": "other"})
    records = await (await manager.runtime(sid)).history()
    exited = [r.payload_object()["params"] for r in records if r.payload_object().get("method") == "_acpd/agent_exited"]
    assert [(e["agent"], e["expected"]) for e in exited] == [("mock", True)]


class GatedStore(MemoryEventStore):
    """A store whose write of a turn's idempotent answer (the last of the turn's bookkeeping,
    after its answer is recorded) waits for ``gate``; ``entered`` is set when it is reached."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.gate = anyio.Event(), anyio.Event()

    async def put_idempotent(self, session_id: str, key: str, value: str) -> None:
        self.entered.set()
        await self.gate.wait()
        await super().put_idempotent(session_id, key, value)


async def test_a_switch_once_a_turn_is_answered_waits_for_its_bookkeeping_instead_of_refusing(
    config: DaemonConfig, workdir: Path
) -> None:
    """A client that has the turn's answer has seen the turn end: switching at once is not refused."""
    store = GatedStore()
    async with (
        SessionManager(config, store).running() as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(manager)), base_url="http://127.0.0.1:4520"
        ) as http,
    ):
        session = await new_session(http, workdir)
        path = f"/v1/sessions/{session['id']}"
        answers: dict[str, httpx.Response] = {}

        async def send(name: str, method: str, url: str, body: dict[str, str], **headers: str) -> None:
            answers[name] = await http.request(method, url, json=body, headers=headers)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    partial(
                        send, "prompt", "POST", f"{path}/prompt", {"prompt": "text hi"}, **{"Idempotency-Key": "k1"}
                    )
                )
                await store.entered.wait()  # answered, its bookkeeping held at the gate
                tg.start_soon(send, "switch", "PATCH", path, {"agent": "other"})
                await anyio.wait_all_tasks_blocked()
                assert "switch" not in answers  # it waits for the turn, rather than refusing it as running
                store.gate.set()
        assert answers["prompt"].status_code == 200
        assert answers["switch"].status_code == 200, answers["switch"].text
        assert answers["switch"].json()["agent"] == "other"
    await store.aclose()


def switch_records(records: list[dict[str, Any]]) -> list[str]:
    """The records a switch (or a restart) would leave: agents stopped and started, settings changed."""
    methods = ("_acpd/agent_exited", "_acpd/agent_started", "_acpd/settings_changed")
    return [str(r["payload"].get("method")) for r in records if r["payload"].get("method") in methods]


@pytest.mark.parametrize(("agent", "status"), [("absent", 503), ("mute", 504), ("no-session", 504)])
async def test_a_refused_agent_switch_leaves_the_running_agent_untouched_and_records_nothing(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path, agent: str, status: int
) -> None:
    session = await new_session(client, workdir)
    url = f"/v1/sessions/{session['id']}"
    runtime = await manager.runtime(session["id"])
    running = runtime._backend  # the agent the session runs, process and all
    before = await all_events(client, session["id"])
    with anyio.fail_after(10):
        response = await client.patch(url, json={"agent": agent, "title": "switched"})
        assert response.status_code == status, response.text
        assert runtime._backend is running
        answer = await client.post(f"{url}/prompt", json={"prompt": "text same agent"})
    assert answer.json()["text"] == "same agent"
    assert runtime._backend is running
    after = await all_events(client, session["id"])
    assert switch_records(after[len(before) :]) == []
    assert (await client.get(url)).json()["title"] == "text same agent"  # the first prompt's, not the refused PATCH's
    assert not [line for line in agents_left() if "--ignore" in line]  # the refused agent is stopped


async def test_a_refused_agent_switch_over_acp_leaves_the_running_agent_untouched(
    manager: SessionManager, workdir: Path
) -> None:
    async with acp_client(manager) as client:
        with anyio.fail_after(10):
            sid = await client.start(str(workdir))
            runtime = await manager.runtime(sid)
            running, seq = runtime._backend, runtime.log.committed_seq
            params = {"sessionId": sid, "configId": "agent", "value": "mute"}
            with pytest.raises(RpcError):
                await client.request("session/set_config_option", params)
            assert runtime._backend is running
    records = await runtime.history()
    later = [r.payload_object() for r in records if r.seq > seq]
    assert [m.get("method") for m in later if str(m.get("method")).startswith("_acpd/")] == []


async def test_a_switch_to_a_working_agent_stops_the_old_one_after_the_new_one_started(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path
) -> None:
    session = await new_session(client, workdir)
    url = f"/v1/sessions/{session['id']}"
    with anyio.fail_after(10):
        await client.post(f"{url}/prompt", json={"prompt": "text first"})
        before = await all_events(client, session["id"])
        assert (await client.patch(url, json={"agent": "other"})).status_code == 200
        answer = await client.post(f"{url}/prompt", json={"prompt": "text second"})
    assert answer.json()["text"] == "second"
    after = await all_events(client, session["id"])
    assert switch_records(after[len(before) :]) == [
        "_acpd/agent_exited",
        "_acpd/agent_started",
        "_acpd/settings_changed",
    ]
    assert daemon_frames(after, "_acpd/context_carried") != []


async def test_a_switch_asking_a_setting_the_new_agent_does_not_offer_keeps_the_old_agent_running(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path
) -> None:
    session = await new_session(client, workdir)
    url = f"/v1/sessions/{session['id']}"
    runtime = await manager.runtime(session["id"])
    running = runtime._backend
    before = await all_events(client, session["id"])
    with anyio.fail_after(10):
        response = await client.patch(url, json={"agent": "other", "model": "no-such-model"})
    assert response.status_code == 422, response.text
    assert runtime._backend is running
    assert (await client.get(url)).json()["agent"] == "mock"
    assert switch_records((await all_events(client, session["id"]))[len(before) :]) == []
