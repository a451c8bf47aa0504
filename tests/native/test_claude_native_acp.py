"""claude-native over ACP, in process: an ACP client drives acpd's own Claude loop against the mock model.

The same acceptance as ``test_claude_native`` (which goes through REST), seen from where an editor
sits: the updates, permission requests, ``_acpd/`` notifications and prompt answers the client gets.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import acp.schema
import anyio
import pytest

from acpd.adapters.claude_native.pricing import cost_usd
from acpd.daemon.manager import SessionManager
from acpd.errors import RpcError
from acpd.protocol.jsonio import JsonObject
from acpd.testing.model_server import ErrorReply, MockModelServer, Reply, ToolCall, Usage
from tests.daemon.acp_client import AcpTestClient, acp_client
from tests.native.conftest import client_of
from tests.processes import cmdlines, pidfds, wait_all_ended

pytestmark = pytest.mark.anyio

TURN_SECONDS: Final = 20
"""A bound on any one turn (the slowest here waits out one 1 s retry backoff)."""
FS_CAPS: Final[JsonObject] = {"fs": {"readTextFile": True, "writeTextFile": True}, "terminal": False}
CANCELLED_TEXT: Final = "The tool call was cancelled."
GLOB: Final = ToolCall(name="Glob", input={"pattern": "*"})


@pytest.fixture
async def client(manager: SessionManager) -> AsyncIterator[AcpTestClient]:
    """An editor that advertises neither ``fs`` nor ``terminal``: the daemon serves both."""
    async with acp_client(manager) as connected:
        yield connected


async def start(client: AcpTestClient, cwd: Path, caps: JsonObject | None = None, **policy: Any) -> str:
    """A claude-native session made over ACP (``_meta.acpd``), with this policy."""
    with anyio.fail_after(10):
        return await client.start(str(cwd), caps, agent="claude-native", policy=policy)


async def prompt(client: AcpTestClient, session_id: str, text: str) -> dict[str, Any]:
    with anyio.fail_after(TURN_SECONDS):
        return dict(await client.prompt(session_id, text))


async def failed_prompt(client: AcpTestClient, session_id: str, text: str) -> RpcError:
    """The JSON-RPC error the prompt is answered with."""
    with anyio.fail_after(TURN_SECONDS), pytest.raises(RpcError) as caught:
        await client.prompt(session_id, text)
    return caught.value


def notified(client: AcpTestClient, method: str) -> list[JsonObject]:
    """The params of the ``_acpd/…`` extension notifications the client received."""
    return [n["params"] for n in client.notifications if n["method"] == method]


def statuses(client: AcpTestClient, session_id: str, call_id: str) -> list[str]:
    updates = client.updates(session_id, "tool_call_update")
    return [u["status"] for u in updates if u["toolCallId"] == call_id and "status" in u]


def assert_valid_acp(client: AcpTestClient) -> None:
    """Every ``session/update`` the client received fits ACP v1 (the Python SDK's schema models)."""
    received = [n for n in client.notifications if n["method"] == "session/update"]
    assert received
    for notification in received:
        acp.schema.SessionNotification.model_validate(notification["params"])


def tool_results(body: Any) -> list[JsonObject]:
    """The ``tool_result`` blocks of a Messages API request body."""
    return [
        block
        for message in body["messages"]
        if isinstance(message["content"], list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]


async def test_multi_step_tool_use_asks_the_client_writes_a_real_file_and_shows_each_diff(
    client: AcpTestClient, model: MockModelServer, workdir: Path
) -> None:
    session_id = await start(client, workdir)  # permissions "ask", mode "default": edits are asked
    path = str(workdir / "notes.txt")
    edit = {"path": "notes.txt", "old_string": "world", "new_string": "acp"}
    model.push(
        Reply(tool=ToolCall(name="Write", input={"path": "notes.txt", "content": "hello world\n"})),
        Reply(text="Now the edit. ", tool=ToolCall(name="Edit", input=edit)),
    )
    answer = await prompt(client, session_id, "Write a note, then edit it")
    assert answer["stopReason"] == "end_turn"
    assert (workdir / "notes.txt").read_text() == "hello acp\n"
    assert client.client_calls == []  # no fs capability advertised: the daemon served fs/* itself
    asked = [request["toolCall"] for request in client.permission_requests]
    assert [(c["kind"], c["title"], c["status"]) for c in asked] == [
        ("edit", "Write notes.txt", "pending"),
        ("edit", "Edit notes.txt", "pending"),
    ]
    calls = client.updates(session_id, "tool_call")
    assert [(c["title"], c["locations"]) for c in calls] == [
        ("Write notes.txt", [{"path": path}]),
        ("Edit notes.txt", [{"path": path}]),
    ]
    diffs = [
        {"type": "diff", "path": path, "oldText": None, "newText": "hello world\n"},
        {"type": "diff", "path": path, "oldText": "hello world\n", "newText": "hello acp\n"},
    ]
    assert [statuses(client, session_id, c["toolCallId"]) for c in calls] == [["in_progress", "completed"]] * 2
    completed = [u for u in client.updates(session_id, "tool_call_update") if u.get("status") == "completed"]
    assert [(u["toolCallId"], u["content"]) for u in completed] == [
        (call["toolCallId"], [diff]) for call, diff in zip(calls, diffs, strict=True)
    ]
    # Three model calls: each tool's result went back before the next step.
    assert len(model.requests) == 3
    assert [r["tool_use_id"] for r in tool_results(model.requests[2].body)] == [c["toolCallId"] for c in calls]
    assert client.texts(session_id).startswith("Now the edit. All done. Tool said: Edited")
    assert_valid_acp(client)


async def test_the_clients_permission_answers_are_obeyed_a_rejection_and_an_always(
    client: AcpTestClient, model: MockModelServer, workdir: Path
) -> None:
    session_id = await start(client, workdir)
    kinds = iter(["reject_once", "allow_always"])

    def choose(params: JsonObject) -> JsonObject:
        kind = next(kinds)
        option = next(o for o in params["options"] if o["kind"] == kind)
        return {"outcome": {"outcome": "selected", "optionId": option["optionId"]}}

    client.answer_permission = choose
    model.push(
        *(Reply(tool=ToolCall(name="Write", input={"path": name, "content": f"{n}\n"})) for n, name in enumerate("aab"))
    )
    answer = await prompt(client, session_id, "Write them")
    assert answer["stopReason"] == "end_turn"
    assert len(client.permission_requests) == 2  # allowed always: the third write is not asked
    assert ((workdir / "a").read_text(), (workdir / "b").read_text()) == ("1\n", "2\n")
    calls = client.updates(session_id, "tool_call")
    assert [statuses(client, session_id, c["toolCallId"]) for c in calls] == [
        ["failed"],
        ["in_progress", "completed"],
        ["in_progress", "completed"],
    ]
    [refused] = tool_results(model.requests[1].body)
    assert (refused["content"], refused["is_error"]) == ("The user refused this tool call.", True)


async def test_a_cancel_while_the_client_is_asked_fails_the_call_and_changes_nothing(
    client: AcpTestClient, model: MockModelServer, workdir: Path
) -> None:
    session_id = await start(client, workdir)
    client.answer_permission = None  # a human who never answers
    model.push(Reply(tool=ToolCall(name="Write", input={"path": "later.txt", "content": "x"})))
    answer: dict[str, Any] = {}

    async def run() -> None:
        answer.update(await client.prompt(session_id, "Write it"))

    with anyio.fail_after(TURN_SECONDS):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await client.permission_asked.wait()
            await client.peer.notify("session/cancel", {"sessionId": session_id})
    assert answer["stopReason"] == "cancelled"
    [call] = client.updates(session_id, "tool_call")
    assert statuses(client, session_id, call["toolCallId"]) == ["failed"]
    assert not (workdir / "later.txt").exists()
    assert len(model.requests) == 1


async def test_an_editor_that_offers_fs_gets_the_file_tools_reads_and_writes(
    manager: SessionManager, model: MockModelServer, workdir: Path
) -> None:
    async with acp_client(manager) as editor:
        session_id = await start(editor, workdir, FS_CAPS, permissions="allow")
        model.push(Reply(tool=ToolCall(name="Write", input={"path": "buffer.txt", "content": "unsaved\n"})))
        answer = await prompt(editor, session_id, "Write it")
    path = str(workdir / "buffer.txt")
    assert answer["stopReason"] == "end_turn"
    assert [method for method, _ in editor.client_calls] == ["fs/read_text_file", "fs/write_text_file"]
    assert all(params["sessionId"] == session_id for _, params in editor.client_calls)
    assert editor.files == {path: "unsaved\n"}
    assert not (workdir / "buffer.txt").exists()  # the editor's buffer, not the disk


async def test_the_todo_tool_reaches_the_client_as_a_plan_that_each_call_replaces(
    client: AcpTestClient, model: MockModelServer, workdir: Path
) -> None:
    session_id = await start(client, workdir)
    first = [
        {"content": "Read the code", "status": "completed"},
        {"content": "Fix the bug", "status": "in_progress", "priority": "high"},
        {"content": "Run the tests", "status": "pending", "priority": "low"},
    ]
    second = [{**todo, "status": "completed"} for todo in first]
    model.push(*(Reply(tool=ToolCall(name="TodoWrite", input={"todos": todos})) for todos in (first, second)))
    answer = await prompt(client, session_id, "Plan it, then do it")
    assert answer["stopReason"] == "end_turn"
    plans = client.updates(session_id, "plan")
    assert [plan["entries"] for plan in plans] == [
        [
            {"content": "Read the code", "status": "completed", "priority": "medium"},
            {"content": "Fix the bug", "status": "in_progress", "priority": "high"},
            {"content": "Run the tests", "status": "pending", "priority": "low"},
        ],
        [
            {"content": "Read the code", "status": "completed", "priority": "medium"},
            {"content": "Fix the bug", "status": "completed", "priority": "high"},
            {"content": "Run the tests", "status": "completed", "priority": "low"},
        ],
    ]
    # The plan is the tool's whole effect: no tool call to show, nothing to ask.
    assert client.updates(session_id, "tool_call") == []
    assert client.permission_requests == []
    assert client.texts(session_id) == "All done. Tool said: Plan updated: 3 of 3 done"
    assert_valid_acp(client)


async def test_usage_updates_follow_every_model_response_and_the_totals_equal_what_the_model_reported(
    client: AcpTestClient, manager: SessionManager, model: MockModelServer, workdir: Path
) -> None:
    session_id = await start(client, workdir, permissions="allow")
    sizes = [Usage(input_tokens=1_200, output_tokens=80), Usage(input_tokens=1_500, output_tokens=40)]
    model.push(Reply(tool=GLOB, usage=sizes[0]), Reply(text="found it", usage=sizes[1]))
    first = await prompt(client, session_id, "Look around")
    model.push(Reply(text="and again", usage=Usage(input_tokens=1_700, output_tokens=30)))
    second = await prompt(client, session_id, "Once more")

    reported = [request.usage for request in model.requests]
    assert len(reported) == 3
    assert all(usage is not None for usage in reported)
    inputs = [u.input_tokens for u in reported if u is not None]
    outputs = [u.output_tokens for u in reported if u is not None]
    costs = [cost_usd(str(r.body["model"]), i, o) for r, i, o in zip(model.requests, inputs, outputs, strict=True)]
    assert None not in costs  # the mock answers as a priced model
    usage_updates = client.updates(session_id, "usage_update")
    assert [u["used"] for u in usage_updates] == [i + o for i, o in zip(inputs, outputs, strict=True)]
    running_cost = [round(sum(c for c in costs[: n + 1] if c is not None), 6) for n in range(3)]
    assert [u["cost"] for u in usage_updates] == [{"amount": c, "currency": "USD"} for c in running_cost]
    # What each turn has spent so far, for the daemon's token budget.
    assert [u["_meta"]["acpd"]["turnTokens"] for u in usage_updates] == [1_280, 1_280 + 1_540, 1_730]

    assert first["usage"] == {
        "inputTokens": 2_700,
        "outputTokens": 120,
        "cachedReadTokens": 0,
        "cachedWriteTokens": 0,
        "totalTokens": 2_820,
    }
    assert (second["usage"]["inputTokens"], second["usage"]["outputTokens"]) == (1_700, 30)
    async with client_of(manager) as http:
        totals = (await http.get(f"/v1/sessions/{session_id}")).json()["usage"]
    assert (totals["inputTokens"], totals["outputTokens"]) == (sum(inputs), sum(outputs))
    assert totals["totalTokens"] == sum(inputs) + sum(outputs)
    assert totals["cost"] == {"amount": running_cost[-1], "currency": "USD"}
    assert_valid_acp(client)


async def test_a_session_cancel_in_the_middle_of_a_command_stops_it_and_the_conversation_goes_on(
    client: AcpTestClient, model: MockModelServer, workdir: Path
) -> None:
    session_id = await start(client, workdir)  # the command is asked for, and the client allows it
    marker = f"acpd-native-acp-{uuid.uuid4().hex}"
    command = f"python3 -c 'import time; print(\"started\", flush=True); time.sleep(60)' {marker}"
    model.push(Reply(tool=ToolCall(name="Bash", input={"command": command})))
    answer: dict[str, Any] = {}
    answered = anyio.Event()

    async def run() -> None:
        answer.update(await client.prompt(session_id, "Run it"))
        answered.set()

    def output_shown() -> bool:
        return any("started" in str(u.get("content", "")) for u in client.updates(session_id, "tool_call_update"))

    with anyio.fail_after(TURN_SECONDS):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await client.wait_until(output_shown)
            running = [pid for pid, cmdline in cmdlines() if marker in cmdline]
            assert running, "the command runs"
            with pidfds(running) as handles:
                await client.peer.notify("session/cancel", {"sessionId": session_id})
                await answered.wait()
                await wait_all_ended(handles)
    assert answer["stopReason"] == "cancelled"
    assert [request["toolCall"]["kind"] for request in client.permission_requests] == ["execute"]
    [call] = client.updates(session_id, "tool_call")
    assert statuses(client, session_id, call["toolCallId"]) == ["in_progress", "failed"]
    [failed] = [u for u in client.updates(session_id, "tool_call_update") if u.get("status") == "failed"]
    assert failed["_meta"]["claudeNative"]["toolResult"]["text"] == CANCELLED_TEXT

    after = await prompt(client, session_id, "mock:text=still here")
    assert after["stopReason"] == "end_turn"
    assert client.texts(session_id).endswith("still here")
    # The model saw the cut-short call answered, so the API accepted the conversation.
    [result] = tool_results(model.requests[-1].body)
    assert (result["tool_use_id"], result["content"], result["is_error"]) == (call["toolCallId"], CANCELLED_TEXT, True)
    assert_valid_acp(client)


async def test_a_turn_timeout_cancels_the_turn_and_tells_the_client_why(
    client: AcpTestClient, model: MockModelServer, workdir: Path
) -> None:
    session_id = await start(client, workdir, turnTimeoutSeconds=0.5)
    answer = await prompt(client, session_id, "mock:delay=30\nmock:text=too late")
    assert answer["stopReason"] == "cancelled"
    assert [(e["code"], e["message"]) for e in notified(client, "_acpd/error")] == [
        ("TIMEOUT", "turn 1 exceeded 0.5 s")
    ]
    [limit] = notified(client, "_acpd/limit_reached")
    assert (limit["limit"], limit["value"]) == ("turnTimeoutSeconds", 0.5)
    assert "too late" not in client.texts(session_id)
    # The timed-out prompt stays unanswered in the conversation (its delay directive too): a scripted
    # reply, which directives do not modify, shows the session takes the next turn.
    model.push(Reply(text="in time"))
    assert (await prompt(client, session_id, "Go on")).get("stopReason") == "end_turn"
    assert client.texts(session_id) == "in time"
    assert model.requests[-1].body["messages"][-1]["content"][-1] == {"type": "text", "text": "Go on"}


async def test_the_token_budget_stops_the_turn_with_max_tokens(
    client: AcpTestClient, model: MockModelServer, workdir: Path
) -> None:
    session_id = await start(client, workdir, permissions="allow", maxBudgetTokens=1_000)
    large = Usage(input_tokens=5_000, output_tokens=50)
    model.push(*(Reply(tool=GLOB, usage=large) for _ in range(3)))
    answer = await prompt(client, session_id, "Look around")
    assert answer["stopReason"] == "max_tokens"
    assert answer["usage"]["totalTokens"] == 5_050
    [limit] = notified(client, "_acpd/limit_reached")
    assert (limit["limit"], limit["value"], limit["spent"]) == ("maxBudgetTokens", 1_000, 5_050)
    assert len(model.requests) == 1  # stopped before a second model call


@pytest.mark.parametrize("status", [401, 403])
async def test_a_refused_credential_answers_the_prompt_with_a_model_auth_error_at_once(
    client: AcpTestClient, model: MockModelServer, workdir: Path, status: int
) -> None:
    session_id = await start(client, workdir)
    error = await failed_prompt(client, session_id, f"mock:error={status} message=bad key")
    assert error.code == -32603
    assert error.message == f"the model API refused the credentials ({status}): bad key"
    assert (error.data["code"], error.data["status"]) == ("MODEL_AUTH", status)
    [reported] = notified(client, "_acpd/error")
    assert (reported["code"], reported["data"]["status"], reported["data"]["attempt"]) == ("MODEL_AUTH", status, 1)
    assert len(model.requests) == 1  # not retried


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (Reply(error=ErrorReply(status=429, retry_after_seconds=0)), "MODEL_RATE_LIMITED"),
        (Reply(error=ErrorReply(status=529, retry_after_seconds=0)), "MODEL_OVERLOADED"),
        (Reply(error=ErrorReply(status=500, retry_after_seconds=0)), "MODEL_ERROR"),
        (Reply(text="this answer is cut somewhere in the middle", cut=True), "MODEL_STREAM_CUT"),
    ],
    ids=["rate-limited", "overloaded", "server-error", "stream-cut"],
)
async def test_a_transient_api_failure_is_notified_and_the_same_step_is_retried(
    client: AcpTestClient, model: MockModelServer, workdir: Path, failure: Reply, code: str
) -> None:
    session_id = await start(client, workdir)
    model.push(failure, Reply(text="recovered"))
    answer = await prompt(client, session_id, "hello")
    assert answer["stopReason"] == "end_turn"
    # Text streamed before a cut stays shown, and the retried answer follows it.
    shown = client.texts(session_id).removesuffix("recovered")
    assert (failure.text or "").startswith(shown)
    assert bool(shown) is failure.cut
    [reported] = notified(client, "_acpd/error")
    status = failure.error.status if failure.error is not None else None
    assert (reported["code"], reported["data"]["status"], reported["data"]["attempt"]) == (code, status, 1)
    if failure.error is not None:
        assert reported["data"]["retryAfterSeconds"] == 0
    assert len(model.requests) == 2
    assert model.requests[1].body["messages"] == model.requests[0].body["messages"]


async def test_a_retry_after_is_waited_for_before_the_retry(
    client: AcpTestClient, model: MockModelServer, workdir: Path
) -> None:
    session_id = await start(client, workdir)
    model.push(Reply(error=ErrorReply(status=429, retry_after_seconds=0.5)), Reply(text="waited"))
    began = anyio.current_time()
    answer = await prompt(client, session_id, "hello")
    assert anyio.current_time() - began >= 0.5
    assert client.texts(session_id) == "waited"
    assert answer["stopReason"] == "end_turn"
    [reported] = notified(client, "_acpd/error")
    assert reported["data"]["retryAfterSeconds"] == 0.5


async def test_a_retry_after_over_a_minute_fails_the_prompt_at_once(
    client: AcpTestClient, model: MockModelServer, workdir: Path
) -> None:
    session_id = await start(client, workdir)
    model.push(Reply(error=ErrorReply(status=529, retry_after_seconds=120)))
    with anyio.fail_after(5):
        error = await failed_prompt(client, session_id, "hello")
    assert (error.data["code"], error.data["retryAfterSeconds"]) == ("MODEL_OVERLOADED", 120)
    assert len(model.requests) == 1


async def test_retries_run_out_and_the_prompt_gets_the_error_then_the_next_prompt_works(
    client: AcpTestClient, model: MockModelServer, workdir: Path
) -> None:
    session_id = await start(client, workdir)
    model.push(*(Reply(error=ErrorReply(status=429, message="slow down", retry_after_seconds=0)) for _ in range(4)))
    error = await failed_prompt(client, session_id, "the prompt that fails")
    assert error.message == "rate limited (429): slow down"
    assert (error.data["code"], error.data["status"]) == ("MODEL_RATE_LIMITED", 429)
    reported = notified(client, "_acpd/error")
    assert [(e["code"], e["data"]["attempt"]) for e in reported] == [("MODEL_RATE_LIMITED", n) for n in (1, 2, 3, 4)]
    assert len(model.requests) == 4  # the first call and three retries
    assert (await prompt(client, session_id, "mock:text=next"))["stopReason"] == "end_turn"
    assert client.texts(session_id) == "next"


async def test_a_turn_that_ends_in_an_api_error_still_counts_the_tokens_it_spent(
    client: AcpTestClient, manager: SessionManager, model: MockModelServer, workdir: Path
) -> None:
    session_id = await start(client, workdir, permissions="allow")
    rate_limited = Reply(error=ErrorReply(status=429, retry_after_seconds=0))
    model.push(Reply(tool=GLOB, usage=Usage(input_tokens=1_000, output_tokens=10)), *[rate_limited] * 4)
    error = await failed_prompt(client, session_id, "Look around")
    assert error.data["usage"]["totalTokens"] == 1_010  # the backend says what the turn spent
    async with client_of(manager) as http:
        totals = (await http.get(f"/v1/sessions/{session_id}")).json()["usage"]
    assert totals["cost"]["amount"] > 0  # the cost counts the spent call
    assert (totals.get("inputTokens"), totals.get("outputTokens")) == (1_000, 10)


async def test_a_model_that_keeps_calling_tools_is_stopped_at_max_steps(
    client: AcpTestClient, model: MockModelServer, workdir: Path
) -> None:
    session_id = await start(client, workdir, permissions="allow", maxSteps=2)
    model.push(*(Reply(tool=GLOB) for _ in range(6)))
    answer = await prompt(client, session_id, "Look around, forever")
    assert answer["stopReason"] == "max_turn_requests"
    [limit] = notified(client, "_acpd/limit_reached")
    assert (limit["limit"], limit["value"], limit["turn"]) == ("maxSteps", 2, 1)
    calls = client.updates(session_id, "tool_call")
    assert len(calls) == 3  # the one over the limit is where the turn stops
    assert len(model.requests) == 3
    for call in calls:  # every call the client saw start, it also saw end
        assert statuses(client, session_id, call["toolCallId"])[-1] in ("completed", "failed")


@pytest.mark.parametrize("mode", ["bypassPermissions", "default"])
async def test_the_tool_call_over_max_steps_never_starts_whether_asked_or_not(
    client: AcpTestClient, model: MockModelServer, workdir: Path, mode: str
) -> None:
    session_id = await start(client, workdir, maxSteps=1)  # "ask": the default mode asks the client
    with anyio.fail_after(5):
        await client.request("session/set_mode", {"sessionId": session_id, "modeId": mode})
    writes = [ToolCall(name="Write", input={"path": f"{name}.txt", "content": name}) for name in ("one", "two")]
    model.push(*(Reply(tool=write) for write in writes))
    answer = await prompt(client, session_id, "Write two files")
    assert answer["stopReason"] == "max_turn_requests"
    assert (workdir / "one.txt").exists()
    assert not (workdir / "two.txt").exists()
    first, over = client.updates(session_id, "tool_call")
    assert statuses(client, session_id, over["toolCallId"]) == ["failed"]  # never in_progress
    asked = [request["toolCall"]["toolCallId"] for request in client.permission_requests]
    assert asked == ([] if mode == "bypassPermissions" else [first["toolCallId"]])
    assert len(model.requests) == 2  # and no model call after the limit


async def test_plan_mode_set_over_acp_refuses_changes_without_asking(
    client: AcpTestClient, model: MockModelServer, workdir: Path
) -> None:
    session_id = await start(client, workdir)
    with anyio.fail_after(5):
        await client.request("session/set_mode", {"sessionId": session_id, "modeId": "plan"})
    model.push(Reply(tool=ToolCall(name="Write", input={"path": "no.txt", "content": "x"})))
    answer = await prompt(client, session_id, "Write it")
    assert answer["stopReason"] == "end_turn"
    assert "not allowed in plan mode" in client.texts(session_id)
    assert client.permission_requests == []
    assert not (workdir / "no.txt").exists()
    assert [u["currentModeId"] for u in client.updates(session_id, "current_mode_update")] == ["plan"]


async def test_the_effort_option_sets_a_thinking_budget_and_thinking_reaches_the_client_as_thought(
    client: AcpTestClient, model: MockModelServer, workdir: Path
) -> None:
    session_id = await start(client, workdir)
    params = {"sessionId": session_id, "configId": "effort", "value": "high"}
    with anyio.fail_after(5):
        options = (await client.request("session/set_config_option", params))["configOptions"]
    [effort] = [o for o in options if o["id"] == "effort"]
    assert (effort["category"], effort["currentValue"]) == ("thought_level", "high")
    await prompt(client, session_id, "mock:thinking=let me see\nmock:text=done")
    assert model.requests[-1].body["thinking"] == {"type": "enabled", "budget_tokens": 16_384}
    thoughts = client.updates(session_id, "agent_thought_chunk")
    assert "".join(u["content"]["text"] for u in thoughts) == "let me see"
    assert client.texts(session_id) == "done"
