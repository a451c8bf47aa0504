"""Leaf module: what only the user may read (DESIGN §7): the data directory (0700) and the bearer
token file in it (0600), whatever the umask. Stdlib and ``acpd.errors`` only; it must not know
the daemon or its configuration (callers pass the paths).

The daemon creates the token at its first start; acpd's own clients on the same machine read it
from the same file, so the user never handles it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from acpd.errors import ConfigError

TOKEN_FILE: Final = "token"
"""The token's file name in the data directory."""
DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) if needed, and make it the user's only.

    Missing parents are made 0700 too, as the XDG base directory spec asks (``mkdir -p`` would
    leave them to the umask: 0777 under umask 0).
    """
    for missing in [p for p in (path, *path.parents) if not p.exists()][::-1]:
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            missing.mkdir(mode=DIR_MODE)
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)  # mkdir leaves an existing directory as it was, and obeys the umask
    return path


def token_path(data_dir: Path) -> Path:
    return data_dir / TOKEN_FILE


def read_token(path: Path) -> str | None:
    """The token in ``path``, or None if there is no such file or it is empty.

    Raises:
        OSError: the file exists but cannot be read.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return text.strip() or None


def given_token(path: Path) -> str:
    """The token in a file the user named (``--token-file``): unlike the generated one, it must be
    there.

    Raises:
        ConfigError: the file is missing or empty. OSError: it cannot be read.
    """
    token = read_token(path)
    if token is None:
        raise ConfigError(f"the token file {path} is missing or empty")
    return token


def ensure_token(data_dir: Path) -> str:
    """The token in ``data_dir``'s token file, created (0600, in a 0700 directory) if there is none.

    Two daemons starting at once agree on one token: the file appears whole or not at all.

    Raises:
        OSError: the directory or the file cannot be created or read.
    """
    private_dir(data_dir)
    path = token_path(data_dir)
    existing = read_token(path)
    if existing is not None:
        os.chmod(path, FILE_MODE)  # one an older acpd, or the user, left readable becomes private
        return existing
    temp = data_dir / f".{TOKEN_FILE}.{secrets.token_hex(6)}.tmp"
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    try:
        with open(descriptor, "w", encoding="utf-8") as file:
            file.write(secrets.token_urlsafe(32) + "\n")
        with suppress(FileExistsError):
            os.link(temp, path)  # unlike a rename, never replaces a token another daemon just wrote
    finally:
        temp.unlink(missing_ok=True)
    token = read_token(path)
    if token is None:
        raise OSError(f"the token file {path} is empty")
    return token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def client_token(url: str, data_dir: Path, env: Mapping[str, str]) -> str | None:
    """The token a client of acpd on ``url`` sends when not told one: ``ACPD_TOKEN``, else, for a
    daemon on this machine (a loopback URL), the one in ``data_dir``'s token file. A remote daemon
    never gets this machine's token.

    Raises:
        OSError: the token file exists but cannot be read.
    """
    if env.get("ACPD_TOKEN"):
        return env["ACPD_TOKEN"]
    if not is_loopback(urlsplit(url).hostname or ""):
        return None
    return read_token(token_path(data_dir))
