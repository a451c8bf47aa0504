"""End to end: daemons sharing a PostgreSQL database from different hosts, behind a load balancer,
as the README's "across machines" runs them, as closely as one machine allows.

Three Linux network namespaces stand for three machines on one network (a bridge in the first,
a veth pair to each of the others): the first holds the network's 10.77.0.1, where the database
answers (a TCP proxy to the test's PostgreSQL, so the daemons reach it over that network) and the
load balancer's far side; daemon A runs in the second on 10.77.0.2, daemon B in the third on
10.77.0.3, each bound to its own address (so each requires the token: they share one) and noting
that address for the other. The client talks only to the load balancer (a round-robin TCP proxy,
``acpd.testing.tcp_proxy``, listening on the test's 127.0.0.1), one connection per request, so
requests land on both daemons. A and B are real processes, one kernel: no real latency or packet
loss. Where namespaces cannot be made (not root, no ``ip``/``unshare``/``nsenter``, or the kernel
refuses), the test is skipped with the reason, also in CI: that is the machine's limit, not acpd's.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import pytest

from acpd.store._pg_schema import FAILOVER_SECONDS
from acpd.store.postgres import PostgresEventStore
from acpd.testing.daemon import Daemon, running_daemon
from tests.daemon.helpers import new_session
from tests.e2e.sse import sse_events
from tests.e2e.test_postgres_shared import is_answer
from tests.postgres import port_of, postgres_dsn, wait_free

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]
__all__ = ["postgres_dsn"]

NET = "10.77.0"


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


class Hosts:
    """Network namespaces held by idle processes (gone with them): ``lan`` (the bridge, the
    database's address), ``a`` and ``b``."""

    def __init__(self) -> None:
        self.holders: dict[str, subprocess.Popen[bytes]] = {}

    def pid(self, name: str) -> int:
        return self.holders[name].pid

    def inside(self, name: str) -> list[str]:
        return ["nsenter", "-t", str(self.pid(name)), "-n", "--"]

    def make(self) -> None:
        for name in ("lan", "a", "b"):
            holder = subprocess.Popen(
                ["unshare", "-n", "--", sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
            )
            self.holders[name] = holder
        lan = self.inside("lan")
        sh(*lan, "ip", "link", "set", "lo", "up")
        sh(*lan, "ip", "link", "add", "br0", "type", "bridge")
        sh(*lan, "ip", "addr", "add", f"{NET}.1/24", "dev", "br0")
        sh(*lan, "ip", "link", "set", "br0", "up")
        for number, name in ((2, "a"), (3, "b")):
            sh(
                *lan,
                "ip",
                "link",
                "add",
                f"to-{name}",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                str(self.pid(name)),
            )
            sh(*lan, "ip", "link", "set", f"to-{name}", "master", "br0", "up")
            host = self.inside(name)
            sh(*host, "ip", "link", "set", "lo", "up")
            sh(*host, "ip", "addr", "add", f"{NET}.{number}/24", "dev", "eth0")
            sh(*host, "ip", "link", "set", "eth0", "up")

    def close(self) -> None:
        for holder in self.holders.values():
            if holder.stdin is not None:
                holder.stdin.close()
            holder.wait(10)


@contextlib.contextmanager
def hosts() -> Iterator[Hosts]:
    missing = [tool for tool in ("ip", "unshare", "nsenter") if shutil.which(tool) is None]
    if os.geteuid() != 0 or missing:
        pytest.skip(f"network namespaces need root and ip, unshare, nsenter (missing: {missing or 'root'})")
    made = Hosts()
    try:
        try:
            made.make()
        except (subprocess.CalledProcessError, OSError) as exc:
            stderr = getattr(exc, "stderr", b"") or b""
            pytest.skip(f"this machine cannot make network namespaces joined by veth: {exc} {stderr.decode()[-300:]}")
        yield made
    finally:
        made.close()


@contextlib.asynccontextmanager
async def proxy(prefix: list[str], listen: str, netns: str, *upstreams: str) -> AsyncIterator[int]:
    """``acpd.testing.tcp_proxy`` as a process: listening on ``listen`` where ``prefix`` runs it,
    reaching ``upstreams`` in the namespace ``netns``; its port."""
    read, write = os.pipe()
    argv = [*prefix, sys.executable, "-m", "acpd.testing.tcp_proxy", "--listen", listen, "--port-fd", str(write)]
    process = await anyio.open_process([*argv, "--netns", netns, *upstreams], pass_fds=(write,))
    os.close(write)
    try:
        with anyio.fail_after(20):
            line = await anyio.to_thread.run_sync(os.read, read, 64, abandon_on_cancel=True)
        assert line.strip(), "the proxy did not start"
        yield int(line)
    finally:
        os.close(read)
        process.terminate()
        await process.wait()


def port_of_url(daemon: Daemon) -> int:
    port = urlsplit(daemon.url).port
    assert port is not None
    return port


async def test_daemons_on_two_hosts_behind_a_load_balancer_serve_one_session_and_fail_over(
    tmp_path: Path, postgres_dsn: str
) -> None:
    token = secrets.token_urlsafe(24)
    with hosts() as net:
        here = f"/proc/{os.getpid()}/ns/net"
        async with proxy(net.inside("lan"), f"{NET}.1", here, f"127.0.0.1:{port_of(postgres_dsn)}") as db_port:
            dsn = postgres_dsn.replace(f"127.0.0.1:{port_of(postgres_dsn)}", f"{NET}.1:{db_port}")
            daemons: list[Daemon] = []
            async with contextlib.AsyncExitStack() as stack:
                for number, name in ((2, "a"), (3, "b")):
                    data = tmp_path / name / "data"
                    data.mkdir(parents=True, mode=0o700)
                    (data / "token").write_text(token)
                    (data / "token").chmod(0o600)
                    flags = ("--host", f"{NET}.{number}", "--db", dsn, "--share-db", "--data-dir", str(data))
                    daemons.append(
                        await stack.enter_async_context(
                            running_daemon(tmp_path / name, *flags, wrapper=net.inside(name))
                        )
                    )
                upstreams = [f"{NET}.{n}:{port_of_url(d)}" for n, d in zip((2, 3), daemons, strict=True)]
                hosted = {f"http://{upstream}": daemon for upstream, daemon in zip(upstreams, daemons, strict=True)}
                lb_port = await stack.enter_async_context(
                    proxy([], "127.0.0.1", f"/proc/{net.pid('lan')}/ns/net", *upstreams)
                )
                one_per_request = httpx.Limits(max_keepalive_connections=0)
                client = await stack.enter_async_context(
                    httpx.AsyncClient(
                        base_url=f"http://127.0.0.1:{lb_port}",
                        headers={"Authorization": f"Bearer {token}"},
                        limits=one_per_request,
                        timeout=30,
                    )
                )
                assert (await client.get("/v1/sessions", headers={"Authorization": ""})).status_code == 401
                await run_the_session(client, hosted, tmp_path, postgres_dsn)


async def run_the_session(client: httpx.AsyncClient, hosted: dict[str, Daemon], cwd: Path, dsn: str) -> None:
    """Through the balancer: create, prompt and stream (requests on both daemons), kill the
    session's owner, prompt again (the other takes the session over within the bound)."""
    session_id = (await new_session(client, cwd))["id"]
    streamed: list[dict[str, Any]] = []
    answers: list[dict[str, Any]] = []

    async def stream() -> None:
        async with client.stream("GET", f"/v1/sessions/{session_id}/events/stream") as response:
            assert response.status_code == 200
            async for event in sse_events(response):
                streamed.append(event)
                if is_answer(event, 2):
                    return

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(stream)
            for text in ("text one", "text two"):  # each prompt on another daemon than the last request
                answer = await client.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": text})
                answers.append(answer.json())
    assert [(x["turn"], x["text"]) for x in answers] == [(1, "one"), (2, "two")]
    assert [e["seq"] for e in streamed] == list(range(1, len(streamed) + 1))

    async with await PostgresEventStore.open(dsn, writer=False) as store:
        owner = await store.owner_of(session_id)
    assert owner is not None and owner["url"] in hosted, owner  # the address it is bound to, as noted
    await hosted[owner["url"]].kill()
    with anyio.fail_after(FAILOVER_SECONDS):  # the documented bound (a killed process: at once)
        await wait_free(dsn, session_id)
    with anyio.fail_after(30):
        after = (await client.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "text three"})).json()
    assert (after["turn"], after["text"], after["stopReason"]) == (3, "three", "end_turn")
    page = (await client.get(f"/v1/sessions/{session_id}/events", params={"limit": 10000})).json()
    events = page["items"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[: len(streamed)] == streamed
    assert [e["payload"].get("method") for e in events].count("_acpd/agent_started") == 2
