"""Adapters layer: claude-native as a ``Backend``: a Claude agent loop inside the daemon.

It speaks to the Messages API through the official ``anthropic`` SDK (base URL and key from the
agent's configuration, or the SDK's own environment variables), offers models, modes and a
thought level (a thinking budget) as ACP config options, and keeps the conversation in memory,
rebuilt from the session's event log when the daemon restarts. It must not decide the session's
permission policy or limits (the daemon's), nor touch files except through the daemon's ``fs/*``
and ``terminal/*`` services and its confined read-only searches.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Final

import anthropic
import anyio
from anyio.abc import TaskStatus

from acpd import __version__
from acpd.adapters.base import BackendState, SessionHost
from acpd.adapters.workspace import Workspace
from acpd.config import AgentConfig
from acpd.errors import INTERNAL_ERROR, AgentUnavailable, RpcError
from acpd.presets import PLACEHOLDER_KEY
from acpd.protocol.jsonio import JsonObject

from . import clients
from .credentials import NO_CREDENTIALS, credential_source
from .history import add_prompt, forget_prompt, prompt_blocks, rebuild
from .loop import Settings, Spent, TurnDeps, run_turn
from .stream import ModelFailure
from .tool_base import ToolContext
from .tools import MODE_DESCRIPTIONS, MODES

MODELS: Final = ("claude-sonnet-5-5", "claude-opus-5-5", "claude-haiku-5-5")
THINKING_BUDGET_TOKENS: Final = {"low": 1_024, "medium": 4_096, "high": 16_384, "max": 32_000}
"""Thought level → extended thinking budget (1,024 is the API's least)."""
NO_THINKING: Final = "off"
"""The default thought level: no extended thinking."""
OUTPUT_TOKENS: Final = 16_384
"""Room for the answer itself, on top of the thinking budget."""
BASH_TIMEOUT_SECONDS: Final = 120.0
"""The Bash tool's timeout when the model gives none."""
SYSTEM: Final = (
    "You are a coding agent working in the user's project directory {cwd}. Use the tools to read, "
    "search, edit and run what you need; prefer small, exact edits; keep a todo list for work of "
    "several steps; say briefly what you did when done."
)


class ClaudeNativeBackend:
    """One session's Claude loop."""

    def __init__(self, name: str, config: AgentConfig, *, cwd: str) -> None:
        self.name = name
        self._config: AgentConfig | None = config  # until run() has taken the client's options
        self._cwd = cwd
        self._host: SessionHost | None = None
        self._client: anthropic.AsyncAnthropic | None = None
        self._messages: list[dict[str, Any]] = []
        self._spent = Spent()
        self._always: set[str] = set()
        self._model = config.env.get("ANTHROPIC_MODEL") or os.environ.get("ANTHROPIC_MODEL") or MODELS[0]
        self._mode = "default"
        self._effort = NO_THINKING
        self._turn_scope: anyio.CancelScope | None = None
        self._workspace: Workspace | None = None
        self._closed = anyio.Event()

    async def run(self, host: SessionHost, *, resume_id: str | None, task_status: TaskStatus[BackendState]) -> None:
        assert self._config is not None, "a backend runs once"
        options = client_options(self._config)  # no credentials: unavailable before anything starts
        self._config = None  # what a session keeps in memory is what it needs
        self._host = host
        # Its memory is the session's log, so it rebuilds the conversation natively whenever the
        # session has one: after a restart, and in a fork, an import or an agent switch too.
        from_log = resume_id is not None or host.turns > 0
        if from_log:
            memory = rebuild(await host.history())
            self._messages, self._spent.cost = memory.messages, memory.cost
        self._workspace = await host.workspace()
        self._client = await clients.acquire(options)
        try:
            task_status.started(self._state("new" if resume_id is None else "resume", from_log=from_log))
            await self._closed.wait()
        finally:
            self._client = None
            await clients.release(options)
            host.backend_exited(0, "")

    def _state(self, how: str, *, from_log: bool) -> BackendState:
        host = self._require_host()
        return BackendState(
            backend_session_id=host.session_id,
            how=how,
            agent_info={"name": "acpd-claude-native", "title": "Claude (native)", "version": __version__},
            capabilities={"loadSession": True, "promptCapabilities": {"embeddedContext": True, "image": True}},
            modes=self._modes(),
            config_options=self._options(),
            from_log=from_log,
        )

    def _modes(self) -> JsonObject:
        available = [{"id": mode, "name": mode, "description": MODE_DESCRIPTIONS[mode]} for mode in MODES]
        return {"currentModeId": self._mode, "availableModes": available}

    def _options(self) -> list[JsonObject]:
        def select(option_id: str, name: str, category: str, current: str, values: Sequence[str]) -> JsonObject:
            options = [{"value": value, "name": value} for value in values]
            return {
                "id": option_id,
                "name": name,
                "category": category,
                "type": "select",
                "currentValue": current,
                "options": options,
            }

        return [
            select("mode", "Mode", "mode", self._mode, MODES),
            select("model", "Model", "model", self._model, sorted({*MODELS, self._model})),
            select("effort", "Thinking", "thought_level", self._effort, [NO_THINKING, *THINKING_BUDGET_TOKENS]),
        ]

    async def aclose(self) -> None:
        if self._turn_scope is not None:
            self._turn_scope.cancel()
        self._closed.set()

    # -- turns -------------------------------------------------------------------------------------

    async def prompt(self, prompt: list[JsonObject]) -> JsonObject:
        mark = add_prompt(self._messages, prompt_blocks(prompt))
        spent = Spent()
        with anyio.CancelScope() as scope:
            self._turn_scope = scope
            try:
                return await run_turn(self._deps(), self._settings(), self._messages, spent)
            except ModelFailure as failure:
                # As the rebuilt memory does: a prompt the API refuses must not poison every later
                # one, nor one tried again be sent twice.
                forget_prompt(self._messages, mark)
                data = {"code": failure.code, **failure.wire(), "usage": spent.wire()}
                raise RpcError(INTERNAL_ERROR, failure.message, data) from None
            finally:
                self._turn_scope = None
        return {"stopReason": "cancelled", "usage": spent.wire()}

    def _deps(self) -> TurnDeps:
        host = self._require_host()
        assert self._workspace is not None, "run() resolves the workspace first"
        tools = ToolContext(self._cwd, host.client_request, self._workspace, _no_progress, BASH_TIMEOUT_SECONDS)
        return TurnDeps(
            client=self._require_client(),
            emit=self._emit,
            ask=host.request_permission,
            record_error=host.record_error,
            tools=tools,
            session_spent=self._spent,
            policy=host.permission_policy,
            stopping=host.turn_stopping,
            always=self._always,
        )

    async def cancel(self) -> None:
        if self._turn_scope is not None:
            self._turn_scope.cancel()

    def _settings(self) -> Settings:
        budget = THINKING_BUDGET_TOKENS.get(self._effort, 0)
        return Settings(self._model, self._mode, budget, budget + OUTPUT_TOKENS, self._system())

    def _system(self) -> str:
        assert self._workspace is not None, "run() resolves the workspace first"
        more = [str(root) for root in self._workspace.roots[1:]]
        return SYSTEM.format(cwd=self._cwd) + (f" You may also use: {', '.join(more)}." if more else "")

    async def _emit(self, update: JsonObject) -> None:
        host = self._require_host()
        await host.emit(
            {"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": host.session_id, "update": update}}
        )

    # -- settings ----------------------------------------------------------------------------------

    async def set_mode(self, mode_id: str) -> None:
        if mode_id not in MODES:
            raise RpcError.invalid_params(f"unknown mode {mode_id!r}; modes: {', '.join(MODES)}")
        self._mode = mode_id

    async def set_config_option(self, config_id: str, value: Any) -> list[JsonObject] | None:
        if config_id == "mode":
            await self.set_mode(str(value))
        elif config_id == "model" and isinstance(value, str) and value:
            self._model = value
        elif config_id == "effort" and (value in THINKING_BUDGET_TOKENS or value == NO_THINKING):
            self._effort = str(value)
        else:
            raise RpcError.invalid_params(f"no option {config_id!r} with value {value!r}")
        return self._options()

    async def set_model(self, model_id: str) -> None:
        await self.set_config_option("model", model_id)

    def _require_host(self) -> SessionHost:
        assert self._host is not None, "run() sets the host first"
        return self._host

    def _require_client(self) -> anthropic.AsyncAnthropic:
        assert self._client is not None, "run() makes the client first"
        return self._client


async def _no_progress(content: list[JsonObject]) -> None:
    return None


def client_options(config: AgentConfig) -> dict[str, Any]:
    """The SDK client's key and base URL (sessions with the same ones share a client).

    Raises:
        AgentUnavailable: neither a key nor a model URL: every call would fail.
    """
    env = {**os.environ, **config.env}
    if credential_source(config, env) is None:
        raise AgentUnavailable(NO_CREDENTIALS)
    options: dict[str, Any] = {}
    if config.model_url:
        options["base_url"] = config.model_url.rstrip("/")
    elif env.get("ANTHROPIC_BASE_URL"):
        options["base_url"] = env["ANTHROPIC_BASE_URL"]
    key = env.get("ANTHROPIC_API_KEY")
    token = env.get("ANTHROPIC_AUTH_TOKEN")
    if key:
        options["api_key"] = key
    elif token:
        options["auth_token"] = token
    else:
        options["api_key"] = PLACEHOLDER_KEY  # a gateway that needs one answers 401: a clear MODEL_AUTH
    return options
