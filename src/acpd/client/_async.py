"""Client layer: ``AsyncAcpd``, the anyio client of a running daemon, on httpx.

The same surface as ``Acpd`` with ``await`` and ``async for``, written on anyio (the tests run it
on asyncio). HTTP only: it renders nothing and holds no daemon logic. httpx is imported when a
client is made.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio

from . import DEFAULT_URL
from . import _common as c
from .errors import Conflict, DaemonUnreachable, PermissionNotFound, ProblemError, StreamEnded

if TYPE_CHECKING:
    import httpx

    from acpd.api.events import EventRecord

    from ._turn import TurnTracker
    from .models import (
        Agent,
        AuditStats,
        GcResult,
        PermissionAnswer,
        PermissionRequest,
        PromptResult,
        Session,
        UsageReport,
    )

Prompt = str | list[dict[str, Any]]
AsyncOnPermission = Callable[["PermissionRequest"], "str | Awaitable[str | None] | None"]
"""Given a pending request, ``once``, ``always``, ``reject`` or an option id (or a coroutine
giving one); None leaves it be."""


class AsyncAcpd:
    """An anyio client of the acpd daemon at ``url``; see ``Acpd`` for the token and ``timeout``.
    Use it as an async context manager, or call ``aclose()``."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        *,
        data_dir: Path | None = None,
        timeout: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.token = c.resolve_token(self.url, token, data_dir)
        self._http = httpx.AsyncClient(transport=transport, **c.http_options(self.url, self.token, timeout))

    async def __aenter__(self) -> AsyncAcpd:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- plumbing ------------------------------------------------------------------------------------

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; its JSON answer (None when empty), or its problem raised as a typed error."""
        with c.translated(self.url):
            response = await self._http.request(method, path, **kwargs)
        return c.answer_json(response)

    async def _records(self, method: str, path: str, **kwargs: Any) -> AsyncGenerator[EventRecord, None]:
        with c.translated(self.url):
            async with self._http.stream(method, path, **kwargs) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise c.error_of(response)
                if not response.headers.get("content-type", "").startswith("text/event-stream"):
                    await response.aread()  # an idempotent replay answers the stored JSON, not a stream
                    result = c.models.PromptResult.model_validate(c.answer_json(response))
                    async for replayed in self.events(
                        result.session_id, after=result.first_seq - 1, until=result.last_seq
                    ):
                        yield replayed
                    return
                parser = c.SseParser()
                async for line in response.aiter_lines():
                    sse = parser.feed(line)
                    record = c.record_of(sse) if sse is not None else None
                    if record is not None:
                        yield record

    # -- agents and sessions ---------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self.request("GET", "/v1/health")
        return answer

    async def agents(self) -> list[Agent]:
        return [c.models.Agent.model_validate(item) for item in (await self.request("GET", "/v1/agents"))["items"]]

    async def create_session(self, agent: str | None = None, cwd: str | Path | None = None, **fields: Any) -> Session:
        """A new session (its agent started); see ``Acpd.create_session``."""
        body = {**fields, **({"agent": agent} if agent else {}), **({"cwd": str(cwd)} if cwd is not None else {})}
        return c.models.Session.model_validate(await self.request("POST", "/v1/sessions", json=body))

    async def session(self, session_id: str) -> Session:
        return c.models.Session.model_validate(await self.request("GET", c.session_path(session_id)))

    async def sessions(
        self,
        *,
        project: str | None = None,
        agent: str | None = None,
        archived: bool | Literal["any"] | None = None,
        q: str | None = None,
        page_size: int = 100,
    ) -> AsyncGenerator[Session, None]:
        """Every session, newest first (with ``q``, a full-text search over titles, prompts and
        replies, best match first), fetched a page at a time as the iteration goes. Archived
        sessions only with ``archived=True`` (or ``"any"``)."""
        params = c.listing_params(archived, limit=page_size, project=project, agent=agent, q=q)
        cursor: str | None = None
        while True:
            page = await self.request(
                "GET", "/v1/sessions", params={**params, **({"cursor": cursor} if cursor else {})}
            )
            for item in page["items"]:
                yield c.models.Session.model_validate(item)
            cursor = page.get("nextCursor")
            if not cursor:
                return

    async def update_session(
        self,
        session_id: str,
        *,
        model: str | None = None,
        mode: str | None = None,
        thought_level: str | None = None,
        agent: str | None = None,
        **fields: Any,
    ) -> Session:
        """Change settings (all or nothing); see ``Acpd.update_session``."""
        body = c.settings_body(model=model, mode=mode, thought_level=thought_level, agent=agent) | fields
        return c.models.Session.model_validate(await self.request("PATCH", c.session_path(session_id), json=body))

    async def delete_session(self, session_id: str) -> None:
        await self.request("DELETE", c.session_path(session_id))

    async def fork(
        self,
        session_id: str,
        *,
        at_seq: int | None = None,
        agent: str | None = None,
        title: str | None = None,
        id: str | None = None,
        cwd: str | Path | None = None,
    ) -> Session:
        """A new session with this one's history up to ``at_seq``; see ``Acpd.fork``."""
        body = c.fork_body(at_seq, agent=agent, title=title, id=id, cwd=str(cwd) if cwd is not None else None)
        return c.models.Session.model_validate(
            await self.request("POST", c.session_path(session_id, "fork"), json=body)
        )

    async def export(self, session_id: str, format: str = "json") -> AsyncGenerator[bytes, None]:
        """The session exported (``json``, ``jsonl`` or ``markdown``), in chunks as streamed."""
        async for chunk in self._download(c.session_path(session_id, "export"), {"format": format}):
            yield chunk

    async def tool_calls_csv(self, **filters: str) -> AsyncGenerator[bytes, None]:
        """The tool calls ``filters`` select (as ``tool_calls``), as RFC 4180 CSV, in chunks."""
        async for chunk in self._download("/v1/audit/tool-calls", {**filters, "format": "csv"}):
            yield chunk

    async def _download(self, path: str, params: dict[str, str]) -> AsyncGenerator[bytes, None]:
        with c.translated(self.url):
            async with self._http.stream("GET", path, params=params) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise c.error_of(response)
                async for chunk in response.aiter_bytes():
                    yield chunk

    async def import_session(
        self,
        exported: bytes,
        *,
        id: str | None = None,
        agent: str | None = None,
        cwd: str | Path | None = None,
    ) -> Session:
        """Recreate a session from a ``json`` or ``jsonl`` export; see ``Acpd.import_session``."""
        params = c.import_params(id=id, agent=agent, cwd=str(cwd) if cwd is not None else None)
        answer = await self.request("POST", "/v1/sessions/import", content=exported, params=params)
        return c.models.Session.model_validate(answer)

    async def turns(self, session_id: str) -> list[dict[str, Any]]:
        """The session's turns, oldest first: prompt preview, stop reason, usage, steps, times, seqs."""
        return c.models.TurnList.model_validate(await self.request("GET", c.session_path(session_id, "turns"))).items

    async def collect(
        self, older_than: str | float, *, archived_only: bool = False, dry_run: bool = False, vacuum: bool = False
    ) -> GcResult:
        """Delete the sessions last updated longer ago than ``older_than`` (``"30d"``, ``"12h"``…, or
        seconds), only archived ones with ``archived_only``; sessions in use are kept."""
        body = {"olderThan": older_than, "archivedOnly": archived_only, "dryRun": dry_run, "vacuum": vacuum}
        return c.models.GcResult.model_validate(await self.request("POST", "/v1/gc", json=body))

    async def usage(
        self, group_by: str = "session", *, since: str | None = None, until: str | None = None
    ) -> UsageReport:
        """Tokens and cost of the turns started in [since, until), added up by ``group_by``
        (``session``, ``agent``, ``project``, ``model`` or ``day``), with the total."""
        params = {k: v for k, v in {"groupBy": group_by, "since": since, "until": until}.items() if v is not None}
        return c.models.UsageReport.model_validate(await self.request("GET", "/v1/usage", params=params))

    async def tool_calls(self, *, page_size: int = 500, **filters: str) -> AsyncGenerator[dict[str, Any], None]:
        """Every session's tool calls, oldest first, one row each, paged as the iteration goes.
        ``filters``: ``session``, ``agent``, ``project``, ``kind``, ``status``, ``decidedBy``,
        ``since``, ``until``."""
        cursor: str | None = None
        while True:
            params = {"limit": page_size, **filters, **({"cursor": cursor} if cursor else {})}
            page = c.models.ToolCallPage.model_validate(
                await self.request("GET", "/v1/audit/tool-calls", params=params)
            )
            for row in page.items:
                yield row
            cursor = page.next_cursor
            if not cursor:
                return

    async def tool_call_stats(self, **filters: str) -> AuditStats:
        """The tool calls the same ``filters`` select, counted by kind, status, agent, outcome and
        who decided, with the total."""
        return c.models.AuditStats.model_validate(await self.request("GET", "/v1/audit/stats", params=filters))

    # -- turns -----------------------------------------------------------------------------------------

    async def prompt(
        self,
        session_id: str,
        prompt: Prompt,
        *,
        queue: bool = True,
        on_permission: AsyncOnPermission | None = None,
        idempotency_key: str | None = None,
    ) -> PromptResult:
        """Run a turn and return its answer, retried safely with one ``Idempotency-Key``; see
        ``Acpd.prompt``."""
        if on_permission is not None:
            stream = self.stream(
                session_id, prompt, queue=queue, on_permission=on_permission, idempotency_key=idempotency_key
            )
            async for _ in stream:
                pass
            return stream.result
        key = idempotency_key or c.new_idempotency_key()
        body = c.prompt_body(prompt, queue)
        path = c.session_path(session_id, "prompt")
        backoff = c.Backoff()
        for attempt in range(1, c.PROMPT_ATTEMPTS + 1):
            try:
                answer = await self.request("POST", path, json=body, headers={"Idempotency-Key": key})
                return c.models.PromptResult.model_validate(answer)
            except c.RETRYABLE:
                if attempt == c.PROMPT_ATTEMPTS:
                    raise
            await anyio.sleep(backoff.delay())
        raise AssertionError("unreachable")  # pragma: no cover

    def stream(
        self,
        session_id: str,
        prompt: Prompt,
        *,
        queue: bool = True,
        on_permission: AsyncOnPermission | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncTurnStream:
        """Run a turn and iterate over its records; see ``Acpd.stream``."""
        key = idempotency_key or c.new_idempotency_key()
        return AsyncTurnStream(self, session_id, prompt, queue, on_permission, key)

    async def cancel(self, session_id: str) -> bool:
        """Cancel the running turn; whether there was one."""
        return bool((await self.request("POST", c.session_path(session_id, "cancel")))["cancelled"])

    # -- events ----------------------------------------------------------------------------------------

    async def events(
        self, session_id: str, *, after: int = 0, until: int | None = None, page_size: int = 1000
    ) -> AsyncGenerator[EventRecord, None]:
        """The session's committed records after ``after`` (up to ``until``), a page at a time."""
        while until is None or after < until:
            params = {"after": after, "limit": page_size}
            page = await self.request("GET", c.session_path(session_id, "events"), params=params)
            for item in page["items"]:
                record = c.parse_record(item)
                if until is not None and record.seq > until:
                    return
                yield record
            if not page["hasMore"]:
                return
            after = page["nextAfter"]

    async def follow(
        self, session_id: str, *, after: int = 0, give_up_after: float | None = None
    ) -> AsyncGenerator[EventRecord, None]:
        """Every record after ``after``, then each new one, without end, across dropped
        connections and daemon restarts, none lost or repeated; see ``Acpd.follow``."""
        cursor, backoff = c.Cursor(after), c.Backoff()
        down_since: float | None = None
        path = c.session_path(session_id, "events/stream")
        while True:
            try:
                async for record in self._records("GET", path, headers=cursor.headers(), timeout=_follow_timeout()):
                    down_since = None
                    backoff.reset()
                    if cursor.take(record):
                        yield record
                await anyio.sleep(backoff.delay())  # the log closed (the daemon stopping): connect again
                continue
            except ProblemError as exc:
                if exc.status not in c.RETRY_STATUSES:
                    raise
            except c.RETRYABLE:
                pass
            down_since = down_since or anyio.current_time()
            if give_up_after is not None and anyio.current_time() - down_since > give_up_after:
                raise DaemonUnreachable(c.unreachable_message(self.url))
            await anyio.sleep(backoff.delay())

    # -- permissions -----------------------------------------------------------------------------------

    async def permissions(self, session_id: str) -> list[PermissionRequest]:
        """The session's pending permission requests."""
        items = (await self.request("GET", c.session_path(session_id, "permissions")))["items"]
        return [c.models.PermissionRequest.model_validate(item) for item in items]

    async def answer_permission(self, session_id: str, permission_id: str, reply: str) -> PermissionAnswer:
        """Answer a request: ``once``, ``always``, ``reject``, or one of its option ids."""
        path = c.session_path(session_id, "permissions", permission_id)
        return c.models.PermissionAnswer.model_validate(await self.request("POST", path, json=c.reply_body(reply)))

    async def _decide(self, session_id: str, request: PermissionRequest, on_permission: AsyncOnPermission) -> None:
        reply = on_permission(request)
        if inspect.isawaitable(reply):
            reply = await reply
        if reply is None:
            return
        with contextlib.suppress(PermissionNotFound, Conflict):  # settled already (a policy, a client, a cancel)
            await self.answer_permission(session_id, request.id, reply)


def _follow_timeout() -> Any:
    import httpx

    return httpx.Timeout(c.CONNECT_TIMEOUT_SECONDS, read=c.FOLLOW_READ_TIMEOUT_SECONDS)


class AsyncTurnStream:
    """The records of one streamed turn (iterate once with ``async for``); ``result`` once the
    turn is answered, ``tracker`` for what it has seen so far."""

    def __init__(
        self,
        client: AsyncAcpd,
        session_id: str,
        prompt: Prompt,
        queue: bool,
        on_permission: AsyncOnPermission | None,
        key: str,
    ) -> None:
        self._client, self._session_id, self._on_permission = client, session_id, on_permission
        self._body, self._key = c.prompt_body(prompt, queue), key
        from ._turn import TurnTracker  # the typed models: only for a turn's stream

        self.tracker: TurnTracker = TurnTracker(session_id)

    @property
    def result(self) -> PromptResult:
        if not self.tracker.done:
            raise StreamEnded("the turn's stream was not read to its end")
        return self.tracker.result()

    async def __aiter__(self) -> AsyncGenerator[EventRecord, None]:
        backoff = c.Backoff()
        for attempt in range(1, c.PROMPT_ATTEMPTS + 1):
            try:
                async for record in self._attempt():
                    yield record
                if self.tracker.done:
                    return
            except c.RETRYABLE:
                if attempt == c.PROMPT_ATTEMPTS:
                    raise
            await anyio.sleep(backoff.delay())
        raise StreamEnded(f"the turn's stream ended before its answer, {c.PROMPT_ATTEMPTS} times")

    async def _attempt(self) -> AsyncGenerator[EventRecord, None]:
        headers = {"Accept": "text/event-stream", "Idempotency-Key": self._key}
        path = c.session_path(self._session_id, "prompt")
        async for record in self._client._records("POST", path, json=self._body, headers=headers):
            if not self.tracker.cursor.take(record):
                continue
            request = self.tracker.see(record)
            yield record
            if request is not None and self._on_permission is not None:
                await self._client._decide(self._session_id, request, self._on_permission)
