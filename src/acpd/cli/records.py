"""CLI layer: the commands on a daemon's records: ``acpd sessions export|import|fork|turns|rename|
archive|unarchive|rm``, ``acpd audit``, ``acpd usage`` and ``acpd gc``. Each parses its arguments, calls the
client and prints through ``output``; it must not hold daemon logic nor speak HTTP itself.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from acpd.cli import output

if TYPE_CHECKING:
    from acpd.client import Acpd

ClientOf = Callable[[argparse.Namespace], "Acpd"]
AddClientOptions = Callable[[argparse.ArgumentParser], None]

TURN_COLUMNS: Final[Sequence[output.Column]] = (
    ("TURN", lambda t: t["turn"]),
    ("STOP", lambda t: t.get("stopReason") or t.get("error")),
    ("STEPS", lambda t: t.get("steps")),
    ("TOKENS", lambda t: (t.get("usage") or {}).get("totalTokens")),
    ("COST", lambda t: _cost((t.get("usage") or {}).get("cost"))),
    ("STARTED", lambda t: t.get("startedAt")),
    ("PROMPT", lambda t: t.get("prompt")),
)
TOOL_CALL_COLUMNS: Final[Sequence[output.Column]] = (
    ("STARTED", lambda r: r.get("startedAt")),
    ("SESSION", lambda r: r.get("sessionId")),
    ("AGENT", lambda r: r.get("agent")),
    ("KIND", lambda r: r.get("kind")),
    ("STATUS", lambda r: r.get("status")),
    ("OUTCOME", lambda r: r.get("outcome")),
    ("BY", lambda r: r.get("decidedBy")),
    ("TITLE", lambda r: r.get("title")),
)
USAGE_COLUMNS: Final[Sequence[output.Column]] = (
    ("KEY", lambda u: u.get("key")),
    ("TURNS", lambda u: u.get("turns")),
    ("INPUT", lambda u: u.get("inputTokens")),
    ("OUTPUT", lambda u: u.get("outputTokens")),
    ("CACHED", lambda u: u.get("cachedReadTokens")),
    ("TOTAL", lambda u: u.get("totalTokens")),
    ("COST", lambda u: _cost(u.get("cost"))),
)
AUDIT_FILTERS: Final = ("session", "agent", "project", "kind", "status", "decided-by", "since", "until")


def add_session_commands(which: Any, client_options: AddClientOptions, client_of: ClientOf) -> None:
    """``acpd sessions export|import|fork|turns|rename|archive|unarchive|rm``."""
    export = which.add_parser("export", help="write a session out: json, jsonl or markdown")
    export.add_argument("id")
    export.add_argument("--format", "-F", choices=("json", "jsonl", "markdown"), default="json")
    export.add_argument("--output", "-o", metavar="FILE", help="write here (default: standard output)")
    imported = which.add_parser("import", help="recreate a session from a json or jsonl export")
    imported.add_argument("file", help="the export (- for standard input)")
    for name in ("id", "agent", "cwd"):
        imported.add_argument(f"--{name}", help=f"the new session's {name} (default: the export's)")
    fork = which.add_parser("fork", help="a new session with this one's history")
    fork.add_argument("id")
    fork.add_argument("--at-seq", type=int, help="keep the history up to this seq (default: its finished turns)")
    for name in ("agent", "title"):
        fork.add_argument(f"--{name}", help=f"the fork's {name}")
    fork.add_argument("--new-id", help="the fork's id (default: a new one)")
    turns = which.add_parser("turns", help="a session's turns: stop reason, steps, tokens, cost")
    turns.add_argument("id")
    rename = which.add_parser("rename", help="set a session's title")
    rename.add_argument("id")
    rename.add_argument("title")
    archive = which.add_parser("archive", help="hide a session from listings (it stays)")
    archive.add_argument("id")
    unarchive = which.add_parser("unarchive", help="list an archived session again")
    unarchive.add_argument("id")
    remove = which.add_parser("rm", help="delete a session and its history")
    remove.add_argument("id")
    runs: dict[argparse.ArgumentParser, Callable[[argparse.Namespace, Acpd], int]] = {
        export: _export,
        imported: _import,
        fork: _fork,
        turns: _turns,
        rename: _rename,
        archive: _archive,
        unarchive: _unarchive,
        remove: _remove,
    }
    for parser, run in runs.items():
        client_options(parser)
        if parser is not export:
            output.add_json_option(parser)
        parser.set_defaults(run=_with_client(run, client_of))


def add_audit_command(audit: argparse.ArgumentParser, client_options: AddClientOptions, client_of: ClientOf) -> None:
    """``acpd audit``: every session's tool calls, or their counts (``--stats``), or CSV."""
    for name in AUDIT_FILTERS:
        audit.add_argument(f"--{name}", help=f"only tool calls with this {name.replace('-', ' ')}")
    shown = audit.add_mutually_exclusive_group()
    shown.add_argument("--stats", action="store_true", help="counts by kind, status, agent, outcome and who decided")
    shown.add_argument("--csv", action="store_true", help="every row as CSV (RFC 4180), as the daemon writes it")
    client_options(audit)
    output.add_json_option(audit)
    audit.set_defaults(run=_with_client(_audit, client_of))


def add_usage_command(usage: argparse.ArgumentParser, client_options: AddClientOptions, client_of: ClientOf) -> None:
    """``acpd usage``: tokens and cost added up by session, agent, project, model or day."""
    usage.add_argument("--group-by", "-g", choices=("session", "agent", "project", "model", "day"), default="session")
    usage.add_argument("--since", help="turns started at or after this RFC 3339 date or time")
    usage.add_argument("--until", help="turns started before this RFC 3339 date or time")
    client_options(usage)
    output.add_json_option(usage)
    usage.set_defaults(run=_with_client(_usage, client_of))


def add_gc_command(gc: argparse.ArgumentParser, client_options: AddClientOptions, client_of: ClientOf) -> None:
    """``acpd gc``: delete old sessions (never one in use), and compact the database."""
    gc.add_argument("--older-than", required=True, metavar="AGE", help="30d, 12h, 90m, 3600s: last updated before then")
    gc.add_argument("--archived-only", action="store_true", help="only archived sessions")
    gc.add_argument("--dry-run", action="store_true", help="say what would be deleted; delete nothing")
    gc.add_argument("--vacuum", action="store_true", help="then compact the database file (writes wait meanwhile)")
    client_options(gc)
    output.add_json_option(gc)
    gc.set_defaults(run=_with_client(_gc, client_of))


def _with_client(run: Callable[[argparse.Namespace, Acpd], int], client_of: ClientOf) -> Callable[..., int]:
    def runner(args: argparse.Namespace) -> int:
        return run(args, client_of(args))

    return runner


# -- the commands -------------------------------------------------------------------------------


def _export(args: argparse.Namespace, client: Acpd) -> int:
    chunks = client.export(args.id, args.format)
    if args.output is None:
        for chunk in chunks:
            sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
        return 0
    partial = Path(args.output + ".partial")  # a failed export leaves no file that looks whole
    with partial.open("wb") as out:
        for chunk in chunks:
            out.write(chunk)
    partial.replace(args.output)
    return 0


def _import(args: argparse.Namespace, client: Acpd) -> int:
    data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    session = client.import_session(data, id=args.id, agent=args.agent, cwd=args.cwd)
    return _show(args, session)


def _fork(args: argparse.Namespace, client: Acpd) -> int:
    forked = client.fork(args.id, at_seq=args.at_seq, agent=args.agent, title=args.title, id=args.new_id)
    return _show(args, forked)


def _turns(args: argparse.Namespace, client: Acpd) -> int:
    turns = client.turns(args.id)
    if args.json:
        output.print_json({"items": turns})
    else:
        output.print_table(turns, TURN_COLUMNS)
    return 0


def _rename(args: argparse.Namespace, client: Acpd) -> int:
    return _show(args, client.update_session(args.id, title=args.title))


def _archive(args: argparse.Namespace, client: Acpd) -> int:
    return _show(args, client.update_session(args.id, archived=True))


def _unarchive(args: argparse.Namespace, client: Acpd) -> int:
    return _show(args, client.update_session(args.id, archived=False))


def _remove(args: argparse.Namespace, client: Acpd) -> int:
    client.delete_session(args.id)
    if args.json:
        output.print_json({"deleted": args.id})
    return 0


def _audit(args: argparse.Namespace, client: Acpd) -> int:
    filters = {_wire(name): value for name in AUDIT_FILTERS if (value := getattr(args, name.replace("-", "_")))}
    if args.stats:
        stats = client.tool_call_stats(**filters).model_dump(mode="json", by_alias=True)
        if args.json:
            output.print_json(stats)
        else:
            rows = [{"group": group, "value": value, "count": count} for group, counts in stats.items()
                    for value, count in counts.items()]  # fmt: skip
            output.print_table(rows, (("GROUP", _get("group")), ("VALUE", _get("value")), ("COUNT", _get("count"))))
        return 0
    if args.csv:
        for chunk in client.tool_calls_csv(**filters):
            sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
        return 0
    rows = list(client.tool_calls(**filters))
    if args.json:
        output.print_json({"items": rows})
    else:
        output.print_table(rows, TOOL_CALL_COLUMNS)
    return 0


def _usage(args: argparse.Namespace, client: Acpd) -> int:
    report = client.usage(args.group_by, since=args.since, until=args.until).model_dump(mode="json", by_alias=True)
    if args.json:
        output.print_json(report)
        return 0
    output.print_table([*report["items"], {"key": "(total)", **report["total"]}], USAGE_COLUMNS)
    return 0


def _gc(args: argparse.Namespace, client: Acpd) -> int:
    result = client.collect(args.older_than, archived_only=args.archived_only, dry_run=args.dry_run, vacuum=args.vacuum)
    report = result.model_dump(mode="json", by_alias=True)
    if args.json:
        output.print_json(report)
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {len(result.deleted)} session(s); kept {len(result.kept)} in use")
    for session_id in result.deleted:
        print(f"  {session_id}")
    if result.reclaimed_bytes is not None:
        print(f"the database shrank by {result.reclaimed_bytes:,} bytes")
    return 0


def _show(args: argparse.Namespace, session: Any) -> int:
    output.print_session(session.model_dump(mode="json", by_alias=True, exclude_unset=True), as_json=args.json)
    return 0


def _wire(name: str) -> str:
    """A filter's query parameter: ``decided-by`` is ``decidedBy``."""
    head, *rest = name.split("-")
    return head + "".join(part.title() for part in rest)


def _get(key: str) -> Callable[[Mapping[str, Any]], object]:
    return lambda row: row.get(key)


def _cost(cost: object) -> str | None:
    if not isinstance(cost, dict) or not isinstance(cost.get("amount"), (int, float)):
        return None
    return f"{cost['amount']:.4f} {cost.get('currency') or 'USD'}"
