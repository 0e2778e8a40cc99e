"""Building the segments a connection sends: SYN and SYN/ACK options, timestamps, the
hook's options, SACK blocks within the 40-byte budget, the window field, and the order
in which control, data, probes and pure ACKs leave (`segments_to_send`).

A mixin of `TcpConnection` (kept apart so each file reads in one sitting): it reads the
connection's negotiated options, sender and receiver, and changes nothing but ACK
bookkeeping (every segment carries our latest ACK, so sending one clears the pending
ACK and the delayed-ACK timer).

Option space (RFC 9293 3.1: 40 bytes): timestamps first (12 bytes with alignment, RFC
7323 section 3 and Appendix A), then the hook (MPTCP) with what is left, then as many
SACK blocks as still fit (RFC 2018 section 3: 3 with timestamps, 4 without). The payload
of a data segment is the peer's MSS minus the padded option bytes (RFC 9293 3.7.1:
the MSS counts no options), sized before the hook is asked, from its `option_space`.
"""

from __future__ import annotations

from impl.wire.tcp import TcpFlags, TcpHeader
from impl.wire.tcp_options import MAX_OPTIONS_LENGTH, NoOperation, Timestamps

from .hooks import SegmentKind
from .options import TIMESTAMPS_LENGTH, sack_option, syn_options
from .segment import Segment, options_length, padded_length
from .seqnum import SEQ_MASK, to_wire
from .state import SENDING_STATES, TcpState

__all__ = ["OutputMixin"]

_NOP = NoOperation()
S = TcpState
_FIN, _PSH, _ACK = int(TcpFlags.FIN), int(TcpFlags.PSH), int(TcpFlags.ACK)


class OutputMixin:
    """Segment construction for `TcpConnection` (see the module docstring)."""

    def _tsval(self, now: float) -> int:
        return (int(now * 1000) + self._ts_offset) & SEQ_MASK

    def _control(self, seq: int, flags: TcpFlags, ack: int = 0) -> Segment:
        """A bare control segment (RST) with explicit numbers (unwrapped or wire)."""
        return Segment(TcpHeader(
            self.local_port, self.remote_port, to_wire(seq), to_wire(ack), flags, 0))

    def _build_syn(self, now: float) -> Segment:
        receiver = self.receiver
        synack = self.state is S.SYN_RECEIVED
        options = syn_options(
            self.config, self._our_shift, self._tsval(now),
            self.peer_syn if synack else None, self.ts_recent if synack else 0,
        )
        kind = SegmentKind.SYNACK if synack else SegmentKind.SYN
        space = MAX_OPTIONS_LENGTH - options_length(options)
        options += self.hook.options_for_segment(kind, 0, 0, space)
        flags = TcpFlags.SYN | (TcpFlags.ACK if synack else 0)
        ack = to_wire(receiver.rcv_nxt) if synack else 0
        if synack:
            receiver.ack_sent()
        window = min(self.config.receive_buffer, 0xFFFF)
        header = TcpHeader(self.local_port, self.remote_port, to_wire(self.iss), ack,
                           flags, window, options=tuple(options))
        return Segment(header)

    def _segment(
        self,
        now: float,
        seq: int,
        flags: int,
        payload: bytes | memoryview,
        sack_blocks: int,
        hook_space: int | None = None,
    ) -> Segment:
        """An ACK-bearing segment with our timestamps, hook options and up to
        `sack_blocks` SACK blocks. `hook_space` caps the hook's options on a data segment
        (the payload was sized for it); otherwise the hook may use all that is left."""
        receiver = self.receiver
        options: list = []
        if self.negotiated.timestamps:
            options += [_NOP, _NOP, Timestamps(self._tsval(now), self.ts_recent)]
        used = options_length(options)
        kind = SegmentKind.DATA if payload else SegmentKind.ACK
        space = MAX_OPTIONS_LENGTH - used
        if hook_space is not None:
            space = min(space, hook_space)
        hooked = self.hook.options_for_segment(kind, seq - self.iss, len(payload), space)
        if hooked:
            hooked_length = options_length(hooked)
            if hooked_length > space:  # a hook bug: it would overflow the MSS or 40 bytes
                raise ValueError(f"hook options take {hooked_length} bytes; {space} allowed")
            options += hooked
            used += hooked_length
        if sack_blocks and receiver.queue:
            blocks = [(to_wire(start), to_wire(end))
                      for start, end in receiver.sack_blocks(sack_blocks)]
            room = MAX_OPTIONS_LENGTH - used
            count = min(len(blocks), (room - 2) // 8)
            if count > 0:
                aligned = used % 4 == 0 and 4 + 8 * count <= room
                options += sack_option(blocks[:count], aligned)
        window = receiver.advertise()
        header = TcpHeader(self.local_port, self.remote_port, to_wire(seq),
                           to_wire(receiver.rcv_nxt), flags | _ACK, window,
                           options=tuple(options))
        receiver.ack_sent()
        return Segment(header, payload)

    def _sack_budget(self, hook_space: int) -> int:
        """How many SACK blocks to put on segments now (RFC 2018 3: as many as fit)."""
        if not self.negotiated.sack or not self.receiver.queue:
            return 0
        room = MAX_OPTIONS_LENGTH - hook_space - (
            TIMESTAMPS_LENGTH if self.negotiated.timestamps else 0)
        return max(0, min(4, len(self.receiver.queue), (room - 4) // 8))

    def segments_to_send(self, now: float) -> list[Segment]:
        """Everything the connection wants on the wire now, in order."""
        self._now = now
        out, self._output = self._output, []
        state = self.state
        if state is S.CLOSED:
            return out
        if self._syn_due:
            self._syn_due = False
            out.append(self._build_syn(now))
        receiver = self.receiver
        sender = self.sender
        if state in SENDING_STATES and sender.cc is not None:
            hook_space = self.hook.option_space(SegmentKind.DATA)
            blocks = self._sack_budget(hook_space)
            options_bytes = (TIMESTAMPS_LENGTH if self.negotiated.timestamps else 0) + (
                hook_space + (4 + 8 * blocks if blocks else 0))
            max_payload = self.negotiated.send_mss - padded_length(options_bytes)
            buffer_end = sender.buffer.end
            for item in sender.plan(now, max_payload):
                flags = _ACK  # ints, not TcpFlags: IntFlag arithmetic is slow per segment
                if item.fin:
                    flags |= _FIN
                if item.length and item.seq + item.length == buffer_end:
                    flags |= _PSH  # the last queued byte: push (RFC 9293 3.9.1.2)
                payload = sender.buffer.read(item.seq, item.length)
                out.append(self._segment(now, item.seq, flags, payload, blocks,
                                         hook_space if item.length else None))
                if item.retransmission:
                    self._log("tcp:retransmit", now, seq=item.seq - self.iss,
                              length=item.length, fin=item.fin, recovery=sender.recovery)
        if sender.probe_due:
            sender.probe_due = False
            if receiver is not None and state in SENDING_STATES:
                out.append(self._segment(now, sender.snd_una - 1, _ACK, b"", 0))
        if receiver is not None and receiver.ack_now and state is not S.SYN_SENT:
            # <SEQ=SND.NXT> unless that lies past the peer's window (Linux's
            # tcp_acceptable_seq), then the window's right edge.
            seq = min(sender.snd_nxt, sender.snd_una + sender.snd_wnd)
            if self.negotiated is not None:
                out.append(self._segment(now, max(seq, sender.snd_una), _ACK, b"",
                                         self._sack_budget(self.hook.option_space(
                                             SegmentKind.ACK))))
        return out
