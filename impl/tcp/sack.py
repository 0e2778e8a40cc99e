"""The sender's SACK scoreboard (RFC 6675 section 3, RFC 2018 section 5).

It records which bytes above SND.UNA the receiver reported holding, as sorted disjoint
ranges of unwrapped sequence numbers, and answers the questions RFC 6675's loss recovery
asks: how many bytes are SACKed in a range (for `SetPipe()`), where the next hole is
(`NextSeg()`), and up to where holes count as lost (`IsLost()`).

IsLost, RFC 6675 section 4: a byte is lost when DupThresh discontiguous SACKed sequences
lie above it, or more than (DupThresh - 1) * SMSS SACKed bytes do. Both counts only grow
as one moves down the sequence space, so the lost bytes are exactly the holes below one
boundary, which `lost_boundary` computes in one pass over the blocks from the top.

The receiver side of SACK (which blocks to report) lives with the reassembly queue in
`buffers.py`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

__all__ = ["Scoreboard"]


class Scoreboard:
    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self.sacked_bytes = 0

    def __len__(self) -> int:
        return len(self._starts)

    def __bool__(self) -> bool:
        return bool(self._starts)

    @property
    def blocks(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))

    @property
    def highest(self) -> int | None:
        """One past the highest SACKed byte (RFC 6675 "HighSACK" + 1), or None."""
        return self._ends[-1] if self._ends else None

    def add(self, start: int, end: int) -> int:
        """Record [start, end) as SACKed; returns how many bytes were new."""
        if end <= start:
            return 0
        starts, ends = self._starts, self._ends
        first = bisect_left(ends, start)  # first block ending at/after start (touching)
        last = bisect_right(starts, end)  # blocks [first, last) touch [start, end)
        if first == last:
            starts.insert(first, start)
            ends.insert(first, end)
            self.sacked_bytes += end - start
            return end - start
        old = sum(ends[i] - starts[i] for i in range(first, last))
        new_start = min(start, starts[first])
        new_end = max(end, ends[last - 1])
        starts[first:last] = [new_start]
        ends[first:last] = [new_end]
        added = (new_end - new_start) - old
        self.sacked_bytes += added
        return added

    def advance(self, snd_una: int) -> None:
        """Drop what lies below the new cumulative ACK point."""
        starts, ends = self._starts, self._ends
        cut = bisect_right(ends, snd_una)
        if cut:
            self.sacked_bytes -= sum(ends[i] - starts[i] for i in range(cut))
            del starts[:cut]
            del ends[:cut]
        if starts and starts[0] < snd_una:
            self.sacked_bytes -= snd_una - starts[0]
            starts[0] = snd_una

    def is_sacked(self, seq: int) -> bool:
        index = bisect_right(self._starts, seq) - 1
        return index >= 0 and seq < self._ends[index]

    def sacked_between(self, low: int, high: int) -> int:
        """SACKed bytes within [low, high)."""
        if high <= low or not self._starts:
            return 0
        starts, ends = self._starts, self._ends
        if low <= starts[0] and high >= ends[-1]:
            return self.sacked_bytes
        total = 0
        index = bisect_right(ends, low)  # first block ending after low
        while index < len(starts) and starts[index] < high:
            total += min(ends[index], high) - max(starts[index], low)
            index += 1
        return total

    def next_hole(self, seq: int, limit: int) -> tuple[int, int] | None:
        """The first un-SACKed range at or after `seq` and below `limit`, or None."""
        starts, ends = self._starts, self._ends
        index = bisect_right(starts, seq) - 1
        if index >= 0 and seq < ends[index]:
            seq = ends[index]  # inside a SACKed block: skip to its end
        if seq >= limit:
            return None
        following = bisect_right(starts, seq)
        hole_end = starts[following] if following < len(starts) else limit
        return seq, min(hole_end, limit)

    def lost_boundary(self, dup_threshold: int, smss: int) -> int | None:
        """Every hole below the returned sequence number IsLost (RFC 6675 section 4);
        None when no hole is lost yet."""
        starts, ends = self._starts, self._ends
        above = 0
        for count, index in enumerate(range(len(starts) - 1, -1, -1), start=1):
            above += ends[index] - starts[index]
            if count >= dup_threshold or above > (dup_threshold - 1) * smss:
                return starts[index]
        return None

    def clear(self) -> None:
        self._starts.clear()
        self._ends.clear()
        self.sacked_bytes = 0
