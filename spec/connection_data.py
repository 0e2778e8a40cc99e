"""Connection rules for the data level: DSS mappings, DATA_ACK, DATA_FIN (RFC 8684 3.3,
Appendix D), MP_FAIL and the infinite mapping (3.7), and address signals (3.4).

The data level is abstracted to a few bounded counters, in units of 0..`Config.max_bytes`
(DATA_FIN takes one more unit), relative to IDSN + 1:

    written   units the application handed over (app_send)
    snd_nxt   one past the highest unit (or DATA_FIN) this endpoint has sent
    snd_una   the peer's cumulative DATA_ACK (only ever moves forward, never past snd_nxt)
    rcv_nxt   units received in order from the peer
    rcv_high  one past the highest unit received at all (rcv_high > rcv_nxt: a hole)
    delivered units the application has read (a prefix of what arrived in order)
    peer_fin, peer_fin_dsn, peer_fin_acked   the peer's DATA_FIN and whether we acked it

Reassembly is abstract: a segment that starts at or below rcv_nxt either only extends
rcv_nxt, or (deliberate choice "reassembly") also completes everything buffered up to
rcv_high. That is exact with one hole and loose (may over-estimate) with several.
"""

from __future__ import annotations

from collections.abc import Callable

from spec.core import Rule, SystemView
from spec.helpers import (
    CONNECTION_STATES,
    DATA_FIN_QUEUED,
    MAY_SEND_DATA,
    SF_FIN_SENT,
    SF_RECV_DATA_OR_JOINING,
    SYNCED,
    flag,
    live_count,
    may_fall_back,
    rule,
    set_flag,
)
from spec.logic import And, If, Implies, Max, Not, Or, Value


def _end(view: SystemView) -> Value:
    return view.p.dsn + view.p.bytes


def _no_new_data_after_subflow_fin(view: SystemView) -> Value:
    """After this subflow's FIN only what was already sent at the data level goes out
    on it again (RFC 9293: a FIN is the last thing in the subflow's sequence space)."""
    return Implies(view.sf.in_(*SF_FIN_SENT), _end(view) <= view.conn.snd_nxt)


def _close_agrees_with_fallback(view: SystemView) -> Value:
    """Falling back on a subflow already in its FIN exchange (3.7: from then on its TCP
    close is the connection's) only where the TCP close so far agrees with the data
    level: our FIN out only with our DATA_FIN, acknowledged only with it, and the peer's
    FIN in only with its DATA_FIN."""
    conn, sf = view.conn, view.sf
    return And(
        sf.in_("FIN_WAIT_1", "FIN_WAIT_2", "CLOSING", "TIME_WAIT", "CLOSE_WAIT", "LAST_ACK"),
        Implies(sf.in_("FIN_WAIT_1", "FIN_WAIT_2", "CLOSING", "TIME_WAIT", "LAST_ACK"),
                conn.fin_sent),
        Implies(sf.in_("FIN_WAIT_2", "TIME_WAIT"), conn.snd_una == conn.written + 1),
        Implies(sf.in_("CLOSE_WAIT", "LAST_ACK", "CLOSING", "TIME_WAIT"), conn.peer_fin))


def _within_peer_fin(view: SystemView) -> Value:
    """No data at or beyond the peer's DATA_FIN (3.3.3)."""
    conn = view.conn
    return Or(Not(conn.peer_fin), _end(view) <= conn.peer_fin_dsn)


def _confirm(view: SystemView) -> dict[str, Value]:
    """A DSS (or ADD_ADDR) from the peer proves it holds our key (3.1); ignored after
    fallback."""
    conn = view.conn
    return {"confirmed": Or(conn.confirmed, Not(conn.fallback))}


def _in_order(view: SystemView) -> dict[str, Value]:
    conn, end = view.conn, _end(view)
    return {"rcv_nxt": Max(conn.rcv_nxt, end), "rcv_high": Max(conn.rcv_high, end)}


def _fills_hole(view: SystemView) -> dict[str, Value]:
    conn, end = view.conn, _end(view)
    return {"rcv_nxt": Max(conn.rcv_high, end), "rcv_high": Max(conn.rcv_high, end)}


def _out_of_order(view: SystemView) -> dict[str, Value]:
    return {"rcv_high": Max(view.conn.rcv_high, _end(view))}


def _receive_rules(label: str, rfc: str, what: str, extra: Callable[[SystemView], Value],
                   confirms: bool) -> list[Rule]:
    """Three rules per payload label: in order, in order and completing reassembly (a
    deliberate choice), and out of order."""
    def base(v: SystemView) -> Value:
        return And(v.sf.in_(*SF_RECV_DATA_OR_JOINING), v.p.bytes >= 1, _within_peer_fin(v),
                   extra(v))

    def with_confirm(effect: Callable[[SystemView], dict]) -> Callable[[SystemView], dict]:
        if not confirms:
            return effect
        return lambda v: {**effect(v), **_confirm(v)}

    return [
        rule(f"conn_{label}_in_order", SYNCED, label, None,
             lambda v: And(base(v), v.p.dsn <= v.conn.rcv_nxt), with_confirm(_in_order),
             rfc=rfc, choice="reassembly", when="dsn <= rcv_nxt",
             doc=f"{what} continues the in-order data."),
        rule(f"conn_{label}_fills_hole", SYNCED, label, None,
             lambda v: And(base(v), v.p.dsn <= v.conn.rcv_nxt, v.conn.rcv_nxt < v.conn.rcv_high,
                           _end(v) > v.conn.rcv_nxt),
             with_confirm(_fills_hole), rfc=rfc, choice="reassembly",
             when="fills the hole before rcv_high",
             doc=f"{what} fills the hole in front of buffered out-of-order data."),
        rule(f"conn_{label}_out_of_order", SYNCED, label, None,
             lambda v: And(base(v), v.p.dsn > v.conn.rcv_nxt), with_confirm(_out_of_order),
             rfc=rfc, when="dsn > rcv_nxt",
             doc=f"{what} arrives ahead of a hole (e.g. on a faster subflow) and is buffered."),
    ]


def _fin_acked_by(view: SystemView) -> Value:
    """This DATA_ACK covers our DATA_FIN (Appendix D: rcv DATA_ACK[DFIN])."""
    conn = view.conn
    return And(Not(conn.fallback), conn.fin_sent, view.p.ack == conn.written + 1)


def _data_ack_effect(view: SystemView) -> dict[str, Value]:
    conn, ack = view.conn, view.p.ack
    valid = And(Not(conn.fallback), ack > conn.snd_una, ack <= conn.snd_nxt)
    return {"snd_una": If(valid, ack, conn.snd_una), **_confirm(view)}


def _ack_ok(view: SystemView) -> Value:
    """We acknowledge only what arrived in order, or the peer's DATA_FIN right after it."""
    conn, ack = view.conn, view.p.ack
    return Or(ack <= conn.rcv_nxt,
              And(conn.peer_fin, conn.rcv_nxt >= conn.peer_fin_dsn,
                  ack == conn.peer_fin_dsn + 1))


def _data_fin_ok(view: SystemView) -> Value:
    """The peer's DATA_FIN lies after all data seen, and never moves once known."""
    conn, dsn = view.conn, view.p.dsn
    return And(Not(conn.fallback), conn.rcv_high <= dsn,
               Or(Not(conn.peer_fin), dsn == conn.peer_fin_dsn))


def _peer_fin(view: SystemView) -> dict[str, Value]:
    return {"peer_fin": True, "peer_fin_dsn": view.p.dsn, **_confirm(view)}


def data_rules() -> list[Rule]:
    sending = [
        rule("conn_send_data", MAY_SEND_DATA, "send_data", None,
             lambda v: And(Not(v.conn.fallback), v.conn.peer_key, Not(v.conn.fail_rcvd),
                           v.p.bytes >= 1, _end(v) <= v.conn.written,
                           _no_new_data_after_subflow_fin(v)),
             lambda v: {"snd_nxt": Max(v.conn.snd_nxt, _end(v))}, rfc="3.3.1",
             when="written data, no fallback",
             doc="Data the app wrote goes out with a DSS mapping, on any subflow, new or "
                 "retransmitted (reinjected) elsewhere."),
        rule("conn_send_data_plain", MAY_SEND_DATA, "send_data_plain", None,
             lambda v: And(v.p.bytes >= 1, _end(v) <= v.conn.written,
                           _no_new_data_after_subflow_fin(v)),
             lambda v: {"snd_nxt": Max(v.conn.snd_nxt, _end(v))}, rfc="3.3.1",
             when="written data",
             doc="Data without a mapping on this segment: covered by an earlier mapping, "
                 "the infinite mapping, or plain TCP after fallback."),
        rule("conn_resend_data_after_data_fin_acked", ("FIN_WAIT_2", "TIME_WAIT"), "send_data",
             None, lambda v: And(Not(v.conn.fallback), v.p.bytes >= 1,
                                 _end(v) <= v.conn.written),
             rfc="3.3.6", when="data already sent",
             doc="A subflow's TCP still retransmits a segment whose data the peer has "
                 "DATA_ACKed (with its DATA_FIN): the subflow must deliver its own sequence "
                 "space, and the receiver drops the duplicate (found by the lockstep test "
                 "once the data-level retransmission timer reinjected a chunk)."),
        rule("conn_resend_data_plain_after_data_fin_acked", ("FIN_WAIT_2", "TIME_WAIT"),
             "send_data_plain", None,
             lambda v: And(v.p.bytes >= 1, _end(v) <= v.conn.written), rfc="3.3.6",
             when="data already sent",
             doc="The same retransmission on a segment that carries no mapping."),
        rule("conn_send_data_ack", SYNCED, "send_data_ack", None,
             lambda v: And(Not(v.conn.fallback), v.conn.peer_key, _ack_ok(v)),
             lambda v: {"peer_fin_acked": Or(
                 v.conn.peer_fin_acked,
                 And(v.conn.peer_fin, v.p.ack == v.conn.peer_fin_dsn + 1))},
             rfc="3.3.2", when="ack <= rcv_nxt (+DATA_FIN)",
             doc="A DATA_ACK for data received in order (and for the peer's DATA_FIN)."),
        rule("conn_send_data_fin", DATA_FIN_QUEUED, "send_data_fin", None,
             lambda v: And(Not(v.conn.fallback), v.p.dsn == v.conn.written),
             lambda v: {"fin_sent": True, "snd_nxt": v.conn.written + 1}, rfc="3.3.3",
             when="dsn = written",
             doc="The DATA_FIN, one unit after the last written data (Appendix D: snd "
                 "DATA_FIN); retransmitted until acknowledged."),
        rule("conn_send_data_fin_after_ack", ("FIN_WAIT_2", "TIME_WAIT"), "send_data_fin",
             None, lambda v: And(Not(v.conn.fallback), v.conn.fin_sent,
                                 v.p.dsn == v.conn.written),
             rfc="3.3.3", when="same dsn, already acked",
             doc="The DATA_FIN is sent again after its DATA_ACK arrived: harmless, the peer "
                 "takes it as a repeat (conn_data_fin_repeated). Linux does it when a "
                 "subflow ACK is built before the connection level has processed the "
                 "DATA_ACK (LINUX_DEVIATIONS.md: not a deviation)."),
        rule("conn_send_infinite_mapping", SYNCED, "send_infinite_mapping", None,
             lambda v: And(Not(v.conn.fallback), v.conn.fail_rcvd, live_count(v) == 1,
                           v.sf.in_("ESTABLISHED")),
             lambda v: {"fallback": True}, rfc="3.7", when="MP_FAIL received, one subflow",
             doc="Answering MP_FAIL on the only subflow: the infinite mapping, then plain TCP."),
        rule("conn_send_infinite_mapping_while_closing", SYNCED, "send_infinite_mapping",
             None,
             lambda v: And(Not(v.conn.fallback), v.conn.fail_rcvd, live_count(v) == 1,
                           _close_agrees_with_fallback(v)),
             lambda v: {"fallback": True}, rfc="3.7",
             when="MP_FAIL received, one subflow, closing",
             doc="The MP_FAIL meets the close: the infinite mapping goes out on the only "
                 "subflow already in its FIN exchange (3.7 ties it to no subflow state), "
                 "where that exchange agrees with the DATA_FINs."),
    ]
    receiving = (
        _receive_rules("recv_data", "3.3.1", "A mapped payload", lambda v: True, True)
        + _receive_rules("recv_data_plain", "3.3.1", "A payload without mapping",
                         lambda v: Not(may_fall_back(v)), False)
        + [
            rule("conn_first_data_without_dss", SYNCED, "recv_data_plain", None,
                 lambda v: And(may_fall_back(v), v.p.bytes >= 1,
                               v.p.dsn <= v.conn.rcv_nxt),
                 lambda v: {**_in_order(v), "fallback": True}, rfc="3.7",
                 when="slot 0 established, no DSS seen yet",
                 doc="The first data from the listener has no DSS: MPTCP options do not get "
                     "through, so the initiator falls back to TCP."),
            rule("conn_recv_data_ack", SYNCED, "recv_data_ack", None,
                 lambda v: Not(And(v.conn.in_(*DATA_FIN_QUEUED), _fin_acked_by(v))),
                 _data_ack_effect, rfc="3.3.2", when="not acking our DATA_FIN",
                 doc="A DATA_ACK frees sent data; out-of-window values are ignored."),
            rule("conn_data_fin_acked", "FIN_WAIT_1", "recv_data_ack", "FIN_WAIT_2",
                 _fin_acked_by, _data_ack_effect, rfc="App. D", when="acks DATA_FIN",
                 doc="Our DATA_FIN is acknowledged (App. D: M_FIN_WAIT_1 -> M_FIN_WAIT_2)."),
            rule("conn_data_fin_acked_closing", "CLOSING", "recv_data_ack", "TIME_WAIT",
                 _fin_acked_by, _data_ack_effect, rfc="App. D", when="acks DATA_FIN",
                 doc="Our DATA_FIN is acknowledged after both sides closed."),
            rule("conn_data_fin_acked_last_ack", "LAST_ACK", "recv_data_ack", "TIME_WAIT",
                 _fin_acked_by, _data_ack_effect, rfc="App. D", when="acks DATA_FIN",
                 doc="Our DATA_FIN is acknowledged. App. D deletes the connection here and "
                     "closes every subflow; this spec waits in TIME_WAIT (which App. D "
                     "leaves when all subflows are CLOSED) so that CLOSED means no subflow "
                     "is left."),
            rule("conn_data_fin_received", "ESTABLISHED", "recv_data_fin", "CLOSE_WAIT",
                 _data_fin_ok, _peer_fin, rfc="App. D", when="after all data seen",
                 doc="The peer's DATA_FIN (App. D: M_ESTABLISHED -> M_CLOSE_WAIT)."),
            rule("conn_data_fin_received_fin_wait_1", "FIN_WAIT_1", "recv_data_fin", "CLOSING",
                 _data_fin_ok, _peer_fin, rfc="App. D", when="after all data seen",
                 doc="Both sides sent DATA_FIN; ours is not acknowledged yet."),
            rule("conn_data_fin_received_fin_wait_2", "FIN_WAIT_2", "recv_data_fin",
                 "TIME_WAIT", _data_fin_ok, _peer_fin, rfc="App. D",
                 when="after all data seen", doc="The peer's DATA_FIN after ours was acked."),
            rule("conn_data_fin_repeated", ("CLOSE_WAIT", "CLOSING", "LAST_ACK", "TIME_WAIT"),
                 "recv_data_fin", None, _data_fin_ok, _peer_fin, rfc="3.3.3",
                 when="same DSN", doc="A retransmitted DATA_FIN."),
            rule("conn_recv_infinite_mapping", SYNCED, "recv_infinite_mapping", None,
                 lambda v: And(Not(v.conn.fallback), live_count(v) == 1, v.sf.in_("ESTABLISHED")),
                 lambda v: {"fallback": True}, rfc="3.7", when="one subflow",
                 doc="The peer falls back (after our MP_FAIL, or on its own): plain TCP now."),
            rule("conn_recv_infinite_mapping_while_closing", SYNCED,
                 "recv_infinite_mapping", None,
                 lambda v: And(Not(v.conn.fallback), live_count(v) == 1,
                               _close_agrees_with_fallback(v)),
                 lambda v: {"fallback": True}, rfc="3.7", when="one subflow, closing",
                 doc="The peer falls back on the only subflow already in its FIN exchange "
                     "(after our MP_FAIL, the close under way), where that exchange agrees "
                     "with the DATA_FINs."),
            rule("conn_infinite_mapping_repeated", SYNCED, "recv_infinite_mapping", None,
                 lambda v: v.conn.fallback, rfc="3.7", when="fallback",
                 doc="A retransmitted segment repeats the infinite mapping."),
            rule("conn_recv_mp_fail", SYNCED, "recv_mp_fail", None,
                 lambda v: Not(v.conn.fallback), lambda v: {"fail_rcvd": True}, rfc="3.7",
                 doc="The peer saw a DSS checksum fail: we must answer with an infinite "
                     "mapping (one subflow) or the subflow is reset (several)."),
            rule("conn_recv_mp_fail_after_fallback", SYNCED, "recv_mp_fail", None,
                 lambda v: v.conn.fallback, rfc="3.7", when="fallback",
                 doc="After fallback the connection is plain TCP: an MP_FAIL that still "
                     "arrives is ignored (Linux parses no MPTCP option once fallen back). "
                     "Found by the conformance replay (a scripted peer's MP_FAIL after a "
                     "plain SYN)."),
        ]
    )
    return sending + receiving


def address_rules(address_ids: int) -> list[Rule]:
    """ADD_ADDR / REMOVE_ADDR bookkeeping (3.4), and local address events."""
    local = range(1, address_ids)  # ID 0 is the initial subflow's address
    remote = range(0, address_ids)
    return [
        rule("conn_address_added", CONNECTION_STATES, "path_address_added", None,
             lambda v: v.p.address_id >= 1,
             lambda v: set_flag(v, "local_up", v.p.address_id, local, True), rfc="3.4",
             when="ID >= 1", doc="A local address appears; the path manager may announce it "
                                 "or open subflows from it."),
        rule("conn_address_gone", CONNECTION_STATES, "path_address_removed", None,
             lambda v: v.p.address_id >= 1,
             lambda v: set_flag(v, "local_up", v.p.address_id, local, False), rfc="3.4.2",
             when="ID >= 1", doc="A local address goes away; REMOVE_ADDR should follow."),
        rule("conn_announce_address", SYNCED, "send_add_addr", None,
             lambda v: And(Not(v.p.echo), Not(v.conn.fallback), v.conn.peer_key,
                           flag(v, "local_up", v.p.address_id, local)),
             lambda v: set_flag(v, "local_announced", v.p.address_id, local, True),
             rfc="3.4.1", when="local address up",
             doc="ADD_ADDR announces a local address (retransmitted until echoed)."),
        rule("conn_echo_address", SYNCED, "send_add_addr", None,
             lambda v: And(v.p.echo, Not(v.conn.fallback),
                           flag(v, "remote_known", v.p.address_id, remote)),
             rfc="3.4.1", when="echo of a received ADD_ADDR",
             doc="ADD_ADDR with the E flag echoes the peer's announcement."),
        rule("conn_address_announced", SYNCED, "recv_add_addr", None,
             lambda v: And(Not(v.p.echo), v.p.hmac_ok, Not(v.conn.fallback)),
             lambda v: {**set_flag(v, "remote_known", v.p.address_id, remote, True),
                        **_confirm(v)},
             rfc="3.4.1", when="HMAC ok",
             doc="The peer announces an address we may join (Linux also takes it as the "
                 "proof that our key arrived)."),
        rule("conn_address_announcement_dropped", SYNCED, "recv_add_addr", None,
             lambda v: And(Not(v.p.echo), Not(v.p.hmac_ok)), rfc="3.4.1", when="HMAC bad",
             doc="An ADD_ADDR with a wrong HMAC is dropped (Linux: AddAddrDrop)."),
        rule("conn_address_echo_received", SYNCED, "recv_add_addr", None,
             lambda v: v.p.echo, rfc="3.4.1", when="echo",
             doc="The peer echoes our ADD_ADDR: no more retransmission."),
        rule("conn_add_addr_timeout", SYNCED, "timeout_add_addr", None,
             lambda v: Or(*(getattr(v.conn, f"local_announced_{i}") for i in local)),
             rfc="3.4.1", when="an announcement pending",
             doc="No echo yet: the ADD_ADDR may be sent again."),
        rule("conn_remove_address_sent", SYNCED, "send_remove_addr", None,
             lambda v: And(Not(v.conn.fallback), v.conn.peer_key),
             lambda v: set_flag(v, "local_announced", v.p.address_id, local, False),
             rfc="3.4.2", doc="REMOVE_ADDR: we withdraw an address; its subflows close."),
        rule("conn_address_removed_by_peer", SYNCED, "recv_remove_addr", None,
             lambda v: Not(v.conn.fallback),
             lambda v: set_flag(v, "remote_known", v.p.address_id, remote, False),
             rfc="3.4.2",
             doc="The peer withdraws an address: no new subflow to it; the subflows using "
                 "it are closed (RST or FIN on those subflows)."),
    ]

