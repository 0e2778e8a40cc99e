"""One connection's packets as `spec.events`, seen from one side ("client" or "server").

Each packet the chosen side sent becomes a `SegmentSent`, each packet it received a
`SegmentReceived`, on the subflow slot the grouping gave it (slot 0: the MP_CAPABLE or
plain TCP subflow; joins in the order of their SYNs). `spec.events.to_steps` then turns
them into labels, exactly as for a trace the implementation logs.

How real values become the spec's (RFC 8684 section numbers in brackets):

- Data units are bytes. DSNs are made relative to the sender's IDSN + 1 and DATA_ACKs to
  the acknowledged side's IDSN + 1 (IDSN from the key, 3.1), so the first data byte is 0
  and a DATA_FIN takes one unit (3.3.3); 32-bit values are taken modulo 2^32 of the same
  base. The spec's data counters are bounded by `Config.max_bytes`; the monitor runs each
  connection with a `Config` whose bound covers every offset seen (`config_for`).
- A payload's DSN comes from the DSS mapping on its segment when that covers it, else from
  an earlier mapping of the same subflow and direction that covers it (a mapping may span
  several segments, 3.3.1), else the stream is taken to continue linearly after the last
  mapping (the infinite mapping and fallback, 3.7), or from the subflow's ISN when the
  connection never had a mapping (plain TCP). MP_CAPABLE with data is a mapping too (DSN
  0 at subflow sequence 1, its data-level length, 3.1); when a TSO send copies it onto a
  later segment, that packet becomes two events: the MP_CAPABLE ACK without data, then
  its payload under the mapping (`*_ack_mpc(bytes)` can only say "data at DSN 0").
- Judgements the spec leaves to the receiver are made here from what the capture shows:
  `hmac_ok` of a received MP_JOIN SYN/ACK or third ACK and of a received ADD_ADDR (both
  keys and both nonces are in the capture, 3.2, 3.4.1), `key_ok` of a received
  MP_FASTCLOSE (3.5). When a key is missing from the capture they are taken as good.
- Address IDs are renamed per side in order of appearance, 0 staying 0 (the spec only
  compares IDs), so the spec's few ID slots are enough.
- `acks_fin`: a received segment whose ACK covers the FIN this side sent on that subflow.
- A segment received on a subflow after a RST on it (sent or received) is left out, with
  a note: no TCB is left to take it (RFC 9293 3.10.7.1), so it never reaches MPTCP. It is
  the peer's packet in flight, not the judged side's doing; what the judged side sends
  on that subflow afterwards is still judged.

Events a capture cannot show but that the capture determines are put in here, each marked
`inferred` with the reason: `AppConnect` before this side's first SYN, `AppListen` before
the first SYN it receives, `AppSend(n)` before a segment that sends data (or a DATA_FIN)
beyond what the application had written so far (exactly the missing bytes), and
`AddressAdded(id)` before the first join or ADD_ADDR from a local address ID other than 0.
Choices that depend on the spec state (close or shutdown before a DATA_FIN, abort before
MP_FASTCLOSE) are made by the judge (`judge.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from impl.crypto import add_addr_hmac, idsn_from_key, join_ack_hmac, join_syn_ack_hmac
from impl.wire import (
    AddAddr,
    Dss,
    MpCapable,
    MpFail,
    MpFastclose,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpPrio,
    MpTcpRst,
    RemoveAddr,
    TcpFlags,
)
from model_checks.conformance.capture import Connection, Frame, Subflow
from spec import events as ev
from spec.core import Config

MOD32, MOD64 = 1 << 32, 1 << 64
MAPPINGS_KEPT = 512  # recent mappings per subflow and direction searched for a payload


@dataclass(frozen=True)
class TraceItem:
    event: ev.Event
    frame: int | None  # the packet's frame number; None for an inferred event
    inferred: str = ""  # why an event without a packet was put in


@dataclass
class AbstractTrace:
    side: str
    items: list[TraceItem]
    config: Config
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Mapping:
    ssn: int  # relative subflow sequence number of the first mapped byte
    dsn: int  # relative DSN
    length: int  # data bytes (without the DATA_FIN unit)


class _Converter:
    def __init__(self, connection: Connection, side: str) -> None:
        self.connection = connection
        self.me = side
        self.them = connection.other(side)
        self.keys = connection.keys
        self.idsn = {s: idsn_from_key(k) for s, k in connection.keys.items()}
        self.items: list[TraceItem] = []
        self.notes: list[str] = []
        self.mappings: dict[tuple[int, str], list[_Mapping]] = {}
        self.fin_end: dict[int, int] = {}  # slot -> our FIN's sequence number + 1
        self.ids: dict[str, dict[int, int]] = {self.me: {0: 0}, self.them: {0: 0}}
        self.written = 0
        self.opened = False
        self.addresses_up: set[int] = set()
        self.largest = 0  # largest relative offset seen (for the Config bound)
        self.seen_end: dict[tuple[int, str], int] = {}  # highest sequence seen, relative
        self.gap_noted: set[int] = set()
        self.jump_noted: set[tuple[int, str]] = set()
        self.reset_slots: set[int] = set()
        self.discarded: list[int] = []  # received after their subflow was reset

    # -- helpers ------------------------------------------------------------------------

    def _dense_id(self, owner: str, raw: int) -> int:
        table = self.ids[owner]
        if raw not in table:
            table[raw] = len(table)
        return table[raw]

    def _relative(self, value: int, side: str, wide: bool) -> int:
        if side not in self.idsn and not self.notes:
            self.notes.append("the capture does not show both keys: DSNs are taken as "
                              "absolute and HMACs/keys as good")
        base = self.idsn.get(side, -1) + 1
        rel = (value - base) % (MOD64 if wide else MOD32)
        if rel < MOD32:
            self.largest = max(self.largest, rel)
        return rel

    def _infer(self, event: ev.Event, why: str) -> None:
        self.items.append(TraceItem(event, None, why))

    # -- one packet ------------------------------------------------------------------------

    def add(self, frame: Frame, slot: int, sender: str) -> None:
        subflow = self.connection.subflows[slot]
        tcp, payload = frame.packet.tcp, len(frame.packet.payload)
        sent = sender == self.me
        if tcp.flags & TcpFlags.RST:
            self.reset_slots.add(slot)
        elif slot in self.reset_slots and not sent and not tcp.flags & TcpFlags.SYN:
            # RFC 9293 3.10.7.1: a segment for a subflow that was reset finds no TCB; it
            # is discarded below MPTCP (and may be answered with a RST, which is judged)
            self.discarded.append(frame.number)
            return
        receiver = self.connection.other(sender)
        flags = "".join(letter for bit, letter in ((TcpFlags.SYN, "S"), (TcpFlags.ACK, "A"),
                                                   (TcpFlags.FIN, "F"), (TcpFlags.RST, "R"))
                        if tcp.flags & bit)
        isn = subflow.isn.get(frame.src)
        ssn = (tcp.seq - isn) % MOD32 if isn is not None else None
        options: list = []
        mapping: _Mapping | None = None
        dss_data_fin_dsn: int | None = None
        mpc_data = False
        for option in tcp.mptcp_options():
            if isinstance(option, MpCapable):
                keys = 2 if option.receiver_key is not None else int(option.sender_key is not None)
                options.append(ev.MpCapable(keys, option.checksum_required))
                if keys == 2 and payload:  # 3.1: DSN IDSN+1 at subflow sequence 1
                    mpc_data = True
                    mapping = _Mapping(1, 0, option.data_length or payload)
            elif isinstance(option, MpJoinSyn | MpJoinSynAck):
                options.append(ev.MpJoin(self._dense_id(sender, option.address_id),
                                         option.backup, self._join_hmac_ok(option, subflow,
                                                                           sender, sent)))
            elif isinstance(option, MpJoinAck):
                options.append(ev.MpJoin(hmac_ok=self._join_hmac_ok(option, subflow, sender,
                                                                     sent)))
            elif isinstance(option, Dss):
                summary, mapping, dss_data_fin_dsn = self._dss(option, sender, receiver)
                options.append(summary)
            elif isinstance(option, AddAddr):
                owner = receiver if option.echo else sender
                ok = True if sent or option.echo else self._add_addr_ok(option, sender)
                options.append(ev.AddAddr(self._dense_id(owner, option.address_id),
                                          option.echo, ok))
            elif isinstance(option, RemoveAddr):
                options.append(ev.RemoveAddr(tuple(self._dense_id(sender, i)
                                                   for i in option.address_ids)))
            elif isinstance(option, MpPrio):
                options.append(ev.MpPrio(option.backup))
            elif isinstance(option, MpFail):
                options.append(ev.MpFail(self._relative(option.dsn, receiver, True)))
            elif isinstance(option, MpFastclose):
                key = self.keys.get(receiver)
                options.append(ev.MpFastclose(key is None or option.receiver_key == key))
            elif isinstance(option, MpTcpRst):
                options.append(ev.MpTcpRst(int(option.reason), option.transient))
        self._watch_capture_gaps(frame, slot, sender, ssn, payload, flags)
        dsn = None
        if payload and "S" not in flags:
            dsn = self._payload_dsn(slot, sender, ssn, mapping, payload)
            if mapping is not None and mapping.length:
                self._remember(slot, sender, mapping)
        if mpc_data and dsn:
            # The MP_CAPABLE mapping copied onto a later segment of the same (TSO) send:
            # `*_ack_mpc(bytes)` only says "data at DSN 0", so the packet is given as the
            # MP_CAPABLE ACK and then its payload under that mapping (3.1)
            split = ev.SegmentSent if sent else ev.SegmentReceived
            self.items.append(TraceItem(split(slot, "A", 0, None, tuple(
                o for o in options if isinstance(o, ev.MpCapable))), frame.number))
            options = [o for o in options if not isinstance(o, ev.MpCapable)]
            options.append(ev.Dss(dsn=0, length=mapping.length if mapping else payload))
        if sent:
            self._before_sent(frame, slot, flags, options, dsn, payload, dss_data_fin_dsn)
            if "F" in flags:
                self.fin_end[slot] = (tcp.seq + payload + 1) % MOD32
            event: ev.Event = ev.SegmentSent(slot, flags, payload, dsn, tuple(options))
        else:
            if "S" in flags and "A" not in flags and slot == 0 and not self.opened:
                self.opened = True
                self._infer(ev.AppListen(), "a SYN arrives: the application listens")
            fin_end = self.fin_end.get(slot)
            acks_fin = (fin_end is not None and bool(tcp.flags & TcpFlags.ACK)
                        and (tcp.ack - fin_end) % MOD32 < MOD32 // 2)
            event = ev.SegmentReceived(slot, flags, payload, dsn, tuple(options), acks_fin)
        self.items.append(TraceItem(event, frame.number))

    def _watch_capture_gaps(self, frame: Frame, slot: int, sender: str, ssn: int | None,
                            payload: int, flags: str) -> None:
        """Note (once per subflow) a segment that starts beyond what the capture showed of
        its direction, and an ACK of bytes the capture never showed: packets are missing,
        so a divergence after them may be the capture's fault (or the network's)."""
        if ssn is not None:
            end = ssn + payload + (1 if "F" in flags or "S" in flags else 0)
            key = (slot, sender)
            seen_before = self.seen_end.get(key, 0)
            if "S" not in flags and ssn > seen_before and ssn < MOD32 // 2 and \
                    key not in self.jump_noted:
                self.jump_noted.add(key)
                self.notes.append(
                    f"packet {frame.number} starts at byte {ssn} of subflow {slot} from the "
                    f"{sender}, the capture showed bytes only up to {seen_before}: lost "
                    f"before the capture point, or missing from the capture")
            self.seen_end[key] = max(seen_before, end)
        subflow = self.connection.subflows[slot]
        other = self.connection.other(sender)
        other_endpoint = next(e for e, side in subflow.sides.items() if side == other)
        isn = subflow.isn.get(other_endpoint)
        tcp = frame.packet.tcp
        if "A" not in flags or isn is None or slot in self.gap_noted:
            return
        acked = (tcp.ack - isn) % MOD32
        seen = self.seen_end.get((slot, other), 0)
        if seen < acked < MOD32 // 2:
            self.gap_noted.add(slot)
            self.notes.append(
                f"packet {frame.number} acknowledges bytes up to {acked} of subflow {slot} "
                f"from the {other}, but the capture shows them only up to {seen}: packets "
                f"are missing from the capture")

    def _before_sent(self, frame: Frame, slot: int, flags: str, options: list,
                     dsn: int | None, payload: int, data_fin_dsn: int | None) -> None:
        if "S" in flags and "A" not in flags and slot == 0 and not self.opened:
            self.opened = True
            self._infer(ev.AppConnect(), "this side sends the first SYN: connect()")
        end = None
        if payload and dsn is not None and "S" not in flags:
            end = dsn + payload
        if data_fin_dsn is not None:
            end = max(end or 0, data_fin_dsn)
        if end is not None and end > self.written and end < MOD32:
            self._infer(ev.AppSend(end - self.written),
                        f"packet {frame.number} sends data up to offset {end}: "
                        f"the application wrote it")
            self.written = end
        for option in options:
            local = None
            if isinstance(option, ev.MpJoin) and "S" in flags and "A" not in flags:
                local = option.address_id
            elif isinstance(option, ev.AddAddr) and not option.echo:
                local = option.address_id
            if local and local not in self.addresses_up:
                self.addresses_up.add(local)
                self._infer(ev.AddressAdded(local),
                            f"packet {frame.number} uses local address ID {local}")

    def _dss(self, option: Dss, sender: str, receiver: str) -> tuple[ev.Dss, _Mapping | None,
                                                                         int | None]:
        ack = None
        if option.data_ack is not None:
            ack = self._relative(option.data_ack, receiver, option.data_ack_is_64bit)
        found = option.mapping
        if found is None:
            return ev.Dss(data_ack=ack), None, None
        dsn = self._relative(found.dsn, sender, found.dsn_is_64bit)
        length = found.data_level_length
        data_fin_dsn = dsn + length - 1 if option.data_fin and length else None
        if data_fin_dsn is not None:
            self.largest = max(self.largest, data_fin_dsn + 1)
        data = length - (1 if option.data_fin and length else 0)
        mapping = _Mapping(found.subflow_sequence, dsn, data)
        return ev.Dss(data_ack=ack, dsn=dsn, length=length, data_fin=option.data_fin), \
            mapping, data_fin_dsn

    def _remember(self, slot: int, sender: str, mapping: _Mapping) -> None:
        kept = self.mappings.setdefault((slot, sender), [])
        if not kept or kept[-1] != mapping:
            kept.append(mapping)
            del kept[:-MAPPINGS_KEPT]

    def _payload_dsn(self, slot: int, sender: str, ssn: int | None, mapping: _Mapping | None,
                     payload: int) -> int:
        if ssn is None:  # no ISN seen for this direction: cannot place the payload
            return MOD32
        if mapping is not None and mapping.length and \
                0 <= (ssn - mapping.ssn) % MOD32 < mapping.length:
            return self._note_end(mapping.dsn + (ssn - mapping.ssn) % MOD32, payload)
        kept = self.mappings.get((slot, sender), [])
        for earlier in reversed(kept):
            if (ssn - earlier.ssn) % MOD32 < earlier.length:
                return self._note_end(earlier.dsn + (ssn - earlier.ssn) % MOD32, payload)
        if kept:  # the stream continues linearly after the last mapping (3.7)
            last = kept[-1]
            return self._note_end(last.dsn + (ssn - last.ssn) % MOD32, payload)
        return self._note_end(ssn - 1, payload)  # plain TCP: DSN follows the ISN

    def _note_end(self, dsn: int, payload: int) -> int:
        if dsn + payload < MOD32:
            self.largest = max(self.largest, dsn + payload)
        return dsn

    # -- judgements of the receiver ---------------------------------------------------------

    def _join_hmac_ok(self, option: object, subflow: Subflow, sender: str, sent: bool) -> bool:
        if sent or isinstance(option, MpJoinSyn):
            return True
        initiator = subflow.sides[subflow.initiator]
        listener = self.connection.other(initiator)
        keys, nonce = self.keys, subflow.nonce
        if not {initiator, listener} <= set(keys) or not {initiator, listener} <= set(nonce):
            return True
        if isinstance(option, MpJoinSynAck):
            return option.sender_truncated_hmac == join_syn_ack_hmac(
                keys[listener], keys[initiator], nonce[listener], nonce[initiator])
        assert isinstance(option, MpJoinAck)
        return option.sender_hmac == join_ack_hmac(
            keys[initiator], keys[listener], nonce[initiator], nonce[listener])

    def _add_addr_ok(self, option: AddAddr, sender: str) -> bool:
        receiver = self.connection.other(sender)
        if sender not in self.keys or receiver not in self.keys:
            return True
        return option.truncated_hmac == add_addr_hmac(
            self.keys[sender], self.keys[receiver], option.address_id, option.address,
            option.port)


def abstract_connection(connection: Connection, side: str) -> AbstractTrace:
    """The events of `connection` as `side` ("client" or "server") saw them."""
    converter = _Converter(connection, side)
    for frame, slot, sender in connection.packets:
        converter.add(frame, slot, sender)
    if converter.discarded:
        numbers = converter.discarded
        converter.notes.append(
            f"{len(numbers)} packets received after their subflow was reset were left out "
            f"(TCP discards them, RFC 9293 3.10.7.1): {_ranges(numbers)}")
    return AbstractTrace(side, converter.items, config_for(connection, converter),
                         converter.notes)


def _ranges(numbers: list[int]) -> str:
    """1-3, 7, 9-10"""
    parts: list[str] = []
    start = previous = numbers[0]
    for number in numbers[1:] + [None]:  # type: ignore[list-item]
        if number is not None and number == previous + 1:
            previous = number
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if number is not None:
            start = previous = number
    return ", ".join(parts)


def config_for(connection: Connection, converter: _Converter) -> Config:
    """A spec size that fits this connection: one slot per subflow seen (no slot reuse,
    and no path-manager limit below what the capture shows), data bounds covering every
    offset seen, and as many address IDs as either side used."""
    slots = max(1, len(connection.subflows))
    ids = max(2, *(len(table) for table in converter.ids.values()))
    return Config(max_subflows=slots, subflow_limit=slots,
                  max_bytes=max(4, converter.largest + 1), max_address_ids=ids)
