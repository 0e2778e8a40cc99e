"""Received segments larger than one MSS (GRO/LRO super-segments from a TUN device, up to
64 KB): in order, out of order and overlapping, they are reassembled without per-byte
work and acknowledged at once (more than two full segments arrived)."""

from __future__ import annotations

import random

from impl.tcp.config import TcpConfig
from impl.tcp.connection import TcpConnection
from impl.tcp.events import DataReceived
from impl.tcp.segment import Segment
from impl.tcp.state import TcpState
from impl.wire.tcp import TcpFlags, TcpHeader


def handshake():
    client = TcpConnection(40000, 80, TcpConfig(), rng=random.Random(1))
    client.connect(0.0)
    (syn,) = client.segments_to_send(0.0)
    server = TcpConnection.accept(syn, 0.0, TcpConfig(), rng=random.Random(2))
    for segment in server.segments_to_send(0.001):
        client.receive_segment(segment, 0.001)
    for segment in client.segments_to_send(0.002):
        server.receive_segment(segment, 0.002)
    assert client.state is server.state is TcpState.ESTABLISHED
    client.events()
    server.events()
    return client, server


def coalesce(segments, limit=65_000):
    """What GRO does: merge consecutive in-order data segments of one flow into one
    segment carrying the first header (with the last one's PSH/FIN) and all payloads."""
    merged: list[Segment] = []
    for segment in segments:
        if merged and segment.payload:
            last = merged[-1]
            contiguous = (last.header.seq + len(last.payload)) & 0xFFFFFFFF == segment.header.seq
            if (contiguous and last.payload and not last.header.flags & TcpFlags.FIN
                    and len(last.payload) + len(segment.payload) <= limit):
                header = TcpHeader(
                    last.header.src_port, last.header.dst_port, last.header.seq,
                    segment.header.ack, last.header.flags | segment.header.flags,
                    segment.header.window, options=segment.header.options,
                )
                merged[-1] = Segment(header, bytes(last.payload) + bytes(segment.payload))
                continue
        merged.append(segment)
    return merged


def received_bytes(connection):
    return b"".join(e.data for e in connection.events() if isinstance(e, DataReceived))


def test_super_segments_in_order_are_delivered_and_acked_at_once():
    client, server = handshake()
    data = random.Random(3).randbytes(300_000)
    client.send(data)
    now = 0.01
    got = bytearray()
    for _ in range(200):
        outgoing = client.segments_to_send(now)
        for segment in coalesce(outgoing):
            server.receive_segment(segment, now)
            acks = server.segments_to_send(now)
            if len(segment.payload) > 2 * server.receiver.rcv_mss:
                assert acks, "a super-segment is more than two full segments: ACK now"
            for ack in acks:
                client.receive_segment(ack, now)
        got += received_bytes(server)
        now += 0.005
        if len(got) == len(data):
            break
    assert bytes(got) == data
    assert server.receiver.rcv_mss <= server.config.mss  # estimate stays an MSS


def test_super_segments_out_of_order_and_overlapping():
    client, server = handshake()
    # The SYN/ACK's window is unscaled (at most 64 KB, RFC 7323 2.2); the next segment
    # the server sends advertises its whole 1 MiB buffer.
    server.request_ack()
    (update,) = server.segments_to_send(0.005)
    assert update.header.window << server.negotiated.rcv_shift >= 200_000
    base = client.sender.snd_nxt & 0xFFFFFFFF  # wire seq of the first payload byte
    data = random.Random(4).randbytes(200_000)
    ack = server.sender.snd_nxt & 0xFFFFFFFF

    def piece(start, end):
        header = TcpHeader(40000, 80, (base + start) & 0xFFFFFFFF, ack, TcpFlags.ACK,
                           0xFFFF)
        return Segment(header, memoryview(data)[start:end])

    pieces = [piece(130_000, 190_000), piece(60_000, 125_000), piece(150_000, 200_000),
              piece(0, 64_000), piece(100_000, 135_000)]  # overlaps, holes, reversed
    for now, segment in enumerate(pieces, start=1):
        server.receive_segment(segment, now * 0.01)
        server.segments_to_send(now * 0.01)
    got = received_bytes(server)
    assert got == data[:200_000]
    assert server.receiver.queue.bytes == 0 and not server.receiver.queue
