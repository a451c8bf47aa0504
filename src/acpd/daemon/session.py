"""Daemon layer: one live session: its log, its backend, its turns, its pending permissions.

It is the ``SessionHost`` its backend talks to. It owns the rules (one turn at a time, limits,
permission policy, durable-before-visible answers) but not HTTP or the choice of store.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import json
import logging
import math
import os
import time
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import anyio
from anyio.abc import TaskGroup, TaskStatus

from acpd.adapters.base import Backend, BackendState, TextEnvelope
from acpd.adapters.registry import BackendPools, create_backend
from acpd.adapters.secrets import without_secrets
from acpd.adapters.workspace import Workspace
from acpd.errors import (
    AcpdError,
    AgentError,
    AgentNotFound,
    AgentUnavailable,
    InvalidSetting,
    NotFound,
    RpcError,
    SessionBusy,
    SessionClosed,
    StoreError,
    StoreFull,
)
from acpd.protocol import jsonio, jsonrpc, methods
from acpd.protocol.events import EventRecord, Sender, utc_now
from acpd.protocol.jsonio import JsonObject, JsonValue, objects_in
from acpd.settings import DaemonConfig
from acpd.store.base import EventStore, SessionDoc

from .acp_views import SETTING_FOR_CATEGORY, config_options, offered_values, select_values, update_notification
from .clients import AttachedClients
from .log import GroupCommitter, SessionLog
from .permissions import (
    CANCELLED_OUTCOME,
    DecidedBy,
    PendingPermission,
    PermissionBroker,
    check_outcome,
    outcome_for_reply,
    policy_outcome,
)
from .transcript import transcript_block
from .turns import Turn, chunk_text, usage_totals
from .warm_up import as_prompt_blocks

if TYPE_CHECKING:
    from acpd.adapters.terminals import TerminalManager
    from acpd.config import AgentConfig, Policy

logger = logging.getLogger(__name__)

CANCEL_GRACE_SECONDS: Final = 5.0
"""How long an agent may take to answer a cancelled prompt before its process is stopped."""
CLOSE_CANCEL_SECONDS: Final = min(CANCEL_GRACE_SECONDS, 2.0)
"""When a session closes under a running turn (the daemon stops, the session is deleted): how long
its agent may take to answer the cancel, and then how long the turn may take to record its answer
once the agent is stopped. Short: stopping the daemon must stay fast."""
ANSWERED_TURN_SETTLE_SECONDS: Final = 5.0
"""How long a change waits for a turn whose answer is out to finish committing it."""
STDERR_EVENT_CHARS: Final = 4000
MAX_CLEAN_ENVELOPES: Final = 64
"""Text chunk envelopes a session remembers as holding no secret (``emit_texts``)."""
MAX_EARLY_BYTES: Final = 16 * 1024 * 1024
"""What an agent may send before its session is open (held in memory until then); past it, the start fails."""
TITLE_CHARS: Final = 80
"""The longest title derived from a first prompt."""
AGENT_SIDE: Final = ("agent", "model", "mode", "thoughtLevel", "config", "backendSessionId")
"""Document fields a running agent holds too: if a refused change moved one, the agent is stopped."""
CHANGEABLE: Final = (
    *AGENT_SIDE,
    *("title", "project", "archivedAt", "policy", "configOptions", "modes", "models"),
    *("agentInfo", "capabilities", "contextPending"),
)
"""Document fields a PATCH, an ACP setter or the agent start they cause may change."""
AGENT_FRESH: Final[JsonObject] = {
    **{"backendSessionId": None, "configOptions": [], "modes": None, "models": None},
    **{"mode": None, "model": None, "thoughtLevel": None, "config": {}},
}
"""What a switch to another agent resets: the old agent's settings mean nothing to the new one."""
_RUNNING: ContextVar[Backend | None] = ContextVar("acpd_running_backend", default=None)
"""In a backend's own task (its ``run`` and whatever it calls back): that backend."""


@dataclass(frozen=True, slots=True)
class RuntimeDeps:
    store: EventStore
    config: DaemonConfig
    task_group: TaskGroup
    committer: GroupCommitter
    pools: BackendPools
    """The agent processes sessions share."""
    on_titled: Callable[[str, str, list[JsonObject]], None] | None = None
    """Told ``(session id, title, prompt)`` when a session is named after its first prompt, to
    have a better title written (``titles = "model"``); it must not block."""


class SessionRuntime:
    """A session loaded in memory. Created by the manager; all methods run on the event loop."""

    def __init__(self, deps: RuntimeDeps, doc: SessionDoc, last_seq: int) -> None:
        self._deps = deps
        self.doc = doc
        self.log = SessionLog(deps.store, doc["id"], last_seq, committer=deps.committer)
        self.log.on_fault = self._store_failed
        self.broker = PermissionBroker()
        self.clients = AttachedClients()
        self._policy = _policy_of(doc)
        self._backend: Backend | None = None
        self._incoming: Backend | None = None  # during an agent switch: the new agent, not yet the session's
        # asyncio's locks: free (the common case), taken without a yield or anyio's cancel-scope walk
        self._backend_lock = asyncio.Lock()
        self._early: list[JsonObject] | None = None  # while an agent starts: what it said before agent_started
        self._defer_save = False  # the next start queues its save, not waiting for it (``defer_first_save``)
        self._clean_envelopes: dict[TextEnvelope, bool] = {}
        self._early_bytes = 0
        self._start_scope: anyio.CancelScope | None = None  # while an agent starts: aborts the start
        self._start_abort: AcpdError | None = None
        self._stopping = False  # the daemon is stopping the backend on purpose
        self._turn_lock = asyncio.Lock()
        self._current: Turn | None = None
        self._queued = 0
        self._workspace: Workspace | None = None
        self._terminals: TerminalManager | None = None
        self._services_scope: anyio.CancelScope | None = None
        self._closing = False
        self.last_used = time.monotonic()  # the event loop's clock, without anyio's backend lookup
        """When a request last used the session (``touch``): idle eviction's clock."""
        self.leases = 0
        """Requests using the session right now (``SessionManager.leased``): it stays in memory."""
        self.evicting = False
        """Leaving memory (``SessionManager``'s eviction): the next use waits, then loads it again."""

    # -- identity (SessionHost) ------------------------------------------------------------------

    @property
    def session_id(self) -> str:
        return str(self.doc["id"])

    @property
    def cwd(self) -> str:
        return str(self.doc["cwd"])

    @property
    def turns(self) -> int:
        return self._turn_number

    @property
    def policy(self) -> Policy:
        return self._policy

    def set_policy(self, policy: Policy) -> None:
        self.doc["policy"] = policy.to_wire()
        self._policy = shared_policy(self.doc["policy"])

    @property
    def busy(self) -> bool:
        return self._current is not None or self._queued > 0

    async def answered_turn_ended(self) -> None:
        """Let a turn whose answer is recorded finish its bookkeeping (the commit of that answer):
        a client that has read the answer has seen the turn end, and may act on the session at
        once. Bounded: a store that cannot commit leaves the turn running, as it is."""
        turn = self._current
        if turn is not None and turn.answered.is_set() and self._queued == 0:
            with anyio.move_on_after(ANSWERED_TURN_SETTLE_SECONDS):
                await turn.done.wait()

    @property
    def agent_process_id(self) -> int | None:
        """The pid of the agent process serving the session now, if it runs one (shared or its own)."""
        pid = getattr(self._backend, "process_id", None)
        return pid if isinstance(pid, int) else None

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def held_by(self) -> str | None:
        """Why the session must stay in memory now, or None when it may leave: a turn runs or is
        queued, a permission waits, someone follows its events or is attached, a request holds it,
        its agent is starting, a terminal it started still runs, or its log cannot commit."""
        # one test after another, each only if the ones before fail: looked at for every session
        # when the daemon looks for one to evict
        if self.busy:
            return "a turn runs"
        if self.broker.pending():
            return "a permission waits"
        if self.log.followers > 0 or len(self.clients) > 0:
            return "followed"
        if self.leases > 0 or self._backend_lock.locked():
            return "in use"
        if self._terminals is not None and len(self._terminals) > 0:
            return "a terminal runs"
        if self._closing or self.evicting:
            return "closing"
        if self.log.fault is not None:
            return "the store fails"  # unloading would drop what it has not taken
        return None

    def wire(self) -> JsonObject:
        """The session as REST shows it."""
        view = dict(self.doc)
        view["lastSeq"] = self.log.committed_seq
        view["pendingPermissions"] = len(self.broker.pending())
        view["queuedPrompts"] = self._queued
        return view

    # -- recording -------------------------------------------------------------------------------

    @property
    def _turn_number(self) -> int:
        return int(self.doc.get("turns") or 0)

    def finished_end(self) -> int:
        """The seq where the last finished turn's records end (with what followed it before the
        running turn's prompt): the whole committed log when no turn runs."""
        turn = self._current
        if turn is not None and turn.first_seq > 0:
            return min(turn.first_seq - 1, self.log.committed_seq)
        return self.log.committed_seq

    def record(self, sender: Sender, payload: JsonObject) -> int:
        return self.log.append(sender, self._turn_number, payload).seq

    def record_daemon(self, method: str, params: JsonObject) -> int:
        return self.record("daemon", jsonrpc.notification(method, {"sessionId": self.session_id, **params}))

    def record_error(self, code: str, message: str, data: JsonObject | None = None) -> None:
        self.record_daemon(methods.ACPD_ERROR, {"code": code, "message": message, **({"data": data} if data else {})})

    async def save(self) -> None:
        """Persist the document atomically with every record appended so far (read-your-writes).

        Raises:
            StoreError: the store fails (a full disk); the document stays queued and commits
                with those records when the store accepts writes again.
        """
        await self.log.wait_saved(self._queue_save())

    def defer_first_save(self) -> None:
        """The agent's next start queues the document it saves (with ``_acpd/agent_started``)
        instead of waiting for it to commit: for a creator whose answer commits after them (the
        log's ``last_seq`` and ``doc_version``), so that both commit in one transaction, not one
        after the other."""
        self._defer_save = True

    def _queue_save(self) -> int:
        self.doc["updatedAt"] = utc_now()
        return self.log.save_doc(self.doc)

    def _store_failed(self, fault: StoreError) -> None:
        """Commits started failing: say so in the log (the record commits once they succeed again)
        and end the running turn with the error, so its caller hears now, not when space returns."""
        code = "STORE_FULL" if isinstance(fault, StoreFull) else "STORE_FAILED"
        self.record_error(code, f"{fault.message}; the daemon kept what it could not commit and committed it later")
        turn = self._current
        if turn is not None and turn.error is None:
            turn.error = fault
            turn.request_stop("cancelled")

    # -- what the backend says (SessionHost) -----------------------------------------------------

    async def emit(self, message: JsonObject) -> None:
        if self._early is not None:
            # The agent spoke before its session/new answer was adopted: _acpd/agent_started first.
            self._hold_early(message)
            return
        # Scrubbed before anything sees it: the turn's text and the document derive from the
        # frame the log keeps, never from what the agent sent.
        message, text = self.log.scrub_frame(message)
        params = message.get("params")
        update = params.get("update") if isinstance(params, dict) else None
        if isinstance(update, dict) and not self._observe(update):
            return
        self.log.append_scrubbed("agent", self._turn_number, text)
        await self.log.wait_capacity()

    async def emit_texts(self, envelope: TextEnvelope, texts: list[str]) -> None:
        """``emit`` of each text's chunk, at the cost of a concatenation and a record each when the
        envelope and the text hold no secret (``Redactor.fragment_clean``); any other goes through
        ``emit``, in its place in the order."""
        if self._early is not None or not self._clean_envelope(envelope):
            for text in texts:
                await self.emit(jsonio.loads(envelope.prefix + text + envelope.suffix))
            return
        thought = envelope.kind == "agent_thought_chunk"
        if thought and not self._policy.show_thinking:
            return  # as ``_observe`` drops them
        clean = self.log.redactor.fragment_clean
        turn, number = None if thought else self._current, self._turn_number
        run: list[str] = []  # clean texts, recorded together
        for text in texts:
            if clean(text):
                run.append(text)
                continue
            self._record_texts(envelope, turn, number, run)
            run = []
            await self.emit(jsonio.loads(envelope.prefix + text + envelope.suffix))
            turn, number = None if thought else self._current, self._turn_number
        self._record_texts(envelope, turn, number, run)
        await self.log.wait_capacity()

    def _record_texts(self, envelope: TextEnvelope, turn: Turn | None, number: int, texts: list[str]) -> None:
        if texts:
            if turn is not None:
                turn.add_texts(texts)
            prefix, suffix = envelope.prefix, envelope.suffix
            self.log.append_scrubbed_many("agent", number, [prefix + text + suffix for text in texts])

    def _clean_envelope(self, envelope: TextEnvelope) -> bool:
        clean = self._clean_envelopes.get(envelope)
        if clean is None:
            if len(self._clean_envelopes) >= MAX_CLEAN_ENVELOPES:
                self._clean_envelopes.clear()
            clean = self._clean_envelopes[envelope] = self.log.redactor.envelope_clean(envelope.prefix, envelope.suffix)
        return clean

    def _hold_early(self, message: JsonObject) -> None:
        assert self._early is not None
        self._early_bytes += len(jsonio.dumps(message))
        if self._early_bytes > MAX_EARLY_BYTES:
            self._early.clear()
            self.abort_start(
                AgentError(
                    f"agent {self.doc['agent']!r} sent more than {MAX_EARLY_BYTES} bytes before opening its session",
                    data={"agent": self.doc["agent"], "limit": MAX_EARLY_BYTES},
                )
            )
            return
        self._early.append(message)

    def abort_start(self, error: AcpdError) -> None:
        """Fail the agent start under way, if any, with ``error``; its process is stopped."""
        if self._start_scope is not None and self._start_abort is None:
            self._start_abort = error
            self._start_scope.cancel()

    def _observe(self, update: JsonObject) -> bool:
        """Track what an update means for the turn and the session; False drops it."""
        kind = update.get("sessionUpdate")
        turn = self._current
        if kind == "agent_message_chunk":
            text = chunk_text(update)
            if turn is not None and text is not None:
                turn.add_text(text)
        elif kind == "agent_thought_chunk":
            return self._policy.show_thinking
        elif kind == "tool_call" and turn is not None:
            turn.steps += 1
            self._check_steps(turn)
        elif kind == "usage_update":
            self._observe_usage(update, turn)
        elif kind == "current_mode_update" and isinstance(update.get("currentModeId"), str):
            self.doc["mode"] = update["currentModeId"]
        elif kind == "config_option_update" and isinstance(update.get("configOptions"), list):
            self.doc["configOptions"] = update["configOptions"]
        elif kind == "session_info_update" and isinstance(update.get("title"), str):
            self.doc["title"] = update["title"]
        return True

    def _check_steps(self, turn: Turn) -> None:
        limit = self.policy.max_steps
        if limit is not None and turn.steps > limit and not turn.stop.is_set():
            self.record_daemon(methods.ACPD_LIMIT_REACHED, {"limit": "maxSteps", "value": limit, "turn": turn.number})
            turn.request_stop("max_turn_requests")

    def _observe_usage(self, update: JsonObject, turn: Turn | None) -> None:
        usage = dict(self.doc.get("usage") or {})
        if isinstance(update.get("used"), int):
            usage["contextUsed"] = update["used"]
            if turn is not None:
                turn.context_used = max(turn.context_used, int(update["used"]))
                turn.context["contextUsed"] = update["used"]
        if isinstance(update.get("size"), int):
            usage["contextSize"] = update["size"]
            if turn is not None:
                turn.context["contextSize"] = update["size"]
        if isinstance(update.get("cost"), dict):
            usage["cost"] = update["cost"]
        self.doc["usage"] = usage
        turn_tokens = _turn_tokens(update)
        if turn is not None and turn_tokens is not None:
            turn.tokens_spent = max(turn.tokens_spent, turn_tokens)
        budget = self.policy.max_budget_tokens
        before = int(usage.get("totalTokens") or 0)  # the turns before this one, from their answers
        spent = max(before + (turn.tokens_spent if turn else 0), turn.context_used if turn else 0)
        if turn is not None and budget is not None and spent > budget and not turn.stop.is_set():
            self.record_daemon(
                methods.ACPD_LIMIT_REACHED, {"limit": "maxBudgetTokens", "value": budget, "spent": spent}
            )
            turn.request_stop("max_tokens")

    async def request_permission(self, message: JsonObject) -> JsonObject:
        params = message.get("params")
        # ACP requires the session id, and clients refuse a request without it: whatever the
        # backend put there (claude-native put nothing), it is this session's.
        params = {**(params if isinstance(params, dict) else {}), "sessionId": self.session_id}
        # The pending request (its list, the clients asked) shows the frame the log keeps.
        message, text = self.log.scrub_frame({**message, "params": params})
        params = message["params"]
        assert isinstance(params, dict)
        seq = self.log.append_scrubbed("agent", self._turn_number, text).seq
        pending = PendingPermission(f"p{seq}", seq, self._turn_number, message, utc_now())
        self.broker.open(pending)
        try:
            stopped = self._stopped_outcome(params)
            decided = policy_outcome(self.policy.permissions, params)
            if stopped is not None:
                self.broker.resolve(pending.id, *stopped)
            elif decided is not None:
                self.broker.resolve(pending.id, decided, "policy")
            else:
                await self._await_reply(pending)
        finally:
            if pending.outcome is None:
                # The asker gave up waiting (an in-daemon agent's cancelled turn): settle it for the log.
                self.broker.resolve(pending.id, CANCELLED_OUTCOME, "cancel")
            result = self._record_reply(pending)
        return result

    def _stopped_outcome(self, params: JsonObject) -> tuple[JsonObject, DecidedBy] | None:
        """The answer when the turn is already being stopped, so nobody is asked: a call over
        ``maxSteps`` is rejected before it runs; after a cancel (or another limit) ACP wants
        ``cancelled``."""
        turn = self._current
        if turn is None or not turn.stop.is_set():
            return None
        limit = self.policy.max_steps
        if limit is not None and turn.steps > limit:
            return policy_outcome("deny", params) or CANCELLED_OUTCOME, "limit"
        return CANCELLED_OUTCOME, "cancel"

    def turn_stopping(self) -> bool:
        return self._current is not None and self._current.stop.is_set()

    async def _await_reply(self, pending: PendingPermission) -> None:
        self._set_status("awaiting_permission")
        timeout = self.policy.permission_timeout_seconds
        with anyio.move_on_after(timeout if timeout is not None else float("inf")):
            await pending.decided.wait()
        if pending.outcome is None:
            decided = policy_outcome("deny", pending.params) or {"outcome": "cancelled"}
            self.broker.resolve(pending.id, decided, "timeout")
        if not self.broker.pending() and self._current is not None:
            self._set_status("running")

    def _record_reply(self, pending: PendingPermission) -> JsonObject:
        assert pending.outcome is not None
        acpd: JsonObject = {"permissionId": pending.id, "decidedBy": pending.decided_by}
        if pending.why is not None:
            acpd["clientError"] = pending.why
        result: JsonObject = {"outcome": pending.outcome, "_meta": {"acpd": acpd}}
        sender: Sender = "client" if pending.decided_by == "client" else "daemon"
        self.record(sender, jsonrpc.result_response(pending.message.get("id"), result))
        return result

    def reply_permission(self, permission_id: str, body: JsonObject) -> JsonObject:
        pending = self.broker.get(permission_id)
        outcome = outcome_for_reply(pending, body)
        self.broker.resolve(permission_id, outcome, "client")
        return {"id": permission_id, "outcome": outcome}

    def answer_permission(self, permission_id: str, outcome: object) -> None:
        """Settle a request with an ACP outcome an attached client sent. Raises ``Conflict`` if
        another client (or a policy, a timeout, a cancel) settled it first; ``InvalidInput`` if the
        outcome does not fit the request."""
        pending = self.broker.get(permission_id)
        self.broker.resolve(permission_id, check_outcome(pending, outcome), "client")

    def permission_unanswerable(self, permission_id: str, link_id: str, error: JsonObject) -> None:
        """An attached client answered a permission request with an error (or an outcome that fits
        none of its options). While another client is still asked, that one may answer; when none
        is, nobody will, and a turn waiting forever helps no one: the request is rejected as a
        timeout would reject it, decided by ``error``."""
        try:
            pending = self.broker.get(permission_id)
        except NotFound:
            return  # settled already
        pending.asking.discard(link_id)
        if pending.asking:
            return
        pending.why = error
        self.broker.resolve(permission_id, policy_outcome("deny", pending.params) or CANCELLED_OUTCOME, "error")

    def permission_policy(self) -> str:
        return self.policy.permissions

    async def history(self) -> list[EventRecord]:
        """The log so far, committed (for a backend rebuilding its memory)."""
        records: list[EventRecord] = []
        async for batch in self.log.history(await self.log.settled_end()):
            records.extend(batch)
        return records

    async def client_request(self, method: str, params: JsonObject) -> JsonValue:
        """An agent's ``fs/*`` or ``terminal/*`` call: relayed to an attached editor that can
        serve it, else served by the daemon inside the session's directories."""
        origin = self._current.origin if self._current is not None else None
        link = self.clients.route(method, params, origin)
        if link is not None:
            result = await link.relay(method, {**params, "sessionId": self.session_id})
        else:
            result = await self._serve_locally(method, params)
        self.clients.note_terminal(method, result, link)
        if method == "terminal/release":
            self.clients.forget_terminal(params.get("terminalId"))
        return result

    async def _serve_locally(self, method: str, params: JsonObject) -> JsonValue:
        workspace = await self.workspace()
        if method.startswith("fs/"):
            return await workspace.handle(method, params)
        terminals = await self._terminal_manager()
        return await terminals.handle(method, params)

    async def workspace(self) -> Workspace:
        if self._workspace is None:
            roots = [self.cwd, *[str(d) for d in self.doc.get("additionalDirectories") or []]]
            # resolving the roots touches the file system: never on the event loop
            self._workspace = await anyio.to_thread.run_sync(Workspace, roots)
        return self._workspace

    async def _terminal_manager(self) -> TerminalManager:
        if self._terminals is None:
            self._terminals = await self._deps.task_group.start(self._serve_terminals)
        return self._terminals

    async def _serve_terminals(self, *, task_status: TaskStatus[TerminalManager]) -> None:
        with anyio.CancelScope() as scope:
            self._services_scope = scope
            # Commands print what they are given, and their output is logged: no daemon secrets.
            env = without_secrets(os.environ)
            # Imported with the first terminal: the spawn server's client is not a start's cost.
            from acpd.adapters.terminals import open_terminal_manager

            async with open_terminal_manager(await self.workspace(), env=env) as manager:
                task_status.started(manager)
                await anyio.sleep_forever()

    def backend_exited(self, returncode: int | None, stderr_tail: str) -> None:
        exited = _RUNNING.get()
        if exited is not None and exited is self._incoming:
            self._incoming = None  # a switch's new agent that never became the session's: not its event
            return
        if exited is None or exited is self._backend:
            self._backend = None
        if self.log.closed:
            return
        self.record_daemon(
            methods.ACPD_AGENT_EXITED,
            {
                "agent": self.doc["agent"],
                "exitCode": returncode,
                "expected": self._closing or self._stopping,
                "stderrTail": stderr_tail[-STDERR_EVENT_CHARS:],
            },
        )

    # -- backend lifecycle -----------------------------------------------------------------------

    def _agent_config(self, name: str) -> AgentConfig:
        agent = self._deps.config.all_agents().get(name)
        if agent is None:
            raise AgentNotFound(f"no agent named {name!r}; configured agents: {sorted(self._deps.config.all_agents())}")
        return agent

    async def check_usable(self, name: str) -> AgentConfig:
        """The agent ``name`` if it can be used here, judged as ``GET /v1/agents`` judges it.

        Raises:
            AgentNotFound; AgentUnavailable: every reason it cannot start (not installed, no
                runtime, no sandbox; no credentials only for claude-native), in that order.
        """
        from .agents import unusable_reasons  # with the first agent start, as ``config``

        agent = self._agent_config(name)
        judge = functools.partial(unusable_reasons, agent, os.environ, cwd=self.cwd, to_start=True)
        reasons = await anyio.to_thread.run_sync(judge)  # reads PATH and files
        if reasons:
            detail = f"agent {name!r} cannot be used: {'; '.join(reasons)}"
            raise AgentUnavailable(detail, data={"agent": name, "reasons": reasons})
        return agent

    async def ensure_backend(self) -> Backend:
        """The running backend, started (and its session loaded or resumed) on first need."""
        async with self._backend_lock:
            if self._backend is not None:
                return self._backend
            if self._closing:
                raise SessionClosed(f"session {self.session_id} is closing")
            backend, state = await self._start_backend(str(self.doc["agent"]), self.doc.get("backendSessionId"))
            self._backend = backend
            await self._adopt_started(state)
            return backend

    async def switch_agent(self, name: str, settings: JsonObject) -> None:
        """Make before break: start ``name``'s agent beside the running one, and only once it has
        opened its session (and offers ``settings``) stop the old one and take the new. Refused,
        the old agent goes on untouched and nothing is recorded.

        Raises:
            AgentNotFound, AgentUnavailable, AgentError, InvalidSetting, SessionClosed.
        """
        async with self._backend_lock:
            if self._closing:
                raise SessionClosed(f"session {self.session_id} is closing")
            incoming, state = await self._start_backend(name, None)
            self._incoming = incoming
            try:
                self._check_offered(settings, {**self.doc, "agent": name, **_agent_fields(state)})
                if self._backend is not None:
                    with anyio.CancelScope(shield=True):
                        await self._stop(self._backend)
                if self._incoming is not incoming:
                    raise AgentError(f"agent {name!r} exited right after it started", data={"agent": name})
            except BaseException:
                self._early = None
                with anyio.CancelScope(shield=True):
                    await incoming.aclose()
                self._incoming = None
                raise
            self._incoming = None
            self._backend = incoming
            self.doc.update(agent=name, **copy.deepcopy(AGENT_FRESH))
            await self._adopt_started(state)

    async def _start_backend(self, name: str, resume_id: str | None) -> tuple[Backend, BackendState]:
        """Start agent ``name``'s backend and wait until it has opened its session; what it says
        meanwhile is held (``_early``) until ``_adopt_started``."""
        mcp_servers = list(self.doc.get("mcpServers") or [])
        pools = self._deps.pools
        agent = self._agent_config(name)
        if not pools.running(name, agent, cwd=self.cwd, mcp_servers=mcp_servers):
            agent = await self.check_usable(name)  # a running process of it says it is usable
        backend = create_backend(
            name,
            agent,
            cwd=self.cwd,
            mcp_servers=mcp_servers,
            record_dir=self._deps.config.record_agents or None,
            pools=pools,
        )
        self._early, self._early_bytes, self._start_abort = [], 0, None
        try:
            state = await self._deps.task_group.start(self._run_backend, backend, name, resume_id)
        except BaseException:
            self._early = None
            raise
        finally:
            self._start_scope = None
        return backend, state

    async def _adopt_started(self, state: BackendState) -> None:
        """Take the started backend's state, then pass on what it said before."""
        try:
            await self._adopt(self._scrubbed_state(state))
        finally:
            early, self._early = self._early, None
        for message in early or []:
            await self.emit(message)

    def _scrubbed_state(self, state: BackendState) -> BackendState:
        """What a started agent reports, secrets masked, before the document holds it."""
        wire: JsonObject = {
            "agentInfo": state.agent_info,
            "capabilities": state.capabilities,
            "modes": state.modes,
            "configOptions": state.config_options,
            "models": state.models,
        }
        clean, _ = self.log.scrub_frame(wire)
        if clean is wire:
            return state
        return dataclasses.replace(
            state,
            agent_info=clean["agentInfo"],
            capabilities=clean["capabilities"],
            modes=clean["modes"],
            config_options=clean["configOptions"],
            models=clean["models"],
        )

    async def _run_backend(
        self, backend: Backend, name: str, resume_id: str | None, *, task_status: TaskStatus[BackendState]
    ) -> None:
        _RUNNING.set(backend)  # this task's own context: backend_exited knows whose exit it hears
        started = _StartedFlag(task_status, self)
        try:
            with anyio.CancelScope() as self._start_scope:
                await backend.run(self, resume_id=resume_id, task_status=started)
            if not started.done:
                raise self._start_abort or AgentError(f"agent {name!r} ended before it started")
        except Exception as exc:
            if not started.done:
                raise
            # After start, a backend failure is the session's problem, never the daemon's.
            logger.exception("backend of session %s failed", self.session_id)
            if backend is self._incoming:
                self._incoming = None
                return
            if not self.log.closed:
                self.record_error("AGENT_FAILED", str(exc))
            if self._backend is backend:
                self._backend = None

    async def _adopt(self, state: BackendState) -> None:
        resumed = state.how in ("load", "resume")
        if state.from_log:
            self.doc["contextPending"] = False  # it has the conversation, natively
        elif not resumed and self._turn_number > 0:
            # a fresh agent session on a session with history (an agent switch, a fork, an import,
            # or an agent that cannot load): the next prompt carries the transcript
            self.doc["contextPending"] = True
        if self.doc.get("status") == "closed":
            self._set_status("idle")
        self.doc["backendSessionId"] = state.backend_session_id
        self.doc["agentInfo"] = state.agent_info
        self.doc["capabilities"] = state.capabilities
        if state.modes is not None:
            self.doc["modes"] = state.modes
            self.doc.setdefault("mode", state.modes.get("currentModeId"))
        if state.config_options is not None:
            self.doc["configOptions"] = state.config_options
        if state.models is not None:
            self.doc["models"] = state.models
        self.record_daemon(
            methods.ACPD_AGENT_STARTED,
            {
                "agent": self.doc["agent"],
                "how": state.how,
                "backendSessionId": state.backend_session_id,
                "agentInfo": state.agent_info,
                **({"fromLog": True} if state.from_log else {}),
            },
        )
        # After a resume too: an agent may not keep its settings across its own restart.
        await self._apply_settings(self._desired_settings())
        if self._defer_save:
            self._defer_save = False
            self._queue_save()
        else:
            await self.save()

    def _desired_settings(self) -> JsonObject:
        wanted: JsonObject = {k: self.doc[k] for k in ("model", "mode", "thoughtLevel") if self.doc.get(k)}
        if self.doc.get("config"):
            wanted["config"] = self.doc["config"]
        return wanted

    async def stop_backend(self) -> None:
        if self._backend is not None:
            await self._stop(self._backend)

    async def _stop(self, backend: Backend) -> None:
        self._stopping = True
        try:
            await backend.aclose()
        finally:
            self._stopping = False
        if self._backend is backend:
            self._backend = None

    # -- settings --------------------------------------------------------------------------------

    def snapshot(self) -> JsonObject:
        """What a change of settings or agent may touch, to roll it back if the change is refused."""
        return copy.deepcopy({key: self.doc[key] for key in CHANGEABLE if key in self.doc})

    async def roll_back(self, snapshot: JsonObject) -> None:
        """Undo a refused change: the document as it was, and no agent left running with settings
        the document does not hold (the next start applies the document's)."""
        if any(self.doc.get(key) != snapshot.get(key) for key in AGENT_SIDE):
            await self.stop_backend()
        for key in CHANGEABLE:
            self.doc.pop(key, None)
        self.doc.update(copy.deepcopy(snapshot))
        self._policy = _policy_of(self.doc)
        await self.save()

    async def change_settings(self, changes: JsonObject) -> None:
        """Apply model/mode/thoughtLevel/config changes to the backend (the caller records them).

        Raises:
            InvalidSetting: a value the agent does not offer; nothing was sent to it.
        """
        await self.ensure_backend()
        await self._apply_settings(changes)

    async def _apply_settings(self, changes: JsonObject) -> None:
        backend = self._backend
        if backend is None or not changes:
            return
        self._check_offered(changes)
        for key in ("model", "mode", "thoughtLevel"):
            if changes.get(key):
                await self._apply_one(backend, key, str(changes[key]))
        for config_id, value in dict(changes.get("config") or {}).items():
            category = self._category_of(config_id)
            options = await backend.set_config_option(config_id, value)
            self._adopt_options(options)
            self.doc.setdefault("config", {})[config_id] = value
            if category in SETTING_FOR_CATEGORY and isinstance(value, str):
                # The same setting as model/mode/thoughtLevel, reached by its option id.
                self.doc[SETTING_FOR_CATEGORY[category]] = value
                self._mark_current(category, value)

    def _check_offered(self, changes: JsonObject, doc: JsonObject | None = None) -> None:
        """Refuse a value the agent does not offer before any reaches it: a client's mistake is a
        4xx naming the offered values, not the agent's error (and not half a change). ``doc``: the
        session as it would be (a switch checks against the new agent before taking it)."""
        doc = self.doc if doc is None else doc
        agent = doc["agent"]
        for key in ("model", "mode", "thoughtLevel"):
            value = changes.get(key)
            offered = offered_values(doc, key)
            if not value or offered == []:
                continue
            if offered is None:
                raise InvalidSetting(f"agent {agent!r} offers no {key} setting", data={"setting": key, "offered": []})
            if value not in offered:
                detail = f"agent {agent!r} offers no {key} {value!r}; choose one of {offered}"
                raise InvalidSetting(detail, data={"setting": key, "value": value, "offered": offered})
        options = {str(o.get("id")): o for o in objects_in(doc.get("configOptions"))}
        for config_id, value in dict(changes.get("config") or {}).items():
            option = options.get(config_id)
            if option is None:
                detail = f"agent {agent!r} has no config option {config_id!r}; its options: {sorted(options)}"
                raise InvalidSetting(detail, data={"setting": config_id, "offered": sorted(options)})
            _check_option_value(option, value)

    def echo_settings(self, *, mode_changed: bool) -> None:
        """Tell every client the settings as they now are, in ACP's own terms."""
        if mode_changed and self.doc.get("mode"):
            update: JsonObject = {"sessionUpdate": "current_mode_update", "currentModeId": self.doc["mode"]}
            self.record("daemon", update_notification(self.session_id, update))
        options = config_options(self.doc, self._deps.config.all_agents())
        update = {"sessionUpdate": "config_option_update", "configOptions": options}
        self.record("daemon", update_notification(self.session_id, update))

    async def _apply_one(self, backend: Backend, key: str, value: str) -> None:
        category = {"model": "model", "mode": "mode", "thoughtLevel": "thought_level"}[key]
        option = self._option_with_category(category)
        if key == "mode" and (self.doc.get("modes") or option is None):
            await backend.set_mode(value)
        elif option is not None:
            self._adopt_options(await backend.set_config_option(str(option["id"]), value))
        elif key == "model" and self.doc.get("models"):
            await backend.set_model(value)
        else:  # pragma: no cover - _check_offered refused it
            raise InvalidSetting(f"agent {self.doc['agent']!r} offers no {key} setting")
        self.doc[key] = value
        self._mark_current(category, value)

    def _mark_current(self, category: str, value: str) -> None:
        """Keep the options' ``currentValue`` true after a setter that returns no options (an agent
        may or may not send its own ``config_option_update``)."""
        modes, models = self.doc.get("modes"), self.doc.get("models")
        if category == "mode" and isinstance(modes, dict):
            self.doc["modes"] = {**modes, "currentModeId": value}
        if category == "model" and isinstance(models, dict):
            self.doc["models"] = {**models, "currentModelId": value}
        self.doc["configOptions"] = [
            {**o, "currentValue": value} if isinstance(o, dict) and o.get("category") == category else o
            for o in self.doc.get("configOptions") or []
        ]

    def _category_of(self, config_id: str) -> str | None:
        for option in self.doc.get("configOptions") or []:
            if isinstance(option, dict) and option.get("id") == config_id:
                category = option.get("category")
                return category if isinstance(category, str) else None
        return None

    def _option_with_category(self, category: str) -> JsonObject | None:
        for option in self.doc.get("configOptions") or []:
            if isinstance(option, dict) and option.get("category") == category and "id" in option:
                return option
        return None

    def _adopt_options(self, options: list[JsonObject] | None) -> None:
        if options is not None:
            clean, _ = self.log.scrub_frame({"configOptions": options})
            self.doc["configOptions"] = clean["configOptions"]

    # -- turns -----------------------------------------------------------------------------------

    def submit(self, turn: Turn, *, queue: bool = True) -> None:
        """Start running ``turn`` in the daemon's task group (after earlier turns)."""
        if self._closing:
            raise SessionClosed(f"session {self.session_id} is closed")
        self.log.check_writable()
        if not queue and self.busy:
            raise SessionBusy(f"session {self.session_id} is running a turn; retry later or allow queueing")
        self._queued += 1
        self._deps.task_group.start_soon(self._run_turn, turn)

    async def _run_turn(self, turn: Turn) -> None:
        try:
            async with self._turn_lock:
                self._queued -= 1
                if self._closing:
                    turn.error = SessionClosed(f"session {self.session_id} was closed")
                    return
                self._current = turn
                try:
                    await self._turn_body(turn)
                except Exception as exc:
                    # A bug in a turn must cost that turn, never the daemon.
                    logger.exception("turn %d of session %s failed", turn.number, self.session_id)
                    turn.error = self._scrubbed_error(AgentError(f"internal error: {exc!r}"))
                    self.record_error("INTERNAL", f"turn {turn.number} failed: {exc!r}")
                    self._set_status("error")
                finally:
                    self._current = None
        finally:
            turn.started.set()
            turn.answered.set()  # a turn refused or broken before its answer ends unanswered
            turn.done.set()

    async def _turn_body(self, turn: Turn) -> None:
        turn.number = self._turn_number + 1
        self.doc["turns"] = turn.number
        if self.doc.get("title") is None:
            self.doc["title"] = derived_title(turn.prompt)  # until the agent names the session
            if self.doc["title"] is not None and self._deps.on_titled is not None:
                self._deps.on_titled(self.session_id, self.doc["title"], turn.prompt)
        self._set_status("running")
        request_id = f"turn-{turn.number}"
        params: JsonObject = {"sessionId": self.session_id, "prompt": turn.prompt}
        meta = {
            name: value for name, value in (("origin", turn.origin), ("idempotencyKey", turn.idempotency_key)) if value
        }
        if meta:
            # the key in the log: a retry after a restart that interrupted this turn finds its answer
            params["_meta"] = {"acpd": meta}
        # The prompt and the document commit with the agent's answer if it comes soon (the
        # answer's wait_saved ends the hold): one transaction instead of two, and the committer
        # is not woken for the prompt alone.
        self.log.hold()
        turn.first_seq = self.record("client", jsonrpc.request(request_id, methods.SESSION_PROMPT, params))
        sender: Sender = "agent"
        try:
            self.log.check_writable()  # a faulted store refuses the turn before its agent hears of it
            # Pipelined: the prompt and the "running" document are queued, not waited for. Whatever
            # the agent answers is recorded after them in the same log, so nothing of the turn is
            # visible before they are committed; a store that fails stops the turn (_store_failed).
            self._queue_save()
            turn.started.set()
            result = await self._prompt_backend(turn)
            if turn.stop_reason_override is not None:
                result = {**result, "stopReason": turn.stop_reason_override}
            response = jsonrpc.result_response(request_id, result)
            self.doc["usage"] = usage_totals(self.doc.get("usage") or {}, result.get("usage"))
        except AcpdError as exc:
            # An agent's error may quote its configuration: its answer shows what the log keeps.
            turn.error = exc = self._scrubbed_error(exc)
            sender = "agent" if isinstance(exc, RpcError) else "daemon"
            error = exc.to_wire() if isinstance(exc, RpcError) else {"code": exc.code, "message": exc.message}
            response = jsonrpc.error_response(request_id, error)
            if isinstance(exc.data, dict):  # a failed turn still spent what it reports (claude-native does)
                self.doc["usage"] = usage_totals(self.doc.get("usage") or {}, exc.data.get("usage"))
        if self.log.disowned is not None:
            turn.error = self.log.disowned  # whatever the agent said as it was stopped
        # The answer (REST, ACP) is the recorded frame: what the agent said, secrets masked.
        turn.response, text = self.log.scrub_frame(response)
        turn.last_seq = self.log.append_scrubbed(sender, self._turn_number, text).seq
        self.broker.cancel_all()
        self._set_status("error" if turn.error is not None else "idle")
        saved = self._queue_save()
        turn.answered.set()  # the answer and the document saying the turn ended commit together
        try:
            await self.log.wait_saved(saved)
            if turn.idempotency_key is not None and self.log.disowned is None:
                answer = jsonio.dumps_str(turn.answer(self.session_id))
                await self._deps.store.put_idempotent(self.session_id, turn.idempotency_key, answer)
        except StoreError as exc:
            # The answer is recorded and commits when the store accepts writes again; the caller
            # must not be told the turn is durable before then.
            turn.error = turn.error or exc

    def _scrubbed_error(self, exc: AcpdError) -> AcpdError:
        """``exc`` with the secrets in its message and data masked (in place: the error is ours)."""
        exc.message = self.log.scrub(exc.message)
        exc.args = (exc.message, *exc.args[1:])
        if exc.data is not None:
            data, _ = self.log.scrub_frame({"data": exc.data})
            exc.data = data["data"]
        return exc

    async def _prompt_backend(self, turn: Turn) -> JsonObject:
        turn.with_agent = True
        backend = await self.ensure_backend()
        prompt = await self._with_context(turn)
        result: JsonObject = {"stopReason": "cancelled"}
        failure: AcpdError | None = None
        with _StopGuard(self, turn, backend):
            try:
                result = await backend.prompt(prompt)
            except AcpdError as exc:
                failure = exc
            except Exception as exc:
                # A backend's bug is the turn's error, answered and recorded, never the daemon's.
                logger.exception("backend of session %s failed in a prompt", self.session_id)
                failure = AgentError(f"the agent failed: {type(exc).__name__}: {exc}")
        if isinstance(failure, AgentError):
            # Let the exit be recorded before the turn's answer, so the log reads in causal order.
            await backend.aclose()
            if turn.stop.is_set():
                return result  # an agent stopped for ignoring a cancel: the turn was cancelled
        if failure is not None:
            raise failure
        return result

    async def _with_context(self, turn: Turn) -> list[JsonObject]:
        """The prompt the backend gets: the user's, after the session's warm-up (its first prompt)
        and the transcript if the agent lacks it."""
        if not self.doc.get("contextPending") and not self.doc.get("warmUpPending"):
            return turn.prompt
        records = [r async for batch in self.log.history(turn.first_seq - 1) for r in batch]
        carried: list[JsonObject] = []
        facts: JsonObject = {"turn": turn.number}
        if self.doc.pop("warmUpPending", False):
            offered = (self.doc.get("capabilities") or {}).get("promptCapabilities") or {}
            carried += as_prompt_blocks(_warm_up_of(records), embedded=offered.get("embeddedContext") is True)
            facts["warmUp"] = len(carried)
        if self.doc.get("contextPending"):
            self.doc["contextPending"] = False
            block = transcript_block(records)
            carried += [block] if block is not None else []
        if not carried:
            return turn.prompt
        chars = sum(len(str(b.get("text") or (b.get("resource") or {}).get("text") or "")) for b in carried)
        self.record_daemon(methods.ACPD_CONTEXT_CARRIED, {**facts, "chars": chars})
        return [*carried, *turn.prompt]

    async def _watch_timeout(self, turn: Turn, limit: float, scope: anyio.CancelScope) -> None:
        """Stop ``turn`` once it has run ``limit`` seconds (``scope`` is its guard's, with that
        deadline: it ends the watch early when the prompt returns)."""
        with scope:
            await anyio.sleep_forever()  # until the deadline the guard set, or the guard's end
        if turn.on_stop is None:
            return  # the prompt returned (or a stop is enforced already)
        self.record_daemon(
            methods.ACPD_LIMIT_REACHED, {"limit": "turnTimeoutSeconds", "value": limit, "turn": turn.number}
        )
        self.record_error("TIMEOUT", f"turn {turn.number} exceeded {limit} s")
        turn.request_stop("cancelled")

    async def _enforce_stop(self, backend: Backend, scope: anyio.CancelScope) -> None:
        """A stop was requested: cancel; stop the agent if it will not (ended early by the guard
        when the prompt returns)."""
        with scope:
            await backend.cancel()
            # ACP: a client cancelling a turn must answer the agent's pending permission requests "cancelled".
            self.broker.cancel_all()
            await anyio.sleep(CANCEL_GRACE_SECONDS)
            self.record_error("CANCEL_IGNORED", f"agent did not end the turn within {CANCEL_GRACE_SECONDS} s of cancel")
            await backend.aclose()

    def cancel(self) -> bool:
        """Ask the running turn to stop; False if no turn runs."""
        turn = self._current
        if turn is None:
            return False
        turn.request_stop()
        return True

    async def stop_turns(self) -> None:
        """Refuse new and queued turns, end the running one and wait until its answer is logged."""
        self._closing = True
        turn = self._current
        if turn is not None:
            turn.request_stop()
            await turn.done.wait()

    async def _answer_running_turn(self) -> None:
        """End the running turn as a cancel does, and wait (bounded) until its answer is recorded:
        the log is complete (no ``turn_interrupted`` after a clean stop) and the turn's stream ends
        with its answer, like any turn's. An agent that does not answer the cancel in time is
        stopped, and the turn answers ``cancelled`` after the ``CANCEL_IGNORED`` error."""
        turn = self._current
        if turn is None:
            return
        turn.request_stop()
        if not turn.with_agent:
            return  # held up before its agent (a stuck store): no cancel to wait for
        with anyio.move_on_after(CLOSE_CANCEL_SECONDS):
            await turn.answered.wait()
        if turn.answered.is_set():
            return
        self.record_error(
            "CANCEL_IGNORED",
            f"agent did not end turn {turn.number} within {CLOSE_CANCEL_SECONDS} s of cancel; the session closed",
        )
        await self.stop_backend()
        with anyio.move_on_after(CLOSE_CANCEL_SECONDS):
            await turn.answered.wait()

    def take_turns_again(self) -> None:
        """Undo ``stop_turns``: a close that the store refused leaves the session open."""
        self._closing = False

    def _set_status(self, status: str) -> None:
        self.doc["status"] = status

    async def disown(self, error: StoreError) -> None:
        """Another daemon took the session (``SessionLog.disown``): end the running turn with
        ``error`` (its answer, and anything else said from now on, is not recorded: the log is
        the other daemon's), stop the agent and the services."""
        self.log.disown(error)
        self._closing = True
        self.abort_start(error)
        turn = self._current
        if turn is not None:
            turn.error = error
            turn.request_stop("cancelled")
        self.broker.cancel_all()
        await self.stop_backend()
        if self._services_scope is not None:
            self._services_scope.cancel()

    async def aclose(self) -> None:
        """Answer the running turn, stop the backend and services, answer pending permissions,
        close the log after its last commit."""
        self._closing = True
        self.abort_start(SessionClosed(f"session {self.session_id} was closed while its agent started"))
        await self._answer_running_turn()
        self.broker.cancel_all()
        await self.stop_backend()
        if self._services_scope is not None:
            self._services_scope.cancel()
        self.log.close()


class _StopGuard:
    """Enforces a turn's stop while its prompt runs, without a task per prompt: the enforcement
    starts (in the daemon's task group) only when a stop is requested, the timeout's watcher only
    when the policy sets one; leaving the guard ends both."""

    def __init__(self, runtime: SessionRuntime, turn: Turn, backend: Backend) -> None:
        self._runtime = runtime
        self._turn = turn
        self._backend = backend
        self._scopes: list[anyio.CancelScope] = []

    def __enter__(self) -> None:
        timeout = self._runtime.policy.turn_timeout_seconds
        if timeout is not None:
            deadline = anyio.current_time() + timeout
            self._start(self._runtime._watch_timeout, self._turn, timeout, deadline=deadline)
        self._turn.on_stop = self._stopped
        if self._turn.stop.is_set():
            self._stopped()

    def __exit__(self, *exc_info: object) -> None:
        self._turn.on_stop = None
        for scope in self._scopes:
            scope.cancel()  # also before its task began: it then ends at once

    def _stopped(self) -> None:
        self._turn.on_stop = None
        self._start(self._runtime._enforce_stop, self._backend)

    def _start(self, fn: Callable[..., Coroutine[Any, Any, None]], *args: Any, deadline: float = math.inf) -> None:
        scope = anyio.CancelScope(deadline=deadline)
        self._scopes.append(scope)
        self._runtime._deps.task_group.start_soon(functools.partial(fn, *args, scope))


class _StartedFlag:
    """A TaskStatus that remembers whether ``started`` was called; from then on, the start can no
    longer be aborted (the backend's run goes on under the runtime's own stop)."""

    def __init__(self, inner: TaskStatus[BackendState], runtime: SessionRuntime) -> None:
        self._inner = inner
        self._runtime = runtime
        self.done = False

    def started(self, value: BackendState | None = None) -> None:
        assert value is not None
        self.done = True
        self._runtime._start_scope = None
        self._inner.started(value)


def shared_policy(wire: JsonObject) -> Policy:
    """The policy ``wire`` says, one object for every session with the same one (a frozen model:
    a thousand sessions with the daemon's default policy hold one)."""
    return _policy_of_text(json.dumps(wire, sort_keys=True))


@functools.lru_cache(maxsize=256)
def _policy_of_text(text: str) -> Policy:
    from acpd.config import Policy

    return Policy.model_validate_json(text)


def _warm_up_of(records: list[EventRecord]) -> list[JsonObject]:
    """The blocks the session's ``_acpd/warm_up`` record holds (its first records)."""
    for record in records:
        if record.sender == "daemon" and methods.ACPD_WARM_UP in record.payload:
            message = record.payload_object()
            blocks = (message.get("params") or {}).get("blocks")
            if message.get("method") == methods.ACPD_WARM_UP and isinstance(blocks, list):
                return [block for block in blocks if isinstance(block, dict)]
    return []


def derived_title(prompt: list[JsonObject]) -> str | None:
    """A title from a prompt: its first line of text, spaces collapsed, cut at ``TITLE_CHARS``."""
    for block in prompt:
        text = block.get("text") if block.get("type") == "text" else None
        line = next((" ".join(line.split()) for line in str(text or "").splitlines() if line.strip()), "")
        if line:
            return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"
    return None


def session_doc_defaults(now: str) -> dict[str, Any]:
    return {
        "title": None,
        "project": None,
        "model": None,
        "mode": None,
        "thoughtLevel": None,
        "config": {},
        "configOptions": [],
        "modes": None,
        "status": "idle",
        "createdAt": now,
        "updatedAt": now,
        "archivedAt": None,
        "usage": {},
        "turns": 0,
        "backendSessionId": None,
        "agentInfo": {},
        "mcpServers": [],
        "additionalDirectories": [],
        "contextPending": False,
    }


def _agent_fields(state: BackendState) -> JsonObject:
    """What a just-started agent offers, as the session document holds it."""
    return {
        "configOptions": state.config_options or [],
        "modes": state.modes,
        "models": state.models,
    }


def _check_option_value(option: JsonObject, value: object) -> None:
    """A config option's value must fit its type: a ``select`` one of its values, a ``boolean`` a
    boolean (other types pass through to the agent)."""
    config_id = option.get("id")
    if option.get("type") == "boolean" and not isinstance(value, bool):
        raise InvalidSetting(f"config option {config_id!r} takes true or false", data={"setting": config_id})
    offered = select_values(option)
    if offered and value not in offered:
        detail = f"config option {config_id!r} has no value {value!r}; choose one of {offered}"
        raise InvalidSetting(detail, data={"setting": config_id, "value": value, "offered": offered})


def _turn_tokens(update: JsonObject) -> int | None:
    """What the turn has cost so far, when the agent says (acpd's own agents do); an ACP
    ``usage_update`` itself only tells the context's size, which misses every step before."""
    meta = update.get("_meta")
    acpd = meta.get("acpd") if isinstance(meta, dict) else None
    value = acpd.get("turnTokens") if isinstance(acpd, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _policy_of(doc: SessionDoc) -> Policy:
    """The session's policy, from its document. ``config`` comes with the first session, not at
    the daemon's start: an idle daemon never imports pydantic."""
    return shared_policy(doc.get("policy") or {})
