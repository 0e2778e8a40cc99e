"""The send half of a TCP connection: what to (re)transmit, when, and how ACKs change it.

Sequence numbers here are unwrapped (see `seqnum.py`). The send sequence space (RFC 9293
3.3.1) runs from SND.UNA (`snd_una`, oldest unacknowledged) to `snd_nxt` (one past the
highest sequence number ever sent, RFC 6675's HighData + 1; it never moves back, even
after a timeout) and on to `send_end` (everything written, plus one for a queued FIN).

Loss recovery is RFC 6675's conservative SACK-based algorithm:

- The scoreboard (`sack.py`) records SACKed ranges; `pipe()` is RFC 6675's SetPipe(): the
  un-SACKed bytes that are not lost, plus the bytes retransmitted in this episode.
- Fast recovery starts when DupThresh duplicate ACKs arrive or the first hole IsLost
  (section 5, step 4): RecoveryPoint = HighData, ssthresh = cwnd = FlightSize/2 (through
  the congestion controller), and the first hole is retransmitted at once.
- While cwnd - pipe >= 1 SMSS the sender runs NextSeg(): rule 1 (the first lost hole
  above HighRxt), else rule 2 (new data). Rules 3 and 4 (rescue retransmissions) are not
  implemented: they only speed up corner cases and Linux does not do them either.
- Recovery ends when the cumulative ACK reaches RecoveryPoint.
- Peers without SACK get Linux's "Reno emulation": each duplicate ACK counts as one
  SACKed segment in `pipe()`, and NewReno's partial-ACK rule (RFC 6582 3.2 step 3)
  marks the next segment lost, so the same loop drives both.

A retransmission timeout (RFC 6298 5.4-5.6, RFC 5681 3.1) backs the timer off, drops
cwnd to one segment and marks every un-SACKed outstanding byte lost; the same NextSeg
loop then resends them in slow start (the "loss" recovery state, Linux's CA_Loss). SACK
information survives a first timeout, as in Linux; a second timeout in a row clears the
scoreboard, RFC 2018 section 8's guard against a receiver that reneged.

Zero windows (RFC 9293 3.8.6.1): when data waits, nothing is in flight and the peer's
window is closed, the persist timer runs with exponential back-off; each expiry asks the
connection for a zero-window probe, an ACK with SEQ = SND.UNA - 1 that any TCP answers
with an ACK carrying its current window (what Linux's tcp_xmit_probe_skb sends; RFC 9293
allows probing with old or new data alike).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from impl.cc.base import CongestionControl

from .buffers import SendBuffer
from .config import TcpConfig
from .rtt import RttEstimator
from .sack import Scoreboard

__all__ = ["Sender", "Transmission"]


class Transmission(NamedTuple):
    """One segment the sender wants on the wire: `length` payload bytes from `seq`, with
    a FIN after them when `fin`."""

    seq: int
    length: int
    fin: bool
    retransmission: bool


Log = Callable[..., None]


class Sender:
    def __init__(self, iss: int, config: TcpConfig, rtt: RttEstimator, log: Log) -> None:
        self.config = config
        self.rtt = rtt
        self._log = log
        self.iss = iss
        self.snd_una = iss
        self.snd_nxt = iss
        self.buffer = SendBuffer(iss + 1)
        self.fin_seq: int | None = None  # sequence number the FIN occupies, once queued
        # Send window (RFC 9293 3.10.7.4): SND.WND, SND.WL1, SND.WL2, in bytes (scaled).
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_snd_wnd = 0
        self.sack_enabled = False
        self.smss = 536  # data bytes per full segment, fixed by the handshake
        self.cc: CongestionControl | None = None
        self.scoreboard = Scoreboard()
        # Loss recovery (RFC 6675 section 2 names in comments).
        self.recovery: str | None = None  # None, "fast" or "loss" (after an RTO)
        self.recovery_point = iss  # RecoveryPoint
        self.high_rxt = iss  # one past HighRxt: end of what this episode retransmitted
        self.lost_mark = iss  # holes below this are lost (RTO, or Reno emulation)
        self.dupacks = 0  # DupAcks
        self._force_retransmit = False  # RFC 6675 step 4.3: first one ignores cwnd
        self.consecutive_timeouts = 0
        self.cwnd_limited = False
        # Timers.
        self.rto_deadline: float | None = None
        self.persist_deadline: float | None = None
        self.persist_backoff = 0
        self.probe_due = False
        # One timed segment for RTT samples without timestamps (Karn, RFC 6298 3).
        self._timed: tuple[int, float] | None = None
        self.last_retransmission: tuple[float, int] = (-1.0, 1 << 64)  # (when, seq)
        # Counters (Linux MIB names where one exists).
        self.retrans_segs = 0  # RetransSegs
        self.fast_retrans = 0  # TCPFastRetrans
        self.timeouts = 0  # TCPTimeouts
        self.probes = 0

    # -- queries ---------------------------------------------------------------------

    @property
    def send_end(self) -> int:
        """One past the last sequence number we will ever send (data, then FIN)."""
        return self.buffer.end + (1 if self.fin_seq is not None else 0)

    @property
    def flight_size(self) -> int:
        return self.snd_nxt - self.snd_una

    @property
    def fin_acked(self) -> bool:
        return self.fin_seq is not None and self.snd_una > self.fin_seq

    @property
    def has_unsent(self) -> bool:
        return self.snd_nxt < self.send_end

    def lost_end(self) -> int:
        """Holes below this sequence number are lost (RFC 6675 IsLost, or marked)."""
        lost = self.lost_mark
        if self.sack_enabled and self.scoreboard:
            boundary = self.scoreboard.lost_boundary(self.config.dup_threshold, self.smss)
            if boundary is not None and boundary > lost:
                lost = boundary
        return min(max(lost, self.snd_una), self.snd_nxt)

    def pipe(self) -> int:
        """RFC 6675 SetPipe(), computed over ranges rather than octet by octet."""
        una, nxt = self.snd_una, self.snd_nxt
        lost = self.lost_end()
        rxt_end = min(max(self.high_rxt, una), nxt)
        if self.sack_enabled:
            board = self.scoreboard
            not_lost = (nxt - lost) - board.sacked_between(lost, nxt)
            retransmitted = (rxt_end - una) - board.sacked_between(una, rxt_end)
            return not_lost + retransmitted
        # Reno emulation: each duplicate ACK stands for one segment that left the network.
        sacked = min(self.dupacks * self.smss, max(0, nxt - una - self.smss))
        return max(0, nxt - lost - sacked) + (rxt_end - una)

    # -- ACK processing (RFC 9293 3.10.7.4 fifth check, RFC 5681, RFC 6675) ------------

    def process_ack(
        self,
        now: float,
        ack: int,
        seg_seq: int,
        window: int,
        sack_blocks: list[tuple[int, int]],
        dup_candidate: bool,
        ts_rtt: float | None,
    ) -> int:
        """Apply an acceptable ACK (SND.UNA - MAX.SND.WND <= ack <= SND.NXT, RFC 5961 5.2).
        `window` is already scaled; `dup_candidate` says the segment carried no data, SYN
        or FIN (RFC 5681 section 2's DUPLICATE ACKNOWLEDGMENT conditions b, c). Returns the
        bytes newly acknowledged."""
        acked = ack - self.snd_una
        # Window update, RFC 9293 3.10.7.4: only from a segment not older than the last
        # one that updated it (WL1/WL2), so reordered old ACKs cannot shrink it.
        window_changed = False
        if acked >= 0 and (
            self.snd_wl1 < seg_seq or (self.snd_wl1 == seg_seq and self.snd_wl2 <= ack)
        ):
            window_changed = window != self.snd_wnd
            self.snd_wnd = window
            self.snd_wl1 = seg_seq
            self.snd_wl2 = ack
            self.max_snd_wnd = max(self.max_snd_wnd, window)
        newly_sacked = 0
        if self.sack_enabled and sack_blocks:
            floor = max(ack, self.snd_una)
            for start, end in sack_blocks:
                # RFC 2018 section 5: ignore blocks below the cumulative ACK (D-SACKs,
                # RFC 2883) and blocks claiming data we never sent.
                if end <= floor or start >= end or end > self.snd_nxt:
                    continue
                newly_sacked += self.scoreboard.add(max(start, floor), end)
        if acked > 0:
            self._on_new_ack(now, ack, acked, ts_rtt)
        elif acked == 0 and self.snd_nxt > self.snd_una:
            if self.sack_enabled:
                duplicate = newly_sacked > 0  # RFC 6675 section 2 "DupAck"
            else:
                duplicate = dup_candidate and not window_changed  # RFC 5681 section 2
            if duplicate:
                self.dupacks += 1
        self._maybe_enter_recovery(now)
        return max(acked, 0)

    def _on_new_ack(self, now: float, ack: int, acked: int, ts_rtt: float | None) -> None:
        self.snd_una = ack
        self.buffer.release(ack)
        self.scoreboard.advance(ack)
        self.consecutive_timeouts = 0
        self.rtt.reset_backoff()
        sample = ts_rtt
        if self._timed is not None and ack >= self._timed[0]:
            if sample is None:
                sample = now - self._timed[1]
            self._timed = None
        if sample is not None:
            self.rtt.sample(sample)
        rtt = sample if sample is not None else self.rtt.srtt
        cc = self.cc
        if self.recovery is not None and ack >= self.recovery_point:
            kind = self.recovery
            self.recovery = None
            self.dupacks = 0
            if kind == "fast" and cc is not None:
                cc.on_recovery_exit(now)
            self._log("tcp:recovery_exit", now, kind=kind, snd_una=ack - self.iss)
        elif self.recovery is not None and not self.sack_enabled:
            # NewReno partial ACK (RFC 6582 3.2 step 3): the next segment is lost too.
            self.dupacks = max(0, self.dupacks - acked // self.smss)
            self.lost_mark = max(self.lost_mark, ack + self.smss)
        elif self.recovery is None:
            self.dupacks = 0
        # Grow the window outside fast recovery (RFC 6675 keeps it fixed there) and only
        # when it was in use (RFC 7661's concern, Linux's tcp_is_cwnd_limited).
        if cc is not None and self.recovery != "fast" and self.cwnd_limited:
            cc.on_ack(acked, rtt, now)
        # RFC 6298 5.2 / 5.3: stop the timer when all is acknowledged, else restart it.
        self.rto_deadline = now + self.rtt.rto if self.snd_una < self.snd_nxt else None

    def _maybe_enter_recovery(self, now: float) -> None:
        # RFC 6675 5.1 / RFC 6582 3.2: no new episode before the last RecoveryPoint is
        # acknowledged (this keeps one loss event from cutting the window twice).
        if self.recovery is not None or self.snd_una < self.recovery_point:
            return
        if self.snd_una >= self.snd_nxt or self.cc is None:
            return
        lost = self.sack_enabled and self.lost_end() > self.snd_una
        if self.dupacks < self.config.dup_threshold and not lost:
            return
        self.recovery = "fast"
        self.recovery_point = self.snd_nxt
        self.cc.on_loss(now, self.flight_size)
        self.lost_mark = max(self.lost_mark, self.snd_una + self.smss)
        self.high_rxt = self.snd_una
        self._force_retransmit = True
        self.fast_retrans += 1
        self._log(
            "tcp:fast_retransmit", now, seq=self.snd_una - self.iss, dupacks=self.dupacks,
            cwnd=self.cc.cwnd, ssthresh=self.cc.ssthresh,
            sacked=self.scoreboard.sacked_bytes,
        )

    # -- timers ----------------------------------------------------------------------

    def on_rto(self, now: float) -> bool:
        """The retransmission timer expired with data outstanding (RFC 6298 5.4-5.6).
        Returns False when the connection should give up (RFC 9293 3.8.3 R2)."""
        self.rto_deadline = None
        if self.snd_una >= self.snd_nxt:
            return True
        self.consecutive_timeouts += 1
        self.timeouts += 1
        if self.consecutive_timeouts > self.config.max_retransmits:
            return False
        first = self.rtt.backoff == 0
        self.rtt.back_off()
        if self.cc is not None:
            if first:
                self.cc.on_rto(now, self.flight_size)
            else:
                # RFC 5681 3.1: ssthresh stays put when the same data times out again.
                self.cc.cwnd = self.cc.mss
        if not first and self.sack_enabled:
            self.scoreboard.clear()  # RFC 2018 section 8: the receiver may have reneged
        self.recovery = "loss"
        self.recovery_point = self.snd_nxt
        self.lost_mark = self.snd_nxt
        self.high_rxt = self.snd_una
        self.dupacks = 0
        self._timed = None  # Karn: nothing sent so far can give a clean sample
        self._force_retransmit = True
        self.rto_deadline = now + self.rtt.rto
        self._log(
            "tcp:rto", now, seq=self.snd_una - self.iss, backoff=self.rtt.backoff, rto=self.rtt.rto,
            flight=self.flight_size, timeouts=self.consecutive_timeouts,
        )
        return True

    def on_persist(self, now: float) -> None:
        """The persist timer expired: ask for a zero-window probe, back off."""
        self.persist_backoff += 1
        self.probe_due = True
        self.probes += 1
        interval = self.rtt.base_rto * (2 ** min(self.persist_backoff, 32))
        self.persist_deadline = now + min(interval, self.config.max_rto)
        self._log("tcp:zero_window_probe", now, seq=self.snd_una - 1 - self.iss,
                  backoff=self.persist_backoff)

    # -- transmission ----------------------------------------------------------------

    def _piece(self, start: int, end: int, max_payload: int) -> tuple[int, bool]:
        """Payload length and FIN flag of a segment starting at `start` that may cover
        up to `end` (exclusive)."""
        data_end = min(end, self.buffer.end)
        length = max(0, min(data_end - start, max_payload))
        fin = self.fin_seq is not None and start + length == self.fin_seq and end > self.fin_seq
        return length, fin

    def plan(self, now: float, max_payload: int) -> list[Transmission]:
        """Decide the segments to send now (RFC 6675 section 5 step C's loop, which is
        also plain cwnd-limited sending when nothing is lost)."""
        out: list[Transmission] = []
        cc = self.cc
        if cc is None or max_payload <= 0:
            return out
        una = self.snd_una
        wnd_end = una + self.snd_wnd
        send_end = self.send_end
        pipe = self.pipe()
        cwnd = cc.cwnd
        lost = self.lost_end()
        blocked_by_cwnd = False
        while True:
            candidate: tuple[int, int, bool, bool] | None = None
            start = max(self.high_rxt, una)
            if start < lost:  # NextSeg rule 1: a lost hole
                hole = self.scoreboard.next_hole(start, lost) if self.sack_enabled else (
                    start, lost)
                if hole is None:
                    self.high_rxt = lost
                elif hole[0] < wnd_end or hole[0] == una:  # Linux's tcp_retransmit_skb
                    length, fin = self._piece(hole[0], hole[1], max_payload)
                    candidate = (hole[0], length, fin, True)
            if candidate is None and self.snd_nxt < send_end:  # NextSeg rule 2: new data
                nxt = self.snd_nxt
                usable = wnd_end - nxt
                length, fin = self._piece(nxt, min(send_end, wnd_end), max_payload)
                data_left = self.buffer.end - nxt
                if (
                    0 < length < max_payload
                    and length < data_left
                    and length < self.max_snd_wnd // 2
                    and nxt > una
                ):
                    # Sender-side SWS avoidance (RFC 9293 3.8.6.2.1): no runt segment
                    # just because the window is nearly closed; an ACK is on its way.
                    length, fin = 0, False
                if (length > 0 or fin) and usable > 0:
                    candidate = (nxt, length, fin, False)
            if candidate is None:
                break
            if not (pipe == 0 or cwnd - pipe >= self.smss or self._force_retransmit):
                blocked_by_cwnd = True
                break
            seq, length, fin, retransmission = candidate
            used = length + (1 if fin else 0)
            out.append(Transmission(seq, length, fin, retransmission))
            self._force_retransmit = False
            pipe += used
            if retransmission:
                self.high_rxt = seq + used
                self.retrans_segs += 1
                self.last_retransmission = (now, seq)
                if self._timed is not None and seq < self._timed[0]:
                    self._timed = None  # Karn's rule
            else:
                self.snd_nxt = seq + used
                if self._timed is None:
                    self._timed = (seq + used, now)
        self._force_retransmit = False
        self.cwnd_limited = blocked_by_cwnd or (cc.in_slow_start and 2 * pipe >= cwnd)
        if out and self.rto_deadline is None and self.snd_nxt > self.snd_una:
            self.rto_deadline = now + self.rtt.rto  # RFC 6298 5.1
        # Persist timer: something to send, nothing in flight, window shut.
        if self.snd_nxt < send_end and self.snd_una == self.snd_nxt and not out:
            if self.persist_deadline is None:
                interval = min(
                    self.rtt.base_rto * (2 ** min(self.persist_backoff, 32)), self.config.max_rto
                )
                self.persist_deadline = now + interval
        else:
            self.persist_deadline = None
            if out:
                self.persist_backoff = 0
        return out
