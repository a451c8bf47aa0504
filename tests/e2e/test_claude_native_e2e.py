"""claude-native end to end: a real daemon process and acpd's mock model server, over REST and over
ACP (WebSocket), with a restart in the middle of the conversation, and a daemon killed in the
middle of a turn."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import connect

from acpd.adapters.claude_native.history import TURN_STOPPED
from acpd.protocol import jsonio
from acpd.testing.daemon import running_daemon
from acpd.testing.model_server import Reply, ToolCall, serve_mock_model
from tests.e2e.sse import sse_events
from tests.processes import cmdlines, pidfds, wait_all_ended

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def test_over_acp_a_permission_is_answered_a_file_written_and_after_a_restart_the_talk_goes_on(
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    async with serve_mock_model() as model:
        args = ("--model-url", model.url)
        model.push(Reply(tool=ToolCall(name="Write", input={"path": "plan.md", "content": "# Plan\n"})))
        async with running_daemon(tmp_path, *args) as daemon:
            url = daemon.url.replace("http://", "ws://") + "/v1/rpc?agent=claude-native"
            with anyio.fail_after(30):
                async with connect(url, additional_headers=daemon.headers) as ws:
                    editor = Editor(ws)
                    await editor.call("initialize", {"protocolVersion": 1, "clientCapabilities": {}})
                    session_id = (await editor.call("session/new", {"cwd": str(work), "mcpServers": []}))["sessionId"]
                    result = await editor.call("session/prompt", {"sessionId": session_id, "prompt": text("Plan it")})
        assert result["stopReason"] == "end_turn"
        assert editor.permissions == 1
        assert (work / "plan.md").read_text() == "# Plan\n"
        async with (
            running_daemon(tmp_path, *args) as daemon,
            daemon.client() as http,
        ):
            with anyio.fail_after(30):
                answer = (
                    await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "mock:text=go on"})
                ).json()
        assert answer["text"] == "go on"
        messages = model.requests[-1].body["messages"]
        assert messages[0]["content"][0]["text"] == "Plan it"
        assert any(b.get("type") == "tool_result" for m in messages for b in m["content"] if isinstance(b, dict))


async def test_a_daemon_killed_in_the_middle_of_a_tool_leaves_no_command_and_the_conversation_goes_on(
    tmp_path: Path,
) -> None:
    marker = f"acpd-native-{uuid.uuid4().hex}"
    command = f"python3 -c 'import time; print(\"started\", flush=True); time.sleep(60)' {marker}"
    async with serve_mock_model() as model:
        args = ("--model-url", model.url)
        model.push(Reply(text="Running it.", tool=ToolCall(name="Bash", input={"command": command})))
        async with running_daemon(tmp_path, *args) as daemon, daemon.client() as http:
            body = {"agent": "claude-native", "cwd": str(tmp_path), "policy": {"permissions": "allow"}}
            session_id = (await http.post("/v1/sessions", json=body)).json()["id"]
            with anyio.fail_after(30):
                headers = {"accept": "text/event-stream"}
                request = {"prompt": "Run the long command"}
                async with http.stream("POST", f"/v1/sessions/{session_id}/prompt", json=request, headers=headers) as r:
                    async for event in sse_events(r):
                        if "started" in str(event["payload"].get("params", {}).get("update", {}).get("content")):
                            break
                running = [pid for pid, cmdline in cmdlines() if marker in cmdline]
                assert running, "the command runs"
                with pidfds(running, missing_ok=True) as fds:
                    await daemon.kill()
                    await wait_all_ended(fds)
        async with running_daemon(tmp_path, *args) as daemon, daemon.client() as http:
            with anyio.fail_after(30):
                answer = (await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "mock:text=ok"})).json()
                events = (await http.get(f"/v1/sessions/{session_id}/events")).json()["items"]
    assert answer["text"] == "ok"
    assert any(e["payload"].get("method") == "_acpd/turn_interrupted" for e in events)
    messages = model.requests[-1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[1]["content"][-1]["name"] == "Bash"
    [interrupted] = messages[2]["content"]
    assert (interrupted["type"], interrupted["is_error"]) == ("tool_result", True)
    assert messages[3]["content"] == [{"type": "text", "text": TURN_STOPPED}]  # the tool loop closed
    assert messages[4]["content"] == [{"type": "text", "text": "mock:text=ok"}]


def text(value: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": value}]


class Editor:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.permissions = 0
        self.next_id = 0

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        self.next_id += 1
        await self.ws.send(jsonio.dumps_str({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}))
        while True:
            message = jsonio.loads(await self.ws.recv())
            assert isinstance(message, dict)
            if message.get("method") == "session/request_permission":
                self.permissions += 1
                outcome = {"outcome": {"outcome": "selected", "optionId": "allow"}}
                await self.ws.send(jsonio.dumps_str({"jsonrpc": "2.0", "id": message["id"], "result": outcome}))
            elif message.get("id") == self.next_id and "method" not in message:
                assert "error" not in message, message
                return message["result"]
