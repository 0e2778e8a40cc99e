"""Captures of Linux MPTCP talking to Linux MPTCP, to check the spec against the kernel.

`LinuxPair(paths)` builds two namespaces, "client" and "server", joined by one veth pair
per path (path i: client 198.18.i.2/24, server 198.18.i.1/24, or fd00:0:0:i::2/64 with
`ipv6`), with source-based policy routing so that each address leaves by its own path
(as the kernel selftests do; the server also routes to each client address by that
address's path), and in-kernel path-manager limits of 8 subflows / 8
accepted addresses on both hosts. `capture(path, host)` runs `tcpdump -i any -w` in one
host's namespace for a block (every path in one file) and sets `dropped` to the number of
packets tcpdump says the kernel dropped (a capture that lost packets is no fair judge).
`run_scenario(name, pcap)` runs one of `SCENARIOS` (the server and client programs are
`model_checks.conformance.linux_apps`) and returns what the two programs printed.

`SCENARIOS` lists the scenarios with a line of documentation each: MP_CAPABLE with the
client or the server sending first, ADD_ADDR and its echo with joins, REMOVE_ADDR from
either side, MP_PRIO, a backup join, fullmesh, DSS checksums, fallback to a plain TCP
server, a refused join, an unused ADD_ADDR, the server closing first, three connections
in one capture, a refused SYN, MP_FASTCLOSE by SO_LINGER {1, 0} and by a close with
unread data. Endpoint
changes of a scenario (`during`) are made while the client pauses between chunks.
"""

from __future__ import annotations

import contextlib
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from impl.lab.kernel import write_sysctl
from impl.lab.netns import NetworkNamespace
from impl.lab.topology import KernelPairLab, PathSpec, set_mptcp_limits

FIRST_TABLE = 100
PORT = 5201
ROOT = Path(__file__).resolve().parents[2]


def _operstates(namespace: NetworkNamespace) -> dict[str, str]:
    with namespace.iproute() as ipr:
        return {link.get("ifname"): link.get("operstate") for link in ipr.get_links()}


def address(path: int, host: int, ipv6: bool = False) -> str:
    """Host 1 (server) or 2 (client) on path `path` (1-based)."""
    return f"fd00:0:0:{path:x}::{host}" if ipv6 else f"198.18.{path}.{host}"


class LinuxPair:
    def __init__(self, paths: int = 2, ipv6: bool = False, link: PathSpec | None = None) -> None:
        self.paths = paths
        self.ipv6 = ipv6
        self.link = link  # None: veth pairs; else TUNs and our userspace link (delay, loss)
        self._stack = ExitStack()

    def device(self, path: int) -> str:
        return f"p{path}" if self.link is None else f"path{path}"

    def __enter__(self) -> LinuxPair:
        try:
            if self.link is None:
                self._veth_pairs()
            else:
                lab = self._stack.enter_context(KernelPairLab([self.link] * self.paths,
                                                              ipv6=self.ipv6))
                self.client, self.server = lab.client, lab.server
                for path in range(1, self.paths + 1):  # what KernelPairLab leaves out
                    self.server.add_destination_rule(address(path, 2, self.ipv6),
                                                     FIRST_TABLE + path)
                for namespace in (self.client, self.server):
                    write_sysctl(namespace.name, "net.mptcp.enabled", 1)
                    set_mptcp_limits(namespace, 8, 8)
        except BaseException:
            self._stack.close()
            raise
        return self

    def _veth_pairs(self) -> None:
        self.client = self._stack.enter_context(NetworkNamespace())
        self.server = self._stack.enter_context(NetworkNamespace())
        for path in range(1, self.paths + 1):
            self.client.add_veth(f"p{path}", self.server, f"p{path}")
            for namespace, host in ((self.client, 2), (self.server, 1)):
                prefix = 64 if self.ipv6 else 24
                namespace.add_address(f"p{path}", f"{address(path, host, self.ipv6)}"
                                                  f"/{prefix}")
                namespace.set_link_up(f"p{path}")
        for namespace, host in ((self.client, 2), (self.server, 1)):
            for scope in ("all", "default"):
                write_sysctl(namespace.name, f"net.ipv4.conf.{scope}.rp_filter", 0)
            write_sysctl(namespace.name, "net.mptcp.enabled", 1)
            for path in range(1, self.paths + 1):
                lab = "fd00::/8" if self.ipv6 else "198.18.0.0/15"
                # through the other host's address on the path: IPv6 neighbour
                # discovery only answers for addresses of the asked interface
                namespace.add_route(lab, gateway=address(path, 3 - host, self.ipv6),
                                    ifname=f"p{path}", table=FIRST_TABLE + path)
                namespace.add_source_rule(address(path, host, self.ipv6),
                                          FIRST_TABLE + path)
                if host == 1:  # the server answers each client address on its path,
                    # whatever address the client joined (a subflow bound to its
                    # device would reset a SYN/ACK arriving elsewhere)
                    namespace.add_destination_rule(address(path, 2, self.ipv6),
                                                   FIRST_TABLE + path)
            set_mptcp_limits(namespace, 8, 8)
        self._wait_for_carrier()


    def _wait_for_carrier(self, timeout: float = 5.0) -> None:
        """Until every veth is operationally up: before that the kernel queues a join's
        SYN on a device without carrier, and a short scenario ends before it is resent."""
        deadline = time.monotonic() + timeout
        while True:
            down = [f"{namespace.name}/{name}" for namespace in (self.client, self.server)
                    for name, state in _operstates(namespace).items()
                    if name.startswith("p") and state != "UP"]
            if not down:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"no carrier on {', '.join(down)}")
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def ip_mptcp(self, host: str, *argv: str) -> None:
        namespace = self.client if host == "client" else self.server
        namespace.run("ip", "mptcp", *argv)

    @contextlib.contextmanager
    def capture(self, pcap: Path, host: str = "client") -> Iterator[None]:
        """tcpdump on every interface of one host's namespace while the block runs."""
        namespace = self.client if host == "client" else self.server
        # --immediate-mode: packets leave libpcap's ring at once, else the last ones can
        # still sit in an unretired TPACKET_V3 block when tcpdump is stopped
        # (and a 64 MB buffer: with the default one, 64 KB GSO packets get dropped)
        process = namespace.popen("tcpdump", "-i", "any", "--immediate-mode", "-B", "65536",
                                  "-U", "-n", "-s", "0", "-Z", "root", "-w", str(pcap), "tcp",
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert process.stderr is not None
        lines = []
        while not lines or b"listening" not in lines[-1]:  # "listening on any, ..."
            lines.append(process.stderr.readline())
            if not lines[-1]:
                raise RuntimeError(f"tcpdump did not start: {b''.join(lines)!r}")
        try:
            yield
        finally:
            time.sleep(0.2)  # the last packets reach the capture
            process.terminate()
            _, tail = process.communicate(timeout=10)
            found = re.search(rb"(\d+) packets? dropped by kernel", tail)
            self.dropped = int(found.group(1)) if found else -1

    def app(self, host: str, *argv: str) -> subprocess.Popen[bytes]:
        namespace = self.client if host == "client" else self.server
        return namespace.popen(sys.executable, "-m", "model_checks.conformance.linux_apps",
                               *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               cwd=str(ROOT))


@dataclass(frozen=True)
class Scenario:
    """`setup` and `during` are `ip` commands (host, argv) run before the programs start
    and once the client is paused between chunks; "{c2}" / "{s2}" in them stand for the
    client's / server's address on path 2 (and so on), "{dev2}" for that path's device."""

    name: str
    paths: int
    server_args: tuple[str, ...]
    client_args: tuple[str, ...]
    doc: str
    setup: tuple[tuple[str, str], ...] = ()
    during: tuple[tuple[str, str], ...] = ()
    sysctls: tuple[tuple[str, str], ...] = ()
    plain_server: bool = False  # the server listens on a plain TCP socket


_CHUNKED = ("--send", "100000", "--pause", "0.6", "--chunks", "3")
SCENARIOS = {
    s.name: s for s in (
        Scenario("mpc_client_first", 1, ("--reply", "3000"), ("--send", "5000"),
                 "client sends first; graceful close"),
        Scenario("mpc_server_first", 1, ("--greet", "2000", "--reply", "1000"),
                 ("--send", "1000", "--wait-greeting", "2000"),
                 "server sends first; graceful close"),
        Scenario("join_signal", 3, ("--reply", "200000"),
                 ("--send", "200000", "--pause", "0.5"),
                 "ADD_ADDR + echo, two joins, data both ways",
                 setup=(("server", "endpoint add {s2} dev {dev2} id 2 signal"),
                        ("client", "endpoint add {c3} dev {dev3} id 3 subflow"))),
        Scenario("remove_addr", 2, ("--reply", "100000"), _CHUNKED,
                 "a signalled address is removed mid-transfer",
                 setup=(("server", "endpoint add {s2} dev {dev2} id 2 signal"),),
                 during=(("server", "endpoint delete id 2"),)),
        Scenario("remove_subflow_addr", 2, ("--reply", "100000"), _CHUNKED,
                 "the client removes the address of its joined subflow (REMOVE_ADDR sent)",
                 setup=(("client", "endpoint add {c2} dev {dev2} id 2 subflow"),),
                 during=(("client", "endpoint delete id 2"),)),
        Scenario("mp_prio", 2, ("--reply", "100000"), _CHUNKED,
                 "the client's second address becomes backup",
                 setup=(("client", "endpoint add {c2} dev {dev2} id 2 subflow"),),
                 during=(("client", "endpoint change id 2 backup"),)),
        Scenario("backup_join", 2, ("--reply", "50000"), ("--send", "50000", "--pause", "0.5"),
                 "a join from a backup endpoint (MP_JOIN with B set)",
                 setup=(("client", "endpoint add {c2} dev {dev2} id 2 subflow backup"),)),
        Scenario("fullmesh", 2, ("--reply", "80000"), ("--send", "80000", "--pause", "0.5"),
                 "fullmesh endpoints on both paths of the client, one signalled server "
                 "address: four subflows",
                 setup=(("server", "endpoint add {s2} dev {dev2} id 2 signal"),
                        ("client", "endpoint add {c1} dev {dev1} id 1 subflow fullmesh"),
                        ("client", "endpoint add {c2} dev {dev2} id 2 subflow fullmesh"))),
        Scenario("checksums", 2, ("--reply", "60000"), ("--send", "60000", "--pause", "0.5"),
                 "DSS checksums negotiated (net.mptcp.checksum_enabled=1 on both)",
                 setup=(("client", "endpoint add {c2} dev {dev2} id 2 subflow"),),
                 sysctls=(("both", "net.mptcp.checksum_enabled=1"),)),
        Scenario("fallback_plain_server", 1, ("--reply", "3000"), ("--send", "5000"),
                 "the server is plain TCP: the client falls back (no MP_CAPABLE on the "
                 "SYN/ACK)", plain_server=True),
        # Three chunks 0.5 s apart: Linux's path manager opens its joins only once the
        # connection is fully established (the server's first DSS), so the connection
        # must outlive the first data for the second join to be tried and refused.
        Scenario("join_refused", 3, ("--reply", "30000"),
                 ("--send", "30000", "--pause", "0.5", "--chunks", "3"),
                 "the server's path manager takes one subflow: the second join is reset",
                 setup=(("server", "limits set subflows 1 add_addr_accepted 0"),
                        ("client", "endpoint add {c2} dev {dev2} id 2 subflow"),
                        ("client", "endpoint add {c3} dev {dev3} id 3 subflow"))),
        Scenario("add_addr_not_joined", 2, ("--reply", "30000"),
                 ("--send", "30000", "--pause", "0.5"),
                 "the client accepts no announced address: ADD_ADDR echoed, never joined",
                 setup=(("client", "limits set subflows 0 add_addr_accepted 0"),
                        ("server", "endpoint add {s2} dev {dev2} id 2 signal"))),
        Scenario("server_closes_first", 1, ("--greet", "20000", "--shutdown-first"),
                 ("--send", "20000"),
                 "the server sends and shuts down first; the client sends after its "
                 "DATA_FIN (CLOSE_WAIT), then closes"),
        Scenario("sequential_connections", 1, ("--reply", "2000", "--connections", "3"),
                 ("--send", "3000", "--connections", "3"),
                 "three connections one after the other in one capture"),
        Scenario("refused", 1, ("--port-offset", "1", "--reply", "0"),
                 ("--send", "1", "--ignore-errors"),
                 "nothing listens on the port: the SYN is answered with a RST"),
        Scenario("fastclose_linger", 1, ("--reply", "0", "--sink"),
                 ("--send", "300000", "--linger0-after", "100000"),
                 "SO_LINGER {1,0} close mid-transfer"),
        Scenario("fastclose_while_receiving", 1, ("--greet", "20000000", "--sink"),
                 ("--wait-greeting", "300000", "--send", "10", "--linger0-after", "10",
                  "--linger-pause", "0", "--ignore-errors"),
                 "the client aborts while the server's data is still arriving"),
        Scenario("fastclose_unread", 1, ("--close-unread", "50000"),
                 ("--send", "300000", "--ignore-errors"),
                 "the server closes with unread data"),
    )
}


def _wait_for_line(process: subprocess.Popen[bytes], expected: bytes,
                   timeout: float = 10.0) -> None:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if ready else b""
    if expected not in line:
        process.kill()
        _, err = process.communicate()
        raise RuntimeError(f"the server did not start: {line!r} {err.decode()[-500:]}")


def _expand(pair: LinuxPair, command: str) -> list[str]:
    values = {}
    for path in range(1, pair.paths + 1):
        values[f"c{path}"] = address(path, 2, pair.ipv6)
        values[f"s{path}"] = address(path, 1, pair.ipv6)
        values[f"dev{path}"] = pair.device(path)
    return command.format(**values).split()


def run_scenario(pair: LinuxPair, name: str, pcap: Path, timeout: float = 20.0,
                 capture_on: str = "client") -> dict:
    """Run scenario `name` in `pair` (which must have at least its paths) while capturing
    into `pcap` on host `capture_on`; returns the programs' exit codes and output."""
    scenario = SCENARIOS[name]
    server_address = address(1, 1, pair.ipv6)
    for host, command in scenario.setup:
        pair.ip_mptcp(host, *_expand(pair, command))
    for host, setting in scenario.sysctls:
        key, value = setting.split("=", 1)
        for namespace in ((pair.client, pair.server) if host == "both"
                          else (pair.client if host == "client" else pair.server,)):
            write_sysctl(namespace.name, key, value)
    ipv6 = ("--ipv6",) if pair.ipv6 else ()
    plain = ("--plain",) if scenario.plain_server else ()
    with pair.capture(pcap, capture_on):
        server = pair.app("server", "server", "--port", str(PORT), *ipv6, *plain,
                          *scenario.server_args)
        _wait_for_line(server, b"listening")
        client = pair.app("client", "client", "--connect", server_address, "--port",
                          str(PORT), *scenario.client_args)
        if scenario.during:
            time.sleep(0.9)  # the joins are up and the first chunk is through
            for host, command in scenario.during:
                pair.ip_mptcp(host, *_expand(pair, command))
        outputs = {}
        for role, process in (("client", client), ("server", server)):
            try:
                out, err = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                out, err = process.communicate()
            outputs[role] = {"code": process.returncode, "out": out.decode(errors="replace"),
                             "err": err.decode(errors="replace")[-2000:]}
        time.sleep(0.3)  # TIME_WAIT ACKs and late RSTs
    outputs["capture_dropped"] = pair.dropped  # packets tcpdump lost (-1: unknown)
    return outputs
