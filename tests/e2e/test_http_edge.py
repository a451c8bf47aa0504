"""End to end, on a real daemon: what the HTTP server refuses before the app sees a request."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

from acpd.daemon.ws import MAX_MESSAGE_BYTES
from acpd.protocol import jsonio
from acpd.testing.daemon import running_daemon

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def test_a_request_the_server_cannot_parse_gets_a_400_problem(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon:
        host, port = daemon.url.removeprefix("http://").split(":")
        with anyio.fail_after(10):
            async with await anyio.connect_tcp(host, int(port)) as stream:
                await stream.send(b"GET /v1/health HTTP/1.1\r\nHost: " + host.encode() + b"\r\nBad Header\r\n\r\n")
                answer = b""
                try:
                    while True:
                        answer += await stream.receive()
                except anyio.EndOfStream:
                    pass
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"content-type: application/problem+json" in head.lower()
    assert jsonio.loads(body)["type"] == "urn:acpd:problem:malformed-request"


async def test_a_websocket_message_up_to_32_mib_is_served_and_a_bigger_one_closes_with_1009(tmp_path: Path) -> None:
    def request(padding: int) -> str:
        return '{"jsonrpc":"2.0","id":1,"method":"nope","params":{"pad":"' + "x" * padding + '"}}'

    async with running_daemon(tmp_path) as daemon:
        url = daemon.url.replace("http://", "ws://") + "/v1/rpc"
        with anyio.fail_after(60):
            async with connect(url, max_size=None) as ws:
                await ws.send(request(24 * 1024 * 1024))  # over uvicorn's default of 16 MiB
                answer = jsonio.loads(await ws.recv())
                assert (answer["id"], answer["error"]["code"]) == (1, -32601)
                await ws.send(request(MAX_MESSAGE_BYTES))
                with pytest.raises(ConnectionClosedError) as closed:
                    await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009
