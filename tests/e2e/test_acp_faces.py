"""End to end: one session watched by an editor on ``acpd acp`` (stdio, relayed to the daemon) and
an orchestrator on ACP-over-HTTP; WebSocket at /v1/rpc; SSE replay by Last-Event-ID."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from websockets.asyncio.client import connect

from acpd.protocol import jsonio
from acpd.protocol.jsonio import JsonObject, JsonValue
from acpd.rpc.peer import JsonRpcPeer
from acpd.testing.daemon import daemon_env, running_daemon
from acpd.transports.process import ProcessSpec, open_process_transport

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


def rpc(request_id: int | None, method: str, params: JsonObject) -> JsonObject:
    message: JsonObject = {"jsonrpc": "2.0", "method": method, "params": params}
    if request_id is not None:
        message["id"] = request_id
    return message


class Editor:
    """An ACP client on stdio whose human never answers permission requests."""

    def __init__(self) -> None:
        self.updates: list[JsonObject] = []
        self.withdrawn = anyio.Event()

    async def on_notification(self, method: str, params: JsonValue, message: JsonObject) -> None:
        if method == "session/update" and isinstance(params, dict):
            self.updates.append(params["update"])

    async def on_request(self, method: str, params: JsonValue, message: JsonObject) -> JsonValue:
        try:
            await anyio.sleep_forever()
        finally:
            self.withdrawn.set()  # only a $/cancel_request from acpd gets here
        return None


def _chunk_text(message: JsonObject) -> object:
    update = message.get("params", {}).get("update", {})
    content = update.get("content") if update.get("sessionUpdate") == "agent_message_chunk" else None
    return content.get("text") if isinstance(content, dict) else None


async def sse_messages(response: httpx.Response) -> Any:
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            yield jsonio.loads(line[6:])


async def test_an_editor_on_stdio_and_an_orchestrator_on_http_share_a_session_and_its_permissions(
    tmp_path: Path,
) -> None:
    editor = Editor()
    async with running_daemon(tmp_path) as daemon, daemon.client() as http:
        spec = ProcessSpec(sys.executable, ("-m", "acpd", "acp", "--url", daemon.url), env=daemon_env(tmp_path))
        async with open_process_transport(spec) as transport, anyio.create_task_group() as tg:
            peer = JsonRpcPeer(transport, on_request=editor.on_request, on_notification=editor.on_notification)
            tg.start_soon(peer.run)
            with anyio.fail_after(30):
                await peer.request("initialize", {"protocolVersion": 1, "clientCapabilities": {}})
                sid = (await peer.request("session/new", {"cwd": str(tmp_path), "mcpServers": []}))["sessionId"]

                await http.post("/v1/acp/orchestrator?agent=mock", json=rpc(1, "initialize", {"protocolVersion": 1}))
                await http.post(
                    "/v1/acp/orchestrator", json=rpc(2, "session/resume", {"sessionId": sid, "cwd": str(tmp_path)})
                )
                seen: list[JsonObject] = []
                async with http.stream("GET", "/v1/acp/orchestrator") as stream:
                    answer: dict[str, Any] = {}
                    answered = anyio.Event()

                    async def prompt() -> None:
                        text = "text one\npermission edit\ntext two"
                        prompt_params = {"sessionId": sid, "prompt": [{"type": "text", "text": text}]}
                        answer.update(await peer.request("session/prompt", prompt_params))
                        answered.set()

                    tg.start_soon(prompt)
                    async for message in sse_messages(stream):
                        seen.append(message)
                        if message.get("method") == "session/request_permission":
                            reply = {"outcome": {"outcome": "selected", "optionId": "allow"}}
                            response = await http.post(
                                "/v1/acp/orchestrator", json={"jsonrpc": "2.0", "id": message["id"], "result": reply}
                            )
                            assert response.status_code == 202
                        if _chunk_text(message) == "two":
                            break
                await editor.withdrawn.wait()
                await answered.wait()
            await peer.aclose()
    assert answer["stopReason"] == "end_turn"
    orchestrator = [m["params"]["update"] for m in seen if m.get("method") == "session/update"]
    # the orchestrator also sees the editor's prompt; otherwise both saw the same, in the same order
    assert [u for u in orchestrator if u["sessionUpdate"] != "user_message_chunk"] == editor.updates
    assert orchestrator[0]["sessionUpdate"] == "user_message_chunk"
    editor_texts = [_chunk_text({"params": {"update": u}}) for u in editor.updates]
    assert editor_texts.count("permission: allow") == 1


async def test_a_websocket_client_runs_a_session_on_v1_rpc(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon:
        url = daemon.url.replace("http://", "ws://") + "/v1/rpc?agent=mock"
        received: list[JsonObject] = []
        with anyio.fail_after(30):
            async with connect(url, additional_headers=daemon.headers) as ws:

                async def call(request_id: int, method: str, params: JsonObject) -> JsonObject:
                    await ws.send(jsonio.dumps_str(rpc(request_id, method, params)))
                    while True:
                        message: JsonObject = jsonio.loads(await ws.recv())
                        received.append(message)
                        if message.get("id") == request_id and "method" not in message:
                            return message

                await call(1, "initialize", {"protocolVersion": 1})
                sid = (await call(2, "session/new", {"cwd": str(tmp_path), "mcpServers": []}))["result"]["sessionId"]
                done = await call(
                    3, "session/prompt", {"sessionId": sid, "prompt": [{"type": "text", "text": "text hi"}]}
                )
                bad = await call(4, "session/nope", {})
    assert done["result"] == {"stopReason": "end_turn"}
    chunks = [m for m in received if m.get("method") == "session/update"]
    assert chunks[-1]["params"]["update"]["content"]["text"] == "hi"
    assert bad["error"]["code"] == -32601


async def test_a_loopback_websocket_client_offering_deflate_gets_a_burst_uncompressed_whole_and_in_order(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path) as daemon:
        url = daemon.url.replace("http://", "ws://") + "/v1/rpc?agent=mock"
        texts: list[object] = []
        with anyio.fail_after(60):
            async with connect(url, additional_headers=daemon.headers, compression="deflate") as ws:
                assert ws.protocol.extensions == []  # offered by the client, declined on loopback
                await ws.send(jsonio.dumps_str(rpc(1, "initialize", {"protocolVersion": 1})))
                await ws.recv()
                await ws.send(jsonio.dumps_str(rpc(2, "session/new", {"cwd": str(tmp_path), "mcpServers": []})))
                sid = jsonio.loads(await ws.recv())["result"]["sessionId"]
                prompt = {"sessionId": sid, "prompt": [{"type": "text", "text": "chunks 5000"}]}
                await ws.send(jsonio.dumps_str(rpc(3, "session/prompt", prompt)))
                while True:
                    message: JsonObject = jsonio.loads(await ws.recv())
                    if message.get("id") == 3:
                        break
                    if (text := _chunk_text(message)) is not None:
                        texts.append(text)
    assert message["result"] == {"stopReason": "end_turn"}
    assert texts == [f"c{i} " for i in range(5000)]


async def test_a_websocket_client_asking_for_lines_gets_a_burst_as_few_ndjson_frames_whole_and_in_order(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path) as daemon:
        url = daemon.url.replace("http://", "ws://") + "/v1/rpc?agent=mock&framing=lines"
        frames: list[bytes] = []
        messages: list[JsonObject] = []
        with anyio.fail_after(60):
            async with connect(url, additional_headers=daemon.headers) as ws:

                async def call(request_id: int, method: str, params: JsonObject) -> JsonObject:
                    await ws.send(jsonio.dumps_str(rpc(request_id, method, params)))
                    while True:
                        frame = await ws.recv(decode=False)
                        frames.append(frame)
                        assert frame.endswith(b"\n")
                        messages.extend(jsonio.loads(line) for line in frame.splitlines())
                        if any(m.get("id") == request_id and "method" not in m for m in messages):
                            return messages[-1]

                await call(1, "initialize", {"protocolVersion": 1})
                sid = (await call(2, "session/new", {"cwd": str(tmp_path), "mcpServers": []}))["result"]["sessionId"]
                prompt = {"sessionId": sid, "prompt": [{"type": "text", "text": "chunks 5000"}]}
                done = await call(3, "session/prompt", prompt)
    assert done["result"] == {"stopReason": "end_turn"}
    texts = [text for m in messages if (text := _chunk_text(m)) is not None]
    assert texts == [f"c{i} " for i in range(5000)]
    assert len(frames) < 1000  # batches of updates, not a frame each


async def test_the_acp_http_stream_replays_from_last_event_id_out_of_the_store(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon, daemon.client() as http:
        with anyio.fail_after(30):
            await http.post("/v1/acp/c?agent=mock", json=rpc(1, "initialize", {"protocolVersion": 1}))
            new = await http.post("/v1/acp/c", json=rpc(2, "session/new", {"cwd": str(tmp_path), "mcpServers": []}))
            sid = new.json()["result"]["sessionId"]
            prompt = {"sessionId": sid, "prompt": [{"type": "text", "text": "chunks 3000"}]}
            await http.post("/v1/acp/c", json=rpc(3, "session/prompt", prompt))
            ids: list[int] = []
            async with http.stream("GET", "/v1/acp/c", headers={"Last-Event-ID": "2"}) as stream:
                event_ids = (
                    int(line[4:]) for line in [ln async for ln in _until_result(stream, 3)] if line.startswith("id: ")
                )
                ids = list(event_ids)
    # far more than a small ring would keep, from exactly after the id asked for, without a gap
    assert ids[0] == 3
    assert ids == list(range(3, 3 + len(ids)))
    assert len(ids) > 3000


async def _until_result(stream: httpx.Response, request_id: int) -> Any:
    async for line in stream.aiter_lines():
        yield line
        if line.startswith("data: ") and jsonio.loads(line[6:]).get("id") == request_id:
            return
