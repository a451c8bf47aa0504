"""Transports layer: a Transport that also writes every frame it moves to a JSON-lines file.

For ``--record-agents DIR``: the raw conversation with an agent, for bug reports and for the
golden files of the translation tests. Each line is ``{"dir": "out"|"in", "frame": <message>}``
(``out``: to the agent). Frames are copied as they are (but for what ``scrub`` masks, secrets); a
frame that is not JSON is kept as a string. Never interprets a message.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

from acpd.protocol import jsonio
from acpd.protocol.framing import Frame, FrameTooLong
from acpd.transports.base import Transport


class RecordingTransport:
    """Wraps ``inner``; appends to ``path`` (created with its parents) until closed."""

    def __init__(self, inner: Transport, path: Path, *, scrub: Callable[[str], str] | None = None) -> None:
        self._inner = inner
        self._scrub = scrub
        # Recordings hold prompts, file contents and MCP servers' env: for the user's eyes only.
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.fchmod(descriptor, 0o600)  # a file an older acpd left readable becomes private too
        self._file: io.BufferedWriter | None = open(descriptor, "ab")  # noqa: SIM115 - closed in aclose

    async def send(self, frame: bytes) -> None:
        self._write("out", frame)
        await self._inner.send(frame)

    async def receive(self) -> list[Frame]:
        frames = await self._inner.receive()
        for frame in frames:
            self._write("in", frame)
        return frames

    async def aclose(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        await self._inner.aclose()

    def _write(self, direction: str, frame: Frame) -> None:
        if self._file is None:
            return
        if isinstance(frame, FrameTooLong):
            value: object = f"<frame of {frame.size} bytes>"
        else:
            try:
                value = jsonio.loads(frame)
            except ValueError:
                value = frame.decode("utf-8", "replace")
        line = jsonio.dumps_str({"dir": direction, "frame": value})
        if self._scrub is not None:
            line = self._scrub(line)
        self._file.write(line.encode() + b"\n")
        self._file.flush()  # a crash must not lose what led to it
