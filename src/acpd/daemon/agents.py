"""Daemon layer: what the daemon knows about each agent it can start, without starting it.

For ``GET /v1/agents`` and ``acpd agents list``: whether the program is there (installed by acpd
or on PATH), its version (from the npm package it came in), whether credentials are present,
and, when it cannot be used, why. Reads files and the environment; never runs the agent, never
writes anything. Imported at the first agent listing or session start, with ``config`` (pydantic):
nothing imports it at the daemon's start.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from acpd import __version__
from acpd.adapters.claude_native.credentials import NO_CREDENTIALS, credential_source
from acpd.config import AgentConfig, missing_sandbox, preset_of
from acpd.presets import Preset
from acpd.settings import DaemonConfig

PACKAGE_SEARCH_DEPTH: Final = 6
"""How far above a program to look for the package.json it came in (npm's .bin links resolve into
``node_modules/<scope>/<name>/<dir>/<file>``)."""
CONFIG_HOMES: Final[Mapping[str, tuple[str, str]]] = {
    # A credential file under ~/.claude moves with CLAUDE_CONFIG_DIR, one under ~/.codex with CODEX_HOME.
    "~/.claude/": ("CLAUDE_CONFIG_DIR", "~/.claude/"),
    "~/.codex/": ("CODEX_HOME", "~/.codex/"),
    "~/.local/share/": ("XDG_DATA_HOME", "~/.local/share/"),
}


def all_agent_facts(config: DaemonConfig, env: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Facts about every agent, by name. Blocking (it reads files): run it in a worker thread."""
    environ = dict(os.environ if env is None else env)
    return [agent_facts(name, agent, environ) for name, agent in sorted(config.all_agents().items())]


def agent_facts(name: str, agent: AgentConfig, env: Mapping[str, str]) -> dict[str, Any]:
    if agent.kind == "claude-native":
        return _native_facts(name, agent, {**env, **agent.env})
    preset = preset_of(agent)
    environ = {**env, **agent.env}
    program = _find(agent.command, agent.cwd, environ)
    facts: dict[str, Any] = {
        "name": name,
        "kind": agent.kind,
        "preset": agent.preset,
        "description": agent.description,
        "command": [agent.command, *agent.args],
        "path": program,
        "source": _source(agent, program),
        "version": _version(name, preset, program),
        "modelUrl": _without_userinfo(agent.model_url),
    }
    facts["credentials"] = _credentials(preset, agent, environ)
    reasons = _unusable(agent, preset, program, facts["credentials"], environ)
    facts.update(available=program is not None, usable=not reasons, reason=_joined(reasons), reasons=reasons)
    if preset is not None and preset.notes:
        facts["notes"] = preset.notes
    return facts


def _without_userinfo(url: str | None) -> str | None:
    """A URL as it may be shown: a user and password in it are replaced."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _native_facts(name: str, agent: AgentConfig, env: Mapping[str, str]) -> dict[str, Any]:
    """acpd's own loop: nothing to install; it needs only credentials (or a model URL)."""
    source = credential_source(agent, env)
    credentials = {"present": source is not None, "source": source}
    reasons = [] if source is not None else [NO_CREDENTIALS]
    return {
        "name": name,
        "kind": agent.kind,
        "preset": None,
        "description": agent.description,
        "command": [],
        "path": None,
        "source": "acpd",
        "version": __version__,
        "modelUrl": _without_userinfo(agent.model_url),
        "credentials": credentials,
        "available": True,
        "usable": not reasons,
        "reason": _joined(reasons),
        "reasons": reasons,
    }


def unusable_reasons(
    agent: AgentConfig, env: Mapping[str, str], *, cwd: str | None = None, to_start: bool = False
) -> list[str]:
    """Every reason ``agent`` cannot be used here, in a fixed order (not installed, no runtime, no
    sandbox, no credentials); empty when it can. The one judgement behind ``GET /v1/agents``,
    ``acpd agents list`` and every agent start (a session create, a switch, a restart), so they
    always agree. ``cwd`` is where a relative command is looked up (the session's directory).

    ``to_start``: only the reasons that refuse a start. A preset agent whose credentials acpd
    cannot see is still started: it may hold a login acpd cannot read (a keychain, a cloud
    provider's own variables) or authenticate over ACP, and says so itself if it cannot.
    Blocking (it reads files): run it in a worker thread."""
    environ = {**env, **agent.env}
    if agent.kind == "claude-native":
        return [] if credential_source(agent, environ) is not None else [NO_CREDENTIALS]
    preset = preset_of(agent)
    program = _find(agent.command, agent.cwd or cwd, environ)
    credentials = {"present": None} if to_start else _credentials(preset, agent, environ)
    return _unusable(agent, preset, program, credentials, environ)


def _joined(reasons: list[str]) -> str | None:
    return "; ".join(reasons) if reasons else None


def _find(command: str, cwd: str | None, env: Mapping[str, str]) -> str | None:
    if os.sep in command:
        path = Path(cwd or ".", command)
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(command, path=env.get("PATH", os.defpath))


def _source(agent: AgentConfig, program: str | None) -> str | None:
    if program is None:
        return None
    if agent.installed:
        return "acpd"  # acpd agents install
    return "PATH" if os.sep not in agent.command else "configured"


def _version(name: str, preset: Preset | None, program: str | None) -> str | None:
    if preset is None:
        return __version__ if name == "mock" else None
    if program is None:
        return None
    wanted = preset.packages[0].rpartition("@")[0]
    here = Path(program).resolve().parent
    for folder in [here, *here.parents][:PACKAGE_SEARCH_DEPTH]:
        found = _package_version(folder / "package.json", wanted)
        if found is not None:
            return found
    return None


def _package_version(path: Path, wanted: str) -> str | None:
    try:
        package = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(package, dict):
        return None
    name, version = package.get("name"), package.get("version")
    if isinstance(version, str) and isinstance(name, str) and name.startswith(wanted):
        return version  # the platform package of a native binary is named after its main one
    return None


def _credentials(preset: Preset | None, agent: AgentConfig, env: Mapping[str, str]) -> dict[str, Any]:
    if preset is None:
        return {"present": None, "source": None}  # a custom agent's needs are unknown
    if agent.model_url:
        return {"present": True, "source": "modelUrl"}
    for variable in preset.credential_variables:
        if env.get(variable):
            return {"present": True, "source": f"${variable}"}
    for pattern in preset.credential_files:
        if _expand(pattern, env).is_file():
            return {"present": True, "source": pattern}
    return {"present": False, "source": None}


def _expand(pattern: str, env: Mapping[str, str]) -> Path:
    for prefix, (variable, replaced) in CONFIG_HOMES.items():
        if pattern.startswith(prefix) and env.get(variable):
            return Path(env[variable]) / pattern.removeprefix(replaced)
    home = env.get("HOME") or str(Path.home())
    return Path(home) / pattern.removeprefix("~/") if pattern.startswith("~/") else Path(pattern)


def _unusable(
    agent: AgentConfig,
    preset: Preset | None,
    program: str | None,
    credentials: dict[str, Any],
    env: Mapping[str, str],
) -> list[str]:
    reasons: list[str] = []
    if program is None:
        if preset is not None:
            reasons.append(f"not installed: run `acpd agents install {preset.name}` (or put {agent.command!r} on PATH)")
        else:
            reasons.append(f"command {agent.command!r} not found on PATH")
    if preset is not None and preset.needs_node and shutil.which("node", path=env.get("PATH", os.defpath)) is None:
        reasons.append(f"{preset.name} is a Node.js program and `node` is not on PATH")
    sandbox = missing_sandbox(agent, env)
    if sandbox is not None:
        reasons.append(sandbox)
    if credentials["present"] is False and preset is not None:
        names = ", ".join(f"${name}" for name in preset.credential_variables)
        choices = f"set one of {names}, log in" if names else "log in"
        reasons.append(f"no credentials: {choices} with the agent's own CLI, or set a model URL")
    return reasons
