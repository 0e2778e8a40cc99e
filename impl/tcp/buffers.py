"""Byte buffers for both directions, addressed by unwrapped sequence numbers.

`SendBuffer` holds what the user wrote that the peer has not acknowledged yet, from
SND.UNA to the last byte written (RFC 9293 3.3.1's send sequence space, minus the
SYN/FIN). Writes are kept as the `bytes` objects the user gave (small ones coalesced), so
a segment that lies inside one write is a zero-copy `memoryview` slice; only a segment
that straddles writes is joined.

`ReassemblyQueue` holds out-of-order data above RCV.NXT (RFC 9293 3.10.7.4 "segment
text": segments that are not next in sequence are held "for later processing") as
maximal contiguous runs. Each run knows when it last grew, which is exactly what RFC 2018
section 4 needs to order SACK blocks (the block holding the newest segment first, then
the most recently reported ones). Received payloads are copied into the queue because a
driver may reuse its receive buffer; segments of any size are handled in slices, never
byte by byte.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

__all__ = ["ReassemblyQueue", "SendBuffer"]

_COALESCE = 4096  # writes smaller than this are merged into a small previous write


class SendBuffer:
    """Unacknowledged and unsent user data, from `start` (SND.UNA's first data byte)
    to `end` (one past the last byte written)."""

    def __init__(self, start: int) -> None:
        self._chunks: list[bytes] = []
        self._starts: list[int] = []  # unwrapped sequence number of each chunk's byte 0
        self._first = 0  # index of the oldest chunk still (partly) unacknowledged
        self.start = start
        self.end = start

    def __len__(self) -> int:
        return self.end - self.start

    def append(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        data = bytes(data)  # the user may reuse its buffer; we keep an immutable copy
        if (
            len(data) < _COALESCE
            and len(self._chunks) > self._first
            and len(self._chunks[-1]) < _COALESCE
        ):
            self._chunks[-1] += data
        else:
            self._chunks.append(data)
            self._starts.append(self.end)
        self.end += len(data)

    def release(self, upto: int) -> None:
        """Forget bytes below `upto` (they were cumulatively acknowledged)."""
        upto = min(upto, self.end)
        if upto <= self.start:
            return
        self.start = upto
        chunks, starts = self._chunks, self._starts
        first = self._first
        while first < len(chunks) and starts[first] + len(chunks[first]) <= upto:
            first += 1
        self._first = first
        if first > 64 and first * 2 > len(chunks):  # compact now and then, O(1) amortized
            del chunks[:first]
            del starts[:first]
            self._first = 0

    def read(self, seq: int, length: int) -> bytes | memoryview:
        """`length` bytes starting at `seq` (must lie within [start, end))."""
        if seq < self.start or seq + length > self.end:
            raise ValueError(f"[{seq}, {seq + length}) outside [{self.start}, {self.end})")
        if length == 0:
            return b""
        chunks, starts = self._chunks, self._starts
        index = bisect_right(starts, seq, self._first) - 1
        offset = seq - starts[index]
        chunk = chunks[index]
        if offset + length <= len(chunk):
            if offset == 0 and length == len(chunk):
                return chunk
            return memoryview(chunk)[offset : offset + length]
        parts = [memoryview(chunk)[offset:]]
        remaining = length - (len(chunk) - offset)
        while remaining > 0:
            index += 1
            chunk = chunks[index]
            parts.append(memoryview(chunk)[:remaining])
            remaining -= min(remaining, len(chunk))
        return b"".join(parts)


class _Run:
    __slots__ = ("chunks", "end", "start", "touched")

    def __init__(self, start: int, end: int, chunks: list[bytes], touched: int) -> None:
        self.start = start
        self.end = end
        self.chunks = chunks
        self.touched = touched


class ReassemblyQueue:
    """Out-of-order received data as sorted, disjoint, non-adjacent runs."""

    def __init__(self) -> None:
        self._runs: list[_Run] = []
        self._ends: list[int] = []  # run ends, sorted, for bisection
        self._clock = 0
        self.bytes = 0  # payload bytes held

    def __len__(self) -> int:
        return len(self._runs)

    def __bool__(self) -> bool:
        return bool(self._runs)

    @property
    def ranges(self) -> list[tuple[int, int]]:
        return [(run.start, run.end) for run in self._runs]

    @property
    def highest(self) -> int | None:
        """One past the highest byte held, or None."""
        return self._runs[-1].end if self._runs else None

    def insert(self, seq: int, data: bytes | memoryview) -> int:
        """Add `data` at `seq`, keeping bytes already held where they overlap.
        Returns how many new bytes were stored."""
        end = seq + len(data)
        if end <= seq:
            return 0
        self._clock += 1
        runs, ends = self._runs, self._ends
        first = bisect_left(ends, seq)  # first run that ends at or after seq (touches)
        last = first
        while last < len(runs) and runs[last].start <= end:
            last += 1
        view = memoryview(data)
        if first == last:  # no run touches: a new island
            runs.insert(first, _Run(seq, end, [bytes(view)], self._clock))
            ends.insert(first, end)
            self.bytes += len(view)
            return len(view)
        touching = runs[first:last]
        chunks: list[bytes] = []
        position = min(seq, touching[0].start)
        added = 0
        for run in touching:
            if position < run.start:  # a gap between runs, inside [seq, end): new bytes
                chunks.append(bytes(view[position - seq : run.start - seq]))
                added += run.start - position
            chunks.extend(run.chunks)
            position = run.end
        if position < end:
            chunks.append(bytes(view[position - seq :]))
            added += end - position
        merged = _Run(min(seq, touching[0].start), max(end, touching[-1].end), chunks,
                      self._clock)
        runs[first:last] = [merged]
        ends[first:last] = [merged.end]
        self.bytes += added
        return added

    def pop_ready(self, rcv_nxt: int) -> bytes | None:
        """The bytes from `rcv_nxt` onward if the first run reaches it (after a hole was
        filled); that run leaves the queue. Data below `rcv_nxt` is dropped."""
        runs = self._runs
        while runs and runs[0].end <= rcv_nxt:  # wholly old (cannot happen normally)
            self.bytes -= runs[0].end - runs[0].start
            del runs[0]
            del self._ends[0]
        if not runs or runs[0].start > rcv_nxt:
            return None
        run = runs.pop(0)
        del self._ends[0]
        self.bytes -= run.end - run.start
        data = run.chunks[0] if len(run.chunks) == 1 else b"".join(run.chunks)
        skip = rcv_nxt - run.start
        return data[skip:] if skip else data

    def sack_blocks(self, limit: int) -> list[tuple[int, int]]:
        """Up to `limit` runs, most recently grown first (RFC 2018 section 4)."""
        if limit <= 0 or not self._runs:
            return []
        recent = sorted(self._runs, key=lambda run: run.touched, reverse=True)
        return [(run.start, run.end) for run in recent[:limit]]

    def clear(self) -> None:
        self._runs.clear()
        self._ends.clear()
        self.bytes = 0
