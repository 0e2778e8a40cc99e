"""The TUN driver: one real-time event loop that runs sans-I/O endpoints against the real
packets of one or more TUN devices (one TUN device per path), through the link model.

    kernel  --TUN fd-->  [inbound Link]  --> endpoint.receive(Datagram)
    kernel  <--TUN fd--  [outbound Link] <-- endpoint.datagrams_to_send()

Endpoints follow `impl.io.sim.Endpoint` (the simulator's interface: `addresses`,
`receive`, `datagrams_to_send`, `next_timer`, `handle_timer`), so the same `TcpHost`
(and later the MPTCP endpoint) runs in the simulator and here unchanged. The driver
brings what the core must not have (DESIGN principle 4): the clock (`time.monotonic`),
the IP layer (`impl.wire.parse_packet` / `build_packet`) and the packets.

Each attached TUN (`TunPort`) may carry a `Link` per direction: the one link model of
`impl.io.link` (DESIGN principle 7), so a path's delay, loss and rate here are computed by
the very code the simulator uses. A packet the link delays waits in a `DelayLine` (a heap
keyed by arrival time) and leaves when the loop reaches that time; with no link, or a link
that adds no delay, it is handed over at once.

The loop (`run`) is `selectors`-based and single-threaded. Each round: deliver what is
due from the delay line, fire the endpoints' due timers, let the caller's `until()`
act (write data, close, ...) and decide whether we are done, flush every endpoint's
output into the links, then sleep in `select` until the next TUN packet, delay-line
arrival or endpoint timer. TUN fds are read in batches (up to `batch` packets per ready
fd per round), so under load one `select` call serves many packets. The endpoints answer
a batch at the flush that ends the round, so a batch of 16 full segments gets one
cumulative ACK, as a Linux receiver ACKs a GRO super-packet. RFC 9293 3.8.6.3 asks for
an ACK every second full segment; 16 (measured against 4 and 64) keeps the sender's ACK
clock fine-grained enough without spending our CPU on ACKs instead of data.

Copies: `os.read` hands each packet over as a new `bytes` object (unavoidable without
`readv` into a pool); from there the payload is a `memoryview` into that object all the
way into the TCP core (`parse_packet`), which copies only what it keeps.

The pcap option records every packet crossing our TUNs, both ways: what the kernel
wrote, when we read it (before the inbound link), and what we write, when we write it
(after the outbound link): the kernel's point of view. Non-TCP packets the kernel emits
on the devices (IPv6 router solicitations, MLD reports) are recorded and then ignored.
Link drops, malformed packets and failed writes go to the event log (`impl.io.eventlog`
format: a callable taking one dict with "type" and "t").
"""

from __future__ import annotations

import errno
import heapq
import ipaddress
import os
import selectors
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from impl.io.link import Link
from impl.io.pcap import PcapFile
from impl.io.sim import Datagram, Endpoint
from impl.io.tun import MAX_PACKET_SIZE, TunDevice
from impl.tcp.segment import Segment
from impl.wire.errors import WireError
from impl.wire.packet import build_packet, parse_packet

__all__ = ["DelayLine", "PortStats", "TunDriver", "TunPort"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Logger = Callable[[dict], None]

_TCP = 6
READ_EVERY_WRITES = 32


class DelayLine:
    """Items waiting for their arrival time (ties leave in the order they were put)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Any]] = []
        self._counter = 0

    def __len__(self) -> int:
        return len(self._heap)

    def put(self, when: float, item: Any) -> None:
        self._counter += 1
        heapq.heappush(self._heap, (when, self._counter, item))

    def next_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[Any]:
        heap = self._heap
        due = []
        while heap and heap[0][0] <= now:
            due.append(heapq.heappop(heap)[2])
        return due


def transmit(link: Link | None, size: int, now: float,
             on_drop: Callable[[str], None] | None = None) -> list[float]:
    """Arrival times of a packet offered to `link` at `now` ([now] with no link); the
    drop reason is reported through `on_drop` (read from the link's counters)."""
    if link is None:
        return [now]
    stats = link.stats
    before = (stats.lost, stats.dropped_queue, stats.dropped_down)
    arrivals = link.transmit(size, now)
    if not arrivals and on_drop is not None:
        after = (stats.lost, stats.dropped_queue, stats.dropped_down)
        reason = ("loss", "queue", "down")[[a != b for a, b in zip(after, before, strict=True)]
                                           .index(True)] if after != before else "unknown"
        on_drop(reason)
    return arrivals


@dataclass
class PortStats:
    packets_in: int = 0  # read from the TUN (the kernel sent them)
    bytes_in: int = 0
    packets_out: int = 0  # written to the TUN (after the outbound link)
    bytes_out: int = 0
    non_tcp: int = 0
    malformed: int = 0
    unrouted: int = 0  # for an address no endpoint owns
    write_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class TunPort:
    """One TUN device attached to the driver: our addresses behind it and its links."""

    tun: TunDevice
    label: str
    local_addresses: tuple[Address, ...]
    outbound: Link | None = None  # our endpoint -> the kernel
    inbound: Link | None = None  # the kernel -> our endpoint
    stats: PortStats = field(default_factory=PortStats)


class TunDriver:
    """Runs endpoints on TUN devices in real time (see the module docstring)."""

    def __init__(self, *, pcap: PcapFile | None = None, logger: Logger | None = None,
                 batch: int = 16, sticky: bool = False) -> None:
        self.pcap = pcap
        # sticky: answer a (local, remote) pair through the TUN its packets arrived on,
        # not the one owning the source address. An MPTCP peer may join from its path-i
        # address to our initial address (RFC 8684 3.2); its subflow then stays on path i.
        self._sticky: dict[tuple[Address, Address], TunPort] | None = {} if sticky else None
        self.logger = logger
        self.batch = batch
        self.endpoints: list[Endpoint] = []
        self.ports: list[TunPort] = []
        self._endpoint_by_address: dict[Address, Endpoint] = {}
        self._port_by_local: dict[Address, TunPort] = {}
        self._selector = selectors.DefaultSelector()
        self._delay_line = DelayLine()
        # pcap wants wall-clock time; the loop runs on the monotonic clock.
        self._wall_offset = time.time() - time.monotonic()
        self._writes_since_read = 0
        self._delivered_during_flush = False
        self.rounds = 0

    # -- set-up ----------------------------------------------------------------------------

    def add_endpoint(self, endpoint: Endpoint) -> Endpoint:
        for address in endpoint.addresses:
            self._endpoint_by_address[address] = endpoint
        self.endpoints.append(endpoint)
        return endpoint

    def attach(self, tun: TunDevice, local_addresses: list[str | Address], *,
               label: str | None = None, outbound: Link | None = None,
               inbound: Link | None = None) -> TunPort:
        """Serve `tun`: datagrams from `local_addresses` leave through it (via
        `outbound`), packets read from it go (via `inbound`) to the endpoint owning
        their destination address."""
        addresses = tuple(ipaddress.ip_address(a) for a in local_addresses)
        port = TunPort(tun, label or tun.name, addresses, outbound, inbound)
        for address in addresses:
            self._port_by_local[address] = port
        self._selector.register(tun.fileno(), selectors.EVENT_READ, port)
        self.ports.append(port)
        return port

    def watch(self, fileobj: Any, on_readable: Callable[[], bool]) -> None:
        """Also wake for `fileobj` (e.g. a child's stdout pipe) and call `on_readable()`
        when it is readable; it returns False to stop watching (at end of file, or a
        pipe would keep the loop spinning)."""
        self._selector.register(fileobj, selectors.EVENT_READ, on_readable)

    def close(self) -> None:
        """Stop watching the TUN fds (they belong to the lab, which closes them)."""
        self._selector.close()

    # -- the loop --------------------------------------------------------------------------

    def run(self, until: Callable[[], bool] | None = None, timeout: float = 60.0, *,
            check_after_flush: bool = False) -> bool:
        """Run until `until()` returns True (then True) or `timeout` seconds pass
        (then False). `until` is called every round, after input and timers and before
        output, so it may also act on the endpoints (send, close, read events); with
        `check_after_flush` it is called after the output instead (to wait for the
        output itself, as `drain` does)."""
        deadline = time.monotonic() + timeout
        select = self._selector.select
        while True:
            self.rounds += 1
            now = time.monotonic()
            self._deliver_due(now)
            self._fire_timers(now)
            done = until() if until is not None and not check_after_flush else False
            self._delivered_during_flush = False
            self._flush(now)
            if done or (check_after_flush and until is not None and until()):
                return True
            # Reads interleaved with the flush's writes may have handed the endpoints
            # ACKs that open the window: they must get a round before we sleep, or a
            # sender with nothing in flight (no timer) would wait for input forever.
            wake = now if self._delivered_during_flush else deadline
            pending = self._delay_line.next_time()
            if pending is not None and pending < wake:
                wake = pending
            for endpoint in self.endpoints:
                timer = endpoint.next_timer()
                if timer is not None and timer < wake:
                    wake = timer
            if now >= deadline:
                return False
            for key, _events in select(max(0.0, wake - time.monotonic())):
                if isinstance(key.data, TunPort):
                    self._read(key.data)
                elif not key.data():
                    self._selector.unregister(key.fileobj)

    def drain(self, timeout: float = 2.0) -> bool:
        """Keep running until nothing waits in the delay line (the last ACKs of a
        closed connection reach the wire), at most `timeout` seconds."""
        return self.run(lambda: len(self._delay_line) == 0, timeout, check_after_flush=True)

    @property
    def pending(self) -> int:
        """Packets the links are still holding."""
        return len(self._delay_line)

    # -- input: TUN -> link -> endpoint ----------------------------------------------------

    def _read(self, port: TunPort) -> None:
        fd = port.tun.fileno()
        stats = port.stats
        pcap = self.pcap
        delay_line = self._delay_line
        now = time.monotonic()
        for _ in range(self.batch):
            try:
                data = os.read(fd, MAX_PACKET_SIZE)
            except BlockingIOError:
                return
            stats.packets_in += 1
            stats.bytes_in += len(data)
            if pcap is not None:
                pcap.write(data, now + self._wall_offset)
            # Only TCP goes to endpoints (IPv4 protocol byte 9, IPv6 next header byte 6;
            # extension headers are not walked, as in impl.wire).
            version = data[0] >> 4
            protocol = data[9] if version == 4 else data[6] if version == 6 else -1
            if protocol != _TCP:
                stats.non_tcp += 1
                continue
            for arrival in transmit(port.inbound, len(data), now,
                                    self._drop_logger(port, "in", now)):
                if arrival <= now:
                    self._to_endpoint(port, data, now)
                else:
                    delay_line.put(arrival, (False, port, data))

    def _to_endpoint(self, port: TunPort, data: bytes, now: float) -> None:
        try:
            packet = parse_packet(data)
        except WireError as error:
            port.stats.malformed += 1
            self._log("io:malformed", now, port=port.label, error=str(error))
            return
        endpoint = self._endpoint_by_address.get(packet.dst)
        if endpoint is None:
            port.stats.unrouted += 1
            return
        if self._sticky is not None:
            self._sticky[(packet.dst, packet.src)] = port
        endpoint.receive(Datagram(packet.src, packet.dst, Segment(packet.tcp, packet.payload)),
                         now)
        self._delivered_during_flush = True

    # -- output: endpoint -> link -> TUN ---------------------------------------------------

    def _flush(self, now: float) -> None:
        delay_line = self._delay_line
        for endpoint in self.endpoints:
            for datagram in endpoint.datagrams_to_send(now):
                port = None
                if self._sticky is not None:
                    port = self._sticky.get((datagram.src, datagram.dst))
                if port is None:
                    port = self._port_by_local.get(datagram.src)
                if port is None:
                    self._log("io:no_port", now, src=str(datagram.src))
                    continue
                segment = datagram.segment
                data = build_packet(datagram.src, datagram.dst, segment.header, segment.payload)
                for arrival in transmit(port.outbound, len(data), now,
                                        self._drop_logger(port, "out", now)):
                    if arrival <= now:
                        self._to_tun(port, data, now)
                    else:
                        delay_line.put(arrival, (True, port, data))

    def _to_tun(self, port: TunPort, data: bytes, now: float) -> None:
        # With offloads (IFF_VNET_HDR) a struct virtio_net_hdr would be prepended here,
        # letting one write carry a 64 KB GSO super-segment; for now: one MTU-sized packet.
        try:
            port.tun.write(data)
        except OSError as error:
            # The kernel may refuse under memory pressure (ENOBUFS): a loss, as on a wire.
            port.stats.write_errors += 1
            self._log("io:write_error", now, port=port.label,
                      error=errno.errorcode.get(error.errno or 0, str(error)))
            return
        port.stats.packets_out += 1
        port.stats.bytes_out += len(data)
        if self.pcap is not None:
            # The clock now, not the round's `now`: reads interleave with a long flush,
            # and the capture must stay in the order the packets crossed the device.
            self.pcap.write(data, time.monotonic() + self._wall_offset)
        # Each write runs the kernel's receive path at once, and its answers (ACKs) queue
        # in the TUN's ring of txqueuelen packets, which drops when full. A long burst of
        # writes without reads would overflow it, so read in between.
        self._writes_since_read += 1
        if self._writes_since_read >= READ_EVERY_WRITES:
            self._writes_since_read = 0
            for other in self.ports:
                self._read(other)

    # -- time ------------------------------------------------------------------------------

    def _deliver_due(self, now: float) -> None:
        for to_kernel, port, data in self._delay_line.pop_due(now):
            if to_kernel:
                self._to_tun(port, data, now)
            else:
                self._to_endpoint(port, data, now)

    def _fire_timers(self, now: float) -> None:
        for endpoint in self.endpoints:
            timer = endpoint.next_timer()
            if timer is not None and timer <= now:
                endpoint.handle_timer(now)

    # -- log -------------------------------------------------------------------------------

    def _log(self, kind: str, now: float, **fields: object) -> None:
        if self.logger is not None:
            self.logger({"type": kind, "t": now, **fields})

    def _drop_logger(self, port: TunPort, direction: str,
                     now: float) -> Callable[[str], None] | None:
        if self.logger is None:
            return None
        return lambda reason: self._log("link:drop", now, port=port.label,
                                        direction=direction, reason=reason)
