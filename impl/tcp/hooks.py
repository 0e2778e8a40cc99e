"""The upper-layer hook a TCP subflow calls, so MPTCP can ride on TCP without `impl.tcp`
ever importing `impl.mptcp` (DESIGN principle 4; Linux's ULP/`tcp_ulp_ops` and the
`mptcp_*_options` calls in `tcp_output.c` play this role in the kernel).

The connection asks the hook for options on every segment it builds and shows it every
segment it accepts. The TCP option area is 40 bytes (RFC 9293 3.1); the connection
first places its own options (MSS, window scale, SACK-permitted and timestamps on SYNs;
timestamps on every segment), then gives the hook what is left, then fills any remaining
room with SACK blocks, the same priority Linux gives (`tcp_established_options`: MPTCP
before SACK). Before sizing a data segment it asks `option_space(kind)` for an upper
bound, so the payload plus all options never exceed the peer's MSS.

Sequence numbers handed to the hook are *relative* to the connection's own ISN (the
first payload byte is 1), as RFC 8684 3.3.1 DSS mappings count them; received segments
come with the relative sequence number of their first payload byte, counted from the
peer's ISN.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from impl.wire.tcp import TcpHeader

__all__ = ["NullHook", "SegmentKind", "TcpHook"]


class SegmentKind(StrEnum):
    """Which kind of segment options are asked for."""

    SYN = "syn"
    SYNACK = "synack"
    ACK = "ack"  # no payload, no SYN: pure ACKs, window updates, probes, bare FINs
    DATA = "data"  # carries payload (maybe a FIN too)


class TcpHook(Protocol):
    def option_space(self, kind: SegmentKind) -> int:
        """The most option bytes `options_for_segment` will return for this kind."""
        ...

    def options_for_segment(
        self, kind: SegmentKind, relative_seq: int, length: int, space: int
    ) -> tuple:
        """Options (impl.wire option values) to add to a segment about to be sent.

        `relative_seq` is the segment's first sequence number relative to our ISN,
        `length` its payload length, `space` the option bytes still free; the options
        must fit in `space` (bytes before padding).
        """
        ...

    def on_segment_received(
        self, header: TcpHeader, payload: bytes | memoryview, relative_seq: int
    ) -> None:
        """A segment passed the sequence and RST checks (and the handshake segments
        SYN and SYN/ACK when they are processed). `relative_seq` is the number of its
        first payload byte relative to the peer's ISN."""
        ...

    def on_established(self) -> None:
        """The subflow entered ESTABLISHED."""
        ...

    def on_closed(self, reason: str) -> None:
        """The subflow reached CLOSED (reason as in `ConnectionClosed`)."""
        ...


class NullHook:
    """Plain TCP: no extra options, nothing to observe."""

    def option_space(self, kind: SegmentKind) -> int:
        return 0

    def options_for_segment(
        self, kind: SegmentKind, relative_seq: int, length: int, space: int
    ) -> tuple:
        return ()

    def on_segment_received(
        self, header: TcpHeader, payload: bytes | memoryview, relative_seq: int
    ) -> None:
        return None

    def on_established(self) -> None:
        return None

    def on_closed(self, reason: str) -> None:
        return None
