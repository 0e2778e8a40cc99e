"""The connection states of RFC 9293 3.3.2 and the groups of them the code asks about."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["RECEIVING_STATES", "RST_ON_ABORT_STATES", "SENDING_STATES", "TcpState"]


class TcpState(StrEnum):
    """RFC 9293 3.3.2 (names as the RFC writes them)."""

    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"


S = TcpState
# States in which our data or FIN may still need (re)transmission.
SENDING_STATES = frozenset((S.ESTABLISHED, S.FIN_WAIT_1, S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK))
# States in which segment text is accepted (RFC 9293 3.10.7.4, seventh check).
RECEIVING_STATES = frozenset((S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2))
# RFC 9293 3.10.5: ABORT sends a reset in these states.
RST_ON_ABORT_STATES = frozenset(
    (S.SYN_RECEIVED, S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT)
)
