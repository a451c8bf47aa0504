"""Client layer: what a streamed turn's records add up to: its answer, its permission requests
and which of them were rejected. Pure bookkeeping; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from acpd.api.events import EventRecord, SessionUpdateNotification

from ._common import Cursor
from .models import REPLY_OPTION_KINDS, PermissionRequest, PromptResult, Usage


@dataclass(slots=True)
class TurnTracker:
    """What a turn's records add up to: its number, its text, how it ended, its permission
    requests and which of them were rejected. ``done`` once the turn's answer was seen."""

    session_id: str
    cursor: Cursor = field(default_factory=lambda: Cursor(0))
    turn: int = 0
    first_seq: int = 0
    done: bool = False
    stop_reason: str | None = None
    usage: dict[str, Any] | None = None
    context: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    text: list[str] = field(default_factory=list)
    requests: dict[str, PermissionRequest] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)

    def see(self, record: EventRecord) -> PermissionRequest | None:
        """Take in one record; the permission request it asks, if it asks one."""
        payload = record.payload
        method = payload.method
        if isinstance(payload, SessionUpdateNotification):
            self._update(payload.params.update)
        elif method == "session/prompt" and self.first_seq == 0:
            self.first_seq, self.turn = record.seq, record.turn
        elif method == "session/request_permission":
            request = permission_request(record)
            self.requests[request.id] = request
            return request
        elif method is None and payload.id is not None and payload.id == f"turn-{self.turn}":
            self._answer(payload.result, payload.error)
        elif method is None and isinstance(payload.result, dict):
            self._reply(payload.result)
        return None

    def _update(self, update: object) -> None:
        kind = getattr(update, "session_update", None)
        content = getattr(update, "content", None)
        if kind == "agent_message_chunk" and getattr(content, "type", None) == "text":
            self.text.append(str(getattr(content, "text", "")))
        elif kind == "usage_update":
            self.context = {"contextUsed": getattr(update, "used", None), "contextSize": getattr(update, "size", None)}

    def _answer(self, result: object, error: object) -> None:
        self.done = True
        if isinstance(result, dict):
            self.stop_reason = result.get("stopReason")
            usage = result.get("usage")
            self.usage = usage if isinstance(usage, dict) else None
        elif isinstance(error, dict):
            self.error = error

    def _reply(self, result: dict[str, Any]) -> None:
        """A permission request's recorded answer (whoever gave it): note a rejection."""
        meta = result.get("_meta")
        acpd = meta.get("acpd") if isinstance(meta, dict) else None
        pid = acpd.get("permissionId") if isinstance(acpd, dict) else None
        request = self.requests.get(str(pid))
        outcome = result.get("outcome")
        if request is None or not isinstance(outcome, dict):
            return
        chosen = next((o for o in request.options if o.option_id == outcome.get("optionId")), None)
        if outcome.get("outcome") == "cancelled" or (chosen is not None and chosen.kind.startswith("reject")):
            self.rejected.append(request.id)

    def result(self) -> PromptResult:
        usage = {**(self.usage or {}), **{k: v for k, v in self.context.items() if v is not None}}
        return PromptResult(
            session_id=self.session_id,
            turn=self.turn,
            stop_reason=self.stop_reason,
            usage=Usage.model_validate(usage) if usage else None,
            text="".join(self.text),
            first_seq=self.first_seq,
            last_seq=self.cursor.last,
            error=self.error,
        )


def permission_request(record: EventRecord) -> PermissionRequest:
    """The pending request a ``session/request_permission`` record opens (its id is ``p<seq>``)."""
    params = record.payload.params if isinstance(record.payload.params, dict) else {}  # a Message's: as sent
    options = [o for o in params.get("options") or [] if isinstance(o, dict)]
    kinds = {o.get("kind") for o in options}
    replies = [reply for reply, wanted in REPLY_OPTION_KINDS.items() if kinds & set(wanted)]
    return PermissionRequest.model_validate(
        {"id": f"p{record.seq}", "seq": record.seq, "turn": record.turn, "createdAt": record.at}
        | {"toolCall": params.get("toolCall"), "options": options, "availableReplies": replies}
    )
