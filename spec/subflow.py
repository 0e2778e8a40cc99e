"""The subflow lifecycle: TCP's states (RFC 9293 3.3.2) plus what MPTCP adds to them.

One table of named rules, read top to bottom: the MP_CAPABLE handshake of the initial
subflow (slot 0, RFC 8684 3.1) on the initiator's and the listener's side, the MP_JOIN
handshake of additional subflows (slots 1.., 3.2) with HMAC failures and the wait for the
fourth ACK (state PRE_ESTABLISHED), fallback points (3.7), then what any synchronized
subflow carries (data, DSS, address signals, MP_PRIO, MP_FAIL, MP_FASTCLOSE), TCP's close
(FIN, TIME_WAIT), resets (with or without MP_TCPRST, 3.6), timers and link events.

Rules of this table:
- The subflow decides what TCP allows on this subflow; the connection table decides what
  the data level allows (both fire on a shared label, see `spec.core`). Guards here read
  the connection only for facts of the handshake (keys, fallback, abort).
- After fallback (`conn.fallback`) no rule here puts an MPTCP option on the wire.
- While the connection is ABORTING (after MP_FASTCLOSE, or an abortive close) a subflow
  may only send RSTs and MP_FASTCLOSE.
- A CLOSED slot can answer a stray segment with a RST, and ignores a RST (RFC 9293
  3.10.7.1); a new subflow may later reuse the slot.
"""

from __future__ import annotations

from spec.core import Config, MachineSpec, Rule, SystemView, Variable
from spec.helpers import (
    JOINABLE,
    SF_FIN_SENT,
    SF_LIVE,
    SF_RECV_DATA,
    SF_SEND_DATA,
    SF_SYNCHRONIZED,
    SF_SYNCHRONIZED_OR_JOINING,
    SUBFLOW_STATES,
    flag,
    is_initial,
    live_count,
    rule,
    unconfirmed_initiator,
)
from spec.logic import And, Implies, Not, Or, Value

SUBFLOW_DOC = (
    "One TCP subflow of the connection as this endpoint sees it: RFC 9293's states, the "
    "MP_CAPABLE (slot 0) or MP_JOIN (other slots) handshake, and what MPTCP carries on it."
)


def _joined(view: SystemView) -> bool:
    return view.index != 0


def _not_aborting(view: SystemView) -> Value:
    return Not(view.conn.in_("ABORTING"))


def _may_signal(view: SystemView) -> Value:
    """The endpoint may put an MPTCP option on this subflow: keys known, no fallback, no
    abort under way."""
    return And(view.conn.peer_key, Not(view.conn.fallback), _not_aborting(view))


def _join_allowed(view: SystemView) -> Value:
    """RFC 8684 3.2: a new subflow needs both keys (Linux: the connection is fully
    established), no fallback, room under the subflow limit, and a usable local address.
    The connection may have begun its close (JOINABLE): while data may still flow either
    way (our DATA_FIN not acknowledged, or the peer's not received) a new path may still
    carry it (3.3.3)."""
    conn = view.conn
    ids = range(1, view.config.max_address_ids)
    return And(
        _joined(view),
        conn.in_(*JOINABLE),
        conn.peer_key,
        conn.confirmed,
        Not(conn.fallback),
        live_count(view) < view.config.subflow_limit,
    ), Or(view.p.address_id == 0, flag(view, "local_up", view.p.address_id, ids))


def _may_open_join(view: SystemView) -> Value:
    connection_ok, address_ok = _join_allowed(view)
    return And(connection_ok, address_ok)


def _may_accept_join(view: SystemView) -> Value:
    connection_ok, _ = _join_allowed(view)
    return connection_ok


def _rst_ok(view: SystemView) -> Value:
    """MP_TCPRST (reason >= 0) is an MPTCP option: not after fallback (3.6, 3.7)."""
    return Implies(view.p.reason >= 0, Not(view.conn.fallback))


def _initial_connecting(view: SystemView) -> Value:
    return And(is_initial(view), view.conn.in_("SYN_SENT"))


def _opened_by_us(view: SystemView, local_id: Value = 0, backup: Value = False) -> dict:
    return {"active": True, "local_id": local_id, "remote_id": 0, "backup": backup}


def _opened_by_peer(view: SystemView, remote_id: Value = 0, backup: Value = False) -> dict:
    return {"active": False, "local_id": 0, "remote_id": remote_id, "backup": backup}


def _handshake_rules() -> list[Rule]:
    return [
        # -- initial subflow, initiator side (RFC 8684 3.1) ----------------------------------
        rule("sf_connect_mpc", "CLOSED", "send_syn_mpc", "SYN_SENT",
             lambda v: And(_initial_connecting(v), Not(v.conn.fallback)),
             lambda v: _opened_by_us(v), rfc="3.1", when="slot 0, connecting",
             doc="The initiator opens the initial subflow with SYN + MP_CAPABLE (no key in v1)."),
        rule("sf_syn_mpc_retransmit", "SYN_SENT", "send_syn_mpc", None,
             lambda v: And(_initial_connecting(v), Not(v.conn.fallback)),
             rfc="3.1", when="slot 0", doc="The SYN + MP_CAPABLE is retransmitted."),
        rule("sf_connect_plain", "CLOSED", "send_syn", "SYN_SENT", _initial_connecting,
             lambda v: _opened_by_us(v), rfc="3.7", when="slot 0, connecting",
             doc="The initial SYN goes out without MP_CAPABLE: plain TCP from the start."),
        rule("sf_syn_retransmit_plain", "SYN_SENT", "send_syn", None, _initial_connecting,
             rfc="3.7", when="slot 0",
             doc="A retransmitted SYN drops MP_CAPABLE, in case a middlebox eats it (3.7; "
                 "Linux: net.mptcp.syn_retrans_before_tcp_fallback)."),
        rule("sf_synack_mpc", "SYN_SENT", "recv_synack_mpc", "ESTABLISHED", is_initial,
             rfc="3.1", when="slot 0",
             doc="SYN/ACK + MP_CAPABLE brings the listener's key: TCP is established."),
        rule("sf_synack_plain", "SYN_SENT", "recv_synack", "ESTABLISHED", is_initial,
             rfc="3.7", when="slot 0",
             doc="A SYN/ACK without MP_CAPABLE: the subflow is plain TCP (fallback)."),
        rule("sf_synack_repeated", "ESTABLISHED", "recv_synack_mpc", None, is_initial,
             rfc="RFC 9293 3.10.7.4", when="slot 0",
             doc="A retransmitted SYN/ACK (our third ACK was lost); it is acknowledged again."),
        rule("sf_synack_plain_repeated", "ESTABLISHED", "recv_synack", None, is_initial,
             rfc="RFC 9293 3.10.7.4", when="slot 0", doc="A retransmitted plain SYN/ACK."),
        rule("sf_third_ack_mpc", "ESTABLISHED", "send_ack_mpc", None,
             lambda v: And(is_initial(v), unconfirmed_initiator(v), _not_aborting(v)),
             rfc="3.1", when="slot 0, no DSS seen yet",
             doc="The third ACK carries MP_CAPABLE with both keys; the initiator repeats it "
                 "(with data, 22/24 bytes) until a DSS from the peer shows the keys arrived."),
        # -- initial subflow, listener side (RFC 8684 3.1) -----------------------------------
        rule("sf_passive_open_mpc", "CLOSED", "recv_syn_mpc", "SYN_RECEIVED",
             lambda v: And(is_initial(v), v.conn.in_("LISTEN")),
             lambda v: _opened_by_peer(v), rfc="3.1", when="slot 0, listening",
             doc="A SYN + MP_CAPABLE reaches the listener."),
        rule("sf_syn_mpc_repeated", "SYN_RECEIVED", "recv_syn_mpc", None, is_initial,
             rfc="3.1", when="slot 0", doc="The SYN + MP_CAPABLE is retransmitted."),
        rule("sf_passive_open_plain", "CLOSED", "recv_syn", "SYN_RECEIVED",
             lambda v: And(is_initial(v), v.conn.in_("LISTEN")),
             lambda v: _opened_by_peer(v), rfc="3.7", when="slot 0, listening",
             doc="A SYN without MP_CAPABLE: plain TCP."),
        rule("sf_syn_plain_repeated", "SYN_RECEIVED", "recv_syn", None, is_initial,
             rfc="3.7", when="slot 0",
             doc="The SYN is retransmitted, maybe without MP_CAPABLE now."),
        rule("sf_synack_mpc_sent", "SYN_RECEIVED", "send_synack_mpc", None,
             lambda v: And(is_initial(v), v.conn.in_("SYN_RECEIVED"), Not(v.conn.fallback)),
             rfc="3.1", when="slot 0", doc="SYN/ACK + MP_CAPABLE with the listener's key."),
        rule("sf_synack_plain_sent", "SYN_RECEIVED", "send_synack", None,
             lambda v: And(is_initial(v), v.conn.in_("SYN_RECEIVED")),
             rfc="3.7", when="slot 0",
             doc="A SYN/ACK without MP_CAPABLE (plain SYN, or the listener declines MPTCP)."),
        rule("sf_third_ack_mpc_received", "SYN_RECEIVED", "recv_ack_mpc", "ESTABLISHED",
             is_initial, rfc="3.1", when="slot 0",
             doc="The third ACK (or first data) carries MP_CAPABLE with both keys."),
        rule("sf_ack_mpc_repeated", SF_RECV_DATA, "recv_ack_mpc", None, is_initial,
             rfc="3.1", when="slot 0",
             doc="The initiator repeats MP_CAPABLE (maybe with data) until it sees a DSS."),
        rule("sf_third_ack_plain", "SYN_RECEIVED", "recv_ack", "ESTABLISHED", is_initial,
             rfc="3.7", when="slot 0",
             doc="The third ACK has no MP_CAPABLE: the listener falls back to TCP."),
        rule("sf_third_ack_plain_with_fin", "SYN_RECEIVED", "recv_fin", "CLOSE_WAIT",
             is_initial, rfc="3.7", when="slot 0",
             doc="The third ACK was lost and the initiator's next segment, without MPTCP "
                 "options, carries its FIN: the ACK establishes the subflow (RFC 9293 "
                 "3.10.7.4), the listener falls back, and the FIN is taken at once."),
        rule("sf_third_ack_plain_with_data", "SYN_RECEIVED", "recv_data_plain", "ESTABLISHED",
             is_initial, rfc="3.7", when="slot 0",
             doc="The first data arrives without MPTCP options: fall back to TCP."),
        # -- additional subflow, initiator side (RFC 8684 3.2) -------------------------------
        rule("sf_join_connect", "CLOSED", "send_syn_join", "SYN_SENT", _may_open_join,
             lambda v: _opened_by_us(v, v.p.address_id, v.p.backup), rfc="3.2",
             when="keys known, under the limit",
             doc="A new subflow opens with SYN + MP_JOIN (token, nonce, address ID, B flag)."),
        rule("sf_join_syn_retransmit", "SYN_SENT", "send_syn_join", None,
             lambda v: And(_joined(v), _not_aborting(v), v.p.address_id == v.sf.local_id),
             rfc="3.2", when="same address ID", doc="The SYN + MP_JOIN is retransmitted."),
        rule("sf_join_synack", "SYN_SENT", "recv_synack_join", "PRE_ESTABLISHED",
             lambda v: And(_joined(v), v.p.hmac_ok),
             lambda v: {"remote_id": v.p.address_id, "backup": v.p.backup},
             rfc="3.2", when="HMAC-B ok",
             doc="SYN/ACK + MP_JOIN with a valid truncated HMAC-B: send the third ACK with "
                 "HMAC-A and wait for its acknowledgment (the fourth ACK)."),
        rule("sf_join_synack_hmac_failure", "SYN_SENT", "recv_synack_join", "CLOSED",
             lambda v: And(_joined(v), Not(v.p.hmac_ok)), rfc="3.2", when="HMAC-B bad",
             doc="The truncated HMAC-B is wrong: the subflow is reset (a RST follows; "
                 "Linux counts MPJoinSynAckHMacFailure)."),
        rule("sf_join_synack_without_mp_join", "SYN_SENT", "recv_synack", "CLOSED", _joined,
             rfc="3.7", when="joining slot",
             doc="MP_JOIN was stripped from the SYN/ACK: the subflow is reset, never fallen back."),
        rule("sf_join_synack_repeated", "PRE_ESTABLISHED", "recv_synack_join", None,
             lambda v: v.p.hmac_ok, rfc="3.2", when="HMAC-B ok",
             doc="A retransmitted SYN/ACK: the third ACK was lost."),
        rule("sf_join_fin_before_fourth_ack", "PRE_ESTABLISHED", "send_fin", "FIN_WAIT_1",
             _joined, rfc="RFC 9293 3.10.4",
             doc="The joiner closes a subflow still waiting for its fourth ACK (connection "
                 "close, REMOVE_ADDR, policy), as Linux does: its TCP is ESTABLISHED and "
                 "may CLOSE (RFC 9293 3.10.4); 3.2 only keeps data off it, and a FIN is "
                 "no data."),
        rule("sf_join_third_ack", "PRE_ESTABLISHED", "send_ack_join", None,
             lambda v: And(_joined(v), _not_aborting(v)), rfc="3.2",
             doc="The third ACK carries MP_JOIN with the full HMAC-A; it is retransmitted "
                 "until the fourth ACK arrives. No data may be sent before that."),
        # -- additional subflow, listener side (RFC 8684 3.2) --------------------------------
        rule("sf_join_passive_open", "CLOSED", "recv_syn_join", "SYN_RECEIVED", _may_accept_join,
             lambda v: _opened_by_peer(v, v.p.address_id, v.p.backup), rfc="3.2",
             choice="join_policy", when="keys known, under the limit",
             doc="A SYN + MP_JOIN with our token: the path manager accepts the new subflow."),
        rule("sf_join_refused", "CLOSED", "recv_syn_join", None, _joined, rfc="3.2",
             choice="join_policy", when="any (policy or limit)",
             doc="The path manager refuses the join (limit reached, no keys yet, fallback, or "
                 "policy); the endpoint answers with a RST."),
        rule("sf_join_syn_repeated", "SYN_RECEIVED", "recv_syn_join", None, _joined,
             rfc="3.2", doc="The SYN + MP_JOIN is retransmitted."),
        rule("sf_ack_for_unacceptable_segment", "SYN_RECEIVED", "send_ack", None,
             _not_aborting, rfc="RFC 9293 3.10.7.4",
             doc="A segment that fails the acceptability test in SYN-RECEIVED (an old "
                 "duplicate SYN, a PAWS failure, out of window) is answered with a bare "
                 "ACK <SEQ=SND.NXT><ACK=RCV.NXT> and dropped (Linux: a request socket "
                 "does the same, without MPTCP options)."),
        rule("sf_join_synack_sent", "SYN_RECEIVED", "send_synack_join", None,
             lambda v: And(_joined(v), _may_signal(v)),
             lambda v: {"local_id": v.p.address_id}, rfc="3.2",
             doc="SYN/ACK + MP_JOIN with our address ID, nonce and truncated HMAC-B."),
        rule("sf_join_ack", "SYN_RECEIVED", "recv_ack_join", "ESTABLISHED",
             lambda v: And(_joined(v), v.p.hmac_ok), rfc="3.2", when="HMAC-A ok",
             doc="The third ACK's full HMAC-A checks out: the subflow is established; our "
                 "next segment is its fourth ACK."),
        rule("sf_join_ack_hmac_failure", "SYN_RECEIVED", "recv_ack_join", "CLOSED",
             lambda v: And(_joined(v), Not(v.p.hmac_ok)), rfc="3.2", when="HMAC-A bad",
             doc="HMAC-A is wrong: the subflow is reset (Linux: MPJoinAckHMacFailure)."),
        rule("sf_join_ack_repeated", SF_SYNCHRONIZED, "recv_ack_join", None,
             lambda v: And(_joined(v), v.p.hmac_ok), rfc="3.2",
             when="HMAC-A ok",
             doc="The third ACK is retransmitted until the fourth ACK arrives; a late copy "
                 "may find the subflow already closing (FIN exchange), where TCP takes it "
                 "as a duplicate ACK (RFC 9293 3.10.7.4). Ack it again."),
        rule("sf_join_third_ack_without_mp_join", "SYN_RECEIVED", "recv_ack", "CLOSED",
             _joined, rfc="3.7", when="joining slot",
             doc="MP_JOIN was stripped from the third ACK: the subflow is reset."),
    ]


def _fourth_ack_rules() -> list[Rule]:
    """RFC 8684 3.2: any segment from the listener acknowledging the third ACK is the fourth
    ACK (Linux: a pure ACK with a DSS DATA_ACK); it lets the subflow carry data."""
    first_labels = {
        "recv_ack": "sf_join_fourth_ack",
        "recv_data_ack": "sf_join_fourth_ack_dss",
        "recv_data": "sf_join_fourth_ack_data",
        "recv_add_addr": "sf_join_fourth_ack_add_addr",
        "recv_mp_prio": "sf_join_fourth_ack_mp_prio",
    }
    return [
        rule(name, "PRE_ESTABLISHED", label, "ESTABLISHED", _joined, rfc="3.2",
             doc=f"The fourth ACK arrives ({label}); the rest of the segment is processed "
                 "as on an established subflow.")
        for label, name in first_labels.items()
    ]


def _synchronized_rules() -> list[Rule]:
    """What a synchronized subflow carries. The connection table decides the data level."""
    carried = [
        ("sf_send_ack", "send_ack", SF_SYNCHRONIZED, _not_aborting, "RFC 9293 3.10.7.4",
         "A bare ACK."),
        ("sf_recv_ack", "recv_ack", SF_SYNCHRONIZED, None, "RFC 9293 3.10.7.4",
         "A bare ACK."),
        ("sf_send_data", "send_data", SF_SEND_DATA, None, "3.3.1",
         "Payload with its DSS mapping."),
        ("sf_send_data_plain", "send_data_plain", SF_SEND_DATA, None, "3.3.1",
         "Payload without a DSS mapping on this segment (an earlier mapping or fallback)."),
        ("sf_send_data_after_fin", "send_data", SF_FIN_SENT, None, "RFC 9293 3.6",
         "Payload sent before this subflow's FIN is retransmitted after it (the FIN "
         "follows it in sequence space); the connection table keeps it to data already "
         "sent."),
        ("sf_send_data_plain_after_fin", "send_data_plain", SF_FIN_SENT, None,
         "RFC 9293 3.6",
         "Likewise without a mapping on this segment (after fallback: TCP retransmits "
         "what its FIN follows)."),
        ("sf_recv_data", "recv_data", SF_RECV_DATA, None, "3.3.1",
         "Payload with its DSS mapping."),
        ("sf_recv_data_plain", "recv_data_plain", SF_RECV_DATA, None, "3.3.1",
         "Payload without a DSS mapping on this segment."),
        ("sf_send_data_ack", "send_data_ack", SF_SYNCHRONIZED, None, "3.3.2",
         "A DATA_ACK; Linux puts one on every segment, on any subflow."),
        ("sf_recv_data_ack", "recv_data_ack", SF_SYNCHRONIZED, None, "3.3.2",
         "A DATA_ACK."),
        ("sf_send_data_fin", "send_data_fin", SF_SYNCHRONIZED, None, "3.3.3",
         "A DATA_FIN, on its own or with the last data, with or without the TCP FIN."),
        ("sf_recv_data_fin", "recv_data_fin", SF_SYNCHRONIZED, None, "3.3.3", "A DATA_FIN."),
        ("sf_send_infinite_mapping", "send_infinite_mapping", SF_SYNCHRONIZED, None, "3.7",
         "An infinite mapping: this subflow carries the rest of the stream unmapped."),
        ("sf_recv_infinite_mapping", "recv_infinite_mapping", SF_SYNCHRONIZED, None, "3.7",
         "An infinite mapping."),
        ("sf_send_add_addr", "send_add_addr", SF_SYNCHRONIZED, None, "3.4.1",
         "ADD_ADDR (or its echo), on any subflow."),
        ("sf_recv_add_addr", "recv_add_addr", SF_SYNCHRONIZED, None, "3.4.1", "ADD_ADDR."),
        ("sf_send_remove_addr", "send_remove_addr", SF_SYNCHRONIZED, None, "3.4.2",
         "REMOVE_ADDR, on any subflow."),
        ("sf_recv_remove_addr", "recv_remove_addr", SF_SYNCHRONIZED, None, "3.4.2",
         "REMOVE_ADDR: the subflows using that address will be closed."),
        ("sf_send_mp_fail", "send_mp_fail", SF_SYNCHRONIZED, _may_signal, "3.7",
         "MP_FAIL: a DSS checksum failed here."),
        ("sf_recv_mp_fail", "recv_mp_fail", SF_SYNCHRONIZED, None, "3.7", "MP_FAIL."),
        ("sf_send_fastclose", "send_fastclose", SF_SYNCHRONIZED, None, "3.5",
         "MP_FASTCLOSE, on an ACK (then wait for the RST) or on a RST (Linux)."),
        ("sf_recv_fastclose", "recv_fastclose", SF_SYNCHRONIZED, None, "3.5", "MP_FASTCLOSE."),
    ]
    rules = [
        rule(name, states, label, None, *(() if guard is None else (guard,)), rfc=rfc, doc=doc)
        for name, label, states, guard, rfc, doc in carried
    ]
    rules += [
        rule("sf_send_mp_prio", SF_SYNCHRONIZED, "send_mp_prio", None, _may_signal,
             lambda v: {"backup": v.p.backup}, rfc="3.3.8",
             doc="MP_PRIO: ask the peer to treat this subflow as backup (B=1) or not."),
        rule("sf_recv_mp_prio", SF_SYNCHRONIZED, "recv_mp_prio", None, effect=lambda v: {
             "backup": v.p.backup}, rfc="3.3.8",
             doc="MP_PRIO: the peer changes this subflow's priority."),
        rule("sf_recv_fastclose_half_open", ("SYN_RECEIVED", "PRE_ESTABLISHED"),
             "recv_fastclose", None, rfc="3.5",
             doc="MP_FASTCLOSE on the RST that ends a half-open subflow: the peer counts it "
                 "established (it got our SYN/ACK, or our third ACK of a join, and its "
                 "answer has not reached us) and resets every subflow it has with "
                 "MP_FASTCLOSE (Linux); the RST follows."),
    ]
    rules += [
        rule(f"sf_challenge_ack_{stem}", SF_SYNCHRONIZED_OR_JOINING, label, None,
             rfc="RFC 5961 4.2",
             doc="A SYN on a synchronized subflow (an old duplicate, or a peer that lost "
                 "the connection) is answered with a challenge ACK <SEQ=SND.NXT>"
                 "<ACK=RCV.NXT> and dropped (RFC 9293 3.10.7.4 adopts RFC 5961's MUST): "
                 "the subflow does not change.")
        for stem, label in (("syn_mpc", "recv_syn_mpc"), ("syn_plain", "recv_syn"),
                            ("syn_join", "recv_syn_join"))
    ]
    return rules


def _close_rules() -> list[Rule]:
    """TCP's close on one subflow (RFC 9293 3.6, 3.10.7), resets and timers."""
    return [
        rule("sf_send_fin", "ESTABLISHED", "send_fin", "FIN_WAIT_1", rfc="RFC 9293 3.6",
             doc="This endpoint closes the subflow (after the DATA_FIN exchange, on "
                 "REMOVE_ADDR, or by path-manager policy)."),
        rule("sf_send_fin_close_wait", "CLOSE_WAIT", "send_fin", "LAST_ACK",
             rfc="RFC 9293 3.6", doc="The peer closed first; now we close too."),
        rule("sf_fin_retransmit", ("FIN_WAIT_1", "CLOSING", "LAST_ACK"), "send_fin", None,
             rfc="RFC 9293 3.6", doc="The FIN is retransmitted."),
        rule("sf_recv_fin", "ESTABLISHED", "recv_fin", "CLOSE_WAIT", rfc="RFC 9293 3.6",
             doc="The peer closes the subflow."),
        rule("sf_recv_fin_fin_wait_1", "FIN_WAIT_1", "recv_fin", "CLOSING",
             rfc="RFC 9293 3.6", doc="Simultaneous close."),
        rule("sf_recv_fin_fin_wait_2", "FIN_WAIT_2", "recv_fin", "TIME_WAIT",
             rfc="RFC 9293 3.6", doc="The peer's FIN after ours was acknowledged."),
        rule("sf_recv_fin_repeated", ("CLOSE_WAIT", "CLOSING", "LAST_ACK", "TIME_WAIT"),
             "recv_fin", None, rfc="RFC 9293 3.10.7.4", doc="A retransmitted FIN."),
        rule("sf_fin_acked", "FIN_WAIT_1", "recv_ack_of_fin", "FIN_WAIT_2",
             rfc="RFC 9293 3.6", doc="Our FIN is acknowledged."),
        rule("sf_closing_fin_acked", "CLOSING", "recv_ack_of_fin", "TIME_WAIT",
             rfc="RFC 9293 3.6", doc="Our FIN is acknowledged after a simultaneous close."),
        rule("sf_last_ack_fin_acked", "LAST_ACK", "recv_ack_of_fin", "CLOSED",
             rfc="RFC 9293 3.6", doc="Our FIN is acknowledged: the subflow is gone."),
        rule("sf_fin_ack_repeated", ("FIN_WAIT_2", "TIME_WAIT"), "recv_ack_of_fin", None,
             rfc="RFC 9293 3.10.7.4", doc="A duplicate acknowledgment of our FIN."),
        rule("sf_time_wait_expired", "TIME_WAIT", "timeout_time_wait", "CLOSED",
             rfc="RFC 9293 3.6", doc="2 MSL passed in TIME_WAIT."),
        rule("sf_send_rst", SF_LIVE, "send_rst", "CLOSED", _rst_ok, rfc="3.6",
             when="MP_TCPRST only without fallback",
             doc="This endpoint resets the subflow, with or without MP_TCPRST and its "
                 "reason (Linux always adds it on MPTCP subflows)."),
        rule("sf_send_rst_closed", "CLOSED", "send_rst", None, _rst_ok,
             rfc="RFC 9293 3.10.7.1",
             doc="A closed slot answers a stray segment (or a failed handshake) with a RST."),
        rule("sf_recv_rst", SF_LIVE, "recv_rst", "CLOSED", rfc="3.6",
             doc="The peer resets the subflow, with or without MP_TCPRST."),
        rule("sf_recv_rst_closed", "CLOSED", "recv_rst", None, rfc="RFC 9293 3.10.7.1",
             doc="A RST for a subflow that is already closed is ignored."),
        rule("sf_rto", SF_LIVE, "timeout_rto", None, rfc="RFC 6298",
             doc="The retransmission timer fired; what is resent is seen as sent segments."),
        rule("sf_connect_timeout", ("SYN_SENT", "SYN_RECEIVED"), "timeout_connect", "CLOSED",
             rfc="RFC 9293 3.10.8", doc="The handshake's retries ran out; the subflow is "
                                         "dropped without a segment."),
        rule("sf_link_down", tuple(SUBFLOW_STATES), "path_link_down", None, rfc="3.3.6",
             doc="The subflow's path went down; the subflow may time out or be reset."),
        rule("sf_link_up", tuple(SUBFLOW_STATES), "path_link_up", None, rfc="3.3.6",
             doc="The subflow's path came back."),
    ]


def build_subflow(config: Config | None = None) -> MachineSpec:
    config = config if config is not None else Config()
    ids = config.max_address_ids
    variables = (
        Variable("active", "bool", False, doc="this endpoint sent the subflow's SYN"),
        Variable("backup", "bool", False,
                 doc="backup priority last signalled on this subflow (MP_JOIN or MP_PRIO B)"),
        Variable("local_id", "int", 0, 0, ids - 1, doc="our address ID of this subflow"),
        Variable("remote_id", "int", 0, 0, ids - 1, doc="the peer's address ID of it"),
    )
    rules = (_handshake_rules() + _fourth_ack_rules() + _synchronized_rules()
             + _close_rules())
    return MachineSpec(
        name="subflow",
        states=SUBFLOW_STATES,
        initial="CLOSED",
        variables=variables,
        rules=tuple(rules),
        doc=SUBFLOW_DOC,
    )

