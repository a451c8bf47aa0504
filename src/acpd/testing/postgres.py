"""Test kit: a throwaway PostgreSQL server for tests and benchmarks: ``initdb`` and ``pg_ctl`` into
a temporary directory, on a free port of 127.0.0.1, stopped by its PID.

The server refuses to run as root; as root, its commands run as an unprivileged user (``postgres``
if the machine has one, else ``nobody``) through ``setpriv``, in a directory that user owns.
Nothing here waits on a clock: ``pg_ctl -w`` waits for readiness, and the stop waits on a pidfd. A
watchdog process stops the server if the process that started it dies without doing so.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

USER: Final = "acpd"
DATABASE: Final = "acpd"
START_TIMEOUT_SECONDS: Final = 30
STOP_TIMEOUT_SECONDS: Final = 15.0
RUN_AS: Final = ("postgres", "nobody")
"""Who runs the server when we are root, the first the machine has."""
FAST_SETTINGS: Final = ("-c", "fsync=off", "-c", "full_page_writes=off")
"""For tests: nothing survives the machine anyway (the commits are as durable to the daemon)."""


class PostgresUnavailable(Exception):
    """No PostgreSQL server binaries, or the server would not start (the reason says which)."""


@dataclass(frozen=True)
class Cluster:
    root: Path
    port: int
    pid: int
    watchdog: subprocess.Popen[bytes] | None = field(default=None, compare=False, repr=False)

    @property
    def dsn(self) -> str:
        """The URL of its ``acpd`` database (trust authentication: no password)."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def dsn_in(self, schema: str) -> str:
        """The URL of the database with ``schema`` first on the search path: a test's own tables."""
        return f"{self.dsn}?search_path={schema}"


def bin_dir() -> Path:
    """Where ``initdb`` and ``pg_ctl`` are.

    Raises:
        PostgresUnavailable: they are nowhere to be found.
    """
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent  # a link in PATH: the tools beside the real one
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").is_file():
            return Path(candidate)
    raise PostgresUnavailable("no PostgreSQL server binaries (initdb, pg_ctl): install postgresql")


def start(*, durable: bool = False) -> Cluster:
    """A new server with an ``acpd`` database, in a new temporary directory.

    Args:
        durable: keep ``fsync`` on (benchmarks); tests turn it off.

    Raises:
        PostgresUnavailable: no binaries, or the server did not start (its log's tail said why).
    """
    tools = bin_dir()
    root = Path(tempfile.mkdtemp(prefix="acpd-pg-"))
    try:
        prefix = _unprivileged(root)
        _run([*prefix, str(tools / "initdb"), "-D", str(root / "data"), "-U", USER, "--auth=trust", "-E", "UTF8",
              "--no-locale", "--no-sync"], root)  # fmt: skip
        port = _free_port()
        options = ["-c", "listen_addresses=127.0.0.1", "-p", str(port), "-k", str(root)]
        if not durable:
            options += FAST_SETTINGS
        _run([*prefix, str(tools / "pg_ctl"), "-D", str(root / "data"), "-l", str(root / "log"), "-w",
              "-t", str(START_TIMEOUT_SECONDS), "-o", " ".join(options), "start"], root)  # fmt: skip
        pid = int((root / "data" / "postmaster.pid").read_text().split()[0])
        try:
            watchdog = _watch(root, pid)
        except BaseException:
            stop(Cluster(root, port, pid))
            raise
        cluster = Cluster(root, port, pid, watchdog)
        try:
            _run([str(tools / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, DATABASE], root)
        except BaseException:
            stop(cluster)
            raise
        return cluster
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def stop(cluster: Cluster) -> None:
    """Stop the server by its PID (a fast shutdown: SIGINT), wait for it to exit (a SIGKILL after
    ``STOP_TIMEOUT_SECONDS``), and remove its directory."""
    try:
        with contextlib.suppress(ProcessLookupError):
            if not _signal_and_wait(cluster.pid, signal.SIGINT, STOP_TIMEOUT_SECONDS):
                _signal_and_wait(cluster.pid, signal.SIGKILL, STOP_TIMEOUT_SECONDS)
    finally:
        shutil.rmtree(cluster.root, ignore_errors=True)
        if cluster.watchdog is not None:  # it exits once the server has
            with contextlib.suppress(subprocess.TimeoutExpired):
                cluster.watchdog.wait(STOP_TIMEOUT_SECONDS)


@contextlib.contextmanager
def running(*, durable: bool = False) -> Iterator[Cluster]:
    """A server for the ``with`` block."""
    cluster = start(durable=durable)
    try:
        yield cluster
    finally:
        stop(cluster)


WATCHDOG: Final = """
import os, select, shutil, signal, sys
parent, server, root = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
watched = select.poll()
try:
    fds = {os.pidfd_open(parent): "parent", os.pidfd_open(server): "server"}
except ProcessLookupError:  # one of them is gone already: the server, or its starter (stop it)
    fds = {}
os.write(1, b"armed\\n")  # the starter waits for this: a kill of it after start() returns is seen
os.close(1)
for fd in fds:
    watched.register(fd, select.POLLIN)
first = fds[watched.poll()[0][0]] if fds else "parent"
if first == "parent":
    try:
        server_fd = os.pidfd_open(server)
    except ProcessLookupError:
        server_fd = None
    if server_fd is None:
        shutil.rmtree(root, ignore_errors=True)
        sys.exit(0)
    os.kill(server, signal.SIGINT)
    if not select.select([server_fd], [], [], 15)[0]:
        os.kill(server, signal.SIGKILL)
        select.select([server_fd], [], [], 15)
    shutil.rmtree(root, ignore_errors=True)
"""
"""Run beside a server: when the process that started it dies without stopping it (a test run or
a benchmark killed by a timeout), it stops the server and removes its directory; when the server
stops first, it just exits."""


def _watch(root: Path, pid: int) -> subprocess.Popen[bytes]:
    """Start the watchdog of the server ``pid`` (``WATCHDOG``), in a session of its own so that a
    signal to our process group does not end it before it can do its work."""
    watchdog = subprocess.Popen(
        [sys.executable, "-c", WATCHDOG, str(os.getpid()), str(pid), str(root)],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert watchdog.stdout is not None
    # armed before the caller goes on: a starter killed at once is still seen (its pidfd opened)
    armed = select.select([watchdog.stdout], [], [], START_TIMEOUT_SECONDS)[0] and watchdog.stdout.readline()
    watchdog.stdout.close()
    if armed != b"armed\n":
        watchdog.kill()
        raise PostgresUnavailable("the server's watchdog did not start")
    return watchdog


def _signal_and_wait(pid: int, signum: int, timeout: float) -> bool:
    """Send ``signum`` to ``pid``; True once it has exited, False if still alive after ``timeout``."""
    fd = os.pidfd_open(pid)
    try:
        os.kill(pid, signum)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(timeout * 1000))
    finally:
        os.close(fd)


def _unprivileged(root: Path) -> list[str]:
    """The command prefix that runs the server's tools as someone other than root (none if we are
    not root), that someone made the owner of ``root``."""
    if os.geteuid() != 0:
        return []
    for name in RUN_AS:
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        os.chown(root, user.pw_uid, user.pw_gid)
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise PostgresUnavailable(
                "running as root without setpriv (util-linux) to start PostgreSQL as another user"
            )
        return [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    raise PostgresUnavailable(f"running as root, and none of the users {RUN_AS} exists to run PostgreSQL as")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(argv: list[str], root: Path) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=START_TIMEOUT_SECONDS * 2, check=False)
    if done.returncode != 0:
        log = root / "log"
        tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
        tool = next(
            (Path(arg).name for arg in argv if os.sep + "bin" + os.sep in arg and "setpriv" not in arg), argv[0]
        )
        raise PostgresUnavailable(f"{tool} failed: {done.stderr.strip()[-2000:]}\n{tail}".strip())
