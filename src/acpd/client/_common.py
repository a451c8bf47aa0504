"""Client layer: what the sync and the async client share, without I/O: where the daemon is and
which token it gets, how an answer becomes a model or an exception, Server-Sent Events parsing,
the retry schedule, and where a followed log is.

It imports httpx only inside the functions that need it (``acpd`` commands import this package
and must start fast); it must not import the daemon or anything that runs.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlsplit

from acpd.imports import without_httpx_cli
from acpd.private import client_token
from acpd.protocol import jsonio
from acpd.settings import default_data_dir

from .errors import ConnectionLost, DaemonUnreachable, ProblemError, problem_error

if TYPE_CHECKING:
    import ssl

    import httpx

    from acpd.api import events as events
    from acpd.api.events import EventRecord

    from . import models as models

without_httpx_cli()  # before anything of the client imports httpx: its command line is never used

CONNECT_TIMEOUT_SECONDS: Final = 30.0
"""For connecting, writing and pool waits; a blocking prompt's read waits as long as the turn takes."""
FOLLOW_READ_TIMEOUT_SECONDS: Final = 45.0
"""The daemon sends a keep-alive every 15 s: a followed stream silent this long is dead; reconnect."""
PROMPT_ATTEMPTS: Final = 5
"""How many times a prompt is sent (the same Idempotency-Key each time) before its error is raised."""
RETRY_STATUSES: Final = frozenset({502, 503, 504})
"""Answers that mean "the daemon (or a proxy) cannot serve this right now", for follow()."""


def session_path(session_id: str, *rest: str) -> str:
    return "/".join(("/v1/sessions", quote(session_id, safe=""), *rest))


def new_idempotency_key() -> str:
    return f"acpd-client-{uuid.uuid4().hex}"


def resolve_token(url: str, token: str | None, data_dir: Path | None) -> str | None:
    """The token to send: ``token`` if given (``""``: none), else ``ACPD_TOKEN``, else, for a
    daemon on this machine, the one in its data directory (``data_dir``, else ``ACPD_DATA_DIR``,
    else ``$XDG_DATA_HOME/acpd``). A remote daemon never gets this machine's token."""
    if token is None:
        if data_dir is None:
            given = os.environ.get("ACPD_DATA_DIR")
            data_dir = Path(given) if given else default_data_dir(os.environ)
        token = client_token(url, data_dir, os.environ)
    return token or None


def http_options(url: str, token: str | None, timeout: float | None) -> dict[str, Any]:
    """The keyword arguments of ``httpx.Client`` and ``httpx.AsyncClient`` for this daemon."""
    import httpx

    from acpd import __version__

    headers = {"User-Agent": f"acpd-client/{__version__}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return {
        "base_url": url.rstrip("/"),
        "headers": headers,
        "timeout": httpx.Timeout(CONNECT_TIMEOUT_SECONDS, read=timeout),
        "verify": tls_context(url),
    }


def tls_context(url: str) -> ssl.SSLContext | bool:
    """For an ``https`` daemon, httpx's default: the system's trusted certificates (loading them
    is ~40 ms of a command's start). For plain ``http`` no TLS is spoken with the daemon: a context
    that verifies as strictly but trusts no certificate at all stands in, costing nothing."""
    if urlsplit(url).scheme == "https":
        return True
    import ssl

    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED, as the default's


def unreachable_message(url: str) -> str:
    return f"no acpd daemon at {url}; start one with `acpd serve`"


def answer_json(response: httpx.Response) -> Any:
    """The answer's JSON (None for an empty one), or the problem it is, raised."""
    if response.status_code >= 400:
        raise error_of(response)
    return response.json() if response.content else None


def error_of(response: httpx.Response) -> ProblemError:
    """The typed exception for an error answer whose body has been read."""
    try:
        body: object = response.json()
    except ValueError:
        body = response.text
    return problem_error(response.status_code, body)


def prompt_body(prompt: str | list[dict[str, Any]], queue: bool) -> dict[str, Any]:
    return {"prompt": prompt} if queue else {"prompt": prompt, "queue": False}


def settings_body(**fields: Any) -> dict[str, Any]:
    """A PATCH body of the fields given (None: leave as is), camelCased as the daemon reads them."""
    names = {"thought_level": "thoughtLevel"}
    return {names.get(k, k): v for k, v in fields.items() if v is not None}


def listing_params(archived: bool | str | None, **fields: Any) -> dict[str, Any]:
    """A listing's query: the filters given (None: no filter), booleans as the daemon spells them."""
    if isinstance(archived, bool):
        archived = "true" if archived else "false"
    return {k: v for k, v in {**fields, "archived": archived}.items() if v is not None}


def fork_body(at_seq: int | None, **fields: Any) -> dict[str, Any]:
    """A fork's body: the fields given (None: the daemon's default)."""
    return {k: v for k, v in {"atSeq": at_seq, **fields}.items() if v is not None}


def import_params(**fields: str | None) -> dict[str, str]:
    return {k: v for k, v in fields.items() if v is not None}


def reply_body(reply: str) -> dict[str, str]:
    """``once``, ``always`` and ``reject`` are replies; anything else is an option id."""
    return {"reply": reply} if reply in ("once", "always", "reject") else {"optionId": reply}


# -- Server-Sent Events ----------------------------------------------------------------------------


@dataclass(slots=True)
class ServerSentEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None


@dataclass(slots=True)
class SseParser:
    """Turns the lines of a ``text/event-stream`` body into events (the WHATWG rules acpd uses:
    ``event``, ``data``, ``id``; comments and ``retry`` skipped)."""

    _event: str = "message"
    _data: list[str] = field(default_factory=list)
    _id: str | None = None

    def feed(self, line: str) -> ServerSentEvent | None:
        if not line:
            if not self._data:
                self._event = "message"
                return None
            done = ServerSentEvent(self._event, "\n".join(self._data), self._id)
            self._event, self._data, self._id = "message", [], None
            return done
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        return None


def record_of(sse: ServerSentEvent) -> EventRecord | None:
    """A ``message`` event's record; an ``error`` event (a full disk) is raised as its problem."""
    if sse.event == "error":
        raise problem_error(0, jsonio.loads(sse.data))
    return events.EventRecord.model_validate_json(sse.data) if sse.event == "message" else None


def parse_record(item: object) -> EventRecord:
    """A record of a page of ``GET …/events``."""
    return events.EventRecord.model_validate(item)


class LazyModule:
    """A module imported at the first use of one of its names. The typed models pull in ACP's
    schema package (about half a second to import): a client that only lists sessions as JSON,
    as ``acpd sessions list`` does, never pays for it."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


if not TYPE_CHECKING:  # type checkers see the modules themselves (imported above)
    events = LazyModule("acpd.api.events")
    models = LazyModule("acpd.client.models")


# -- retries ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class Backoff:
    """Exponential delays with jitter, from ``first`` up to ``cap`` seconds; ``reset`` on success."""

    first: float = 0.1
    cap: float = 5.0
    _next: float = 0.0

    def delay(self) -> float:
        self._next = min(self.cap, self._next * 2) if self._next else self.first
        return self._next * random.uniform(0.5, 1.0)  # jitter, not secrecy

    def reset(self) -> None:
        self._next = 0.0


@contextlib.contextmanager
def translated(url: str) -> Iterator[None]:
    """httpx's failures as the client's: no daemon there (``DaemonUnreachable``), or a connection
    that failed once made (``ConnectionLost``); both are what a retry may cure."""
    import httpx

    try:
        yield
    except httpx.ConnectError as exc:
        raise DaemonUnreachable(unreachable_message(url)) from exc
    except httpx.UnsupportedProtocol:
        raise  # a URL that is not http(s): the caller's mistake, no retry cures it
    except httpx.TransportError as exc:
        raise ConnectionLost(f"the connection to the daemon at {url} failed: {exc!r}") from exc


RETRYABLE: Final = (DaemonUnreachable, ConnectionLost)


# -- following a log ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Cursor:
    """Where a followed log is: the last seq handed out. Each record is handed out once, in order."""

    last: int

    def headers(self) -> dict[str, str]:
        return {"Accept": "text/event-stream", "Last-Event-ID": str(self.last)}

    def take(self, record: EventRecord) -> bool:
        """Whether ``record`` is new (and now the last); a replayed one is dropped."""
        if record.seq <= self.last:
            return False
        self.last = record.seq
        return True
