"""End to end: one daemon per database, and stopping a real ``acpd serve`` whatever is stuck: a
live stream, a full disk, a store that hangs, an agent that hangs. Faults are injected into the
daemon process by a ``sitecustomize`` module that makes the store's writes obey a flag file."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.lowlevel
import httpx
import pytest

from acpd.protocol import jsonio
from acpd.rpc.peer import JsonRpcPeer
from acpd.testing.daemon import Daemon, daemon_env, running_daemon
from acpd.transports.process import ProcessSpec, open_process_transport
from tests.daemon.helpers import all_events, new_session
from tests.e2e.sse import sse_events
from tests.processes import descendants, pidfds, wait_all_ended

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

STOP_BOUND_SECONDS: Final = 10.0
"""A SIGTERMed daemon must be gone by then, whatever is stuck (its own hard deadline is longer:
the steps' bounds must do it)."""

FAULTS: Final = '''
"""Test fault injection: the event store's writes obey the flag file ACPD_TEST_FAULT."""
import os, time
from pathlib import Path

from acpd.store import sqlite as _store

_flag = Path(os.environ["ACPD_TEST_FAULT"])
_append = _store.SqliteEventStore._append_sync


def _append_sync(self, conn, records, doc):
    fault = _flag.read_text().strip() if _flag.exists() else ""
    if fault == "stuck":
        while True:
            time.sleep(3600)
    pages = conn.execute("PRAGMA page_count").fetchone()[0] if fault == "full" else 0xFFFFFFFE
    conn.execute(f"PRAGMA max_page_count = {pages}")
    return _append(self, conn, records, doc)


_store.SqliteEventStore._append_sync = _append_sync
'''


@asynccontextmanager
async def faulty_daemon(home: Path, *extra: str) -> AsyncIterator[tuple[Daemon, Path]]:
    """A daemon whose store's writes hang (flag ``stuck``) or meet a full disk (``full``)."""
    inject = home / "inject"
    inject.mkdir(exist_ok=True)
    (inject / "sitecustomize.py").write_text(FAULTS)
    flag = home / "fault"
    env = {"PYTHONPATH": f"{inject}:{Path.cwd()}", "ACPD_TEST_FAULT": str(flag)}
    async with running_daemon(home, *extra, env=env) as daemon:
        yield daemon, flag


async def sigterm(daemon: Daemon) -> float:
    """SIGTERM the daemon; how long it took to exit. Its agents (and their keepers) must be gone too."""
    below = descendants(daemon.process.pid)
    assert below, "the daemon runs an agent"
    with pidfds(below, missing_ok=True) as fds:
        started = anyio.current_time()
        daemon.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(STOP_BOUND_SECONDS):
            await daemon.process.wait()
        took = anyio.current_time() - started
        await wait_all_ended(fds)
    return took


async def running_session(http: httpx.AsyncClient, cwd: Path) -> str:
    session_id = str((await new_session(http, cwd))["id"])
    return session_id


async def test_a_second_daemon_on_one_database_refuses_to_start_and_a_killed_ones_database_is_free(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path) as first, first.client() as http:
        command = [sys.executable, "-m", "acpd", "serve", "--port", "0"]
        with anyio.fail_after(30):
            second = await anyio.run_process(command, env=daemon_env(tmp_path), check=False)
        assert second.returncode == 1
        message = second.stderr.decode()
        db = tmp_path / "data" / "acpd" / "acpd.db"
        assert f"another acpd (pid {first.process.pid}, serving {first.url}) owns {db}; stop it or use --db" in message
        assert "Traceback" not in message  # a refusal is a message, not a crash
        assert (await http.get("/v1/health")).status_code == 200  # the first serves on
        await first.kill()
    async with running_daemon(tmp_path) as third, third.client() as http:
        assert (await http.get("/v1/health")).status_code == 200


async def test_acp_on_stdio_relays_to_the_daemon_that_owns_the_database_or_refuses_clearly(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon, daemon.client() as http:
        # nobody at the URL it is given: the database's owner is found through the lock
        args = ("-m", "acpd", "acp", "--url", "http://127.0.0.1:9")
        spec = ProcessSpec(sys.executable, args, env=daemon_env(tmp_path))
        async with open_process_transport(spec) as transport, anyio.create_task_group() as tg:
            peer = JsonRpcPeer(transport)
            tg.start_soon(peer.run)
            with anyio.fail_after(30):
                await peer.request("initialize", {"protocolVersion": 1, "clientCapabilities": {}})
                created = await peer.request("session/new", {"cwd": str(tmp_path), "mcpServers": []})
            tg.cancel_scope.cancel()
        assert (await http.get(f"/v1/sessions/{created['sessionId']}")).status_code == 200  # the daemon's session

        command = [sys.executable, *args, "--standalone"]
        with anyio.fail_after(30):
            refused = await anyio.run_process(command, input=b"", env=daemon_env(tmp_path), check=False)
        assert refused.returncode == 1
        assert refused.stdout == b""
        assert f"another acpd (pid {daemon.process.pid}, serving {daemon.url}) owns" in refused.stderr.decode()


async def test_sigterm_stops_a_daemon_with_a_live_stream_open_and_leaves_no_agent_behind(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path) as daemon, daemon.client() as http:
        session_id = await running_session(http, tmp_path)
        async with http.stream("GET", f"/v1/sessions/{session_id}/events/stream") as stream:
            async for _ in sse_events(stream):
                break  # the stream is live
            await sigterm(daemon)
    assert daemon.process.returncode == 0
    assert "stopping" in daemon.log_path.read_text()


async def test_sigterm_answers_a_streaming_prompt_cancelled_and_a_restart_finds_the_log_complete(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path) as daemon, daemon.client() as http:
        session_id = await running_session(http, tmp_path)
        body = {"prompt": "text working\nsleep 100"}
        headers = {"Accept": "text/event-stream"}
        events: list[dict[str, Any]] = []
        with anyio.fail_after(30):
            async with http.stream("POST", f"/v1/sessions/{session_id}/prompt", json=body, headers=headers) as stream:
                async for event in sse_events(stream):
                    events.append(event)
                    if '"text":"working"' in jsonio.dumps_str(event["payload"]):
                        await sigterm(daemon)  # the agent is in the turn
    assert daemon.process.returncode == 0
    assert events[-1]["payload"]["result"]["stopReason"] == "cancelled"
    async with running_daemon(tmp_path) as again, again.client() as http:
        recorded = await all_events(http, session_id)
    methods = [e["payload"].get("method") for e in recorded]
    assert "_acpd/turn_interrupted" not in methods
    assert any(e["payload"].get("result", {}).get("stopReason") == "cancelled" for e in recorded)


async def test_sigterm_stops_a_daemon_whose_disk_is_full_and_its_log_resumed_gap_free_when_space_returned(
    tmp_path: Path,
) -> None:
    async with faulty_daemon(tmp_path) as (daemon, flag), daemon.client() as http:
        session_id = await running_session(http, tmp_path)
        flag.write_text("full")
        with anyio.fail_after(30):
            answer = await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "big 300000"})
        assert answer.status_code == 507, answer.text
        assert answer.json()["type"] == "urn:acpd:problem:store-full"

        flag.write_text("")  # space returns
        with anyio.fail_after(30):
            async with http.stream("GET", f"/v1/sessions/{session_id}/events/stream") as stream:
                # the turn's answer and the error saying why it ended may commit in separate rounds
                # once space returns: wait for both
                awaited = {"answer", "error"}
                async for event in sse_events(stream):
                    if event["payload"].get("id") == "turn-1" and "method" not in event["payload"]:
                        awaited.discard("answer")
                    if event["payload"].get("method") == "_acpd/error":
                        awaited.discard("error")
                    if not awaited:
                        break
        events = await all_events(http, session_id)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert [e["payload"]["params"]["code"] for e in events if e["payload"].get("method") == "_acpd/error"] == [
            "STORE_FULL"
        ]

        flag.write_text("full")
        with anyio.fail_after(30):
            again = await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "big 300000"})
        assert again.status_code == 507
        took = await sigterm(daemon)
    assert daemon.process.returncode == 0
    log = daemon.log_path.read_text()
    assert log.count("commit(s) of 1 session log(s) failed") <= 2  # rate-limited, not one a second
    assert took < 5


async def test_sigterm_stops_a_daemon_whose_store_hangs(tmp_path: Path) -> None:
    async with faulty_daemon(tmp_path) as (daemon, flag), daemon.client() as http:
        session_id = await running_session(http, tmp_path)
        flag.write_text("stuck")
        async with anyio.create_task_group() as tg:
            tg.start_soon(_ignore_errors, http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "hi"}))
            await sigterm(daemon)
            tg.cancel_scope.cancel()
    log = daemon.log_path.read_text()
    assert "the store is stuck" in log
    assert "stopped, but a thread is stuck: exiting without it" in log
    assert daemon.process.returncode == 70


async def test_a_second_sigterm_exits_at_once(tmp_path: Path) -> None:
    async with faulty_daemon(tmp_path) as (daemon, flag), daemon.client() as http:
        session_id = await running_session(http, tmp_path)
        flag.write_text("stuck")  # a first SIGTERM alone takes seconds
        below = descendants(daemon.process.pid)
        with pidfds(below, missing_ok=True) as fds, anyio.fail_after(STOP_BOUND_SECONDS):
            async with http.stream("GET", f"/v1/sessions/{session_id}/events/stream") as stream:
                daemon.process.send_signal(signal.SIGTERM)
                async for _ in sse_events(stream):
                    pass  # it ends when the first signal closes the session
            started = anyio.current_time()
            daemon.process.send_signal(signal.SIGTERM)
            await daemon.process.wait()
            took = anyio.current_time() - started
            await wait_all_ended(fds)
    assert daemon.process.returncode == 128 + signal.SIGTERM
    assert took < 1
    assert "SIGTERM again: exiting now" in daemon.log_path.read_text()


async def test_sigterm_stops_a_daemon_while_an_agent_that_ignores_sigterm_hangs_at_start(tmp_path: Path) -> None:
    started = tmp_path / "started"
    os.mkfifo(started)
    hang = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "open(sys.argv[1], 'w').write('hanging'); time.sleep(600)"
    )
    config = tmp_path / "config.toml"
    config.write_text(f'[agents.hang]\ncommand = "{sys.executable}"\nargs = ["-c", "{hang}", "{started}"]\n')
    async with (
        running_daemon(tmp_path, "--config", str(config)) as daemon,
        daemon.client(timeout=60) as http,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(_ignore_errors, http.post("/v1/sessions", json={"agent": "hang", "cwd": str(tmp_path)}))
        with anyio.fail_after(10):
            # opening a FIFO to read waits for its writer: the agent has started and hangs
            assert await anyio.to_thread.run_sync(started.read_text, abandon_on_cancel=True) == "hanging"
        await sigterm(daemon)
        tg.cancel_scope.cancel()
    assert daemon.process.returncode == 0


async def _ignore_errors(call: Any) -> None:
    with contextlib.suppress(httpx.HTTPError):
        await call  # the daemon stops under this request on purpose
