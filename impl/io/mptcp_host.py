"""`impl.mptcp.MptcpHost` as an `impl.io.sim.Endpoint`: the adapter that lets both the
simulator (`impl.io.sim.Network`) and the TUN driver (`impl.io.tun_loop.TunDriver`) run
a sans-I/O MPTCP host. The core (`impl.mptcp`) knows nothing of datagrams or devices;
this driver-side glue turns its `(src, dst, Segment)` triples into `Datagram`s and back.
"""

from __future__ import annotations

from collections.abc import Callable

from impl.io.sim import Datagram
from impl.mptcp.host import MptcpHost

__all__ = ["SimMptcpHost"]


class SimMptcpHost:
    """Adapter: datagrams in and out; `mutate` may rewrite or drop outgoing datagrams
    (return None to drop) so tests can forge options on the wire."""

    def __init__(self, host: MptcpHost) -> None:
        self.host = host
        self.addresses = host.addresses
        self.mutate: Callable[[Datagram], Datagram | None] | None = None

    def receive(self, datagram: Datagram, now: float) -> None:
        self.host.receive(datagram.src, datagram.dst, datagram.segment, now)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out = []
        for src, dst, segment in self.host.packets_to_send(now):
            datagram = Datagram(src, dst, segment)
            if self.mutate is not None:
                datagram = self.mutate(datagram)
            if datagram is not None:
                out.append(datagram)
        return out

    def next_timer(self) -> float | None:
        return self.host.next_timer()

    def handle_timer(self, now: float) -> None:
        self.host.handle_timer(now)
