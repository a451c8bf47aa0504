"""Protocol layer: pure NDJSON codec: bytes in, frames or framing errors out; no I/O, no anyio.

ACP's stdio transport puts one JSON-RPC message per line. A line longer than the limit is not
buffered: its bytes are dropped up to the next newline and a ``FrameTooLong`` takes its place,
so a misbehaving peer costs bounded memory and the stream resynchronises on the next line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from acpd.protocol import jsonio

MAX_LINE_BYTES: Final = 32 * 1024 * 1024
"""Longest accepted line, the same cap as the ACP TypeScript SDK."""


@dataclass(frozen=True, slots=True)
class FrameTooLong:
    """A line that exceeded the limit; ``size`` counts the bytes seen (at least the limit)."""

    size: int


Frame = bytes | FrameTooLong


class LineDecoder:
    """Incremental splitter of a byte stream into lines (without the newline)."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._max = max_line_bytes
        self._buffer = bytearray()
        self._discarding = 0  # > 0 while skipping the rest of an overlong line

    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes; return every complete frame they finish, in order. Blank lines are skipped."""
        end = data.rfind(b"\n")
        if end < 0:
            self._keep(data)
            return []
        if self._discarding or b"\r" in data:
            return self._feed_each(data)
        # The common case, a read of whole lines (after the end of one a read cut): one split in
        # C, no call per line.
        frames: list[Frame] = []
        start = 0
        if self._buffer:
            start = data.find(b"\n") + 1
            self._finish_line(data[: start - 1], frames)
        lines = data[start:end].split(b"\n") if start <= end else []
        if lines and max(map(len, lines)) > self._max:
            frames += self._finish_each(lines)
        else:
            frames += [line for line in lines if line.strip()]
        self._keep(data[end + 1 :])
        return frames

    def _feed_each(self, data: bytes) -> list[Frame]:
        frames: list[Frame] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                self._keep(data[start:])
                return frames
            self._finish_line(data[start:end], frames)
            start = end + 1

    def _finish_each(self, lines: list[bytes]) -> list[Frame]:
        frames: list[Frame] = []
        for line in lines:
            self._finish_line(line, frames)
        return frames

    def finish(self) -> list[Frame]:
        """At end of stream: the unterminated last line, if any, as a frame."""
        frames: list[Frame] = []
        self._finish_line(b"", frames)
        return frames

    def _keep(self, tail: bytes) -> None:
        if self._discarding:
            self._discarding += len(tail)
            return
        if len(self._buffer) + len(tail) > self._max:
            self._discarding = len(self._buffer) + len(tail)
            self._buffer.clear()
            return
        self._buffer += tail

    def _finish_line(self, piece: bytes, frames: list[Frame]) -> None:
        if self._discarding:
            frames.append(FrameTooLong(self._discarding + len(piece)))
            self._discarding = 0
            return
        if self._buffer:
            self._buffer += piece
            line = bytes(self._buffer)
            self._buffer.clear()
        else:
            line = piece
        if len(line) > self._max:
            frames.append(FrameTooLong(len(line)))
            return
        line = line.rstrip(b"\r")
        if line.strip():
            frames.append(line)


def encode_frame(message: jsonio.JsonValue) -> bytes:
    """One message as a newline-terminated line. orjson never emits a raw newline inside."""
    return jsonio.dumps(message) + b"\n"
