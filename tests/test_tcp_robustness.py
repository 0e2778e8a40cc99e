"""A connection survives arbitrary segments (what a buggy peer, an attacker or a middlebox
may send): random sequence and acknowledgment numbers, flag combinations, SACK blocks
pointing anywhere, stale or future timestamps, any payload size. It never raises and its
sequence variables stay ordered. When none of the junk was taken in (TCP cannot tell a
blind in-window forgery from the peer: accepted forged data or a forged window update
legitimately derails it, in Linux too), the genuine transfer still completes."""

from __future__ import annotations

import random

from hypothesis import event, given, settings
from hypothesis import strategies as st

from impl.tcp.config import TcpConfig
from impl.tcp.connection import TcpConnection
from impl.tcp.events import DataReceived
from impl.tcp.segment import Segment
from impl.tcp.state import TcpState
from impl.wire.tcp import TcpHeader
from impl.wire.tcp_options import Sack, Timestamps

U32 = 0xFFFFFFFF


def pair():
    client = TcpConnection(40000, 80, TcpConfig(time_wait=1), rng=random.Random(7))
    client.connect(0.0)
    (syn,) = client.segments_to_send(0.0)
    server = TcpConnection.accept(syn, 0.0, TcpConfig(time_wait=1), rng=random.Random(8))
    return client, server


def exchange(client, server, now, rounds=1):
    for _ in range(rounds):
        for segment in server.segments_to_send(now):
            client.receive_segment(segment, now)
        for segment in client.segments_to_send(now):
            server.receive_segment(segment, now)


def footprint(connection):
    """The state a junk segment could corrupt (ACK requests and timers aside)."""
    sender, receiver = connection.sender, connection.receiver
    return (connection.state, sender.snd_una, sender.snd_wnd, sender.snd_wl1,
            sender.scoreboard.blocks, receiver.rcv_nxt, receiver.queue.ranges,
            receiver.fin_seq, connection.ts_recent)


def check_invariants(connection):
    sender = connection.sender
    assert sender.snd_una <= sender.snd_nxt <= sender.send_end
    assert sender.buffer.start <= max(sender.snd_una, sender.buffer.start)
    assert 0 <= sender.pipe() <= sender.snd_nxt - sender.snd_una + (
        sender.high_rxt - sender.snd_una if sender.high_rxt > sender.snd_una else 0)
    receiver = connection.receiver
    if receiver is not None:
        assert receiver.rcv_adv >= receiver.rcv_nxt or receiver.window == 0
        for start, end in receiver.queue.ranges:
            assert receiver.rcv_nxt < start < end


garbage = st.fixed_dictionaries({
    "seq_offset": st.one_of(st.integers(-70_000, 70_000), st.integers(0, U32)),
    "ack_offset": st.one_of(st.integers(-70_000, 70_000), st.integers(0, U32)),
    "flags": st.integers(0, 0xFF),
    "window": st.integers(0, 0xFFFF),
    "length": st.sampled_from([0, 1, 100, 1448, 5000, 65_000]),
    "sack": st.lists(st.tuples(st.integers(-70_000, 70_000), st.integers(0, 70_000)),
                     max_size=4),
    "ts": st.one_of(st.none(), st.tuples(st.integers(0, U32), st.integers(0, U32))),
    "absolute": st.booleans(),
})


@settings(max_examples=int(__import__("os").environ.get("TCP_FUZZ_EXAMPLES", "40")), deadline=None)
@given(st.lists(garbage, min_size=1, max_size=25), st.integers(0, 3))
def test_arbitrary_segments_never_break_the_connection(junk, victim_index):
    client, server = pair()
    exchange(client, server, 0.001, rounds=2)
    assert client.state is server.state is TcpState.ESTABLISHED
    data = random.Random(1).randbytes(200_000)
    client.send(data)
    now = 0.01
    received = bytearray()
    tainted = False
    for item in junk:
        victim = (client, server)[victim_index % 2]
        base_seq = victim.receiver.rcv_nxt if not item["absolute"] else 0
        base_ack = victim.sender.snd_una if not item["absolute"] else 0
        options = []
        if item["ts"] is not None:
            options.append(Timestamps(*item["ts"]))
        if item["sack"]:
            blocks = tuple(((base_ack + left) & U32, (base_ack + left + size) & U32)
                           for left, size in item["sack"])
            options.append(Sack(blocks))
        header = TcpHeader(victim.remote_port, victim.local_port,
                           (base_seq + item["seq_offset"]) & U32,
                           (base_ack + item["ack_offset"]) & U32,
                           item["flags"], item["window"], options=tuple(options))
        before = footprint(victim)
        victim.receive_segment(Segment(header, bytes(item["length"])), now)
        tainted |= footprint(victim) != before
        check_invariants(victim)
        exchange(client, server, now)
        received += b"".join(e.data for e in server.events() if isinstance(e, DataReceived))
        now += 0.003
        for connection in (client, server):
            deadline = connection.next_timer()
            if deadline is not None and deadline <= now:
                connection.handle_timer(now)
            check_invariants(connection)
    event("junk changed state" if tainted else "junk changed nothing")
    if tainted:
        return
    # Junk that changed nothing must not stop genuine traffic.
    for _ in range(3000):
        exchange(client, server, now)
        received += b"".join(e.data for e in server.events() if isinstance(e, DataReceived))
        if len(received) >= len(data):
            break
        deadlines = [d for d in (client.next_timer(), server.next_timer()) if d is not None]
        now = max(now + 0.001, min(deadlines)) if deadlines else now + 0.001
        for connection in (client, server):
            deadline = connection.next_timer()
            if deadline is not None and deadline <= now:
                connection.handle_timer(now)
        assert not (client.is_closed or server.is_closed)
    assert bytes(received) == data
