"""The receive half of a TCP connection: sequence acceptability, reassembly, the window
we advertise, SACK blocks we report, and when to acknowledge.

Sequence numbers are unwrapped (see `seqnum.py`). RCV.NXT is `rcv_nxt`; the right edge
of the window we last advertised is `rcv_adv` (RCV.NXT + RCV.WND at that time). The
right edge never moves left (RFC 9293 3.8.6.2.2 / RFC 7323 2.4: shrinking the window is
strongly discouraged), and it moves right only in steps of at least min(buffer/2, MSS),
the receiver's silly-window-syndrome avoidance of RFC 9293 3.8.6.2.2.

Acknowledgment policy (RFC 9293 3.8.6.3, RFC 5681 4.2, RFC 1122 4.2.3.2): ACK at once
for out-of-order data (a duplicate ACK with SACK blocks), for data that fills a hole,
for a FIN, and when at least two full-sized segments arrived since the last ACK; else
start the delayed-ACK timer. "Full-sized" is the largest payload the peer has sent so
far (Linux's rcv_mss), since the peer's segments are its MSS minus its options.
"""

from __future__ import annotations

from .buffers import ReassemblyQueue
from .config import TcpConfig

__all__ = ["Receiver"]


class Receiver:
    def __init__(self, irs: int, config: TcpConfig) -> None:
        self.config = config
        self.irs = irs
        self.rcv_nxt = irs + 1
        self.queue = ReassemblyQueue()
        self.buffer_size = config.receive_buffer
        self.unconsumed = 0  # delivered to the user, not yet consumed (manual_consume)
        self.wscale = 0  # our shift (RCV.WIND.SHIFT), fixed by the handshake
        self.rcv_adv = self.rcv_nxt  # right edge last advertised
        self.fin_seq: int | None = None  # where the peer's FIN sits, once seen
        self.fin_received = False  # rcv_nxt has passed the FIN
        self.rcv_mss = min(config.mss, 536)  # largest payload seen (estimate)
        # ACK bookkeeping.
        self.ack_now = False
        self.unacked_bytes = 0
        self.delack_deadline: float | None = None
        self.last_ack_sent = self.rcv_nxt  # Last.ACK.sent of RFC 7323 4.3

    # -- window ----------------------------------------------------------------------

    @property
    def free_space(self) -> int:
        return max(0, self.buffer_size - self.unconsumed - self.queue.bytes)

    @property
    def window(self) -> int:
        """RCV.WND as last advertised (what acceptability tests use)."""
        return max(0, self.rcv_adv - self.rcv_nxt)

    def advertise(self) -> int:
        """Move the right edge if SWS avoidance allows, and return the window field
        (scaled, at most 65535) for a segment sent now."""
        potential = self.rcv_nxt + self.free_space
        if potential > self.rcv_adv:
            # Open in big steps only (RFC 9293 3.8.6.2.2); buffer >= MSS guarantees a
            # reader that consumed everything always gets a step this large.
            if potential - self.rcv_adv >= min(self.buffer_size // 2, self.config.mss):
                self.rcv_adv = potential
        window = self.rcv_adv - self.rcv_nxt
        # Round up to the scale unit rather than down, so the advertised edge never
        # retreats (Linux does the same, ALIGN in tcp_select_window).
        field = min((window + (1 << self.wscale) - 1) >> self.wscale, 0xFFFF)
        self.rcv_adv = max(self.rcv_adv, self.rcv_nxt + (field << self.wscale))
        return field

    def window_update_due(self) -> bool:
        """After the user consumed data: would a window update reopen the window by
        enough to be worth a segment (RFC 9293 3.8.6.2.2, Linux tcp_cleanup_rbuf)?"""
        potential = self.rcv_nxt + self.free_space
        opened = potential - self.rcv_adv
        return opened >= min(self.buffer_size // 2, self.config.mss) and (
            opened >= self.window
        )

    # -- acceptability (RFC 9293 3.10.7.4, first check) -------------------------------

    def acceptable(self, seq: int, seg_len: int) -> bool:
        wnd = self.window
        nxt = self.rcv_nxt
        if seg_len == 0:
            return seq == nxt if wnd == 0 else nxt <= seq < nxt + wnd
        if wnd == 0:
            return False
        last = seq + seg_len - 1
        return (nxt <= seq < nxt + wnd) or (nxt <= last < nxt + wnd)

    # -- data --------------------------------------------------------------------------

    def receive(self, seq: int, payload: bytes | memoryview, fin: bool) -> list[tuple[bytes, int]]:
        """Take the text (and FIN) of an acceptable segment. Returns the in-order pieces
        now deliverable as (data, relative sequence number)."""
        length = len(payload)
        if length > self.rcv_mss:
            self.rcv_mss = min(length, self.config.mss)
        if fin and self.fin_seq is None:
            self.fin_seq = seq + length
        delivered: list[tuple[bytes, int]] = []
        # Trim to the window: bytes below RCV.NXT were received already, bytes past the
        # right edge are not ours to keep (RFC 9293 3.10.7.4 "trim").
        start = max(seq, self.rcv_nxt)
        end = min(seq + length, self.rcv_adv)
        if self.fin_seq is not None:
            end = min(end, self.fin_seq)
        had_holes = bool(self.queue)
        if end > start:
            view = memoryview(payload)[start - seq : end - seq]
            if start == self.rcv_nxt:
                delivered.append((bytes(view), start - self.irs))
                self.rcv_nxt = end
                ready = self.queue.pop_ready(self.rcv_nxt)
                if ready is not None:
                    delivered.append((ready, self.rcv_nxt - self.irs))
                    self.rcv_nxt += len(ready)
                if had_holes:
                    self.ack_now = True  # RFC 5681 4.2: ACK a segment that fills a hole
            else:
                self.queue.insert(start, view)
                self.ack_now = True  # out of order: duplicate ACK at once (RFC 5681 4.2)
        elif length and seq + length <= self.rcv_nxt:
            self.ack_now = True  # an old duplicate: the peer may have missed our ACK
        elif length and seq > self.rcv_nxt:
            self.ack_now = True
        if self.fin_seq is not None and not self.fin_received and self.rcv_nxt == self.fin_seq:
            self.rcv_nxt += 1  # the FIN occupies one sequence number
            self.fin_received = True
            self.ack_now = True
        for data, _ in delivered:
            self.unacked_bytes += len(data)
            if not self.config.manual_consume:
                continue
            self.unconsumed += len(data)
        if self.unacked_bytes >= 2 * self.rcv_mss:
            self.ack_now = True  # RFC 9293 3.8.6.3: at least every second full segment
        return delivered

    def consume(self, nbytes: int) -> None:
        self.unconsumed = max(0, self.unconsumed - nbytes)

    def sack_blocks(self, limit: int) -> list[tuple[int, int]]:
        return self.queue.sack_blocks(limit)

    # -- ACK bookkeeping ---------------------------------------------------------------

    def ack_sent(self) -> None:
        """Any segment carrying our current ACK went out."""
        self.ack_now = False
        self.unacked_bytes = 0
        self.delack_deadline = None
        self.last_ack_sent = self.rcv_nxt

    def schedule_ack(self, now: float) -> None:
        """Received data that does not need an immediate ACK: start the delayed-ACK
        timer if it is not running."""
        if not self.ack_now and self.delack_deadline is None and self.unacked_bytes:
            self.delack_deadline = now + self.config.delayed_ack
