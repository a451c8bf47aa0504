"""Daemon layer: uvicorn's protocols, with the refusals they make on their own answered as
problems instead of plain text: a request httptools cannot parse (request line, headers, chunked
body), and a WebSocket handshake websockets refuses (no or a bad ``Sec-WebSocket-Key``, an
unsupported version) or that the app closed before accepting. It changes nothing else and knows
no route; everything the app sees, the app answers."""

from __future__ import annotations

import http
from typing import Any, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.datastructures import Headers
from websockets.http11 import Response

from acpd.protocol import jsonio

from .problems import MEDIA_TYPE, problem_body

KINDS: Final = {400: "malformed-request", 403: "forbidden", 426: "upgrade-required", 500: "internal-error"}


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


class ProblemWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # websockets builds every refusal (its own, and uvicorn's 403/500) with reject()
        self.conn.reject = _problem_reject  # type: ignore[method-assign]


def _problem_reject(status: http.HTTPStatus | int, text: str) -> Response:
    status = http.HTTPStatus(status)
    body = problem_bytes(status.value, text.strip() or f"the WebSocket handshake was refused ({status.phrase})")
    headers = Headers([("Connection", "close"), ("Content-Length", str(len(body))), ("Content-Type", MEDIA_TYPE)])
    return Response(status.value, status.phrase, headers, body)
