"""Adapters layer: a stream of text chunks taken from an agent's frames without parsing each one.
Pure; no I/O.

An agent streams a reply as thousands of ``session/update`` notifications that differ only in
their text. Parsing, classifying, routing and re-encoding each cost several times more than
recording it. A ``TextTemplate`` is learned from one parsed chunk: the message encoded with a mark
in place of its text gives the bytes before and after the text. A later frame that starts and
ends with those bytes, and whose middle needs no escaping in JSON (no quote, backslash or control
character) and is valid UTF-8, is byte for byte that encoding with the middle as its text, so its
parse is the learned message with that text, known without parsing. Nothing else is taken: a
frame encoded any other way (spaces, escapes, other fields) is parsed as usual.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from acpd.adapters.base import TextEnvelope
from acpd.protocol import jsonio, methods
from acpd.protocol.framing import Frame
from acpd.protocol.jsonio import JsonObject

TEXT_KINDS: Final = frozenset({"agent_message_chunk", "agent_thought_chunk"})
_MARK: Final = "\ue000acpd-text\ue000"
TEXT_KEY: Final = b'"text":"'
"""What a template's bytes before the text end with: a frame is looked up by what precedes it."""
_ESCAPED: Final = bytes.maketrans(bytes(range(0x20)) + b"\\", b'"' * 0x21)
"""Every byte JSON must escape inside a string, as a quote: a middle needs no escaping when its
translation holds no quote (two C passes; a regex character class scans ten times slower)."""


@dataclass(frozen=True, slots=True)
class TextTemplate:
    """The bytes of one session's text chunks around their text, as its agent sends them, and the
    JSON text around it as the session records it (the daemon's session id in place of the agent's)."""

    prefix: bytes
    suffix: bytes
    session_id: str
    envelope: TextEnvelope


def learn(message: JsonObject, agent_session_id: str, session_id: str) -> TextTemplate | None:
    """The template of ``message`` when it is a text chunk for ``agent_session_id`` (as parsed,
    before the daemon's session id was put in), else None."""
    params = message.get("params")
    params = params if isinstance(params, dict) else {}
    update = params.get("update")
    update = update if isinstance(update, dict) else {}
    content = update.get("content")
    if (
        message.get("method") != methods.SESSION_UPDATE
        or not isinstance(content, dict)
        or update.get("sessionUpdate") not in TEXT_KINDS
        or content.get("type") != "text"
        or not isinstance(content.get("text"), str)
        or params.get("sessionId") != agent_session_id
    ):
        return None
    sent, kept = _around(message, agent_session_id), _around(message, session_id)
    if sent is None or kept is None or not sent[0].endswith(TEXT_KEY.decode()):
        return None
    if sent[0].find(TEXT_KEY.decode()) != len(sent[0]) - len(TEXT_KEY):
        return None  # frames are looked up by their first "text":" (see ``prefix_of``)
    envelope = TextEnvelope(str(update["sessionUpdate"]), kept[0], kept[1])
    return TextTemplate(sent[0].encode(), sent[1].encode(), agent_session_id, envelope)


def _around(message: JsonObject, session_id: str) -> tuple[str, str] | None:
    """The JSON text of ``message`` (with ``session_id``) before and after its chunk's text."""
    params = message["params"]
    update = params["update"]
    marked = {
        **message,
        "params": {
            **params,
            "sessionId": session_id,
            "update": {**update, "content": {**update["content"], "text": _MARK}},
        },
    }
    parts = jsonio.dumps_str(marked).split(_MARK)
    return (parts[0], parts[1]) if len(parts) == 2 else None


def prefix_of(frame: Frame) -> bytes | None:
    """What a template for ``frame`` would have as its prefix: the bytes up to its first ``"text":"``."""
    if not isinstance(frame, bytes):
        return None
    cut = frame.find(TEXT_KEY)
    return frame[: cut + len(TEXT_KEY)] if cut >= 0 else None


def take_texts(template: TextTemplate, frames: list[Frame], start: int, stop: int) -> list[str]:
    """The texts of the frames from ``start`` (before ``stop``) that are ``template``'s, up to the
    first that is not."""
    prefix, suffix = template.prefix, template.suffix
    head, tail = len(prefix), len(suffix)
    texts: list[str] = []
    for index in range(start, stop):
        frame = frames[index]
        if not isinstance(frame, bytes) or not frame.startswith(prefix) or not frame.endswith(suffix):
            break
        middle = frame[head : len(frame) - tail]
        if len(frame) < head + tail or b'"' in middle.translate(_ESCAPED):
            break
        try:
            texts.append(middle.decode())
        except UnicodeDecodeError:
            break
    return texts
