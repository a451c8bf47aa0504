"""Secrets, by name and by shape, never enter the event log, logs, or the commands the daemon runs (DESIGN §7)."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from acpd.adapters.base import TextEnvelope
from acpd.adapters.secrets import (
    _OTHER_CLUES,
    _SHAPE_CLUES,
    SECRET_MIN_CHARS,
    Clues,
    RedactingFilter,
    Redactor,
    redact,
    scrub,
    without_secrets,
)
from acpd.config import AgentConfig, DaemonConfig
from acpd.daemon.log import SessionLog
from acpd.daemon.manager import SessionManager
from acpd.daemon.session import SessionRuntime
from acpd.errors import RpcError
from acpd.protocol import jsonio
from acpd.store.memory import MemoryEventStore
from tests.strategies import property_settings

from .acp_client import acp_client, allow
from .helpers import all_events, new_session, wait_for_frame

pytestmark = pytest.mark.anyio

SECRET = "sk-test-0123456789abcdef"


def test_redact_hides_values_of_secret_looking_variables_only() -> None:
    env = {"MY_API_KEY": SECRET, "GH_TOKEN": "ghp-987654321", "HOME": "/home/somebody", "SHORT_KEY": "abc"}
    text = f"key={SECRET} token=ghp-987654321 home=/home/somebody short=abc"
    assert redact(text, env) == "key=*** token=*** home=/home/somebody short=abc"


async def test_an_agent_printing_its_key_on_stderr_leaves_no_trace_of_it_in_the_log(tmp_path: Path) -> None:
    script = f'echo "starting with key $MY_API_KEY" >&2; exec {sys.executable} -m acpd.testing.mock_agent'
    agent = AgentConfig(command="sh", args=("-c", script), env={"MY_API_KEY": SECRET})
    config = DaemonConfig(data_dir=str(tmp_path), db=":memory:", agents={"leaky": agent})
    store = MemoryEventStore()
    async with SessionManager(config, store).running() as manager:
        runtime = await manager.create({"agent": "leaky", "cwd": str(tmp_path)})
        turn = await manager.prompt(runtime.session_id, "crash 3")
        with anyio.fail_after(10):
            await turn.done.wait()
        records = await store.read(runtime.session_id, limit=1000)
    log = "".join(r.payload for r in records)
    assert "_acpd/agent_exited" in log
    assert "starting with key ***" in log
    assert SECRET not in log


GITHUB_TOKEN = "ghp_" + "A1b2C3d4" * 5
SHAPED = {
    "url password": ("postgres://app:hunter2pw@db.internal/app", "postgres://***@db.internal/app"),
    "GitHub token": (GITHUB_TOKEN, "***"),
    "fine-grained GitHub token": ("github_pat_" + "x1" * 20, "***"),
    "Anthropic key": ("sk-ant-api03-" + "k" * 30, "***"),
    "OpenAI key": ("sk-proj-" + "q" * 30, "***"),
    "Slack token": ("xoxb-1234567890-abcdefghij", "***"),
    "AWS key id": ("AKIAIOSFODNN7EXAMPLE", "***"),
    "Google key": ("AIza" + "S" * 35, "***"),
    "JWT": ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXBhcnQ", "***"),
    "bearer header": ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz", "Authorization: Bearer ***"),
}


@pytest.mark.parametrize("kind", list(SHAPED))
def test_scrub_masks_a_secret_by_its_shape_whatever_its_name(kind: str) -> None:
    secret, masked = SHAPED[kind]
    assert scrub(f"value: {secret} (end)") == f"value: {masked} (end)"


def _chunk(text: str, session_id: str = "s-1") -> str:
    update = {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": text}}
    return jsonio.dumps_str(
        {"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": session_id, "update": update}}
    )


ENV_SECRET = "hunter2-is-the-password"
CHUNK_TEXTS = [
    *(f"say {secret} now" for secret, _ in SHAPED.values()),
    *(secret for secret, _ in SHAPED.values()),
    f"the password is {ENV_SECRET}",
    "postgres://user:pw@db.example/x",
    "plain words, nothing to hide",
    "task-0123456789abcdefghij",
    'quoted "name": "API_TOKEN", "value": "abc"',
]


@pytest.mark.parametrize("text", CHUNK_TEXTS)
def test_a_chunk_after_a_remembered_clean_envelope_is_masked_exactly_as_a_whole_redaction_would(text: str) -> None:
    redactor, reference = Redactor({"DB_PASSWORD": ENV_SECRET}), Redactor({"DB_PASSWORD": ENV_SECRET})
    redactor.scrub_envelope(_chunk("first, clean"))  # the envelope is now remembered
    for frame in (_chunk(text), _chunk(text, "s-2"), jsonio.dumps_str({"text": text, "other": text})):
        assert redactor.scrub_envelope(frame) == reference(frame)
        assert redactor.might_change(frame) or reference(frame) == frame


@pytest.mark.parametrize("text", CHUNK_TEXTS)
def test_a_clean_fragment_between_a_clean_envelope_leaves_the_whole_as_a_whole_redaction_would(text: str) -> None:
    redactor, reference = Redactor({"DB_PASSWORD": ENV_SECRET}), Redactor({"DB_PASSWORD": ENV_SECRET})
    prefix, suffix = _chunk("\ue000").split("\ue000")
    assert redactor.envelope_clean(prefix, suffix)
    fragment = jsonio.dumps_str(text)[1:-1]  # as it sits inside the JSON string
    whole = prefix + fragment + suffix
    if redactor.fragment_clean(fragment):
        assert reference(whole) == whole
    assert redactor.fragment_clean("plain words, nothing to hide")


def test_an_envelope_with_a_secret_or_a_named_value_is_not_clean_for_fragments() -> None:
    redactor = Redactor({"DB_PASSWORD": ENV_SECRET, "ODD_TOKEN": 'with"quote-inside'})
    assert not Redactor({}).envelope_clean('{"token":"' + GITHUB_TOKEN + '","text":"', '"}')
    assert not Redactor({}).envelope_clean('{"name":"API_TOKEN","value":"', '"}')
    assert not redactor.envelope_clean('{"text":"', '"}')  # a secret value holding a quote could span it
    assert Redactor({"DB_PASSWORD": ENV_SECRET}).envelope_clean('{"text":"', '"}')


@pytest.mark.parametrize("text", CHUNK_TEXTS)
def test_a_secret_in_a_long_text_is_found_and_masked_as_in_a_short_one(text: str) -> None:
    redactor, short = Redactor({"DB_PASSWORD": ENV_SECRET}), Redactor({"DB_PASSWORD": ENV_SECRET})
    filler = "plain words and more plain words, " * 200  # past LONG_TEXT
    long = f"{filler} {text} {filler}"
    assert redactor.might_change(long) == short.might_change(text)
    assert redactor(long) == f"{filler} {short(text)} {filler}"


@property_settings(200)
@given(text=st.text(alphabet='-_AJBb:"valuesk earrKIAShfpmtgoxy/', max_size=60), pad=st.integers(0, 5000))
def test_clues_found_character_by_character_in_a_long_text_are_those_one_regex_finds(text: str, pad: int) -> None:
    clues = Clues([*_OTHER_CLUES, *_SHAPE_CLUES, ("h", "unter2")])
    padded = "." * pad + text
    assert clues.search(padded) == (clues._all.search(padded) is not None)


def test_no_secret_is_shorter_than_the_fragments_left_unscanned() -> None:
    shortest = ["a://b:c@", "sk-" + "a" * 16, "xoxb-" + "a" * 10, "AKIA" + "A" * 16, "Bearer " + "a" * 16]
    for secret in shortest:
        assert scrub(f"say {secret} now") != f"say {secret} now"
        assert len(secret) >= SECRET_MIN_CHARS
    assert Redactor({"K_TOKEN": "x" * (SECRET_MIN_CHARS - 1)})("x" * (SECRET_MIN_CHARS - 1)) == "x" * 7


def test_an_envelope_holding_a_secret_is_never_remembered_as_clean() -> None:
    redactor = Redactor({})
    leaky = _chunk("x", session_id="sk-" + "a" * 20)
    assert "sk-aaaa" not in redactor.scrub_envelope(leaky)
    assert "sk-aaaa" not in redactor.scrub_envelope(leaky)


def test_scrub_after_redacts_the_whole_text_when_the_prefix_does_not_end_with_a_quote() -> None:
    redactor = Redactor({})
    text = "key sk-" + "b" * 20
    assert redactor.scrub_after(text, 6) == "key ***"


def test_scrub_leaves_ordinary_text_and_words_that_merely_contain_a_prefix() -> None:
    text = "task-0123456789abcdefghij https://example.com/a@b user@host ghp_short TASKAKIAIOSFODNN7EXAMPLE"
    assert scrub(text) == text


def test_scrub_masks_a_pem_private_key_inside_json_and_keeps_the_json_valid() -> None:
    pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA\n-----END OPENSSH PRIVATE KEY-----"
    text = jsonio.dumps_str({"output": f"key:\n{pem}\ndone", "other": GITHUB_TOKEN})
    assert jsonio.loads(scrub(text)) == {"output": "key:\n***\ndone", "other": "***"}


def test_variables_holding_secret_shaped_values_are_kept_from_commands() -> None:
    env = {
        "DATABASE_URL": "postgres://u:pw@h/db",
        "GH_PAT": "ghp_short",
        "HOME": "/home/me",
        "GIT_AUTHOR_NAME": "Me",
        "SITE": "https://example.com",
    }
    assert without_secrets(env) == {"HOME": "/home/me", "GIT_AUTHOR_NAME": "Me", "SITE": "https://example.com"}


async def test_the_mock_agents_run_env_shows_no_secret_of_the_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u:pw@h/db")
    monkeypatch.setenv("GH_PAT", GITHUB_TOKEN)
    monkeypatch.setenv("VISIBLE_SETTING", "plain-value")
    config = DaemonConfig(data_dir=str(tmp_path), db=":memory:")
    store = MemoryEventStore()
    async with SessionManager(config, store).running() as manager:
        runtime = await manager.create({"cwd": str(tmp_path), "policy": {"permissions": "allow"}})
        turn = await manager.prompt(runtime.session_id, "run env")
        with anyio.fail_after(10):
            await turn.done.wait()
        records = await store.read(runtime.session_id, limit=1000)
    log = "".join(r.payload for r in records)
    assert "VISIBLE_SETTING=plain-value" in log  # the command ran, and its output is in the log
    assert "DATABASE_URL" not in log and "pw@h" not in log
    assert "GH_PAT" not in log and GITHUB_TOKEN not in log


async def test_a_secret_an_agent_says_never_reaches_the_event_log(tmp_path: Path) -> None:
    config = DaemonConfig(data_dir=str(tmp_path), db=":memory:")
    store = MemoryEventStore()
    async with SessionManager(config, store).running() as manager:
        runtime = await manager.create({"cwd": str(tmp_path)})
        turn = await manager.prompt(runtime.session_id, f"text the key is {GITHUB_TOKEN}")
        with anyio.fail_after(10):
            await turn.done.wait()
        records = await store.read(runtime.session_id, limit=1000)
    log = "".join(r.payload for r in records)
    assert "the key is ***" in log
    assert GITHUB_TOKEN not in log


def test_log_lines_are_redacted_by_shape_and_by_the_environments_secret_values() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter({"MY_API_KEY": SECRET, "HOME": "/home/somebody"}))
    logger = logging.getLogger("acpd.test.redaction")
    logger.addHandler(handler)
    try:
        logger.warning("agent said %s and %s from %s", SECRET, GITHUB_TOKEN, "/home/somebody")
        try:
            raise ValueError(f"bad url postgres://u:pw@h/db with {SECRET}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "agent said *** and *** from /home/somebody" in text
    assert "postgres://***@h/db" in text
    assert SECRET not in text and GITHUB_TOKEN not in text and "pw@h" not in text


def test_scrub_masks_a_key_at_the_start_of_a_line_of_json_text() -> None:
    text = jsonio.dumps_str({"output": f"line one\n{GITHUB_TOKEN}\n\tsk-ant-api03-{'k' * 30}"})
    assert jsonio.loads(scrub(text)) == {"output": "line one\n***\n\t***"}


async def test_a_stream_of_chunks_is_recorded_as_parsed_frames_would_be_with_the_secrets_among_them_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_PASSWORD", ENV_SECRET)
    taken: list[int] = []
    emit_texts = SessionRuntime.emit_texts

    async def counting(self: SessionRuntime, envelope: TextEnvelope, texts: list[str]) -> None:
        taken.append(len(texts))
        await emit_texts(self, envelope, texts)

    monkeypatch.setattr(SessionRuntime, "emit_texts", counting)
    lines = ["text first", f"text the password is {ENV_SECRET}", f"text key {GITHUB_TOKEN}", 'text say "quoted"']
    config = DaemonConfig(data_dir=str(tmp_path), db=":memory:")
    store = MemoryEventStore()
    async with SessionManager(config, store).running() as manager:
        runtime = await manager.create({"cwd": str(tmp_path)})
        turn = await manager.prompt(runtime.session_id, "\n".join([*lines, "chunks 500", *lines[1:]]))
        with anyio.fail_after(20):
            await turn.done.wait()
        records = await store.read(runtime.session_id, limit=10_000)
    assert sum(taken) >= 500  # the stream went through the templates
    chunks = [r.payload for r in records if '"agent_message_chunk"' in r.payload]
    assert len(chunks) == 4 + 500 + 3
    for payload in chunks:
        message = jsonio.loads(payload)
        assert jsonio.dumps_str(message) == payload
        assert message["params"]["sessionId"] == runtime.session_id
    texts = [jsonio.loads(p)["params"]["update"]["content"]["text"] for p in chunks]
    assert texts[1:4] == ["the password is ***", "key ***", 'say "quoted"']
    assert texts[4:504] == [f"c{i} " for i in range(500)]
    assert texts[504:] == texts[1:4]
    assert ENV_SECRET not in "".join(chunks) and GITHUB_TOKEN not in "".join(chunks)
    assert turn.text == "".join(texts)


async def test_the_value_of_a_secret_variable_of_the_daemon_is_masked_in_the_log_whatever_its_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMPANY_API_KEY", "plainlookingvalue42")
    config = DaemonConfig(data_dir=str(tmp_path), db=":memory:")
    store = MemoryEventStore()
    async with SessionManager(config, store).running() as manager:
        runtime = await manager.create({"cwd": str(tmp_path)})
        turn = await manager.prompt(runtime.session_id, "text the key is plainlookingvalue42")
        with anyio.fail_after(10):
            await turn.done.wait()
        records = await store.read(runtime.session_id, limit=1000)
    log = "".join(r.payload for r in records)
    assert "the key is ***" in log
    assert "plainlookingvalue42" not in log


def test_scrub_masks_the_value_of_a_secret_named_env_variable_or_header_in_json() -> None:
    servers = [
        {
            "name": "github",
            "command": "gh-mcp",
            "env": [{"name": "GITHUB_TOKEN", "value": "plain"}, {"name": "LOG_LEVEL", "value": "debug"}],
        },
        {"type": "http", "url": "http://h/mcp", "headers": [{"name": "X-Api-Key", "value": 'k"1'}]},
    ]
    scrubbed = jsonio.loads(scrub(jsonio.dumps_str({"mcpServers": servers})))["mcpServers"]
    assert scrubbed[0]["env"] == [{"name": "GITHUB_TOKEN", "value": "***"}, {"name": "LOG_LEVEL", "value": "debug"}]
    assert scrubbed[1]["headers"] == [{"name": "X-Api-Key", "value": "***"}]
    assert scrubbed[0]["name"] == "github"


async def test_an_agent_does_not_inherit_the_daemons_own_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACPD_TOKEN", "the-daemons-token")
    script = f'echo "token=${{ACPD_TOKEN:-none}}" >&2; exec {sys.executable} -m acpd.testing.mock_agent'
    config = DaemonConfig(
        data_dir=str(tmp_path), db=":memory:", agents={"sh": AgentConfig(command="sh", args=("-c", script))}
    )
    store = MemoryEventStore()
    async with SessionManager(config, store).running() as manager:
        runtime = await manager.create({"agent": "sh", "cwd": str(tmp_path)})
        turn = await manager.prompt(runtime.session_id, "crash 3")
        with anyio.fail_after(10):
            await turn.done.wait()
        records = await store.read(runtime.session_id, limit=1000)
    log = "".join(r.payload for r in records)
    assert "token=none" in log


URL_SECRET = "postgres://u:hunter2pw@h/db"
NAMED_SECRET = "plainlookingvalue42"
SAID = f"db={URL_SECRET} pat={GITHUB_TOKEN} key={NAMED_SECRET}"
"""What an agent prints: a secret by shape twice and the value of a secret variable of the daemon."""


def assert_masked(text: str) -> None:
    assert "hunter2pw" not in text and GITHUB_TOKEN not in text and NAMED_SECRET not in text
    assert "db=postgres://***@h/db pat=*** key=***" in text


async def test_a_blocking_prompts_answer_and_the_session_show_secrets_masked_like_the_log(
    client: httpx.AsyncClient, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMPANY_API_KEY", NAMED_SECRET)
    session = await new_session(client, workdir)
    with anyio.fail_after(10):
        answer = await client.post(
            f"/v1/sessions/{session['id']}/prompt", json={"prompt": f"text {SAID}\ntitle {SAID}"}
        )
        document = (await client.get(f"/v1/sessions/{session['id']}")).json()
        events = await all_events(client, session["id"])
    assert answer.status_code == 200
    assert_masked(answer.json()["text"])
    assert_masked(document["title"])
    assert_masked(jsonio.dumps_str(events))


async def test_the_problem_of_a_turn_whose_agent_exited_shows_its_text_masked(
    client: httpx.AsyncClient, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMPANY_API_KEY", NAMED_SECRET)
    session = await new_session(client, workdir)
    with anyio.fail_after(10):
        answer = await client.post(f"/v1/sessions/{session['id']}/prompt", json={"prompt": f"text {SAID}\ncrash 3"})
    assert answer.status_code == 502
    assert_masked(answer.json()["text"])


async def test_an_agents_error_answer_shows_its_message_masked(
    client: httpx.AsyncClient, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMPANY_API_KEY", NAMED_SECRET)
    session = await new_session(client, workdir)
    with anyio.fail_after(10):
        answer = await client.post(f"/v1/sessions/{session['id']}/prompt", json={"prompt": f"error -32000 {SAID}"})
    assert_masked(answer.text)


async def test_a_pending_permission_shows_the_title_the_log_shows(
    manager: SessionManager, client: httpx.AsyncClient, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMPANY_API_KEY", NAMED_SECRET)
    session = await new_session(client, workdir, policy={"permissions": "ask"})
    turn = await manager.prompt(session["id"], f"run echo {SAID}")
    with anyio.fail_after(10):
        await wait_for_frame(manager, session["id"], "session/request_permission")
        pending = (await client.get(f"/v1/sessions/{session['id']}/permissions")).json()["items"]
        await manager.cancel(session["id"])
        await turn.done.wait()
    assert len(pending) == 1
    assert_masked(jsonio.dumps_str(pending))


async def test_an_acp_client_gets_answers_and_permission_requests_with_secrets_masked(
    manager: SessionManager, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMPANY_API_KEY", NAMED_SECRET)
    async with acp_client(manager) as acp:
        acp.answer_permission = allow
        with anyio.fail_after(10):
            await acp.initialize()
            session_id = (await acp.new_session(str(workdir)))["sessionId"]
            await acp.prompt(session_id, f"text {SAID}\nrun echo {SAID}")
            with pytest.raises(RpcError) as failed:
                await acp.prompt(session_id, f"error -32000 {SAID}")
    assert_masked(acp.texts(session_id))
    assert_masked(jsonio.dumps_str(acp.permission_requests))
    assert_masked(failed.value.message)


def test_a_secret_value_that_spans_json_syntax_is_masked_in_strings_and_the_frame_stays_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COMPANY_API_KEY", "12345678")
    log = SessionLog(MemoryEventStore(), "s", 0)
    frame, text = log.scrub_frame({"used": 123456789, "text": "code 12345678 here"})
    assert frame == {"used": 123456789, "text": "code *** here"}
    assert jsonio.loads(text) == frame
