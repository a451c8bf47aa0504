"""Test kit: a real ``acpd serve`` process on 127.0.0.1 with a free port, for end-to-end tests and benchmarks.

Readiness is signalled, not polled: the daemon writes its port into a pipe we read. The daemon
runs as a user's would, with the token it generates in its data directory; ``Daemon`` carries it
(``headers``, ``client()``), and acpd's own commands run with ``daemon_env`` find it themselves.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio
import httpx
from anyio.abc import Process

from acpd.private import read_token, token_path

START_TIMEOUT_SECONDS: Final = 20.0
STOP_TIMEOUT_SECONDS: Final = 10.0
LOG_TAIL_BYTES: Final = 2000
CLIENT_TIMEOUT_SECONDS: Final = 30.0
"""A request's own bound in ``Daemon.client``: the tests bound their waits themselves
(``anyio.fail_after``); httpx's 5 s default failed a first prompt that loads a backend's SDK in a
fresh daemon on a loaded machine, inside a test that allowed it 30 s."""


@dataclass
class Daemon:
    process: Process
    url: str
    log_path: Path
    token: str | None = None
    """The bearer token clients must send; None when started with ``--no-auth``."""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self, **options: Any) -> httpx.AsyncClient:
        """An HTTP client of the daemon that sends the token (``CLIENT_TIMEOUT_SECONDS`` unless
        ``timeout`` is given)."""
        options.setdefault("timeout", CLIENT_TIMEOUT_SECONDS)
        return httpx.AsyncClient(base_url=self.url, headers=self.headers, **options)

    async def kill(self) -> None:
        """SIGKILL the daemon (a crash, as far as it can tell) and reap it."""
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()


def daemon_env(home: Path) -> dict[str, str]:
    """The environment with HOME and the XDG directories inside ``home``: nothing of the user's is touched."""
    env = dict(os.environ)
    env.update(XDG_DATA_HOME=str(home / "data"), XDG_CONFIG_HOME=str(home / "config"), HOME=str(home))
    return env


@asynccontextmanager
async def running_daemon(
    home: Path, *extra: str, env: Mapping[str, str] | None = None, wrapper: Sequence[str] = ()
) -> AsyncIterator[Daemon]:
    """Start ``acpd serve --port 0 [extra…]`` with its data under ``home``; SIGTERM it on exit.

    ``env`` adds to (and overrides) the daemon's environment. ``wrapper`` is a command that runs
    the daemon as its own child (``strace -f -o FILE``, say); it is sent the SIGTERM.

    Raises:
        RuntimeError: it exited before listening (the message ends with its log's tail).
    """
    log_path = home / "daemon.log"
    ready_read, ready_write = os.pipe()
    with log_path.open("ab") as log:
        process = await anyio.open_process(
            [
                *wrapper,
                sys.executable,
                "-m",
                "acpd",
                "serve",
                "--port",
                "0",
                "--port-file",
                f"/dev/fd/{ready_write}",
                *extra,
            ],
            stdout=log,
            stderr=log,
            env={**daemon_env(home), **(env or {})},
            pass_fds=(ready_write,),
        )
    os.close(ready_write)
    try:
        with anyio.fail_after(START_TIMEOUT_SECONDS):
            line = await anyio.to_thread.run_sync(os.read, ready_read, 64, abandon_on_cancel=True)
        if not line.strip():
            tail = log_path.read_bytes()[-LOG_TAIL_BYTES:].decode(errors="replace")
            raise RuntimeError(f"acpd serve exited before listening; its log ends with:\n{tail}")
        token = None if "--no-auth" in extra else read_token(token_path(_data_dir(home, extra)))
        yield Daemon(process, f"http://127.0.0.1:{int(line)}", log_path, token)
    finally:
        os.close(ready_read)
        await _stop(process)


def _data_dir(home: Path, extra: tuple[str, ...]) -> Path:
    """Where the daemon keeps its token: ``--data-dir`` if given, else the default under ``home``."""
    for index, word in enumerate(extra):
        if word == "--data-dir" and index + 1 < len(extra):
            return Path(extra[index + 1])
        if word.startswith("--data-dir="):
            return Path(word.partition("=")[2])
    return home / "data" / "acpd"


async def _stop(process: Process) -> None:
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    with anyio.move_on_after(STOP_TIMEOUT_SECONDS) as scope:
        await process.wait()
    if scope.cancelled_caught:
        process.kill()
        await process.wait()
