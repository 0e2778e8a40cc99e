"""Data-level reliability and flow control of an `MptcpConnection` (RFC 8684 3.3.4,
3.3.6), kept apart from `connection.py` so each file reads in one sitting.

Retransmission timer (3.3.6; Linux `mptcp_retransmit_timer` / `__mptcp_retrans`): a
subflow acknowledging bytes says nothing about the data level. The peer may drop them
there (Linux drops out-of-order data beyond the window it has announced, counting
MPTcpExtNoDSSInWindow, after its subflow acked it), a middlebox may eat the mapping, or
the subflow may die. So while data is outstanding (`snd_una < snd_nxt`) a timer runs;
each DATA_ACK advance restarts it. Its interval is the largest RTO of the usable
subflows that are not stale, with Linux's TCP_RTO_MIN (200 ms) as floor, doubled per
expiry without progress. On expiry the oldest unacknowledged chunk (the mapping that
covers `snd_una`, Linux's rtx head dfrag) is sent again, same DSNs, as a new mapping
on a usable subflow, preferably one that did not carry it; so are, up to 64 KB in all,
the later chunks its subflow delivered at the TCP level that are still not DATA_ACKed
(Linux resends only the head; a path that loses every mapping would then cost one
expiry per chunk). Nothing is resent while a checksum failure on a lone subflow is
being settled (3.7, `failure.py`). Counted as MPTCPRetrans per chunk (the Linux MIB of
data-level retransmissions) and DataRtoRetrans per expiry (ours, not a Linux MIB).

Zero window at the data level: when the peer's window is closed and nothing is
outstanding, the timer sends a one-byte probe past the edge (Linux's
`mptcp_sendmsg_frag` does the same); the peer's answer carries its window.

Receive window (3.3.4): the window field of every subflow segment is the data-level
window, relative to the DATA_ACK on that segment: the data-level buffer
(`MptcpConfig.receive_buffer`) minus the bytes received but not read and the bytes
held out of order. Its right edge never moves left and opens in steps of at least
one MSS (RFC 9293 3.8.6.2.2 silly-window avoidance). Out-of-order data that starts
past that edge is dropped and counted NoDSSInWindow, as Linux does
(`mptcp_data_queue_ofo`); in-order data is always taken.
"""

from __future__ import annotations

import dataclasses

from impl.tcp.segment import Segment
from impl.wire.mptcp_options import Dss
from impl.wire.tcp import TcpFlags

from .dss import Mapping, mapping_checksum, widen
from .subflow import Subflow

__all__ = ["DataLevelMixin"]

RTO_FLOOR = 0.2  # Linux TCP_RTO_MIN: the data-level timer never fires sooner
RTO_CEILING = 60.0
MAX_BACKOFF = 6
RETRANSMIT_BURST = 64 << 10  # data-level bytes resent per timer expiry, at most


class DataLevelMixin:
    """Data-level retransmission timer and connection-level receive window."""

    # -- send side: the retransmission timer (3.3.6) --------------------------------------

    def _data_rto(self) -> float:
        # Stale subflows do not count (Linux `mptcp_timeout_from_subflow` skips those
        # with a stale_count): their backed-off RTO would hold up the others.
        usable = [sf for sf in self.subflows if sf.usable and not sf.stale]
        base = max([RTO_FLOOR] + [sf.tcp.rtt.rto for sf in usable])
        return min(RTO_CEILING, base * (1 << min(self._rtx_backoff, MAX_BACKOFF)))

    def _window_blocked(self) -> bool:
        """Data waits only because the peer's data-level window is closed."""
        return (self.snd_una >= self.snd_nxt and self.snd_nxt >= self.send_edge
                and self.snd_nxt < self.snd_buffer.end)

    def _arm_data_timer(self, now: float) -> None:
        """Start the timer when data became outstanding (or the window closed); stop it
        when nothing is (the DATA_FIN has its own timer, `_fin_deadline`)."""
        if self.fallback or self.is_closed:
            self._rtx_deadline = None
        elif self.snd_una < self.snd_nxt or self._window_blocked():
            if self._rtx_deadline is None:
                self._rtx_deadline = now + self._data_rto()
        else:
            self._rtx_deadline = None
            self._rtx_backoff = 0

    def _on_data_ack_progress(self, now: float) -> None:
        """The DATA_ACK moved: restart the timer, forget the back-off (Linux
        `__mptcp_clean_una` resets the retransmit timer). A window probe that was
        taken while the window stays closed keeps the back-off, as TCP's persist timer
        does, so a reader that does not read gets a byte only now and then."""
        if not self._window_blocked():
            self._rtx_backoff = 0
        self._rtx_deadline = None
        self._arm_data_timer(now)

    def _on_data_timer(self, now: float) -> None:
        self._rtx_deadline = None
        if self.fallback or self.is_closed:
            return
        if self.snd_una < self.snd_nxt:
            if not self._checksum_failure_possible():
                self._retransmit_head()
        elif self._window_blocked():
            self._window_probe()
        self._rtx_backoff += 1  # even with no subflow to send on: no busy timer
        self._arm_data_timer(now)

    def _checksum_failure_possible(self) -> bool:
        """3.7: with checksums on a subflow that was never joined, a DATA_ACK that stalls
        while TCP delivers means the peer's checksum failed: its MP_FAIL and our
        infinite mapping settle that, and a resent chunk would reach the peer's byte
        stream twice once it maps the subflow straight through."""
        return (self.mp_fail_dsn is not None or self.mp_fail_received
                or (self.checksums and len(self.subflows) == 1))

    def _head_chunk(self) -> tuple[int, int, list[Subflow]]:
        """The oldest unacknowledged chunk: from `snd_una` to the end of the mapping
        that covers it, and the subflows that carried it."""
        start = self.snd_una
        end = min(self.snd_nxt, start + 0xFFFF)
        carriers = []
        for subflow in self.subflows:
            for record in subflow.records.records:
                if record.dsn <= start < record.dsn_end:
                    carriers.append(subflow)
                    end = min(end, record.dsn_end)
                    break
        return start, end, carriers

    def _retransmit_ranges(self) -> tuple[list[tuple[int, int]], list[Subflow]]:
        """The head chunk, then (up to RETRANSMIT_BURST bytes in all) the later chunks
        its subflow carried and had acknowledged at the TCP level yet are still not
        DATA_ACKed: when the head was lost at the data level after its subflow
        delivered it, they most likely were too (a path that strips or mangles
        mappings, or a peer dropping out-of-window data); chunks the subflow has not
        delivered yet are left to its own TCP recovery."""
        start, end, carriers = self._head_chunk()
        ranges = [(start, end)] if end > start else []
        budget = RETRANSMIT_BURST - (end - start)
        if carriers and budget > 0:
            carrier = carriers[0]
            delivered = carrier.tcp.sender.snd_una - carrier.tcp.iss
            for record in sorted(carrier.records.records, key=lambda r: r.dsn):
                if budget <= 0:
                    break
                if record.ssn_end <= delivered and record.dsn >= end and (
                    record.dsn_end <= self.snd_nxt
                ):
                    take = min(record.length, budget)
                    ranges.append((record.dsn, record.dsn + take))
                    budget -= take
        return ranges, carriers

    def _retransmit_head(self) -> bool:
        """Queue the chunks for reinjection. `_schedule` maps them like new data (each
        mapping must start a segment of its own, so it waits for room), on a subflow
        that did not carry the head when there is one (`_rtx_avoid`)."""
        ranges, carriers = self._retransmit_ranges()
        # Not twice: an earlier expiry's chunk may still wait for room.
        ranges = [(a, b) for a, b in ranges
                  if not any(s <= a and b <= e for s, e in self.reinject)]
        if not ranges or not any(sf.usable for sf in self.subflows):
            return False
        self._rtx_avoid = carriers
        self.reinject.extend(ranges)
        self.reinject.sort()
        self.counters.inc("MPTCPRetrans", len(ranges))
        self.counters.inc("DataRtoRetrans")
        return True

    def _window_probe(self) -> None:
        """One byte past the peer's closed data-level window (Linux: "zero window and
        all data acked? probe"); its DATA_ACK brings the current window. If the
        subflow's TCP window is closed too, TCP holds the byte and probes on its own
        (persist timer) until the window opens."""
        usable = [sf for sf in self.subflows if sf.usable]
        if not usable:
            return
        subflow = min(usable, key=lambda sf: (sf.stale, sf.backup, sf.smoothed_rtt))
        sender = subflow.tcp.sender
        if sender.snd_nxt < sender.buffer.end:
            return  # earlier bytes still wait there: a mapping starts a segment
        start = self.snd_nxt
        data = self.snd_buffer.read(start, 1)
        ssn = subflow.next_ssn
        checksum = mapping_checksum(start, ssn, 1, data) if self.checksums else None
        subflow.records.add(Mapping(ssn, start, 1, checksum))
        subflow.tcp.send(data)
        self.snd_nxt = start + 1

    # -- receive side: the connection-level window (3.3.4) -------------------------------

    def _rcv_free_space(self) -> int:
        reassembly = self.reassembly
        held = len(self.received) + (reassembly.queue.bytes if reassembly else 0)
        return max(0, self.receive_buffer - held)

    def _open_rcv_window(self) -> None:
        """Move the right edge of our data-level window if silly-window avoidance lets
        it (steps of at least min(buffer / 2, MSS)); it never moves left."""
        reassembly = self.reassembly
        if reassembly is None:
            return
        if self.rcv_wnd_edge is None:
            self.rcv_wnd_edge = reassembly.rcv_nxt + self.receive_buffer
        potential = reassembly.rcv_nxt + self._rcv_free_space()
        step = min(self.receive_buffer // 2, self.config.tcp.mss)
        if potential - self.rcv_wnd_edge >= step:
            self.rcv_wnd_edge = potential

    def _window_update_after_read(self, nbytes: int) -> None:
        """The application read `nbytes`: if that reopens the window by enough to be
        worth a segment (Linux `mptcp_cleanup_rbuf`), ACK on every usable subflow, so
        each subflow's sender sees the new window."""
        reassembly = self.reassembly
        if nbytes == 0 or reassembly is None or self.rcv_wnd_edge is None:
            return
        potential = reassembly.rcv_nxt + self._rcv_free_space()
        opened = potential - self.rcv_wnd_edge
        window = self.rcv_wnd_edge - reassembly.rcv_nxt
        if opened >= min(self.receive_buffer // 2, self.config.tcp.mss) and opened >= window:
            for subflow in self.subflows:
                if subflow.usable:
                    subflow.tcp.request_ack()

    def _in_rcv_window(self, dsn: int) -> bool:
        """Out-of-order data must start inside the window we announced (Linux drops the
        rest, MPTcpExtNoDSSInWindow); in-order data is always taken."""
        reassembly = self.reassembly
        return (self.rcv_wnd_sent is None or dsn <= reassembly.rcv_nxt
                or dsn < self.rcv_wnd_sent)

    def _with_data_window(self, subflow: Subflow, segment: Segment) -> Segment:
        """Put the data-level window into the segment's window field, relative to the
        DATA_ACK it carries (3.3.4)."""
        reassembly = self.reassembly
        header = segment.header
        negotiated = subflow.tcp.negotiated
        if reassembly is None or negotiated is None or header.flags & (
            TcpFlags.SYN | TcpFlags.RST
        ):
            return segment
        self._open_rcv_window()
        data_ack = reassembly.rcv_nxt
        for option in header.options:
            if isinstance(option, Dss) and option.data_ack is not None:
                bits = 64 if option.data_ack_is_64bit else 32
                data_ack = widen(option.data_ack, bits, reassembly.rcv_nxt)
                break
        shift = negotiated.rcv_shift
        window = max(0, self.rcv_wnd_edge - data_ack)
        # Round up so the announced edge never retreats (as impl.tcp.receiver does).
        field = min((window + (1 << shift) - 1) >> shift, 0xFFFF)
        self.rcv_wnd_sent = max(self.rcv_wnd_sent or 0, data_ack + (field << shift))
        if field == header.window:
            return segment
        return Segment(dataclasses.replace(header, window=field), segment.payload)
