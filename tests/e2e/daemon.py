"""A real ``acpd serve`` process for end-to-end tests, on 127.0.0.1 with a free port."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
from anyio.abc import Process

from acpd.protocol import jsonio


@dataclass
class Daemon:
    process: Process
    url: str
    log_path: Path

    async def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()


def daemon_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(XDG_DATA_HOME=str(home / "data"), XDG_CONFIG_HOME=str(home / "config"), HOME=str(home))
    return env


@asynccontextmanager
async def running_daemon(home: Path, *extra: str) -> AsyncIterator[Daemon]:
    """Start ``acpd serve --port 0`` and wait until it listens: it writes its port into a pipe we read."""
    log_path = home / "daemon.log"
    ready_read, ready_write = os.pipe()
    with log_path.open("ab") as log:
        process = await anyio.open_process(
            [sys.executable, "-m", "acpd", "serve", "--port", "0", "--port-file", f"/dev/fd/{ready_write}", *extra],
            stdout=log,
            stderr=log,
            env=daemon_env(home),
            pass_fds=(ready_write,),
        )
    os.close(ready_write)
    try:
        with anyio.fail_after(20):
            line = await anyio.to_thread.run_sync(os.read, ready_read, 64, abandon_on_cancel=True)
        if not line.strip():
            raise RuntimeError(f"acpd serve exited before listening; see {log_path}")
        yield Daemon(process, f"http://127.0.0.1:{int(line)}", log_path)
    finally:
        os.close(ready_read)
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            with anyio.move_on_after(10) as scope:
                await process.wait()
            if scope.cancelled_caught:
                process.kill()
                await process.wait()


async def sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            yield jsonio.loads(line[6:])
