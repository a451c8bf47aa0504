"""Permission requests and limits under the session policy (DESIGN §5), in process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from acpd.adapters.base import BackendState, SessionHost
from acpd.daemon import session as session_module
from acpd.daemon.manager import SessionManager
from acpd.protocol.jsonio import JsonObject

from .helpers import all_events, daemon_frames, new_session, updates, wait_for_frame

pytestmark = pytest.mark.anyio


async def prompt_in_background(
    tg: anyio.abc.TaskGroup, client: httpx.AsyncClient, session_id: str, text: str, into: dict[str, Any]
) -> None:
    async def run() -> None:
        response = await client.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": text})
        into.update(response.json())

    tg.start_soon(run)


async def test_a_permission_request_waits_for_a_reply_over_rest(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path
) -> None:
    session = await new_session(client, workdir)
    answer: dict[str, Any] = {}
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await prompt_in_background(tg, client, session["id"], "permission edit", answer)
            await wait_for_frame(manager, session["id"], "session/request_permission")
            pending = (await client.get(f"/v1/sessions/{session['id']}/permissions")).json()["items"]
            assert len(pending) == 1
            assert set(pending[0]["availableReplies"]) == {"once", "always", "reject"}
            assert (await client.get(f"/v1/sessions/{session['id']}")).json()["status"] == "awaiting_permission"
            reply = await client.post(
                f"/v1/sessions/{session['id']}/permissions/{pending[0]['id']}", json={"reply": "once"}
            )
            assert reply.json()["outcome"] == {"outcome": "selected", "optionId": "allow"}
            again = await client.post(
                f"/v1/sessions/{session['id']}/permissions/{pending[0]['id']}", json={"reply": "reject"}
            )
            assert again.status_code == 404
    assert "permission: allow" in answer["text"]
    events = await all_events(client, session["id"])
    reply_event = next(e for e in events if "result" in e["payload"] and "outcome" in e["payload"]["result"])
    assert reply_event["sender"] == "client"
    assert reply_event["payload"]["result"]["_meta"]["acpd"]["decidedBy"] == "client"
    statuses = [u.get("status") for u in updates(events, "tool_call_update")]
    assert statuses[-1] == "completed"


async def test_a_reply_by_option_id_must_name_an_offered_option(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path
) -> None:
    session = await new_session(client, workdir)
    answer: dict[str, Any] = {}
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await prompt_in_background(tg, client, session["id"], "permission", answer)
            record = await wait_for_frame(manager, session["id"], "session/request_permission")
            url = f"/v1/sessions/{session['id']}/permissions/p{record.seq}"
            assert (await client.post(url, json={"optionId": "nope"})).status_code == 400
            assert (await client.post(url, json={"reply": "maybe"})).status_code == 400
            assert (await client.post(url, json={"optionId": "reject"})).status_code == 200
    assert "permission: reject" in answer["text"]


@pytest.mark.parametrize(
    ("policy", "kind", "expected"),
    [("allow", "edit", "allow"), ("deny", "read", "reject"), ("allow_reads", "read", "allow")],
)
async def test_a_policy_answers_permission_requests_without_asking(
    client: httpx.AsyncClient, workdir: Path, policy: str, kind: str, expected: str
) -> None:
    session = await new_session(client, workdir, policy={"permissions": policy})
    with anyio.fail_after(10):
        answer = await client.post(f"/v1/sessions/{session['id']}/prompt", json={"prompt": f"permission {kind}"})
    assert f"permission: {expected}" in answer.json()["text"]
    events = await all_events(client, session["id"])
    decided = next(e for e in events if "result" in e["payload"] and "outcome" in e["payload"]["result"])
    assert decided["sender"] == "daemon"
    assert decided["payload"]["result"]["_meta"]["acpd"]["decidedBy"] == "policy"


async def test_allow_reads_still_asks_for_edits(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path
) -> None:
    session = await new_session(client, workdir, policy={"permissions": "allow_reads"})
    answer: dict[str, Any] = {}
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await prompt_in_background(tg, client, session["id"], "permission edit", answer)
            record = await wait_for_frame(manager, session["id"], "session/request_permission")
            url = f"/v1/sessions/{session['id']}/permissions/p{record.seq}"
            await client.post(url, json={"reply": "reject"})
    assert "permission: reject" in answer["text"]


async def test_an_unanswered_permission_times_out_as_rejected(client: httpx.AsyncClient, workdir: Path) -> None:
    session = await new_session(client, workdir, policy={"permissionTimeoutSeconds": 0.2})
    with anyio.fail_after(10):
        answer = (await client.post(f"/v1/sessions/{session['id']}/prompt", json={"prompt": "permission"})).json()
    assert "permission: reject" in answer["text"]
    events = await all_events(client, session["id"])
    decided = next(e for e in events if "result" in e["payload"] and "outcome" in e["payload"]["result"])
    assert decided["payload"]["result"]["_meta"]["acpd"]["decidedBy"] == "timeout"


async def test_max_steps_cancels_the_turn_with_max_turn_requests(client: httpx.AsyncClient, workdir: Path) -> None:
    session = await new_session(client, workdir, policy={"maxSteps": 1})
    with anyio.fail_after(10):
        answer = (
            await client.post(
                f"/v1/sessions/{session['id']}/prompt", json={"prompt": "tool read\nsleep 0.5\ntool read\nsleep 30"}
            )
        ).json()
    assert answer["stopReason"] == "max_turn_requests"
    limits = daemon_frames(await all_events(client, session["id"]), "_acpd/limit_reached")
    assert limits[0]["limit"] == "maxSteps"


async def test_a_permission_asked_for_a_call_over_max_steps_is_rejected_without_asking(
    client: httpx.AsyncClient, workdir: Path
) -> None:
    session = await new_session(client, workdir, policy={"maxSteps": 1})
    with anyio.fail_after(10):
        answer = (
            await client.post(
                f"/v1/sessions/{session['id']}/prompt", json={"prompt": "tool read\npermission edit\nsleep 30"}
            )
        ).json()
    assert answer["stopReason"] == "max_turn_requests"
    events = await all_events(client, session["id"])
    [decided] = [e for e in events if "outcome" in e["payload"].get("result", {})]
    assert decided["sender"] == "daemon"
    assert decided["payload"]["result"]["_meta"]["acpd"]["decidedBy"] == "limit"  # not asked, not left to the cancel
    assert decided["payload"]["result"]["outcome"] == {"outcome": "selected", "optionId": "reject"}
    [limit] = daemon_frames(events, "_acpd/limit_reached")
    assert limit["limit"] == "maxSteps"
    over = updates(events, "tool_call")[1]["toolCallId"]
    statuses = [u.get("status") for u in updates(events, "tool_call_update") if u["toolCallId"] == over]
    assert "in_progress" not in statuses
    assert "completed" not in statuses


class AsksAfterCancel:
    """A backend that, told to cancel, still asks permission before it ends the turn (as an ACP agent
    may: the request was on its way), and ends with what it was answered."""

    def __init__(self) -> None:
        self._host: SessionHost | None = None
        self._cancelled = anyio.Event()
        self._closed = anyio.Event()

    async def run(self, host: SessionHost, *, resume_id: str | None, task_status: Any) -> None:
        self._host = host
        task_status.started(BackendState(backend_session_id="fake", how="new"))
        await self._closed.wait()
        host.backend_exited(0, "")

    async def prompt(self, prompt: list[JsonObject]) -> JsonObject:
        assert self._host is not None
        await self._cancelled.wait()
        call = {"toolCallId": "t1", "title": "Late", "kind": "edit", "status": "pending"}
        options = [{"optionId": "yes", "name": "Yes", "kind": "allow_once"}]
        request = {"jsonrpc": "2.0", "id": "late", "method": "session/request_permission"}
        answer = await self._host.request_permission({**request, "params": {"toolCall": call, "options": options}})
        return {"stopReason": answer["outcome"]["outcome"]}

    async def cancel(self) -> None:
        self._cancelled.set()

    async def set_mode(self, mode_id: str) -> None: ...

    async def set_config_option(self, config_id: str, value: Any) -> list[JsonObject] | None:
        return None

    async def set_model(self, model_id: str) -> None: ...

    async def aclose(self) -> None:
        self._closed.set()


async def test_a_permission_asked_after_the_turn_was_cancelled_is_answered_cancelled_at_once(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_module, "create_backend", lambda *args, **kwargs: AsksAfterCancel())
    session = await new_session(client, workdir)
    answer: dict[str, Any] = {}
    with anyio.fail_after(3):  # less than the 5 s an agent gets to end a cancelled turn
        async with anyio.create_task_group() as tg:
            await prompt_in_background(tg, client, session["id"], "anything", answer)
            await wait_for_frame(manager, session["id"], "session/prompt")
            assert (await client.post(f"/v1/sessions/{session['id']}/cancel")).json() == {"cancelled": True}
    assert answer["stopReason"] == "cancelled"
    events = await all_events(client, session["id"])
    [decided] = [e for e in events if "outcome" in e["payload"].get("result", {})]
    assert decided["payload"]["result"]["outcome"] == {"outcome": "cancelled"}
    assert decided["payload"]["result"]["_meta"]["acpd"]["decidedBy"] == "cancel"
    assert daemon_frames(events, "_acpd/error") == []  # no CANCEL_IGNORED: the agent ended in time


async def test_a_turn_timeout_cancels_with_a_timeout_error(client: httpx.AsyncClient, workdir: Path) -> None:
    session = await new_session(client, workdir, policy={"turnTimeoutSeconds": 0.3})
    with anyio.fail_after(10):
        answer = (await client.post(f"/v1/sessions/{session['id']}/prompt", json={"prompt": "sleep 30"})).json()
    assert answer["stopReason"] == "cancelled"
    errors = daemon_frames(await all_events(client, session["id"]), "_acpd/error")
    assert errors[0]["code"] == "TIMEOUT"


async def test_a_token_budget_stops_the_turn_with_max_tokens(client: httpx.AsyncClient, workdir: Path) -> None:
    session = await new_session(client, workdir, policy={"maxBudgetTokens": 100})
    with anyio.fail_after(10):
        answer = (
            await client.post(f"/v1/sessions/{session['id']}/prompt", json={"prompt": "usage 90 40\nsleep 30"})
        ).json()
    assert answer["stopReason"] == "max_tokens"


async def test_hidden_thinking_is_not_recorded(client: httpx.AsyncClient, workdir: Path) -> None:
    session = await new_session(client, workdir, policy={"showThinking": False})
    await client.post(f"/v1/sessions/{session['id']}/prompt", json={"prompt": "think secret thoughts\ntext hi"})
    assert updates(await all_events(client, session["id"]), "agent_thought_chunk") == []
