"""Daemon layer: uvicorn's httptools protocol, with the one refusal it makes on its own answered
as a problem: a request it cannot parse (request line, headers, chunked body) gets a 400
``application/problem+json`` instead of uvicorn's plain text. It changes nothing else and knows
no route; everything it can parse goes to the app, which answers its own refusals."""

from __future__ import annotations

from typing import Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from acpd.protocol import jsonio

from .problems import MEDIA_TYPE, PROBLEM_TYPE_PREFIX

STATUS_LINE: Final = b"HTTP/1.1 400 Bad Request\r\n"


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        body = jsonio.dumps(
            {"type": PROBLEM_TYPE_PREFIX + "malformed-request", "title": "Malformed request", "status": 400,
             "detail": f"the HTTP request could not be parsed: {msg}"}
        )  # fmt: skip
        content = [STATUS_LINE]
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
