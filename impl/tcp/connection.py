"""A sans-I/O TCP connection (RFC 9293), one per subflow, in the style of aioquic.

The user drives it with explicit time and gets segments back:

    conn = TcpConnection(local_port=40000, remote_port=80)
    conn.connect(now)                       # or TcpConnection.accept(syn_segment, now)
    for segment in conn.segments_to_send(now): ...  # hand to the IP layer
    conn.receive_segment(segment, now)      # a segment from the IP layer
    conn.handle_timer(now) when now >= conn.next_timer()
    conn.send(b"..."); conn.close(); conn.abort()
    for event in conn.events(): ...         # Connected, DataReceived, PeerClosed, ...

Nothing here reads a clock, opens a socket or imports `impl.mptcp`; MPTCP joins through
`hooks.TcpHook`. Internally sequence numbers are unwrapped integers (`seqnum.py`); wire
values are unwrapped once on arrival with serial arithmetic and wrapped once on output.

`receive_segment` follows RFC 9293 3.10.7 ("SEGMENT ARRIVES") check by check, with RFC
5961's stricter RST/SYN/ACK acceptance, RFC 7323's PAWS and timestamp rules, and the
send/receive halves in `sender.py` and `receiver.py`. The diagnostic log (state changes,
RTO with back-off count, fast retransmit, zero-window probes, ...) goes to `logger`, a
callable taking one dict `{"type": ..., "t": ..., "conn": ..., **fields}`.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from impl.wire.tcp import TcpFlags, TcpHeader
from impl.wire.tcp_options import Sack, Timestamps

from .config import TcpConfig
from .events import Connected, ConnectionClosed, DataReceived, PeerClosed, Reset, TcpEvent
from .hooks import NullHook, TcpHook
from .options import Negotiated, PeerSynOptions, window_shift_for
from .output import OutputMixin
from .receiver import Receiver
from .rtt import RttEstimator
from .segment import Segment, reset_for_unexpected
from .sender import Sender
from .seqnum import SEQ_MASK, seq_diff, seq_lt, unwrap
from .state import RECEIVING_STATES, RST_ON_ABORT_STATES, TcpState

__all__ = ["TcpConnection", "TcpState"]

S = TcpState
_FIN, _SYN, _RST, _ACK = int(TcpFlags.FIN), int(TcpFlags.SYN), int(TcpFlags.RST), int(TcpFlags.ACK)
Logger = Callable[[dict], None]


class TcpConnection(OutputMixin):
    def __init__(
        self,
        local_port: int,
        remote_port: int,
        config: TcpConfig | None = None,
        hook: TcpHook | None = None,
        *,
        rng: random.Random | None = None,
        logger: Logger | None = None,
        name: str | None = None,
        iss: int | None = None,
    ) -> None:
        self.config = config or TcpConfig()
        self.hook: TcpHook = hook or NullHook()
        self.local_port = local_port
        self.remote_port = remote_port
        self.logger = logger
        self.name = name or f"{local_port}>{remote_port}"
        rng = rng or random.SystemRandom()
        # RFC 9293 3.4.1 / RFC 6528 want an unpredictable ISN; the caller may seed rng
        # for reproducible simulations. RFC 7323 7.1: a random timestamp offset too.
        self.iss = rng.getrandbits(32) if iss is None else iss & SEQ_MASK
        self._ts_offset = rng.getrandbits(32)
        self.state = TcpState.CLOSED
        self.rtt = RttEstimator(
            self.config.initial_rto, self.config.min_rto, self.config.max_rto,
            self.config.clock_granularity,
        )
        self.sender = Sender(self.iss, self.config, self.rtt, self._log)
        self.receiver: Receiver | None = None  # exists once the peer's ISN is known
        self.negotiated: Negotiated | None = None
        self.peer_syn: PeerSynOptions | None = None
        self._our_shift = window_shift_for(self.config.receive_buffer)
        self.ts_recent = 0  # TS.Recent (RFC 7323 4.3)
        self._events: list[TcpEvent] = []
        self._output: list[Segment] = []  # control segments decided on input (RSTs)
        self._syn_due = False
        self._syn_sent_at = 0.0
        self._syn_retransmitted = False
        self._handshake_retries = 0
        self._close_requested = False
        self._peer_closed_reported = False
        self.time_wait_deadline: float | None = None
        self.close_reason: str | None = None
        self._now = 0.0

    # -- opening -----------------------------------------------------------------------

    def connect(self, now: float) -> None:
        """Active open (RFC 9293 3.10.1): send a SYN."""
        if self.state is not S.CLOSED or self.close_reason is not None:
            raise ConnectionError(f"connect in state {self.state}")
        self._now = now
        self.sender.snd_nxt = self.iss + 1
        self._syn_due = True
        self._syn_sent_at = now
        self.sender.rto_deadline = now + self.rtt.rto
        self._set_state(S.SYN_SENT, now)

    @classmethod
    def accept(
        cls,
        syn: Segment,
        now: float,
        config: TcpConfig | None = None,
        hook: TcpHook | None = None,
        **kwargs,
    ) -> TcpConnection:
        """Passive open: a listener received `syn` (RFC 9293 3.10.7.2, LISTEN state);
        the new connection is in SYN-RECEIVED with a SYN/ACK to send. Data on the SYN
        is not accepted (as Linux without TCP Fast Open); the peer sends it again."""
        header = syn.header
        if header.flags & (TcpFlags.SYN | TcpFlags.ACK | TcpFlags.RST) != TcpFlags.SYN:
            raise ValueError("accept() takes a SYN without ACK or RST")
        connection = cls(header.dst_port, header.src_port, config, hook, **kwargs)
        connection._now = now
        connection._take_syn(header)
        connection.hook.on_segment_received(header, syn.payload, 0)
        connection.sender.snd_nxt = connection.iss + 1
        connection.sender.snd_wnd = header.window  # never scaled on a SYN (RFC 7323 2.2)
        connection.sender.max_snd_wnd = header.window
        connection.sender.snd_wl1 = connection.receiver.irs
        connection._syn_due = True
        connection._syn_sent_at = now
        connection.sender.rto_deadline = now + connection.rtt.rto
        connection._set_state(S.SYN_RECEIVED, now)
        return connection

    def _take_syn(self, header: TcpHeader) -> None:
        """Record the peer's ISN and options from its SYN or SYN/ACK."""
        self.peer_syn = peer = PeerSynOptions.from_header(header)
        self.negotiated = negotiated = Negotiated.agree(self.config, peer, self._our_shift)
        self.receiver = receiver = Receiver(header.seq, self.config)
        receiver.wscale = negotiated.rcv_shift
        receiver.rcv_adv = receiver.rcv_nxt + min(self.config.receive_buffer, 0xFFFF)
        if negotiated.timestamps and peer.timestamp is not None:
            self.ts_recent = peer.timestamp.value
        self.sender.sack_enabled = negotiated.sack
        self.sender.smss = negotiated.data_mss

    def _become_established(self, now: float) -> None:
        negotiated = self.negotiated
        self.sender.cc = self.config.congestion_control(negotiated.data_mss)
        self._set_state(S.ESTABLISHED, now)
        self._events.append(Connected())
        self.hook.on_established()
        if self._close_requested:
            self._queue_fin(now)

    # -- user calls ----------------------------------------------------------------------

    def send(self, data: bytes | bytearray | memoryview) -> None:
        """Queue bytes (RFC 9293 3.10.2 SEND); they leave in `segments_to_send`."""
        if self.state in (S.CLOSED, S.LISTEN) or self.sender.fin_seq is not None:
            raise ConnectionError(f"send in state {self.state} after close or reset")
        if self._close_requested:
            raise ConnectionError("send after close")
        self.sender.buffer.append(data)

    def close(self) -> None:
        """Orderly close of our direction (RFC 9293 3.10.4): a FIN after queued data.
        Receiving continues until the peer's FIN (a half-close)."""
        state = self.state
        if state in (S.SYN_SENT, S.SYN_RECEIVED):
            # RFC 9293 3.10.4 queues the close in SYN-RECEIVED; we do the same in
            # SYN-SENT (the RFC deletes the TCB there) so that connect, send, close
            # works without waiting. `abort()` drops a pending open.
            self._close_requested = True
        elif state in (S.ESTABLISHED, S.CLOSE_WAIT):
            self._queue_fin(self._now)

    shutdown_write = close

    def abort(self) -> None:
        """RFC 9293 3.10.5 ABORT: RST <SEQ=SND.NXT> in synchronized states, then CLOSED."""
        if self.state in RST_ON_ABORT_STATES and self.receiver is not None:
            self._output.append(self._control(
                self.sender.snd_nxt, TcpFlags.RST | TcpFlags.ACK, self.receiver.rcv_nxt))
        if self.state is not S.CLOSED:
            self._enter_closed(self._now, "aborted", "user")

    def consume(self, nbytes: int) -> None:
        """The user took `nbytes` of received data (with `manual_consume`): reopen the
        window, and announce it when that is worth a segment."""
        if self.receiver is None:
            return
        self.receiver.consume(nbytes)
        if self.receiver.window_update_due():
            self.receiver.ack_now = True

    def request_ack(self) -> None:
        """Send an ACK soon, e.g. to carry options a hook wants out."""
        if self.receiver is not None:
            self.receiver.ack_now = True

    def events(self) -> list[TcpEvent]:
        events, self._events = self._events, []
        return events

    # -- timers ----------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        deadlines = [
            self.sender.rto_deadline, self.sender.persist_deadline, self.time_wait_deadline,
            self.receiver.delack_deadline if self.receiver is not None else None,
        ]
        pending = [deadline for deadline in deadlines if deadline is not None]
        return min(pending) if pending else None

    def handle_timer(self, now: float) -> None:
        self._now = now
        sender = self.sender
        if self.time_wait_deadline is not None and now >= self.time_wait_deadline:
            self._enter_closed(now, "closed", "timer")  # 2*MSL passed (RFC 9293 3.10.8)
            return
        if sender.rto_deadline is not None and now >= sender.rto_deadline:
            if self.state in (S.SYN_SENT, S.SYN_RECEIVED):
                self._handshake_timeout(now)
            elif not sender.on_rto(now):
                self._enter_closed(now, "timeout", "timer")
            if self.state is S.CLOSED:
                return
        if sender.persist_deadline is not None and now >= sender.persist_deadline:
            sender.on_persist(now)
        receiver = self.receiver
        if receiver is not None and receiver.delack_deadline is not None:
            if now >= receiver.delack_deadline:
                receiver.delack_deadline = None
                receiver.ack_now = True

    def _handshake_timeout(self, now: float) -> None:
        self._handshake_retries += 1
        if self._handshake_retries > self.config.syn_retries:
            self._enter_closed(now, "timeout", "timer")
            return
        self.rtt.back_off()
        self._syn_due = True
        self._syn_retransmitted = True  # Karn: no RTT sample from this handshake
        self.sender.rto_deadline = now + self.rtt.rto
        self._log("tcp:rto", now, seq=0, backoff=self.rtt.backoff, rto=self.rtt.rto,
                  handshake=True)

    # -- input (RFC 9293 3.10.7) -----------------------------------------------------------

    def receive_segment(self, segment: Segment, now: float) -> None:
        self._now = now
        state = self.state
        if state is S.CLOSED:
            reply = reset_for_unexpected(segment)
            if reply is not None:
                self._output.append(reply)
            return
        if state is S.SYN_SENT:
            self._receive_in_syn_sent(segment, now)
            return
        header = segment.header
        flags = int(header.flags)  # plain int: IntFlag arithmetic is slow per segment
        receiver = self.receiver
        sender = self.sender
        seq = unwrap(header.seq, receiver.rcv_nxt)
        timestamps = (
            header.option(Timestamps) if self.negotiated.timestamps else None
        )
        # PAWS (RFC 7323 5.3): an older timestamp than TS.Recent marks an old duplicate.
        if (
            timestamps is not None
            and not flags & _RST
            and seq_lt(timestamps.value, self.ts_recent)
        ):
            receiver.ack_now = True
            self._log("tcp:paws_reject", now, seq=seq - receiver.irs)
            return
        # First check: sequence number acceptability.
        if not receiver.acceptable(seq, segment.sequence_length):
            if (
                state is S.SYN_RECEIVED
                and flags & (_SYN | _ACK) == _SYN
                and seq == receiver.irs
            ):
                self._syn_due = True  # the peer retransmitted its SYN: SYN/ACK again
            elif not flags & _RST:
                receiver.ack_now = True
                if state is S.TIME_WAIT and flags & _FIN:
                    self.time_wait_deadline = now + self.config.time_wait
            return
        # RFC 7323 4.3: remember the timestamp to echo.
        if (
            timestamps is not None
            and seq <= receiver.last_ack_sent
            and not seq_lt(timestamps.value, self.ts_recent)
        ):
            self.ts_recent = timestamps.value
        # Second check: RST (RFC 5961 3.2): exact match resets, in-window challenges.
        if flags & _RST:
            if seq == receiver.rcv_nxt and state is S.TIME_WAIT:
                # Both FINs were exchanged: the RST only cuts TIME-WAIT short (RFC 9293
                # 3.10.7.4; Linux with tcp_rfc1337=0). The connection did close cleanly.
                self._enter_closed(now, "closed", "rst")
            elif seq == receiver.rcv_nxt:
                self._events.append(Reset())
                self._enter_closed(now, "reset", "rst")
            else:
                receiver.ack_now = True  # challenge ACK
                self._log("tcp:challenge_ack", now, reason="rst")
            return
        # Fourth check: a SYN in a synchronized state (RFC 5961 4.2): challenge ACK.
        if flags & _SYN:
            receiver.ack_now = True
            self._log("tcp:challenge_ack", now, reason="syn")
            return
        # Fifth check: the ACK field. No ACK bit: drop.
        if not flags & _ACK:
            return
        self.hook.on_segment_received(header, segment.payload, seq - receiver.irs)
        if self.state is S.CLOSED:  # the hook aborted us
            return
        ack = unwrap(header.ack, sender.snd_una)
        if state is S.SYN_RECEIVED:
            if not sender.snd_una < ack <= sender.snd_nxt:
                self._output.append(self._control(ack, TcpFlags.RST))
                return
            if not self._syn_retransmitted:
                sender._timed = (self.iss + 1, self._syn_sent_at)  # handshake RTT
        if ack > sender.snd_nxt:
            receiver.ack_now = True  # RFC 9293: ACKs something not yet sent
            return
        if ack < sender.snd_una - sender.max_snd_wnd:
            receiver.ack_now = True  # RFC 5961 5.2: too old, challenge ACK
            self._log("tcp:challenge_ack", now, reason="old_ack")
            return
        ts_rtt = None
        if timestamps is not None and timestamps.echo_reply and ack > sender.snd_una:
            # RFC 7323 4.1: RTTM from the echoed timestamp (ms ticks).
            elapsed = seq_diff(self._tsval(now), timestamps.echo_reply)
            if 0 <= elapsed < 1 << 30:
                ts_rtt = elapsed / 1000
            retransmitted_at, retransmitted_seq = sender.last_retransmission
            if ack > retransmitted_seq and now - ts_rtt < retransmitted_at - 0.001:
                # The echo predates our retransmission of data this ACK covers: the
                # peer echoed the original (a duplicate is "not acceptable" and does
                # not update TS.Recent, RFC 7323 5.3 R2/R3), so the sample would
                # include the retransmission wait. Karn's ambiguity (RFC 6298 3) is
                # back; take no sample rather than let RTO feed on itself.
                ts_rtt = None
        sack_blocks = []
        if self.negotiated.sack:
            sack = header.option(Sack)
            if sack is not None:
                base = sender.snd_una
                sack_blocks = [(unwrap(left, base), unwrap(right, base))
                               for left, right in sack.blocks]
        payload = segment.payload
        sender.process_ack(
            now, ack, seq, header.window << self.negotiated.snd_shift, sack_blocks,
            not payload and not flags & (_SYN | _FIN), ts_rtt,
        )
        if state is S.SYN_RECEIVED:
            self._become_established(now)
        if sender.fin_acked:
            if self.state is S.FIN_WAIT_1:
                self._set_state(S.FIN_WAIT_2, now)
            elif self.state is S.CLOSING:
                self._enter_time_wait(now)
            elif self.state is S.LAST_ACK:
                self._enter_closed(now, "closed", "ack")
                return
        # Seventh and eighth checks: segment text and FIN.
        if self.state in RECEIVING_STATES and (payload or flags & _FIN):
            for data, relative_seq in receiver.receive(seq, payload, bool(flags & _FIN)):
                self._events.append(DataReceived(data, relative_seq))
            if receiver.fin_received and not self._peer_closed_reported:
                self._on_peer_fin(now)
            receiver.schedule_ack(now)

    def _receive_in_syn_sent(self, segment: Segment, now: float) -> None:
        """RFC 9293 3.10.7.3."""
        header = segment.header
        flags = header.flags
        sender = self.sender
        ack = None
        if flags & TcpFlags.ACK:
            ack = unwrap(header.ack, self.iss)
            if ack <= self.iss or ack > sender.snd_nxt:
                if not flags & TcpFlags.RST:
                    self._output.append(self._control(ack, TcpFlags.RST))
                return
        if flags & TcpFlags.RST:
            if ack is not None:  # RFC 5961 3.2: only an RST that acknowledges our SYN
                self._events.append(Reset())
                self._enter_closed(now, "refused", "rst")
            return
        if not flags & TcpFlags.SYN:
            return
        self._take_syn(header)
        self.hook.on_segment_received(header, segment.payload, 0)
        if self.state is S.CLOSED:
            return
        if ack is None:
            # Simultaneous open (RFC 9293 3.5, figure 8): answer with SYN/ACK.
            sender.snd_wnd = sender.max_snd_wnd = header.window
            sender.snd_wl1 = self.receiver.irs
            self._syn_due = True
            self._set_state(S.SYN_RECEIVED, now)
            return
        sender.snd_una = ack
        sender.snd_wnd = header.window  # unscaled on a SYN (RFC 7323 2.2)
        sender.max_snd_wnd = header.window
        sender.snd_wl1 = self.receiver.irs
        sender.snd_wl2 = ack
        sender.rto_deadline = None
        timestamps = header.option(Timestamps)
        if self.negotiated.timestamps and timestamps is not None and timestamps.echo_reply:
            self.rtt.sample(seq_diff(self._tsval(now), timestamps.echo_reply) / 1000)
        elif not self._syn_retransmitted:
            self.rtt.sample(now - self._syn_sent_at)
        self.rtt.reset_backoff()
        self._become_established(now)
        self.receiver.ack_now = True

    def _on_peer_fin(self, now: float) -> None:
        self._peer_closed_reported = True
        self._events.append(PeerClosed())
        if self.state is S.ESTABLISHED:
            self._set_state(S.CLOSE_WAIT, now)
        elif self.state is S.FIN_WAIT_1:
            if self.sender.fin_acked:
                self._enter_time_wait(now)
            else:
                self._set_state(S.CLOSING, now)
        elif self.state is S.FIN_WAIT_2:
            self._enter_time_wait(now)

    # -- state changes -----------------------------------------------------------------

    def _set_state(self, state: TcpState, now: float, **why) -> None:
        if state is not self.state:
            self._log("tcp:state", now, old=str(self.state), new=str(state), **why)
            self.state = state

    def _queue_fin(self, now: float) -> None:
        if self.sender.fin_seq is None:
            self.sender.fin_seq = self.sender.buffer.end
        if self.state is S.ESTABLISHED:
            self._set_state(S.FIN_WAIT_1, now)
        elif self.state is S.CLOSE_WAIT:
            self._set_state(S.LAST_ACK, now)

    def _enter_time_wait(self, now: float) -> None:
        self._set_state(S.TIME_WAIT, now)
        self.sender.rto_deadline = None
        self.sender.persist_deadline = None
        self.time_wait_deadline = now + self.config.time_wait

    def _enter_closed(self, now: float, reason: str, cause: str | None = None) -> None:
        """`cause` says what ended the state for the log: "timer" (TIME-WAIT's 2*MSL or
        the retransmission limit), "rst", "ack" (our FIN acknowledged), "user"."""
        self._set_state(S.CLOSED, now, reason=reason, cause=cause)
        self.close_reason = reason
        self.sender.rto_deadline = None
        self.sender.persist_deadline = None
        self.time_wait_deadline = None
        if self.receiver is not None:
            self.receiver.delack_deadline = None
            self.receiver.ack_now = False
        self._syn_due = False
        if self.sender.cc is not None:
            self.sender.cc.leave()
        self._events.append(ConnectionClosed(reason))
        self.hook.on_closed(reason)

    # -- introspection -----------------------------------------------------------------

    def _log(self, event_type: str, now: float, /, **fields) -> None:
        if self.logger is not None:
            self.logger({"type": event_type, "t": now, "conn": self.name, **fields})

    @property
    def is_closed(self) -> bool:
        return self.state is S.CLOSED

    @property
    def bytes_in_flight(self) -> int:
        return self.sender.flight_size

    @property
    def send_buffer_size(self) -> int:
        """Bytes written and not yet acknowledged."""
        return len(self.sender.buffer)
