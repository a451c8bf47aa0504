"""Daemon layer: uvicorn's WebSocket protocol, with the handshakes it refuses answered as problems
(see ``http_protocol``, which imports this module at the first upgrade). It changes nothing else."""

from __future__ import annotations

import http
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.datastructures import Headers
from websockets.http11 import Response

from .http_protocol import problem_bytes
from .problems import MEDIA_TYPE


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
