"""Data sequence bookkeeping (RFC 8684 3.3): what the DSS option says and what we do with it.

- `widen(value, bits, reference)`: a 32-bit DSN or DATA_ACK as carried on the wire is
  the low bits of a 64-bit number; pick the 64-bit (here: unwrapped) value closest to
  a reference (3.3.1 "the upper 32 bits are implied").
- `SendRecords`: per subflow, which subflow bytes carry which data bytes. One record
  is one DSS mapping (3.3.1: a mapping may cover several segments); every segment of it
  repeats the same mapping (identical repeats are legal).
- `MappingReceiver`: per subflow, the mappings received and the in-order subflow bytes
  not yet handed to the data level. Conflicting mappings are reported (3.3.1,
  DSSNotMatching), checksums verified over whole mappings when negotiated.
- `DataReassembly`: the data-level receive side across subflows, out of order by DSN,
  DATA_FIN consuming one DSN (3.3.3).

Internally DSNs are unwrapped integers (the IDSN + 1 of the first byte, growing without
bound); they are reduced modulo 2**64 only on the wire.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from impl.tcp.buffers import ReassemblyQueue
from impl.wire.checksum import dss_checksum

__all__ = [
    "DataReassembly", "Mapping", "MappingReceiver", "SendRecords", "mapping_checksum",
    "widen",
]

MASK64 = (1 << 64) - 1
MASK32 = (1 << 32) - 1


def widen(value: int, bits: int, reference: int) -> int:
    """The unwrapped number whose low `bits` bits are `value`, nearest to `reference`."""
    modulus = 1 << bits
    half = modulus >> 1
    base = reference - (reference % modulus) + value
    if base - reference > half:
        base -= modulus
    elif reference - base >= half:
        base += modulus
    return base


def mapping_checksum(dsn: int, ssn: int, length: int, payload: bytes | memoryview) -> int:
    """RFC 8684 3.3.1 checksum (64-bit DSN in the pseudo-header, whatever was sent)."""
    return dss_checksum(dsn & MASK64, ssn & MASK32, length, payload)


@dataclass(frozen=True, slots=True)
class Mapping:
    """Subflow bytes [ssn, ssn + length) carry data bytes [dsn, dsn + length)."""

    ssn: int  # relative subflow sequence number (first payload byte = 1)
    dsn: int  # unwrapped data sequence number
    length: int
    checksum: int | None = None

    @property
    def ssn_end(self) -> int:
        return self.ssn + self.length

    @property
    def dsn_end(self) -> int:
        return self.dsn + self.length


class SendRecords:
    """The mappings a subflow sent, sorted by subflow sequence number."""

    def __init__(self) -> None:
        self.records: list[Mapping] = []
        self._starts: list[int] = []

    def add(self, mapping: Mapping) -> None:
        self.records.append(mapping)
        self._starts.append(mapping.ssn)

    def find(self, ssn: int) -> Mapping | None:
        index = bisect_right(self._starts, ssn) - 1
        if index >= 0:
            record = self.records[index]
            if ssn < record.ssn_end:
                return record
        return None

    def unacknowledged(self, data_ack: int) -> list[tuple[int, int]]:
        """DSN ranges of records not wholly covered by `data_ack` (for reinjection)."""
        return [(max(r.dsn, data_ack), r.dsn_end) for r in self.records if r.dsn_end > data_ack]

    def forget_acked(self, data_ack: int, subflow_una: int) -> None:
        """Drop leading records both DATA_ACKed and acknowledged on the subflow. Data
        acknowledged only at the data level (a reinjected copy got there first) may
        still be retransmitted by the subflow, and every copy needs its mapping."""
        keep = 0
        while keep < len(self.records) - 1 and self.records[keep].dsn_end <= data_ack and (
            self.records[keep].ssn_end <= subflow_una
        ):
            keep += 1
        if keep:
            del self.records[:keep]
            del self._starts[:keep]


class MappingConflict(Exception):
    """A mapping that contradicts one received earlier (RFC 8684 3.3.1)."""


class ChecksumFailure(Exception):
    """A DSS checksum did not match (RFC 8684 3.3.1); carries the mapping."""

    def __init__(self, mapping: Mapping) -> None:
        super().__init__(f"DSS checksum mismatch for {mapping}")
        self.mapping = mapping


class MappingReceiver:
    """Mappings received on one subflow and its in-order bytes waiting for them.

    A segment whose payload runs past its mapping is fine as long as a later mapping
    covers the rest; bytes wait in `pending` until some mapping covers them.
    """

    def __init__(self, checksums: bool) -> None:
        self.checksums = checksums
        self.mappings: list[Mapping] = []  # unconsumed, sorted by ssn
        self.pending = bytearray()
        self.pending_ssn = 1  # subflow sequence number of pending[0]
        self.infinite_dsn: int | None = None  # DSN of subflow byte `infinite_ssn`
        self.infinite_ssn = 0

    def start_infinite(self, dsn: int, ssn: int) -> None:
        """3.7: subflow bytes from `ssn` on are data bytes from `dsn` on (after fallback,
        or a failed checksum); bytes before `ssn` not handed up yet are dropped."""
        self.mappings.clear()
        self.infinite_dsn = dsn
        self.infinite_ssn = ssn

    def _discard(self, count: int) -> None:
        del self.pending[:count]
        self.pending_ssn += count

    def add(self, mapping: Mapping) -> bool:
        """Record a mapping. Returns False for an identical repeat or one wholly below
        what was already consumed (or once the infinite mapping holds); raises
        MappingConflict for a contradiction."""
        if self.infinite_dsn is not None:
            return False
        if mapping.ssn_end <= self.pending_ssn and mapping.length:
            return False  # old: its bytes were handed up already
        for known in self.mappings:
            if known.ssn < mapping.ssn_end and mapping.ssn < known.ssn_end:
                if known == mapping:
                    return False
                # Overlapping but different: 3.3.1 lets a sender only repeat a mapping
                # exactly, so this is an inconsistency (Linux: DSSNotMatching).
                raise MappingConflict(f"{mapping} conflicts with {known}")
        self.mappings.append(mapping)
        self.mappings.sort(key=lambda m: m.ssn)
        return True

    def feed(self, data: bytes, relative_seq: int) -> None:
        """In-order subflow bytes (TCP already reassembled them)."""
        expected = self.pending_ssn + len(self.pending)
        if relative_seq != expected:  # TCP delivers in order; anything else is a bug
            raise ValueError(f"subflow bytes at {relative_seq}, expected {expected}")
        self.pending += data

    def drain(self) -> list[tuple[int, bytes]]:
        """Hand up every pending byte a mapping covers, as (dsn, bytes) pieces.
        With checksums a mapping's bytes go up only once all of them are here and the
        sum matches; a mismatch raises ChecksumFailure."""
        out: list[tuple[int, bytes]] = []
        if self.infinite_dsn is not None and self.pending_ssn < self.infinite_ssn:
            self._discard(min(len(self.pending), self.infinite_ssn - self.pending_ssn))
        while self.pending:
            if self.infinite_dsn is not None:  # 3.7: the rest maps straight through
                out.append((self.infinite_dsn + self.pending_ssn - self.infinite_ssn,
                            bytes(self.pending)))
                self.pending_ssn += len(self.pending)
                self.pending.clear()
                break
            while self.mappings and self.mappings[0].ssn_end <= self.pending_ssn:
                self.mappings.pop(0)
            if not self.mappings or self.mappings[0].ssn > self.pending_ssn:
                # RFC 8684 3.3: bytes are delivered only under a mapping; these wait
                # for the segment that carries theirs.
                break
            mapping = self.mappings[0]
            offset = self.pending_ssn - mapping.ssn
            available = min(len(self.pending), mapping.ssn_end - self.pending_ssn)
            if self.checksums and mapping.checksum is not None:
                if offset != 0 or len(self.pending) < mapping.length:
                    break  # wait for the whole mapping
                payload = bytes(self.pending[: mapping.length])
                if mapping_checksum(mapping.dsn, mapping.ssn, mapping.length,
                                    payload) != mapping.checksum:
                    raise ChecksumFailure(mapping)
                available = mapping.length
            out.append((mapping.dsn + offset, bytes(self.pending[:available])))
            del self.pending[:available]
            self.pending_ssn += available
        return out


class DataReassembly:
    """The connection-level receive side: DSN-ordered delivery and DATA_FIN."""

    def __init__(self, rcv_nxt: int) -> None:
        self.rcv_nxt = rcv_nxt  # next DSN expected (DATA_ACK value, 3.3.2)
        self.queue = ReassemblyQueue()
        self.fin_dsn: int | None = None
        self.fin_received = False  # rcv_nxt has passed the DATA_FIN
        self.duplicate_bytes = 0
        self.out_of_order_bytes = 0

    def receive(self, dsn: int, data: bytes) -> list[bytes]:
        """Returns in-order pieces now deliverable to the application."""
        end = dsn + len(data)
        if self.fin_dsn is not None:
            end = min(end, self.fin_dsn)
        delivered: list[bytes] = []
        # Every byte that arrives a second time (a reinjected copy, 3.3.6) is counted
        # once in duplicate_bytes and dropped; each byte is delivered once.
        if end <= self.rcv_nxt:
            self.duplicate_bytes += max(0, end - dsn)
        elif dsn <= self.rcv_nxt:
            self.duplicate_bytes += self.rcv_nxt - dsn
            delivered.append(data[self.rcv_nxt - dsn : end - dsn])
            self.rcv_nxt = end
            ready = self.queue.pop_ready(self.rcv_nxt)
            if ready is not None:
                if self.fin_dsn is not None:
                    ready = ready[: max(0, self.fin_dsn - self.rcv_nxt)]
                delivered.append(ready)
                self.rcv_nxt += len(ready)
        else:
            added = self.queue.insert(dsn, data[: end - dsn])
            self.out_of_order_bytes += added
            self.duplicate_bytes += end - dsn - added
        self._check_fin()
        return delivered

    def receive_fin(self, dsn: int) -> None:
        """DATA_FIN at `dsn` (it occupies that one DSN, 3.3.3)."""
        if self.fin_dsn is None:
            self.fin_dsn = dsn
        self._check_fin()

    def _check_fin(self) -> None:
        if self.fin_dsn is not None and not self.fin_received and self.rcv_nxt == self.fin_dsn:
            self.rcv_nxt += 1
            self.fin_received = True
