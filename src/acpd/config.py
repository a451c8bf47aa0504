"""Leaf module: the agents' configuration as frozen pydantic models (``AgentConfig``, ``Policy``),
and what turns them into the commands to run. Expanding a preset looks at the environment and at
whether acpd installed it (``all_agents``); ``missing_sandbox`` looks on PATH and in the agent's own
config file. Nothing here writes or runs anything.

The daemon imports this module at its first session or agent listing, not at start: pydantic is a
third of what starting would import (the daemon's own settings are ``settings.DaemonConfig``, a
stdlib dataclass, re-exported here). Imports only pydantic, the stdlib, ``settings``, ``presets`` and
``environ``."""

from __future__ import annotations

import os
import shutil
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from acpd.environ import environ_version
from acpd.presets import PRESETS, Preset, Sandbox, fill_dir, preset_dir, preset_env, preset_program
from acpd.settings import (
    AGENT_START_TIMEOUT_SECONDS,
    DEFAULT_AGENT,
    DEFAULT_HOST,
    DEFAULT_PORT,
    MAX_BODY_BYTES,
    DaemonConfig,
    PermissionPolicy,
    default_data_dir,
)

__all__ = [
    "AGENT_START_TIMEOUT_SECONDS",
    "DEFAULT_AGENT",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "MAX_BODY_BYTES",
    "AgentConfig",
    "ClientCapabilities",
    "DaemonConfig",
    "FsCapabilities",
    "PermissionPolicy",
    "Policy",
    "PrivateHome",
    "all_agents",
    "builtin_agents",
    "default_data_dir",
    "expand",
    "merged",
    "missing_sandbox",
    "preset_of",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class FsCapabilities(_Frozen):
    read_text_file: bool | None = Field(default=None, alias="readTextFile")
    write_text_file: bool | None = Field(default=None, alias="writeTextFile")


class ClientCapabilities(_Frozen):
    """What acpd offers an agent at ``initialize``: its file reads and writes (confined to the
    session's workspace) and terminals. ``None`` means "not said here": a preset's value, else on."""

    fs: FsCapabilities = Field(default_factory=FsCapabilities)
    terminal: bool | None = None

    def over(self, base: ClientCapabilities) -> ClientCapabilities:
        """These capabilities, with what they leave unsaid taken from ``base``."""
        return ClientCapabilities(
            fs=FsCapabilities(
                read_text_file=_said(self.fs.read_text_file, base.fs.read_text_file),
                write_text_file=_said(self.fs.write_text_file, base.fs.write_text_file),
            ),
            terminal=_said(self.terminal, base.terminal),
        )

    def offers(self, method: str) -> bool:
        """Whether an agent's ``fs/*`` or ``terminal/*`` call is one of the services offered."""
        if method.startswith("terminal/"):
            return self.terminal is not False
        if method == "fs/read_text_file":
            return self.fs.read_text_file is not False
        if method == "fs/write_text_file":
            return self.fs.write_text_file is not False
        return False

    def to_wire(self) -> dict[str, Any]:
        """ACP's ``clientCapabilities``: every capability acpd has, on unless turned off."""
        fs = {
            "readTextFile": self.fs.read_text_file is not False,
            "writeTextFile": self.fs.write_text_file is not False,
        }
        return {"fs": fs, "terminal": self.terminal is not False}


def _said(value: bool | None, default: bool | None) -> bool | None:
    return default if value is None else value


class PrivateHome(_Frozen):
    """A home directory of the agent's own that acpd prepares before starting it (a preset's
    ``Home``, resolved): ``settings`` merged over the user's own settings file, ``files`` written,
    and the rest of the user's config directory linked in."""

    path: str
    config_dir: str
    settings_file: str | None = None
    user_home: str
    """The user's home, whose ``config_dir`` is merged and linked."""
    settings: Mapping[str, Any] = Field(default_factory=dict)
    link_home: bool = False
    """Link the user's other entries of the home too, not only those of ``config_dir``."""
    files: Mapping[str, str] = Field(default_factory=dict)
    """Written into ``config_dir``: name → content."""
    unlinked: tuple[str, ...] = ()
    """Entries of the user's ``config_dir`` left out."""
    directories: tuple[str, ...] = ()
    """Directories in ``config_dir``: the user's linked, else made empty."""


class AgentConfig(_Frozen):
    """How to start one backend."""

    kind: Literal["acp", "claude-native"] = "acp"
    """Backend kind: ``acp`` spawns a command that speaks ACP over stdio; ``claude-native`` runs
    acpd's own Claude loop on the ``anthropic`` SDK (no command)."""
    preset: str | None = None
    """Start from this built-in preset (``claude``, ``codex``, ``gemini``, ``opencode``): its command
    and switches, with ``args`` appended and ``env`` on top. An agent named after a preset and
    given no command uses that preset."""
    command: str = ""
    """Executable name (looked up on PATH) or path."""
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = Field(default_factory=dict)
    """Extra environment for the agent, on top of the daemon's own."""
    cwd: str | None = None
    """Working directory for the agent process; default: the session's cwd."""
    description: str = ""
    model_url: str | None = Field(default=None, alias="modelUrl")
    """For a preset: send its model traffic to this base URL (overrides the daemon's ``model_url``)."""
    continue_sessions: bool = Field(default=True, alias="continueSessions")
    """After a restart, ask the agent to resume or load its own session. When false (or when the
    agent cannot), it starts a new one and the transcript is carried to it."""
    exits_on_stdin_close: bool = Field(default=True, alias="exitsOnStdinClose")
    """False for agents that ignore the end of their stdin (claude-agent-acp, codex-acp): stopping
    them goes straight to SIGTERM instead of waiting for an exit that will not come."""
    stop_detached_on_cancel: bool = Field(default=True, alias="stopDetachedOnCancel")
    """After a cancelled turn, stop the commands the agent started during it in sessions of their
    own (codex-acp leaves them running). False for agents that detach commands on purpose."""
    installed: bool = False
    """Set on agents that come with acpd or that acpd installed (``acpd agents install``)."""
    files: Mapping[str, str] = Field(default_factory=dict)
    """Files written (path → text) before the agent starts, such as a preset's settings."""
    start_timeout_seconds: float | None = Field(default=None, alias="startTimeoutSeconds", gt=0)
    """How long the agent may take to start: spawn, ``initialize`` and its session (new, load or
    resume). ``None`` takes the daemon's ``agent_start_timeout_seconds``."""
    home: PrivateHome | None = None
    """A home of the agent's own that acpd prepares before it starts (set from a preset)."""
    client_capabilities: ClientCapabilities = Field(default_factory=ClientCapabilities, alias="clientCapabilities")
    """What acpd offers the agent at ``initialize`` (on top of its preset's): turn off a service the
    agent mishandles, and the agent uses its own instead."""

    process_per_session: bool | None = Field(default=None, alias="processPerSession")
    """Give each session an agent process of its own instead of sharing one process among the
    sessions that need no separation: the choice where containment per session matters (a
    cancel that stops the commands the turn detached, a crash that ends one session only).
    ``None``: true for codex (its cancel leaves commands running, stopped per process), else false."""
    spare_processes: int = Field(default=1, alias="spareProcesses", ge=0)
    """Processes started ahead of demand, so a new session opens on a warm agent."""
    max_sessions_per_process: int = Field(default=256, alias="maxSessionsPerProcess", ge=1)
    """Sessions one shared process serves; past it, another process starts."""
    idle_seconds: float = Field(default=60.0, alias="idleSeconds", ge=0)
    """A shared process that has served no session for this long exits."""

    def dedicated_processes(self) -> bool:
        """Whether each session gets a process of its own (``processPerSession``, or its default)."""
        if self.process_per_session is not None:
            return self.process_per_session
        return self.preset == "codex"

    @model_validator(mode="after")
    def _known_preset(self) -> AgentConfig:
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; presets: {', '.join(PRESETS)}")
        return self


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


def all_agents(config: DaemonConfig) -> dict[str, AgentConfig]:
    """Built-in agents, then configured ones (which replace a built-in of the same name), each
    ready to start; the dict is the caller's to change.

    Resolved again only when what resolving reads has changed (the environment, which presets are
    installed): every session create and agent start asks, and resolving them all costs
    milliseconds. Asking costs microseconds: the environment is compared raw (``environ``), and
    the presets' programs are looked up by paths worked out once per environment (another process
    may install one at any time). The cache lives on the (frozen) config, so
    ``dataclasses.replace`` starts afresh.
    """
    version = environ_version()
    cached: _Resolved | None = config.__dict__.get("_resolved_agents")
    if cached is None or cached.environ != version:
        agents_dir = config.resolved_agents_dir()
        programs = tuple(str(preset_program(preset, agents_dir)) for preset in PRESETS.values())
        where = str(agents_dir)
    else:
        programs, where = cached.programs, cached.agents_dir
    # Every program is under the agents directory: while there is none (no preset ever installed,
    # most daemons), one look answers for them all.
    installed = tuple(map(os.path.isfile, programs)) if os.path.isdir(where) else (False,) * len(programs)
    if cached is None or cached.environ != version or cached.installed != installed:
        cached = _Resolved(version, where, programs, installed, _all_agents(config))
        object.__setattr__(config, "_resolved_agents", cached)  # a cache, not a setting
    return dict(cached.agents)


@dataclass(frozen=True, slots=True)
class _Resolved:
    """``all_agents``'s answer, and what it was worked out from."""

    environ: int
    agents_dir: str
    programs: tuple[str, ...]
    installed: tuple[bool, ...]
    agents: dict[str, AgentConfig]


def _all_agents(config: DaemonConfig) -> dict[str, AgentConfig]:
    agents = builtin_agents(config.resolved_data_dir())
    configured = {
        name: agent.model_copy(update={"preset": name})
        if agent.kind == "acp" and not agent.command and agent.preset is None
        else agent
        for name, agent in config.configured_agents().items()
    }
    agents.update(configured)
    agents.update({name: AgentConfig(preset=name) for name in PRESETS if name not in configured})
    return {name: _resolved(config, agent) for name, agent in agents.items()}


def _resolved(config: DaemonConfig, agent: AgentConfig) -> AgentConfig:
    if agent.start_timeout_seconds is None:
        agent = agent.model_copy(update={"start_timeout_seconds": config.agent_start_timeout_seconds})
    if agent.kind == "claude-native":
        return agent.model_copy(update={"model_url": agent.model_url or config.model_url})
    return expand(config, agent)


def expand(config: DaemonConfig, agent: AgentConfig) -> AgentConfig:
    """A preset-based agent as the command, args and env to start it; others unchanged."""
    if agent.preset is None:
        return agent
    preset = PRESETS[agent.preset]
    agents_dir = config.resolved_agents_dir()
    program = preset_program(preset, agents_dir)
    installed = program.is_file()
    # The agent's own env overrides the preset's variables; but switches merged into a variable
    # the user also sets (OPENCODE_CONFIG_CONTENT) are computed from the user's value, and win.
    seen = {**os.environ, **agent.env}
    env = {**preset_env(preset, agents_dir, root=_is_root(), installed=installed), **agent.env}
    if preset.dynamic_env is not None:
        env.update(preset.dynamic_env(seen))
    args = preset.args
    url = agent.model_url or config.model_url
    if url and preset.route_model is not None:
        routed_env, routed_args = preset.route_model(url, seen)
        env.update(fill_dir(routed_env, preset_dir(preset, agents_dir)))
        args = (*args, *routed_args)
    home = _private_home(preset, preset_dir(preset, agents_dir), seen, routed=bool(url), chosen=agent.env)
    if home is not None and preset.home is not None:
        env[preset.home.variable] = home.path
    return AgentConfig(
        preset=agent.preset,
        command=agent.command or (str(program) if installed else preset.path_command),
        args=(*args, *agent.args),
        env=env,
        cwd=agent.cwd,
        description=agent.description or preset.description,
        model_url=url,
        continue_sessions=agent.continue_sessions and preset.continue_sessions,
        exits_on_stdin_close=agent.exits_on_stdin_close and preset.exits_on_stdin_close,
        stop_detached_on_cancel=agent.stop_detached_on_cancel and preset.stop_detached_on_cancel,
        installed=installed and not agent.command,
        files={str(preset_dir(preset, agents_dir) / name): text for name, text in preset.files.items()},
        start_timeout_seconds=agent.start_timeout_seconds,
        home=home,
        client_capabilities=agent.client_capabilities.over(
            ClientCapabilities.model_validate(preset.client_capabilities)
        ),
        process_per_session=agent.process_per_session,
        spare_processes=agent.spare_processes,
        max_sessions_per_process=agent.max_sessions_per_process,
        idle_seconds=agent.idle_seconds,
    )


def _private_home(
    preset: Preset, directory: Path, seen: Mapping[str, str], *, routed: bool, chosen: Mapping[str, str]
) -> PrivateHome | None:
    """The preset's home of its own, unless the agent's own env chose a home for it."""
    spec = preset.home
    if spec is None or spec.variable in chosen:
        return None
    settings = merged(spec.switches, spec.routed_switches) if routed else dict(spec.switches)
    return PrivateHome(
        path=str(directory / spec.directory),
        config_dir=spec.config_dir,
        settings_file=spec.settings_file,
        # The user's own home for the agent, if they set one for the daemon, else theirs.
        user_home=seen.get(spec.variable) or _expand_home(spec.user_default, seen),
        settings=settings,
        link_home=spec.link_home,
        files=spec.files,
        unlinked=spec.unlinked,
        directories=spec.directories,
    )


def merged(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``top`` on top, objects merged key by key (``top`` wins elsewhere)."""
    out = dict(base)
    for key, value in top.items():
        below = out.get(key)
        out[key] = merged(below, value) if isinstance(below, Mapping) and isinstance(value, Mapping) else value
    return out


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def preset_of(agent: AgentConfig) -> Preset | None:
    return PRESETS[agent.preset] if agent.preset is not None else None


def missing_sandbox(agent: AgentConfig, env: Mapping[str, str]) -> str | None:
    """Why a preset agent's commands would all fail here: its sandbox program is missing and the
    user has not turned the sandbox off. None when nothing is missing. Reads PATH and a file."""
    preset = preset_of(agent)
    sandbox = preset.sandbox if preset is not None else None
    if sandbox is None:
        return None
    if shutil.which(sandbox.program, path=env.get("PATH", os.defpath)) is not None:
        return None
    program = shutil.which(agent.command, path=env.get("PATH", os.defpath)) or agent.command
    if (Path(program).parent / sandbox.bundled).is_file():
        return None
    if _sandbox_setting(sandbox, agent.args, env) == sandbox.off:
        return None
    return (
        f"{sandbox.program} not found on PATH: {sandbox.install}, or run {agent.preset}'s commands without"
        f' its sandbox: args = ["-c", \'{sandbox.setting}="{sandbox.off}"\'] in [agents.{agent.preset}]'
    )


def _sandbox_setting(sandbox: Sandbox, args: tuple[str, ...], env: Mapping[str, str]) -> object:
    """The sandbox setting in effect: the last ``-c`` override of it, else the agent's config file."""
    value: object = None
    for key, raw in _config_overrides(args):
        if key == sandbox.setting:
            value = _toml_value(raw)
    if value is not None:
        return value
    home = env.get(sandbox.home_variable)
    path = Path(home) / Path(sandbox.config_file).name if home else Path(_home(env), sandbox.config_file[2:])
    try:
        return tomllib.loads(path.read_text()).get(sandbox.setting)
    except (OSError, ValueError):
        return None


def _config_overrides(args: tuple[str, ...]) -> list[tuple[str, str]]:
    """The ``key=value`` pairs of ``-c``/``--config`` arguments, in order."""
    pairs = []
    for index, arg in enumerate(args):
        if arg in ("-c", "--config") and index + 1 < len(args):
            pair = args[index + 1]
        elif arg.startswith("--config="):
            pair = arg.removeprefix("--config=")
        else:
            continue
        key, equals, raw = pair.partition("=")
        if equals:
            pairs.append((key.strip(), raw.strip()))
    return pairs


def _toml_value(raw: str) -> object:
    # As Codex reads it: TOML if it parses, else the raw string.
    try:
        return tomllib.loads(f"value = {raw}")["value"]
    except ValueError:
        return raw


def _home(env: Mapping[str, str]) -> str:
    return env.get("HOME") or str(Path.home())


def _expand_home(path: str, env: Mapping[str, str]) -> str:
    """``path`` with a leading ``~`` made the home directory of ``env``."""
    if path == "~" or path.startswith("~/"):
        return _home(env) + path[1:]
    return path


def builtin_agents(data_dir: Path) -> dict[str, AgentConfig]:
    return {
        "mock": AgentConfig(
            command=sys.executable,
            # The state dir lets a new mock process resume or load a session after a daemon restart.
            args=("-m", "acpd.testing.mock_agent", "--state-dir", str(data_dir / "mock-agent")),
            description="acpd's scripted mock ACP agent (see the README's prompt language)",
            installed=True,  # it comes with acpd
        ),
        "claude-native": AgentConfig(
            kind="claude-native",
            description="acpd's own Claude agent loop on the anthropic SDK, with built-in tools",
            installed=True,
        ),
    }
