"""Client layer: the exceptions ``acpd.client`` raises. Pure; imports nothing of acpd but the version.

Every RFC 9457 problem the daemon answers becomes the class registered for its ``type``
(``urn:acpd:problem:<kind>``), carrying the problem's fields; a type this client does not know
(a newer daemon's) becomes a plain :class:`ProblemError` with the same fields, so nothing is lost.
The tree follows the daemon's: catching :class:`NotFound` also catches :class:`SessionNotFound`.

    AcpdClientError
    ├─ DaemonUnreachable                 no daemon answered at the URL (after the retries asked for)
    ├─ ConnectionLost                    the connection failed once made: reset, cut, timed out
    ├─ StreamEnded                       a turn's stream ended before the turn did, and could not resume
    └─ ProblemError                      an RFC 9457 problem (status, kind, title, detail, data, extensions)
       ├─ InvalidInput 400 · PayloadTooLarge 413 · UnsupportedMediaType 415 · InvalidSetting 422
       ├─ MalformedRequest 400 · Unauthorized 401 · Forbidden/OriginNotAllowed 403 · HostNotAllowed 421
       ├─ NotFound 404 · SessionNotFound · PermissionNotFound · AgentNotFound (400) · AcpConnectionNotFound
       ├─ MethodNotAllowed 405 · UpgradeRequired 426 · CorsRefused
       ├─ Conflict 409 · SessionBusy · SessionExists · SessionClosed · AcpConnectionClosed
       ├─ AgentError 502 · AgentUnavailable 503 · AgentStartTimeout 504 · AgentExited · RpcError
       │  · RequestCancelled · ConnectionClosed · InstallFailed
       └─ InternalError 500 · StoreError · StoreFull 507 · StoreLocked 503 · ConfigError · HttpError
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

PROBLEM_TYPE_PREFIX: Final = "urn:acpd:problem:"
PROBLEM_FIELDS: Final = frozenset({"type", "title", "status", "detail", "data"})


class AcpdClientError(Exception):
    """Base of everything the client raises on purpose."""


class DaemonUnreachable(AcpdClientError):
    """Nothing answered at the daemon's URL (not running, wrong port, network down)."""


class ConnectionLost(AcpdClientError):
    """The connection to the daemon failed after it was made: reset, cut mid-answer, or a read
    that timed out."""


class StreamEnded(AcpdClientError):
    """A turn's event stream ended before the turn's answer, and resuming it failed."""


class ProblemError(AcpdClientError):
    """An RFC 9457 problem answered by the daemon.

    ``kind`` is the ``type``'s last part (``session-not-found``); ``data`` the problem's ``data``
    member; ``extensions`` every other member (a failed turn's ``turn``, ``stopReason``, ``text``…).
    """

    kind: ClassVar[str] = ""
    """The problem type this class stands for (empty on the base class)."""

    def __init__(self, problem: dict[str, Any], status: int | None = None) -> None:
        self.problem = problem
        self.type = str(problem.get("type") or "about:blank")
        self.status = int(problem.get("status") or status or 0)
        self.title = str(problem.get("title") or "")
        self.detail = str(problem.get("detail") or "")
        self.data: Any = problem.get("data")
        self.extensions = {k: v for k, v in problem.items() if k not in PROBLEM_FIELDS}
        super().__init__(f"{self.status} {self.type.removeprefix(PROBLEM_TYPE_PREFIX)}: {self.detail or self.title}")

    @property
    def problem_kind(self) -> str:
        """This problem's kind as the daemon wrote it (also for a type this client does not know)."""
        return self.type.removeprefix(PROBLEM_TYPE_PREFIX)


_KINDS: dict[str, type[ProblemError]] = {}


def _kind(kind: str) -> Any:
    def register(cls: type[ProblemError]) -> type[ProblemError]:
        cls.kind = kind
        _KINDS[kind] = cls
        return cls

    return register


@_kind("invalid-input")
class InvalidInput(ProblemError):
    """400: a bad body, parameter or value."""


@_kind("payload-too-large")
class PayloadTooLarge(InvalidInput):
    """413: the body is over the daemon's limit."""


@_kind("unsupported-media-type")
class UnsupportedMediaType(InvalidInput):
    """415: a body that does not say it is JSON."""


@_kind("invalid-setting")
class InvalidSetting(InvalidInput):
    """422: a model, mode, thought level or option the agent does not offer; ``data`` names
    ``setting``, ``value`` and ``offered``."""


@_kind("malformed-request")
class MalformedRequest(InvalidInput):
    """400: HTTP the daemon could not parse."""


@_kind("unauthorized")
class Unauthorized(ProblemError):
    """401: no token, or a wrong one."""


@_kind("forbidden")
class Forbidden(ProblemError):
    """403."""


@_kind("origin-not-allowed")
class OriginNotAllowed(Forbidden):
    """403: a browser origin the daemon does not allow."""


@_kind("host-not-allowed")
class HostNotAllowed(ProblemError):
    """421: a Host header the daemon does not allow (DNS-rebinding protection)."""


@_kind("not-found")
class NotFound(ProblemError):
    """404."""


@_kind("session-not-found")
class SessionNotFound(NotFound):
    """404: no session with that id (``data.sessionId``)."""


@_kind("permission-not-found")
class PermissionNotFound(NotFound):
    """404: no pending permission request with that id (answered already, or never asked)."""


@_kind("agent-not-found")
class AgentNotFound(NotFound):
    """400: no configured agent with that name."""


@_kind("acp-connection-not-found")
class AcpConnectionNotFound(NotFound):
    """404: no ACP-over-HTTP connection with that id."""


@_kind("method-not-allowed")
class MethodNotAllowed(ProblemError):
    """405."""


@_kind("upgrade-required")
class UpgradeRequired(ProblemError):
    """426: a WebSocket route asked over plain HTTP."""


@_kind("websocket-refused")
class WebsocketRefused(ProblemError):
    """A refused WebSocket handshake."""


@_kind("cors-refused")
class CorsRefused(ProblemError):
    """A CORS preflight the daemon refused."""


@_kind("conflict")
class Conflict(ProblemError):
    """409."""


@_kind("session-busy")
class SessionBusy(Conflict):
    """409: a turn runs and the prompt asked not to queue."""


@_kind("session-exists")
class SessionExists(Conflict):
    """409: a session with that id exists."""


@_kind("session-closed")
class SessionClosed(Conflict):
    """409: the session closed before the turn could run."""


@_kind("acp-connection-closed")
class AcpConnectionClosed(Conflict):
    """An ACP-over-HTTP connection that was closed."""


@_kind("agent-error")
class AgentError(ProblemError):
    """502: the agent misbehaved (refused, flooded)."""


@_kind("agent-unavailable")
class AgentUnavailable(AgentError):
    """503: the agent cannot be started (not installed, a bad command, no credentials)."""


@_kind("agent-start-timeout")
class AgentStartTimeout(AgentError):
    """504: the agent did not open its session in time."""


@_kind("agent-exited")
class AgentExited(AgentError):
    """502: the agent's process ended (``data`` has ``exitCode``, ``stderrTail``); a failed turn's
    answer fields are in ``extensions``."""


@_kind("rpc-error")
class RpcError(AgentError):
    """502: a JSON-RPC error from a peer."""


@_kind("request-cancelled")
class RequestCancelled(RpcError):
    """The request was cancelled."""


@_kind("connection-closed")
class ConnectionClosed(AgentError):
    """502: a peer's connection ended."""


@_kind("install-failed")
class InstallFailed(AgentError):
    """502: an agent could not be installed."""


@_kind("internal-error")
class InternalError(ProblemError):
    """500: the daemon's own fault (its log has the details)."""


@_kind("store-error")
class StoreError(InternalError):
    """500: the database failed."""


@_kind("store-full")
class StoreFull(StoreError):
    """507: the database or its disk is full; reads still work."""


@_kind("store-locked")
class StoreLocked(StoreError):
    """503: another acpd owns the database file."""


@_kind("config-error")
class ConfigError(InternalError):
    """A configuration the daemon refuses."""


@_kind("http-error")
class HttpError(ProblemError):
    """Any other HTTP error the daemon answered as a problem."""


def problem_error(status: int, body: object) -> ProblemError:
    """The exception for a problem body (also for a body that is not one: a proxy's HTML page)."""
    problem = body if isinstance(body, dict) else {"status": status, "detail": str(body)[:500]}
    kind = str(problem.get("type") or "").removeprefix(PROBLEM_TYPE_PREFIX)
    return _KINDS.get(kind, ProblemError)(problem, status)


def problem_classes() -> dict[str, type[ProblemError]]:
    """Every problem kind this client knows, with its class."""
    return dict(_KINDS)
