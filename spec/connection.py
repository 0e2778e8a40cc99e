"""The connection lifecycle: the MPTCP-level state machine of RFC 8684 Appendix D, with
the MP_CAPABLE key exchange in front of it (3.1) and an abort state behind it (3.5).

States: CLOSED, LISTEN, SYN_SENT, SYN_RECEIVED (key exchange under way), ESTABLISHED,
the DATA_FIN states parallel to TCP's (FIN_WAIT_1, FIN_WAIT_2, CLOSING, TIME_WAIT,
CLOSE_WAIT, LAST_ACK; Appendix D's M_* states), and ABORTING (MP_FASTCLOSE sent or
received, or an abortive close before the keys are known: only RSTs and MP_FASTCLOSE may
be sent, and the connection is CLOSED once its last subflow is).

Rules of this table:
- `fallback` (3.7) is a flag, not a state: after fallback the connection keeps walking
  Appendix D, but the initial subflow's TCP FIN plays the DATA_FIN and no MPTCP option is
  sent; it is single-path for life.
- The connection takes part in every label that can close a subflow (RSTs, the last ACK of
  a FIN, TIME_WAIT and handshake timeouts), so that it becomes CLOSED in the same step as
  its last subflow, and only then (invariant `closed_connection_has_no_live_subflow`).
- History variables (`opened`, `peer_key`, `confirmed`, `fastclosed`, `fin_sent`,
  `peer_fin`, `peer_fin_acked`, ...) are written by rules for protocol reasons; the
  invariants only read them.
"""

from __future__ import annotations

from collections.abc import Callable

from spec.connection_data import address_rules, data_rules
from spec.core import Config, MachineSpec, Rule, SystemView, Variable
from spec.helpers import (
    APP_MAY_WRITE,
    CONNECTION_STATES,
    DATA_FIN_QUEUED,
    HANDSHAKE,
    SYNCED,
    SYNCED_OR_ABORTING,
    initiator,
    is_initial,
    live,
    live_count,
    may_fall_back,
    others_closed,
    rule,
    unconfirmed_initiator,
)
from spec.logic import And, Implies, Max, Not, Or, Value

CONNECTION_DOC = (
    "The MPTCP connection of this endpoint: key exchange, RFC 8684 Appendix D's data-level "
    "close, fallback, MP_FASTCLOSE and MP_FAIL, with data-level counters."
)


def _variables(config: Config) -> tuple[Variable, ...]:
    units = config.max_bytes
    ids = config.max_address_ids

    def flag(name: str, doc: str, initial: bool = False) -> Variable:
        return Variable(name, "bool", initial, doc=doc)

    def count(name: str, hi: int, doc: str) -> Variable:
        return Variable(name, "int", 0, 0, hi, doc=doc)

    return (
        flag("opened", "listen() or connect() was called (a connection is used once)"),
        flag("peer_key", "we know the peer's key (3.1)"),
        flag("confirmed", "the peer is known to have our key: third ACK received, or a "
                          "DSS/ADD_ADDR seen by the initiator (3.1)"),
        flag("fallback", "fell back to TCP: single path, no MPTCP option (3.7)"),
        flag("fail_rcvd", "MP_FAIL received: an infinite mapping is owed (3.7)"),
        flag("fastclosed", "MP_FASTCLOSE was sent or accepted (3.5)"),
        count("written", units, "units the application wrote"),
        count("snd_nxt", units + 1, "one past the highest unit sent (DATA_FIN counts one)"),
        count("snd_una", units + 1, "the peer's cumulative DATA_ACK"),
        flag("fin_sent", "our DATA_FIN (or, after fallback, TCP FIN) was sent"),
        count("rcv_nxt", units, "units received in order"),
        count("rcv_high", units, "one past the highest unit received"),
        count("delivered", units, "units the application read"),
        flag("peer_fin", "the peer's DATA_FIN (after fallback, TCP FIN) was received"),
        count("peer_fin_dsn", units, "where the peer's DATA_FIN sits"),
        flag("peer_fin_acked", "we sent a DATA_ACK covering the peer's DATA_FIN"),
        *(flag(f"local_up_{i}", f"local address ID {i} is available") for i in range(1, ids)),
        *(flag(f"local_announced_{i}", f"we announced address ID {i} (ADD_ADDR)")
          for i in range(1, ids)),
        *(flag(f"remote_known_{i}", f"the peer's address ID {i} may be joined",
               initial=(i == 0)) for i in range(ids)),
    )


def _app_rules() -> list[Rule]:
    """Application calls (RFC 6897's API; Appendix D's M_CLOSE)."""
    return [
        rule("conn_listen", "CLOSED", "app_listen", "LISTEN", lambda v: Not(v.conn.opened),
             lambda v: {"opened": True}, rfc="RFC 9293 3.10.1", when="unused",
             doc="Passive open."),
        rule("conn_connect", "CLOSED", "app_connect", "SYN_SENT", lambda v: Not(v.conn.opened),
             lambda v: {"opened": True}, rfc="3.1", when="unused",
             doc="Active open: the initial subflow's SYN + MP_CAPABLE follows."),
        rule("conn_accept", SYNCED, "app_accept", None, lambda v: Not(initiator(v)),
             rfc="RFC 6897 5.3", when="listener",
             doc="accept() hands the established connection to the application."),
        rule("conn_app_send", APP_MAY_WRITE, "app_send", None, lambda v: v.p.bytes >= 1,
             lambda v: {"written": v.conn.written + v.p.bytes}, rfc="3.3",
             doc="The application writes data."),
        rule("conn_app_recv", SYNCED, "app_recv", None,
             lambda v: And(v.p.bytes >= 1, v.conn.delivered + v.p.bytes <= v.conn.rcv_nxt),
             lambda v: {"delivered": v.conn.delivered + v.p.bytes}, rfc="3.3",
             when="received in order",
             doc="The application reads data received in order, each unit once."),
        rule("conn_app_recv_eof", SYNCED, "app_recv", None,
             lambda v: And(v.p.bytes == 0, v.conn.peer_fin,
                           v.conn.delivered == v.conn.peer_fin_dsn),
             rfc="3.3.3", when="all read, DATA_FIN in",
             doc="The application reads the end of the stream."),
        rule("conn_shutdown", "ESTABLISHED", "app_shutdown", "FIN_WAIT_1", rfc="App. D",
             doc="shutdown(SHUT_WR): Appendix D's M_CLOSE; the DATA_FIN is queued."),
        rule("conn_shutdown_close_wait", "CLOSE_WAIT", "app_shutdown", "LAST_ACK",
             rfc="App. D", doc="shutdown(SHUT_WR) after the peer's DATA_FIN."),
        rule("conn_shutdown_repeated",
             ("FIN_WAIT_1", "FIN_WAIT_2", "CLOSING", "TIME_WAIT", "LAST_ACK", "ABORTING",
              "CLOSED"), "app_shutdown", None, rfc="App. D",
             doc="shutdown(SHUT_WR) again, or once the connection is over: nothing changes."),
        rule("conn_close", "ESTABLISHED", "app_close", "FIN_WAIT_1", rfc="App. D",
             choice="close_with_unread_data",
             doc="close(): Appendix D's M_CLOSE; the DATA_FIN is queued."),
        rule("conn_close_close_wait", "CLOSE_WAIT", "app_close", "LAST_ACK", rfc="App. D",
             choice="close_with_unread_data", doc="close() after the peer's DATA_FIN."),
        rule("conn_close_unread_data", APP_MAY_WRITE, "app_close", "ABORTING",
             lambda v: v.conn.delivered < v.conn.rcv_nxt, rfc="3.5",
             choice="close_with_unread_data", when="unread data",
             doc="close() with unread data may abort instead, as TCP may (RFC 2525): Linux "
                 "sends MP_FASTCLOSE then."),
        rule("conn_close_after_shutdown",
             ("FIN_WAIT_1", "FIN_WAIT_2", "CLOSING", "TIME_WAIT", "LAST_ACK", "ABORTING",
              "CLOSED"), "app_close", None, rfc="App. D",
             doc="close() after shutdown, or once the connection is over: nothing changes."),
        rule("conn_close_listen", "LISTEN", "app_close", "CLOSED", rfc="RFC 9293 3.10.4",
             doc="Closing a listener."),
        rule("conn_close_handshake", HANDSHAKE, "app_close", "ABORTING", rfc="RFC 9293 3.10.4",
             doc="close() before the keys are exchanged: the subflow is dropped or reset."),
        rule("conn_abort", SYNCED + HANDSHAKE, "app_abort", "ABORTING", rfc="3.5",
             doc="Abortive close: MP_FASTCLOSE (or plain RSTs without keys or after fallback)."),
        rule("conn_abort_listen", "LISTEN", "app_abort", "CLOSED", rfc="RFC 9293 3.10.5",
             doc="Aborting a listener."),
        rule("conn_abort_repeated", ("CLOSED", "ABORTING"), "app_abort", None,
             rfc="RFC 9293 3.10.5", doc="Aborting what is already aborted or over."),
    ]


def _handshake_rules() -> list[Rule]:
    """The MP_CAPABLE key exchange on slot 0 and its fallbacks (3.1, 3.7)."""
    return [
        rule("conn_passive_open_mpc", "LISTEN", "recv_syn_mpc", "SYN_RECEIVED", is_initial,
             rfc="3.1", when="slot 0", doc="SYN + MP_CAPABLE: the key exchange starts."),
        rule("conn_syn_mpc_repeated", "SYN_RECEIVED", "recv_syn_mpc", None, is_initial,
             rfc="3.1", when="slot 0", doc="The SYN + MP_CAPABLE is retransmitted."),
        rule("conn_passive_open_plain", "LISTEN", "recv_syn", "SYN_RECEIVED", is_initial,
             lambda v: {"fallback": True}, rfc="3.7", when="slot 0",
             doc="A SYN without MP_CAPABLE: a plain TCP connection."),
        rule("conn_syn_without_mpc_received", "SYN_RECEIVED", "recv_syn", None, is_initial,
             lambda v: {"fallback": True}, rfc="3.7", when="slot 0",
             doc="The SYN is retransmitted without MP_CAPABLE: fall back to TCP."),
        rule("conn_listener_declines_mptcp", "SYN_RECEIVED", "send_synack", None, is_initial,
             lambda v: {"fallback": True}, rfc="3.7", when="slot 0",
             doc="The listener answers without MP_CAPABLE: plain TCP."),
        rule("conn_syn_without_mpc_sent", "SYN_SENT", "send_syn", None, is_initial,
             lambda v: {"fallback": True}, rfc="3.7", when="slot 0",
             doc="The initiator sends (or retransmits) its SYN without MP_CAPABLE."),
        rule("conn_synack_mpc", "SYN_SENT", "recv_synack_mpc", "ESTABLISHED",
             lambda v: And(is_initial(v), Not(v.conn.fallback)),
             lambda v: {"peer_key": True}, rfc="3.1", when="slot 0",
             doc="The listener's key arrives (App. D: M_ESTABLISHED for the initiator)."),
        rule("conn_synack_mpc_after_plain_syn", "SYN_SENT", "recv_synack_mpc", "ESTABLISHED",
             lambda v: And(is_initial(v), v.conn.fallback), rfc="3.7",
             when="slot 0, fallen back",
             doc="An MP_CAPABLE SYN/ACK after we retried without MP_CAPABLE: stay plain TCP."),
        rule("conn_synack_plain", "SYN_SENT", "recv_synack", "ESTABLISHED", is_initial,
             lambda v: {"fallback": True}, rfc="3.7", when="slot 0",
             doc="The SYN/ACK lacks MP_CAPABLE: fall back to TCP."),
        rule("conn_synack_repeated", SYNCED, "recv_synack_mpc", None, is_initial,
             rfc="3.1", when="slot 0", doc="A retransmitted SYN/ACK."),
        rule("conn_synack_plain_ignored", SYNCED, "recv_synack", None, rfc="3.7",
             doc="A plain SYN/ACK: a retransmission on slot 0, or a join's SYN/ACK that "
                 "lost MP_JOIN (that subflow is reset)."),
        rule("conn_third_ack_mpc", "SYN_RECEIVED", "recv_ack_mpc", "ESTABLISHED",
             lambda v: And(is_initial(v), Not(v.conn.fallback)),
             lambda v: {"peer_key": True, "confirmed": True, **_mpc_data(v)}, rfc="3.1",
             when="slot 0",
             doc="The third ACK brings both keys, maybe with the first data at DSN 0."),
        rule("conn_ack_mpc_repeated", SYNCED, "recv_ack_mpc", None,
             lambda v: And(is_initial(v), Not(v.conn.fallback), _mpc_data_ok(v)), _mpc_data,
             rfc="3.1", choice="reassembly", when="slot 0",
             doc="MP_CAPABLE repeated on the first data until the initiator sees a DSS."),
        rule("conn_ack_mpc_fills_hole", SYNCED, "recv_ack_mpc", None,
             lambda v: And(is_initial(v), Not(v.conn.fallback), _mpc_data_ok(v),
                           v.p.bytes > v.conn.rcv_nxt, v.conn.rcv_nxt < v.conn.rcv_high),
             _mpc_data_fills_hole, rfc="3.3.1", choice="reassembly",
             when="slot 0, fills the hole before rcv_high",
             doc="MP_CAPABLE data (at DSN 0, 3.1) that arrives after later data (a DSS "
                 "mapping) fills the hole in front of it: everything buffered up to "
                 "rcv_high is now in order, as for any payload (3.3.1's reassembly)."),
        rule("conn_third_ack_mpc_sent", SYNCED, "send_ack_mpc", None,
             lambda v: v.p.bytes <= v.conn.written,
             lambda v: {"snd_nxt": Max(v.conn.snd_nxt, v.p.bytes)}, rfc="3.1",
             when="bytes <= written",
             doc="Our third ACK, repeated (with the first data, at DSN 0) until a DSS "
                 "confirms that the listener has both keys."),
        rule("conn_third_ack_plain", "SYN_RECEIVED", "recv_ack", "ESTABLISHED", is_initial,
             lambda v: {"fallback": True}, rfc="3.7", when="slot 0",
             doc="The third ACK lacks MP_CAPABLE: the listener falls back to TCP."),
        rule("conn_third_ack_plain_with_fin", "SYN_RECEIVED", "recv_fin", "CLOSE_WAIT",
             is_initial, lambda v: {"fallback": True, "peer_fin": True, "peer_fin_dsn": 0},
             rfc="3.7", when="slot 0",
             doc="The initiator's FIN, without MPTCP options, is the first segment after "
                 "our SYN/ACK (it fell back, or the options were stripped): fall back to "
                 "TCP; the FIN is the end of its stream (no data before it)."),
        rule("conn_third_ack_plain_with_data", "SYN_RECEIVED", "recv_data_plain",
             "ESTABLISHED", lambda v: And(is_initial(v), v.p.dsn == 0, v.p.bytes >= 1),
             lambda v: {"fallback": True, "rcv_nxt": v.p.bytes, "rcv_high": v.p.bytes},
             rfc="3.7", when="slot 0",
             doc="The first data arrives without MPTCP options: fall back to TCP."),
        rule("conn_plain_ack_before_dss_fallback", SYNCED, "recv_ack", None,
             may_fall_back, lambda v: {"fallback": True}, rfc="3.7",
             choice="plain_ack_before_dss", when="slot 0 established, no DSS seen yet",
             doc="A segment without any MPTCP option before the first DSS: fall back "
                 "(Linux does; RFC 8684 3.7 requires it for data)."),
        rule("conn_plain_ack_before_dss_ignored", SYNCED, "recv_ack", None,
             lambda v: And(is_initial(v), unconfirmed_initiator(v)), rfc="3.1",
             choice="plain_ack_before_dss", when="slot 0, no DSS seen yet",
             doc="...or keep waiting for a DSS: a bare ACK carries no data to judge by."),
        rule("conn_syn_challenge_ack_mpc", SYNCED, "recv_syn_mpc", None,
             rfc="RFC 5961 4.2",
             doc="A SYN + MP_CAPABLE on a synchronized subflow gets a challenge ACK and is "
                 "dropped: the connection does not change."),
        rule("conn_syn_challenge_ack_plain", SYNCED, "recv_syn", None,
             rfc="RFC 5961 4.2",
             doc="A SYN without MP_CAPABLE on a synchronized subflow gets a challenge ACK "
                 "and is dropped: no fallback, nothing changes."),
        rule("conn_ack", SYNCED, "recv_ack", None,
             lambda v: Not(And(is_initial(v), unconfirmed_initiator(v))),
             rfc="RFC 9293 3.10.7.4", doc="A bare ACK."),
    ]


def _mpc_data_ok(view: SystemView) -> Value:
    conn = view.conn
    return Or(Not(conn.peer_fin), view.p.bytes <= conn.peer_fin_dsn)


def _mpc_data(view: SystemView) -> dict[str, Value]:
    """MP_CAPABLE with data maps it at DSN 0 (3.1)."""
    conn = view.conn
    return {"rcv_nxt": Max(conn.rcv_nxt, view.p.bytes),
            "rcv_high": Max(conn.rcv_high, view.p.bytes)}


def _mpc_data_fills_hole(view: SystemView) -> dict[str, Value]:
    """...and completes the reassembly of what was buffered behind it."""
    conn = view.conn
    high = Max(conn.rcv_high, view.p.bytes)
    return {"rcv_nxt": high, "rcv_high": high}


# -- subflow closings seen by the connection ------------------------------------------------

_CLOSING_LABELS: dict[str, tuple[str, str, Callable[[SystemView], Value], bool]] = {
    # label: (rule name stem, rfc, "this step closes the addressed subflow", graceful)
    "send_rst": ("conn_rst_sent", "3.6", lambda v: live(v.sf), False),
    "recv_rst": ("conn_rst_received", "3.6", lambda v: live(v.sf), False),
    "timeout_connect": ("conn_connect_timeout", "RFC 9293 3.10.8", lambda v: True, False),
    "timeout_time_wait": ("conn_time_wait_expired", "App. D", lambda v: True, True),
    "recv_ack_of_fin": ("conn_subflow_fin_acked", "App. D",
                        lambda v: v.sf.in_("LAST_ACK"), True),
}


def _closing_rules() -> list[Rule]:
    """When the last live subflow closes, the connection is CLOSED if it was done (TIME_WAIT:
    both DATA_FINs exchanged and ours acknowledged, Appendix D's 'all subflows CLOSED'),
    aborting, still in its handshake, or fallen back (TCP's close is the connection's)."""
    rules: list[Rule] = []
    for label, (stem, rfc, closes, graceful) in _CLOSING_LABELS.items():
        def ends(v: SystemView, closes=closes, graceful=graceful, label=label) -> Value:
            done = v.conn.in_("TIME_WAIT")
            if graceful:  # both DATA_FINs acknowledged, the peer's by us too
                done = And(done, v.conn.peer_fin_acked)
            return And(
                closes(v), others_closed(v),
                Or(done, v.conn.in_("ABORTING", *HANDSHAKE), v.conn.fallback),
                Not(And(label == "recv_ack_of_fin", v.conn.fallback)),
            )

        def stays(v: SystemView, ends=ends, label=label) -> Value:
            return And(Not(ends(v)), Implies(label == "recv_ack_of_fin", Not(v.conn.fallback)))

        rules.append(rule(
            f"{stem}_closes_connection", HANDSHAKE + SYNCED_OR_ABORTING, label, "CLOSED", ends,
            rfc=rfc, when="last subflow, connection done",
            doc=f"{label} closes the last subflow of a connection that is done, aborting, "
                "in its handshake or fallen back: the connection is CLOSED."))
        rules.append(rule(
            stem, CONNECTION_STATES, label, None, stays, rfc=rfc,
            when="other subflows left, or not done",
            doc=f"{label} on one subflow; the connection lives on (it may open new "
                "subflows, or time out)."))
    return rules


def _fallback_close_rules() -> list[Rule]:
    """After fallback the initial subflow's TCP FIN is the DATA_FIN (3.7)."""
    def fb(v: SystemView) -> Value:
        return v.conn.fallback

    def fin_in(v: SystemView) -> dict[str, Value]:
        return {"peer_fin": True, "peer_fin_dsn": v.conn.rcv_high}

    def fin_acked(v: SystemView) -> dict[str, Value]:
        return {"snd_una": v.conn.written + 1}

    return [
        rule("conn_subflow_fin_sent", SYNCED, "send_fin", None, lambda v: Not(fb(v)),
             rfc="3.3.3", when="no fallback",
             doc="A subflow FIN closes only that subflow, never the connection."),
        rule("conn_fallback_fin_sent", DATA_FIN_QUEUED + ("FIN_WAIT_2", "TIME_WAIT"), "send_fin",
             None,
             lambda v: And(fb(v), Or(v.conn.snd_nxt == v.conn.written, v.conn.fin_sent)),
             lambda v: {"fin_sent": True, "snd_nxt": v.conn.written + 1}, rfc="3.7",
             when="fallback, all data sent", doc="After fallback the TCP FIN is the DATA_FIN."),
        rule("conn_subflow_fin_received", SYNCED, "recv_fin", None, lambda v: Not(fb(v)),
             rfc="3.3.3", when="no fallback", doc="The peer closes one subflow."),
        rule("conn_fallback_fin_received", "ESTABLISHED", "recv_fin", "CLOSE_WAIT", fb, fin_in,
             rfc="3.7", when="fallback", doc="After fallback the peer's FIN is its DATA_FIN."),
        rule("conn_fallback_fin_received_fin_wait_1", "FIN_WAIT_1", "recv_fin", "CLOSING", fb,
             fin_in, rfc="3.7", when="fallback", doc="Both closed; ours not acked yet."),
        rule("conn_fallback_fin_received_fin_wait_2", "FIN_WAIT_2", "recv_fin", "TIME_WAIT",
             fb, fin_in, rfc="3.7", when="fallback", doc="The peer's FIN after ours was acked."),
        rule("conn_fallback_fin_repeated", ("CLOSE_WAIT", "CLOSING", "LAST_ACK", "TIME_WAIT"),
             "recv_fin", None, fb, rfc="3.7", when="fallback", doc="A retransmitted FIN."),
        rule("conn_fallback_fin_acked", "FIN_WAIT_1", "recv_ack_of_fin", "FIN_WAIT_2",
             lambda v: And(fb(v), v.conn.fin_sent, Not(v.sf.in_("LAST_ACK"))), fin_acked,
             rfc="3.7", when="fallback",
             doc="After fallback, the ACK of our FIN acknowledges the DATA_FIN."),
        rule("conn_fallback_closing_fin_acked", ("CLOSING", "LAST_ACK"), "recv_ack_of_fin",
             "TIME_WAIT", lambda v: And(fb(v), v.conn.fin_sent, Not(v.sf.in_("LAST_ACK"))),
             fin_acked, rfc="3.7", when="fallback, subflow not in LAST_ACK",
             doc="Our FIN is acknowledged after both sides closed; the subflow lingers in "
                 "TIME_WAIT."),
        rule("conn_fallback_last_ack_fin_acked", SYNCED, "recv_ack_of_fin", "CLOSED",
             lambda v: And(fb(v), v.conn.fin_sent, v.sf.in_("LAST_ACK"), others_closed(v)),
             fin_acked, rfc="3.7", when="fallback, subflow in LAST_ACK",
             doc="After fallback, the last ACK closes the only subflow and the connection."),
        rule("conn_fallback_fin_ack_repeated", ("FIN_WAIT_2", "TIME_WAIT"), "recv_ack_of_fin",
             None, lambda v: And(fb(v), Not(v.sf.in_("LAST_ACK"))), rfc="3.7",
             when="fallback, subflow not in LAST_ACK", doc="A duplicate ACK of our FIN."),
    ]


def _abort_rules() -> list[Rule]:
    """MP_FASTCLOSE (3.5), the close timer, and what ABORTING ignores."""
    ignored = (
        "recv_syn_mpc", "recv_syn", "recv_synack_mpc", "recv_synack", "recv_ack_mpc",
        "recv_ack", "recv_data", "recv_data_plain", "recv_data_ack", "recv_data_fin",
        "recv_infinite_mapping", "recv_fin", "recv_add_addr", "recv_remove_addr",
        "recv_mp_fail",
    )
    return [
        rule("conn_fastclose_sent", "ABORTING", "send_fastclose", None,
             lambda v: And(v.conn.peer_key, Not(v.conn.fallback)),
             lambda v: {"fastclosed": True}, rfc="3.5", when="keys known, no fallback",
             doc="MP_FASTCLOSE with the peer's key, on an ACK (RSTs on the other subflows "
                 "follow) or on a RST on every subflow (Linux)."),
        rule("conn_fastclose_received", SYNCED, "recv_fastclose", "ABORTING",
             lambda v: And(v.p.key_ok, Not(v.conn.fallback)), lambda v: {"fastclosed": True},
             rfc="3.5", when="our key",
             doc="The peer fast-closes: we reset every subflow; the connection is over."),
        rule("conn_fastclose_received_aborting", "ABORTING", "recv_fastclose", None,
             lambda v: v.p.key_ok, lambda v: {"fastclosed": True}, rfc="3.5",
             when="our key", doc="MP_FASTCLOSE while we are aborting too."),
        rule("conn_fastclose_received_half_open", "SYN_RECEIVED", "recv_fastclose",
             "ABORTING", lambda v: And(v.p.key_ok, Not(v.conn.fallback)),
             lambda v: {"fastclosed": True}, rfc="3.5", when="our key",
             doc="MP_FASTCLOSE with our key on the RST that ends the half-open initial "
                 "subflow: the initiator had our key from the SYN/ACK and counts the "
                 "connection established (its third ACK was lost). The RST that carries "
                 "it closes the subflow and the connection (a Linux request socket reads "
                 "only the RST and ends in the same CLOSED state)."),
        rule("conn_fastclose_bad_key", SYNCED_OR_ABORTING + ("SYN_RECEIVED",),
             "recv_fastclose", None, lambda v: Not(v.p.key_ok), rfc="3.5", when="wrong key",
             doc="MP_FASTCLOSE without our key is ignored."),
        rule("conn_close_timeout", ("FIN_WAIT_1", "FIN_WAIT_2", "CLOSING", "TIME_WAIT",
                                    "LAST_ACK"), "timeout_close", "ABORTING",
             lambda v: live_count(v) > 0, rfc="3.3.3", when="subflows left",
             doc="The close did not complete in time: the connection is reset (Linux: "
                 "net.mptcp.close_timeout, then MP_FASTCLOSE)."),
        rule("conn_timeout_without_subflows", SYNCED_OR_ABORTING, "timeout_close", "CLOSED",
             lambda v: live_count(v) == 0, rfc="3.3.3", when="no subflow left",
             doc="No subflow is left and none came back in time: the connection is gone."),
    ] + [
        rule(f"conn_aborting_ignores_{label.removeprefix('recv_')}", "ABORTING", label, None,
             rfc="3.5", doc="Segments still in flight are ignored while aborting.")
        for label in ignored
    ]


def build_connection(config: Config | None = None) -> MachineSpec:
    config = config if config is not None else Config()
    rules = (_app_rules() + _handshake_rules() + data_rules()
             + address_rules(config.max_address_ids) + _fallback_close_rules()
             + _closing_rules() + _abort_rules())
    return MachineSpec(
        name="connection",
        states=CONNECTION_STATES,
        initial="CLOSED",
        variables=_variables(config),
        rules=tuple(rules),
        doc=CONNECTION_DOC,
    )

