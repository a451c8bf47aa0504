"""Text chunks taken without parsing: a frame is taken only when it is byte for byte the learned
chunk's encoding with another text, so what it stands for is exactly what its parse would be."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from acpd.adapters.chunks import TextTemplate, learn, prefix_of, take_texts
from acpd.protocol import jsonio
from acpd.protocol.framing import Frame, FrameTooLong
from tests.strategies import property_settings

AGENT_ID = "agent-session-1"
DAEMON_ID = "daemon-session-9"


def chunk(text: str, session_id: str = AGENT_ID, kind: str = "agent_message_chunk", **extra: Any) -> dict[str, Any]:
    update = {"sessionUpdate": kind, "content": {"type": "text", "text": text}, **extra}
    return {"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": session_id, "update": update}}


def template(**extra: Any) -> TextTemplate:
    learned = learn(chunk("first", **extra), AGENT_ID, DAEMON_ID)
    assert learned is not None
    return learned


def take(learned: TextTemplate, frames: list[Frame]) -> list[str]:
    return take_texts(learned, frames, 0, len(frames))


@property_settings(200)
@given(text=st.text(max_size=40), kind=st.sampled_from(["agent_message_chunk", "agent_thought_chunk"]))
def test_a_taken_frame_stands_for_exactly_its_parse_and_its_record_for_exactly_the_parsers(
    text: str, kind: str
) -> None:
    learned = learn(chunk("first", kind=kind), AGENT_ID, DAEMON_ID)
    assert learned is not None
    frame = jsonio.dumps(chunk(text, kind=kind))
    taken = take(learned, [frame])
    if taken:
        assert taken == [text]
        assert jsonio.loads(frame) == chunk(text, kind=kind)
        envelope = learned.envelope
        assert envelope.kind == kind
        assert envelope.prefix + text + envelope.suffix == jsonio.dumps_str(chunk(text, DAEMON_ID, kind))
    else:
        assert any(c in text for c in '"\\') or any(ord(c) < 0x20 for c in text)


def test_frames_that_need_escaping_or_are_encoded_otherwise_are_left_to_the_parser() -> None:
    learned = template()
    others: list[Frame] = [
        jsonio.dumps(chunk('say "hi"')),
        jsonio.dumps(chunk("a\\b")),
        jsonio.dumps(chunk("line\nbreak")),
        jsonio.dumps(chunk("x", kind="agent_thought_chunk")),
        jsonio.dumps(chunk("x", session_id="another")),
        jsonio.dumps(chunk("x", _meta={"id": 1})),
        jsonio.dumps(chunk("x")).replace(b'"text":"x"', b'"text": "x"'),
        jsonio.dumps(chunk("x")) + b" ",
        jsonio.dumps(chunk("\u00e9")).replace("\u00e9".encode(), b"\xe9"),  # not UTF-8
        jsonio.dumps(chunk("x")).replace(b'"x"', b'"\xed\xa0\x80"'),  # a lone surrogate
        jsonio.dumps(chunk("x")).replace(b'"x"', b'"\x01"'),  # a raw control character
        FrameTooLong(10**9),
    ]
    for frame in others:
        assert take(learned, [frame]) == [], frame


def test_a_run_is_taken_up_to_the_first_frame_that_is_not_the_templates() -> None:
    learned = template()
    frames: list[Frame] = [jsonio.dumps(chunk(f"c{i} ")) for i in range(3)]
    frames.insert(2, jsonio.dumps(chunk('"quoted"')))
    assert take(learned, frames) == ["c0 ", "c1 "]
    assert take_texts(learned, frames, 3, 4) == ["c2 "]
    assert prefix_of(frames[0]) == learned.prefix


def test_only_a_text_chunk_for_the_session_as_the_agent_sent_it_is_learned() -> None:
    assert learn(chunk("x", session_id="another"), AGENT_ID, DAEMON_ID) is None
    assert learn(chunk("x", kind="tool_call"), AGENT_ID, DAEMON_ID) is None
    image = chunk("x")
    image["params"]["update"]["content"] = {"type": "image", "data": "AAAA", "mimeType": "image/png"}
    assert learn(image, AGENT_ID, DAEMON_ID) is None
    # an earlier "text":" in the envelope: frames would be looked up by that one, so none is learned
    early = chunk("x")
    early["params"]["update"] = {"_meta": {"text": "y"}, **early["params"]["update"]}
    assert learn(early, AGENT_ID, DAEMON_ID) is None
    assert learn(chunk("x", _meta={"text": "y"}), AGENT_ID, DAEMON_ID) is not None  # after it: fine
