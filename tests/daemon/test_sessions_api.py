"""REST session lifecycle and bad input, in process."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from .helpers import all_events, daemon_frames, new_session

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"


async def test_health_reports_ok_and_version(client: httpx.AsyncClient) -> None:
    body = (await client.get("/v1/health")).json()
    assert body["status"] == "ok"
    assert isinstance(body["version"], str)


async def test_agents_lists_the_mock_as_available(client: httpx.AsyncClient) -> None:
    items = (await client.get("/v1/agents")).json()["items"]
    mock = next(a for a in items if a["name"] == "mock")
    assert mock["available"] is True


async def test_creating_a_mock_session_starts_its_agent_and_records_it(
    client: httpx.AsyncClient, workdir: Path
) -> None:
    session = await new_session(client, workdir, title="first", project="demo")
    assert session["agent"] == "mock"
    assert session["status"] == "idle"
    assert session["title"] == "first"
    assert session["backendSessionId"].startswith("mock-")
    assert any(o["category"] == "model" for o in session["configOptions"])
    started = daemon_frames(await all_events(client, session["id"]), "_acpd/agent_started")
    assert started[0]["how"] == "new"


async def test_a_client_chosen_id_is_kept_and_cannot_be_reused(client: httpx.AsyncClient, workdir: Path) -> None:
    await new_session(client, workdir, id="my-session")
    again = await client.post("/v1/sessions", json={"agent": "mock", "cwd": str(workdir), "id": "my-session"})
    assert again.status_code == 409
    assert again.json()["type"] == "urn:acpd:problem:session-exists"


async def test_sessions_are_listed_newest_first_in_pages(client: httpx.AsyncClient, workdir: Path) -> None:
    ids = [(await new_session(client, workdir, project="p"))["id"] for _ in range(3)]
    first = (await client.get("/v1/sessions", params={"limit": 2, "project": "p"})).json()
    second = (await client.get("/v1/sessions", params={"limit": 2, "cursor": first["nextCursor"]})).json()
    seen = [s["id"] for s in first["items"] + second["items"]]
    assert sorted(seen) == sorted(ids)
    assert second["nextCursor"] is None


async def test_patch_changes_title_archive_and_policy_and_records_it(client: httpx.AsyncClient, workdir: Path) -> None:
    session = await new_session(client, workdir)
    body = {"title": "renamed", "archived": True, "policy": {"permissions": "deny"}}
    patched = (await client.patch(f"/v1/sessions/{session['id']}", json=body)).json()
    assert patched["title"] == "renamed"
    assert patched["archivedAt"] is not None
    assert patched["policy"]["permissions"] == "deny"
    archived = (await client.get("/v1/sessions", params={"archived": "true"})).json()["items"]
    assert [s["id"] for s in archived] == [session["id"]]
    changes = daemon_frames(await all_events(client, session["id"]), "_acpd/settings_changed")
    assert changes[-1]["changes"]["title"] == "renamed"


async def test_patch_model_and_mode_reach_the_agent(client: httpx.AsyncClient, workdir: Path) -> None:
    session = await new_session(client, workdir)
    patched = await client.patch(f"/v1/sessions/{session['id']}", json={"model": "mock-large", "mode": "plan"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["model"] == "mock-large"
    assert patched.json()["mode"] == "plan"
    model = next(o for o in patched.json()["configOptions"] if o["category"] == "model")
    assert model["currentValue"] == "mock-large"


async def test_model_given_at_create_is_applied(client: httpx.AsyncClient, workdir: Path) -> None:
    session = await new_session(client, workdir, model="mock-large", thoughtLevel="high")
    model = next(o for o in session["configOptions"] if o["category"] == "model")
    effort = next(o for o in session["configOptions"] if o["category"] == "thought_level")
    assert (model["currentValue"], effort["currentValue"]) == ("mock-large", "high")


async def test_delete_removes_the_session_and_its_events(client: httpx.AsyncClient, workdir: Path) -> None:
    session = await new_session(client, workdir)
    assert (await client.delete(f"/v1/sessions/{session['id']}")).status_code == 204
    gone = await client.get(f"/v1/sessions/{session['id']}")
    assert gone.status_code == 404
    assert gone.headers["content-type"] == PROBLEM
    assert gone.json()["type"] == "urn:acpd:problem:session-not-found"
    assert (await client.get(f"/v1/sessions/{session['id']}/events")).status_code == 404


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"{not json", "invalid-input"),
        (b"[1, 2]", "invalid-input"),
        (b'{"agent": "nope"}', "agent-not-found"),
        (b'{"agent": "mock", "cwd": "relative/dir"}', "invalid-input"),
        (b'{"agent": "mock", "surprise": 1}', "invalid-input"),
        (b'{"agent": "mock", "policy": {"permissions": "sometimes"}}', "invalid-input"),
        (b'{"agent": "mock", "id": "has spaces"}', "invalid-input"),
    ],
)
async def test_bad_create_requests_get_a_problem_not_a_500(client: httpx.AsyncClient, body: bytes, kind: str) -> None:
    response = await client.post("/v1/sessions", content=body, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == f"urn:acpd:problem:{kind}"


async def test_an_oversized_body_is_refused_with_413(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/sessions", content=b"x" * (9 * 1024 * 1024))
    assert response.status_code == 413
    assert response.json()["type"] == "urn:acpd:problem:payload-too-large"


async def test_unknown_routes_and_methods_are_problems(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/nothing-here")
    assert (missing.status_code, missing.headers["content-type"]) == (404, PROBLEM)
    wrong = await client.put("/v1/sessions")
    assert wrong.status_code == 405


async def test_a_foreign_host_header_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/health", headers={"host": "evil.example:4520"})
    assert response.status_code == 421


async def test_a_foreign_origin_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/sessions", headers={"origin": "http://evil.example"})
    assert response.status_code == 403


async def test_bad_query_parameters_are_problems(client: httpx.AsyncClient, workdir: Path) -> None:
    session = await new_session(client, workdir)
    bad = await client.get(f"/v1/sessions/{session['id']}/events", params={"after": "soon"})
    assert bad.status_code == 400
    bad_cursor = await client.get("/v1/sessions", params={"cursor": "!!!"})
    assert bad_cursor.status_code == 400
