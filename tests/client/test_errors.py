"""Every problem the daemon can answer is raised as its own typed exception, with its fields."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import acpd.daemon.acp_http  # noqa: F401  # registers its AcpdError kinds
from acpd.client import AsyncAcpd
from acpd.client import errors as client_errors
from acpd.daemon import http_protocol, problems
from acpd.errors import AcpdError
from acpd.testing.daemon import Daemon

pytestmark = pytest.mark.anyio

EDGE_KINDS = {
    "unauthorized",  # the security edge
    "host-not-allowed",
    "origin-not-allowed",
    "payload-too-large",
    "cors-refused",  # the CORS edge
    "upgrade-required",  # /v1/rpc asked without a WebSocket
}
"""Kinds the daemon writes as literals at its edges rather than as an AcpdError class."""


def daemon_kinds() -> set[str]:
    """Every problem kind the daemon's code can answer."""
    kinds, todo = set(), [AcpdError]
    while todo:
        cls = todo.pop()
        kinds.add(cls.kind)
        todo += cls.__subclasses__()
    return (
        kinds
        | set(problems.HTTP_KINDS.values())
        | set(http_protocol.KINDS.values())
        | EDGE_KINDS
        | {"websocket-refused"}
    )


@pytest.mark.parametrize("kind", sorted(daemon_kinds()))
def test_each_problem_type_the_daemon_answers_has_its_own_exception_carrying_its_fields(kind: str) -> None:
    body = {
        "type": f"urn:acpd:problem:{kind}",
        "title": "A title",
        "status": 418,
        "detail": "what went wrong",
        "data": {"x": 1},
        "turn": 3,
    }
    error = client_errors.problem_error(418, body)
    assert type(error) is not client_errors.ProblemError
    assert type(error).kind == kind == error.problem_kind
    assert (error.status, error.title, error.detail, error.data) == (418, "A title", "what went wrong", {"x": 1})
    assert error.extensions == {"turn": 3}
    assert kind in str(error) and "what went wrong" in str(error)


def test_a_problem_type_this_client_does_not_know_keeps_every_field() -> None:
    error = client_errors.problem_error(499, {"type": "urn:acpd:problem:from-the-future", "detail": "d", "new": [1]})
    assert type(error) is client_errors.ProblemError
    assert (error.problem_kind, error.status, error.extensions) == ("from-the-future", 499, {"new": [1]})


def test_an_answer_that_is_not_a_problem_still_becomes_an_error_with_its_status() -> None:
    error = client_errors.problem_error(502, "<html>bad gateway</html>")
    assert error.status == 502 and "bad gateway" in error.detail


def test_the_exceptions_follow_the_daemons_tree() -> None:
    assert issubclass(client_errors.SessionNotFound, client_errors.NotFound)
    assert issubclass(client_errors.InvalidSetting, client_errors.InvalidInput)
    assert issubclass(client_errors.AgentExited, client_errors.AgentError)
    assert issubclass(client_errors.StoreFull, client_errors.StoreError)


async def test_the_daemons_refusals_arrive_as_typed_errors(app_client: AsyncAcpd, workdir: Path) -> None:
    session = await app_client.create_session("mock", workdir, id="one")
    cases = [
        (client_errors.SessionNotFound, app_client.session("nope")),
        (client_errors.SessionExists, app_client.create_session("mock", workdir, id="one")),
        (client_errors.AgentNotFound, app_client.create_session("no-such-agent", workdir)),
        (client_errors.InvalidInput, app_client.create_session("mock", "relative/dir")),
        (client_errors.InvalidSetting, app_client.update_session(session.id, model="no-such-model")),
        (client_errors.PermissionNotFound, app_client.answer_permission(session.id, "p999", "once")),
        (
            client_errors.UnsupportedMediaType,
            app_client.request("POST", "/v1/sessions", content=b"x", headers={"Content-Type": "text/plain"}),
        ),
    ]
    for expected, call in cases:
        with anyio.fail_after(30), pytest.raises(expected) as raised:
            await call
        assert raised.value.status >= 400 and raised.value.detail
    with pytest.raises(client_errors.InvalidSetting) as refused:
        await app_client.update_session(session.id, model="no-such-model")
    assert refused.value.data["setting"] == "model" and "mock-small" in str(refused.value.data["offered"])


@pytest.mark.e2e
async def test_a_wrong_token_is_an_unauthorized_error(daemon: Daemon) -> None:
    async with AsyncAcpd(daemon.url, token="not-the-token", timeout=30) as client:
        with pytest.raises(client_errors.Unauthorized) as refused:
            await client.agents()
    assert refused.value.status == 401
