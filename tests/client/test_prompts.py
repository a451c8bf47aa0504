"""Prompts through the client: typed answers, safe retries, streamed turns with their permission
requests answered from code, and records of variants this client does not know kept whole."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.lowlevel
import httpx
import pytest

from acpd.api.events import Message, UnknownUpdate
from acpd.client import Acpd, AsyncAcpd, approve_all, reject_all
from acpd.client.errors import SessionBusy
from acpd.daemon.app import create_app
from acpd.daemon.manager import SessionManager
from acpd.testing.daemon import Daemon

pytestmark = pytest.mark.anyio

WAIT_SECONDS = 30


class LosesFirstAnswer(httpx.ASGITransport):
    """Delivers every request, but the first prompt's answer is lost on its way back, as when a
    connection drops after the daemon ran the turn. Keeps the prompt requests' headers."""

    def __init__(self, manager: SessionManager) -> None:
        super().__init__(app=create_app(manager))
        self.prompts: list[httpx.Request] = []
        self.replayed: list[str | None] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if request.url.path.endswith("/prompt"):
            self.prompts.append(request)
            self.replayed.append(response.headers.get("idempotent-replayed"))
            if len(self.prompts) == 1:
                raise httpx.ReadError("connection reset by peer")
        return response


async def test_a_prompt_answer_lost_on_the_way_is_fetched_again_without_a_second_turn(
    manager: SessionManager, workdir: Path
) -> None:
    transport = LosesFirstAnswer(manager)
    async with AsyncAcpd("http://127.0.0.1:4520", token="", transport=transport) as client:
        with anyio.fail_after(WAIT_SECONDS):
            session = await client.create_session("mock", workdir)
            result = await client.prompt(session.id, "text only once")
            after = await client.session(session.id)
    keys = [request.headers["idempotency-key"] for request in transport.prompts]
    assert len(keys) == 2 and keys[0] == keys[1]  # one logical prompt, one key
    assert transport.replayed == [None, "true"]
    assert (result.text, result.stop_reason, after.turns) == ("only once", "end_turn", 1)


async def test_each_logical_prompt_gets_its_own_key(manager: SessionManager, workdir: Path) -> None:
    transport = LosesFirstAnswer(manager)
    async with AsyncAcpd("http://127.0.0.1:4520", token="", transport=transport) as client:
        with anyio.fail_after(WAIT_SECONDS):
            session = await client.create_session("mock", workdir)
            await client.prompt(session.id, "text one")
            await client.prompt(session.id, "text two")
    keys = [request.headers["idempotency-key"] for request in transport.prompts]
    assert len(keys) == 3 and keys[0] == keys[1] != keys[2]


async def test_a_blocking_prompt_answers_a_typed_result(app_client: AsyncAcpd, workdir: Path) -> None:
    with anyio.fail_after(WAIT_SECONDS):
        session = await app_client.create_session("mock", workdir)
        result = await app_client.prompt(session.id, "text hello\nusage 10 20\nstop max_tokens")
    assert (result.stop_reason, result.text, result.turn) == ("max_tokens", "hello", 1)
    assert result.usage is not None and (result.usage.input_tokens, result.usage.output_tokens) == (10, 20)
    assert result.first_seq < result.last_seq


async def test_a_turn_waiting_for_permission_is_listed_answered_and_refuses_an_unqueued_prompt(
    app_client: AsyncAcpd, workdir: Path
) -> None:
    with anyio.fail_after(WAIT_SECONDS):
        session = await app_client.create_session("mock", workdir)
        async with anyio.create_task_group() as tg:
            results = []

            async def run() -> None:
                results.append(await app_client.prompt(session.id, "permission execute"))

            tg.start_soon(run)
            pending = await app_client.permissions(session.id)
            while not pending:  # the request appears once the turn reaches it: let the turn run
                await anyio.lowlevel.checkpoint()
                pending = await app_client.permissions(session.id)
            request = pending[0]
            assert (request.tool_kind, request.available_replies) == ("execute", ["once", "always", "reject"])
            with pytest.raises(SessionBusy):
                await app_client.prompt(session.id, "text too soon", queue=False)
            answer = await app_client.answer_permission(session.id, request.id, "always")
            assert answer.outcome == {"outcome": "selected", "optionId": "always"}
    assert results[0].text == "permission: always"


@pytest.mark.e2e
async def test_a_streamed_turn_yields_typed_records_and_answers_permissions_from_code(
    live_client: AsyncAcpd, workdir: Path
) -> None:
    with anyio.fail_after(WAIT_SECONDS):
        session = await live_client.create_session("mock", workdir)
        stream = live_client.stream(session.id, "text a\npermission edit\ntext b", on_permission=approve_all)
        records = [record async for record in stream]
        rejected = await live_client.prompt(session.id, "permission edit", on_permission=reject_all)
    seqs = [record.seq for record in records]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert records[0].method == "session/prompt" and isinstance(records[-1].payload, Message)
    assert records[-1].payload.result == {"stopReason": "end_turn"}
    assert stream.result.text == "apermission: allowb"
    assert stream.result.last_seq == seqs[-1] and list(stream.tracker.requests) == [f"p{seqs[0] + 3}"]
    assert stream.tracker.rejected == []
    assert rejected.text == "permission: reject"


@pytest.mark.e2e
async def test_a_stream_retried_with_the_key_of_a_finished_turn_replays_its_records(
    live_client: AsyncAcpd, workdir: Path
) -> None:
    with anyio.fail_after(WAIT_SECONDS):
        session = await live_client.create_session("mock", workdir)
        first = await live_client.prompt(session.id, "text once", idempotency_key="k-1")
        again = live_client.stream(session.id, "text once", idempotency_key="k-1")
        seqs = [record.seq async for record in again]
    assert seqs == list(range(first.first_seq, first.last_seq + 1))
    assert (again.result.text, again.result.stop_reason) == ("once", "end_turn")


@pytest.mark.e2e
async def test_an_update_variant_no_client_knows_and_every_meta_are_kept(live_client: AsyncAcpd, workdir: Path) -> None:
    with anyio.fail_after(WAIT_SECONDS):
        session = await live_client.create_session("mock", workdir)
        records = [record async for record in live_client.stream(session.id, "meta")]
    updates = [record.update for record in records if record.update is not None]
    unknown = [u for u in updates if isinstance(u, UnknownUpdate)]
    assert len(unknown) == 1 and unknown[0].session_update == "_mock/custom"
    assert unknown[0].model_extra == {"value": 1}
    chunk = updates[0]
    assert chunk.field_meta == {"mock": {"x": 1}} and chunk.content.field_meta == {"mock": {"x": 1}}


@pytest.mark.e2e
async def test_the_sync_client_prompts_streams_pages_and_follows(daemon: Daemon, workdir: Path) -> None:
    def drive() -> tuple[list[int], list[int], str]:
        with Acpd(daemon.url, daemon.token, timeout=WAIT_SECONDS) as client:
            session = client.create_session("mock", workdir)
            streamed = [record.seq for record in client.stream(session.id, "chunks 3")]
            answer = client.prompt(session.id, "text sync")
            paged = [record.seq for record in client.events(session.id, page_size=2)]
            followed = []
            for record in client.follow(session.id):
                followed.append(record.seq)
                if record.seq == answer.last_seq:
                    break
            assert paged == followed
            return streamed, paged, answer.text

    with anyio.fail_after(WAIT_SECONDS):
        streamed, paged, text = await anyio.to_thread.run_sync(drive)
    assert text == "sync" and paged == list(range(1, len(paged) + 1)) and set(streamed) < set(paged)


class CutsFirstStream(httpx.AsyncHTTPTransport):
    """The first streamed prompt's connection breaks after its first record arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.prompts = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if request.url.path.endswith("/prompt"):
            self.prompts += 1
            if self.prompts == 1:
                response.stream = _cut_after_a_record(response.stream)
        return response


class _cut_after_a_record(httpx.AsyncByteStream):  # a stream, named for what it does
    def __init__(self, stream: httpx.AsyncByteStream | httpx.SyncByteStream) -> None:
        assert isinstance(stream, httpx.AsyncByteStream)
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk
            if b"data:" in chunk:
                raise httpx.ReadError("connection reset by peer")

    async def aclose(self) -> None:
        await self._stream.aclose()


@pytest.mark.e2e
async def test_a_turn_stream_cut_mid_turn_resumes_with_no_record_lost_or_repeated(
    daemon: Daemon, workdir: Path
) -> None:
    transport = CutsFirstStream()
    async with AsyncAcpd(daemon.url, daemon.token, timeout=WAIT_SECONDS, transport=transport) as client:
        with anyio.fail_after(WAIT_SECONDS):
            session = await client.create_session("mock", workdir)
            stream = client.stream(session.id, "text a\npermission edit\ntext b", on_permission=approve_all)
            seqs = [record.seq async for record in stream]
            history = [record.seq async for record in client.events(session.id)]
    assert transport.prompts == 2
    assert seqs == [seq for seq in history if seq >= seqs[0]]  # the whole turn, each record once
    assert stream.result.text == "apermission: allowb" and stream.result.stop_reason == "end_turn"


@pytest.mark.e2e
async def test_a_headless_prompt_keeps_the_idempotency_key_it_was_given(live_client: AsyncAcpd, workdir: Path) -> None:
    with anyio.fail_after(WAIT_SECONDS):
        session = await live_client.create_session("mock", workdir)
        first = await live_client.prompt(session.id, "permission edit", on_permission=approve_all, idempotency_key="k")
        again = await live_client.prompt(session.id, "permission edit", on_permission=approve_all, idempotency_key="k")
        turns = (await live_client.session(session.id)).turns
    assert (first.turn, again.turn, turns) == (1, 1, 1)
    assert first.text == again.text == "permission: allow"


@pytest.mark.e2e
async def test_cancel_stops_the_running_turn_and_says_whether_there_was_one(
    live_client: AsyncAcpd, workdir: Path
) -> None:
    with anyio.fail_after(WAIT_SECONDS):
        session = await live_client.create_session("mock", workdir)
        stream = live_client.stream(session.id, "text started\nsleep 60")
        running = None
        async for record in stream:
            if record.update is not None and running is None:  # the turn is under way: its first chunk
                running = await live_client.cancel(session.id)
        await live_client.prompt(session.id, "text next")
        idle = await live_client.cancel(session.id)
    assert (running, idle) == (True, False)
    assert stream.result.stop_reason == "cancelled" and stream.result.text == "started"
