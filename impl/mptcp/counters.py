"""MPTCP counters under the Linux MIB names (`net/mptcp/mib.c`, `nstat -az | grep MPTcpExt`).

One `MptcpCounters` per host (Linux keeps them per network namespace), so a test compares
ours with the kernel's by name. Unknown names are refused, so a typo cannot create a
counter nobody reads.
"""

from __future__ import annotations

__all__ = ["COUNTER_NAMES", "MptcpCounters"]

COUNTER_NAMES = (
    "MPCapableSYNRX",  # listener: SYN with MP_CAPABLE (RFC 8684 3.1)
    "MPCapableSYNTX",  # initiator: SYN with MP_CAPABLE sent
    "MPCapableSYNACKRX",  # initiator: SYN/ACK with MP_CAPABLE and a key
    "MPCapableACKRX",  # listener: third ACK with MP_CAPABLE and both keys
    "MPCapableFallbackACK",  # listener: third ACK without MPTCP options (3.7)
    "MPCapableFallbackSYNACK",  # initiator: SYN/ACK without MP_CAPABLE (3.7)
    "MPTCPRetrans",  # data-level reinjection of unacknowledged data
    "DataRtoRetrans",  # not Linux: data-level retransmission timer expiries (3.3.6)
    "MPJoinNoTokenFound",  # MP_JOIN SYN with a token no connection owns (3.2)
    "MPJoinRejected",  # MP_JOIN SYN to our initial address after we set the C flag (3.1)
    "MPJoinSynRx",
    "MPJoinSynAckRx",
    "MPJoinAckRx",
    "MPJoinSynAckHMacFailure",
    "MPJoinAckHMacFailure",
    "DSSNotMatching",  # a mapping that contradicts an earlier one (3.3.1)
    "DataCsumErr",  # DSS checksum mismatch (3.3.1)
    "InfiniteMapRx",
    "InfiniteMapTx",  # the infinite mapping sent after the peer's MP_FAIL (3.7)
    "DuplicateData",  # data-level bytes received twice
    "OFOQueue",  # data-level bytes queued out of order
    "NoDSSInWindow",  # out-of-order data past our data-level window, dropped (3.3.4)
    "AddAddr",  # authentic ADD_ADDR received (3.4.1)
    "AddAddrTx",
    "AddAddrDrop",  # ADD_ADDR with a bad HMAC, ignored
    "EchoAdd",  # our ADD_ADDR echoed
    "EchoAddTx",
    "RmAddr",  # REMOVE_ADDR received (3.4.2)
    "RmAddrTx",
    "RmSubflow",  # subflows closed because of a REMOVE_ADDR
    "MPPrioTx",  # MP_PRIO (3.3.8)
    "MPPrioRx",
    "MPFailRx",
    "MPFailTx",  # MP_FAIL options sent (3.7)
    "MPFastcloseRx",
    "MPFastcloseTx",
    "MPRstRx",  # MP_TCPRST received (3.6)
    "MPRstTx",
)


class MptcpCounters:
    """A dict of Linux-named counters, all starting at zero."""

    def __init__(self) -> None:
        self._values = dict.fromkeys(COUNTER_NAMES, 0)

    def inc(self, name: str, amount: int = 1) -> None:
        if name not in self._values:
            raise KeyError(f"unknown MPTCP counter {name!r}")
        self._values[name] += amount

    def __getitem__(self, name: str) -> int:
        return self._values[name]

    def snapshot(self) -> dict[str, int]:
        return dict(self._values)

    def nonzero(self) -> dict[str, int]:
        return {name: value for name, value in self._values.items() if value}
