"""RFC 6298 RTO estimator: the formulas, clamping and back-off."""

import pytest

from impl.tcp.rtt import RttEstimator


def test_initial_rto_is_one_second():
    rtt = RttEstimator()
    assert rtt.rto == 1.0 and not rtt.has_sample


def test_first_sample_sets_srtt_and_half_variance():
    rtt = RttEstimator(min_rto=0.0)
    rtt.sample(0.1)
    assert rtt.srtt == pytest.approx(0.1)
    assert rtt.rttvar == pytest.approx(0.05)
    assert rtt.rto == pytest.approx(0.1 + 4 * 0.05)  # RFC 6298 2.2


def test_subsequent_samples_follow_2_3():
    rtt = RttEstimator(min_rto=0.0)
    rtt.sample(0.1)
    rtt.sample(0.2)
    # RTTVAR = 3/4 * 0.05 + 1/4 * |0.1 - 0.2|, then SRTT = 7/8 * 0.1 + 1/8 * 0.2
    rttvar = 0.75 * 0.05 + 0.25 * 0.1
    srtt = 0.875 * 0.1 + 0.125 * 0.2
    assert rtt.rttvar == pytest.approx(rttvar)
    assert rtt.srtt == pytest.approx(srtt)
    assert rtt.rto == pytest.approx(srtt + 4 * rttvar)


def test_granularity_floor_and_min_max_clamp():
    rtt = RttEstimator(min_rto=0.0, granularity=0.5)
    for _ in range(50):
        rtt.sample(0.01)  # variance decays to ~0; G dominates (RFC 6298 2.3)
    assert rtt.rto == pytest.approx(0.01 + 0.5, rel=1e-3)
    clamped = RttEstimator(min_rto=0.2)
    clamped.sample(0.001)
    assert clamped.rto == 0.2  # Linux TCP_RTO_MIN
    slow = RttEstimator(max_rto=120.0)
    slow.sample(100.0)
    assert slow.rto == 120.0


def test_backoff_doubles_and_caps_and_resets():
    rtt = RttEstimator(min_rto=0.2, max_rto=2.0)
    rtt.sample(0.05)
    base = rtt.rto
    assert base == 0.2
    rtt.back_off()
    assert rtt.rto == pytest.approx(0.4)
    rtt.back_off()
    rtt.back_off()
    assert rtt.rto == pytest.approx(1.6)
    rtt.back_off()
    assert rtt.rto == 2.0  # capped (RFC 6298 2.5)
    assert rtt.backoff == 4
    rtt.reset_backoff()
    assert rtt.rto == base
