"""From spec traces to real scripts (model_checks/replay_plan.py): what each event makes
the kernel or our endpoint do, which traces no Linux peer can play and why, and the
Hypothesis walks the replay adds."""

from __future__ import annotations

from model_checks.replay_plan import plan_for
from model_checks.replay_sampling import sample_traces
from spec import events as ev
from spec.monitor import check_trace
from spec.scenarios import BAD_HMAC, FALLBACK, FASTCLOSE_RECEIVED, JOIN, PASSIVE_CLOSE


def kinds(plan) -> list[str]:
    return [action.kind for action in plan.actions]


def test_fallback_is_played_against_a_plain_tcp_kernel():
    plan = plan_for(list(FALLBACK.events))
    assert plan.unexercisable is None
    assert plan.our_role == "client" and not plan.kernel_mptcp
    assert kinds(plan)[0] == "connect"
    assert "send" in kinds(plan) and "kernel_send" in kinds(plan)
    assert kinds(plan).index("close") < kinds(plan).index("kernel_close") or \
        "kernel_close" not in kinds(plan)


def test_the_peers_fastclose_is_the_kernel_closing_with_linger_zero():
    plan = plan_for(list(FASTCLOSE_RECEIVED.events))
    assert plan.unexercisable is None
    assert "kernel_abort" in kinds(plan)


def test_a_wrong_hmac_is_played_by_the_scripted_packet_peer():
    """Linux never sends a bad join HMAC: the packet peer does; our endpoint's reset
    of that subflow (MP_TCPRST) is its reaction, not an abort to script."""
    plan = plan_for(list(BAD_HMAC.events))
    assert plan.unexercisable is None and plan.peer == "scripted"
    assert plan.our_role == "server" and plan.paths >= 2
    assert kinds(plan) == ["listen", "kernel_connect", "kernel_send", "peer_join_bad_hmac"]


def test_what_linux_can_play_stays_with_the_kernel():
    for scenario in (FALLBACK, FASTCLOSE_RECEIVED, JOIN, PASSIVE_CLOSE):
        assert plan_for(list(scenario.events)).peer == "kernel", scenario.name


def test_odd_segments_from_the_peer_become_packet_peer_actions():
    server = [ev.AppListen(), ev.SegmentReceived(0, "S", options=(ev.MpCapable(0),)),
              ev.SegmentSent(0, "SA", options=(ev.MpCapable(1),)),
              ev.SegmentReceived(0, "A", options=(ev.MpCapable(2),))]
    cases = {
        ev.MpFastclose(key_ok=False): "peer_fastclose_bad_key",
        ev.MpFail(0): "peer_mp_fail",
        ev.Dss(dsn=0, length=0): "peer_infinite_mapping",
        ev.AddAddr(address_id=1, hmac_ok=False): "peer_add_addr_bad_hmac",
    }
    for option, kind in cases.items():
        plan = plan_for([*server, ev.SegmentReceived(0, "A", options=(option,))])
        assert plan.unexercisable is None and plan.peer == "scripted", option
        assert kinds(plan)[-1] == kind, (option, kinds(plan))
    # our MP_FAIL needs a payload corrupted under the DSS checksum: checksums on
    ours = plan_for([ev.AppConnect(), ev.SegmentSent(0, "A", options=(ev.MpFail(0),))])
    assert ours.checksums and "peer_corrupt_data" in kinds(ours)


def test_our_join_and_remove_addr_are_calls_on_our_connection():
    plan = plan_for(list(JOIN.events))
    assert plan.unexercisable is None
    assert plan.paths >= 2
    assert {"join", "remove_address"} <= set(kinds(plan)) or plan.kernel_joins


def test_a_join_from_our_server_is_played_with_the_roles_swapped():
    events = [ev.AppListen(),
              ev.SegmentReceived(0, "S", options=(ev.MpCapable(0),)),
              ev.SegmentSent(0, "SA", options=(ev.MpCapable(1),)),
              ev.SegmentReceived(0, "A", payload=1, dsn=0, options=(ev.MpCapable(2),)),
              ev.SegmentSent(1, "S", options=(ev.MpJoin(address_id=1),))]
    plan = plan_for(events)
    assert plan.unexercisable is None
    assert plan.our_role == "client"
    assert kinds(plan)[0] == "connect" and "join" in kinds(plan)


def test_link_events_are_driven_and_own_timers_left_alone():
    opening = [ev.AppConnect(), ev.SegmentSent(0, "S", options=(ev.MpCapable(0),))]
    plan = plan_for([*opening, ev.ConnectTimedOut(0)])
    assert plan.unexercisable is None and plan.peer == "kernel"
    # the SYN goes to an address nobody answers, then the replay waits for the timeout
    assert kinds(plan) == ["unanswered", "connect", "wait_connect_timeout"]
    plan = plan_for([*opening, ev.RtoExpired(0)])
    assert plan.unexercisable is None and kinds(plan) == ["connect"]
    assert kinds(plan_for([ev.LinkDown(0)])) == ["connect", "link_down"]
    # a timeout of our server's SYN/ACK: the kernel cannot be told to leave it unanswered
    server = [ev.AppListen(), ev.SegmentReceived(0, "S", options=(ev.MpCapable(0),)),
              ev.SegmentSent(0, "SA", options=(ev.MpCapable(1),)), ev.ConnectTimedOut(0)]
    plan = plan_for(server)
    assert plan.unexercisable is not None and "ConnectTimedOut" in plan.unexercisable


def test_a_listener_alone_still_gets_a_connection_to_observe():
    plan = plan_for([ev.AppListen()])
    assert plan.our_role == "server" and kinds(plan) == ["listen", "kernel_connect"]


def test_passive_close_script_closes_the_kernel_side_first():
    plan = plan_for(list(PASSIVE_CLOSE.events))
    order = kinds(plan)
    assert plan.unexercisable is None
    assert order.index("kernel_close") < order.index("close")


def test_hypothesis_walks_are_spec_traces_and_repeatable():
    first = sample_traces(6, steps=8)
    assert 1 <= len(first) <= 6
    assert first == sample_traces(6, steps=8)
    for events in first:
        verdict = check_trace(events)
        assert verdict.accepted, verdict.message


def test_close_and_shutdown_are_distinct_actions_and_a_call_on_a_closed_one_repeats():
    assert kinds(plan_for([ev.AppConnect(), ev.AppShutdown()])) == ["connect", "shutdown"]
    assert kinds(plan_for([ev.AppConnect(), ev.AppClose()])) == ["connect", "close"]
    # the spec's CLOSED: the call finds a connection that is over
    assert kinds(plan_for([ev.AppClose()])) == ["connect", "shutdown", "close"]
    assert kinds(plan_for([ev.AppShutdown()])) == ["connect", "shutdown", "shutdown"]
    assert kinds(plan_for([ev.AppAbort()])) == ["connect", "abort", "abort"]


def test_a_segment_received_twice_arms_the_packet_peer_to_repeat_it():
    from model_checks.replay_plan import REPEAT_KINDS, repeated_segments

    fin = ev.SegmentReceived(0, "FA")
    events = [ev.AppConnect(), ev.SegmentSent(0, "S", options=(ev.MpCapable(0),)),
              ev.SegmentReceived(0, "SA", options=(ev.MpCapable(1),)), fin, fin]
    assert repeated_segments(events) == ["FIN"]
    plan = plan_for(events)
    assert plan.peer == "scripted" and plan.unexercisable is None
    assert plan.actions[0].kind == "peer_repeat"
    assert REPEAT_KINDS[plan.actions[0].arg] == "FIN"
    # the same segments once each: Linux plays it
    assert plan_for(events[:-1]).peer == "kernel"


def test_every_rule_not_exercised_gets_a_reason():
    from model_checks.replay_reasons import not_exercised_reason

    group, reason = not_exercised_reason("connection:conn_aborting_ignores_fin",
                                         "run conformant, rule not fired", "x: connect")
    assert group == "only MP_FASTCLOSE arrives while ABORTING"
    assert "script: x: connect" in reason
    group, reason = not_exercised_reason("connection:conn_made_up", "run not conformant", None)
    assert group == "witness run not conformant" and reason
    group, _ = not_exercised_reason("subflow:sf_recv_fin_repeated", "run conformant, rule "
                                    "not fired", "...: peer_repeat(5), connect")
    assert group == "duplicate sent, rule not reached"
