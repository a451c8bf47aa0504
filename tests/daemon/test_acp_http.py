"""ACP over HTTP (sandbox-agent's /v1/acp routes), in process: POST semantics, listing, DELETE."""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, Callable
from pathlib import Path

import anyio
import anyio.lowlevel
import httpx
import pytest

from acpd.daemon import sse
from acpd.daemon.acp_http import LOG_PREFIX, AcpConnectionClosed, AcpHttpHub, AcpNotFound, HttpAcpConnection
from acpd.daemon.log import SessionLog
from acpd.daemon.manager import SessionManager
from acpd.errors import Conflict
from acpd.protocol import jsonio
from acpd.protocol.jsonio import JsonObject

pytestmark = pytest.mark.anyio


def rpc(request_id: int | None, method: str, params: dict[str, object]) -> dict[str, object]:
    message: dict[str, object] = {"jsonrpc": "2.0", "method": method, "params": params}
    if request_id is not None:
        message["id"] = request_id
    return message


INIT = rpc(1, "initialize", {"protocolVersion": 1, "clientCapabilities": {}})


async def test_a_request_is_answered_in_the_post_body_and_a_notification_gets_202(
    client: httpx.AsyncClient, workdir: Path
) -> None:
    with anyio.fail_after(10):
        init = await client.post("/v1/acp/conn-1?agent=mock", json=INIT)
        assert init.status_code == 200
        assert init.json()["result"]["agentInfo"]["name"] == "acpd"
        new = await client.post("/v1/acp/conn-1", json=rpc(2, "session/new", {"cwd": str(workdir), "mcpServers": []}))
        session_id = new.json()["result"]["sessionId"]
        cancel = await client.post("/v1/acp/conn-1", json=rpc(None, "session/cancel", {"sessionId": session_id}))
        assert cancel.status_code == 202
        answer = await client.post(
            "/v1/acp/conn-1",
            json=rpc(3, "session/prompt", {"sessionId": session_id, "prompt": [{"type": "text", "text": "text hi"}]}),
        )
    assert answer.json() == {"jsonrpc": "2.0", "id": 3, "result": {"stopReason": "end_turn"}}
    session = (await client.get(f"/v1/sessions/{session_id}")).json()
    assert session["agent"] == "mock"


async def test_errors_come_back_as_json_rpc_errors_in_a_200(client: httpx.AsyncClient) -> None:
    with anyio.fail_after(5):
        answer = await client.post("/v1/acp/conn-2", json=rpc(7, "session/prompt", {"sessionId": "nope", "prompt": []}))
    assert answer.status_code == 200
    assert answer.json()["error"]["code"] == -32002


async def test_bad_envelopes_unknown_agents_and_rebinding_are_refused_with_problems(client: httpx.AsyncClient) -> None:
    with anyio.fail_after(5):
        not_rpc = await client.post("/v1/acp/conn-3?agent=mock", json={"hello": 1})
        unknown_agent = await client.post("/v1/acp/conn-4?agent=no-such-agent", json=INIT)
        await client.post("/v1/acp/conn-5?agent=mock", json=INIT)
        rebound = await client.post("/v1/acp/conn-5?agent=mock-other", json=INIT)
        bad_id = await client.post("/v1/acp/bad%20id", json=INIT)
    assert not_rpc.status_code == 400
    assert not_rpc.headers["content-type"] == "application/problem+json"
    assert unknown_agent.status_code == 400
    assert rebound.status_code in (400, 409)
    assert bad_id.status_code == 400


async def test_connections_are_listed_and_delete_is_prompt_and_idempotent(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path
) -> None:
    with anyio.fail_after(10):
        await client.post("/v1/acp/conn-6?agent=mock", json=INIT)
        await client.post("/v1/acp/conn-6", json=rpc(2, "session/new", {"cwd": str(workdir), "mcpServers": []}))
        listed = (await client.get("/v1/acp")).json()["servers"]
        assert [(s["serverId"], s["agent"]) for s in listed] == [("conn-6", "mock")]
        # the session's agent is alive: DELETE must not wait for it
        with anyio.fail_after(2):
            assert (await client.delete("/v1/acp/conn-6")).status_code == 204
        assert (await client.delete("/v1/acp/conn-6")).status_code == 204
        assert (await client.get("/v1/acp")).json()["servers"] == []
        assert (await client.get("/v1/acp/conn-6")).status_code == 404
    # the session is the daemon's and lives on
    page = (await client.get("/v1/sessions")).json()
    assert len(page["items"]) == 1


async def test_concurrent_posts_that_reuse_request_ids_are_all_answered(manager: SessionManager) -> None:
    hub = AcpHttpHub(manager)
    answered: list[int] = []
    refused: list[int] = []

    async def post_repeatedly(request_id: int) -> None:
        for _ in range(20):
            try:
                answer = await connection.post({**INIT, "id": request_id})
            except Conflict:  # the id is still pending: refused, never left unanswered
                refused.append(request_id)
                await anyio.lowlevel.checkpoint()  # let the others move, as HTTP clients would
            else:
                assert answer is not None
                answered.append(answer["id"])

    with anyio.fail_after(20):
        connection = await hub.connection("conn-7", agent="mock", create=True)
        async with anyio.create_task_group() as tg:
            for request_id in range(8):
                for _ in range(4):  # four clients racing on each id
                    tg.start_soon(post_repeatedly, request_id)
        await hub.delete("conn-7")
    assert len(answered) + len(refused) == 8 * 4 * 20
    assert set(answered) == set(range(8))


async def test_an_idle_connection_expires_and_its_sessions_live_on(manager: SessionManager, workdir: Path) -> None:
    hub = AcpHttpHub(manager)
    idle = manager.config.acp_http_idle_seconds
    with anyio.fail_after(10):
        connection = await hub.connection("conn-8", agent="mock", create=True)
        await connection.post(INIT)
        new = await connection.post(rpc(2, "session/new", {"cwd": str(workdir), "mcpServers": []}))
        assert new is not None
        assert await hub.expire_idle(anyio.current_time() + idle / 2) == ()  # not idle long enough
        with connection.in_use():  # a reader on its SSE stream, or a POST waiting for its answer
            assert await hub.expire_idle(anyio.current_time() + 2 * idle) == ()
        assert await hub.expire_idle(anyio.current_time() + idle + 1) == ("conn-8",)
        assert hub.list() == []
        with pytest.raises(AcpNotFound):  # its log is forgotten too
            await hub.connection("conn-8", agent=None, create=False)
        assert (await manager.runtime(new["result"]["sessionId"])).doc["agent"] == "mock"


async def _chunk_turn(connection: HttpAcpConnection, workdir: Path, chunks: int) -> None:
    await connection.post(INIT)
    new = await connection.post(rpc(2, "session/new", {"cwd": str(workdir), "mcpServers": []}))
    assert new is not None
    prompt = {"sessionId": new["result"]["sessionId"], "prompt": [{"type": "text", "text": f"chunks {chunks}"}]}
    answer = await connection.post(rpc(3, "session/prompt", prompt))
    assert answer == {"jsonrpc": "2.0", "id": 3, "result": {"stopReason": "end_turn"}}


async def _read_until_answer(
    connection: HttpAcpConnection, after: int, request_id: int
) -> list[tuple[int, JsonObject]]:
    """(SSE id, message) of every event after ``after``, up to the answer to ``request_id``."""
    return await _read_events_until(
        connection, after, lambda events: events[-1][1].get("id") == request_id and "method" not in events[-1][1]
    )


async def _read_events(connection: HttpAcpConnection, after: int, count: int) -> list[tuple[int, JsonObject]]:
    """(SSE id, message) of the ``count`` events after ``after``."""
    return await _read_events_until(connection, after, lambda events: len(events) >= count)


async def _read_events_until(
    connection: HttpAcpConnection, after: int, done: Callable[[list[tuple[int, JsonObject]]], bool]
) -> list[tuple[int, JsonObject]]:
    """(SSE id, message) of the events after ``after``, until ``done`` holds for those read."""
    events: list[tuple[int, JsonObject]] = []
    stream = connection.stream(after)
    assert isinstance(stream, AsyncGenerator)
    try:
        async for chunk in stream:
            for block in chunk.decode().split("\n\n"):
                fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
                if "id" in fields:
                    events.append((int(fields["id"]), jsonio.loads(fields["data"])))
                    if done(events):
                        return events
    finally:
        await stream.aclose()
    return events


def _texts(events: list[tuple[int, JsonObject]]) -> list[str]:
    return [
        m["params"]["update"]["content"]["text"]
        for _, m in events
        if m.get("method") == "session/update" and m["params"]["update"]["sessionUpdate"] == "agent_message_chunk"
    ]


async def test_a_turns_updates_are_logged_as_a_few_references_and_stream_whole_numbered_and_in_order(
    manager: SessionManager, workdir: Path
) -> None:
    hub = AcpHttpHub(manager)
    with anyio.fail_after(30):
        connection = await hub.connection("conn-r", agent="mock", create=True)
        await _chunk_turn(connection, workdir, 3000)
        events = await _read_until_answer(connection, 0, 3)
    logged = await manager.store.read(LOG_PREFIX + "conn-r", after=0, limit=100_000)
    assert len(logged) < 100  # copies of 3,000 updates would be 3,000 records
    assert [r.sender for r in logged].count("daemon") >= 1
    assert [number for number, _ in events] == list(range(1, len(events) + 1))
    assert _texts(events) == [f"c{i} " for i in range(3000)]


async def test_last_event_id_inside_a_reference_resumes_exactly_after_it_live_and_after_a_restart(
    manager: SessionManager, workdir: Path
) -> None:
    hub = AcpHttpHub(manager)
    with anyio.fail_after(30):
        connection = await hub.connection("conn-s", agent="mock", create=True)
        await _chunk_turn(connection, workdir, 2000)
        events = await _read_until_answer(connection, 0, 3)
        middle = next(number for number, m in events if _texts([(number, m)]) == ["c1234 "])
        expected = [(n, m) for n, m in events if n > middle]
        assert await _read_until_answer(connection, middle, 3) == expected
        await connection.aclose()  # as a restart would: the log stays in the store
        await connection.log.finished.wait()
        while hub.list():
            await anyio.lowlevel.checkpoint()
        revived = await hub.connection("conn-s", agent=None, create=False)
        assert revived is not connection
        assert await _read_until_answer(revived, middle, 3) == expected
        assert await _read_until_answer(revived, 0, 3) == events


async def _chunks_until_answer(connection: HttpAcpConnection, request_id: int) -> list[list[int]]:
    """The SSE ids in each chunk the stream writes, from the start up to the answer to ``request_id``."""
    chunks: list[list[int]] = []
    stream = connection.stream(0)
    assert isinstance(stream, AsyncGenerator)
    try:
        async for chunk in stream:
            blocks = [
                dict(line.split(": ", 1) for line in b.splitlines() if ": " in line)
                for b in chunk.decode().split("\n\n")
            ]
            chunks.append([int(fields["id"]) for fields in blocks if "id" in fields])
            if any(f'"id":{request_id},' in fields.get("data", "") for fields in blocks):
                return [ids for ids in chunks if ids]
    finally:
        await stream.aclose()
    return chunks


async def test_committed_messages_and_the_updates_they_refer_to_leave_in_one_chunk_a_batch(
    manager: SessionManager, workdir: Path
) -> None:
    hub = AcpHttpHub(manager)
    with anyio.fail_after(30):
        connection = await hub.connection("conn-one", agent="mock", create=True)
        await _chunk_turn(connection, workdir, 3)
        chunks = await _chunks_until_answer(connection, 3)
    # the answers to initialize and session/new, references to the session's updates, the
    # prompt's answer: one write (a trip through the HTTP stack, a system call), not one a reference
    assert len(chunks) == 1
    assert chunks[0] == list(range(1, len(chunks[0]) + 1))
    assert len(chunks[0]) >= 6


async def test_a_batch_of_more_events_than_a_chunk_holds_is_streamed_in_bounded_chunks(
    manager: SessionManager, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sse, "BATCH_RECORDS", 7)
    hub = AcpHttpHub(manager)
    with anyio.fail_after(30):
        connection = await hub.connection("conn-bounded", agent="mock", create=True)
        await _chunk_turn(connection, workdir, 40)
        chunks = await _chunks_until_answer(connection, 3)
    assert max(len(ids) for ids in chunks) <= 7 * 2  # a chunk is flushed once it holds 7 or more
    numbers = [n for ids in chunks for n in ids]
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) >= 43  # the two answers, the 40 updates, the prompt's answer


def _update(session_id: str, text: str) -> JsonObject:
    chunk = {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": text}}
    return {"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": session_id, "update": chunk}}


async def _held_turn_records(
    manager: SessionManager, workdir: Path, connection_id: str, *messages: JsonObject
) -> tuple[HttpAcpConnection, SessionLog, int]:
    """A connection attached to a session that has had a turn, with ``messages`` logged to the
    session under a hold (as a turn's agent would); the connection log's last seq before them."""
    connection = await AcpHttpHub(manager).connection(connection_id, agent="mock", create=True)
    await _chunk_turn(connection, workdir, 1)
    await connection.log.wait_committed(connection.log.last_seq)
    session_log = (await manager.runtime(next(iter(connection.acp._attached)))).log
    before = connection.log.last_seq
    session_log.hold(seconds=3600)
    for message in messages:
        session_log.append("agent", 9, message)
    await anyio.wait_all_tasks_blocked()
    assert connection.log.last_seq == before  # nothing is passed on while held
    return connection, session_log, before


async def test_a_turns_updates_are_passed_on_to_an_attached_connection_as_its_hold_ends(
    manager: SessionManager, workdir: Path
) -> None:
    with anyio.fail_after(30):
        connection, session_log, before = await _held_turn_records(
            manager, workdir, "conn-hold", _update("s", "a"), _update("s", "b")
        )
        session_log.release()
        # in the same turn of the loop, without the forwarder's task: one reference to both
        assert [r.sender for r in connection.log.unsettled(before, 10)] == ["daemon"]
        events = await _read_until_answer(connection, 0, 3)
        later = await _read_events(connection, events[-1][0], 2)
    assert _texts(later) == ["a", "b"]


async def test_what_needs_a_write_of_its_own_is_left_to_the_forwarder_in_order(
    manager: SessionManager, workdir: Path
) -> None:
    notice: JsonObject = {"jsonrpc": "2.0", "method": "_acpd/notice", "params": {"n": 1}}
    with anyio.fail_after(30):
        connection, session_log, before = await _held_turn_records(
            manager, workdir, "conn-own", _update("s", "a"), notice, _update("s", "b")
        )
        session_log.release()
        assert connection.log.last_seq == before  # the notice is a message of its own: the forwarder's
        events = await _read_until_answer(connection, 0, 3)
        later = await _read_events(connection, events[-1][0], 3)
    assert [m.get("method") for _, m in later] == ["session/update", "_acpd/notice", "session/update"]
    assert _texts(later) == ["a", "b"]


async def _running_turn(connection: HttpAcpConnection, workdir: Path) -> str:
    await connection.post(INIT)
    new = await connection.post(rpc(2, "session/new", {"cwd": str(workdir), "mcpServers": []}))
    assert new is not None
    return str(new["result"]["sessionId"])


async def test_a_cancel_request_posted_for_a_prompt_being_served_cancels_it_and_its_turn(
    manager: SessionManager, workdir: Path
) -> None:
    hub = AcpHttpHub(manager)
    answers: list[JsonObject | None] = []
    with anyio.fail_after(10):
        connection = await hub.connection("conn-c", agent="mock", create=True)
        session_id = await _running_turn(connection, workdir)
        runtime = await manager.runtime(session_id)
        async with anyio.create_task_group() as tg:

            async def prompt() -> None:
                params: dict[str, object] = {"sessionId": session_id, "prompt": [{"type": "text", "text": "sleep 30"}]}
                answers.append(await connection.post(rpc(3, "session/prompt", params)))

            tg.start_soon(prompt)
            while runtime.doc.get("status") != "running":
                await anyio.lowlevel.checkpoint()
            assert await connection.post(rpc(None, "$/cancel_request", {"requestId": 3})) is None
        while runtime.doc.get("status") == "running":
            await anyio.lowlevel.checkpoint()
    assert answers[0] is not None
    assert answers[0]["error"]["code"] == -32800  # the request was cancelled
    await hub.delete("conn-c")


async def test_a_connection_deleted_while_it_serves_a_prompt_ends_the_post_at_once_and_the_turn_runs_on(
    manager: SessionManager, workdir: Path
) -> None:
    hub = AcpHttpHub(manager)
    with anyio.fail_after(10):
        connection = await hub.connection("conn-d", agent="mock", create=True)
        session_id = await _running_turn(connection, workdir)
        runtime = await manager.runtime(session_id)
        async with anyio.create_task_group() as tg:

            async def prompt() -> None:
                params: dict[str, object] = {"sessionId": session_id, "prompt": [{"type": "text", "text": "sleep 30"}]}
                with pytest.raises(AcpConnectionClosed):
                    await connection.post(rpc(3, "session/prompt", params))

            tg.start_soon(prompt)
            while runtime.doc.get("status") != "running":
                await anyio.lowlevel.checkpoint()
            await hub.delete("conn-d")
    assert runtime.doc.get("status") == "running"  # the session is the daemon's: its turn goes on
    runtime.cancel()


async def test_a_connection_whose_post_waits_for_its_answer_does_not_expire(
    manager: SessionManager, client: httpx.AsyncClient, workdir: Path
) -> None:
    path = "/v1/acp/conn-busy?agent=mock"
    with anyio.fail_after(10):
        assert (await client.post(path, json=INIT)).status_code == 200
        new = (await client.post(path, json=rpc(2, "session/new", {"cwd": str(workdir), "mcpServers": []}))).json()
        session_id = new["result"]["sessionId"]
        runtime = await manager.runtime(session_id)
        params: dict[str, object] = {"sessionId": session_id, "prompt": [{"type": "text", "text": "sleep 30"}]}
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(client.post, path, json=rpc(3, "session/prompt", params)))
            while runtime.doc.get("status") != "running":
                await anyio.lowlevel.checkpoint()
            hub = client._transport.app.state.acp_hub  # type: ignore[attr-defined]
            assert await hub.expire_idle(anyio.current_time() + 1e9) == ()  # its POST is waiting
            runtime.cancel()
    assert await hub.expire_idle(anyio.current_time() + 1e9) == ("conn-busy",)
