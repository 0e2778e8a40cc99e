"""The Linux kernel peer's view: MIB counters and sysctls, read inside a lab namespace.

Counters are named as `nstat` names them (`MPTcpExtMPCapableSYNRX`, `TcpExtTCPTimeouts`,
`TcpActiveOpens`, ...), so a user can compare with `ip netns exec NS nstat -az` by eye
(DESIGN.md principle 8). They are read from /proc/net/netstat (TcpExt, IpExt, MPTcpExt,
...) and /proc/net/snmp (Ip, Tcp, Udp, ...) with the calling thread inside the namespace:
every namespace has its own counters, and /proc/thread-self/net shows the namespace of the
calling thread (plain /proc/net follows the process leader, which stays in the root
namespace).

Sysctls are read and written the same way: files under /proc/sys/net resolve to the
namespace of the thread that opens them. `in_netns` checks that the thread really entered
the namespace before any write, so the root namespace is never changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from impl.io.tun import in_netns

_COUNTER_FILES = ("/proc/thread-self/net/netstat", "/proc/thread-self/net/snmp")


def parse_proc_net_counters(text: str) -> dict[str, int]:
    """Parse /proc/net/netstat or /proc/net/snmp text into {SectionName: value}.

    Both files come in pairs of lines, "Section: Name1 Name2 ..." then "Section: v1 v2 ...";
    nstat joins section and name without a separator, and so do we.
    """
    counters: dict[str, int] = {}
    lines = [line.split() for line in text.splitlines() if line.strip()]
    for names, values in zip(lines[0::2], lines[1::2], strict=False):
        section = names[0].rstrip(":")
        if values[0].rstrip(":") != section or len(names) != len(values):
            raise ValueError(f"malformed counter lines for section {section!r}")
        for name, value in zip(names[1:], values[1:], strict=True):
            counters[section + name] = int(value)
    return counters


def read_counters(namespace: str | None) -> dict[str, int]:
    """Every MIB counter of `namespace` (None: the caller's current namespace)."""
    counters: dict[str, int] = {}
    with in_netns(namespace):
        for path in _COUNTER_FILES:
            counters.update(parse_proc_net_counters(Path(path).read_text()))
    return counters


def read_mptcp_counters(namespace: str | None) -> dict[str, int]:
    """Only the MPTcpExt* counters (the kernel's MPTCP MIB, net/mptcp/mib.c)."""
    return {name: value for name, value in read_counters(namespace).items()
            if name.startswith("MPTcpExt")}


def counter_delta(before: Mapping[str, int], after: Mapping[str, int],
                  *, nonzero_only: bool = True) -> dict[str, int]:
    """after - before per counter; a counter missing on one side counts as 0 there.

    With `nonzero_only` (the default) unchanged counters are left out, which is what a
    reader wants to see after an exchange: exactly what the kernel counted.
    """
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in {*before, *after}}
    if nonzero_only:
        delta = {name: value for name, value in delta.items() if value}
    return dict(sorted(delta.items()))


def _sysctl_path(name: str) -> Path:
    # "net.mptcp.checksum_enabled" or "net/mptcp/checksum_enabled"; only net.* sysctls are
    # per namespace, so only those may be touched through a lab namespace.
    relative = name.replace(".", "/") if "/" not in name else name
    if not relative.startswith("net/") or ".." in relative.split("/"):
        raise ValueError(f"only per-namespace net.* sysctls are allowed here, got {name!r}")
    return Path("/proc/sys") / relative


def read_sysctl(namespace: str, name: str) -> str:
    """The value of a net.* sysctl inside `namespace`, as text without the newline."""
    with in_netns(namespace):
        return _sysctl_path(name).read_text().strip()


def write_sysctl(namespace: str, name: str, value: str | int) -> None:
    """Set a net.* sysctl inside `namespace` (never in the root namespace: the namespace
    argument is required and `in_netns` verifies the switch before the write)."""
    if namespace is None:
        raise ValueError("write_sysctl needs a lab namespace; the root namespace is off limits")
    with in_netns(namespace):
        _sysctl_path(name).write_text(f"{value}\n")
