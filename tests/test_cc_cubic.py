"""CUBIC (RFC 9438): multiplicative decrease by beta = 0.7, concave regrowth to W_max
around t = K, convex probing beyond it, the Reno-friendly floor, fast convergence."""

import pytest

from impl.cc.cubic import BETA, C, Cubic

MSS = 1000


def run(cc, start, seconds, rtt):
    """ACK-clocked growth: every RTT, acknowledge one window in two-segment ACKs.
    Returns [(t, cwnd in segments)] sampled once per RTT."""
    samples = []
    now = start
    while now < start + seconds:
        window = cc.cwnd
        acked = 0
        while acked < window:
            chunk = min(2 * MSS, window - acked)
            cc.on_ack(chunk, rtt, now)
            acked += chunk
        now += rtt
        samples.append((now - start, cc.cwnd / MSS))
    return samples


def loss_at(cc, segments, now=0.0):
    cc.cwnd = segments * MSS
    cc.ssthresh = segments * MSS  # out of slow start
    cc.on_loss(now, cc.cwnd)


def test_loss_multiplies_by_beta():
    cc = Cubic(MSS)
    loss_at(cc, 100)
    assert cc.w_max == 100
    assert cc.cwnd == int(100 * MSS * BETA)
    assert cc.ssthresh == cc.cwnd
    assert not cc.in_slow_start


def test_concave_then_plateau_then_convex():
    cc = Cubic(MSS)
    loss_at(cc, 100)
    rtt = 0.1
    samples = run(cc, 0.0, 12.0, rtt)
    k = ((100 - 70) / C) ** (1 / 3)  # RFC 9438 eq. 2: about 4.2 s
    assert cc.k == pytest.approx(k, rel=1e-6)
    # Near t = K the window is back at W_max (the plateau).
    near_k = [w for t, w in samples if abs(t - k) <= rtt]
    assert near_k and all(abs(w - 100) <= 3 for w in near_k)
    # Concave before K: growth per RTT shrinks; convex after: growth per RTT grows.
    growth = [(t, b - a) for (t, a), (_, b) in zip(samples, samples[1:], strict=False)]
    early = [g for t, g in growth if t < 0.3 * k]
    before = [g for t, g in growth if 0.6 * k < t < 0.9 * k]
    after = [g for t, g in growth if 1.5 * k < t < 2.0 * k]
    assert max(before) < min(early)
    assert min(after) > max(before)
    # It keeps tracking the cubic curve one RTT ahead, not Reno's line.
    t_end, w_end = samples[-1]
    assert w_end == pytest.approx(cc.w_cubic(t_end), rel=0.1)
    assert w_end > 100 + 0.5 * (t_end / rtt) * 0.5  # well above Reno-friendly growth


def test_reno_friendly_region_on_short_rtt():
    # With a 1 ms RTT the cubic curve barely moves in 100 RTTs; W_est grows by
    # alpha = 3(1-beta)/(1+beta) ~ 0.53 segments per RTT and carries the window.
    cc = Cubic(MSS)
    loss_at(cc, 100)
    samples = run(cc, 0.0, 0.1, 0.001)
    gained = samples[-1][1] - 70
    alpha = 3 * (1 - BETA) / (1 + BETA)
    rounds = len(samples)
    assert gained >= 0.8 * alpha * rounds
    assert gained > (cc.w_cubic(0.1) - 70) + 5


def test_fast_convergence_lowers_w_max():
    cc = Cubic(MSS)
    loss_at(cc, 100)
    cc.cwnd = 80 * MSS  # a second loss before regaining W_max
    cc.on_loss(1.0, cc.cwnd)
    assert cc.w_max == pytest.approx(80 * (1 + BETA) / 2)
    plain = Cubic(MSS, fast_convergence=False)
    loss_at(plain, 100)
    plain.cwnd = 80 * MSS
    plain.on_loss(1.0, plain.cwnd)
    assert plain.w_max == 80


def test_timeout_restarts_from_one_segment_in_slow_start():
    cc = Cubic(MSS)
    cc.cwnd = 50 * MSS
    cc.on_rto(0.0, 50 * MSS)
    assert cc.cwnd == MSS and cc.ssthresh == int(50 * MSS * BETA) and cc.in_slow_start
    run(cc, 0.0, 0.25, 0.1)  # three RTTs of slow start: 1 -> 2 -> 4 -> 8 segments
    assert cc.cwnd == 8 * MSS
