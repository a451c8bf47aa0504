"""Fixtures shared by the adapter service tests: a project directory and a workspace confined to it."""

from __future__ import annotations

from pathlib import Path

import pytest

from acpd.adapters.workspace import Workspace


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    return path.resolve()


@pytest.fixture
def workspace(root: Path) -> Workspace:
    return Workspace([root])
