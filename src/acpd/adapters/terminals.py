"""Adapters layer: terminals an agent runs commands in (ACP ``terminal/*``), inside its workspace.

Serves ``terminal/create``, ``terminal/output``, ``terminal/wait_for_exit``, ``terminal/kill`` and
``terminal/release`` for agents the daemon is the client of, and the same operations as a Python
API for built-in tools. It must not import the daemon, and nothing it starts may outlive it: each
command runs in its own process group, under the keeper on Linux (so even a daemon killed outright
takes its commands along), and leaving ``open_terminal_manager`` kills every group.

Like Zed, the reference ACP client, a command runs through a shell (bash, else ``/bin/sh``):
agents send whole command lines in ``command`` (claude-code-acp sends ``"npm test | tail"`` and no
``args``), while others send an executable and ``args``; ``sh -c 'command arg…'`` with the args
shell-quoted serves both.
"""

from __future__ import annotations

import logging
import os
import secrets
import shlex
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, NamedTuple, TypeAlias, TypedDict

import anyio
import anyio.to_thread
from anyio.abc import Process, TaskGroup

from acpd.adapters.params import optional_int_param, optional_str_param, str_list_param, str_param
from acpd.adapters.workspace import Workspace
from acpd.errors import RpcError
from acpd.protocol import methods
from acpd.protocol.jsonio import JsonObject, JsonValue
from acpd.transports.contained import Lingering, open_lingering
from acpd.transports.process import signal_group

logger = logging.getLogger(__name__)

DEFAULT_OUTPUT_BYTE_LIMIT: Final = 1024 * 1024
"""Output retained per terminal when the agent gives no ``outputByteLimit``."""
MAX_OUTPUT_BYTE_LIMIT: Final = 64 * 1024 * 1024
"""Ceiling on ``outputByteLimit``: an agent may ask for less memory, never for unbounded memory."""
MAX_TERMINALS: Final = 64
"""Terminals one session may hold at once (each a process tree and up to its byte limit of output);
an agent releases those it is done with."""
TERM_GRACE_SECONDS: Final = 2.0
"""Time between SIGTERM and SIGKILL when a terminal is killed or released."""
KEEPER_GRACE_SECONDS: Final = TERM_GRACE_SECONDS / 2
"""The keeper's own grace: its SIGKILL sweep (which reaches escaped members) comes before ours."""
OUTPUT_DRAIN_SECONDS: Final = 0.5
"""After the command exits, how long to wait for the rest of its output before reporting the exit.
A background job that inherited the pipe can keep it open for ever, so this wait is bounded."""
FALLBACK_SHELL: Final = "/bin/sh"

EnvInput: TypeAlias = Mapping[str, str] | Iterable[tuple[str, str]]


class ExitStatus(TypedDict):
    """ACP ``TerminalExitStatus``: one of the two is set once the command has ended."""

    exitCode: int | None
    signal: str | None


class TerminalOutput(NamedTuple):
    output: str
    truncated: bool
    exit_status: ExitStatus | None
    """``None`` while the command runs."""


class _OutputBuffer:
    """The last ``limit`` bytes of a command's output, cut only at UTF-8 character boundaries."""

    def __init__(self, limit: int) -> None:
        self._data = bytearray()
        self._limit = limit
        self.truncated = False

    def append(self, chunk: bytes) -> None:
        self._data += chunk
        excess = len(self._data) - self._limit
        if excess > 0:
            del self._data[: _next_char_start(self._data, excess)]
            self.truncated = True

    def text(self, *, final: bool) -> str:
        # While the command runs, a multi-byte character may be split across two reads: keep its
        # first bytes back rather than show a replacement character that later becomes a letter.
        end = len(self._data) if final else _complete_prefix_length(self._data)
        return self._data[:end].decode("utf-8", errors="replace")


@dataclass(eq=False)
class _Terminal:
    id: str
    started: Lingering
    output: _OutputBuffer
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    process_exited: anyio.Event = field(default_factory=anyio.Event)
    drained: anyio.Event = field(default_factory=anyio.Event)
    """Set when the output pipe reached its end: nothing holds it open any more."""
    exited: anyio.Event = field(default_factory=anyio.Event)
    """Set once the exit status is known and the output read (or the drain wait expired)."""
    exit_status: ExitStatus | None = None
    ended: anyio.Event = field(default_factory=anyio.Event)
    """Set when the process tree has ended: the command and whatever it left running."""

    @property
    def process(self) -> Process:
        return self.started.process

    def finish(self, returncode: int | None) -> None:
        if not self.exited.is_set():
            self.exit_status = _exit_status(returncode)
            self.exited.set()


class TerminalManager:
    """One session's terminals. Get one from ``open_terminal_manager``; its task group pumps output."""

    def __init__(self, workspace: Workspace, task_group: TaskGroup, env: Mapping[str, str], shell: str) -> None:
        self._workspace = workspace
        self._task_group = task_group
        self._env = dict(env)
        self._shell = shell
        self._terminals: dict[str, _Terminal] = {}
        self._closed = False

    def __len__(self) -> int:
        """Terminals created and not yet released."""
        return len(self._terminals)

    async def create(
        self,
        command: str,
        args: Sequence[str] = (),
        *,
        env: EnvInput = (),
        cwd: str | None = None,
        output_byte_limit: int | None = None,
    ) -> str:
        """Start ``command`` (a shell command line; ``args`` are appended, quoted) and return its id.

        Args:
            env: variables set on top of the manager's environment.
            cwd: absolute directory inside the workspace; default: the workspace's first root.
            output_byte_limit: output bytes retained (default ``DEFAULT_OUTPUT_BYTE_LIMIT``); older
                output is dropped from the beginning.

        Raises:
            RpcError: ``invalid_params`` for a bad command, env, limit or a cwd outside the
                workspace; ``internal_error`` when the process cannot be started or the manager is closed.
        """
        self._check_open()
        if not command.strip():
            raise RpcError.invalid_params("'command' must not be empty")
        if len(self._terminals) >= MAX_TERMINALS:
            raise RpcError.invalid_params(
                f"this session already holds {MAX_TERMINALS} terminals; release one (terminal/release) first"
            )
        limit = _byte_limit(output_byte_limit)
        full_env = {**self._env, **_env_dict(env)}
        workdir = await anyio.to_thread.run_sync(self._resolve_cwd, cwd)
        argv = [self._shell, "-c", " ".join([command, *map(shlex.quote, args)])]
        started = await _spawn(argv, workdir, full_env)
        if self._closed:  # the manager began closing while the process started
            signal_group(started.process.pid, signal.SIGKILL)
            await started.process.aclose()
            started.close()
            self._check_open()
        terminal = _Terminal(f"term_{secrets.token_hex(8)}", started, _OutputBuffer(limit))
        self._terminals[terminal.id] = terminal
        self._task_group.start_soon(self._supervise, terminal, name=f"acpd terminal {terminal.id}")
        logger.debug("terminal %s started, pid %d", terminal.id, started.process.pid)
        return terminal.id

    async def output(self, terminal_id: str) -> TerminalOutput:
        """The output retained so far, whether it was truncated, and the exit status once ended.

        Raises:
            RpcError: ``invalid_params`` for an unknown (or released) terminal id.
        """
        terminal = self._get(terminal_id)
        text = terminal.output.text(final=terminal.drained.is_set())
        return TerminalOutput(text, terminal.output.truncated, terminal.exit_status)

    async def wait_for_exit(self, terminal_id: str) -> ExitStatus:
        """Wait until the command ends; return ``{"exitCode": …, "signal": …}``.

        Raises:
            RpcError: ``invalid_params`` for an unknown terminal id.
        """
        terminal = self._get(terminal_id)
        await terminal.exited.wait()
        assert terminal.exit_status is not None
        return terminal.exit_status

    async def kill(self, terminal_id: str) -> None:
        """Kill the command's process group and wait for it; the terminal stays readable.

        Raises:
            RpcError: ``invalid_params`` for an unknown terminal id.
        """
        await _terminate(self._get(terminal_id))

    async def release(self, terminal_id: str) -> None:
        """Kill the command if it still runs, then forget the terminal.

        Raises:
            RpcError: ``invalid_params`` for an unknown terminal id.
        """
        terminal = self._get(terminal_id)
        del self._terminals[terminal_id]  # before awaiting, so a second release is refused
        await _terminate(terminal)
        terminal.scope.cancel()

    async def handle(self, method: str, params: JsonObject) -> JsonValue:
        """Serve one ACP ``terminal/*`` request; returns its result object.

        Raises:
            RpcError: bad params, an unknown terminal, or ``method_not_found`` for another method.
        """
        if method == methods.TERMINAL_CREATE:
            return await self._handle_create(params)
        if method not in _BY_ID_METHODS:
            raise RpcError.method_not_found(method)
        terminal_id = str_param(params, "terminalId")
        if method == methods.TERMINAL_OUTPUT:
            return _output_result(await self.output(terminal_id))
        if method == methods.TERMINAL_WAIT_FOR_EXIT:
            return dict(await self.wait_for_exit(terminal_id))
        if method == methods.TERMINAL_KILL:
            await self.kill(terminal_id)
        else:
            await self.release(terminal_id)
        return {}

    async def aclose(self) -> None:
        """Kill every terminal's process group, concurrently, and refuse new terminals."""
        self._closed = True
        terminals = list(self._terminals.values())
        self._terminals.clear()
        async with anyio.create_task_group() as group:
            for terminal in terminals:
                group.start_soon(_terminate, terminal)

    async def _handle_create(self, params: JsonObject) -> JsonObject:
        terminal_id = await self.create(
            str_param(params, "command"),
            str_list_param(params, "args"),
            env=_env_param(params),
            cwd=optional_str_param(params, "cwd"),
            output_byte_limit=optional_int_param(params, "outputByteLimit"),
        )
        return {"terminalId": terminal_id}

    def _check_open(self) -> None:
        if self._closed:
            raise RpcError.internal_error("this session's terminals are closed")

    def _get(self, terminal_id: str) -> _Terminal:
        terminal = self._terminals.get(terminal_id)
        if terminal is None:
            raise RpcError.invalid_params(f"no terminal with id {terminal_id!r} (never created, or released)")
        return terminal

    def _resolve_cwd(self, cwd: str | None) -> Path:
        workdir = self._workspace.cwd if cwd is None else self._workspace.resolve(cwd)
        if not workdir.is_dir():
            raise RpcError.invalid_params(f"cwd {cwd!r} is not a directory")
        return workdir

    async def _supervise(self, terminal: _Terminal) -> None:
        with terminal.scope:
            try:
                async with anyio.create_task_group() as group:
                    group.start_soon(_pump, terminal)
                    group.start_soon(_reap, terminal)
                    returncode = await terminal.started.command_exit()
                    if returncode is None:  # its keeper was killed before it could tell
                        returncode = await terminal.process.wait()
                    terminal.process_exited.set()
                    with anyio.move_on_after(OUTPUT_DRAIN_SECONDS):
                        await terminal.drained.wait()
                    terminal.finish(returncode)
                    logger.debug("terminal %s exited: %s", terminal.id, terminal.exit_status)
            finally:
                await _close_process(terminal)


@asynccontextmanager
async def open_terminal_manager(
    workspace: Workspace, *, env: Mapping[str, str] | None = None
) -> AsyncIterator[TerminalManager]:
    """Open the terminals of one session; on exit, kill every command's process group.

    Args:
        env: the environment every command starts from; default: the daemon's own. Pass a
            filtered mapping to keep the daemon's secrets from the agent's commands.
    """
    shell = await anyio.to_thread.run_sync(_find_shell)
    base_env = dict(os.environ if env is None else env)
    body_error: Exception | None = None
    async with anyio.create_task_group() as task_group:
        manager = TerminalManager(workspace, task_group, base_env, shell)
        try:
            yield manager
        except Exception as exc:
            # Raised again outside the task group, so the caller gets it as it was raised rather
            # than wrapped in an ExceptionGroup. Cancellation is left to the task group.
            body_error = exc
        finally:
            with anyio.CancelScope(shield=True):
                await manager.aclose()
            task_group.cancel_scope.cancel()
    if body_error is not None:
        raise body_error


_BY_ID_METHODS: Final = frozenset(
    {methods.TERMINAL_OUTPUT, methods.TERMINAL_WAIT_FOR_EXIT, methods.TERMINAL_KILL, methods.TERMINAL_RELEASE}
)


async def _spawn(argv: list[str], cwd: Path, env: dict[str, str]) -> Lingering:
    try:
        return await open_lingering(  # its own process group, so kill reaches every child
            argv,
            term_grace_seconds=KEEPER_GRACE_SECONDS,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
        )
    except ValueError as exc:  # an embedded NUL byte
        raise RpcError.invalid_params(f"cannot start the command: {exc}") from None
    except OSError as exc:
        raise RpcError.internal_error(f"cannot start the command: {exc}") from None


async def _pump(terminal: _Terminal) -> None:
    stdout = terminal.process.stdout
    assert stdout is not None
    try:
        async for chunk in stdout:
            terminal.output.append(chunk)
    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
        pass  # the process was closed under us: the output so far is all there is
    finally:
        terminal.drained.set()


async def _reap(terminal: _Terminal) -> None:
    await terminal.process.wait()
    terminal.ended.set()


async def _terminate(terminal: _Terminal) -> None:
    """SIGTERM the group (its keeper then stops the whole tree, escaped members included), SIGKILL
    it after the grace period, wait until the command has exited."""
    pid = terminal.process.pid
    if not terminal.ended.is_set():
        signal_group(pid, signal.SIGTERM)
        with anyio.move_on_after(TERM_GRACE_SECONDS):
            await terminal.ended.wait()
    # Members of the group can outlive the command (background jobs, SIGTERM ignored).
    signal_group(pid, signal.SIGKILL)
    await terminal.process_exited.wait()


async def _close_process(terminal: _Terminal) -> None:
    with anyio.CancelScope(shield=True):
        if terminal.process.returncode is None:  # cancelled from outside before it ended
            signal_group(terminal.process.pid, signal.SIGKILL)
        await terminal.process.aclose()
        terminal.started.close()
        terminal.process_exited.set()
        terminal.ended.set()
        terminal.finish(terminal.process.returncode)


def _find_shell() -> str:
    found = shutil.which("bash")
    return os.path.abspath(found) if found else FALLBACK_SHELL  # the keeper execs it as given


def _exit_status(returncode: int | None) -> ExitStatus:
    if returncode is None or returncode >= 0:
        return {"exitCode": returncode, "signal": None}
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"SIG{-returncode}"
    return {"exitCode": None, "signal": name}


def _output_result(result: TerminalOutput) -> JsonObject:
    wire: JsonObject = {"output": result.output, "truncated": result.truncated}
    if result.exit_status is not None:
        wire["exitStatus"] = dict(result.exit_status)
    return wire


def _next_char_start(data: bytearray, index: int) -> int:
    # UTF-8 continuation bytes are 0b10xxxxxx; a character has at most three of them.
    end = min(index + 3, len(data))
    while index < end and data[index] & 0xC0 == 0x80:
        index += 1
    return index


def _complete_prefix_length(data: bytearray) -> int:
    """Length of ``data`` without a trailing, still incomplete, multi-byte character."""
    size = len(data)
    for index in range(size - 1, max(size - 4, -1), -1):
        byte = data[index]
        if byte & 0xC0 == 0x80:
            continue
        if byte < 0xC0:
            return size
        needed = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
        return index if size - index < needed else size
    return size


def _byte_limit(requested: int | None) -> int:
    if requested is None:
        return DEFAULT_OUTPUT_BYTE_LIMIT
    if requested < 0:
        raise RpcError.invalid_params(f"outputByteLimit must not be negative, got {requested}")
    return min(requested, MAX_OUTPUT_BYTE_LIMIT)


def _env_dict(env: EnvInput) -> dict[str, str]:
    pairs = env.items() if isinstance(env, Mapping) else env
    result: dict[str, str] = {}
    for name, value in pairs:
        if not name or "=" in name or "\0" in name or "\0" in value:
            raise RpcError.invalid_params(f"invalid environment variable name or value: {name!r}")
        result[name] = value
    return result


def _env_param(params: JsonObject) -> list[tuple[str, str]]:
    value = params.get("env")
    if value is None:
        return []
    if not isinstance(value, list):
        raise RpcError.invalid_params("'env' must be an array of {name, value} objects")
    pairs = []
    for item in value:
        if not (isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("value"), str)):
            raise RpcError.invalid_params("'env' must be an array of {name, value} objects")
        pairs.append((item["name"], item["value"]))
    return pairs
