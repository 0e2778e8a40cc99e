"""Reno (RFC 5681): slow start doubles per RTT, congestion avoidance adds one segment
per RTT, loss halves the flight, a timeout restarts from one segment."""

from impl.cc.base import INFINITE_SSTHRESH, CouplingGroup
from impl.cc.reno import Reno

MSS = 1000


def one_rtt(cc, now, rtt=0.1, per_ack=2 * MSS):
    """Acknowledge one window's worth in ACKs of `per_ack` bytes (delayed ACKs)."""
    window = cc.cwnd
    acked = 0
    while acked < window:
        chunk = min(per_ack, window - acked)
        cc.on_ack(chunk, rtt, now)
        acked += chunk


def test_slow_start_doubles_per_rtt():
    cc = Reno(MSS, initial_window_segments=10)
    assert cc.cwnd == 10 * MSS and cc.ssthresh == INFINITE_SSTHRESH and cc.in_slow_start
    windows = []
    for round_ in range(4):
        one_rtt(cc, round_ * 0.1)
        windows.append(cc.cwnd)
    assert windows == [20 * MSS, 40 * MSS, 80 * MSS, 160 * MSS]


def test_congestion_avoidance_adds_one_segment_per_rtt():
    cc = Reno(MSS)
    cc.ssthresh = 20 * MSS
    cc.cwnd = 20 * MSS
    assert not cc.in_slow_start
    for round_ in range(10):
        before = cc.cwnd
        one_rtt(cc, round_ * 0.1)
        assert cc.cwnd - before == MSS  # linear: exactly one SMSS per window acked


def test_slow_start_stops_at_ssthresh():
    cc = Reno(MSS)
    cc.ssthresh = 15 * MSS
    one_rtt(cc, 0.0)
    assert 15 * MSS <= cc.cwnd <= 16 * MSS


def test_loss_and_timeout():
    cc = Reno(MSS)
    cc.cwnd = 40 * MSS
    cc.on_loss(1.0, flight_size=40 * MSS)
    assert cc.ssthresh == 20 * MSS and cc.cwnd == 20 * MSS  # RFC 5681 eq. 4
    cc.on_recovery_exit(1.2)
    assert cc.cwnd == 20 * MSS
    cc.on_loss(2.0, flight_size=3 * MSS)
    assert cc.ssthresh == 2 * MSS  # never below 2 SMSS
    cc.cwnd = 30 * MSS
    cc.on_rto(3.0, flight_size=30 * MSS)
    assert cc.cwnd == MSS and cc.ssthresh == 15 * MSS and cc.in_slow_start


def test_coupling_group_membership():
    group = CouplingGroup()
    first, second = Reno(MSS, coupling=group), Reno(MSS, coupling=group)
    assert group.members == [first, second]
    assert group.total_cwnd == 20 * MSS
    first.leave()
    assert group.members == [second]
