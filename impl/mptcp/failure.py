"""DSS checksum failures (RFC 8684 3.7): MP_FAIL, the infinite mapping, and the fallback
to plain TCP they lead to; a mixin of `MptcpConnection` (kept apart so `connection.py`
stays readable in one sitting).

Who does what, with B the endpoint whose checksum check fails and A its peer:

- B, one subflow that was never joined by another, the failed mapping right at B's
  DATA_ACK point, no data-level out-of-order data (nothing a plain TCP byte stream could
  contradict): B counts `DataCsumErr`, sends MP_FAIL with that DSN on its pure ACKs until
  the infinite mapping arrives (`MPFailTx` per option), and from then on takes the
  subflow's bytes, from the failed mapping's first byte, as the data stream, as TCP
  would. Otherwise (several subflows): B resets the failing subflow with MP_TCPRST
  reason 6, "middlebox interference"; A reinjects its unacknowledged data on the others
  (3.3.6), as for any subflow that dies.
- A receives MP_FAIL (`MPFailRx`) and falls back: no more mappings; bytes not yet on the
  subflow follow as they are. The infinite mapping (DSS with data-level length 0;
  `InfiniteMapTx`) names the first of them (its DSN and subflow sequence number) and
  rides once, on the first data segment A sends after the fallback, or on a pure ACK
  when A has no data to send. Joins of A still in their handshake are reset: fallback
  needs a lone subflow.
- B receives the infinite mapping (`InfiniteMapRx`) and falls back too; so it does on
  data or a FIN without any MPTCP option (the infinite mapping was lost). B opens no
  join once it sent MP_FAIL.

What reaches B's application is what the middlebox delivered, exactly as with plain TCP:
the checksum only told MPTCP that it cannot go on (a payload-rewriting middlebox such as
an ALG is the case 3.7 has in mind). This is also what Linux does on both sides (its
receiver keeps the subflow's bytes after MP_FAIL, and an MP_FAIL answered with a resend
of the failed data would reach it twice: tests/test_mptcp_fail_kernel.py).
"""

from __future__ import annotations

from impl.tcp.hooks import SegmentKind
from impl.wire.mptcp_options import DataSequenceMapping, Dss, MpFail, MpTcpRstReason

from .dss import MASK64, Mapping
from .subflow import DSS_SPACE, Subflow

__all__ = ["FailureMixin"]

_MASK32 = (1 << 32) - 1


class FailureMixin:
    """Checksum failure handling for `MptcpConnection` (RFC 8684 3.7)."""

    # Set by MptcpConnection.__init__:
    #   mp_fail_dsn: int | None       B: MP_FAIL to send (unwrapped DSN) until fallback
    #   mp_fail_received: bool        A: the peer's MP_FAIL arrived (spec: fail_rcvd)

    # -- B: our checksum check failed ----------------------------------------------------

    def _on_checksum_failure(self, subflow: Subflow, mapping: Mapping) -> None:
        self.counters.inc("DataCsumErr")
        if self._may_fail_over_to_tcp(subflow, mapping):
            if self.mp_fail_dsn is None:
                self.mp_fail_dsn = mapping.dsn
            # 3.7: the subflow's bytes from the failed mapping on are the data stream.
            subflow.receiver.start_infinite(mapping.dsn, mapping.ssn)
            subflow.tcp.request_ack()  # the MP_FAIL goes out at once
            self._drain(subflow)
            return
        # 3.7: with other subflows the failing one is reset; the data comes again
        # on the others.
        self._reset_subflow(subflow, MpTcpRstReason.MIDDLEBOX_INTERFERENCE)

    def _may_fail_over_to_tcp(self, subflow: Subflow, mapping: Mapping) -> bool:
        """3.7: fall back instead of resetting only on the one subflow there ever was,
        with the failed mapping right at the DATA_ACK point and no out-of-order data
        that a plain byte stream would contradict."""
        reassembly = self.reassembly
        return (len(self.subflows) == 1 and subflow.initial and reassembly is not None
                and not reassembly.queue and mapping.dsn == reassembly.rcv_nxt)

    def mp_fail_option(self) -> MpFail | None:
        """The MP_FAIL that goes on our next pure ACK, if one is owed."""
        if self.mp_fail_dsn is None or self.fallback:
            return None
        self.counters.inc("MPFailTx")
        return MpFail(self.mp_fail_dsn & MASK64)

    # -- A: the peer's checksum check failed -------------------------------------------

    def _on_mp_fail(self, subflow: Subflow, option: MpFail) -> None:
        self.counters.inc("MPFailRx")
        if self.mp_fail_received or self.fallback:
            return
        self.mp_fail_received = True
        if not self._alone_on(subflow):
            return  # 3.7: several subflows: the peer resets the failing one
        self._fall_back_after_mp_fail(subflow)

    def _alone_on(self, subflow: Subflow) -> bool:
        """Fallback needs a lone subflow (3.7). Joins still in their handshake carried
        no data (the peer's view, one subflow, is right): they are reset. False when
        another subflow carries data."""
        others = [sf for sf in self.subflows if sf is not subflow and not sf.tcp.is_closed]
        if any(sf.usable for sf in others):
            return False
        for other in others:
            other.tcp.abort()
        self._pending_joins.clear()
        return True

    def _fall_back_after_mp_fail(self, subflow: Subflow) -> None:
        """Plain TCP from now on; the infinite mapping rides on the first byte that was
        not on the subflow yet (3.7)."""
        mapping = Mapping(subflow.next_ssn, self.snd_nxt, 0, 0 if self.checksums else None)
        self._enter_fallback(subflow)
        subflow.infinite_mapping = mapping
        sender = subflow.tcp.sender
        if sender.buffer.end - subflow.tcp.iss <= mapping.ssn:
            # No byte to carry it: the next pure ACK does (so the peer leaves its MP_FAIL
            # state even if we never send again).
            subflow.infinite_mapping_on_ack = True
            subflow.tcp.request_ack()

    def infinite_mapping_space(self, subflow: Subflow, kind: SegmentKind) -> int:
        if not self._infinite_mapping_due(subflow):
            return 0
        return DSS_SPACE if kind is SegmentKind.DATA or subflow.infinite_mapping_on_ack else 0

    def _infinite_mapping_due(self, subflow: Subflow) -> bool:
        """Sent once (3.7): a retransmission goes without it, and a peer still waiting
        after its MP_FAIL takes data without a DSS as our fallback (`_on_plain_after_fail`)."""
        return subflow.infinite_mapping is not None and not subflow.infinite_mapping_sent

    def infinite_mapping_options(self, subflow: Subflow, kind: SegmentKind,
                                 relative_seq: int, length: int) -> tuple:
        """The infinite mapping, once: on the first data segment we send after the
        fallback (its subflow sequence number names the byte where the unmapped stream
        meets the data stream, whichever segment carries it), or on a pure ACK when we
        have no data to send."""
        mapping = subflow.infinite_mapping
        if not self._infinite_mapping_due(subflow):
            return ()
        if kind is not SegmentKind.DATA and not subflow.infinite_mapping_on_ack:
            return ()
        subflow.infinite_mapping_sent = True
        self.counters.inc("InfiniteMapTx")
        data_ack = self._data_ack()
        return (Dss(data_ack=data_ack & MASK64 if data_ack is not None else None,
                    mapping=DataSequenceMapping(mapping.dsn & MASK64, mapping.ssn & _MASK32,
                                                0, mapping.checksum)),)

    # -- B again: the infinite mapping arrives ------------------------------------------

    def _on_plain_after_fail(self, subflow: Subflow) -> None:
        """B after its MP_FAIL: data or a FIN without any MPTCP option means the peer
        fell back and its infinite mapping was lost (it is sent once): so do we."""
        self.fell_back_without_infinite_mapping = True
        self._fall_back_to_tcp(subflow)

    def _on_infinite_mapping(self, subflow: Subflow, dsn: int, ssn: int) -> None:
        self.counters.inc("InfiniteMapRx")
        if not self._alone_on(subflow):
            # 3.7: an infinite mapping is only for a lone subflow.
            self._reset_subflow(subflow, MpTcpRstReason.MPTCP_SPECIFIC)
            return
        if self.mp_fail_dsn is None and subflow.receiver.infinite_dsn is None:
            subflow.receiver.start_infinite(dsn, ssn)  # the peer falls back on its own
        # (after our MP_FAIL the stream already maps straight from the failed mapping)
        self._fall_back_to_tcp(subflow)

    def _fall_back_to_tcp(self, subflow: Subflow) -> None:
        """Plain TCP from now on: what we have not scheduled yet follows as it is; the
        subflow's receive side keeps its infinite mapping."""
        if self.fallback:
            return
        self._stop_multipath(subflow)
        # A close() already made follows as the TCP FIN once this segment is processed
        # (`_maybe_close_subflows`), so a FIN on the same segment is taken first.
