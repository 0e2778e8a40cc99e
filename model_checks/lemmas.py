"""Strengthening lemmas: auxiliary facts about the spec that make its invariants inductive.

`data_acked_within_sent` and `closed_only_after_close` hold in every reachable state, but
not in every state of the domain: a counterexample to induction starts from a state no run
reaches (say, a DATA_FIN marked sent while the application may still write). Each lemma
below rules out one family of such states. They are not assumed: k-induction proves them
together with the named invariants (Houdini-style, `checks.prove_by_induction`), and any
lemma a mutant or a spec change breaks is simply dropped, after which the invariant that
needed it falls back to Spacer or BMC. So a lemma can cost a proof, never soundness.

Each lemma was found by reading the counterexample to induction of the open invariant
(`mptcp-ref check` reports which invariants are not inductive) and naming the fact about
Appendix D or section 3.7 that the counterexample's pre-state breaks.
"""

from __future__ import annotations

from spec.core import Config, Invariant, SystemSpec, SystemView
from spec.logic import And, Implies, Not, Or, Value

# Connection states after the application's close (RFC 8684 Appendix D, like RFC 9293).
_AFTER_OUR_CLOSE = ("FIN_WAIT_1", "FIN_WAIT_2", "CLOSING", "TIME_WAIT", "LAST_ACK",
                    "CLOSED", "ABORTING")
# Connection states reached only after the peer's DATA_FIN arrived (Appendix D).
_AFTER_PEER_CLOSE = ("CLOSE_WAIT", "CLOSING", "LAST_ACK", "TIME_WAIT")
# Subflow states a subflow enters only once it received its peer's FIN (RFC 9293 3.3.2).
_SUBFLOW_GOT_FIN = ("CLOSE_WAIT", "LAST_ACK", "CLOSING", "TIME_WAIT")
# Subflow states a subflow enters only once its own FIN was acknowledged.
_SUBFLOW_FIN_ACKED = ("FIN_WAIT_2", "TIME_WAIT")
_OPENING = ("LISTEN", "SYN_SENT", "SYN_RECEIVED")
_SUBFLOW_CLOSING = ("FIN_WAIT_1", "FIN_WAIT_2", "CLOSING", "TIME_WAIT", "CLOSE_WAIT",
                    "LAST_ACK")


def _joins(view: SystemView) -> list:
    """The MP_JOIN slots: every slot but 0, the initial subflow's (spec/subflow.py)."""
    return [subflow for slot, subflow in enumerate(view.subflows) if slot != 0]


def _data_fin_is_last_unit(view: SystemView) -> Value:
    conn = view.conn
    return Implies(conn.fin_sent, conn.snd_nxt == conn.written + 1)


def _sent_within_written(view: SystemView) -> Value:
    conn = view.conn
    return Implies(Not(conn.fin_sent), conn.snd_nxt <= conn.written)


def _data_fin_only_after_close(view: SystemView) -> Value:
    conn = view.conn
    return Implies(conn.fin_sent, conn.in_(*_AFTER_OUR_CLOSE))


def _passive_close_after_peer_fin(view: SystemView) -> Value:
    conn = view.conn
    return Implies(conn.in_(*_AFTER_PEER_CLOSE), conn.peer_fin)


def _our_data_fin_acked_in_fin_wait_2(view: SystemView) -> Value:
    conn = view.conn
    return Implies(conn.in_("FIN_WAIT_2", "TIME_WAIT"),
                   And(conn.fin_sent, conn.snd_una == conn.written + 1))


def _unopened_is_pristine(view: SystemView) -> Value:
    conn = view.conn
    return Implies(Not(conn.opened), And(
        conn.in_("CLOSED"), Not(conn.peer_key), Not(conn.confirmed), Not(conn.fallback),
        Not(conn.fail_rcvd), Not(conn.fastclosed), conn.written == 0, conn.snd_nxt == 0,
        conn.snd_una == 0, Not(conn.fin_sent), conn.rcv_nxt == 0, conn.rcv_high == 0,
        conn.delivered == 0, Not(conn.peer_fin), Not(conn.peer_fin_acked),
        *(subflow.in_("CLOSED") for subflow in view.subflows)))


def _listen_has_no_subflow(view: SystemView) -> Value:
    return Implies(view.conn.in_("LISTEN"),
                   And(*(subflow.in_("CLOSED") for subflow in view.subflows)))


def _no_join_while_opening(view: SystemView) -> Value:
    return Implies(view.conn.in_(*_OPENING),
                   And(*(subflow.in_("CLOSED") for subflow in _joins(view))))


def _no_data_while_opening(view: SystemView) -> Value:
    conn = view.conn
    return Implies(conn.in_(*_OPENING), And(
        Not(conn.peer_fin), conn.rcv_nxt == 0, conn.rcv_high == 0, conn.delivered == 0,
        conn.snd_nxt == 0, conn.snd_una == 0, Not(conn.fin_sent)))


def _fastclose_ends_connection(view: SystemView) -> Value:
    conn = view.conn
    return Implies(conn.fastclosed, conn.in_("ABORTING", "CLOSED"))


def _joins_need_both_keys(view: SystemView) -> Value:
    conn = view.conn
    return And(*(Implies(Not(subflow.in_("CLOSED")), And(conn.peer_key, conn.confirmed))
                 for subflow in _joins(view)))


def _no_join_after_fallback(view: SystemView) -> Value:
    return Implies(view.conn.fallback, And(*(
        Not(subflow.in_("SYN_SENT", "SYN_RECEIVED", "PRE_ESTABLISHED"))
        for subflow in _joins(view))))


def _peer_data_fin_confirms(view: SystemView) -> Value:
    conn = view.conn
    return Implies(conn.peer_fin, Or(conn.confirmed, conn.fallback))


def _no_subflow_closes_during_handshake(view: SystemView) -> Value:
    conn = view.conn
    return Implies(conn.in_(*_OPENING),
                   And(*(Not(subflow.in_(*_SUBFLOW_CLOSING)) for subflow in view.subflows)))


def _fallback_fin_is_data_fin(view: SystemView) -> Value:
    conn = view.conn
    return Implies(And(conn.fallback, Not(conn.in_("ABORTING"))), And(*(
        Implies(subflow.in_(*_SUBFLOW_GOT_FIN), conn.peer_fin) for subflow in view.subflows)))


def _fallback_fin_ack_is_data_ack(view: SystemView) -> Value:
    conn = view.conn
    return Implies(And(conn.fallback, Not(conn.in_("ABORTING"))), And(*(
        Implies(subflow.in_(*_SUBFLOW_FIN_ACKED),
                And(conn.fin_sent, conn.snd_una == conn.written + 1))
        for subflow in view.subflows)))


def strengthening_lemmas(config: Config | None = None) -> tuple[Invariant, ...]:
    """The auxiliary lemmas, as state invariants (proved, never assumed)."""
    del config  # the lemmas read the same variables whatever the sizes
    return (
        Invariant("lemma_data_fin_is_last_unit", "3.3.3",
                  "Once our DATA_FIN is sent it is the last unit sent: snd_nxt = written + 1.",
                  _data_fin_is_last_unit),
        Invariant("lemma_sent_within_written", "3.3.1",
                  "Before the DATA_FIN nothing beyond what the application wrote is sent.",
                  _sent_within_written),
        Invariant("lemma_data_fin_only_after_close", "App. D",
                  "A DATA_FIN is sent only after the application's close.",
                  _data_fin_only_after_close),
        Invariant("lemma_passive_close_after_peer_fin", "App. D",
                  "CLOSE_WAIT, CLOSING, LAST_ACK and TIME_WAIT come after the peer's DATA_FIN.",
                  _passive_close_after_peer_fin),
        Invariant("lemma_data_fin_acked_in_fin_wait_2", "App. D",
                  "FIN_WAIT_2 and TIME_WAIT come after our DATA_FIN was DATA_ACKed.",
                  _our_data_fin_acked_in_fin_wait_2),
        Invariant("lemma_unopened_is_pristine", "App. D",
                  "A connection never opened is CLOSED with no subflow, no key, no data.",
                  _unopened_is_pristine),
        Invariant("lemma_listen_has_no_subflow", "3.1",
                  "A listening connection has no subflow yet (the SYN moves it on).",
                  _listen_has_no_subflow),
        Invariant("lemma_no_join_while_opening", "3.2",
                  "No MP_JOIN subflow exists before the connection is established.",
                  _no_join_while_opening),
        Invariant("lemma_no_data_while_opening", "3.3",
                  "No data is sent, received or delivered before the connection is "
                  "established.", _no_data_while_opening),
        Invariant("lemma_fastclose_ends_connection", "3.5",
                  "After MP_FASTCLOSE the connection is ABORTING or CLOSED.",
                  _fastclose_ends_connection),
        Invariant("lemma_joins_need_both_keys", "3.2",
                  "An MP_JOIN subflow, even one still opening, exists only once both keys "
                  "are known.", _joins_need_both_keys),
        Invariant("lemma_no_join_after_fallback", "3.7",
                  "After fallback no MP_JOIN subflow is opening.", _no_join_after_fallback),
        Invariant("lemma_peer_data_fin_confirms", "3.3.3",
                  "The peer's DATA_FIN (a DSS) confirms our key unless we fell back.",
                  _peer_data_fin_confirms),
        Invariant("lemma_no_subflow_closes_during_handshake", "3.1",
                  "While the connection is still opening, no subflow is closing.",
                  _no_subflow_closes_during_handshake),
        Invariant("lemma_fallback_fin_is_data_fin", "3.7",
                  "After fallback, the only subflow has the peer's FIN only if the connection "
                  "has the peer's DATA_FIN.", _fallback_fin_is_data_fin),
        Invariant("lemma_fallback_fin_ack_is_data_ack", "3.7",
                  "After fallback, the only subflow's FIN is acknowledged only if our "
                  "DATA_FIN is.", _fallback_fin_ack_is_data_ack),
    )


def applicable_lemmas(system: SystemSpec) -> tuple[Invariant, ...]:
    """The lemmas that read only variables and states this system has (a toy spec in the
    tests, or a copy of the tables with fewer variables, gets fewer or none)."""
    view = SystemView(system, dict(system.initial_values()))
    usable = []
    for lemma in strengthening_lemmas(system.config):
        try:
            lemma.predicate(view)
        except (AttributeError, KeyError, ValueError):
            continue
        usable.append(lemma)
    return tuple(usable)
