"""CLI layer helper: a small synchronous HTTP client of a running daemon, for the ``acpd`` commands.

It renders events for a terminal; it must not hold daemon logic. It imports httpx only when a
client is made: every ``acpd`` command imports this module, and ``serve`` and ``acp`` need no client.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO
from urllib.parse import urlsplit

from acpd.errors import ConnectionClosed
from acpd.imports import without_httpx_cli
from acpd.private import client_token
from acpd.protocol import jsonio
from acpd.protocol.jsonio import JsonObject
from acpd.settings import default_data_dir

if TYPE_CHECKING:
    import ssl

    import httpx  # imported when a client is made: `acpd acp` and `acpd serve` never need it

DEFAULT_URL: Final = "http://127.0.0.1:4520"
CONNECT_TIMEOUT_SECONDS: Final = 30.0
"""For connecting, writing and pool waits; reads wait as long as a turn takes."""


class DaemonClient:
    """A client of the daemon at ``url``. With no ``token`` it sends ``ACPD_TOKEN``, else, to a
    daemon on this machine, the one in its data directory (``data_dir``, else ``ACPD_DATA_DIR``,
    else ``$XDG_DATA_HOME/acpd``); ``token=""`` sends none."""

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, *, data_dir: Path | None = None) -> None:
        without_httpx_cli()
        import httpx

        if token is None:
            if data_dir is None:
                given = os.environ.get("ACPD_DATA_DIR")
                data_dir = Path(given) if given else default_data_dir(os.environ)
            token = client_token(url, data_dir, os.environ)
        self.token = token or None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        timeout = httpx.Timeout(CONNECT_TIMEOUT_SECONDS, read=None)
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, verify=_tls_context(self.url))

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise ConnectionClosed(f"no acpd daemon at {self.url}; start one with `acpd serve`") from exc
        if response.status_code >= 400:
            raise DaemonError(response)
        return response.json() if response.content else None

    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[JsonObject]:
        """Yield each SSE event's data as JSON."""
        import httpx

        headers = {"Accept": "text/event-stream", **kwargs.pop("headers", {})}
        try:
            with self._http.stream(method, path, headers=headers, **kwargs) as response:
                if response.status_code >= 400:
                    response.read()
                    raise DaemonError(response)
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        yield jsonio.loads(line[6:])
        except httpx.ConnectError as exc:
            raise ConnectionClosed(f"no acpd daemon at {self.url}; start one with `acpd serve`") from exc


def _tls_context(url: str) -> ssl.SSLContext | bool:
    """For an ``https`` daemon, httpx's default: the system's trusted certificates (loading them
    is ~40 ms of a command's start). For plain ``http`` no TLS is spoken with the daemon: a context
    that verifies as strictly but trusts no certificate at all stands in, costing nothing."""
    if urlsplit(url).scheme == "https":
        return True
    import ssl

    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED, as the default's


class DaemonError(Exception):
    def __init__(self, response: httpx.Response) -> None:
        try:
            body = response.json()
            detail = body.get("detail") or body
        except ValueError:
            detail = response.text
        super().__init__(f"{response.status_code}: {detail}")


class TurnPrinter:
    """Shows a turn's events on a terminal: the answer on stdout, everything else on stderr."""

    def __init__(self, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> None:
        self.out, self.err = out, err
        self.stop_reason: str | None = None
        self.error: JsonObject | None = None
        self.permissions: list[tuple[str, JsonObject]] = []

    def show(self, event: JsonObject) -> None:
        payload = event.get("payload") or {}
        method = payload.get("method")
        params = payload.get("params") or {}
        if method == "session/update":
            self._update(params.get("update") or {})
        elif method == "session/request_permission":
            self.permissions.append((f"p{event['seq']}", params))
            title = (params.get("toolCall") or {}).get("title") or "a tool call"
            self.err.write(f"\n[permission p{event['seq']}] {title}\n")
        elif isinstance(method, str) and method.startswith("_acpd/") and method != "_acpd/agent_started":
            self.err.write(
                f"[{method[6:]}] {jsonio.dumps_str({k: v for k, v in params.items() if k != 'sessionId'})}\n"
            )
        elif "result" in payload and isinstance(payload["result"], dict) and "stopReason" in payload["result"]:
            self.stop_reason = payload["result"]["stopReason"]
        elif "error" in payload and str(payload.get("id", "")).startswith("turn-"):
            self.error = payload["error"]
        self.out.flush()

    def _update(self, update: JsonObject) -> None:
        kind = update.get("sessionUpdate")
        content = update.get("content") or {}
        if kind == "agent_message_chunk" and content.get("type") == "text":
            self.out.write(content.get("text", ""))
        elif kind == "agent_thought_chunk" and content.get("type") == "text":
            self.err.write(content.get("text", ""))
        elif kind == "tool_call":
            self.err.write(f"\n[tool] {update.get('title') or update.get('toolCallId')} ({update.get('status')})\n")
        elif kind == "tool_call_update" and update.get("status"):
            self.err.write(f"[tool] {update.get('toolCallId')} {update['status']}\n")
        elif kind == "plan":
            for entry in update.get("entries") or []:
                self.err.write(f"[plan] {entry.get('status')}: {entry.get('content')}\n")
