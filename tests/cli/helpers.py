"""Running ``acpd`` as a person does: a real subprocess, its exit code, stdout and stderr."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import anyio

from acpd.testing.daemon import Daemon, daemon_env

RUN_TIMEOUT_SECONDS: Final = 30.0


async def run_acpd(
    *args: str, home: Path, env: Mapping[str, str] | None = None, stdout: Any = subprocess.PIPE
) -> subprocess.CompletedProcess[str]:
    """``python -m acpd ARGS`` with its data and config under ``home``; output decoded."""
    with anyio.fail_after(RUN_TIMEOUT_SECONDS):
        done = await anyio.run_process(
            [sys.executable, "-m", "acpd", *args],
            env={**daemon_env(home), **(env or {})},
            stdout=stdout,
            check=False,
        )
    return subprocess.CompletedProcess(
        done.args, done.returncode, (done.stdout or b"").decode(), (done.stderr or b"").decode()
    )


def against(daemon: Daemon) -> tuple[str, ...]:
    """The options that point a client command at ``daemon`` (its token comes from ``home``)."""
    return ("--url", daemon.url)


def one_line(err: str) -> str:
    """``err``, asserted to be a single line with no traceback."""
    assert "Traceback" not in err and "Exception ignored" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]
