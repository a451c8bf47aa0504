"""Every network attempt a daemon and its agents make, from an ``strace -f`` of the daemon.

``strace_command`` wraps ``acpd serve``; ``attempts`` reads the trace back: each ``connect``,
``sendto`` and ``sendmsg`` to an IPv4 or IPv6 address, with the program that made it (``execve``
and ``clone`` are traced to tell which) and, for a DNS query whose packet was written, the name
asked for. Resolving a name shows as a datagram to port 53 of the resolver even where no packet
can leave (inside ``unshare -n`` the connect or send fails, and is still recorded).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

DNS_PORT: Final = 53
TRACED: Final = "connect,sendto,sendmsg,execve,clone,clone3,fork,vfork"

_LINE: Final = re.compile(r"^(?P<pid>\d+)\s+(?P<call>\w+)\((?P<rest>.*)$")
_ADDRESS: Final = re.compile(
    r"sa_family=AF_INET6?, sin6?_port=htons\((?P<port>\d+)\),"
    r'.*?(?:inet_addr\("(?P<v4>[^"]+)"\)|inet_pton\(AF_INET6, "(?P<v6>[^"]+)")'
)
_EXECVE: Final = re.compile(r'^"(?P<program>[^"]*)"')
_RESULT: Final = re.compile(r"= (?P<value>-?\d+)")
_PAYLOAD: Final = re.compile(r'^\d+, "(?P<hex>(?:\\x[0-9a-f]{2})*)"')


def strace_command(trace: Path) -> tuple[str, ...]:
    """``strace`` following every child, recording only what ``attempts`` reads, into ``trace``.

    ``--seccomp-bpf`` stops the traced processes only at those calls, so the agents run at
    nearly full speed.
    """
    return ("strace", "-f", "--seccomp-bpf", "-qq", "-xx", "-s", "512", "-e", f"trace={TRACED}", "-e", "signal=none",
            "-o", str(trace))  # fmt: skip


@dataclass(frozen=True)
class Attempt:
    program: str
    call: str
    host: str
    port: int
    name: str | None = None
    """The name a DNS query asked for, when its packet was in the call."""

    @property
    def is_dns(self) -> bool:
        return self.port == DNS_PORT

    @property
    def is_loopback(self) -> bool:
        address = ipaddress.ip_address(self.host.split("%")[0])
        mapped = getattr(address, "ipv4_mapped", None)
        return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))

    def __str__(self) -> str:
        asked = f" (DNS query for {self.name})" if self.name else " (a DNS lookup)" if self.is_dns else ""
        return f"{self.program}: {self.call} to {self.host}:{self.port}{asked}"


def attempts(text: str) -> list[Attempt]:
    """Every attempt to reach an IP address in the trace, oldest first."""
    programs: dict[str, str] = {}
    found = []
    for pid, call, rest in _calls(text):
        if call == "execve" and (program := _EXECVE.match(rest)) and _succeeded(rest):
            programs[pid] = _text(program.group("program"))
        elif call in ("clone", "clone3", "fork", "vfork") and (child := _RESULT.search(rest)):
            programs.setdefault(child.group("value"), programs.get(pid, "?"))
        elif call in ("connect", "sendto", "sendmsg") and (address := _ADDRESS.search(rest)):
            host = _text(address.group("v4") or address.group("v6"))
            port = int(address.group("port"))
            name = _dns_name(rest) if port == DNS_PORT and call == "sendto" else None
            found.append(Attempt(programs.get(pid, "?"), call, host, port, name))
    return found


def outside_loopback(text: str) -> list[Attempt]:
    """The attempts to leave the machine: DNS lookups, and connections to other than loopback."""
    return [attempt for attempt in attempts(text) if attempt.is_dns or not attempt.is_loopback]


def _calls(text: str) -> Iterator[tuple[str, str, str]]:
    # A call interrupted by another process's shows as "<unfinished ...>" then "<... call resumed>":
    # the address is in the first part, the result in the second; both parts are kept together.
    pending: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None:
            resumed = re.match(r"^(?P<pid>\d+)\s+<\.\.\. (?P<call>\w+) resumed>(?P<rest>.*)$", line)
            if resumed and (started := pending.pop(resumed.group("pid"), None)):
                yield resumed.group("pid"), started[0], started[1] + resumed.group("rest")
            continue
        pid, call, rest = match.group("pid", "call", "rest")
        if rest.endswith("<unfinished ...>"):
            pending[pid] = (call, rest)
        else:
            yield pid, call, rest


def _text(quoted: str) -> str:
    """A string strace wrote in hex (``-xx``)."""
    return _bytes(quoted).decode("utf-8", "replace")


def _bytes(quoted: str) -> bytes:
    return bytes.fromhex(quoted.replace("\\x", ""))


def _succeeded(rest: str) -> bool:
    result = _RESULT.search(rest)
    return result is not None and result.group("value") == "0"


def _dns_name(rest: str) -> str | None:
    """The first question's name of a DNS query packet written in hex (``-xx``)."""
    payload = _PAYLOAD.match(rest)
    if payload is None:
        return None
    data = _bytes(payload.group("hex"))
    labels, at = [], 12  # the header is 12 bytes
    while at < len(data) and data[at] != 0:
        size = data[at]
        labels.append(data[at + 1 : at + 1 + size].decode("ascii", "replace"))
        at += 1 + size
    return ".".join(labels) or None
