"""A real ``acpd serve`` for the spec-driven tests, started from plain (sync) code: schemathesis
runs its cases synchronously, and an anyio fixture cannot serve a sync test. Every wait is bounded."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from acpd.private import read_token, token_path
from acpd.testing.daemon import daemon_env

START_SECONDS: Final = 20.0
STOP_SECONDS: Final = 10.0
SECRETS: Final = ("ANTHROPIC_", "OPENAI_", "GEMINI_", "GOOGLE_", "CLAUDE_", "ACPD_")
"""Credentials and settings of the user's own: never handed to the daemon under test (no real
agent may run; the generated requests reach only the mock agent)."""


@dataclass(frozen=True)
class Live:
    url: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@contextmanager
def live_daemon(home: Path) -> Iterator[Live]:
    env = {k: v for k, v in daemon_env(home).items() if not k.startswith(SECRETS)}
    ready_read, ready_write = os.pipe()
    log = (home / "daemon.log").open("ab")
    command = [sys.executable, "-m", "acpd", "serve", "--port", "0", "--port-file", f"/dev/fd/{ready_write}"]
    process = subprocess.Popen(command, stdout=log, stderr=log, env=env, pass_fds=(ready_write,), cwd=home)
    os.close(ready_write)
    try:
        readable, _, _ = select.select([ready_read], [], [], START_SECONDS)
        line = os.read(ready_read, 64) if readable else b""
        if not line.strip():
            raise RuntimeError(f"acpd serve did not listen: {(home / 'daemon.log').read_text()[-2000:]}")
        token = read_token(token_path(home / "data" / "acpd"))
        assert token is not None, "the daemon wrote no token"
        yield Live(f"http://127.0.0.1:{int(line)}", token)
    finally:
        os.close(ready_read)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_SECONDS)
        log.close()
