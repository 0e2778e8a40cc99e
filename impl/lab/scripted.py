"""A scripted run of our MPTCP endpoint against a Linux kernel socket, step by step.

`scripted_lab(...)` builds a fresh `KernelPeerLab` (N paths), puts our sans-I/O host
(`impl.mptcp.MptcpHost`) behind its TUN devices on the driver of this process, opens a
kernel socket (`impl.lab.kernel_socket.KernelSocket`, MPTCP or plain TCP) in the lab
namespace, captures every packet of our endpoint, and yields a `ScriptedRun`: both sides
can then be driven one action at a time (send, read, close, abort, join, remove an
address, change the kernel's path-manager endpoints) with `run(until)` between actions.

Used by the kernel scenario tests (`tests/test_mptcp_kernel_scenarios.py`) and by the
conformance replay (`model_checks/replay.py`), which turns spec traces into such scripts.
The lab and its namespace are gone when the context ends, also on failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from impl.io.link import Link
from impl.io.mptcp_host import SimMptcpHost
from impl.io.pcap import PcapFile
from impl.io.tun_loop import TunDriver
from impl.lab.kernel_socket import KernelSocket
from impl.lab.run import our_config
from impl.lab.topology import KernelPeerLab, PathSpec, kernel_counter_delta
from impl.mptcp.connection import MptcpConfig, MptcpConnection
from impl.mptcp.host import MptcpHost

__all__ = ["FLAG_BACKUP", "FLAG_SIGNAL", "FLAG_SUBFLOW", "PORT", "ScriptedRun", "Ticker",
           "scripted_lab"]

PORT = 5201
# MPTCP_PM_ADDR_FLAG_* (include/uapi/linux/mptcp.h)
FLAG_SIGNAL, FLAG_SUBFLOW, FLAG_BACKUP = 1, 2, 4


class Ticker:
    """An endpoint with no addresses whose timer wakes the driver every 20 ms, so the
    in-process kernel socket is pumped even when no packet arrives."""

    addresses: tuple = ()

    def receive(self, datagram, now: float) -> None:
        raise AssertionError("the ticker owns no address")

    def datagrams_to_send(self, now: float) -> list:
        return []

    def next_timer(self) -> float:
        return time.monotonic() + 0.02

    def handle_timer(self, now: float) -> None:
        return None


@dataclass
class ScriptedRun:
    lab: KernelPeerLab
    driver: TunDriver
    host: MptcpHost
    kernel: KernelSocket
    pcap: Path
    config: MptcpConfig
    before: dict[str, int] = field(default_factory=dict)
    links: list[tuple[Link, Link]] = field(default_factory=list)  # per path: out, in
    connection: MptcpConnection | None = None
    received: bytearray = field(default_factory=bytearray)  # what our connection read
    # Our application's reads, (wall-clock time, bytes; 0 = the end of the stream read),
    # and when our listener's connection was established (accept() would return it):
    # a replay gives them to the judge, as no capture shows them.
    reads: list[tuple[float, int]] = field(default_factory=list)
    accepted_at: float | None = None
    # (wall-clock time, subflow index) of each subflow of ours whose TIME-WAIT ran out
    time_waits_over: list[tuple[float, int]] = field(default_factory=list)
    _in_time_wait: set[int] = field(default_factory=set)

    def step(self) -> None:
        self.kernel.pump()
        if self.connection is None and self.host.accepted:
            self.connection = self.host.accepted[0]
        connection = self.connection
        if connection is None:
            return
        if self.accepted_at is None and connection.established and (
                connection in self.host.accepted):
            self.accepted_at = time.time()
        for index, subflow in enumerate(connection.subflows):
            if subflow.tcp.state.name == "TIME_WAIT":
                self._in_time_wait.add(index)
            elif index in self._in_time_wait and subflow.tcp.state.name == "CLOSED":
                self._in_time_wait.discard(index)
                self.time_waits_over.append((time.time(), index))
        data = connection.read()
        if data:
            self.received += data
            self.reads.append((time.time(), len(data)))
        if connection.peer_closed and not any(count == 0 for _, count in self.reads):
            self.reads.append((time.time(), 0))

    def run(self, until: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
        """Drive both sides until `until()`; AssertionError naming `what` on timeout."""
        def round_() -> bool:
            self.step()
            return until()

        assert self.driver.run(round_, timeout), f"timed out waiting for {what}: {self.state()}"

    def run_for(self, seconds: float) -> None:
        """Drive both sides for a while (to let the endpoints do what they choose)."""
        deadline = time.monotonic() + seconds
        self.driver.run(lambda: self.step() or time.monotonic() >= deadline, seconds + 1.0)

    def state(self) -> str:
        connection = self.connection
        ours = "no connection" if connection is None else (
            f"data_state={connection.data_state} closed={connection.closed_reason} "
            f"subflows={connection.subflows} counters={self.host.counters.nonzero()}")
        kernel = self.kernel
        return (f"{ours}; kernel received={len(kernel.received)} sent={kernel.sent} "
                f"eof={kernel.eof} error={kernel.error}; delta={self.kernel_delta()}")

    def kernel_delta(self) -> dict[str, int]:
        return kernel_counter_delta(self.before, self.lab.counters())

    def wait_kernel_counter(self, name: str, at_least: int = 1) -> None:
        self.run(lambda: self.kernel_delta().get(name, 0) >= at_least, what=name)

    def connect(self, remote: str | None = None) -> MptcpConnection:
        remote = remote or self.lab.kernel_addresses[0]
        self.connection = self.host.connect(remote, PORT, time.monotonic(), self.config)
        return self.connection

    def exchange(self, ours: bytes, theirs: bytes, what: str = "data both ways") -> None:
        """Send `ours` to the kernel and `theirs` from it; wait until both arrived."""
        assert self.connection is not None
        kernel_wants = len(self.kernel.received) + len(ours)
        we_want = len(self.received) + len(theirs)
        if ours:
            self.connection.send(ours)
        if theirs:
            self.kernel.send(theirs)
        self.run(lambda: len(self.kernel.received) >= kernel_wants
                 and len(self.received) >= we_want, what=what)

    def start_exchange(self, ours: bytes, theirs: bytes) -> Callable[[], bool]:
        """Like `exchange`, but returns once a third has arrived both ways (the rest in
        flight); the returned predicate says when all of it arrived."""
        assert self.connection is not None
        kernel_wants = len(self.kernel.received) + len(ours)
        we_want = len(self.received) + len(theirs)
        self.connection.send(ours)
        self.kernel.send(theirs)
        self.run(lambda: len(self.kernel.received) >= kernel_wants - 2 * len(ours) // 3
                 and len(self.received) >= we_want - 2 * len(theirs) // 3, what="a third")
        return lambda: (len(self.kernel.received) >= kernel_wants
                        and len(self.received) >= we_want)

    def close_both(self, *, we_first: bool | None = True) -> None:
        """Graceful close: DATA_FIN one way, EOF seen, then the other way (we_first None:
        both at once, Appendix D's simultaneous close)."""
        connection = self.connection
        assert connection is not None
        if we_first is None:
            connection.close()
            self.kernel.shutdown_write()
        elif we_first:
            connection.close()
            self.run(lambda: self.kernel.eof, what="the kernel's EOF")
            self.kernel.shutdown_write()
        else:
            self.kernel.shutdown_write()
            self.run(lambda: connection.peer_closed, what="our EOF (the kernel's DATA_FIN)")
            connection.close()
        self.run(lambda: self.kernel.eof and connection.peer_closed
                 and connection.data_state == "CLOSED", what="both DATA_FINs")
        self.kernel.close()
        self.run(lambda: all(sf.dead for sf in connection.subflows)
                 or all(sf.tcp.state.name in ("TIME_WAIT", "CLOSED")
                        for sf in connection.subflows), what="every subflow closed")

    def set_path_up(self, path: int, up: bool) -> None:
        """Take path `path` (0-based) down or up, both ways (the link model drops)."""
        for link in self.links[path]:
            link.set_up(up)

    def kernel_subflows(self) -> list[str]:
        """Peer addresses of the kernel's established TCP sockets (subflows)."""
        result = self.lab.namespace.run("ss", "-tnH", "state", "established")
        return [line.split()[-1].rsplit(":", 1)[0] for line in result.stdout.splitlines()
                if line.strip()]


@contextmanager
def scripted_lab(pcap: Path, *, seed: object = 0, paths: int = 2, kernel_mptcp: bool = True,
                 signal_endpoint_id: int | None = None, ipv6: bool = False,
                 checksums: bool = False, limits: int = 2,
                 sysctls: dict[str, str | int] | None = None) -> Iterator[ScriptedRun]:
    """A fresh lab of `paths` paths, our host behind its TUNs, a kernel socket in its
    namespace (MPTCP or plain TCP); with `signal_endpoint_id` the kernel announces its
    path-2 address under that ID. Everything is torn down on exit, failure included."""
    with ExitStack() as stack:
        lab = stack.enter_context(KernelPeerLab([PathSpec() for _ in range(paths)],
                                                ipv6=ipv6, seed=0))
        capture = stack.enter_context(PcapFile(pcap))
        driver = TunDriver(pcap=capture, sticky=True)
        stack.callback(driver.close)
        host = MptcpHost(lab.our_addresses, seed=seed)
        driver.add_endpoint(SimMptcpHost(host))
        driver.add_endpoint(Ticker())
        links = []
        for index, (tun, ours) in enumerate(zip(lab.tuns, lab.our_addresses, strict=True)):
            outbound, inbound = lab.links(index)
            links.append((outbound, inbound))
            driver.attach(tun, [ours], label=f"path{index + 1}", outbound=outbound,
                          inbound=inbound)
        for name, value in (sysctls or {}).items():
            lab.set_sysctl(name, value)
        lab.route_by_our_address()
        lab.mptcp_limits(subflows=limits, add_addr_accepted=limits)
        if signal_endpoint_id is not None:
            lab.mptcp_endpoint(lab.kernel_addresses[1], FLAG_SIGNAL,
                               endpoint_id=signal_endpoint_id)
        kernel = KernelSocket(lab.namespace, mptcp=kernel_mptcp, ipv6=ipv6)
        stack.callback(kernel.stop)
        config = MptcpConfig(checksums=checksums, tcp=our_config(ipv6))
        yield ScriptedRun(lab, driver, host, kernel, pcap, config, before=lab.counters(),
                          links=links)
        kernel.stop()
        driver.drain(timeout=0.5)
