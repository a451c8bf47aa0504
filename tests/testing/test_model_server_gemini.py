"""The mock model server's Gemini API, as Gemini CLI calls it (read with httpx)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx
import orjson
import pytest

from acpd.testing.model_server import MockModelServer, Reply
from tests.testing import model_helpers
from tests.testing.model_helpers import Json, parse_sse

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

SHELL_TOOL: Json = {
    "functionDeclarations": [
        {"name": "read_file", "parametersJsonSchema": {"type": "object", "properties": {"path": {"type": "string"}}}},
        {"name": "run_shell_command", "parametersJsonSchema": {"properties": {"command": {"type": "string"}}}},
    ]
}
MODEL_PATH = "/v1beta/models/gemini-mock"


anyio_backend = model_helpers.anyio_backend  # one loop and one server per module
server = model_helpers.server


@pytest.fixture
async def http(server: MockModelServer) -> AsyncIterator[httpx.AsyncClient]:
    server.clear()
    async with httpx.AsyncClient(base_url=server.url, headers={"x-goog-api-key": "secret-key"}) as http:
        yield http


def _contents(text: str) -> list[Json]:
    return [{"role": "user", "parts": [{"text": text}]}]


async def _post(http: httpx.AsyncClient, method: str, body: Json, query: str = "") -> httpx.Response:
    with anyio.fail_after(5):
        return await http.post(f"{MODEL_PATH}:{method}{query}", json=body)


def _parts(chunks: list[Json]) -> list[Json]:
    return [part for chunk in chunks for part in chunk["candidates"][0]["content"]["parts"]]


async def test_an_sse_stream_calls_run_shell_command(http: httpx.AsyncClient, server: MockModelServer) -> None:
    body = {"contents": _contents("Say hi using the shell"), "tools": [SHELL_TOOL]}
    response = await _post(http, "streamGenerateContent", body, "?alt=sse")
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = [data for name, data in parse_sse(response.text) if name is None]
    assert _parts(chunks) == [{"functionCall": {"name": "run_shell_command", "args": {"command": "echo hi"}}}]
    last = chunks[-1]
    assert last["candidates"][0]["finishReason"] == "STOP"
    logged = server.requests[-1]
    assert logged.usage is not None
    assert last["usageMetadata"]["candidatesTokenCount"] == logged.usage.output_tokens
    assert last["modelVersion"] == "gemini-mock"
    assert logged.query == {"alt": "sse"}


async def test_a_stream_without_alt_sse_is_one_json_array(http: httpx.AsyncClient) -> None:
    response = await _post(http, "streamGenerateContent", {"contents": _contents("mock:text=" + "z" * 40)})
    chunks = response.json()
    assert isinstance(chunks, list) and len(chunks) == 3
    assert "".join(part["text"] for part in _parts(chunks)) == "z" * 40
    assert "finishReason" not in chunks[0]["candidates"][0]
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"


async def test_generate_content_answers_a_function_response_with_all_done(http: httpx.AsyncClient) -> None:
    output = "<untrusted_context> Output: hi </untrusted_context>"
    contents = [
        *_contents("Say hi"),
        {"role": "model", "parts": [{"functionCall": {"name": "run_shell_command", "args": {}}}]},
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "run_shell_command", "response": {"output": output}}}],
        },
    ]
    response = await _post(http, "generateContent", {"contents": contents, "tools": [SHELL_TOOL]})
    [part] = response.json()["candidates"][0]["content"]["parts"]
    assert part == {"text": f"All done. Tool said: {output}"}


async def test_thinking_comes_as_thought_parts_first(http: httpx.AsyncClient) -> None:
    response = await _post(http, "generateContent", {"contents": _contents("mock:thinking=hmm\nmock:text=ok")})
    assert response.json()["candidates"][0]["content"]["parts"] == [{"text": "hmm", "thought": True}, {"text": "ok"}]


async def test_router_checks_get_json_and_leave_the_script_alone(
    http: httpx.AsyncClient, server: MockModelServer
) -> None:
    server.push(Reply(text="scripted"))
    router = {
        "contents": _contents("Say hi"),
        "tools": [SHELL_TOOL],
        "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": {}},
    }
    response = await _post(http, "generateContent", router)
    decision = orjson.loads(response.json()["candidates"][0]["content"]["parts"][0]["text"])
    assert decision["next_speaker"] == "user"
    assert {"complexity_reasoning", "complexity_score", "model_choice"} <= decision.keys()
    answered = await _post(http, "generateContent", {"contents": _contents("Say hi"), "tools": [SHELL_TOOL]})
    assert _parts([answered.json()]) == [{"text": "scripted"}]
    assert [(entry.plan.kind, entry.plan.scripted) for entry in server.requests if entry.plan] == [
        ("json", False),
        ("text", True),
    ]


async def test_count_tokens_and_errors_take_geminis_shapes(http: httpx.AsyncClient) -> None:
    counted = await _post(http, "countTokens", {"contents": _contents("count me")})
    assert counted.json()["totalTokens"] >= 1
    failed = await _post(http, "generateContent", {"contents": _contents("mock:error=429 message=quota")})
    assert failed.status_code == 429
    assert failed.json() == {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}
    unknown = await _post(http, "embedContent", {})
    assert unknown.status_code == 404
