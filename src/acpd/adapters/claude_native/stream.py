"""Adapters layer: one streaming Messages API call, its deltas turned into ACP updates as they come.

Text deltas become ``agent_message_chunk``s and thinking deltas ``agent_thought_chunk``s; the final
message (content blocks, stop reason, usage) is returned for the loop. API failures are classified
here into what a user can act on; retrying is the loop's decision, so this must not retry, sleep
or keep anything between calls.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final

import anthropic
import httpx
from anthropic.types import Message

from acpd.protocol.jsonio import JsonObject

Emit = Callable[[JsonObject], Awaitable[None]]
RETRYABLE_STATUSES: Final = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
TRANSIENT: Final = frozenset(
    {"MODEL_STREAM_CUT", "MODEL_UNREACHABLE", "MODEL_RATE_LIMITED", "MODEL_OVERLOADED", "MODEL_ERROR"}
)
"""Failures worth retrying: a server restarting or a name not yet resolvable may be back soon."""
MALFORMED: Final = (anthropic.APIResponseValidationError, ValueError, IndexError, KeyError, TypeError, AssertionError)


class ModelFailure(Exception):
    """A failed model call, classified.

    ``code``: ``MODEL_AUTH``, ``MODEL_RATE_LIMITED``, ``MODEL_OVERLOADED``, ``MODEL_ERROR``,
    ``MODEL_STREAM_CUT``, ``MODEL_UNREACHABLE`` or ``MODEL_BAD_REQUEST``.
    """

    def __init__(
        self, code: str, message: str, status: int | None = None, retry_after_seconds: float | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.retry_after_seconds = retry_after_seconds

    @property
    def retryable(self) -> bool:
        return self.code in TRANSIENT

    def wire(self) -> JsonObject:
        data: JsonObject = {"status": self.status}
        if self.retry_after_seconds is not None:
            data["retryAfterSeconds"] = self.retry_after_seconds
        return data


async def stream_message(
    client: anthropic.AsyncAnthropic, params: dict[str, Any], emit: Emit, partial: list[str]
) -> Message:
    """Run one call, emitting its text and thinking as they stream; the text also goes into
    ``partial`` before it is emitted, for a caller cancelled in the middle.

    Raises:
        ModelFailure: the API refused or failed, the stream was cut, or it made no sense.
    """
    try:
        async with contextlib.AsyncExitStack() as stack:
            with _malformed():
                stream = await stack.enter_async_context(client.messages.stream(**params))
            events = aiter(stream)
            while True:
                with _malformed():  # only the SDK's reading: an error of ours is not the model's
                    event = await anext(events, None)
                if event is None:
                    break
                if event.type == "text" and event.text:
                    partial.append(event.text)
                    await emit(_chunk("agent_message_chunk", event.text))
                elif event.type == "thinking" and event.thinking:
                    await emit(_chunk("agent_thought_chunk", event.thinking))
            with _malformed():
                message = await stream.get_final_message()
    except anthropic.APIStatusError as exc:
        raise _classified(exc) from exc
    except (anthropic.APIConnectionError, httpx.HTTPError) as exc:
        if _never_connected(exc):
            raise ModelFailure("MODEL_UNREACHABLE", f"cannot reach the model API: {exc}") from exc
        raise ModelFailure("MODEL_STREAM_CUT", f"the connection to the model API failed: {exc}") from exc
    except _transport_errors() as exc:
        raise ModelFailure("MODEL_STREAM_CUT", f"the model's answer was cut: {exc}") from exc
    if message.stop_reason is None:  # the stream ended cleanly but before message_stop
        raise ModelFailure("MODEL_STREAM_CUT", "the model's answer ended before it was complete")
    return message


@contextlib.contextmanager
def _malformed() -> Iterator[None]:
    """The SDK assumes a well-formed stream (JSON events, deltas for started blocks, a message
    first); anything else surfaces from inside it as one of ``MALFORMED``: the model's error."""
    try:
        yield
    except MALFORMED as exc:
        raise ModelFailure("MODEL_ERROR", f"the model API sent a malformed answer: {exc!r}") from exc


def _chunk(kind: str, text: str) -> JsonObject:
    return {"sessionUpdate": kind, "content": {"type": "text", "text": text}}


ERROR_TYPES: Final = {
    # An error event in the middle of a stream comes with HTTP 200: its type says what it is.
    "overloaded_error": 529,
    "rate_limit_error": 429,
    "api_error": 500,
}


def _classified(exc: anthropic.APIStatusError) -> ModelFailure:
    status = exc.status_code
    message = _api_message(exc)
    retry_after = _retry_after(exc.response)
    if status < 400:
        status = ERROR_TYPES.get(_error_type(exc), 500)
    if status in (401, 403):
        return ModelFailure("MODEL_AUTH", f"the model API refused the credentials ({status}): {message}", status)
    if status == 429:
        return ModelFailure("MODEL_RATE_LIMITED", f"rate limited (429): {message}", status, retry_after)
    if status == 529:
        return ModelFailure("MODEL_OVERLOADED", f"the model API is overloaded (529): {message}", status, retry_after)
    if status >= 500 or status in RETRYABLE_STATUSES:
        return ModelFailure("MODEL_ERROR", f"the model API failed ({status}): {message}", status, retry_after)
    return ModelFailure("MODEL_BAD_REQUEST", f"the model API rejected the request ({status}): {message}", status)


def _error_type(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    error = body.get("error") if isinstance(body, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    return kind if isinstance(kind, str) else ""


def _api_message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        text = error.get("message") if isinstance(error, dict) else None
        if isinstance(text, str):
            return text
    return str(exc.message)


def _retry_after(response: Any) -> float | None:
    value = getattr(response, "headers", {}).get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _never_connected(exc: BaseException) -> bool:
    """The request found no server: its host does not resolve, or nothing listens, or the connect
    timed out. Nothing was sent, so this is no cut stream; the SDK wraps the cause."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, _connect_errors()):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _connect_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (httpx.ConnectError, httpx.ConnectTimeout, socket.gaierror)
    try:
        import httpx2
    except ImportError:
        return errors
    return (*errors, httpx2.ConnectError, httpx2.ConnectTimeout)


def _transport_errors() -> tuple[type[BaseException], ...]:
    # Newer SDKs run on httpx2; a cut stream surfaces as its error, which APIConnectionError may not wrap.
    try:
        import httpx2
    except ImportError:
        return ()
    return (httpx2.HTTPError,)
