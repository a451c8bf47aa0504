"""Daemon layer: ``POST /v1/agents/{name}/install``: a preset's pinned npm packages installed into the
daemon's agents directory (what ``acpd agents install`` does from the command line), its progress
streamed as SSE while it runs: ``event: progress`` (``name``, ``elapsedSeconds``, ``bytesOnDisk``)
about twice a second, then ``event: done`` (``name``, ``program``) or ``event: error`` (a problem
object, ``install-failed``, with npm's output tail in ``data``).

One install of a preset at a time (a second is a 409 while it runs). The install belongs to the
request: a client that goes away stops it (and npm with it). The installing is ``install``'s; this
module only streams it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from acpd.errors import AgentNotFound, Conflict, InstallFailed
from acpd.protocol import jsonio

from . import sse
from .http import manager_of
from .problems import problem_body

if TYPE_CHECKING:
    from acpd.presets import Preset

INSTALLING: Final = "installing"
"""The app state's set of the presets being installed."""


async def install(request: Request) -> Response:
    from acpd.presets import PRESETS  # the presets' table: at the first install, not at start

    name = request.path_params["name"]
    preset = PRESETS.get(name)
    if preset is None:
        raise AgentNotFound(f"no preset named {name!r}; installable agents: {', '.join(PRESETS)}")
    running: set[str] = request.app.state.__dict__.setdefault(INSTALLING, set())
    if name in running:
        raise Conflict(f"{name} is being installed already")
    running.add(name)
    return _InstallStream(preset, manager_of(request).config.resolved_agents_dir(), running)


class _InstallStream(StreamingResponse):
    """The install, run while the answer is sent: its events go out as they happen."""

    def __init__(self, preset: Preset, agents_dir: Any, running: set[str]) -> None:
        super().__init__((), media_type="text/event-stream", headers=sse.HEADERS)
        self._preset = preset
        self._agents_dir = agents_dir
        self._running = running

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await self._stream(send)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self._running.discard(self._preset.name)

    async def _stream(self, send: Send) -> None:
        from .install import Progress, install_preset  # npm's machinery: at the first install only

        events, received = anyio.create_memory_object_stream[tuple[str, dict[str, Any]]](math.inf)

        def progress(step: Progress) -> None:
            body = {
                "name": step.name,
                "elapsedSeconds": round(step.elapsed_seconds, 1),
                "bytesOnDisk": step.bytes_on_disk,
            }
            events.send_nowait(("progress", body))

        async def run() -> None:
            with events:
                try:
                    program = await install_preset(self._preset, self._agents_dir, progress)
                except InstallFailed as exc:
                    events.send_nowait(("error", problem_body(exc.status, exc.kind, exc.message, data=exc.data)))
                else:
                    events.send_nowait(("done", {"name": self._preset.name, "program": str(program)}))

        async with anyio.create_task_group() as tg, received:
            tg.start_soon(run)
            async for event, body in received:
                chunk = f"event: {event}\ndata: {jsonio.dumps_str(body)}\n\n".encode()
                await send({"type": "http.response.body", "body": chunk, "more_body": True})


ROUTES: Final = [Route("/v1/agents/{name}/install", install, methods=["POST"])]
