"""What starting costs: serving and relaying import nothing they do not need (checked in a fresh
interpreter: a real ``acpd serve``, asked for its modules once it has answered its first request),
and the relay's own health probe tells an acpd daemon from anything else."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import types
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketStream

from acpd import imports
from acpd.daemon.acp_stdio import daemon_answers
from acpd.testing.daemon import daemon_env

pytestmark = pytest.mark.anyio

SERVING = """
import gc, json, os, signal, socket, sys, threading
BEFORE = sorted(sys.modules)  # loaded before acpd could defer them (coverage's start-up hook in CI)

from acpd.cli import main

ready, told = os.pipe()

def report() -> None:
    # When the daemon answers its first request: what it has imported, then stop it as a user would.
    port = int(os.read(ready, 64))
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"GET /v1/health HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n")
        answer = b"".join(iter(lambda: conn.recv(4096), b""))
    collector = {"enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}
    head = answer.split(b"\\r\\n")[0].decode()
    answer = {"health": head, "modules": sorted(sys.modules), "collector": collector, "before": BEFORE}
    print(json.dumps(answer), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=report, daemon=True).start()
main(["serve", "--port", "0", "--port-file", f"/dev/fd/{told}", "--db", ":memory:", *sys.argv[2:]])
"""
FIRST_USES = """
import json, os, signal, socket, sys, threading
BEFORE = set(sys.modules)  # loaded before acpd could defer them (coverage's start-up hook in CI): not acpd's to defer

from acpd.cli import main
from acpd.imports import COMPRESSION, SERVING_AT_FIRST_USE
from acpd.settings import default_data_dir

ready, told = os.pipe()
paths = sys.argv[2:]
DEFERRED = (*SERVING_AT_FIRST_USE, *COMPRESSION)

def get(port: int, path: str, token: str | None) -> list[str]:
    with socket.create_connection(("127.0.0.1", port)) as conn:
        auth = f"Authorization: Bearer {token}\\r\\n" if token else ""
        conn.sendall(f"GET {path} HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n{auth}\\r\\n".encode())
        answer = b"".join(iter(lambda: conn.recv(65536), b""))
    head, _, body = answer.partition(b"\\r\\n\\r\\n")
    return [head.split(b"\\r\\n")[0].decode(), body[:400].decode(errors="replace")]

def report() -> None:
    # What the daemon has imported once healthy, then what each path answers (each a first use).
    port = int(os.read(ready, 64))
    health = get(port, "/v1/health", None)
    modules = sorted(sys.modules)
    ran = [name for name in DEFERRED if name not in BEFORE and "__getattr__" not in vars(sys.modules[name])]
    from acpd.private import read_token, token_path

    token = read_token(token_path(default_data_dir(os.environ)))
    answers = {path: get(port, path, token) for path in paths}
    used = sorted(sys.modules)
    print(json.dumps({"health": health, "modules": modules, "ran": ran, "answers": answers, "used": used}), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=report, daemon=True).start()
main(["serve", "--port", "0", "--port-file", f"/dev/fd/{told}", "--db", ":memory:"])
"""
"""A real ``acpd serve``: what it has imported once it answered its health, then what it answers at
the first use of each path given (what it imports only then)."""
AGENT_FACTS = """
import json, sys
from acpd.config import AgentConfig
from acpd.daemon.agents import all_agent_facts
from acpd.settings import DaemonConfig

config = DaemonConfig(db=":memory:", data_dir=sys.argv[1], agents={"native": AgentConfig(kind="claude-native")})
usable = [
    {f["name"]: f for f in all_agent_facts(config, env)}["native"]["usable"]
    for env in ({"ANTHROPIC_API_KEY": "sk-test"}, {})
]
print(json.dumps({"modules": sorted(sys.modules), "usable": usable}))
"""
RELAYING = """
import json, sys
from acpd.cli import build_parser
from acpd.daemon.acp_stdio import run_acp_stdio
print(json.dumps({"modules": sorted(sys.modules)}))
"""
CLIENT = """
import json, ssl, sys

loaded = []
load = ssl.SSLContext.load_verify_locations

def spy(self, *args, **kwargs):
    loaded.append(repr(args))
    return load(self, *args, **kwargs)

ssl.SSLContext.load_verify_locations = spy
from acpd.client import Acpd

Acpd(sys.argv[2], token="").close()
print(json.dumps({"modules": sorted(sys.modules), "certificates": len(loaded)}))
"""
COMMAND_LINE = """
import json, sys
before = sorted(sys.modules)  # coverage's start-up hook in CI: not the command line's doing
import acpd.cli
print(json.dumps({"modules": sorted(sys.modules), "before": before}))
"""
HEAVY = ("anthropic", "acp", "httpx", "acpd.adapters.claude_native.backend", "acpd.testing")
"""The model SDK, the ACP schema package, the CLI's HTTP client, and the test kit."""
CONFIGURATION = ("pydantic", "acpd.config", "acpd.presets", "click", "acpd.api", "acpd.daemon.openapi")
"""What an idle daemon does without: the agents' configuration models (with the first session),
the API models and the spec built from them (with the first body or spec asked for), and uvicorn's
command line (never)."""
SPAWNING = ("acpd.transports.process", "acpd.transports.contained", "acpd.transports.stdio", "acpd.adapters.terminals")
"""What a daemon that has started no agent and no terminal does without: the spawn server's client."""
ENGINE = ("uvicorn", "starlette", "acpd.daemon.manager", "acpd.daemon.session", "acpd.adapters.registry")
"""What a relay never runs: the daemon's HTTP server and session engine."""


def imported_by(script: str, tmp_path: Path, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=daemon_env(tmp_path),  # no config file of the user's
    )
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


def loaded(modules: object, package: str) -> bool:
    assert isinstance(modules, list)
    return any(name == package or name.startswith(package + ".") for name in modules)


CUSTOM_AGENT = """
[daemon]
idle_seconds = 30
[agents.mine]
command = "mine"
args = ["--acp"]
clientCapabilities = { terminal = false }
[policy]
maxSteps = 10
"""
"""A config file as users write one (and as benchmarks/versus.py runs acpd): checked at start
without pydantic, its agents and policy built at their first use."""


@pytest.mark.parametrize("config_file", [False, True], ids=["no-config-file", "config-file"])
def test_a_daemon_answering_its_first_request_has_imported_nothing_heavy(tmp_path: Path, config_file: bool) -> None:
    extra = []
    if config_file:
        (tmp_path / "acpd.toml").write_text(CUSTOM_AGENT)
        extra = ["--config", str(tmp_path / "acpd.toml")]
    answer = imported_by(SERVING, tmp_path, *extra)
    assert answer["health"] == "HTTP/1.1 200 OK"
    heavy = (*HEAVY, *CONFIGURATION, *SPAWNING, "websockets")
    assert [package for package in heavy if loaded(answer["modules"], package)] == []
    parsing = [name for name in ("argparse", "gettext") if not loaded(answer["before"], name)]
    assert [name for name in parsing if loaded(answer["modules"], name)] == []  # a plain command line: plain_args
    collector = answer["collector"]
    assert isinstance(collector, dict)
    assert collector["enabled"]  # paused while the daemon imported its modules, not after
    assert collector["frozen"] > 10_000  # then what they made, out of the collector's sight


OK = "HTTP/1.1 200 OK"
AT_FIRST_USE = {
    "/ui": (OK, "<!doctype html>"),  # importlib.resources
    "/docs/docs.js": (OK, ""),  # importlib.resources
    "/v1/audit/tool-calls?format=csv": (OK, "sessionId,agent,project,"),  # csv
    "/v1/no-such-thing": ("HTTP/1.1 404 Not Found", "Not Found"),  # http.client: Starlette's 404's reason
    # The lazily routed modules (acpd.daemon.lazy_routes), each answering its first request:
    "/v1/acp": (OK, '{"servers":[]}'),  # acp_http, and the ACP face under it
    "/acp": ("HTTP/1.1 400 Bad Request", "the Acp-Connection-Id header is required"),  # acp_remote
    "/v1/rpc": ("HTTP/1.1 426 Upgrade Required", "urn:acpd:problem:upgrade-required"),  # ws
    "/v1/sessions/nope/link": ("HTTP/1.1 426 Upgrade Required", "urn:acpd:problem:upgrade-required"),  # client_links
    "/v1/sessions/nope/turns": ("HTTP/1.1 404 Not Found", "urn:acpd:problem:session-not-found"),  # records
    "/v1/usage": (OK, '"items":[]'),  # audit
    "/v1/agents/nope/install": ("HTTP/1.1 405 Method Not Allowed", "method-not-allowed"),  # agent_install
    "/v1/openapi.json": (OK, '{"openapi":"3.1.0"'),  # docs
}
"""Paths whose answer needs a module an idle daemon does without: the status, and what the body holds."""
LAZY_ROUTES = (
    "acpd.daemon.acp_http",
    "acpd.daemon.acp_remote",
    "acpd.daemon.acp_face",
    "acpd.daemon.acp_records",
    "acpd.daemon.ws",
    "acpd.daemon.client_links",
    "acpd.daemon.records",
    "acpd.daemon.audit",
    "acpd.daemon.agent_install",
    "acpd.daemon.docs",
    "acpd.rpc",
    "acpd.daemon.session_files",
    "acpd.daemon.retention",
)
"""The modules the route table imports at their first request (``acpd.daemon.lazy_routes``), and
what only they and the sessions' own starts need: the JSON-RPC peer, exported sessions' files and
retention's dates."""
DEFERRED = (
    "importlib.resources",
    "csv",
    "logging.handlers",
    "email.parser",
    "acpd.store.postgres",
    "asyncpg",
    *LAZY_ROUTES,
)
"""Imported by a daemon only with their first use: the packaged pages' files, the CSV writer, what
the code of ``acpd.imports.SERVING_AT_FIRST_USE`` imports, the PostgreSQL store, and the lazily
routed modules."""


def test_what_an_idle_daemon_does_without_it_imports_at_its_first_use(tmp_path: Path) -> None:
    answer = imported_by(FIRST_USES, tmp_path, *AT_FIRST_USE)
    assert isinstance(answer["health"], list)
    assert answer["health"][0] == "HTTP/1.1 200 OK"
    assert [name for name in DEFERRED if loaded(answer["modules"], name)] == []
    assert answer["ran"] == []  # imported by uvicorn and Starlette, their code not run yet
    answers = answer["answers"]
    assert isinstance(answers, dict)
    for path, (status, holds) in AT_FIRST_USE.items():
        answered, body = answers[path]
        assert (answered, holds in body) == (status, True), path
    assert [name for name in LAZY_ROUTES if not loaded(answer["used"], name)] == []  # imported by their first use


FIRST_SESSION = """
import json, os, signal, socket, sys, threading
BEFORE = set(sys.modules)  # loaded before acpd could defer them (coverage's start-up hook in CI): not acpd's to defer

from acpd.cli import main
from acpd.imports import SESSIONS_AT_FIRST_USE
from acpd.settings import default_data_dir

ready, told = os.pipe()

def call(port: int, method: str, path: str, token: str | None, body: dict | None = None) -> list[str]:
    data = json.dumps(body).encode() if body is not None else b""
    auth = f"Authorization: Bearer {token}\\r\\n" if token else ""
    head = f"{method} {path} HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n{auth}Content-Type: application/json\\r\\n"
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(f"{head}Content-Length: {len(data)}\\r\\n\\r\\n".encode() + data)
        answer = b"".join(iter(lambda: conn.recv(65536), b""))
    status, _, body = answer.partition(b"\\r\\n\\r\\n")
    return [status.split(b"\\r\\n")[0].decode(), body.decode(errors="replace")]

def ran() -> list[str]:
    names = [name for name in SESSIONS_AT_FIRST_USE if name not in BEFORE]
    return [name for name in names if "__getattr__" not in vars(sys.modules[name])]

def report() -> None:
    # What the daemon has run once healthy, then once it has served a session's create and prompt.
    port = int(os.read(ready, 64))
    health = call(port, "GET", "/v1/health", None)
    idle = {"ran": ran(), "modules": sorted(sys.modules)}
    from acpd.private import read_token, token_path

    token = read_token(token_path(default_data_dir(os.environ)))
    created = call(port, "POST", "/v1/sessions", token, {"agent": "mock", "cwd": sys.argv[1]})
    session = json.loads(created[1])["id"]
    prompted = call(port, "POST", f"/v1/sessions/{session}/prompt", token, {"prompt": "hello"})
    answer = {"health": health, "idle": idle, "created": created[0], "prompted": prompted, "ran": ran()}
    print(json.dumps(answer), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=report, daemon=True).start()
main(["serve", "--port", "0", "--port-file", f"/dev/fd/{told}", "--db", ":memory:"])
"""
"""A real ``acpd serve``: what of its session engine it has run once healthy, and once it has
created a session and answered a prompt on it."""
ENGINE_ONLY = (
    "acpd.daemon.permissions",
    "acpd.daemon.acp_views",
    "acpd.daemon.clients",
    "acpd.daemon.transcript",
    "acpd.adapters.base",
    "acpd.adapters.workspace",
)
"""What only the session engine imports: not even in ``sys.modules`` before the first session."""


def test_a_daemon_runs_its_session_engine_with_its_first_session_not_at_start(tmp_path: Path) -> None:
    answer = imported_by(FIRST_SESSION, tmp_path)
    assert isinstance(answer["health"], list)
    assert answer["health"][0] == "HTTP/1.1 200 OK"
    idle = answer["idle"]
    assert isinstance(idle, dict)
    assert idle["ran"] == []  # imported by the session manager, by module: their code not run yet
    assert [name for name in ENGINE_ONLY if loaded(idle["modules"], name)] == []
    assert answer["created"] == "HTTP/1.1 201 Created"
    prompted = answer["prompted"]
    assert isinstance(prompted, list)
    assert prompted[0] == "HTTP/1.1 200 OK"
    assert json.loads(prompted[1])["text"] == "Echo: hello"
    # All of it by the first session, but the titles a model writes (with the first such title).
    ran = answer["ran"]
    assert isinstance(ran, list)
    assert [name for name in imports.SESSIONS_AT_FIRST_USE if name not in ran] == ["acpd.daemon.titles"]


AT_FIRST_USE_IN_PROCESS = """
import json, logging, sys
BEFORE = set(sys.modules)  # loaded before acpd could defer them (coverage's start-up hook in CI): not acpd's to defer

from acpd.imports import COMPRESSION, SERVING_AT_FIRST_USE, serving_at_first_use

serving_at_first_use()
import bz2, calendar, hashlib, html, lzma, shutil
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from acpd.daemon.uvicorn_parts import Config

ran = [
    name
    for name in (*SERVING_AT_FIRST_USE, *COMPRESSION)
    if name not in BEFORE and "__getattr__" not in vars(sys.modules[name])
]
Config(app=None, log_config=sys.modules["uvicorn.config"].LOGGING_CONFIG).configure_logging()  # as uvicorn.run
handlers = [type(handler).__name__ for handler in logging.getLogger("uvicorn").handlers]
cookies = Request({"type": "http", "headers": [(b"cookie", b'a="b c"')]}).cookies
response = Response()
response.set_cookie("d", "e")
print(json.dumps({
    "ran": ran,
    "handlers": handlers,
    "detail": HTTPException(404).detail,
    "cookies": cookies,
    "set": response.headers["set-cookie"],
    "escaped": html.unescape(html.escape("<&eacute;>")),
    "epoch": calendar.timegm((1970, 1, 2, 0, 0, 0)),
    "digest": hashlib.sha256(b"").hexdigest()[:8],
    "archives": [shutil._BZ2_SUPPORTED, shutil._LZMA_SUPPORTED],
    "round trips": [bz2.decompress(bz2.compress(b"x")).decode(), lzma.decompress(lzma.compress(b"y")).decode()],
}))
"""


def test_what_uvicorn_and_starlette_import_for_later_works_at_its_first_use(tmp_path: Path) -> None:
    answer = imported_by(AT_FIRST_USE_IN_PROCESS, tmp_path)
    assert answer["ran"] == []  # imported, not run
    assert answer["handlers"] == ["StreamHandler"]  # logging.config's dictConfig, with uvicorn's configuration
    assert answer["detail"] == "Not Found"  # http.client's reason phrases
    assert answer["cookies"] == {"a": "b c"}  # http.cookies
    assert answer["set"] == "d=e; Path=/; SameSite=lax"
    assert answer["escaped"] == "<&eacute;>"  # html, with its entities
    assert answer["epoch"] == 86400  # calendar
    assert answer["digest"] == "e3b0c442"  # hashlib
    assert answer["archives"] == [True, True]  # shutil knows bz2 and lzma as it would
    assert answer["round trips"] == ["x", "y"]


def test_telling_the_agents_apart_needs_no_model_sdk(tmp_path: Path) -> None:
    answer = imported_by(AGENT_FACTS, tmp_path)
    assert [package for package in (*HEAVY, "websockets") if loaded(answer["modules"], package)] == []
    assert answer["usable"] == [True, False]  # claude-native's facts are decided without its SDK


def test_the_relay_imports_no_daemon_engine_and_no_http_client(tmp_path: Path) -> None:
    answer = imported_by(RELAYING, tmp_path)
    assert [package for package in (*HEAVY, *ENGINE) if loaded(answer["modules"], package)] == []


def test_the_command_line_loads_ctypes_only_for_the_processes_it_protects(tmp_path: Path) -> None:
    # acpd serve and acpd acp make themselves non-dumpable through it; a command that only talks
    # to a daemon (acpd sessions list, acpd prompt) has no use for it
    answer = imported_by(COMMAND_LINE, tmp_path)
    assert not loaded(answer["modules"], "ctypes") or loaded(answer["before"], "ctypes")
    assert loaded(answer["modules"], "acpd.cli")


@pytest.mark.parametrize(("url", "certificates"), [("http://127.0.0.1:4520", False), ("https://acpd.test", True)])
def test_a_cli_client_imports_no_command_line_of_httpx_and_trusts_certificates_only_for_https(
    tmp_path: Path, url: str, certificates: bool
) -> None:
    answer = imported_by(CLIENT, tmp_path, url)
    assert loaded(answer["modules"], "httpx")
    assert [package for package in ("click", "rich", "pygments") if loaded(answer["modules"], package)] == []
    assert bool(answer["certificates"]) is certificates  # loading them is ~40 ms of a command


@asynccontextmanager
async def answering(answer: bytes | None, requests: list[bytes]) -> AsyncIterator[str]:
    """A server on 127.0.0.1 that records each request's head and sends ``answer`` (None: nothing,
    ever). Yields its URL, with a path prefix."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")

    async def reply(stream: SocketStream) -> None:
        async with stream:
            head = b""
            while b"\r\n\r\n" not in head:
                head += await stream.receive()
            requests.append(head)
            if answer is not None:
                await stream.send(answer)
            else:
                await anyio.sleep_forever()

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, reply)
        yield f"http://127.0.0.1:{listener.extra(anyio.abc.SocketAttribute.local_port)}/base"
        tg.cancel_scope.cancel()


HEALTHY = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n{"status":"ok"}'


async def test_the_relay_probe_knows_a_daemon_by_its_health_answer() -> None:
    requests: list[bytes] = []
    with anyio.fail_after(10):
        async with answering(HEALTHY, requests) as url:
            assert await daemon_answers(url)
    assert requests[0].startswith(b"GET /base/v1/health HTTP/1.0\r\n")


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nnot json!",
        b'HTTP/1.1 200 OK\r\ncontent-length: 17\r\n\r\n{"status":"down"}',
        b"SSH-2.0-OpenSSH_9.2\r\n",
        b"",
        None,
    ],
    ids=["not-found", "not-json", "not-ok", "not-http", "closed-at-once", "silent"],
)
async def test_the_relay_probe_takes_nothing_else_for_a_daemon(answer: bytes | None) -> None:
    with anyio.fail_after(10):
        async with answering(answer, []) as url:
            assert not await daemon_answers(url)


async def test_the_relay_probe_finds_no_daemon_where_nothing_listens() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    with anyio.fail_after(10):
        assert not await daemon_answers(f"http://127.0.0.1:{port}")


class _Node:
    """An object that can sit in a reference cycle and be watched through a weak reference."""

    def __init__(self) -> None:
        self.other: object = self


def test_what_a_first_use_imported_is_frozen_once_and_garbage_is_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imports._Imported, "modules", len(sys.modules))  # as after start-up's freeze
    try:
        before = gc.get_freeze_count()
        imports.freeze_imported()
        assert gc.get_freeze_count() == before  # nothing imported since: a comparison, nothing frozen
        monkeypatch.setitem(sys.modules, "acpd_first_use_probe", types.ModuleType("acpd_first_use_probe"))
        kept, garbage = [_Node()], weakref.ref(_Node())  # a cycle nothing refers to
        imports.freeze_imported()
        assert gc.get_freeze_count() > before
        assert garbage() is None  # collected first, not frozen for good
        assert not any(o is kept for o in gc.get_objects())  # what lives is out of the collector's sight
    finally:
        gc.unfreeze()
