"""The one congestion-control interface every algorithm implements (per subflow), and
the coupling object coupled algorithms will share across subflows.

Units: `cwnd`, `ssthresh`, `mss` and acknowledged amounts are bytes; times are seconds on
the caller's clock. The TCP connection drives an instance with four calls, the moments
RFC 5681 names:

- `on_ack(acked_bytes, rtt, now)`: new data was cumulatively acknowledged outside fast
  recovery while the sender was using its window (RFC 5681 3.1; RFC 7661's "don't grow
  an unused window" is the caller's check). `rtt` is the latest RTT sample or the smoothed
  RTT when this ACK gave none (None before any sample).
- `on_loss(now, flight_size)`: loss detected by duplicate ACKs / SACK, entering fast
  recovery (RFC 5681 3.2 step 2; RFC 6675 section 5 step 4.2).
- `on_recovery_exit(now)`: the recovery point was acknowledged (RFC 6675 "exit").
- `on_rto(now, flight_size)`: the retransmission timer expired (RFC 5681 3.1, eq. 4;
  cwnd drops to the loss window of one segment).

Coupled algorithms (LIA RFC 6356, OLIA, BALIA) need every subflow's window and RTT when
they grow one of them. They will subclass `CongestionControl`, join a shared
`CouplingGroup` given at construction, and read their siblings through it; plain Reno and
CUBIC ignore the group.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

__all__ = ["INFINITE_SSTHRESH", "CongestionControl", "CouplingGroup"]

INFINITE_SSTHRESH = 1 << 62  # RFC 5681 3.1: "arbitrarily high"


class CouplingGroup:
    """The subflows of one MPTCP connection whose windows are coupled."""

    def __init__(self) -> None:
        self.members: list[CongestionControl] = []

    def join(self, member: CongestionControl) -> None:
        if member not in self.members:
            self.members.append(member)

    def leave(self, member: CongestionControl) -> None:
        if member in self.members:
            self.members.remove(member)

    @property
    def total_cwnd(self) -> int:
        return sum(member.cwnd for member in self.members)


class CongestionControl(ABC):
    name = "base"

    def __init__(
        self,
        mss: int,
        initial_window_segments: int = 10,
        coupling: CouplingGroup | None = None,
    ) -> None:
        if mss <= 0:
            raise ValueError("mss must be positive")
        self.mss = mss
        # RFC 6928 (IW10, Linux's default); RFC 5681 3.1 allows up to 4 segments.
        self.cwnd = initial_window_segments * mss
        self.ssthresh = INFINITE_SSTHRESH
        self.srtt: float | None = None  # last RTT the caller reported, for coupling
        self.coupling = coupling
        if coupling is not None:
            coupling.join(self)

    @property
    def in_slow_start(self) -> bool:
        """RFC 5681 3.1: slow start while cwnd < ssthresh."""
        return self.cwnd < self.ssthresh

    def set_mss(self, mss: int) -> None:
        """The sender's segment size changed (e.g. options shrank it); keep the window
        in segments."""
        if mss > 0 and mss != self.mss:
            self.cwnd = max(mss, self.cwnd * mss // self.mss)
            self.mss = mss

    def _slow_start(self, acked_bytes: int) -> int:
        """Grow by the bytes acknowledged up to ssthresh (RFC 5681 3.1 with appropriate
        byte counting, RFC 3465, without the L cap, as Linux's tcp_slow_start); return
        the acknowledged bytes left over for congestion avoidance."""
        room = max(self.ssthresh - self.cwnd, 0)
        grow = min(acked_bytes, room)
        self.cwnd += grow
        return acked_bytes - grow

    @abstractmethod
    def on_ack(self, acked_bytes: int, rtt: float | None, now: float) -> None: ...

    @abstractmethod
    def on_loss(self, now: float, flight_size: int) -> None: ...

    def on_recovery_exit(self, now: float) -> None:
        """RFC 6675 / RFC 5681 3.2 step 6: deflate to ssthresh (a no-op when recovery
        already set cwnd = ssthresh)."""
        self.cwnd = max(min(self.cwnd, self.ssthresh), self.mss)

    @abstractmethod
    def on_rto(self, now: float, flight_size: int) -> None: ...

    def leave(self) -> None:
        """Detach from the coupling group (the subflow closed)."""
        if self.coupling is not None:
            self.coupling.leave(self)
