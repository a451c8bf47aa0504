"""The test kit's throwaway PostgreSQL: stopped by its PID, and by its watchdog when the process
that started it is killed without stopping it (a test run cut short by a timeout)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

from acpd.testing import postgres

STARTER = """
import json, sys
from acpd.testing import postgres
cluster = postgres.start()
assert cluster.watchdog is not None
print(json.dumps({"pid": cluster.pid, "root": str(cluster.root), "watchdog": cluster.watchdog.pid}), flush=True)
sys.stdin.read()
"""
BOUND_SECONDS = 30.0


def ends_within(pid: int, seconds: float) -> bool:
    """Whether process ``pid`` has ended, or ends within ``seconds``."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], seconds)[0])
    finally:
        os.close(fd)


def test_a_server_whose_starter_is_killed_is_stopped_and_removed_by_its_watchdog(
    postgres_cluster: postgres.Cluster,  # PostgreSQL is here (else skipped, or failed in CI)
) -> None:
    with subprocess.Popen([sys.executable, "-c", STARTER], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as starter:
        assert starter.stdout is not None
        started = json.loads(starter.stdout.readline())
        starter.send_signal(signal.SIGKILL)
        starter.wait(BOUND_SECONDS)
    assert ends_within(started["pid"], BOUND_SECONDS), "the server outlived its starter"
    assert ends_within(started["watchdog"], BOUND_SECONDS)  # it removes the directory, then exits
    assert not Path(started["root"]).exists()


def test_a_stopped_server_leaves_nothing_behind(postgres_cluster: postgres.Cluster) -> None:
    cluster = postgres.start()
    postgres.stop(cluster)
    assert cluster.watchdog is not None and cluster.watchdog.returncode == 0
    assert not cluster.root.exists()
    assert ends_within(cluster.pid, 0)
