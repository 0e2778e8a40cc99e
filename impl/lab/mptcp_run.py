"""`mptcp-ref lab run --proto mptcp --peer kernel`: our sans-I/O MPTCP host
(`impl.mptcp.MptcpHost`, on the TUN driver through `impl.io.mptcp_host.SimMptcpHost`)
against the Linux kernel's MPTCP (IPPROTO_MPTCP socket in `impl.lab.traffic`'s child),
one subflow per path.

Path management, RFC 8684 3.2 and 3.4:
- our endpoint connects (`initiator="ref"`): the kernel listens on its path-1 address
  and keeps the listener open for the joins; after MP_CAPABLE we open an MP_JOIN subflow
  from each of our other addresses (198.18.i.2) to the kernel's initial address ("full
  mesh over our addresses"). The kernel reaches 198.18.i.2 over path i (a destination
  rule, `KernelPeerLab.route_by_our_address`), so subflow i crosses path i both ways.
  With `kernel_endpoints="signal"` the kernel instead announces 198.18.i.1 (ADD_ADDR
  with HMAC, which our core verifies and echoes) and we join each announced address
  from our address on the same path.
- the kernel connects (`initiator="peer"`): we listen; the kernel has `subflow`
  endpoints (plus `fullmesh` / `backup` when asked) on 198.18.i.1 and joins our initial
  address from each; our core checks the HMACs. The kernel's source rules send subflow
  i over path i and the driver runs "sticky" (answers on the TUN a pair arrived on).

`kernel_limits` sets `ip mptcp limits subflows N add_addr_accepted N` (default paths-1,
at most 8, Linux's MPTCP_PM_ADDR_MAX). The report has `run_lab`'s shape (see
`impl.lab.run`), with `subflows` listing every subflow of our connection.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import time
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from types import SimpleNamespace
from typing import Any

from impl.io.eventlog import JsonLinesLog
from impl.io.mptcp_host import SimMptcpHost
from impl.io.pcap import PcapFile
from impl.io.tun_loop import TunDriver
from impl.lab.topology import KernelPeerLab, kernel_counter_delta
from impl.lab.traffic import KernelTraffic, KernelTrafficError, PayloadStream
from impl.mptcp.connection import MptcpConfig, MptcpConnection
from impl.mptcp.fullmesh import FullMesh
from impl.mptcp.host import MptcpHost
from impl.mptcp.info import subflow_info

__all__ = ["ENDPOINT_MODES", "MptcpApplication", "run_mptcp_with_kernel"]

ENDPOINT_MODES = ("subflow", "signal", "fullmesh", "backup")
# MPTCP_PM_ADDR_FLAG_* (include/uapi/linux/mptcp.h).
FLAG_SIGNAL, FLAG_SUBFLOW, FLAG_BACKUP, FLAG_FULLMESH = 1, 2, 4, 8
MAX_LIMIT = 8  # MPTCP_PM_ADDR_MAX
HIGH_WATER = 4 << 20
SETTLE = 2.0
SUBFLOW_REPORT_KEYS = ("initial", "local", "remote", "bytes_sent", "bytes_received", "backup",
                       "retransmitted_segments", "timeouts", "state", "close_reason")


class MptcpApplication:
    """A source or sink on one `MptcpConnection`, reporting like `impl.lab.app`."""

    def __init__(self, role: str, size: int, *, seed: int = 0,
                 high_water: int = HIGH_WATER) -> None:
        self.role = role
        self.size = size
        self.high_water = high_water
        self.connection: MptcpConnection | None = None
        self._pieces = iter(PayloadStream(size, seed)) if role == "source" else None
        self._digest = hashlib.sha256()
        self.written = 0
        self.received = 0
        self.eof = False
        self.error: str | None = None
        self.started: float | None = None
        self.finished: float | None = None
        self.peer_done_at: float | None = None
        self._closed_by_us = False

    def attach(self, connection: MptcpConnection, now: float) -> None:
        self.connection = connection
        self.started = now

    @property
    def bytes(self) -> int:
        return self.written if self.role == "source" else self.received

    @property
    def settled(self) -> bool:
        return self.connection is not None and self.connection.is_closed

    def _unacked(self) -> int:
        connection = self.connection
        assert connection is not None
        if connection.fallback:
            return connection.subflows[0].tcp.send_buffer_size
        return len(connection.snd_buffer)

    def step(self, now: float) -> None:
        connection = self.connection
        if connection is None:
            return
        data = connection.read()
        if data:
            self._digest.update(data)
            self.received += len(data)
        if connection.peer_closed and not self.eof:
            self.eof = True  # the peer's DATA_FIN (3.3.3) after all its data
            if self.role == "sink":
                self.finished = now
                connection.close()
        if connection.is_closed and connection.closed_reason != "closed" and not self.eof:
            self.error = "reset" if connection.closed_reason in (
                "aborted", "fastclose", "reset") else connection.closed_reason
        if self.role == "source" and not connection.is_closed:
            self._feed(connection, now)

    def _feed(self, connection: MptcpConnection, now: float) -> None:
        while self._pieces is not None and self._unacked() < self.high_water:
            piece = next(self._pieces, None)
            if piece is None:
                self._pieces = None
                break
            connection.send(piece)
            self._digest.update(piece)
            self.written += len(piece)
        if self._pieces is None:
            if not self._closed_by_us:
                self._closed_by_us = True
                connection.close()
            if self._unacked() == 0 and self.finished is None:
                self.finished = now

    def report(self) -> dict[str, Any]:
        connection = self.connection
        unacked = self._unacked() if connection is not None else 0
        return {
            "role": self.role, "bytes": self.bytes, "sha256": self._digest.hexdigest(),
            "bytes_acked": self.written - unacked, "bytes_received": self.received,
            "eof": self.eof, "aborted": False, "error": self.error,
            "close_reason": None if connection is None else connection.closed_reason,
            "started": self.started, "finished": self.finished,
            "state": None if connection is None else connection.data_state,
            "fallback": None if connection is None else connection.fallback,
            "checksums": None if connection is None else connection.checksums,
        }


def _limits(paths: int, kernel_limits: int | None) -> int:
    wanted = paths - 1 if kernel_limits is None else kernel_limits
    return max(0, min(MAX_LIMIT, wanted))


def _join_our_paths(connection: MptcpConnection, lab: KernelPeerLab, now: float) -> None:
    """Full mesh over our addresses (`impl.mptcp.fullmesh`): before any ADD_ADDR the
    kernel's only known address is its initial one, so this is one MP_JOIN from each of
    our other addresses to it (queued by the core until fully established, 3.1)."""
    FullMesh(lab.our_addresses, max_subflows=MAX_LIMIT).apply(connection, now)


def _join_announced(connection: MptcpConnection, lab: KernelPeerLab, joined: set,
                    now: float) -> None:
    """Join every address the kernel announced (ADD_ADDR with a valid HMAC, 3.4.1) from
    our address on the same path."""
    kernel = [ipaddress.ip_address(a) for a in lab.kernel_addresses]
    for address, port in connection.signals.remote_addresses.values():
        address = ipaddress.ip_address(address)
        if address in joined or address not in kernel or connection.is_closed:
            continue
        joined.add(address)
        ours = lab.our_addresses[kernel.index(address)]
        connection.add_subflow(ours, remote=address, remote_port=port, now=now)


def subflow_report(connection: MptcpConnection | None,
                   lab: KernelPeerLab) -> list[dict[str, Any]]:
    """Every subflow: path, addresses, payload bytes acknowledged/received, state."""
    if connection is None:
        return []
    ours = [ipaddress.ip_address(a) for a in lab.our_addresses]
    kernel = [ipaddress.ip_address(a) for a in lab.kernel_addresses]
    out = []
    for subflow in connection.subflows:
        info = subflow_info(subflow)
        if info is None:
            continue
        remote, local = ipaddress.ip_address(subflow.remote), ipaddress.ip_address(subflow.local)
        path = (kernel.index(remote) if remote in kernel and kernel.index(remote) > 0
                else ours.index(local) if local in ours else 0) + 1
        out.append({"path": path, **{key: info[key] for key in SUBFLOW_REPORT_KEYS}})
    return out


def run_mptcp_with_kernel(spec: Any, *, kernel_endpoints: str = "subflow",
                          kernel_limits: int | None = None,
                          mutate: Callable | None = None) -> dict[str, Any]:
    """One MPTCP transfer between our host and the kernel as `spec` (a `LabRunSpec`)
    says; the report of `impl.lab.run`. `mutate` is our host's outgoing middlebox
    (`SimMptcpHost.mutate`), for tests that forge or corrupt what we send."""
    from impl.lab.run import _judge, _link_report, _roles, our_config

    if kernel_endpoints not in ENDPOINT_MODES:
        raise ValueError(f"kernel endpoints: one of {', '.join(ENDPOINT_MODES)}")
    if spec.close != "graceful":
        from impl.lab.run import NotBuiltYet

        raise NotBuiltYet("--proto mptcp --close abort-*: not built yet")
    with ExitStack() as stack:
        logger = stack.enter_context(JsonLinesLog(str(spec.eventlog))) if spec.eventlog else None
        capture = stack.enter_context(PcapFile(spec.pcap)) if spec.pcap else None
        lab = stack.enter_context(KernelPeerLab(spec.paths, ipv6=spec.ipv6, seed=spec.seed))
        driver = TunDriver(pcap=capture, logger=logger, sticky=True)
        stack.callback(driver.close)
        host = MptcpHost(lab.our_addresses, seed=secrets.randbits(64), logger=logger)
        endpoint = SimMptcpHost(host)
        endpoint.mutate = mutate
        driver.add_endpoint(endpoint)
        ports = []
        for index, (tun, ours) in enumerate(zip(lab.tuns, lab.our_addresses, strict=True)):
            outbound, inbound = lab.links(index)
            ports.append(driver.attach(tun, [ours], label=f"path{index + 1}",
                                       outbound=outbound, inbound=inbound))
        for name, value in spec.sysctls.items():
            lab.set_sysctl(name, value)
        limit = _limits(len(spec.paths), kernel_limits)
        lab.mptcp_limits(subflows=limit, add_addr_accepted=limit)
        kernel_listens = spec.initiator == "ref"
        if kernel_listens:
            lab.route_by_our_address()
            if kernel_endpoints == "signal":
                for address in lab.kernel_addresses[1:]:
                    lab.mptcp_endpoint(address, FLAG_SIGNAL)
        else:
            flags = FLAG_SUBFLOW | {"fullmesh": FLAG_FULLMESH,
                                    "backup": FLAG_BACKUP}.get(kernel_endpoints, 0)
            for index, address in enumerate(lab.kernel_addresses[1:], start=2):
                lab.mptcp_endpoint(address, flags, ifname=f"path{index}")
        our_role, kernel_role = _roles(spec)
        tcp = our_config(spec.ipv6, spec.config)
        config = MptcpConfig(checksums=bool(spec.checksums), tcp=tcp)
        app = MptcpApplication(our_role, spec.size, seed=spec.seed)
        before = lab.counters()
        failure: str | None = None
        kernel: KernelTraffic | None = None
        started: float | None = None
        joined: set = set()
        try:
            if not kernel_listens:
                host.listen(spec.port, config)
            # Linux takes a join to an announced address only where a listener covers
            # that address, so with "signal" the kernel listens on the wildcard.
            wildcard = "::" if spec.ipv6 else "0.0.0.0"
            listen_on = wildcard if kernel_endpoints == "signal" else lab.kernel_addresses[0]
            kernel = KernelTraffic(
                lab.namespace, kernel_role,
                address=listen_on if kernel_listens else lab.our_addresses[0],
                bind=None if kernel_listens else lab.kernel_addresses[0],
                port=spec.port, listen=kernel_listens, size=spec.size, seed=spec.seed,
                proto="mptcp", timeout=spec.time_limit)
            driver.watch(kernel.process.stdout, kernel.on_readable)
            if kernel_listens:
                kernel.wait_listening()
                started = time.monotonic()
                connection = host.connect(lab.kernel_addresses[0], spec.port, started, config)
                app.attach(connection, started)
                if kernel_endpoints != "signal":
                    _join_our_paths(connection, lab, started)

            def step() -> bool:
                now = time.monotonic()
                if app.connection is None and host.accepted:
                    app.attach(host.accepted[0], now)
                if (kernel_listens and kernel_endpoints == "signal"
                        and app.connection is not None):
                    _join_announced(app.connection, lab, joined, now)
                app.step(now)
                if kernel.poll() is None:
                    return False
                if app.settled:
                    return True
                app.peer_done_at = app.peer_done_at or now
                return now - app.peer_done_at > SETTLE

            if not driver.run(step, timeout=spec.time_limit):
                failure = (f"timeout after {spec.time_limit:.0f}s: our connection "
                           f"{app.report()['state']}, {app.bytes} bytes moved; kernel "
                           f"{'reported' if kernel.poll() else 'no result'}")
        except KernelTrafficError as error:
            failure = str(error)
        except Exception as error:
            traceback.print_exc()
            failure = f"{type(error).__name__} in our endpoint: {error}"
        finally:
            driver.drain(timeout=1.0)
            after = lab.counters()
            peer = (kernel.poll() if kernel is not None else None) or {}
            if kernel is not None:
                if failure and not peer:
                    if kernel.process.poll() is None:
                        kernel.process.terminate()
                        kernel.process.wait(timeout=2)
                    failure += f" ({kernel.stderr() or 'no output'})"
                kernel.stop()
        if started is None:
            started = peer.get("started")
        mine = app.report()
        sender, receiver = (mine, peer) if spec.direction == "up" else (peer, mine)
        received = receiver.get("bytes", 0)
        sha_match = (sender.get("sha256") is not None and sender.get("sha256")
                     == receiver.get("sha256") and sender.get("bytes") == received)
        finished = receiver.get("finished")
        seconds = finished - started if finished is not None and started is not None else None
        reason = failure or _judge(spec, mine, peer, received, sha_match)
        goodput = received * 8 / seconds / 1e6 if seconds and seconds > 0 else None
        return {
            "ok": reason is None, "reason": reason, "peer": spec.peer, "proto": "mptcp",
            "direction": spec.direction, "family": "ipv6" if spec.ipv6 else "ipv4",
            "initiator": spec.initiator, "close": spec.close, "size": spec.size,
            "bytes": received, "sha256_match": sha_match, "seconds": seconds,
            "goodput_mbit": goodput, "checksums": mine["checksums"],
            "fallback": mine["fallback"], "kernel_endpoints": kernel_endpoints,
            "kernel_limits": limit, "paths": [path.as_dict() for path in spec.paths],
            "subflows": subflow_report(app.connection, lab),
            "links": _link_report(SimpleNamespace(ports=ports)),
            "kernel_mib_delta": kernel_counter_delta(before, after),
            "our_counters": host.counters.snapshot(), "ours": mine, "peer_side": peer,
        }
