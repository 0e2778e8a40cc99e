"""Round-trip time estimation and the retransmission timeout (RFC 6298).

`RttEstimator.sample(r)` applies RFC 6298 section 2: the first measurement sets
SRTT = R and RTTVAR = R/2; later ones update RTTVAR = (1 - beta) * RTTVAR +
beta * |SRTT - R| and then SRTT = (1 - alpha) * SRTT + alpha * R, with alpha = 1/8 and
beta = 1/4; RTO = SRTT + max(G, K * RTTVAR) with K = 4, clamped to [min_rto, max_rto]
(section 2.4/2.5). `back_off()` doubles the timer on each expiry (section 5.5) and a new
acknowledgment of data resets the back-off (Linux does this too; RFC 6298 5.7 leaves the
doubled value until a new sample, which the following ACK normally brings).

Which samples are valid is the caller's business (Karn's rule, RFC 6298 section 3: no
samples from retransmitted segments unless timestamps disambiguate, RFC 7323 4.1).
"""

from __future__ import annotations

__all__ = ["RttEstimator"]

ALPHA = 1 / 8
BETA = 1 / 4
K = 4


class RttEstimator:
    def __init__(
        self,
        initial_rto: float = 1.0,
        min_rto: float = 0.2,
        max_rto: float = 120.0,
        granularity: float = 0.001,
    ) -> None:
        self.min_rto = min_rto
        self.max_rto = max_rto
        self.granularity = granularity
        self.srtt: float | None = None
        self.rttvar: float | None = None
        self.latest_rtt: float | None = None
        self.min_rtt: float | None = None
        self._base_rto = initial_rto  # section 2.1, before any sample
        self.backoff = 0  # how many times the running timer expired in a row

    @property
    def has_sample(self) -> bool:
        return self.srtt is not None

    def sample(self, rtt: float) -> None:
        """Fold one measurement into SRTT/RTTVAR (RFC 6298 2.2 and 2.3)."""
        rtt = max(rtt, 0.0)
        self.latest_rtt = rtt
        self.min_rtt = rtt if self.min_rtt is None else min(self.min_rtt, rtt)
        if self.srtt is None or self.rttvar is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            # Order matters: RTTVAR uses the SRTT from before this sample (2.3).
            self.rttvar = (1 - BETA) * self.rttvar + BETA * abs(self.srtt - rtt)
            self.srtt = (1 - ALPHA) * self.srtt + ALPHA * rtt
        self._base_rto = self.srtt + max(self.granularity, K * self.rttvar)

    @property
    def base_rto(self) -> float:
        """RTO before back-off, clamped (2.4: round up to min_rto; 2.5: cap)."""
        return min(max(self._base_rto, self.min_rto), self.max_rto)

    @property
    def rto(self) -> float:
        """The timer to arm now: the base RTO doubled once per expiry (5.5), capped."""
        return min(self.base_rto * (2 ** min(self.backoff, 32)), self.max_rto)  # no overflow

    def back_off(self) -> None:
        self.backoff += 1

    def reset_backoff(self) -> None:
        self.backoff = 0
