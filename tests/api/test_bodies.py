"""REST bodies checked by the acpd.api models: a body that does not fit is a 400 naming the field,
and what the daemon records and answers reads back into the models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest
from acp import schema

from acpd.api.events import EventRecord, EventsPage
from acpd.api.models import PermissionList, PromptAnswer, Session

pytestmark = pytest.mark.anyio


async def new(client: httpx.AsyncClient, workdir: Path) -> str:
    created = await client.post("/v1/sessions", json={"agent": "mock", "cwd": str(workdir)})
    assert created.status_code == 201, created.text
    return Session.model_validate(created.json()).id


@pytest.mark.parametrize(
    ("route", "body", "named"),
    [
        ("patch", {"titel": "typo"}, 'unknown field "titel"'),
        ("patch", {"archived": "yes"}, '"archived": Input should be a valid boolean'),
        ("patch", {"policy": {"permissions": "sometimes"}}, '"policy.permissions"'),
        ("patch", {"policy": {"maxSteps": -1}}, '"policy.maxSteps"'),
        ("prompt", {"prompt": "hi", "queue": "no"}, '"queue": Input should be a valid boolean'),
        ("prompt", {"prompt": "hi", "stream": True}, 'unknown field "stream"'),
        ("prompt", {"prompt": [{"text": "no type"}]}, '"prompt.0.type": Field required'),
        ("prompt", {}, '"prompt": Field required'),
    ],
)
async def test_a_body_that_does_not_fit_its_model_is_a_400_naming_the_field(
    client: httpx.AsyncClient, workdir: Path, route: str, body: dict[str, object], named: str
) -> None:
    session_id = await new(client, workdir)
    if route == "patch":
        response = await client.patch(f"/v1/sessions/{session_id}", json=body)
    else:
        response = await client.post(f"/v1/sessions/{session_id}/prompt", json=body)

    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["type"] == "urn:acpd:problem:invalid-input"
    assert named in problem["detail"]


async def test_a_permission_reply_with_an_unknown_field_is_refused_before_it_settles_anything(
    client: httpx.AsyncClient, workdir: Path
) -> None:
    session_id = await new(client, workdir)
    async with anyio.create_task_group() as group:
        answers: list[httpx.Response] = []

        async def run() -> None:
            answers.append(await client.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "permission edit"}))

        group.start_soon(run)
        with anyio.fail_after(10):
            while not (
                pending := PermissionList.model_validate(
                    (await client.get(f"/v1/sessions/{session_id}/permissions")).json()
                )
            ).items:
                await anyio.wait_all_tasks_blocked()
        url = f"/v1/sessions/{session_id}/permissions/{pending.items[0].id}"

        refused = await client.post(url, json={"reply": "once", "remember": True})
        still = PermissionList.model_validate((await client.get(f"/v1/sessions/{session_id}/permissions")).json())
        accepted = await client.post(url, json={"reply": "once"})

    assert (refused.status_code, refused.json()["detail"]) == (400, 'unknown field "remember"')
    assert [p.id for p in still.items] == [pending.items[0].id]
    assert accepted.status_code == 200
    assert PromptAnswer.model_validate(answers[0].json()).stop_reason == "end_turn"


async def test_every_record_of_a_turn_reads_back_into_the_event_models(
    client: httpx.AsyncClient, workdir: Path
) -> None:
    session_id = await new(client, workdir)
    answer = await client.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "hello"})
    assert answer.status_code == 200

    page = EventsPage.model_validate((await client.get(f"/v1/sessions/{session_id}/events")).json())

    assert [r.seq for r in page.items] == list(range(1, len(page.items) + 1))
    assert {r.sender for r in page.items} == {"client", "agent", "daemon"}
    chunks = [r.update for r in page.items if isinstance(r.update, schema.AgentMessageChunk)]
    assert [c.content.text for c in chunks if isinstance(c.content, schema.TextContentBlock)] == ["Echo: hello"]
    assert page.items[0].method == "_acpd/agent_started"


async def test_a_turn_streamed_as_sse_carries_event_records(client: httpx.AsyncClient, workdir: Path) -> None:
    session_id = await new(client, workdir)
    headers = {"Accept": "text/event-stream"}

    with anyio.fail_after(10):
        response = await client.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "hello"}, headers=headers)

    records = [
        EventRecord.model_validate_json(line[len("data: ") :])
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]
    assert records
    assert records[-1].payload.model_dump(exclude_unset=True)["result"]["stopReason"] == "end_turn"


def test_checking_a_body_imports_no_acp_schema_models() -> None:
    """ACP's schema package alone takes longer to import than the daemon takes to start: a body is
    checked without it (the spec, built at its first request, may use it)."""
    script = (
        "import sys\n"
        "from acpd.daemon.bodies import checked\n"
        "checked({'prompt': [{'type': 'text', 'text': 'hi'}]}, 'PromptRequest')\n"
        "checked({'agent': 'mock', 'policy': {'maxSteps': 1}}, 'SessionCreate')\n"
        "print(sorted(m for m in sys.modules if m == 'acp' or m.startswith('acp.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)

    assert done.stdout.strip() == "[]"
