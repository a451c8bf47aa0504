"""Protocol layer: the one JSON codec acpd uses. Pure; no I/O.

orjson is used because every event crosses the daemon at least twice (parse, re-encode) and the
end-to-end target is 100,000 events/s; it is several times faster than the stdlib codec.
"""

from __future__ import annotations

from typing import Any, Final, TypeAlias

import orjson

JsonValue: TypeAlias = Any
"""Any JSON value (wire data): kept as ``Any`` because the wire is untyped until validated."""
JsonObject: TypeAlias = dict[str, Any]

JSONDecodeError = orjson.JSONDecodeError

MAX_NESTING: Final = 128
"""Deepest nesting of arrays and objects acpd accepts from a client. The codec parses up to 1,024
levels but encodes only 254, and the daemon wraps what it is sent in its own records before it
encodes them again: a limit at the edge, well below both, keeps a deep value a client mistake."""


def loads(data: bytes | bytearray | memoryview | str) -> JsonValue:
    """Parse JSON text. Raises ``JSONDecodeError`` (a ``ValueError``) on bad input."""
    return orjson.loads(data)


def dumps(value: JsonValue) -> bytes:
    """Encode compactly as UTF-8 bytes, never with a newline inside. Raises ``TypeError``."""
    return orjson.dumps(value)


def dumps_str(value: JsonValue) -> str:
    return orjson.dumps(value).decode()


def nesting_exceeds(data: bytes | bytearray | str, value: JsonValue, limit: int = MAX_NESTING) -> bool:
    """True if ``value`` (parsed from ``data``) nests arrays and objects deeper than ``limit``.

    Counting the brackets in ``data`` first is a bound on the depth that costs almost nothing, so
    the walk runs only for the rare large message.
    """
    brackets = data.count("[") + data.count("{") if isinstance(data, str) else data.count(b"[") + data.count(b"{")
    if brackets <= limit:
        return False
    level: list[tuple[JsonValue, int]] = [(value, 1)]
    while level:
        item, depth = level.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        level.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def object_of(value: object) -> JsonObject:
    """``value`` when it is a JSON object, else ``{}``: a field read from a peer's message."""
    return value if isinstance(value, dict) else {}


def objects_in(value: JsonValue) -> list[JsonObject]:
    """The objects of a JSON array (anything else in it skipped); ``[]`` when it is not an array."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
