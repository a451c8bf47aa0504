"""End-to-end helper: the pinned third-party ACP clients in tests/clients (installed by
scripts/setup-clients), run as child processes that print one JSON object per line."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import anyio
import pytest

from acpd.protocol import jsonio
from acpd.testing.daemon import daemon_env

CLIENTS_DIR: Final = Path(__file__).resolve().parents[1] / "clients"
STAMP: Final = CLIENTS_DIR / "node_modules" / ".acpd-clients-installed"
RUN_TIMEOUT_SECONDS: Final = 60.0
REQUIRE_ENV: Final = "ACPD_REQUIRE_CLIENTS"
"""Set (as .ci/run does) to fail rather than skip when the clients are not installed."""


def require_clients() -> Path:
    if not STAMP.is_file():
        message = "the Node ACP clients are not installed: run scripts/setup-clients"
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(message)
        pytest.skip(message)
    return CLIENTS_DIR


def acpd_acp(*args: str) -> list[str]:
    return [sys.executable, "-m", "acpd", "acp", *args]


def client_env(home: Path, cwd: Path) -> dict[str, str]:
    return {**daemon_env(home), "ACP_CWD": str(cwd)}


async def run_node(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    with anyio.fail_after(RUN_TIMEOUT_SECONDS):
        return await anyio.run_process(argv, env=env, cwd=cwd, check=False)


async def run_steps(script: str, args: list[str], env: dict[str, str], cwd: Path) -> dict[str, dict[str, Any]]:
    """Run a tests/clients script; its JSON lines by ``step`` (the last of each name wins)."""
    done = await run_node(["node", str(require_clients() / script), *args], env, cwd)
    lines = [jsonio.loads(line) for line in done.stdout.splitlines() if line.startswith(b"{")]
    steps = {line["step"]: line for line in lines}
    assert done.returncode == 0, f"{script} failed: {steps.get('error')}\n{done.stderr.decode()[-3000:]}"
    return steps


async def run_acpx(args: list[str], agent: list[str], env: dict[str, str], cwd: Path) -> list[dict[str, Any]]:
    """Run acpx against ``agent``; its JSON output lines."""
    acpx = require_clients() / "node_modules" / ".bin" / "acpx"
    done = await run_node([str(acpx), "--agent", shlex.join(agent), *args], env, cwd)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return [jsonio.loads(line) for line in done.stdout.splitlines() if line.startswith(b"{")]


def processes_with_home(home: Path) -> list[int]:
    """PIDs of processes (ours) whose environment has HOME=``home``: what a client left running."""
    marker = f"HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            found.append(int(entry.name))
    return found
