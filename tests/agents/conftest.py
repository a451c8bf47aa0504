"""Real agents through acpd, offline: the pinned npm agents against acpd's mock model server.

The agents come from ``scripts/setup-agents`` (``acpd agents install --all`` into
``.cache/agents``). Without them these tests skip, unless ``ACPD_REQUIRE_AGENTS=1`` (CI), which
makes a missing agent a failure. ``scripts/test`` runs this directory inside ``unshare -n`` where
it can, so an agent could not reach anything but loopback even if a switch were missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from acpd.presets import PRESETS, preset_program
from acpd.testing.daemon import Daemon, running_daemon
from acpd.testing.model_server import MockModelServer, serve_mock_model
from tests.processes import cmdlines

ROOT = Path(__file__).parents[2]
AGENTS_DIR = Path(os.environ.get("ACPD_TEST_AGENTS_DIR") or ROOT / ".cache" / "agents")
REQUIRED = os.environ.get("ACPD_REQUIRE_AGENTS") == "1"
RECORD_DIR = os.environ.get("ACPD_TEST_RECORD_DIR", "")
# Every write asks: opencode's own default would run bash without asking.
OPENCODE_PERMISSIONS = '{"permission": {"bash": "ask", "edit": "ask"}}'


def require_agent(name: str) -> None:
    if not preset_program(PRESETS[name], AGENTS_DIR).is_file():
        _missing(f"{name} is not installed in {AGENTS_DIR}: run scripts/setup-agents")
    if name == "codex" and REQUIRED:
        require_codex_sandbox()  # CI tests Codex as it runs by default: sandboxed


def require_codex_sandbox() -> None:
    """For tests of Codex under its own sandbox (workspace-write), which needs bubblewrap.

    Without it the other Codex tests run with the sandbox turned off (``codex_config``), the
    explicit opt-in acpd accepts; only what exists solely under the sandbox is skipped.
    """
    if not shutil.which("bwrap"):
        _missing(
            "bwrap not found on PATH: Codex's sandbox needs it; install bubblewrap (Debian: apt install bubblewrap)"
        )


def _missing(message: str) -> None:
    if REQUIRED:
        pytest.fail(message)
    pytest.skip(message)


def codex_config(*, ask: bool) -> str:
    """Codex asks before every command (``untrusted``) when ``ask``; its modes exist only without it.

    Codex sandboxes commands with bubblewrap; without it, they run unsandboxed (which acpd
    accepts only when asked explicitly, as here).
    """
    settings = []
    if ask:
        settings.append('approval_policy="untrusted"')
    if not shutil.which("bwrap"):
        settings.append('sandbox_mode="danger-full-access"')
    if not settings:
        return ""
    args = ", ".join(f"\"-c\", '{setting}'" for setting in settings)
    return f"[agents.codex]\nargs = [{args}]\n"


@pytest.fixture
async def model() -> AsyncIterator[MockModelServer]:
    async with serve_mock_model() as server:
        yield server


class AgentDaemon:
    """Starts acpd daemons (one at a time) on one data directory, routed to the mock model."""

    def __init__(
        self,
        home: Path,
        model: MockModelServer,
        *,
        codex_asks: bool = True,
        trust: bool = False,
        agents_dir: Path = AGENTS_DIR,
    ) -> None:
        self.home = home
        self.agents_dir = agents_dir
        self.model = model
        self.work = home / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        (home / "tmp").mkdir(exist_ok=True)
        self.config = home / "acpd.toml"
        # Gemini refuses its privileged modes in a workspace the user has not trusted.
        trusted = '[agents.gemini]\nenv = { GEMINI_CLI_TRUST_WORKSPACE = "true" }\n' if trust else ""
        self.config.write_text(codex_config(ask=codex_asks) + trusted)

    @asynccontextmanager
    async def running(self, *, wrapper: tuple[str, ...] = ()) -> AsyncIterator[tuple[Daemon, httpx.AsyncClient]]:
        args: tuple[str, ...] = (
            "--agents-dir",
            str(self.agents_dir),
            "--model-url",
            self.model.url,
            "--config",
            str(self.config),
        )
        if RECORD_DIR:
            args = (*args, "--record-agents", RECORD_DIR)  # scripts/record-goldens
        # codex-acp's sandbox refuses a CODEX_HOME inside TMPDIR: keep the temp dir beside it.
        env = {"TMPDIR": str(self.home / "tmp"), "OPENCODE_CONFIG_CONTENT": OPENCODE_PERMISSIONS}
        async with (
            running_daemon(self.home, *args, env=env, wrapper=wrapper) as daemon,
            daemon.client(timeout=60) as http,
        ):
            yield daemon, http


@pytest.fixture
def agent_daemon(tmp_path: Path, model: MockModelServer) -> AgentDaemon:
    return AgentDaemon(tmp_path, model)


@pytest.fixture(scope="session", autouse=True)
def no_agent_survives() -> Iterator[None]:
    yield
    left = agent_processes()
    assert left == [], f"agent processes still running after the suite: {left}"


def user_agents_dir(home: Path) -> Path:
    """An agents directory as a user's own would be (theirs, inside a directory others may write to,
    here the temp dir), its programs those of ``AGENTS_DIR``: what acpd writes for an agent lands
    there. Gemini, for one, ignores a settings file in such a place."""
    agents = home / "user-agents"
    for name in PRESETS:
        (agents / name).mkdir(parents=True)
        (agents / name / "node_modules").symlink_to(AGENTS_DIR / name / "node_modules")
    return agents


def agent_processes() -> list[tuple[int, str]]:
    """Processes whose command line names the agents directory."""
    return [(pid, cmdline[:200]) for pid, cmdline in cmdlines() if str(AGENTS_DIR) in cmdline]


def update_of(event: dict[str, Any]) -> dict[str, Any] | None:
    params = event["payload"].get("params")
    update = params.get("update") if isinstance(params, dict) else None
    return update if isinstance(update, dict) else None
