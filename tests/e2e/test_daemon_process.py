"""End to end: a real ``acpd serve`` process, real HTTP, SSE, kill -9 and restart, the CLI."""

from __future__ import annotations

import contextlib
import stat
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from acpd.protocol import jsonio
from acpd.testing.daemon import daemon_env, running_daemon
from tests.daemon.helpers import all_events, new_session
from tests.e2e.sse import sse_events

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def run_prompt(http: httpx.AsyncClient, session_id: str, text: str) -> None:
    await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": text})


async def test_a_streaming_prompt_delivers_the_whole_turn_over_sse(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon, daemon.client() as http:
        session_id = (await new_session(http, tmp_path))["id"]
        seen: list[dict[str, Any]] = []
        with anyio.fail_after(30):
            async with http.stream(
                "POST",
                f"/v1/sessions/{session_id}/prompt",
                json={"prompt": "chunks 3000\ntool read"},
                headers={"Accept": "text/event-stream"},
            ) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                seen = [event async for event in sse_events(response)]
        assert seen[0]["payload"]["method"] == "session/prompt"
        assert seen[-1]["payload"]["result"]["stopReason"] == "end_turn"
        seqs = [e["seq"] for e in seen]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        chunks = [
            e
            for e in seen
            if e["payload"].get("params", {}).get("update", {}).get("sessionUpdate") == "agent_message_chunk"
        ]
        assert len(chunks) == 3000


async def test_reconnecting_with_last_event_id_resumes_exactly_after_it(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon, daemon.client() as http:
        session_id = (await new_session(http, tmp_path))["id"]
        first: list[int] = []
        rest: list[int] = []
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_prompt, http, session_id, "chunks 12000")
                async with http.stream("GET", f"/v1/sessions/{session_id}/events/stream") as response:
                    async for event in sse_events(response):
                        first.append(event["seq"])
                        if len(first) == 500:
                            break
                headers = {"Last-Event-ID": str(first[-1])}
                async with http.stream("GET", f"/v1/sessions/{session_id}/events/stream", headers=headers) as response:
                    async for event in sse_events(response):
                        rest.append(event["seq"])
                        if event["payload"].get("result", {}).get("stopReason"):
                            break
        combined = first + rest
        assert combined == list(range(1, len(combined) + 1))
        assert len(combined) > 10_000


async def test_a_reader_that_falls_far_behind_catches_up_without_loss(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon, daemon.client(timeout=60) as http:
        session_id = (await new_session(http, tmp_path))["id"]
        turn_over = anyio.Event()
        seqs: list[int] = []

        async def run_turn() -> None:
            await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "chunks 40000"})
            turn_over.set()

        with anyio.fail_after(60):
            async with (
                anyio.create_task_group() as tg,
                http.stream("GET", f"/v1/sessions/{session_id}/events/stream") as response,
            ):
                tg.start_soon(run_turn)
                async for event in sse_events(response):
                    seqs.append(event["seq"])
                    if len(seqs) == 100:
                        await turn_over.wait()  # stall while the agent writes 40,000 more events
                    if event["payload"].get("result", {}).get("stopReason"):
                        break
        assert seqs == list(range(1, len(seqs) + 1))
        assert len(seqs) > 40_000


async def test_a_prompt_retried_with_its_key_after_a_kill_9_mid_turn_is_answered_not_run_again(
    tmp_path: Path,
) -> None:
    key = {"Idempotency-Key": "retry-me"}
    async with running_daemon(tmp_path) as daemon, daemon.client() as http:
        session_id = (await new_session(http, tmp_path))["id"]
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:

                async def first_attempt() -> None:
                    body = {"prompt": "sleep 60"}
                    with contextlib.suppress(httpx.HTTPError):  # the daemon dies under it
                        await http.post(f"/v1/sessions/{session_id}/prompt", json=body, headers=key)

                tg.start_soon(first_attempt)
                async with http.stream("GET", f"/v1/sessions/{session_id}/events/stream") as response:
                    async for event in sse_events(response):
                        if event["payload"].get("method") == "session/prompt":
                            break
                await daemon.kill()
    async with running_daemon(tmp_path) as daemon, daemon.client() as http:
        with anyio.fail_after(30):
            retry = await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "sleep 60"}, headers=key)
        assert retry.headers.get("idempotent-replayed") == "true"
        answer = retry.json()
        assert answer["turn"] == 1
        assert answer["stopReason"] is None
        assert "interrupted" in answer["error"]["message"]
        events = await all_events(http, session_id)
        prompts = [e for e in events if e["payload"].get("method") == "session/prompt"]
        assert [(p["seq"], p["payload"]["params"]["_meta"]["acpd"]["idempotencyKey"]) for p in prompts] == [
            (answer["firstSeq"], "retry-me")
        ]
        assert events[answer["lastSeq"] - 1]["payload"]["method"] == "_acpd/turn_interrupted"


async def test_kill_9_mid_turn_loses_no_seen_event_and_the_session_goes_on(tmp_path: Path) -> None:
    seen: dict[int, dict[str, Any]] = {}
    async with running_daemon(tmp_path) as daemon, daemon.client() as http:
        session_id = (await new_session(http, tmp_path))["id"]
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                # The sleep keeps the turn running until the kill, however far behind the reader is.
                tg.start_soon(_ignore_errors, run_prompt(http, session_id, "chunks 50000\nsleep 60"))
                async with http.stream("GET", f"/v1/sessions/{session_id}/events/stream") as response:
                    async for event in sse_events(response):
                        seen[event["seq"]] = event
                        if len(seen) == 20_000:
                            await daemon.kill()
                            break
                tg.cancel_scope.cancel()
        assert daemon.process.returncode == -9, "the daemon must have died by SIGKILL mid-turn"
    async with running_daemon(tmp_path) as daemon, daemon.client() as http:
        listed = (await http.get("/v1/sessions")).json()["items"]
        assert [s["id"] for s in listed] == [session_id]
        events = await all_events(http, session_id)
        by_seq = {e["seq"]: e for e in events}
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert all(by_seq[seq] == event for seq, event in seen.items())
        tail = [(e["seq"], e["payload"].get("method") or sorted(e["payload"])) for e in events[-5:]]
        log = daemon.log_path.read_text()[-3000:]
        assert any(e["payload"].get("method") == "_acpd/turn_interrupted" for e in events), (
            len(seen),
            tail,
            listed,
            log,
        )
        with anyio.fail_after(30):
            answer = (
                await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "text after restart"})
            ).json()
        assert answer["stopReason"] == "end_turn"
        assert answer["turn"] == 2


async def _ignore_errors(call: Any) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the daemon is killed under this request on purpose
        await call


async def test_the_cli_prompt_streams_the_answer_from_a_running_daemon(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon:
        command = [
            sys.executable,
            "-m",
            "acpd",
            "prompt",
            "--url",
            daemon.url,
            "--cwd",
            str(tmp_path),
            "text",
            "hi",
            "cli",
        ]
        with anyio.fail_after(30):
            result = await anyio.run_process(command, env=daemon_env(tmp_path), check=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout.decode().strip() == "hi cli"
        assert b"[end_turn]" in result.stderr
        listing = await anyio.run_process(
            [sys.executable, "-m", "acpd", "sessions", "list", "--url", daemon.url], env=daemon_env(tmp_path)
        )
        assert b"mock" in listing.stdout


async def test_the_cli_says_clearly_when_no_daemon_runs(tmp_path: Path) -> None:
    result = await anyio.run_process(
        [sys.executable, "-m", "acpd", "sessions", "list", "--url", "http://127.0.0.1:9"],
        env=daemon_env(tmp_path),
        check=False,
    )
    assert result.returncode == 1
    assert b"no acpd daemon" in result.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="prctl is Linux's")
async def test_the_daemons_environment_is_kept_from_processes_of_the_same_user() -> None:
    probe = (
        "import ctypes; from acpd.cli import protect_environment; protect_environment(); "
        "print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))"  # PR_GET_DUMPABLE
    )
    result = await anyio.run_process([sys.executable, "-c", probe])
    # Not dumpable: /proc/<pid>/environ and memory are the owner's no more (as for ssh-agent).
    assert result.stdout.decode().strip() == "0"


@pytest.mark.usefixtures("open_umask")
async def test_a_fresh_daemon_makes_a_private_token_that_every_request_but_health_needs(tmp_path: Path) -> None:
    data_dir = tmp_path / "data" / "acpd"
    async with running_daemon(tmp_path) as daemon, httpx.AsyncClient(base_url=daemon.url, timeout=30) as bare:
        token_file = data_dir / "token"
        assert daemon.token == token_file.read_text().strip()
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in data_dir.iterdir() if p.is_file()}
        refused = await bare.get("/v1/sessions")
        health = await bare.get("/v1/health")
        allowed = await bare.get("/v1/sessions", headers=daemon.headers)
        ws_url = daemon.url.replace("http://", "ws://") + "/v1/rpc"
        with anyio.fail_after(30):
            with pytest.raises(InvalidStatus) as refused_ws:
                async with connect(ws_url):
                    pass
            async with connect(f"{ws_url}?access_token={daemon.token}") as ws:
                await ws.send('{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":1}}')
                assert '"result"' in str(await ws.recv())
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert {name: mode for name, mode in modes.items() if mode != 0o600} == {}
    assert {"token", "acpd.db"} <= set(modes)
    assert (refused.status_code, refused.headers["content-type"]) == (401, "application/problem+json")
    assert refused_ws.value.response.status_code == 401  # as over plain HTTP, not uvicorn's bare 403
    assert (health.status_code, allowed.status_code) == (200, 200)
    port = daemon.url.rsplit(":", 1)[1]
    assert f"on http://127.0.0.1:{port} " in daemon.log_path.read_text()  # the bound port, not 0


async def test_no_auth_is_refused_when_the_daemon_would_listen_beyond_loopback(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "acpd", "serve", "--host", "0.0.0.0", "--port", "0", "--no-auth"]
    with anyio.fail_after(30):
        result = await anyio.run_process(command, env=daemon_env(tmp_path), check=False)
    assert result.returncode == 1
    assert result.stderr.startswith(b"acpd: --no-auth is for loopback only")
    assert b"Traceback" not in result.stderr  # a refusal is a message, not a crash
    assert not (tmp_path / "data" / "acpd" / "acpd.db").exists()  # refused before the store opens


async def test_acpd_acp_says_whether_it_relays_to_the_daemon_or_runs_standalone(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon:
        with anyio.fail_after(30):
            relayed = await anyio.run_process(
                [sys.executable, "-m", "acpd", "acp", "--url", daemon.url], env=daemon_env(tmp_path), input=b""
            )
            alone = await anyio.run_process(
                [sys.executable, "-m", "acpd", "acp", "--standalone", "--db", ":memory:"],
                env=daemon_env(tmp_path),
                input=b"",
            )
    assert f"acpd acp: relaying to the daemon at {daemon.url}\n".encode() in relayed.stderr
    assert b"acpd acp: --standalone: running standalone on :memory:\n" in alone.stderr


def piped(*messages: dict[str, Any]) -> bytes:
    """Requests as a script pipes them into ``acpd acp``: all at once, then the end of stdin."""
    return b"".join(jsonio.dumps({"jsonrpc": "2.0", **message}) + b"\n" for message in messages)


async def acp_answers(command: list[str], stdin: bytes, env: dict[str, str]) -> list[dict[str, Any]]:
    with anyio.fail_after(60):
        done = await anyio.run_process(command, env=env, input=stdin)
    return [jsonio.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.parametrize("mode", ["relay", "standalone"])
async def test_acpd_acp_answers_what_a_script_piped_in_before_its_stdin_ended(tmp_path: Path, mode: str) -> None:
    # the end of stdin ended the relay, and the standalone face, at once: a script got none, some
    # or all of its answers as the race went, and a turn that asked a permission no answer
    async with contextlib.AsyncExitStack() as stack:
        if mode == "relay":
            daemon = await stack.enter_async_context(running_daemon(tmp_path))
            command = [sys.executable, "-m", "acpd", "acp", "--url", daemon.url]
        else:
            command = [sys.executable, "-m", "acpd", "acp", "--standalone", "--db", str(tmp_path / "alone.db")]
        env, cwd = daemon_env(tmp_path), str(tmp_path)
        initialize = {"id": 1, "method": "initialize", "params": {"protocolVersion": 1}}
        new = {"id": 2, "method": "session/new", "params": {"cwd": cwd, "mcpServers": []}}
        created = await acp_answers(command, piped(initialize, new), env)
        assert [message.get("id") for message in created if "method" not in message] == [1, 2]
        session_id = next(message["result"]["sessionId"] for message in created if message.get("id") == 2)
        resume_params = {"sessionId": session_id, "cwd": cwd, "mcpServers": []}
        prompt_params = {"sessionId": session_id, "prompt": [{"type": "text", "text": "permission edit"}]}
        answers = await acp_answers(
            command,
            piped(
                initialize,
                {"id": 2, "method": "session/resume", "params": resume_params},
                {"id": 3, "method": "session/prompt", "params": prompt_params},
            ),
            env,
        )
    assert [message["id"] for message in answers if "method" not in message] == [1, 2, 3]
    # the permission the turn asked is shown, then refused (nobody can answer it any more), so the turn ends
    assert [message["method"] for message in answers if "id" in message and "method" in message] == [
        "session/request_permission"
    ]
    assert answers[-1]["result"]["stopReason"] == "end_turn"
    updates = [message["params"]["update"] for message in answers if message.get("method") == "session/update"]
    assert any(update.get("status") == "failed" for update in updates if update["sessionUpdate"] == "tool_call_update")
