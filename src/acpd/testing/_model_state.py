"""Test kit, mock model server: the server's only state: the scripted queue, the request log, the ids.

No HTTP here beyond reading a request's headers and query; no model API's wire shapes. Credentials
never reach the log: ``x-api-key``, ``authorization`` and the like (and Gemini's ``?key=``) are
recorded by name only, in ``credentials``.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Final

import orjson
from pydantic import BaseModel, ConfigDict
from starlette.requests import Request

from acpd.protocol.jsonio import JsonValue
from acpd.testing._model_plan import Family, Plan, PlanKind, TokenCount, Turn, choose
from acpd.testing._model_replies import Reply

logger = logging.getLogger(__name__)

ID_DIGITS: Final = 6
CREDENTIAL_HEADERS: Final = frozenset(
    {"authorization", "x-api-key", "x-goog-api-key", "api-key", "proxy-authorization", "cookie"}
)
CREDENTIAL_QUERY_PARAMS: Final = frozenset({"key", "api_key", "api-key"})
LOGGED_HEADERS: Final = frozenset({"accept", "content-type", "user-agent", "originator", "x-app", "x-goog-api-client"})
LOGGED_HEADER_PREFIXES: Final = ("anthropic-", "openai-", "x-stainless-")


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class PlanRecord(_Record):
    kind: PlanKind
    tool: str | None = None
    """The called tool's name, for ``kind == "tool"``."""
    scripted: bool = False
    """The reply came from the scripted queue."""


class UsageRecord(_Record):
    input_tokens: int
    output_tokens: int


class LoggedRequest(_Record):
    """One request the mock model server received (control-API requests are not logged)."""

    seq: int
    """1, 2, … in arrival order."""
    method: str
    path: str
    query: dict[str, str]
    """The query parameters, credential ones removed."""
    headers: dict[str, str]
    """A selection: ``anthropic-*``, ``openai-*``, ``x-stainless-*``, user agent, content type and a few more."""
    credentials: tuple[str, ...] = ()
    """Names of credential headers (``x-api-key``, ``authorization``, …) and ``query:key`` that were present."""
    api: str
    """``anthropic``, ``responses``, ``chat``, ``gemini`` or ``other``."""
    body: JsonValue = None
    """The JSON body (``None`` when there was none or it was not JSON)."""
    body_bytes: int = 0
    plan: PlanRecord | None = None
    """What was answered, for model requests."""
    usage: UsageRecord | None = None
    """The token counts the response reported (``None`` for errors, which report none; for a cut
    response, what its end would have reported)."""


class MockState:
    """The scripted queue, the request log (and its JSONL copy) and the id counter."""

    def __init__(self, *, log_path: Path | None = None, event_delay_seconds: float = 0.0) -> None:
        self.event_delay_seconds = event_delay_seconds
        self.requests: list[LoggedRequest] = []
        self._queue: deque[Reply] = deque()
        self._ids = itertools.count(1)
        self._log_file: IO[bytes] | None = log_path.open("ab") if log_path is not None else None

    def next_id(self, prefix: str) -> str:
        """``msg_mock000001``-style ids: one counter for every prefix, so ids also show the order."""
        return f"{prefix}_mock{next(self._ids):0{ID_DIGITS}d}"

    def push(self, replies: Iterable[Reply]) -> None:
        self._queue.extend(replies)

    def clear(self) -> None:
        self._queue.clear()
        self.requests.clear()

    def queued(self) -> int:
        return len(self._queue)

    def plan(self, turn: Turn, family: Family) -> Plan:
        return choose(turn, family, self._take)

    def record(
        self,
        request: Request,
        *,
        api: str,
        body: JsonValue = None,
        body_bytes: int = 0,
        plan: Plan | None = None,
        usage: TokenCount | None = None,
    ) -> LoggedRequest:
        entry = LoggedRequest(
            seq=len(self.requests) + 1,
            method=request.method,
            path=request.url.path,
            query=_safe_query(request.query_params),
            headers=_safe_headers(request.headers),
            credentials=_credentials(request.headers, request.query_params),
            api=api,
            body=body,
            body_bytes=body_bytes,
            plan=_plan_record(plan),
            usage=_usage_record(plan, usage),
        )
        self.requests.append(entry)
        self._write(entry)
        return entry

    def close(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _take(self) -> Reply | None:
        return self._queue.popleft() if self._queue else None

    def _write(self, entry: LoggedRequest) -> None:
        # A local append of one short line: cheaper than a thread hop, and it keeps the file in log order.
        if self._log_file is not None:
            self._log_file.write(orjson.dumps(entry.model_dump(mode="json")) + b"\n")
            self._log_file.flush()


def _plan_record(plan: Plan | None) -> PlanRecord | None:
    if plan is None:
        return None
    tool = plan.reply.tool.name if plan.kind == "tool" and plan.reply.tool is not None else None
    return PlanRecord(kind=plan.kind, tool=tool, scripted=plan.scripted)


def _usage_record(plan: Plan | None, usage: TokenCount | None) -> UsageRecord | None:
    """Errors report no usage, so none is logged for them."""
    if usage is None or plan is None or plan.kind == "error":
        return None
    return UsageRecord(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens)


def _safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        name: value
        for name, value in headers.items()
        if name not in CREDENTIAL_HEADERS and (name in LOGGED_HEADERS or name.startswith(LOGGED_HEADER_PREFIXES))
    }


def _safe_query(query: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in query.items() if name not in CREDENTIAL_QUERY_PARAMS}


def _credentials(headers: Mapping[str, str], query: Mapping[str, str]) -> tuple[str, ...]:
    present = [name for name in sorted(CREDENTIAL_HEADERS) if name in headers]
    return (*present, *(f"query:{name}" for name in sorted(CREDENTIAL_QUERY_PARAMS) if name in query))
