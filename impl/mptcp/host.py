"""An MPTCP host: the token table, listeners, port allocation and the demultiplexer
that routes each segment to the subflow of its 4-tuple (sans-I/O: segments with
addresses in, segments with addresses out; drivers such as the simulator wrap it).

- `TokenTable`: RFC 8684 3.1 wants tokens unique per host; a new key whose token is in
  use is redrawn (`impl.crypto.generate_key`), and MP_JOIN SYNs find their connection
  by token (3.2).
- `MptcpHost.receive`: a SYN to a listening port makes a connection (MP_CAPABLE, or
  plain TCP for a SYN without it: 3.7); an MP_JOIN SYN joins the connection its token
  names, or is reset when no connection owns it (3.2, Linux's MPJoinNoTokenFound);
  anything else without a subflow gets RFC 9293's reset.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable

from impl.crypto import generate_key, token_from_key
from impl.tcp.segment import Segment, reset_for_unexpected
from impl.wire.mptcp_options import MpJoinSyn

from .connection import MptcpConfig, MptcpConnection
from .counters import MptcpCounters
from .handshake import find_option
from .subflow import Subflow

__all__ = ["MptcpHost", "TokenTable"]


class TokenTable:
    """Local tokens in use on one host, each naming its connection."""

    def __init__(self, randbits: Callable[[int], int]) -> None:
        self._randbits = randbits
        self._connections: dict[int, object] = {}
        self._reserved: set[int] = set()

    def new_key(self, connection: object | None) -> int:
        """A key whose token is not in use here (redrawn on collision, 3.1)."""
        key = generate_key(self, self._randbits)
        self._reserved.add(token_from_key(key))
        return key

    def bind(self, token: int, connection: object) -> None:
        self._connections[token] = connection

    def release(self, token: int) -> None:
        self._connections.pop(token, None)
        self._reserved.discard(token)

    def lookup(self, token: int) -> object | None:
        return self._connections.get(token)

    def __contains__(self, token: object) -> bool:
        return token in self._connections or token in self._reserved

    def __len__(self) -> int:
        return len(self._connections)


class MptcpHost:
    def __init__(
        self,
        addresses,
        *,
        seed: int | str = 0,
        logger: Callable[[dict], None] | None = None,
        randbits: Callable[[int], int] | None = None,
    ) -> None:
        if isinstance(addresses, (str, ipaddress.IPv4Address, ipaddress.IPv6Address)):
            addresses = [addresses]
        self.addresses = [ipaddress.ip_address(a) for a in addresses]
        self.rng = random.Random(seed)
        self.logger = logger
        self.counters = MptcpCounters()
        self.tokens = TokenTable(randbits or self.rng.getrandbits)
        self.listeners: dict[int, MptcpConfig] = {}
        self.subflows: dict[tuple, Subflow] = {}
        self.connections: list[MptcpConnection] = []
        self.accepted: list[MptcpConnection] = []
        self._output: list[tuple[object, object, Segment]] = []
        self._next_port = 40000
        self.resets_sent = 0

    @property
    def address(self):
        return self.addresses[0]

    def address_id(self, address) -> int:
        """RFC 8684 3.4.1 address IDs: 0 is the initial subflow's, here the index of the
        address on this host."""
        return self.addresses.index(ipaddress.ip_address(address))

    def allocate_port(self) -> int:
        port = self._next_port
        self._next_port += 1
        return port

    def register(self, subflow: Subflow) -> None:
        self.subflows[subflow.key] = subflow

    def listen(self, port: int, config: MptcpConfig | None = None) -> None:
        self.listeners[port] = config or MptcpConfig()

    def connect(self, remote, remote_port: int, now: float,
                config: MptcpConfig | None = None, local=None) -> MptcpConnection:
        local = ipaddress.ip_address(local) if local is not None else self.address
        connection = MptcpConnection.connect(
            self, local, ipaddress.ip_address(remote), remote_port, now,
            config or MptcpConfig())
        self.connections.append(connection)
        return connection

    def receive(self, src, dst, segment: Segment, now: float) -> None:
        header = segment.header
        key = (dst, header.dst_port, src, header.src_port)
        subflow = self.subflows.get(key)
        syn_only = header.flags & 0x16 == 0x02  # SYN without ACK or RST
        if subflow is not None and subflow.tcp.is_closed and syn_only:
            del self.subflows[key]
            subflow = None
        if subflow is not None:
            subflow.connection.receive(subflow, segment, now)
            return
        if syn_only:
            join = find_option(header.options, MpJoinSyn)
            if join is not None:
                connection = self.tokens.lookup(join.receiver_token)
                if isinstance(connection, MptcpConnection) and not connection.fallback and (
                    connection.remote_key is not None and not connection.is_closed
                ):
                    if connection.refuses_join_to(dst, header.dst_port):
                        # 3.1: we set C, so a join to our initial address and port is
                        # refused (Linux counts MPJoinRejected and resets it too).
                        self.counters.inc("MPJoinRejected")
                    else:
                        connection.accept_join(dst, src, segment, join, now)
                        return
                else:
                    self.counters.inc("MPJoinNoTokenFound")  # 3.2: reset the SYN
            elif header.dst_port in self.listeners:
                connection = MptcpConnection.accept(
                    self, dst, src, segment, now, self.listeners[header.dst_port])
                self.connections.append(connection)
                self.accepted.append(connection)
                return
        reply = reset_for_unexpected(segment)
        if reply is not None:
            self.resets_sent += 1
            self._output.append((dst, src, reply))

    def packets_to_send(self, now: float) -> list[tuple[object, object, Segment]]:
        out, self._output = self._output, []
        for connection in self.connections:
            out.extend(connection.packets_to_send(now))
        return out

    def next_timer(self) -> float | None:
        timers = [c.next_timer() for c in self.connections]
        timers = [t for t in timers if t is not None]
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> None:
        for connection in self.connections:
            deadline = connection.next_timer()
            if deadline is not None and deadline <= now:
                connection.handle_timer(now)
