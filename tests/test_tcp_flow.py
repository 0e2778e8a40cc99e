"""Flow control and the handshake's options: a reader that stops reading closes the
window, the sender probes it with back-off (persist timer) and resumes when it reopens;
delayed ACKs; window scaling, MSS and timestamps as negotiated."""

from __future__ import annotations

import pytest

from impl.io.eventlog import MemoryLog
from impl.io.link import LinkConfig
from impl.io.sim import tcp_pair
from impl.tcp.config import TcpConfig
from impl.tcp.events import DataReceived, PeerClosed
from impl.tcp.state import TcpState
from impl.wire.tcp_options import MaximumSegmentSize, Timestamps, WindowScale

from .test_tcp_transfer import PORT, assert_delivered, payload, run_transfer

LINK = LinkConfig(delay=0.005, rate=50e6)


def connected_pair(client_config=None, server_config=None, link=LINK, capture=True):
    log = MemoryLog()
    network, client_host, server_host = tcp_pair(link, link, seed=3, logger=log,
                                                 capture=capture)
    server_host.listen(PORT, server_config or TcpConfig(time_wait=5))
    client = client_host.connect(server_host.address, PORT, 0.0,
                                 client_config or TcpConfig(time_wait=5))
    assert network.run(lambda: client.state is TcpState.ESTABLISHED
                       and server_host.accepted
                       and server_host.accepted[0].state is TcpState.ESTABLISHED, 5)
    return network, client, server_host.accepted[0], log


def test_zero_window_is_probed_with_backoff_and_recovers():
    buffer = 64 * 1024
    server_config = TcpConfig(time_wait=5, receive_buffer=buffer, manual_consume=True)
    network, client, server, log = connected_pair(server_config=server_config)
    upload = payload(300_000, 11)
    client.send(upload)
    client.close()
    received = bytearray()

    def absorb(consume):
        for event in server.events():
            if isinstance(event, DataReceived):
                received.extend(event.data)
                if consume:
                    server.consume(len(event.data))
            elif isinstance(event, PeerClosed):
                server.close()

    # The reader sleeps for 5 s: the window fills and stays shut.
    network.run(lambda: absorb(consume=False), time_limit=5.0)
    assert len(received) == buffer  # exactly one window, nothing beyond it
    assert server.receiver.window == 0
    probes = log.of_type("tcp:zero_window_probe", conn=client.name)
    assert len(probes) >= 3
    assert [p["backoff"] for p in probes] == list(range(1, len(probes) + 1))
    gaps = [b["t"] - a["t"] for a, b in zip(probes, probes[1:], strict=False)]
    for shorter, longer in zip(gaps, gaps[1:], strict=False):
        assert longer == pytest.approx(2 * shorter, rel=0.01)  # exponential back-off
    # On the wire a probe is an empty ACK one below SND.UNA (answered with an ACK).
    probe_segments = [
        d.segment for _, d in network.captured
        if d.segment.header.dst_port == PORT and not d.segment.payload
        and d.segment.header.seq == (client.sender.snd_una - 1) & 0xFFFFFFFF
    ]
    assert len(probe_segments) == len(probes)
    assert client.state is TcpState.FIN_WAIT_1  # the FIN waits behind the data
    # The reader wakes up: consuming reopens the window with an update, data flows.
    server.consume(len(received))
    network.run(lambda: (absorb(consume=True), client.is_closed and server.is_closed)[1],
                time_limit=60)
    assert bytes(received) == upload
    assert client.close_reason == "closed" and server.close_reason == "closed"


def test_delayed_ack_waits_40ms_for_a_lone_segment_and_not_for_two():
    network, client, server, log = connected_pair()
    network.captured.clear()
    client.send(b"x" * 100)
    network.run(lambda: client.sender.snd_una == client.sender.snd_nxt, time_limit=1)
    data_at = next(t for t, d in network.captured if d.segment.payload)
    ack_at = next(t for t, d in network.captured
                  if d.segment.header.src_port == PORT and t > data_at)
    delay = LINK.delay
    assert ack_at - data_at == pytest.approx(0.040 + delay, abs=0.002)
    # Two full-sized segments: the second one is acknowledged at once (RFC 9293 3.8.6.3).
    network.captured.clear()
    client.send(b"y" * 2 * client.negotiated.data_mss)
    network.run(lambda: client.sender.snd_una == client.sender.snd_nxt, time_limit=1)
    arrivals = [t for t, d in network.captured if d.segment.payload]
    acks = [t for t, d in network.captured if d.segment.header.src_port == PORT]
    assert len(arrivals) == 2 and len(acks) == 1
    assert acks[0] - arrivals[1] == pytest.approx(delay, abs=0.001)


def test_options_are_negotiated_from_both_syns():
    network, client, server, _ = connected_pair(
        server_config=TcpConfig(mss=1200, receive_buffer=4 << 20),
    )
    syn, synack = network.captured[0][1].segment, network.captured[1][1].segment
    assert syn.header.option(MaximumSegmentSize).mss == 1460
    assert syn.header.option(WindowScale).shift == 5  # 1 MiB buffer needs 2**5
    assert synack.header.option(WindowScale).shift == 7  # 4 MiB
    assert syn.header.option(Timestamps) and synack.header.option(Timestamps)
    assert client.negotiated.send_mss == 1200 and server.negotiated.send_mss == 1200
    assert client.negotiated.snd_shift == 7 and client.negotiated.rcv_shift == 5
    assert server.negotiated.snd_shift == 5 and server.negotiated.rcv_shift == 7
    # Data segments respect the peer's MSS, options included (RFC 9293 3.7.1).
    client.send(payload(50_000))
    network.run(lambda: client.sender.snd_una == client.sender.snd_nxt, time_limit=5)
    sizes = [len(d.segment.payload) for _, d in network.captured if d.segment.payload]
    assert max(sizes) == 1200 - 12


def test_one_side_without_scaling_or_timestamps_turns_them_off():
    network, client, server, _ = connected_pair(
        client_config=TcpConfig(window_scaling=False, timestamps=False, sack=False),
    )
    synack = network.captured[1][1].segment
    assert synack.header.option(WindowScale) is None  # not offered unless asked
    assert synack.header.option(Timestamps) is None
    for side in (client, server):
        assert side.negotiated.snd_shift == side.negotiated.rcv_shift == 0
        assert not side.negotiated.timestamps and not side.negotiated.sack
    client.send(payload(400_000))
    network.run(lambda: client.sender.snd_una == client.sender.snd_nxt, time_limit=10)
    windows = [d.segment.header.window for _, d in network.captured
               if d.segment.header.src_port == PORT]
    assert max(windows) == 65535


def test_large_window_keeps_more_than_64k_in_flight():
    # 40 Mbit/s * 60 ms RTT = 300 KB in flight needs window scaling (RFC 7323 2).
    link = LinkConfig(delay=0.03, rate=40e6)
    upload = payload(3_000_000, 12)
    result = run_transfer(upload, forward=link, backward=link, seed=4)
    assert_delivered(result, upload)
    connection = result.client_connection
    assert connection.sender.max_snd_wnd > 200_000
    # Timestamps measure the path: the minimum is the propagation RTT (+ one packet's
    # serialization); the smoothed RTT includes the queue slow start built.
    assert connection.rtt.min_rtt == pytest.approx(0.06, abs=0.002)
    assert connection.rtt.srtt >= connection.rtt.min_rtt


def test_small_receive_buffer_limits_flight_and_still_delivers():
    config = TcpConfig(receive_buffer=8192, time_wait=5)
    upload = payload(200_000, 13)
    result = run_transfer(upload, forward=LINK, backward=LINK, server_config=config,
                          client_config=TcpConfig(time_wait=5), capture=True)
    assert_delivered(result, upload)
    windows = [
        d.segment.header.window << result.server_connection.negotiated.rcv_shift
        for _, d in result.network.captured
        if d.segment.header.src_port == PORT and not d.segment.header.flags & 0x02
    ]
    assert max(windows) <= 8192 + (1 << result.server_connection.negotiated.rcv_shift)
