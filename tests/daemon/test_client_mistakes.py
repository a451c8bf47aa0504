"""Client mistakes are 4xx problems, and a refused change changes nothing (REST, in process)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.requests import Request

from acpd.config import AgentConfig, DaemonConfig
from acpd.daemon.manager import SessionManager
from acpd.daemon.problems import handle_exception_group
from acpd.errors import AgentExited

from .helpers import all_events, daemon_frames, new_session, wait_for_frame

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"
DEEP = "[" * 254 + "]" * 254


@pytest.fixture
def config(tmp_path: Path) -> DaemonConfig:
    """The daemon tests' config plus an agent whose command does not exist."""
    broken = AgentConfig(command=str(tmp_path / "no-such-agent"))
    return DaemonConfig(data_dir=str(tmp_path / "data"), db=":memory:", agents={"broken": broken})


def assert_problem(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert (response.status_code, response.headers["content-type"]) == (status, PROBLEM), response.text
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:acpd:problem:{kind}"
    return body


@pytest.mark.parametrize(
    ("fields", "status", "kind"),
    [
        ({"title": "x", "config": {"deep": "<deep>"}}, 400, "invalid-input"),
        ({"cwd": "/" + "a" * 300}, 400, "invalid-input"),
        ({"cwd": "/" + "a" * 100 + "/" + "b" * 300}, 400, "invalid-input"),
        ({"id": "."}, 400, "invalid-input"),
        ({"id": ".."}, 400, "invalid-input"),
        ({"additionalDirectories": ["relative/dir"]}, 400, "invalid-input"),
        ({"additionalDirectories": ["/no/such/directory"]}, 400, "invalid-input"),
        ({"additionalDirectories": [7]}, 400, "invalid-input"),
        ({"additionalDirectories": ["/" + "b" * 300]}, 400, "invalid-input"),
        ({"mcpServers": [1]}, 400, "invalid-input"),
        ({"model": "no-such-model"}, 422, "invalid-setting"),
        ({"agent": 5}, 400, "invalid-input"),
        ({"agent": ["mock"]}, 400, "invalid-input"),
        ({"agent": ""}, 400, "agent-not-found"),
    ],
)
async def test_a_create_body_the_daemon_cannot_honour_is_a_4xx_problem_and_leaves_no_session(
    client: httpx.AsyncClient, workdir: Path, fields: dict[str, Any], status: int, kind: str
) -> None:
    body = {"agent": "mock", "cwd": str(workdir), **fields}
    raw = httpx.Request("POST", "/", json=body).content.replace(b'"<deep>"', DEEP.encode())
    with anyio.fail_after(10):
        response = await client.post("/v1/sessions", content=raw, headers={"content-type": "application/json"})
        assert_problem(response, status, kind)
        assert (await client.get("/v1/sessions")).json()["items"] == []


async def test_a_body_that_is_not_sent_as_json_is_a_415(client: httpx.AsyncClient, workdir: Path) -> None:
    body = f'{{"agent": "mock", "cwd": "{workdir}"}}'
    response = await client.post("/v1/sessions", content=body, headers={"content-type": "text/html"})
    assert_problem(response, 415, "unsupported-media-type")


async def test_existing_additional_directories_are_kept(client: httpx.AsyncClient, workdir: Path) -> None:
    extra = workdir.parent / "extra"
    extra.mkdir()
    session = await new_session(client, workdir, additionalDirectories=[str(extra)])
    assert session["additionalDirectories"] == [str(extra)]


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({b"last-event-id": b"x"}, {}),
        ({b"last-event-id": b"9" * 5000}, {}),
        ({b"last-event-id": b"\xb2"}, {}),  # a superscript two in latin-1: a digit, not an integer
        ({}, {"after": "9" * 30}),
    ],
)
async def test_a_bad_replay_position_is_a_400(
    client: httpx.AsyncClient, workdir: Path, headers: dict[bytes, bytes], params: dict[str, str]
) -> None:
    session = await new_session(client, workdir)
    with anyio.fail_after(5):
        stream = await client.get(f"/v1/sessions/{session['id']}/events/stream", headers=headers, params=params)
    assert_problem(stream, 400, "invalid-input")


async def test_a_permission_reply_of_the_wrong_shape_is_a_400_and_the_request_stays_answerable(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path
) -> None:
    session = await new_session(client, workdir)
    sid = session["id"]
    async with anyio.create_task_group() as tg:
        with anyio.fail_after(10):
            tg.start_soon(partial(client.post, f"/v1/sessions/{sid}/prompt", json={"prompt": "permission edit"}))
            asked = await wait_for_frame(manager, sid, "session/request_permission")
            url = f"/v1/sessions/{sid}/permissions/p{asked.seq}"
            for body in ({"reply": ["once"]}, {"reply": {"a": 1}}, {"optionId": ["x"]}, {"optionId": 3}):
                assert_problem(await client.post(url, json=body), 400, "invalid-input")
            assert (await client.post(url, json={"reply": "once"})).status_code == 200


async def test_a_setting_the_agent_does_not_offer_is_a_422_naming_the_offered_values(
    client: httpx.AsyncClient, workdir: Path
) -> None:
    session = await new_session(client, workdir)
    url = f"/v1/sessions/{session['id']}"
    model = assert_problem(await client.patch(url, json={"model": "no-such-model"}), 422, "invalid-setting")
    assert model["data"]["offered"] == ["mock-small", "mock-large"]
    mode = assert_problem(await client.patch(url, json={"mode": "no-such-mode"}), 422, "invalid-setting")
    assert mode["data"]["offered"] == ["default", "plan"]
    option = assert_problem(await client.patch(url, json={"config": {"nope": 1}}), 422, "invalid-setting")
    assert "model" in option["data"]["offered"]
    value = assert_problem(await client.patch(url, json={"config": {"effort": True}}), 422, "invalid-setting")
    assert value["data"]["offered"] == ["low", "medium", "high"]


async def test_a_refused_patch_changes_none_of_its_fields(client: httpx.AsyncClient, workdir: Path) -> None:
    session = await new_session(client, workdir, title="before")
    url = f"/v1/sessions/{session['id']}"
    body = {"title": "after", "policy": {"permissions": "deny"}, "mode": "plan", "model": "no-such-model"}
    with anyio.fail_after(10):
        assert_problem(await client.patch(url, json=body), 422, "invalid-setting")
        after = (await client.get(url)).json()
    assert (after["title"], after["policy"], after["mode"]) == ("before", session["policy"], session["mode"])
    assert daemon_frames(await all_events(client, session["id"]), "_acpd/settings_changed") == []


async def test_a_failed_agent_switch_keeps_the_agent_and_its_settings_and_records_no_change(
    client: httpx.AsyncClient, workdir: Path
) -> None:
    session = await new_session(client, workdir, model="mock-large")
    url = f"/v1/sessions/{session['id']}"
    with anyio.fail_after(20):
        switch = await client.patch(url, json={"agent": "broken", "title": "switched"})
        assert_problem(switch, 503, "agent-unavailable")
        after = (await client.get(url)).json()
        assert (after["agent"], after["model"], after["title"]) == ("mock", "mock-large", None)
        assert after["backendSessionId"] == session["backendSessionId"]
        answer = await client.post(f"{url}/prompt", json={"prompt": "text still here"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["text"] == "still here"
    assert daemon_frames(await all_events(client, session["id"]), "_acpd/settings_changed") == []


async def test_a_prompt_nested_too_deep_is_a_400_and_the_session_prompts_on(
    client: httpx.AsyncClient, workdir: Path
) -> None:
    session = await new_session(client, workdir)
    url = f"/v1/sessions/{session['id']}/prompt"
    deep = b'{"prompt": [{"type": "text", "text": "x", "_meta": %s}]}' % DEEP.encode()
    with anyio.fail_after(10):
        assert_problem(await client.post(url, content=deep), 400, "invalid-input")
        answer = await client.post(url, json={"prompt": "text fine"})
    assert answer.json()["text"] == "fine"


async def test_an_error_raised_on_purpose_inside_an_exception_group_is_answered_as_itself() -> None:
    request = Request({"type": "http", "method": "POST", "path": "/v1/sessions", "headers": []})
    group = ExceptionGroup("starting the agent", [AgentExited("the agent exited as it started")])
    answer = await handle_exception_group(request, group)
    assert (answer.status_code, answer.headers["content-type"]) == (502, PROBLEM)
    with pytest.raises(ExceptionGroup):  # only bugs inside: the daemon's 500, logged
        await handle_exception_group(request, ExceptionGroup("bugs", [KeyError("x")]))


@pytest.mark.parametrize(
    ("path", "status", "kind"),
    [
        ("/v1/sessions/", 404, "not-found"),
        ("/v1/sessions/%2E%2E%2F", 404, "not-found"),
        ("/v1/rpc", 426, "upgrade-required"),
    ],
)
async def test_a_path_the_daemon_does_not_serve_over_plain_http_is_a_problem_not_a_redirect(
    client: httpx.AsyncClient, path: str, status: int, kind: str
) -> None:
    assert_problem(await client.get(path), status, kind)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "kind"),
    [
        ("POST", "/v1/sessions/nope/prompt", b'{"prompt": "text hi"}', 404, "session-not-found"),
        ("POST", "/v1/sessions/nope/prompt", b"{not json", 400, "invalid-input"),
        ("POST", "/v1/sessions//prompt", b"{}", 404, "not-found"),
        ("POST", "/v1/sessions/a/b/prompt", b"{}", 404, "not-found"),
        ("GET", "/v1/sessions/nope/prompt", None, 405, "method-not-allowed"),
        ("POST", "/v1/acp/has%2Fslash", b"{}", 404, "not-found"),
        ("POST", "/v1/acp/conn", b'{"jsonrpc": "1.0"}', 400, "invalid-input"),
    ],
)
async def test_the_routes_every_prompt_takes_refuse_mistakes_as_every_route_does(
    client: httpx.AsyncClient, method: str, path: str, body: bytes | None, status: int, kind: str
) -> None:
    # the prompt routes skip the route table (app._HotRoutes): their refusals must not change
    response = await client.request(method, path, content=body, headers={"Content-Type": "application/json"})
    assert_problem(response, status, kind)
