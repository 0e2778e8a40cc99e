"""Packet schedulers: which subflow carries the next chunk of data-level bytes.

The interface is one method, `choose(candidates)`, over subflows that can take data
now (established for data, room in their congestion window and in the peer's window).
The default is the one RFC 8684 3.3.8 hints at and Linux implements
(`mptcp_subflow_get_send`): among non-backup subflows the one with the lowest smoothed
RTT; backup subflows (MP_PRIO / MP_JOIN B flag, 3.3.8) only when no regular subflow is
usable at all.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["LowestRttScheduler", "Scheduler", "SchedulerCandidate"]


class SchedulerCandidate(Protocol):
    backup: bool

    @property
    def smoothed_rtt(self) -> float: ...


class Scheduler(Protocol):
    def choose(self, candidates: list, any_regular_alive: bool) -> object | None:
        """Pick one of `candidates` (or None). `any_regular_alive` says whether some
        non-backup subflow is established, even if it has no room right now."""
        ...


class LowestRttScheduler:
    """Lowest smoothed RTT first; backups only when no regular subflow is usable."""

    def choose(self, candidates: list, any_regular_alive: bool) -> object | None:
        regular = [c for c in candidates if not c.backup]
        if regular:
            return min(regular, key=lambda c: c.smoothed_rtt)
        if any_regular_alive:
            return None  # a regular subflow will have room soon: keep backups idle
        if candidates:
            return min(candidates, key=lambda c: c.smoothed_rtt)
        return None
