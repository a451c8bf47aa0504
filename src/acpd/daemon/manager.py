"""Daemon layer: the SessionManager: every session's lifecycle, behind both faces.

It composes the store, the configured agents and the live ``SessionRuntime``s, and owns the task
group their tasks run in. It knows nothing of HTTP or JSON-RPC framing.

Live runtimes are kept in least-recently-used order. One unused for ``idle_seconds``, or the least
recently used beyond ``max_live_sessions``, leaves memory (*eviction*): an ``_acpd/session_evicted``
event is recorded, its agent stopped through the backend's normal close, its log committed and
dropped. The session stays listed, and its next use loads it again as a daemon restart would. A
session a turn, a permission, a follower or a request (a *lease*) holds never leaves.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio
from anyio.abc import TaskGroup

from acpd.adapters import registry
from acpd.errors import (
    INTERNAL_ERROR,
    AgentNotFound,
    AgentUnavailable,
    InvalidInput,
    SessionExists,
    SessionNotFound,
    StoreError,
    StoreLocked,
)
from acpd.imports import freeze_imported
from acpd.protocol import jsonio, jsonrpc, methods
from acpd.protocol.events import EventRecord, utc_now
from acpd.protocol.jsonio import JsonObject
from acpd.settings import DaemonConfig
from acpd.store.base import EventStore, SessionPage

# By module, not by name: ``acpd serve`` runs the session engine's code (these, the adapters and
# the agents' views under them) at the first session, not at start (``acpd.imports``).
from . import session, titles, turns, warm_up
from .log import GroupCommitter
from .sharing import hold, shared_store

if TYPE_CHECKING:
    from acpd.adapters.registry import BackendPools
    from acpd.config import Policy

    from .session import RuntimeDeps, SessionRuntime
    from .turns import Turn

logger = logging.getLogger(__name__)

ID_PATTERN_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")
MAX_ID_CHARS: Final = 128
DOT_SEGMENTS: Final = frozenset({".", ".."})
ID_RULE: Final = f'1-{MAX_ID_CHARS} characters of letters, digits and "-_.:", and not "." or ".."'
DOC_FIELDS: Final = ("title", "project")
SETTING_FIELDS: Final = ("model", "mode", "thoughtLevel")
IMPORTED_FIELDS: Final = (
    *DOC_FIELDS,
    *SETTING_FIELDS,
    "cwd",
    "config",
    "policy",
    "mcpServers",
    "additionalDirectories",
)
"""What an import takes from the exported document; the rest (status, the agent's session) is this daemon's."""
RUNNING: Final = ("running", "awaiting_permission")
"""A stored session's status while a turn runs: found so after a restart, the turn was interrupted."""
CLOSE_ALL_SECONDS: Final = 10.0
"""How long stopping waits for the sessions (turns answered, agents stopped, logs committed) before
leaving the rest to the task group's cancellation."""
SWEEP_SECONDS: Final = 30.0
"""How often idle sessions are looked for, at most (a quarter of ``idle_seconds`` when shorter)."""
TRIM_BATCH: Final = 100
"""After this many evictions for the limit, the freed heap is given back to the system."""
TRIM_RETRY_SECONDS: Final = 1.0
"""After a look for a session to evict for the limit found every one held, how long creates and
loads past the limit go on without another look: each would look at every session again."""
FINAL_COMMIT_SECONDS: Final = 3.0
"""Once the agents are stopped, how long stopping waits for the logs' last commits (a healthy
store takes milliseconds, a full one gives up at once; only a stuck disk takes this long)."""
RETENTION_SWEEP_SECONDS: Final = 3600.0
"""How often the retention setting is applied."""
RECOVERY_PAGE: Final = 5_000
"""Records read at a time when looking back for an interrupted turn's prompt."""


class SessionManager:
    def __init__(self, config: DaemonConfig, store: EventStore) -> None:
        self.config = config
        self.store = store
        self._runtimes: OrderedDict[str, SessionRuntime] = OrderedDict()  # least recently used first
        self._claims: dict[str, anyio.Event] = {}
        """Session ids being loaded or created (set when done): other ids go on meanwhile."""
        self._leaving: dict[str, anyio.Event] = {}  # sessions being evicted: set once they are gone
        self._trimming = False
        self._trimmed = 0
        self._trim_again_at = 0.0  # after a look found every session held: no other look before
        self._eviction_progress = anyio.Event()
        self._stopping = False
        self._inflight: dict[tuple[str, str], Turn] = {}
        self._tg: TaskGroup | None = None
        self.committer = GroupCommitter(store)
        """Commits every session's log (and the ACP-over-HTTP connections'), many per transaction."""
        self._pools: BackendPools | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[SessionManager]:
        """Run the manager: recover interrupted sessions, serve, then stop every agent."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            shared = shared_store(self.store)
            if shared is not None:
                shared.on_lost = functools.partial(self._lost_all, tg)
            tg.start_soon(self.committer.run)
            await self._recover()
            if self.config.idle_seconds > 0:
                tg.start_soon(self._sweep_idle)
            if self.config.retention_days > 0:
                tg.start_soon(self._sweep_retention)
            try:
                yield self
            finally:
                with anyio.CancelScope(shield=True):
                    await self.shutdown()
                self.committer.close()
                tg.cancel_scope.cancel()

    async def shutdown(self) -> None:
        """Stop every session: abort agent starts, end turns, stop agents, close the logs.

        A server calls it as soon as it starts shutting down: the requests it would wait for
        (an agent start, a blocking prompt, a stream) end only when their sessions do.
        Idempotent; sessions used afterwards are loaded again and closed by ``running()``.
        Bounded: after ``CLOSE_ALL_SECONDS`` it leaves what is stuck (an agent, a disk) to the
        cancellation of the manager's tasks.
        """
        self._stopping = True  # no evictions from now on: closing takes every session
        with anyio.move_on_after(CLOSE_ALL_SECONDS) as waited:
            for runtime in list(self._runtimes.values()):
                runtime.abort_start(AgentUnavailable("the daemon is shutting down"))
            await self._close_all()
            for leaving in list(self._leaving.values()):
                await leaving.wait()
            if self._pools is not None:
                await self._pools.aclose()  # the processes no session is left on
        if waited.cancelled_caught:
            logger.error(
                "%d session(s) did not close within %.0f s: %s",
                len(self._runtimes),
                CLOSE_ALL_SECONDS,
                ", ".join(sorted(self._runtimes)),
            )

    @property
    def task_group(self) -> TaskGroup:
        """The task group the daemon's own long-lived tasks run in (sessions, connections)."""
        if self._tg is None:
            raise RuntimeError("SessionManager.running() is not entered")
        return self._tg

    @property
    def _deps(self) -> RuntimeDeps:
        if self._pools is None:  # with the first session: the adapters load then
            self._pools = registry.BackendPools(self.task_group)
        titled = self._title_by_model if self.config.titles == "model" else None
        return session.RuntimeDeps(self.store, self.config, self.task_group, self.committer, self._pools, titled)

    def _title_by_model(self, session_id: str, derived: str, prompt: list[JsonObject]) -> None:
        self.task_group.start_soon(titles.write_title, self, session_id, derived, prompt)

    async def retitle(self, session_id: str, derived: str, title: str) -> None:
        """Name the session ``title``, as a PATCH would, unless its title is no longer ``derived``
        (its agent or a user named it meanwhile) or it was deleted."""
        with contextlib.suppress(SessionNotFound):
            async with self.leased(session_id) as runtime:
                if runtime.doc.get("title") == derived and title != derived:
                    await self._update(runtime, {"title": title})

    async def _recover(self) -> None:
        """After a restart, turns that were running are over: say so in their logs."""
        cursor: str | None = None
        while True:
            page = await self.store.list_sessions(limit=200, cursor=cursor)
            for doc in page.items:
                if doc.get("status") in RUNNING:
                    await self._recover_session(str(doc["id"]), doc.get("turns"))
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def _recover_session(self, session_id: str, turn: object) -> None:
        if shared_store(self.store) is not None:
            # loading it notes the interruption, unless another daemon serves it (then it runs on)
            with contextlib.suppress(StoreLocked):
                await self.runtime(session_id)
            return
        await self._note_interrupted(await self.runtime(session_id), turn)

    async def _note_interrupted(self, runtime: SessionRuntime, turn: object) -> None:
        session_id = runtime.session_id
        seq = runtime.record_daemon(methods.ACPD_TURN_INTERRUPTED, {"turn": turn, "reason": "daemon restarted"})
        runtime.doc["status"] = "idle"
        try:
            await runtime.save()
            if isinstance(turn, int):
                await self._answer_interrupted(runtime, turn, seq)
        except StoreError as exc:
            # a full disk at start: the note commits when space returns; serve meanwhile
            logger.warning("session %s: the restart note waits for the store: %s", session_id, exc)

    async def _answer_interrupted(self, runtime: SessionRuntime, turn: int, last_seq: int) -> None:
        """Give the interrupted turn's prompt, if it came with an idempotency key, its answer: a
        client's retry of it (the daemon died under its request) must not run it a second time."""
        prompt = await _turn_prompt(runtime, turn, last_seq)
        meta = (prompt.payload_object().get("params") or {}).get("_meta") if prompt is not None else None
        key = ((meta or {}).get("acpd") or {}).get("idempotencyKey") if isinstance(meta, dict) else None
        if prompt is None or prompt.sender != "client" or not isinstance(key, str):
            return
        message = f"turn {turn} was interrupted: the daemon restarted"
        answer: JsonObject = {
            "sessionId": runtime.session_id,
            "turn": turn,
            "stopReason": None,
            "usage": None,
            "steps": 0,
            "text": "",
            "firstSeq": prompt.seq,
            "lastSeq": last_seq,
            "error": {"code": INTERNAL_ERROR, "message": message, "data": {"reason": "daemon restarted"}},
        }
        await self.store.put_idempotent(runtime.session_id, key, jsonio.dumps_str(answer))

    async def _close_all(self) -> None:
        runtimes = list(self._runtimes.values())
        async with anyio.create_task_group() as tg:
            for runtime in runtimes:
                tg.start_soon(runtime.aclose)
        with anyio.move_on_after(FINAL_COMMIT_SECONDS) as waited:
            for runtime in runtimes:
                await runtime.log.finished.wait()
                self._runtimes.pop(runtime.session_id, None)
        if waited.cancelled_caught:
            stuck = [runtime for runtime in runtimes if not runtime.log.finished.is_set()]
            logger.error("the logs of %d session(s) did not finish committing: the store is stuck", len(stuck))
            for runtime in stuck:
                runtime.log.abandon()  # their followers (an SSE stream) end instead of waiting on

    async def _close_runtime(self, runtime: SessionRuntime) -> None:
        await runtime.aclose()
        await runtime.log.finished.wait()
        self._runtimes.pop(runtime.session_id, None)

    async def runtime(self, session_id: str) -> SessionRuntime:
        """The live session, loaded from the store on first use (or after it was evicted), now
        its most recently used. Raises ``SessionNotFound``."""
        await self._settled(session_id)
        runtime = self._runtimes.get(session_id)
        if runtime is None:
            runtime = await self._load(session_id)
        runtime.touch()
        self._runtimes.move_to_end(session_id)
        return runtime

    async def _load(self, session_id: str) -> SessionRuntime:
        runtime = await self._claim(session_id)
        if runtime is not None:
            return runtime
        try:
            await self._settled(session_id)  # an eviction under way commits its log first
            shared = shared_store(self.store)
            if shared is not None:
                await hold(shared, session_id)  # refused if another daemon serves it
            doc = await self.store.get_session(session_id)
            if doc is None:
                raise SessionNotFound(session_id)
            runtime = self._start_runtime(doc, await self.store.last_seq(session_id))
            if shared is not None and doc.get("status") in RUNNING:
                await self._note_interrupted(runtime, doc.get("turns"))  # its daemon died under it
            return runtime
        finally:
            self._claims.pop(session_id).set()

    async def _claim(self, session_id: str) -> SessionRuntime | None:
        """Reserve ``session_id`` for a load or a create, once any other one of it is done: the
        live session if it is (then nothing is reserved), else None and the caller must release
        the claim. Per id, so that creating or loading one session never waits for another."""
        while (busy := self._claims.get(session_id)) is not None:
            await busy.wait()
        runtime = self._runtimes.get(session_id)
        if runtime is None:
            self._claims[session_id] = anyio.Event()
        return runtime

    @asynccontextmanager
    async def leased(self, session_id: str) -> AsyncIterator[SessionRuntime]:
        """The live session, kept in memory until the block ends (a request in flight)."""
        runtime = await self.runtime(session_id)
        runtime.leases += 1
        try:
            yield runtime
        finally:
            runtime.leases -= 1
            runtime.touch()

    async def _settled(self, session_id: str) -> None:
        """Wait until an eviction of ``session_id`` under way is over: its log committed, its
        agent stopped, so that loading it again starts from what the store holds."""
        while (leaving := self._leaving.get(session_id)) is not None:
            await leaving.wait()

    def _start_runtime(self, doc: JsonObject, last_seq: int) -> SessionRuntime:
        deps = self._deps
        runtime = session.SessionRuntime(deps, doc, last_seq)
        self._runtimes[runtime.session_id] = runtime
        limit = self.config.max_live_sessions
        if limit and len(self._runtimes) > limit and not self._trimming and time.monotonic() >= self._trim_again_at:
            self._trimming = True
            deps.task_group.start_soon(self._trim)
        return runtime

    # -- eviction --------------------------------------------------------------------------------

    async def _sweep_idle(self) -> None:
        interval = min(SWEEP_SECONDS, self.config.idle_seconds / 4)
        while True:
            await anyio.sleep(interval)
            if await self.evict_idle():
                await anyio.to_thread.run_sync(give_back_freed_memory)

    async def evict_idle(self, now: float | None = None) -> int:
        """Evict every session unused for ``idle_seconds`` as of ``now`` that nothing holds;
        returns how many left."""
        if not self.config.idle_seconds:
            return 0
        now = time.monotonic() if now is None else now  # the clock of ``last_used``
        idle = [
            runtime
            for runtime in self._runtimes.values()
            if now - runtime.last_used >= self.config.idle_seconds and runtime.held_by() is None
        ]
        left = 0

        async def evict(runtime: SessionRuntime) -> None:
            nonlocal left
            evicted = await self._evict(runtime, "idle", now)  # (not `left += await`: a race)
            left += evicted

        async with anyio.create_task_group() as tg:  # their agents stop side by side
            for runtime in idle:
                tg.start_soon(evict, runtime)
        return left

    def live_sessions(self) -> list[str]:
        """The ids of the sessions in memory, least recently used first."""
        return list(self._runtimes)

    async def evictions_settled(self) -> None:
        """Return once no eviction is under way (for tests and benchmarks, which wait on it)."""
        while self._trimming or self._leaving:
            await self._eviction_progress.wait()

    def _progressed(self) -> None:
        progress, self._eviction_progress = self._eviction_progress, anyio.Event()
        progress.set()

    async def _trim(self) -> None:
        """Evict least recently used sessions while more than ``max_live_sessions`` are live. The
        most recently used one stays (it was just asked for), and so does any session held."""
        try:
            limit = self.config.max_live_sessions
            while len(self._runtimes) > limit:
                candidates = itertools.islice(self._runtimes.values(), len(self._runtimes) - 1)
                victim = next((r for r in candidates if r.held_by() is None), None)
                if victim is None:
                    # over the limit until something lets go: a load after a while trims again
                    self._trim_again_at = time.monotonic() + TRIM_RETRY_SECONDS
                    return
                if not await self._evict(victim, "limit", time.monotonic()):
                    return  # it was taken meanwhile: the next load trims again
                self._trimmed += 1
                if self._trimmed % TRIM_BATCH == 0:
                    await anyio.to_thread.run_sync(give_back_freed_memory)
        finally:
            self._trimming = False
            self._progressed()

    async def _evict(self, runtime: SessionRuntime, reason: str, now: float) -> bool:
        """Take ``runtime`` out of memory: the event says why, the agent stops as at a close (a
        process of its own stopped, a shared one releases the session), the log commits. False
        when it stays (the daemon stops, or something took hold of it meanwhile)."""
        session_id = runtime.session_id
        if self._stopping or self._runtimes.get(session_id) is not runtime or runtime.held_by() is not None:
            return False
        runtime.evicting = True
        self._runtimes.pop(session_id)
        gone = self._leaving[session_id] = anyio.Event()
        idle = round(max(0.0, now - runtime.last_used), 3)
        runtime.record_daemon(methods.ACPD_SESSION_EVICTED, {"reason": reason, "idleSeconds": idle})
        try:
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_ALL_SECONDS):
                await runtime.aclose()
                await runtime.log.finished.wait()
        finally:
            runtime.log.release_tail()
            await self._let_go(session_id)
            del self._leaving[session_id]
            gone.set()
            self._progressed()
        logger.debug("session %s left memory (%s, idle %.1f s)", session_id, reason, idle)
        return True

    # -- sessions --------------------------------------------------------------------------------

    async def create(self, body: JsonObject, *, durable: bool = True) -> SessionRuntime:
        """Create a session and start its agent.

        ``durable=False``: return once the session's first records and document are queued, not
        committed; the caller must make its answer commit after them (``SessionLog.commit_after``
        the log's ``last_seq`` and ``doc_version``), and hears of a store failure there.

        Raises:
            InvalidInput, AgentNotFound, SessionExists, AgentUnavailable, AgentError.
        """
        chosen = body.get("id")
        session_id = _session_id(chosen)
        agent = body.get("agent")
        if agent is None:
            agent = self.config.default_agent
        elif not isinstance(agent, str):  # as a PATCH answers it: a client's mistake, not a missing agent
            raise InvalidInput('"agent" must be the name of a configured agent')
        agents = self.config.all_agents()
        if agent not in agents:
            raise AgentNotFound(f"no agent named {agent!r}; known agents: {sorted(agents)}")
        exists = SessionExists(f"a session with id {session_id!r} already exists")
        if await self._claim(session_id) is not None:
            raise exists
        try:
            await self._settled(session_id)
            # A fresh random id names no stored session: only a client's own id is looked up.
            if chosen is not None and await self.store.get_session(session_id) is not None:
                raise exists
            doc = {**session.session_doc_defaults(utc_now()), **_create_fields(body, self.config.session_policy())}
            doc.update(id=session_id, agent=agent)
            warm_up_blocks = await _warm_up(body.get("context"), doc)
            # Not saved yet: the document commits with the agent's start (``_acpd/agent_started``),
            # in one group commit shared with other sessions' writes, before the create answers.
            # Meanwhile the claim, then the live runtime, keep its id taken; a start that fails
            # leaves nothing stored.
            runtime = self._start_runtime(doc, 0)
            runtime.leases += 1  # until its agent runs: nobody else knows of it yet
            if warm_up_blocks:
                runtime.record_daemon(methods.ACPD_WARM_UP, {"blocks": warm_up_blocks})
        finally:
            self._claims.pop(session_id).set()
        if not durable:
            runtime.defer_first_save()
        try:
            await runtime.ensure_backend()
        except BaseException:
            # A session whose agent never started is nobody's: the caller got no id to use it by.
            with anyio.CancelScope(shield=True), contextlib.suppress(SessionNotFound):
                await self.delete(session_id)  # (unless it was deleted while the agent started)
            raise
        finally:
            runtime.leases -= 1
            runtime.touch()
        freeze_imported()  # a first create imports the agents' configuration and adapters, on any face
        return runtime

    async def import_session(
        self, exported: JsonObject, records: list[EventRecord], overrides: dict[str, str]
    ) -> SessionRuntime:
        """Make a session of an export (``session_files``): its document and its whole history in
        one transaction, or nothing. ``overrides`` may give another ``id``, ``agent`` or ``cwd``.

        Raises:
            InvalidInput, AgentNotFound, SessionExists.
        """
        session_id = _session_id(overrides.get("id", exported.get("id")))
        fields = {key: exported[key] for key in IMPORTED_FIELDS if exported.get(key) is not None}
        fields.update({"cwd": overrides["cwd"]} if "cwd" in overrides else {})
        kept = {key: exported[key] for key in ("createdAt", "usage") if exported.get(key)}
        from . import session_files  # at the first import or fork: not at start

        history = session_files.renamed(records, session_id)
        return await self._recreate(session_id, overrides.get("agent", exported.get("agent")), fields, history, kept)

    async def fork(self, source_id: str, body: JsonObject) -> SessionRuntime:
        """A new session whose history is ``source_id``'s up to ``atSeq`` (by default, the end of
        its last finished turn: a running turn is left out), recorded as ``_acpd/forked_from``.

        Raises:
            InvalidInput, SessionNotFound, AgentNotFound, SessionExists.
        """
        unknown = set(body) - {"id", "atSeq", "agent", "title", "cwd"}
        if unknown:
            raise InvalidInput(f"unknown fields {sorted(unknown)}")
        async with self.leased(source_id) as source:
            committed = source.log.committed_seq
            at = body.get("atSeq", source.finished_end())
            if not isinstance(at, int) or isinstance(at, bool) or not 0 <= at <= committed:
                raise InvalidInput(
                    f'"atSeq" must be a seq of session {source_id!r} that is committed: 0 to {committed}'
                )
            doc = dict(source.doc)
            records = [record async for batch in source.log.history(at) for record in batch]
        session_id = _session_id(body.get("id"))
        title = body.get("title", f"{doc['title']} (fork)" if doc.get("title") else None)
        fields = {**{key: doc[key] for key in IMPORTED_FIELDS if doc.get(key) is not None}, "title": title}
        fields.update({"cwd": body["cwd"]} if body.get("cwd") is not None else {})
        turn = records[-1].turn if records else 0
        note = jsonrpc.notification(
            methods.ACPD_FORKED_FROM, {"sessionId": session_id, "source": source_id, "atSeq": at}
        )
        forked = EventRecord(session_id, at + 1, utc_now(), "daemon", turn, jsonio.dumps_str(note))
        from . import session_files  # at the first import or fork: not at start

        history = [*session_files.renamed(records, session_id), forked]
        return await self._recreate(session_id, body.get("agent", doc.get("agent")), fields, history, {})

    async def _recreate(
        self, session_id: str, agent: object, body: JsonObject, history: list[EventRecord], kept: JsonObject
    ) -> SessionRuntime:
        """Store a session with its ``history`` in one transaction. Its agent starts at first use
        with a new agent session, which gets the transcript with the next prompt."""
        if not isinstance(agent, str) or agent not in self.config.all_agents():
            raise AgentNotFound(f"no agent named {agent!r}; known agents: {sorted(self.config.all_agents())}")
        doc = {**session.session_doc_defaults(utc_now()), **_create_fields(body, self.config.session_policy()), **kept}
        turn_count = max((record.turn for record in history), default=0)
        doc.update(id=session_id, agent=agent, turns=turn_count, contextPending=turn_count > 0)
        exists = SessionExists(f"a session with id {session_id!r} already exists")
        if await self._claim(session_id) is not None:
            raise exists
        try:
            await self._settled(session_id)
            if await self.store.get_session(session_id) is not None:
                raise exists
            await self.store.append_many(history, sessions=[doc])
        finally:
            self._claims.pop(session_id).set()
        return await self.runtime(session_id)

    async def collect(self, older_than: float, *, archived_only: bool = False, dry_run: bool = False) -> JsonObject:
        """Delete the sessions last updated more than ``older_than`` seconds ago (only archived ones
        with ``archived_only``), with their events and index rows; a session in use (a turn, a
        pending permission, a start) is kept. ``dry_run``: say what would go, delete nothing."""
        from . import retention  # at the first collection: not at start

        before = retention.cutoff(older_than)
        deleted: list[str] = []
        kept: list[str] = []
        cursor: str | None = None
        while True:
            page = await self.store.list_sessions(limit=200, cursor=cursor, archived=True if archived_only else None)
            for doc in page.items:
                if str(doc.get("updatedAt") or doc["createdAt"]) > before:
                    continue
                runtime = self._runtimes.get(doc["id"])
                if runtime is not None and runtime.held_by() is not None:
                    kept.append(doc["id"])
                    continue
                if not dry_run:
                    with contextlib.suppress(SessionNotFound):  # deleted meanwhile
                        await self.delete(doc["id"])
                deleted.append(doc["id"])
            if page.next_cursor is None:
                return {"deleted": deleted, "kept": kept, "dryRun": dry_run}
            cursor = page.next_cursor

    async def _sweep_retention(self) -> None:
        """Apply the retention setting at start, then every ``RETENTION_SWEEP_SECONDS``: a daemon
        restarted more often than that still collects."""
        while True:
            try:
                gone = await self.collect(
                    self.config.retention_days * 86400, archived_only=self.config.retention_archived_only
                )
            except StoreError as exc:  # a full or failing disk: try again at the next sweep
                logger.warning("retention: the store failed (%s); trying again in an hour", exc)
                gone = {"deleted": []}
            if gone["deleted"]:
                logger.info(
                    "retention: %d session(s) older than %s days deleted",
                    len(gone["deleted"]),
                    self.config.retention_days,
                )
            await anyio.sleep(RETENTION_SWEEP_SECONDS)

    async def list_sessions(self, **filters: Any) -> SessionPage:
        return self._live(await self.store.list_sessions(**filters))

    async def prompt_capabilities(self, agent: str) -> JsonObject | None:
        """What ``agent`` said it takes in prompts (``promptCapabilities``), as its most recent
        session that started it recorded; None when no session of it has started yet."""
        for runtime in reversed(self._runtimes.values()):
            if runtime.doc.get("agent") == agent and runtime.doc.get("capabilities"):
                return _prompt_capabilities(runtime.doc)
        for doc in (await self.store.list_sessions(agent=agent, archived=None, limit=20)).items:
            if doc.get("capabilities"):
                return _prompt_capabilities(doc)
        return None

    async def search_sessions(self, q: str, **filters: Any) -> SessionPage:
        """Full-text search over titles, prompts and replies (``EventStore.search_sessions``)."""
        return self._live(await self.store.search_sessions(q, **filters))

    def _live(self, page: SessionPage) -> SessionPage:
        """The page with each loaded session as it is now (the store has it as last saved)."""
        items = [
            {**self._runtimes[d["id"]].wire(), **({"match": d["match"]} if "match" in d else {})}
            if d["id"] in self._runtimes
            else d
            for d in page.items
        ]
        return SessionPage(items, page.next_cursor)

    async def update(self, session_id: str, body: JsonObject) -> SessionRuntime:
        """Apply a PATCH (or an ACP setter) whole, or, when any part is refused, none of it: the
        session keeps its agent and settings and nothing is recorded as changed.

        Raises:
            InvalidInput, InvalidSetting, AgentNotFound, AgentUnavailable, AgentError.
        """
        async with self.leased(session_id) as runtime:
            return await self._update(runtime, body)

    async def _update(self, runtime: SessionRuntime, body: JsonObject) -> SessionRuntime:
        doc_changes, policy, agent, settings = _parse_update(body, runtime.policy)
        if agent == runtime.doc["agent"]:
            agent = None
        if agent is not None:
            await self._check_switch(runtime, agent)
        runtime.log.check_writable()  # refuse while the store fails, before anything changes
        before = runtime.snapshot()
        try:
            await self._apply_update(runtime, doc_changes, policy, agent, settings)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await runtime.roll_back(before)
            raise
        changes: JsonObject = {**doc_changes, **({"agent": agent} if agent else {}), **settings}
        if policy is not None:
            changes["policy"] = runtime.doc["policy"]
        if "archivedAt" in changes:
            changes["archived"] = changes.pop("archivedAt") is not None
        if changes:
            runtime.record_daemon(methods.ACPD_SETTINGS_CHANGED, {"changes": changes})
        if agent is not None or settings:
            runtime.echo_settings(mode_changed=agent is not None or "mode" in settings)
        await runtime.save()
        return runtime

    async def _apply_update(
        self,
        runtime: SessionRuntime,
        doc_changes: JsonObject,
        policy: Policy | None,
        agent: str | None,
        settings: JsonObject,
    ) -> None:
        runtime.doc.update(doc_changes)
        if policy is not None:
            runtime.set_policy(policy)
        if agent is not None:
            # the new agent starts now, beside the old one: its options are part of the answer, and
            # an agent that cannot start fails the switch (the old one untouched), not the next prompt
            await runtime.switch_agent(agent, settings)
        if settings:
            await runtime.change_settings(settings)

    async def _check_switch(self, runtime: SessionRuntime, agent: str) -> None:
        """What can be known without starting the agent, checked before anything changes."""
        if agent not in self.config.all_agents():
            raise AgentNotFound(f"no agent named {agent!r}; known agents: {sorted(self.config.all_agents())}")
        await runtime.answered_turn_ended()
        if runtime.busy:
            raise InvalidInput("cannot switch agents while a turn runs; cancel it or wait")
        await runtime.check_usable(agent)

    async def close(self, session_id: str) -> None:
        """End the running turn, stop the agent and unload the session; its history stays, and
        any later use (a prompt, a load) reopens it.

        Raises:
            SessionNotFound. StoreError: the store fails (a full disk); the session stays open.
        """
        await self._settled(session_id)
        runtime = self._runtimes.get(session_id)
        if runtime is None:
            if await self.store.get_session(session_id) is None:
                raise SessionNotFound(session_id)
            return
        runtime.log.check_writable()  # unloading now would drop what the store has not taken
        await runtime.stop_turns()
        status, runtime.doc["status"] = runtime.doc.get("status"), "closed"
        try:
            await runtime.save()
        except StoreError:
            runtime.doc["status"] = status
            runtime.take_turns_again()
            raise
        await self._close_runtime(runtime)

    async def delete(self, session_id: str) -> None:
        await self._settled(session_id)
        runtime = self._runtimes.get(session_id)
        if runtime is not None:
            await self._close_runtime(runtime)
        elif await self.store.get_session(session_id) is None:
            raise SessionNotFound(session_id)
        await self.store.delete_session(session_id)

    # -- turns -----------------------------------------------------------------------------------

    async def prompt(
        self, session_id: str, prompt: object, *, key: str | None = None, queue: bool = True, origin: str | None = None
    ) -> Turn:
        """Submit a prompt; the returned turn runs in the daemon, whoever waits for it (and holds
        the session in memory until it is done)."""
        runtime = await self.runtime(session_id)
        blocks = prompt_blocks(prompt)
        if any(block["type"] not in turns.PLAIN_BLOCKS for block in blocks):
            await runtime.ensure_backend()  # what its agent takes is known once it runs
            turns.check_attachments(blocks, runtime.doc.get("capabilities"), str(runtime.doc.get("agent")))
        if key is not None and (session_id, key) in self._inflight:
            return self._inflight[(session_id, key)]  # a retry while the first attempt still runs
        turn = turns.Turn(blocks, idempotency_key=key, origin=origin)
        runtime.submit(turn, queue=queue)
        if key is not None:
            self._inflight[(session_id, key)] = turn
            self.task_group.start_soon(self._forget_when_done, runtime.session_id, turn, key)
        return turn

    async def stored_answer(self, session_id: str, key: str) -> JsonObject | None:
        stored = await self.store.get_idempotent(session_id, key)
        return jsonio.loads(stored) if stored is not None else None

    async def _forget_when_done(self, session_id: str, turn: Turn, key: str) -> None:
        # The runtime stores the answer before the turn is done; later retries read it from the store.
        await turn.done.wait()
        self._inflight.pop((session_id, key), None)

    async def cancel(self, session_id: str) -> bool:
        return (await self.runtime(session_id)).cancel()

    async def committed_records(self, session_id: str, *, after: int, limit: int) -> list[EventRecord]:
        """Committed records of a session, from its log if it is loaded (memory), else from the
        store; it loads nothing. Empty for a session that no longer exists."""
        runtime = self._runtimes.get(session_id)
        if runtime is not None:
            return await runtime.log.read(after, limit)
        return await self.store.read(session_id, after=after, limit=limit)

    async def events(self, session_id: str, *, after: int, limit: int) -> tuple[list[EventRecord], int]:
        try:
            async with self.leased(session_id) as runtime:
                return await runtime.log.read(after, limit), runtime.log.committed_seq
        except StoreLocked:
            if (shared := shared_store(self.store)) is None:
                raise
        # another daemon serves it: what it committed, from the table
        return await shared.read(session_id, after=after, limit=limit), await shared.last_seq(session_id)

    def _lost_all(self, tg: TaskGroup, session_ids: list[str]) -> None:
        """Another daemon took these sessions while the database connection was broken."""
        for session_id in session_ids:
            tg.start_soon(self._lost, session_id)

    async def _lost(self, session_id: str) -> None:
        """Let go of a session another daemon took (``SessionRuntime.disown``): from now on this
        daemon serves it as it serves any session another holds (reads from the table, writes
        sent on to the owner)."""
        runtime = self._runtimes.get(session_id)
        if runtime is None:
            return
        self._runtimes.pop(session_id)
        gone = self._leaving[session_id] = anyio.Event()
        owner = await _owner_of(self.store, session_id)
        error = StoreLocked(
            f"session {session_id!r} was taken over by another daemon while this daemon's database connection was"
            f" broken; it is served at {owner.get('url') or 'an unknown address'} now: send it there",
            data={"sessionId": session_id, **owner},
        )
        logger.warning("session %s: another daemon took it while the database connection was broken", session_id)
        try:
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_ALL_SECONDS):
                await runtime.disown(error)
                await runtime.log.finished.wait()
        finally:
            runtime.log.release_tail()
            del self._leaving[session_id]
            gone.set()
            self._progressed()

    async def _let_go(self, session_id: str) -> None:
        """A session that left memory is free for the daemons sharing the database."""
        shared = shared_store(self.store)
        if shared is not None:
            with anyio.CancelScope(shield=True):
                try:
                    await shared.release(session_id)
                except StoreError as exc:  # its lock goes with the connection in any case
                    logger.warning("session %s: could not let other daemons have it: %s", session_id, exc)


async def _owner_of(store: EventStore, session_id: str) -> dict[str, Any]:
    """Who holds the session in a shared store (its ``pid`` and ``url``), as far as can be told."""
    shared = shared_store(store)
    try:
        return (await shared.owner_of(session_id) if shared is not None else None) or {}
    except StoreError:
        return {}


def give_back_freed_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``): what evicted
    sessions freed is otherwise kept by the process, scattered between live objects. Elsewhere a
    no-op. Blocking (it walks the heap): run it in a thread."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    import ctypes  # only once sessions leave: not at start-up

    try:
        return ctypes.CDLL(None).malloc_trim  # the process's own symbols, libc's among them
    except (OSError, AttributeError):  # not glibc
        return None


def prompt_blocks(prompt: object) -> list[JsonObject]:
    """A prompt as ACP content blocks: a string becomes one text block.

    Raises:
        InvalidInput: neither a non-empty string nor a list of content blocks.
    """
    if isinstance(prompt, str) and prompt:
        return [{"type": "text", "text": prompt}]
    if (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in prompt)
    ):
        return prompt
    raise InvalidInput('"prompt" must be a non-empty string or a list of ACP content blocks (objects with "type")')


def _parse_update(body: JsonObject, current: Policy) -> tuple[JsonObject, Policy | None, str | None, JsonObject]:
    """A PATCH body checked whole before anything changes: the document's own fields, the new
    policy, the agent to switch to, and the settings for the agent.

    Raises:
        InvalidInput: an unknown field or a value of the wrong type.
    """
    unknown = set(body) - {*DOC_FIELDS, *SETTING_FIELDS, "archived", "config", "agent", "policy"}
    if unknown:
        raise InvalidInput(f"cannot change {sorted(unknown)}")
    doc_changes: JsonObject = {key: _optional_str(body[key], key) for key in DOC_FIELDS if key in body}
    if "archived" in body:
        if not isinstance(body["archived"], bool):
            raise InvalidInput('"archived" must be true or false')
        doc_changes["archivedAt"] = utc_now() if body["archived"] else None
    policy = _policy({**current.to_wire(), **_object(body["policy"], "policy")}) if "policy" in body else None
    agent = body.get("agent")
    if "agent" in body and not isinstance(agent, str):
        raise InvalidInput('"agent" must be the name of a configured agent')
    settings: JsonObject = {key: _optional_str(body[key], key) for key in SETTING_FIELDS if key in body}
    if "config" in body:
        settings["config"] = _object(body["config"], "config")
    return doc_changes, policy, agent, settings


def _session_id(value: object) -> str:
    if value is None:
        return uuid.uuid4().hex
    if not isinstance(value, str):
        raise InvalidInput(f'"id" must be a string: {ID_RULE}')
    check_id(value, '"id"')
    return value


def check_id(value: str, what: str) -> None:
    """Ids the daemon accepts from clients (sessions, ACP connections): safe in URLs and logs.
    ``.`` and ``..`` are refused: URL clients resolve them away, so nobody could reach the session."""
    if not value or len(value) > MAX_ID_CHARS or not set(value) <= ID_PATTERN_CHARS or value in DOT_SEGMENTS:
        raise InvalidInput(f"{what} must be {ID_RULE}")


def _optional_str(value: object, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f'"{name}" must be a string or null')
    return value


def _object(value: object, name: str) -> JsonObject:
    if not isinstance(value, dict):
        raise InvalidInput(f'"{name}" must be an object')
    return value


def _policy(value: JsonObject) -> Policy:
    from acpd.config import Policy  # with the first session: pydantic is not imported at start

    try:
        return Policy.model_validate(value)
    except ValueError as exc:
        raise InvalidInput(f"invalid policy: {exc}") from exc


async def _warm_up(context: object, doc: JsonObject) -> list[JsonObject]:
    """A create's ``context``, read in a thread (files), with the document marked to take it."""
    if context is None:
        return []
    directories = [str(doc["cwd"]), *doc["additionalDirectories"]]
    blocks = await anyio.to_thread.run_sync(warm_up.warm_up_blocks, context, directories)
    doc["warmUpPending"] = bool(blocks)
    return blocks


def _create_fields(body: JsonObject, default_policy: Policy) -> JsonObject:
    known = {"id", "agent", "cwd", "title", "project", "model", "mode", "thoughtLevel", "config", "policy", "context"}
    known |= {"mcpServers", "additionalDirectories"}
    unknown = set(body) - known
    if unknown:
        raise InvalidInput(f"unknown fields {sorted(unknown)}")
    fields: JsonObject = {"cwd": _directory(body.get("cwd") or str(Path.cwd()), '"cwd"')}
    for key in (*DOC_FIELDS, *SETTING_FIELDS):
        fields[key] = _optional_str(body.get(key), key)
    fields["config"] = _object(body.get("config") or {}, "config")
    fields["policy"] = _policy({**default_policy.to_wire(), **_object(body.get("policy") or {}, "policy")}).to_wire()
    servers = _list(body.get("mcpServers"), "mcpServers")
    if not all(isinstance(s, dict) and isinstance(s.get("name"), str) and s["name"] for s in servers):
        raise InvalidInput('"mcpServers" must be a list of ACP MCP server objects, each with a "name"')
    fields["mcpServers"] = servers
    directories = _list(body.get("additionalDirectories"), "additionalDirectories")
    fields["additionalDirectories"] = [_directory(d, 'each of "additionalDirectories"') for d in directories]
    return fields


def _list(value: object, name: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput(f'"{name}" must be a list')
    return value


def _directory(value: object, what: str) -> str:
    """An absolute path naming an existing directory.

    Raises:
        InvalidInput: anything else, also a path the system cannot even look up (too long, NUL).
    """
    try:
        valid = isinstance(value, str) and Path(value).is_absolute() and Path(value).is_dir()
    except (OSError, ValueError):  # ENAMETOOLONG, ELOOP, embedded NUL
        valid = False
    if not valid:
        shown = value if not isinstance(value, str) or len(value) <= 200 else value[:200] + "…"
        raise InvalidInput(f"{what} must be an absolute path to an existing directory, got {shown!r}")
    assert isinstance(value, str)
    return value


async def _turn_prompt(runtime: SessionRuntime, turn: int, end: int) -> EventRecord | None:
    """The record of turn ``turn``'s prompt, its first: read back page by page from ``end``."""
    found = None
    while end > 0:
        start = max(0, end - RECOVERY_PAGE)
        records = await runtime.log.read(start, end - start)
        for record in reversed(records):
            if record.turn != turn:
                return found
            found = record
        end = start
    return found


def _prompt_capabilities(doc: Mapping[str, Any]) -> JsonObject:
    offered = (doc.get("capabilities") or {}).get("promptCapabilities")
    offered = offered if isinstance(offered, dict) else {}
    return {name: offered.get(name) is True for name in ("image", "audio", "embeddedContext")}
