"""Network namespaces for labs: create, configure, run commands in, and always remove.

`NetworkNamespace` is a context manager. Entering creates a uniquely named namespace
(`mptcpref-<pid>-<random>`, as `ip netns add` does: a bind mount under /run/netns) and
brings up its `lo`; leaving removes it, on a normal exit, on an exception and on
KeyboardInterrupt alike. Interfaces inside it (veth ends, TUN devices once their fd is
closed) disappear with it.

Configuration goes through pyroute2 (`IPRoute` opened with the calling thread inside the
namespace, see `impl.io.tun.in_netns`), which is fast and needs no parsing of `ip` output;
`run()` is there for everything else (`ip netns exec NAME ...`).

Labs only use 198.18.0.0/15 (the benchmarking range, RFC 2544) and fd00::/8 (unique local
IPv6). Every address, route destination and gateway given to this module is checked and
anything else is refused with `LabAddressError`, so a typo can never point lab traffic at a
real network.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import subprocess
from collections.abc import Iterator, Sequence
from types import TracebackType

from pyroute2 import IPRoute

from impl.io.tun import in_netns, netns_path

NAME_PREFIX = "mptcpref-"
LAB_NETWORKS = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("fd00::/8"))
COMMAND_TIMEOUT = 10.0  # seconds; every `ip` call is bounded so nothing can hang

_OUR_NAME = re.compile(rf"^{re.escape(NAME_PREFIX)}(\d+)-[0-9a-f]+$")


class LabAddressError(ValueError):
    """An address outside 198.18.0.0/15 and fd00::/8 was given to the lab."""


def check_lab_network(
    value: str | ipaddress.IPv4Network | ipaddress.IPv6Network
    | ipaddress.IPv4Interface | ipaddress.IPv6Interface
    | ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The network of an address, interface ("198.18.0.1/24") or prefix, if it lies wholly
    inside the lab ranges; `LabAddressError` otherwise."""
    try:
        network = ipaddress.ip_interface(value).network if not isinstance(
            value, ipaddress.IPv4Network | ipaddress.IPv6Network) else value
    except ValueError as error:
        raise LabAddressError(f"not an IP address or prefix: {value!r}") from error
    # Compare as integers (version checked first) so mixed v4/v6 never reaches subnet_of.
    inside = any(
        network.version == lab.version
        and int(lab.network_address) <= int(network.network_address)
        and int(network.broadcast_address) <= int(lab.broadcast_address)
        for lab in LAB_NETWORKS
    )
    if not inside:
        raise LabAddressError(
            f"{value} is outside the lab ranges 198.18.0.0/15 and fd00::/8; labs never use "
            "other addresses (DESIGN.md, Environment facts)"
        )
    return network


class LabCommandError(subprocess.CalledProcessError):
    """A lab command failed; unlike its base class, the message includes its stderr."""

    def __str__(self) -> str:
        error_output = (self.stderr or "").strip() or "no error output"
        return f"{super().__str__().rstrip('.')}: {error_output}"


def _run(argv: list[str], timeout: float, check: bool,
         input: str | None = None) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                               input=input)
    if check and completed.returncode != 0:
        raise LabCommandError(completed.returncode, argv, completed.stdout, completed.stderr)
    return completed


def _ip(*argv: str, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return _run(["ip", *argv], timeout, check=True)


def list_namespaces() -> list[str]:
    """Names of all named network namespaces (files under /run/netns)."""
    try:
        return sorted(os.listdir(netns_path("x").parent))
    except FileNotFoundError:
        return []


def _remove_namespace(name: str) -> None:
    if name in list_namespaces():
        _ip("netns", "del", name)


def remove_stale_namespaces() -> list[str]:
    """Remove `mptcpref-*` namespaces whose creating process no longer runs.

    A process killed with SIGKILL cannot clean up; its namespaces carry its pid in their
    name, so a later run (e.g. the test session) can tell them from live ones.
    """
    removed = []
    for name in list_namespaces():
        match = _OUR_NAME.match(name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or os.path.exists(f"/proc/{pid}"):
            continue
        _remove_namespace(name)
        removed.append(name)
    return removed


class NetworkNamespace:
    """A uniquely named network namespace that exists exactly while the `with` block runs.

    >>> with NetworkNamespace() as ns:                      # doctest: +SKIP
    ...     ns.add_address("lo", "198.18.0.1/32")
    ...     ns.run("ping", "-c1", "198.18.0.1")
    """

    def __init__(self) -> None:
        self.name = f"{NAME_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self._created = False
        self._processes: list[subprocess.Popen[bytes]] = []

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> NetworkNamespace:
        try:
            _ip("netns", "add", self.name)
            self._created = True
            self.set_link_up("lo")
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.remove()

    def remove(self) -> None:
        """Stop the processes started with `popen`, then delete the namespace.

        Idempotent. A KeyboardInterrupt arriving during removal is held back until the
        namespace is gone, then raised again, so Ctrl-C never leaves a namespace behind.
        """
        interrupted: KeyboardInterrupt | None = None
        while True:
            try:
                self._stop_processes()
                _remove_namespace(self.name)
                break
            except KeyboardInterrupt as interrupt:
                interrupted = interrupt
        self._created = False
        if interrupted is not None:
            raise interrupted

    @property
    def exists(self) -> bool:
        return self.name in list_namespaces()

    # -- running things inside -------------------------------------------------------------

    def command(self, *argv: str) -> list[str]:
        """The argv that runs `argv` inside this namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, check: bool = True, timeout: float = COMMAND_TIMEOUT,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace and wait (bounded by `timeout`) for it.
        With `check`, a non-zero exit raises `LabCommandError` carrying its stderr."""
        return _run(self.command(*argv), timeout, check, input)

    def popen(self, *argv: str, **kwargs: object) -> subprocess.Popen[bytes]:
        """Start a background command inside the namespace; it is stopped on removal."""
        process = subprocess.Popen(self.command(*argv), **kwargs)  # type: ignore[call-overload]
        self._processes.append(process)
        return process

    def _stop_processes(self) -> None:
        while self._processes:
            process = self._processes[-1]
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=2)
            self._processes.pop()

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """The calling thread runs inside this namespace for the block (sockets created
        there stay in it)."""
        with in_netns(self.name):
            yield

    @contextlib.contextmanager
    def iproute(self) -> Iterator[IPRoute]:
        """A pyroute2 `IPRoute` whose netlink socket lives in this namespace.

        Opened with the thread inside the namespace rather than with `IPRoute(netns=...)`,
        which would quietly create a missing namespace instead of failing.
        """
        with self.entered():
            ipr = IPRoute()
        try:
            yield ipr
        finally:
            ipr.close()

    # -- configuration ---------------------------------------------------------------------

    def _index(self, ipr: IPRoute, ifname: str) -> int:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise LookupError(f"no interface {ifname!r} in namespace {self.name}")
        return int(found[0])

    def links(self) -> list[str]:
        with self.iproute() as ipr:
            return [link.get("ifname") for link in ipr.get_links()]

    def set_link_up(self, ifname: str, mtu: int | None = None) -> None:
        with self.iproute() as ipr:
            extra = {} if mtu is None else {"mtu": mtu}
            ipr.link("set", index=self._index(ipr, ifname), state="up", **extra)

    def add_address(self, ifname: str, address: str) -> None:
        """Add "ADDR/PREFIXLEN" to an interface; only lab addresses are accepted.

        IPv6 addresses are added with IFA_F_NODAD: duplicate address detection would keep
        them "tentative" (unusable) for a second or more, and a lab has no duplicates.
        """
        check_lab_network(address)
        interface = ipaddress.ip_interface(address)
        with self.iproute() as ipr:
            extra = {"flags": 0x02} if interface.version == 6 else {}  # IFA_F_NODAD
            ipr.addr("add", index=self._index(ipr, ifname), address=str(interface.ip),
                     prefixlen=interface.network.prefixlen, **extra)

    def add_route(self, destination: str, *, gateway: str | None = None,
                  ifname: str | None = None, table: int | None = None) -> None:
        """Add a route to a lab prefix, through a lab gateway and/or out of an interface."""
        network = check_lab_network(destination)
        if gateway is None and ifname is None:
            raise ValueError("a route needs a gateway or an interface")
        spec: dict[str, object] = {"dst": str(network)}
        if gateway is not None:
            check_lab_network(gateway)
            spec["gateway"] = gateway
        if table is not None:
            spec["table"] = table
        with self.iproute() as ipr:
            if ifname is not None:
                spec["oif"] = self._index(ipr, ifname)
            ipr.route("add", **spec)

    def add_source_rule(self, source: str, table: int, priority: int = 1000) -> None:
        """Policy routing: packets from the lab address `source` look up `table`
        (`ip rule add from SOURCE table TABLE`), so each path's traffic leaves by its
        own interface, as the kernel's MPTCP selftests set it up."""
        check_lab_network(source)
        address = ipaddress.ip_address(source)
        with self.iproute() as ipr:
            ipr.rule("add", family=10 if address.version == 6 else 2, src=str(address),
                     src_len=address.max_prefixlen, table=table, priority=priority)

    def add_destination_rule(self, destination: str, table: int, priority: int = 900) -> None:
        """Policy routing: packets to the lab address `destination` look up `table`
        (`ip rule add to DESTINATION table TABLE`), before the source rules, so a peer
        address is reached over one path whatever the source address."""
        check_lab_network(destination)
        address = ipaddress.ip_address(destination)
        with self.iproute() as ipr:
            ipr.rule("add", family=10 if address.version == 6 else 2, dst=str(address),
                     dst_len=address.max_prefixlen, table=table, priority=priority)

    def add_veth(self, ifname: str, peer: NetworkNamespace, peer_ifname: str) -> None:
        """A veth pair: `ifname` here, `peer_ifname` in namespace `peer`; both left down."""
        peer_fd = os.open(netns_path(peer.name), os.O_RDONLY | os.O_CLOEXEC)
        try:
            with self.iproute() as ipr:
                ipr.link("add", ifname=ifname, kind="veth",
                         peer={"ifname": peer_ifname, "net_ns_fd": peer_fd})
        finally:
            os.close(peer_fd)

    def __repr__(self) -> str:
        return f"NetworkNamespace({self.name!r})"


def run_in(namespace: str, argv: Sequence[str], timeout: float = COMMAND_TIMEOUT,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `argv` inside the named namespace (for callers holding only a name)."""
    return _run(["ip", "netns", "exec", namespace, *argv], timeout, check)
