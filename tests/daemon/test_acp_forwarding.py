"""Which logged frames a live ACP client receives as their stored bytes (no parse, no encode)."""

from __future__ import annotations

import pytest

from acpd.daemon.acp_views import client_frame, forwards_as_stored
from acpd.protocol import jsonio
from acpd.protocol.events import EventRecord, utc_now


def record(message: dict[str, object], sender: str = "agent") -> EventRecord:
    return EventRecord("s", 1, utc_now(), sender, 1, jsonio.dumps_str(message))  # type: ignore[arg-type]


def update(kind: str, **fields: object) -> dict[str, object]:
    params = {"sessionId": "s", "update": {"sessionUpdate": kind, **fields}}
    return {"jsonrpc": "2.0", "method": "session/update", "params": params}


@pytest.mark.parametrize(
    "message",
    [
        update("agent_message_chunk", content={"type": "text", "text": "hi"}),
        update("tool_call", toolCallId="t1", title="x", _meta={"any": 1}),
        update("future_kind_nobody_knows", x=[1, 2]),
    ],
)
def test_an_update_goes_out_as_stored_and_is_exactly_what_the_slow_path_sends(message: dict[str, object]) -> None:
    logged = record(message)
    assert forwards_as_stored(logged)
    frame = client_frame(logged, link_id="me", replay=False, agent_option_for=lambda: {})  # type: ignore[arg-type]
    assert frame.action == "notify" and [jsonio.dumps_str(m) for m in frame.messages] == [logged.payload]


@pytest.mark.parametrize(
    "message",
    [
        update("config_option_update", configOptions=[]),  # gets acpd's agent option
        {"jsonrpc": "2.0", "method": "session/prompt", "id": 1, "params": {}},
        {"jsonrpc": "2.0", "method": "session/request_permission", "id": 2, "params": {}},
        {"jsonrpc": "2.0", "id": 1, "result": {"stopReason": "end_turn"}},
        {"method": "session/update", "jsonrpc": "2.0", "params": {}},  # another key order: parsed as before
    ],
)
def test_anything_else_takes_the_parsing_path(message: dict[str, object]) -> None:
    assert not forwards_as_stored(record(message))
