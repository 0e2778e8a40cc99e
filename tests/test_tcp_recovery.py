"""Loss recovery with scripted losses: each pattern forces one mechanism, and the event
log shows it (and only it) happened: fast retransmit on a single loss, one SACK recovery
episode for several holes, NewReno-style partial ACKs without SACK, RTO with
exponential back-off during a blackout, SYN retransmission, and giving up."""

from __future__ import annotations

import pytest

from impl.io.link import LinkConfig
from impl.tcp.config import TcpConfig
from impl.wire.tcp_options import Sack

from .test_tcp_transfer import PORT, assert_delivered, payload, run_transfer

CLIENT_ISS = 1_000_000
LINK = LinkConfig(delay=0.005, rate=50e6, queue_limit=512 * 1024)
CONFIG = TcpConfig(time_wait=5)


def drop_data(relative_seqs, times=1):
    """A filter dropping the first `times` transmissions of the client's segments that
    start at the given relative sequence numbers (first payload byte = 1)."""
    remaining = {CLIENT_ISS + seq: times for seq in relative_seqs}

    def drop(datagram, now):
        header = datagram.segment.header
        if header.dst_port != PORT or not datagram.segment.payload:
            return False
        if remaining.get(header.seq, 0) > 0:
            remaining[header.seq] -= 1
            return True
        return False

    return drop


def client_events(result, kind):
    name = result.client_connection.name
    return result.log.of_type(kind, conn=name)


def transfer(upload, filters, config=CONFIG, **kwargs):
    return run_transfer(
        upload, forward=LINK, backward=LINK, seed=1, filters=filters,
        client_config=config, server_config=config,
        client_kwargs={"iss": CLIENT_ISS}, **kwargs,
    )


def segment_seq(index, mss=1448):
    """Relative sequence number of the index-th full segment (timestamps on)."""
    return 1 + index * mss


def test_single_loss_is_repaired_by_fast_retransmit_not_rto():
    upload = payload(300_000, 1)
    lost = segment_seq(30)
    result = transfer(upload, [drop_data([lost])])
    assert_delivered(result, upload)
    fast = client_events(result, "tcp:fast_retransmit")
    assert len(fast) == 1
    assert fast[0]["seq"] == lost
    assert client_events(result, "tcp:rto") == []
    retransmits = client_events(result, "tcp:retransmit")
    assert [event["seq"] for event in retransmits] == [lost]
    assert client_events(result, "tcp:recovery_exit")[0]["kind"] == "fast"


def test_several_holes_in_one_window_use_sack_in_one_episode():
    upload = payload(400_000, 2)
    lost = [segment_seq(40), segment_seq(43), segment_seq(47)]
    result = transfer(upload, [drop_data(lost)], capture=True)
    assert_delivered(result, upload)
    assert len(client_events(result, "tcp:fast_retransmit")) == 1
    assert client_events(result, "tcp:rto") == []
    # Exactly the three holes were resent: the scoreboard kept SACKed data home.
    assert sorted(event["seq"] for event in client_events(result, "tcp:retransmit")) == lost
    # The receiver reported the holes with several SACK blocks at once (RFC 2018).
    server_sacks = [
        datagram.segment.header.option(Sack)
        for _, datagram in result.network.captured
        if datagram.segment.header.src_port == PORT
    ]
    assert max(len(sack.blocks) for sack in server_sacks if sack) >= 3


def test_without_sack_partial_acks_repair_each_hole():
    # RFC 6582: one fast retransmit, then each partial ACK resends the next hole.
    config = TcpConfig(time_wait=5, sack=False)
    upload = payload(400_000, 3)
    lost = [segment_seq(40), segment_seq(44)]
    result = transfer(upload, [drop_data(lost)], config=config, capture=True)
    assert_delivered(result, upload)
    assert len(client_events(result, "tcp:fast_retransmit")) == 1
    assert client_events(result, "tcp:rto") == []
    assert sorted(event["seq"] for event in client_events(result, "tcp:retransmit")) == lost
    assert not any(d.segment.header.option(Sack) for _, d in result.network.captured)


def test_lost_fast_retransmission_falls_back_to_rto():
    upload = payload(200_000, 4)
    lost = segment_seq(20)
    result = transfer(upload, [drop_data([lost], times=2)])
    assert_delivered(result, upload)
    assert len(client_events(result, "tcp:fast_retransmit")) == 1
    rtos = client_events(result, "tcp:rto")
    assert len(rtos) == 1 and rtos[0]["seq"] == lost
    assert rtos[0]["backoff"] == 1
    assert [e["seq"] for e in client_events(result, "tcp:retransmit")][:2] == [lost, lost]


def test_blackout_backs_off_exponentially_then_recovers():
    upload = payload(1_000_000, 5)

    def blackout(datagram, now):
        return 0.03 < now < 3.0 and datagram.segment.header.dst_port == PORT

    result = transfer(upload, [blackout])
    assert_delivered(result, upload)
    rtos = client_events(result, "tcp:rto")
    backoffs = [event["backoff"] for event in rtos]
    assert backoffs == [1, 2, 3, 4]  # the fourth fires just after the blackout
    # Each timer is twice the previous (RFC 6298 5.5), starting from the 200 ms floor.
    intervals = [later["t"] - earlier["t"] for earlier, later in zip(rtos, rtos[1:], strict=False)]
    assert intervals[0] >= 0.4 - 1e-6
    for shorter, longer in zip(intervals, intervals[1:], strict=False):
        assert longer == pytest.approx(2 * shorter, rel=0.01)
    # The same oldest segment is retransmitted each time.
    assert len({event["seq"] for event in rtos}) == 1
    # The first ACK after the blackout resets the back-off (RFC 6298 5.7 / Linux).
    assert result.client_connection.rtt.backoff == 0


def test_syn_is_retransmitted_with_backoff():
    upload = payload(10_000, 6)
    dropped = []

    def drop_two_syns(datagram, now):
        if datagram.segment.header.flags == 0x02 and len(dropped) < 2:  # bare SYN
            dropped.append(now)
            return True
        return False

    result = transfer(upload, [drop_two_syns])
    assert_delivered(result, upload)
    rtos = client_events(result, "tcp:rto")
    assert [(e["backoff"], e.get("handshake")) for e in rtos] == [(1, True), (2, True)]
    assert rtos[0]["t"] == pytest.approx(1.0)  # RFC 6298 2.1: 1 s
    assert rtos[1]["t"] == pytest.approx(3.0)  # then 2 s


def test_connection_gives_up_after_max_retransmits():
    config = TcpConfig(time_wait=5, max_retransmits=4)
    upload = payload(50_000, 7)

    def cut(datagram, now):
        return now > 0.02  # the path dies after the handshake

    result = run_transfer(
        upload, forward=LINK, backward=LINK, seed=1, filters=[cut],
        client_config=config, server_config=config, time_limit=300,
    )
    assert result.client.closed_reason == "timeout"
    assert len(client_events(result, "tcp:rto")) == 4
