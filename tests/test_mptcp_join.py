"""MP_JOIN (RFC 8684 3.2) between our endpoints: HMAC checks in both directions, the
fourth ACK gate, unknown tokens, backup subflows; and DSS robustness on a joined
subflow: a conflicting mapping (3.3.1, DSSNotMatching) and 32-bit DSN/DATA_ACK values
widened by the receiver."""

from __future__ import annotations

import dataclasses

from impl.io.link import LinkConfig
from impl.io.sim import Datagram
from impl.mptcp.connection import MptcpConfig
from impl.tcp.config import TcpConfig
from impl.tcp.segment import Segment
from impl.wire.mptcp_options import (
    MPTCP_OPTION_TYPES,
    DataSequenceMapping,
    Dss,
    MpFastclose,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpPrio,
    MpTcpRst,
    MpTcpRstReason,
)
from impl.wire.tcp import TcpFlags

from .mptcp_sim import CLIENT_ADDRESSES, PORT, SERVER_ADDRESS, mptcp_pair, payload, sha256

CONFIG = MptcpConfig(tcp=TcpConfig(time_wait=1.0))
LINKS = [LinkConfig(delay=0.01, rate=20e6), LinkConfig(delay=0.02, rate=10e6)]


def replace_option(datagram: Datagram, cls, change) -> Datagram:
    header = datagram.segment.header
    options = tuple(change(o) if isinstance(o, cls) else o for o in header.options)
    header = dataclasses.replace(header, options=options)
    return Datagram(datagram.src, datagram.dst, Segment(header, datagram.segment.payload))


def has(datagram: Datagram, cls) -> bool:
    return any(isinstance(o, cls) for o in datagram.segment.header.options)


def rst_options(network, src):
    return [o for _, d in network.captured if str(d.src) == str(src) and d.segment.header.flags
            & TcpFlags.RST for o in d.segment.header.options if isinstance(o, MPTCP_OPTION_TYPES)]


def start(seed=0, links=LINKS, config=CONFIG):
    network, client, server = mptcp_pair(links, seed=seed, capture=True)
    server.host.listen(PORT, config)
    connection = client.host.connect(SERVER_ADDRESS, PORT, 0.0, config)
    assert network.run(lambda: connection.fully_established and server.host.accepted,
                       time_limit=2)
    return network, client, server, connection, server.host.accepted[0]


def finish_transfer(network, connection, accepted, size=600_000):
    data = payload(size)
    connection.send(data)
    got = bytearray()

    def done():
        got.extend(accepted.read())
        return len(got) >= len(data)

    assert network.run(done, time_limit=30)
    assert sha256(bytes(got)) == sha256(data)


def test_valid_join_is_usable_only_after_the_fourth_ack():
    network, client, server, connection, accepted = start()
    held: list[Datagram] = []

    def hold_fourth_ack(datagram):  # the listener's first ACK on the join subflow
        if str(datagram.dst) == CLIENT_ADDRESSES[1] and not has(datagram, MpJoinSynAck) and (
            not held
        ):
            held.append(datagram)
            return None
        return datagram

    server.mutate = hold_fourth_ack
    join = connection.add_subflow(CLIENT_ADDRESSES[1], now=network.now)
    assert network.run(lambda: bool(held), time_limit=2)
    assert join.join.verified and not join.usable  # HMAC-B fine, fourth ACK missing
    assert accepted.subflows[1].usable  # the listener checked HMAC-A already
    # The joiner resends its third ACK after an RTO; the listener answers again.
    assert network.run(lambda: join.usable, time_limit=5)
    assert server.host.counters["MPJoinSynRx"] == 1
    assert server.host.counters["MPJoinAckRx"] == 1
    assert client.host.counters["MPJoinSynAckRx"] == 1
    third_acks = [d for _, d in network.captured if has(d, MpJoinAck)]
    assert len(third_acks) >= 2
    finish_transfer(network, connection, accepted)
    assert join.tcp.sender.buffer.end - join.tcp.iss > 1  # it carried data


def test_bad_hmac_on_the_third_ack_resets_the_join_only():
    network, client, server, connection, accepted = start(seed=1)

    def forge(datagram):
        return replace_option(datagram, MpJoinAck, lambda o: MpJoinAck(bytes(20)))

    client.mutate = forge
    join = connection.add_subflow(CLIENT_ADDRESSES[1], now=network.now)
    assert network.run(lambda: join.dead, time_limit=3)
    assert server.host.counters["MPJoinAckHMacFailure"] == 1
    assert server.host.counters["MPJoinAckRx"] == 0
    assert rst_options(network, server.host.address) == [
        MpTcpRst(MpTcpRstReason.MPTCP_SPECIFIC)]
    assert join.close_reason == "reset"
    assert client.host.counters["MPRstRx"] == 1  # read from the RST the kernel's way
    assert join.peer_rst_reason == MpTcpRstReason.MPTCP_SPECIFIC
    assert len(accepted.subflows) == 2 and accepted.subflows[1].dead
    client.mutate = None
    finish_transfer(network, connection, accepted)  # the connection carries on
    assert not connection.is_closed and not accepted.is_closed


def test_bad_hmac_on_the_syn_ack_resets_the_join_only():
    network, client, server, connection, accepted = start(seed=2)

    def forge(datagram):
        return replace_option(datagram, MpJoinSynAck, lambda o: dataclasses.replace(
            o, sender_truncated_hmac=o.sender_truncated_hmac ^ 1))

    server.mutate = forge
    join = connection.add_subflow(CLIENT_ADDRESSES[1], now=network.now)
    assert network.run(lambda: join.dead and accepted.subflows[1].dead, time_limit=3)
    assert client.host.counters["MPJoinSynAckHMacFailure"] == 1
    assert client.host.counters["MPRstTx"] == 1
    assert rst_options(network, CLIENT_ADDRESSES[1]) == [
        MpTcpRst(MpTcpRstReason.MPTCP_SPECIFIC)]
    assert server.host.counters["MPJoinAckRx"] == 0
    finish_transfer(network, connection, accepted)


def test_join_with_an_unknown_token_is_reset():
    network, client, server, connection, accepted = start(seed=3)

    def forge(datagram):
        return replace_option(datagram, MpJoinSyn, lambda o: dataclasses.replace(
            o, receiver_token=o.receiver_token ^ 0xFFFF))

    client.mutate = forge
    join = connection.add_subflow(CLIENT_ADDRESSES[1], now=network.now)
    assert network.run(lambda: join.dead, time_limit=3)
    assert server.host.counters["MPJoinNoTokenFound"] == 1
    assert server.host.counters["MPJoinSynRx"] == 0
    assert join.close_reason == "refused"
    assert len(accepted.subflows) == 1


def test_backup_subflow_idles_until_the_regular_one_dies():
    network, client, server, connection, accepted = start(seed=4)
    backup = connection.add_subflow(CLIENT_ADDRESSES[1], now=network.now, backup=True)
    assert network.run(lambda: backup.usable, time_limit=3)
    assert accepted.subflows[1].backup  # the B flag of the MP_JOIN SYN
    data = payload(1 << 20)
    connection.send(data)
    primary = connection.subflows[0]
    assert network.run(lambda: primary.tcp.sender.buffer.end - primary.tcp.iss > 300_000,
                       time_limit=5)
    assert backup.tcp.sender.buffer.end - backup.tcp.iss == 1  # nothing on the backup
    network.filters.append(lambda d, now: primary.local in (d.src, d.dst))
    primary.tcp.abort()
    got = bytearray()

    def done():
        got.extend(accepted.read())
        return len(got) >= len(data)

    assert network.run(done, time_limit=30)
    assert bytes(got) == data
    assert backup.tcp.sender.buffer.end - backup.tcp.iss > 1


def test_conflicting_mapping_is_counted_and_the_subflow_reset():
    network, client, server, connection, accepted = start(seed=5)
    join = connection.add_subflow(CLIENT_ADDRESSES[1], now=network.now)
    assert network.run(lambda: join.usable, time_limit=3)
    forged: list[Datagram] = []

    def forge(datagram):
        # A middlebox rewrites the DSN on a later segment of a multi-segment mapping,
        # so it contradicts the mapping the earlier segments carried.
        if datagram.src != join.local or not datagram.segment.payload or forged:
            return datagram
        relative = (datagram.segment.header.seq - join.tcp.iss) % (1 << 32)
        dss = next((o for o in datagram.segment.header.options if isinstance(o, Dss)), None)
        if dss is None or dss.mapping is None or dss.mapping.subflow_sequence == relative:
            return datagram
        forged.append(datagram)
        return replace_option(datagram, Dss, lambda o: dataclasses.replace(
            o, mapping=dataclasses.replace(o.mapping, dsn=o.mapping.dsn + 1000)))

    client.mutate = forge
    finish_transfer(network, connection, accepted, size=1 << 20)
    assert forged
    assert server.host.counters["DSSNotMatching"] == 1
    assert accepted.subflows[1].dead and join.dead
    assert rst_options(network, server.host.address) == [
        MpTcpRst(MpTcpRstReason.MPTCP_SPECIFIC)]
    assert client.host.counters["MPTCPRetrans"] == 1


def test_32_bit_dsn_and_data_ack_are_widened():
    network, client, server, connection, accepted = start(seed=6)
    join = connection.add_subflow(CLIENT_ADDRESSES[1], now=network.now)
    assert network.run(lambda: join.usable, time_limit=3)
    shortened = []

    def to_32_bits(option: Dss) -> Dss:
        mapping = option.mapping
        if mapping is not None:
            mapping = DataSequenceMapping(mapping.dsn & 0xFFFFFFFF, mapping.subflow_sequence,
                                          mapping.data_level_length, mapping.checksum,
                                          dsn_is_64bit=False)
        data_ack = option.data_ack & 0xFFFFFFFF if option.data_ack is not None else None
        shortened.append(True)
        return Dss(data_ack=data_ack, data_ack_is_64bit=data_ack is None, mapping=mapping,
                   data_fin=option.data_fin)

    client.mutate = lambda d: replace_option(d, Dss, to_32_bits)
    server.mutate = lambda d: replace_option(d, Dss, to_32_bits)
    finish_transfer(network, connection, accepted, size=1 << 20)
    assert shortened
    end = connection.local_idsn + 1 + (1 << 20)
    assert network.run(lambda: connection.snd_una == end, time_limit=2)


def test_abort_resets_every_subflow_with_mp_fastclose():
    network, client, server, connection, accepted = start(seed=7)
    join = connection.add_subflow(CLIENT_ADDRESSES[1], now=network.now)
    assert network.run(lambda: join.usable and len(accepted.subflows) == 2, time_limit=3)
    connection.send(payload(500_000))
    assert network.run(lambda: len(accepted.received) > 100_000, time_limit=5)
    connection.abort()
    assert connection.is_closed and connection.closed_reason == "aborted"
    assert network.run(lambda: accepted.is_closed, time_limit=2)
    assert accepted.closed_reason == "fastclose"
    assert all(sf.tcp.is_closed for sf in accepted.subflows)
    assert client.host.counters["MPFastcloseTx"] == 2
    assert server.host.counters["MPFastcloseRx"] >= 1
    fastcloses = [o for _, d in network.captured if d.segment.header.flags & TcpFlags.RST
                  for o in d.segment.header.options if isinstance(o, MpFastclose)]
    assert fastcloses and all(o.receiver_key == accepted.local_key for o in fastcloses)
    assert server.host.tokens.lookup(accepted.local_token) is None


def test_mp_prio_turns_the_peers_subflow_into_a_backup():
    network, client, server, connection, accepted = start(seed=8)
    join = connection.add_subflow(CLIENT_ADDRESSES[1], now=network.now)
    assert network.run(lambda: join.usable and len(accepted.subflows) == 2
                       and accepted.subflows[1].usable, time_limit=3)
    connection.set_backup(join, True)
    assert network.run(lambda: accepted.subflows[1].backup, time_limit=1)
    assert any(isinstance(o, MpPrio) and o.backup for _, d in network.captured
               for o in d.segment.header.options)
    their_join = accepted.subflows[1]
    before = their_join.tcp.sender.buffer.end
    data = payload(800_000)
    accepted.send(data)
    got = bytearray()

    def done():
        got.extend(connection.read())
        return len(got) >= len(data)

    assert network.run(done, time_limit=30)
    assert bytes(got) == data
    assert their_join.tcp.sender.buffer.end == before  # the backup carried nothing


def test_mp_fastclose_counted_per_rst_that_carries_it():
    # 3.5: MP_FASTCLOSE rides on the RST of each subflow. A join still in SYN-SENT is
    # dropped without a RST (RFC 9293 3.10.5), so it carries no MP_FASTCLOSE either, and
    # MPFastcloseTx counts what went on the wire, as Linux's counter does.
    network, client, server, connection, accepted = start(seed=9)
    join = connection.add_subflow(CLIENT_ADDRESSES[1], now=network.now)
    assert network.run(lambda: join.tcp is not None and join.tcp.state.name == "SYN_SENT",
                       time_limit=1)
    connection.abort()
    assert network.run(lambda: accepted.is_closed, time_limit=2)
    sent = [d for _, d in network.captured if d.src == connection.subflows[0].local
            and any(isinstance(o, MpFastclose) for o in d.segment.header.options)]
    assert len(sent) == 1 and sent[0].segment.header.flags & TcpFlags.RST
    assert client.host.counters["MPFastcloseTx"] == 1
    assert accepted.closed_reason == "fastclose"
