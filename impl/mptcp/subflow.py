"""One subflow: the `TcpHook` an `impl.tcp.TcpConnection` calls, and the MPTCP state that
belongs to that subflow alone (its role in the handshake, its sent mappings, its
received mappings, whether it may carry data).

The hook is thin: it asks the owning `MptcpConnection` for options and hands it what
arrives, so the connection-wide decisions (keys, DATA_ACK, DATA_FIN, fallback) live in
one place. Option sizes (RFC 8684 3.3, figure 5): DSS with a 64-bit DATA_ACK and a
64-bit-DSN mapping is 4 + 8 + 14 = 26 bytes, 28 with the checksum; with 12 bytes of
timestamps that fills the 40-byte option space exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from impl.tcp.hooks import SegmentKind
from impl.tcp.segment import padded_length
from impl.tcp.state import TcpState
from impl.wire.tcp import TcpHeader

from .dss import MappingReceiver, SendRecords
from .join import JoinState

if TYPE_CHECKING:
    from impl.tcp.connection import TcpConnection

    from .connection import MptcpConnection

__all__ = ["Subflow"]

DSS_SPACE = 28  # the largest DSS we send: 64-bit DATA_ACK, 64-bit DSN, checksum
DATA_ACK_SPACE = 12  # DSS with only a 64-bit DATA_ACK
_SPACE = {
    (True, SegmentKind.SYN): 4, (True, SegmentKind.SYNACK): 12,  # MP_CAPABLE
    (False, SegmentKind.SYN): 12, (False, SegmentKind.SYNACK): 16,  # MP_JOIN
}
_DATA_STATES = frozenset((TcpState.ESTABLISHED, TcpState.CLOSE_WAIT))


class Subflow:
    """A TCP subflow of an MPTCP connection (implements `impl.tcp.hooks.TcpHook`)."""

    def __init__(
        self,
        connection: MptcpConnection,
        local: object,
        remote: object,
        *,
        initial: bool,
        active: bool,
        join: JoinState | None = None,
    ) -> None:
        self.connection = connection
        self.local = local
        self.remote = remote
        self.initial = initial  # the MP_CAPABLE subflow (else an MP_JOIN one)
        self.active = active  # we sent the SYN
        self.join = join
        self.tcp: TcpConnection | None = None
        self.records = SendRecords()
        self.receiver = MappingReceiver(checksums=False)
        self.backup = bool(join and join.backup)
        self.dead = False  # closed, reset or given up: carries nothing more
        self.rst_reason: int | None = None  # MP_TCPRST reason for the RST we send
        self.close_reason: str | None = None
        self.rst_options: tuple = ()  # more MPTCP options for our next RST (MP_FASTCLOSE)
        self.peer_rst_reason: int | None = None  # MP_TCPRST reason the peer sent us
        self.prio_pending: bool | None = None  # MP_PRIO to send on the next ACK
        # Resend the third ACK (MP_CAPABLE keys, 3.1; MP_JOIN HMAC, 3.2) until answered.
        self.handshake_ack_deadline: float | None = None
        self.handshake_ack_backoff = 0
        self.was_stale = False  # its data was reinjected when it went stale
        # 3.7: after the peer's MP_FAIL, the infinite mapping we send (failure.py).
        self.infinite_mapping = None
        self.infinite_mapping_sent = False
        self.infinite_mapping_on_ack = False  # no data byte to carry it

    @property
    def key(self) -> tuple:
        tcp = self.tcp
        return (self.local, tcp.local_port, self.remote, tcp.remote_port)

    # -- what the scheduler sees ------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """May carry new data: established, the MPTCP handshake complete for data
        (3.1 keys known; 3.2 joins: the listener checked HMAC-A, the initiator saw the
        fourth ACK), and not dead or closing."""
        tcp = self.tcp
        if self.dead or tcp is None or tcp.state not in _DATA_STATES or tcp.sender.cc is None:
            return False
        if tcp.sender.fin_seq is not None:
            return False
        connection = self.connection
        if connection.remote_key is None:
            return False
        join = self.join
        if join is not None:
            return join.fourth_ack_seen if join.active else join.verified
        return True

    @property
    def remote_address_id(self) -> int:
        """The peer's address ID of this subflow (3.4: 0 for the initial subflow)."""
        if self.join is None or self.join.remote_address_id is None:
            return 0
        return self.join.remote_address_id

    @property
    def stale(self) -> bool:
        """Several retransmission timeouts in a row without progress: the path may be
        dead without anyone saying so (Linux: net.mptcp.stale_loss_cnt)."""
        tcp = self.tcp
        return tcp is not None and (
            tcp.sender.consecutive_timeouts >= self.connection.config.stale_timeouts)

    @property
    def smoothed_rtt(self) -> float:
        rtt = self.tcp.rtt
        return rtt.srtt if rtt.srtt is not None else rtt.rto

    @property
    def max_payload(self) -> int:
        negotiated = self.tcp.negotiated
        options = (12 if negotiated.timestamps else 0) + DSS_SPACE
        return negotiated.send_mss - padded_length(options)

    def room(self) -> int:
        """New bytes this subflow could send at once: the congestion window minus
        RFC 6675's pipe (what TCP itself compares it with, so new data keeps flowing in
        SACK recovery) and the peer's window minus what is in flight; zero while
        earlier bytes wait (so that each mapping leaves as whole segments of its own)."""
        sender = self.tcp.sender
        if sender.snd_nxt < sender.buffer.end:
            return 0
        by_cwnd = sender.cc.cwnd - sender.pipe()
        by_window = sender.snd_wnd - sender.flight_size
        return max(0, min(by_cwnd, by_window))

    @property
    def next_ssn(self) -> int:
        """Relative subflow sequence number of the next byte queued on this subflow."""
        return self.tcp.sender.buffer.end - self.tcp.iss

    # -- TcpHook --------------------------------------------------------------------------

    def option_space(self, kind: SegmentKind) -> int:
        if self.connection.fallback:
            return self.connection.infinite_mapping_space(self, kind)
        if kind is SegmentKind.ACK:
            # Most pure ACKs carry only a DSS with a DATA_ACK (12 bytes); saying so
            # leaves room for a SACK block (Linux does the same), without which loss
            # recovery on the subflow falls back to timeouts.
            return self.connection.ack_option_space(self)
        return _SPACE.get((self.initial, kind), DSS_SPACE)

    def options_for_segment(
        self, kind: SegmentKind, relative_seq: int, length: int, space: int
    ) -> tuple:
        if self.connection.fallback:
            return self.connection.infinite_mapping_options(self, kind, relative_seq, length)
        return self.connection.options_for(self, kind, relative_seq, length, space)

    def on_segment_received(
        self, header: TcpHeader, payload: bytes | memoryview, relative_seq: int
    ) -> None:
        self.connection.on_subflow_segment(self, header, payload, relative_seq)

    def on_established(self) -> None:
        self.connection.on_subflow_established(self)

    def on_closed(self, reason: str) -> None:
        self.close_reason = reason
        self.handshake_ack_deadline = None
        self.connection.on_subflow_closed(self, reason)

    def __repr__(self) -> str:
        tcp = self.tcp
        state = tcp.state if tcp is not None else "-"
        kind = "initial" if self.initial else "join"
        return f"<Subflow {kind} {self.local}>{self.remote} {state} usable={self.usable}>"
