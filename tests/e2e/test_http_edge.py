"""End to end, on a real daemon: what the HTTP server refuses before the app sees a request."""

from __future__ import annotations

import contextlib
from pathlib import Path

import anyio
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

from acpd.daemon.http_protocol import MAX_MESSAGE_BYTES
from acpd.protocol import jsonio
from acpd.testing.daemon import running_daemon

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def raw_exchange(url: str, request: bytes) -> tuple[bytes, bytes]:
    """Send ``request`` as is; the answer's head and body (the server closes after it)."""
    host, port = url.removeprefix("http://").split(":")
    answer = b""
    with anyio.fail_after(10):
        async with await anyio.connect_tcp(host, int(port)) as stream:
            await stream.send(request.replace(b"<host>", f"{host}:{port}".encode()))
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                while True:
                    answer += await stream.receive()
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


UPGRADE = b"GET /v1/rpc HTTP/1.1\r\nHost: <host>\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "status", "kind"),
    [
        (b"GET /v1/health HTTP/1.1\r\nHost: <host>\r\nBad Header\r\n\r\n", 400, "malformed-request"),
        (b"GET /v1/sessions/\xff HTTP/1.1\r\nHost: <host>\r\n\r\n", 400, "malformed-request"),
        (b"POST /v1/sessions HTTP/1.1\r\nHost: <host>\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
         400, "malformed-request"),
        (UPGRADE + b"Sec-WebSocket-Version: 13\r\n\r\n", 400, "malformed-request"),  # no Sec-WebSocket-Key
        (UPGRADE + b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
         b"Origin: http://evil.example\r\n\r\n", 403, "origin-not-allowed"),
    ],
    ids=["bad-header", "non-ascii-path", "bad-chunk", "websocket-without-key", "websocket-from-a-foreign-origin"],
)  # fmt: skip
async def test_a_request_refused_below_the_app_gets_a_problem(
    tmp_path: Path, request_bytes: bytes, status: int, kind: str
) -> None:
    async with running_daemon(tmp_path) as daemon:
        head, body = await raw_exchange(daemon.url, request_bytes)
    assert head.startswith(b"HTTP/1.1 %d " % status), head
    assert b"content-type: application/problem+json" in head.lower()
    assert jsonio.loads(body)["type"] == f"urn:acpd:problem:{kind}"


async def test_a_websocket_message_up_to_32_mib_is_served_and_a_bigger_one_closes_with_1009(tmp_path: Path) -> None:
    def request(padding: int) -> str:
        return '{"jsonrpc":"2.0","id":1,"method":"nope","params":{"pad":"' + "x" * padding + '"}}'

    async with running_daemon(tmp_path) as daemon:
        url = daemon.url.replace("http://", "ws://") + "/v1/rpc"
        with anyio.fail_after(60):
            async with connect(url, max_size=None, additional_headers=daemon.headers) as ws:
                await ws.send(request(24 * 1024 * 1024))  # over uvicorn's default of 16 MiB
                answer = jsonio.loads(await ws.recv())
                assert (answer["id"], answer["error"]["code"]) == (1, -32601)
                with pytest.raises(ConnectionClosedError) as closed:
                    # uncompressed on loopback: the 1009 may come while the frame is still being sent
                    await ws.send(request(MAX_MESSAGE_BYTES))
                    await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009
