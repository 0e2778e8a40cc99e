"""A deterministic simulated network with a virtual clock, for tests and experiments.

Hosts exchange `Datagram`s (addresses + one TCP segment) through `Link` models
(`link.py`), one per direction between two addresses. `Network.run()` alternates: collect
what every host wants to send (each datagram goes through its link, which schedules its
arrival or drops it), then advance the virtual clock to the earliest arrival or timer and
process it, until a condition holds or a time limit passes. Everything is ordered by
(time, sequence of scheduling), so a run is a pure function of its seeds.

`TcpHost` is the simplest endpoint: a listener table and a demultiplexer of TCP
connections by 4-tuple. A SYN to a port with a listener creates a connection with
`TcpConnection.accept`; anything else that matches no connection is answered by RFC
9293 3.10.7.1's reset. MPTCP endpoints will be other `Endpoint`s on the same network.

With `wire=True` every datagram is encoded with `impl.wire.build_packet` and decoded with
`parse_packet` on arrival, so simulations exercise the codec and checksums too; the
default passes segment objects through (faster) with the same byte sizes on the links.
`filters` see every datagram before its link and may drop it (scripted losses: "drop the
second copy of sequence 1461"); `captured` records deliveries when `capture=True`.
"""

from __future__ import annotations

import heapq
import ipaddress
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from impl.tcp.config import TcpConfig
from impl.tcp.connection import TcpConnection, TcpState
from impl.tcp.hooks import TcpHook
from impl.tcp.segment import Segment, reset_for_unexpected
from impl.wire.packet import build_packet, parse_packet
from impl.wire.tcp_options import emit_tcp_options

from .link import Link, LinkConfig

__all__ = ["Datagram", "Endpoint", "Network", "TcpHost", "tcp_pair"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Datagram:
    src: Address
    dst: Address
    segment: Segment

    @property
    def size(self) -> int:
        """Bytes on the wire: IP header + TCP header with options + payload."""
        ip = 20 if self.src.version == 4 else 40
        options = len(emit_tcp_options(self.segment.header.options))
        return ip + 20 + options + len(self.segment.payload)


class Endpoint(Protocol):
    addresses: list[Address]

    def receive(self, datagram: Datagram, now: float) -> None: ...

    def datagrams_to_send(self, now: float) -> list[Datagram]: ...

    def next_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


@dataclass
class _Listener:
    config: TcpConfig | None
    hook_factory: Callable[[], TcpHook] | None
    connection_kwargs: dict


class TcpHost:
    """A host with TCP connections and a listener table."""

    def __init__(
        self,
        address: str | Address,
        *,
        seed: int | str = 0,
        logger: Callable[[dict], None] | None = None,
    ) -> None:
        self.addresses: list[Address] = [ipaddress.ip_address(address)]
        self._rng = random.Random(seed)
        self.logger = logger
        self.listeners: dict[int, _Listener] = {}
        self.connections: dict[tuple, TcpConnection] = {}
        self.accepted: list[TcpConnection] = []
        self._output: list[Datagram] = []
        self._next_port = 40000
        self.resets_sent = 0

    @property
    def address(self) -> Address:
        return self.addresses[0]

    def listen(
        self,
        port: int,
        config: TcpConfig | None = None,
        hook_factory: Callable[[], TcpHook] | None = None,
        **connection_kwargs,
    ) -> None:
        """Accept SYNs to `port`; `connection_kwargs` go to `TcpConnection.accept`."""
        self.listeners[port] = _Listener(config, hook_factory, connection_kwargs)

    def connect(
        self,
        remote: str | Address,
        remote_port: int,
        now: float,
        config: TcpConfig | None = None,
        hook: TcpHook | None = None,
        local_port: int | None = None,
        **connection_kwargs,
    ) -> TcpConnection:
        remote = ipaddress.ip_address(remote)
        if local_port is None:
            local_port = self._next_port
            self._next_port += 1
        connection = TcpConnection(
            local_port, remote_port, config, hook, rng=self._rng, logger=self.logger,
            name=f"{self.address}:{local_port}>{remote}:{remote_port}", **connection_kwargs,
        )
        self.connections[(self.address, local_port, remote, remote_port)] = connection
        connection.connect(now)
        return connection

    def receive(self, datagram: Datagram, now: float) -> None:
        segment = datagram.segment
        header = segment.header
        key = (datagram.dst, header.dst_port, datagram.src, header.src_port)
        connection = self.connections.get(key)
        syn_only = header.flags & 0x16 == 0x02  # SYN without ACK or RST
        if connection is not None and connection.is_closed and syn_only:
            del self.connections[key]  # a new incarnation of the 4-tuple
            connection = None
        if connection is not None:
            connection.receive_segment(segment, now)
            return
        listener = self.listeners.get(header.dst_port)
        if listener is not None and syn_only:
            hook = listener.hook_factory() if listener.hook_factory else None
            connection = TcpConnection.accept(
                segment, now, listener.config, hook, rng=self._rng, logger=self.logger,
                name=f"{datagram.dst}:{header.dst_port}<{datagram.src}:{header.src_port}",
                **listener.connection_kwargs,
            )
            self.connections[key] = connection
            self.accepted.append(connection)
            return
        reply = reset_for_unexpected(segment)
        if reply is not None:
            self.resets_sent += 1
            self._output.append(Datagram(datagram.dst, datagram.src, reply))

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self._output = self._output, []
        for (local, _lport, remote, _rport), connection in self.connections.items():
            for segment in connection.segments_to_send(now):
                out.append(Datagram(local, remote, segment))
        return out

    def next_timer(self) -> float | None:
        timers = [c.next_timer() for c in self.connections.values()]
        timers = [t for t in timers if t is not None]
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> None:
        for connection in list(self.connections.values()):
            deadline = connection.next_timer()
            if deadline is not None and deadline <= now:
                connection.handle_timer(now)

    def connection_states(self) -> list[TcpState]:
        return [connection.state for connection in self.connections.values()]


class Network:
    """Hosts, links between their addresses, and the virtual clock."""

    def __init__(self, seed: int = 0, wire: bool = False, capture: bool = False) -> None:
        self.now = 0.0
        self.seed = seed
        self.wire = wire
        self.hosts: list[Endpoint] = []
        self._by_address: dict[Address, Endpoint] = {}
        self.links: dict[tuple[Address, Address], Link] = {}
        self.filters: list[Callable[[Datagram, float], bool]] = []
        self.captured: list[tuple[float, Datagram]] | None = [] if capture else None
        self.filtered: list[tuple[float, Datagram]] = []
        self._queue: list[tuple[float, int, Endpoint, object]] = []
        self._counter = 0

    def add_host(self, host: Endpoint) -> Endpoint:
        self.hosts.append(host)
        for address in host.addresses:
            self._by_address[address] = host
        return host

    def add_link(
        self,
        a: str | Address,
        b: str | Address,
        forward: LinkConfig | None = None,
        backward: LinkConfig | None = None,
    ) -> tuple[Link, Link]:
        """Links a->b with `forward` and b->a with `backward` (default: the same)."""
        a, b = ipaddress.ip_address(a), ipaddress.ip_address(b)
        forward = forward or LinkConfig()
        there = Link(forward, seed=f"{self.seed}:{a}>{b}")
        back = Link(backward or forward, seed=f"{self.seed}:{b}>{a}")
        self.links[(a, b)] = there
        self.links[(b, a)] = back
        return there, back

    def _send(self, datagram: Datagram) -> None:
        for drop in self.filters:
            if drop(datagram, self.now):
                self.filtered.append((self.now, datagram))
                return
        link = self.links.get((datagram.src, datagram.dst))
        destination = self._by_address.get(datagram.dst)
        if link is None or destination is None:
            return  # no route: silently lost, as on a real network
        if self.wire:
            segment = datagram.segment
            data = build_packet(datagram.src, datagram.dst, segment.header, segment.payload)
            size: int = len(data)
            item: object = data
        else:
            size = datagram.size
            item = datagram
        for arrival in link.transmit(size, self.now):
            self._counter += 1
            heapq.heappush(self._queue, (arrival, self._counter, destination, item))

    def _flush(self) -> None:
        for host in self.hosts:
            for datagram in host.datagrams_to_send(self.now):
                self._send(datagram)

    def _deliver(self, host: Endpoint, item: object) -> None:
        if isinstance(item, bytes):
            packet = parse_packet(item)
            datagram = Datagram(packet.src, packet.dst, Segment(packet.tcp, packet.payload))
        else:
            datagram = item
        if self.captured is not None:
            self.captured.append((self.now, datagram))
        host.receive(datagram, self.now)

    def run(
        self,
        until: Callable[[], bool] | None = None,
        time_limit: float = 60.0,
        max_steps: int = 10_000_000,
    ) -> bool:
        """Advance until `until()` holds (returns True) or `time_limit` seconds of
        virtual time pass or nothing is left to happen (returns `until()`'s value)."""
        end = self.now + time_limit
        for _ in range(max_steps):
            self._flush()
            if until is not None and until():
                return True
            arrival = self._queue[0][0] if self._queue else None
            timers = [t for t in (h.next_timer() for h in self.hosts) if t is not None]
            timer = min(timers) if timers else None
            candidates = [t for t in (arrival, timer) if t is not None]
            if not candidates or min(candidates) > end:
                self.now = max(self.now, end) if candidates else self.now
                return until() if until is not None else False
            self.now = max(self.now, min(candidates))
            if arrival is not None and arrival <= self.now:
                _, _, host, item = heapq.heappop(self._queue)
                self._deliver(host, item)
            else:
                for host in self.hosts:
                    deadline = host.next_timer()
                    if deadline is not None and deadline <= self.now:
                        host.handle_timer(self.now)
        raise RuntimeError(f"no quiescence after {max_steps} steps at t={self.now}")


def tcp_pair(
    forward: LinkConfig | None = None,
    backward: LinkConfig | None = None,
    *,
    seed: int = 0,
    logger: Callable[[dict], None] | None = None,
    wire: bool = False,
    capture: bool = False,
    client_address: str = "198.18.0.1",
    server_address: str = "198.18.0.2",
) -> tuple[Network, TcpHost, TcpHost]:
    """A network of two TCP hosts joined by one link (forward = client to server)."""
    network = Network(seed=seed, wire=wire, capture=capture)
    client = TcpHost(client_address, seed=f"{seed}:client", logger=logger)
    server = TcpHost(server_address, seed=f"{seed}:server", logger=logger)
    network.add_host(client)
    network.add_host(server)
    network.add_link(client_address, server_address, forward, backward)
    return network, client, server
