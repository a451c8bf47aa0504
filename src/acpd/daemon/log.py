"""Daemon layer: session event logs in memory (seq assignment, cursors) and the group committer
that makes them durable.

Durable before visible: ``append`` only queues a record; one ``GroupCommitter`` (the manager's,
shared by every log) commits what all logs queued meanwhile in one store transaction per round,
and only then makes each log's records readable and wakes its waiters. Under concurrency a round
carries many sessions' records, so a prompt costs a fraction of a transaction; a round is capped
(``MAX_BATCH_RECORDS``/``MAX_BATCH_BYTES``) and takes logs round-robin, so a flooding session
cannot starve the others. A burst starts with a small batch (``FIRST_BATCH_RECORDS``), doubling
per round, so its first event is visible fast and its rest commits in big transactions.
Readers are cursors (a seq), not queues: they read committed records from a bounded in-memory
tail, or from the store when they have fallen further behind, so a slow reader costs no memory
and never misses a record. It must not interpret payloads (the session runtime does); it only
masks secrets in their text (DESIGN §7: the daemon's secret variables' values, and any
secret-shaped value), at the one door every record passes.

Store faults (a full disk): a round that fails is tried again log by log, so one session's
failure does not fail the others; a log's batch that fails is kept and retried, in order, until
it commits, so nothing is lost or reordered while the daemon runs. Meanwhile the log is *faulted*:
writers waiting for durability get the error raised at once instead of waiting for space, and
failures are logged at most once per ``FAILURE_REPORT_SECONDS`` for the whole process. A closed
log gives its uncommitted records one last try, then drops them (the daemon is stopping).

A log may be told to commit *after* another (``commit_after``): a connection's log of what it
sent a client of a session (ACP over HTTP) is never durable before the session's records it
stands for, yet joins the same transaction when the committer takes both in one round, so a
reply and the updates it follows cost one commit, not two in a row. It joins that round even when
the round is full (a flooding session fills every round): otherwise its references would wait for
the flood to end, and so would the client reading them.

A log *disowned* (``disown``: another daemon sharing the database took the session while this
one's connection was broken) commits nothing more: what it queued is dropped, not written into the
other daemon's log, and its followers, once they have every committed record, end with the error.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Final, cast

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from acpd.adapters.secrets import Redactor
from acpd.environ import environ_version
from acpd.errors import StoreError
from acpd.protocol import jsonio
from acpd.protocol.events import EventRecord, Sender, utc_now
from acpd.store.base import EventStore, SessionDoc
from acpd.store.docs import EncodedDoc, encoded_doc

logger = logging.getLogger(__name__)

_Kept = tuple[str, int, str, Sender, int, str]
"""A record of the committed tail, as a plain tuple of its fields. The collector stops tracking a
plain tuple of strings and ints the first time it looks at it, and never walks it again, whereas
it walks every named tuple at every full collection: thousands of records kept per busy session
made each full collection longer, a pause every session felt (tens of ms with 50 busy sessions)."""
_SEQ: Final = 1  # EventRecord's fields' places (a test holds them to it)
_PAYLOAD: Final = 5
monotonic: Callable[[], float] = time.monotonic
"""The clock of the committed tail's ages (tests move it)."""
_as_record: Final[Callable[[_Kept], EventRecord]] = functools.partial(tuple.__new__, EventRecord)
"""A kept tuple as an ``EventRecord`` again (without the named tuple's checks: it was one)."""

TAIL_RECORDS: Final = 16_384
"""Committed records kept in memory per open session that has followers, for readers that are
nearly caught up (a burst's follower a few batches behind does not go to the store)."""
TAIL_BYTES: Final = 32 * 1024 * 1024
"""...and at most this many bytes of them: an agent's frames may be up to the line limit each."""
UNFOLLOWED_TAIL_RECORDS: Final = 256
"""...and per open session that nobody follows (prompted over REST, or between two readers): a
reader that comes later reads the store, and memory does not grow with every live session's
history (a busy session kept ~8 MiB of records nobody was going to read)."""
UNFOLLOWED_TAIL_BYTES: Final = 256 * 1024
TAIL_SECONDS: Final = 10.0
"""...and, followed or not, past the newest 256 only the records committed within this many seconds:
a reader further behind reads the store, and a session an editor keeps open does not hold 16,384
records in memory for the whole of its life (the follower it has then, the daemon's own forwarder to
the editor, is always caught up)."""
HIGH_WATER_RECORDS: Final = 20_000
"""Queued (uncommitted) records past which writers wait for the flusher: backpressure on the agent."""
HIGH_WATER_BYTES: Final = 64 * 1024 * 1024
"""Queued bytes past which writers wait as well."""
MAX_BATCH_RECORDS: Final = 4_096
"""Records per store transaction (a round, all logs together); well under the tail, so a live
reader never has to go to the store."""
MAX_BATCH_BYTES: Final = 16 * 1024 * 1024
"""Bytes per store transaction (a round holds at least one record, whatever its size)."""
FIRST_BATCH_RECORDS: Final = 32
"""A log's batch when its burst starts: small, so the first event of a burst commits (and shows)
fast; it doubles each round the log still has more queued, up to ``MAX_BATCH_RECORDS``."""
SETTLE_TURNS: Final = 2
"""Turns of the event loop the committer lets pass before it takes a round, so that what is
already due appends first and commits in the same transaction: an agent's last update and the
turn's answer read with it, a forwarded update's reference and the reply it comes before. Each
round saved is a store transaction and two thread hand-offs (with ``hold`` and ``commit_after``, a
prompt whose agent answers at once costs one round on REST and on ACP over HTTP alike); a turn of
the loop costs microseconds."""
TURN_HOLD_SECONDS: Final = 0.002
"""How long a turn's first records wait to commit once its prompt is with the agent (``hold``):
an agent that answers within it commits its prompt, its updates, its answer and the session's
document in one transaction instead of two (the prompt is pipelined to the agent either way, so
a kill in this window loses what a kill just before the commit always could: nothing anyone saw)."""
HOLD_BURST_RECORDS: Final = FIRST_BATCH_RECORDS
"""Records queued while held that end the hold at once: a burst streams, its first event fast."""
STORE_RETRY_SECONDS: Final = 1.0
"""How soon a batch that failed to commit is tried again (a full disk: as soon as space returns)."""
FAILURE_REPORT_SECONDS: Final = 60.0
"""While commits keep failing, at most one log line per interval, with how many failed."""


class _FailureReport:
    """Rate-limited log lines about failed commits, shared by every log of the process: the first
    failure at once, then one line per interval with a count, and one line when all commit again."""

    def __init__(self) -> None:
        self._failing: set[str] = set()
        self._unreported = 0
        self._quiet_until = -math.inf

    def failed(self, session_id: str, exc: Exception) -> None:
        self._failing.add(session_id)
        self._unreported += 1
        now = anyio.current_time()
        if now < self._quiet_until:
            return
        self._quiet_until = now + FAILURE_REPORT_SECONDS
        count, self._unreported = self._unreported, 0
        # A store error is the environment's (a full disk): its message says it all. Anything
        # else is a bug, whose traceback is worth a line per interval.
        logger.error(
            "%d commit(s) of %d session log(s) failed in the last %.0f s, retrying every %.0f s: %s",
            count,
            len(self._failing),
            FAILURE_REPORT_SECONDS,
            STORE_RETRY_SECONDS,
            exc.message if isinstance(exc, StoreError) else repr(exc),
            exc_info=None if isinstance(exc, StoreError) else exc,
        )

    def recovered(self, session_id: str, *, gave_up: bool = False) -> None:
        if session_id not in self._failing:
            return
        self._failing.discard(session_id)
        if not self._failing:
            if not gave_up:
                logger.warning(
                    "the event store accepts commits again; %d more failed since the last report", self._unreported
                )
            self._unreported = 0
            self._quiet_until = -math.inf


_failures = _FailureReport()


def environment_redactor() -> Redactor:
    """The Redactor of the daemon's environment as it is now: built once per environment (its
    secret values are collected and compiled), not once per session."""
    global _environment_redactor
    version = environ_version()
    if _environment_redactor is None or _environment_redactor[0] != version:
        _environment_redactor = (version, Redactor(dict(os.environ)))
    return _environment_redactor[1]


_environment_redactor: tuple[int, Redactor] | None = None


@dataclass(slots=True)
class _Batch:
    """What one log commits in a round: records in order, and its document when they reach it."""

    log: SessionLog
    records: list[EventRecord]
    doc: tuple[int, EncodedDoc] | None
    size: int
    after: tuple[SessionLog, ...] = ()
    """Logs whose batches in the same round this one must not commit without (``commit_after``)."""
    blocked: bool = False
    """Nothing of the log may commit yet: it waits for a log it commits after."""


class GroupCommitter:
    """Commits the queued records of many logs, many logs per store transaction.

    One per store and process (the manager's); ``run`` is its task. A log tells it when it has
    something to commit (``_ready``); each round takes the ready logs in turn, a batch each, until
    the round is full, commits them in one ``append_many`` and then wakes each log's waiters.
    """

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._ready: deque[SessionLog] = deque()
        self._wakeup = asyncio.Event()  # made after every round: asyncio's is the cheaper
        self._held = 0  # logs waiting to retry a failed batch
        self._closed = False
        self._tg: TaskGroup | None = None
        self.round = 0
        """The number of the round being taken or committed."""

    def _ready_log(self, log: SessionLog) -> None:
        """``log`` has records or a document to commit (called by the log; cheap when repeated)."""
        if log._scheduled or log._holding or log._hold is not None or log._blocked_on is not None:
            return  # queued already, or its retry timer, the end of its hold or the log it waits for queues it
        log._scheduled = True
        self._ready.append(log)
        self._wakeup.set()
        if log._dependents:
            log._release_dependents()  # right behind it: they may commit in its round

    def close(self) -> None:
        """End ``run`` once nothing is left to commit (the logs are closed, or given up on)."""
        self._closed = True
        self._wakeup.set()

    async def run(self) -> None:
        """Commit rounds until closed and drained."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            while True:
                for _ in range(SETTLE_TURNS):
                    await anyio.lowlevel.checkpoint()
                round_ = self._take_round()
                if round_:
                    await self._commit_round(round_)
                    if self._ready:
                        continue  # more came while it committed: let the rest of it gather, then take it
                # Nothing due: wait for the next record at once, not after turns that gather nothing.
                if self._closed and not self._held and not self._ready:
                    break
                self._wakeup = asyncio.Event()
                if self._ready:
                    continue
                await self._wakeup.wait()

    def _take_round(self) -> list[_Batch]:
        """Batches of the ready logs, round-robin, within a round's caps."""
        round_: list[_Batch] = []
        count, size = 0, 0
        self.round += 1
        # Each ready log once at most: one that has more goes to the back, for the next round.
        remaining = len(self._ready)
        deferred: set[SessionLog] = set()
        while remaining:
            log = self._ready[0]
            # A log deferred for one queued behind it joins the round that took that one, full or
            # not: what it waits for is in this round, and a flooding session fills every round
            # (its references and copies would wait for the flood to end). It adds a batch of its
            # own at most.
            joining = log in deferred
            if not joining and (count >= MAX_BATCH_RECORDS or size >= MAX_BATCH_BYTES):
                break
            if log._holding or log._hold is not None:  # its retry timer or hold makes it ready again
                self._ready.popleft()
                log._scheduled = False
                remaining -= 1
                continue
            if log._barriers and not joining and log._waits_for_queued():
                # it commits after a log queued behind it (commit_after): that one first, then
                # this one, in the same round
                deferred.add(log)
                self._ready.rotate(-1)
                continue
            remaining -= 1
            if joining:
                batch = log._take_batch(MAX_BATCH_RECORDS, MAX_BATCH_BYTES, first=True)
            else:
                batch = log._take_batch(MAX_BATCH_RECORDS - count, MAX_BATCH_BYTES - size, first=not round_)
            if batch is None:  # it does not fit what is left of the round
                break
            self._ready.popleft()
            log._scheduled = False
            if batch.blocked:
                continue  # the log it waits for makes it ready again as it commits
            if log._has_queued():
                self._ready_log(log)  # the rest in a later round, after the others' turn
            if batch.records or batch.doc is not None:
                round_.append(batch)
                count, size = count + len(batch.records), size + batch.size
            else:
                log._settle()
        return round_

    async def _commit_round(self, round_: list[_Batch]) -> None:
        failure = await self._try(round_)
        if failure is None:
            for batch in round_:
                batch.log._committed_batch(batch)
        elif len(round_) == 1:
            self._failed(round_[0], failure)
        else:
            # One session's bad batch must not fail the others: each on its own, except that a
            # batch that commits after another's (``commit_after``) fails with it.
            failed: set[SessionLog] = set()
            for batch in round_:
                alone = failure if failed.intersection(batch.after) else await self._try([batch])
                if alone is None:
                    batch.log._committed_batch(batch)
                else:
                    failed.add(batch.log)
                    self._failed(batch, alone)

    async def _try(self, round_: list[_Batch]) -> Exception | None:
        records = [record for batch in round_ for record in batch.records] if len(round_) > 1 else round_[0].records
        docs = [batch.doc[1] for batch in round_ if batch.doc is not None]
        try:
            await self.store.append_many(records, sessions=docs)
        except Exception as exc:
            return exc
        return None

    def _failed(self, batch: _Batch, exc: Exception) -> None:
        log = batch.log
        log._commit_failed(exc)
        if log.closed:
            log._give_up(len(batch.records))
            return
        log._holding = True
        self._held += 1
        assert self._tg is not None
        self._tg.start_soon(self._retry_later, log)

    async def _retry_later(self, log: SessionLog) -> None:
        try:
            with anyio.move_on_after(log._retry_seconds):
                await log._closing.wait()  # a close cuts the wait short: one last try
        finally:
            log._holding = False
            self._held -= 1
            self._ready_log(log)


class SessionLog:
    """Append-only, gap-free log of one session."""

    def __init__(
        self,
        store: EventStore,
        session_id: str,
        last_seq: int,
        *,
        committer: GroupCommitter | None = None,
        retry_seconds: float | None = None,
    ) -> None:
        """``committer`` is the shared one that makes the log durable; without it the log gets a
        private one, which its caller runs with ``run_flusher``."""
        self._store = store
        self._private = committer is None
        self._committer = GroupCommitter(store) if committer is None else committer
        self._retry_seconds = STORE_RETRY_SECONDS if retry_seconds is None else retry_seconds
        self.session_id = session_id
        self._redact = environment_redactor()  # the environment as the session opens
        self._next_seq = last_seq + 1
        self.committed_seq = last_seq
        self._pending: list[EventRecord] = []
        self._pending_bytes = 0
        self._tail: list[_Kept] = []
        self._tail_bytes = 0
        self._tail_marks: deque[tuple[float, int]] = deque()  # (when, first seq) of each batch kept
        self._batch_records = FIRST_BATCH_RECORDS
        self._inflight: _Batch | None = None  # taken by the committer, not yet committed
        self._scheduled = False  # in the committer's ready queue
        self._holding = False  # waiting to retry a failed batch
        self._hold: asyncio.TimerHandle | None = None  # a turn's start waits for its agent (``hold``)
        self._committed = asyncio.Event()  # made at every commit: asyncio's is the cheaper
        self._drained: anyio.Event | None = None  # made when a writer waits (a log rarely fills)
        self._doc: tuple[int, int, EncodedDoc] | None = None  # (as of seq, version, snapshot)
        self._doc_version = 0
        self._saved_doc_version = 0
        self.closed = False
        self._closing = anyio.Event()
        self.finished = anyio.Event()
        """Set when the flusher has committed everything (or, once closed, given up) and ended."""
        self.fault: StoreError | None = None
        """Why the last commit failed, until one succeeds (the log is then *faulted*)."""
        self.disowned: StoreError | None = None
        """Why the log may commit nothing more (``disown``)."""
        self.on_fault: Callable[[StoreError], None] | None = None
        """Called when commits start failing, once per run of failures."""
        self.followers = 0
        """Readers inside ``follow`` right now (SSE streams, attached ACP clients): a session they
        follow stays in memory."""
        # (from own seq, log, its seq, its document version): commit_after
        self._barriers: list[tuple[int, SessionLog, int, int]] = []
        self._dependents: list[SessionLog] = []  # logs blocked until this one commits more
        self._blocked_on: SessionLog | None = None
        self._round = 0  # the committer's round that last took a batch of this log
        self._appended: asyncio.Event | None = None  # made when a reader of unsettled records waits
        self._unsettled_followers = 0
        self.on_queued: list[Callable[[bool], bool]] = []
        """Called as records are queued (or, held, as the hold ends: then with True), before the
        followers of unsettled records hear of them: a hook that passed them all on (or will, in
        this turn of the loop, then ``tell_followers`` if it could not) returns True, and when
        every hook did, no follower wakes for them (a follower goes on from where its reader's
        hook left, ``follow``'s ``passed``). A hook must not raise."""

    @property
    def last_seq(self) -> int:
        """The seq of the newest appended record, committed or not."""
        return self._next_seq - 1

    @property
    def doc_version(self) -> int:
        """The version of the newest document queued (``save_doc``), committed or not."""
        return self._doc_version

    @property
    def redactor(self) -> Redactor:
        """What masks the secrets of every record (``scrub``)."""
        return self._redact

    def scrub(self, text: str) -> str:
        """``text`` with the daemon's secrets masked, as every record is kept."""
        return self._redact(text)

    def scrub_frame(self, frame: jsonio.JsonObject) -> tuple[jsonio.JsonObject, str]:
        """``frame`` as the log keeps it, with its JSON text: secrets masked (the same object when
        it holds none). A frame entering a session is scrubbed once, here, so that every view of
        it (its record, a turn's answer, a pending permission, the session document) is the same."""
        text = jsonio.dumps_str(frame)
        clean = self._redact.scrub_envelope(text)
        if clean == text:
            return frame, text
        try:
            scrubbed = jsonio.loads(clean)  # the shapes keep JSON valid (see ``secrets``)...
        except ValueError:
            # ...but a secret variable's value may span JSON's syntax (a number, a key and its
            # value): then each string is scrubbed on its own.
            scrubbed = _scrub_strings(frame, self._redact)
            clean = jsonio.dumps_str(scrubbed)
        assert isinstance(scrubbed, dict)
        return scrubbed, clean

    def append(self, sender: Sender, turn: int, payload: jsonio.JsonObject | str) -> EventRecord:
        """Queue one frame, secrets masked (``scrub_frame``); it becomes visible once committed.
        Returns its record."""
        text = self._redact(payload) if isinstance(payload, str) else self.scrub_frame(payload)[1]
        return self.append_scrubbed(sender, turn, text)

    def append_scrubbed(self, sender: Sender, turn: int, text: str) -> EventRecord:
        """Queue the JSON text of a frame ``scrub_frame`` already masked (its caller needed the
        masked frame first): the same as ``append``, without masking it twice.

        A closed log (the session is being deleted, or the daemon stops) drops the frame: nothing
        could commit it any more, and a restart tells from the saved document what was cut short.
        """
        record = EventRecord(self.session_id, self._next_seq, utc_now(), sender, turn, text)
        if self.closed:
            logger.debug("session %s: dropped a frame appended after close", self.session_id)
            return record
        self._next_seq += 1
        self._pending.append(record)
        self._pending_bytes += len(text)
        self._queued_more()
        return record

    def amend_last(self, text: str) -> bool:
        """Replace the text of the newest record while it is queued, not yet taken by the
        committer: a record that grows until it commits (a reference to more of a session's
        records). What ``commit_after`` asked of the records after it applies to it then. False,
        and nothing changed, when it is taken already (or the log is closed)."""
        pending, barriers = self._pending, self._barriers
        if self.closed or not pending:
            return False
        last = pending[-1]
        if barriers and barriers[-1][0] == self._next_seq:
            if len(barriers) > 1 and barriers[-2][0] > last.seq:
                return False  # barriers stay in the order of the records they start at
            _, other, seq, version = barriers[-1]
            barriers[-1] = (last.seq, other, seq, version)
        pending[-1] = last._replace(payload=text)
        self._pending_bytes += len(text) - len(last.payload)
        return True

    def append_scrubbed_many(self, sender: Sender, turn: int, texts: list[str]) -> None:
        """``append_scrubbed`` of each text, in order, stamped with one time (a burst of one read)."""
        if self.closed:
            logger.debug("session %s: dropped %d frames appended after close", self.session_id, len(texts))
            return
        seq, at, session_id = self._next_seq, utc_now(), self.session_id
        self._pending += [EventRecord(session_id, seq + i, at, sender, turn, text) for i, text in enumerate(texts)]
        self._next_seq = seq + len(texts)
        self._pending_bytes += sum(map(len, texts))
        self._queued_more()

    def _queued_more(self) -> None:
        """Records were queued: the committer hears of it (a burst ends a hold at once), and so
        does a follower of the unsettled records, unless the log is held: nothing of it commits
        before the hold ends, so the follower hears of all it queued then, at once (``release``),
        not once a record."""
        if self._hold is not None and len(self._pending) >= HOLD_BURST_RECORDS:
            self.release()
        elif not self._scheduled:
            self._committer._ready_log(self)
        if self._hold is None and not (self.on_queued and self._passed_on(hold_ended=False)):
            self.tell_followers()

    def _passed_on(self, *, hold_ended: bool) -> bool:
        """Run the hooks (``on_queued``, which has some): True when they passed on all that was
        queued, for every follower of the unsettled records."""
        passed = [hook(hold_ended) for hook in self.on_queued]  # each runs, whatever the others return
        return all(passed) and len(passed) >= self._unsettled_followers

    def tell_followers(self) -> None:
        """Wake the followers of the unsettled records (a hook, ``on_queued``, left records to them)."""
        if self._appended is not None:
            self._appended.set()
            self._appended = None

    def hold(self, seconds: float = TURN_HOLD_SECONDS) -> None:
        """Keep what is queued from committing until ``release``, for ``seconds`` at most: a turn
        whose prompt was just handed to its agent waits for the answer, to commit with it in one
        transaction. A burst (``HOLD_BURST_RECORDS`` queued), a writer waiting for durability and a
        close end the hold early; readers see the records once they commit, as always."""
        if self._hold is None and not self.closed:
            self._hold = asyncio.get_running_loop().call_later(seconds, self.release)

    def release(self) -> None:
        """End the hold (``hold``): what is queued commits in the next round."""
        hold, self._hold = self._hold, None
        if hold is None:
            return
        hold.cancel()
        if not (self.on_queued and self._passed_on(hold_ended=True)):
            self.tell_followers()
        if self._has_queued():
            self._committer._ready_log(self)

    async def wait_capacity(self) -> None:
        """Wait while too many records are queued; the caller is the agent's reader, so it slows the agent."""
        while self._over_high_water() and not self.closed:
            if self._drained is None:
                self._drained = anyio.Event()
            drained = self._drained
            await drained.wait()

    def save_doc(self, doc: SessionDoc) -> int:
        """Queue a snapshot of the session document; returns a version for ``wait_saved``.

        It commits in the same transaction as the last record appended before this call (or alone
        if that one is committed already): the stored document never runs ahead of the log, so a
        crash cannot leave a document saying a turn ended whose answer was never committed.

        Raises:
            InvalidInput: an indexed key of the document is missing or mistyped, or it is not JSON
                (the store would refuse it: it is refused here, before it is queued).
        """
        if self.closed:
            return 0
        self._doc_version += 1
        # a snapshot as text, encoded once: the store keeps that text (a save made before the
        # committer took the last one replaces it)
        self._doc = (self.last_seq, self._doc_version, encoded_doc(doc))
        self._committer._ready_log(self)
        return self._doc_version

    async def wait_saved(self, version: int) -> None:
        """Return once the document of ``version`` is committed, or the log is closed.

        Raises:
            StoreError: the log is faulted (the document stays queued, and commits when the store
                accepts writes again).
        """
        self.release()
        while self._saved_doc_version < version and not self.closed:
            self.check_writable()
            await self._committed.wait()

    async def wait_committed(self, seq: int) -> None:
        """Return once ``seq`` is committed, or the log is closed.

        Raises:
            StoreError: the log is faulted before ``seq`` committed (it stays queued).
        """
        if self.committed_seq < seq:
            self.release()
        while self.committed_seq < seq and not self.closed:
            self.check_writable()
            await self._committed.wait()

    def check_writable(self) -> None:
        """Raise the fault of a faulted log, or of the log it waits for (``commit_after``): a fresh
        error, since the one kept is raised many times."""
        fault = self.fault
        if fault is None and self._blocked_on is not None:
            fault = self._blocked_on.fault
        if fault is not None:
            raise type(fault)(fault.message, data=fault.data)

    async def _wait_progress(self, seq: int) -> None:
        """A reader's wait: for ``seq`` to commit, however long the store fails."""
        while self.committed_seq < seq and not self.closed:
            await self._committed.wait()

    async def _wait_commit_or_finish(self) -> None:
        """Once closed: wait for the next commit, or for the flusher to end (done, or given up)."""
        async with anyio.create_task_group() as tg:

            async def finish() -> None:
                await self.finished.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(finish)
            await self._committed.wait()
            tg.cancel_scope.cancel()

    async def run_flusher(self) -> None:
        """Run the private committer of a log made without a shared one, until the log is closed
        and drained."""
        if not self._private:
            raise RuntimeError("this log's commits are its shared committer's")
        try:
            await self._committer.run()
        finally:
            self.finished.set()

    @property
    def held_bytes(self) -> int:
        """Bytes of records this log holds in memory: queued, and the committed tail."""
        return self._pending_bytes + self._tail_bytes

    def _over_high_water(self) -> bool:
        return len(self._pending) >= HIGH_WATER_RECORDS or self._pending_bytes >= HIGH_WATER_BYTES

    def _has_queued(self) -> bool:
        return bool(self._pending) or self._doc is not None

    def _take_batch(self, room: int, room_bytes: int, *, first: bool) -> _Batch | None:
        """The committer's next batch of this log: the one that failed last, else up to the log's
        batch size of queued records (and the document when they reach it); None when it does
        not fit ``room`` (unless ``first`` in its round: a round holds at least one record)."""
        if self.disowned is not None:
            self._drop_queued()  # not even a retry of the batch that failed: the log is another's
            return _Batch(self, [], None, 0)
        if self._inflight is not None:
            batch = self._inflight
            if not first and (len(batch.records) > room or batch.size > room_bytes):
                return None
            if self._barriers and batch.records:  # a failed batch, tried again: all of it or nothing
                admitted, batch.after, waited = self._admitted(batch.records)
                if waited is not None and admitted < len(batch.records):
                    return self._block(waited)
            self._round = self._committer.round
            return batch
        limit = min(self._batch_records, room)
        count, size = 0, 0
        for record in self._pending[:limit]:
            if (count or not first) and size + len(record.payload) > room_bytes:
                break
            count, size = count + 1, size + len(record.payload)
        if not count and self._pending and not first:
            return None
        after: tuple[SessionLog, ...] = ()
        if self._barriers and count:
            admitted, after, waited = self._admitted(self._pending[:count])
            if waited is not None and admitted == 0:
                return self._block(waited)
            if admitted < count:
                count, size = admitted, sum(len(record.payload) for record in self._pending[:admitted])
        records = self._pending[:count]
        del self._pending[:count]
        self._pending_bytes -= size
        # A burst grows its batches; a log that caught up starts small again.
        self._batch_records = min(2 * self._batch_records, MAX_BATCH_RECORDS) if self._pending else FIRST_BATCH_RECORDS
        batch = _Batch(self, records, self._take_doc(records), size, after)
        self._inflight = batch
        self._round = self._committer.round
        return batch

    def commit_after(self, other: SessionLog, seq: int, *, doc_version: int = 0) -> None:
        """Records appended to this log from now on commit no earlier than record ``seq`` of
        ``other`` (a log of the same committer), and than its document of ``doc_version``
        (``save_doc``; 0: none): in the same transaction at the earliest. A log of what a
        connection sent a client, which refers to a session's records or answers from them, is
        never durable before them, and need not wait for them to commit before it is appended."""
        if other is self or _settled(other, seq, doc_version):
            return
        barriers = self._barriers
        while barriers and _settled(*barriers[0][1:]):
            del barriers[0]  # met: an idle log keeps no other log alive
        start = self._next_seq
        if barriers and barriers[-1][0] == start and barriers[-1][1] is other:
            # nothing appended between
            barriers[-1] = (start, other, max(seq, barriers[-1][2]), max(doc_version, barriers[-1][3]))
        else:
            barriers.append((start, other, seq, doc_version))

    def _admitted(self, records: list[EventRecord]) -> tuple[int, tuple[SessionLog, ...], SessionLog | None]:
        """How many of ``records`` (this log's next) may commit in the round being taken; the
        logs whose batches in the round they need; the log the rest waits for, if any."""
        barriers = self._barriers
        while barriers and _settled(*barriers[0][1:]):
            del barriers[0]
        first, last = records[0].seq, records[-1].seq
        after: list[SessionLog] = []
        for start, other, seq, version in barriers:
            if start > last:
                break
            if _settled(other, seq, version):
                continue
            if self._in_round(other, seq, version):
                after.append(other)  # taken before this log in the round: one transaction
                continue
            return max(start - first, 0), tuple(after), other
        return len(records), tuple(after), None

    def _in_round(self, other: SessionLog, seq: int, version: int) -> bool:
        """What this log waits for of ``other`` (record ``seq``, document ``version``) is committed
        or in the batch of ``other`` taken in the round being taken."""
        taken = other._inflight
        if other._committer is not self._committer or other._round != self._committer.round or taken is None:
            return False
        records_in = other.committed_seq >= seq or (bool(taken.records) and taken.records[-1].seq >= seq)
        doc_in = other._saved_doc_version >= version or (taken.doc is not None and taken.doc[0] >= version)
        return records_in and doc_in

    def _waits_for_queued(self) -> bool:
        """Its next batch would wait for a log queued for the round being taken, not yet in it."""
        pending = self._pending
        if not pending or self._inflight is not None:
            return False
        last = pending[min(len(pending), self._batch_records) - 1].seq
        for start, other, seq, version in self._barriers:
            if start > last:
                return False
            if not _settled(other, seq, version):
                return other._scheduled and not other._holding and other._round != self._committer.round
        return False

    def _block(self, other: SessionLog) -> _Batch:
        """Nothing of this log may commit before more of ``other`` does: ``other`` makes it ready
        again once it commits (or finishes). Its writers hear of ``other``'s fault meanwhile."""
        self._blocked_on = other
        other._dependents.append(self)
        if other.fault is not None:
            self._wake()
        return _Batch(self, [], None, 0, blocked=True)

    def _release_dependents(self) -> None:
        dependents, self._dependents = self._dependents, []
        for log in dependents:
            log._blocked_on = None
            self._committer._ready_log(log)

    def _take_doc(self, batch: list[EventRecord]) -> tuple[int, EncodedDoc] | None:
        """The queued document, if this batch reaches the record it was saved after."""
        if self._doc is None:
            return None
        as_of, version, doc = self._doc
        if batch and as_of > batch[-1].seq:
            return None
        if not batch and self._pending:
            return None  # saved after records still queued: it goes with them
        self._doc = None
        return version, doc

    def _committed_batch(self, batch: _Batch) -> None:
        """The committer committed ``batch``: make it readable, wake the waiters."""
        self._inflight = None
        if batch.records:
            self._keep_tail(batch.records)
            self.committed_seq = batch.records[-1].seq
        if batch.doc is not None:
            self._saved_doc_version = batch.doc[0]
        if self.fault is not None:
            self.fault = None
            _failures.recovered(self.session_id)
        self._wake()
        if self._dependents:
            self._release_dependents()
        self._settle()

    def _settle(self) -> None:
        """A closed log with nothing left to commit is finished."""
        if self.closed and self._inflight is None and not self._has_queued():
            self._finish()

    def _finish(self) -> None:
        self.finished.set()
        if self._dependents:
            self._release_dependents()  # what they wait for is committed, or never will be
        if self._private:
            self._committer.close()

    def _commit_failed(self, exc: Exception) -> None:
        _failures.failed(self.session_id, exc)
        fault = exc if isinstance(exc, StoreError) else StoreError(f"committing events failed: {exc!r}")
        first, self.fault = self.fault is None, fault
        if first:
            self._wake()  # writers waiting for durability hear of it now
            for log in self._dependents:
                log._wake()  # and those of the logs that commit after it
            if self.on_fault is not None:
                self.on_fault(fault)

    def abandon(self) -> None:
        """The daemon stops without waiting any longer for a store that hangs: a closed log is
        finished now, so its followers end with what is committed (what is not stays uncommitted,
        as a kill would leave it)."""
        if self.closed:
            self.finished.set()

    def _drop_queued(self) -> None:
        self._inflight = None
        self._pending.clear()
        self._pending_bytes = 0
        self._doc = None

    def _give_up(self, failed: int) -> None:
        """Closed while commits fail (the daemon stops on a full disk): drop what is queued."""
        lost = failed + len(self._pending)
        self._drop_queued()
        logger.log(
            logging.INFO if self.disowned is not None else logging.ERROR,
            "session %s: %d event(s) after seq %d could not be committed before stopping (%s)",
            self.session_id,
            lost,
            self.committed_seq,
            self.fault.message if self.fault else "store error",
        )
        _failures.recovered(self.session_id, gave_up=True)
        self._wake()
        self._finish()

    def _keep_tail(self, batch: list[EventRecord]) -> None:
        if not batch:
            return
        now = monotonic()
        self._tail += cast("Iterator[_Kept]", map(tuple, batch))  # plain tuples: see _Kept
        self._tail_bytes += sum(len(record.payload) for record in batch)
        self._tail_marks.append((now, batch[0].seq))
        records, most = (
            (TAIL_RECORDS, TAIL_BYTES) if self.followers else (UNFOLLOWED_TAIL_RECORDS, UNFOLLOWED_TAIL_BYTES)
        )
        if len(self._tail) > 2 * records or self._tail_bytes > 2 * most:  # trimmed in steps, not every batch
            self._trim_to(records, most)
        elif len(self._tail) > 2 * UNFOLLOWED_TAIL_RECORDS and self._tail_marks[0][0] < now - TAIL_SECONDS:
            self._forget_before(now - TAIL_SECONDS)

    def _trim_to(self, records: int, most: int) -> None:
        """Keep the newest ``records`` of the tail at most, ``most`` bytes of them at most."""
        keep, size = 0, 0
        for kept in reversed(self._tail[-records:]):
            if size + len(kept[_PAYLOAD]) > most:
                break
            keep, size = keep + 1, size + len(kept[_PAYLOAD])
        del self._tail[: len(self._tail) - keep]
        self._tail_bytes = size
        marks = self._tail_marks
        if not self._tail:
            marks.clear()
        while len(marks) > 1 and marks[1][1] <= self._tail[0][_SEQ]:
            marks.popleft()  # batches trimmed away (the first one left may be partly kept)

    def _forget_before(self, then: float) -> None:
        """Drop the tail's records committed before ``then``, but for its newest
        ``UNFOLLOWED_TAIL_RECORDS`` (the batch just kept is newer: a mark is left)."""
        marks = self._tail_marks
        while marks[0][0] < then:
            marks.popleft()
        cut = min(marks[0][1] - self._tail[0][_SEQ], len(self._tail) - UNFOLLOWED_TAIL_RECORDS)
        if cut > 0:
            self._tail_bytes -= sum(len(kept[_PAYLOAD]) for kept in self._tail[:cut])
            del self._tail[:cut]

    def release_tail(self) -> None:
        """Forget the committed tail kept for readers (they read the store instead): an idle
        session's log holds no records in memory."""
        self._tail = []
        self._tail_bytes = 0
        self._tail_marks.clear()

    def _wake(self) -> None:
        committed, self._committed = self._committed, asyncio.Event()
        committed.set()
        if not self._over_high_water():
            drained, self._drained = self._drained, None
            if drained is not None:
                drained.set()

    def disown(self, error: StoreError) -> None:
        """Another daemon writes this session's log now: drop what is queued (never committed),
        close the log, and let writers and followers hear ``error`` once they have every record
        committed before."""
        self.disowned = self.fault = error
        self.release()
        # a batch being committed now ends as the store answers (it refuses a session another
        # holds); a failed one waiting to be tried again is dropped when its retry comes
        self._pending.clear()
        self._pending_bytes = 0
        self._doc = None
        self.close()

    def close(self) -> None:
        """Refuse further appends; the log is finished once its queue is committed; waiters wake."""
        if self.closed:
            return
        self.release()
        self.closed = True
        self._closing.set()
        if self._appended is not None:
            self._appended.set()
        self._wake()  # a fresh event: followers wait for the last commits
        if self._drained is not None:
            self._drained.set()
        if not self._scheduled and not self._holding:
            self._settle()

    async def read(self, after: int, limit: int) -> list[EventRecord]:
        """Committed records with ``seq > after``, at most ``limit``, from memory or the store."""
        end = min(self.committed_seq, after + limit)
        if end <= after:
            return []
        tail = self._tail
        if tail and tail[0][_SEQ] <= after + 1:
            start = after + 1 - tail[0][_SEQ]
            return list(map(_as_record, tail[start : start + (end - after)]))
        return await self._store.read(self.session_id, after=after, limit=end - after)

    async def settled_end(self) -> int:
        """The seq of the newest record appended so far, once it is committed: where a reader that
        has been given the past should start following. While the log is faulted, the last
        committed seq: the rest follows when it commits."""
        end = self.last_seq
        try:
            await self.wait_committed(end)
        except StoreError:
            return self.committed_seq
        return end

    async def history(self, upto: int, *, batch: int = 5_000) -> AsyncIterator[list[EventRecord]]:
        """Every record with ``seq <= upto`` (committed first), in batches, from memory or the store.

        Raises:
            StoreError: the log is faulted and ``upto`` is not committed.
        """
        await self.wait_committed(upto)
        after = 0
        while after < upto:
            records = await self.read(after, min(batch, upto - after))
            if not records:
                return
            yield records
            after = records[-1].seq

    def unsettled(self, after: int, limit: int) -> list[EventRecord]:
        """Records after ``after`` (at least ``committed_seq``) appended but not committed yet, at
        most ``limit``, none past what the committer's next batch takes (``_next_batch_end``):
        for a reader that only passes them on to a log that commits after this one
        (``commit_after``), so that nothing shows before it is durable. What it passes on joins
        that batch's transaction; what comes after would wait for later batches anyway, and is
        better passed on as they come (a burst of a thousand reads becomes a few dozen records
        there, one a batch, not one a read)."""
        last = min(after + limit, self._next_batch_end())
        taken = self._inflight
        found: list[EventRecord] = []
        # slices of the batch being committed and of the queue, not a copy of them (a burst queues
        # thousands, and this runs at every append)
        for part in (taken.records if taken is not None else [], self._pending):
            if part and part[-1].seq > after and part[0].seq <= last:
                first = part[0].seq
                found += part[max(after + 1 - first, 0) : last + 1 - first]
        return found

    def _next_batch_end(self) -> int:
        """The last seq the committer's next batch of this log takes at most."""
        taken = self._inflight
        base = taken.records[-1].seq if taken is not None and taken.records else self.committed_seq
        return base + self._batch_records

    async def _wait_appended(self, seq: int) -> None:
        # not woken while the log is held (``_queued_more``), but as the hold ends: a next hold
        # begun meanwhile must not keep what the last one queued waiting
        while self.last_seq < seq and not self.closed:
            if self._appended is None:
                self._appended = asyncio.Event()
            await self._appended.wait()

    async def follow(
        self,
        after: int,
        *,
        batch: int = 5_000,
        idle_seconds: float = math.inf,
        stop_on_fault: bool = False,
        unsettled: bool = False,
        passed: Callable[[], int] | None = None,
    ) -> AsyncGenerator[list[EventRecord], None]:
        """Every committed record after ``after``, in batches, live, until the log closes.

        After ``idle_seconds`` without a new record it yields an empty batch (a reader's cue for a
        keep-alive), then goes on waiting. A faulted log only delays it (records come when they
        commit), unless ``stop_on_fault``: then, once caught up, the fault is raised.

        With ``unsettled``, records come as they are appended, before they commit (``unsettled``);
        those appended while the log is held (``hold``), together as the hold ends. ``passed``:
        how far the reader passed records on by other means (``on_queued``); it goes on from there.

        Raises:
            StoreError: with ``stop_on_fault``, the log is faulted; whatever it waits for, the
                log is disowned (``disown``).
        """
        wait = self._wait_appended if unsettled else self.wait_committed if stop_on_fault else self._wait_progress
        cursor = after
        self.followers += 1
        self._unsettled_followers += unsettled
        try:
            while True:
                if passed is not None:
                    cursor = max(cursor, passed())
                records = await self.read(cursor, batch)
                if not records and unsettled and cursor >= self.committed_seq:
                    records = self.unsettled(cursor, batch)
                if records:
                    cursor = records[-1].seq
                    yield records
                    continue
                if self.disowned is not None and cursor >= self.committed_seq:
                    raise type(self.disowned)(self.disowned.message, data=self.disowned.data)
                if self.closed:
                    if cursor >= self.last_seq or self.finished.is_set():
                        return
                    await self._wait_commit_or_finish()  # what was appended before the close still commits
                    continue
                if unsettled and cursor < self.last_seq:
                    await self._committed.wait()  # past the next batch: more once it is taken and committed
                    continue
                if idle_seconds == math.inf:
                    await wait(cursor + 1)  # no cancel scope to make and leave at every wait
                    continue
                with anyio.move_on_after(idle_seconds) as idle:
                    await wait(cursor + 1)
                if idle.cancelled_caught:
                    yield []
        finally:
            self.followers -= 1
            self._unsettled_followers -= unsettled


def _settled(log: SessionLog, seq: int, version: int) -> bool:
    """Record ``seq`` of ``log`` and its document of ``version`` are committed, or never will be
    (the log finished without them)."""
    return (log.committed_seq >= seq and log._saved_doc_version >= version) or log.finished.is_set()


def _scrub_strings(value: jsonio.JsonValue, redact: Callable[[str], str]) -> jsonio.JsonValue:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_scrub_strings(item, redact) for item in value]
    if isinstance(value, dict):
        return {redact(key): _scrub_strings(item, redact) for key, item in value.items()}
    return value
