"""Daemon layer: the security edge (DESIGN §7): the start-up rules (a token on every bind by
default, a private data directory) and pure ASGI middleware: Host and Origin allow-lists against
DNS rebinding, the bearer token, and the request-size cap. The middleware must not know any route
except the open ones: the health check (for liveness probes), the OpenAPI spec and the /docs page
with its assets, the /ui inspector page with its files (they hold no data, and a browser opening a
page sends no token). Host and Origin
are checked on those too.

"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Iterable
from pathlib import Path
from typing import Final
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from acpd.errors import ConfigError
from acpd.private import ensure_token, given_token, is_loopback, private_dir, token_path
from acpd.protocol import jsonio
from acpd.settings import DaemonConfig

from . import ui
from .problems import MEDIA_TYPE, problem_body

OPEN_PATHS: Final = frozenset(
    {"/v1/health", "/v1/openapi.json", "/docs", "/docs/docs.js", "/docs/docs.css", *ui.OPEN_PATHS}
)
LOOPBACK_NAMES: Final = ("127.0.0.1", "localhost", "[::1]")


def secured(config: DaemonConfig) -> DaemonConfig:
    """``config`` made ready to serve: its data directory private, its token settled.

    The token is: none with ``auth`` off (loopback only); else, first found, the one in
    ``config.token_file``, ``config.token``, the data directory's token file (created at first
    start).

    Raises:
        ConfigError: ``auth`` is off on a non-loopback bind, off while a token is given, or the
            token file cannot be read or created.
    """
    data_dir = Path(config.resolved_data_dir())
    try:
        private_dir(data_dir)
        token, token_file = _settled_token(config, data_dir)
    except OSError as exc:
        raise ConfigError(f"cannot set up the bearer token: {exc}") from exc
    return dataclasses.replace(config, token=token, token_file=token_file)


def _settled_token(config: DaemonConfig, data_dir: Path) -> tuple[str | None, str]:
    """The token, and the file it is in ("": it came from ACPD_TOKEN or the config file)."""
    if not config.auth:
        if config.token or config.token_file:
            raise ConfigError("--no-auth turns the token off, but a token was given (ACPD_TOKEN or --token-file)")
        if not is_loopback(config.host):
            raise ConfigError(
                f"--no-auth is for loopback only: binding {config.host} would open the daemon to the network"
            )
        return None, ""
    if config.token_file:
        return given_token(Path(config.token_file)), config.token_file
    if config.token:
        return config.token, ""
    return ensure_token(data_dir), str(token_path(data_dir))


def describe_auth(config: DaemonConfig) -> str:
    """How clients authenticate, for the start-up line (``config`` as ``secured`` made it)."""
    if not config.auth:
        return "no token (--no-auth)"
    if config.token_file:
        return f"token in {config.token_file}"
    return "token from ACPD_TOKEN or the config file"


def allowed_hosts(config: DaemonConfig, port: int) -> frozenset[str] | None:
    """Host header values to accept; None disables the check (non-loopback bind with no list)."""
    if not is_loopback(config.host) and not config.allowed_hosts:
        return None
    names: Iterable[str] = (*LOOPBACK_NAMES, config.host, *config.allowed_hosts)
    return frozenset(h for name in names for h in (name, f"{name}:{port}"))


def allowed_origins(config: DaemonConfig, port: int) -> frozenset[str]:
    return frozenset({*(f"http://{name}:{port}" for name in LOOPBACK_NAMES), *config.allowed_origins})


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, *, config: DaemonConfig, port: int) -> None:
        self.app = app
        self._hosts = allowed_hosts(config, port)
        self._origins = allowed_origins(config, port)
        self._token = config.token.encode() if config.token else None
        self._max_body = config.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope, headers)
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket" and "websocket.http.response" not in scope.get("extensions", {}):
            # a server without the denial-response extension can only close (uvicorn then says 403)
            await send({"type": "websocket.close", "code": 1008, "reason": refusal[2]})
        else:
            await _send_problem(send, *refusal, prefix="websocket." if scope["type"] == "websocket" else "")

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str, str] | None:
        host = headers.get("host", "")
        if self._hosts is not None and host not in self._hosts:
            return 421, "host-not-allowed", f"Host {host!r} is not allowed (DNS-rebinding protection)"
        origin = headers.get("origin")
        if origin is not None and origin not in self._origins:
            return 403, "origin-not-allowed", f"Origin {origin!r} is not allowed"
        if self._token is not None and scope["path"] not in OPEN_PATHS and not self._authorized(scope, headers):
            return 401, "unauthorized", "a valid bearer token is required (Authorization: Bearer <token>)"
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self._max_body:
            return 413, "payload-too-large", f"request body exceeds {self._max_body} bytes"
        return None

    def _authorized(self, scope: Scope, headers: dict[str, str]) -> bool:
        assert self._token is not None
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self._token):
            return True
        # a browser cannot set headers on a WebSocket: there the token may come as ?access_token=
        if scope["type"] == "websocket":
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            return any(hmac.compare_digest(t.encode(), self._token) for t in query.get("access_token", []))
        return False


async def _send_problem(send: Send, status: int, kind: str, detail: str, *, prefix: str = "") -> None:
    """The refusal as a problem; ``prefix`` ``websocket.`` answers a WebSocket handshake with it (the
    ASGI denial response), so a client sees the same 401 or 403 as over plain HTTP."""
    body = jsonio.dumps(problem_body(status, kind, detail))
    await send(
        {
            "type": f"{prefix}http.response.start",
            "status": status,
            "headers": [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": f"{prefix}http.response.body", "body": body})
