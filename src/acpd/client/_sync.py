"""Client layer: ``Acpd``, the synchronous client of a running daemon, on httpx.

HTTP only: it renders nothing and holds no daemon logic (the CLI renders, the daemon decides).
httpx is imported when a client is made, not with this module.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

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
OnPermission = Callable[["PermissionRequest"], "str | None"]
"""Given a pending request, ``once``, ``always``, ``reject`` or an option id; None leaves it be."""


class Acpd:
    """A synchronous client of the acpd daemon at ``url``.

    With no ``token`` it sends ``ACPD_TOKEN``, else, to a daemon on this machine, the one in its
    data directory (``data_dir``, else ``ACPD_DATA_DIR``, else ``$XDG_DATA_HOME/acpd``);
    ``token=""`` sends none. ``timeout`` bounds each read (None: a blocking prompt waits as long
    as its turn takes). Use it as a context manager, or call ``close()``.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        *,
        data_dir: Path | None = None,
        timeout: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.token = c.resolve_token(self.url, token, data_dir)
        self._http = httpx.Client(transport=transport, **c.http_options(self.url, self.token, timeout))

    def __enter__(self) -> Acpd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing ------------------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; its JSON answer (None when empty), or its problem raised as a typed error."""
        with c.translated(self.url):
            response = self._http.request(method, path, **kwargs)
        return c.answer_json(response)

    def _records(self, method: str, path: str, **kwargs: Any) -> Generator[EventRecord, None, None]:
        """The records of one SSE response, as they come."""
        with c.translated(self.url), self._http.stream(method, path, **kwargs) as response:
            if response.status_code >= 400:
                response.read()
                raise c.error_of(response)
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                response.read()  # an idempotent replay answers the stored JSON, not a stream
                yield from self._replayed(c.answer_json(response))
                return
            parser = c.SseParser()
            for line in response.iter_lines():
                sse = parser.feed(line)
                record = c.record_of(sse) if sse is not None else None
                if record is not None:
                    yield record

    def _replayed(self, answer: dict[str, Any]) -> Generator[EventRecord, None, None]:
        result = c.models.PromptResult.model_validate(answer)
        yield from self.events(result.session_id, after=result.first_seq - 1, until=result.last_seq)

    # -- agents and sessions ---------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.request("GET", "/v1/health")
        return answer

    def agents(self) -> list[Agent]:
        return [c.models.Agent.model_validate(item) for item in self.request("GET", "/v1/agents")["items"]]

    def create_session(self, agent: str | None = None, cwd: str | Path | None = None, **fields: Any) -> Session:
        """A new session (its agent started). ``fields`` are the create body's other members:
        ``id``, ``title``, ``project``, ``model``, ``mode``, ``thoughtLevel``, ``config``, ``policy``…"""
        body = {**fields, **({"agent": agent} if agent else {}), **({"cwd": str(cwd)} if cwd is not None else {})}
        return c.models.Session.model_validate(self.request("POST", "/v1/sessions", json=body))

    def session(self, session_id: str) -> Session:
        return c.models.Session.model_validate(self.request("GET", c.session_path(session_id)))

    def sessions(
        self,
        *,
        project: str | None = None,
        agent: str | None = None,
        archived: bool | Literal["any"] | None = None,
        q: str | None = None,
        page_size: int = 100,
    ) -> Generator[Session, None, None]:
        """Every session, newest first (with ``q``, a full-text search over titles, prompts and
        replies, best match first), fetched a page at a time as the iteration goes. Archived
        sessions only with ``archived=True`` (or ``"any"``)."""
        params = c.listing_params(archived, limit=page_size, project=project, agent=agent, q=q)
        cursor: str | None = None
        while True:
            page = self.request("GET", "/v1/sessions", params={**params, **({"cursor": cursor} if cursor else {})})
            yield from (c.models.Session.model_validate(item) for item in page["items"])
            cursor = page.get("nextCursor")
            if not cursor:
                return

    def update_session(
        self,
        session_id: str,
        *,
        model: str | None = None,
        mode: str | None = None,
        thought_level: str | None = None,
        agent: str | None = None,
        **fields: Any,
    ) -> Session:
        """Change settings (all or nothing): ``model``, ``mode``, ``thought_level``, ``agent`` (a
        switch keeps the transcript), and any other PATCH member (``title``, ``config``…)."""
        body = c.settings_body(model=model, mode=mode, thought_level=thought_level, agent=agent) | fields
        return c.models.Session.model_validate(self.request("PATCH", c.session_path(session_id), json=body))

    def delete_session(self, session_id: str) -> None:
        self.request("DELETE", c.session_path(session_id))

    def fork(
        self,
        session_id: str,
        *,
        at_seq: int | None = None,
        agent: str | None = None,
        title: str | None = None,
        id: str | None = None,
        cwd: str | Path | None = None,
    ) -> Session:
        """A new session whose history is this one's up to ``at_seq`` (default: the end of its
        last finished turn); its agent (``agent``, else the same) carries the earlier turns on."""
        body = c.fork_body(at_seq, agent=agent, title=title, id=id, cwd=str(cwd) if cwd is not None else None)
        return c.models.Session.model_validate(self.request("POST", c.session_path(session_id, "fork"), json=body))

    def export(self, session_id: str, format: str = "json") -> Generator[bytes, None, None]:
        """The session exported (``json``, ``jsonl`` or ``markdown``), in chunks as the daemon
        streams it: write them to a file, or give them to ``import_session``."""
        yield from self._download(c.session_path(session_id, "export"), {"format": format})

    def tool_calls_csv(self, **filters: str) -> Generator[bytes, None, None]:
        """The tool calls ``filters`` select (as ``tool_calls``), as RFC 4180 CSV, in chunks as the
        daemon streams them."""
        yield from self._download("/v1/audit/tool-calls", {**filters, "format": "csv"})

    def _download(self, path: str, params: dict[str, str]) -> Generator[bytes, None, None]:
        with c.translated(self.url), self._http.stream("GET", path, params=params) as response:
            if response.status_code >= 400:
                response.read()
                raise c.error_of(response)
            yield from response.iter_bytes()

    def import_session(
        self,
        exported: bytes | Iterable[bytes],
        *,
        id: str | None = None,
        agent: str | None = None,
        cwd: str | Path | None = None,
    ) -> Session:
        """Recreate a session, with its whole history, from a ``json`` or ``jsonl`` export;
        ``id``, ``agent`` and ``cwd`` replace the exported ones."""
        params = c.import_params(id=id, agent=agent, cwd=str(cwd) if cwd is not None else None)
        content = exported if isinstance(exported, bytes) else b"".join(exported)
        return c.models.Session.model_validate(
            self.request("POST", "/v1/sessions/import", content=content, params=params)
        )

    def turns(self, session_id: str) -> list[dict[str, Any]]:
        """The session's turns, oldest first: prompt preview, stop reason, usage, steps, times, seqs."""
        return c.models.TurnList.model_validate(self.request("GET", c.session_path(session_id, "turns"))).items

    def collect(
        self, older_than: str | float, *, archived_only: bool = False, dry_run: bool = False, vacuum: bool = False
    ) -> GcResult:
        """Delete the sessions last updated longer ago than ``older_than`` (``"30d"``, ``"12h"``…, or
        seconds), only archived ones with ``archived_only``; sessions in use are kept."""
        body = {"olderThan": older_than, "archivedOnly": archived_only, "dryRun": dry_run, "vacuum": vacuum}
        return c.models.GcResult.model_validate(self.request("POST", "/v1/gc", json=body))

    def usage(self, group_by: str = "session", *, since: str | None = None, until: str | None = None) -> UsageReport:
        """Tokens and cost of the turns started in [since, until), added up by ``group_by``
        (``session``, ``agent``, ``project``, ``model`` or ``day``), with the total."""
        params = {k: v for k, v in {"groupBy": group_by, "since": since, "until": until}.items() if v is not None}
        return c.models.UsageReport.model_validate(self.request("GET", "/v1/usage", params=params))

    def tool_calls(self, *, page_size: int = 500, **filters: str) -> Generator[dict[str, Any], None, None]:
        """Every session's tool calls, oldest first, one row each, paged as the iteration goes.
        ``filters``: ``session``, ``agent``, ``project``, ``kind``, ``status``, ``decidedBy``,
        ``since``, ``until``."""
        cursor: str | None = None
        while True:
            params = {"limit": page_size, **filters, **({"cursor": cursor} if cursor else {})}
            page = c.models.ToolCallPage.model_validate(self.request("GET", "/v1/audit/tool-calls", params=params))
            yield from page.items
            cursor = page.next_cursor
            if not cursor:
                return

    def tool_call_stats(self, **filters: str) -> AuditStats:
        """The tool calls the same ``filters`` select, counted by kind, status, agent, outcome and
        who decided, with the total."""
        return c.models.AuditStats.model_validate(self.request("GET", "/v1/audit/stats", params=filters))

    # -- turns -----------------------------------------------------------------------------------------

    def prompt(
        self,
        session_id: str,
        prompt: Prompt,
        *,
        queue: bool = True,
        on_permission: OnPermission | None = None,
        idempotency_key: str | None = None,
    ) -> PromptResult:
        """Run a turn and return its answer. The prompt is sent with an ``Idempotency-Key``
        (``idempotency_key``, else a new one) and sent again, with the same key, when the
        connection fails: the daemon answers a retry with the first attempt's turn, never a
        second one. With ``on_permission`` the turn is streamed and its permission requests
        answered by it (a headless run)."""
        if on_permission is not None:
            stream = self.stream(
                session_id, prompt, queue=queue, on_permission=on_permission, idempotency_key=idempotency_key
            )
            for _ in stream:
                pass
            return stream.result
        key = idempotency_key or c.new_idempotency_key()
        body = c.prompt_body(prompt, queue)
        answer = self._retrying(
            lambda: self.request(
                "POST", c.session_path(session_id, "prompt"), json=body, headers={"Idempotency-Key": key}
            )
        )
        return c.models.PromptResult.model_validate(answer)

    def _retrying(self, send: Callable[[], Any]) -> Any:
        backoff = c.Backoff()
        for attempt in range(1, c.PROMPT_ATTEMPTS + 1):
            try:
                return send()
            except c.RETRYABLE:
                if attempt == c.PROMPT_ATTEMPTS:
                    raise
            time.sleep(backoff.delay())
        raise AssertionError("unreachable")  # pragma: no cover

    def stream(
        self,
        session_id: str,
        prompt: Prompt,
        *,
        queue: bool = True,
        on_permission: OnPermission | None = None,
        idempotency_key: str | None = None,
    ) -> TurnStream:
        """Run a turn and iterate over its records as they are committed, from its prompt to its
        answer; ``.result`` holds the answer once the iteration is over. A dropped connection is
        resumed (the same ``Idempotency-Key``), without a record lost or repeated."""
        return TurnStream(self, session_id, prompt, queue, on_permission, idempotency_key or c.new_idempotency_key())

    def cancel(self, session_id: str) -> bool:
        """Cancel the running turn; whether there was one."""
        return bool(self.request("POST", c.session_path(session_id, "cancel"))["cancelled"])

    # -- events ----------------------------------------------------------------------------------------

    def events(
        self, session_id: str, *, after: int = 0, until: int | None = None, page_size: int = 1000
    ) -> Generator[EventRecord, None, None]:
        """The session's committed records after ``after`` (up to ``until``), a page at a time; ends
        at the last one committed."""
        while until is None or after < until:
            page = self.request(
                "GET", c.session_path(session_id, "events"), params={"after": after, "limit": page_size}
            )
            for item in page["items"]:
                record = c.parse_record(item)
                if until is not None and record.seq > until:
                    return
                yield record
            if not page["hasMore"]:
                return
            after = page["nextAfter"]

    def follow(
        self, session_id: str, *, after: int = 0, give_up_after: float | None = None
    ) -> Generator[EventRecord, None, None]:
        """Every record of the session after ``after``, then each new one as it is committed,
        without end. A dropped connection or a daemon restart is resumed with ``Last-Event-ID``
        (retrying with backoff while the daemon is down): no record is lost or repeated. Ends
        only by raising: ``SessionNotFound`` once the session is deleted, ``DaemonUnreachable``
        when the daemon stayed away ``give_up_after`` seconds (None: never give up)."""
        cursor, backoff = c.Cursor(after), c.Backoff()
        down_since: float | None = None
        while True:
            try:
                for record in self._records(
                    "GET",
                    c.session_path(session_id, "events/stream"),
                    headers=cursor.headers(),
                    timeout=_follow_timeout(),
                ):
                    down_since = None
                    backoff.reset()
                    if cursor.take(record):
                        yield record
                time.sleep(backoff.delay())  # the log closed (the daemon stopping): connect again
                continue
            except ProblemError as exc:
                if exc.status not in c.RETRY_STATUSES:
                    raise
            except c.RETRYABLE:
                pass
            down_since = down_since or time.monotonic()
            if give_up_after is not None and time.monotonic() - down_since > give_up_after:
                raise DaemonUnreachable(c.unreachable_message(self.url))
            time.sleep(backoff.delay())

    # -- permissions -----------------------------------------------------------------------------------

    def permissions(self, session_id: str) -> list[PermissionRequest]:
        """The session's pending permission requests."""
        items = self.request("GET", c.session_path(session_id, "permissions"))["items"]
        return [c.models.PermissionRequest.model_validate(item) for item in items]

    def answer_permission(self, session_id: str, permission_id: str, reply: str) -> PermissionAnswer:
        """Answer a request: ``once``, ``always``, ``reject``, or one of its option ids. The first
        answer wins; a later one raises ``PermissionNotFound``."""
        path = c.session_path(session_id, "permissions", permission_id)
        return c.models.PermissionAnswer.model_validate(self.request("POST", path, json=c.reply_body(reply)))

    def _decide(self, session_id: str, request: PermissionRequest, on_permission: OnPermission) -> None:
        reply = on_permission(request)
        if reply is None:
            return
        with contextlib.suppress(PermissionNotFound, Conflict):  # settled already (a policy, a client, a cancel)
            self.answer_permission(session_id, request.id, reply)


def _follow_timeout() -> Any:
    import httpx

    return httpx.Timeout(c.CONNECT_TIMEOUT_SECONDS, read=c.FOLLOW_READ_TIMEOUT_SECONDS)


class TurnStream:
    """The records of one streamed turn (iterate once); ``result`` once the turn is answered,
    ``tracker`` for what it has seen so far (its permission requests, which were rejected)."""

    def __init__(
        self, client: Acpd, session_id: str, prompt: Prompt, queue: bool, on_permission: OnPermission | None, key: str
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

    def __iter__(self) -> Generator[EventRecord, None, None]:
        backoff = c.Backoff()
        for attempt in range(1, c.PROMPT_ATTEMPTS + 1):
            try:
                yield from self._attempt()
                if self.tracker.done:
                    return
            except c.RETRYABLE:
                if attempt == c.PROMPT_ATTEMPTS:
                    raise
            time.sleep(backoff.delay())
        raise StreamEnded(f"the turn's stream ended before its answer, {c.PROMPT_ATTEMPTS} times")

    def _attempt(self) -> Generator[EventRecord, None, None]:
        headers = {"Accept": "text/event-stream", "Idempotency-Key": self._key}
        path = c.session_path(self._session_id, "prompt")
        for record in self._client._records("POST", path, json=self._body, headers=headers):
            if not self.tracker.cursor.take(record):
                continue
            request = self.tracker.see(record)
            yield record
            if request is not None and self._on_permission is not None:
                self._client._decide(self._session_id, request, self._on_permission)
