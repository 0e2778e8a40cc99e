"""`MptcpConnection`: one MPTCP connection (RFC 8684), sans-I/O, owning its subflows.

The driver (a host: `host.MptcpHost`) routes segments of this connection's subflows to
`receive(subflow, segment, now)`, collects `packets_to_send(now)` and runs
`handle_timer(now)` at `next_timer()`. The application calls `send`, `close`, `abort`
(MP_FASTCLOSE, 3.5), `read`, `add_subflow` (an MP_JOIN, 3.2), `set_backup` (MP_PRIO,
3.3.8), `announce_address` / `remove_address` (3.4). What the options on arriving
segments mean is in `input.py`; what goes out (options, scheduling, DATA_FIN) in
`output.py`; this file keeps the state, the data-level receive path and subflow life.

Data level (3.3): bytes written get DSNs from IDSN + 1 on; the scheduler hands chunks to
subflows that have room, each chunk one mapping (`dss.Mapping`) repeated on all its
segments. DATA_ACKs (64-bit) free the send buffer; the receive side widens 32-bit
values, checks mappings per subflow and reassembles across subflows by DSN. DATA_FIN
takes one DSN (3.3.3); the close follows Appendix D (`data_state`). When a subflow dies
its mappings not yet DATA_ACKed are reinjected on the others (3.3.6); the data-level
retransmission timer and the connection-level receive window live in `datalevel.py`.

Fallback (3.7): a SYN/ACK without MP_CAPABLE (or a listener's first ACK without any
MPTCP option) makes the connection plain TCP on that one subflow for life: no MPTCP
option is sent again and the subflow's byte stream is the data stream. A DSS checksum
failure leads there too, through MP_FAIL and the infinite mapping (`failure.py`).
`project()` maps this connection onto the spec's state (`project.py`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from impl.crypto import idsn_from_key, token_from_key
from impl.tcp.buffers import SendBuffer
from impl.tcp.config import TcpConfig
from impl.tcp.connection import TcpConnection
from impl.tcp.events import DataReceived, PeerClosed
from impl.tcp.segment import Segment
from impl.tcp.state import RST_ON_ABORT_STATES, TcpState
from impl.wire.mptcp_options import MpCapable, MpFastclose, MpTcpRst
from impl.wire.tcp import TcpFlags, TcpHeader

from . import handshake
from .datalevel import DataLevelMixin
from .dss import ChecksumFailure, DataReassembly
from .failure import FailureMixin
from .input import InputMixin
from .join import JoinState
from .output import OutputMixin
from .pm import PathSignals
from .scheduler import LowestRttScheduler, Scheduler
from .subflow import Subflow

__all__ = ["MptcpConfig", "MptcpConnection"]

S = TcpState


# RFC 9293 3.1: a segment's window field is 16 bits and SYNs are never scaled (RFC 7323 2.2).
INITIAL_PEER_DATA_WINDOW = 65535


@dataclass(frozen=True)
class MptcpConfig:
    checksums: bool = False  # set the A flag: require DSS checksums (3.1, 3.3.1)
    tcp: TcpConfig = field(default_factory=TcpConfig)
    scheduler: Callable[[], Scheduler] = LowestRttScheduler
    # Bare DATA_FIN resend interval floor (data-level retransmission, 3.3.3).
    data_fin_rto: float = 0.2
    # ADD_ADDR resend interval and tries until echoed (3.4.1; Linux: add_addr_timeout
    # 120 s and ADD_ADDR_RETRANS_MAX 3; shorter here because our links are simulated).
    add_addr_timeout: float = 2.0
    add_addr_tries: int = 3
    # A subflow with this many retransmission timeouts in a row is stale: the scheduler
    # avoids it and its unacknowledged data is reinjected elsewhere (3.3.6).
    stale_timeouts: int = 2
    # 3.1, flag C: as listener, say on the SYN/ACK that we take no MP_JOIN to our
    # initial address and port, and reset any that comes (Linux: sysctl
    # net.mptcp.allow_join_initial_addr_port=0).
    no_initial_join: bool = False
    # Authentic ADD_ADDRs taken as join targets (Linux: ip mptcp limits
    # add_addr_accepted, at most 8); beyond it they are still echoed (3.4.1), as Linux does.
    add_addr_accepted: int = 8
    # Data-level receive buffer (3.3.4): the window every subflow announces is this
    # minus the bytes not yet read and those held out of order (None: tcp's).
    receive_buffer: int | None = None


def _joining(subflow: Subflow) -> bool:
    """An MP_JOIN initiator still waiting for the fourth ACK (3.2)."""
    join = subflow.join
    return join is not None and join.active and not join.fourth_ack_seen


class MptcpConnection(InputMixin, OutputMixin, FailureMixin, DataLevelMixin):
    def __init__(self, host, config: MptcpConfig, *, client: bool, local_key: int) -> None:
        self.host = host
        self.config = config
        self.client = client
        self.counters = host.counters
        self.scheduler = config.scheduler()
        self.local_key = local_key
        self.local_token = token_from_key(local_key)
        self.local_idsn = idsn_from_key(local_key)
        self.remote_key: int | None = None
        self.remote_token: int | None = None
        self.remote_idsn: int | None = None
        self.checksums = config.checksums
        self.fallback = False
        self.mp_fail_dsn: int | None = None  # MP_FAIL owed to the peer (3.7, failure.py)
        self.mp_fail_received = False
        self.fell_back_without_infinite_mapping = False
        # What the application did, for project() (the spec counts data it wrote/read).
        self.bytes_written = 0
        self.bytes_read = 0
        self.data_fin_on_wire = False  # our DATA_FIN left on some segment (3.3.3)
        self.fastclose_sent = False  # abort() put MP_FASTCLOSE on a RST (3.5)
        self.aborted_by_app = False
        # 3.1: the initiator repeats MP_CAPABLE until a DSS shows the keys arrived.
        self.fully_established = not client
        self.subflows: list[Subflow] = []
        self._next_address_id = 1
        # Send side (unwrapped DSNs).
        self.snd_buffer = SendBuffer(self.local_idsn + 1)
        self.snd_una = self.local_idsn + 1  # oldest DSN not DATA_ACKed
        self.snd_nxt = self.local_idsn + 1  # next DSN never mapped before
        # 3.3.4: the data-level window is the peer's, relative to its DATA_ACK. Until the
        # first DATA_ACK tells us that window, assume no more than an unscaled TCP window
        # (the most a SYN or SYN/ACK can say): Linux drops mappings beyond its window
        # (MPTcpExtNoDSSInWindow) after the subflow has acknowledged them.
        self.send_edge = self.local_idsn + 1 + INITIAL_PEER_DATA_WINDOW
        self.reinject: list[tuple[int, int]] = []
        self.fin_dsn: int | None = None  # our DATA_FIN, once close() was called
        self.fin_acked = False
        self._fin_deadline: float | None = None
        # Data-level retransmission timer (3.3.6, `datalevel.py`).
        self._rtx_deadline: float | None = None
        self._rtx_backoff = 0
        self._rtx_avoid: list[Subflow] = []  # subflows that carried the resent chunk
        # Receive side.
        self.reassembly: DataReassembly | None = None
        self.receive_buffer = config.receive_buffer or config.tcp.receive_buffer
        self.rcv_wnd_edge: int | None = None  # right edge of our data-level window
        self.rcv_wnd_sent: int | None = None  # the largest edge announced (Linux's name)
        self.received = bytearray()
        self.peer_closed = False
        self.closed_reason: str | None = None
        self._control: list[tuple[object, object, Segment]] = []
        self._subflows_closing = False
        self._pending_joins: list[tuple[Subflow, int]] = []
        self._peer_closed_first = False
        self.signals = PathSignals(self.counters, config.add_addr_timeout,
                                   config.add_addr_tries, config.add_addr_accepted)
        self.peer_no_initial_join = False  # the peer's MP_CAPABLE C flag (3.1)
        self._now = 0.0

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def connect(cls, host, local, remote, remote_port: int, now: float,
                config: MptcpConfig) -> MptcpConnection:
        connection = cls(host, config, client=True, local_key=host.tokens.new_key(None))
        host.tokens.bind(connection.local_token, connection)
        subflow = Subflow(connection, local, remote, initial=True, active=True)
        connection._start_subflow(subflow, remote_port, now)
        return connection

    @classmethod
    def accept(cls, host, local, remote, syn: Segment, now: float,
               config: MptcpConfig) -> MptcpConnection:
        """A SYN for a listener: MP_CAPABLE v1 makes an MPTCP connection, anything else
        a plain TCP one (3.7, the listener side of fallback)."""
        option = handshake.find_option(syn.header.options, MpCapable)
        connection = cls(host, config, client=False, local_key=host.tokens.new_key(None))
        if handshake.acceptable_mp_capable(option):
            host.counters.inc("MPCapableSYNRX")
            host.tokens.bind(connection.local_token, connection)
            connection.checksums = config.checksums or option.checksum_required
        else:
            connection.fallback = True
        subflow = Subflow(connection, local, remote, initial=True, active=False)
        subflow.receiver.checksums = connection.checksums
        subflow.tcp = TcpConnection.accept(
            syn, now, config.tcp, subflow, rng=host.rng, logger=host.logger,
            name=f"{local}:{syn.header.dst_port}<{remote}:{syn.header.src_port}")
        connection.subflows.append(subflow)
        host.register(subflow)
        return connection

    def refuses_join_to(self, local, port: int) -> bool:
        """3.1: with C set on our SYN/ACK, no join to our initial address and port."""
        first = self.subflows[0]
        return self.config.no_initial_join and not self.client and (
            ipaddress.ip_address(local), port) == (ipaddress.ip_address(first.local),
                                                  first.tcp.local_port)

    def accept_join(self, local, remote, syn: Segment, option, now: float) -> Subflow:
        """An MP_JOIN SYN whose token is ours (3.2): a new passive subflow."""
        self.counters.inc("MPJoinSynRx")
        join = JoinState(active=False, local_nonce=self.host.rng.getrandbits(32),
                         address_id=self.host.address_id(local))
        join.take_syn(option)
        subflow = Subflow(self, local, remote, initial=False, active=False, join=join)
        subflow.backup = option.backup
        subflow.receiver.checksums = self.checksums
        subflow.tcp = TcpConnection.accept(
            syn, now, self.config.tcp, subflow, rng=self.host.rng, logger=self.host.logger,
            name=f"{local}:{syn.header.dst_port}<{remote}:{syn.header.src_port}")
        self.subflows.append(subflow)
        self.host.register(subflow)
        return subflow

    def add_subflow(self, local, remote=None, remote_port: int | None = None,
                    now: float = 0.0, backup: bool = False) -> Subflow:
        """Open another subflow with MP_JOIN (3.2) from `local` to `remote` (default:
        the initial subflow's peer address and port)."""
        if self.fallback or self.is_closed:
            raise ConnectionError("no joins on a connection that fell back or closed")
        first = self.subflows[0]
        local = ipaddress.ip_address(local)
        remote = ipaddress.ip_address(remote) if remote is not None else first.remote
        remote_port = remote_port if remote_port is not None else first.tcp.remote_port
        if self.peer_no_initial_join and (remote, remote_port) == (
                ipaddress.ip_address(first.remote), first.tcp.remote_port):
            raise ConnectionError("the peer set the C flag (RFC 8684 3.1): no MP_JOIN to "
                                  "its initial address and port")
        join = JoinState(active=True, local_nonce=self.host.rng.getrandbits(32),
                         address_id=self.host.address_id(local), backup=backup)
        subflow = Subflow(self, local, remote, initial=False, active=True, join=join)
        if self._may_open_joins:
            self._start_subflow(subflow, remote_port, now)
        else:
            # Like Linux's path manager, join only once the connection is fully
            # established (the listener has our key: 3.1), else the listener may not
            # know the connection's token yet and resets the SYN.
            self._pending_joins.append((subflow, remote_port))
        return subflow

    @property
    def _may_open_joins(self) -> bool:
        """Joins start once the keys are confirmed, and not after our MP_FAIL (3.7:
        fallback is near). A close() does not stop them: the data written before it
        may still be on its way (Linux, too, joins and accepts joins then)."""
        return self._ready_to_join and self.mp_fail_dsn is None

    @property
    def _ready_to_join(self) -> bool:
        return self.fully_established and self.remote_key is not None

    def _start_subflow(self, subflow: Subflow, remote_port: int, now: float) -> None:
        local_port = self.host.allocate_port()
        subflow.receiver.checksums = self.checksums
        subflow.tcp = TcpConnection(
            local_port, remote_port, self.config.tcp, subflow, rng=self.host.rng,
            logger=self.host.logger,
            name=f"{subflow.local}:{local_port}>{subflow.remote}:{remote_port}")
        self.subflows.append(subflow)
        self.host.register(subflow)
        subflow.tcp.connect(now)

    # -- application calls ------------------------------------------------------------------

    def send(self, data: bytes | bytearray | memoryview) -> None:
        if self.fin_dsn is not None:
            raise ConnectionError("send after close")
        self.bytes_written += len(data)
        if self.fallback:
            self.subflows[0].tcp.send(data)
        else:
            self.snd_buffer.append(data)

    def close(self) -> None:
        """Orderly close of our direction: a DATA_FIN after the data (3.3.3)."""
        if self.fin_dsn is not None:
            return
        self._peer_closed_first = self.peer_closed or (
            self.reassembly is not None and self.reassembly.fin_dsn is not None)
        self.fin_dsn = self.snd_buffer.end
        self._maybe_close_subflows()

    def abort(self) -> None:
        """Abortive close of the whole connection (3.5): every subflow is reset, the
        RSTs carrying MP_FASTCLOSE with the peer's key (as Linux sends it) so the peer
        drops the connection at once rather than waiting for the other subflows."""
        if self.closed_reason is not None:
            return
        for subflow in self.subflows:
            if not subflow.tcp.is_closed:
                # Only on subflows whose MPTCP handshake is complete and where abort()
                # sends a RST (RFC 9293 3.10.5): elsewhere the MP_FASTCLOSE would ride
                # on a later RST to a stray segment. MPFastcloseTx is counted when a RST
                # really carries it (output.py).
                if not self.fallback and self.remote_key is not None and (
                        subflow.tcp.state in RST_ON_ABORT_STATES) and (
                        subflow.tcp.state is not S.SYN_RECEIVED) and not _joining(subflow):
                    subflow.rst_options = (MpFastclose(self.remote_key),)
                    self.fastclose_sent = True
                subflow.tcp.abort()
        self.closed_reason = "aborted"
        self.aborted_by_app = True
        self.host.tokens.release(self.local_token)

    def set_backup(self, subflow: Subflow, backup: bool) -> None:
        """Change a subflow's priority and tell the peer with MP_PRIO (3.3.8), which
        applies to the subflow it is sent on."""
        subflow.backup = backup
        if not self.fallback:
            subflow.prio_pending = backup
            subflow.tcp.request_ack()

    def announce_address(self, address, port: int | None = None) -> None:
        """ADD_ADDR one of our host's addresses (3.4.1), resent until echoed."""
        address = ipaddress.ip_address(address)
        self.signals.announce(self.host.address_id(address), address, port)
        self._request_signal_ack(exclude=None)

    def remove_address(self, address) -> None:
        """REMOVE_ADDR (3.4.2): stop using `address`; our subflows on it are reset."""
        address = ipaddress.ip_address(address)
        self.signals.remove(self.host.address_id(address))
        # Joins from that address that have not started yet never will.
        self._pending_joins = [(sf, port) for sf, port in self._pending_joins
                               if sf.local != address]
        for subflow in self.subflows:
            if subflow.local == address and not subflow.tcp.is_closed:
                subflow.tcp.abort()
        self._request_signal_ack(exclude=address)

    def _request_signal_ack(self, exclude) -> None:
        for subflow in self.subflows:
            if subflow.usable and subflow.local != exclude:
                subflow.tcp.request_ack()
                return

    def read(self) -> bytes:
        data = bytes(self.received)
        self.received.clear()
        self.bytes_read += len(data)
        self._window_update_after_read(len(data))
        return data

    def project(self, config=None) -> dict:
        """This connection as a state of the spec (DESIGN principle 5; project.py)."""
        from .project import project

        return project(self, config)

    @property
    def established(self) -> bool:
        return any(sf.tcp.state is not S.SYN_SENT and sf.tcp.state is not S.SYN_RECEIVED
                   and not sf.dead for sf in self.subflows if sf.initial) and (
            self.fallback or self.remote_key is not None)

    @property
    def data_state(self) -> str:
        """The connection-level close state of RFC 8684 Appendix D (figure 17)."""
        if self.closed_reason is not None:
            return "CLOSED"
        ours = self.fin_dsn is not None
        theirs = self.peer_closed
        if not ours:
            return "CLOSE_WAIT" if theirs else "ESTABLISHED"
        if not self.fin_acked:
            if not theirs:
                return "FIN_WAIT_1"
            return "LAST_ACK" if self._peer_closed_first else "CLOSING"
        return "TIME_WAIT" if theirs else "FIN_WAIT_2"

    @property
    def is_closed(self) -> bool:
        return self.closed_reason is not None

    # -- segments we receive ----------------------------------------------------------------

    def receive(self, subflow: Subflow, segment: Segment, now: float) -> None:
        self._now = now
        tcp = subflow.tcp
        was_open = not tcp.is_closed
        data_ack = self.snd_una
        tcp.receive_segment(segment, now)
        if self.snd_una > data_ack:
            self._on_data_ack_progress(now)
        if segment.header.flags & TcpFlags.RST and was_open and tcp.is_closed:
            self._on_reset(subflow, segment.header)  # the TCP accepted the RST
        self._drain(subflow)
        # 3.3.3: subflows close only after the whole segment was processed, so a FIN
        # riding on the segment that DATA_ACKs our DATA_FIN is taken before ours goes
        # out (CLOSE_WAIT -> LAST_ACK rather than a FIN_WAIT_1 -> CLOSING crossing).
        self._maybe_close_subflows()
        self._check_finished()

    def _check_finished(self) -> None:
        """Appendix D: with both DATA_FINs acknowledged and every subflow closed or in
        TIME-WAIT the connection is over (a subflow's TIME-WAIT only guards that
        subflow's 4-tuple; the token is free again)."""
        if self.fallback and self.fin_dsn is not None and not self.fin_acked:
            # 3.7: after fallback the one subflow is the connection: its FIN, once
            # acknowledged, stands for the DATA_FIN (else FIN_WAIT_1 until TIME-WAIT ends).
            self.fin_acked = self.subflows[0].tcp.sender.fin_acked
        if self.closed_reason is not None or self.data_state != "TIME_WAIT":
            return
        if all(sf.dead or sf.tcp.state is S.TIME_WAIT for sf in self.subflows):
            self.closed_reason = "closed"
            self.host.tokens.release(self.local_token)

    def _data_fin_sent(self) -> bool:
        return self.fin_dsn is not None and self.snd_nxt >= self.fin_dsn

    def _drain(self, subflow: Subflow) -> None:
        """Take the subflow's in-order bytes to the data level."""
        tcp = subflow.tcp
        for event in tcp.events():
            if isinstance(event, DataReceived):
                if self.fallback and subflow.receiver.infinite_dsn is None:
                    self.received += event.data
                else:
                    subflow.receiver.feed(event.data, event.relative_seq)
            elif isinstance(event, PeerClosed) and self.fallback:
                self.peer_closed = True
        if self.reassembly is None or subflow.dead or (
            self.fallback and subflow.receiver.infinite_dsn is None
        ):
            return  # after fallback without an infinite mapping, bytes went up as they are
        try:
            pieces = subflow.receiver.drain()
        except ChecksumFailure as failure:
            # 3.3.1 / 3.7: a mismatch is middlebox interference: MP_FAIL and fallback on
            # a lone subflow, else a reset of this one (failure.py).
            self._on_checksum_failure(subflow, failure.mapping)
            return
        for dsn, data in pieces:
            if not self._in_rcv_window(dsn):
                self.counters.inc("NoDSSInWindow")  # dropped; the peer sends it again
                continue
            reassembly = self.reassembly
            duplicates, out_of_order = reassembly.duplicate_bytes, reassembly.out_of_order_bytes
            for chunk in reassembly.receive(dsn, data):
                self.received += chunk
            if reassembly.duplicate_bytes > duplicates:
                self.counters.inc("DuplicateData")
            if reassembly.out_of_order_bytes > out_of_order:
                self.counters.inc("OFOQueue")  # held for a hole at the data level
        self._check_peer_fin()

    def _check_peer_fin(self) -> None:
        if self.reassembly is not None and self.reassembly.fin_received and not self.peer_closed:
            self.peer_closed = True
            for subflow in self.subflows:
                if subflow.usable:
                    subflow.tcp.request_ack()  # DATA_ACK the DATA_FIN promptly

    # -- subflow life -------------------------------------------------------------------

    def on_subflow_established(self, subflow: Subflow) -> None:
        join = subflow.join
        if subflow.active and (join is not None or not self.fallback):
            # 3.1 / 3.2: the third ACK must arrive reliably: resend it until the
            # listener answers (a DSS for MP_CAPABLE, the fourth ACK for MP_JOIN).
            subflow.handshake_ack_deadline = self._now + subflow.tcp.rtt.rto

    def on_subflow_closed(self, subflow: Subflow, reason: str) -> None:
        subflow.dead = True
        if not self.fallback and self.snd_una < self.snd_nxt and not subflow.was_stale:
            # 3.3.6: data the dead subflow carried may never arrive; send it again on
            # the others (the receiver drops what it already has).
            self._reinject_from(subflow)
        if all(each.dead for each in self.subflows) and self.closed_reason is None:
            done = self.data_state == "TIME_WAIT" or (self.fallback and reason == "closed")
            self.closed_reason = "closed" if done else reason
            self.host.tokens.release(self.local_token)

    def _check_stale(self, subflow: Subflow) -> None:
        """3.3.6: data stuck on a stale subflow is sent again on the others (once per
        stale episode; the receiver drops whichever copy arrives second)."""
        if not subflow.stale:
            subflow.was_stale = False
            return
        if subflow.was_stale or subflow.dead or self.fallback:
            return
        subflow.was_stale = True
        if any(sf.usable and not sf.stale for sf in self.subflows if sf is not subflow):
            self._reinject_from(subflow)

    def _reinject_from(self, subflow: Subflow) -> None:
        ranges = subflow.records.unacknowledged(self.snd_una)
        if ranges:
            self.counters.inc("MPTCPRetrans")
            self.reinject.extend(ranges)
            self.reinject.sort()

    def _close_subflows_of_remote(self, address_id: int) -> None:
        """3.4.2: the peer stopped using an address: reset our subflows to it."""
        for subflow in self.subflows:
            if subflow.remote_address_id == address_id and not subflow.tcp.is_closed:
                self.counters.inc("RmSubflow")
                subflow.tcp.abort()

    def _reset_subflow(self, subflow: Subflow, reason: int,
                       syn_ack: TcpHeader | None = None) -> None:
        """Reset one subflow with MP_TCPRST (3.6); the connection carries on."""
        subflow.rst_reason = reason
        tcp = subflow.tcp
        if syn_ack is not None:
            # In SYN-SENT `abort()` sends nothing (RFC 9293 3.10.5), but 3.2 wants an
            # RST for a bad SYN/ACK: <SEQ=SEG.ACK><CTL=RST>.
            header = TcpHeader(tcp.local_port, tcp.remote_port, syn_ack.ack, 0,
                               TcpFlags.RST, 0, options=(MpTcpRst(reason),))
            self._control.append((subflow.local, subflow.remote, Segment(header)))
            self.counters.inc("MPRstTx")
        tcp.abort()

    def _abort_all(self, reason: str) -> None:
        for subflow in self.subflows:
            if not subflow.tcp.is_closed:
                subflow.tcp.abort()
        self.closed_reason = reason
        self.host.tokens.release(self.local_token)

    def _maybe_close_subflows(self) -> None:
        """3.3.3: once both DATA_FINs are acknowledged, close every subflow (FIN). After
        fallback (3.7) the TCP FIN is the DATA_FIN: it follows close() at once."""
        if self.fallback and self.fin_dsn is not None:
            for subflow in self.subflows:
                tcp = subflow.tcp
                if subflow.initial and not tcp.is_closed and tcp.sender.fin_seq is None:
                    tcp.close()
            return
        if self._subflows_closing or self.data_state != "TIME_WAIT":
            return
        self._subflows_closing = True
        for subflow in self.subflows:
            if not subflow.tcp.is_closed:
                if _joining(subflow):
                    subflow.tcp.abort()  # 3.2: a join that never completed is reset
                else:
                    subflow.tcp.close()

    def next_timer(self) -> float | None:
        timers = [sf.tcp.next_timer() for sf in self.subflows]
        timers += [sf.handshake_ack_deadline for sf in self.subflows]
        timers.append(self.signals.next_deadline())
        timers.append(self._fin_deadline)
        timers.append(self._rtx_deadline)
        pending = [t for t in timers if t is not None]
        return min(pending) if pending else None

    def handle_timer(self, now: float) -> None:
        self._now = now
        for subflow in self.subflows:
            deadline = subflow.tcp.next_timer()
            if deadline is not None and deadline <= now:
                subflow.tcp.handle_timer(now)
                self._drain(subflow)
                self._check_stale(subflow)
            deadline = subflow.handshake_ack_deadline
            if deadline is not None and deadline <= now:
                subflow.handshake_ack_deadline = None
                if subflow.join is not None:
                    waiting = not subflow.join.fourth_ack_seen
                else:
                    waiting = not self.fully_established and not self.fallback
                if not subflow.dead and waiting:
                    subflow.tcp.request_ack()  # carries MP_JOIN's third-ACK HMAC again
                    subflow.handshake_ack_backoff += 1
                    subflow.handshake_ack_deadline = now + subflow.tcp.rtt.rto * (
                        2 ** min(subflow.handshake_ack_backoff, 6))
        self._maybe_close_subflows()
        self._check_finished()
        signal_deadline = self.signals.next_deadline()
        if signal_deadline is not None and signal_deadline <= now:
            self._request_signal_ack(exclude=None)
        if self._rtx_deadline is not None and now >= self._rtx_deadline:
            self._on_data_timer(now)
        if self._fin_deadline is not None and now >= self._fin_deadline:
            self._fin_deadline = None
            if self._data_fin_due():
                self._send_data_fin(now)
