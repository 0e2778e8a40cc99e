"""CUBIC congestion control (RFC 9438), Linux's default.

Window growth in congestion avoidance follows the cubic W_cubic(t) = C*(t - K)^3 + W_max
(section 4.2) with C = 0.4 and K = cbrt((W_max - cwnd_epoch) / C): concave while the
window climbs back to where the last loss happened, flat around W_max, convex beyond.
The Reno-friendly estimate W_est (section 4.3) keeps CUBIC at least as aggressive as Reno
on short-RTT paths. A loss multiplies the window by beta = 0.7 (section 4.6) and, with
fast convergence (4.7), lowers W_max when the window is shrinking. Windows are computed
in segments (as the RFC writes them) and stored in bytes.
"""

from __future__ import annotations

from .base import CongestionControl

__all__ = ["Cubic"]

C = 0.4
BETA = 0.7
ALPHA_RENO_FRIENDLY = 3 * (1 - BETA) / (1 + BETA)  # section 4.3


class Cubic(CongestionControl):
    name = "cubic"

    def __init__(self, *args, fast_convergence: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fast_convergence = fast_convergence
        self.w_max = 0.0  # segments; window just before the last reduction
        self.k = 0.0  # seconds until W_cubic reaches W_max again
        self.epoch_start: float | None = None
        self._w_est = 0.0  # segments
        self._cwnd_epoch = 0.0

    def w_cubic(self, t: float) -> float:
        """W_cubic(t) in segments (RFC 9438 eq. 1)."""
        return C * (t - self.k) ** 3 + self.w_max

    def _start_epoch(self, now: float) -> None:
        # RFC 9438 4.2: a new congestion-avoidance stage starts with the current window.
        self.epoch_start = now
        cwnd = self.cwnd / self.mss
        self._cwnd_epoch = cwnd
        if self.w_max <= cwnd:
            self.k = 0.0
            self.w_max = max(self.w_max, cwnd)
        else:
            self.k = ((self.w_max - cwnd) / C) ** (1 / 3)
        self._w_est = cwnd

    def on_ack(self, acked_bytes: int, rtt: float | None, now: float) -> None:
        if rtt is not None:
            self.srtt = rtt
        if acked_bytes <= 0:
            return
        if self.in_slow_start:
            acked_bytes = self._slow_start(acked_bytes)
            if not acked_bytes:
                return
        if self.epoch_start is None:
            self._start_epoch(now)
        cwnd = self.cwnd / self.mss
        acked = acked_bytes / self.mss
        t = now - self.epoch_start
        # Section 4.2: aim at W_cubic one RTT ahead, never more than 1.5x the window.
        target = self.w_cubic(t + (self.srtt or 0.0))
        target = min(max(target, cwnd), 1.5 * cwnd)
        # Section 4.3: the Reno-friendly estimate, alpha = 1 once past W_max.
        alpha = 1.0 if self._w_est >= self.w_max else ALPHA_RENO_FRIENDLY
        self._w_est += alpha * acked / cwnd
        if self.w_cubic(t) < self._w_est:
            new = max(cwnd, self._w_est)  # Reno-friendly region
        else:
            new = cwnd + (target - cwnd) * acked / cwnd  # concave / convex regions
        self.cwnd = max(int(new * self.mss), self.cwnd)

    def _reduce(self, now: float) -> None:
        cwnd = self.cwnd / self.mss
        # Section 4.7: fast convergence releases bandwidth to newer flows.
        if self.fast_convergence and cwnd < self.w_max:
            self.w_max = cwnd * (1 + BETA) / 2
        else:
            self.w_max = cwnd
        # Section 4.6: ssthresh = cwnd * beta (Linux bases it on cwnd, not flight).
        self.ssthresh = max(int(self.cwnd * BETA), 2 * self.mss)
        self.epoch_start = None

    def on_loss(self, now: float, flight_size: int) -> None:
        self._reduce(now)
        self.cwnd = self.ssthresh

    def on_rto(self, now: float, flight_size: int) -> None:
        # Section 4.8: as a congestion event, then restart from one segment.
        self._reduce(now)
        self.cwnd = self.mss
