"""Daemon layer: RFC 9457 problem+json responses with a stable ``type`` per error kind. No routing."""

from __future__ import annotations

import logging
from typing import Any, Final

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from acpd.errors import AcpdError, acpd_error_in
from acpd.protocol import jsonio

logger = logging.getLogger(__name__)

PROBLEM_TYPE_PREFIX: Final = "urn:acpd:problem:"
MEDIA_TYPE: Final = "application/problem+json"
HTTP_KINDS: Final = {400: "invalid-input", 404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}


def problem(status: int, kind: str, detail: str, **extensions: Any) -> Response:
    body = problem_body(status, kind, detail, **extensions)
    return Response(jsonio.dumps(body), status_code=status, media_type=MEDIA_TYPE)


def problem_body(status: int, kind: str, detail: str, **extensions: Any) -> dict[str, Any]:
    """The problem object itself, for a response body or an SSE ``error`` event."""
    return {
        "type": PROBLEM_TYPE_PREFIX + kind,
        "title": kind.replace("-", " ").capitalize(),
        "status": status,
        "detail": detail,
        **{k: v for k, v in extensions.items() if v is not None},
    }


def from_error(exc: AcpdError, **extensions: Any) -> Response:
    return problem(exc.status, exc.kind, exc.message, data=exc.data, **extensions)


async def handle_acpd_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AcpdError)
    return from_error(exc)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = HTTP_KINDS.get(exc.status_code, "http-error")
    return problem(exc.status_code, kind, str(exc.detail))


async def handle_exception_group(request: Request, exc: Exception) -> Response:
    """An error raised on purpose that a task group wrapped (an agent failing as it starts) is
    answered as itself; a group holding only bugs is the daemon's 500."""
    meant = acpd_error_in(exc)
    if meant is None:
        raise exc
    return from_error(meant)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "internal-error", "internal error; the daemon logged the details")
