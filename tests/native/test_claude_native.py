"""claude-native in process: the loop against acpd's mock model server, over REST."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from acpd.adapters.claude_native.history import TURN_STOPPED
from acpd.config import AgentConfig, DaemonConfig
from acpd.daemon.manager import SessionManager
from acpd.store.memory import MemoryEventStore
from acpd.testing.model_server import ErrorReply, MockModelServer, Reply, ToolCall, Usage, serve_mock_model
from tests.daemon.helpers import wait_for_frame
from tests.native.conftest import client_of, native_config
from tests.processes import cmdlines

pytestmark = pytest.mark.anyio


@pytest.fixture
async def http(manager: SessionManager) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(manager) as client:
        yield client


async def session(http: httpx.AsyncClient, cwd: Path, permissions: str = "allow") -> str:
    body = {"agent": "claude-native", "cwd": str(cwd), "policy": {"permissions": permissions}}
    response = await http.post("/v1/sessions", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def prompt(http: httpx.AsyncClient, session_id: str, text: str) -> dict[str, Any]:
    with anyio.fail_after(20):
        return dict((await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": text})).json())


async def updates(http: httpx.AsyncClient, session_id: str) -> list[dict[str, Any]]:
    items = (await http.get(f"/v1/sessions/{session_id}/events", params={"limit": 1000})).json()["items"]
    return [e["payload"]["params"]["update"] for e in items if e["payload"].get("method") == "session/update"]


async def test_a_text_reply_streams_and_the_usage_totals_match_what_the_model_reported(
    http: httpx.AsyncClient, model: MockModelServer, tmp_path: Path
) -> None:
    session_id = await session(http, tmp_path)
    answer = await prompt(http, session_id, "mock:text=Hello from the loop")
    assert answer["stopReason"] == "end_turn"
    assert answer["text"] == "Hello from the loop"
    reported = [request.usage for request in model.requests if request.usage is not None]
    assert answer["usage"]["inputTokens"] == sum(u.input_tokens for u in reported)
    assert answer["usage"]["outputTokens"] == sum(u.output_tokens for u in reported)
    kinds = [u["sessionUpdate"] for u in await updates(http, session_id)]
    assert "usage_update" in kinds


async def test_multi_step_tool_use_writes_a_real_file_and_shows_its_diff(
    http: httpx.AsyncClient, model: MockModelServer, tmp_path: Path
) -> None:
    session_id = await session(http, tmp_path)
    model.push(Reply(tool=ToolCall(name="Write", input={"path": "notes.txt", "content": "hello\n"})))
    answer = await prompt(http, session_id, "Write a note")
    assert answer["stopReason"] == "end_turn"
    assert (tmp_path / "notes.txt").read_text() == "hello\n"
    assert "All done. Tool said: Created" in answer["text"]
    reported = [request.usage for request in model.requests if request.usage is not None]
    assert len(reported) == 2
    assert answer["usage"]["inputTokens"] == sum(u.input_tokens for u in reported)
    assert answer["usage"]["outputTokens"] == sum(u.output_tokens for u in reported)
    seen = await updates(http, session_id)
    [call] = [u for u in seen if u["sessionUpdate"] == "tool_call"]
    assert (call["kind"], call["title"]) == ("edit", "Write notes.txt")
    [done] = [u for u in seen if u.get("status") == "completed"]
    assert done["content"] == [
        {"type": "diff", "path": str(tmp_path / "notes.txt"), "oldText": None, "newText": "hello\n"}
    ]


async def test_the_shell_tool_runs_in_the_session_directory(
    http: httpx.AsyncClient, model: MockModelServer, tmp_path: Path
) -> None:
    session_id = await session(http, tmp_path)
    model.push(Reply(tool=ToolCall(name="Bash", input={"command": "pwd"})))
    answer = await prompt(http, session_id, "Where am I?")
    where = os.path.realpath(str(tmp_path))  # noqa: ASYNC240 - a test, and no I/O to speak of
    assert f"All done. Tool said: {where}" in answer["text"]


async def test_the_shell_tool_gets_none_of_the_daemons_secrets(
    http: httpx.AsyncClient, model: MockModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"sk-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    monkeypatch.setenv("ACPD_TEST_VISIBLE", "plain value")
    session_id = await session(http, tmp_path)
    model.push(Reply(tool=ToolCall(name="Bash", input={"command": "env"})))
    assert (await prompt(http, session_id, "show the environment"))["stopReason"] == "end_turn"
    log = (await http.get(f"/v1/sessions/{session_id}/events")).text
    assert "ACPD_TEST_VISIBLE=plain value" in log
    assert secret not in log and "ANTHROPIC_API_KEY" not in log
    assert secret not in str(model.requests[-1].body)


async def test_the_todo_tool_becomes_a_plan(http: httpx.AsyncClient, model: MockModelServer, tmp_path: Path) -> None:
    session_id = await session(http, tmp_path)
    todos = [{"content": "Read", "status": "completed"}, {"content": "Write", "status": "in_progress"}]
    model.push(Reply(tool=ToolCall(name="TodoWrite", input={"todos": todos})))
    await prompt(http, session_id, "Plan it")
    [plan] = [u for u in await updates(http, session_id) if u["sessionUpdate"] == "plan"]
    assert [(e["content"], e["status"]) for e in plan["entries"]] == [("Read", "completed"), ("Write", "in_progress")]


async def test_a_refused_credential_is_a_clear_error(http: httpx.AsyncClient, tmp_path: Path) -> None:
    session_id = await session(http, tmp_path)
    answer = await prompt(http, session_id, "mock:error=401 message=bad key")
    assert answer["error"]["data"]["code"] == "MODEL_AUTH"
    events = (await http.get(f"/v1/sessions/{session_id}/events")).json()["items"]
    errors = [e["payload"]["params"] for e in events if e["payload"].get("method") == "_acpd/error"]
    assert errors[0]["code"] == "MODEL_AUTH"


async def test_an_overloaded_model_is_retried_and_the_turn_goes_on(
    http: httpx.AsyncClient, model: MockModelServer, tmp_path: Path
) -> None:
    session_id = await session(http, tmp_path)
    model.push(Reply(error=ErrorReply(status=529, retry_after_seconds=0)), Reply(text="made it"))
    answer = await prompt(http, session_id, "hello")
    assert answer["text"] == "made it"
    events = (await http.get(f"/v1/sessions/{session_id}/events")).json()["items"]
    [error] = [e["payload"]["params"] for e in events if e["payload"].get("method") == "_acpd/error"]
    assert error["code"] == "MODEL_OVERLOADED"


async def test_permission_is_asked_in_the_default_mode_and_the_answer_is_obeyed(
    http: httpx.AsyncClient, manager: SessionManager, model: MockModelServer, tmp_path: Path
) -> None:
    session_id = await session(http, tmp_path, permissions="ask")
    model.push(Reply(tool=ToolCall(name="Write", input={"path": "asked.txt", "content": "yes\n"})))
    async with prompting(http, manager, session_id, "Write it", "session/request_permission") as answer:
        pending = (await http.get(f"/v1/sessions/{session_id}/permissions")).json()["items"]
        assert pending[0]["toolCall"]["kind"] == "edit"
        await http.post(f"/v1/sessions/{session_id}/permissions/{pending[0]['id']}", json={"reply": "once"})
    assert answer["stopReason"] == "end_turn"
    assert (tmp_path / "asked.txt").read_text() == "yes\n"


async def test_plan_mode_refuses_changes_without_asking(
    http: httpx.AsyncClient, model: MockModelServer, tmp_path: Path
) -> None:
    session_id = await session(http, tmp_path, permissions="ask")
    assert (await http.patch(f"/v1/sessions/{session_id}", json={"mode": "plan"})).status_code == 200
    model.push(Reply(tool=ToolCall(name="Write", input={"path": "no.txt", "content": "x"})))
    answer = await prompt(http, session_id, "Write it")
    assert "not allowed in plan mode" in answer["text"]
    assert not (tmp_path / "no.txt").exists()


async def test_edit_replaces_exact_text_once_and_refuses_an_ambiguous_match(
    http: httpx.AsyncClient, model: MockModelServer, tmp_path: Path
) -> None:
    (tmp_path / "code.py").write_text("a = 1\nb = 1\n")
    session_id = await session(http, tmp_path)
    model.push(Reply(tool=ToolCall(name="Edit", input={"path": "code.py", "old_string": "= 1", "new_string": "= 2"})))
    ambiguous = await prompt(http, session_id, "Edit")
    assert "occurs 2 times" in ambiguous["text"]
    model.push(
        Reply(tool=ToolCall(name="Edit", input={"path": "code.py", "old_string": "b = 1", "new_string": "b = 2"}))
    )
    await prompt(http, session_id, "Edit")
    assert (tmp_path / "code.py").read_text() == "a = 1\nb = 2\n"


async def test_glob_and_grep_search_inside_the_session_directory_only(
    http: httpx.AsyncClient, model: MockModelServer, tmp_path: Path
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("def main():\n    return 42\n")
    session_id = await session(http, tmp_path)
    model.push(Reply(tool=ToolCall(name="Grep", input={"pattern": "return \\d+"})))
    assert "src/app.py:2:     return 42" in (await prompt(http, session_id, "grep"))["text"]
    model.push(Reply(tool=ToolCall(name="Glob", input={"pattern": "**/*.py"})))
    assert "src/app.py" in (await prompt(http, session_id, "glob"))["text"]
    model.push(Reply(tool=ToolCall(name="Glob", input={"pattern": "*", "path": "/"})))
    assert "outside" in (await prompt(http, session_id, "escape"))["text"]
    model.push(Reply(tool=ToolCall(name="Glob", input={"pattern": "src/../../*"})))
    assert "no '..'" in (await prompt(http, session_id, "escape"))["text"]
    outside = tmp_path.parent / f"outside-{tmp_path.name}"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret\n")
    (tmp_path / "link").symlink_to(outside)
    model.push(Reply(tool=ToolCall(name="Glob", input={"pattern": "link/*"})))
    assert "secret.txt" not in (await prompt(http, session_id, "escape"))["text"]
    model.push(Reply(tool=ToolCall(name="Grep", input={"pattern": "secret"})))
    assert "No matches." in (await prompt(http, session_id, "escape"))["text"]


async def test_the_searches_and_file_tools_reach_the_sessions_additional_directories(
    http: httpx.AsyncClient, model: MockModelServer, tmp_path: Path
) -> None:
    work, docs = tmp_path / "work", tmp_path / "docs"
    work.mkdir()
    docs.mkdir()
    (docs / "guide.md").write_text("# Guide\nrun it with make\n")
    body = {"agent": "claude-native", "cwd": str(work), "additionalDirectories": [str(docs)]}
    session_id = (await http.post("/v1/sessions", json={**body, "policy": {"permissions": "allow"}})).json()["id"]
    model.push(Reply(tool=ToolCall(name="Glob", input={"pattern": "*.md", "path": str(docs)})))
    assert "guide.md" in (await prompt(http, session_id, "glob the docs"))["text"]
    model.push(Reply(tool=ToolCall(name="Grep", input={"pattern": "make", "path": str(docs)})))
    assert "guide.md:2: run it with make" in (await prompt(http, session_id, "grep the docs"))["text"]
    model.push(Reply(tool=ToolCall(name="Read", input={"path": str(docs / "guide.md")})))
    assert "run it with make" in (await prompt(http, session_id, "read the guide"))["text"]
    model.push(Reply(tool=ToolCall(name="Glob", input={"pattern": "*", "path": str(tmp_path)})))
    refused = (await prompt(http, session_id, "the parent is not the session's"))["text"]
    assert f"'{tmp_path}' is outside the session's directories" in refused
    assert str(docs) in model.requests[0].body["system"]


async def test_a_cancel_in_the_middle_of_a_tool_stops_it_and_the_conversation_goes_on(
    http: httpx.AsyncClient, manager: SessionManager, model: MockModelServer, tmp_path: Path
) -> None:
    session_id = await session(http, tmp_path)
    marker = f"acpd-native-{uuid.uuid4().hex}"
    command = f"python3 -c 'import time; print(\"started\", flush=True); time.sleep(60)' {marker}"
    model.push(Reply(tool=ToolCall(name="Bash", input={"command": command})))

    async def started() -> None:
        await wait_for_update(manager, session_id, lambda u: "started" in str(u.get("content", "")))

    async with prompting(http, manager, session_id, "Run it", started) as answer:
        assert [pid for pid, cmdline in cmdlines() if marker in cmdline], "the command runs"
        assert (await http.post(f"/v1/sessions/{session_id}/cancel")).json() == {"cancelled": True}
    assert answer["stopReason"] == "cancelled"
    assert not [pid for pid, cmdline in cmdlines() if marker in cmdline]
    [failed] = [u for u in await updates(http, session_id) if u.get("status") == "failed"]
    assert failed["_meta"]["claudeNative"]["toolResult"]["text"] == "The tool call was cancelled."
    after = await prompt(http, session_id, "mock:text=still here")
    assert after["text"] == "still here"
    # The model saw the cut-short call answered and the tool loop closed before the next prompt.
    last = model.requests[-1].body["messages"]
    assert [m["role"] for m in last] == ["user", "assistant", "user", "assistant", "user"]
    assert last[2]["content"][0]["is_error"] and last[3]["content"] == [{"type": "text", "text": TURN_STOPPED}]


async def test_after_a_restart_the_conversation_is_rebuilt_from_the_log(
    model: MockModelServer, tmp_path: Path, store: MemoryEventStore
) -> None:
    model.push(Reply(tool=ToolCall(name="Write", input={"path": "a.txt", "content": "A\n"})))
    for text in ("Write a file", "mock:text=I remember"):
        async with (
            SessionManager(native_config(model, tmp_path), store).running() as manager,
            client_of(manager) as client,
        ):
            if text == "Write a file":
                session_id = await session(client, tmp_path)
            answer = await prompt(client, session_id, text)
            assert answer["stopReason"] == "end_turn"
    messages = model.requests[-1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[-1]["content"] == [{"type": "text", "text": "mock:text=I remember"}]  # once, not twice
    assert messages[0]["content"][0]["text"] == "Write a file"
    assert messages[1]["content"][-1]["name"] == "Write"
    assert messages[2]["content"][0]["type"] == "tool_result"
    assert messages[3]["content"][0]["text"].startswith("All done. Tool said: Created")


@asynccontextmanager
async def prompting(
    http: httpx.AsyncClient, manager: SessionManager, session_id: str, text: str, until: Any
) -> AsyncIterator[dict[str, Any]]:
    """Send a prompt and enter once ``until`` happened (a method the log recorded, or an awaitable's
    factory) while it runs; on leaving, the answer has come (within 20 s)."""
    answer: dict[str, Any] = {}

    async def run() -> None:
        answer.update(await prompt(http, session_id, text))

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await (wait_for_frame(manager, session_id, until) if isinstance(until, str) else until())
            yield answer


async def wait_for_update(manager: SessionManager, session_id: str, wanted: Any) -> dict[str, Any]:
    runtime = await manager.runtime(session_id)
    async for batch in runtime.log.follow(0):
        for record in batch:
            params = record.payload_object().get("params")
            update = params.get("update") if isinstance(params, dict) else None
            if isinstance(update, dict) and wanted(update):
                return update
    raise AssertionError("the log closed first")


async def daemon_frames(http: httpx.AsyncClient, session_id: str, method: str) -> list[dict[str, Any]]:
    items = (await http.get(f"/v1/sessions/{session_id}/events")).json()["items"]
    return [e["payload"]["params"] for e in items if e["payload"].get("method") == method]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ErrorReply(status=429, retry_after_seconds=0), "MODEL_RATE_LIMITED"),
        (ErrorReply(status=500), "MODEL_ERROR"),
    ],
)
async def test_a_transient_api_failure_is_retried_after_an_error_event(
    http: httpx.AsyncClient, model: MockModelServer, tmp_path: Path, error: ErrorReply, code: str
) -> None:
    session_id = await session(http, tmp_path)
    model.push(Reply(error=error), Reply(text="recovered"))
    answer = await prompt(http, session_id, "hello")
    assert answer["text"] == "recovered"
    [recorded] = await daemon_frames(http, session_id, "_acpd/error")
    assert (recorded["code"], recorded["data"]["status"], recorded["data"]["attempt"]) == (code, error.status, 1)


async def test_a_stream_cut_mid_message_is_an_error_event_and_the_step_is_retried(
    http: httpx.AsyncClient, model: MockModelServer, tmp_path: Path
) -> None:
    session_id = await session(http, tmp_path)
    model.push(Reply(text="this answer is cut somewhere in the middle", cut=True), Reply(text="whole answer"))
    answer = await prompt(http, session_id, "hello")
    assert answer["text"].endswith("whole answer")
    [recorded] = await daemon_frames(http, session_id, "_acpd/error")
    assert recorded["code"] == "MODEL_STREAM_CUT"


async def test_a_cut_answers_partial_text_is_left_out_of_the_conversation_live_and_after_a_restart(
    model: MockModelServer, tmp_path: Path, store: MemoryEventStore
) -> None:
    model.push(Reply(text="half an answer that breaks off " * 4, cut=True), Reply(text="whole answer"))
    async with SessionManager(native_config(model, tmp_path), store).running() as manager, client_of(manager) as client:
        session_id = await session(client, tmp_path)
        assert (await prompt(client, session_id, "hello"))["stopReason"] == "end_turn"
        await prompt(client, session_id, "mock:text=and then")
    live = model.requests[-1].body["messages"]
    async with SessionManager(native_config(model, tmp_path), store).running() as manager, client_of(manager) as client:
        await prompt(client, session_id, "mock:text=after the restart")
    rebuilt = model.requests[-1].body["messages"]
    assert [b["text"] for m in live[:2] for b in m["content"]] == ["hello", "whole answer"]
    assert rebuilt[:3] == live[:3]


async def test_a_prompt_that_failed_before_any_answer_is_not_sent_again_live_or_after_a_restart(
    model: MockModelServer, tmp_path: Path, store: MemoryEventStore
) -> None:
    model.push(*[Reply(error=ErrorReply(status=429, retry_after_seconds=0)) for _ in range(4)])
    async with SessionManager(native_config(model, tmp_path), store).running() as manager, client_of(manager) as client:
        session_id = await session(client, tmp_path)
        failed = await prompt(client, session_id, "the prompt that fails")
        assert failed["error"]["data"]["code"] == "MODEL_RATE_LIMITED"
        assert (await prompt(client, session_id, "mock:text=next"))["stopReason"] == "end_turn"
    live = model.requests[-1].body["messages"]
    async with SessionManager(native_config(model, tmp_path), store).running() as manager, client_of(manager) as client:
        await prompt(client, session_id, "mock:text=after the restart")
    rebuilt = model.requests[-1].body["messages"]
    assert live == [{"role": "user", "content": [{"type": "text", "text": "mock:text=next"}]}]
    assert rebuilt[:2] == [live[0], {"role": "assistant", "content": [{"type": "text", "text": "next"}]}]


async def test_a_blank_text_block_beside_a_tool_use_is_not_sent_back(
    http: httpx.AsyncClient, model: MockModelServer, tmp_path: Path
) -> None:
    session_id = await session(http, tmp_path)
    model.push(Reply(text="", tool=ToolCall(name="Glob", input={"pattern": "*"})))
    assert (await prompt(http, session_id, "look"))["stopReason"] == "end_turn"
    sent = [b for m in model.requests[-1].body["messages"] for b in m["content"] if b.get("type") == "text"]
    assert all(block["text"].strip() for block in sent)


async def test_text_cut_short_by_a_timeout_stays_in_the_conversation_live_and_after_a_restart(
    tmp_path: Path, store: MemoryEventStore
) -> None:
    async with serve_mock_model(event_delay_seconds=0.05) as slow:
        slow.push(Reply(text="a long answer that streams slowly " * 20))
        config = native_config(slow, tmp_path)
        async with SessionManager(config, store).running() as manager, client_of(manager) as client:
            body = {"agent": "claude-native", "cwd": str(tmp_path), "policy": {"turnTimeoutSeconds": 0.5}}
            session_id = (await client.post("/v1/sessions", json=body)).json()["id"]
            timed_out = await prompt(client, session_id, "tell me")
            assert timed_out["stopReason"] == "cancelled" and timed_out["text"]
            await prompt(client, session_id, "mock:text=next")
        live = slow.requests[-1].body["messages"]
        async with SessionManager(config, store).running() as manager, client_of(manager) as client:
            await prompt(client, session_id, "mock:text=after the restart")
        rebuilt = slow.requests[-1].body["messages"]
    assert [m["role"] for m in live] == ["user", "assistant", "user"]
    assert live[1]["content"][0]["text"] == timed_out["text"]
    assert rebuilt[:3] == live


async def test_a_bug_in_the_agent_answers_the_prompt_with_an_error_and_the_session_goes_on(
    http: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session_id = await session(http, tmp_path)

    async def broken(*args: Any) -> dict[str, Any]:
        raise RuntimeError("a bug")

    with monkeypatch.context() as patched:
        patched.setattr("acpd.adapters.claude_native.backend.run_turn", broken)
        failed = await prompt(http, session_id, "hello")
    assert failed["error"]["message"] == "the agent failed: RuntimeError: a bug"
    items = (await http.get(f"/v1/sessions/{session_id}/events")).json()["items"]
    [answer] = [e["payload"] for e in items if e["seq"] == failed["lastSeq"]]
    assert answer["error"]["message"] == failed["error"]["message"]  # the prompt has its answer in the log
    assert (await prompt(http, session_id, "mock:text=fine again"))["text"] == "fine again"


async def test_a_cancel_while_waiting_to_retry_keeps_none_of_the_failed_attempts_text(
    http: httpx.AsyncClient, manager: SessionManager, model: MockModelServer, tmp_path: Path
) -> None:
    session_id = await session(http, tmp_path)
    model.push(Reply(text="this attempt breaks off " * 4, cut=True))
    async with prompting(http, manager, session_id, "hello", "_acpd/error") as answer:  # the retry waits 1 s
        await http.post(f"/v1/sessions/{session_id}/cancel")
    assert answer["stopReason"] == "cancelled"
    await prompt(http, session_id, "mock:text=next")
    roles = [m["role"] for m in model.requests[-1].body["messages"]]
    assert roles == ["user"]  # the cancelled prompt and the next one, and no assistant text


async def test_a_todo_list_the_tool_refuses_is_a_failed_call_that_survives_a_restart(
    model: MockModelServer, tmp_path: Path, store: MemoryEventStore
) -> None:
    bad = {"todos": [{"content": "a step", "status": "sort of"}]}
    model.push(Reply(text="Planning.", tool=ToolCall(name="TodoWrite", input=bad)))
    async with SessionManager(native_config(model, tmp_path), store).running() as manager, client_of(manager) as client:
        session_id = await session(client, tmp_path)
        assert (await prompt(client, session_id, "plan it"))["stopReason"] == "end_turn"
        [failed] = [u for u in await updates(client, session_id) if u.get("status") == "failed"]
        await prompt(client, session_id, "mock:text=and then")
    live = model.requests[-1].body["messages"]
    async with SessionManager(native_config(model, tmp_path), store).running() as manager, client_of(manager) as client:
        await prompt(client, session_id, "mock:text=after the restart")
    rebuilt = model.requests[-1].body["messages"]
    assert failed["toolCallId"] == live[1]["content"][-1]["id"]
    assert rebuilt[: len(live)] == live


async def test_a_turn_timeout_cancels_the_model_call_with_a_timeout_error(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    body = {"agent": "claude-native", "cwd": str(tmp_path), "policy": {"turnTimeoutSeconds": 0.5}}
    session_id = (await http.post("/v1/sessions", json=body)).json()["id"]
    answer = await prompt(http, session_id, "mock:delay=30\nmock:text=too late")
    assert answer["stopReason"] == "cancelled"
    assert [e["code"] for e in await daemon_frames(http, session_id, "_acpd/error")] == ["TIMEOUT"]


async def test_the_token_budget_stops_the_turn(http: httpx.AsyncClient, model: MockModelServer, tmp_path: Path) -> None:
    body = {"agent": "claude-native", "cwd": str(tmp_path), "policy": {"maxBudgetTokens": 10, "permissions": "allow"}}
    session_id = (await http.post("/v1/sessions", json=body)).json()["id"]
    answer = await prompt(http, session_id, "Say hi with the shell")
    assert answer["stopReason"] == "max_tokens"
    [limit] = await daemon_frames(http, session_id, "_acpd/limit_reached")
    assert limit["limit"] == "maxBudgetTokens"


async def test_the_token_budget_counts_every_model_call_of_the_turn_not_only_the_largest(
    http: httpx.AsyncClient, model: MockModelServer, tmp_path: Path
) -> None:
    body = {"agent": "claude-native", "cwd": str(tmp_path), "policy": {"maxBudgetTokens": 250, "permissions": "allow"}}
    session_id = (await http.post("/v1/sessions", json=body)).json()["id"]
    each = Usage(input_tokens=100, output_tokens=10)  # 110 a call: no single call reaches the budget
    model.push(*[Reply(tool=ToolCall(name="Glob", input={"pattern": "*"}), usage=each) for _ in range(5)])
    answer = await prompt(http, session_id, "Look around")
    assert answer["stopReason"] == "max_tokens"
    [limit] = await daemon_frames(http, session_id, "_acpd/limit_reached")
    assert (limit["limit"], limit["spent"]) == ("maxBudgetTokens", 330)
    assert len(model.requests) == 3


async def test_a_turn_stops_at_claude_natives_own_cap_of_model_calls_and_says_why(
    http: httpx.AsyncClient, model: MockModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("acpd.adapters.claude_native.loop.MAX_STEPS", 2)
    session_id = await session(http, tmp_path)
    model.push(*[Reply(tool=ToolCall(name="Glob", input={"pattern": "*"})) for _ in range(3)])
    assert (await prompt(http, session_id, "look around"))["stopReason"] == "max_turn_requests"
    [error] = await daemon_frames(http, session_id, "_acpd/error")
    assert (error["code"], error["data"]) == ("MAX_MODEL_CALLS", {"modelCalls": 2})
    assert len(model.requests) == 2


async def test_switching_to_claude_native_carries_the_earlier_conversation(
    http: httpx.AsyncClient, model: MockModelServer, tmp_path: Path
) -> None:
    body = {"agent": "mock", "cwd": str(tmp_path)}
    session_id = (await http.post("/v1/sessions", json=body)).json()["id"]
    await prompt(http, session_id, "text the secret word is banana")
    assert (await http.patch(f"/v1/sessions/{session_id}", json={"agent": "claude-native"})).status_code == 200
    answer = await prompt(http, session_id, "mock:text=noted")
    assert answer["text"] == "noted"
    first_user = model.requests[-1].body["messages"][0]["content"]
    assert any("banana" in block.get("text", "") for block in first_user)


async def test_the_thought_level_sets_a_thinking_budget_and_thinking_streams_as_thought(
    http: httpx.AsyncClient, model: MockModelServer, tmp_path: Path
) -> None:
    session_id = await session(http, tmp_path)
    assert (await http.patch(f"/v1/sessions/{session_id}", json={"thoughtLevel": "high"})).status_code == 200
    await prompt(http, session_id, "mock:thinking=let me see\nmock:text=done")
    assert model.requests[-1].body["thinking"] == {"type": "enabled", "budget_tokens": 16_384}
    thoughts = [u for u in await updates(http, session_id) if u["sessionUpdate"] == "agent_thought_chunk"]
    assert "".join(u["content"]["text"] for u in thoughts) == "let me see"


async def test_a_deny_policy_holds_whatever_the_mode(
    http: httpx.AsyncClient, model: MockModelServer, tmp_path: Path
) -> None:
    session_id = await session(http, tmp_path, permissions="deny")
    assert (await http.patch(f"/v1/sessions/{session_id}", json={"mode": "bypassPermissions"})).status_code == 200
    model.push(Reply(tool=ToolCall(name="Write", input={"path": "no.txt", "content": "x"})))
    answer = await prompt(http, session_id, "Write it")
    assert "refused" in answer["text"]
    assert not (tmp_path / "no.txt").exists()


async def test_a_cancel_while_permission_is_asked_fails_the_call(
    http: httpx.AsyncClient, manager: SessionManager, model: MockModelServer, tmp_path: Path
) -> None:
    session_id = await session(http, tmp_path, permissions="ask")
    model.push(Reply(tool=ToolCall(name="Write", input={"path": "later.txt", "content": "x"})))
    async with prompting(http, manager, session_id, "Write it", "session/request_permission") as answer:
        await http.post(f"/v1/sessions/{session_id}/cancel")
    assert answer["stopReason"] == "cancelled"
    statuses = [u.get("status") for u in await updates(http, session_id) if u.get("toolCallId")]
    assert statuses[0] == "pending" and statuses[-1] == "failed"
    assert not (tmp_path / "later.txt").exists()
    items = (await http.get(f"/v1/sessions/{session_id}/events")).json()["items"]
    [asked] = [e["payload"] for e in items if e["payload"].get("method") == "session/request_permission"]
    [reply] = [e for e in items if e["payload"].get("id") == asked["id"] and "method" not in e["payload"]]
    assert reply["sender"] == "daemon"
    assert reply["payload"]["result"]["outcome"] == {"outcome": "cancelled"}
    assert reply["payload"]["result"]["_meta"]["acpd"]["decidedBy"] == "cancel"
    assert (await http.get(f"/v1/sessions/{session_id}/permissions")).json()["items"] == []


async def test_the_mode_and_thought_level_survive_a_restart(
    model: MockModelServer, tmp_path: Path, store: MemoryEventStore
) -> None:
    for step in ("set", "check"):
        async with (
            SessionManager(native_config(model, tmp_path), store).running() as manager,
            client_of(manager) as client,
        ):
            if step == "set":
                session_id = await session(client, tmp_path)
                await client.patch(f"/v1/sessions/{session_id}", json={"mode": "plan", "thoughtLevel": "high"})
            else:
                model.push(Reply(tool=ToolCall(name="Write", input={"path": "no.txt", "content": "x"})))
                answer = await prompt(client, session_id, "Write it")
    assert "not allowed in plan mode" in answer["text"]
    assert model.requests[-1].body["thinking"]["budget_tokens"] == 16_384


async def test_the_sessions_usage_totals_add_up_every_turn(
    http: httpx.AsyncClient, model: MockModelServer, tmp_path: Path
) -> None:
    session_id = await session(http, tmp_path)
    await prompt(http, session_id, "mock:text=one")
    model.push(Reply(tool=ToolCall(name="Glob", input={"pattern": "*"})))
    await prompt(http, session_id, "two")
    usage = (await http.get(f"/v1/sessions/{session_id}")).json()["usage"]
    reported = [request.usage for request in model.requests if request.usage is not None]
    assert usage["inputTokens"] == sum(u.input_tokens for u in reported)
    assert usage["outputTokens"] == sum(u.output_tokens for u in reported)
    assert usage["cachedWriteTokens"] == 0


async def test_setting_the_mode_by_its_config_option_id_updates_the_sessions_mode(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    session_id = await session(http, tmp_path)
    assert (await http.patch(f"/v1/sessions/{session_id}", json={"config": {"mode": "plan"}})).status_code == 200
    doc = (await http.get(f"/v1/sessions/{session_id}")).json()
    assert doc["mode"] == "plan"
    assert doc["modes"]["currentModeId"] == "plan"


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_credentials")
async def test_without_a_key_or_a_model_url_claude_native_is_unavailable_and_says_what_to_set(
    tmp_path: Path, workdir: Path
) -> None:
    bare = AgentConfig(kind="claude-native")
    gateway = AgentConfig(kind="claude-native", env={"ANTHROPIC_BASE_URL": "http://127.0.0.1:9"})
    config = DaemonConfig(data_dir=str(tmp_path / "data"), db=":memory:", agents={"bare": bare, "gateway": gateway})
    store = MemoryEventStore()
    async with SessionManager(config, store).running() as manager, client_of(manager) as http:
        created = await http.post("/v1/sessions", json={"agent": "bare", "cwd": str(workdir)})
        listed = (await http.get("/v1/sessions")).json()["items"]
        agents = {a["name"]: a for a in (await http.get("/v1/agents")).json()["items"]}
        with_url = await http.post("/v1/sessions", json={"agent": "gateway", "cwd": str(workdir)})
    await store.aclose()
    assert created.status_code == 503
    problem = created.json()
    assert problem["type"] == "urn:acpd:problem:agent-unavailable"
    for variable in ("$ANTHROPIC_API_KEY", "$ANTHROPIC_AUTH_TOKEN", "$ANTHROPIC_BASE_URL", "--model-url"):
        assert variable in problem["detail"]
    assert listed == []  # nothing left behind
    assert agents["bare"]["usable"] is False
    assert problem["detail"] == f"agent 'bare' cannot be used: {agents['bare']['reason']}"
    assert agents["bare"]["credentials"] == {"present": False, "source": None}
    assert agents["gateway"]["usable"]
    assert agents["gateway"]["credentials"] == {"present": True, "source": "$ANTHROPIC_BASE_URL"}
    assert with_url.status_code == 201  # a gateway (or a mock) may need no key


PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
"""A 1x1 PNG, in base64."""


async def test_an_image_in_a_prompt_reaches_the_model_whole(
    http: httpx.AsyncClient, model: MockModelServer, tmp_path: Path
) -> None:
    session_id = await session(http, tmp_path)
    blocks = [
        {"type": "text", "text": "mock:text=I see it"},
        {"type": "image", "mimeType": "image/png", "data": PIXEL},
    ]
    with anyio.fail_after(20):
        answer = (await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": blocks})).json()
    assert answer["text"] == "I see it"
    sent = [
        block
        for request in model.requests
        if isinstance(request.body, dict)
        for message in request.body.get("messages", [])
        if isinstance(message.get("content"), list)
        for block in message["content"]
        if block.get("type") == "image"
    ]
    assert sent == [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}}]


async def test_audio_is_refused_before_the_turn_as_claude_native_does_not_take_it(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    session_id = await session(http, tmp_path)
    blocks = [{"type": "audio", "mimeType": "audio/wav", "data": PIXEL}]
    response = await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": blocks})
    assert response.status_code == 400
    assert "promptCapabilities.audio" in response.json()["detail"]
    assert (await http.get(f"/v1/sessions/{session_id}")).json()["turns"] == 0
