"""Which MP_JOIN subflows to open: the "full mesh" policy of Linux's `fullmesh` endpoints
(RFC 8684 3.2, 3.4), shared by the lab runner and the socket API.

The core opens a subflow only when asked (`MptcpConnection.add_subflow`); this policy
asks: from every local address to every address known of the peer (the initial
subflow's and each authentic ADD_ADDR, 3.4.1), same family only, never the same pair
twice, and at most `max_subflows` subflows in all (Linux: `ip mptcp limits subflows`,
at most 8, MPTCP_PM_ADDR_MAX). Joins asked for before the connection is fully
established wait in the core until it is (3.1).
"""

from __future__ import annotations

import ipaddress
import weakref
from collections.abc import Iterable

__all__ = ["MAX_SUBFLOWS", "FullMesh"]

MAX_SUBFLOWS = 8  # Linux's MPTCP_PM_ADDR_MAX: the most `ip mptcp limits` allows


class FullMesh:
    """The full-mesh join policy for the connections of one host (module docstring)."""

    def __init__(self, local_addresses: Iterable[object],
                 max_subflows: int = MAX_SUBFLOWS) -> None:
        if not 1 <= max_subflows <= MAX_SUBFLOWS:
            raise ValueError(f"max_subflows must be 1 to {MAX_SUBFLOWS}")
        self.local_addresses = [ipaddress.ip_address(a) for a in local_addresses]
        self.max_subflows = max_subflows
        # Pairs asked for per connection: a join asked for before the connection is
        # fully established is not in `connection.subflows` yet.
        self._asked: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def remote_addresses(self, connection) -> list[tuple[object, int | None]]:
        """The peer's addresses we know: the initial subflow's, then the announced
        ones (with their port, None meaning the initial subflow's port)."""
        first = connection.subflows[0]
        # 3.1: a peer that set C takes no join to its initial address and port.
        known = [] if connection.peer_no_initial_join else [
            (ipaddress.ip_address(first.remote), None)]
        for address, port in connection.signals.remote_addresses.values():
            entry = (ipaddress.ip_address(address), port)
            if entry not in known:
                known.append(entry)
        return known

    def missing(self, connection) -> list[tuple[object, object, int | None]]:
        """(local, remote, remote port) pairs with no subflow yet, in order, within the
        subflow limit."""
        if connection.fallback or connection.is_closed or not connection.subflows:
            return []
        existing = {(ipaddress.ip_address(sf.local), ipaddress.ip_address(sf.remote))
                    for sf in connection.subflows}
        asked = self._asked.get(connection, set())
        room = self.max_subflows - len(connection.subflows) - len(asked - existing)
        existing |= asked
        out = []
        for remote, port in self.remote_addresses(connection):
            for local in self.local_addresses:
                if room <= 0:
                    return out
                if local.version != remote.version or (local, remote) in existing:
                    continue
                existing.add((local, remote))
                out.append((local, remote, port))
                room -= 1
        return out

    def apply(self, connection, now: float) -> int:
        """Open the missing subflows; returns how many were asked for. Call it again
        whenever an ADD_ADDR may have arrived (cheap when nothing is missing)."""
        missing = self.missing(connection)
        asked = self._asked.setdefault(connection, set())
        for local, remote, port in missing:
            asked.add((local, remote))
            connection.add_subflow(local, remote=remote, remote_port=port, now=now)
        return len(missing)
