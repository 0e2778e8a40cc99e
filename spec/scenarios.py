"""Textbook traces of one endpoint, each with a broken twin that the spec must reject.

Each `Scenario` is a trace the monitor accepts, plus a copy with one event out of order
or wrong, and the index of the event where the monitor must stop it. Tests walk them
through the monitor and the `transitions` machines; the implementation's tests and the
model checks may reuse them as known-good and known-bad examples.

Units are the spec's abstract data units (a real logger maps bytes onto them).
"""

from __future__ import annotations

from dataclasses import dataclass

from spec.events import (
    AddAddr,
    AddAddrTimerExpired,
    AddressAdded,
    AppAbort,
    AppAccept,
    AppClose,
    AppConnect,
    AppListen,
    AppRecv,
    AppSend,
    Dss,
    Event,
    MpCapable,
    MpFastclose,
    MpJoin,
    MpTcpRst,
    RemoveAddr,
    SegmentReceived,
    SegmentSent,
    TimeWaitExpired,
)

Sent, Received = SegmentSent, SegmentReceived


@dataclass(frozen=True)
class Scenario:
    name: str
    doc: str
    events: tuple[Event, ...]
    broken: tuple[Event, ...]  # the twin the spec rejects
    broken_at: int  # index of the first event the monitor must reject
    broken_doc: str


def _replace(events: tuple[Event, ...], index: int, *new: Event) -> tuple[Event, ...]:
    return events[:index] + new + events[index + 1:]


def _swap(events: tuple[Event, ...], index: int) -> tuple[Event, ...]:
    return events[:index] + (events[index + 1], events[index]) + events[index + 2:]


# -- the MP_CAPABLE handshake as initiator, with data in both directions (RFC 8684 3.1) ---
_OPEN_AS_INITIATOR: tuple[Event, ...] = (
    AppConnect(),
    Sent(0, "S", options=(MpCapable(0),)),
    Received(0, "SA", options=(MpCapable(1),)),
    Sent(0, "A", options=(MpCapable(2),)),
    AppSend(2),
    Sent(0, "A", payload=2, dsn=0, options=(MpCapable(2),)),  # first data repeats MPC
    Received(0, "A", options=(Dss(data_ack=2),)),  # the peer's DSS: keys confirmed
    Received(0, "A", payload=3, dsn=0, options=(Dss(data_ack=2, dsn=0, length=3),)),
    Sent(0, "A", options=(Dss(data_ack=3),)),
    AppRecv(3),
)

# We close first (App. D: FIN_WAIT_1, FIN_WAIT_2, TIME_WAIT), then the subflow closes.
ACTIVE_CLOSE = Scenario(
    "mp_capable_active_close",
    "MP_CAPABLE connection with data both ways; this endpoint sends DATA_FIN first.",
    _OPEN_AS_INITIATOR + (
        AppClose(),
        Sent(0, "A", options=(Dss(data_ack=3, dsn=2, length=1, data_fin=True),)),
        Received(0, "A", options=(Dss(data_ack=3),)),  # acks our DATA_FIN
        Received(0, "A", options=(Dss(data_ack=3, dsn=3, length=1, data_fin=True),)),
        Sent(0, "A", options=(Dss(data_ack=4),)),  # acks theirs
        Sent(0, "FA", options=(Dss(data_ack=4),)),
        Received(0, "FA", options=(Dss(data_ack=3),), acks_fin=True),
        Sent(0, "A", options=(Dss(data_ack=4),)),
        TimeWaitExpired(0),
    ),
    (),
    0,
    "",
)
ACTIVE_CLOSE = Scenario(
    ACTIVE_CLOSE.name, ACTIVE_CLOSE.doc, ACTIVE_CLOSE.events,
    _swap(ACTIVE_CLOSE.events, 10),  # DATA_FIN sent before the application closed
    10, "the DATA_FIN goes out before close() was called",
)

# -- the MP_CAPABLE handshake as listener; the peer closes first ---------------------------
_OPEN_AS_LISTENER: tuple[Event, ...] = (
    AppListen(),
    Received(0, "S", options=(MpCapable(0),)),
    Sent(0, "SA", options=(MpCapable(1),)),
    Received(0, "A", payload=2, dsn=0, options=(MpCapable(2),)),  # third ACK with data
    AppAccept(),
    Sent(0, "A", options=(Dss(data_ack=2),)),
    AppRecv(2),
)
_PASSIVE_CLOSE_EVENTS = _OPEN_AS_LISTENER + (
    Received(0, "A", options=(Dss(data_ack=0, dsn=2, length=1, data_fin=True),)),
    Sent(0, "A", options=(Dss(data_ack=3),)),
    AppRecv(0),  # end of stream
    AppSend(1),
    AppClose(),
    Sent(0, "A", payload=1, dsn=0,
         options=(Dss(data_ack=3, dsn=0, length=2, data_fin=True),)),  # data + DATA_FIN
    Received(0, "A", options=(Dss(data_ack=2),)),  # acks data and DATA_FIN
    Received(0, "FA", options=(Dss(data_ack=2),)),
    Sent(0, "FA", options=(Dss(data_ack=3),)),
    Received(0, "A", acks_fin=True),
)
PASSIVE_CLOSE = Scenario(
    "mp_capable_passive_close",
    "Listener side: the third ACK brings data; the peer sends DATA_FIN first.",
    _PASSIVE_CLOSE_EVENTS,
    _replace(_PASSIVE_CLOSE_EVENTS, 6, AppRecv(3)),
    6, "the application reads more than arrived",
)

# -- a second subflow joined, used and removed (RFC 8684 3.2, 3.4.2) ----------------------
_JOIN_EVENTS = _OPEN_AS_INITIATOR + (
    AddressAdded(1),
    Sent(0, "A", options=(AddAddr(1),)),  # announce it (3.4.1) ...
    AddAddrTimerExpired(),
    Sent(0, "A", options=(AddAddr(1),)),  # ... again, until echoed
    Received(0, "A", options=(AddAddr(1, echo=True),)),
    Sent(1, "S", options=(MpJoin(address_id=1),)),  # 15
    Received(1, "SA", options=(MpJoin(address_id=0, hmac_ok=True),)),
    Sent(1, "A", options=(MpJoin(),)),  # third ACK with HMAC-A
    Received(1, "A", options=(Dss(data_ack=2),)),  # 18: the fourth ACK
    AppSend(2),
    Sent(1, "A", payload=2, dsn=2, options=(Dss(data_ack=3, dsn=2, length=2),)),  # 20
    Received(0, "A", options=(Dss(data_ack=4),)),  # DATA_ACK on the other subflow
    Sent(0, "A", options=(RemoveAddr((1,)),)),
    Sent(1, "FA", options=(Dss(data_ack=3),)),
    Received(1, "FA", options=(Dss(data_ack=4),), acks_fin=True),
    Sent(1, "A", options=(Dss(data_ack=3),)),
    TimeWaitExpired(1),  # the connection lives on over subflow 0
)
JOIN = Scenario(
    "mp_join_used_and_removed",
    "A second subflow is joined from a new, announced local address, carries data, and is "
    "removed with REMOVE_ADDR and a FIN handshake.",
    _JOIN_EVENTS,
    _JOIN_EVENTS[:18] + _JOIN_EVENTS[19:21] + _JOIN_EVENTS[18:19] + _JOIN_EVENTS[21:],
    19, "data on the joining subflow before the fourth ACK",
)

# -- a join whose HMAC is wrong is reset (RFC 8684 3.2) ----------------------------------
_BAD_HMAC_EVENTS = _OPEN_AS_LISTENER + (
    Received(1, "S", options=(MpJoin(address_id=1),)),
    Sent(1, "SA", options=(MpJoin(address_id=0),)),
    Received(1, "A", options=(MpJoin(hmac_ok=False),)),  # HMAC-A is wrong
    Sent(1, "R", options=(MpTcpRst(1),)),  # reset, reason "MPTCP-specific error"
    Sent(0, "A", options=(Dss(data_ack=2),)),
)
BAD_HMAC = Scenario(
    "mp_join_bad_hmac",
    "A joining subflow's third ACK carries a wrong HMAC: the listener resets it and the "
    "connection carries on.",
    _BAD_HMAC_EVENTS,
    _replace(_BAD_HMAC_EVENTS, 10, Sent(1, "A", options=(Dss(data_ack=2),))),
    10, "the endpoint keeps using the subflow whose HMAC failed",
)

# -- fallback: the SYN/ACK lacks MP_CAPABLE (RFC 8684 3.7) -------------------------------
_FALLBACK_EVENTS: tuple[Event, ...] = (
    AppConnect(),
    Sent(0, "S", options=(MpCapable(0),)),
    Received(0, "SA"),  # no MP_CAPABLE: plain TCP from here on
    Sent(0, "A"),
    AppSend(1),
    Sent(0, "A", payload=1, dsn=0),
    Received(0, "A", payload=2, dsn=0),
    AppRecv(2),
    AppClose(),
    Sent(0, "FA"),  # the TCP FIN is the DATA_FIN
    Received(0, "FA", acks_fin=True),
    Sent(0, "A"),
    TimeWaitExpired(0),
)
FALLBACK = Scenario(
    "fallback_synack_without_mp_capable",
    "The SYN/ACK has no MP_CAPABLE: the connection is plain TCP for life.",
    _FALLBACK_EVENTS,
    _replace(_FALLBACK_EVENTS, 5, Sent(0, "A", payload=1, dsn=0,
                                       options=(Dss(dsn=0, length=1),))),
    5, "a DSS option is sent after fallback",
)

# -- MP_FASTCLOSE (RFC 8684 3.5), Linux style: on a RST on every subflow ------------------
_FASTCLOSE_EVENTS = _OPEN_AS_INITIATOR + (
    Sent(1, "S", options=(MpJoin(address_id=0),)),
    Received(1, "SA", options=(MpJoin(address_id=1),)),
    Sent(1, "A", options=(MpJoin(),)),
    Received(1, "A", options=(Dss(data_ack=2),)),
    AppAbort(),
    Sent(0, "R", options=(MpFastclose(), MpTcpRst(0))),
    Sent(1, "R", options=(MpFastclose(), MpTcpRst(0))),
)
FASTCLOSE = Scenario(
    "mp_fastclose",
    "The application aborts: MP_FASTCLOSE on a RST on each subflow, and nothing else.",
    _FASTCLOSE_EVENTS,
    _FASTCLOSE_EVENTS[:16] + (Sent(1, "A", options=(Dss(data_ack=3),)),)
    + _FASTCLOSE_EVENTS[16:],
    16, "an ACK with a DSS is sent after MP_FASTCLOSE",
)

# -- the peer fast-closes on an ACK (RFC 8684 3.5, the RFC's first form) ------------------
_FASTCLOSE_RECEIVED_EVENTS = _OPEN_AS_LISTENER + (
    Received(0, "A", options=(MpFastclose(key_ok=True),)),
    Sent(0, "R"),
)
FASTCLOSE_RECEIVED = Scenario(
    "mp_fastclose_received",
    "The peer sends MP_FASTCLOSE on an ACK; this endpoint answers with a RST.",
    _FASTCLOSE_RECEIVED_EVENTS,
    _replace(_FASTCLOSE_RECEIVED_EVENTS, 8, Sent(0, "A", payload=1, dsn=0,
                                                  options=(Dss(dsn=0, length=1),))),
    8, "data is sent after the peer's MP_FASTCLOSE",
)

# -- both DATA_FINs cross (App. D: FIN_WAIT_1 -> CLOSING -> TIME_WAIT) ---------------------
_SIMULTANEOUS_EVENTS = _OPEN_AS_INITIATOR + (
    AppClose(),
    Sent(0, "A", options=(Dss(data_ack=3, dsn=2, length=1, data_fin=True),)),
    Received(0, "A", options=(Dss(data_ack=2, dsn=3, length=1, data_fin=True),)),
    Sent(0, "A", options=(Dss(data_ack=4),)),
    Received(0, "A", options=(Dss(data_ack=3),)),
    Sent(0, "FA"),
    Received(0, "A", acks_fin=True),
    Received(0, "FA"),
    Sent(0, "A"),
    TimeWaitExpired(0),
)
SIMULTANEOUS_CLOSE = Scenario(
    "data_fin_simultaneous_close",
    "Both ends send DATA_FIN at once; then the subflow closes (TIME_WAIT on both levels).",
    _SIMULTANEOUS_EVENTS,
    _replace(_SIMULTANEOUS_EVENTS, 12, Sent(0, "A", options=(Dss(data_ack=5),))),
    12, "a DATA_ACK beyond the peer's DATA_FIN",
)

# -- plain TCP at the listener: the peer closes first (RFC 8684 3.7, RFC 9293) -------------
_PLAIN_LISTENER_EVENTS: tuple[Event, ...] = (
    AppListen(),
    Received(0, "S"),  # no MP_CAPABLE: a plain TCP client
    Sent(0, "SA"),
    Received(0, "A"),
    AppAccept(),
    Received(0, "A", payload=2, dsn=0),
    Received(0, "FA"),
    AppRecv(2),
    AppRecv(0),
    AppClose(),
    Sent(0, "FA"),
    Received(0, "A", acks_fin=True),
)
PLAIN_LISTENER = Scenario(
    "plain_tcp_listener_passive_close",
    "A client without MPTCP: the listener runs plain TCP and the client closes first.",
    _PLAIN_LISTENER_EVENTS,
    _replace(_PLAIN_LISTENER_EVENTS, 2, Sent(0, "SA", options=(MpCapable(1),))),
    2, "MP_CAPABLE answers a SYN that had none",
)

# -- the initiator retries its SYN without MP_CAPABLE (3.7, Linux's SYN fallback) ----------
_SYN_FALLBACK_EVENTS: tuple[Event, ...] = (
    AppConnect(),
    Sent(0, "S", options=(MpCapable(0),)),
    Sent(0, "S"),  # retransmitted without MP_CAPABLE
    Received(0, "SA", options=(MpCapable(1),)),  # answers the first SYN: ignored
    Sent(0, "A"),
    AppClose(),
    Sent(0, "FA"),
    Received(0, "A", acks_fin=True),
    Received(0, "A", acks_fin=True),
    Received(0, "FA"),
    Sent(0, "A"),
    TimeWaitExpired(0),
)
SYN_FALLBACK = Scenario(
    "fallback_on_syn_retransmission",
    "The SYN is retried without MP_CAPABLE; the connection is plain TCP and we close first.",
    _SYN_FALLBACK_EVENTS,
    _replace(_SYN_FALLBACK_EVENTS, 9, TimeWaitExpired(0)),
    9, "a TIME_WAIT timeout in FIN_WAIT_2, before the peer's FIN",
)

SCENARIOS: tuple[Scenario, ...] = (
    ACTIVE_CLOSE, PASSIVE_CLOSE, JOIN, BAD_HMAC, FALLBACK, FASTCLOSE, FASTCLOSE_RECEIVED,
    SIMULTANEOUS_CLOSE, PLAIN_LISTENER, SYN_FALLBACK,
)
