"""Adapters layer: the ``anthropic`` SDK clients claude-native sessions share.

One client per base URL and credentials, per event loop, instead of one per session: a client
holds a connection pool, its headers and its TLS state (kilobytes, and a kept-alive socket, per
session before). Sessions take a client when their backend starts and give it back when it stops;
the last one to give it back closes it. It must not know about sessions, turns or the daemon.
"""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass, field
from typing import Any

import anthropic
import anyio
import httpx
from anyio.lowlevel import RunVar

ClientKey = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class _Shared:
    client: anthropic.AsyncAnthropic
    users: int = 0


@dataclass(slots=True)
class _Clients:
    by_key: dict[ClientKey, _Shared] = field(default_factory=dict)
    lock: anyio.Lock = field(default_factory=anyio.Lock)


_CLIENTS: RunVar[_Clients] = RunVar("acpd_claude_native_clients")
"""Per event loop: a client's connections belong to the loop that opened them."""


def _clients() -> _Clients:
    try:
        return _CLIENTS.get()
    except LookupError:
        clients = _Clients()
        _CLIENTS.set(clients)
        return clients


def client_key(options: dict[str, Any]) -> ClientKey:
    """What tells clients apart: the base URL and the credentials (``AsyncAnthropic``'s options)."""
    return tuple(sorted((name, str(value)) for name, value in options.items()))


async def acquire(options: dict[str, Any]) -> anthropic.AsyncAnthropic:
    """The shared client for ``options``, made on first use. Give it back with ``release``."""
    clients = _clients()
    key = client_key(options)
    async with clients.lock:  # one client per key, even when sessions start together
        shared = clients.by_key.get(key)
        if shared is None:
            verify = await anyio.to_thread.run_sync(shared_ssl_context)  # loads the CA bundle, once
            http_client = anthropic.DefaultAsyncHttpxClient(verify=verify)
            shared = _Shared(anthropic.AsyncAnthropic(**options, max_retries=0, http_client=http_client))
            clients.by_key[key] = shared
        shared.users += 1
        return shared.client


async def release(options: dict[str, Any]) -> None:
    """Give back the client ``acquire(options)`` returned; the last user closes it."""
    clients = _clients()
    key = client_key(options)
    shared = clients.by_key.get(key)
    if shared is None:
        return
    shared.users -= 1
    if shared.users <= 0:
        del clients.by_key[key]
        with anyio.CancelScope(shield=True):
            await shared.client.close()


def users(options: dict[str, Any]) -> int:
    """How many sessions use the client for ``options`` now (for tests)."""
    shared = _clients().by_key.get(client_key(options))
    return shared.users if shared is not None else 0


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """The SDK's default TLS context (the same CA bundle), built once for every client: each
    would otherwise build its own, about 16 ms and 0.8 MiB."""
    try:
        import httpx2  # the HTTP library of anthropic 2.x
    except ImportError:
        return httpx.create_ssl_context()
    return httpx2.create_ssl_context()
