"""Adapters layer: one claude-native turn, step by step: call the model, run the tools it asked
for (asking permission as the mode says), hand back their results, until the model is done.

Everything the session records goes out through ``Emit`` as ACP updates; what the Messages API
needs to rebuild the conversation later rides in their ``_meta.claudeNative``. A cancel arrives as
the cancellation of this task: the conversation is left valid (a tool cut short gets a result).
Limits (steps, tokens, time) are the daemon's: it cancels the turn. The loop must not enforce
the session's limits (its own cap of ``MAX_STEPS`` model calls is only a backstop), nor decide
its permission policy (it asks the broker), nor touch files but through its tools.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import anthropic
import anyio
from anthropic.types import Message, ToolUseBlock

from acpd.protocol.jsonio import JsonObject

from .history import META, blank_text
from .pricing import CONTEXT_WINDOW_TOKENS, cost_usd
from .stream import Emit, ModelFailure, stream_message
from .tool_base import Tool, ToolContext, ToolFailed, ToolResult, text_content
from .tools import CHANGING_KINDS, TOOLS, decision, tool_params

MAX_RETRIES: Final = 3
MAX_RETRY_WAIT_SECONDS: Final = 60.0
BACKOFF_SECONDS: Final = (1.0, 2.0, 4.0)
STOP_REASONS: Final = {
    "end_turn": "end_turn",
    "stop_sequence": "end_turn",
    "max_tokens": "max_tokens",
    "refusal": "refusal",
}
ALLOW: Final = ("allow", "always")
CANCELLED: Final = ToolResult("The tool call was cancelled.", error=True)
NOT_RUN: Final = ToolResult("Not run: the answer was cut short before the call was complete.", error=True)
NOT_STARTED: Final = ToolResult("Not run: the turn was stopped (a cancel or a limit) before it started.", error=True)
MAX_STEPS: Final = 200
"""Model calls in one turn at most, whatever the daemon's limits (TodoWrite makes no tool_call,
so maxSteps does not count it)."""

AskPermission = Callable[[JsonObject], Awaitable[JsonObject]]
RecordError = Callable[[str, str, JsonObject], None]


@dataclass(slots=True)
class Settings:
    model: str
    mode: str
    thinking_budget: int
    max_tokens: int
    system: str


@dataclass(slots=True)
class Spent:
    """Tokens and cost so far (the turn's, or the session's)."""

    inputs: int = 0
    outputs: int = 0
    cache_read: int = 0
    cache_write: int = 0
    cost: float = 0.0

    def add(self, message: Message) -> None:
        usage = message.usage
        inputs, outputs = usage.input_tokens, usage.output_tokens
        read, write = usage.cache_read_input_tokens or 0, usage.cache_creation_input_tokens or 0
        self.inputs, self.outputs = self.inputs + inputs, self.outputs + outputs
        self.cache_read, self.cache_write = self.cache_read + read, self.cache_write + write
        self.cost += cost_usd(message.model, inputs, outputs, write, read) or 0.0

    @property
    def total(self) -> int:
        return self.inputs + self.outputs + self.cache_read + self.cache_write

    def wire(self) -> JsonObject:
        return {
            "inputTokens": self.inputs,
            "outputTokens": self.outputs,
            "cachedReadTokens": self.cache_read,
            "cachedWriteTokens": self.cache_write,
            "totalTokens": self.total,
        }


@dataclass(slots=True)
class TurnDeps:
    client: anthropic.AsyncAnthropic
    emit: Emit
    ask: AskPermission
    record_error: RecordError
    tools: ToolContext
    session_spent: Spent
    policy: Callable[[], str] = lambda: "ask"
    """The session's permission policy now (``ask``, ``allow``, ``deny``, ``allow_reads``)."""
    stopping: Callable[[], bool] = lambda: False
    """The daemon is ending the turn (a cancel, a limit): start no more tools, call no more models."""
    always: set[str] = field(default_factory=set)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


async def run_turn(deps: TurnDeps, settings: Settings, messages: list[dict[str, Any]], spent: Spent) -> JsonObject:
    """Run the turn on ``messages`` (the new prompt already last), adding to ``spent``; return the
    prompt's result. Every await leaves ``messages`` valid for the API, so a cancel may land anywhere."""
    for _ in range(MAX_STEPS):
        partial: list[str] = []
        try:
            message = await _call_model(deps, settings, messages, partial)
        except anyio.get_cancelled_exc_class():
            _keep_partial(messages, partial)  # what the user saw stays in the conversation, as in the log
            raise
        spent.add(message)
        deps.session_spent.add(message)
        await _report_usage(deps, message, spent)
        uses = [block for block in message.content if isinstance(block, ToolUseBlock)]
        if content := _history_blocks(message):  # an empty reply would be refused as history
            messages.append({"role": "assistant", "content": content})
        if message.stop_reason != "tool_use" or not uses:
            if uses:  # cut short (max_tokens) in the middle of asking for tools: none of them ran
                messages.append({"role": "user", "content": [_result_block(u.id, NOT_RUN) for u in uses]})
            return {"stopReason": STOP_REASONS.get(str(message.stop_reason), "end_turn"), "usage": spent.wire()}
        results: list[JsonObject] = []
        messages.append({"role": "user", "content": results})
        try:
            for use in uses:
                if deps.stopping():
                    break  # the rest are answered as cancelled below, never announced
                results.append(await _run_tool(deps, settings, use))
        finally:
            # Cancelled mid-way: every tool use still needs its result, or the next call is refused.
            answered = {block["tool_use_id"] for block in results}
            results.extend(_result_block(u.id, CANCELLED) for u in uses if u.id not in answered)
        if deps.stopping():  # the daemon's cancel is on its way: no model call it would cut short
            return {"stopReason": "cancelled", "usage": spent.wire()}
    why = f"the turn made {MAX_STEPS} model calls, claude-native's most; the model may go on in the next prompt"
    deps.record_error("MAX_MODEL_CALLS", why, {"modelCalls": MAX_STEPS})
    return {"stopReason": "max_turn_requests", "usage": spent.wire()}


def _history_blocks(message: Message) -> list[JsonObject]:
    """The reply's blocks as the API takes them back: no blank text (the API returns some beside
    tool uses, and refuses them), tool inputs always objects."""
    blocks = []
    for block in message.content:
        dumped = block.model_dump(exclude_none=True)
        if blank_text(dumped):
            continue
        if dumped.get("type") == "tool_use" and not isinstance(dumped.get("input"), dict):
            dumped["input"] = {}
        blocks.append(dumped)
    return blocks


def _keep_partial(messages: list[dict[str, Any]], partial: list[str]) -> None:
    text = "".join(partial)
    if text.strip():
        messages.append({"role": "assistant", "content": [{"type": "text", "text": text}]})


async def _call_model(
    deps: TurnDeps, settings: Settings, messages: list[dict[str, Any]], partial: list[str]
) -> Message:
    """The model's reply, retried as ``MAX_RETRIES`` allows; ``partial`` holds the text the
    current attempt has streamed so far (a failed attempt's is forgotten)."""
    params: dict[str, Any] = {
        "model": settings.model,
        "max_tokens": settings.max_tokens,
        "system": settings.system,
        "messages": messages,
        "tools": tool_params(),
    }
    if settings.thinking_budget:
        params["thinking"] = {"type": "enabled", "budget_tokens": settings.thinking_budget}
    for attempt in itertools.count(1):
        partial.clear()
        try:
            return await stream_message(deps.client, params, deps.emit, partial)
        except ModelFailure as failure:
            partial.clear()  # what the failed attempt said is not the conversation's, even if cancelled now
            deps.record_error(failure.code, failure.message, {**failure.wire(), "attempt": attempt})
            wait = failure.retry_after_seconds
            if wait is None:
                wait = BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS)) - 1]
            if not failure.retryable or attempt > MAX_RETRIES or wait > MAX_RETRY_WAIT_SECONDS:
                raise
            await anyio.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


async def _report_usage(deps: TurnDeps, message: Message, turn: Spent) -> None:
    """The context's size now (ACP's ``used``), the session's cost, and what the turn has spent
    (``_meta.acpd.turnTokens``, which the daemon's token budget counts)."""
    usage = message.usage
    used = usage.input_tokens + (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0)
    update: JsonObject = {
        "sessionUpdate": "usage_update",
        "used": used + usage.output_tokens,
        "size": CONTEXT_WINDOW_TOKENS,
        "_meta": {"acpd": {"turnTokens": turn.total}},
    }
    if cost_usd(message.model, 0, 0) is not None:
        update["cost"] = {"amount": round(deps.session_spent.cost, 6), "currency": "USD"}
    await deps.emit(update)


async def _run_tool(deps: TurnDeps, settings: Settings, use: ToolUseBlock) -> JsonObject:
    """Announce, clear, run and report one tool call; return its ``tool_result`` block."""
    args = use.input if isinstance(use.input, dict) else {}
    tool = TOOLS.get(use.name)
    tool_use = {"id": use.id, "name": use.name, "input": args}
    if tool is None:
        unknown = {"toolCallId": use.id, "title": use.name, "kind": "other", "status": "pending", "rawInput": args}
        await deps.emit({"sessionUpdate": "tool_call", **unknown, "_meta": {META: {"toolUse": tool_use}}})
        return await _finish(deps, use.id, "failed", ToolResult(f"there is no tool named {use.name!r}", error=True))
    if not tool.announced:
        return await _run_unannounced(deps, tool, tool_use)
    call: JsonObject = {
        "toolCallId": use.id,
        "title": _safely(tool.title, args, tool.name),
        "kind": tool.kind,
        "status": "pending",
        "rawInput": args,
        "locations": _safely(lambda a: tool.locations(a, deps.tools.cwd), args, []),
    }
    await deps.emit({"sessionUpdate": "tool_call", **call, "_meta": {META: {"toolUse": tool_use}}})
    result = CANCELLED  # what the call ends with if the turn is cancelled before it does
    try:
        result = await _cleared_run(deps, settings, tool, call)
    finally:
        with anyio.CancelScope(shield=True):
            await _finish(deps, use.id, "failed" if result.error else "completed", result)
    return _result_block(use.id, result)


async def _run_unannounced(deps: TurnDeps, tool: Tool, tool_use: JsonObject) -> JsonObject:
    """A tool whose effect is its own update (the todo list, a ``plan``), with no tool call shown;
    one that fails is shown as a failed call, so the log still holds its use and result."""
    call_id = tool_use["id"]
    result = await _guarded(tool.run(deps.tools, tool_use["input"]))
    if result.plan is not None:
        native = {"toolUse": tool_use, "toolResult": {"id": call_id, "text": result.text, "isError": result.error}}
        await deps.emit({"sessionUpdate": "plan", "entries": result.plan, "_meta": {META: native}})
        return _result_block(call_id, result)
    call = {"toolCallId": call_id, "title": tool.name, "kind": tool.kind, "status": "pending"}
    await deps.emit(
        {"sessionUpdate": "tool_call", **call, "rawInput": tool_use["input"], "_meta": {META: {"toolUse": tool_use}}}
    )
    return await _finish(deps, call_id, "failed", result)


async def _cleared_run(deps: TurnDeps, settings: Settings, tool: Tool, call: JsonObject) -> ToolResult:
    """Run the announced call if the mode, the policy or the user allow it, and the daemon is not
    ending the turn (this very call may be over ``maxSteps``); else why not, for the model."""
    if deps.stopping():
        return NOT_STARTED
    refusal = await _clearance(deps, settings, tool.name, call)
    if refusal is not None:
        return ToolResult(refusal, error=True)
    if deps.stopping():
        return NOT_STARTED
    call_id = call["toolCallId"]
    await deps.emit({"sessionUpdate": "tool_call_update", "toolCallId": call_id, "status": "in_progress"})
    deps.tools.progress = _progress(deps, call_id)
    return await _guarded(tool.run(deps.tools, call["rawInput"]))


def _safely(describe: Callable[[dict[str, Any]], Any], args: dict[str, Any], fallback: Any) -> Any:
    """A title or locations from the model's arguments, which may be of any shape."""
    try:
        return describe(args)
    except (ValueError, TypeError, KeyError):
        return fallback


def _progress(deps: TurnDeps, call_id: str) -> Callable[[list[JsonObject]], Awaitable[None]]:
    async def report(content: list[JsonObject]) -> None:
        await deps.emit({"sessionUpdate": "tool_call_update", "toolCallId": call_id, "content": content})

    return report


async def _guarded(running: Awaitable[ToolResult]) -> ToolResult:
    """The tool's result; its failure, or arguments it could not use, as an error for the model."""
    try:
        return await running
    except ToolFailed as exc:
        return ToolResult(str(exc), error=True)
    except (ValueError, TypeError, KeyError, OSError, NotImplementedError) as exc:
        return ToolResult(f"the tool could not use its input: {exc}", error=True)


async def _clearance(deps: TurnDeps, settings: Settings, name: str, call: JsonObject) -> str | None:
    """None when the call may run; else why not (for the model)."""
    verdict = decision(settings.mode, TOOLS[name], deps.always)
    if verdict == "run" and (TOOLS[name].kind not in CHANGING_KINDS or deps.policy() in ("ask", "allow")):
        return None
    # Asked even when the mode would run it: a deny or allow_reads policy is the daemon's to apply.
    if verdict == "refuse":
        return f"{name} is not allowed in plan mode: describe the change instead of making it."
    request = {
        "jsonrpc": "2.0",
        "id": f"permission-{next(deps.ids)}",
        "method": "session/request_permission",
        "params": {
            "toolCall": {k: call[k] for k in ("toolCallId", "title", "kind", "status", "rawInput", "locations")},
            "options": [
                {"optionId": "allow", "name": "Allow", "kind": "allow_once"},
                {"optionId": "always", "name": f"Always allow {name}", "kind": "allow_always"},
                {"optionId": "reject", "name": "Reject", "kind": "reject_once"},
            ],
        },
    }
    answer = await deps.ask(request)
    outcome = answer.get("outcome")
    chosen = outcome.get("optionId") if isinstance(outcome, dict) and outcome.get("outcome") == "selected" else None
    if chosen == "always":
        deps.always.add(name)
    if chosen in ALLOW:
        return None
    return "The user refused this tool call."


async def _finish(deps: TurnDeps, call_id: str, status: str, result: ToolResult) -> JsonObject:
    native = {"toolResult": {"id": call_id, "text": result.text, "isError": result.error}}
    update: JsonObject = {"sessionUpdate": "tool_call_update", "toolCallId": call_id, "status": status}
    update["_meta"] = {META: native}
    update["content"] = list(result.content) or [text_content(result.text)]
    if result.raw_output is not None:
        update["rawOutput"] = result.raw_output
    await deps.emit(update)
    return _result_block(call_id, result)


def _result_block(call_id: str, result: ToolResult) -> JsonObject:
    block: JsonObject = {"type": "tool_result", "tool_use_id": call_id, "content": result.text}
    if result.error:
        block["is_error"] = True
    return block
