"""Daemon layer: uvicorn's protocols, with the refusals they make on their own answered as
problems instead of plain text: a request httptools cannot parse (request line, headers, chunked
body), and a WebSocket handshake websockets refuses (no or a bad ``Sec-WebSocket-Key``, an
unsupported version) or that the app closed before accepting. It changes nothing else and knows
no route; everything the app sees, the app answers. The WebSocket protocol (``ws_protocol``) is
imported at the first upgrade: websockets and uvicorn's protocol on it are ~20 ms of the start."""

from __future__ import annotations

import asyncio
from typing import Any, Final

from acpd.protocol import jsonio

from .problems import MEDIA_TYPE, problem_body
from .uvicorn_parts import HttpToolsProtocol

KINDS: Final = {400: "malformed-request", 403: "forbidden", 426: "upgrade-required", 500: "internal-error"}


TEXT_FRAMES_EXTENSION: Final = "acpd.websocket.text_frames"
"""The ASGI scope extension through which ``ws_protocol`` offers the app a direct text-frame writer."""


def problem_bytes(status: int, detail: str) -> bytes:
    return jsonio.dumps(problem_body(status, KINDS.get(status, "websocket-refused"), detail))


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        body = problem_bytes(400, f"the HTTP request could not be parsed: {msg}")
        content = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: " + MEDIA_TYPE.encode() + b"\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()


def websocket_protocol(**kwargs: Any) -> asyncio.Protocol:
    """What uvicorn makes of a connection it upgrades (it calls its ``ws`` setting with these
    arguments): ``ws_protocol.ProblemWebSocketProtocol``, imported the first time."""
    from .ws_protocol import ProblemWebSocketProtocol

    return ProblemWebSocketProtocol(**kwargs)
