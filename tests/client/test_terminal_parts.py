"""The pure parts under the client and ``acpd prompt``: SSE parsing, the retry schedule, the diff a
permission request shows, the question it asks, and the exit code a turn's end becomes."""

from __future__ import annotations

import io

import httpx
import pytest

from acpd.cli.prompt import Asker, exit_code
from acpd.cli.render import DIFF_LINES_SHOWN, TurnPrinter, diff_lines
from acpd.client._common import Backoff, SseParser, translated
from acpd.client.errors import ConnectionLost, DaemonUnreachable
from acpd.client.models import PermissionRequest

OPTIONS = [
    {"optionId": "allow", "name": "Allow", "kind": "allow_once"},
    {"optionId": "always", "name": "Always allow", "kind": "allow_always"},
    {"optionId": "reject", "name": "Reject", "kind": "reject_once"},
]


def request(kind: str = "edit", content: object = None) -> PermissionRequest:
    tool_call = {"toolCallId": "call_1", "title": "Edit a.py", "kind": kind, "content": content}
    return PermissionRequest.model_validate(
        {
            "id": "p7",
            "seq": 7,
            "turn": 1,
            "createdAt": "2026-12-06T02:00:00.000Z",
            "toolCall": tool_call,
            "options": OPTIONS,
            "availableReplies": ["once", "always", "reject"],
        }
    )


def test_sse_lines_become_events_with_their_id_and_multi_line_data() -> None:
    parser = SseParser()
    lines = [
        "retry: 1000",
        "",
        ": keep-alive",
        "",
        "id: 5",
        'data: {"a":',
        "data: 1}",
        "",
        "event: error",
        "data: x",
        "",
    ]
    events = [e for line in lines if (e := parser.feed(line)) is not None]
    assert [(e.event, e.id, e.data) for e in events] == [("message", "5", '{"a":\n1}'), ("error", None, "x")]


def test_the_retry_delays_grow_to_a_cap_and_start_over_after_a_success() -> None:
    backoff = Backoff(first=0.1, cap=1.0)
    delays = [backoff.delay() for _ in range(8)]
    assert 0.05 <= delays[0] <= 0.1 and max(delays) <= 1.0 and delays[-1] >= 0.5
    backoff.reset()
    assert backoff.delay() <= 0.1


def test_a_permission_request_shows_its_title_kind_and_diff() -> None:
    err = io.StringIO()
    diff = [{"type": "diff", "path": "a.py", "oldText": "x = 1\n", "newText": "x = 2\n"}]
    TurnPrinter(out=io.StringIO(), err=err).permission(request(content=diff))
    shown = err.getvalue()
    assert "[permission p7] Edit a.py (edit)" in shown
    assert "--- a/a.py" in shown and "-x = 1" in shown and "+x = 2" in shown


def test_a_new_file_diffs_from_nothing_and_a_long_diff_is_cut() -> None:
    lines = diff_lines([{"type": "diff", "path": "new.txt", "oldText": None, "newText": "l\n" * 500}])
    assert lines[0] == "--- /dev/null" and len(lines) == DIFF_LINES_SHOWN + 1 and lines[-1].startswith("…")


def ask(typed: str, approve: str = "ask", kind: str = "edit") -> tuple[str | None, str]:
    err = io.StringIO()
    stdin = io.StringIO(typed)
    stdin.isatty = lambda: True  # type: ignore[method-assign]
    asker = Asker(TurnPrinter(out=io.StringIO(), err=err), approve, stdin, err)
    return asker(request(kind)), err.getvalue()


def test_the_question_takes_a_word_or_its_first_letter_and_asks_again_otherwise() -> None:
    assert ask("a\n")[0] == "always"
    reply, shown = ask("maybe\nonce\n")
    assert reply == "once" and "answer one of: once, always, reject" in shown


def test_the_end_of_input_rejects() -> None:
    assert ask("")[0] == "reject"


@pytest.mark.parametrize(
    ("approve", "kind", "reply"),
    [("all", "edit", "once"), ("none", "read", "reject"), ("reads", "read", "once"), ("reads", "edit", "once")],
)
def test_approve_decides_without_asking_what_it_covers(approve: str, kind: str, reply: str) -> None:
    # ("reads", "edit"): on a terminal a non-read is asked, and the typed answer is "once"
    assert ask("once\n", approve, kind)[0] == reply


@pytest.mark.parametrize(
    ("stop_reason", "rejected", "code"),
    [
        ("end_turn", False, 0),
        ("end_turn", True, 5),
        ("max_tokens", False, 3),
        ("max_turn_requests", False, 3),
        ("refusal", False, 3),
        ("cancelled", True, 130),
        (None, False, 1),
    ],
)
def test_how_a_turn_ended_is_the_exit_code(stop_reason: str | None, rejected: bool, code: int) -> None:
    assert exit_code(stop_reason, rejected=rejected) == code


@pytest.mark.parametrize(
    ("failure", "raised"),
    [
        (httpx.ConnectError("refused"), DaemonUnreachable),
        (httpx.ReadError("reset"), ConnectionLost),
        (httpx.RemoteProtocolError("incomplete chunked read"), ConnectionLost),
        (httpx.ReadTimeout("silent"), ConnectionLost),
    ],
)
def test_a_failed_connection_is_the_clients_own_error(failure: Exception, raised: type[Exception]) -> None:
    with pytest.raises(raised) as caught, translated("http://127.0.0.1:4520"):
        raise failure
    assert "127.0.0.1:4520" in str(caught.value) and caught.value.__cause__ is failure
