"""Leaf module: the one exception tree every layer raises from. Imports nothing of acpd.

Each kind carries what the two faces need to answer it: a stable problem ``type`` slug and HTTP
status for REST (RFC 9457), and a JSON-RPC error code for ACP. Handlers raise these; only the
edges (the RPC peer, the HTTP app) turn them into wire errors.

    AcpdError
    ├─ RpcError(code, message, data)      an error answer from a JSON-RPC peer, or one we send
    │  └─ RequestCancelled                 -32800
    ├─ InvalidInput                        400  bad body, bad params, bad value
    │  ├─ PayloadTooLarge                  413
    │  ├─ UnsupportedMediaType             415  a body that does not say it is JSON
    │  └─ InvalidSetting                   422  a model, mode, thought level or option the agent does not offer
    ├─ NotFound                            404
    │  ├─ SessionNotFound
    │  ├─ PermissionNotFound
    │  └─ AgentNotFound
    ├─ Conflict                            409
    │  ├─ SessionBusy                      a turn runs and the caller asked not to queue
    │  ├─ SessionExists
    │  └─ SessionClosed
    ├─ AgentError                          502  the backend misbehaved
    │  ├─ AgentUnavailable                 503  cannot be started (not installed, bad command)
    │  ├─ AgentStartTimeout                504  did not open its session in time
    │  └─ AgentExited                      the backend process ended
    ├─ ConnectionClosed                    the peer's transport ended
    ├─ StoreError                          500
    │  ├─ StoreFull                        507  the database or its disk is full
    │  └─ StoreLocked                      another acpd owns the database file
    └─ ConfigError
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
AUTH_REQUIRED: Final = -32000
RESOURCE_NOT_FOUND: Final = -32002
REQUEST_CANCELLED: Final = -32800


class AcpdError(Exception):
    """Base of every error acpd raises on purpose."""

    kind: ClassVar[str] = "internal-error"
    status: ClassVar[int] = 500
    rpc_code: ClassVar[int] = INTERNAL_ERROR

    def __init__(self, message: str, *, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    @property
    def code(self) -> int:
        return self.rpc_code

    def to_wire(self) -> dict[str, Any]:
        """The JSON-RPC error object: ``code``, ``message``, and ``data`` when there is some."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class RpcError(AcpdError):
    """A JSON-RPC error object: received from a peer, or raised by a handler to be sent as is."""

    kind = "rpc-error"
    status = 502

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message, data=data)
        self._code = code

    @property
    def code(self) -> int:
        return self._code

    @classmethod
    def parse_error(cls, detail: str = "") -> RpcError:
        return cls(PARSE_ERROR, "Parse error", {"detail": detail} if detail else None)

    @classmethod
    def invalid_request(cls, detail: str = "") -> RpcError:
        return cls(INVALID_REQUEST, "Invalid request", {"detail": detail} if detail else None)

    @classmethod
    def method_not_found(cls, method: str) -> RpcError:
        return cls(METHOD_NOT_FOUND, "Method not found", {"method": method})

    @classmethod
    def invalid_params(cls, detail: str) -> RpcError:
        return cls(INVALID_PARAMS, "Invalid params", {"detail": detail})

    @classmethod
    def input_ended(cls) -> RpcError:
        """The answer to a request sent to a client whose input has ended (it closed its stdin and
        reads on): it can answer nothing more, so a permission it was asked is refused."""
        return cls(INTERNAL_ERROR, "the client's input has ended: it can answer nothing more")

    @classmethod
    def internal_error(cls, detail: str = "") -> RpcError:
        return cls(INTERNAL_ERROR, "Internal error", {"detail": detail} if detail else None)

    @classmethod
    def resource_not_found(cls, uri: str) -> RpcError:
        return cls(RESOURCE_NOT_FOUND, "Resource not found", {"uri": uri})


class RequestCancelled(RpcError):
    """The request was cancelled (ACP `$/cancel_request`, or shutdown)."""

    kind = "request-cancelled"

    def __init__(self, message: str = "Request cancelled", data: Any = None) -> None:
        super().__init__(REQUEST_CANCELLED, message, data)


class InvalidInput(AcpdError):
    kind = "invalid-input"
    status = 400
    rpc_code = INVALID_PARAMS


class PayloadTooLarge(InvalidInput):
    kind = "payload-too-large"
    status = 413


class UnsupportedMediaType(InvalidInput):
    kind = "unsupported-media-type"
    status = 415


class InvalidSetting(InvalidInput):
    """A setting value the session's agent does not offer; ``data`` names the setting and the
    values it offers, so the client can choose again."""

    kind = "invalid-setting"
    status = 422


class NotFound(AcpdError):
    kind = "not-found"
    status = 404
    rpc_code = RESOURCE_NOT_FOUND


class SessionNotFound(NotFound):
    kind = "session-not-found"

    def __init__(self, session_id: str) -> None:
        super().__init__(f"no session with id {session_id!r}", data={"sessionId": session_id})


class PermissionNotFound(NotFound):
    kind = "permission-not-found"


class AgentNotFound(NotFound):
    kind = "agent-not-found"
    status = 400
    rpc_code = INVALID_PARAMS


class Conflict(AcpdError):
    kind = "conflict"
    status = 409
    rpc_code = INVALID_REQUEST


class SessionBusy(Conflict):
    kind = "session-busy"


class SessionExists(Conflict):
    kind = "session-exists"


class SessionClosed(Conflict):
    kind = "session-closed"


class AgentError(AcpdError):
    kind = "agent-error"
    status = 502


class AgentUnavailable(AgentError):
    kind = "agent-unavailable"
    status = 503


class AgentStartTimeout(AgentError):
    kind = "agent-start-timeout"
    status = 504


class AgentExited(AgentError):
    kind = "agent-exited"


class ConnectionClosed(AcpdError):
    kind = "connection-closed"
    status = 502


class StoreError(AcpdError):
    kind = "store-error"


class StoreFull(StoreError):
    """The database or its disk is full: nothing more can be committed until space returns."""

    kind = "store-full"
    status = 507


class StoreLocked(StoreError):
    """Another acpd process owns the database file (``data`` names its ``pid`` and ``url`` when known)."""

    kind = "store-locked"
    status = 503

    def __init__(self, message: str, *, data: Any = None, owner_gone: bool = False) -> None:
        super().__init__(message, data=data)
        self.owner_gone = owner_gone
        """The owner named could not even be connected to: it has died, and its lock is going."""


class ConfigError(AcpdError):
    kind = "config-error"


def acpd_error_in(exc: BaseException) -> AcpdError | None:
    """The error acpd raised on purpose inside ``exc``, also when a task group wrapped it in an
    exception group (the first one found); None for anything else (a bug)."""
    if isinstance(exc, AcpdError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = acpd_error_in(inner)
            if found is not None:
                return found
    return None


class InstallFailed(AcpdError):
    """``acpd agents install`` could not install an agent (npm missing, registry unreachable, …)."""

    kind = "install-failed"
    status = 502
