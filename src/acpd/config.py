"""Leaf module: configuration as frozen data. Reads nothing itself: ``cli`` reads argv, the environment
and the TOML file, and passes a ``DaemonConfig`` down. Imports only pydantic and the stdlib."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 4520
DEFAULT_AGENT: Final = "mock"
MAX_BODY_BYTES: Final = 8 * 1024 * 1024
"""Largest HTTP request body accepted (a prompt with embedded files fits; a runaway upload does not)."""

PermissionPolicy = Literal["ask", "allow", "deny", "allow_reads"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class AgentConfig(_Frozen):
    """How to start one backend."""

    kind: Literal["acp"] = "acp"
    """Backend kind: ``acp`` spawns a command that speaks ACP over stdio."""
    command: str
    """Executable name (looked up on PATH) or path."""
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = Field(default_factory=dict)
    """Extra environment for the agent, on top of the daemon's own."""
    cwd: str | None = None
    """Working directory for the agent process; default: the session's cwd."""
    description: str = ""


class Policy(_Frozen):
    """Per-session permissions and limits (DESIGN §5). ``None`` means no limit."""

    permissions: PermissionPolicy = "ask"
    max_steps: int | None = Field(default=None, alias="maxSteps", ge=0)
    """Tool calls allowed per turn; the turn is cancelled when the agent starts one more."""
    max_budget_tokens: int | None = Field(default=None, alias="maxBudgetTokens", ge=0)
    """Tokens the session may spend in all; a turn that crosses it is cancelled."""
    turn_timeout_seconds: float | None = Field(default=None, alias="turnTimeoutSeconds", gt=0)
    permission_timeout_seconds: float | None = Field(default=None, alias="permissionTimeoutSeconds", gt=0)
    """How long a permission request waits for a reply before it is rejected."""
    show_thinking: bool = Field(default=True, alias="showThinking")
    """When false, agent_thought_chunk updates are not recorded nor streamed."""

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


class DaemonConfig(_Frozen):
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    db: str = ""
    """SQLite file path, or ``:memory:``; empty means ``<data_dir>/acpd.db``."""
    data_dir: str = ""
    token: str | None = None
    """Bearer token required on every request except health; mandatory when not bound to loopback."""
    allowed_hosts: tuple[str, ...] = ()
    """Extra Host header values accepted besides the bound address and localhost forms."""
    allowed_origins: tuple[str, ...] = ()
    """Browser origins allowed to call the API (no wildcard)."""
    max_body_bytes: int = MAX_BODY_BYTES
    default_agent: str = DEFAULT_AGENT
    agents: Mapping[str, AgentConfig] = Field(default_factory=dict)
    policy: Policy = Field(default_factory=Policy)
    """Default policy for new sessions."""

    def resolved_data_dir(self) -> Path:
        return Path(self.data_dir) if self.data_dir else default_data_dir(os.environ)

    def resolved_db(self) -> str:
        return self.db or str(self.resolved_data_dir() / "acpd.db")

    def all_agents(self) -> dict[str, AgentConfig]:
        """Built-in presets, overridden by configured agents of the same name."""
        return {**builtin_agents(self.resolved_data_dir()), **self.agents}


def default_data_dir(env: Mapping[str, str]) -> Path:
    """``$XDG_DATA_HOME/acpd``, else ``~/.local/share/acpd``."""
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "share")
    return Path(base) / "acpd"


def builtin_agents(data_dir: Path) -> dict[str, AgentConfig]:
    return {
        "mock": AgentConfig(
            command=sys.executable,
            # The state dir lets a new mock process resume or load a session after a daemon restart.
            args=("-m", "acpd.testing.mock_agent", "--state-dir", str(data_dir / "mock-agent")),
            description="acpd's scripted mock ACP agent (see the README's prompt language)",
        ),
    }
