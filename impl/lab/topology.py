"""Lab topologies: N paths between a Linux host and our endpoint, between two Linux hosts
(the baseline), or between two of our endpoints, each path through the one link model.

Addresses (DESIGN.md, Environment facts): path i (1-based) is the subnet 198.18.i.0/24
or fd00:0:0:i::/64; the Linux host (or the listening end) is .1 / ::1, the other end
.2 / ::2. Every path has its own TUN device (MTU 1500), named `path{i}`.

`KernelPeerLab`: one namespace for the kernel host with TUN `path{i}` holding
198.18.i.1/24; the connected route sends .2 into the TUN, whose fd our driver
(`impl.io.tun_loop.TunDriver`) reads in this process; the driver applies the path's
links in both directions. With several paths each kernel address gets a source rule and a
routing table of its own (`ip rule add from 198.18.i.1 table 100+i`, the lab prefix via
`path{i}` in that table) and rp_filter is off, as in the kernel's MPTCP selftests, so a
subflow leaves by the interface of its source address and crosses its own path's link.

`KernelPairLab`: two kernel namespaces, "server" (.1) and "client" (.2), a TUN per
path in each, and a forwarder process (`impl.lab.forwarder`) between each TUN pair that
runs the same link model. The forwarder gets the TUN fds by inheritance, so this process
keeps owning (and finally closing) the devices; it runs in its own process so it never
competes with a measuring process for the GIL.

`RefPairLab`: both ends are our endpoints, in this process on one driver. A "router"
namespace holds per path two TUNs, `cli{i}` (route to 198.18.i.2/32) and `srv{i}` (route
to 198.18.i.1/32), with forwarding on: what our client writes into `cli{i}` the kernel
routes out of `srv{i}` to our server, and back. So the packets are real IP packets
forwarded by Linux, and the link model is applied once per direction, by the driver on
the client's TUN. This is the simplest arrangement that keeps real packets and one
link per direction; the price is that both endpoints share one Python process.

Every lab is a context manager; leaving it stops processes, closes TUNs and removes its
namespaces, on errors and KeyboardInterrupt too (NetworkNamespace guarantees the last).
"""

from __future__ import annotations

import ipaddress
import json
import os
import struct
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any

from impl.io.link import Link, LinkConfig
from impl.io.tun import TunDevice
from impl.lab.kernel import counter_delta, read_counters, write_sysctl
from impl.lab.netns import NetworkNamespace

__all__ = ["KernelPairLab", "KernelPeerLab", "LabPath", "PathSpec", "RefPairLab",
           "add_mptcp_endpoint", "change_mptcp_endpoint", "delete_mptcp_endpoint",
           "kernel_counter_delta", "set_mptcp_limits"]

MTU = 1500
TXQUEUELEN = 1000  # TUN default is 500 packets; a little more room for bursts
FIRST_TABLE = 100
KERNEL_COUNTER_PREFIXES = ("MPTcpExt", "Tcp")  # Tcp* (snmp) and TcpExt* (netstat)
FORWARDER_START_TIMEOUT = 10.0


@dataclass(frozen=True)
class PathSpec:
    """One path's link, the same in both directions (netem's convention for a qdisc on
    each side): one-way `delay` seconds, `loss` probability, `rate` bit/s (None: as
    fast as the loop goes)."""

    delay: float = 0.0
    loss: float = 0.0
    rate: float | None = None
    # The link model's other knobs (not on the command line yet): uniform jitter in
    # seconds, and the probabilities of holding a packet back or sending it twice.
    jitter: float = 0.0
    reorder: float = 0.0
    duplicate: float = 0.0

    def link_config(self) -> LinkConfig:
        queue_limit = None
        if self.rate is not None:
            # A drop-tail queue of about one bandwidth-delay product plus 20 ms (and at
            # least 64 KiB), so a rate-limited path behaves like a sanely buffered
            # bottleneck instead of an infinite one that hides congestion from TCP.
            queue_limit = max(64 * 1024, int(self.rate / 8 * (2 * self.delay + 0.02)))
        return LinkConfig(delay=self.delay, loss=self.loss, rate=self.rate,
                          queue_limit=queue_limit, jitter=self.jitter, reorder=self.reorder,
                          duplicate=self.duplicate)

    def as_dict(self) -> dict[str, Any]:
        shown = {"delay_ms": self.delay * 1000, "loss_pct": self.loss * 100,
                 "rate_mbit": None if self.rate is None else self.rate / 1e6}
        for name in ("jitter", "reorder", "duplicate"):
            if getattr(self, name):
                shown[name] = getattr(self, name)
        return shown


@dataclass(frozen=True)
class LabPath:
    """Addresses of path `index` (1-based)."""

    index: int
    ipv6: bool

    def _address(self, host: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        if not 1 <= self.index <= 254:
            raise ValueError("a lab has paths 1 to 254")
        if self.ipv6:
            return ipaddress.IPv6Address(f"fd00:0:0:{self.index:x}::{host:x}")
        return ipaddress.IPv4Address(f"198.18.{self.index}.{host}")

    @property
    def server(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        """The Linux host of a KernelPeerLab, the listening end otherwise."""
        return self._address(1)

    @property
    def client(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        """Our endpoint in a KernelPeerLab, the connecting end otherwise."""
        return self._address(2)

    @property
    def prefix_length(self) -> int:
        return 64 if self.ipv6 else 24

    @property
    def lab_prefix(self) -> str:
        return "fd00::/8" if self.ipv6 else "198.18.0.0/15"

    def interface(self, host: int) -> str:
        return f"{self._address(host)}/{self.prefix_length}"


def kernel_counter_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The MPTcpExt*, Tcp* and TcpExt* counters that changed between two readings."""
    return {name: value for name, value in counter_delta(before, after).items()
            if name.startswith(KERNEL_COUNTER_PREFIXES)}


class _Lab:
    """Shared lifecycle: everything is registered on an ExitStack as it is created."""

    def __init__(self, paths: list[PathSpec], ipv6: bool = False, seed: int = 0) -> None:
        if not paths:
            raise ValueError("a lab needs at least one path")
        self.specs = list(paths)
        self.ipv6 = ipv6
        self.seed = seed
        self.paths = [LabPath(i + 1, ipv6) for i in range(len(paths))]
        self._stack = ExitStack()

    def __enter__(self) -> Any:
        try:
            self._build()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    def _build(self) -> None:
        raise NotImplementedError

    def _namespace(self) -> NetworkNamespace:
        return self._stack.enter_context(NetworkNamespace())

    def _tun(self, namespace: NetworkNamespace, name: str) -> TunDevice:
        tun = self._stack.enter_context(TunDevice(name, netns=namespace.name))
        namespace.set_link_up(tun.name, mtu=MTU)
        with namespace.iproute() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname=tun.name)[0], txqlen=TXQUEUELEN)
        return tun

    def links(self, index: int) -> tuple[Link, Link]:
        """Fresh (client->server, server->client) links of path `index` (0-based),
        seeded from the lab seed so a run can be repeated."""
        config = self.specs[index].link_config()
        return (Link(config, seed=f"{self.seed}:path{index + 1}:up"),
                Link(config, seed=f"{self.seed}:path{index + 1}:down"))


def _routing_off_filters(namespace: NetworkNamespace) -> None:
    # Reverse-path filtering would drop a subflow that arrives on another path's
    # interface than the one its source address routes to (RFC 3704 strict mode).
    for scope in ("all", "default"):
        write_sysctl(namespace.name, f"net.ipv4.conf.{scope}.rp_filter", 0)


def _host_paths(namespace: NetworkNamespace, tuns: list[TunDevice], paths: list[LabPath],
                host: int) -> None:
    """Addresses of one Linux host on every path, plus source routing when N > 1."""
    for tun, path in zip(tuns, paths, strict=True):
        namespace.add_address(tun.name, path.interface(host))
    if len(paths) > 1:
        _routing_off_filters(namespace)
        for tun, path in zip(tuns, paths, strict=True):
            table = FIRST_TABLE + path.index
            namespace.add_route(path.lab_prefix, ifname=tun.name, table=table)
            namespace.add_source_rule(str(path._address(host)), table)


class KernelPeerLab(_Lab):
    """The Linux kernel host at .1 on every path, our endpoint at .2 behind the TUNs."""

    namespace: NetworkNamespace
    tuns: list[TunDevice]

    def _build(self) -> None:
        self.namespace = self._namespace()
        self.tuns = [self._tun(self.namespace, f"path{p.index}") for p in self.paths]
        _host_paths(self.namespace, self.tuns, self.paths, host=1)

    @property
    def kernel_addresses(self) -> list[str]:
        return [str(path.server) for path in self.paths]

    @property
    def our_addresses(self) -> list[str]:
        return [str(path.client) for path in self.paths]

    def counters(self) -> dict[str, int]:
        return read_counters(self.namespace.name)

    def route_by_our_address(self) -> None:
        """Reach our path-i address over path i whatever the kernel's source address
        (`ip rule add to 198.18.i.2 table 100+i`, before the source rules): our MP_JOIN
        subflows from each of our addresses to the kernel's initial address (RFC 8684
        3.2) then cross their own path both ways."""
        if len(self.paths) < 2:
            return
        for path in self.paths:
            self.namespace.add_destination_rule(str(path.client), FIRST_TABLE + path.index)

    def set_sysctl(self, name: str, value: str | int) -> None:
        write_sysctl(self.namespace.name, name, value)

    def mptcp_limits(self, subflows: int, add_addr_accepted: int) -> None:
        """`ip mptcp limits set subflows N add_addr_accepted M` (at most 8 each)."""
        set_mptcp_limits(self.namespace, subflows, add_addr_accepted)

    def mptcp_endpoint(self, address: str, flags: int, *, endpoint_id: int | None = None,
                       ifname: str | None = None) -> None:
        """`ip mptcp endpoint add ADDRESS [id N] [dev IF]` with MPTCP_PM_ADDR_FLAG_*
        bits in `flags` (signal 1, subflow 2, backup 4, fullmesh 8)."""
        add_mptcp_endpoint(self.namespace, address, flags, endpoint_id=endpoint_id,
                           ifname=ifname)

    def delete_mptcp_endpoint(self, endpoint_id: int, address: str | None = None) -> None:
        delete_mptcp_endpoint(self.namespace, endpoint_id, address)

    def change_mptcp_endpoint(self, endpoint_id: int, *, backup: bool) -> None:
        change_mptcp_endpoint(self.namespace, endpoint_id, backup=backup)


def set_mptcp_limits(namespace: NetworkNamespace, subflows: int,
                     add_addr_accepted: int) -> None:
    """`ip mptcp limits set ...` in `namespace` (the in-kernel path manager)."""
    from pyroute2 import MPTCP

    with namespace.entered():
        mptcp = MPTCP()
    try:
        mptcp.limits("set", subflows=subflows, add_addr_accepted=add_addr_accepted)
    finally:
        mptcp.close()


def add_mptcp_endpoint(namespace: NetworkNamespace, address: str, flags: int, *,
                       endpoint_id: int | None = None, ifname: str | None = None) -> None:
    """`ip mptcp endpoint add ADDRESS flags ... [id N] [dev IF]` in `namespace`."""
    from pyroute2 import MPTCP

    from impl.lab.netns import check_lab_network

    check_lab_network(address)
    version = ipaddress.ip_address(address).version
    attributes: dict[str, Any] = {("addr6" if version == 6 else "addr4"): address,
                                  "flags": flags}
    if endpoint_id is not None:
        attributes["id"] = endpoint_id
    if ifname is not None:
        with namespace.iproute() as ipr:
            index = ipr.link_lookup(ifname=ifname)[0]
        # pyroute2 0.9 declares MPTCP_PM_ADDR_ATTR_IF_IDX as raw bytes ('hex'); the
        # kernel reads an s32 in host order, so hand it exactly those 4 bytes.
        attributes["if_idx"] = struct.pack("=i", index)
    with namespace.entered():
        mptcp = MPTCP()
    try:
        mptcp.endpoint("add", **attributes)
    finally:
        mptcp.close()


def delete_mptcp_endpoint(namespace: NetworkNamespace, endpoint_id: int,
                          address: str | None = None) -> None:
    """`ip mptcp endpoint delete id N [ADDRESS]`: the kernel sends REMOVE_ADDR for the
    ID and closes the subflows on that address (RFC 8684 3.4.2). ID 0 with an address
    is the initial subflow's address (no endpoint; iproute2 asks for it that way)."""
    if endpoint_id == 0:
        from impl.lab.netns import check_lab_network

        if address is None:
            raise ValueError("deleting ID 0 (the initial subflow's address) needs the address")
        check_lab_network(address)
        namespace.run("ip", "mptcp", "endpoint", "delete", "id", "0", address)
        return
    from pyroute2 import MPTCP

    with namespace.entered():
        mptcp = MPTCP()
    try:
        mptcp.endpoint("del", id=endpoint_id)
    finally:
        mptcp.close()


def change_mptcp_endpoint(namespace: NetworkNamespace, endpoint_id: int, *,
                          backup: bool) -> None:
    """`ip mptcp endpoint change id N backup|nobackup`: on established subflows of that
    address the kernel sends MP_PRIO (RFC 8684 3.3.8; Linux >= 5.17). pyroute2 0.9 has
    no MPTCP_PM_CMD_SET_FLAGS, so this runs iproute2's `ip mptcp`."""
    namespace.run("ip", "mptcp", "endpoint", "change", "id", str(endpoint_id),
                  "backup" if backup else "nobackup")


class KernelPairLab(_Lab):
    """Two Linux hosts, "server" (.1) and "client" (.2), a forwarder between their TUNs."""

    server: NetworkNamespace
    client: NetworkNamespace
    forwarder: subprocess.Popen[bytes]

    def _build(self) -> None:
        self.server = self._namespace()
        self.client = self._namespace()
        server_tuns = [self._tun(self.server, f"path{p.index}") for p in self.paths]
        client_tuns = [self._tun(self.client, f"path{p.index}") for p in self.paths]
        _host_paths(self.server, server_tuns, self.paths, host=1)
        _host_paths(self.client, client_tuns, self.paths, host=2)
        pairs = [
            {"label": f"path{path.index}", "a_fd": client.fileno(), "b_fd": server.fileno(),
             "config": asdict(spec.link_config()), "seed": f"{self.seed}:path{path.index}"}
            for path, spec, client, server in zip(self.paths, self.specs, client_tuns,
                                                  server_tuns, strict=True)
        ]
        self.forwarder_stats: list[dict[str, Any]] | None = None
        self.forwarder = start_forwarder(pairs, self._stack)
        self._stack.callback(self.stop_forwarder)

    def stop_forwarder(self) -> list[dict[str, Any]] | None:
        """Stop the forwarder (idempotent) and keep its per-link statistics."""
        stats = _stop_process(self.forwarder)
        if stats is not None:
            self.forwarder_stats = stats.get("stats")
        return self.forwarder_stats

    def counters(self) -> tuple[dict[str, int], dict[str, int]]:
        """(client, server) MIB counters."""
        return read_counters(self.client.name), read_counters(self.server.name)


def start_forwarder(pairs: list[dict[str, Any]], stack: ExitStack) -> subprocess.Popen[bytes]:
    """Start `python -m impl.lab.forwarder` on inherited TUN fds; stopped by `stack`
    (after which this process closes the TUN fds: the stack unwinds in reverse)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    fds = [fd for pair in pairs for fd in (pair["a_fd"], pair["b_fd"])]
    process = subprocess.Popen(
        [sys.executable, "-m", "impl.lab.forwarder", "--parent", str(os.getpid()),
         json.dumps({"pairs": pairs})],
        pass_fds=fds, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=root)
    stack.callback(_stop_process, process)
    assert process.stdout is not None
    import select

    ready, _, _ = select.select([process.stdout], [], [], FORWARDER_START_TIMEOUT)
    line = process.stdout.readline() if ready else b""
    if line.strip() != b"ready":
        _stop_process(process)
        error = process.stderr.read().decode(errors="replace") if process.stderr else ""
        raise RuntimeError(f"the forwarder did not start: {line!r} {error.strip()[-1000:]}")
    return process


def _stop_process(process: subprocess.Popen[bytes]) -> dict[str, Any] | None:
    """SIGTERM, then SIGKILL after 3 s; the last JSON line it printed, if any."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=3)
    last = None
    if process.stdout is not None and not process.stdout.closed:
        for line in process.stdout.read().splitlines():
            if line.startswith(b"{"):
                last = json.loads(line)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()
    return last


class RefPairLab(_Lab):
    """Two of our endpoints, routed through a Linux "router" namespace (module doc)."""

    router: NetworkNamespace
    client_tuns: list[TunDevice]
    server_tuns: list[TunDevice]

    def _build(self) -> None:
        self.router = router = self._namespace()
        self.client_tuns = [self._tun(router, f"cli{p.index}") for p in self.paths]
        self.server_tuns = [self._tun(router, f"srv{p.index}") for p in self.paths]
        write_sysctl(router.name, "net.ipv4.ip_forward", 1)
        write_sysctl(router.name, "net.ipv6.conf.all.forwarding", 1)
        _routing_off_filters(router)
        host_prefix = 128 if self.ipv6 else 32
        for path, client, server in zip(self.paths, self.client_tuns, self.server_tuns,
                                        strict=True):
            router.add_route(f"{path.client}/{host_prefix}", ifname=client.name)
            router.add_route(f"{path.server}/{host_prefix}", ifname=server.name)

    @property
    def client_addresses(self) -> list[str]:
        return [str(path.client) for path in self.paths]

    @property
    def server_addresses(self) -> list[str]:
        return [str(path.server) for path in self.paths]

    def counters(self) -> dict[str, int]:
        return read_counters(self.router.name)

    def attach(self, driver: Any) -> list[Any]:
        """Attach both sides' TUNs to `driver` (an `impl.io.tun_loop.TunDriver`): the
        .2 side of path i with that path's link model both ways, the .1 side bare; the
        .2 side's ports, in path order."""
        ports = []
        for index, path in enumerate(self.paths):
            outbound, inbound = self.links(index)
            ports.append(driver.attach(self.client_tuns[index], [str(path.client)],
                                       label=f"path{index + 1}", outbound=outbound,
                                       inbound=inbound))
            driver.attach(self.server_tuns[index], [str(path.server)],
                          label=f"path{index + 1}-peer")
        return ports
