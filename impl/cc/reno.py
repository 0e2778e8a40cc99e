"""Reno congestion control (RFC 5681): slow start, congestion avoidance by byte counting,
multiplicative decrease to half the flight on loss, one segment after a timeout."""

from __future__ import annotations

from .base import CongestionControl

__all__ = ["Reno"]


class Reno(CongestionControl):
    name = "reno"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._bytes_acked = 0  # RFC 5681 3.1 byte counting in congestion avoidance

    def on_ack(self, acked_bytes: int, rtt: float | None, now: float) -> None:
        if rtt is not None:
            self.srtt = rtt
        if acked_bytes <= 0:
            return
        if self.in_slow_start:
            acked_bytes = self._slow_start(acked_bytes)
            if not acked_bytes:
                return
        # Congestion avoidance: one SMSS per cwnd of acknowledged bytes, i.e. about one
        # segment per RTT (RFC 5681 3.1 eq. 3, the byte-counting variant it recommends).
        self._bytes_acked += acked_bytes
        if self._bytes_acked >= self.cwnd:
            self._bytes_acked -= self.cwnd
            self.cwnd += self.mss

    def _decrease(self, flight_size: int) -> None:
        # RFC 5681 3.1 eq. 4: ssthresh = max(FlightSize / 2, 2 * SMSS).
        self.ssthresh = max(flight_size // 2, 2 * self.mss)
        self._bytes_acked = 0

    def on_loss(self, now: float, flight_size: int) -> None:
        self._decrease(flight_size)
        self.cwnd = self.ssthresh  # RFC 6675 section 5 step 4.2 (no inflation with SACK)

    def on_rto(self, now: float, flight_size: int) -> None:
        self._decrease(flight_size)
        self.cwnd = self.mss  # the loss window LW = 1 SMSS
