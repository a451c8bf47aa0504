"""Each real agent through acpd, offline, over REST and over ACP: a permission round trip, a
tool call, a text reply, usage, a cancel, and a daemon restart followed by session/load."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from websockets.asyncio.client import connect

from acpd.protocol import jsonio
from acpd.protocol.jsonio import JsonObject
from acpd.testing.daemon import Daemon
from tests.e2e.sse import sse_events
from tests.processes import cmdlines, pidfds, wait_all_ended

from .conftest import AgentDaemon, agent_processes, require_agent, update_of
from .scenarios import SCENARIOS, WRITE, slow_command

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.agents]

AGENTS = sorted(SCENARIOS)
TURN_SECONDS = 90


async def new_session(http: httpx.AsyncClient, agent: str, cwd: str, permissions: str = "ask") -> str:
    response = await http.post(
        "/v1/sessions", json={"agent": agent, "cwd": cwd, "policy": {"permissions": permissions}}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def events(http: httpx.AsyncClient, session_id: str) -> list[dict[str, Any]]:
    return list((await http.get(f"/v1/sessions/{session_id}/events", params={"limit": 5000})).json()["items"])


def lifecycle_problems(updates: list[JsonObject]) -> list[str]:
    """Every tool call: one tool_call first, only updates after it, and a final status."""
    problems, status = [], {}
    for update in updates:
        kind, call = update.get("sessionUpdate"), update.get("toolCallId")
        if kind == "tool_call":
            if call in status:
                problems.append(f"{call}: a second tool_call")
            status[call] = update.get("status", "pending")
        elif kind == "tool_call_update":
            if call not in status:
                problems.append(f"{call}: an update before its tool_call")
            if status.get(call) in ("completed", "failed") and update.get("status") not in (
                None,
                "completed",
                "failed",
            ):
                problems.append(f"{call}: reopened after {status[call]}")
            status[call] = update.get("status") or status.get(call)
    problems += [f"{call}: left {state}" for call, state in status.items() if state not in ("completed", "failed")]
    return problems


@pytest.mark.parametrize("agent", AGENTS)
async def test_over_rest_the_agent_asks_permission_runs_the_tool_replies_and_reports_usage(
    agent: str, agent_daemon: AgentDaemon
) -> None:
    require_agent(agent)
    prompt = SCENARIOS[agent].run(WRITE)
    async with agent_daemon.running() as (_, http):
        session_id = await new_session(http, agent, str(agent_daemon.work))
        answer: dict[str, Any] = {}

        async def run_turn() -> None:
            answer.update((await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": prompt})).json())

        with anyio.fail_after(TURN_SECONDS):
            async with (
                anyio.create_task_group() as tg,
                http.stream("GET", f"/v1/sessions/{session_id}/events/stream") as stream,
            ):
                tg.start_soon(run_turn)
                async for event in sse_events(stream):
                    if event["payload"].get("method") == "session/request_permission":
                        [pending] = (await http.get(f"/v1/sessions/{session_id}/permissions")).json()["items"]
                        reply = await http.post(
                            f"/v1/sessions/{session_id}/permissions/{pending['id']}", json={"reply": "once"}
                        )
                        assert reply.status_code == 200, reply.text
                        break
        log = await events(http, session_id)
        markdown = (await http.get(f"/v1/sessions/{session_id}/export", params={"format": "markdown"})).text
        audited = (await http.get("/v1/audit/tool-calls", params={"session": session_id})).json()["items"]
        turns = (await http.get(f"/v1/sessions/{session_id}/turns")).json()["items"]
    assert answer["stopReason"] == "end_turn", answer
    assert "All done. Tool said:" in answer["text"]
    # the records read the same for every backend: the transcript, the audit and the turns
    assert "## Turn 1" in markdown and "**Tool call**" in markdown and "decided by client" in markdown
    asked = [row for row in audited if row["permissionAsked"]]
    assert [(row["decidedBy"], row["outcome"]) for row in asked] == [("client", "allow_once")], audited
    assert [(t["turn"], t["stopReason"]) for t in turns] == [(1, "end_turn")]
    assert (agent_daemon.work / "hi.txt").read_text() == "hi\n"
    updates = [u for e in log if (u := update_of(e))]
    assert lifecycle_problems(updates) == []
    methods = [
        e["payload"].get("method") or e["payload"].get("params", {}).get("update", {}).get("sessionUpdate") for e in log
    ]
    first_call = next(i for i, e in enumerate(log) if (update_of(e) or {}).get("sessionUpdate") == "tool_call")
    assert first_call < methods.index("session/request_permission"), "the tool call is announced before permission"
    assert answer["usage"], "every agent's answer carries its usage (Codex: the context it reported)"
    assert any(u["sessionUpdate"] == "usage_update" for u in updates), "and the log a usage_update"
    assert agent_daemon.model.requests, "the agent talked to the mock model"


@pytest.mark.parametrize("agent", AGENTS)
async def test_the_agent_creates_a_new_file_through_acpd(agent: str, agent_daemon: AgentDaemon) -> None:
    require_agent(agent)
    target = agent_daemon.work / "notes" / "new.txt"
    target.parent.mkdir()
    prompt = SCENARIOS[agent].write(str(target), "written by the agent\n")
    async with agent_daemon.running() as (_, http):
        session_id = await new_session(http, agent, str(agent_daemon.work), permissions="allow")
        with anyio.fail_after(TURN_SECONDS):
            answer = (await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": prompt})).json()
        log = await events(http, session_id)
    assert answer["stopReason"] == "end_turn", answer
    assert target.read_text() == "written by the agent\n", answer["text"]
    statuses = [u.get("status") for e in log if (u := update_of(e)) and u.get("toolCallId")]
    assert "failed" not in statuses and "completed" in statuses


@pytest.mark.parametrize("agent", AGENTS)
async def test_a_fork_of_the_agents_session_continues_with_the_earlier_turns_on_it_and_on_another_agent(
    agent: str, agent_daemon: AgentDaemon
) -> None:
    require_agent(agent)
    async with agent_daemon.running() as (_, http):
        source = await new_session(http, agent, str(agent_daemon.work), permissions="allow")

        async def prompted(session_id: str, text: str) -> dict[str, Any]:
            with anyio.fail_after(TURN_SECONDS):
                response = await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": text})
            assert response.status_code == 200, response.text
            return dict(response.json())

        first = await prompted(source, "Please remember this.\nmock:text=the secret is kumquat")
        same = (await http.post(f"/v1/sessions/{source}/fork", json={})).json()["id"]
        await prompted(same, "Please go on.\nmock:text=going on")
        carried = jsonio.dumps_str(agent_daemon.model.requests[-1].body)
        other = (await http.post(f"/v1/sessions/{source}/fork", json={"agent": "mock"})).json()["id"]
        on_mock = await prompted(other, "context")
    assert "the secret is kumquat" in first["text"]
    assert "the secret is kumquat" in carried, "the forked agent session got the earlier turns"
    assert "the secret is kumquat" in on_mock["text"]


@pytest.mark.parametrize("agent", AGENTS)
async def test_over_acp_an_editor_answers_permission_and_sees_a_coherent_tool_call(
    agent: str, agent_daemon: AgentDaemon
) -> None:
    require_agent(agent)
    async with agent_daemon.running() as (daemon, _):
        with anyio.fail_after(TURN_SECONDS):
            async with editor_session(daemon, agent, agent_daemon.work) as (editor, new):
                result = await editor.prompt(new["sessionId"], SCENARIOS[agent].run(WRITE))
    assert result["stopReason"] == "end_turn"
    assert editor.permissions == 1
    assert lifecycle_problems(editor.updates) == []
    assert (agent_daemon.work / "hi.txt").read_text() == "hi\n"
    text = "".join(u["content"].get("text", "") for u in editor.updates if u["sessionUpdate"] == "agent_message_chunk")
    assert "All done. Tool said:" in text


@pytest.mark.parametrize("agent", AGENTS)
async def test_cancel_ends_the_turn_and_stops_the_running_command(agent: str, agent_daemon: AgentDaemon) -> None:
    require_agent(agent)
    marker = f"acpd-e2e-{uuid.uuid4().hex}"
    prompt = SCENARIOS[agent].run(slow_command(marker))
    async with agent_daemon.running() as (_, http):
        session_id = await new_session(http, agent, str(agent_daemon.work), permissions="allow")
        answer: dict[str, Any] = {}

        async def run_turn() -> None:
            answer.update((await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": prompt})).json())

        with anyio.fail_after(TURN_SECONDS):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_turn)
                pids = await command_started(marker)
                with pidfds(pids, missing_ok=True) as fds:
                    assert (await http.post(f"/v1/sessions/{session_id}/cancel")).json() == {"cancelled": True}
                    await wait_all_ended(fds)
        log = await events(http, session_id)
    assert answer["stopReason"] == "cancelled"
    assert lifecycle_problems([u for e in log if (u := update_of(e))]) == []


@pytest.mark.parametrize("agent", AGENTS)
async def test_after_a_daemon_restart_session_load_replays_the_history_and_the_conversation_goes_on(
    agent: str, agent_daemon: AgentDaemon
) -> None:
    require_agent(agent)
    async with agent_daemon.running() as (_, http):
        session_id = await new_session(http, agent, str(agent_daemon.work), permissions="allow")
        with anyio.fail_after(TURN_SECONDS):
            first = await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": SCENARIOS[agent].run(WRITE)})
        assert first.json()["stopReason"] == "end_turn"
    async with agent_daemon.running() as (daemon, _):
        url = daemon.url.replace("http://", "ws://") + "/v1/rpc"
        editor = Editor()
        with anyio.fail_after(TURN_SECONDS):
            async with connect(url, additional_headers=daemon.headers) as ws:
                editor.ws = ws
                await editor.call("initialize", {"protocolVersion": 1, "clientCapabilities": {}})
                await editor.call(
                    "session/load", {"sessionId": session_id, "cwd": str(agent_daemon.work), "mcpServers": []}
                )
                replayed = list(editor.updates)
                prompt = [{"type": "text", "text": "mock:text=still here after the restart"}]
                result = await editor.call("session/prompt", {"sessionId": session_id, "prompt": prompt})
    kinds = [u["sessionUpdate"] for u in replayed]
    assert kinds.index("user_message_chunk") < kinds.index("tool_call") < kinds.index("agent_message_chunk")
    assert result["stopReason"] == "end_turn"
    text = "".join(
        u["content"].get("text", "")
        for u in editor.updates[len(replayed) :]
        if u["sessionUpdate"] == "agent_message_chunk"
    )
    assert "still here after the restart" in text


class Editor:
    """A minimal ACP client over WebSocket that allows every permission once."""

    def __init__(self) -> None:
        self.ws: Any = None
        self.updates: list[JsonObject] = []
        self.permissions = 0
        self._next_id = 0

    async def call(self, method: str, params: JsonObject) -> Any:
        self._next_id += 1
        request_id = self._next_id
        await self.ws.send(jsonio.dumps_str({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}))
        while True:
            message = jsonio.loads(await self.ws.recv())
            assert isinstance(message, dict)
            if message.get("method") == "session/update":
                self.updates.append(message["params"]["update"])
            elif message.get("method") == "session/request_permission":
                await self._allow(message)
            elif message.get("id") == request_id:
                assert "error" not in message, message
                return message["result"]

    async def prompt(self, session_id: str, text: str) -> Any:
        return await self.call("session/prompt", {"sessionId": session_id, "prompt": [{"type": "text", "text": text}]})

    async def _allow(self, request: JsonObject) -> None:
        self.permissions += 1
        options = request["params"]["options"]
        option = next(o for o in options if o["kind"] == "allow_once")
        outcome = {"outcome": {"outcome": "selected", "optionId": option["optionId"]}}
        await self.ws.send(jsonio.dumps_str({"jsonrpc": "2.0", "id": request["id"], "result": outcome}))


@contextlib.asynccontextmanager
async def editor_session(daemon: Daemon, agent: str, cwd: Path) -> AsyncIterator[tuple[Editor, JsonObject]]:
    """An :class:`Editor` on the daemon's WebSocket, initialized, and the answer to its session/new."""
    url = daemon.url.replace("http://", "ws://") + f"/v1/rpc?agent={agent}"
    editor = Editor()
    async with connect(url, additional_headers=daemon.headers) as ws:
        editor.ws = ws
        await editor.call("initialize", {"protocolVersion": 1, "clientCapabilities": {}})
        yield editor, await editor.call("session/new", {"cwd": str(cwd), "mcpServers": []})


async def command_started(marker: str) -> list[int]:
    """The pids of the processes running the marked command, once there are some (bounded by the caller)."""
    while True:
        pids = [pid for pid, cmdline in cmdlines() if marker in cmdline and "python3" in cmdline]
        if pids:
            return pids
        await anyio.sleep(0.05)  # nothing to wait on: the agent starts the command when its model says so


@pytest.mark.parametrize("agent", AGENTS)
async def test_killing_the_daemon_outright_leaves_no_agent_and_no_command_running(
    agent: str, agent_daemon: AgentDaemon
) -> None:
    require_agent(agent)
    marker = f"acpd-e2e-{uuid.uuid4().hex}"
    prompt = SCENARIOS[agent].run(slow_command(marker))
    async with agent_daemon.running() as (daemon, http):
        session_id = await new_session(http, agent, str(agent_daemon.work), permissions="allow")
        with anyio.fail_after(TURN_SECONDS):
            async with anyio.create_task_group() as tg:
                tg.start_soon(ignore_errors, http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": prompt}))
                commands = await command_started(marker)
                with pidfds(commands + [pid for pid, _ in agent_processes()], missing_ok=True) as fds:
                    await daemon.kill()
                    await wait_all_ended(fds)
                tg.cancel_scope.cancel()


async def ignore_errors(request: Any) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the daemon is killed mid-request
        await request
