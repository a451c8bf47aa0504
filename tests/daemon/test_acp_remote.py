"""ACP's Streamable HTTP transport at ``/acp``, in process: what a POST, GET or DELETE is refused
with (the status the transport's RFD names, a problem body, nothing else affected), and which
stream each message the face sends is logged on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest
from starlette.applications import Starlette

from acpd.config import DaemonConfig
from acpd.daemon.acp_remote import ANSWERED, CONNECTION_STREAM, AcpRemoteHub
from acpd.daemon.app import create_app
from acpd.daemon.manager import SessionManager
from acpd.protocol import jsonio
from acpd.protocol.jsonio import JsonObject
from acpd.store.memory import MemoryEventStore

pytestmark = pytest.mark.anyio

CAP = 64 * 1024
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def config(tmp_path: Path) -> DaemonConfig:
    return DaemonConfig(data_dir=str(tmp_path / "data"), db=":memory:", max_body_bytes=CAP)


def rpc(request_id: int | None, method: str, params: JsonObject) -> JsonObject:
    message: JsonObject = {"jsonrpc": "2.0", "method": method, "params": params}
    if request_id is not None:
        message["id"] = request_id
    return message


INIT = rpc(1, "initialize", {"protocolVersion": 1, "clientCapabilities": {}})


async def connect(client: httpx.AsyncClient) -> str:
    answer = await client.post("/acp?agent=mock", json=INIT)
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["agentInfo"]["name"] == "acpd"
    return answer.headers["Acp-Connection-Id"]


async def new_session(client: httpx.AsyncClient, app: Starlette, connection: str, workdir: Path) -> str:
    """A session made through the connection (its answer comes on a stream: read from the log)."""
    posted = await client.post(
        "/acp",
        json=rpc(2, "session/new", {"cwd": str(workdir), "mcpServers": []}),
        headers={"Acp-Connection-Id": connection},
    )
    assert posted.status_code == 202, posted.text
    (answer,) = await answers(app, connection, {2})
    return str(answer["result"]["sessionId"])


async def answers(app: Starlette, connection: str, ids: set[int]) -> list[JsonObject]:
    """The connection's answers to requests ``ids``, once it has logged them all (callers bound the wait)."""
    found: list[JsonObject] = []
    async for records in hub_of(app).get(connection).log.follow(0):
        for record in records:
            message = jsonio.loads(record.payload)
            if record.sender == "agent" and isinstance(message, dict) and "method" not in message:
                found += [message] if message.get("id") in ids else []
        if len(found) == len(ids):
            break
    return found


async def logged(app: Starlette, connection: str, stream: int | None = None) -> list[JsonObject]:
    """The messages the connection logged as copies, committed (on ``stream``, or on any)."""
    live = hub_of(app).get(connection)
    await live.log.wait_committed(live.log.last_seq)
    manager: SessionManager = app.state.manager
    records = await manager.store.read(f"acp-remote/{connection}", after=0, limit=10_000)
    return [
        message
        for r in records
        if r.sender == "agent" and (stream is None or r.turn == stream)
        if isinstance(message := jsonio.loads(r.payload), dict)
    ]


def hub_of(app: Starlette) -> AcpRemoteHub:
    hub = app.state.acp_remote
    assert isinstance(hub, AcpRemoteHub)
    return hub


@pytest.fixture
def app(manager: SessionManager) -> Starlette:
    return create_app(manager)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:4520", timeout=10) as http:
        yield http


def assert_problem(response: httpx.Response, status: int, kind: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == f"urn:acpd:problem:{kind}"


async def test_initialize_opens_a_connection_named_in_a_header_and_later_messages_get_202(
    client: httpx.AsyncClient, app: Starlette, manager: SessionManager, workdir: Path
) -> None:
    with anyio.fail_after(10):
        connection = await connect(client)
        session_id = await new_session(client, app, connection, workdir)
        listed = await client.post("/acp", json=rpc(3, "session/list", {}), headers={"Acp-Connection-Id": connection})
    assert listed.status_code == 202
    assert listed.content == b""
    assert session_id in manager.live_sessions()


async def test_a_post_without_a_connection_id_or_with_an_unknown_one_is_refused_and_the_connection_still_works(
    client: httpx.AsyncClient, app: Starlette, manager: SessionManager, workdir: Path
) -> None:
    with anyio.fail_after(10):
        connection = await connect(client)
        missing = await client.post("/acp", json=rpc(2, "session/list", {}))
        unknown = await client.post("/acp", json=rpc(2, "session/list", {}), headers={"Acp-Connection-Id": "nope"})
        session_id = await new_session(client, app, connection, workdir)
    assert_problem(missing, 400, "invalid-input")
    assert "Acp-Connection-Id" in missing.json()["detail"]
    assert_problem(unknown, 404, "acp-connection-not-found")
    assert session_id


async def test_a_deleted_connection_is_gone_for_post_get_and_delete_and_its_sessions_live_on(
    client: httpx.AsyncClient, app: Starlette, manager: SessionManager, workdir: Path
) -> None:
    with anyio.fail_after(10):
        connection = await connect(client)
        session_id = await new_session(client, app, connection, workdir)
        deleted = await client.delete("/acp", headers={"Acp-Connection-Id": connection})
        post = await client.post("/acp", json=rpc(3, "session/list", {}), headers={"Acp-Connection-Id": connection})
        get = await client.get("/acp", headers={"Acp-Connection-Id": connection, "Accept": "text/event-stream"})
        again = await client.delete("/acp", headers={"Acp-Connection-Id": connection})
        anonymous = await client.delete("/acp")
        session = await client.get(f"/v1/sessions/{session_id}")
    assert deleted.status_code == 202
    for refused in (post, get, again):
        assert_problem(refused, 404, "acp-connection-not-found")
    assert_problem(anonymous, 400, "invalid-input")
    assert session.status_code == 200
    assert await manager.store.last_seq(f"acp-remote/{connection}") == 0


async def test_a_session_scoped_method_needs_acp_session_id_naming_a_session_that_exists(
    client: httpx.AsyncClient, app: Starlette, manager: SessionManager, workdir: Path
) -> None:
    with anyio.fail_after(10):
        connection = await connect(client)
        session_id = await new_session(client, app, connection, workdir)
        prompt = rpc(3, "session/prompt", {"sessionId": session_id, "prompt": [{"type": "text", "text": "text hi"}]})
        headers = {"Acp-Connection-Id": connection}
        bare = await client.post("/acp", json=prompt, headers=headers)
        other = await client.post("/acp", json=prompt, headers={**headers, "Acp-Session-Id": "another"})
        unknown_prompt = rpc(4, "session/prompt", {"sessionId": "gone", "prompt": []})
        unknown = await client.post("/acp", json=unknown_prompt, headers={**headers, "Acp-Session-Id": "gone"})
        good = await client.post("/acp", json=prompt, headers={**headers, "Acp-Session-Id": session_id})
    assert_problem(bare, 400, "invalid-input")
    assert "Acp-Session-Id" in bare.json()["detail"]
    assert_problem(other, 400, "invalid-input")
    assert_problem(unknown, 404, "session-not-found")
    assert good.status_code == 202


async def test_bodies_that_are_not_one_json_message_within_the_cap_are_refused(client: httpx.AsyncClient) -> None:
    with anyio.fail_after(10):
        connection = await connect(client)
        headers = {"Acp-Connection-Id": connection}
        too_big = rpc(3, "session/list", {"pad": "x" * CAP})
        large = await client.post("/acp", json=too_big, headers=headers)
        streamed = await client.post("/acp", content=_chunks(jsonio.dumps(too_big)), headers={**headers, **JSON})
        text = await client.post("/acp", content=b"{}", headers={**headers, "Content-Type": "text/plain"})
        batch = await client.post("/acp", json=[rpc(3, "session/list", {})], headers=headers)
        garbage = await client.post("/acp", content=b"{nope", headers={**headers, **JSON})
        not_rpc = await client.post("/acp", json={"hello": 1}, headers=headers)
        still = await client.post("/acp", json=rpc(4, "session/list", {}), headers=headers)
    assert_problem(large, 413, "payload-too-large")
    assert_problem(streamed, 413, "payload-too-large")
    assert_problem(text, 415, "unsupported-media-type")
    assert_problem(batch, 501, "batch-not-supported")
    assert_problem(garbage, 400, "invalid-input")
    assert_problem(not_rpc, 400, "invalid-input")
    assert still.status_code == 202


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    # no Content-Length: the cap is enforced while reading
    for start in range(0, len(body), 8192):
        yield body[start : start + 8192]


async def test_a_stream_is_refused_without_a_connection_or_for_an_unknown_session_or_without_sse_accepted(
    client: httpx.AsyncClient,
) -> None:
    with anyio.fail_after(10):
        connection = await connect(client)
        sse = {"Accept": "text/event-stream"}
        missing = await client.get("/acp", headers=sse)
        unknown = await client.get("/acp", headers={**sse, "Acp-Connection-Id": "nope"})
        no_session = await client.get("/acp", headers={**sse, "Acp-Connection-Id": connection, "Acp-Session-Id": "x"})
        json_only = await client.get("/acp", headers={"Accept": "application/json", "Acp-Connection-Id": connection})
    assert_problem(missing, 400, "invalid-input")
    assert_problem(unknown, 404, "acp-connection-not-found")
    assert_problem(no_session, 404, "session-not-found")
    assert_problem(json_only, 406, "not-acceptable")


async def test_session_messages_go_to_the_connection_stream_until_the_sessions_own_is_opened(
    client: httpx.AsyncClient, app: Starlette, manager: SessionManager, workdir: Path
) -> None:
    """``session/new`` opens the new session's stream; a session only loaded is followed on the
    connection's stream until the client opens the session's (as the Python SDK does on seeing it)."""
    with anyio.fail_after(10):
        connection = await connect(client)
        made = await new_session(client, app, connection, workdir)
        await manager.runtime(made)
        other = (await client.post("/v1/sessions", json={"agent": "mock", "cwd": str(workdir)})).json()["id"]
        headers = {"Acp-Connection-Id": connection}
        await client.post(
            "/acp", json=rpc(5, "session/resume", {"sessionId": other, "cwd": str(workdir)}), headers=headers
        )
        for request_id, session_id in ((6, made), (7, other)):
            prompt = rpc(
                request_id, "session/prompt", {"sessionId": session_id, "prompt": [{"type": "text", "text": "text hi"}]}
            )
            await client.post("/acp", json=prompt, headers={**headers, "Acp-Session-Id": session_id})
        await answers(app, connection, {6, 7})
    on_connection = await logged(app, connection, CONNECTION_STREAM)
    answered = await logged(app, connection, ANSWERED)
    assert [m["id"] for m in answered] == [1]
    assert [m.get("id") for m in on_connection if "method" not in m] == [2, 5, 7]
    live = hub_of(app).get(connection)
    assert live.open_stream(made) == 2  # opened by session/new's answer
    assert {m["id"] for m in await logged(app, connection, 2) if "method" not in m} == {6}
    late = live.open_stream(other)  # its messages went on the connection's stream: they stay there
    assert late == 3
    with anyio.fail_after(10):
        again = rpc(8, "session/prompt", {"sessionId": other, "prompt": [{"type": "text", "text": "text hi"}]})
        await client.post("/acp", json=again, headers={**headers, "Acp-Session-Id": other})
        await answers(app, connection, {8})
    assert await logged(app, connection, late) == []
    assert [m.get("id") for m in await logged(app, connection, CONNECTION_STREAM) if "method" not in m][-1] == 8


async def test_a_connection_idle_past_its_limit_is_deleted_and_one_in_use_is_kept(
    client: httpx.AsyncClient, app: Starlette, manager: SessionManager
) -> None:
    with anyio.fail_after(10):
        idle = await connect(client)
        busy = await connect(client)
        hub = hub_of(app)
        with hub.get(busy).in_use():  # a reader on its stream
            expired = await hub.expire_idle(anyio.current_time() + manager.config.acp_http_idle_seconds)
        after = await client.post("/acp", json=rpc(2, "session/list", {}), headers={"Acp-Connection-Id": idle})
    assert expired == (idle,)
    assert_problem(after, 404, "acp-connection-not-found")
    assert hub.get(busy).id == busy


async def test_a_stopping_daemon_forgets_its_connections_logs(config: DaemonConfig, workdir: Path) -> None:
    store = MemoryEventStore()
    with anyio.fail_after(20):
        async with SessionManager(config, store).running() as manager:
            app = create_app(manager)
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:4520"
            ) as http:
                connection = await connect(http)
                session_id = await new_session(http, app, connection, workdir)
        assert await store.last_seq(f"acp-remote/{connection}") == 0
        assert await store.get_session(session_id) is not None
    await store.aclose()


async def test_a_browser_page_may_send_the_acp_headers_and_read_the_connection_id(client: httpx.AsyncClient) -> None:
    page = {"Origin": "http://127.0.0.1:4520"}
    with anyio.fail_after(10):
        preflight = await client.options(
            "/acp",
            headers={
                **page,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type, acp-connection-id, acp-session-id",
            },
        )
        opened = await client.post("/acp?agent=mock", json=INIT, headers=page)
    assert preflight.status_code == 200, preflight.text
    assert opened.status_code == 200
    assert "acp-connection-id" in opened.headers["access-control-expose-headers"].lower()


async def test_a_permission_request_and_its_withdrawal_go_on_the_sessions_stream_in_order(
    client: httpx.AsyncClient, app: Starlette, workdir: Path
) -> None:
    with anyio.fail_after(20):
        connection = await connect(client)
        session_id = await new_session(client, app, connection, workdir)
        headers = {"Acp-Connection-Id": connection, "Acp-Session-Id": session_id}
        prompt = rpc(
            3, "session/prompt", {"sessionId": session_id, "prompt": [{"type": "text", "text": "permission edit"}]}
        )
        await client.post("/acp", json=prompt, headers=headers)
        asked = await calls(app, connection, "session/request_permission")
        pending = (await client.get(f"/v1/sessions/{session_id}/permissions")).json()["items"]
        answered = await client.post(
            f"/v1/sessions/{session_id}/permissions/{pending[0]['id']}", json={"reply": "once"}
        )
        await answers(app, connection, {3})
    assert answered.status_code == 200, answered.text
    on_session = [
        m
        for m in await logged(app, connection, 2)
        if m.get("method") in ("session/request_permission", "$/cancel_request")
    ]
    assert [m["method"] for m in on_session] == ["session/request_permission", "$/cancel_request"]
    assert on_session[1]["params"]["requestId"] == asked["id"]


async def calls(app: Starlette, connection: str, method: str) -> JsonObject:
    """The first call of ``method`` the face logged (callers bound the wait)."""
    async for records in hub_of(app).get(connection).log.follow(0):
        for record in records:
            message = jsonio.loads(record.payload)
            if record.sender == "agent" and isinstance(message, dict) and message.get("method") == method:
                return message
    raise AssertionError(f"the log ended without {method}")


async def test_initialize_naming_an_unknown_agent_opens_no_connection(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    with anyio.fail_after(10):
        refused = await client.post("/acp?agent=no-such-agent", json=INIT)
    assert_problem(refused, 400, "agent-not-found")
    assert "Acp-Connection-Id" not in refused.headers
