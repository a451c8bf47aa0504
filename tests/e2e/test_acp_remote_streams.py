"""End to end on ``/acp``: streams served from the store (a reader that comes late or slowly loses
nothing; ``Last-Event-ID`` resumes without repeats), the security edge, one session shared by a
client on ``/acp`` and an editor on ``acpd acp`` who see the same updates in the same order, and
the five transports of the ACP face answering alike."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from acp import text_block
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from acpd.errors import RpcError
from acpd.protocol import jsonio
from acpd.protocol.jsonio import JsonObject, JsonValue
from acpd.rpc.peer import JsonRpcPeer
from acpd.testing.daemon import daemon_env, running_daemon
from acpd.transports.process import ProcessSpec, open_process_transport

from .acp_sdk import RecordingClient, Remote, chunk_text, sdk_client

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

CHUNKS = 20_000


def rpc(request_id: int | None, method: str, params: JsonObject) -> JsonObject:
    message: JsonObject = {"jsonrpc": "2.0", "method": method, "params": params}
    if request_id is not None:
        message["id"] = request_id
    return message


async def events(response: httpx.Response) -> Any:
    """``(id, message)`` of each SSE event (the id is None on an event without one)."""
    event_id: str | None = None
    async for line in response.aiter_lines():
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            yield event_id, jsonio.loads(line[6:])
            event_id = None


async def answer_on(http: httpx.AsyncClient, headers: dict[str, str], request_id: int) -> JsonObject:
    """The answer to ``request_id``, read from the connection's stream."""
    sse = {**headers, "Accept": "text/event-stream"}
    async with http.stream("GET", "/acp", headers=sse) as stream:
        async for _, message in events(stream):
            if isinstance(message, dict) and message.get("id") == request_id and "method" not in message:
                return message
    raise AssertionError("the stream ended without the answer")


async def test_a_late_session_stream_gets_a_whole_turn_and_resumes_from_last_event_id_without_repeats(
    tmp_path: Path, workdir: Path
) -> None:
    async with running_daemon(tmp_path) as daemon, daemon.client() as http:
        with anyio.fail_after(60):
            init = await http.post("/acp?agent=mock", json=rpc(1, "initialize", {"protocolVersion": 1}))
            headers = {"Acp-Connection-Id": init.headers["Acp-Connection-Id"]}
            await http.post(
                "/acp", json=rpc(2, "session/new", {"cwd": str(workdir), "mcpServers": []}), headers=headers
            )
            session_id = (await answer_on(http, headers, 2))["result"]["sessionId"]
            scoped = {**headers, "Acp-Session-Id": session_id}
            # nobody reads the session's stream while the turn runs
            prompt = {"sessionId": session_id, "prompt": [{"type": "text", "text": f"chunks {CHUNKS}"}]}
            assert (await http.post("/acp", json=rpc(3, "session/prompt", prompt), headers=scoped)).status_code == 202
            texts: list[str] = []
            last_id = ""
            async with http.stream("GET", "/acp", headers={**scoped, "Accept": "text/event-stream"}) as stream:
                async for event_id, message in events(stream):
                    text = (
                        chunk_text(message["params"]["update"]) if message.get("method") == "session/update" else None
                    )
                    texts += [text] if text is not None else []
                    last_id = event_id or last_id
                    if len(texts) == CHUNKS // 2:
                        break
            resumed = {**scoped, "Accept": "text/event-stream", "Last-Event-ID": last_id}
            async with http.stream("GET", "/acp", headers=resumed) as stream:
                async for _, message in events(stream):
                    if message.get("id") == 3:
                        answer = message
                        break
                    text = (
                        chunk_text(message["params"]["update"]) if message.get("method") == "session/update" else None
                    )
                    texts += [text] if text is not None else []
    assert texts == [f"c{i} " for i in range(CHUNKS)]
    assert answer["result"]["stopReason"] == "end_turn"


async def test_acp_keeps_the_security_edge_for_http_and_websocket(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon, httpx.AsyncClient(base_url=daemon.url, timeout=10) as anonymous:
        init = rpc(1, "initialize", {"protocolVersion": 1})
        ws_url = daemon.url.replace("http://", "ws://") + "/acp"
        with anyio.fail_after(20):
            no_token = await anonymous.post("/acp", json=init)
            foreign = await anonymous.post(
                "/acp", json=init, headers={**daemon.headers, "Origin": "http://evil.example"}
            )
            rebinding = await anonymous.post("/acp", json=init, headers={**daemon.headers, "Host": "evil.example"})
            with pytest.raises(InvalidStatus) as refused:
                async with connect(ws_url):
                    pass
    assert no_token.status_code == 401
    assert foreign.status_code == 403
    assert rebinding.status_code == 421
    assert refused.value.response.status_code == 401
    assert all(r.headers["content-type"] == "application/problem+json" for r in (no_token, foreign, rebinding))


class Editor:
    """An ACP client on stdio whose human never answers permission requests."""

    def __init__(self) -> None:
        self.updates: list[JsonObject] = []
        self.asked = anyio.Event()
        self.withdrawn = anyio.Event()

    async def on_notification(self, method: str, params: JsonValue, message: JsonObject) -> None:
        if method == "session/update" and isinstance(params, dict):
            self.updates.append(params["update"])

    async def on_request(self, method: str, params: JsonValue, message: JsonObject) -> JsonValue:
        self.asked.set()
        try:
            await anyio.sleep_forever()
        finally:
            self.withdrawn.set()  # only a $/cancel_request from acpd gets here
        return None


@pytest.mark.parametrize("remote", ["http", "ws"])
async def test_a_client_on_acp_and_an_editor_on_acpd_acp_share_a_session_and_see_the_same_updates_in_order(
    remote: Remote, tmp_path: Path, workdir: Path
) -> None:
    editor = Editor()
    orchestrator = RecordingClient()
    async with running_daemon(tmp_path) as daemon, anyio.create_task_group() as tg:
        spec = ProcessSpec(sys.executable, ("-m", "acpd", "acp", "--url", daemon.url), env=daemon_env(tmp_path))
        async with open_process_transport(spec) as transport, sdk_client(daemon, remote, orchestrator) as acp:
            peer = JsonRpcPeer(transport, on_request=editor.on_request, on_notification=editor.on_notification)
            tg.start_soon(peer.run)
            with anyio.fail_after(60):
                await peer.request("initialize", {"protocolVersion": 1, "clientCapabilities": {}})
                sid = (await peer.request("session/new", {"cwd": str(workdir), "mcpServers": []}))["sessionId"]
                await acp.resume_session(cwd=str(workdir), session_id=sid)
                script = "text one\ntool read\npermission edit\ntext two\nchunks 300"
                answer = await acp.prompt(session_id=sid, prompt=[text_block(script)])
                await editor.withdrawn.wait()
                await orchestrator.wait_for("c299 ")
                while editor.updates[-1:] != [orchestrator.updates[-1][1]]:
                    await peer.request("session/list", {})  # a round trip: the editor's updates came before it
            await peer.aclose()
    assert answer.stop_reason == "end_turn"
    assert editor.asked.is_set() and orchestrator.asked == 1
    seen = [u for _, u in orchestrator.updates if u["sessionUpdate"] != "user_message_chunk"]
    assert seen == [u for u in editor.updates if u["sessionUpdate"] != "user_message_chunk"]
    assert [chunk_text(u) for u in seen if chunk_text(u)][:3] == ["one", "permission: allow", "two"]


async def test_a_websocket_upgrade_on_acp_names_its_connection_and_answers_initialize(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon:
        url = daemon.url.replace("http://", "ws://") + "/acp?agent=mock"
        with anyio.fail_after(20):
            async with connect(url, additional_headers=daemon.headers) as ws:
                await ws.send(jsonio.dumps(rpc(1, "initialize", {"protocolVersion": 1})).decode())
                answer = jsonio.loads(await ws.recv())
    assert ws.response is not None
    assert len(ws.response.headers["Acp-Connection-Id"]) == 32
    assert isinstance(answer, dict) and answer["result"]["agentInfo"]["name"] == "acpd"


async def test_the_five_transports_answer_initialize_and_an_unknown_extension_method_alike(tmp_path: Path) -> None:
    init = rpc(1, "initialize", {"protocolVersion": 1, "clientCapabilities": {}})
    unknown = rpc(2, "_acme/ping", {})
    answers: dict[str, list[JsonObject]] = {}
    async with running_daemon(tmp_path) as daemon, daemon.client() as http:
        with anyio.fail_after(60):
            base = daemon.url.replace("http://", "ws://")
            for name, path in (("acp-ws", "/acp"), ("rpc-ws", "/v1/rpc")):
                async with connect(f"{base}{path}?agent=mock", additional_headers=daemon.headers) as ws:
                    answers[name] = []
                    for message in (init, unknown):
                        await ws.send(jsonio.dumps(message).decode())
                        answers[name].append(await _answer_from(ws))
            answers["sandbox-http"] = [
                (await http.post("/v1/acp/alike?agent=mock", json=m)).json() for m in (init, unknown)
            ]
            opened = await http.post("/acp?agent=mock", json=init)
            headers = {"Acp-Connection-Id": opened.headers["Acp-Connection-Id"]}
            assert (await http.post("/acp", json=unknown, headers=headers)).status_code == 202
            answers["acp-http"] = [opened.json(), await answer_on(http, headers, 2)]
            spec = ProcessSpec(sys.executable, ("-m", "acpd", "acp", "--url", daemon.url), env=daemon_env(tmp_path))
            async with open_process_transport(spec) as transport, anyio.create_task_group() as tg:
                peer = JsonRpcPeer(transport)
                tg.start_soon(peer.run)
                result = await peer.request("initialize", init["params"])
                with pytest.raises(RpcError) as refused:
                    await peer.request("_acme/ping", {})
                answers["stdio"] = [{"result": result}, {"error": {"code": refused.value.code}}]
                await peer.aclose()
    results = {name: pair[0]["result"] for name, pair in answers.items()}
    codes = {name: pair[1]["error"]["code"] for name, pair in answers.items()}
    assert all(result == results["stdio"] for result in results.values()), results
    assert set(codes.values()) == {-32601}, codes


async def _answer_from(ws: Any) -> JsonObject:
    while True:
        message = jsonio.loads(await ws.recv())
        if isinstance(message, dict) and "method" not in message:
            return message
