"""The ACP face in process: acpd as an ACP agent to clients connected over memory transports."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from acpd.config import AgentConfig, DaemonConfig
from acpd.daemon.manager import SessionManager
from acpd.daemon.session import SessionRuntime
from acpd.errors import RpcError
from acpd.protocol.jsonio import JsonObject
from acpd.store.sqlite import SqliteEventStore

from .acp_client import acp_client, allow
from .helpers import all_events, new_session

pytestmark = pytest.mark.anyio


@pytest.fixture
def config(tmp_path: Path) -> DaemonConfig:
    """The daemon tests' config plus a second mock agent to switch to."""
    second = AgentConfig(
        command=sys.executable, args=("-m", "acpd.testing.mock_agent", "--state-dir", str(tmp_path / "mock-b"))
    )
    neither = AgentConfig(
        command=sys.executable,
        args=("-m", "acpd.testing.mock_agent", "--state-dir", str(tmp_path / "mock-n"), "--no-load", "--no-resume"),
    )
    broken = AgentConfig(command=str(tmp_path / "no-such-agent"))
    agents = {"mock-b": second, "mock-neither": neither, "broken": broken}
    return DaemonConfig(data_dir=str(tmp_path / "data"), db=":memory:", agents=agents)


async def test_initialize_advertises_sessions_that_load_list_resume_close_and_delete(manager: SessionManager) -> None:
    async with acp_client(manager) as client:
        with anyio.fail_after(5):
            answer = await client.initialize()
    assert answer["protocolVersion"] == 1
    caps = answer["agentCapabilities"]
    assert caps["loadSession"] is True
    assert set(caps["sessionCapabilities"]) >= {"list", "resume", "close", "delete"}
    assert answer["agentInfo"]["name"] == "acpd"
    assert "mock" in answer["_meta"]["acpd"]["agents"]


async def test_unknown_methods_get_method_not_found_and_unknown_notifications_are_ignored(
    manager: SessionManager,
) -> None:
    async with acp_client(manager) as client:
        with anyio.fail_after(5):
            await client.peer.notify("_vendor/whatever", {"x": 1})
            with pytest.raises(RpcError) as caught:
                await client.request("_vendor/unknown", {})
            assert caught.value.code == -32601
            assert (await client.initialize())["protocolVersion"] == 1


async def test_a_prompt_streams_its_updates_before_its_answer(manager: SessionManager, workdir: Path) -> None:
    async with acp_client(manager) as client:
        with anyio.fail_after(10):
            await client.initialize()
            session = await client.new_session(str(workdir))
            answer = await client.prompt(session["sessionId"], "text hello there\nusage 10 5")
            # the answer arrived: every update of the turn must already be here
            assert client.texts(session["sessionId"]) == "hello there"
            assert client.updates(session["sessionId"], "usage_update")
    assert answer["stopReason"] == "end_turn"
    assert answer["usage"]["totalTokens"] == 15
    options = session["configOptions"]
    assert options[0]["id"] == "agent"
    assert options[0]["currentValue"] == "mock"
    assert {o["category"] for o in options[1:]} >= {"mode", "model", "thought_level"}
    assert session["modes"]["currentModeId"] == "default"


async def test_a_permission_request_reaches_the_client_and_its_answer_reaches_the_agent(
    manager: SessionManager, workdir: Path
) -> None:
    async with acp_client(manager) as client:
        with anyio.fail_after(10):
            await client.initialize()
            session = await client.new_session(str(workdir))
            answer = await client.prompt(session["sessionId"], "permission execute")
    assert answer["stopReason"] == "end_turn"
    assert len(client.permission_requests) == 1
    assert client.permission_requests[0]["sessionId"] == session["sessionId"]
    assert "permission: allow" in client.texts()


async def test_a_rest_session_loads_over_acp_with_its_history_replayed(
    manager: SessionManager, client: httpx.AsyncClient, workdir: Path
) -> None:
    created = await new_session(client, workdir)
    await client.post(f"/v1/sessions/{created['id']}/prompt", json={"prompt": "text first answer"})
    async with acp_client(manager) as acp:
        with anyio.fail_after(10):
            await acp.initialize()
            loaded = await acp.request(
                "session/load", {"sessionId": created["id"], "cwd": str(workdir), "mcpServers": []}
            )
            replayed = acp.updates(created["id"])
            assert [u["sessionUpdate"] for u in replayed if "chunk" in u["sessionUpdate"]] == [
                "user_message_chunk",
                "agent_message_chunk",
            ]
            assert replayed[0]["content"]["text"] == "text first answer"
            assert acp.texts() == "first answer"
            assert loaded["configOptions"][0]["id"] == "agent"
            # and it goes on live
            answer = await acp.prompt(created["id"], "text second")
    assert answer["stopReason"] == "end_turn"
    assert acp.texts() == "first answersecond"


async def test_an_acp_session_shows_over_rest_with_its_history(
    manager: SessionManager, client: httpx.AsyncClient, workdir: Path
) -> None:
    async with acp_client(manager) as acp:
        with anyio.fail_after(10):
            await acp.initialize()
            session = await acp.new_session(str(workdir), title="from an editor")
            await acp.prompt(session["sessionId"], "text over acp")
    doc = (await client.get(f"/v1/sessions/{session['sessionId']}")).json()
    assert doc["title"] == "from an editor"
    events = await all_events(client, session["sessionId"])
    prompt = next(e for e in events if e["payload"].get("method") == "session/prompt")
    assert prompt["payload"]["params"]["prompt"] == [{"type": "text", "text": "text over acp"}]


async def test_session_list_pages_the_stores_sessions_filtered_by_cwd(
    manager: SessionManager, client: httpx.AsyncClient, workdir: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    mine = [(await new_session(client, workdir, title=f"s{i}"))["id"] for i in range(3)]
    await new_session(client, other)
    async with acp_client(manager) as acp:
        with anyio.fail_after(10):
            await acp.initialize()
            listed = await acp.request("session/list", {"cwd": str(workdir)})
            everything = await acp.request("session/list", {})
    assert sorted(s["sessionId"] for s in listed["sessions"]) == sorted(mine)
    assert all(s["cwd"] == str(workdir) for s in listed["sessions"])
    assert "nextCursor" not in listed
    assert len(everything["sessions"]) == 4
    assert listed["sessions"][0]["_meta"]["acpd"]["agent"] == "mock"


async def test_resume_attaches_without_replay(
    manager: SessionManager, client: httpx.AsyncClient, workdir: Path
) -> None:
    created = await new_session(client, workdir)
    await client.post(f"/v1/sessions/{created['id']}/prompt", json={"prompt": "text earlier"})
    async with acp_client(manager) as acp:
        with anyio.fail_after(10):
            await acp.initialize()
            await acp.request("session/resume", {"sessionId": created["id"], "cwd": str(workdir)})
            assert acp.updates() == []
            await acp.prompt(created["id"], "text now")
    assert acp.texts() == "now"


async def test_close_stops_the_agent_keeps_the_history_and_a_later_prompt_reopens_it(
    manager: SessionManager, client: httpx.AsyncClient, workdir: Path
) -> None:
    async with acp_client(manager) as acp:
        with anyio.fail_after(10):
            await acp.initialize()
            session = await acp.new_session(str(workdir))
            sid = session["sessionId"]
            await acp.prompt(sid, "text before close")
            assert await acp.request("session/close", {"sessionId": sid}) == {}
            assert (await client.get(f"/v1/sessions/{sid}")).json()["status"] == "closed"
            answer = await acp.prompt(sid, "text after close")
    assert answer["stopReason"] == "end_turn"
    assert acp.texts(sid).endswith("after close")


async def test_delete_removes_the_session_and_a_second_delete_is_not_found(
    manager: SessionManager, client: httpx.AsyncClient, workdir: Path
) -> None:
    async with acp_client(manager) as acp:
        with anyio.fail_after(10):
            sid = await acp.start(str(workdir))
            assert await acp.request("session/delete", {"sessionId": sid}) == {}
            with pytest.raises(RpcError) as caught:
                await acp.request("session/delete", {"sessionId": sid})
    assert caught.value.code == -32002
    assert (await client.get(f"/v1/sessions/{sid}")).status_code == 404


async def test_set_mode_is_echoed_and_persisted(
    manager: SessionManager, client: httpx.AsyncClient, workdir: Path
) -> None:
    async with acp_client(manager) as acp:
        with anyio.fail_after(10):
            sid = await acp.start(str(workdir))
            assert await acp.request("session/set_mode", {"sessionId": sid, "modeId": "plan"}) == {}
            await acp.wait_until(lambda: bool(acp.updates(sid, "current_mode_update")))
            await acp.wait_until(lambda: bool(acp.updates(sid, "config_option_update")))
    assert acp.updates(sid, "current_mode_update")[-1]["currentModeId"] == "plan"
    options = acp.updates(sid, "config_option_update")[-1]["configOptions"]
    assert options[0]["id"] == "agent"
    assert next(o for o in options if o["id"] == "mode")["currentValue"] == "plan"
    doc = (await client.get(f"/v1/sessions/{sid}")).json()
    assert doc["mode"] == "plan"


async def test_the_agent_option_switches_backends_and_the_new_one_gets_the_transcript(
    manager: SessionManager, workdir: Path
) -> None:
    async with acp_client(manager) as acp:
        with anyio.fail_after(15):
            sid = await acp.start(str(workdir))
            await acp.prompt(sid, "text the secret word is heliotrope")
            answer = await acp.request(
                "session/set_config_option", {"sessionId": sid, "configId": "agent", "value": "mock-b"}
            )
            assert answer["configOptions"][0]["currentValue"] == "mock-b"
            await acp.prompt(sid, "context")
    carried = acp.texts(sid)
    assert "User: text the secret word is heliotrope" in carried
    assert "Assistant: the secret word is heliotrope" in carried
    runtime = await manager.runtime(sid)
    assert runtime.doc["agent"] == "mock-b"


async def test_two_clients_see_the_same_updates_and_the_first_permission_answer_wins(
    manager: SessionManager, workdir: Path
) -> None:
    async with acp_client(manager) as editor, acp_client(manager) as watcher:
        with anyio.fail_after(15):
            await editor.initialize()
            await watcher.initialize()
            sid = (await editor.new_session(str(workdir)))["sessionId"]
            await watcher.request("session/resume", {"sessionId": sid, "cwd": str(workdir)})
            editor.answer_permission = None  # the editor's human never answers
            answer: dict[str, Any] = {}

            async def run_prompt() -> None:
                answer.update(await editor.prompt(sid, "text one\npermission edit\ntext two"))

            async with anyio.create_task_group() as tg:
                tg.start_soon(run_prompt)
                await editor.permission_asked.wait()
                await watcher.permission_asked.wait()
            # the watcher answered; the editor's request was withdrawn
            await watcher.wait_until(lambda: "two" in watcher.texts(sid))
    assert answer["stopReason"] == "end_turn"
    assert editor.updates(sid) == [u for u in watcher.updates(sid) if u["sessionUpdate"] != "user_message_chunk"]
    assert [u["content"]["text"] for u in watcher.updates(sid, "user_message_chunk")] == [
        "text one\npermission edit\ntext two"
    ]
    assert "permission: allow" in editor.texts(sid)


async def test_fs_calls_go_to_an_editor_that_advertised_them(manager: SessionManager, workdir: Path) -> None:
    caps = {"fs": {"readTextFile": True, "writeTextFile": True}, "terminal": False}
    async with acp_client(manager) as editor:
        with anyio.fail_after(10):
            sid = await editor.start(str(workdir), caps)
            path = str(workdir / "buffer.txt")
            editor.files[path] = "unsaved buffer text"
            await editor.prompt(sid, f"read {path}")
    assert [m for m, _ in editor.client_calls] == ["fs/read_text_file"]
    assert editor.client_calls[0][1]["sessionId"] == sid
    assert "unsaved buffer text" in editor.texts(sid)
    assert not (workdir / "buffer.txt").exists()


async def test_terminal_calls_go_to_an_editor_that_advertised_terminals(manager: SessionManager, workdir: Path) -> None:
    caps = {"fs": {"readTextFile": False, "writeTextFile": False}, "terminal": True}
    async with acp_client(manager) as editor:
        with anyio.fail_after(10):
            sid = await editor.start(str(workdir), caps)
            await editor.prompt(sid, "run echo from-the-daemon")
    methods = [m for m, _ in editor.client_calls]
    assert methods[0] == "terminal/create"
    assert "terminal/release" in methods
    assert all(params["terminalId"] == "editor-term-1" for m, params in editor.client_calls[1:])
    assert "output shown in the editor" in editor.texts(sid)


async def test_without_the_capability_the_daemon_serves_terminals_itself(
    manager: SessionManager, workdir: Path
) -> None:
    async with acp_client(manager) as editor:
        with anyio.fail_after(10):
            sid = await editor.start(str(workdir))
            await editor.prompt(sid, "run echo from-the-daemon")
    assert editor.client_calls == []
    assert "from-the-daemon" in editor.texts(sid)


async def test_unknown_update_variants_and_meta_reach_the_client_untouched(
    manager: SessionManager, workdir: Path
) -> None:
    async with acp_client(manager) as editor:
        with anyio.fail_after(10):
            sid = await editor.start(str(workdir))
            await editor.prompt(sid, "meta")
    chunk = next(n for n in editor.notifications if n["method"] == "session/update" and "_meta" in n["params"])
    assert chunk["params"]["_meta"] == {"mock": {"x": 1}}
    assert chunk["params"]["update"]["_meta"] == {"mock": {"x": 1}}
    assert chunk["params"]["update"]["content"]["_meta"] == {"mock": {"x": 1}}
    assert editor.updates(sid, "_mock/custom") == [{"sessionUpdate": "_mock/custom", "value": 1}]


async def test_load_replays_the_history_of_an_agent_that_cannot_load_and_the_agent_gets_it_as_context(
    manager: SessionManager, workdir: Path
) -> None:
    async with acp_client(manager) as first:
        with anyio.fail_after(10):
            sid = await first.start(str(workdir), agent="mock-neither")
            await first.prompt(sid, "text remember the tangerine")
            await first.request("session/close", {"sessionId": sid})
    async with acp_client(manager) as second:
        with anyio.fail_after(10):
            await second.initialize()
            await second.request("session/load", {"sessionId": sid, "cwd": str(workdir), "mcpServers": []})
            assert second.texts(sid) == "remember the tangerine"
            await second.prompt(sid, "context")
    assert "Assistant: remember the tangerine" in second.texts(sid)


@pytest.mark.parametrize("agent", ["mock", "mock-neither"])
async def test_settings_made_over_acp_survive_a_restart(config: DaemonConfig, workdir: Path, agent: str) -> None:
    config = dataclasses.replace(config, db=str(workdir.parent / "acpd.db"))
    store = await SqliteEventStore.open(config.resolved_db())
    async with SessionManager(config, store).running() as manager, acp_client(manager) as editor:
        with anyio.fail_after(10):
            sid = await editor.start(str(workdir), agent=agent)
            await editor.request("session/set_mode", {"sessionId": sid, "modeId": "plan"})
            await editor.request(
                "session/set_config_option", {"sessionId": sid, "configId": "model", "value": "mock-large"}
            )
    await store.aclose()

    store = await SqliteEventStore.open(config.resolved_db())
    async with SessionManager(config, store).running() as manager, acp_client(manager) as editor:
        with anyio.fail_after(10):
            await editor.initialize()
            loaded = await editor.request("session/load", {"sessionId": sid, "cwd": str(workdir), "mcpServers": []})
            # the restarted agent (resumed, or new and given the settings again) says so itself
            await editor.prompt(sid, "text after the restart")
            answer = await editor.request(
                "session/set_config_option", {"sessionId": sid, "configId": "effort", "value": "low"}
            )
    await store.aclose()
    current = {o["id"]: o["currentValue"] for o in loaded["configOptions"]}
    assert current["mode"] == "plan"
    assert current["model"] == "mock-large"
    assert loaded["modes"]["currentModeId"] == "plan"
    after = {o["id"]: o["currentValue"] for o in answer["configOptions"]}
    assert (after["mode"], after["model"], after["effort"]) == ("plan", "mock-large", "low")


async def test_session_cancel_ends_the_running_turn_as_cancelled(manager: SessionManager, workdir: Path) -> None:
    async with acp_client(manager) as editor:
        with anyio.fail_after(10):
            sid = await editor.start(str(workdir))
            answer: dict[str, Any] = {}

            async def prompt() -> None:
                answer.update(await editor.prompt(sid, "text started\nsleep 30"))

            async with anyio.create_task_group() as tg:
                tg.start_soon(prompt)
                await editor.wait_until(lambda: editor.texts(sid) == "started")
                await editor.peer.notify("session/cancel", {"sessionId": sid})
    assert answer["stopReason"] == "cancelled"


def refuse(params: JsonObject) -> JsonObject:
    """A client that cannot show permission requests answers them with an error."""
    raise RpcError(-32603, "this client shows no permission requests")


def unknown_option(params: JsonObject) -> JsonObject:
    return {"outcome": {"outcome": "selected", "optionId": "not-offered"}}


@pytest.mark.parametrize(("answer_with", "code"), [(refuse, -32603), (unknown_option, -32602)])
async def test_a_permission_answered_with_an_error_by_the_only_client_is_rejected_and_the_turn_goes_on(
    manager: SessionManager,
    client: httpx.AsyncClient,
    workdir: Path,
    answer_with: Callable[[JsonObject], JsonObject],
    code: int,
) -> None:
    async with acp_client(manager) as editor:
        with anyio.fail_after(15):
            sid = await editor.start(str(workdir))
            editor.answer_permission = answer_with
            answer = await editor.prompt(sid, "permission edit\ntext after")
    assert answer["stopReason"] == "end_turn"
    assert "permission: reject" in editor.texts(sid)
    events = await all_events(client, sid)
    [reply] = [e for e in events if "outcome" in e["payload"].get("result", {})]
    assert reply["sender"] == "daemon"
    assert reply["payload"]["result"]["outcome"] == {"outcome": "selected", "optionId": "reject"}
    meta = reply["payload"]["result"]["_meta"]["acpd"]
    assert (meta["permissionId"], meta["decidedBy"]) == (f"p{reply['seq'] - 1}", "error")
    assert meta["clientError"]["code"] == code


async def test_a_permission_answered_with_an_error_waits_for_another_client_still_asked(
    manager: SessionManager, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handled = anyio.Event()
    unanswerable = SessionRuntime.permission_unanswerable

    def noted(runtime: SessionRuntime, *args: Any) -> None:
        unanswerable(runtime, *args)
        handled.set()

    monkeypatch.setattr(SessionRuntime, "permission_unanswerable", noted)

    async def after_the_error(params: JsonObject) -> JsonObject:
        await handled.wait()  # the editor's error is in: the request must still be open for us
        return allow(params)

    async with acp_client(manager) as editor, acp_client(manager) as watcher:
        with anyio.fail_after(15):
            sid = await editor.start(str(workdir))
            await watcher.initialize()
            await watcher.request("session/resume", {"sessionId": sid, "cwd": str(workdir)})
            editor.answer_permission = refuse
            watcher.answer_permission = after_the_error
            answer = await editor.prompt(sid, "permission edit")
    assert answer["stopReason"] == "end_turn"
    assert "permission: allow" in editor.texts(sid)


async def test_a_prompt_pipelined_before_the_session_new_answer_gets_each_update_once(
    manager: SessionManager, workdir: Path
) -> None:
    new_params = {"cwd": str(workdir), "mcpServers": [], "_meta": {"acpd": {"id": "pipelined"}}}
    prompt_params = {"sessionId": "pipelined", "prompt": [{"type": "text", "text": "text one\ntext two"}]}
    answers: dict[str, Any] = {}

    async def send(method: str, params: dict[str, Any]) -> None:
        answers[method] = await acp.request(method, params)

    async with acp_client(manager) as acp:
        with anyio.fail_after(15):
            await acp.initialize()
            async with anyio.create_task_group() as tg:
                tg.start_soon(send, "session/new", new_params)
                await anyio.lowlevel.checkpoint()  # session/new goes out first, its answer not yet in
                tg.start_soon(send, "session/prompt", prompt_params)
    assert answers["session/prompt"] == {"stopReason": "end_turn"}
    assert [u["content"]["text"] for u in acp.updates("pipelined", "agent_message_chunk")] == ["one", "two"]


async def test_a_refused_setting_or_agent_switch_over_acp_is_an_invalid_params_error_and_changes_nothing(
    manager: SessionManager, workdir: Path
) -> None:
    async with acp_client(manager) as acp:
        with anyio.fail_after(20):
            sid = await acp.start(str(workdir), model="mock-large")
            before = dict((await manager.runtime(sid)).doc)
            with pytest.raises(RpcError) as model:
                await acp.request("session/set_config_option", {"sessionId": sid, "configId": "model", "value": "nope"})
            with pytest.raises(RpcError) as mode:
                await acp.request("session/set_mode", {"sessionId": sid, "modeId": "nope"})
            with pytest.raises(RpcError) as agent:
                await acp.request(
                    "session/set_config_option", {"sessionId": sid, "configId": "agent", "value": "broken"}
                )
            answer = await acp.prompt(sid, "text still mock")
    assert (model.value.code, mode.value.code) == (-32602, -32602)
    assert model.value.data["offered"] == ["mock-small", "mock-large"]
    assert "no-such-agent" in agent.value.message  # the agent's fault, said as such
    after = (await manager.runtime(sid)).doc
    kept = ("agent", "model", "mode", "config", "configOptions", "backendSessionId")
    assert {k: after[k] for k in kept} == {k: before[k] for k in kept}
    assert answer == {"stopReason": "end_turn"}
    records = await (await manager.runtime(sid)).log.read(0, 1000)
    assert not [r for r in records if r.payload_object().get("method") == "_acpd/settings_changed"]
