"""Test kit: a small TCP proxy: what a test puts between a daemon and its database to break the
connection and mend it (``cut``, ``restore``), and the round-robin load balancer in front of
daemons on other (network-namespaced) hosts: each new connection goes to the next upstream.

In a test it runs in the test's event loop (``serving``); as a process (``python -m
acpd.testing.tcp_proxy``) it can listen in one network namespace and reach its upstreams in
another (``--netns``): it binds its listener first, then enters the namespace the upstreams are
in, as a load balancer with a foot in each network would. It must not import acpd's product code.
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Final

import anyio
from anyio.abc import SocketStream, TaskGroup

CHUNK: Final = 65_536
CLONE_NEWNET: Final = 0x40000000


class TcpProxy:
    """Accepts on ``port`` and pipes each connection to the next of ``upstreams`` that answers
    (round robin)."""

    def __init__(self, upstreams: Sequence[tuple[str, int]]) -> None:
        self._next = itertools.cycle(list(upstreams))
        self._count = len(upstreams)
        self._pipes: set[anyio.CancelScope] = set()
        self.port = 0
        self.cut_off = False
        self.connections = 0
        """Connections piped so far (a test can tell that requests went through it)."""
        self.linger = False
        """Keep the upstream end of a connection its client closed open until ``let_go``: the
        database keeps a killed daemon's session (and its locks) as a server slow to notice would."""
        self._let_go = anyio.Event()

    async def cut(self) -> None:
        """Break every piped connection (both ends see it close) and refuse new ones, as a
        network that went away would, until ``restore``."""
        self.cut_off = True
        for pipe in list(self._pipes):
            pipe.cancel()
        await anyio.lowlevel.checkpoint()

    async def let_go(self) -> None:
        """Close the upstream ends ``linger`` kept open."""
        self.linger = False
        self._let_go.set()
        await anyio.lowlevel.checkpoint()

    def restore(self) -> None:
        """Pipe new connections again."""
        self.cut_off = False

    async def handle(self, client: SocketStream) -> None:
        async with client:
            if self.cut_off:
                return
            upstream = await self._connect()
            if upstream is None:
                return  # the client sees its connection close
            self.connections += 1
            with anyio.CancelScope() as scope:
                self._pipes.add(scope)
                try:
                    async with upstream, anyio.create_task_group() as tg:
                        tg.start_soon(self._from_client, client, upstream, tg)
                        tg.start_soon(self._to_client, upstream, client, tg)
                finally:
                    self._pipes.discard(scope)

    async def _from_client(self, client: SocketStream, upstream: SocketStream, tg: TaskGroup) -> None:
        await _pipe(client, upstream, None)
        if self.linger:
            await self._let_go.wait()
        tg.cancel_scope.cancel()

    async def _to_client(self, upstream: SocketStream, client: SocketStream, tg: TaskGroup) -> None:
        try:
            async for chunk in upstream:
                try:
                    await client.send(chunk)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    if not self.linger:
                        break  # (lingering: what the server still sends goes nowhere)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        tg.cancel_scope.cancel()

    async def _connect(self) -> SocketStream | None:
        """The next upstream that answers (a dead one is passed over, as a balancer's health
        check would), or None if none does."""
        for _ in range(self._count):
            host, port = next(self._next)
            try:
                return await anyio.connect_tcp(host, port)
            except OSError:
                continue
        return None


async def _pipe(source: SocketStream, sink: SocketStream, tg: TaskGroup | None) -> None:
    """Copy ``source`` to ``sink`` until either ends; then end the other direction too (``tg``)."""
    try:
        async for chunk in source:
            await sink.send(chunk)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
    if tg is not None:
        tg.cancel_scope.cancel()


@asynccontextmanager
async def serving(upstreams: Sequence[tuple[str, int]], host: str = "127.0.0.1") -> AsyncIterator[TcpProxy]:
    """A proxy listening on a free port of ``host`` for the block, in the caller's task group."""
    proxy = TcpProxy(upstreams)
    listener = await anyio.create_tcp_listener(local_host=host, local_port=0)
    proxy.port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, proxy.handle)
        try:
            yield proxy
        finally:
            tg.cancel_scope.cancel()


def enter_netns(path: str) -> None:
    """Move this (single-threaded) process's new sockets into the network namespace at ``path``;
    sockets made before stay where they were."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns({path}) failed")
    finally:
        os.close(fd)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a round-robin TCP proxy for tests")
    parser.add_argument("--listen", default="127.0.0.1", help="address to listen on (a free port)")
    parser.add_argument("--port-fd", type=int, required=True, help="file descriptor to write the port to")
    parser.add_argument("--netns", help="network namespace (a path) the upstreams are in")
    parser.add_argument("upstream", nargs="+", help="host:port, taken in turn")
    args = parser.parse_args(argv)
    upstreams = [(host, int(port)) for host, _, port in (u.rpartition(":") for u in args.upstream)]

    async def run() -> None:
        listener = await anyio.create_tcp_listener(local_host=args.listen, local_port=0)
        if args.netns:
            enter_netns(args.netns)  # the listener stays in this namespace; upstream sockets go there
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        os.write(args.port_fd, f"{port}\n".encode())
        os.close(args.port_fd)
        await listener.serve(TcpProxy(upstreams).handle)

    try:
        anyio.run(run)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
