"""Captures of Linux MPTCP talking to Linux MPTCP, to check the spec against the kernel.

`LinuxPair(paths)` builds two namespaces, "client" and "server", joined by one veth pair
per path (path i: client 198.18.i.2/24, server 198.18.i.1/24, or fd00:0:0:i::2/64 with
`ipv6`), with source-based policy routing so that each address leaves by its own path
(as the kernel selftests do; the server also routes to each client address by that
address's path), and in-kernel path-manager limits of 8 subflows / 8
accepted addresses on both hosts. `capture(path)` runs `tcpdump -i any -w` in the client
namespace for a block (every path in one file). `run_scenario(name, pcap)` runs one of
`SCENARIOS` (the server and client programs are `model_checks.conformance.linux_apps`)
and returns what the two programs printed.

Scenarios (the endpoint changes are made while the client is paused between chunks):

    mpc_client_first   client sends first: MP_CAPABLE with data after the third ACK
    mpc_server_first   server sends first: the client's third ACK carries no data
    join_signal        server announces a second address (ADD_ADDR, echo), client joins
                       it and opens a subflow from its own second address; data both ways
    remove_addr        as join_signal, then the server withdraws the address (REMOVE_ADDR)
    mp_prio            client has a second address, then marks it backup (MP_PRIO)
    fastclose_linger   the client closes with SO_LINGER {1, 0} mid-transfer (MP_FASTCLOSE)
    fastclose_unread   the server closes with unread data (MP_FASTCLOSE)
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from impl.lab.kernel import write_sysctl
from impl.lab.netns import NetworkNamespace
from impl.lab.topology import add_mptcp_endpoint, set_mptcp_limits

FIRST_TABLE = 100
PORT = 5201
SIGNAL, SUBFLOW, BACKUP = 1, 2, 4  # MPTCP_PM_ADDR_FLAG_*
ROOT = Path(__file__).resolve().parents[2]


def address(path: int, host: int, ipv6: bool = False) -> str:
    """Host 1 (server) or 2 (client) on path `path` (1-based)."""
    return f"fd00:0:0:{path:x}::{host}" if ipv6 else f"198.18.{path}.{host}"


class LinuxPair:
    def __init__(self, paths: int = 2, ipv6: bool = False) -> None:
        self.paths = paths
        self.ipv6 = ipv6
        self._stack = ExitStack()

    def __enter__(self) -> LinuxPair:
        try:
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
                    namespace.add_route(lab, ifname=f"p{path}", table=FIRST_TABLE + path)
                    namespace.add_source_rule(address(path, host, self.ipv6),
                                              FIRST_TABLE + path)
                    if host == 1:  # the server answers each client address on its path,
                        # whatever address the client joined (a subflow bound to its
                        # device would reset a SYN/ACK arriving elsewhere)
                        namespace.add_destination_rule(address(path, 2, self.ipv6),
                                                       FIRST_TABLE + path)
                set_mptcp_limits(namespace, 8, 8)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def endpoint(self, host: str, path: int, flags: int, endpoint_id: int) -> None:
        namespace = self.client if host == "client" else self.server
        add_mptcp_endpoint(namespace, address(path, 2 if host == "client" else 1, self.ipv6),
                           flags, endpoint_id=endpoint_id, ifname=f"p{path}")

    def ip_mptcp(self, host: str, *argv: str) -> None:
        namespace = self.client if host == "client" else self.server
        namespace.run("ip", "mptcp", *argv)

    @contextlib.contextmanager
    def capture(self, pcap: Path) -> Iterator[None]:
        """tcpdump on every interface of the client namespace while the block runs."""
        process = self.client.popen("tcpdump", "-i", "any", "-U", "-n", "-s", "0", "-Z",
                                    "root", "-w", str(pcap), "tcp",
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
            time.sleep(0.3)  # the last packets reach the capture
            process.terminate()
            process.wait(timeout=10)

    def app(self, host: str, *argv: str) -> subprocess.Popen[bytes]:
        namespace = self.client if host == "client" else self.server
        return namespace.popen(sys.executable, "-m", "model_checks.conformance.linux_apps",
                               *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               cwd=str(ROOT))


@dataclass(frozen=True)
class Scenario:
    name: str
    paths: int
    server_args: tuple[str, ...]
    client_args: tuple[str, ...]
    doc: str


SCENARIOS = {
    s.name: s for s in (
        Scenario("mpc_client_first", 1, ("--reply", "3000"), ("--send", "5000"),
                 "client sends first; graceful close"),
        Scenario("mpc_server_first", 1, ("--greet", "2000", "--reply", "1000"),
                 ("--send", "1000", "--wait-greeting", "2000"),
                 "server sends first; graceful close"),
        Scenario("join_signal", 3, ("--reply", "200000"),
                 ("--send", "200000", "--pause", "0.5"),
                 "ADD_ADDR + echo, two joins, data both ways"),
        Scenario("remove_addr", 2, ("--reply", "100000"),
                 ("--send", "100000", "--pause", "0.6", "--chunks", "3"),
                 "a signalled address is removed mid-transfer"),
        Scenario("mp_prio", 2, ("--reply", "100000"),
                 ("--send", "100000", "--pause", "0.6", "--chunks", "3"),
                 "the client's second address becomes backup"),
        Scenario("fastclose_linger", 1, ("--reply", "0", "--sink"),
                 ("--send", "300000", "--linger0-after", "100000"),
                 "SO_LINGER {1,0} close mid-transfer"),
        Scenario("fastclose_unread", 1, ("--close-unread", "50000"),
                 ("--send", "300000", "--ignore-errors"),
                 "the server closes with unread data"),
    )
}


def run_scenario(pair: LinuxPair, name: str, pcap: Path, timeout: float = 20.0) -> dict:
    """Run scenario `name` in `pair` (which must have at least its paths) while capturing
    into `pcap`; returns the programs' exit codes and output."""
    scenario = SCENARIOS[name]
    server_address = address(1, 1, pair.ipv6)
    if name in ("join_signal", "remove_addr"):
        pair.endpoint("server", 2, SIGNAL, 2)
    if name == "join_signal":
        pair.endpoint("client", 3, SUBFLOW, 3)
    if name == "mp_prio":
        pair.endpoint("client", 2, SUBFLOW, 2)
    with pair.capture(pcap):
        server = pair.app("server", "server", "--port", str(PORT), *scenario.server_args)
        time.sleep(0.3)
        client = pair.app("client", "client", "--connect", server_address, "--port",
                          str(PORT), *scenario.client_args)
        if name in ("remove_addr", "mp_prio"):
            time.sleep(0.9)  # the joins are up and the first chunk is through
            if name == "remove_addr":
                pair.ip_mptcp("server", "endpoint", "delete", "id", "2")
            else:
                pair.ip_mptcp("client", "endpoint", "change", "id", "2", "backup")
        outputs = {}
        for role, process in (("client", client), ("server", server)):
            try:
                out, err = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                out, err = process.communicate()
            outputs[role] = {"code": process.returncode, "out": out.decode(errors="replace"),
                             "err": err.decode(errors="replace")[-2000:]}
        time.sleep(0.5)  # TIME_WAIT ACKs and late RSTs
    return outputs
