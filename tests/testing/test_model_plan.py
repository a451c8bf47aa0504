"""The mock model server's planning, without HTTP: directives, defaults, the scripted-queue rule."""

from __future__ import annotations

import pytest

from acpd.testing._model_plan import (
    HELLO_TEXT,
    ROUTER_JSON,
    Family,
    Said,
    ToolSpec,
    Turn,
    choose,
    newest_user_turn,
    shell_arguments,
)
from acpd.testing._model_replies import ErrorReply, Reply, ToolCall, Usage, directed_reply

BASH = ToolSpec("Bash", {"properties": {"command": {"type": "string"}}})


def _nothing_queued() -> Reply | None:
    return None


def test_text_directive_sets_the_reply_text() -> None:
    assert directed_reply("please\nmock:text=Hi there  ", []) == Reply(text="Hi there")


def test_the_last_content_directive_wins_and_modifiers_stack() -> None:
    text = "mock:text=first\nmock:delay=0.5\nmock:error=500\nmock:thinking=hmm\nmock:text=second\nmock:cut"
    assert directed_reply(text, []) == Reply(text="second", thinking="hmm", delay_seconds=0.5, cut=True)


def test_tool_directive_needs_the_tool_offered_and_uses_its_spelling() -> None:
    line = 'mock:tool=bash input={"command": "ls"}'
    assert directed_reply(line, ["Read", "Bash"]) == Reply(tool=ToolCall(name="Bash", input={"command": "ls"}))
    assert directed_reply(line, ["Read"]) is None
    assert directed_reply("mock:text=a\n" + line, ["Read"]) == Reply(text="a")


def test_error_directive_reads_status_retry_after_and_message() -> None:
    reply = directed_reply("mock:error=429 retry-after=2.5 message=slow down please", [])
    assert reply == Reply(error=ErrorReply(status=429, retry_after_seconds=2.5, message="slow down please"))
    assert directed_reply("mock:error=529", []) == Reply(error=ErrorReply(status=529))


@pytest.mark.parametrize(
    "line",
    [
        "Mock:text=case matters",
        "mock:error=200",
        "mock:error=abc",
        "mock:delay=soon",
        'mock:tool=Bash input={"unclosed"',
        "mock:tool=Bash input=[1, 2]",
        "mock:unknown=1",
        "mock:text",
    ],
)
def test_malformed_or_foreign_lines_are_plain_text(line: str) -> None:
    assert directed_reply(f"hello\n{line}", ["Bash"]) is None


def test_newest_user_turn_skips_system_and_developer_entries() -> None:
    entries = [
        Said("user", ("old prompt",)),
        Said("assistant"),
        Said("user", ("new prompt",)),
        Said("ignored", ("environment info",)),
        Said("user", ("more",), ("result one", "result two")),
    ]
    assert newest_user_turn(entries) == ("new prompt\nmore", "result one")
    assert newest_user_turn([Said("user", ("hi",)), Said("assistant")]) == ("", None)


def test_a_tool_result_turn_defaults_to_all_done_with_the_first_200_characters() -> None:
    plan = choose(Turn(tool_result="x" * 300, tools=(BASH,)), Family.ANTHROPIC, _nothing_queued)
    assert plan.kind == "text"
    assert plan.reply.text == "All done. Tool said: " + "x" * 200


def test_anthropic_default_is_a_bash_call_with_a_description() -> None:
    plan = choose(Turn("hi", tools=(ToolSpec("Read"), ToolSpec("bash"))), Family.ANTHROPIC, _nothing_queued)
    assert plan.kind == "tool"
    assert plan.reply.tool == ToolCall(name="bash", input={"command": "echo hi", "description": "Print hi"})


def test_other_apis_take_the_first_known_shell_tool_by_preference() -> None:
    tools = (ToolSpec("bash"), ToolSpec("exec_command", {"properties": {"cmd": {"type": "string"}}}))
    plan = choose(Turn("hi", tools=tools), Family.OTHER, _nothing_queued)
    assert plan.reply.tool == ToolCall(name="exec_command", input={"cmd": "echo hi"})


def test_without_a_known_shell_tool_the_default_is_hello() -> None:
    plan = choose(Turn("hi", tools=(ToolSpec("Read"),)), Family.OTHER, _nothing_queued)
    assert (plan.kind, plan.reply.text) == ("text", HELLO_TEXT)


@pytest.mark.parametrize(
    ("schema", "arguments"),
    [
        ({"properties": {"cmd": {"type": "string"}}}, {"cmd": "echo hi"}),
        ({"properties": {"command": {"type": "array"}}}, {"command": ["bash", "-lc", "echo hi"]}),
        ({"properties": {"command": {"type": "ARRAY"}}}, {"command": ["bash", "-lc", "echo hi"]}),
        ({"properties": {"command": {"type": "STRING"}}}, {"command": "echo hi"}),
        ({}, {"command": "echo hi"}),
    ],
)
def test_shell_arguments_follow_the_tool_schema(schema: dict[str, object], arguments: dict[str, object]) -> None:
    assert shell_arguments(schema) == arguments


def test_housekeeping_requests_never_take_scripted_replies() -> None:
    queue = [Reply(text="scripted")]

    def take() -> Reply | None:
        return queue.pop(0) if queue else None

    router = choose(Turn("hi", tools=(BASH,), wants_json=True), Family.OTHER, take)
    title = choose(Turn("mock:text=title"), Family.ANTHROPIC, take)
    conversation = choose(Turn("hi", tools=(BASH,)), Family.ANTHROPIC, take)
    assert (router.kind, router.reply.text) == ("json", ROUTER_JSON)
    assert (title.reply.text, title.scripted) == ("title", False)
    assert (conversation.reply.text, conversation.scripted) == ("scripted", True)


def test_a_scripted_reply_without_content_gets_the_default_content() -> None:
    plan = choose(Turn("hi", tools=(BASH,)), Family.ANTHROPIC, lambda: Reply(cut=True, thinking="t"))
    assert plan.kind == "tool"
    assert plan.reply.cut and plan.reply.thinking == "t"
    assert plan.reply.tool is not None and plan.reply.tool.name == "Bash"


def test_usage_defaults_are_deterministic_and_overridable() -> None:
    plan = choose(Turn("mock:text=" + "y" * 40), Family.OTHER, _nothing_queued)
    assert (plan.usage(400).input_tokens, plan.usage(400).output_tokens) == (100, 10)
    assert plan.usage(2).input_tokens == 1
    plan = choose(Turn(tools=(BASH,)), Family.OTHER, lambda: Reply(text="x", usage=Usage(output_tokens=7)))
    assert (plan.usage(40).input_tokens, plan.usage(40).output_tokens) == (10, 7)
