"""The textbook scenarios through the monitor: each is accepted, and its broken twin is
rejected at the right event, with a readable account of where the machines were."""

from __future__ import annotations

import pytest

from spec.monitor import Monitor, check_trace
from spec.scenarios import SCENARIOS

IDS = [scenario.name for scenario in SCENARIOS]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_scenario_is_accepted(scenario):
    verdict = check_trace(scenario.events)
    assert verdict.accepted, verdict.message + "\n" + "\n".join(verdict.states)
    assert verdict.index is None and verdict.events == len(scenario.events)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_broken_twin_is_rejected_at_the_right_event(scenario):
    verdict = check_trace(scenario.broken)
    assert not verdict.accepted, scenario.broken_doc
    assert verdict.index == scenario.broken_at, verdict.message
    assert verdict.message.startswith(f"event {scenario.broken_at} ")
    assert verdict.states and all("conn=" in state for state in verdict.states)
    assert verdict.enabled and all(":" in line for line in verdict.enabled)
    # the prefix before the bad event is fine on its own
    assert check_trace(scenario.broken[:scenario.broken_at]).accepted


@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_monitor_is_incremental(scenario):
    monitor = Monitor()
    results = [monitor.feed(event) for event in scenario.broken]
    assert results[:scenario.broken_at] == [True] * scenario.broken_at
    assert not any(results[scenario.broken_at:])
    assert monitor.verdict.index == scenario.broken_at


def test_rejection_names_the_states_and_what_was_enabled():
    scenario = next(s for s in SCENARIOS if s.name == "mp_join_used_and_removed")
    verdict = check_trace(scenario.broken)
    assert "send_data_ack[1]" in verdict.message
    assert any("sf1=PRE_ESTABLISHED" in state for state in verdict.states)
    assert "recv_ack[1]: conn_ack, sf_join_fourth_ack" in verdict.enabled
    assert "send_ack_join[1]: sf_join_third_ack" in verdict.enabled


def test_final_states_of_the_textbook_closes():
    by_name = {s.name: check_trace(s.events) for s in SCENARIOS}
    for name in ("mp_capable_active_close", "mp_capable_passive_close",
                 "fallback_synack_without_mp_capable", "mp_fastclose"):
        assert all(state.startswith("conn=CLOSED") for state in by_name[name].states), name
    assert "fallback=True" in by_name["fallback_synack_without_mp_capable"].states[0]
    assert "fastclosed=True" in by_name["mp_fastclose"].states[0]


def test_a_system_sized_for_real_byte_counts():
    from spec.core import Config
    from spec.events import AppConnect, AppSend, Dss, MpCapable, SegmentReceived, SegmentSent
    from spec.system import build_system

    big = build_system(Config(max_bytes=1 << 20))
    trace = [
        AppConnect(),
        SegmentSent(0, "S", options=(MpCapable(0),)),
        SegmentReceived(0, "SA", options=(MpCapable(1),)),
        SegmentSent(0, "A", options=(MpCapable(2),)),
        AppSend(5000),
        SegmentSent(0, "A", payload=1400, dsn=0, options=(MpCapable(2),)),
        SegmentSent(0, "A", payload=3600, dsn=1400, options=(Dss(dsn=1400, length=3600),)),
        SegmentReceived(0, "A", options=(Dss(data_ack=5000),)),
    ]
    verdict = check_trace(trace, big)
    assert verdict.accepted and "snd_una=5000" in verdict.states[0]
    assert not check_trace(trace).accepted  # 5000 units do not fit the model's bound
    too_far = trace[:-1] + [SegmentReceived(0, "A", options=(Dss(data_ack=5001),))]
    verdict = check_trace(too_far, big)  # ignored as out of window, not an error
    assert verdict.accepted and "snd_una" not in verdict.states[0]


def test_monitor_reports_the_rules_a_trace_fired():
    from spec.scenarios import BAD_HMAC, FALLBACK

    monitor = Monitor()
    for event in FALLBACK.events:
        assert monitor.feed(event)
    fired = monitor.fired
    # the SYN/ACK without MP_CAPABLE, the FIN as DATA_FIN, the subflow TIME_WAIT
    assert {"connection:conn_synack_plain", "subflow:sf_synack_plain",
            "connection:conn_fallback_fin_sent", "subflow:sf_time_wait_expired"} <= fired
    assert not any("join" in rule for rule in monitor.maybe_fired)
    assert fired <= monitor.maybe_fired
    monitor = Monitor()
    for event in BAD_HMAC.events:
        monitor.feed(event)
    assert "subflow:sf_join_ack_hmac_failure" in monitor.fired
    assert "subflow:sf_join_ack" not in monitor.maybe_fired
