"""Prompt turns through REST, in process: answers, queueing, idempotency, cancel, misbehaving agents."""

from __future__ import annotations

import itertools
from pathlib import Path

import anyio
import httpx
import pytest

from acpd.daemon import turns
from acpd.daemon.manager import SessionManager
from tests.processes import pidfds, wait_all_ended

from .helpers import all_events, daemon_frames, new_session, updates, wait_for_frame

pytestmark = pytest.mark.anyio


async def prompt(client: httpx.AsyncClient, session_id: str, text: str, **kwargs: object) -> httpx.Response:
    return await client.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": text}, **kwargs)  # type: ignore[arg-type]


async def test_a_blocking_prompt_answers_with_text_stop_reason_and_seq_range(
    client: httpx.AsyncClient, workdir: Path
) -> None:
    session = await new_session(client, workdir)
    answer = (await prompt(client, session["id"], "hello there")).json()
    assert answer["stopReason"] == "end_turn"
    assert "hello there" in answer["text"]
    assert answer["turn"] == 1
    events = await all_events(client, session["id"])
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    first = next(e for e in events if e["seq"] == answer["firstSeq"])
    assert first["sender"] == "client"
    assert first["payload"]["method"] == "session/prompt"
    last = next(e for e in events if e["seq"] == answer["lastSeq"])
    assert last["payload"]["result"]["stopReason"] == "end_turn"
    assert all(e["payload"].get("params", {}).get("sessionId", session["id"]) == session["id"] for e in events)


async def test_a_blocking_answers_text_stops_at_its_limit_and_says_so(
    client: httpx.AsyncClient, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(turns, "TEXT_LIMIT_CHARS", 25)
    session = await new_session(client, workdir)
    short = (await prompt(client, session["id"], "text brief")).json()
    long = (await prompt(client, session["id"], "chunks 4 10")).json()
    assert "textTruncated" not in short
    assert (len(long["text"]), long["textTruncated"]) == (25, True)


async def test_content_block_prompts_are_accepted(client: httpx.AsyncClient, workdir: Path) -> None:
    session = await new_session(client, workdir)
    blocks = [{"type": "text", "text": "hello from blocks"}]
    answer = await client.post(f"/v1/sessions/{session['id']}/prompt", json={"prompt": blocks})
    assert "hello from blocks" in answer.json()["text"]


async def test_a_prompt_without_text_is_invalid(client: httpx.AsyncClient, workdir: Path) -> None:
    session = await new_session(client, workdir)
    response = await client.post(f"/v1/sessions/{session['id']}/prompt", json={"prompt": 42})
    assert response.status_code == 400


async def test_every_update_kind_of_a_rich_turn_is_recorded_in_order(client: httpx.AsyncClient, workdir: Path) -> None:
    session = await new_session(client, workdir)
    script = "plan 2\nthink pondering\ntool read Read a file\nusage 10 5 0.01\ntext done"
    answer = (await prompt(client, session["id"], script)).json()
    kinds = [u["sessionUpdate"] for u in updates(await all_events(client, session["id"]))]
    assert kinds[:2] == ["plan", "agent_thought_chunk"]
    assert kinds.count("tool_call") == 1
    assert kinds.index("tool_call") < kinds.index("tool_call_update")
    assert "usage_update" in kinds
    assert answer["steps"] == 1
    assert answer["usage"]["inputTokens"] == 10
    state = (await client.get(f"/v1/sessions/{session['id']}")).json()
    assert state["usage"]["inputTokens"] == 10
    assert state["usage"]["cost"]["amount"] == pytest.approx(0.01)


async def test_unknown_update_variants_and_meta_pass_through(client: httpx.AsyncClient, workdir: Path) -> None:
    session = await new_session(client, workdir)
    await prompt(client, session["id"], "meta")
    found = updates(await all_events(client, session["id"]))
    assert any(u.get("sessionUpdate") == "_mock/custom" for u in found)
    assert any(u.get("_meta") == {"mock": {"x": 1}} for u in found)


async def test_prompts_queue_and_run_one_at_a_time_in_order(client: httpx.AsyncClient, workdir: Path) -> None:
    session = await new_session(client, workdir)
    answers: dict[str, dict[str, object]] = {}

    async def send(text: str) -> None:
        answers[text] = (await prompt(client, session["id"], text)).json()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for text in ("text one", "text two", "text three"):
                tg.start_soon(send, text)
    turns = sorted(answers.values(), key=lambda a: int(str(a["turn"])))
    assert [a["turn"] for a in turns] == [1, 2, 3]
    for earlier, later in itertools.pairwise(turns):
        assert int(str(earlier["lastSeq"])) < int(str(later["firstSeq"]))


async def test_a_prompt_that_must_not_queue_is_refused_while_busy(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path
) -> None:
    session = await new_session(client, workdir)
    async with anyio.create_task_group() as tg:
        tg.start_soon(prompt, client, session["id"], "sleep 30")
        with anyio.fail_after(5):
            await wait_for_frame(manager, session["id"], "session/prompt")
        busy = await client.post(f"/v1/sessions/{session['id']}/prompt", json={"prompt": "hi", "queue": False})
        assert busy.status_code == 409
        assert busy.json()["type"] == "urn:acpd:problem:session-busy"
        await client.post(f"/v1/sessions/{session['id']}/cancel")


async def test_an_idempotency_key_makes_a_retry_return_the_first_answer(
    client: httpx.AsyncClient, workdir: Path
) -> None:
    session = await new_session(client, workdir)
    headers = {"Idempotency-Key": "abc-1"}
    first = await prompt(client, session["id"], "text once", headers=headers)
    again = await prompt(client, session["id"], "text once", headers=headers)
    assert again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    prompts = [e for e in await all_events(client, session["id"]) if e["payload"].get("method") == "session/prompt"]
    assert len(prompts) == 1


async def test_cancel_stops_a_slow_turn_with_stop_reason_cancelled(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path
) -> None:
    session = await new_session(client, workdir)
    result: dict[str, object] = {}

    async def run() -> None:
        result.update((await prompt(client, session["id"], "sleep 30")).json())

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await wait_for_frame(manager, session["id"], "session/prompt")
            assert (await client.post(f"/v1/sessions/{session['id']}/cancel")).json() == {"cancelled": True}
    assert result["stopReason"] == "cancelled"


async def test_cancel_without_a_running_turn_says_so(client: httpx.AsyncClient, workdir: Path) -> None:
    session = await new_session(client, workdir)
    assert (await client.post(f"/v1/sessions/{session['id']}/cancel")).json() == {"cancelled": False}


async def test_an_agent_error_answer_is_recorded_and_reported(client: httpx.AsyncClient, workdir: Path) -> None:
    session = await new_session(client, workdir)
    answer = (await prompt(client, session["id"], "error -32042 it broke")).json()
    assert answer["error"]["code"] == -32042
    events = await all_events(client, session["id"])
    assert events[-1]["payload"]["error"]["message"] == "it broke"


async def test_garbage_on_the_agents_stdout_becomes_an_error_event(client: httpx.AsyncClient, workdir: Path) -> None:
    session = await new_session(client, workdir)
    answer = (await prompt(client, session["id"], "garbage\ntext still here")).json()
    assert answer["stopReason"] == "end_turn"
    errors = daemon_frames(await all_events(client, session["id"]), "_acpd/error")
    assert errors[0]["code"] == "AGENT_PROTOCOL_ERROR"


async def test_an_agent_crash_mid_turn_is_an_error_and_the_next_prompt_restarts_it(
    client: httpx.AsyncClient, workdir: Path
) -> None:
    session = await new_session(client, workdir)
    crashed = await prompt(client, session["id"], "stderr about to fail\ncrash 7")
    assert crashed.status_code == 502
    assert crashed.json()["type"] == "urn:acpd:problem:agent-exited"
    exited = daemon_frames(await all_events(client, session["id"]), "_acpd/agent_exited")
    assert exited[0]["exitCode"] == 7
    assert "about to fail" in exited[0]["stderrTail"]
    again = (await prompt(client, session["id"], "text alive again")).json()
    assert again["stopReason"] == "end_turn"
    assert (await client.get("/v1/health")).status_code == 200


async def test_fs_calls_are_served_inside_the_session_directory(client: httpx.AsyncClient, workdir: Path) -> None:
    (workdir / "notes.txt").write_text("secret of the day")
    session = await new_session(client, workdir)
    answer = (await prompt(client, session["id"], f"read {workdir / 'notes.txt'}")).json()
    assert "secret of the day" in answer["text"]
    outside = (await prompt(client, session["id"], "read /etc/hostname")).json()
    assert "secret" not in outside["text"]


async def test_terminal_calls_run_in_the_session_directory(client: httpx.AsyncClient, workdir: Path) -> None:
    session = await new_session(client, workdir, policy={"permissions": "allow"})
    answer = (await prompt(client, session["id"], "run pwd && echo hi-from-terminal")).json()
    assert "hi-from-terminal" in answer["text"]
    assert str(workdir) in answer["text"]


async def detached_pid(manager: SessionManager, session_id: str) -> int:
    runtime = await manager.runtime(session_id)
    async for batch in runtime.log.follow(0):
        for record in batch:
            update = record.payload_object().get("params", {}).get("update", {})
            if "pid" in update.get("rawInput", {}):
                return int(update["rawInput"]["pid"])
    raise AssertionError("the log closed before the detached command started")


async def test_a_cancelled_turn_leaves_no_command_of_the_agent_running_in_a_session_of_its_own(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path
) -> None:
    session = await new_session(client, workdir)
    result: dict[str, object] = {}

    async def run() -> None:
        result.update((await prompt(client, session["id"], "detach 30")).json())

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            with pidfds([await detached_pid(manager, session["id"])]) as fds:
                assert (await client.post(f"/v1/sessions/{session['id']}/cancel")).json() == {"cancelled": True}
                await wait_all_ended(fds)
    assert result["stopReason"] == "cancelled"
