"""MP_CAPABLE (RFC 8684 3.1), checksum negotiation, fallback (3.7) and token uniqueness,
between two of our endpoints (or one of ours and a plain TCP host) in the simulator."""

from __future__ import annotations

import dataclasses

import pytest

from impl.crypto import idsn_from_key, token_from_key
from impl.io.link import LinkConfig
from impl.io.sim import TcpHost
from impl.mptcp.connection import MptcpConfig
from impl.mptcp.host import MptcpHost, TokenTable
from impl.tcp.config import TcpConfig
from impl.tcp.events import DataReceived
from impl.wire.mptcp_options import (
    MPTCP_OPTION_TYPES,
    Dss,
    MpCapable,
    MpTcpRst,
    MpTcpRstReason,
)
from impl.wire.tcp import TcpFlags

from .mptcp_sim import (
    CLIENT_ADDRESSES,
    PORT,
    SERVER_ADDRESS,
    SimMptcpHost,
    mptcp_pair,
    payload,
    sha256,
)

CONFIG = MptcpConfig(tcp=TcpConfig(time_wait=1.0))


def mptcp_options(datagram):
    return [o for o in datagram.segment.header.options if isinstance(o, MPTCP_OPTION_TYPES)]


def connect(network, client, server, config=CONFIG, server_config=None, data=b""):
    server.host.listen(PORT, server_config or config)
    connection = client.host.connect(SERVER_ADDRESS, PORT, network.now, config)
    if data:
        connection.send(data)
    return connection


def test_mp_capable_without_data_exchanges_keys_on_syn_ack_and_third_ack():
    network, client, server = mptcp_pair([LinkConfig(delay=0.01)], capture=True, wire=True)
    connection = connect(network, client, server)
    assert network.run(lambda: connection.fully_established, time_limit=2)
    accepted = server.host.accepted[0]
    assert accepted.remote_key == connection.local_key
    assert connection.remote_key == accepted.local_key
    assert accepted.remote_idsn == idsn_from_key(connection.local_key)
    syn, syn_ack, third = (d for _, d in network.captured[:3])
    assert mptcp_options(syn) == [MpCapable()]  # 4 bytes, v1, H, no key
    assert syn.segment.header.flags == TcpFlags.SYN
    assert mptcp_options(syn_ack) == [MpCapable(sender_key=accepted.local_key)]
    assert mptcp_options(third) == [
        MpCapable(sender_key=connection.local_key, receiver_key=accepted.local_key)]
    # The listener answers the third ACK with a DSS (DATA_ACK = peer IDSN + 1).
    fourth = network.captured[3][1]
    [dss] = mptcp_options(fourth)
    assert isinstance(dss, Dss) and dss.data_ack == (idsn_from_key(connection.local_key) + 1)
    assert client.host.counters["MPCapableSYNACKRX"] == 1
    assert server.host.counters["MPCapableSYNRX"] == 1
    assert server.host.counters["MPCapableACKRX"] == 1
    assert server.host.counters["MPCapableFallbackACK"] == 0


def test_mp_capable_with_data_carries_the_data_level_length():
    network, client, server = mptcp_pair([LinkConfig(delay=0.01)], capture=True)
    data = payload(5000)
    connection = connect(network, client, server, data=data)
    assert network.run(lambda: server.host.accepted and
                       len(server.host.accepted[0].received) == len(data), time_limit=2)
    assert bytes(server.host.accepted[0].read()) == data
    first_data = next(d for _, d in network.captured
                      if d.src == connection.subflows[0].local and d.segment.payload)
    [option] = mptcp_options(first_data)
    assert isinstance(option, MpCapable)
    assert option.data_length == len(data)  # one mapping for all 5000 bytes, DSN IDSN+1
    assert option.sender_key == connection.local_key
    later = [d for _, d in network.captured if d.src == connection.subflows[0].local
             and d.segment.payload and d is not first_data]
    assert later and all(isinstance(mptcp_options(d)[0], Dss) for d in later)


@pytest.mark.parametrize("side", ["client", "server"])
def test_checksums_required_by_either_side_are_used_by_both(side):
    network, client, server = mptcp_pair([LinkConfig(delay=0.005, loss=0.02)], seed=5,
                                         capture=True, wire=True)
    wants = MptcpConfig(checksums=True, tcp=CONFIG.tcp)
    data = payload(200_000)
    connection = connect(network, client, server,
                         config=wants if side == "client" else CONFIG,
                         server_config=wants if side == "server" else CONFIG, data=data)
    assert network.run(lambda: server.host.accepted and
                       len(server.host.accepted[0].received) == len(data), time_limit=20)
    accepted = server.host.accepted[0]
    assert connection.checksums and accepted.checksums
    assert sha256(accepted.read()) == sha256(data)
    mappings = [o.mapping for _, d in network.captured for o in mptcp_options(d)
                if isinstance(o, Dss) and o.mapping is not None]
    assert mappings and all(m.checksum is not None for m in mappings)
    assert server.host.counters["DataCsumErr"] == 0


def test_corrupted_payload_under_checksum_is_counted_and_recovered():
    network, client, server = mptcp_pair([LinkConfig(delay=0.005)] * 2, seed=2,
                                         capture=True)
    config = MptcpConfig(checksums=True, tcp=CONFIG.tcp)
    data = payload(400_000)
    connection = connect(network, client, server, config=config, data=data)
    assert network.run(lambda: connection.fully_established, time_limit=2)
    join = connection.add_subflow(CLIENT_ADDRESSES[1], now=network.now)
    corrupted = []

    def corrupt(datagram):
        segment = datagram.segment
        if datagram.src == join.local and segment.payload and not corrupted:
            flipped = bytearray(segment.payload)
            flipped[0] ^= 0xFF  # a middlebox rewrote a byte; TCP's checksum is redone
            corrupted.append(True)
            return type(datagram)(datagram.src, datagram.dst,
                                  type(segment)(segment.header, bytes(flipped)))
        return datagram

    client.mutate = corrupt
    assert network.run(lambda: len(server.host.accepted[0].received) == len(data),
                       time_limit=30)
    assert corrupted
    assert server.host.counters["DataCsumErr"] == 1
    assert sha256(server.host.accepted[0].read()) == sha256(data)
    assert join.dead
    # 3.7: the subflow is reset with MP_TCPRST "middlebox interference".
    resets = [o for _, d in network.captured if d.segment.header.flags & TcpFlags.RST
              for o in mptcp_options(d)]
    assert resets == [MpTcpRst(MpTcpRstReason.MIDDLEBOX_INTERFERENCE)]
    assert server.host.counters["MPRstTx"] == 1


def test_fallback_when_the_listener_does_not_speak_mptcp():
    plain = TcpHost(SERVER_ADDRESS, seed="plain")
    plain.listen(PORT, TcpConfig(time_wait=1.0))
    network, client, _ = mptcp_pair([LinkConfig(delay=0.01, loss=0.01)], seed=4,
                                    capture=True, server=plain)
    data = payload(300_000)
    connection = client.host.connect(SERVER_ADDRESS, PORT, 0.0, CONFIG)
    connection.send(data)
    connection.close()
    received = bytearray()

    def done():
        for tcp in plain.accepted:
            for event in tcp.events():
                if isinstance(event, DataReceived):
                    received.extend(event.data)
        return len(received) == len(data)

    assert network.run(done, time_limit=30)
    assert sha256(bytes(received)) == sha256(data)
    assert connection.fallback
    assert client.host.counters["MPCapableFallbackSYNACK"] == 1
    ours = [d for _, d in network.captured if d.src == connection.subflows[0].local]
    assert mptcp_options(ours[0]) == [MpCapable()]
    assert all(not mptcp_options(d) for d in ours[1:])  # single-path plain TCP for life
    with pytest.raises(ConnectionError):
        connection.add_subflow(CLIENT_ADDRESSES[1], now=network.now)
    plain.accepted[0].close()
    assert network.run(lambda: connection.is_closed, time_limit=10)
    assert connection.peer_closed and connection.closed_reason == "closed"


def test_listener_serves_a_plain_tcp_client_as_tcp():
    network, _, server = mptcp_pair([LinkConfig(delay=0.01)])
    plain = TcpHost(CLIENT_ADDRESSES[0], seed="plain-client")
    network.hosts[0] = plain
    network._by_address = {}
    for host in network.hosts:
        for address in host.addresses:
            network._by_address[address] = host
    server.host.listen(PORT, CONFIG)
    tcp = plain.connect(SERVER_ADDRESS, PORT, 0.0, TcpConfig(time_wait=1.0))
    data = payload(100_000)
    tcp.send(data)
    assert network.run(lambda: server.host.accepted and
                       len(server.host.accepted[0].received) == len(data), time_limit=10)
    accepted = server.host.accepted[0]
    assert accepted.fallback and accepted.read() == data
    assert server.host.counters["MPCapableSYNRX"] == 0


def test_listener_falls_back_when_the_third_ack_has_no_mptcp_option():
    network, client, server = mptcp_pair([LinkConfig(delay=0.01)])

    def strip(datagram):  # a middlebox strips options from the third ACK
        header = datagram.segment.header
        if header.flags == TcpFlags.ACK and not datagram.segment.payload and not stripped:
            stripped.append(True)
            header = dataclasses.replace(header, options=())
            return type(datagram)(datagram.src, datagram.dst,
                                  type(datagram.segment)(header, b""))
        return datagram

    stripped: list = []
    client.mutate = strip
    connection = connect(network, client, server)
    assert network.run(lambda: bool(server.host.accepted) and
                       server.host.accepted[0].fallback, time_limit=2)
    assert server.host.counters["MPCapableFallbackACK"] == 1
    assert server.host.counters["MPCapableACKRX"] == 0
    # The listener's segments carry no DSS from now on, so the initiator falls back
    # too (3.7) and both directions work as plain TCP.
    accepted = server.host.accepted[0]
    up, down = payload(150_000, seed=1), payload(250_000, seed=2)
    accepted.send(down)
    connection.send(up)
    got_up, got_down = bytearray(), bytearray()

    def done():
        got_up.extend(accepted.read())
        got_down.extend(connection.read())
        return len(got_up) == len(up) and len(got_down) == len(down)

    assert network.run(done, time_limit=10)
    assert connection.fallback
    assert bytes(got_up) == up and bytes(got_down) == down
    connection.close()
    accepted.close()
    assert network.run(lambda: connection.is_closed and accepted.is_closed, time_limit=10)


def test_token_table_redraws_a_key_whose_token_is_taken():
    draws = iter([7, 7, 9])
    table = TokenTable(lambda bits: next(draws))
    first = table.new_key(None)
    table.bind(token_from_key(first), object())
    second = table.new_key(None)
    assert first == 7 and second == 9
    assert token_from_key(second) != token_from_key(first)


def test_tokens_of_many_connections_on_one_host_are_unique():
    host = MptcpHost(CLIENT_ADDRESSES[0], seed=1)
    connections = [host.connect(SERVER_ADDRESS, PORT, 0.0, CONFIG) for _ in range(50)]
    tokens = {c.local_token for c in connections}
    assert len(tokens) == 50
    assert all(host.tokens.lookup(c.local_token) is c for c in connections)


def test_sim_adapter_is_an_endpoint():
    adapter = SimMptcpHost(MptcpHost(SERVER_ADDRESS))
    assert adapter.next_timer() is None and adapter.datagrams_to_send(0.0) == []


def test_mp_capable_data_segment_lost_both_sides_fall_back_consistently():
    network, client, server = mptcp_pair([LinkConfig(delay=0.01)], seed=21)
    dropped: list = []

    def lose_mp_capable(datagram):  # the third ACK and the MP_CAPABLE data segment
        if any(isinstance(o, MpCapable) for o in mptcp_options(datagram)) and (
            datagram.segment.header.flags & TcpFlags.ACK
            and not datagram.segment.header.flags & TcpFlags.SYN and len(dropped) < 2
        ):
            dropped.append(datagram)
            return None
        return datagram

    client.mutate = lose_mp_capable
    data = payload(60_000)
    connection = connect(network, client, server, data=data)
    assert network.run(lambda: server.host.accepted and
                       len(server.host.accepted[0].received) == len(data), time_limit=10)
    accepted = server.host.accepted[0]
    # The data went out with the third ACK; its first segment (the only one with
    # MP_CAPABLE) was lost, so a DSS-only segment completed the listener's handshake:
    # it fell back (as Linux does), and the initiator followed on the listener's first
    # DSS-less ACK.
    assert dropped and dropped[0].segment.payload
    assert accepted.fallback and connection.fallback
    assert server.host.counters["MPCapableFallbackACK"] == 1
    assert accepted.read() == data
    accepted.send(b"reply")
    assert network.run(lambda: bytes(connection.received) == b"reply", time_limit=2)


def test_initiator_repeats_its_keys_until_a_dss_answers():
    network, client, server = mptcp_pair([LinkConfig(delay=0.01)] * 2, seed=22,
                                         capture=True)
    lost: list = []

    def lose_first_dss(datagram):
        if any(isinstance(o, Dss) for o in mptcp_options(datagram)) and not lost:
            lost.append(datagram)
            return None
        return datagram

    server.mutate = lose_first_dss
    connection = connect(network, client, server)
    join = connection.add_subflow(CLIENT_ADDRESSES[1], now=0.0)  # waits for the DSS
    assert network.run(lambda: join.usable, time_limit=5)
    assert lost and connection.fully_established and not connection.fallback
    third_acks = [d for _, d in network.captured if d.src == connection.subflows[0].local
                  and any(isinstance(o, MpCapable) and o.receiver_key is not None
                          for o in mptcp_options(d))]
    assert len(third_acks) == 2  # resent after an RTO, then answered


def test_fallback_connection_closed_once_both_fins_are_exchanged():
    # 3.7: after fallback the one subflow is the connection; we close first, so the
    # subflow waits in TIME-WAIT (2*MSL guards only its 4-tuple), and the connection is
    # CLOSED as soon as both FINs are exchanged, as for DATA_FINs (Appendix D).
    plain = TcpHost(SERVER_ADDRESS, seed="plain")
    plain.listen(PORT, TcpConfig(time_wait=1.0))
    network, client, _ = mptcp_pair([LinkConfig(delay=0.01)], seed=5, server=plain)
    config = MptcpConfig(tcp=TcpConfig(time_wait=60.0))
    connection = client.host.connect(SERVER_ADDRESS, PORT, 0.0, config)
    connection.send(b"x" * 1000)
    connection.close()
    assert network.run(lambda: bool(plain.accepted) and plain.accepted[0].events(),
                       time_limit=2)
    assert network.run(lambda: connection.data_state == "FIN_WAIT_2", time_limit=2)
    plain.accepted[0].close()
    assert network.run(lambda: connection.is_closed, time_limit=2)
    assert connection.fallback and connection.closed_reason == "closed"
    assert connection.data_state == "CLOSED"
    assert connection.subflows[0].tcp.state.name == "TIME_WAIT"
