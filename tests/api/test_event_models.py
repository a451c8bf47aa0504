"""The event record and update models read what the daemon writes, and keep what they do not know."""

from __future__ import annotations

from collections.abc import Mapping

from acp import schema

from acpd.api.events import EventRecord, EventsPage, Message, SessionUpdateNotification, UnknownUpdate
from acpd.protocol import jsonio
from acpd.protocol.events import EventRecord as WireRecord


def _wire(payload: Mapping[str, object], *, sender: str = "agent") -> str:
    record = WireRecord("s-1", 7, "2026-11-22T10:00:00.123Z", sender, 2, jsonio.dumps_str(payload))  # type: ignore[arg-type]
    return record.to_json()


def test_a_known_update_is_parsed_into_the_acp_model_with_its_meta() -> None:
    update = {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "hi"}, "_meta": {"k": 1}}
    wire = _wire({"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": "s-1", "update": update}})

    record = EventRecord.model_validate_json(wire)

    assert (record.seq, record.session_id, record.sender, record.turn) == (7, "s-1", "agent", 2)
    assert isinstance(record.update, schema.AgentMessageChunk)
    assert record.update.field_meta == {"k": 1}


def test_an_unknown_update_variant_is_kept_whole() -> None:
    update = {"sessionUpdate": "hologram", "depth": [1, 2], "_meta": {"m": True}}
    wire = _wire({"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": "s-1", "update": update}})

    record = EventRecord.model_validate_json(wire)

    assert isinstance(record.update, UnknownUpdate)
    dumped = record.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert dumped["payload"]["params"]["update"] == update


def test_a_daemon_frame_and_a_response_are_kept_as_sent() -> None:
    frame = {"jsonrpc": "2.0", "method": "_acpd/agent_exited", "params": {"code": 1, "extra": "x"}}
    response = {"jsonrpc": "2.0", "id": 3, "result": {"stopReason": "end_turn"}}

    daemon = EventRecord.model_validate_json(_wire(frame, sender="daemon"))
    agent = EventRecord.model_validate_json(_wire(response))

    assert isinstance(daemon.payload, Message) and daemon.method == "_acpd/agent_exited"
    assert daemon.update is None
    assert daemon.model_dump(mode="json", exclude_unset=True)["payload"] == frame
    assert agent.model_dump(mode="json", exclude_unset=True)["payload"] == response


def test_a_session_update_request_with_an_id_is_not_taken_for_a_notification() -> None:
    odd = {"jsonrpc": "2.0", "id": 1, "method": "session/update", "params": {"anything": 1}}

    record = EventRecord.model_validate_json(_wire(odd))

    assert not isinstance(record.payload, SessionUpdateNotification)


def test_an_events_page_reads_its_cursor_fields() -> None:
    record = _wire({"jsonrpc": "2.0", "method": "_acpd/error", "params": {}})
    body = f'{{"items":[{record}],"nextAfter":7,"hasMore":false}}'

    page = EventsPage.model_validate_json(body)

    assert (len(page.items), page.next_after, page.has_more) == (1, 7, False)
