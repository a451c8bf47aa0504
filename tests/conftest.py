"""Shared fixtures: anyio on asyncio only (uvicorn runs asyncio)."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
