"""Shared vocabulary of the two tables: state groups, and guard/effect helpers that read
the system through a `SystemView` (so they work on Python values and on Z3 terms).

Everything here is written with `spec.logic` only (DESIGN.md principle 2).
"""

from __future__ import annotations

from collections.abc import Mapping

from spec.core import Effect, Guard, MachineView, Rule, SystemView, always, unchanged
from spec.logic import And, Count, If, Not, Or, Value

# -- subflow states (RFC 9293 3.3.2, plus PRE_ESTABLISHED: RFC 8684 3.2's wait for the
#    fourth ACK of an MP_JOIN; TCP's LISTEN belongs to the connection here) --------------
SF_CLOSED = "CLOSED"
SUBFLOW_STATES = (
    "CLOSED", "SYN_SENT", "SYN_RECEIVED", "PRE_ESTABLISHED", "ESTABLISHED",
    "FIN_WAIT_1", "FIN_WAIT_2", "CLOSING", "TIME_WAIT", "CLOSE_WAIT", "LAST_ACK",
)
SF_LIVE = tuple(state for state in SUBFLOW_STATES if state != SF_CLOSED)
# Synchronized states (RFC 9293 3.10.7.4): segments carry ACKs, hence MPTCP options.
SF_SYNCHRONIZED = (
    "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", "CLOSING", "TIME_WAIT", "CLOSE_WAIT", "LAST_ACK",
)
SF_SEND_DATA = ("ESTABLISHED", "CLOSE_WAIT")  # TCP may still send payload
# Our FIN is sent, not yet acknowledged: TCP still retransmits the payload before it.
SF_FIN_SENT = ("FIN_WAIT_1", "CLOSING", "LAST_ACK")
SF_RECV_DATA = ("ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2")  # the peer may still send payload
# A joining subflow waiting for its fourth ACK becomes ESTABLISHED on the first segment
# from the peer, whose payload/options are then processed as in ESTABLISHED.
SF_RECV_DATA_OR_JOINING = SF_RECV_DATA + ("PRE_ESTABLISHED",)
SF_SYNCHRONIZED_OR_JOINING = SF_SYNCHRONIZED + ("PRE_ESTABLISHED",)

# -- connection states (RFC 8684 Appendix D, with the handshake and an abort state) -------
CONNECTION_STATES = (
    "CLOSED", "LISTEN", "SYN_SENT", "SYN_RECEIVED", "ESTABLISHED",
    "FIN_WAIT_1", "FIN_WAIT_2", "CLOSING", "TIME_WAIT", "CLOSE_WAIT", "LAST_ACK", "ABORTING",
)
HANDSHAKE = ("SYN_SENT", "SYN_RECEIVED")
# Both ends know the connection: Appendix D's states from M_ESTABLISHED on.
SYNCED = ("ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", "CLOSING", "TIME_WAIT", "CLOSE_WAIT",
          "LAST_ACK")
SYNCED_OR_ABORTING = SYNCED + ("ABORTING",)
# This endpoint may still put (new or retransmitted) data on the wire.
MAY_SEND_DATA = ("ESTABLISHED", "CLOSE_WAIT", "FIN_WAIT_1", "CLOSING", "LAST_ACK")
# The application may still write.
APP_MAY_WRITE = ("ESTABLISHED", "CLOSE_WAIT")
# Our DATA_FIN is queued (the app closed): Appendix D states after M_CLOSE.
DATA_FIN_QUEUED = ("FIN_WAIT_1", "CLOSING", "LAST_ACK")
# New subflows may be created while data may still flow either way: until our DATA_FIN is
# acknowledged the data written before close() may still need a path, and until the
# peer's DATA_FIN arrives its data may (RFC 8684 3.3.3 asks for subflows to be closed once
# a DATA_FIN is acknowledged, with TCP FINs, which close one direction; nothing forbids
# opening one before). Linux opens and accepts joins in ESTABLISHED only; the RFC leaves
# it open. Every synchronized state but TIME_WAIT, where both directions are done.
JOINABLE = ("ESTABLISHED", "CLOSE_WAIT", "FIN_WAIT_1", "FIN_WAIT_2", "CLOSING", "LAST_ACK")


def live(subflow: MachineView) -> Value:
    return Not(subflow.in_(SF_CLOSED))


def live_count(view: SystemView) -> Value:
    return Count(*(live(subflow) for subflow in view.subflows))


def others_closed(view: SystemView) -> Value:
    """Every subflow slot but the addressed one is CLOSED."""
    return And(*(subflow.in_(SF_CLOSED) for subflow in view.others()))


def is_initial(view: SystemView) -> bool:
    """The step is on slot 0, the initial subflow (a concrete fact of the step)."""
    return view.index == 0


def initiator(view: SystemView) -> Value:
    """This endpoint opened the connection (it sent the initial SYN)."""
    return view.subflows[0].active


def unconfirmed_initiator(view: SystemView) -> Value:
    """RFC 8684 3.1: the initiator has sent its third ACK but has not yet seen a DSS from
    the peer, so it does not know the peer has its key."""
    conn = view.conn
    return And(initiator(view), conn.peer_key, Not(conn.confirmed), Not(conn.fallback))


def may_fall_back(view: SystemView) -> Value:
    """RFC 8684 3.7: the unconfirmed initiator may fall back on a segment without MPTCP
    options, on its initial subflow while that is ESTABLISHED (not once it began closing:
    after fallback the subflow's close is the connection's)."""
    return And(is_initial(view), unconfirmed_initiator(view), view.sf.in_("ESTABLISHED"))


def data_fin_acked(view: SystemView) -> Value:
    """Our DATA_FIN (one unit after the last written unit) is acknowledged."""
    conn = view.conn
    return And(conn.fin_sent, conn.snd_una == conn.written + 1)


# -- per-address-ID flags: one boolean variable per ID, e.g. remote_known_0..2 ------------


def flag(view: SystemView, prefix: str, address_id: Value, ids: range) -> Value:
    """The flag `prefix_<address_id>` of the connection (False for IDs outside `ids`)."""
    return Or(*(And(address_id == i, getattr(view.conn, f"{prefix}_{i}")) for i in ids))


def set_flag(
    view: SystemView, prefix: str, address_id: Value, ids: range, new: Value
) -> Mapping[str, Value]:
    """Effect entries setting `prefix_<address_id>` to `new`, leaving the other IDs alone."""
    return {
        f"{prefix}_{i}": If(address_id == i, new, getattr(view.conn, f"{prefix}_{i}"))
        for i in ids
    }


def rule(
    name: str,
    source: str | tuple[str, ...],
    label: str,
    target: str | None = None,
    guard: Guard = always,
    effect: Effect = unchanged,
    *,
    rfc: str,
    doc: str,
    choice: str | None = None,
    when: str = "",
) -> Rule:
    """A table row, written in the order the tables read best: `when` is the short human
    text of the guard shown on diagrams."""
    sources = (source,) if isinstance(source, str) else tuple(source)
    return Rule(name, sources, label, target, guard, effect, rfc, doc, choice, when)
