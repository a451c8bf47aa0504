"""The mock agent as a client sees it: a subprocess spoken to in raw NDJSON (deliberately not through acpd.rpc)."""

from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from anyio.abc import Process

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

Message = dict[str, Any]
AGENT_COMMAND = [sys.executable, "-m", "acpd.testing.mock_agent"]


class RawClient:
    """The client side of one mock agent process: NDJSON lines in and out, nothing more."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self._buffer = bytearray()
        self._next_id = 1

    async def send(self, message: Message) -> None:
        await self.send_line(orjson.dumps(message))

    async def send_line(self, line: bytes) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send(line + b"\n")

    async def receive_line(self) -> bytes:
        assert self.process.stdout is not None
        while (end := self._buffer.find(b"\n")) < 0:
            self._buffer += await self.process.stdout.receive()
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line

    async def receive(self) -> Message:
        message = orjson.loads(await self.receive_line())
        assert isinstance(message, dict)
        return message

    async def request(self, method: str, params: Message) -> int:
        request_id = self._next_id
        self._next_id += 1
        await self.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        return request_id

    async def until_response(self, request_id: int) -> tuple[list[Message], Message]:
        """Everything the agent sends before its answer to ``request_id``, and that answer."""
        before: list[Message] = []
        while True:
            message = await self.receive()
            if message.get("id") == request_id and "method" not in message:
                return before, message
            before.append(message)

    async def call(self, method: str, params: Message) -> tuple[list[Message], Message]:
        return await self.until_response(await self.request(method, params))

    async def until_request(self, method: str) -> tuple[list[Message], Message]:
        """Everything the agent sends before its own request ``method``, and that request."""
        before: list[Message] = []
        while (message := await self.receive()).get("method") != method or "id" not in message:
            before.append(message)
        return before, message

    async def reply(self, request: Message, result: Message) -> None:
        await self.send({"jsonrpc": "2.0", "id": request["id"], "result": result})

    async def start_session(self, cwd: str = "/") -> str:
        await self.call("initialize", {"protocolVersion": 1, "clientCapabilities": {}})
        _, response = await self.call("session/new", {"cwd": cwd, "mcpServers": []})
        session_id = response["result"]["sessionId"]
        assert isinstance(session_id, str)
        return session_id

    async def prompt(self, session_id: str, text: str) -> int:
        return await self.request(
            "session/prompt", {"sessionId": session_id, "prompt": [{"type": "text", "text": text}]}
        )


@asynccontextmanager
async def open_agent(*args: str) -> AsyncIterator[RawClient]:
    async with await anyio.open_process([*AGENT_COMMAND, *args], stderr=subprocess.DEVNULL) as process:
        try:
            yield RawClient(process)
        finally:
            assert process.stdin is not None
            await process.stdin.aclose()  # end of input is how a client asks the agent to exit
            with anyio.fail_after(5):
                await process.wait()


def updates(messages: list[Message]) -> list[Message]:
    return [m["params"]["update"] for m in messages if m.get("method") == "session/update"]


def texts(messages: list[Message], kind: str = "agent_message_chunk") -> list[str]:
    return [u["content"]["text"] for u in updates(messages) if u["sessionUpdate"] == kind]


async def test_a_text_only_mock_advertises_no_attachments() -> None:
    with anyio.fail_after(5):
        async with open_agent("--text-only") as client:
            _, init = await client.call("initialize", {"protocolVersion": 1})
    offered = init["result"]["agentCapabilities"]["promptCapabilities"]
    assert offered == {"embeddedContext": False, "image": False, "audio": False}


async def test_initialize_advertises_capabilities_and_session_new_returns_modes_and_config_options() -> None:
    with anyio.fail_after(5):
        async with open_agent() as client:
            _, init = await client.call("initialize", {"protocolVersion": 1})
            _, new = await client.call("session/new", {"cwd": "/project", "mcpServers": []})

    assert init["result"]["protocolVersion"] == 1
    assert init["result"]["agentInfo"]["name"] == "acpd-mock"
    assert init["result"]["authMethods"] == []
    capabilities = init["result"]["agentCapabilities"]
    assert capabilities["loadSession"] is True
    assert capabilities["promptCapabilities"] == {"embeddedContext": True, "image": True, "audio": True}
    assert capabilities["sessionCapabilities"] == {"resume": {}, "close": {}, "list": {}}
    result = new["result"]
    assert result["sessionId"].startswith("mock-") and len(result["sessionId"]) == len("mock-") + 12
    assert result["modes"]["currentModeId"] == "default"
    assert [mode["id"] for mode in result["modes"]["availableModes"]] == ["default", "plan"]
    options = {option["id"]: option for option in result["configOptions"]}
    assert {o: options[o]["category"] for o in options} == {"mode": "mode", "model": "model", "effort": "thought_level"}
    assert [choice["value"] for choice in options["model"]["options"]] == ["mock-small", "mock-large"]
    assert options["effort"]["type"] == "select" and options["effort"]["currentValue"] == "medium"


async def test_disabled_features_are_neither_advertised_nor_served() -> None:
    with anyio.fail_after(5):
        async with open_agent("--no-load", "--no-resume", "--no-list", "--name", "other") as client:
            _, init = await client.call("initialize", {"protocolVersion": 1})
            _, load = await client.call("session/load", {"sessionId": "mock-x", "cwd": "/", "mcpServers": []})
            _, listing = await client.call("session/list", {})

    assert init["result"]["agentInfo"]["name"] == "other"
    assert init["result"]["agentCapabilities"]["loadSession"] is False
    assert init["result"]["agentCapabilities"]["sessionCapabilities"] == {"close": {}}
    assert load["error"]["code"] == -32601
    assert listing["error"]["code"] == -32601


async def test_a_prompt_that_is_not_a_script_is_echoed_as_one_chunk() -> None:
    with anyio.fail_after(5):
        async with open_agent() as client:
            session_id = await client.start_session()
            before, response = await client.until_response(await client.prompt(session_id, "hello there\ntext x"))

    assert texts(before) == ["Echo: hello there\ntext x"]
    assert response["result"] == {"stopReason": "end_turn"}


async def test_chunks_arrive_complete_and_in_order() -> None:
    with anyio.fail_after(5):
        async with open_agent() as client:
            session_id = await client.start_session()
            before, response = await client.until_response(await client.prompt(session_id, "chunks 5000\nchunks 3 10"))

    chunks = texts(before)
    assert chunks[:5000] == [f"c{index} " for index in range(5000)]
    assert chunks[5000:] == ["c0 xxxxxxx", "c1 xxxxxxx", "c2 xxxxxxx"]
    assert all(m["params"]["sessionId"] == session_id for m in before)
    assert response["result"]["stopReason"] == "end_turn"


async def test_a_tool_call_goes_pending_in_progress_completed() -> None:
    with anyio.fail_after(5):
        async with open_agent() as client:
            session_id = await client.start_session(cwd="/project")
            before, _ = await client.until_response(
                await client.prompt(session_id, "tool read Read the file\ntool edit")
            )

    first, progress, done, second, *_ = updates(before)
    assert first["sessionUpdate"] == "tool_call"
    assert first["toolCallId"] == "call_1" and second["toolCallId"] == "call_2"
    assert (first["status"], first["kind"], first["title"]) == ("pending", "read", "Read the file")
    assert first["locations"] == [{"path": "/project/mock.txt", "line": 1}]
    assert first["rawInput"] == {"path": "/project/mock.txt", "kind": "read"}
    assert (progress["sessionUpdate"], progress["status"]) == ("tool_call_update", "in_progress")
    assert done["status"] == "completed" and done["rawOutput"] == {"ok": True}
    assert done["content"][0]["content"]["type"] == "text"


@pytest.mark.parametrize(("option", "statuses"), [("allow", ["in_progress", "completed"]), ("reject", ["failed"])])
async def test_a_permission_reply_decides_the_tool_call(option: str, statuses: list[str]) -> None:
    with anyio.fail_after(5):
        async with open_agent() as client:
            session_id = await client.start_session()
            prompt_id = await client.prompt(session_id, "permission execute")
            before, request = await client.until_request("session/request_permission")
            await client.reply(request, {"outcome": {"outcome": "selected", "optionId": option}})
            after, response = await client.until_response(prompt_id)

    assert updates(before)[0]["status"] == "pending"
    params = request["params"]
    assert params["sessionId"] == session_id
    assert params["toolCall"]["toolCallId"] == updates(before)[0]["toolCallId"]
    assert params["toolCall"]["status"] == "pending" and params["toolCall"]["kind"] == "execute"
    assert [o["optionId"] for o in params["options"]] == ["allow", "always", "reject"]
    assert [u["status"] for u in updates(after) if u["sessionUpdate"] == "tool_call_update"] == statuses
    assert texts(after) == [f"permission: {option}"]
    assert response["result"]["stopReason"] == "end_turn"


async def test_a_cancelled_permission_outcome_ends_the_turn_as_cancelled() -> None:
    with anyio.fail_after(5):
        async with open_agent() as client:
            session_id = await client.start_session()
            prompt_id = await client.prompt(session_id, "permission\ntext never")
            _, request = await client.until_request("session/request_permission")
            await client.reply(request, {"outcome": {"outcome": "cancelled"}})
            after, response = await client.until_response(prompt_id)

    assert texts(after) == []
    assert response["result"]["stopReason"] == "cancelled"


async def test_session_cancel_while_permission_is_pending_answers_cancelled_and_withdraws_the_request() -> None:
    with anyio.fail_after(5):
        async with open_agent() as client:
            session_id = await client.start_session()
            prompt_id = await client.prompt(session_id, "permission")
            _, request = await client.until_request("session/request_permission")
            await client.send({"jsonrpc": "2.0", "method": "session/cancel", "params": {"sessionId": session_id}})
            after, response = await client.until_response(prompt_id)
            await client.reply(request, {"outcome": {"outcome": "cancelled"}})  # late, as ACP clients must; ignored
            _, still_alive = await client.call("session/list", {})

    assert {"jsonrpc": "2.0", "method": "$/cancel_request", "params": {"requestId": request["id"]}} in after
    assert response["result"]["stopReason"] == "cancelled"
    assert "result" in still_alive


async def test_session_cancel_stops_a_sleeping_turn_promptly() -> None:
    with anyio.fail_after(5):  # the turn would sleep 60 s
        async with open_agent() as client:
            session_id = await client.start_session()
            prompt_id = await client.prompt(session_id, "text started\nsleep 60\ntext never")
            first = await client.receive()
            await client.send({"jsonrpc": "2.0", "method": "session/cancel", "params": {"sessionId": session_id}})
            after, response = await client.until_response(prompt_id)

    assert first["params"]["update"]["content"]["text"] == "started"
    assert texts(after) == []
    assert response["result"] == {"stopReason": "cancelled"}


async def test_cancel_request_for_a_prompt_id_cancels_that_prompt() -> None:
    with anyio.fail_after(5):
        async with open_agent() as client:
            session_id = await client.start_session()
            prompt_id = await client.prompt(session_id, "sleep 60")
            await client.send({"jsonrpc": "2.0", "method": "$/cancel_request", "params": {"requestId": prompt_id}})
            _, response = await client.until_response(prompt_id)

    assert response["result"] == {"stopReason": "cancelled"}


async def test_end_of_input_answers_running_turns_as_cancelled_and_exits_cleanly() -> None:
    with anyio.fail_after(5):
        async with await anyio.open_process(AGENT_COMMAND, stderr=subprocess.DEVNULL) as process:
            client = RawClient(process)
            session_id = await client.start_session()
            prompt_id = await client.prompt(session_id, "sleep 60")
            assert process.stdin is not None
            await process.stdin.aclose()
            _, response = await client.until_response(prompt_id)
            status = await process.wait()

    assert response["result"] == {"stopReason": "cancelled"}
    assert status == 0


async def test_the_error_command_answers_the_prompt_with_that_error_after_earlier_updates() -> None:
    with anyio.fail_after(5):
        async with open_agent() as client:
            session_id = await client.start_session()
            before, response = await client.until_response(await client.prompt(session_id, "text a\nerror -32042 boom"))
            _, default = await client.call(
                "session/prompt", {"sessionId": session_id, "prompt": [{"type": "text", "text": "error"}]}
            )

    assert texts(before) == ["a"]
    assert response["error"] == {"code": -32042, "message": "boom"}
    assert default["error"]["code"] == -32603


async def test_crash_exits_mid_turn_with_the_given_status_after_flushing() -> None:
    with anyio.fail_after(5):
        async with await anyio.open_process(AGENT_COMMAND, stderr=subprocess.DEVNULL) as process:
            client = RawClient(process)
            session_id = await client.start_session()
            await client.prompt(session_id, "text last words\ncrash 7\ntext never")
            last = await client.receive()
            status = await process.wait()

    assert last["params"]["update"]["content"]["text"] == "last words"
    assert status == 7


async def test_garbage_writes_one_non_json_line_and_the_turn_goes_on() -> None:
    with anyio.fail_after(5):
        async with open_agent() as client:
            session_id = await client.start_session()
            prompt_id = await client.prompt(session_id, "garbage\ntext after")
            line = await client.receive_line()
            after, response = await client.until_response(prompt_id)

    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(line)
    assert texts(after) == ["after"]
    assert response["result"]["stopReason"] == "end_turn"


async def test_read_asks_the_client_for_the_file_and_emits_its_content(tmp_path: Path) -> None:
    with anyio.fail_after(5):
        async with open_agent() as client:
            session_id = await client.start_session(cwd=str(tmp_path))
            prompt_id = await client.prompt(session_id, "read notes.txt\nread /missing")
            _, first = await client.until_request("fs/read_text_file")
            await client.reply(first, {"content": "hello from the client"})
            between, second = await client.until_request("fs/read_text_file")
            error = {"code": -32002, "message": "Resource not found"}
            await client.send({"jsonrpc": "2.0", "id": second["id"], "error": error})
            after, response = await client.until_response(prompt_id)

    assert first["params"] == {"sessionId": session_id, "path": str(tmp_path / "notes.txt")}
    assert second["params"]["path"] == "/missing"
    assert texts(between) == ["hello from the client"]
    assert texts(after) == ["read error: Resource not found"]
    assert response["result"]["stopReason"] == "end_turn"


async def test_run_drives_the_client_terminal_methods_in_order() -> None:
    with anyio.fail_after(5):
        async with open_agent() as client:
            session_id = await client.start_session()
            prompt_id = await client.prompt(session_id, "run echo hi")
            _, asked = await client.until_request("session/request_permission")
            await client.reply(asked, {"outcome": {"outcome": "selected", "optionId": "allow"}})
            replies: dict[str, Message] = {
                "terminal/create": {"terminalId": "t1"},
                "terminal/wait_for_exit": {"exitCode": 0},
                "terminal/output": {"output": "hi\n", "truncated": False},
                "terminal/release": {},
            }
            seen: list[Message] = []
            for method, result in replies.items():
                _, request = await client.until_request(method)
                seen.append(request["params"])
                await client.reply(request, result)
            after, _ = await client.until_response(prompt_id)

    assert seen[0] == {"sessionId": session_id, "command": "sh", "args": ["-c", "echo hi"]}
    assert all(params == {"sessionId": session_id, "terminalId": "t1"} for params in seen[1:])
    assert texts(after) == ["hi\n"]


async def test_run_asks_permission_for_the_command_before_it_starts_a_terminal() -> None:
    with anyio.fail_after(5):
        async with open_agent() as client:
            session_id = await client.start_session()
            prompt_id = await client.prompt(session_id, "run rm -rf build")
            before, asked = await client.until_request("session/request_permission")
            await client.reply(asked, {"outcome": {"outcome": "selected", "optionId": "reject"}})
            after, response = await client.until_response(prompt_id)

    assert not [m for m in before + after if str(m.get("method", "")).startswith("terminal/")]
    tool_call = asked["params"]["toolCall"]
    assert tool_call["kind"] == "execute" and tool_call["rawInput"] == {"command": "rm -rf build"}
    assert [u["status"] for u in updates(after) if u["sessionUpdate"] == "tool_call_update"] == ["failed"]
    assert texts(after) == ["run refused: reject"]
    assert response["result"]["stopReason"] == "end_turn"


async def test_set_mode_and_set_config_option_change_settings_and_announce_them() -> None:
    with anyio.fail_after(5):
        async with open_agent() as client:
            session_id = await client.start_session()
            mode_updates, mode = await client.call("session/set_mode", {"sessionId": session_id, "modeId": "plan"})
            params = {"sessionId": session_id, "configId": "model", "value": "mock-large"}
            model_updates, model = await client.call("session/set_config_option", params)
            _, unknown_option = await client.call("session/set_config_option", {**params, "configId": "colour"})
            _, unknown_value = await client.call("session/set_config_option", {**params, "value": "mock-huge"})
            _, legacy = await client.call("session/set_model", {"sessionId": session_id, "modelId": "mock-small"})

    assert mode["result"] == {}
    assert updates(mode_updates)[0] == {"sessionUpdate": "current_mode_update", "currentModeId": "plan"}
    current = {option["id"]: option["currentValue"] for option in model["result"]["configOptions"]}
    assert current == {"mode": "plan", "model": "mock-large", "effort": "medium"}
    assert updates(model_updates) == [
        {"sessionUpdate": "config_option_update", "configOptions": model["result"]["configOptions"]}
    ]
    assert unknown_option["error"]["code"] == -32602
    assert unknown_value["error"]["code"] == -32602
    assert legacy["result"] == {}


async def test_load_in_a_new_process_replays_history_from_the_state_dir(tmp_path: Path) -> None:
    with anyio.fail_after(5):
        async with open_agent("--state-dir", str(tmp_path)) as first:
            session_id = await first.start_session(cwd="/a")
            await first.until_response(await first.prompt(session_id, "text hello\ntool read\ntitle Greeting"))
            await first.call(
                "session/set_config_option", {"sessionId": session_id, "configId": "effort", "value": "high"}
            )
        async with open_agent("--state-dir", str(tmp_path)) as second:
            await second.call("initialize", {"protocolVersion": 1})
            _, listing = await second.call("session/list", {})
            _, unknown = await second.call("session/load", {"sessionId": "mock-nope", "cwd": "/b", "mcpServers": []})
            load = {"sessionId": session_id, "cwd": "/b", "mcpServers": []}
            replay, loaded = await second.call("session/load", load)
            after, response = await second.until_response(await second.prompt(session_id, "tool edit"))

    assert [(s["sessionId"], s["cwd"], s.get("title")) for s in listing["result"]["sessions"]] == [
        (session_id, "/a", "Greeting")
    ]
    assert unknown["error"]["code"] == -32002
    kinds = [u["sessionUpdate"] for u in updates(replay)]
    assert kinds == [
        "user_message_chunk",
        "agent_message_chunk",
        "tool_call",
        "tool_call_update",
        "tool_call_update",
        "session_info_update",
    ]
    assert updates(replay)[0]["content"] == {"type": "text", "text": "text hello\ntool read\ntitle Greeting"}
    assert texts(replay) == ["hello"]
    current = {option["id"]: option["currentValue"] for option in loaded["result"]["configOptions"]}
    assert current["effort"] == "high"
    assert updates(after)[0]["toolCallId"] == "call_2"  # ids stay unique across processes
    assert updates(after)[0]["locations"][0]["path"] == "/b/mock.txt"
    assert response["result"]["stopReason"] == "end_turn"


async def test_resume_restores_a_closed_session_without_replay() -> None:
    with anyio.fail_after(5):
        async with open_agent() as client:
            session_id = await client.start_session()
            await client.until_response(await client.prompt(session_id, "text one"))
            _, closed = await client.call("session/close", {"sessionId": session_id})
            _, refused = await client.until_response(await client.prompt(session_id, "text two"))
            replay, resumed = await client.call("session/resume", {"sessionId": session_id, "cwd": "/"})
            _, again = await client.until_response(await client.prompt(session_id, "text three"))

    assert closed["result"] == {}
    assert refused["error"]["code"] == -32002
    assert replay == []
    assert resumed["result"]["modes"]["currentModeId"] == "default"
    assert again["result"]["stopReason"] == "end_turn"


async def test_usage_is_reported_as_updates_and_summed_in_the_prompt_response() -> None:
    with anyio.fail_after(5):
        async with open_agent() as client:
            session_id = await client.start_session()
            script = "usage 10 5 0.25\nusage 3 2\nstop max_tokens"
            before, response = await client.until_response(await client.prompt(session_id, script))

    assert updates(before) == [
        {"sessionUpdate": "usage_update", "used": 15, "size": 200000, "cost": {"amount": 0.25, "currency": "USD"}},
        {"sessionUpdate": "usage_update", "used": 5, "size": 200000},
    ]
    assert response["result"] == {
        "stopReason": "max_tokens",
        "usage": {"inputTokens": 13, "outputTokens": 7, "totalTokens": 20},
    }


async def test_meta_and_unknown_update_variants_are_emitted_verbatim() -> None:
    with anyio.fail_after(5):
        async with open_agent() as client:
            session_id = await client.start_session()
            before, _ = await client.until_response(await client.prompt(session_id, "meta"))

    chunk, custom = before
    assert chunk["params"]["_meta"] == {"mock": {"x": 1}}
    assert chunk["params"]["update"]["_meta"] == {"mock": {"x": 1}}
    assert chunk["params"]["update"]["content"]["_meta"] == {"mock": {"x": 1}}
    assert custom["params"]["update"] == {"sessionUpdate": "_mock/custom", "value": 1}


async def test_prompts_of_one_session_run_one_at_a_time_in_order() -> None:
    with anyio.fail_after(5):
        async with open_agent() as client:
            session_id = await client.start_session()
            first = await client.prompt(session_id, "sleep 0.2\ntext first")
            second = await client.prompt(session_id, "text second")
            before, response = await client.until_response(second)

    assert texts(before) == ["first", "second"]
    assert before[1]["id"] == first
    assert response["result"]["stopReason"] == "end_turn"


async def test_bad_input_gets_json_rpc_errors_and_never_stops_the_agent() -> None:
    with anyio.fail_after(5):
        async with open_agent() as client:
            session_id = await client.start_session()
            await client.send_line(b"{not json")
            parse_error = await client.receive()
            await client.send_line(b"[1, 2]")
            not_an_object = await client.receive()
            await client.send({"jsonrpc": "2.0", "id": 9, "method": 5})
            bad_method = await client.receive()
            await client.send({"jsonrpc": "2.0", "method": "_mock/unknown_notification", "params": {}})
            _, unknown_method = await client.call("_mock/unknown", {})
            _, bad_script = await client.call(
                "session/prompt", {"sessionId": session_id, "prompt": [{"type": "text", "text": "text ok\nchunks x"}]}
            )
            _, no_session = await client.call("session/prompt", {"sessionId": "mock-none", "prompt": []})
            _, alive = await client.until_response(await client.prompt(session_id, "text still here"))

    assert parse_error["error"]["code"] == -32700 and parse_error["id"] is None
    assert not_an_object["error"]["code"] == -32600
    assert bad_method["error"]["code"] == -32600 and bad_method["id"] == 9
    assert unknown_method["error"]["code"] == -32601
    assert bad_script["error"]["code"] == -32602 and "line 2" in bad_script["error"]["message"]
    assert no_session["error"]["code"] == -32002
    assert alive["result"]["stopReason"] == "end_turn"


def test_the_mock_agent_imports_only_the_stdlib_and_orjson() -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import acpd.testing.mock_agent\n"
        "new = set(sys.modules) - before\n"
        "third = {m.split('.')[0] for m in new} - set(sys.stdlib_module_names) - {'orjson', 'acpd'}\n"
        "ours = {m for m in new if m.startswith('acpd.') and not m.startswith('acpd.testing')}\n"
        "print(sorted(third | ours))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)

    assert result.stdout.strip() == "[]"


@pytest.mark.usefixtures("open_umask")
async def test_the_state_dir_and_its_session_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    state_dir = tmp_path / "mock-agent"
    with anyio.fail_after(5):
        async with open_agent("--state-dir", str(state_dir)) as agent:
            session_id = await agent.start_session()
            await agent.until_response(await agent.prompt(session_id, "text a private prompt"))
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert [stat.S_IMODE(p.stat().st_mode) for p in state_dir.iterdir()] == [0o600]


async def test_a_readable_session_file_an_older_version_left_is_tightened(tmp_path: Path) -> None:
    state_dir = tmp_path / "mock-agent"
    state_dir.mkdir()
    old = state_dir / "mock-0123456789ab.jsonl"
    old.write_text("")
    old.chmod(0o644)
    with anyio.fail_after(5):
        async with open_agent("--state-dir", str(state_dir)) as agent:
            await agent.start_session()
    assert stat.S_IMODE(old.stat().st_mode) == 0o600


async def test_the_hostile_command_sends_script_payloads_in_every_place_a_client_shows() -> None:
    with anyio.fail_after(5):
        async with open_agent() as client:
            session_id = await client.start_session()
            updates, response = await client.until_response(await client.prompt(session_id, "hostile"))

    kinds = [u["params"]["update"]["sessionUpdate"] for u in updates]
    assert kinds == ["agent_message_chunk", "agent_thought_chunk", "plan", "tool_call"]
    message = updates[0]["params"]["update"]["content"]["text"]
    assert "<script>window.__acpdPwned=1</script>" in message
    assert "](javascript:window.__acpdPwned=1)" in message
    diff = updates[3]["params"]["update"]["content"][0]
    assert diff["type"] == "diff"
    assert "onerror" in diff["newText"]
    assert response["result"]["stopReason"] == "end_turn"
