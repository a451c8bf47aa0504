"""RPC layer: one bidirectional JSON-RPC 2.0 peer over a Transport, used on both faces.

It owns id correlation, a task per incoming request, ``$/cancel_request`` in both directions and
the single exception-to-wire boundary. Messages stay raw dicts (never models) so unknown fields and
``_meta`` pass untouched. It knows JSON-RPC, not ACP: it must not interpret any method other than
``$/cancel_request``, and must not import adapters or the daemon.

Ordering contract: incoming notifications are awaited inline, one at a time, in arrival order (a
slow handler slows reading: that is the backpressure). Incoming requests each get a task, because
a handler may wait minutes for a human. A notification handler must therefore never await
``request()`` on its own peer: the answer could not be read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Final, Literal

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from acpd.errors import INTERNAL_ERROR, AcpdError, ConnectionClosed, RequestCancelled, RpcError, acpd_error_in
from acpd.protocol import jsonio, jsonrpc
from acpd.protocol.framing import Frame, FrameTooLong
from acpd.protocol.jsonio import JsonObject, JsonValue
from acpd.protocol.jsonrpc import Invalid, Kind, RequestId
from acpd.protocol.methods import CANCEL_REQUEST
from acpd.transports.base import Transport

logger = logging.getLogger(__name__)

Direction = Literal["in", "out"]
RequestHandler = Callable[[str, JsonValue, JsonObject], Awaitable[JsonValue]]
"""``(method, params, message) -> result``; raise an ``AcpdError`` to answer with its code."""
NotificationHandler = Callable[[str, JsonValue, JsonObject], Awaitable[None]]
Tap = Callable[[Direction, JsonObject], None]
"""Sees every well-formed message in wire order (but those written with ``send_raw``); must be
fast and must not raise."""
InvalidHandler = Callable[[Frame, str], None]
"""``(raw frame or FrameTooLong, reason)`` for input that is not a JSON-RPC message."""
FrameClaimer = Callable[[list[Frame], int, int], Awaitable[int]]
"""``(frames, start, stop) -> count``: offered the frames ``start:stop`` of one read before they are
parsed, it handles the first ``count`` of them itself (0: none, the peer parses them as usual).
It may only take frames it knows byte for byte to be notifications, handled exactly as
``on_notification`` would handle their parse: a stream of small updates then costs no parse,
no classification and no dispatch per message. The tap is not shown them."""

CANCEL_NOTICE_TIMEOUT_SECONDS: Final = 5.0
"""How long a cancelled ``request()`` may spend telling the other side, shielded from the cancel."""

DRAIN_SECONDS: Final = 5.0
"""How long a peer that answers what was asked after its input ended waits for a buffered
transport to write those answers before closing it (the reader may be stuck)."""
YIELD_EVERY_FRAMES: Final = 64
"""The reader lets other tasks run after this many frames of one read."""

_TRANSPORT_CLOSED: Final = (anyio.ClosedResourceError, anyio.BrokenResourceError)
_END_OF_INPUT: Final = (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError)


class _Pending:
    """An outgoing request waiting for its response; ``response`` stays None if the peer closed."""

    __slots__ = ("done", "response")

    def __init__(self) -> None:
        self.done = asyncio.Event()  # one a request: asyncio's is the cheaper to make
        self.response: JsonObject | None = None


class JsonRpcPeer:
    """A JSON-RPC endpoint that sends and serves requests concurrently over one transport.

    Start ``run()`` in a task group; it returns when the transport ends or ``aclose()`` is called.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        on_request: RequestHandler | None = None,
        on_notification: NotificationHandler | None = None,
        tap: Tap | None = None,
        on_invalid: InvalidHandler | None = None,
        on_frames: FrameClaimer | None = None,
        answer_invalid: bool = True,
        max_incoming: int | None = None,
        finish_on_input_end: bool = False,
        name: str = "peer",
    ) -> None:
        """``finish_on_input_end``: when the input ends, answer the requests being served before
        closing (stdio, where a client may close its input and still read what it asked for);
        the requests to the other side then fail at once with ``RpcError.input_ended``, the answer
        a relay gives for a client whose stdin ended (those asked later are still written, as
        the relay writes them, so that what was asked shows)."""
        self._transport = transport
        # optional on a transport: writes a batch of frames at once (see ``send_raw_many``)
        self._send_many: Callable[[list[bytes]], Awaitable[None]] | None = getattr(transport, "send_many", None)
        self._on_request = on_request
        self._on_notification = on_notification
        self._tap = tap
        self._on_invalid = on_invalid
        self._on_frames = on_frames
        self._answer_invalid = answer_invalid
        self._max_incoming = max_incoming  # requests served at once; past it, answered with an error
        self._finish_on_input_end = finish_on_input_end
        self._input_ended = False
        self._serving = 0  # requests being served, from when they are read until their answers are sent
        self._all_answered: asyncio.Event | None = None  # set as the last of them is, once the input ended
        self._name = name
        self._next_id = 0
        self._pending: dict[RequestId, _Pending] = {}
        self._incoming: dict[RequestId, anyio.CancelScope] = {}
        # one lock for every write, so the "out" tap order is the wire order
        # asyncio's lock: free (the common case), taken without anyio's cancel-scope walk
        self._send_lock = asyncio.Lock()
        self._closed = False
        self._started = False
        self._finished = anyio.Event()
        self._task_group: TaskGroup | None = None
        self._read_scope: anyio.CancelScope | None = None

    def __repr__(self) -> str:
        return f"<JsonRpcPeer {self._name!r} closed={self._closed}>"

    @property
    def input_ended(self) -> bool:
        """True once the input ended while the output stays open (``finish_on_input_end``): the
        other side can answer nothing more."""
        return self._input_ended

    @property
    def closed(self) -> bool:
        """True once the transport ended or ``aclose()`` was called; nothing more can be sent."""
        return self._closed

    async def wait_closed(self) -> None:
        """Wait until ``run()`` has finished (or the peer was closed without ever running)."""
        await self._finished.wait()

    async def run(self) -> None:
        """Read and dispatch until end of stream or ``aclose()``; then fail pending requests with
        ``ConnectionClosed``, cancel in-flight handlers and close the transport.

        Raises:
            RuntimeError: ``run()`` was already called.
        """
        if self._started:
            raise RuntimeError(f"{self._name}: run() was already called")
        self._started = True
        try:
            async with anyio.create_task_group() as tg:
                self._task_group = tg
                if not self._closed:
                    with anyio.CancelScope() as self._read_scope:
                        await self._read_loop()
                    if self._finish_on_input_end and not self._closed:
                        await self._answer_what_was_asked()
                self._mark_closed()
                tg.cancel_scope.cancel()
        finally:
            self._mark_closed()
            with anyio.CancelScope(shield=True):
                await self._transport.aclose()
            self._finished.set()

    async def _answer_what_was_asked(self) -> None:
        """The input ended, the output did not: the requests being served are answered; those
        sent to the other side fail, as it can answer nothing more (``aclose`` cuts it short)."""
        self._input_ended = True
        pending, self._pending = self._pending, {}
        for msg_id, waiter in pending.items():
            waiter.response = jsonrpc.error_response(msg_id, RpcError.input_ended().to_wire())
            waiter.done.set()
        with anyio.CancelScope() as self._read_scope:
            while self._serving:
                self._all_answered = asyncio.Event()
                await self._all_answered.wait()
            # closing a buffered transport (stdio) abandons what it has not written yet
            drain: Callable[[], Awaitable[None]] | None = getattr(self._transport, "drain", None)
            if drain is not None:
                with anyio.move_on_after(DRAIN_SECONDS), contextlib.suppress(ConnectionClosed):
                    await drain()

    async def aclose(self) -> None:
        """Close the transport and stop ``run()``; pending ``request()`` calls raise ``ConnectionClosed``."""
        self._mark_closed()
        if self._read_scope is not None:
            self._read_scope.cancel()
        await self._transport.aclose()
        if not self._started:
            self._finished.set()

    async def request(self, method: str, params: JsonValue = None) -> JsonValue:
        """Send a request and wait for its result. If the caller is cancelled while waiting, the
        other side is sent ``$/cancel_request`` (best effort) and the response is not awaited.

        Raises:
            RpcError: the other side answered with an error (``code``, ``message``, ``data``), or
                its input has ended (``finish_on_input_end``): it can answer nothing more.
            ConnectionClosed: the peer closed before the answer came.
        """
        if self._closed:
            raise ConnectionClosed(f"{self._name}: connection closed")
        msg_id = self._next_id
        self._next_id += 1
        if self._input_ended:
            # written all the same, as a relay writes it: a client reading on sees what was asked
            with contextlib.suppress(ConnectionClosed):
                await self.send_message(jsonrpc.request(msg_id, method, params))
            raise RpcError.input_ended()
        pending = _Pending()
        self._pending[msg_id] = pending
        sent = False
        try:
            await self.send_message(jsonrpc.request(msg_id, method, params))
            sent = True
            await pending.done.wait()
        except anyio.get_cancelled_exc_class():
            if sent and pending.response is None and not self._closed:
                with anyio.move_on_after(CANCEL_NOTICE_TIMEOUT_SECONDS, shield=True):
                    await self._send_cancel_notice(msg_id)
            raise
        finally:
            self._pending.pop(msg_id, None)
        return self._unwrap(pending.response)

    async def notify(self, method: str, params: JsonValue = None) -> None:
        """Send a notification.

        Raises:
            ConnectionClosed: the peer is closed.
        """
        await self.send_message(jsonrpc.notification(method, params))

    async def send_message(self, message: JsonObject) -> None:
        """Write one message as is (e.g. a relayed response). The tap sees it just before the write.

        Raises:
            ConnectionClosed: the peer or its transport is closed.
            TypeError: the message is not JSON-serialisable.
        """
        await self._write(message, jsonio.dumps(message))

    async def send_raw(self, data: bytes) -> None:
        """Write the stored bytes of a notification as they are: a logged update forwarded to a
        client costs no parse and no encode. The tap is not shown it (taps follow the requests and
        responses of the conversation; a forwarded notification is neither).

        Raises:
            ConnectionClosed: the peer or its transport is closed.
        """
        await self.send_raw_many([data])

    async def send_raw_many(self, frames: list[bytes]) -> None:
        """``send_raw`` of each frame, in order, in one go: a transport that can write many at once
        (``send_many``) gets them all together, so a batch of logged updates costs one write.

        Raises:
            ConnectionClosed: the peer or its transport is closed.
        """
        async with self._send_lock:
            if self._closed:
                raise ConnectionClosed(f"{self._name}: connection closed")
            try:
                if self._send_many is not None:
                    await self._send_many(frames)
                    return
                for frame in frames:
                    await self._transport.send(frame)
            except _TRANSPORT_CLOSED as exc:
                raise ConnectionClosed(f"{self._name}: transport closed") from exc

    async def _write(self, message: JsonObject, data: bytes) -> None:
        # encoding happens before the lock, so a slow encode never holds up other senders
        async with self._send_lock:
            if self._closed:
                raise ConnectionClosed(f"{self._name}: connection closed")
            if self._tap is not None:
                self._tap("out", message)
            try:
                await self._transport.send(data)
            except _TRANSPORT_CLOSED as exc:
                raise ConnectionClosed(f"{self._name}: transport closed") from exc

    # -- reading -------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        receive = self._transport.receive
        while True:
            try:
                frames = await receive()
            except _END_OF_INPUT:
                return
            start = 0
            while start < len(frames):
                # a burst read at once must not starve the tasks that pass it on (a log's
                # flusher, a stream's writer): the first of it reaches a client sooner
                stop = min(start + YIELD_EVERY_FRAMES, len(frames))
                await self._handle_frames(frames, start, stop)
                if stop < len(frames):
                    await anyio.lowlevel.checkpoint()
                start = stop

    async def _handle_frames(self, frames: list[Frame], start: int, stop: int) -> None:
        claim = self._on_frames
        index = start
        while index < stop:
            if claim is not None:
                try:
                    taken = await claim(frames, index, stop)
                except Exception:
                    logger.exception("%s: failed to handle incoming messages", self._name)
                    taken = 0  # parsed and handled one by one below
                if taken:
                    index += taken
                    continue
            try:
                await self._handle_frame(frames[index])
            except Exception:
                # a failing tap, on_invalid or notification handler must not end the connection
                logger.exception("%s: failed to handle an incoming message", self._name)
            index += 1

    async def _handle_frame(self, frame: Frame) -> None:
        if isinstance(frame, FrameTooLong):
            reason = f"line of {frame.size} bytes exceeds the limit"
            await self._reject(frame, reason, RpcError.invalid_request(reason), None)
            return
        try:
            message = jsonio.loads(frame)
        except jsonio.JSONDecodeError as exc:
            await self._reject(frame, f"not JSON: {exc}", RpcError.parse_error(str(exc)), None)
            return
        kind = jsonrpc.classify(message)
        if not isinstance(kind, Invalid) and jsonio.nesting_exceeds(frame, message):
            # the daemon could not encode it again to log or relay it
            raw_id = message.get("id")
            reason = f"nested deeper than {jsonio.MAX_NESTING} levels"
            kind = Invalid(reason, raw_id if jsonrpc.is_request_id(raw_id) else None)
        if isinstance(kind, Invalid):
            await self._reject_message(frame, message, kind)
            return
        if self._tap is not None:
            self._tap("in", message)
        if kind is Kind.NOTIFICATION:
            await self._dispatch_notification(message)
        elif kind is Kind.REQUEST:
            await self._start_request(frame, message)
        else:
            self._resolve_pending(message)

    async def _dispatch_notification(self, message: JsonObject) -> None:
        method = message["method"]
        if method == CANCEL_REQUEST:
            self._cancel_incoming(message.get("params"))
        elif self._on_notification is not None:
            await self._on_notification(method, message.get("params"), message)

    def _resolve_pending(self, message: JsonObject) -> None:
        pending = self._pending.pop(message["id"], None)
        if pending is None:
            logger.debug("%s: dropped a response to unknown id %r", self._name, message["id"])
            return
        pending.response = message
        pending.done.set()

    # -- invalid input -------------------------------------------------------------------------

    async def _reject_message(self, frame: Frame, message: JsonValue, invalid: Invalid) -> None:
        if not _looks_like_response(message):
            await self._reject(frame, invalid.reason, RpcError.invalid_request(invalid.reason), invalid.id)
            return
        # never answer a response, even a broken one: two peers would bounce errors forever
        await self._reject(frame, invalid.reason, None, None)
        pending = self._pending.pop(invalid.id, None) if invalid.id is not None else None
        if pending is not None:
            error = {"code": INTERNAL_ERROR, "message": "Invalid response", "data": {"detail": invalid.reason}}
            pending.response = jsonrpc.error_response(invalid.id, error)
            pending.done.set()

    async def _reject(self, frame: Frame, reason: str, answer: RpcError | None, msg_id: RequestId | None) -> None:
        logger.debug("%s: invalid input: %s", self._name, reason)
        if self._on_invalid is not None:
            self._on_invalid(frame, reason)
        if answer is not None and self._answer_invalid:
            try:
                await self.send_message(jsonrpc.error_response(msg_id, answer.to_wire()))
            except ConnectionClosed:
                logger.debug("%s: could not answer invalid input: connection closed", self._name)

    # -- incoming requests ---------------------------------------------------------------------

    async def serve(self, message: JsonObject) -> None:
        """Serve a request that reached the peer some other way than its transport (the body of an
        HTTP POST) in the caller's task, as ``run()`` serves those it reads but without a task of
        its own. Its answer is sent through the transport; ``$/cancel_request`` and ``aclose()``
        cancel it, the caller's cancellation does not (it runs on, as a request read would).

        Raises:
            ConnectionClosed: the peer is closed.
        """
        if self._closed:
            raise ConnectionClosed(f"{self._name}: connection closed")
        if self._tap is not None:
            self._tap("in", message)
        if not await self._admitted(None, message):
            return
        msg_id = message["id"]
        scope = self._incoming[msg_id] = anyio.CancelScope()
        self._serving += 1
        with anyio.CancelScope(shield=True):
            await self._serve_request(scope, msg_id, message)

    async def _admitted(self, frame: Frame | None, message: JsonObject) -> bool:
        """False, once refused, for a request whose id is in flight or past ``max_incoming``."""
        msg_id = message["id"]
        if msg_id in self._incoming:
            reason = f"request id {msg_id!r} is already in flight"
            await self._reject(
                jsonio.dumps(message) if frame is None else frame, reason, RpcError.invalid_request(reason), msg_id
            )
            return False
        if self._max_incoming is not None and len(self._incoming) >= self._max_incoming:
            # A peer that sends requests without waiting for answers must not cost a task each.
            logger.debug("%s: %d requests in flight; refusing %r", self._name, len(self._incoming), msg_id)
            refusal = RpcError.internal_error(f"more than {self._max_incoming} requests in flight")
            await self._send_response(msg_id, jsonrpc.error_response(msg_id, refusal.to_wire()))
            return False
        return True

    async def _start_request(self, frame: Frame, message: JsonObject) -> None:
        if not await self._admitted(frame, message):
            return
        msg_id = message["id"]
        assert self._task_group is not None  # requests are only read inside run()
        # the scope exists before the task runs, so a $/cancel_request read right after still finds it
        scope = anyio.CancelScope()
        self._incoming[msg_id] = scope
        self._serving += 1  # from now: the input's end finds it being served before its task runs
        self._task_group.start_soon(self._serve_request, scope, msg_id, message, name=f"{self._name} {msg_id!r}")

    async def _serve_request(self, scope: anyio.CancelScope, msg_id: RequestId, message: JsonObject) -> None:
        try:
            response: JsonObject | None = None
            with scope:
                response = await self._call_handler(msg_id, message)
            # no checkpoint between the scope's exit and here, so a later $/cancel_request finds nothing
            del self._incoming[msg_id]
            if response is None:
                response = jsonrpc.error_response(msg_id, RequestCancelled().to_wire())
            await self._send_response(msg_id, response)
        finally:
            self._serving -= 1
            if not self._serving and self._all_answered is not None:
                self._all_answered.set()

    async def _call_handler(self, msg_id: RequestId, message: JsonObject) -> JsonObject:
        method = message["method"]
        try:
            if self._on_request is None:
                raise RpcError.method_not_found(method)
            result = await self._on_request(method, message.get("params"), message)
        except AcpdError as exc:
            return jsonrpc.error_response(msg_id, exc.to_wire())
        except Exception as exc:
            meant = acpd_error_in(exc)  # raised on purpose, then wrapped by a task group
            if meant is not None:
                return jsonrpc.error_response(msg_id, meant.to_wire())
            logger.exception("%s: handler for %r failed", self._name, method)
            return jsonrpc.error_response(msg_id, RpcError.internal_error().to_wire())
        return jsonrpc.result_response(msg_id, result)

    async def _send_response(self, msg_id: RequestId, response: JsonObject) -> None:
        try:
            data = jsonio.dumps(response)
        except TypeError:
            logger.exception("%s: the answer to %r is not JSON-serialisable", self._name, msg_id)
            response = jsonrpc.error_response(msg_id, RpcError.internal_error().to_wire())
            data = jsonio.dumps(response)
        try:
            await self._write(response, data)
        except ConnectionClosed:
            logger.debug("%s: could not answer %r: connection closed", self._name, msg_id)
        except Exception:
            # the boundary of the request's task: a failing tap or transport must not end run()
            logger.exception("%s: could not answer %r", self._name, msg_id)

    def _cancel_incoming(self, params: JsonValue) -> None:
        request_id = params.get("requestId") if isinstance(params, dict) else None
        if jsonrpc.is_request_id(request_id):  # True would otherwise match id 1; a list is not hashable
            scope = self._incoming.get(request_id)
            if scope is not None:
                scope.cancel()

    # -- outgoing helpers ----------------------------------------------------------------------

    async def _send_cancel_notice(self, msg_id: RequestId) -> None:
        try:
            await self.notify(CANCEL_REQUEST, {"requestId": msg_id})
        except ConnectionClosed:
            logger.debug("%s: could not send $/cancel_request for %r", self._name, msg_id)

    def _unwrap(self, response: JsonObject | None) -> JsonValue:
        if response is None:
            raise ConnectionClosed(f"{self._name}: connection closed before the response")
        if "error" in response:
            error = response["error"]
            raise RpcError(error["code"], error["message"], error.get("data"))
        return response.get("result")

    def _mark_closed(self) -> None:
        if self._closed:
            return
        self._closed = True
        pending, self._pending = self._pending, {}
        for waiter in pending.values():
            waiter.done.set()
        for scope in self._incoming.values():
            scope.cancel()  # those ``serve`` runs; ``run()``'s task group cancels the others too


def _looks_like_response(message: JsonValue) -> bool:
    return isinstance(message, dict) and "method" not in message and ("result" in message or "error" in message)
