"""The real-process test kit's client."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from acpd.testing.daemon import CLIENT_TIMEOUT_SECONDS, Daemon

pytestmark = pytest.mark.anyio


def a_daemon(token: str | None = "t") -> Daemon:
    # the client is built from the url and the token alone: no process is needed to check it
    return Daemon(process=cast(Any, None), url="http://127.0.0.1:1", log_path=Path("daemon.log"), token=token)


async def test_a_daemons_client_waits_as_long_as_the_tests_bound_their_waits_not_five_seconds() -> None:
    async with a_daemon().client() as http:
        assert http.timeout.read == CLIENT_TIMEOUT_SECONDS >= 30
        assert http.headers["authorization"] == "Bearer t"


async def test_a_daemons_client_takes_the_timeout_it_is_given() -> None:
    async with a_daemon(None).client(timeout=2) as http:
        assert (http.timeout.connect, http.timeout.read) == (2, 2)
        assert "authorization" not in http.headers
