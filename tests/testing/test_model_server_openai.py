"""The mock model server's OpenAI Responses and Chat Completions APIs, read as raw SSE with httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import orjson
import pytest

from acpd.testing.model_server import MockModelServer
from tests.testing import model_helpers
from tests.testing.model_helpers import (
    EXEC_COMMAND_SCHEMA,
    SHELL_ARRAY_SCHEMA,
    Json,
    event_types,
    parse_sse,
    raw_post,
)

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

EXEC_COMMAND: Json = {"type": "function", "name": "exec_command", "parameters": EXEC_COMMAND_SCHEMA}
SHELL: Json = {"type": "function", "name": "shell", "parameters": SHELL_ARRAY_SCHEMA}
WEB_SEARCH: Json = {"type": "web_search"}
DEVELOPER: Json = {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "be good"}]}


anyio_backend = model_helpers.anyio_backend  # one loop and one server per module
server = model_helpers.server


@pytest.fixture
async def http(server: MockModelServer) -> AsyncIterator[httpx.AsyncClient]:
    server.clear()
    async with httpx.AsyncClient(base_url=server.url, headers={"authorization": "Bearer sk-secret"}) as http:
        yield http


def _user(text: str) -> Json:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


async def _post(http: httpx.AsyncClient, path: str, body: Json) -> httpx.Response:
    with anyio.fail_after(5):
        return await http.post(path, json={"model": "mock-model", **body})


async def _responses_stream(http: httpx.AsyncClient, body: Json) -> list[tuple[str | None, Any]]:
    response = await _post(http, "/v1/responses", {"stream": True, **body})
    assert response.headers["content-type"].startswith("text/event-stream")
    return parse_sse(response.text)


async def test_a_responses_stream_runs_from_created_to_completed_with_usage(
    http: httpx.AsyncClient, server: MockModelServer
) -> None:
    events = await _responses_stream(http, {"input": [DEVELOPER, _user("mock:text=Hello, Codex!")]})
    types = event_types(events)
    assert types[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    text = "".join(data["delta"] for _, data in events if data["type"] == "response.output_text.delta")
    assert text == "Hello, Codex!"
    completed = events[-1][1]["response"]
    logged = server.requests[-1].usage
    assert logged is not None
    assert completed["usage"]["input_tokens"] == logged.input_tokens
    assert completed["usage"]["output_tokens"] == logged.output_tokens
    assert completed["usage"]["total_tokens"] == logged.input_tokens + logged.output_tokens
    assert completed["id"].startswith("resp_mock")


@pytest.mark.parametrize(
    ("tools", "name", "arguments"),
    [
        ([WEB_SEARCH, EXEC_COMMAND], "exec_command", {"cmd": "echo hi"}),
        ([SHELL], "shell", {"command": ["bash", "-lc", "echo hi"]}),
    ],
)
async def test_a_plain_prompt_gets_a_shell_call_shaped_by_the_tools_schema(
    http: httpx.AsyncClient, tools: list[Json], name: str, arguments: Json
) -> None:
    events = await _responses_stream(http, {"input": [DEVELOPER, _user("Say hi")], "tools": tools})
    types = event_types(events)
    assert types[2] == "response.output_item.added"
    assert types[-3:] == ["response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    added = events[2][1]["item"]
    assert (added["type"], added["name"], added["arguments"]) == ("function_call", name, "")
    deltas = "".join(data["delta"] for _, data in events if data["type"] == "response.function_call_arguments.delta")
    assert orjson.loads(deltas) == arguments
    assert orjson.loads(events[-3][1]["arguments"]) == arguments
    done = events[-2][1]["item"]
    assert done["call_id"].startswith("call_mock") and done["status"] == "completed"
    assert events[-1][1]["response"]["output"] == [done]


async def test_a_function_call_output_gets_the_all_done_text(http: httpx.AsyncClient) -> None:
    output = "Chunk ID: e0f949\nProcess exited with code 0\nOutput:\nhi\n"
    items = [
        DEVELOPER,
        _user("Say hi"),
        {"type": "function_call", "call_id": "call_1", "name": "exec_command", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": output},
    ]
    response = await _post(http, "/v1/responses", {"input": items, "tools": [EXEC_COMMAND]})
    [message] = response.json()["output"]
    assert message["content"][0]["text"] == f"All done. Tool said: {output}"
    assert response.json()["status"] == "completed"


async def test_a_cut_responses_stream_never_completes(http: httpx.AsyncClient, server: MockModelServer) -> None:
    body = {"model": "mock-model", "stream": True, "input": "mock:cut"}
    with anyio.fail_after(5):
        sent = await raw_post(server.url, "/v1/responses", body)
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post("/v1/responses", json=body)
    assert b"transfer-encoding: chunked" in sent
    assert b"response.created" in sent
    assert b"response.completed" not in sent
    assert not sent.endswith(b"0\r\n\r\n")  # the chunked body never ends: the connection just closed


async def test_responses_errors_take_openais_shape(http: httpx.AsyncClient) -> None:
    response = await _post(http, "/v1/responses", {"input": "mock:error=429 retry-after=3 message=slow"})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.json() == {
        "error": {"message": "slow", "type": "rate_limit_error", "param": None, "code": "rate_limit_exceeded"}
    }


@pytest.mark.parametrize("include_usage", [True, False])
async def test_a_chat_stream_sends_usage_only_when_asked(
    http: httpx.AsyncClient, server: MockModelServer, include_usage: bool
) -> None:
    body = {
        "stream": True,
        "stream_options": {"include_usage": include_usage},
        "messages": [{"role": "user", "content": "hi"}],
    }
    response = await _post(http, "/v1/chat/completions", body)
    chunks = [data for _, data in parse_sse(response.text)]
    assert chunks[-1] == "[DONE]"
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks[:-1] if chunk["choices"])
    assert text == "Hello from the mock model."
    finishes = [chunk["choices"][0]["finish_reason"] for chunk in chunks[:-1] if chunk["choices"]]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    usage_chunks = [chunk for chunk in chunks[:-1] if chunk.get("usage")]
    if include_usage:
        logged = server.requests[-1].usage
        assert logged is not None
        assert [chunk["usage"]["completion_tokens"] for chunk in usage_chunks] == [logged.output_tokens]
        assert usage_chunks[0]["choices"] == []
    else:
        assert usage_chunks == []


async def test_a_chat_stream_streams_tool_call_arguments(http: httpx.AsyncClient) -> None:
    tools = [{"type": "function", "function": {"name": "exec_command", "parameters": EXEC_COMMAND_SCHEMA}}]
    messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": "go"}]
    response = await _post(http, "/v1/chat/completions", {"stream": True, "messages": messages, "tools": tools})
    chunks = [data for _, data in parse_sse(response.text)][:-1]
    calls = [call for chunk in chunks for call in chunk["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0]["function"]["name"] == "exec_command" and calls[0]["id"].startswith("call_mock")
    assert orjson.loads("".join(call["function"]["arguments"] for call in calls)) == {"cmd": "echo hi"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_a_chat_tool_message_gets_the_all_done_text(http: httpx.AsyncClient) -> None:
    messages = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "hi"},
    ]
    response = await _post(http, "/v1/chat/completions", {"messages": messages})
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "All done. Tool said: hi"
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
