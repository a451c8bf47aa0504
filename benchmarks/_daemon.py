"""Start a real ``acpd serve`` for a benchmark, on a free port with a fresh SQLite file."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from acpd.testing.daemon import running_daemon


@asynccontextmanager
async def acpd_daemon(*extra: str) -> AsyncIterator[str]:
    """Yield the base URL of a fresh daemon (default store: SQLite in a temp dir).

    It runs with ``--no-auth`` (on loopback), so that the benchmarks' many clients, which also
    take the URL of a daemon started by hand (``acpd serve --no-auth``), need no token.
    """
    with tempfile.TemporaryDirectory(prefix="acpd-bench-") as home:
        async with running_daemon(Path(home), "--no-auth", *extra) as daemon:
            yield daemon.url
