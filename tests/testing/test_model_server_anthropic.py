"""The mock model server's Anthropic Messages API, as the official ``anthropic`` SDK (and raw SSE) sees it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import anyio
import httpx
import pytest
from anthropic.types import MessageParam, ToolParam

from acpd.testing.model_server import ErrorReply, MockModelServer, Reply
from tests.testing import model_helpers
from tests.testing.model_helpers import (
    ANTHROPIC_BASH,
    SDK_TRANSPORT_ERRORS,
    event_types,
    parse_sse,
    raw_post,
)

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

MODEL = "claude-mock"
BASH: ToolParam = ANTHROPIC_BASH  # type: ignore[assignment]


anyio_backend = model_helpers.anyio_backend  # one loop and one server per module
server = model_helpers.server


@pytest.fixture
async def client(server: MockModelServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    server.clear()
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="sk-ant-secret", max_retries=0) as client:
        yield client


def _user(text: str) -> list[MessageParam]:
    return [{"role": "user", "content": text}]


async def test_the_sdk_streams_the_default_text_when_no_tool_is_offered(
    client: anthropic.AsyncAnthropic, server: MockModelServer
) -> None:
    with anyio.fail_after(5):
        async with client.messages.stream(model=MODEL, max_tokens=100, messages=_user("hello")) as stream:
            texts = [text async for text in stream.text_stream]
            message = await stream.get_final_message()
    assert "".join(texts) == "Hello from the mock model."
    assert message.stop_reason == "end_turn"
    assert message.id.startswith("msg_mock")
    assert message.usage.output_tokens == server.requests[-1].usage.output_tokens  # type: ignore[union-attr]


async def test_the_stream_has_the_real_apis_event_order(server: MockModelServer) -> None:
    body = {"model": MODEL, "max_tokens": 10, "stream": True, "messages": _user("hi"), "tools": [ANTHROPIC_BASH]}
    async with httpx.AsyncClient(base_url=server.url) as http:
        with anyio.fail_after(5):
            response = await http.post("/v1/messages?beta=true", json=body)
    events = parse_sse(response.text)
    types = event_types(events)
    assert types[:3] == ["message_start", "content_block_start", "ping"]
    assert set(types[3:-3]) == {"content_block_delta"}
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert events[1][1]["content_block"] == {
        "type": "tool_use",
        "id": events[1][1]["content_block"]["id"],
        "name": "Bash",
        "input": {},
    }
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert server.requests[-1].query == {"beta": "true"}


async def test_a_plain_prompt_offering_bash_gets_one_bash_call(client: anthropic.AsyncAnthropic) -> None:
    with anyio.fail_after(5):
        async with client.messages.stream(
            model=MODEL, max_tokens=100, messages=_user("Say hi using bash"), tools=[BASH]
        ) as stream:
            message = await stream.get_final_message()
    assert message.stop_reason == "tool_use"
    [block] = message.content
    assert block.type == "tool_use"
    assert (block.name, block.input) == ("Bash", {"command": "echo hi", "description": "Print hi"})
    assert block.id.startswith("toolu_mock")


async def test_a_full_tool_round_trip_ends_with_the_tool_output_quoted(
    client: anthropic.AsyncAnthropic, server: MockModelServer
) -> None:
    messages: list[MessageParam] = _user("Say hi using bash")
    with anyio.fail_after(5):
        first = await client.messages.create(model=MODEL, max_tokens=100, messages=messages, tools=[BASH])
        [call] = first.content
        assert call.type == "tool_use"
        messages += [
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "hi\n"}]},
            {"role": "system", "content": "environment info"},  # Claude Code does this
        ]
        async with client.messages.stream(model=MODEL, max_tokens=100, messages=messages, tools=[BASH]) as stream:
            second = await stream.get_final_message()
    assert second.content[0].type == "text"
    assert second.content[0].text == "All done. Tool said: hi\n"
    assert [entry.plan.kind for entry in server.requests if entry.plan] == ["tool", "text"]


async def test_a_forced_tool_directive_survives_claude_codes_trailing_system_entry(
    client: anthropic.AsyncAnthropic,
) -> None:
    messages: list[Any] = [
        {"role": "user", "content": [{"type": "text", "text": 'Write it\nmock:tool=bash input={"command": "ls"}'}]},
        {"role": "system", "content": "environment info"},
    ]
    with anyio.fail_after(5):
        message = await client.messages.create(model=MODEL, max_tokens=100, messages=messages, tools=[BASH])
    [block] = message.content
    assert block.type == "tool_use"
    assert (block.name, block.input) == ("Bash", {"command": "ls"})


async def test_the_thinking_directive_streams_a_signed_thinking_block_first(client: anthropic.AsyncAnthropic) -> None:
    prompt = "think first\nmock:thinking=Let me see.\nmock:text=Done."
    with anyio.fail_after(5):
        async with client.messages.stream(model=MODEL, max_tokens=100, messages=_user(prompt)) as stream:
            kinds = [event.type async for event in stream]
            message = await stream.get_final_message()
    thinking, text = message.content
    assert thinking.type == "thinking" and thinking.thinking == "Let me see." and thinking.signature
    assert text.type == "text" and text.text == "Done."
    assert "thinking" in kinds and "signature" in kinds


async def test_a_non_streamed_request_gets_a_message(client: anthropic.AsyncAnthropic, server: MockModelServer) -> None:
    with anyio.fail_after(5):
        message = await client.messages.create(model=MODEL, max_tokens=100, messages=_user("mock:text=plain"))
    assert message.model == MODEL
    assert [block.type for block in message.content] == ["text"]
    logged = server.requests[-1].usage
    assert logged is not None
    assert (message.usage.input_tokens, message.usage.output_tokens) == (logged.input_tokens, logged.output_tokens)


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (403, anthropic.PermissionDeniedError, "permission_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
async def test_error_directives_raise_the_matching_sdk_error(
    client: anthropic.AsyncAnthropic, status: int, error: type[anthropic.APIStatusError], kind: str
) -> None:
    with anyio.fail_after(5), pytest.raises(error) as caught:
        async with client.messages.stream(
            model=MODEL, max_tokens=10, messages=_user(f"mock:error={status} message=nope")
        ) as stream:
            await stream.get_final_message()
    assert caught.value.status_code == status
    assert caught.value.body == {"type": "error", "error": {"type": kind, "message": "nope"}}


async def test_a_429_says_when_to_retry(client: anthropic.AsyncAnthropic, server: MockModelServer) -> None:
    server.push(Reply(error=ErrorReply(status=429, retry_after_seconds=7)))
    with anyio.fail_after(5), pytest.raises(anthropic.RateLimitError) as caught:
        await client.messages.create(model=MODEL, max_tokens=10, messages=_user("hi"), tools=[BASH])
    assert caught.value.response.headers["retry-after"] == "7"
    assert server.requests[-1].usage is None  # errors report no usage


@pytest.mark.parametrize("stream", [True, False])
async def test_a_cut_response_makes_the_sdk_raise(client: anthropic.AsyncAnthropic, stream: bool) -> None:
    with anyio.fail_after(5), pytest.raises(SDK_TRANSPORT_ERRORS):
        if stream:
            async with client.messages.stream(model=MODEL, max_tokens=10, messages=_user("mock:cut")) as events:
                await events.get_final_message()
        else:
            await client.messages.create(model=MODEL, max_tokens=10, messages=_user("mock:cut"))


async def test_a_cut_stream_stops_before_message_stop_without_ending_the_body(server: MockModelServer) -> None:
    body = {"model": MODEL, "max_tokens": 10, "stream": True, "messages": _user("mock:cut")}
    with anyio.fail_after(5):
        sent = await raw_post(server.url, "/v1/messages", body)
    assert b"event: message_start" in sent and b"event: content_block_delta" in sent
    assert b"message_stop" not in sent
    assert not sent.endswith(b"0\r\n\r\n")


async def test_count_tokens_answers_a_quarter_of_the_body_size(
    client: anthropic.AsyncAnthropic, server: MockModelServer
) -> None:
    with anyio.fail_after(5):
        counted = await client.messages.count_tokens(model=MODEL, messages=_user("count me"))
    assert counted.input_tokens == max(1, server.requests[-1].body_bytes // 4)
