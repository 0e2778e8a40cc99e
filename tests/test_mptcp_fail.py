"""DSS checksum failures (RFC 8684 3.7) between two of our endpoints in the simulator, a
middlebox (`SimMptcpHost.mutate`) rewriting payload bytes behind TCP's checksum:

- one subflow: the receiver sends MP_FAIL, the sender answers with the infinite mapping
  and both fall back to TCP; the stream arrives whole, with exactly the byte the
  middlebox rewrote (what plain TCP would deliver: 3.7 falls back, it does not repair);
- several subflows: the failing subflow is reset with MP_TCPRST reason 6 and its data
  reinjected on the others.
"""

from __future__ import annotations

import dataclasses

from impl.io.link import LinkConfig
from impl.io.sim import Datagram
from impl.mptcp.connection import MptcpConfig
from impl.mptcp.dss import Mapping, MappingReceiver
from impl.tcp.config import TcpConfig
from impl.tcp.segment import Segment
from impl.wire.mptcp_options import (
    MPTCP_OPTION_TYPES,
    Dss,
    MpFail,
    MpTcpRst,
    MpTcpRstReason,
)
from impl.wire.tcp import TcpFlags

from .mptcp_sim import CLIENT_ADDRESSES, PORT, SERVER_ADDRESS, mptcp_pair, payload, sha256

CONFIG = MptcpConfig(checksums=True, tcp=TcpConfig(time_wait=1.0))


def mptcp_options(datagram: Datagram) -> list:
    return [o for o in datagram.segment.header.options if isinstance(o, MPTCP_OPTION_TYPES)]


class Corrupter:
    """A middlebox that flips one payload byte of the `nth` data segment from `source`
    (TCP's checksum is recomputed: only the DSS checksum can tell)."""

    def __init__(self, source, nth: int) -> None:
        self.source = source
        self.nth = nth
        self.seen = 0
        self.corrupted: Datagram | None = None

    def __call__(self, datagram: Datagram) -> Datagram:
        segment = datagram.segment
        if str(datagram.src) != str(self.source) or not segment.payload:
            return datagram
        self.seen += 1
        if self.seen != self.nth:
            return datagram
        flipped = bytearray(segment.payload)
        flipped[len(flipped) // 2] ^= 0x5A
        self.corrupted = Datagram(datagram.src, datagram.dst,
                                  Segment(segment.header, bytes(flipped)))
        return self.corrupted


def start(links, seed=0):
    network, client, server = mptcp_pair(links, seed=seed, capture=True)
    server.host.listen(PORT, CONFIG)
    connection = client.host.connect(SERVER_ADDRESS, PORT, 0.0, CONFIG)
    assert network.run(lambda: connection.fully_established and server.host.accepted,
                       time_limit=2)
    return network, client, server, connection, server.host.accepted[0]


def transfer(network, connection, accepted, data: bytes, time_limit=30.0) -> bytes:
    connection.send(data)
    connection.close()
    got = bytearray()

    def done():
        got.extend(accepted.read())
        return len(got) >= len(data) and accepted.peer_closed

    assert network.run(done, time_limit=time_limit)
    return bytes(got)


def test_infinite_mapping_drops_bytes_before_its_subflow_sequence_number():
    receiver = MappingReceiver(checksums=False)
    receiver.add(Mapping(1, 50, 2))
    receiver.feed(b"ab", 1)
    assert receiver.drain() == [(50, b"ab")]
    receiver.start_infinite(dsn=100, ssn=5)
    assert receiver.add(Mapping(9, 100, 4)) is False  # mappings mean nothing any more
    receiver.feed(b"xxGOOD", 3)  # 3, 4: before the infinite mapping; 5.. the stream
    assert receiver.drain() == [(100, b"GOOD")]


def rewritten(data: bytes, got: bytes) -> list[int]:
    """Offsets where `got` differs from `data` (same length asserted)."""
    assert len(got) == len(data)
    return [i for i, (a, b) in enumerate(zip(data, got, strict=True)) if a != b]


def test_one_subflow_mp_fail_infinite_mapping_and_fallback_keep_the_stream_intact():
    network, client, server, connection, accepted = start([LinkConfig(delay=0.005)])
    corrupter = Corrupter(CLIENT_ADDRESSES[0], nth=6)
    client.mutate = corrupter
    data = payload(300_000, seed=3)
    got = transfer(network, connection, accepted, data)
    assert corrupter.corrupted is not None
    # 3.7: the whole stream arrives; the one byte the middlebox rewrote stays rewritten.
    [offset] = rewritten(data, got)
    assert got[offset] == data[offset] ^ 0x5A
    assert connection.fallback and accepted.fallback
    assert len(connection.subflows) == 1 and not connection.subflows[0].dead
    server_counters, client_counters = server.host.counters, client.host.counters
    assert server_counters["DataCsumErr"] == 1
    assert server_counters["MPFailTx"] >= 1 and client_counters["MPFailRx"] >= 1
    assert client_counters["InfiniteMapTx"] == 1 and server_counters["InfiniteMapRx"] == 1
    assert server_counters["MPRstTx"] == 0  # fallback, not a reset
    # On the wire: MP_FAIL names the DSN of the failed mapping (where the rewritten byte
    # sits); the infinite mapping starts at the first byte the sender had not yet put on
    # the subflow, at or after it.
    base = connection.local_idsn + 1
    fails = [o for _, d in network.captured if str(d.src) == SERVER_ADDRESS
             for o in mptcp_options(d) if isinstance(o, MpFail)]
    infinite = [(d, o) for _, d in network.captured if str(d.src) == CLIENT_ADDRESSES[0]
                for o in mptcp_options(d)
                if isinstance(o, Dss) and o.mapping is not None and o.mapping.is_infinite]
    assert fails and len({f.dsn for f in fails}) == 1
    assert fails[0].dsn - base <= offset
    assert infinite and len({o.mapping.dsn for _, o in infinite}) == 1
    assert infinite[0][1].mapping.dsn >= fails[0].dsn
    first_infinite = infinite[0][0]
    assert first_infinite.segment.payload  # it rides on data
    # After the infinite mapping the sender puts no mapping on the wire any more.
    after = [d for _, d in network.captured[network.captured.index(
        next(c for c in network.captured if c[1] is first_infinite)) + 1:]]
    assert not any(isinstance(o, Dss) and o.mapping is not None and not o.mapping.is_infinite
                   for d in after if str(d.src) == CLIENT_ADDRESSES[0]
                   for o in mptcp_options(d))
    assert not [o for d in after for o in mptcp_options(d) if not isinstance(o, MpFail | Dss)]


def test_one_subflow_fallback_carries_data_both_ways_afterwards():
    network, client, server, connection, accepted = start([LinkConfig(delay=0.005)], seed=4)
    client.mutate = Corrupter(CLIENT_ADDRESSES[0], nth=3)
    up = payload(100_000, seed=5)
    got = transfer(network, connection, accepted, up)
    assert len(rewritten(up, got)) == 1 and accepted.fallback
    down = payload(50_000, seed=6)
    accepted.send(down)
    accepted.close()
    back = bytearray()

    def done():
        back.extend(connection.read())
        return len(back) >= len(down) and connection.is_closed and accepted.is_closed

    assert network.run(done, time_limit=30)
    assert sha256(bytes(back)) == sha256(down)


def test_several_subflows_reset_the_failing_one_and_reinject_its_data():
    links = [LinkConfig(delay=0.005), LinkConfig(delay=0.005)]
    network, client, server, connection, accepted = start(links, seed=2)
    join = connection.add_subflow(CLIENT_ADDRESSES[1], now=network.now)
    assert network.run(lambda: join.usable, time_limit=2)
    corrupter = Corrupter(CLIENT_ADDRESSES[1], nth=2)
    client.mutate = corrupter
    data = payload(400_000, seed=7)
    got = transfer(network, connection, accepted, data)
    assert corrupter.corrupted is not None
    assert sha256(got) == sha256(data)
    assert join.dead and not connection.fallback and not accepted.fallback
    assert server.host.counters["DataCsumErr"] == 1
    assert server.host.counters["MPFailTx"] == 0
    resets = [o for _, d in network.captured if d.segment.header.flags & TcpFlags.RST
              for o in mptcp_options(d)]
    assert resets == [MpTcpRst(MpTcpRstReason.MIDDLEBOX_INTERFERENCE)]
    assert client.host.counters["MPTCPRetrans"] >= 1  # reinjected on the initial subflow


def test_mp_fail_from_a_peer_that_never_saw_a_checksum_is_counted_once_per_option():
    # A forged MP_FAIL on a two-subflow connection: counted, no fallback (3.7 wants a
    # reset of the failing subflow by its sender, not an infinite mapping).
    links = [LinkConfig(delay=0.005), LinkConfig(delay=0.005)]
    network, client, server, connection, accepted = start(links, seed=9)
    join = connection.add_subflow(CLIENT_ADDRESSES[1], now=network.now)
    assert network.run(lambda: join.usable, time_limit=2)
    forged = []

    def add_mp_fail(datagram: Datagram) -> Datagram:
        header = datagram.segment.header
        if not forged and not datagram.segment.payload and any(
                isinstance(o, Dss) for o in header.options):
            forged.append(True)
            header = dataclasses.replace(
                header, options=header.options + (MpFail(connection.snd_una),))
            return Datagram(datagram.src, datagram.dst, Segment(header, b""))
        return datagram

    server.mutate = add_mp_fail
    data = payload(50_000)
    got = transfer(network, connection, accepted, data)
    assert forged and sha256(got) == sha256(data)
    assert client.host.counters["MPFailRx"] == 1
    assert not connection.fallback and client.host.counters["InfiniteMapTx"] == 0
