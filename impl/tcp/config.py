"""Tunables of one TCP connection, with Linux's defaults where Linux is our peer.

Each field says which RFC or Linux knob it stands for, so a comparison with the kernel
(`sysctl net.ipv4.tcp_*`) is a matter of reading both columns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from impl.cc.base import CongestionControl
from impl.cc.cubic import Cubic

__all__ = ["TcpConfig"]


def _default_congestion_control(mss: int) -> CongestionControl:
    return Cubic(mss)  # Linux's default (net.ipv4.tcp_congestion_control=cubic)


@dataclass(frozen=True)
class TcpConfig:
    # Our MSS option value: what we can receive (RFC 9293 3.7.1; 1460 = 1500-byte MTU
    # minus 40 bytes of IPv4 + TCP headers).
    mss: int = 1460
    # Receive buffer in bytes; the advertised window never exceeds it. 1 MiB is in the
    # range Linux autotunes to on a LAN (tcp_rmem max is 6 MiB).
    receive_buffer: int = 1 << 20
    # Offer RFC 7323 window scaling, RFC 7323 timestamps, RFC 2018 SACK on our SYN.
    window_scaling: bool = True
    timestamps: bool = True
    sack: bool = True
    # RFC 6298 2.1: initial RTO 1 s. Lower bound 200 ms is Linux's TCP_RTO_MIN (RFC
    # 6298 2.4 says 1 s; every deployed stack uses less). Upper bound 120 s is
    # TCP_RTO_MAX (RFC 6298 2.5 allows "at least 60 s").
    initial_rto: float = 1.0
    min_rto: float = 0.2
    max_rto: float = 120.0
    # Clock granularity G of RFC 6298 2.3 (our timestamp clock ticks in ms).
    clock_granularity: float = 0.001
    # Delayed-ACK timer (RFC 9293 3.8.6.3 / RFC 1122 4.2.3.2: < 0.5 s; Linux
    # TCP_DELACK_MIN is 40 ms). An ACK goes out at least every second full segment.
    delayed_ack: float = 0.04
    # TIME-WAIT lasts 2*MSL (RFC 9293 3.4.2); Linux uses 60 s in total. Tests set less.
    time_wait: float = 60.0
    # Give up after this many retransmissions of the SYN (Linux tcp_syn_retries=6) or
    # of data/FIN without progress (tcp_retries2=15, RFC 9293 3.8.3 R2).
    syn_retries: int = 6
    max_retransmits: int = 15
    # RFC 6928 / Linux: initial window of 10 segments.
    initial_window_segments: int = 10
    # RFC 5681 3.2 / RFC 6675: duplicate-ACK threshold.
    dup_threshold: int = 3
    # When True the receive window only reopens when the user calls `consume(n)` for
    # bytes it has taken out of DataReceived events (flow control driven by the reader,
    # and what MPTCP uses to apply its connection-level window). When False, delivered
    # bytes count as consumed at once.
    manual_consume: bool = False
    # Factory called with the sender's MSS once the handshake fixed it.
    congestion_control: Callable[[int], CongestionControl] = field(
        default=_default_congestion_control
    )

    def __post_init__(self) -> None:
        if not 88 <= self.mss <= 65495:
            raise ValueError(f"mss {self.mss} out of range")
        if self.receive_buffer < self.mss:
            raise ValueError("receive_buffer must hold at least one segment")
        if self.receive_buffer > (0xFFFF << 14):
            raise ValueError("receive_buffer exceeds the largest scaled window (RFC 7323)")
