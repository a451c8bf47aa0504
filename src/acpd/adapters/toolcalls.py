"""Adapters layer: one coherent tool-call lifecycle, whatever order an agent says things in.

ACP's intended order is ``tool_call`` (pending) → ``session/request_permission`` → updates
(``in_progress`` … ``completed``/``failed``). Real agents differ
(``shared/reference/real-agents-offline.md``): codex-acp asks permission first and sends its
``tool_call`` only after approval; Gemini may send only a permission request and a final
update; a cancelled or refused call may never be closed. The ledger rewrites the stream so
that every client and the event log see, for each tool call id: exactly one ``tool_call``
first, then only ``tool_call_update``s, and a final status once the turn is over. What it adds
or changes is marked in ``_meta.acpd`` (``synthesized`` / ``rewritten``). Pure: no I/O.
"""

from __future__ import annotations

from typing import Final

from acpd.protocol.jsonio import JsonObject

FINAL: Final = frozenset({"completed", "failed"})
UNKNOWN_CONTEXT_SIZE_TOKENS: Final = 1_048_576
"""The window a synthesized ``usage_update`` names when the agent never reported one (an agent that
reports tokens only in its answer says nothing of it; Gemini CLI assumes this for its models)."""
_CALL_FIELDS: Final = ("title", "kind", "status", "content", "locations", "rawInput", "rawOutput")
DEFAULT_TITLE: Final = "Tool call"
MAX_TRACKED_CALLS: Final = 10_000
"""Tool calls remembered per session; past it the oldest are forgotten, closed ones first (a late
report of a forgotten call is announced anew rather than dropped)."""


class ToolCallLedger:
    """Tool calls of one agent session: id → last known status."""

    def __init__(self) -> None:
        self._status: dict[str, str] = {}

    def on_update(self, update: JsonObject) -> list[JsonObject]:
        """The updates to record for one ``session/update`` payload from the agent, in order."""
        kind = update.get("sessionUpdate")
        call_id = update.get("toolCallId")
        if kind not in ("tool_call", "tool_call_update") or not isinstance(call_id, str):
            return [update]
        known = call_id in self._status
        if known and self._status[call_id] in FINAL and update.get("status") not in (None, *FINAL):
            # After the call was closed (by the agent, or failed by acpd at the end of a turn), a
            # late report must not reopen it: it passes with its status left out.
            update = _marked({k: v for k, v in update.items() if k != "status"}, "late", "closed")
            update["sessionUpdate"] = "tool_call_update"
            return [update]
        if kind == "tool_call" and known:
            # codex-acp: the call was announced with its permission request; this is its progress.
            update = _marked({**update, "sessionUpdate": "tool_call_update"}, "rewritten", "tool_call")
        elif kind == "tool_call_update" and not known:
            # An update for a call never announced: announce it with what the update says.
            update = _marked({**update, "sessionUpdate": "tool_call"}, "rewritten", "tool_call_update")
            update.setdefault("title", DEFAULT_TITLE)
        self._note(call_id, update)
        return [update]

    def on_permission(self, tool_call: object) -> JsonObject | None:
        """The ``tool_call`` to record before a permission request whose call was never announced."""
        if not isinstance(tool_call, dict):
            return None
        call_id = tool_call.get("toolCallId")
        if not isinstance(call_id, str) or call_id in self._status:
            return None
        announced: JsonObject = {"sessionUpdate": "tool_call", "toolCallId": call_id}
        announced.update({key: tool_call[key] for key in _CALL_FIELDS if key in tool_call})
        announced.setdefault("title", DEFAULT_TITLE)
        announced["status"] = "pending"  # waiting for the answer, whatever the agent put there
        self._note(call_id, announced)
        return _marked(announced, "synthesized", "session/request_permission")

    def close_open(self, stop_reason: str | None) -> list[JsonObject]:
        """At the end of a turn: a ``failed`` update for every call the agent left open."""
        why = "cancelled" if stop_reason == "cancelled" else "turn ended"
        closing = []
        for call_id, status in self._status.items():
            if status not in FINAL:
                update = {"sessionUpdate": "tool_call_update", "toolCallId": call_id, "status": "failed"}
                closing.append(_marked(update, "synthesized", why))
        for update in closing:
            self._status[str(update["toolCallId"])] = "failed"
        return closing

    def _note(self, call_id: str, update: JsonObject) -> None:
        status = update.get("status")
        if isinstance(status, str):
            self._status[call_id] = status
        else:
            self._status.setdefault(call_id, "pending")
        if len(self._status) > MAX_TRACKED_CALLS:
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        # Down to three quarters at once, so an agent making calls forever pays this rarely.
        excess = len(self._status) - MAX_TRACKED_CALLS * 3 // 4
        closed = [call_id for call_id, status in self._status.items() if status in FINAL][:excess]
        oldest_open = [call_id for call_id in self._status if self._status[call_id] not in FINAL]
        for call_id in closed + oldest_open[: excess - len(closed)]:
            del self._status[call_id]

    def __len__(self) -> int:
        """How many tool calls are remembered."""
        return len(self._status)


def _marked(update: JsonObject, how: str, why: str) -> JsonObject:
    meta = update.get("_meta")
    meta = dict(meta) if isinstance(meta, dict) else {}
    acpd = meta.get("acpd")
    meta["acpd"] = {**(acpd if isinstance(acpd, dict) else {}), how: why}
    return {**update, "_meta": meta}


def usage_of(result: JsonObject) -> JsonObject | None:
    """ACP ``usage`` for a prompt result that reports tokens only in an agent's own ``_meta``.

    Gemini puts them in ``_meta.quota.token_count`` (``input_tokens``, ``output_tokens``).
    """
    meta = result.get("_meta")
    quota = meta.get("quota") if isinstance(meta, dict) else None
    count = quota.get("token_count") if isinstance(quota, dict) else None
    if not isinstance(count, dict):
        return None
    inputs, outputs = count.get("input_tokens"), count.get("output_tokens")
    if not isinstance(inputs, int) or not isinstance(outputs, int):
        return None
    return {"inputTokens": inputs, "outputTokens": outputs, "totalTokens": inputs + outputs}


def usage_update_for(usage: JsonObject, context_size: int | None) -> JsonObject | None:
    """The ``usage_update`` to record for a turn whose agent reported its tokens only in the
    prompt's answer (Gemini), so that every turn's usage is in the log the same way: ``used`` is
    the turn's input plus output tokens (exact for one model call; more calls count the context
    each re-sent, so it is an upper bound), ``_meta.acpd.turnTokens`` the same total, which the
    daemon's token budget counts."""
    counts = [usage.get(key) for key in ("totalTokens", "inputTokens", "outputTokens")]
    total, inputs, outputs = (c if isinstance(c, int) and not isinstance(c, bool) and c >= 0 else None for c in counts)
    if total is None and inputs is not None and outputs is not None:
        total = inputs + outputs
    if total is None:
        return None
    update: JsonObject = {
        "sessionUpdate": "usage_update",
        "used": total,
        "size": context_size if context_size is not None else UNKNOWN_CONTEXT_SIZE_TOKENS,
    }
    return _marked({**update, "_meta": {"acpd": {"turnTokens": total}}}, "synthesized", "session/prompt")
