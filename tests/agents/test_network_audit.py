"""The strace reader behind the offline test: it must see what an agent tries, and say who tried."""

from __future__ import annotations

from .network_audit import attempts, outside_loopback


def hexed(text: str | bytes) -> str:
    """A string as ``strace -xx`` writes it."""
    data = text.encode() if isinstance(text, str) else text
    return "".join(f"\\x{byte:02x}" for byte in data)


def inet(host: str, port: int) -> str:
    return f'{{sa_family=AF_INET, sin_port=htons({port}), sin_addr=inet_addr("{hexed(host)}")}}'


def inet6(host: str, port: int) -> str:
    return (
        f"{{sa_family=AF_INET6, sin6_port=htons({port}), sin6_flowinfo=htonl(0), "
        f'inet_pton(AF_INET6, "{hexed(host)}", &sin6_addr), sin6_scope_id=0}}'
    )


QUERY = bytes.fromhex("123401000001000000000000") + b"\x04play\x0agoogleapis\x03com\x00" + b"\x00\x01\x00\x01"
TRACE = "\n".join(
    [
        f'100 execve("{hexed("/usr/bin/node")}", ["{hexed("node")}"], 0x0 /* 3 vars */) = 0',
        "100 clone3({flags=CLONE_VM|CLONE_THREAD, child_tid=0x7f, exit_signal=0} <unfinished ...>",
        "100 <... clone3 resumed> => {parent_tid=[101]}, 88) = 101",
        f"101 connect(21, {inet('10.255.255.53', 53)}, 16) = -1 ENETUNREACH (Network is unreachable)",
        f"100 connect(22, {inet('127.0.0.1', 40000)}, 16 <unfinished ...>",
        "100 <... connect resumed>) = -1 EINPROGRESS (Operation now in progress)",
        f'102 execve("{hexed("/opt/codex")}", [], 0x0) = 0',
        f'102 sendto(5, "{hexed(QUERY)}", {len(QUERY)}, 0, {inet("10.255.255.53", 53)}, 16) = -1 ENETUNREACH',
        f"102 connect(6, {inet6('2607:f8b0::1', 443)}, 28) = -1 ENETUNREACH (Network is unreachable)",
        f"102 connect(7, {inet6('::ffff:127.0.0.1', 4096)}, 28) = 0",
        f'102 connect(8, {{sa_family=AF_UNIX, sun_path="{hexed("/run/x")}"}}, 110) = 0',
    ]
)


def test_every_attempt_to_reach_an_ip_address_is_read_with_the_program_that_made_it() -> None:
    assert [str(attempt) for attempt in attempts(TRACE)] == [
        "/usr/bin/node: connect to 10.255.255.53:53 (a DNS lookup)",
        "/usr/bin/node: connect to 127.0.0.1:40000",
        "/opt/codex: sendto to 10.255.255.53:53 (DNS query for play.googleapis.com)",
        "/opt/codex: connect to 2607:f8b0::1:443",
        "/opt/codex: connect to ::ffff:127.0.0.1:4096",
    ]


def test_dns_lookups_and_other_than_loopback_are_outside_loopback_and_nothing_else_is() -> None:
    assert [(a.host, a.port) for a in outside_loopback(TRACE)] == [
        ("10.255.255.53", 53),
        ("10.255.255.53", 53),
        ("2607:f8b0::1", 443),
    ]
