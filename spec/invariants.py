"""The named safety properties of the spec, each with the RFC section it comes from.

Kinds (see `spec.core.Invariant`): a "state" invariant is `predicate(view)` and must hold
in every reachable state; a "step" invariant is `predicate(pre, step, post)` and must hold
on every possible transition. Predicates are written with `spec.logic` only, so the model
checks can hand them Z3 terms. They only read variables; every history variable they
read (`fastclosed`, `fin_sent`, `peer_fin_acked`, ...) is written by rules of the tables
for a protocol reason.
"""

from __future__ import annotations

from spec.core import Config, Invariant, Step, SystemView
from spec.helpers import SF_CLOSED, SF_SYNCHRONIZED_OR_JOINING, live_count
from spec.labels import build_labels, mptcp_send_labels
from spec.logic import And, If, Implies, Not, Or, Value


def _keys_before_join(view: SystemView) -> Value:
    conn = view.conn
    return And(*(
        Implies(subflow.in_(*SF_SYNCHRONIZED_OR_JOINING), And(conn.peer_key, conn.confirmed))
        for slot, subflow in enumerate(view.subflows) if slot != 0
    ))


def _mptcp_established_has_keys(view: SystemView) -> Value:
    conn = view.conn
    return Implies(And(Not(conn.in_("CLOSED", "LISTEN", "SYN_SENT", "SYN_RECEIVED",
                                    "ABORTING")), Not(conn.fallback)), conn.peer_key)


def _fallback_single_subflow(view: SystemView) -> Value:
    conn = view.conn
    return Implies(conn.fallback, Or(And(conn.in_("CLOSED"), live_count(view) == 0),
                                     And(Not(conn.in_("CLOSED")), live_count(view) == 1)))


def _closed_has_no_live_subflow(view: SystemView) -> Value:
    return Implies(view.conn.in_("CLOSED"),
                   And(*(subflow.in_(SF_CLOSED) for subflow in view.subflows)))


def _acked_within_sent(view: SystemView) -> Value:
    conn = view.conn
    return And(conn.snd_una <= conn.snd_nxt,
               conn.snd_nxt <= conn.written + If(conn.fin_sent, 1, 0))


def _delivered_prefix(view: SystemView) -> Value:
    conn = view.conn
    return And(conn.delivered <= conn.rcv_nxt, conn.rcv_nxt <= conn.rcv_high,
               Implies(conn.peer_fin, conn.rcv_high <= conn.peer_fin_dsn))


def _within_limit(view: SystemView) -> Value:
    return live_count(view) <= view.config.subflow_limit


def _delivery_exactly_once(pre: SystemView, step: Step, post: SystemView) -> Value:
    moved = post.conn.delivered - pre.conn.delivered
    if step.label == "app_recv":
        return moved == step.params["bytes"]
    return moved == 0


def _sent_below_snd_nxt(pre: SystemView, step: Step, post: SystemView) -> Value:
    """`snd_nxt` is one past the highest unit sent: whatever a step sends lies below it
    afterwards (the MP_CAPABLE third ACK's data starts at DSN 0, RFC 8684 3.1)."""
    if step.label in ("send_data", "send_data_plain"):
        return post.conn.snd_nxt >= step.params["dsn"] + step.params["bytes"]
    if step.label == "send_ack_mpc":
        return post.conn.snd_nxt >= step.params["bytes"]
    if step.label == "send_data_fin":
        return post.conn.snd_nxt >= step.params["dsn"] + 1
    return True


def _data_ack_moves_snd_una(pre: SystemView, step: Step, post: SystemView) -> Value:
    """`snd_una` is the peer's cumulative DATA_ACK: one that acknowledges more of what
    was sent moves it there (3.3.2), unless the connection is being aborted (3.5)."""
    if step.label != "recv_data_ack":
        return True
    ack = step.params["ack"]
    return Implies(And(Not(pre.conn.fallback), Not(pre.conn.in_("ABORTING", "CLOSED")),
                       ack > pre.conn.snd_una, ack <= pre.conn.snd_nxt),
                   post.conn.snd_una == ack)


def _fallback_no_option(labels: frozenset[str]):
    def predicate(pre: SystemView, step: Step, post: SystemView) -> Value:
        if step.label in labels:
            return Not(pre.conn.fallback)
        if step.label == "send_rst":
            return Implies(pre.conn.fallback, step.params["reason"] < 0)
        return True
    return predicate


def _fastclose_only_rst(endpoint_labels: frozenset[str]):
    def predicate(pre: SystemView, step: Step, post: SystemView) -> Value:
        if step.label in endpoint_labels and step.label not in ("send_rst", "send_fastclose"):
            return Not(pre.conn.fastclosed)
        return True
    return predicate


def _closed_after_close(pre: SystemView, step: Step, post: SystemView) -> Value:
    conn = post.conn
    graceful = And(conn.fin_sent, conn.snd_una == conn.written + 1, conn.peer_fin,
                   Or(conn.peer_fin_acked, conn.fallback))
    abortive = step.label in ("send_rst", "recv_rst", "timeout_close", "timeout_connect")
    return Implies(
        And(Not(pre.conn.in_("CLOSED")), post.conn.in_("CLOSED")),
        Or(graceful, conn.fastclosed, abortive,
           pre.conn.in_("ABORTING", "LISTEN", "SYN_SENT", "SYN_RECEIVED")),
    )


def build_invariants(config: Config | None = None) -> tuple[Invariant, ...]:
    config = config if config is not None else Config()
    labels = build_labels(config)
    endpoint = frozenset(name for name, label in labels.items() if label.origin == "endpoint")
    return (
        Invariant("keys_before_join", "3.2",
                  "No joined subflow gets past its SYN/ACK before both keys are known "
                  "(ours confirmed at the peer, the peer's at us).", _keys_before_join),
        Invariant("mptcp_established_has_keys", "3.1",
                  "An established connection that did not fall back knows the peer's key.",
                  _mptcp_established_has_keys),
        Invariant("fallback_single_subflow", "3.7",
                  "After fallback the connection has exactly one subflow until it is CLOSED "
                  "(single-path for life).", _fallback_single_subflow),
        Invariant("fallback_sends_no_mptcp_option", "3.7",
                  "After fallback no MPTCP option is sent (no MP_TCPRST on RSTs either).",
                  _fallback_no_option(mptcp_send_labels(labels)), "step"),
        Invariant("closed_connection_has_no_live_subflow", "App. D",
                  "A CLOSED connection has no subflow left (App. D: M_CLOSED once all "
                  "subflows are CLOSED).", _closed_has_no_live_subflow),
        Invariant("data_acked_within_sent", "3.3.2",
                  "Data ACKed never exceeds data sent, which never exceeds data written "
                  "(plus the DATA_FIN).", _acked_within_sent),
        Invariant("delivered_prefix_of_received", "3.3.1",
                  "The application reads a prefix of what arrived in order, never beyond "
                  "the peer's DATA_FIN.", _delivered_prefix),
        Invariant("delivery_exactly_once", "3.3.1",
                  "Each unit reaches the application once, in order: only a read moves the "
                  "delivered count, and by what it read.", _delivery_exactly_once, "step"),
        Invariant("sent_below_snd_nxt", "3.3.1",
                  "Every unit sent (mapped, unmapped, on the MP_CAPABLE third ACK, or the "
                  "DATA_FIN) lies below snd_nxt afterwards: snd_nxt is what was sent.",
                  _sent_below_snd_nxt, "step"),
        Invariant("data_ack_moves_snd_una", "3.3.2",
                  "A DATA_ACK that acknowledges more of what was sent moves snd_una to it: "
                  "snd_una is the peer's cumulative DATA_ACK.", _data_ack_moves_snd_una,
                  "step"),
        Invariant("subflows_within_limit", "3.2",
                  "The number of live subflows never exceeds the path manager's limit.",
                  _within_limit),
        Invariant("fastclose_then_only_rst", "3.5",
                  "After MP_FASTCLOSE (sent or accepted) the endpoint sends nothing but RSTs "
                  "(and MP_FASTCLOSE again).", _fastclose_only_rst(endpoint), "step"),
        Invariant("closed_only_after_close", "App. D",
                  "The connection becomes CLOSED only after DATA_FIN was sent and "
                  "acknowledged in both directions, or by MP_FASTCLOSE, abort, reset or "
                  "timeout, or before it was ever established.", _closed_after_close, "step"),
    )

