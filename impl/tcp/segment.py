"""The unit the TCP core exchanges with its driver: one TCP header plus its payload.

The IP layer is the driver's job (RFC 9293 section 3.9.1's "network layer"): a driver
parses an IP packet with `impl.wire.parse_packet`, hands `Segment(packet.tcp,
packet.payload)` to the connection, and wraps what the connection returns with
`impl.wire.build_packet`. The payload may be any length (GRO/TSO super-segments of up to
64 KB included) and is a `bytes` or a `memoryview`; the core copies what it keeps, so a
driver may reuse its receive buffer after `receive_segment` returns.

Also here: the reset a host sends for a segment that matches no connection (RFC 9293
3.10.7.1, "If the state is CLOSED"), which listener tables need before any connection
exists, and option lengths for the 40-byte option budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from impl.wire.tcp import TcpFlags, TcpHeader
from impl.wire.tcp_options import MAX_OPTIONS_LENGTH, NoOperation

from .seqnum import seq_add

__all__ = [
    "MAX_OPTIONS_LENGTH",
    "Segment",
    "options_length",
    "padded_length",
    "reset_for_unexpected",
]


@dataclass(frozen=True, slots=True)
class Segment:
    """A TCP header and its payload (never copied here)."""

    header: TcpHeader
    payload: bytes | memoryview = b""

    @property
    def flags(self) -> TcpFlags:
        return self.header.flags

    @property
    def sequence_length(self) -> int:
        """SEG.LEN of RFC 9293 3.4: payload bytes plus one for SYN and one for FIN."""
        flags = int(self.header.flags)
        return len(self.payload) + (flags >> 1 & 1) + (flags & 1)  # SYN is 0x02, FIN 0x01

    def __repr__(self) -> str:  # short form for test failures and logs
        h = self.header
        names = "".join(
            letter for flag, letter in _FLAG_LETTERS if h.flags & flag
        ) or "."
        return (
            f"<Segment {h.src_port}>{h.dst_port} {names} seq={h.seq} ack={h.ack} "
            f"win={h.window} len={len(self.payload)} opts={len(h.options)}>"
        )


_FLAG_LETTERS = (
    (TcpFlags.SYN, "S"),
    (TcpFlags.FIN, "F"),
    (TcpFlags.RST, "R"),
    (TcpFlags.PSH, "P"),
    (TcpFlags.ACK, "A"),
)


def options_length(options: tuple | list) -> int:
    """Bytes the options take on the wire before padding (each option's own encoding)."""
    total = 0
    for option in options:
        total += 1 if isinstance(option, NoOperation) else len(option.emit())
    return total


def padded_length(length: int) -> int:
    """The options area size for `length` option bytes (a multiple of 4, RFC 9293 3.1)."""
    return (length + 3) & ~3


def reset_for_unexpected(segment: Segment) -> Segment | None:
    """The RST answering a segment that no connection owns (RFC 9293 3.10.7.1).

    "An incoming segment containing a RST is discarded. An incoming segment not
    containing a RST causes a RST to be sent in response": if the ACK bit is on,
    <SEQ=SEG.ACK><CTL=RST>; otherwise <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
    """
    header = segment.header
    if header.flags & TcpFlags.RST:
        return None
    if header.flags & TcpFlags.ACK:
        reply = TcpHeader(
            src_port=header.dst_port, dst_port=header.src_port, seq=header.ack, ack=0,
            flags=TcpFlags.RST, window=0,
        )
    else:
        reply = TcpHeader(
            src_port=header.dst_port, dst_port=header.src_port, seq=0,
            ack=seq_add(header.seq, segment.sequence_length),
            flags=TcpFlags.RST | TcpFlags.ACK, window=0,
        )
    return Segment(reply)
