"""claude-native's memory rebuilt from an event log, record by record (pure, no daemon)."""

from __future__ import annotations

from typing import Any

from acpd.adapters.claude_native.history import TURN_STOPPED, add_prompt, forget_prompt, rebuild
from acpd.protocol import jsonio
from acpd.protocol.events import EventRecord, Sender


class Log:
    """A session log being written, as the daemon would for a claude-native session."""

    def __init__(self) -> None:
        self.records: list[EventRecord] = []
        self.prompts = 0

    def add(self, sender: Sender, payload: dict[str, Any]) -> None:
        seq = len(self.records) + 1
        self.records.append(EventRecord("s", seq, "2026-11-22T00:00:00.000Z", sender, 1, jsonio.dumps_str(payload)))

    def prompt(self, text: str) -> str:
        self.prompts += 1
        request_id = f"prompt-{self.prompts}"
        params = {"sessionId": "s", "prompt": [{"type": "text", "text": text}]}
        self.add("client", {"jsonrpc": "2.0", "id": request_id, "method": "session/prompt", "params": params})
        return request_id

    def answer(self, request_id: str, stop_reason: str = "end_turn") -> None:
        self.add("agent", {"jsonrpc": "2.0", "id": request_id, "result": {"stopReason": stop_reason}})

    def update(self, update: dict[str, Any]) -> None:
        self.add(
            "agent", {"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": "s", "update": update}}
        )

    def text(self, text: str) -> None:
        self.update({"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": text}})

    def tool(self, call_id: str, args: Any, result: str) -> None:
        use = {"id": call_id, "name": "Glob", "input": args}
        self.update({"sessionUpdate": "tool_call", "toolCallId": call_id, "_meta": {"claudeNative": {"toolUse": use}}})
        native = {"toolResult": {"id": call_id, "text": result, "isError": False}}
        self.update({"sessionUpdate": "tool_call_update", "toolCallId": call_id, "_meta": {"claudeNative": native}})

    def daemon(self, method: str, params: dict[str, Any]) -> None:
        self.add("daemon", {"jsonrpc": "2.0", "method": method, "params": params})


def text_of(message: dict[str, Any]) -> list[str]:
    return [str(block.get("text", block.get("type"))) for block in message["content"]]


def test_a_prompt_the_daemon_was_stopped_in_stays_in_the_conversation_whatever_starts_the_agent() -> None:
    log = Log()
    log.answer(log.prompt("first"))
    log.text("one")
    log.prompt("second, never answered")
    log.daemon("_acpd/turn_interrupted", {"turn": 2, "reason": "daemon restarted"})
    messages = rebuild(log.records).messages
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert text_of(messages[-1]) == ["second, never answered"]


def test_the_prompt_now_starting_is_left_for_the_agent_to_add() -> None:
    log = Log()
    log.answer(log.prompt("first"))
    log.text("one")
    log.prompt("the one starting")
    assert [m["role"] for m in rebuild(log.records).messages] == ["user", "assistant"]


def test_a_failed_model_calls_partial_text_is_left_out() -> None:
    log = Log()
    request = log.prompt("hello")
    log.text("half an ans")
    log.daemon("_acpd/error", {"code": "MODEL_STREAM_CUT", "message": "cut", "data": {"attempt": 1}})
    log.text("whole answer")
    log.answer(request)
    assert text_of(rebuild(log.records).messages[1]) == ["whole answer"]


def test_a_prompt_after_a_stopped_tool_step_comes_after_a_note_that_closes_the_tool_loop() -> None:
    log = Log()
    request = log.prompt("look")
    log.tool("toolu_1", {"pattern": "*"}, "a.txt")
    log.answer(request, "cancelled")
    log.answer(log.prompt("go on"))
    messages = rebuild(log.records).messages
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert text_of(messages[3]) == [TURN_STOPPED]
    assert text_of(messages[4]) == ["go on"]


def test_blank_text_and_a_tool_input_that_is_not_an_object_are_made_acceptable() -> None:
    log = Log()
    request = log.prompt("look")
    log.text("  \n")
    log.tool("toolu_1", [1, 2], "no files")
    log.text("done")
    log.answer(request)
    messages = rebuild(log.records).messages
    assert messages[1]["content"] == [{"type": "tool_use", "id": "toolu_1", "name": "Glob", "input": {}}]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]


def test_forgetting_an_unanswered_prompt_undoes_what_adding_it_did() -> None:
    tools_open = [
        {"role": "user", "content": [{"type": "text", "text": "look"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Glob", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x"}]},
    ]
    unanswered = [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]
    for before in (tools_open, unanswered, []):
        messages = [dict(m, content=list(m["content"])) for m in before]
        mark = add_prompt(messages, [{"type": "text", "text": "new"}])
        assert messages[-1]["content"][-1] == {"type": "text", "text": "new"}
        forget_prompt(messages, mark)
        assert messages == before


def test_a_prompt_after_a_tool_the_daemon_was_stopped_in_follows_its_interrupted_result_and_the_note() -> None:
    log = Log()
    log.prompt("run it")
    use = {"id": "toolu_1", "name": "Bash", "input": {"command": "sleep 60"}}
    log.update({"sessionUpdate": "tool_call", "toolCallId": "toolu_1", "_meta": {"claudeNative": {"toolUse": use}}})
    log.daemon("_acpd/turn_interrupted", {"turn": 1, "reason": "daemon restarted"})
    log.answer(log.prompt("what happened?"))
    log.text("it was stopped")
    messages = rebuild(log.records).messages
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user", "assistant"]
    assert messages[2]["content"][0]["is_error"] and text_of(messages[3]) == [TURN_STOPPED]
    assert text_of(messages[4]) == ["what happened?"]


def test_blank_text_after_a_stopped_tool_step_does_not_hide_the_open_tool_loop() -> None:
    log = Log()
    request = log.prompt("look")
    log.tool("toolu_1", {"pattern": "*"}, "a.txt")
    log.text(" ")
    log.answer(request, "cancelled")
    log.prompt("go on")
    log.daemon("_acpd/turn_interrupted", {"turn": 2, "reason": "daemon restarted"})
    messages = rebuild(log.records).messages
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert text_of(messages[3]) == [TURN_STOPPED] and text_of(messages[4]) == ["go on"]
