"""Start a real ``acpd serve`` for a benchmark, on a free port with a fresh SQLite file."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio


@asynccontextmanager
async def acpd_daemon(*extra: str) -> AsyncIterator[str]:
    """Yield the base URL of a fresh daemon (default store: SQLite in a temp dir)."""
    with tempfile.TemporaryDirectory(prefix="acpd-bench-") as home:
        env = dict(os.environ, XDG_DATA_HOME=f"{home}/data", XDG_CONFIG_HOME=f"{home}/config")
        ready_read, ready_write = os.pipe()
        with (Path(home) / "daemon.log").open("ab") as log:
            process = await anyio.open_process(
                [sys.executable, "-m", "acpd", "serve", "--port", "0", "--port-file", f"/dev/fd/{ready_write}", *extra],
                stdout=log,
                stderr=log,
                env=env,
                pass_fds=(ready_write,),
            )
        os.close(ready_write)
        try:
            line = await anyio.to_thread.run_sync(os.read, ready_read, 64)
            if not line.strip():
                raise RuntimeError(f"acpd serve did not start; see {home}/daemon.log")
            yield f"http://127.0.0.1:{int(line)}"
        finally:
            os.close(ready_read)
            process.send_signal(signal.SIGTERM)
            await process.wait()
