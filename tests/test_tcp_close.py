"""Opening and closing: graceful close from either side and from both at once,
TIME-WAIT, aborts (RST) from either side, a SYN to a port nobody listens on, RFC 5961's
challenge ACKs for in-window RSTs and SYNs, and simultaneous open."""

from __future__ import annotations

import pytest

from impl.io.eventlog import MemoryLog
from impl.io.link import LinkConfig
from impl.io.sim import Datagram, tcp_pair
from impl.tcp.config import TcpConfig
from impl.tcp.connection import TcpConnection
from impl.tcp.events import Connected, ConnectionClosed, DataReceived, PeerClosed, Reset
from impl.tcp.segment import Segment
from impl.tcp.state import TcpState
from impl.wire.tcp import TcpFlags, TcpHeader

from .test_tcp_transfer import PORT, assert_delivered, payload, run_transfer

LINK = LinkConfig(delay=0.005, rate=50e6)
TIME_WAIT = 2.0
CONFIG = TcpConfig(time_wait=TIME_WAIT)
S = TcpState


def states(log, connection):
    return [event["new"] for event in log.of_type("tcp:state", conn=connection.name)]


def established_pair(capture=True):
    log = MemoryLog()
    network, client_host, server_host = tcp_pair(LINK, LINK, seed=5, logger=log,
                                                 capture=capture)
    server_host.listen(PORT, CONFIG)
    client = client_host.connect(server_host.address, PORT, 0.0, CONFIG)
    network.run(lambda: bool(server_host.accepted)
                and server_host.accepted[0].state is S.ESTABLISHED, 5)
    server = server_host.accepted[0]
    return network, client_host, server_host, client, server, log


def drain(*connections):
    return {connection.name: connection.events() for connection in connections}


def test_client_initiated_close_walks_both_state_sequences():
    upload = payload(100_000)
    result = run_transfer(upload, server_config=CONFIG, client_config=CONFIG,
                          forward=LINK, backward=LINK)
    assert_delivered(result, upload)
    assert states(result.log, result.client_connection) == [
        "SYN-SENT", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT", "CLOSED"]
    assert states(result.log, result.server_connection) == [
        "SYN-RECEIVED", "ESTABLISHED", "CLOSE-WAIT", "LAST-ACK", "CLOSED"]
    # TIME-WAIT lasts exactly the configured 2*MSL.
    client_events = result.log.of_type("tcp:state", conn=result.client_connection.name)
    entered, left = client_events[-2]["t"], client_events[-1]["t"]
    assert left - entered == pytest.approx(TIME_WAIT)


def test_server_initiated_close():
    network, _, _, client, server, log = established_pair()
    server.send(b"bye" * 1000)
    server.close()
    got = bytearray()

    def done():
        for event in client.events():
            if isinstance(event, DataReceived):
                got.extend(event.data)
            elif isinstance(event, PeerClosed):
                client.close()
        server.events()
        return client.is_closed and server.is_closed

    assert network.run(done, time_limit=30)
    assert bytes(got) == b"bye" * 1000
    assert states(log, server)[-3:] == ["FIN-WAIT-2", "TIME-WAIT", "CLOSED"]
    assert states(log, client)[-3:] == ["CLOSE-WAIT", "LAST-ACK", "CLOSED"]
    assert client.close_reason == server.close_reason == "closed"


def test_simultaneous_close_goes_through_closing():
    network, _, _, client, server, log = established_pair()
    client.close()
    server.close()  # both FINs cross on the wire
    assert network.run(lambda: client.is_closed and server.is_closed, time_limit=30)
    for connection in (client, server):
        assert states(log, connection)[-4:] == [
            "FIN-WAIT-1", "CLOSING", "TIME-WAIT", "CLOSED"]
        assert connection.close_reason == "closed"


def test_time_wait_acknowledges_a_retransmitted_fin():
    network, _, _, client, server, log = established_pair()
    client.close()
    dropped = []

    def drop_last_ack_once(datagram, now):
        # The client's ACK of the server's FIN (no payload, no FIN) from TIME-WAIT.
        header = datagram.segment.header
        if (client.state is S.TIME_WAIT and header.dst_port == PORT
                and header.flags == TcpFlags.ACK and not dropped):
            dropped.append(now)
            return True
        return False

    network.filters.append(drop_last_ack_once)

    def done():
        for event in server.events():
            if isinstance(event, PeerClosed):
                server.close()
        return client.is_closed and server.is_closed

    assert network.run(done, time_limit=30)
    assert dropped
    assert server.close_reason == "closed"  # the FIN retransmission got its ACK
    server_rtos = log.of_type("tcp:rto", conn=server.name)
    assert len(server_rtos) == 1
    # The retransmitted FIN restarted the client's 2*MSL timer.
    client_states = log.of_type("tcp:state", conn=client.name)
    assert client_states[-1]["t"] > server_rtos[0]["t"] + TIME_WAIT - 0.05


@pytest.mark.parametrize("aborter", ["client", "server"])
def test_abort_sends_rst_and_the_peer_is_reset(aborter):
    network, _, _, client, server, log = established_pair()
    client.send(payload(200_000))
    network.run(lambda: server.receiver.rcv_nxt - server.receiver.irs > 50_000, 5)
    drain(client, server)
    local, remote = (client, server) if aborter == "client" else (server, client)
    local.abort()
    assert local.is_closed and local.events() == [ConnectionClosed("aborted")]
    network.captured.clear()
    network.run(lambda: remote.is_closed, time_limit=5)
    resets = [d.segment for _, d in network.captured if d.segment.header.flags & TcpFlags.RST]
    assert resets and resets[0].header.src_port == local.local_port
    events = remote.events()
    assert Reset() in events and events[-1] == ConnectionClosed("reset")
    assert remote.state is S.CLOSED


def test_syn_to_a_port_without_listener_is_refused():
    log = MemoryLog()
    network, client_host, server_host = tcp_pair(LINK, LINK, seed=6, logger=log,
                                                 capture=True)
    server_host.listen(PORT, CONFIG)
    client = client_host.connect(server_host.address, PORT + 1, 0.0, CONFIG)
    assert network.run(lambda: client.is_closed, time_limit=5)
    assert client.events() == [Reset(), ConnectionClosed("refused")]
    assert server_host.resets_sent == 1 and not server_host.accepted
    rst = network.captured[-1][1].segment.header
    syn = network.captured[0][1].segment.header
    # RFC 9293 3.10.7.1: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>
    assert rst.flags == TcpFlags.RST | TcpFlags.ACK
    assert rst.seq == 0 and rst.ack == (syn.seq + 1) & 0xFFFFFFFF


def test_stray_ack_gets_a_reset_with_its_ack_number():
    network, client_host, server_host = tcp_pair(LINK, LINK, seed=7, capture=True)
    server_host.listen(PORT, CONFIG)
    stray = Segment(TcpHeader(40000, PORT, 1234, 98765, TcpFlags.ACK, 1000))
    server_host.receive(Datagram(client_host.address, server_host.address, stray), 0.0)
    (reply,) = server_host.datagrams_to_send(0.0)
    assert reply.segment.header.flags == TcpFlags.RST and reply.segment.header.seq == 98765


def _inject(connection: TcpConnection, seq_offset: int, flags: TcpFlags, now: float) -> list:
    """Feed the connection a crafted segment at RCV.NXT + seq_offset; return its replies."""
    receiver = connection.receiver
    header = TcpHeader(connection.remote_port, connection.local_port,
                       (receiver.rcv_nxt + seq_offset) & 0xFFFFFFFF,
                       connection.sender.snd_nxt & 0xFFFFFFFF, flags, 1000)
    connection.receive_segment(Segment(header), now)
    return connection.segments_to_send(now)


def test_rfc5961_in_window_rst_and_syn_get_challenge_acks():
    network, _, _, client, server, log = established_pair()
    now = network.now
    drain(client)
    # An RST inside the window but not at RCV.NXT: challenge ACK, still connected.
    replies = _inject(client, 100, TcpFlags.RST, now)
    assert client.state is S.ESTABLISHED
    assert len(replies) == 1 and replies[0].header.flags == TcpFlags.ACK
    assert replies[0].header.ack == client.receiver.rcv_nxt & 0xFFFFFFFF
    # An RST outside the window is dropped silently.
    assert _inject(client, 10_000_000, TcpFlags.RST, now) == []
    # A SYN on an established connection: challenge ACK too (RFC 5961 4.2).
    replies = _inject(client, 0, TcpFlags.SYN, now)
    assert client.state is S.ESTABLISHED and replies[0].header.flags == TcpFlags.ACK
    assert [e["reason"] for e in log.of_type("tcp:challenge_ack", conn=client.name)] == [
        "rst", "syn"]
    # The exact RST resets.
    _inject(client, 0, TcpFlags.RST, now)
    assert client.events() == [Reset(), ConnectionClosed("reset")]


def test_simultaneous_open():
    log = MemoryLog()
    network, host_a, host_b = tcp_pair(LINK, LINK, seed=8, logger=log)
    a = host_a.connect(host_b.address, 7000, 0.0, CONFIG, local_port=6000)
    b = host_b.connect(host_a.address, 6000, 0.0, CONFIG, local_port=7000)
    assert network.run(lambda: a.state is S.ESTABLISHED and b.state is S.ESTABLISHED, 5)
    for connection in (a, b):
        assert states(log, connection) == ["SYN-SENT", "SYN-RECEIVED", "ESTABLISHED"]
        assert Connected() in connection.events()
    a.send(b"ping")
    b.send(b"pong")
    network.run(time_limit=1)
    assert DataReceived(b"pong", 1) in a.events() and DataReceived(b"ping", 1) in b.events()
