"""follow() hands out every record of a session once, in order, across a daemon killed with
SIGKILL and started again on the same data directory and port."""

from __future__ import annotations

from contextlib import AsyncExitStack, aclosing, closing
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import anyio.from_thread
import anyio.to_thread
import httpx
import pytest

from acpd.client import Acpd, AsyncAcpd
from acpd.client.errors import DaemonUnreachable, SessionNotFound
from acpd.testing.daemon import running_daemon

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

FLOOD = 50_000
KILL_AFTER = 20_000
TEST_TIMEOUT_SECONDS = 240


class Counting(httpx.AsyncHTTPTransport):
    """Counts the event stream's connections, and the attempts refused while no daemon listened."""

    def __init__(self) -> None:
        super().__init__()
        self.streams = self.refused = 0
        self.was_refused = anyio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        is_stream = request.url.path.endswith("/events/stream")
        try:
            response = await super().handle_async_request(request)
        except httpx.ConnectError:
            self.refused += is_stream
            self.was_refused.set()
            raise
        self.streams += is_stream
        return response


async def test_follow_survives_kill_9_and_a_restart_over_a_50000_event_turn_with_no_loss_or_repeat(
    tmp_path: Path, workdir: Path
) -> None:
    with anyio.fail_after(TEST_TIMEOUT_SECONDS):
        async with AsyncExitStack() as daemons:
            first = await daemons.enter_async_context(running_daemon(tmp_path))
            port = urlsplit(first.url).port
            restarted = anyio.Event()
            transport = Counting()

            async def restart() -> None:
                await transport.was_refused.wait()  # the follower found no daemon, and keeps trying
                await daemons.enter_async_context(running_daemon(tmp_path, "--port", str(port)))
                restarted.set()

            async with AsyncAcpd(first.url, first.token, timeout=120, transport=transport) as client:
                session = await client.create_session("mock", workdir)
                flood = await client.prompt(session.id, f"chunks {FLOOD}")
                assert flood.stop_reason == "end_turn"
                assert flood.last_seq - flood.first_seq + 1 >= FLOOD + 2  # the prompt, the chunks, the answer
                seqs: list[int] = []
                last = None
                async with anyio.create_task_group() as tg, aclosing(client.follow(session.id)) as records:
                    async for record in records:
                        seqs.append(record.seq)
                        if len(seqs) == KILL_AFTER:
                            await first.kill()  # mid-stream: tens of thousands of records still to send
                            assert not restarted.is_set()
                            tg.start_soon(restart)  # the follower retries while the daemon is down
                        if record.seq == flood.last_seq:
                            await restarted.wait()
                            last = (await client.prompt(session.id, "text after the restart")).last_seq
                        if record.seq == last:
                            break
    assert seqs == list(range(1, len(seqs) + 1))  # no record lost, none repeated, in order
    assert last is not None and seqs[-1] == last > flood.last_seq
    assert transport.streams >= 2  # it did reconnect
    assert transport.refused >= 1  # and retried while the daemon was down


async def test_the_sync_clients_follow_also_resumes_across_a_kill_9_and_a_restart(
    tmp_path: Path, workdir: Path
) -> None:
    with anyio.fail_after(TEST_TIMEOUT_SECONDS):
        async with AsyncExitStack() as daemons:
            first = await daemons.enter_async_context(running_daemon(tmp_path))
            port = urlsplit(first.url).port

            async def kill_and_restart() -> None:
                await first.kill()
                await daemons.enter_async_context(running_daemon(tmp_path, "--port", str(port)))

            def follow() -> tuple[list[int], int]:
                with Acpd(first.url, first.token, timeout=120) as client:
                    session = client.create_session("mock", workdir)
                    flood = client.prompt(session.id, "chunks 5000")
                    seqs: list[int] = []
                    with closing(client.follow(session.id)) as records:
                        for record in records:
                            seqs.append(record.seq)
                            if len(seqs) == 1000:
                                anyio.from_thread.run(kill_and_restart)
                            if record.seq == flood.last_seq:
                                return seqs, flood.last_seq
                raise AssertionError("follow() ended")

            seqs, last = await anyio.to_thread.run_sync(follow)
    assert seqs == list(range(1, last + 1))


async def test_follow_ends_with_session_not_found_once_the_session_is_deleted(tmp_path: Path, workdir: Path) -> None:
    with anyio.fail_after(TEST_TIMEOUT_SECONDS):
        async with running_daemon(tmp_path) as daemon, AsyncAcpd(daemon.url, daemon.token, timeout=30) as client:
            session = await client.create_session("mock", workdir)
            seen = []
            with pytest.raises(SessionNotFound):
                async with aclosing(client.follow(session.id)) as records:
                    async for record in records:
                        seen.append(record.seq)
                        if record.seq == 1:
                            await client.delete_session(session.id)
    assert seen == list(range(1, len(seen) + 1))  # what the log held until it closed, then the 404


async def test_follow_gives_up_when_asked_to_once_no_daemon_answered_that_long() -> None:
    async with AsyncAcpd("http://127.0.0.1:9", token="") as client:  # nothing listens on port 9
        with anyio.fail_after(30), pytest.raises(DaemonUnreachable):
            async with aclosing(client.follow("any", give_up_after=0.5)) as records:
                async for _ in records:
                    raise AssertionError("no daemon, no record")
