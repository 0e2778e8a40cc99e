"""Input of an `MptcpConnection`: what the MPTCP options on a subflow's segments mean
(kept apart so each file reads in one sitting; `output.py` is the other half).

The subflow's `TcpHook.on_segment_received` lands in `on_subflow_segment`, after TCP's
sequence and RST checks and before the payload is delivered, so key, mapping and
DATA_ACK are known before the bytes reach the data level:

- SYN/ACK: MP_CAPABLE with the listener's key, or fallback (3.1, 3.7); MP_JOIN's
  truncated HMAC-B (3.2).
- the listener's handshake-completing segment: MP_CAPABLE with both keys, or fallback;
  MP_JOIN's HMAC-A (3.2), then the fourth ACK.
- DSS (3.3): DATA_ACK (widened, freeing the send buffer, moving the window edge of
  3.3.4), mappings (checked against earlier ones), DATA_FIN (3.3.3), infinite mapping.
- MP_PRIO (3.3.8), ADD_ADDR / REMOVE_ADDR (3.4), MP_FASTCLOSE (3.5), and on accepted
  RSTs MP_TCPRST (3.6) and MP_FASTCLOSE (`_on_reset`; the hook never sees RSTs).
"""

from __future__ import annotations

from impl.crypto import idsn_from_key, token_from_key
from impl.tcp.state import TcpState
from impl.wire.mptcp_options import (
    AddAddr,
    Dss,
    MpCapable,
    MpFail,
    MpFastclose,
    MpJoinAck,
    MpJoinSynAck,
    MpPrio,
    MpTcpRst,
    MpTcpRstReason,
    RemoveAddr,
)
from impl.wire.tcp import TcpFlags, TcpHeader

from . import handshake
from .dss import DataReassembly, Mapping, MappingConflict, widen
from .join import JoinState
from .subflow import Subflow

__all__ = ["InputMixin"]

S = TcpState


class InputMixin:
    """Option processing for `MptcpConnection`."""

    def _on_reset(self, subflow: Subflow, header: TcpHeader) -> None:
        """The TCP hook never sees RSTs, so their MPTCP options are read here, once
        the subflow accepted the RST (RFC 5961 checks passed)."""
        if self.fallback:
            return
        for option in header.mptcp_options():
            if isinstance(option, MpTcpRst):
                self.counters.inc("MPRstRx")  # 3.6: why the peer reset this subflow
                subflow.peer_rst_reason = option.reason
            elif isinstance(option, MpFail):
                self.counters.inc("MPFailRx")  # 3.7: the peer's checksum failed here
            elif isinstance(option, MpFastclose) and option.receiver_key == self.local_key:
                # 3.5: the peer abandoned the whole connection.
                self.counters.inc("MPFastcloseRx")
                self._abort_all("fastclose")


    def on_subflow_segment(self, subflow: Subflow, header: TcpHeader, payload,
                           relative_seq: int) -> None:
        if self.fallback:
            return
        options = header.mptcp_options()
        flags = int(header.flags)
        if self.mp_fail_dsn is not None and not options and (
                len(payload) or flags & TcpFlags.FIN):
            self._on_plain_after_fail(subflow)  # 3.7: the peer fell back (failure.py)
            return
        if flags & TcpFlags.SYN:
            if flags & TcpFlags.ACK:
                self._on_syn_ack(subflow, header, options)
            return  # a SYN: the listener read it in accept()/accept_join()
        join = subflow.join
        if join is not None:
            if not self._on_join_ack(subflow, join, options):
                return
        elif not self.client and self.remote_key is None:
            if not self._on_third_ack(subflow, options):
                return
        elif not self.client and subflow.initial and handshake.find_option(options, MpCapable):
            subflow.tcp.request_ack()  # a repeated third ACK: our DSS answer was lost
        elif (self.client and not self.fully_established
              and not any(isinstance(option, Dss) for option in options)
              and (not options or len(payload) > 0 or flags & TcpFlags.FIN)):
            # 3.7: the listener's first segment after the handshake has no DSS: it fell
            # back to TCP (our third ACK lost its option on the way), so do we. Except a
            # pure ACK that carries another MPTCP option: Linux sends ADD_ADDR on a pure
            # ACK without DSS, and that peer is plainly still speaking MPTCP.
            if not self._joined_ever():
                self._enter_fallback(subflow)
                return
        for option in options:
            if isinstance(option, Dss):
                self._on_dss(subflow, header, option)
            elif isinstance(option, MpCapable) and option.data_length is not None:
                self._on_mp_capable_data(subflow, option)
            elif isinstance(option, MpPrio):
                self.counters.inc("MPPrioRx")
                subflow.backup = option.backup  # 3.3.8: applies to this subflow
            elif isinstance(option, AddAddr) and self.remote_key is not None:
                authentic = self.signals.on_add_addr(option, self.local_key, self.remote_key)
                if authentic and self.client and not self.fully_established:
                    # 3.1 / 3.4.1: the ADD_ADDR HMAC is keyed with Key-A || Key-B, so the
                    # listener has our key as surely as a DSS would say. Linux announces
                    # on a DSS-less pure ACK before any data: without this we would
                    # neither echo it nor join until data flowed.
                    self.fully_established = True
                    subflow.handshake_ack_deadline = None
                if self.signals.has_pending(self._now):
                    subflow.tcp.request_ack()  # the echo
            elif isinstance(option, RemoveAddr):
                for address_id in self.signals.on_remove_addr(option):
                    self._close_subflows_of_remote(address_id)
            elif isinstance(option, MpFastclose):
                if option.receiver_key == self.local_key:  # 3.5
                    self.counters.inc("MPFastcloseRx")
                    self._abort_all("fastclose")
                    return
            elif isinstance(option, MpTcpRst):
                self.counters.inc("MPRstRx")
            elif isinstance(option, MpFail):
                # 3.7: the peer's checksum failed; on a lone subflow we answer with the
                # infinite mapping and fall back (failure.py). The DATA_ACK beside it
                # still counts.
                self._on_mp_fail(subflow, option)

    def _on_syn_ack(self, subflow: Subflow, header: TcpHeader, options: tuple) -> None:
        if subflow.join is None:
            option = handshake.find_option(options, MpCapable)
            if handshake.acceptable_mp_capable(option) and option.sender_key is not None:
                self.counters.inc("MPCapableSYNACKRX")
                self.peer_no_initial_join = option.no_initial_join
                self._set_remote_key(option.sender_key)
                self.checksums = self.checksums or option.checksum_required
                subflow.receiver.checksums = self.checksums
            else:
                # 3.7: no MP_CAPABLE on the SYN/ACK: plain TCP for life.
                self.counters.inc("MPCapableFallbackSYNACK")
                self._enter_fallback(subflow)
            return
        self.counters.inc("MPJoinSynAckRx")
        option = handshake.find_option(options, MpJoinSynAck)
        if option is None:
            self._reset_subflow(subflow, MpTcpRstReason.MPTCP_SPECIFIC, header)
        elif not subflow.join.check_syn_ack(option, self.local_key, self.remote_key):
            self.counters.inc("MPJoinSynAckHMacFailure")
            self._reset_subflow(subflow, MpTcpRstReason.MPTCP_SPECIFIC, header)

    def _on_join_ack(self, subflow: Subflow, join: JoinState, options: tuple) -> bool:
        """Non-SYN segments on a join subflow until it is ready. False: drop."""
        if join.active:
            join.fourth_ack_seen = True  # 3.2: B acknowledged our third ACK
            subflow.handshake_ack_deadline = None
            return True
        option = handshake.find_option(options, MpJoinAck)
        if join.verified:
            if option is not None:
                subflow.tcp.request_ack()  # A repeats its third ACK: our fourth was lost
            return True
        if option is None or not join.check_third_ack(option, self.local_key, self.remote_key):
            if option is not None:
                self.counters.inc("MPJoinAckHMacFailure")
            self._reset_subflow(subflow, MpTcpRstReason.MPTCP_SPECIFIC)
            return False
        self.counters.inc("MPJoinAckRx")
        subflow.tcp.request_ack()  # the fourth ACK: tells A it may send data
        return True

    def _on_third_ack(self, subflow: Subflow, options: tuple) -> bool:
        """The listener's first non-SYN segment on the initial subflow (3.1)."""
        option = handshake.find_option(options, MpCapable)
        if option is not None and option.sender_key is not None and (
            option.receiver_key == self.local_key
        ):
            self.counters.inc("MPCapableACKRX")
            self._set_remote_key(option.sender_key)
            # Answer with a DSS at once: it tells the initiator we have its key (3.1),
            # so it stops repeating MP_CAPABLE and may open joins.
            subflow.tcp.request_ack()
            return True
        if subflow.tcp.state is S.SYN_RECEIVED:
            # 3.7: the segment completing the handshake has no MP_CAPABLE (a middlebox
            # stripped it, or the third ACK and the first data were lost and a later
            # segment got here first): fall back to plain TCP, as Linux does. The
            # initiator follows when our next segment arrives without a DSS.
            self.counters.inc("MPCapableFallbackACK")
            self._enter_fallback(subflow)
        return False

    def _joined_ever(self) -> bool:
        return len(self.subflows) > 1

    def _stop_multipath(self, subflow: Subflow) -> None:
        """3.7: single-path for life: no token, no joins, no reinjection; the bytes not
        yet scheduled go to this subflow as they are (its stream is the data stream)."""
        self.fallback = True
        self.host.tokens.release(self.local_token)
        self._pending_joins.clear()
        self.reinject.clear()
        pending = self.snd_buffer.end - self.snd_nxt
        if pending:
            subflow.tcp.send(self.snd_buffer.read(self.snd_nxt, pending))
        self.snd_nxt = self.snd_buffer.end
        self.snd_buffer.release(self.snd_buffer.end)

    def _enter_fallback(self, subflow: Subflow) -> None:
        """3.7: plain TCP on this one subflow from now on. Bytes already handed to it
        went in data order on this only subflow, so its stream is the data stream; the
        bytes not yet scheduled follow as they are."""
        self._stop_multipath(subflow)
        received = subflow.receiver.pending  # bytes that waited for a mapping
        if received:
            self.received += received
            subflow.receiver.pending = bytearray()
        # A close() already made follows as the TCP FIN once this segment is processed
        # (`_maybe_close_subflows`), so a FIN on the same segment is taken first.

    def _set_remote_key(self, key: int) -> None:
        self.remote_key = key
        self.remote_token = token_from_key(key)
        self.remote_idsn = idsn_from_key(key)
        self.reassembly = DataReassembly(self.remote_idsn + 1)

    def _on_mp_capable_data(self, subflow: Subflow, option: MpCapable) -> None:
        # 3.1: MP_CAPABLE with data stands for the mapping DSN = IDSN + 1, ssn = 1.
        if subflow.initial and self.reassembly is not None:
            self._add_mapping(subflow, Mapping(1, self.remote_idsn + 1, option.data_length,
                                               option.checksum))

    def _on_dss(self, subflow: Subflow, header: TcpHeader, option: Dss) -> None:
        if self.client and not self.fully_established:
            self.fully_established = True  # 3.1: the listener has our keys
        if option.data_ack is not None:
            self._on_data_ack(subflow, header, option)
        mapping = option.mapping
        if mapping is None or self.reassembly is None:
            return
        reference = self.reassembly.rcv_nxt
        dsn = widen(mapping.dsn, 64 if mapping.dsn_is_64bit else 32, reference)
        length = mapping.data_level_length
        if length == 0:  # 3.3.1 / 3.7: the infinite mapping
            self._on_infinite_mapping(subflow, dsn, mapping.subflow_sequence)
            return
        if option.data_fin:
            self.reassembly.receive_fin(dsn + length - 1)  # DATA_FIN takes the last DSN
            subflow.tcp.request_ack()
            self._check_peer_fin()
            length -= 1
            if length == 0 or mapping.subflow_sequence == 0:
                return  # a bare DATA_FIN maps no subflow bytes
        self._add_mapping(subflow, Mapping(mapping.subflow_sequence, dsn, length,
                                           mapping.checksum if option.data_fin is False
                                           else None))

    def _add_mapping(self, subflow: Subflow, mapping: Mapping) -> None:
        try:
            subflow.receiver.add(mapping)
        except MappingConflict:
            # 3.3.1: a mapping that contradicts an earlier one is a protocol error on
            # this subflow; Linux counts DSSNotMatching and resets the subflow
            # (MP_TCPRST "MPTCP-specific error"); its data is reinjected elsewhere.
            self.counters.inc("DSSNotMatching")
            self._reset_subflow(subflow, MpTcpRstReason.MPTCP_SPECIFIC)

    def _on_data_ack(self, subflow: Subflow, header: TcpHeader, option: Dss) -> None:
        bits = 64 if option.data_ack_is_64bit else 32
        ack = widen(option.data_ack, bits, self.snd_una)
        limit = self.snd_nxt + (1 if self._data_fin_sent() else 0)
        if ack < self.snd_una or ack > limit:
            return  # old, or acknowledges what we never sent: ignore (3.3.2)
        self.snd_una = ack
        self.snd_buffer.release(min(ack, self.snd_buffer.end))
        if self.fin_dsn is not None and ack > self.fin_dsn:
            self.fin_acked = True
            self._fin_deadline = None
        # 3.3.4: the receive window is relative to the DATA_ACK, never shrinking.
        window = header.window << (subflow.tcp.negotiated.snd_shift
                                   if subflow.tcp.negotiated else 0)
        self.send_edge = max(self.send_edge, ack + window)
        self.reinject = [(max(s, ack), e) for s, e in self.reinject if e > ack]
        for each in self.subflows:
            each.records.forget_acked(ack, each.tcp.sender.snd_una - each.tcp.iss)
