"""Daemon layer: the permission broker of one session: pending requests, replies, policy decisions.

It decides nothing about the event log or the agent; the session runtime records what happens and
answers the agent. First reply wins; later replies to the same request are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

import anyio

from acpd.errors import Conflict, InvalidInput, PermissionNotFound
from acpd.protocol.jsonio import JsonObject, objects_in
from acpd.settings import PermissionPolicy

Reply = Literal["once", "always", "reject"]
DecidedBy = Literal["client", "policy", "timeout", "cancel", "error", "limit"]
"""``error``: every client asked answered with an error; ``limit``: the turn was over ``maxSteps``."""

REPLY_KINDS: Final[dict[str, tuple[str, ...]]] = {
    "once": ("allow_once", "allow_always"),
    "always": ("allow_always", "allow_once"),
    "reject": ("reject_once", "reject_always"),
}
READ_KINDS: Final = frozenset({"read", "search", "think", "fetch"})
"""Tool kinds that only look; ``allow_reads`` approves these and asks for the rest."""
CANCELLED_OUTCOME: Final[JsonObject] = {"outcome": "cancelled"}


@dataclass(slots=True)
class PendingPermission:
    id: str
    seq: int
    turn: int
    message: JsonObject
    created_at: str
    decided: anyio.Event = field(default_factory=anyio.Event)
    outcome: JsonObject | None = None
    decided_by: DecidedBy | None = None
    asking: set[str] = field(default_factory=set)
    """The attached clients asked right now, who may still answer."""
    why: JsonObject | None = None
    """What settled it, when not an answer: the client's error."""

    @property
    def params(self) -> JsonObject:
        params = self.message.get("params")
        return params if isinstance(params, dict) else {}

    @property
    def options(self) -> list[JsonObject]:
        return objects_in(self.params.get("options"))

    def to_wire(self) -> JsonObject:
        return {
            "id": self.id,
            "seq": self.seq,
            "turn": self.turn,
            "createdAt": self.created_at,
            "toolCall": self.params.get("toolCall"),
            "options": self.options,
            "availableReplies": [r for r in REPLY_KINDS if _option_for(self.options, r) is not None],
        }


def _option_for(options: list[JsonObject], reply: str) -> str | None:
    for kind in REPLY_KINDS[reply]:
        for option in options:
            if option.get("kind") == kind and isinstance(option.get("optionId"), str):
                return str(option["optionId"])
    return None


def selected(option_id: str) -> JsonObject:
    return {"outcome": "selected", "optionId": option_id}


def outcome_for_reply(pending: PendingPermission, body: JsonObject) -> JsonObject:
    """Turn a REST reply body (``{"reply": …}`` or ``{"optionId": …}``) into an ACP outcome.

    Raises:
        InvalidInput: the reply or option does not fit this request.
    """
    if "optionId" in body:
        option_id = body["optionId"]
        if not isinstance(option_id, str) or not any(o.get("optionId") == option_id for o in pending.options):
            raise InvalidInput(f"optionId {option_id!r} is not one of this request's options")
        return selected(option_id)
    reply = body.get("reply")
    if not isinstance(reply, str) or reply not in REPLY_KINDS:
        raise InvalidInput('a reply needs "reply": "once" | "always" | "reject", or "optionId"')
    option_id = _option_for(pending.options, reply)
    if option_id is None:
        raise InvalidInput(f"this request offers no option for reply {reply!r}")
    return selected(option_id)


def check_outcome(pending: PendingPermission, outcome: object) -> JsonObject:
    """An ACP ``RequestPermissionOutcome`` from a client, checked against the request.

    Raises:
        InvalidInput: not ``{"outcome": "cancelled"}`` nor a ``selected`` of one of its options.
    """
    if isinstance(outcome, dict) and outcome.get("outcome") == "cancelled":
        return CANCELLED_OUTCOME
    if isinstance(outcome, dict) and outcome.get("outcome") == "selected":
        option_id = outcome.get("optionId")
        if any(o.get("optionId") == option_id for o in pending.options):
            return selected(str(option_id))
    raise InvalidInput(f"{outcome!r} is neither a cancelled outcome nor one of the request's options")


def policy_outcome(policy: PermissionPolicy, params: JsonObject) -> JsonObject | None:
    """The outcome a policy decides without asking, or None to ask a client."""
    option_list = objects_in(params.get("options"))
    if policy == "ask":
        return None
    if policy == "allow_reads":
        tool_call = params.get("toolCall")
        kind = tool_call.get("kind") if isinstance(tool_call, dict) else None
        if kind not in READ_KINDS:
            return None
        policy = "allow"
    reply = "once" if policy == "allow" else "reject"
    option_id = _option_for(option_list, reply)
    return selected(option_id) if option_id is not None else CANCELLED_OUTCOME


class PermissionBroker:
    """Pending permission requests of one session."""

    def __init__(self) -> None:
        self._pending: dict[str, PendingPermission] = {}

    def pending(self) -> list[PendingPermission]:
        return list(self._pending.values())

    def open(self, pending: PendingPermission) -> None:
        self._pending[pending.id] = pending

    def get(self, permission_id: str) -> PendingPermission:
        pending = self._pending.get(permission_id)
        if pending is None:
            raise PermissionNotFound(f"no pending permission request {permission_id!r}")
        return pending

    def resolve(self, permission_id: str, outcome: JsonObject, decided_by: DecidedBy) -> PendingPermission:
        """Settle a request. Raises ``Conflict`` if someone already answered it."""
        pending = self.get(permission_id)
        if pending.outcome is not None:
            raise Conflict(f"permission request {permission_id!r} was already answered")
        pending.outcome, pending.decided_by = outcome, decided_by
        del self._pending[permission_id]
        pending.decided.set()
        return pending

    def cancel_all(self) -> None:
        for permission_id in list(self._pending):
            self.resolve(permission_id, CANCELLED_OUTCOME, "cancel")
