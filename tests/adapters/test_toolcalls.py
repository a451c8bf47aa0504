"""The tool-call ledger: one coherent lifecycle per tool call, whatever order the agent used."""

from __future__ import annotations

from acpd.adapters.toolcalls import (
    MAX_TRACKED_CALLS,
    UNKNOWN_CONTEXT_SIZE_TOKENS,
    ToolCallLedger,
    usage_of,
    usage_update_for,
)
from acpd.protocol.jsonio import JsonObject


def call(status: str = "pending", kind: str = "tool_call", **fields: object) -> JsonObject:
    return {"sessionUpdate": kind, "toolCallId": "c1", "status": status, **fields}


def test_the_ordinary_order_passes_through_unchanged() -> None:
    ledger = ToolCallLedger()
    first, done = call(title="Run"), call("completed", "tool_call_update")
    assert ledger.on_update(first) == [first]
    assert ledger.on_permission({"toolCallId": "c1", "title": "Run"}) is None
    assert ledger.on_update(done) == [done]
    assert ledger.close_open("end_turn") == []


def test_a_permission_for_an_unannounced_call_announces_it_first_codex_style() -> None:
    ledger = ToolCallLedger()
    announced = ledger.on_permission(
        {"toolCallId": "c1", "title": "echo hi", "kind": "execute", "status": "in_progress"}
    )
    assert announced == {
        "sessionUpdate": "tool_call",
        "toolCallId": "c1",
        "title": "echo hi",
        "kind": "execute",
        "status": "pending",
        "_meta": {"acpd": {"synthesized": "session/request_permission"}},
    }
    # codex-acp then sends its tool_call after approval: it becomes an update of the same call.
    [progress] = ledger.on_update(call("in_progress", rawInput={"command": ["echo", "hi"]}))
    assert progress["sessionUpdate"] == "tool_call_update"
    assert progress["_meta"] == {"acpd": {"rewritten": "tool_call"}}
    assert progress["rawInput"] == {"command": ["echo", "hi"]}


def test_an_update_for_an_unknown_call_announces_it_and_keeps_the_agents_meta() -> None:
    ledger = ToolCallLedger()
    [announced] = ledger.on_update(call("completed", "tool_call_update", _meta={"gemini": 1}))
    assert announced["sessionUpdate"] == "tool_call"
    assert announced["title"] == "Tool call"
    assert announced["_meta"] == {"gemini": 1, "acpd": {"rewritten": "tool_call_update"}}
    assert ledger.close_open("end_turn") == []


def test_calls_left_open_are_failed_at_the_end_of_the_turn_saying_why() -> None:
    ledger = ToolCallLedger()
    ledger.on_update(call("in_progress"))
    ledger.on_update({**call(), "toolCallId": "c2"})
    ledger.on_update({**call("failed", "tool_call_update"), "toolCallId": "c2"})
    [closed] = ledger.close_open("cancelled")
    assert closed == {
        "sessionUpdate": "tool_call_update",
        "toolCallId": "c1",
        "status": "failed",
        "_meta": {"acpd": {"synthesized": "cancelled"}},
    }
    assert ledger.close_open("end_turn") == []


def test_other_updates_and_malformed_permissions_are_left_alone() -> None:
    ledger = ToolCallLedger()
    chunk: JsonObject = {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "x"}}
    assert ledger.on_update(chunk) == [chunk]
    assert ledger.on_permission("not an object") is None
    assert ledger.on_permission({"title": "no id"}) is None


def test_gemini_quota_becomes_acp_usage() -> None:
    result: JsonObject = {"_meta": {"quota": {"token_count": {"input_tokens": 431, "output_tokens": 24}}}}
    assert usage_of(result) == {"inputTokens": 431, "outputTokens": 24, "totalTokens": 455}
    assert usage_of({"stopReason": "end_turn"}) is None


def test_a_late_report_for_a_closed_call_does_not_reopen_it() -> None:
    ledger = ToolCallLedger()
    ledger.on_update(call("in_progress"))
    ledger.close_open("cancelled")
    [late] = ledger.on_update(call("in_progress", "tool_call_update", content=[{"type": "content"}]))
    assert "status" not in late
    assert late["_meta"] == {"acpd": {"late": "closed"}}
    assert late["content"] == [{"type": "content"}]
    assert ledger.close_open("end_turn") == []


def test_tokens_reported_only_in_an_answer_become_a_marked_usage_update() -> None:
    result = {"stopReason": "end_turn", "_meta": {"quota": {"token_count": {"input_tokens": 90, "output_tokens": 10}}}}
    usage = usage_of(result)
    assert usage == {"inputTokens": 90, "outputTokens": 10, "totalTokens": 100}
    assert usage_update_for(usage, None) == {
        "sessionUpdate": "usage_update",
        "used": 100,
        "size": UNKNOWN_CONTEXT_SIZE_TOKENS,
        "_meta": {"acpd": {"turnTokens": 100, "synthesized": "session/prompt"}},
    }
    assert usage_update_for({"inputTokens": 5, "outputTokens": 2}, 8_000)["size"] == 8_000  # type: ignore[index]
    assert usage_update_for({"totalTokens": "many"}, None) is None


def test_a_ledger_remembers_a_bounded_number_of_calls_forgetting_closed_ones_first() -> None:
    ledger = ToolCallLedger()
    ledger.on_update({"sessionUpdate": "tool_call", "toolCallId": "still-open", "title": "t", "status": "pending"})
    for n in range(3 * MAX_TRACKED_CALLS):
        ledger.on_update({"sessionUpdate": "tool_call", "toolCallId": f"c{n}", "title": "t", "status": "completed"})
        assert len(ledger) <= MAX_TRACKED_CALLS
    closing = ledger.close_open("end_turn")
    assert [u["toolCallId"] for u in closing] == ["still-open"]
