"""Path-manager signalling (RFC 8684 3.4): ADD_ADDR with its HMAC, retransmitted until
echoed, and REMOVE_ADDR. Which subflows to open stays with the application
(`MptcpConnection.add_subflow`); this module only keeps what was announced each way.

- 3.4.1: an ADD_ADDR carries the rightmost 64 bits of HMAC(Key-sender || Key-receiver,
  ID || address || port); the receiver checks it (Linux drops a bad one and counts
  AddAddrDrop) and echoes the option (E flag, no HMAC). The sender repeats it until the
  echo arrives (Linux: net.mptcp.add_addr_timeout, a few tries).
- 3.4.2: REMOVE_ADDR lists address IDs; the receiver closes the subflows that use them
  (RmAddr, RmSubflow).

Both ride on pure ACKs, in place of the DSS when the 40 bytes do not hold both (Linux
drops the other suboptions of that ACK too).
"""

from __future__ import annotations

from dataclasses import dataclass

from impl.crypto import add_addr_hmac
from impl.wire.mptcp_options import AddAddr, RemoveAddr

__all__ = ["Announcement", "PathSignals"]


@dataclass
class Announcement:
    address_id: int
    address: object
    port: int | None
    deadline: float | None = None  # when to resend, None: send at the next ACK
    tries: int = 0


class PathSignals:
    """ADD_ADDR / REMOVE_ADDR state of one connection."""

    def __init__(self, counters, timeout: float, max_tries: int,
                 max_accepted: int = 8) -> None:
        self.counters = counters
        self.timeout = timeout
        self.max_tries = max_tries
        self.max_accepted = max_accepted
        self.announced: dict[int, Announcement] = {}  # ours, not echoed yet
        self.remote_addresses: dict[int, tuple[object, int | None]] = {}
        self._echoes: list[AddAddr] = []
        self._removals: list[int] = []

    # -- ours ------------------------------------------------------------------------

    def announce(self, address_id: int, address, port: int | None) -> None:
        self.announced[address_id] = Announcement(address_id, address, port)

    def remove(self, address_id: int) -> None:
        self.announced.pop(address_id, None)
        self._removals.append(address_id)

    def has_pending(self, now: float) -> bool:
        return bool(self._echoes or self._removals or any(
            a.deadline is None or a.deadline <= now for a in self.announced.values()))

    def next_option(self, now: float, local_key: int, remote_key: int):
        """The signal to put on the ACK being built now, if any (echoes first: the peer
        is waiting for them)."""
        if self._echoes:
            self.counters.inc("EchoAddTx")
            return self._echoes.pop(0)
        if self._removals:
            ids, self._removals = tuple(self._removals), []
            self.counters.inc("RmAddrTx")
            return RemoveAddr(ids)
        for announcement in self.announced.values():
            if announcement.deadline is None or announcement.deadline <= now:
                announcement.tries += 1
                if announcement.tries >= self.max_tries:
                    del self.announced[announcement.address_id]  # give up (Linux does too)
                else:
                    announcement.deadline = now + self.timeout
                self.counters.inc("AddAddrTx")
                hmac = add_addr_hmac(local_key, remote_key, announcement.address_id,
                                     announcement.address, announcement.port)
                return AddAddr(announcement.address_id, announcement.address,
                               announcement.port, truncated_hmac=hmac)
        return None

    def next_deadline(self) -> float | None:
        deadlines = [a.deadline for a in self.announced.values() if a.deadline is not None]
        return min(deadlines) if deadlines else None

    # -- theirs ----------------------------------------------------------------------

    def on_add_addr(self, option: AddAddr, local_key: int, remote_key: int) -> bool:
        """Returns True when an authentic announcement arrived (new or repeated): its
        HMAC is keyed with both keys, so it also proves the peer holds ours (3.1)."""
        if option.echo:
            if self.announced.pop(option.address_id, None) is not None:
                self.counters.inc("EchoAdd")
            return False
        expected = add_addr_hmac(remote_key, local_key, option.address_id, option.address,
                                 option.port)
        if option.truncated_hmac != expected:
            self.counters.inc("AddAddrDrop")  # 3.4.1: not from our peer; ignore it
            return False
        self.counters.inc("AddAddr")
        self._echoes.append(AddAddr(option.address_id, option.address, option.port,
                                    echo=True))
        if option.address_id in self.remote_addresses or \
                len(self.remote_addresses) < self.max_accepted:
            self.remote_addresses[option.address_id] = (option.address, option.port)
        return True

    def on_remove_addr(self, option: RemoveAddr) -> list[int]:
        self.counters.inc("RmAddr")
        for address_id in option.address_ids:
            self.remote_addresses.pop(address_id, None)
        # No echo for an address the peer has just withdrawn.
        self._echoes = [e for e in self._echoes if e.address_id not in option.address_ids]
        return list(option.address_ids)
