"""Shared fixtures: anyio on asyncio only (uvicorn runs asyncio)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A fresh directory to run sessions in."""
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Umask 0 for the test (and the processes it starts): a file or directory gets exactly the
    mode it is created with, so only code that sets its modes itself makes them private."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that spawn the daemon or bind sockets run last (in-process tests fail faster)."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)


from tests.postgres import postgres_cluster  # noqa: E402 - shared by every test that needs PostgreSQL: one server

__all__ = ["postgres_cluster"]
