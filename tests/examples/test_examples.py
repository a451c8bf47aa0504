"""Every file in examples/ run as its README says, against a real daemon, so that none can rot:
curl.sh, the sandbox-agent SDK script, the editors' snippets (acpx runs one; Zed's command is
spoken ACP to) and the systemd unit (its ExecStart run, and ``systemd-analyze verify`` if present)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from acpd import __version__
from acpd.protocol import jsonio
from acpd.testing.daemon import Daemon, daemon_env, running_daemon
from acpd.testing.model_server import serve_mock_model
from tests.daemon.helpers import all_events
from tests.e2e.clients import require_clients

EXAMPLES: Final = Path(__file__).resolve().parents[2] / "examples"
RUN_TIMEOUT_SECONDS: Final = 60.0

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


def env_for(home: Path, daemon: Daemon | None = None) -> dict[str, str]:
    """The examples' environment: acpd on PATH (as an install puts it), its data under ``home``."""
    env = daemon_env(home)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if daemon is not None:
        env.update(ACPD_URL=daemon.url, ACPD_TOKEN=daemon.token or "")
    return env


async def run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    with anyio.fail_after(RUN_TIMEOUT_SECONDS):
        done = await anyio.run_process(argv, env=env, cwd=cwd, check=False)
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout.decode()[-2000:]}\n{done.stderr.decode()[-3000:]}"
    return done


async def test_curl_sh_runs_the_quick_start(tmp_path: Path, workdir: Path) -> None:
    for tool in ("curl", "jq"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    async with running_daemon(tmp_path) as daemon:
        done = await run(["bash", str(EXAMPLES / "curl.sh")], env_for(tmp_path, daemon), workdir)
    out = done.stdout.decode().splitlines()
    assert out[0] == f'{{"status":"ok","version":"{__version__}"}}'
    assert '{"stopReason":"end_turn","text":"Echo: hello"}' in out
    assert '"tool_call"' in out and '"plan"' in out
    assert any(line.startswith("permission p") and line.endswith(": answering once") for line in out)
    assert '{"stopReason":"end_turn","text":"permission: allow"}' in out
    assert out[-1] == "204"


async def test_the_sandbox_agent_sdk_example_runs_unchanged_against_acpd(tmp_path: Path, workdir: Path) -> None:
    clients = require_clients()
    # Node resolves "sandbox-agent" from the script's own folder: a copy beside the pinned clients
    folder = tmp_path / "sdk"
    folder.mkdir()
    shutil.copy(EXAMPLES / "sandbox_agent_sdk.mjs", folder)
    (folder / "node_modules").symlink_to(clients / "node_modules")
    async with running_daemon(tmp_path) as daemon:
        done = await run(["node", str(folder / "sandbox_agent_sdk.mjs")], env_for(tmp_path, daemon), workdir)
    out = done.stdout.decode().splitlines()
    assert out[0] == f'health {{"status":"ok","version":"{__version__}"}}'
    assert 'prompt "text hello from the sandbox-agent SDK" -> end_turn' in out
    assert 'prompt "permission execute" -> end_turn' in out
    assert any(line.startswith("permission ") and line.endswith("-> once") for line in out)
    assert out[-1].startswith("destroyed ")


async def test_the_acpx_example_runs_a_prompt_through_a_running_daemon(tmp_path: Path, workdir: Path) -> None:
    acpx = require_clients() / "node_modules" / ".bin" / "acpx"
    async with running_daemon(tmp_path) as daemon, daemon.client() as http:
        env = {**env_for(tmp_path, daemon), "ACPX": str(acpx)}
        done = await run([str(EXAMPLES / "editors" / "acpx.sh"), "permission execute"], env, workdir)
        sessions = (await http.get("/v1/sessions")).json()["items"]
    frames = [jsonio.loads(line) for line in done.stdout.splitlines() if line.startswith(b"{")]
    asked = [f for f in frames if f.get("method") == "session/request_permission"]
    assert len(asked) == 1
    assert frames[-1]["result"]["stopReason"] == "end_turn"
    assert len(sessions) == 1  # relayed: the session is the running daemon's


async def test_the_zed_snippets_command_is_an_acp_agent(tmp_path: Path, workdir: Path) -> None:
    server = json.loads((EXAMPLES / "editors" / "zed.json").read_text())["agent_servers"]["acpd"]
    assert server["type"] == "custom"
    async with running_daemon(tmp_path) as daemon:
        env = {**env_for(tmp_path, daemon), **server["env"]}
        command = [shutil.which(server["command"], path=env["PATH"]) or server["command"], *server["args"]]
        async with await anyio.open_process(command, env=env, cwd=workdir) as editor:
            talk = Talk(editor)
            with anyio.fail_after(RUN_TIMEOUT_SECONDS):
                init = await talk.call("initialize", {"protocolVersion": 1, "clientCapabilities": {}})
                session = await talk.call("session/new", {"cwd": str(workdir), "mcpServers": []})
                answer = await talk.call(
                    "session/prompt", {"sessionId": session["sessionId"], "prompt": text("hi zed")}
                )
            assert editor.stdin is not None
            await editor.stdin.aclose()
    assert init["protocolVersion"] == 1
    assert answer["stopReason"] == "end_turn"
    assert talk.chunks == ["hi zed"]


def text(words: str) -> list[dict[str, str]]:
    return [{"type": "text", "text": f"text {words}"}]


class Talk:
    """A minimal ACP client over a process's stdio: requests in order, text chunks kept."""

    def __init__(self, process: Process) -> None:
        assert process.stdout is not None and process.stdin is not None
        self._lines = BufferedByteReceiveStream(process.stdout)
        self._stdin = process.stdin
        self._next = 0
        self.chunks: list[str] = []

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        self._next += 1
        await self._stdin.send(
            jsonio.dumps({"jsonrpc": "2.0", "id": self._next, "method": method, "params": params}) + b"\n"
        )
        while True:
            message = jsonio.loads(await self._lines.receive_until(b"\n", 16 * 1024 * 1024))
            if message.get("id") == self._next and "method" not in message:
                assert "result" in message, message
                return message["result"]
            update = (message.get("params") or {}).get("update") or {}
            if update.get("sessionUpdate") == "agent_message_chunk":
                self.chunks.append(update["content"]["text"])


async def test_the_orchestrator_streams_a_claude_native_turn_answers_its_permission_and_switches_agent(
    tmp_path: Path, workdir: Path
) -> None:
    async with (
        serve_mock_model() as model,
        running_daemon(tmp_path, "--model-url", model.url) as daemon,
        daemon.client() as http,
    ):
        done = await run([sys.executable, str(EXAMPLES / "orchestrator.py")], env_for(tmp_path, daemon), workdir)
        out = done.stdout.decode().splitlines()
        session_id = out[0].split()[1]
        session = (await http.get(f"/v1/sessions/{session_id}")).json()
        events = await all_events(http, session_id)
    assert out[0] == f"session {session_id} on claude-native"
    assert any(line.startswith("permission p") and line.endswith(": echo hi (execute) -> once") for line in out)
    assert "turn 1: end_turn, text 'All done. Tool said: hi\\n\\n[exit code 0]'" in out
    assert "switched to mock; turn 2: end_turn, 'switched agents, the conversation goes on'" in out
    assert any(line.startswith("usage of turn 1: ") and line.endswith(" tokens") for line in out)
    assert session["agent"] == "mock" and session["turns"] == 2
    replies = [e["payload"]["result"] for e in events if "permissionId" in str(e["payload"].get("result"))]
    assert [(r["_meta"]["acpd"]["decidedBy"], r["outcome"]["outcome"]) for r in replies] == [("client", "selected")]
    assert [r.path for r in model.requests].count("/v1/messages") >= 2  # the tool call, then its result


def exec_start(unit: Path) -> list[str]:
    """The unit's ExecStart, split as systemd splits it."""
    lines = [line.strip() for line in unit.read_text().splitlines()]
    starts = [line.partition("=")[2] for line in lines if line.startswith("ExecStart=")]
    assert len(starts) == 1
    return shlex.split(starts[0])


async def test_the_systemd_units_exec_start_serves_and_stops_cleanly(tmp_path: Path) -> None:
    argv = exec_start(EXAMPLES / "service" / "acpd.service")
    assert argv[0] == "%h/.local/bin/acpd" and argv[1] == "serve"
    ready_read, ready_write = os.pipe()
    # the unit's command, with the test's acpd for %h/.local/bin/acpd and a free port
    command = [sys.executable, "-m", "acpd", *argv[1:], "--port", "0", "--port-file", f"/dev/fd/{ready_write}"]
    async with await anyio.open_process(
        command, env=env_for(tmp_path), pass_fds=(ready_write,), stderr=subprocess.PIPE
    ) as daemon:
        os.close(ready_write)
        try:
            with anyio.fail_after(RUN_TIMEOUT_SECONDS):
                port = int(await anyio.to_thread.run_sync(os.read, ready_read, 64, abandon_on_cancel=True))
                async with httpx_client(port) as http:
                    assert (await http.get("/v1/health")).json()["status"] == "ok"
                daemon.send_signal(signal.SIGTERM)  # what `systemctl stop` sends
                assert await daemon.wait() == 0
        finally:
            os.close(ready_read)


def httpx_client(port: int) -> Any:
    import httpx

    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}")


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = tmp_path / "acpd.service"
    acpd = Path(sys.executable).parent / "acpd"
    unit.write_text((EXAMPLES / "service" / "acpd.service").read_text().replace("%h/.local/bin/acpd", str(acpd)))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS)
    assert done.returncode == 0, done.stderr
    assert "acpd.service" not in done.stderr, done.stderr  # no warning about the unit itself
