"""End to end: an ACP client on daemon B attached to a session daemon A serves (``--share-db``):
the agent's ``fs/*`` and ``terminal/*`` requests raised on A reach the client through B when it
advertised them, its answers reach the agent, and a client that leaves mid-request fails the
request instead of hanging it; and the session writes an ACP client makes through B (fork,
delete, rename) are sent to A, the reads (export, turns) served from the table."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import ClientConnection, connect

from acpd.protocol import jsonio
from acpd.protocol.jsonio import JsonObject
from acpd.testing.daemon import Daemon
from tests.daemon.helpers import all_events, new_session
from tests.e2e.test_postgres_shared_acp import rpc, two_daemons_with_one_token
from tests.postgres import postgres_dsn

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]
__all__ = ["postgres_dsn"]

EDITOR_FS = {"fs": {"readTextFile": True, "writeTextFile": True}, "terminal": False}
EDITOR_TERMINAL = {"fs": {"readTextFile": False, "writeTextFile": False}, "terminal": True}
Answer = Callable[[str, JsonObject], object]


class Editor:
    """An ACP client over a daemon's ``/v1/rpc``: it answers the agent's requests with ``answer``
    (``None``: the client leaves at once instead) and allows every permission."""

    def __init__(self, ws: ClientConnection, answer: Answer) -> None:
        self.ws = ws
        self.answer = answer
        self.calls: list[tuple[str, JsonObject]] = []
        self.answers: dict[int, JsonObject] = {}
        self._next = 1
        self._answered = anyio.Event()

    async def serve(self) -> None:
        """Read until the WebSocket ends, answering requests and keeping responses."""
        with contextlib.suppress(Exception):  # the connection closed (by this client or the daemon)
            async for raw in self.ws:
                message: JsonObject = jsonio.loads(raw)
                if "method" in message and "id" in message:
                    await self._answer(message)
                elif "id" in message:
                    self.answers[message["id"]] = message
                    self._answered.set()

    async def _answer(self, message: JsonObject) -> None:
        method, params = message["method"], message.get("params") or {}
        if method == "session/request_permission":
            result: object = {"outcome": {"outcome": "selected", "optionId": "allow"}}
        else:
            self.calls.append((method, params))
            result = self.answer(method, params)
            if result is None:
                await self.ws.close()
                return
        await self.ws.send(jsonio.dumps_str({"jsonrpc": "2.0", "id": message["id"], "result": result}))

    async def call(self, method: str, params: JsonObject) -> JsonObject:
        request_id, self._next = self._next, self._next + 1
        await self.ws.send(jsonio.dumps_str(rpc(request_id, method, params)))
        while request_id not in self.answers:
            self._answered = anyio.Event()
            await self._answered.wait()
        return self.answers.pop(request_id)


@contextlib.asynccontextmanager
async def editor_on(daemon: Daemon, capabilities: JsonObject, answer: Answer) -> AsyncIterator[Editor]:
    url = daemon.url.replace("http://", "ws://") + "/v1/rpc"
    async with connect(url, additional_headers=daemon.headers) as ws, anyio.create_task_group() as tg:
        editor = Editor(ws, answer)
        tg.start_soon(editor.serve)
        initialized = await editor.call("initialize", {"protocolVersion": 1, "clientCapabilities": capabilities})
        assert "result" in initialized, initialized
        yield editor
        tg.cancel_scope.cancel()


def editor_fs(files: dict[str, str], written: dict[str, str]) -> Answer:
    def answer(method: str, params: JsonObject) -> object:
        if method == "fs/read_text_file":
            return {"content": files[params["path"]]}
        written[params["path"]] = params["content"]
        return {}

    return answer


def editor_terminal(method: str, params: JsonObject) -> object:
    return {
        "terminal/create": {"terminalId": "editor-term-1"},
        "terminal/wait_for_exit": {"exitCode": 0},
        "terminal/output": {"output": "output shown in the editor", "truncated": False},
        "terminal/release": {},
    }[method]


def chunks(events: list[dict[str, Any]]) -> list[str]:
    return [
        e["payload"]["params"]["update"]["content"]["text"]
        for e in events
        if e["payload"].get("method") == "session/update"
        and e["payload"]["params"]["update"].get("sessionUpdate") == "agent_message_chunk"
    ]


async def resume(editor: Editor, session_id: str, cwd: Path) -> None:
    resumed = await editor.call("session/resume", {"sessionId": session_id, "cwd": str(cwd)})
    assert "result" in resumed, resumed


async def test_the_agents_file_requests_on_a_reach_an_acp_client_attached_through_b(
    tmp_path: Path, postgres_dsn: str
) -> None:
    buffer, target = str(tmp_path / "buffer.txt"), str(tmp_path / "out.txt")
    written: dict[str, str] = {}
    async with two_daemons_with_one_token(tmp_path, postgres_dsn) as (a, b), a.client() as on_a:
        session_id = (await new_session(on_a, tmp_path))["id"]
        with anyio.fail_after(30):
            async with editor_on(b, EDITOR_FS, editor_fs({buffer: "unsaved buffer text"}, written)) as editor:
                await resume(editor, session_id, tmp_path)
                answer = await on_a.post(
                    f"/v1/sessions/{session_id}/prompt",
                    json={"prompt": f"read {buffer}\nwrite {target} from-the-agent"},
                )
        events = await all_events(on_a, session_id)
    assert answer.json()["stopReason"] == "end_turn", answer.text
    assert [method for method, _ in editor.calls] == ["fs/read_text_file", "fs/write_text_file"]
    assert all(params["sessionId"] == session_id for _, params in editor.calls)
    assert written == {target: "from-the-agent"}
    assert not await anyio.Path(target).exists()  # the editor wrote it, not the daemon
    assert "unsaved buffer text" in chunks(events)


async def test_the_agents_terminal_requests_on_a_reach_an_acp_client_attached_through_b_that_prompted(
    tmp_path: Path, postgres_dsn: str
) -> None:
    async with two_daemons_with_one_token(tmp_path, postgres_dsn) as (a, b), a.client() as on_a:
        session_id = (await new_session(on_a, tmp_path))["id"]
        with anyio.fail_after(30):
            # both daemons have a client offering terminals: the one whose prompt runs is asked
            async with (
                editor_on(a, EDITOR_TERMINAL, editor_terminal) as on_a_editor,
                editor_on(b, EDITOR_TERMINAL, editor_terminal) as editor,
            ):
                await resume(on_a_editor, session_id, tmp_path)
                await resume(editor, session_id, tmp_path)
                prompt = [{"type": "text", "text": "run echo from-the-daemon"}]
                done = await editor.call("session/prompt", {"sessionId": session_id, "prompt": prompt})
        events = await all_events(on_a, session_id)
    assert done["result"] == {"stopReason": "end_turn"}, done
    assert [method for method, _ in editor.calls] == [
        "terminal/create",
        "terminal/wait_for_exit",
        "terminal/output",
        "terminal/release",
    ]
    assert all(params["terminalId"] == "editor-term-1" for _, params in editor.calls[1:])
    assert on_a_editor.calls == []
    assert "output shown in the editor" in chunks(events)


async def test_a_client_through_b_that_leaves_mid_request_fails_the_agents_request_instead_of_hanging_it(
    tmp_path: Path, postgres_dsn: str
) -> None:
    buffer = str(tmp_path / "buffer.txt")
    await anyio.Path(buffer).write_text("on the disk: the client's buffer was meant")
    async with two_daemons_with_one_token(tmp_path, postgres_dsn) as (a, b), a.client() as on_a:
        session_id = (await new_session(on_a, tmp_path))["id"]
        with anyio.fail_after(30):
            async with editor_on(b, EDITOR_FS, lambda method, params: None) as editor:
                await resume(editor, session_id, tmp_path)
                answer = await on_a.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": f"read {buffer}"})
        events = await all_events(on_a, session_id)
    assert [method for method, _ in editor.calls] == ["fs/read_text_file"]
    assert answer.json()["stopReason"] == "end_turn", answer.text
    assert chunks(events)[-1].startswith("read error:")


async def test_an_acp_client_through_b_forks_renames_exports_and_deletes_a_session_a_serves(
    tmp_path: Path, postgres_dsn: str
) -> None:
    async with two_daemons_with_one_token(tmp_path, postgres_dsn) as (a, b), a.client() as on_a:
        session_id = (await new_session(on_a, tmp_path))["id"]
        assert (await on_a.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "text one"})).status_code == 200
        with anyio.fail_after(30):
            async with editor_on(b, {}, lambda method, params: {}) as editor:
                renamed = await editor.call("_acpd/session/update", {"sessionId": session_id, "title": "renamed"})
                exported = await editor.call("_acpd/session/export", {"sessionId": session_id, "format": "jsonl"})
                turns = await editor.call("_acpd/session/turns", {"sessionId": session_id})
                forked = await editor.call("session/fork", {"sessionId": session_id, "cwd": str(tmp_path)})
                fork_id = forked["result"]["sessionId"]
                prompt = [{"type": "text", "text": "text on the fork"}]
                done = await editor.call("session/prompt", {"sessionId": fork_id, "prompt": prompt})
                deleted = await editor.call("session/delete", {"sessionId": session_id})
                bad = await editor.call("session/fork", {"sessionId": fork_id, "cwd": "relative"})
        gone = await on_a.get(f"/v1/sessions/{session_id}")
        fork_events = await all_events(on_a, fork_id)
    assert renamed["result"]["session"]["title"] == "renamed", renamed
    assert session_id in exported["result"]["content"], exported
    assert len(turns["result"]["items"]) == 1, turns
    assert done["result"] == {"stopReason": "end_turn"}, done
    assert chunks(fork_events) == ["one", "on the fork"]
    assert deleted == {"jsonrpc": "2.0", "id": deleted["id"], "result": {}}
    assert gone.status_code == 404
    assert bad["error"]["code"] == -32602, bad


async def test_a_client_link_refuses_bad_input_with_a_json_rpc_error(tmp_path: Path, postgres_dsn: str) -> None:
    async with two_daemons_with_one_token(tmp_path, postgres_dsn) as (a, _), a.client() as on_a:
        session_id = (await new_session(on_a, tmp_path))["id"]
        base = a.url.replace("http://", "ws://") + "/v1/sessions"
        answers: list[JsonObject] = []
        with anyio.fail_after(30):
            async with connect(f"{base}/{session_id}/link", additional_headers=a.headers) as ws:
                sent: list[tuple[int, str, JsonObject]] = [
                    (1, "fs/read_text_file", {"path": "/etc/hostname"}),
                    (2, "_acpd/client_link", {"linkId": 7, "clientCapabilities": {}}),
                    (3, "_acpd/client_link", {"linkId": "acp-x", "clientCapabilities": {"terminal": True}}),
                    (4, "_acpd/client_link", {"linkId": "acp-x", "clientCapabilities": {"terminal": True}}),
                ]
                for request_id, method, params in sent:
                    await ws.send(jsonio.dumps_str(rpc(request_id, method, params)))
                    answers.append(jsonio.loads(await ws.recv()))
            async with connect(f"{base}/no-such-session/link", additional_headers=a.headers) as ws:
                hello = {"linkId": "acp-y", "clientCapabilities": {}}
                await ws.send(jsonio.dumps_str(rpc(5, "_acpd/client_link", hello)))
                answers.append(jsonio.loads(await ws.recv()))
    assert [answer.get("error", {}).get("code") for answer in answers] == [-32601, -32602, None, -32602, -32002]
    assert answers[2]["result"] == {}
    assert "session" in answers[4]["error"]["message"]


async def test_the_agents_file_request_on_a_reaches_an_acp_over_http_client_on_b(
    tmp_path: Path, postgres_dsn: str
) -> None:
    buffer = str(tmp_path / "buffer.txt")
    asked: list[JsonObject] = []
    async with (
        two_daemons_with_one_token(tmp_path, postgres_dsn) as (a, b),
        a.client() as on_a,
        b.client() as on_b,
    ):
        session_id = (await new_session(on_a, tmp_path))["id"]
        answer: dict[str, Any] = {}
        with anyio.fail_after(30):
            hello = {"protocolVersion": 1, "clientCapabilities": EDITOR_FS}
            await on_b.post("/v1/acp/editor?agent=mock", json=rpc(1, "initialize", hello))
            resumed = await on_b.post(
                "/v1/acp/editor", json=rpc(2, "session/resume", {"sessionId": session_id, "cwd": str(tmp_path)})
            )
            assert "result" in resumed.json(), resumed.text
            async with on_b.stream("GET", "/v1/acp/editor") as stream, anyio.create_task_group() as tg:

                async def prompt() -> None:
                    sent = await on_a.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": f"read {buffer}"})
                    answer.update(sent.json())
                    tg.cancel_scope.cancel()

                tg.start_soon(prompt)
                async for line in stream.aiter_lines():
                    message = jsonio.loads(line[6:]) if line.startswith("data: ") else {}
                    if message.get("method") == "fs/read_text_file":
                        asked.append(message)
                        reply = {"jsonrpc": "2.0", "id": message["id"], "result": {"content": "over http"}}
                        await on_b.post("/v1/acp/editor", json=reply)
        events = await all_events(on_a, session_id)
    assert answer["stopReason"] == "end_turn", answer
    assert [message["params"]["path"] for message in asked] == [buffer]
    assert chunks(events)[-1] == "over http"
