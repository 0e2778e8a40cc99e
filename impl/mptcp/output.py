"""Output of an `MptcpConnection`, kept apart so each file reads in one sitting (as
`impl.tcp.output` is for TCP): the MPTCP options each subflow segment carries, the
scheduler loop that hands data-level bytes to subflows, DATA_FIN (re)transmission, and
the segments the connection emits (RSTs dressed with MP_TCPRST / MP_FASTCLOSE).

Options by segment (RFC 8684): SYN and SYN/ACK carry MP_CAPABLE (3.1) or MP_JOIN (3.2);
the joiner's ACKs carry MP_JOIN's HMAC-A until the fourth ACK (3.2); the initiator's
ACKs carry MP_CAPABLE with both keys until a DSS arrives, its first data segment the
22/24-byte form (3.1); everything else a DSS with the 64-bit DATA_ACK and, on data, the
mapping of the bytes' record (3.3), or a bare DATA_FIN on a pure ACK (3.3.3).
"""

from __future__ import annotations

import dataclasses

from impl.tcp.hooks import SegmentKind
from impl.tcp.segment import Segment, options_length
from impl.tcp.state import TcpState
from impl.wire.mptcp_options import DataSequenceMapping, Dss, MpPrio, MpTcpRst
from impl.wire.tcp import TcpFlags

from . import handshake
from .dss import MASK64, Mapping, mapping_checksum
from .subflow import DATA_ACK_SPACE, DSS_SPACE, Subflow

__all__ = ["OutputMixin"]

_MAX_MAPPING = 0xFFFF  # data-level length is 16 bits (3.3, figure 5)
S = TcpState


class OutputMixin:
    """Segment and option construction for `MptcpConnection`."""

    # -- options we send ----------------------------------------------------------------------

    def _data_ack(self) -> int | None:
        return self.reassembly.rcv_nxt if self.reassembly is not None else None

    def options_for(self, subflow: Subflow, kind: SegmentKind, relative_seq: int,
                    length: int, space: int) -> tuple:
        join = subflow.join
        if kind is SegmentKind.SYN:
            if join is None:
                self.counters.inc("MPCapableSYNTX")
                return (handshake.syn_option(self.checksums),)
            return (join.syn_option(self.remote_token),)
        if kind is SegmentKind.SYNACK:
            if join is None:
                return (handshake.syn_ack_option(self.local_key, self.checksums,
                                                 self.config.no_initial_join),)
            return (join.syn_ack_option(self.local_key, self.remote_key),)
        if join is not None and join.active and not join.fourth_ack_seen:
            # 3.2: the third ACK (repeated until the listener acknowledges it).
            if kind is SegmentKind.ACK:
                return (join.third_ack_option(self.local_key, self.remote_key),)
        record = subflow.records.find(relative_seq) if kind is SegmentKind.DATA else None
        if subflow.initial and self.client and not self.fully_established:
            if kind is SegmentKind.ACK:
                return (handshake.third_ack_option(self.local_key, self.remote_key,
                                                   self.checksums),)
            if record is not None and record.ssn == 1 and relative_seq == 1:
                return (handshake.third_ack_option(
                    self.local_key, self.remote_key, self.checksums, record.length,
                    record.checksum),)
        if kind is SegmentKind.ACK and self.mp_fail_dsn is not None:
            fail = self.mp_fail_option()  # 3.7: repeated until the infinite mapping
            if fail is not None:
                data_ack = self._data_ack()
                return (fail, Dss(data_ack=data_ack & MASK64)) if data_ack is not None \
                    else (fail,)
        if kind is SegmentKind.ACK and subflow.prio_pending is not None:
            option = MpPrio(subflow.prio_pending)
            subflow.prio_pending = None
            self.counters.inc("MPPrioTx")
            return (option,)
        data_ack = self._data_ack()
        if kind is SegmentKind.ACK and self._ready_to_join and self.signals.has_pending(
            self._now
        ):
            signal = self.signals.next_option(self._now, self.local_key, self.remote_key)
            if signal is not None:
                # 3.4: ADD_ADDR / REMOVE_ADDR on a pure ACK, with the DATA_ACK if it fits.
                with_ack = (signal, Dss(data_ack=data_ack & MASK64))
                return with_ack if options_length(with_ack) <= space else (signal,)
        mapping = None
        data_fin = False
        if record is not None:
            mapping = DataSequenceMapping(record.dsn & MASK64, record.ssn & 0xFFFFFFFF,
                                          record.length, record.checksum)
        elif kind is SegmentKind.ACK and self._data_fin_due():
            # 3.3.3: a bare DATA_FIN: subflow sequence 0, data-level length 1.
            checksum = mapping_checksum(self.fin_dsn, 0, 1, b"") if self.checksums else None
            mapping = DataSequenceMapping(self.fin_dsn & MASK64, 0, 1, checksum)
            data_fin = self.data_fin_on_wire = True
        if data_ack is None and mapping is None:
            return ()
        option = Dss(data_ack=data_ack & MASK64 if data_ack is not None else None,
                     mapping=mapping, data_fin=data_fin)
        if options_length((option,)) > space:  # never expected: DSS_SPACE is reserved
            option = Dss(data_ack=data_ack & MASK64) if data_ack is not None else None
            return (option,) if option is not None else ()
        return (option,)

    def ack_option_space(self, subflow: Subflow) -> int:
        """Option bytes the next pure ACK of `subflow` may need: a DATA_ACK alone, or
        the full DSS space when a handshake option, MP_PRIO, an address signal or a
        DATA_FIN is due (what `options_for` would then return)."""
        join = subflow.join
        special = (
            (join is not None and join.active and not join.fourth_ack_seen)
            or (subflow.initial and self.client and not self.fully_established)
            or subflow.prio_pending is not None
            or (self.mp_fail_dsn is not None and not self.fallback)
            or self._data_fin_due()
            or (self._ready_to_join and self.signals.has_pending(self._now))
        )
        return DSS_SPACE if special else DATA_ACK_SPACE

    def _data_fin_due(self) -> bool:
        return (self.fin_dsn is not None and not self.fin_acked
                and self.snd_nxt >= self.fin_dsn and not self.reinject)

    # -- output -------------------------------------------------------------------------

    def _schedule(self, now: float) -> None:
        """Hand data-level bytes to subflows (3.3.8 scheduling, 3.3.6 reinjection)."""
        while True:
            if self.reinject:
                start, end = self.reinject[0]
                reinjection = True
            else:
                self._rtx_avoid = []
                start = self.snd_nxt
                end = min(self.snd_buffer.end, self.send_edge)
                reinjection = False
            if end <= start:
                return
            # Stale subflows (retransmission timeouts in a row: the path may be dark)
            # are left out while any other subflow is usable (Linux: stale_loss_cnt).
            usable = [sf for sf in self.subflows if sf.usable]
            fresh = [sf for sf in usable if not sf.stale] or usable
            if reinjection and self._rtx_avoid:
                # 3.3.6: a chunk the data-level timer resends goes, when it can, on
                # a subflow that did not carry it (it may not have got through there).
                fresh = [sf for sf in fresh if sf not in self._rtx_avoid] or fresh
            candidates = [sf for sf in fresh if sf.room() > 0]
            regular_alive = any(not sf.backup for sf in fresh)
            subflow = self.scheduler.choose(candidates, regular_alive)
            if subflow is None:
                return
            unit = subflow.max_payload
            # One segment more than the window: the subflow's TCP then sees itself
            # cwnd-limited, without which its congestion window does not grow (RFC
            # 7661; impl.tcp's cwnd_limited). The extra segment leaves first thing.
            room = subflow.room() + unit
            length = min(end - start, room, (_MAX_MAPPING // unit) * unit)
            if length < end - start:
                length -= length % unit  # whole segments only, unless it is the tail
                if length == 0:
                    if subflow.tcp.sender.flight_size:
                        return  # wait for room for a full segment
                    length = min(end - start, room)
            data = self.snd_buffer.read(start, length)
            checksum = None
            ssn = subflow.next_ssn
            if self.checksums:
                checksum = mapping_checksum(start, ssn, length, data)
            subflow.records.add(Mapping(ssn, start, length, checksum))
            subflow.tcp.send(data)
            if reinjection:
                if start + length >= end:
                    self.reinject.pop(0)
                else:
                    self.reinject[0] = (start + length, end)
            else:
                self.snd_nxt = start + length

    def packets_to_send(self, now: float) -> list[tuple[object, object, Segment]]:
        self._now = now
        if not self.fallback:
            if self._pending_joins and self._may_open_joins:
                pending, self._pending_joins = self._pending_joins, []
                for subflow, remote_port in pending:
                    self._start_subflow(subflow, remote_port, now)
            self._schedule(now)
            if self._data_fin_due() and self._fin_deadline is None:
                self._send_data_fin(now)
        out, self._control = self._control, []
        for subflow in self.subflows:
            for segment in subflow.tcp.segments_to_send(now):
                header = segment.header
                if header.flags & TcpFlags.RST and not self.fallback and (
                    subflow.rst_reason is not None or subflow.rst_options
                ):
                    # impl.tcp builds RSTs without asking the hook; MP_TCPRST (3.6) and
                    # MP_FASTCLOSE (3.5) ride on them, so they are added here.
                    extra = subflow.rst_options
                    if extra:
                        # 3.5: counted per RST that carries it (a join aborted in
                        # SYN-SENT sends no RST, RFC 9293 3.10.5, so no MP_FASTCLOSE).
                        self.counters.inc("MPFastcloseTx")
                    if subflow.rst_reason is not None:
                        extra += (MpTcpRst(subflow.rst_reason),)
                        self.counters.inc("MPRstTx")
                    header = dataclasses.replace(header, options=header.options + extra)
                    segment = Segment(header, segment.payload)
                    subflow.rst_reason = None  # later RSTs answer stray segments
                    subflow.rst_options = ()
                elif not self.fallback:
                    segment = self._with_data_window(subflow, segment)  # 3.3.4
                out.append((subflow.local, subflow.remote, segment))
        if not self.fallback:
            self._keep_signals_moving()
            self._arm_data_timer(now)
        return out

    def _keep_signals_moving(self) -> None:
        """MP_PRIO (3.3.8), ADD_ADDR and REMOVE_ADDR (3.4) ride on pure ACKs only (Linux
        sends a dedicated ACK for them), but a requested ACK is spent by any data segment
        that leaves first, and then nothing would carry the signal. While one is still
        pending, ask again: the next round without data to send emits the pure ACK."""
        for subflow in self.subflows:
            if subflow.prio_pending is not None and not subflow.dead:
                subflow.tcp.request_ack()
        if self._ready_to_join and self.signals.has_pending(self._now):
            self._request_signal_ack(exclude=None)

    def _send_data_fin(self, now: float) -> None:
        """Put a bare DATA_FIN on an ACK of every usable subflow, and again after a
        timeout until it is DATA_ACKed (3.3.3)."""
        usable = [sf for sf in self.subflows if sf.usable or (
            not sf.dead and sf.tcp.state in (S.ESTABLISHED, S.CLOSE_WAIT))]
        for subflow in usable:
            subflow.tcp.request_ack()
        rto = max((sf.tcp.rtt.rto for sf in usable), default=1.0)
        self._fin_deadline = now + max(self.config.data_fin_rto, rto)
