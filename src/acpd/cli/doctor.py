"""CLI layer: ``acpd doctor``, what this machine gives acpd, each finding with its fix.

It looks (node, npm, bubblewrap, the configuration, each agent, the data directory, the port, the
database) and reports; it must not change anything: nothing installed, created, chmod-ed or
migrated, the database opened read-only. Whether an agent is usable is the daemon's own judgement
(``daemon.agents``, as ``GET /v1/agents`` tells it); whether an acpd holds the port, the relay's
own health probe (``daemon.acp_stdio.daemon_answers``); the database's check, the store's
(``store.sqlite.quick_check``).

A finding is ``ok``, ``warn`` (something some use of acpd needs is missing) or ``fail`` (acpd will
not work as configured); the command exits 1 when any finding fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from acpd.cli import output

if TYPE_CHECKING:
    from acpd.settings import DaemonConfig

Status = Literal["ok", "warn", "fail"]
VERSION_TIMEOUT_SECONDS: Final = 10.0
"""For ``node --version`` and ``npm --version``: npm starts slowly on a cold cache."""


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    finding: str
    fix: str = ""


def add_doctor_command(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML config file (default $XDG_CONFIG_HOME/acpd/config.toml if present)")
    parser.add_argument("--data-dir", help="data directory (default $XDG_DATA_HOME/acpd)")
    parser.add_argument("--agents-dir", help="where presets are installed (default <data dir>/agents)")
    parser.add_argument("--db", help="SQLite file, or a postgresql:// URL (default: <data dir>/acpd.db)")
    parser.add_argument("--model-url", help="model API base URL for every preset (or ACPD_MODEL_URL)")
    parser.add_argument("--host", help="address the daemon binds (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port the daemon listens on (default 4520)")
    output.add_json_option(parser)
    parser.set_defaults(run=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    findings = list(examine(args))
    broken = any(f.status == "fail" for f in findings)
    if args.json:
        output.print_json({"ok": not broken, "findings": [asdict(f) for f in findings]})
    else:
        columns: list[output.Column] = [
            ("STATUS", lambda f: f["status"]),
            ("CHECK", lambda f: f["check"]),
            ("FINDING", lambda f: f["finding"]),
            ("FIX", lambda f: f["fix"]),
        ]
        output.print_table([asdict(f) for f in findings], columns)
    return 1 if broken else 0


def examine(args: argparse.Namespace) -> Iterator[Finding]:
    """Every check, in the order a person would fix things: the configuration first (the rest
    depends on it), then the tools, the agents, the data directory, the port and the database."""
    from acpd.cli import load_config
    from acpd.errors import AcpdError
    from acpd.settings import DaemonConfig

    try:
        config = load_config(args, dict(os.environ))
        yield Finding("config", "ok", "the configuration is valid")
    except AcpdError as exc:
        yield Finding("config", "fail", str(exc), "correct the file or the setting it names")
        config = DaemonConfig()  # the defaults: the other checks still tell what they can
    yield _program("node", "the Node.js agents (claude, gemini, opencode) need it", "install Node.js 20 or later")
    yield _program("npm", "`acpd agents install` needs it", "install npm (it comes with Node.js)")
    yield _bubblewrap()
    yield from _agents(config)
    yield from _data_dir(config)
    yield _port(config)
    yield _database(config)


def _program(name: str, needed: str, fix: str) -> Finding:
    path = shutil.which(name)
    if path is None:
        return Finding(name, "warn", f"{name} is not on PATH: {needed}", fix)
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Finding(name, "warn", f"{path} does not run: {exc}", fix)
    version = done.stdout.strip() or done.stderr.strip()
    if done.returncode != 0:
        return Finding(name, "warn", f"{path} --version failed: {version}", fix)
    return Finding(name, "ok", f"{path} {version}")


def _bubblewrap() -> Finding:
    from acpd.presets import PRESETS

    sandbox = PRESETS["codex"].sandbox
    assert sandbox is not None  # codex runs its commands under bubblewrap
    path = shutil.which(sandbox.program)
    if path is None:
        return Finding(
            "bubblewrap", "warn", f"{sandbox.program} is not on PATH: codex's commands need it", sandbox.install
        )
    return Finding("bubblewrap", "ok", path)


def _agents(config: DaemonConfig) -> Iterator[Finding]:
    """Each agent as the daemon judges it. The default agent unusable fails (a session created
    with no agent named would be refused); another only warns: most people use a few."""
    from acpd.daemon.agents import all_agent_facts

    for facts in all_agent_facts(config):
        name = facts["name"]
        check = f"agent {name}"
        if facts["usable"]:
            yield Finding(check, "ok", f"usable: {_installed(facts)}")
            continue
        status: Status = "fail" if name == config.default_agent else "warn"
        reasons = facts.get("reasons") or [facts.get("reason") or "not usable"]
        yield Finding(check, status, "not usable", "; ".join(reasons))


def _installed(facts: dict[str, Any]) -> str:
    """Where the agent runs from, its version, and its credentials' source (which, never what)."""
    parts = [str(facts.get("path") or facts.get("source") or facts.get("kind"))]
    if facts.get("version"):
        parts.append(f"version {facts['version']}")
    source = (facts.get("credentials") or {}).get("source")
    if source:
        parts.append(f"credentials from {source}")
    return ", ".join(parts)


def _data_dir(config: DaemonConfig) -> Iterator[Finding]:
    folder = config.resolved_data_dir()
    if not folder.exists():
        parent = next((p for p in folder.parents if p.exists()), Path("/"))
        if os.access(parent, os.W_OK | os.X_OK):
            yield Finding("data dir", "ok", f"{folder} does not exist yet; `acpd serve` creates it (mode 700)")
        else:
            yield Finding("data dir", "fail", f"{folder} cannot be created: {parent} is not writable", _chown(parent))
        return
    if not folder.is_dir():
        yield Finding(
            "data dir", "fail", f"{folder} is not a directory", "remove it, or choose another with --data-dir"
        )
        return
    if not os.access(folder, os.W_OK | os.X_OK):
        yield Finding("data dir", "fail", f"{folder} is not writable", _chown(folder))
        return
    mode = stat.S_IMODE(folder.stat().st_mode)
    if mode & 0o077:
        yield Finding(
            "data dir", "warn", f"{folder} is open to others (mode {mode:o}): it holds the token", f"chmod 700 {folder}"
        )
    else:
        yield Finding("data dir", "ok", f"{folder} (writable, mode {mode:o})")
    yield from _token_file(folder)


def _chown(path: Path) -> str:
    return f"make {path} yours (chown), or choose another data directory with --data-dir or ACPD_DATA_DIR"


def _token_file(folder: Path) -> Iterator[Finding]:
    from acpd.private import token_path

    path = token_path(folder)
    if not path.exists():
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        yield Finding("token", "fail", f"{path} is readable by others (mode {mode:o})", f"chmod 600 {path}")
    else:
        yield Finding("token", "ok", f"{path} (mode {mode:o})")


def _port(config: DaemonConfig) -> Finding:
    where = f"{config.host}:{config.port}"
    if config.port == 0:
        return Finding("port", "ok", "port 0: the daemon picks a free one")
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the daemon binds
        try:
            probe.bind((config.host.strip("[]"), config.port))
        except OSError as exc:
            refused = exc
        else:
            return Finding("port", "ok", f"{where} is free")
    if _acpd_answers(config):
        return Finding("port", "ok", f"{where} is held by a running acpd")
    fix = "stop the program that holds it, or choose another port: --port, or port in [daemon]"
    return Finding("port", "fail", f"{where} cannot be bound: {refused.strerror or refused}", fix)


def _acpd_answers(config: DaemonConfig) -> bool:
    import anyio

    from acpd.daemon.acp_stdio import daemon_answers

    host = f"[{config.host.strip('[]')}]" if ":" in config.host else config.host
    return anyio.run(daemon_answers, f"http://{host}:{config.port}")


def _database(config: DaemonConfig) -> Finding:
    from acpd.errors import StoreError
    from acpd.store.select import is_postgres, shown
    from acpd.store.sqlite import MEMORY_PATH, quick_check

    db = config.resolved_db()
    if db in (MEMORY_PATH, "memory"):
        return Finding("database", "ok", "in memory: nothing is kept across restarts")
    if is_postgres(db):
        return Finding("database", "ok", f"{shown(db)}: PostgreSQL checks its own pages (not checked here)")
    if not Path(db).exists():
        return Finding("database", "ok", f"{db} does not exist yet; `acpd serve` creates it")
    try:
        problems = quick_check(db)
    except StoreError as exc:
        return Finding("database", "fail", str(exc), _restore(db))
    if problems:
        return Finding("database", "fail", f"{db}: {'; '.join(problems[:3])}", _restore(db))
    return Finding("database", "ok", f"{db} passes SQLite's quick_check")


def _restore(db: str) -> str:
    return f"stop acpd, move {db} (and its -wal, -shm files) aside, and restore a backup or start afresh"
