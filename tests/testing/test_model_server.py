"""The mock model server as a whole: scripted queue, control API, request log, timing, and ``main``."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import orjson
import pytest

from acpd.testing.model_server import MockModelServer, Reply, ToolCall, serve_mock_model
from tests.testing.model_helpers import ANTHROPIC_BASH, Json

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

SECRET = "sk-very-secret-value"


@pytest.fixture
async def server() -> AsyncIterator[MockModelServer]:
    async with serve_mock_model() as server:
        yield server


@pytest.fixture
async def http(server: MockModelServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url) as http:
        yield http


def _messages(text: str, *, tools: bool = True) -> Json:
    body: Json = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": text}]}
    return {**body, "tools": [ANTHROPIC_BASH]} if tools else body


async def _answer(http: httpx.AsyncClient, body: Json) -> Json:
    with anyio.fail_after(5):
        response = await http.post("/v1/messages", json=body)
    assert response.status_code == 200, response.text
    [block] = response.json()["content"]
    assert isinstance(block, dict)
    return block


async def test_scripted_replies_answer_conversation_requests_first_in_first_out(
    http: httpx.AsyncClient, server: MockModelServer
) -> None:
    server.push(Reply(text="one"), Reply(tool=ToolCall(name="Bash", input={"command": "ls"})))
    title = await _answer(http, _messages("Generate a title for:\nmock:text=fix it", tools=False))
    first = await _answer(http, _messages("mock:text=ignored while scripted"))
    second = await _answer(http, _messages("go"))
    third = await _answer(http, _messages("go"))
    assert title == {"type": "text", "text": "fix it"}  # tool-less: directives apply, the queue is left alone
    assert first == {"type": "text", "text": "one"}
    assert (second["name"], second["input"]) == ("Bash", {"command": "ls"})
    assert (third["name"], third["input"]) == ("Bash", {"command": "echo hi", "description": "Print hi"})
    assert [entry.plan.scripted for entry in server.requests if entry.plan] == [False, True, True, False]


async def test_the_control_api_scripts_lists_and_clears(http: httpx.AsyncClient, server: MockModelServer) -> None:
    with anyio.fail_after(5):
        queued = await http.post("/_mock/script", json=[{"text": "a"}, {"error": {"status": 503}}])
        answered = await _answer(http, _messages("go"))
        failed = await http.post("/v1/messages", json=_messages("go"))
        listed = await http.get("/_mock/requests")
        cleared = await http.delete("/_mock/requests")
        relisted = await http.get("/_mock/requests")
    assert queued.json() == {"queued": 2}
    assert answered == {"type": "text", "text": "a"}
    assert failed.status_code == 503 and failed.json()["error"]["type"] == "api_error"
    assert [entry["plan"]["kind"] for entry in listed.json()] == ["text", "error"]
    assert [entry["seq"] for entry in listed.json()] == [1, 2]
    assert cleared.status_code == 204
    assert relisted.json() == [] and server.requests == []


async def test_the_control_api_rejects_bad_reply_specs(http: httpx.AsyncClient, server: MockModelServer) -> None:
    with anyio.fail_after(5):
        unknown_field = await http.post("/_mock/script", json=[{"txt": "typo"}])
        bad_status = await http.post("/_mock/script", json={"error": {"status": 200}})
        not_json = await http.post("/_mock/script", content=b"{")
    assert [r.status_code for r in (unknown_field, bad_status, not_json)] == [400, 400, 400]
    assert unknown_field.json()["error"]["type"] == "invalid_request_error"
    assert await _answer(http, _messages("go")) != {"type": "text", "text": "typo"}


async def test_the_request_log_records_credentials_by_name_only(tmp_path: Path) -> None:
    log_path = tmp_path / "requests.jsonl"
    async with serve_mock_model(log_path=log_path) as server, httpx.AsyncClient(base_url=server.url) as http:
        with anyio.fail_after(5):
            await http.post(
                "/v1/messages?beta=true",
                json=_messages("hi"),
                headers={"x-api-key": SECRET, "authorization": f"Bearer {SECRET}", "anthropic-version": "2023-06-01"},
            )
            await http.post(f"/v1beta/models/g:generateContent?key={SECRET}", json={"contents": []})
        anthropic_entry, gemini_entry = server.requests
    assert anthropic_entry.credentials == ("authorization", "x-api-key")
    assert anthropic_entry.headers["anthropic-version"] == "2023-06-01"
    assert gemini_entry.credentials == ("query:key",) and gemini_entry.query == {}
    assert SECRET not in repr(server.requests)
    written = log_path.read_text()
    assert SECRET not in written
    assert [orjson.loads(line)["path"] for line in written.splitlines()] == [
        "/v1/messages",
        "/v1beta/models/g:generateContent",
    ]


async def test_unknown_paths_are_logged_and_answered_404_in_anthropics_shape(
    http: httpx.AsyncClient, server: MockModelServer
) -> None:
    with anyio.fail_after(5):
        unknown = await http.post("/v2/elsewhere", json={"a": 1})
        wrong_method = await http.get("/v1/messages")
    for response in (unknown, wrong_method):
        assert response.status_code == 404
        assert response.json()["type"] == "error" and response.json()["error"]["type"] == "not_found_error"
    assert [(entry.method, entry.path, entry.body) for entry in server.requests] == [
        ("POST", "/v2/elsewhere", {"a": 1}),
        ("GET", "/v1/messages", None),
    ]


async def test_head_anything_health_and_the_model_list_answer_200(http: httpx.AsyncClient) -> None:
    with anyio.fail_after(5):
        heads = [await http.head(path) for path in ("/", "/v1/messages", "/api/hello")]
        health = await http.get("/health")
        models = await http.get("/v1/models")
    assert [response.status_code for response in heads] == [200, 200, 200]
    assert health.json() == {"status": "ok"}
    assert models.json()["data"][0]["id"] == "mock-model"


async def test_ids_are_deterministic_and_monotonic(http: httpx.AsyncClient) -> None:
    with anyio.fail_after(5):
        first = (await http.post("/v1/messages", json=_messages("go"))).json()
        second = (await http.post("/v1/messages", json=_messages("mock:text=x"))).json()
    assert (first["id"], first["content"][0]["id"], second["id"]) == (
        "msg_mock000001",
        "toolu_mock000002",
        "msg_mock000003",
    )


async def test_the_delay_directive_waits_before_answering(http: httpx.AsyncClient) -> None:
    started = time.monotonic()
    block = await _answer(http, _messages("mock:delay=0.3\nmock:text=late"))
    assert block["text"] == "late"
    assert time.monotonic() - started >= 0.3


async def test_a_client_hanging_up_during_a_delay_does_not_hold_up_the_stop() -> None:
    async with serve_mock_model() as server, httpx.AsyncClient(base_url=server.url) as http:
        with anyio.move_on_after(0.2) as scope:
            await http.post("/v1/messages", json=_messages("mock:delay=30"))
        assert scope.cancelled_caught
    stopping = time.monotonic()
    async with serve_mock_model() as server:
        pass
    assert time.monotonic() - stopping < 1.0  # a sleeping handler would have held the stop for the 2 s grace


async def test_the_event_delay_spaces_out_streamed_events() -> None:
    async with serve_mock_model(event_delay_seconds=0.05) as server, httpx.AsyncClient(base_url=server.url) as http:
        started = time.monotonic()
        with anyio.fail_after(5):
            response = await http.post("/v1/messages", json={**_messages("hi", tools=False), "stream": True})
        elapsed = time.monotonic() - started
    assert response.text.count("event: ") == 8
    assert elapsed >= 7 * 0.05


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_main_writes_its_port_file_serves_and_stops_cleanly_on_a_signal(
    tmp_path: Path, signum: signal.Signals
) -> None:
    port_file, log_path = tmp_path / "port", tmp_path / "requests.jsonl"
    os.mkfifo(port_file)  # reading a FIFO blocks until the server writes: readiness without polling
    command = [sys.executable, "-m", "acpd.testing.model_server", "--port", "0", "--port-file", str(port_file)]
    process = await anyio.open_process([*command, "--log", str(log_path)])
    try:
        with anyio.fail_after(20):
            port = int(await anyio.to_thread.run_sync(port_file.read_text, abandon_on_cancel=True))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            with anyio.fail_after(5):
                block = await _answer(http, _messages("mock:text=from a process"))
        process.send_signal(signum)
        with anyio.fail_after(10):
            status = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert block["text"] == "from a process"
    assert status == 0
    assert orjson.loads(log_path.read_text().splitlines()[0])["plan"]["kind"] == "text"
