"""Titles a model writes (``titles = "model"``): in the background, through claude-native's client,
never delaying the turn, and never over a title the agent or a user gave first."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from acpd.adapters.claude_native.titles import cleaned
from acpd.config import DaemonConfig
from acpd.daemon.manager import SessionManager
from acpd.store.memory import MemoryEventStore
from acpd.testing.model_server import MockModelServer
from tests.daemon.helpers import wait_for_frame
from tests.native.conftest import client_of, native_config

pytestmark = pytest.mark.anyio


@pytest.fixture
def config(model: MockModelServer, tmp_path: Path) -> DaemonConfig:
    return dataclasses.replace(native_config(model, tmp_path), titles="model")


@pytest.fixture
async def manager(config: DaemonConfig, store: MemoryEventStore) -> AsyncIterator[SessionManager]:
    async with SessionManager(config, store).running() as running:
        yield running


@pytest.fixture
async def http(manager: SessionManager) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(manager) as client:
        yield client


async def mock_session(http: httpx.AsyncClient, cwd: Path) -> str:
    response = await http.post("/v1/sessions", json={"agent": "mock", "cwd": str(cwd)})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def prompt(http: httpx.AsyncClient, session_id: str, text: str) -> dict[str, Any]:
    with anyio.fail_after(10):
        response = await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": text})
    assert response.status_code == 200, response.text
    return dict(response.json())


def title_requests(model: MockModelServer) -> list[Any]:
    return [r for r in model.requests if not r.body.get("tools")]


async def test_a_model_writes_the_title_after_the_first_prompt_and_it_is_recorded(
    http: httpx.AsyncClient, manager: SessionManager, model: MockModelServer, tmp_path: Path
) -> None:
    session_id = await mock_session(http, tmp_path)
    await prompt(http, session_id, "Please plan the quince audit\nmock:text=Quince audit plan.")
    with anyio.fail_after(10):
        changed = await wait_for_frame(manager, session_id, "_acpd/settings_changed")
    assert changed.payload_object()["params"]["changes"] == {"title": "Quince audit plan"}
    assert (await http.get(f"/v1/sessions/{session_id}")).json()["title"] == "Quince audit plan"
    [asked] = title_requests(model)
    assert "Please plan the quince audit" in asked.body["messages"][0]["content"]
    await prompt(http, session_id, "a second prompt")
    assert len(title_requests(model)) == 1  # once a session


async def test_the_turn_does_not_wait_for_the_title(
    http: httpx.AsyncClient, model: MockModelServer, tmp_path: Path
) -> None:
    session_id = await mock_session(http, tmp_path)
    answer = await prompt(http, session_id, "Slow title please\nmock:text=Never mind\nmock:delay=120")
    assert answer["stopReason"] == "end_turn"
    assert (await http.get(f"/v1/sessions/{session_id}")).json()["title"] == "Slow title please"


async def test_a_title_the_agent_or_a_user_gave_meanwhile_is_kept(
    http: httpx.AsyncClient, manager: SessionManager, tmp_path: Path
) -> None:
    named, renamed = await mock_session(http, tmp_path), await mock_session(http, tmp_path)
    await prompt(http, named, "title Named by the agent")
    await prompt(http, renamed, "Renamed by a user")
    await http.patch(f"/v1/sessions/{renamed}", json={"title": "Mine"})
    # the model's titles come back after that: each session keeps what it was given
    await manager.retitle(named, "title Named by the agent", "Model title")
    await manager.retitle(renamed, "Renamed by a user", "Model title")
    await manager.retitle("deleted-meanwhile", "Whatever", "Model title")
    assert (await http.get(f"/v1/sessions/{named}")).json()["title"] == "Named by the agent"
    assert (await http.get(f"/v1/sessions/{renamed}")).json()["title"] == "Mine"


def test_the_models_title_is_cleaned_of_quotes_marks_and_end_punctuation() -> None:
    assert cleaned('"Fixing the login bug."\nSecond line') == "Fixing the login bug"
    assert cleaned("## Title: Quince audit") == "Quince audit"
    assert cleaned("  \n  ") is None
    assert cleaned("x" * 200) == "x" * 80


async def test_titles_by_prompt_ask_no_model(model: MockModelServer, tmp_path: Path, store: MemoryEventStore) -> None:
    async with SessionManager(native_config(model, tmp_path), store).running() as manager, client_of(manager) as http:
        session_id = await mock_session(http, tmp_path)
        await prompt(http, session_id, "Only the prompt\nmock:text=Model title")
        assert (await http.get(f"/v1/sessions/{session_id}")).json()["title"] == "Only the prompt"
    assert model.requests == []


def test_an_unknown_title_source_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="titles: must be one of 'prompt', 'model'"):
        DaemonConfig(data_dir=str(tmp_path), titles="banana").validated()
