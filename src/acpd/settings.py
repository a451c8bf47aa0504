"""Leaf module: the daemon's settings as frozen data, ``DaemonConfig``. ``cli`` reads argv, the
environment and the TOML file, and passes a ``DaemonConfig`` down.

A stdlib dataclass, not a pydantic model: every ``acpd`` process builds one before anything else,
and an idle daemon never needs pydantic (a third of its start-up imports). Its bounds live in the
fields' metadata and ``validated`` checks them. The agents and the session policy it carries are
``config``'s pydantic models: given as such (``agents``, ``policy``), or as a config file's
sections, checked at start by ``config_check`` and built into models at their first use
(``configured_agents``, ``session_policy``), so that a config file brings no pydantic into the
start either. Turning an agent into the command to run (``all_agents``) is ``config``'s, imported
at the first session or agent listing. Imports only the stdlib (and ``errors``, to refuse a
section); reads the environment only for the default data directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

if TYPE_CHECKING:
    from pydantic import BaseModel

    from acpd.config import AgentConfig, Policy

    M = TypeVar("M", bound=BaseModel)

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 4520
DEFAULT_AGENT: Final = "mock"
MAX_BODY_BYTES: Final = 8 * 1024 * 1024
"""Largest HTTP request body accepted (a prompt with embedded files fits; a runaway upload does not)."""
AGENT_START_TIMEOUT_SECONDS: Final = 30.0
"""How long an agent may take to answer ``initialize`` and open its session, unless configured."""
MAX_PORT: Final = 65535
IDLE_SECONDS: Final = 300.0
"""How long a live session may sit unused before its runtime leaves memory (its agent stopped)."""
MAX_LIVE_SESSIONS: Final = 1000
"""How many sessions may be live (loaded, with their agents) at once; past it the least recently used leaves."""
TITLE_SOURCES: Final = ("prompt", "model")

PermissionPolicy = Literal["ask", "allow", "deny", "allow_reads"]

_POSITIVE: Final = {"gt": 0}
"""Field metadata: the value must be greater than this (``validated`` checks these bounds)."""


@dataclass(frozen=True, kw_only=True)
class DaemonConfig:
    """How one daemon runs: where it listens and keeps its data, who may call it, its limits, and
    the agents and policy its sessions start with. Frozen: a change is a new config."""

    host: str = DEFAULT_HOST
    port: int = field(default=DEFAULT_PORT, metadata={"ge": 0, "le": MAX_PORT})
    db: str = ""
    """SQLite file path, ``:memory:``, or a ``postgresql://`` URL; empty means ``<data_dir>/acpd.db``."""
    share_db: bool = False
    """Share a PostgreSQL ``db`` with other daemons: each session is served by the one that holds it."""
    data_dir: str = ""
    agents_dir: str = ""
    """Where ``acpd agents install`` puts agents; empty means ``<data_dir>/agents``."""
    model_url: str | None = None
    """Send every preset agent's model traffic to this base URL (a gateway, or ``acpd mock-model``)."""
    record_agents: str = ""
    """When set, a directory: every frame to and from each agent is appended to
    ``<dir>/<session id>.<agent>.jsonl`` (raw traffic, for bug reports and golden files)."""
    token: str | None = None
    """Bearer token required on every request except health (from ``ACPD_TOKEN`` or the config
    file). None: ``token_file``'s, else the one ``acpd serve`` generates in ``<data_dir>/token``."""
    token_file: str = ""
    """A file holding the token (``--token-file``); it is read when the daemon starts."""
    auth: bool = True
    """False (``--no-auth``): no token at all, for single-user sandboxes; refused off loopback."""
    allowed_hosts: tuple[str, ...] = ()
    """Extra Host header values accepted besides the bound address and localhost forms."""
    allowed_origins: tuple[str, ...] = ()
    """Browser origins allowed to call the API (no wildcard)."""
    max_body_bytes: int = field(default=MAX_BODY_BYTES, metadata=_POSITIVE)
    agent_start_timeout_seconds: float = field(default=AGENT_START_TIMEOUT_SECONDS, metadata=_POSITIVE)
    """How long any agent may take to start, unless its own ``startTimeoutSeconds`` says otherwise."""
    acp_http_idle_seconds: float = field(default=600.0, metadata=_POSITIVE)
    """An ACP-over-HTTP connection with no request and no SSE reader for this long is closed and
    forgotten (its sessions live on)."""
    idle_seconds: float = field(default=IDLE_SECONDS, metadata={"ge": 0})
    """A live session unused for this long (no turn, no pending permission, nobody following its
    events) leaves memory: its agent is stopped, and the next use brings it back. 0: never."""
    retention_days: float = field(default=0.0, metadata={"ge": 0})
    """Sessions last updated longer ago than this are deleted, hourly (as ``acpd gc``); 0: kept forever."""
    retention_archived_only: bool = False
    """Retention deletes only archived sessions."""
    titles: str = field(default="prompt", metadata={"one_of": TITLE_SOURCES})
    """How an untitled session is named: ``prompt``, the first line of its first prompt; ``model``,
    that at once, then a short title a model writes in the background through ``title_agent``."""
    title_agent: str = "claude-native"
    """The claude-native agent whose model API, credentials and model write titles (``titles = "model"``)."""
    max_live_sessions: int = field(default=MAX_LIVE_SESSIONS, metadata={"ge": 0})
    """At most this many sessions live at once; past it, the least recently used idle one leaves
    memory as an idle one does. 0: no limit."""
    default_agent: str = DEFAULT_AGENT
    agents: Mapping[str, AgentConfig] = field(default_factory=dict)
    """Configured agents (``config.AgentConfig``); the built-in ones are added by ``all_agents``."""
    policy: Policy | None = None
    """Default policy for new sessions; None: ``policy_section``'s, else ``Policy()``'s defaults
    (see ``session_policy``)."""
    agent_sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """A config file's ``[agents.*]`` as written, checked (``config_check``): built into
    ``AgentConfig``s at their first use (``configured_agents``). ``agents`` wins on a name in both."""
    policy_section: Mapping[str, Any] | None = None
    """A config file's ``[policy]`` as written, checked: built into a ``Policy`` at the first session."""

    def validated(self) -> DaemonConfig:
        """This configuration, once its bounds hold and every configured agent can be started.

        Raises:
            ValueError: naming the field, the bound and the value.
        """
        for spec in fields(self):
            _check_bounds(spec.name, getattr(self, spec.name), spec.metadata)
        sections: dict[str, _AgentSection | AgentConfig] = {n: _AgentSection(s) for n, s in self.agent_sections.items()}
        for name, agent in {**sections, **self.agents}.items():
            if agent.kind == "acp" and not agent.command and agent.preset is None:
                from acpd.presets import PRESETS  # only then: an agent named after a preset

                if name not in PRESETS:
                    raise ValueError(f"agent {name!r} needs a command, or a preset")
        return self

    def resolved_data_dir(self) -> Path:
        return Path(self.data_dir) if self.data_dir else default_data_dir(os.environ)

    def resolved_db(self) -> str:
        return self.db or str(self.resolved_data_dir() / "acpd.db")

    def resolved_agents_dir(self) -> Path:
        return Path(self.agents_dir) if self.agents_dir else self.resolved_data_dir() / "agents"

    def configured_agents(self) -> dict[str, AgentConfig]:
        """The configured agents as models: ``agent_sections`` built (once), then ``agents``.

        Raises:
            ConfigError: a section its model refuses although ``config_check`` let it pass (a
                disagreement between the two that tests/config/test_config_check.py rules out).
        """
        if not self.agent_sections:
            return dict(self.agents)
        return {**self._built_agents, **self.agents}

    @cached_property
    def _built_agents(self) -> dict[str, AgentConfig]:
        from acpd.config import AgentConfig

        return {name: _built(AgentConfig, f"agents.{name}", s) for name, s in self.agent_sections.items()}

    def all_agents(self) -> dict[str, AgentConfig]:
        """Built-in agents, then configured ones, each ready to start (``config.all_agents``)."""
        from acpd.config import all_agents

        return all_agents(self)

    def session_policy(self) -> Policy:
        """The policy new sessions start with."""
        return self.policy if self.policy is not None else self._built_policy

    @cached_property
    def _built_policy(self) -> Policy:
        from acpd.config import Policy

        return Policy() if self.policy_section is None else _built(Policy, "policy", self.policy_section)


@dataclass(frozen=True)
class _AgentSection:
    """What ``validated`` reads of an agent section not built yet (its values already checked)."""

    section: Mapping[str, Any]

    @property
    def kind(self) -> str:
        return str(self.section.get("kind", "acp"))

    @property
    def command(self) -> str:
        return str(self.section.get("command", ""))

    @property
    def preset(self) -> str | None:
        preset = self.section.get("preset")
        return None if preset is None else str(preset)


def _built(model: type[M], name: str, section: Mapping[str, Any]) -> M:
    try:
        return model.model_validate(section)
    except ValueError as exc:
        from acpd.errors import ConfigError

        raise ConfigError(f"invalid config file: [{name}] {exc}") from exc


def _check_bounds(name: str, value: object, bounds: Mapping[str, object]) -> None:
    if not bounds:
        return
    choices = bounds.get("one_of")
    if isinstance(choices, tuple):
        if value not in choices:
            raise ValueError(f"{name}: must be one of {', '.join(map(repr, choices))} (got {value!r})")
        return
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{name}: must be a number (got {value!r})")
    for bound, limit in bounds.items():
        assert isinstance(limit, int | float)
        if bound == "gt" and not value > limit:
            raise ValueError(f"{name}: must be greater than {limit} (got {value!r})")
        if bound == "ge" and not value >= limit:
            raise ValueError(f"{name}: must be at least {limit} (got {value!r})")
        if bound == "le" and not value <= limit:
            raise ValueError(f"{name}: must be at most {limit} (got {value!r})")


def default_data_dir(env: Mapping[str, str]) -> Path:
    """``$XDG_DATA_HOME/acpd``, else ``~/.local/share/acpd``."""
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "share")
    return Path(base) / "acpd"
