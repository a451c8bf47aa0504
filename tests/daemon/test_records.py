"""A session's records out and in: export as JSON, JSON lines and Markdown; import of an export."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from acpd.config import DaemonConfig
from acpd.daemon.manager import SessionManager
from acpd.daemon.markdown import MarkdownTranscript, header
from acpd.daemon.session import session_doc_defaults
from acpd.errors import RpcError
from acpd.protocol.events import EventRecord
from acpd.store.memory import MemoryEventStore
from tests.daemon.acp_client import acp_client
from tests.daemon.helpers import all_events, daemon_frames, new_session, prompted, wait_for_frame

pytestmark = pytest.mark.anyio

GOLDEN = Path(__file__).parents[1] / "golden" / "export"
UPDATE = os.environ.get("ACPD_UPDATE_GOLDEN") == "1"


async def exported(client: httpx.AsyncClient, session_id: str, fmt: str) -> httpx.Response:
    response = await client.get(f"/v1/sessions/{session_id}/export", params={"format": fmt})
    assert response.status_code == 200, response.text
    return response


def without_session_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_session_ids(v) for k, v in value.items() if k != "sessionId"}
    if isinstance(value, list):
        return [without_session_ids(v) for v in value]
    return value


async def test_a_jsonl_export_is_the_session_document_then_every_record_in_order(
    client: httpx.AsyncClient, workdir: Path
) -> None:
    session = await new_session(client, workdir, title="out")
    await prompted(client, session["id"], "text one")
    await prompted(client, session["id"], "text two")
    response = await exported(client, session["id"], "jsonl")
    assert response.headers["content-type"].startswith("application/jsonl")
    assert f'filename="{session["id"]}.jsonl"' in response.headers["content-disposition"]
    head, *lines = [json.loads(line) for line in response.text.splitlines()]
    assert head["acpdExport"] == 1
    assert (head["session"]["id"], head["session"]["title"], head["session"]["turns"]) == (session["id"], "out", 2)
    assert lines == await all_events(client, session["id"])


async def test_a_json_export_holds_what_the_jsonl_export_holds(client: httpx.AsyncClient, workdir: Path) -> None:
    session = await new_session(client, workdir)
    await prompted(client, session["id"], "text hello")
    whole = (await exported(client, session["id"], "json")).json()
    head, *lines = [json.loads(line) for line in (await exported(client, session["id"], "jsonl")).text.splitlines()]
    assert whole == {**head, "events": lines}


async def test_an_import_recreates_the_session_and_its_agent_continues_it_with_the_transcript(
    client: httpx.AsyncClient, workdir: Path
) -> None:
    source = await new_session(client, workdir, title="moving")
    await prompted(client, source["id"], "text remember the word kumquat")
    export = (await exported(client, source["id"], "jsonl")).content
    response = await client.post("/v1/sessions/import", params={"id": "moved"}, content=export)
    assert response.status_code == 201, response.text
    moved = response.json()
    assert (moved["id"], moved["title"], moved["turns"], moved["status"]) == ("moved", "moving", 1, "idle")
    before = await all_events(client, source["id"])
    after = await all_events(client, "moved")
    assert [without_session_ids(e) for e in after] == [without_session_ids(e) for e in before]
    assert all(e["sessionId"] == "moved" for e in after)
    assert all(e["payload"].get("params", {}).get("sessionId", "moved") == "moved" for e in after)
    answer = await prompted(client, "moved", "text and now")
    assert answer["turn"] == 2
    events = await all_events(client, "moved")
    assert daemon_frames(events, "_acpd/context_carried")  # the new agent session got the transcript
    carried = [e for e in events if e["payload"].get("method") == "session/prompt"][-1]
    assert carried["payload"]["params"]["prompt"] == [{"type": "text", "text": "text and now"}]


async def test_a_json_export_imports_too(client: httpx.AsyncClient, workdir: Path) -> None:
    source = await new_session(client, workdir)
    await prompted(client, source["id"], "text json")
    export = (await exported(client, source["id"], "json")).content
    response = await client.post("/v1/sessions/import", params={"id": "from-json"}, content=export)
    assert response.status_code == 201, response.text
    assert len(await all_events(client, "from-json")) == len(await all_events(client, source["id"]))


async def test_an_import_onto_a_taken_id_is_a_conflict_and_changes_nothing(
    client: httpx.AsyncClient, workdir: Path
) -> None:
    source = await new_session(client, workdir)
    await prompted(client, source["id"], "text mine")
    before = await all_events(client, source["id"])
    export = (await exported(client, source["id"], "jsonl")).content
    response = await client.post("/v1/sessions/import", content=export)
    assert response.status_code == 409
    assert response.json()["type"] == "urn:acpd:problem:session-exists"
    assert await all_events(client, source["id"]) == before


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"", "empty"),
        (b"not json at all", "line 1"),
        (b'{"acpdExport": 9, "session": {"id": "x", "agent": "mock"}}', "not an acpd export"),
        (b"[1, 2]", "line 1: not a JSON object"),
    ],
)
async def test_an_import_of_garbage_is_a_clear_problem(client: httpx.AsyncClient, body: bytes, detail: str) -> None:
    response = await client.post("/v1/sessions/import", content=body)
    assert response.status_code == 400
    assert detail in response.json()["detail"]


async def test_a_truncated_or_reordered_import_names_the_line_and_leaves_nothing_behind(
    client: httpx.AsyncClient, workdir: Path
) -> None:
    source = await new_session(client, workdir)
    await prompted(client, source["id"], "text whole")
    lines = (await exported(client, source["id"], "jsonl")).text.splitlines()
    cut = "\n".join([*lines[:3], lines[3][: len(lines[3]) // 2]])
    response = await client.post("/v1/sessions/import", params={"id": "cut"}, content=cut)
    assert response.status_code == 400
    assert response.json()["detail"].startswith("line 4:")
    swapped = "\n".join([lines[0], lines[2], lines[1], *lines[3:]])
    response = await client.post("/v1/sessions/import", params={"id": "swapped"}, content=swapped)
    assert response.status_code == 400
    assert "line 2: seq 2 where 1 was expected" in response.json()["detail"]
    for name in ("cut", "swapped"):
        assert (await client.get(f"/v1/sessions/{name}")).status_code == 404


async def test_an_import_for_an_agent_this_daemon_lacks_names_the_ones_it_has(
    client: httpx.AsyncClient, workdir: Path
) -> None:
    source = await new_session(client, workdir)
    export = (await exported(client, source["id"], "jsonl")).content
    response = await client.post("/v1/sessions/import", params={"id": "elsewhere", "agent": "nope"}, content=export)
    assert response.status_code == 400
    assert response.json()["type"] == "urn:acpd:problem:agent-not-found"
    assert "mock" in response.json()["detail"]


async def test_an_unknown_export_format_is_refused(client: httpx.AsyncClient, workdir: Path) -> None:
    session = await new_session(client, workdir)
    response = await client.get(f"/v1/sessions/{session['id']}/export", params={"format": "pdf"})
    assert response.status_code == 400
    assert "markdown" in response.json()["detail"]
    missing = await client.get("/v1/sessions/nobody/export")
    assert missing.status_code == 404


async def test_a_markdown_export_reads_as_the_conversation(client: httpx.AsyncClient, workdir: Path) -> None:
    session = await new_session(client, workdir, title="Readable")
    await prompted(client, session["id"], "think weighing it\ntool read Look around\nplan 2\ntext the answer is 42")
    response = await exported(client, session["id"], "markdown")
    assert response.headers["content-type"].startswith("text/markdown")
    text = response.text
    assert text.startswith("# Readable\n")
    assert "## Turn 1" in text
    assert "<details><summary>Thinking</summary>\n\nweighing it\n\n</details>" in text
    assert "**Tool call** Look around · read · completed" in text
    assert "- [ ] Step 1 *(in progress)*" in text
    assert "the answer is 42" in text
    assert "*Turn 1 ended: end_turn" in text


def test_the_markdown_of_a_session_with_a_diff_a_plan_a_permission_and_thinking_matches_the_reviewed_golden() -> None:
    lines = [json.loads(line) for line in (GOLDEN / "session.events.jsonl").read_text().splitlines()]
    records = [
        EventRecord(
            "SESSION", seq, "2026-12-06T00:00:00.000Z", line["sender"], line["turn"], json.dumps(line["payload"])
        )
        for seq, line in enumerate(lines, start=1)
    ]
    doc = {
        "id": "SESSION",
        "title": "Fix the parser",
        "agent": "mock",
        "agentInfo": {"name": "acpd-mock", "version": "0.1.0"},
        "cwd": "/tmp",
        "createdAt": "2026-12-06T00:00:00.000Z",
        "turns": 2,
        "usage": {"inputTokens": 10, "outputTokens": 20, "cost": {"amount": 0.01, "currency": "USD"}},
    }
    transcript = MarkdownTranscript()
    text = header(doc) + "".join(transcript.feed(record) for record in records) + transcript.end()
    expected = GOLDEN / "session.md"
    if UPDATE:
        expected.write_text(text)
    assert text == expected.read_text()


async def test_a_session_without_a_title_takes_its_first_prompts_first_line_until_the_agent_names_it(
    client: httpx.AsyncClient, workdir: Path
) -> None:
    untitled = await new_session(client, workdir)
    await prompted(client, untitled["id"], "\n  text   fix the   flaky test \nand more")
    assert (await client.get(f"/v1/sessions/{untitled['id']}")).json()["title"] == "text fix the flaky test"
    await prompted(client, untitled["id"], "title Flaky test hunt")
    assert (await client.get(f"/v1/sessions/{untitled['id']}")).json()["title"] == "Flaky test hunt"
    titled = await new_session(client, workdir, title="Mine")
    await prompted(client, titled["id"], "text something else")
    assert (await client.get(f"/v1/sessions/{titled['id']}")).json()["title"] == "Mine"
    long = await new_session(client, workdir)
    await prompted(client, long["id"], "text " + "word " * 40)
    title = (await client.get(f"/v1/sessions/{long['id']}")).json()["title"]
    assert len(title) == 80 and title.endswith("…")


async def test_search_finds_a_word_from_a_reply_and_archived_sessions_hide_unless_asked(
    client: httpx.AsyncClient, workdir: Path
) -> None:
    found = await new_session(client, workdir)
    await prompted(client, found["id"], "text the answer involves a kumquat")
    other = await new_session(client, workdir)
    await prompted(client, other["id"], "text nothing to see")
    hits = (await client.get("/v1/sessions", params={"q": "kumquat"})).json()["items"]
    assert [h["id"] for h in hits] == [found["id"]]
    assert "[kumquat]" in hits[0]["match"]["snippet"]
    assert (await client.get("/v1/sessions", params={"q": '("'})).status_code == 400
    await client.patch(f"/v1/sessions/{found['id']}", json={"archived": True})
    listed = [s["id"] for s in (await client.get("/v1/sessions")).json()["items"]]
    assert listed == [other["id"]]
    only = [s["id"] for s in (await client.get("/v1/sessions", params={"archived": "true"})).json()["items"]]
    assert only == [found["id"]]
    both = (await client.get("/v1/sessions", params={"archived": "any"})).json()["items"]
    assert {s["id"] for s in both} == {found["id"], other["id"]}
    assert (await client.get("/v1/sessions", params={"q": "kumquat"})).json()["items"] == []
    archived_hits = (await client.get("/v1/sessions", params={"q": "kumquat", "archived": "any"})).json()["items"]
    assert [h["id"] for h in archived_hits] == [found["id"]]


PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="


async def test_image_audio_and_resource_blocks_reach_an_agent_that_takes_them(
    client: httpx.AsyncClient, workdir: Path
) -> None:
    session = await new_session(client, workdir)
    blocks = [
        {"type": "text", "text": "attachments"},
        {"type": "image", "mimeType": "image/png", "data": PIXEL},
        {"type": "audio", "mimeType": "audio/wav", "data": "AAAA"},
        {"type": "resource", "resource": {"uri": "file:///notes.md", "text": "hello"}},
    ]
    with anyio.fail_after(10):
        answer = (await client.post(f"/v1/sessions/{session['id']}/prompt", json={"prompt": blocks})).json()
    png = len(base64.b64decode(PIXEL))
    assert answer["text"] == (
        f"attachments: image image/png {png} bytes; audio audio/wav 3 bytes; resource file:///notes.md 5 chars"
    )


@pytest.mark.parametrize(
    ("block", "detail"),
    [
        ({"type": "image", "mimeType": "image/png", "data": "not base64!"}, "base64"),
        ({"type": "image", "data": PIXEL}, "mimeType"),
        ({"type": "resource", "resource": {"text": "x"}}, "uri"),
        ({"type": "video", "data": PIXEL}, "not an ACP content block type"),
    ],
)
async def test_a_malformed_attachment_is_refused_before_the_turn(
    client: httpx.AsyncClient, workdir: Path, block: dict[str, Any], detail: str
) -> None:
    session = await new_session(client, workdir)
    response = await client.post(f"/v1/sessions/{session['id']}/prompt", json={"prompt": [block]})
    assert response.status_code == 400
    assert detail in response.json()["detail"]
    assert (await client.get(f"/v1/sessions/{session['id']}")).json()["turns"] == 0


async def test_an_acp_prompt_with_an_attachment_its_agent_cannot_take_gets_invalid_params(
    manager: SessionManager, workdir: Path
) -> None:
    async with acp_client(manager) as acp:
        with anyio.fail_after(10):
            await acp.initialize()
            session_id = (await acp.request("session/new", {"cwd": str(workdir), "mcpServers": []}))["sessionId"]
            blocks = [{"type": "image", "mimeType": "image/png"}]  # no data
            with pytest.raises(RpcError) as refused:
                await acp.request("session/prompt", {"sessionId": session_id, "prompt": blocks})
    assert refused.value.code == -32602


async def test_a_warm_up_goes_in_front_of_the_first_prompt_only(client: httpx.AsyncClient, workdir: Path) -> None:
    (workdir / "notes.md").write_text("the build uses make")
    context = [{"path": "notes.md"}, {"text": "Remember: tabs, not spaces"}]
    session = await new_session(client, workdir, context=context)
    first = await prompted(client, session["id"], "context\nattachments")
    notes = (workdir / "notes.md").resolve().as_uri()
    assert first["text"] == f"context: Remember: tabs, not spacesattachments: resource {notes} 19 chars"
    second = await prompted(client, session["id"], "attachments")
    assert second["text"] == "attachments: none"
    carried = daemon_frames(await all_events(client, session["id"]), "_acpd/context_carried")
    assert [(c["turn"], c["warmUp"]) for c in carried] == [(1, 2)]


@pytest.mark.parametrize(
    ("context", "detail"),
    [
        ([{"path": "../outside.txt"}], "outside the session's directories"),
        ([{"path": "missing.md"}], "no such file"),
        ([{"path": "link.md"}], "outside the session's directories"),
        ([{"path": "."}], "not a regular file"),
        ([{"url": "http://x"}], "context"),
    ],
)
async def test_a_warm_up_outside_the_sessions_directories_or_malformed_is_refused(
    client: httpx.AsyncClient, workdir: Path, context: list[dict[str, str]], detail: str
) -> None:
    (workdir.parent / "outside.txt").write_text("secret")
    (workdir / "link.md").symlink_to(workdir.parent / "outside.txt")
    response = await client.post("/v1/sessions", json={"agent": "mock", "cwd": str(workdir), "context": context})
    assert response.status_code == 400
    assert detail in response.json()["detail"]
    assert (await client.get("/v1/sessions")).json()["items"] == []


async def test_gc_deletes_old_sessions_and_keeps_those_in_use(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path
) -> None:
    idle = await new_session(client, workdir)
    await prompted(client, idle["id"], "text done")
    archived = await new_session(client, workdir)
    await client.patch(f"/v1/sessions/{archived['id']}", json={"archived": True})
    busy = await new_session(client, workdir)
    async with anyio.create_task_group() as tg:

        async def slow() -> None:
            await client.post(f"/v1/sessions/{busy['id']}/prompt", json={"prompt": "sleep 30"})

        tg.start_soon(slow)
        with anyio.fail_after(10):
            await wait_for_frame(manager, busy["id"], "session/prompt")
            fresh = (await client.post("/v1/gc", json={"olderThan": "1h"})).json()
            dry = (await client.post("/v1/gc", json={"olderThan": 0, "dryRun": True})).json()
            only_archived = (await client.post("/v1/gc", json={"olderThan": 0, "archivedOnly": True})).json()
            rest = (await client.post("/v1/gc", json={"olderThan": 0, "vacuum": True})).json()
            await client.post(f"/v1/sessions/{busy['id']}/cancel")
    assert (fresh["deleted"], fresh["kept"]) == ([], [])
    assert set(dry["deleted"]) == {idle["id"], archived["id"]} and dry["kept"] == [busy["id"]] and dry["dryRun"]
    assert only_archived["deleted"] == [archived["id"]]
    assert rest["deleted"] == [idle["id"]] and rest["kept"] == [busy["id"]] and rest["reclaimedBytes"] == 0
    listed = (await client.get("/v1/sessions", params={"archived": "any"})).json()["items"]
    assert [s["id"] for s in listed] == [busy["id"]]
    for age in ("soon", "99999999999999d", 1e308, -1):
        assert (await client.post("/v1/gc", json={"olderThan": age})).status_code == 400, age


async def test_an_import_larger_than_the_body_limit_is_refused_before_it_is_read_whole(
    client: httpx.AsyncClient,
) -> None:
    too_big = b'{"acpdExport": 1}\n' + b"x" * (8 * 1024 * 1024)
    response = await client.post("/v1/sessions/import", content=too_big)
    assert response.status_code == 413
    assert response.json()["type"] == "urn:acpd:problem:payload-too-large"
    assert (await client.get("/v1/sessions", params={"archived": "any"})).json()["items"] == []


async def old_session(store: MemoryEventStore, session_id: str, workdir: Path, *, archived: bool = False) -> None:
    """A session last updated in 2001 (``archived``: and archived then)."""
    long_ago = "2001-01-01T00:00:00.000Z"
    doc = {**session_doc_defaults(long_ago), "id": session_id, "agent": "mock", "cwd": str(workdir)}
    doc.update(updatedAt=long_ago, archivedAt=long_ago if archived else None)
    await store.append_many([], sessions=[doc])


class Sweeps:
    """What each of the manager's collections deleted, as they finish (no polling of the store)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.deleted: set[str] = set()
        self._changed = anyio.Event()
        collect = SessionManager.collect

        async def counted(manager: SessionManager, *args: Any, **kwargs: Any) -> dict[str, Any]:
            result = await collect(manager, *args, **kwargs)
            self.deleted.update(result["deleted"])
            self._changed.set()
            self._changed = anyio.Event()
            return result

        monkeypatch.setattr(SessionManager, "collect", counted)

    async def until_deleted(self, session_id: str) -> None:
        with anyio.fail_after(30):
            while session_id not in self.deleted:
                await self._changed.wait()


async def test_the_retention_setting_collects_at_start(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweeps = Sweeps(monkeypatch)
    config = DaemonConfig(data_dir=str(tmp_path / "data"), db=":memory:", retention_days=30)
    store = MemoryEventStore()
    await old_session(store, "before-start", workdir)
    async with SessionManager(config, store).running() as manager:
        fresh = await manager.create({"agent": "mock", "cwd": str(workdir)})
        await sweeps.until_deleted("before-start")  # not an hour later
        assert await store.get_session("before-start") is None
        assert await store.get_session(fresh.session_id) is not None  # a month is not up yet
    await store.aclose()


async def test_the_retention_setting_collects_again_on_every_sweep(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("acpd.daemon.manager.RETENTION_SWEEP_SECONDS", 0.05)
    sweeps = Sweeps(monkeypatch)
    config = DaemonConfig(data_dir=str(tmp_path / "data"), db=":memory:", retention_days=30)
    store = MemoryEventStore()
    async with SessionManager(config, store).running():
        for session_id in ("first-sweep", "a-later-sweep"):
            await old_session(store, session_id, workdir)
            await sweeps.until_deleted(session_id)
            assert await store.get_session(session_id) is None
    await store.aclose()


async def test_retention_of_archived_sessions_only_keeps_old_sessions_that_are_not_archived(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweeps = Sweeps(monkeypatch)
    config = DaemonConfig(
        data_dir=str(tmp_path / "data"), db=":memory:", retention_days=30, retention_archived_only=True
    )
    store = MemoryEventStore()
    await old_session(store, "old-archived", workdir, archived=True)
    await old_session(store, "old-kept", workdir)
    async with SessionManager(config, store).running():
        await sweeps.until_deleted("old-archived")
        assert await store.get_session("old-kept") is not None
        assert "old-kept" not in sweeps.deleted
    await store.aclose()
