"""What a TCP connection tells its user (frozen dataclasses, drained with `events()`).

These are application-level happenings, as in aioquic's `quic/events.py`: the handshake
finished, bytes arrived in order, the peer finished sending, the connection ended. The
diagnostic stream (RTO fired, fast retransmit, state changes, ...) is the separate log
(`impl.tcp.log`), so tests assert on either without mixing the two.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ConnectionClosed",
    "Connected",
    "DataReceived",
    "PeerClosed",
    "Reset",
    "TcpEvent",
]


@dataclass(frozen=True, slots=True)
class TcpEvent:
    """Base class of every connection event."""


@dataclass(frozen=True, slots=True)
class Connected(TcpEvent):
    """The three-way handshake completed (state ESTABLISHED, RFC 9293 3.5)."""


@dataclass(frozen=True, slots=True)
class DataReceived(TcpEvent):
    """In-order bytes. `relative_seq` is the subflow sequence number of `data[0]`
    relative to the peer's ISN (the first payload byte is 1), the numbering RFC 8684
    section 3.3.1 uses for DSS mappings."""

    data: bytes
    relative_seq: int


@dataclass(frozen=True, slots=True)
class PeerClosed(TcpEvent):
    """The peer's FIN arrived after all its data: nothing more will be received."""


@dataclass(frozen=True, slots=True)
class Reset(TcpEvent):
    """An acceptable RST arrived (RFC 9293 3.10.7.4, RFC 5961 section 3)."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed(TcpEvent):
    """The connection reached CLOSED; nothing more will happen on it.

    `reason`: "closed" (orderly, both FINs acknowledged), "reset" (peer's RST),
    "refused" (RST answering our SYN), "aborted" (our `abort()`), "timeout" (too many
    retransmissions, RFC 9293 3.8.3 R2).
    """

    reason: str
