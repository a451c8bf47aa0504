"""Adapters layer: a home directory of an agent's own, prepared before the agent starts.

Some agents honour a switch only in their user settings file (gemini-cli ignores a system
settings file that is not root-owned all the way up), or write into their config directory what
acpd must not let them (opencode installs a package from the npm registry there unless a lock file
says it is installed). acpd points such an agent at a home under its preset's directory and,
before each start, writes its files there (a settings file: the user's own settings, with the
preset's switches on top) and links every other entry of the user's config directory into it (and,
for a variable the agent's commands inherit, of the user's home for it), so that their logins,
memory, commands and history stay theirs. It never writes into the user's own directories.
Blocking file I/O: call it in a worker thread.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from acpd.config import PrivateHome, merged
from acpd.errors import AgentUnavailable

logger = logging.getLogger(__name__)

_COMMENT_OR_STRING = re.compile(r'"(?:\\.|[^"\\])*"|//[^\n]*|/\*.*?\*/', re.DOTALL)


def prepare_home(home: PrivateHome | None) -> None:
    """Make ``home`` ready: its files written, the user's other entries linked.

    Raises:
        AgentUnavailable: the home cannot be written.
    """
    if home is None:
        return
    ours = Path(home.path) / home.config_dir
    theirs = Path(home.user_home) / home.config_dir
    try:
        ours.mkdir(parents=True, exist_ok=True)
        if home.link_home:
            _link_entries(Path(home.user_home), Path(home.path), skip={home.config_dir})
        own = {*home.unlinked, *home.files} | ({home.settings_file} if home.settings_file else set())
        _link_entries(theirs, ours, skip=own)
        for name, text in home.files.items():
            _write(ours / name, text)
        if home.settings_file:
            settings = merged(_user_settings(theirs / home.settings_file), home.settings)
            _write(ours / home.settings_file, json.dumps(settings, indent=2) + "\n")
        for name in home.directories:
            _directory(ours / name)
    except OSError as exc:
        raise AgentUnavailable(f"cannot prepare the agent's home {home.path}: {exc.strerror or exc}") from exc


def _link_entries(theirs: Path, ours: Path, *, skip: set[str]) -> None:
    """Link each entry of the user's directory into ours; an entry the agent made in ours stays.

    A link of ours that names another place (the user's directory moved, or another daemon with
    another home prepared it last) is pointed at the user's entry again, and one left dangling is
    removed: the agent must see the user's configuration as it is now.
    """
    for link in _entries(ours):
        if link.is_symlink() and not link.exists():
            link.unlink()
    for entry in _entries(theirs):
        link = ours / entry.name
        if entry.name in skip:
            continue
        if link.is_symlink() and os.readlink(link) != str(entry):
            link.unlink()
        if not (link.exists() or link.is_symlink()):
            link.symlink_to(entry)


def _entries(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _write(target: Path, text: str) -> None:
    """``text`` in ``target``, a file of ours (never written through a link to the user's)."""
    if target.is_symlink() or not target.is_file() or target.read_text() != text:
        target.unlink(missing_ok=True)
        target.write_text(text)


def _directory(path: Path) -> None:
    """A directory at ``path``: the user's linked one, or one of ours (a link gone stale is replaced)."""
    if path.is_symlink() and not path.exists():
        path.unlink()
    path.mkdir(exist_ok=True)


def _user_settings(path: Path) -> dict[str, Any]:
    """The user's settings, read as the agent reads them (JSON with comments); {} if none."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    try:
        settings = json.loads(_COMMENT_OR_STRING.sub(_keep_strings, text))
    except ValueError:
        logger.warning("%s is not valid JSON: the agent starts without the settings in it", path)
        return {}
    return settings if isinstance(settings, dict) else {}


def _keep_strings(match: re.Match[str]) -> str:
    token = match.group(0)
    return token if token.startswith('"') else ""
