"""CLI layer: the only place that reads argv, the environment and the config file.

Commands: ``serve``, ``acp``, ``token``, ``mock-agent``, ``mock-model``, ``sessions list|show|events``,
``prompt`` (in ``cli.prompt``), ``agents list|install`` (in ``cli.agents``), ``doctor`` (``cli.doctor``),
``completion`` (``cli.completion``). What they print goes through ``cli.output``; how they fail,
through ``cli.errors``. The token is never an argument (``ps`` shows arguments to every user): it
comes from a file or ``ACPD_TOKEN``.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn

from acpd import __version__
from acpd.cli import output
from acpd.client import DEFAULT_URL
from acpd.errors import AcpdError, ConfigError
from acpd.imports import freeze_imported, serving_at_first_use
from acpd.settings import DaemonConfig

if TYPE_CHECKING:
    import argparse
    from types import SimpleNamespace

    from acpd.cli.plain_args import Declaring
    from acpd.client import Acpd
    from acpd.store.sqlite import StoreOpening

PR_SET_DUMPABLE: Final = 4
PASS_THROUGH = ("mock-agent", "mock-model")
"""Commands whose arguments are their own program's: argparse's REMAINDER drops leading options."""
Adder = Callable[["argparse.ArgumentParser"], None]


def main(argv: Sequence[str] | None = None) -> None:
    words = list(sys.argv[1:] if argv is None else argv)
    args: argparse.Namespace | SimpleNamespace | None = None
    if words[:1] == ["serve"]:
        serving_at_first_use()  # before argparse's help formatter, the token's secrets and the HTTP stack
    if words[:1] in (["serve"], ["acp"]):
        from acpd.cli.plain_args import plain_args

        args = plain_args(words[1:], _add_serve if words[0] == "serve" else _add_acp)  # None: argparse's to read
    elif words and words[0] in PASS_THROUGH:
        import argparse

        args = argparse.Namespace(rest=words[1:], run=run_mock_agent if words[0] == "mock-agent" else run_mock_model)
    if args is None:
        args = build_parser(words[0] if words else None).parse_args(words)
    try:
        code = args.run(args)
        sys.stdout.flush()  # here, not at exit: a reader gone is then a BrokenPipeError to report
    except BaseException as exc:
        from acpd.cli.errors import report
        from acpd.client.errors import AcpdClientError  # light: no client is made

        code = report(exc, refused=(AcpdClientError,))
    raise SystemExit(code)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser. Given the ``command`` being run, only that command's: building
    ``agents``' imports the presets, and every parser costs a little of every start. Without one,
    or with one that does not exist, every command's (for ``acpd --help`` and the error)."""
    import argparse  # here: ``acpd serve`` reads a plain command line without it (``plain_args``)

    parser = argparse.ArgumentParser(prog="acpd", description="Many coding agents behind one ACP surface.")
    parser.add_argument("--version", action="version", version=f"acpd {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    adders = _command_adders()
    for name, (help_text, add) in adders.items():
        if command in adders and command != name:
            continue
        passing = name in PASS_THROUGH  # their --help is their program's
        add(commands.add_parser(name, help=help_text, add_help=not passing))
    return parser


def _command_adders() -> dict[str, tuple[str, Adder]]:
    """Each command's help line, and what adds its options (called for the command being run)."""
    return {
        "serve": ("run the daemon (default http://127.0.0.1:4520, SQLite)", _add_serve),
        "acp": (
            "be an ACP agent on stdin/stdout (for editors): relay to the running daemon, else run one in process",
            _add_acp,
        ),
        "token": ("print the daemon's bearer token (created if there is none yet)", _add_token),
        "mock-agent": ("run the scripted mock ACP agent on stdio", partial(_add_pass_through, run_mock_agent)),
        "mock-model": (
            "run the mock model server (Anthropic, OpenAI, Gemini APIs) for testing agents offline",
            partial(_add_pass_through, run_mock_model),
        ),
        "sessions": ("list and inspect sessions of a running daemon", _add_sessions),
        "prompt": ("send one prompt and stream the answer", _add_prompt),
        "agents": ("list the agents acpd can start, and install the presets", _add_agents),
        "audit": ("every session's tool calls: filters, --stats, --csv", _add_audit),
        "usage": ("tokens and cost by session, agent, project, model or day", _add_usage),
        "gc": ("delete sessions older than an age (never one in use); compact the database", _add_gc),
        "doctor": ("check this machine for what acpd needs, each finding with its fix", _add_doctor),
        "completion": ("print a shell completion script (bash, zsh, fish)", _add_completion),
    }


def _add_serve(serve: Declaring) -> None:
    """``serve``'s options, for argparse and for ``plain_args`` (which reads only the kinds of
    option it knows: a new kind leaves every ``acpd serve`` to argparse)."""
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 4520; 0 picks a free one)")
    serve.add_argument("--port-file", help="write the bound port to this file once listening")
    serve.add_argument(
        "--no-auth",
        dest="auth",
        action="store_false",
        default=None,
        help="require no token (single-user sandboxes; refused unless bound to loopback)",
    )
    serve.add_argument(
        "--share-db",
        action="store_true",
        default=None,
        help="share a PostgreSQL --db with other daemons (each session served by the daemon that holds it)",
    )
    _daemon_options(serve, log_level="info")
    serve.set_defaults(run=run_serve)


def _add_acp(acp: Declaring) -> None:
    """``acp``'s options, for argparse and for ``plain_args`` (as ``_add_serve``'s)."""
    acp.add_argument("--agent", "-a", help="agent for new sessions (default: the daemon's default)")
    acp.add_argument("--url", default=os.environ.get("ACPD_URL"), help="daemon URL (default: the configured host:port)")
    acp.add_argument("--standalone", action="store_true", help="never relay: always run the daemon in process")
    _daemon_options(acp, log_level="warning")
    acp.set_defaults(run=run_acp)


def _add_token(token: argparse.ArgumentParser) -> None:
    token.add_argument("--data-dir", help="data directory (default $XDG_DATA_HOME/acpd)")
    token.add_argument("--config", help="TOML config file (default $XDG_CONFIG_HOME/acpd/config.toml if present)")
    token.set_defaults(run=run_token)


def _add_pass_through(run: Callable[[argparse.Namespace], int], parser: argparse.ArgumentParser) -> None:
    import argparse

    parser.add_argument("rest", nargs=argparse.REMAINDER)
    parser.set_defaults(run=run)


def _daemon_options(parser: Declaring, *, log_level: str) -> None:
    """What a daemon (served, or run in process by ``acp``) is configured by."""
    parser.add_argument(
        "--db", help="SQLite file, :memory:, or a postgresql:// URL (default: <data dir>/acpd.db; or ACPD_DB)"
    )
    parser.add_argument("--data-dir", help="data directory (default $XDG_DATA_HOME/acpd)")
    parser.add_argument("--agents-dir", help="where presets are installed (default <data dir>/agents)")
    parser.add_argument("--model-url", help="send every preset agent's model traffic here (or ACPD_MODEL_URL)")
    parser.add_argument("--record-agents", metavar="DIR", help="append every agent's raw traffic to DIR/*.jsonl")
    parser.add_argument("--config", help="TOML config file (default $XDG_CONFIG_HOME/acpd/config.toml if present)")
    parser.add_argument(
        "--idle-seconds",
        type=float,
        help="a session unused this long leaves memory until used again (default 300; 0: never)",
    )
    parser.add_argument(
        "--max-live-sessions",
        type=int,
        help="sessions live in memory at once, least recently used leave (default 1000)",
    )
    parser.add_argument(
        "--token-file", help="file holding the bearer token (default: ACPD_TOKEN, else <data dir>/token, created)"
    )
    parser.add_argument("--log-level", default=log_level, choices=["debug", "info", "warning", "error"])


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("ACPD_URL", DEFAULT_URL), help="daemon URL (or ACPD_URL)")
    parser.add_argument(
        "--token-file", help="file holding the bearer token (default: ACPD_TOKEN, else the local daemon's token file)"
    )


def _add_sessions(sessions: argparse.ArgumentParser) -> None:
    which = sessions.add_subparsers(required=True, metavar="ACTION")
    listing = which.add_parser("list", help="list sessions")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(run=run_sessions_list)
    show = which.add_parser("show", help="show one session")
    show.add_argument("id")
    show.set_defaults(run=run_sessions_show)
    events = which.add_parser("events", help="print a session's events, one a line")
    events.add_argument("id")
    events.add_argument("--after", type=int, default=0)
    events.add_argument("--limit", type=int, default=1000)
    events.add_argument("--follow", "-f", action="store_true", help="keep streaming new events")
    events.set_defaults(run=run_sessions_events)
    for parser in (listing, show, events):
        _client_options(parser)
        output.add_json_option(parser, lines=parser is events)
    listing.add_argument("--search", "-q", metavar="WORDS", help="full-text search of titles, prompts and replies")
    listing.add_argument("--archived", choices=("true", "false", "any"), help="archived ones: only (true), or any too")

    from acpd.cli.records import add_session_commands  # a light module: only its parsers are built here

    add_session_commands(which, _client_options, _client)


def _add_prompt(prompt: argparse.ArgumentParser) -> None:
    from acpd.cli.prompt import add_arguments

    add_arguments(prompt)
    _client_options(prompt)
    prompt.set_defaults(run=run_prompt)


def _add_agents(agents: argparse.ArgumentParser) -> None:
    from acpd.cli.agents import add_agents_commands  # imports the presets: only for `acpd agents`

    add_agents_commands(agents, run_list=run_agents_list, run_install=run_agents_install)


def _add_audit(audit: argparse.ArgumentParser) -> None:
    from acpd.cli.records import add_audit_command

    add_audit_command(audit, _client_options, _client)


def _add_usage(usage: argparse.ArgumentParser) -> None:
    from acpd.cli.records import add_usage_command

    add_usage_command(usage, _client_options, _client)


def _add_gc(gc: argparse.ArgumentParser) -> None:
    from acpd.cli.records import add_gc_command

    add_gc_command(gc, _client_options, _client)


def _add_doctor(doctor: argparse.ArgumentParser) -> None:
    from acpd.cli.doctor import add_doctor_command

    add_doctor_command(doctor)


def _add_completion(completion: argparse.ArgumentParser) -> None:
    from acpd.cli.completion import add_completion_command

    add_completion_command(completion)


# -- serve ---------------------------------------------------------------------------------------


CONFIG_SECTIONS = frozenset({"daemon", "agents", "policy"})
"""A config file's tables: a misspelt one is refused, not ignored."""
INTERNAL_AGENT_FIELDS = frozenset({"installed", "files", "home"})
"""AgentConfig fields acpd fills in itself (``files`` would let a config write anywhere)."""
ENV_SETTINGS = (
    ("db", "ACPD_DB"),
    ("token", "ACPD_TOKEN"),
    ("token_file", "ACPD_TOKEN_FILE"),
    ("data_dir", "ACPD_DATA_DIR"),
    ("agents_dir", "ACPD_AGENTS_DIR"),
    ("model_url", "ACPD_MODEL_URL"),
    ("record_agents", "ACPD_RECORD_AGENTS"),
)


def load_config(args: argparse.Namespace, env: dict[str, str]) -> DaemonConfig:
    """Merge, lowest first: defaults, the TOML file, environment, flags. A config file is checked
    with the stdlib (``config_check``): its agents and policy become pydantic models at their first
    use, not at start; the environment and the flags give strings and the types argparse made."""
    values: dict[str, Any] = {}
    path = getattr(args, "config", None) or env.get("ACPD_CONFIG")
    default_path = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "acpd" / "config.toml"
    file = Path(path) if path else default_path if default_path.is_file() else None
    if file is not None:
        values = _read_toml(file)
    from_file = set(values)
    for key, env_name in ENV_SETTINGS:
        if env.get(env_name):
            values[key] = env[env_name]
            from_file.discard(key)
    flags = (
        "host", "port", "db", "share_db", "data_dir", "agents_dir", "model_url", "record_agents", "token_file", "auth"
    )  # fmt: skip
    for key in (*flags, "idle_seconds", "max_live_sessions"):
        if getattr(args, key, None) is not None:
            values[key] = getattr(args, key)
            from_file.discard(key)
    try:
        return DaemonConfig(**values).validated()
    except ValueError as exc:
        # a value the file gave is named with the file: the file is what to edit
        if str(exc).partition(":")[0] in from_file:
            raise ConfigError(f"invalid config file {file}: [daemon] {exc}") from exc
        raise ConfigError(f"invalid configuration: {exc}") from exc


def _read_toml(path: Path) -> dict[str, Any]:
    """The file's settings: ``[daemon]``'s converted to ``DaemonConfig``'s types, the agents' and
    the policy's sections checked and kept as written (``agent_sections``, ``policy_section``)."""
    import tomllib

    from acpd import config_check

    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AcpdError(f"cannot read config file {path}: {exc}") from exc
    if unknown := sorted(set(data) - CONFIG_SECTIONS):
        raise ConfigError(
            f"invalid config file {path}: unknown section [{unknown[0]}]; sections: daemon, agents, policy"
        )
    daemon = dict(_table(path, "daemon", data.get("daemon", {})))
    policy = data.get("policy", daemon.pop("policy", None))  # [policy], else [daemon]'s policy
    agents = _table(path, "agents", data.get("agents", {}))  # [daemon]'s own "agents" is refused
    try:
        values: dict[str, Any] = config_check.daemon_values(daemon)
    except ValueError as exc:
        raise ConfigError(f"invalid config file {path}: [daemon] {exc}") from exc
    for name, spec in agents.items():
        if internal := sorted(INTERNAL_AGENT_FIELDS & set(_table(path, f"agents.{name}", spec))):
            raise AcpdError(f"cannot read config file {path}: agent {name!r}: {', '.join(internal)} cannot be set")
        _section(path, f"agents.{name}", partial(config_check.check_agent, name), spec)
    values["agent_sections"] = agents
    if policy is not None:
        _section(path, "policy", partial(config_check.check_section, schema=config_check.POLICY), policy)
        values["policy_section"] = policy
    return values


def _table(path: Path, name: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"invalid config file {path}: [{name}] must be a table (got {value!r})")
    return value


def _section(path: Path, name: str, check: Callable[[Any], None], data: object) -> None:
    try:
        check(_table(path, name, data))
    except ValueError as exc:
        raise ConfigError(f"invalid config file {path}: [{name}] {exc}") from exc


def run_serve(args: argparse.Namespace) -> int:
    import anyio

    with _collector_paused():  # until the daemon's modules are imported (_freeze_startup_objects)
        logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        _redact_logs()
        _quiet_http_clients()
        protect_environment()
        config = load_config(args, dict(os.environ))
        config, opening = _begin_store_open(config)
        backend_options = {"use_uvloop": _has_uvloop()}
        anyio.run(_serve, config, args.port_file, opening, backend="asyncio", backend_options=backend_options)
    _exit_without_teardown(0)


def _begin_store_open(config: DaemonConfig) -> tuple[DaemonConfig, StoreOpening | None]:
    """Settle the token (which makes the data directory private first), then begin opening the
    store in a thread, before the daemon's modules are imported: a new database's files and
    schema are written while they are. A refused setting still refuses before any of it."""
    from acpd.daemon.security import secured
    from acpd.store.select import is_postgres
    from acpd.store.sqlite import SqliteEventStore

    config = secured(config)
    db = config.resolved_db()
    return config, None if db == "memory" or is_postgres(db) else SqliteEventStore.begin_open(db)


async def _serve(config: DaemonConfig, port_file: str | None, opening: StoreOpening | None) -> None:
    import anyio

    from acpd.daemon.security import describe_auth
    from acpd.daemon.serve import serve
    from acpd.store.select import shown

    _freeze_startup_objects()
    async with anyio.create_task_group() as tg:
        port = await tg.start(partial(serve, config, port_file=port_file, opening=opening))
        where = f"http://{config.host}:{port}"
        shown_db = shown(config.resolved_db())
        print(f"acpd {__version__} on {where} (db: {shown_db}; {describe_auth(config)})", file=sys.stderr)


def _redact_logs() -> None:
    """Every log line passes the secrets filter: agents' stderr and frames end up in log lines."""
    from acpd.adapters.secrets import RedactingFilter

    redacting = RedactingFilter(os.environ)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redacting)


def protect_environment() -> None:
    """Keep this process's memory and environment (its API keys) from processes of the same user:
    the commands the daemon runs for agents could otherwise read ``/proc/<daemon>/environ``. As
    ssh-agent does; it also turns off core dumps. Linux only; what the daemon starts is not
    affected (an exec resets it)."""
    if sys.platform == "linux":
        import ctypes  # here: the commands that only talk to a daemon never load it (~2 ms)

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def _quiet_http_clients() -> None:
    # The model SDK's HTTP library logs every request at INFO: a line per model call in the log.
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No garbage collection until ``_freeze_startup_objects`` (or until the command fails before)."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _freeze_startup_objects() -> None:
    """Hand the collector back what the start-up made, minus the start-up itself.

    Importing creates hundreds of thousands of objects that live as long as the process, none of
    them garbage: collections during the imports (the collector was paused since the command
    began) only walk them again and again. Then ``gc.freeze`` moves them out of the collector's
    sight for good: the first full collection would otherwise walk it all (~100 ms with the SDKs
    loaded), stalling every session. No collection first: it would find a handful of objects and
    cost ~15 ms of the start."""
    freeze_imported(collect=False)
    gc.enable()


def _exit_without_teardown(code: int) -> NoReturn:
    """Leave once the daemon has stopped (its store closed, its agents gone): tearing the
    interpreter down, every module and object freed one by one, took half of an idle daemon's
    stop. Threads are waited for and exit handlers run (log handlers flush), as at a normal exit;
    ``serve``'s exit deadline still bounds a stuck thread."""
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def run_acp(args: argparse.Namespace) -> int:
    import anyio

    with _collector_paused():  # until the relay's modules are imported (_freeze_startup_objects)
        # stdout carries the protocol: every log line goes to stderr
        logging.basicConfig(
            level=args.log_level.upper(), stream=sys.stderr, format="acpd acp: %(levelname)s %(message)s"
        )
        _redact_logs()
        _quiet_http_clients()
        protect_environment()
        config = load_config(args, dict(os.environ))
        anyio.run(_acp, config, args, backend="asyncio", backend_options={"use_uvloop": _has_uvloop()})
    return 0


async def _acp(config: DaemonConfig, args: argparse.Namespace) -> None:
    from acpd.daemon.acp_stdio import run_acp_stdio

    _freeze_startup_objects()
    await run_acp_stdio(config, agent=args.agent, url=args.url, standalone=args.standalone, announce=_say)


def _say(line: str) -> None:
    print(f"acpd acp: {line}", file=sys.stderr, flush=True)


def run_token(args: argparse.Namespace) -> int:
    from acpd.daemon.security import secured

    token = secured(load_config(args, dict(os.environ))).token
    if token is None:
        raise ConfigError("the configuration turns the token off (auth = false)")
    print(token)
    return 0


def run_mock_agent(args: argparse.Namespace) -> int:
    from acpd.testing.mock_agent import main as mock_main

    return int(mock_main(args.rest))


def run_mock_model(args: argparse.Namespace) -> int:
    from acpd.testing.model_server import main as model_main

    return model_main(args.rest)


# -- client commands -----------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Acpd:
    """A client of ``args.url`` with the token from ``--token-file``, ``ACPD_TOKEN``, or (for a
    daemon on this machine) the configured data directory's token file."""
    from acpd.client import Acpd

    if args.token_file:
        from acpd.private import given_token

        return Acpd(args.url, given_token(Path(args.token_file)))
    return Acpd(args.url, data_dir=load_config(args, dict(os.environ)).resolved_data_dir())


def run_sessions_list(args: argparse.Namespace) -> int:
    params = {"limit": args.limit, "q": args.search, "archived": args.archived}
    page = _client(args).request("GET", "/v1/sessions", params={k: v for k, v in params.items() if v is not None})
    output.print_sessions(page, as_json=args.json)
    return 0


def run_sessions_show(args: argparse.Namespace) -> int:
    doc = _client(args).session(args.id).model_dump(mode="json", by_alias=True, exclude_unset=True)
    output.print_session(doc, as_json=args.json)
    return 0


def run_sessions_events(args: argparse.Namespace) -> int:
    client = _client(args)
    printer = output.EventPrinter(as_json=args.json)
    records = (client.follow if args.follow else partial(client.events, page_size=args.limit))(
        args.id, after=args.after
    )
    for record in records:
        printer.show(record.model_dump(mode="json", by_alias=True, exclude_unset=True), flush=args.follow)
    return 0


def run_prompt(args: argparse.Namespace) -> int:
    from acpd.cli.prompt import run

    return run(args, _client(args))


def run_agents_list(args: argparse.Namespace) -> int:
    from acpd.cli.output import print_agents

    if args.url:
        return print_agents(_client(args).request("GET", "/v1/agents")["items"], as_json=args.json)
    from acpd.daemon.agents import all_agent_facts

    return print_agents(all_agent_facts(load_config(args, dict(os.environ))), as_json=args.json)


def run_agents_install(args: argparse.Namespace) -> int:
    from acpd.cli.agents import install as install_agents

    return install_agents(args, load_config(args, dict(os.environ)))
