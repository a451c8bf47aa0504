"""Store layer: which store a ``--db`` names, and how to show it. Stdlib only, so that the CLI and
the daemon can ask before any store module (or its driver) is imported.

``--db`` is a ``postgresql://`` (or ``postgres://``) URL for the PostgreSQL store, ``memory`` for
the memory store, else a SQLite file (``:memory:`` a private one).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit, urlunsplit

SCHEMES: Final = ("postgresql://", "postgres://")
"""How a ``--db`` that names a PostgreSQL database begins."""


def is_postgres(db: str) -> bool:
    """Whether ``db`` names a PostgreSQL database rather than a file."""
    return db.startswith(SCHEMES)


def shown(db: str) -> str:
    """``db`` as messages and logs may show it: a URL without its password."""
    if not is_postgres(db):
        return db
    parts = urlsplit(db)
    if parts.password is None:
        return db
    host = parts.hostname or ""
    user = f"{parts.username}:***@" if parts.username else ":***@"
    netloc = user + (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
