"""The HTTP stack acpd serves on, alone, as acpd loads it: uvloop, anyio, uvicorn's server and
httptools protocol (without ``uvicorn/__init__``), Starlette, orjson, sqlite3 and logging, the
stdlib modules acpd defers deferred alike (``acpd.imports``); one route, ``/v1/health``.
``startup.py --floor`` starts it as it starts ``acpd serve`` (``serve --port 0 --port-file F``):
what it takes to answer is the floor under acpd's own start on the machine.

    python benchmarks/_stack_floor.py serve --port 0 --port-file /dev/stdout
"""

from __future__ import annotations

import sys

from acpd.imports import serving_at_first_use, without_httpx_cli

without_httpx_cli()
serving_at_first_use()

# isort: split
import logging  # noqa: E402
import socket  # noqa: E402
import sqlite3  # noqa: E402, F401  # imported as acpd's store imports it

import anyio  # noqa: E402
import orjson  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from acpd.daemon.uvicorn_parts import Config, HttpToolsProtocol, Server  # noqa: E402


async def health(request: Request) -> Response:
    return Response(orjson.dumps({"status": "ok"}), media_type="application/json")


async def serve(port: int, port_file: str) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    app = Starlette(routes=[Route("/v1/health", health, methods=["GET"])])
    # ws="none": acpd imports its WebSocket protocol at the first upgrade; uvicorn's "auto" would
    # import websockets (and importlib.metadata) at start, which acpd does not
    config = Config(
        app,
        http=HttpToolsProtocol,
        ws="none",
        lifespan="off",
        log_config=None,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
    )
    with open(port_file, "w") as file:  # noqa: ASYNC230 - a few bytes before anything is served, as acpd
        file.write(f"{sock.getsockname()[1]}\n")
    await Server(config).serve(sockets=[sock])


if __name__ == "__main__":
    words = sys.argv[1:]  # serve --port N --port-file F (read without argparse, as acpd serve reads them)
    logging.basicConfig(level="INFO")
    port, port_file = int(words[words.index("--port") + 1]), words[words.index("--port-file") + 1]
    anyio.run(serve, port, port_file, backend="asyncio", backend_options={"use_uvloop": True})
