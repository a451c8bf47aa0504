"""Store layer: the PostgreSQL store's schema, its migrations, and opening a database (connecting,
refusing a newer schema). It must not import asyncpg at module level (the daemon on SQLite never
loads it) nor anything of acpd but errors.

Text columns that order or compare (ids, times) use the "C" collation: byte order, as SQLite
compares them, whatever locale the database was created with, so listings page alike on both.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

from acpd.errors import StoreError
from acpd.store.select import shown

if TYPE_CHECKING:
    import asyncpg

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS: Final = 5.0
"""How long opening the store waits for the database to answer before saying it cannot."""
MIGRATION_LOCK: Final = 0x61637064  # "acpd": the advisory lock two daemons migrating one database take
OWNER_WAIT_SECONDS: Final = 3.0
"""How long a daemon waits for the database's owner lock: a daemon killed a moment ago has its
lock let go once the server sees its connection close."""
LOCK_NOT_AVAILABLE: Final = "55P03"
SERVER_SETTINGS: Final = {
    # a commit returns once its WAL is flushed: durable before the daemon makes it visible,
    # whatever the database's default says
    "synchronous_commit": "on",
    "application_name": "acpd",
    # a daemon whose machine died or was cut off loses its locks (and its sessions) within
    # 5 + 2 x 3 = 11 s, when the server gives its connection up (TCP connections only: on this
    # machine the server sees a dead daemon's connection close at once)
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "11000",  # and when what the server sent it goes unacknowledged that long
}
FAILOVER_SECONDS: Final = 11
"""At most this long after a daemon's machine dies, its sessions can be claimed by another."""

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    # 1: sessions, events and idempotency records, and the record indexes (tool-call audit,
    # turns, full-text search) that SQLite got in its second migration
    (
        """CREATE TABLE sessions (
            id TEXT COLLATE "C" PRIMARY KEY,
            agent TEXT COLLATE "C" NOT NULL,
            project TEXT COLLATE "C",
            cwd TEXT COLLATE "C" NOT NULL,
            created_at TEXT COLLATE "C" NOT NULL,
            archived_at TEXT COLLATE "C",
            doc TEXT NOT NULL
        )""",
        "CREATE INDEX sessions_by_created ON sessions (created_at, id)",
        "CREATE INDEX sessions_by_agent ON sessions (agent, created_at, id)",
        "CREATE INDEX sessions_by_project ON sessions (project, created_at, id)",
        "CREATE INDEX sessions_by_cwd ON sessions (cwd, created_at, id)",
        """CREATE TABLE events (
            session_id TEXT COLLATE "C" NOT NULL,
            seq BIGINT NOT NULL,
            at TEXT NOT NULL,
            sender TEXT NOT NULL,
            turn BIGINT NOT NULL,
            payload TEXT NOT NULL,
            PRIMARY KEY (session_id, seq)
        )""",
        """CREATE TABLE idempotency (
            session_id TEXT COLLATE "C" NOT NULL,
            key TEXT COLLATE "C" NOT NULL,
            value TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (session_id, key)
        )""",
        """CREATE TABLE tool_calls (
            pos BIGSERIAL PRIMARY KEY,
            session_id TEXT COLLATE "C" NOT NULL,
            tool_call_id TEXT COLLATE "C" NOT NULL,
            agent TEXT COLLATE "C",
            turn BIGINT NOT NULL,
            started_at TEXT COLLATE "C" NOT NULL,
            kind TEXT COLLATE "C",
            title TEXT,
            locations TEXT,
            status TEXT COLLATE "C",
            asked BOOLEAN NOT NULL DEFAULT false,
            request_id TEXT COLLATE "C",
            options TEXT,
            reply TEXT,
            outcome TEXT COLLATE "C",
            decided_by TEXT COLLATE "C",
            ended_at TEXT,
            UNIQUE (session_id, tool_call_id)
        )""",
        "CREATE INDEX tool_calls_by_started ON tool_calls (started_at)",
        "CREATE INDEX tool_calls_by_request ON tool_calls (session_id, request_id)",
        """CREATE TABLE turns (
            session_id TEXT COLLATE "C" NOT NULL,
            turn BIGINT NOT NULL,
            agent TEXT COLLATE "C",
            model TEXT COLLATE "C",
            started_at TEXT COLLATE "C" NOT NULL,
            first_seq BIGINT NOT NULL,
            preview TEXT,
            steps BIGINT NOT NULL DEFAULT 0,
            cost_total DOUBLE PRECISION,
            currency TEXT,
            ended_at TEXT,
            last_seq BIGINT,
            stop_reason TEXT,
            error TEXT,
            input_tokens BIGINT,
            output_tokens BIGINT,
            cached_tokens BIGINT,
            thought_tokens BIGINT,
            total_tokens BIGINT,
            PRIMARY KEY (session_id, turn)
        )""",
        "CREATE INDEX turns_by_started ON turns (started_at)",
        # ``words`` is the body's words (letters and digits, as FTS5's tokenizer splits them) under
        # the 'simple' configuration: lower case, no stemming, no stop words, in any language
        """CREATE TABLE search (
            id BIGSERIAL PRIMARY KEY,
            session_id TEXT COLLATE "C" NOT NULL,
            turn BIGINT NOT NULL,
            kind TEXT NOT NULL,
            body TEXT NOT NULL,
            words TSVECTOR NOT NULL
        )""",
        "CREATE INDEX search_words ON search USING GIN (words)",
        "CREATE INDEX search_by_session ON search (session_id, kind)",
    ),
    # 2: what daemons sharing a database need: a small number per session to lock it by (a session
    # advisory lock on (the schema's hash, lock_id): no two sessions share one), and each daemon's
    # address, by its writer's backend pid, so that the others can name (and reach) a session's owner
    (
        """CREATE TABLE session_locks (
            session_id TEXT COLLATE "C" PRIMARY KEY,
            lock_id SERIAL NOT NULL
        )""",
        """CREATE TABLE daemons (
            backend_pid INTEGER PRIMARY KEY,
            url TEXT NOT NULL,
            noted_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )""",
    ),
)
"""Schema migrations in order; the ``acpd_schema`` table holds how many a database has had.
Append new ones; never edit one that has shipped."""

SCHEMA_VERSION: Final = len(MIGRATIONS)


async def create_pool(dsn: str, *, max_size: int) -> asyncpg.Pool:
    """A pool of connections to ``dsn``, the schema migrated.

    Raises:
        StoreError: the database cannot be reached or logged into within
            ``CONNECT_TIMEOUT_SECONDS``, it refuses the migration, or its schema is newer than this
            acpd knows.
    """
    import asyncpg  # lazily: ~60 ms of imports that a daemon on SQLite never pays

    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=max_size,
            timeout=CONNECT_TIMEOUT_SECONDS,
            server_settings=SERVER_SETTINGS,
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        raise unreachable(dsn, exc) from None
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
    except BaseException:
        pool.terminate()
        raise
    return pool


def unreachable(dsn: str, exc: BaseException) -> StoreError:
    """The error that says the database at ``dsn`` (its password masked) could not be had, and why."""
    reason = f"no answer within {CONNECT_TIMEOUT_SECONDS:.0f} s" if isinstance(exc, TimeoutError) else str(exc)
    return StoreError(
        f"cannot reach the PostgreSQL event store {shown(dsn)}: {reason or type(exc).__name__}",
        data={"db": shown(dsn)},
    )


def driver_errors() -> tuple[type[Exception], ...]:
    """What asyncpg raises when the database or the connection to it fails (a caller's ``except``)."""
    import asyncpg

    # InternalClientError: a connection the server cut while a query was being sent on it
    return (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)


async def connect(dsn: str) -> asyncpg.Connection:
    """A connection of its own to ``dsn``, outside the pool.

    Raises:
        StoreError: the database cannot be reached (``unreachable``).
    """
    import asyncpg

    try:
        return await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_SECONDS, server_settings=SERVER_SETTINGS)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        raise unreachable(dsn, exc) from None


async def take_ownership(dsn: str, *, shared: bool = False) -> asyncpg.Connection:
    """A connection of its own holding the schema's owner lock (a session advisory lock keyed by
    the schema's name, so that schemas of one database are owned apart), for the store's life: the
    server lets it go when the connection closes, by ``aclose`` or by the daemon's death.
    ``shared``: the lock in shared mode, which daemons sharing the database each hold (and a
    daemon that would own it alone waits for), each of its sessions then locked apart.

    Raises:
        StoreLocked: another daemon owns the schema (``data`` says which client holds it).
        StoreError: the database cannot be reached.
    """
    import asyncpg

    from acpd.errors import StoreLocked

    conn = await connect(dsn)
    try:
        await conn.execute(f"SET lock_timeout = '{OWNER_WAIT_SECONDS:.0f}s'")
        try:
            await conn.execute(_TAKE_SHARED_LOCK if shared else _TAKE_OWNER_LOCK)
        except asyncpg.PostgresError as exc:
            if getattr(exc, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise StoreError(f"cannot lock the PostgreSQL event store {shown(dsn)}: {exc}") from exc
            owner = await _holder(conn)
            serving = f", serving {owner['url']}" if "url" in owner else ""
            raise StoreLocked(
                f"another acpd (database backend pid {owner['pid']}, from {owner['client']}{serving}) "
                f"holds {shown(dsn)}; stop it or use another database or schema (--db)",
                data={"db": shown(dsn), **owner},
            ) from None
        await conn.execute("RESET lock_timeout")
    except BaseException:
        conn.terminate()
        raise
    return conn


async def _holder(conn: asyncpg.Connection) -> dict[str, Any]:
    """Who holds the owner lock: its backend ``pid``, its ``client`` address, and the ``url`` it
    noted in ``daemons`` (an acpd that noted none, or predates that table, has none)."""
    import asyncpg

    holder = await conn.fetchrow(_OWNER)
    owner: dict[str, Any] = {
        "client": str(holder[0]) if holder and holder[0] else "local",
        "pid": holder[1] if holder else None,
    }
    if owner["pid"] is not None:
        try:
            url = await conn.fetchval("SELECT url FROM daemons WHERE backend_pid = $1", owner["pid"])
        except asyncpg.PostgresError:  # no such table yet
            url = None
        if url:
            owner["url"] = url
    return owner


_OWNER_KEY: Final = "hashtext('acpd owner ' || current_schema())"
_TAKE_OWNER_LOCK: Final = f"SELECT pg_advisory_lock({_OWNER_KEY})"
_TAKE_SHARED_LOCK: Final = f"SELECT pg_advisory_lock_shared({_OWNER_KEY})"
_OWNER: Final = (
    "SELECT a.client_addr, a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
    f" WHERE l.locktype = 'advisory' AND l.granted AND l.objid = ({_OWNER_KEY})::oid"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


async def migrate(conn: asyncpg.Connection) -> None:
    """Apply the pending migrations in one transaction, or none; two daemons starting on one new
    database take turns (an advisory lock), so it is migrated once.

    Raises:
        StoreError: the schema is newer than this acpd knows, or a migration failed.
    """
    import asyncpg

    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute("CREATE TABLE IF NOT EXISTS acpd_schema (version INTEGER NOT NULL)")
            version = await conn.fetchval("SELECT max(version) FROM acpd_schema") or 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the event store has schema version {version}, newer than the {SCHEMA_VERSION} this acpd "
                    "knows: upgrade acpd, or point it at another database (--db)",
                    data={"schemaVersion": version, "supported": SCHEMA_VERSION},
                )
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    await conn.execute(statement)
            if version < SCHEMA_VERSION:
                await conn.execute("DELETE FROM acpd_schema")
                await conn.execute("INSERT INTO acpd_schema (version) VALUES ($1)", SCHEMA_VERSION)
                logger.info("event store migrated from schema version %d to %d", version, SCHEMA_VERSION)
    except asyncpg.PostgresError as exc:
        raise StoreError(f"cannot migrate the PostgreSQL event store: {exc}") from exc
